//! `lsbaws smoke`: the CI job in one command.
//!
//! Owns the orchestration: start the server (the built-in `serve`, re-executed as
//! a separate process, or the user's command with `{port}` filled in), wait until
//! it accepts, blast it, audit its whole process tree, stop it (TERM, grace,
//! KILL), reap it, and judge. Must never fork this process (it has threads: the
//! pipe readers and blast's runtime) and must never leave a process or a zombie
//! of its own behind, whatever fails.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::Outcome;
use crate::audit::{AuditConfig, AuditReport, Scope};
use crate::blast::{BlastConfig, BlastReport};
use crate::cli::{ReaperArg, SmokeArgs};

/// The server's process group while it runs (0: none), for the signal thread.
static SERVER_GROUP: AtomicI32 = AtomicI32::new(0);

/// On SIGINT, SIGTERM or SIGHUP (Ctrl-C, a cancelled CI job), stops the server's
/// process group and whatever escaped it, as smoke's normal end does, then exits
/// 128 + the signal. (SIGKILL cannot be caught: then only PDEATHSIG reaches the
/// server itself.)
fn stop_on_signals() {
    let Ok(mut signals) = Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let group = SERVER_GROUP.load(Ordering::SeqCst);
            if group > 0 {
                let group = Pid::from_raw(-group);
                let _ = kill(group, Signal::SIGTERM);
                let deadline = Instant::now() + Duration::from_secs(1);
                while kill(group, None).is_ok() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = kill(group, Signal::SIGKILL);
            }
            reap_escapees();
            std::process::exit(128 + sig);
        }
    });
}

/// How many of the server's last output lines are kept for error messages.
const TAIL_LINES: usize = 20;
/// Longest line kept of the server's output.
const MAX_LINE: usize = 4096;

/// Which server to test.
#[derive(Debug, Clone)]
pub enum ServerSpec {
    /// `lsbaws serve` re-executed from this binary.
    BuiltIn {
        reaper: ReaperArg,
        cgi: Option<PathBuf>,
    },
    /// The user's command; `{port}` already replaced.
    Command { argv: Vec<String>, port: u16 },
}

/// A validated smoke run.
#[derive(Debug, Clone)]
pub struct SmokeConfig {
    pub server: ServerSpec,
    /// Overrides the URL blasted (and the address waited for).
    pub url: Option<String>,
    pub ready_timeout: Duration,
    pub grace: Duration,
    pub settle: Duration,
    pub max_zombies: u64,
    pub json: bool,
    pub junit: Option<PathBuf>,
    /// `lsbaws blast` flags for the burst; the URL is added once the server's
    /// address is known. Validated up front, before any server starts.
    pub blast_flags: Vec<String>,
    pub max_errors: u64,
    pub quiet: bool,
}

impl SmokeConfig {
    pub fn from_args(args: &SmokeArgs) -> anyhow::Result<SmokeConfig> {
        let mut blast_flags = vec![
            "--max-clients".to_string(),
            args.max_clients.to_string(),
            "--timeout".to_string(),
            format!("{}ns", args.timeout.as_nanos()),
            "--max-errors".to_string(),
            args.max_errors.to_string(),
        ];
        match args.duration {
            Some(d) => {
                blast_flags.extend(["--duration".to_string(), format!("{}ns", d.as_nanos())])
            }
            None => blast_flags.extend(["--max-conns".to_string(), args.max_conns.to_string()]),
        }
        if let Some(t) = args.threads {
            blast_flags.extend(["--threads".to_string(), t.to_string()]);
        }
        // The same checks as `lsbaws blast` (zero clients, --threads 0, ...), and
        // before the server starts rather than after.
        BlastConfig::for_url("http://127.0.0.1:1/", &blast_flags)?;
        ensure!(
            !args.ready_timeout.is_zero(),
            "--ready-timeout must be more than 0"
        );
        ensure!(args.port != Some(0), "--port must be from 1 to 65535");
        let server = if args.command.is_empty() {
            ensure!(
                args.port.is_none(),
                "--port applies to a server command (after --)"
            );
            if let Some(url) = &args.url {
                ensure!(
                    url.contains("{port}"),
                    "--url for the built-in server needs {{port}} where its port goes, e.g. http://127.0.0.1:{{port}}/path"
                );
            }
            ServerSpec::BuiltIn {
                reaper: args.reaper.unwrap_or(ReaperArg::Loop),
                cgi: args.cgi.clone(),
            }
        } else {
            ensure!(
                args.reaper.is_none(),
                "--reaper applies to the built-in server, not to a server command"
            );
            ensure!(
                args.cgi.is_none(),
                "--cgi applies to the built-in server, not to a server command"
            );
            let has_placeholder = args.command.iter().any(|a| a.contains("{port}"));
            ensure!(
                has_placeholder || args.port.is_some() || args.url.is_some(),
                "the server command has no {{port}}: put {{port}} where it takes its port, or say where it listens with --port or --url"
            );
            let port = match args.port {
                Some(p) => p,
                None => free_port()?,
            };
            let argv = args
                .command
                .iter()
                .map(|a| a.replace("{port}", &port.to_string()))
                .collect();
            ServerSpec::Command { argv, port }
        };
        Ok(SmokeConfig {
            server,
            url: args.url.clone(),
            ready_timeout: args.ready_timeout,
            grace: args.grace,
            settle: args.settle,
            max_zombies: args.max_zombies,
            json: args.json,
            junit: args.junit.clone(),
            blast_flags,
            max_errors: args.max_errors,
            quiet: args.quiet,
        })
    }
}

/// A free loopback port: bound, read, released. Another process could take it
/// in between; [`ServerProcess::start`] checks again that the port is free right
/// before it starts the command, so a clash is an error, not a test of the
/// wrong server.
fn free_port() -> anyhow::Result<u16> {
    let probe = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(probe.local_addr().context("finding a free port")?.port())
}

/// What a smoke run found: plain data for the table, JSON and JUnit renderers.
#[derive(Debug, Clone, Serialize)]
pub struct SmokeReport {
    /// The server command line as run.
    pub server: String,
    pub server_pid: u32,
    pub url: String,
    pub blast: BlastReport,
    /// None when the server died before it could be audited.
    pub audit: Option<AuditReport>,
    /// How the server ended: `exit status 0`, `killed by SIGKILL after the grace period`.
    pub server_exit: String,
    /// The built-in server's own summary line, when it printed one.
    pub server_summary: Option<String>,
    pub max_errors: u64,
    pub max_zombies: u64,
    pub pass: bool,
    /// Why it failed; empty on PASS.
    pub reasons: Vec<String>,
    /// Wall-clock seconds of the whole job.
    pub elapsed_s: f64,
}

impl SmokeReport {
    /// `PASS` or `FAIL: reason; reason`.
    pub fn verdict(&self) -> String {
        if self.pass {
            "PASS".to_string()
        } else {
            format!("FAIL: {}", self.reasons.join("; "))
        }
    }

    pub fn failed_requests(&self) -> u64 {
        self.blast.errors_total()
    }

    pub fn zombies(&self) -> Option<u64> {
        self.audit.as_ref().map(|a| a.count)
    }
}

pub fn run(args: &SmokeArgs) -> anyhow::Result<Outcome> {
    let config = SmokeConfig::from_args(args)?;
    let report = smoke(&config)?;
    // The JUnit file first: a failure to write it is exit 2, and must not
    // follow a PASS already printed.
    if let Some(path) = &config.junit {
        let mut file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        crate::report::smoke::junit(&report, &mut file)
            .and_then(|()| std::io::Write::flush(&mut file))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    if config.json {
        crate::report::smoke::json(&report, &mut out)?;
    } else {
        crate::report::smoke::table(&report, &mut out)?;
    }
    std::io::Write::flush(&mut out)?;
    Ok(if report.pass {
        Outcome::Pass
    } else {
        Outcome::Finding
    })
}

/// Runs the whole job. Errors (exit 2) only when the server could not be started
/// or reached, or the blast could not be set up.
pub fn smoke(config: &SmokeConfig) -> anyhow::Result<SmokeReport> {
    let started = Instant::now();
    // Orphans of the server (daemons, children of a server that died) come to
    // smoke instead of init, so smoke can stop and reap them: it leaves nothing.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    stop_on_signals();
    let mut server = ServerProcess::start(config)?;
    let url = match &config.url {
        Some(url) => url.replace("{port}", &server.addr.port().to_string()),
        None => format!("http://{}/{}", server.addr, server.path),
    };
    let addr = match &config.url {
        Some(_) => url_addr(&url)?,
        None => server.addr,
    };
    if !matches!(config.server, ServerSpec::BuiltIn { .. }) {
        // The built-in server's ready line is printed once it is armed; any other
        // server is ready when its port is.
        server.wait_ready(addr, config.ready_timeout)?;
    }

    let blast = BlastConfig::for_url(&url, &config.blast_flags)?;
    let progress =
        !config.json && !config.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let blast_report = crate::blast::run_blast(&blast, progress)?;

    // Audit while the server still runs: its zombies are only visible as its
    // children. The roots are the process smoke started and whoever owns the
    // listening socket: a launcher script may have daemonized the real server
    // out of its own tree.
    let mut roots = Vec::new();
    let early_exit = server.try_exit();
    if early_exit.is_none() {
        roots.push(server.pid as i32);
    }
    for owner in listener_owners(addr.port()) {
        // An owner inside the server's own tree is audited with it already.
        if !roots.contains(&owner) && !descends_from(owner, server.pid as i32) {
            roots.push(owner);
        }
    }
    // A server that exited (or vanishes mid-scan) leaves nothing to audit,
    // which the verdict reports.
    let audit = audit_roots(&roots, config.settle, config.max_zombies);
    let (exit, graceful) = server.stop(config.grace);
    let server_exit = describe_exit(exit, graceful);

    let mut reasons = Vec::new();
    let failed = blast_report.errors_total();
    if failed > config.max_errors {
        reasons.push(format!(
            "{failed} of {} requests failed (limit {})",
            blast_report.connections, config.max_errors
        ));
    }
    match &audit {
        Some(a) if a.count > config.max_zombies => {
            reasons.push(format!(
                "{} zombies left (limit {})",
                a.count, config.max_zombies
            ));
        }
        Some(_) => {}
        None => reasons.push(format!(
            "the server exited during the run ({server_exit}): nothing to audit"
        )),
    }
    if let (Some(status), Some(_)) = (early_exit, &audit) {
        // A launcher that daemonized the server exits 0; a crash does not.
        if !status.success() {
            reasons.push(format!(
                "the server exited during the run ({})",
                describe_exit(Some(status), true)
            ));
        }
    }
    let clean_exit = exit.is_some_and(|s| s.success()) && graceful;
    if audit.is_some() && !clean_exit && matches!(config.server, ServerSpec::BuiltIn { .. }) {
        // The built-in server promises a clean exit on SIGTERM; other servers
        // may die of the signal by design, so theirs is only reported.
        reasons.push(format!(
            "the server did not shut down cleanly ({server_exit})"
        ));
    }
    Ok(SmokeReport {
        server: server.command_line.clone(),
        server_pid: server.pid,
        url,
        blast: blast_report,
        audit,
        server_exit,
        server_summary: server.summary_line(),
        max_errors: config.max_errors,
        max_zombies: config.max_zombies,
        pass: reasons.is_empty(),
        reasons,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

fn url_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--url {url:?}: only http:// URLs are supported"))?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    let hostport = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    hostport
        .to_socket_addrs()
        .with_context(|| format!("--url {url:?}: cannot resolve {hostport}"))?
        .next()
        .with_context(|| format!("--url {url:?}: {hostport} has no address"))
}

fn describe_exit(status: Option<ExitStatus>, graceful: bool) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        None => "unknown (could not be reaped)".to_string(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(9)) if !graceful => "killed by SIGKILL after the grace period".to_string(),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => format!("{s}"),
        },
    }
}

/// The server under test, owned: dropping it kills and reaps it and whatever it
/// started, so no error path leaves a process behind.
struct ServerProcess {
    child: Option<Child>,
    pid: u32,
    /// Where it listens (127.0.0.1:port, or the built-in's announced address).
    addr: SocketAddr,
    /// The path blasted: the article's `/hello` for the built-in, `/` otherwise.
    path: &'static str,
    command_line: String,
    stdout_tail: Arc<Mutex<VecDeque<String>>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    readers: Vec<JoinHandle<()>>,
    /// Set once the child has been reaped.
    exit: Option<ExitStatus>,
}

/// Copies a pipe's lines into a bounded tail; the first line goes to `first`
/// (the built-in's ready line).
fn pump(
    stream: impl Read + Send + 'static,
    tail: Arc<Mutex<VecDeque<String>>>,
    first: Option<mpsc::Sender<String>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut first = first;
        let mut line = Vec::new();
        // Bytes, not String: one non-UTF-8 byte must not stop the pump, or the
        // server's next write would meet a closed pipe.
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            line.truncate(MAX_LINE);
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            line.clear();
            if let Some(tx) = first.take() {
                let _ = tx.send(text);
                continue;
            }
            if let Ok(mut tail) = tail.lock() {
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(text);
            }
        }
    })
}

impl ServerProcess {
    fn start(config: &SmokeConfig) -> anyhow::Result<ServerProcess> {
        let (mut cmd, argv_display, path) = match &config.server {
            ServerSpec::BuiltIn { reaper, cgi } => {
                // Re-exec this binary: smoke has threads, so it must never fork
                // itself into a server.
                let exe = std::env::current_exe().context("locating the lsbaws binary")?;
                let reaper = clap::ValueEnum::to_possible_value(reaper)
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_else(|| "loop".to_string());
                // The server's own grace must end well within smoke's, or smoke
                // kills it before it can clean up and print its summary.
                let server_grace = format!("{}ms", (config.grace / 2).as_millis());
                let mut argv = vec![
                    "serve",
                    "--grace",
                    &server_grace,
                    "--bind",
                    "127.0.0.1:0",
                    "--quiet",
                    "--reaper",
                    &reaper,
                ]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>();
                if let Some(cgi) = cgi {
                    argv.push("--cgi".into());
                    argv.push(cgi.display().to_string());
                }
                let mut cmd = Command::new(&exe);
                cmd.args(&argv);
                (cmd, format!("lsbaws {}", argv.join(" ")), "hello")
            }
            ServerSpec::Command { argv, port } => {
                // Anything already listening there would pass the ready check and
                // be blasted and audited in the server's place.
                if let Err(e) = TcpListener::bind(("127.0.0.1", *port)) {
                    bail!(
                        "port {port} on 127.0.0.1 is not free ({e}): another process would be tested in place of the server"
                    );
                }
                let (program, rest) = argv.split_first().context("empty server command")?;
                let mut cmd = Command::new(program);
                cmd.args(rest);
                (cmd, argv.join(" "), "")
            }
        };
        // Its own process group, so that stopping it reaches whatever it started;
        // and SIGTERM when smoke dies (a cancelled CI job), so it never outlives us.
        cmd.process_group(0);
        lsbaws_server::die_with_parent(&mut cmd, nix::libc::SIGTERM);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start the server `{argv_display}`"))?;
        let pid = child.id();
        SERVER_GROUP.store(pid as i32, Ordering::SeqCst);
        let stdout = child.stdout.take().context("server stdout")?;
        let stderr = child.stderr.take().context("server stderr")?;
        let stdout_tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let built_in = matches!(config.server, ServerSpec::BuiltIn { .. });
        let (ready_tx, ready_rx) = mpsc::channel();
        let readers = vec![
            pump(stdout, stdout_tail.clone(), built_in.then_some(ready_tx)),
            pump(stderr, stderr_tail.clone(), None),
        ];
        let mut server = ServerProcess {
            child: Some(child),
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            path,
            command_line: argv_display,
            stdout_tail,
            stderr_tail,
            readers,
            exit: None,
        };
        server.addr = match &config.server {
            ServerSpec::Command { port, .. } => SocketAddr::from(([127, 0, 0, 1], *port)),
            ServerSpec::BuiltIn { .. } => match ready_rx.recv_timeout(config.ready_timeout) {
                Ok(line) => crate::serve::parse_ready_line(&line).with_context(|| {
                    format!("the built-in server printed {line:?}, not its ready line")
                })?,
                Err(_) => bail!("{}", server.failure("did not announce its address")),
            },
        };
        Ok(server)
    }

    /// Polls until `addr` accepts a TCP connection, the server exits, or `limit`.
    fn wait_ready(&mut self, addr: SocketAddr, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if self.try_exit().is_some() {
                bail!(
                    "{}",
                    self.failure(&format!("exited before accepting connections on {addr}"))
                );
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "{}",
                    self.failure(&format!(
                        "did not accept connections on {addr} within {limit:?} (--ready-timeout)"
                    ))
                );
            }
            // /proc/net describes this network namespace only: ask it about
            // loopback addresses, connect to anything else.
            let table = if addr.ip().is_loopback() {
                listening(addr.port())
            } else {
                None
            };
            let ready = match table {
                Some(listening) => listening,
                // No /proc/net here: probing with a connection is the fallback.
                None => {
                    TcpStream::connect_timeout(&addr, left.min(Duration::from_millis(500))).is_ok()
                }
            };
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50).min(left));
        }
    }

    /// An error message naming the server, how it ended, and its last stderr lines.
    fn failure(&mut self, what: &str) -> String {
        let exit = self
            .try_exit()
            .map(|s| format!(" ({})", describe_exit(Some(s), true)))
            .unwrap_or_default();
        // Let the readers catch the last lines of a server that just died.
        std::thread::sleep(Duration::from_millis(50));
        let tail: Vec<String> = self
            .stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        let mut msg = format!("the server `{}` {what}{exit}", self.command_line);
        if tail.is_empty() {
            msg.push_str("; it printed nothing on stderr");
        } else {
            msg.push_str("; its last stderr lines:");
            for line in tail.iter().rev().take(10).rev() {
                msg.push_str("\n  ");
                msg.push_str(line);
            }
        }
        msg
    }

    /// Reaps the server if it has exited.
    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
        }
        self.exit
    }

    /// SIGTERM, up to `grace` for it to exit, then SIGKILL; reaps it, then kills
    /// what is left of its process group and any escaped descendant re-parented
    /// to smoke (a subreaper), and reaps those too. Returns the server's status
    /// and whether it exited within the grace period.
    fn stop(&mut self, grace: Duration) -> (Option<ExitStatus>, bool) {
        let pid = Pid::from_raw(self.pid as i32);
        let group = Pid::from_raw(-(self.pid as i32));
        if self.try_exit().is_none() {
            let _ = kill(pid, Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while self.try_exit().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let graceful = self.exit.is_some();
        if !graceful {
            let _ = kill(group, Signal::SIGKILL);
            if let Some(child) = self.child.as_mut() {
                self.exit = child.wait().ok();
            }
        }
        // The group outlives its leader: children it left running.
        let _ = kill(group, Signal::SIGKILL);
        SERVER_GROUP.store(0, Ordering::SeqCst);
        reap_escapees();
        // A daemon that escaped with the server's stdout would keep a reader
        // blocked forever: wait a moment, then leave the readers be.
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for reader in self.readers.drain(..) {
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
        (self.exit, graceful)
    }

    /// The built-in server's `Shutdown: ...` line, if it printed one.
    fn summary_line(&self) -> Option<String> {
        let tail = self.stdout_tail.lock().ok()?;
        tail.iter()
            .rev()
            .find(|l| l.starts_with("Shutdown: "))
            .cloned()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.exit.is_none() && self.child.is_some() {
            self.stop(Duration::ZERO);
        }
    }
}

/// Whether a socket on this machine listens on `port`, from /proc/net/tcp{,6}.
/// Asked instead of connecting: a probe connection would cost a forking server
/// a child (and a leaky one a zombie) and skew the very counts smoke reports.
/// None when neither table can be read.
fn listening(port: u16) -> Option<bool> {
    let want = format!(":{port:04X} ");
    let mut readable = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        readable = true;
        // Columns: sl local_address rem_address st ...; st 0A is LISTEN.
        let found = text.lines().skip(1).any(|line| {
            let mut cols = line.split_ascii_whitespace().skip(1);
            let local = cols.next().unwrap_or("");
            let state = cols.nth(1).unwrap_or("");
            state == "0A" && format!("{local} ").ends_with(&want)
        });
        if found {
            return Some(true);
        }
    }
    readable.then_some(false)
}

/// Audits the process trees under `roots` as one, re-scanning until the zombies
/// are within `max_zombies` or `settle` has passed. None when no root exists.
fn audit_roots(roots: &[i32], settle: Duration, max_zombies: u64) -> Option<AuditReport> {
    let deadline = Instant::now() + settle;
    loop {
        let mut merged: Option<AuditReport> = None;
        for &root in roots {
            let mut config = AuditConfig::new(Scope::Tree(root));
            config.max_zombies = max_zombies;
            let Ok(report) = crate::audit::audit(&config) else {
                continue; // this root is gone
            };
            merged = Some(match merged {
                None => report,
                Some(mut m) => {
                    for z in report.zombies {
                        if !m.zombies.iter().any(|y| y.pid == z.pid) {
                            m.zombies.push(z);
                        }
                    }
                    m.live_children =
                        Some(m.live_children.unwrap_or(0) + report.live_children.unwrap_or(0));
                    m.younger += report.younger;
                    m.count = m.zombies.len() as u64;
                    m
                }
            });
        }
        let now = Instant::now();
        match merged {
            Some(m) if m.count > max_zombies && now < deadline => {
                std::thread::sleep(Duration::from_millis(50).min(deadline - now));
            }
            other => return other,
        }
    }
}

/// Pids of the processes holding the socket that listens on `port` (from
/// /proc/net/tcp{,6} and every process's fd table). Empty when unknown.
fn listener_owners(port: u16) -> Vec<i32> {
    let want = format!(":{port:04X}");
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_ascii_whitespace().collect();
            // Columns: sl local rem st tx:rx tr:when retrnsmt uid timeout inode.
            if cols.len() > 9 && cols[3] == "0A" && cols[1].ends_with(&want) {
                inodes.push(format!("socket:[{}]", cols[9]));
            }
        }
    }
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut owners = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return owners;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue; // gone, or not ours to read
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|t| inodes.iter().any(|i| t.as_os_str() == i.as_str()))
        });
        if holds {
            owners.push(pid);
        }
    }
    owners
}

/// Kills and reaps every child smoke has once the server is reaped: the server's
/// orphans re-parented to smoke, which is a child subreaper. Safe to wait on any
/// child now, since the server's own status has been collected.
fn reap_escapees() {
    // Killing one escapee (a daemonized master) re-parents its own children to
    // smoke only afterwards: repeat until none is left, within a bound.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let pids = own_children();
        if pids.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "lsbaws: could not stop {} processes the server left behind: {pids:?}",
                pids.len()
            );
            break;
        }
        for pid in &pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        for pid in pids {
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
        }
    }
    // And any that were already zombies when listed or exited since.
    while let Ok(status) = nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
    {
        if status == nix::sys::wait::WaitStatus::StillAlive {
            break;
        }
    }
}

/// This process's children, from every thread's `children` file.
fn own_children() -> Vec<i32> {
    let mut pids = Vec::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            pids.extend(
                list.split_ascii_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    pids
}

/// Whether `pid` is a descendant of `ancestor`, following parent links in /proc.
fn descends_from(pid: i32, ancestor: i32) -> bool {
    let mut current = pid;
    // Bounded: a chain of parents is short, and a vanished link ends the walk.
    for _ in 0..64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{current}/stat")) else {
            return false;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_ascii_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok())
            .unwrap_or(0);
        if ppid == ancestor {
            return true;
        }
        if ppid <= 1 {
            return false;
        }
        current = ppid;
    }
    false
}
