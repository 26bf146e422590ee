//! Command-line surface: what clap parses, one `Args` struct per command.
//!
//! Owns flag names, defaults and `--help` text. Flag names are a contract that
//! users' scripts rely on (../shared/DESIGN.md): add flags, never rename them.
//! Must never do work: validation that needs more than a parse lives in each
//! command's `Config::from_args`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum, ValueHint};

mod duration;
pub mod help;
pub mod man;

pub use duration::parse_duration;

/// Load-test and zombie-audit toolkit for servers that fork.
///
/// Start the forking server (`serve`), hit it with many simultaneous connections
/// (`blast`), look for defunct children it left behind (`audit`), or do all three
/// as one CI job (`smoke`). `audit -- COMMAND` fails any command that leaves
/// processes behind; `merge` adds up the reports of many blasts.
///
/// Durations are written 500ms, 2s, 1m30s; a bare number means seconds.
#[derive(Debug, Parser)]
// bin_name: usage lines and completions say `lsbaws` whatever the file is
// called. max_term_width: help wraps at 100 columns at most, so that it reads
// the same on every wide terminal (and its snapshots do not depend on one).
#[command(
    name = "lsbaws",
    bin_name = "lsbaws",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_help = help::after_help("")
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    // No doc comments here: clap would let them hide each command's long help,
    // which lives on its Args struct.
    Serve(ServeArgs),
    Blast(BlastArgs),
    Audit(AuditArgs),
    Smoke(SmokeArgs),
    Merge(MergeArgs),
    Completions(CompletionsArgs),
    Man(ManArgs),
}

impl Command {
    /// Whether the command was asked for JSON output (errors then also print
    /// a JSON object).
    pub fn json(&self) -> bool {
        match self {
            Command::Serve(_) => false,
            Command::Blast(a) => a.json,
            // With --report FILE, stdout is COMMAND's: an error that went
            // into FILE is not repeated there (`cmd::ErrorInReport`).
            Command::Audit(a) => a.json,
            Command::Smoke(a) => a.json,
            Command::Merge(a) => a.json,
            Command::Completions(_) | Command::Man(_) => false,
        }
    }
}

/// How the server reaps its children. Teaching modes are broken on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReaperArg {
    /// SIGCHLD handler loops `waitpid(-1, WNOHANG)` until nothing is left (the article's fix).
    Loop,
    /// BROKEN ON PURPOSE: one wait per SIGCHLD. Signals of one kind are not queued, so a
    /// burst of exits delivers fewer signals than children and zombies are left behind.
    Once,
    /// BROKEN ON PURPOSE: never reap. Every connection leaves a zombie.
    None,
    /// SIGCHLD set to SIG_IGN: the kernel reaps, exit statuses are lost.
    Ignore,
    /// The signal only wakes the main loop (signalfd), which reaps, tracks its own pids
    /// and logs exit statuses, as tini, dumb-init and gunicorn do.
    Signalfd,
}

/// What `accept` does when a signal interrupts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnEintrArg {
    /// Restart the accept (what std and SA_RESTART do).
    Retry,
    /// BROKEN ON PURPOSE: handler without SA_RESTART and a raw blocking accept that exits
    /// on EINTR, reproducing the article's webserver3e crash. Needs `--reaper loop|once`.
    Fail,
}

/// Run the forking reaper server: one child process per connection.
///
/// Prints one ready line on stdout, `Serving HTTP on <ip>:<port> (pid <pid>, reaper
/// <mode>)`, then forks a child per connection. Each child reads one request, answers
/// `Hello, World!` (or runs --cgi PROGRAM), logs one line and exits. SIGINT, SIGTERM
/// and SIGHUP stop it: it stops accepting, waits --grace for its children, kills the
/// rest, reaps them all and prints a one-line summary.
#[derive(Debug, clap::Args)]
#[command(after_help = help::after_help("serve"))]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the ready line shows it).
    #[arg(long, default_value = "127.0.0.1:8888", value_name = "ADDR")]
    pub bind: String,

    /// How children are reaped.
    #[arg(long, value_enum, default_value_t = ReaperArg::Loop, value_name = "MODE")]
    pub reaper: ReaperArg,

    /// What accept does when interrupted by a signal.
    #[arg(long, value_enum, default_value_t = OnEintrArg::Retry, value_name = "MODE")]
    pub on_eintr: OnEintrArg,

    /// Listen backlog (the kernel caps it at net.core.somaxconn).
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub backlog: u32,

    /// The child sleeps this long after responding (webserver3e's `time.sleep(3)`).
    #[arg(long, default_value = "0s", value_parser = parse_duration, value_name = "DURATION")]
    pub delay: Duration,

    /// Cap on unreaped children: at the cap the parent stops accepting until one is
    /// reaped. Zombies count, as they do against RLIMIT_NPROC, so with `--reaper
    /// none` or `once` the cap fills up and stays full (logged once).
    #[arg(long, value_name = "N")]
    pub max_children: Option<u32>,

    /// A child gives up on a client that has not sent a whole request by then.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub read_timeout: Duration,

    /// On SIGINT, SIGTERM or SIGHUP, wait this long for children before killing them.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub grace: Duration,

    /// No per-request log lines (the ready and summary lines are still printed).
    #[arg(long, short)]
    pub quiet: bool,

    /// Become a child subreaper (prctl PR_SET_CHILD_SUBREAPER): orphaned
    /// descendants, such as daemons a CGI program leaves behind, are re-parented
    /// to the server, which reaps them and counts them as foreign, as tini -s does.
    #[arg(long)]
    pub subreaper: bool,

    /// Run PROGRAM for every request as CGI (RFC 3875) instead of the canned reply:
    /// the request in environment variables and stdin, its output as the response.
    /// A WSGI app runs under `wsgiref.handlers.CGIHandler().run(app)`.
    #[arg(long, value_name = "PROGRAM", value_hint = ValueHint::FilePath)]
    pub cgi: Option<std::path::PathBuf>,

    /// An argument for the CGI program (repeatable).
    #[arg(long, value_name = "ARG", requires = "cgi", allow_hyphen_values = true)]
    pub cgi_arg: Vec<std::ffi::OsString>,

    /// Bound on everything a request starts: a CGI program still running after this
    /// is killed with every process it started (504 if it had not answered), and
    /// sending its response must be done by then too.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub cgi_timeout: Duration,

    /// Pass this variable of the server's environment to the CGI program
    /// (repeatable; only PATH is passed otherwise).
    #[arg(long, value_name = "NAME", requires = "cgi")]
    pub cgi_env: Vec<String>,

    /// Largest request body handed to the CGI program, in bytes (413 above).
    #[arg(long, default_value_t = 16 * 1024 * 1024, value_name = "BYTES")]
    pub cgi_max_body: u64,
}

/// Open many simultaneous connections and report what happened.
///
/// client3.py done right: --max-clients clients are released at the same instant,
/// each makes --max-conns requests one after another, a new connection each unless
/// --keep-alive (or loops for --duration), and every response is read and counted.
/// Failures are counted by kind (refused, reset, timeout, bad response, HTTP status,
/// fd or port exhaustion, TLS). Prints a table and a latency histogram, or --json.
///
/// With --rate, requests start on a fixed schedule instead (an open model):
/// --max-clients bounds how many are in flight, --max-conns is the total (or
/// --duration bounds the schedule), and latency counts from each request's
/// intended start, so a stall of the server shows in the percentiles.
#[derive(Debug, clap::Args)]
#[command(after_help = help::after_help("blast"))]
// The load flags are smoke's too; only blast has --rate and --keep-alive.
#[command(mut_arg("max_clients", |a| a.help(
    "Clients released at the same instant (with --rate: the most requests in flight)")))]
#[command(mut_arg("max_conns", |a| a.help(
    "Requests each client makes, one after another, a new connection each unless \
     --keep-alive (not with --duration; with --rate: the total)")))]
pub struct BlastArgs {
    /// Target URL, http:// or https://. The host is resolved once, and every
    /// connection goes to the first address the host resolves to (no fallback to
    /// the others).
    #[arg(default_value = "http://127.0.0.1:8888/hello", value_hint = ValueHint::Url)]
    pub url: String,

    #[command(flatten)]
    pub load: LoadArgs,

    /// Bound on the connect alone (default and at most: --timeout). A connect
    /// slower than 1s is a SYN retransmit, usually a full listen backlog.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub connect_timeout: Option<Duration>,

    /// HTTP method of the request.
    #[arg(long, short = 'X', default_value = "GET", value_name = "METHOD")]
    pub method: String,

    /// Extra request header, "Name: value" (repeatable). A Host or Connection given
    /// here replaces the default one.
    #[arg(long = "header", short = 'H', value_name = "HEADER")]
    pub headers: Vec<String>,

    /// Request body (Content-Length is added).
    #[arg(long, value_name = "BODY")]
    pub body: Option<String>,

    /// Send exactly these bytes instead of building a request; `\n`, `\r`, `\t`,
    /// `\\` and `\xHH` are unescaped. client3.py sends
    /// 'GET /hello HTTP/1.1\nHost: localhost:8888\n\n'.
    #[arg(long, value_name = "BYTES", conflicts_with_all = ["method", "headers", "body"])]
    pub raw_request: Option<String>,

    /// Reuse a connection for a client's next request when the server allows it (for
    /// non-forking servers). Off: a new connection per request.
    #[arg(long)]
    pub keep_alive: bool,

    /// Exit 1 only when more requests than this fail (with --duration, a client
    /// that never got to start one counts too).
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub max_errors: u64,

    /// Local address to connect from (repeatable): an address, a CIDR such as
    /// 127.0.0.2/30 (its host addresses), or a range 127.0.0.2-127.0.0.9.
    /// Connections go round-robin over them, each with its own ephemeral ports
    /// per destination, to pass one address's ~28 000.
    #[arg(long = "source", value_name = "ADDR")]
    pub sources: Vec<String>,

    /// Prepare everything, then release the clients at this wall-clock instant:
    /// RFC 3339 UTC (2026-11-30T12:00:00Z) or Unix seconds. Many blasts on many
    /// machines fire together; the report gives each one's release skew. Must be
    /// in the future, within 24 h.
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<String>,

    /// Requests per second over all clients, on a fixed schedule (an open
    /// model). --max-conns then counts requests in total.
    ///
    /// A request whose start comes while every client is busy is counted in
    /// behind_schedule, whether it starts late or never (then it is also
    /// unfinished).
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,

    /// https: trust only the CA certificates in this PEM file (default: the
    /// system's store).
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath, conflicts_with = "insecure")]
    pub cacert: Option<PathBuf>,

    /// https: do not verify the server's certificate.
    #[arg(long)]
    pub insecure: bool,

    /// https: let handshakes resume earlier sessions (default: a full handshake
    /// per new connection, what new clients cost a server).
    #[arg(long)]
    pub tls_resume: bool,

    /// Print one JSON object instead of the table (and an error as
    /// {"error": "..."}).
    #[arg(long)]
    pub json: bool,

    /// Name of this run in its JSON report, so `lsbaws merge` can tell the runs
    /// of many machines apart (default: the host name; a pod's name in Kubernetes).
    #[arg(long, value_name = "TEXT")]
    pub tag: Option<String>,

    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Find defunct (zombie) children of a process in /proc, or run a command and
/// report the processes it leaves behind.
///
/// With --pid: lists the zombies (state Z) among the direct children of --pid
/// (--tree: all its descendants), then one summary line.
///
/// With `-- COMMAND`: a leak gate for any command. Runs COMMAND as a child
/// subreaper in its own process group (stdin, stdout and stderr are its own,
/// byte for byte), samples its process tree every --interval, and when it exits
/// waits --settle, then reports the processes it left running, the zombies that
/// stayed defunct longer than --min-age (by parent, with the most held at once),
/// and the orphans that exited on their own and were reaped. What is left is
/// stopped after the report (SIGTERM; then SIGSTOP and SIGKILL to everything
/// below lsbaws) unless --keep. The report follows COMMAND's output on stdout,
/// on a line of its own (--report FILE: in FILE instead).
#[derive(Debug, clap::Args)]
#[command(after_help = help::after_help("audit"))]
// What to audit: one of --pid, --all, -- COMMAND (a usage error names all three),
// each its own form of the command.
#[command(group = clap::ArgGroup::new("target").args(["pid", "all", "command"]).required(true))]
#[command(override_usage = "lsbaws audit [OPTIONS] --pid <PID>\n       \
                            lsbaws audit [OPTIONS] --all\n       \
                            lsbaws audit [OPTIONS] -- <COMMAND>...")]
pub struct AuditArgs {
    /// The process whose children are audited.
    #[arg(long, value_name = "PID")]
    pub pid: Option<i32>,

    /// All descendants, not only direct children.
    #[arg(long)]
    pub tree: bool,

    /// Every zombie on the machine, grouped by parent.
    #[arg(long, conflicts_with_all = ["pid", "tree", "watch"])]
    pub all: bool,

    /// Print one JSON object instead of the table (with --watch: one JSON line per
    /// sample; an error as {"error": "..."}).
    #[arg(long)]
    pub json: bool,

    /// Exit 1 only when more zombies than this are found (with -- COMMAND: held
    /// longer than --min-age).
    #[arg(long, default_value_t = 0, value_name = "Z")]
    pub max_zombies: u64,

    /// Count only zombies whose process started more than this long ago (the age
    /// is since start, not since exit; a correct server's short-lived children
    /// pass). For pre-fork servers whose workers live long, use --settle.
    /// With -- COMMAND: count only zombies seen defunct for at least this long
    /// [default: 0s; 1s with -- COMMAND].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub min_age: Option<Duration>,

    /// Re-scan until at most --max-zombies are left or this much time has passed.
    /// With -- COMMAND: how long its leftovers get to exit on their own after it
    /// exits [default: 0s; 500ms with -- COMMAND].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub settle: Option<Duration>,

    /// Sample every INTERVAL and print one line each (time, live children, zombies);
    /// the exit code follows the last sample.
    #[arg(long, value_parser = parse_duration, value_name = "INTERVAL", conflicts_with = "settle")]
    pub watch: Option<Duration>,

    /// Number of --watch samples (default: until interrupted).
    #[arg(long, requires = "watch", value_name = "K",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// With -- COMMAND: exit 1 only when more processes than this are left running.
    #[arg(long, default_value_t = 0, value_name = "O", conflicts_with_all = ["pid", "all"])]
    pub max_orphans: u64,

    /// With -- COMMAND: time between two samples of its process tree. A zombie
    /// that lasts less than this may be missed (see --min-age).
    #[arg(long, default_value = "100ms", value_parser = parse_duration,
          value_name = "DURATION", conflicts_with_all = ["pid", "all"])]
    pub interval: Duration,

    /// With -- COMMAND: leave the processes it left running instead of stopping them.
    #[arg(long, conflicts_with_all = ["pid", "all"])]
    pub keep: bool,

    /// With -- COMMAND: also write a JUnit XML report (testcases "command",
    /// "orphans", "zombies") to FILE. Opened before COMMAND runs; a FIFO
    /// waits for its reader (a stop signal ends the wait).
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath,
          conflicts_with_all = ["pid", "all"])]
    pub junit: Option<PathBuf>,

    /// With -- COMMAND: write the report (table or --json) to FILE instead of
    /// stdout, which then carries COMMAND's output alone. Opened before
    /// COMMAND runs; a FIFO waits for its reader (a stop signal ends the wait).
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath,
          conflicts_with_all = ["pid", "all"])]
    pub report: Option<PathBuf>,

    /// Read this directory instead of /proc (tests point it at a fake tree).
    #[arg(long, hide = true, default_value = crate::proc::ROOT, value_name = "DIR",
          value_hint = ValueHint::DirPath)]
    pub proc_root: PathBuf,

    /// The command to run and audit (after --).
    #[arg(last = true, value_name = "COMMAND", value_hint = ValueHint::CommandWithArguments,
          conflicts_with_all = ["pid", "all", "tree", "watch", "count"])]
    pub command: Vec<std::ffi::OsString>,
}

/// Start a server, blast it, audit it: the CI job in one command.
///
/// Without a command, starts the built-in `lsbaws serve` on a free port. With one
/// (after `--`), runs it with `{port}` replaced by a free loopback port and waits
/// until that port listens. Then blasts it, audits its process tree and that of the
/// listening socket's owner for zombies (re-scanning up to --settle, so a correct
/// server's transient zombies pass), stops it (SIGTERM, --grace, SIGKILL to its
/// process group), lists the processes it left behind, and prints PASS or FAIL
/// with the reasons.
#[derive(Debug, clap::Args)]
// The load flags are blast's; only the burst's size differs by default.
#[command(mut_arg("max_clients", |a| a.default_value("128")))]
#[command(after_help = help::after_help("smoke"))]
pub struct SmokeArgs {
    #[command(flatten)]
    pub load: LoadArgs,

    /// FAIL only when more requests than this fail.
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub max_errors: u64,

    /// Re-scan for zombies for up to this long before judging, so that a correct
    /// server's transient zombies (the instant between exit and reap) pass.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub settle: Duration,

    /// FAIL only when more zombies than this are left.
    #[arg(long, default_value_t = 0, value_name = "Z")]
    pub max_zombies: u64,

    /// FAIL only when the server leaves more processes than this behind:
    /// descendants still running after it exited (daemons a CGI program
    /// started, say), other than the server that owns the listening socket.
    #[arg(long, default_value_t = 0, value_name = "O")]
    pub max_orphans: u64,

    /// Reaper of the built-in server (default loop; see `lsbaws serve --help`).
    /// Not with a server command.
    #[arg(long, value_enum, value_name = "MODE")]
    pub reaper: Option<ReaperArg>,

    /// Run the built-in server with `--cgi PROGRAM` (a WSGI app under CGI, say).
    /// Not with a server command.
    #[arg(long, value_name = "PROGRAM", value_hint = ValueHint::FilePath)]
    pub cgi: Option<std::path::PathBuf>,

    /// The port that replaces `{port}` in the server command (default: a free
    /// one). Only with a server command.
    #[arg(long, value_name = "P")]
    pub port: Option<u16>,

    /// The URL to blast; `{port}` in it is the server's port, and the built-in
    /// server's URL must have it (default: http://127.0.0.1:{port}/, and /hello
    /// on the built-in server).
    #[arg(long, value_name = "URL", value_hint = ValueHint::Url)]
    pub url: Option<String>,

    /// How long the server may take to accept its first connection.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub ready_timeout: Duration,

    /// After SIGTERM, how long the server may take to exit before SIGKILL (the
    /// built-in server needs at least 1s).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub grace: Duration,

    /// Print one JSON object instead of the table (and an error as
    /// {"error": "..."}).
    #[arg(long)]
    pub json: bool,

    /// Also write a JUnit XML report (testcases "requests", "zombies" and
    /// "orphans") to FILE. Opened before the server starts (the file stdout
    /// writes to is refused); a FIFO waits for its reader (a stop signal ends
    /// the wait).
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub junit: Option<std::path::PathBuf>,

    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,

    /// Server command to test instead of the built-in server; `{port}` is replaced
    /// by a free loopback port.
    #[arg(last = true, value_name = "SERVER COMMAND",
          value_hint = ValueHint::CommandWithArguments)]
    pub command: Vec<String>,
}

/// Add up `blast --json` reports of many runs, exactly.
///
/// For load from many machines or pods: counts, error kinds and statuses are
/// summed, the latency histograms added (percentiles come from all samples, never
/// an average of percentiles), and elapsed runs from the first release to the last
/// end. Prints one row per report and the total as blast's table, or --json in
/// blast's own shape (so merges merge again).
#[derive(Debug, clap::Args)]
#[command(after_help = help::after_help("merge"))]
pub struct MergeArgs {
    /// Reports: files holding `lsbaws blast --json` output, or - for standard input.
    #[arg(required = true, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub files: Vec<PathBuf>,

    /// Exit 1 only when more requests than this failed in all reports together
    /// (requests that never ran count as failed, as in blast).
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub max_errors: u64,

    /// Exactly this many reports must be found (exit 2 otherwise): a pod whose
    /// output went missing must not pass as a smaller load.
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,

    /// Name of the total in its JSON (default: "merge of N shards").
    #[arg(long, value_name = "TEXT")]
    pub tag: Option<String>,

    /// Print one JSON object (blast's shape, plus "shards" and "runs") instead of
    /// the tables (and an error as {"error": "..."}).
    #[arg(long)]
    pub json: bool,
}

/// Print the completion script of a shell for lsbaws.
///
/// Made from the same definitions as the flags, so it always matches this build:
/// commands, flags, their values (reaper modes, shells, files), the command after
/// `--`. Install it where the shell looks for completions (see the examples).
#[derive(Debug, clap::Args)]
#[command(after_help = help::after_help("completions"))]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// The commands that have a manual page, `lsbaws-COMMAND(1)` (`help` has none).
pub const MAN_PAGES: [&str; 7] = [
    "serve",
    "blast",
    "audit",
    "smoke",
    "merge",
    "completions",
    "man",
];

/// Print a manual page (roff): lsbaws's, or a command's.
///
/// The page holds the command's description, every flag, its exit status and
/// examples, as `--help` does, for man(1) to format.
#[derive(Debug, clap::Args)]
#[command(after_help = help::after_help("man"))]
pub struct ManArgs {
    /// The command whose page to print, lsbaws-COMMAND(1) (default: lsbaws(1)).
    #[arg(value_name = "COMMAND", value_parser = MAN_PAGES)]
    pub command: Option<String>,
}

/// The size and bounds of a burst: the flags `blast` and `smoke` share, so that
/// smoke builds its blast from parsed values through blast's own validation.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Clients released at the same instant.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub max_clients: u64,

    /// Connections each client makes, one after another (not with --duration).
    #[arg(
        long,
        default_value_t = 1,
        value_name = "M",
        conflicts_with = "duration"
    )]
    pub max_conns: u64,

    /// Loop each client until this much time has passed, instead of --max-conns.
    ///
    /// No request starts after it; one in flight then runs to its end or its
    /// --timeout, so a run lasts up to DURATION + --timeout.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,

    /// Tokio worker threads (default: the number of cores).
    #[arg(long, value_name = "T")]
    pub threads: Option<usize>,

    /// Bound on each request: its connect, write and read.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_a_man_page_and_help_sections() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
        assert_eq!(names, MAN_PAGES);
        for name in std::iter::once("").chain(MAN_PAGES) {
            assert!(!help::sections(name).is_empty(), "{name:?}");
        }
    }
}
