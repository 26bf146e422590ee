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
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;

use crate::Outcome;
use crate::audit::{AuditConfig, AuditReport, Scope};
use crate::blast::{BlastConfig, BlastReport};
use crate::cli::{ReaperArg, SmokeArgs};

/// How many of the server's last output lines are kept for error messages.
const TAIL_LINES: usize = 20;

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
    /// Blast settings, resolved once the server's address is known.
    pub clients: u64,
    pub conns: u64,
    pub duration: Option<Duration>,
    pub timeout: Duration,
    pub threads: Option<usize>,
    pub max_errors: u64,
    pub quiet: bool,
}

impl SmokeConfig {
    pub fn from_args(args: &SmokeArgs) -> anyhow::Result<SmokeConfig> {
        ensure!(args.max_clients > 0, "--max-clients must be at least 1");
        ensure!(args.max_conns > 0, "--max-conns must be at least 1");
        ensure!(!args.timeout.is_zero(), "--timeout must be more than 0");
        ensure!(
            !args.ready_timeout.is_zero(),
            "--ready-timeout must be more than 0"
        );
        let server = if args.command.is_empty() {
            ensure!(
                args.port.is_none(),
                "--port applies to a server command (after --)"
            );
            ServerSpec::BuiltIn {
                reaper: args.reaper,
                cgi: args.cgi.clone(),
            }
        } else {
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
            clients: args.max_clients,
            conns: args.max_conns,
            duration: args.duration,
            timeout: args.timeout,
            threads: args.threads,
            max_errors: args.max_errors,
            quiet: args.quiet,
        })
    }
}

/// A free loopback port: bound, read, released. Another process could take it
/// in between; the ready check then fails clearly rather than testing the wrong
/// server, since the command's own bind fails.
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
    let mut out = std::io::stdout().lock();
    if config.json {
        crate::report::smoke::json(&report, &mut out)?;
    } else {
        crate::report::smoke::table(&report, &mut out)?;
    }
    std::io::Write::flush(&mut out)?;
    if let Some(path) = &config.junit {
        let mut file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        crate::report::smoke::junit(&report, &mut file)
            .with_context(|| format!("writing {}", path.display()))?;
    }
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
    let mut server = ServerProcess::start(config)?;
    let url = match &config.url {
        Some(url) => url.clone(),
        None => format!("http://{}/{}", server.addr, server.path),
    };
    let addr = match &config.url {
        Some(url) => url_addr(url)?,
        None => server.addr,
    };
    if !matches!(config.server, ServerSpec::BuiltIn { .. }) || config.url.is_some() {
        // The built-in server's ready line is printed once it is armed; any other
        // server is ready when its port is.
        server.wait_ready(addr, config.ready_timeout)?;
    }

    let mut blast = BlastConfig::for_url(&url, config.clients)?;
    blast.conns_per_client = config.conns;
    blast.duration = config.duration;
    blast.timeout = config.timeout;
    blast.connect_timeout = blast.connect_timeout.min(config.timeout);
    blast.max_errors = config.max_errors;
    if let Some(threads) = config.threads {
        blast.threads = threads;
    }
    let progress =
        !config.json && !config.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let blast_report = crate::blast::run_blast(&blast, progress)?;

    // Audit while the server still runs: its zombies are only visible as its children.
    let died = server.try_exit();
    let audit = match died {
        Some(_) => None,
        None => {
            let mut audit = AuditConfig::new(Scope::Tree(server.pid as i32));
            audit.settle = config.settle;
            audit.max_zombies = config.max_zombies;
            // The server can exit between the check above and the scan; then
            // there is nothing left to audit, which the verdict reports.
            crate::audit::settle(&audit).ok()
        }
    };
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
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            let text = line.trim_end().to_string();
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
                let mut argv = vec![
                    "serve",
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
            ServerSpec::Command { argv, .. } => {
                let (program, rest) = argv.split_first().context("empty server command")?;
                let mut cmd = Command::new(program);
                cmd.args(rest);
                (cmd, argv.join(" "), "")
            }
        };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start the server `{argv_display}`"))?;
        let pid = child.id();
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
            let ready = match listening(addr.port()) {
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

    /// SIGTERM, up to `grace` for it to exit, then SIGKILL; reaps it and kills any
    /// descendant that outlived it. Returns its status and whether it exited
    /// within the grace period.
    fn stop(&mut self, grace: Duration) -> (Option<ExitStatus>, bool) {
        // Its descendants are listed while they are still its: once it is gone
        // they are re-parented and can no longer be told from anyone else's.
        let descendants = descendants_of(self.pid);
        let pid = Pid::from_raw(self.pid as i32);
        if self.try_exit().is_none() {
            let _ = kill(pid, Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while self.try_exit().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let graceful = self.exit.is_some();
        if !graceful {
            let _ = kill(pid, Signal::SIGKILL);
            if let Some(child) = self.child.as_mut() {
                self.exit = child.wait().ok();
            }
        }
        for d in descendants {
            let _ = kill(Pid::from_raw(d), Signal::SIGKILL);
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
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

/// Every live descendant of `pid`, from one scan of /proc.
fn descendants_of(pid: u32) -> Vec<i32> {
    let Ok(procs) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let parents: Vec<(i32, i32)> = procs
        .flatten()
        .filter_map(|p| p.stat().ok())
        .map(|s| (s.pid, s.ppid))
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![pid as i32];
    while let Some(parent) = frontier.pop() {
        for &(child, ppid) in &parents {
            if ppid == parent {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found
}
