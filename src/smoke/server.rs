//! The server under test as a process: start it (the built-in `serve`
//! re-executed, or the user's command), wait until it is ready, keep a bounded
//! tail of its output, stop it (TERM, grace, KILL of its process group).
//!
//! Owns the child process and its pipes. Must never fork this process (it has
//! threads: these pipe readers and blast's runtime), never wait without a bound,
//! never hold more of the server's output than a bounded tail, and never let a
//! [`ServerProcess`] be dropped with the server still running.

use std::collections::VecDeque;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{ServerSpec, SmokeConfig};
use crate::shutdown::Shutdown;

/// How many of the server's last output lines are kept for error messages.
const TAIL_LINES: usize = 20;
/// Longest line kept of the server's output; the rest of a longer line is
/// dropped as it arrives, so a server that never prints a newline costs no
/// memory.
const MAX_LINE: usize = 4096;
/// How often waits look at the server, the clock and the stop request.
const POLL: Duration = Duration::from_millis(20);
/// The most a server is given to exit once a stop signal came (also in the
/// middle of its grace): the CI job that sent it may kill smoke soon.
pub const STOP_GRACE: Duration = Duration::from_secs(1);
/// How long a server killed by a signal during the ready wait may precede the
/// stop request that the same signal brings smoke.
const SIGNAL_RACE: Duration = Duration::from_millis(200);

/// The processes below smoke (the subreaper: the server and anything it
/// daemonized) that hold a socket listening where `addr` is reached.
pub fn owners_below_smoke(addr: SocketAddr) -> Vec<i32> {
    owners_below_smoke_opt(addr).unwrap_or_default()
}

/// As [`owners_below_smoke`]; None when the TCP tables cannot be read.
fn owners_below_smoke_opt(addr: SocketAddr) -> Option<Vec<i32>> {
    let inodes: Vec<u64> = crate::proc::listeners(addr.port())?
        .iter()
        .filter(|l| l.serves(addr))
        .map(|l| l.inode)
        .collect();
    if inodes.is_empty() {
        return Some(Vec::new());
    }
    let below: Vec<i32> = crate::proc::descendants(std::process::id() as i32)
        .ok()?
        .iter()
        .map(|p| p.pid)
        .collect();
    Some(crate::proc::holders(&inodes, &below))
}

/// How a start ended.
pub enum Start {
    Ready(ServerProcess),
    /// A stop signal came first; the server (if it started) is here to be
    /// stopped and reported.
    Interrupted(Option<ServerProcess>),
}

/// The server under test, owned: dropping it kills its process group and reaps
/// it, so no error path leaves it running.
pub struct ServerProcess {
    child: Option<Child>,
    pub pid: u32,
    /// Where it listens (127.0.0.1:port, or the built-in's announced address;
    /// port 0 until known).
    pub addr: SocketAddr,
    /// The path blasted: the article's `/hello` for the built-in, `/` otherwise.
    pub path: &'static str,
    /// The command line as run.
    pub command_line: String,
    stdout_tail: Arc<Mutex<VecDeque<String>>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    readers: Vec<JoinHandle<()>>,
    /// Set once the child has been reaped.
    exit: Option<ExitStatus>,
    /// Its status when it had exited before smoke asked it to stop: a server
    /// that dies on its own during the run (a crash) is a finding.
    pub exited_unasked: Option<ExitStatus>,
}

/// Copies a pipe's lines into a bounded tail; the first line goes to `first`
/// (the built-in's ready line). Reads in blocks, so a line without end costs
/// at most `MAX_LINE` bytes.
fn pump(
    mut stream: impl Read + Send + 'static,
    tail: Arc<Mutex<VecDeque<String>>>,
    first: Option<mpsc::Sender<String>>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("lsbaws-pump".into())
        .spawn(move || {
            let mut first = first;
            let mut line = Vec::with_capacity(256);
            let mut block = [0u8; 8192];
            let emit = |line: &mut Vec<u8>, first: &mut Option<mpsc::Sender<String>>| {
                // Bytes, not String: one non-UTF-8 byte must not stop the pump, or
                // the server's next write would meet a closed pipe.
                let text = String::from_utf8_lossy(line).trim_end().to_string();
                line.clear();
                if let Some(tx) = first.take() {
                    let _ = tx.send(text);
                    return;
                }
                if let Ok(mut tail) = tail.lock() {
                    if tail.len() == TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(text);
                }
            };
            loop {
                let n = match stream.read(&mut block) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                for piece in block[..n].split_inclusive(|&b| b == b'\n') {
                    let room = MAX_LINE.saturating_sub(line.len());
                    line.extend_from_slice(&piece[..piece.len().min(room)]);
                    if piece.ends_with(b"\n") {
                        emit(&mut line, &mut first);
                    }
                }
            }
            if !line.is_empty() {
                emit(&mut line, &mut first);
            }
        })
}

impl ServerProcess {
    /// Starts the server and, for the built-in one, waits for its ready line
    /// (other servers are waited for with [`Self::wait_ready`]). Errors when it
    /// cannot start or never announces itself.
    pub fn start(config: &SmokeConfig, shutdown: &Shutdown) -> anyhow::Result<Start> {
        let (mut cmd, command_line, path) = match &config.server {
            ServerSpec::BuiltIn { reaper, cgi } => {
                // Re-exec this binary: smoke has threads, so it must never fork
                // itself into a server.
                let exe = std::env::current_exe().context("locating the lsbaws binary")?;
                // The server's own grace must end well within smoke's, or smoke
                // kills it before it can clean up and print its summary.
                let server_grace = format!("{}ms", (config.grace / 2).as_millis());
                let mut argv: Vec<String> = [
                    "serve",
                    "--grace",
                    &server_grace,
                    "--bind",
                    "127.0.0.1:0",
                    "--quiet",
                    "--reaper",
                    reaper,
                ]
                .into_iter()
                .map(String::from)
                .collect();
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
        // and SIGTERM when smoke dies (a cancelled CI job), so it never outlives
        // us. PDEATHSIG follows the thread that forks: this is the main thread,
        // which lives as long as smoke.
        cmd.process_group(0);
        lsbaws_server::die_with_parent(&mut cmd, nix::libc::SIGTERM);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start the server `{}`",
                    crate::text::escape(&command_line)
                )
            })?;
        let pid = child.id();
        let stdout = child.stdout.take().context("server stdout")?;
        let stderr = child.stderr.take().context("server stderr")?;
        let stdout_tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let built_in = matches!(config.server, ServerSpec::BuiltIn { .. });
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut server = ServerProcess {
            child: Some(child),
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            path,
            command_line,
            stdout_tail: stdout_tail.clone(),
            stderr_tail: stderr_tail.clone(),
            readers: Vec::new(),
            exit: None,
            exited_unasked: None,
        };
        // Without its readers the server would block on a full pipe; no thread
        // to be had (RLIMIT_NPROC, a cgroup's pids.max) is an error, and the
        // server is stopped on the way out (drop).
        for (stream, tail, first) in [
            (
                Box::new(stdout) as Box<dyn Read + Send>,
                stdout_tail,
                built_in.then_some(ready_tx),
            ),
            (Box::new(stderr), stderr_tail, None),
        ] {
            let reader = pump(stream, tail, first)
                .context("cannot start a thread to read the server's output")?;
            server.readers.push(reader);
        }
        match &config.server {
            ServerSpec::Command { port, .. } => {
                server.addr = SocketAddr::from(([127, 0, 0, 1], *port));
            }
            ServerSpec::BuiltIn { .. } => {
                let deadline = Instant::now() + config.ready_timeout;
                let line = loop {
                    if shutdown.requested() {
                        return Ok(Start::Interrupted(Some(server)));
                    }
                    match ready_rx.recv_timeout(POLL) {
                        Ok(line) => break line,
                        Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                        Err(_) => bail!("{}", server.failure("did not announce its address")),
                    }
                };
                server.addr = lsbaws_server::parse_ready_line(&line).with_context(|| {
                    format!(
                        "the built-in server printed {:?}, not its ready line",
                        crate::text::escape(&line)
                    )
                })?;
            }
        }
        Ok(Start::Ready(server))
    }

    /// Polls until a process below smoke listens where `addr` is reached,
    /// the server fails, `limit` passes, or a stop is requested (then
    /// Ok(false)). A launcher that exits 0 is waited for further while it left
    /// a process behind (a daemon still starting); one that exits non-zero has
    /// failed. A listener not below smoke is someone else's, not the server.
    pub fn wait_ready(
        &mut self,
        addr: SocketAddr,
        limit: Duration,
        shutdown: &Shutdown,
    ) -> anyhow::Result<bool> {
        let deadline = Instant::now() + limit;
        loop {
            if shutdown.requested() {
                return Ok(false);
            }
            if self.accepts(addr, deadline) {
                return Ok(true);
            }
            if let Some(status) = self.try_exit() {
                // A stop signal sent to the whole group (systemd's
                // control-group kill, a terminal's Ctrl-C) reaches the server
                // and smoke together: the server's death is then no failure.
                if !status.success() && shutdown.sleep(SIGNAL_RACE) {
                    return Ok(false);
                }
                let alive_below = crate::proc::descendants(std::process::id() as i32)
                    .map(|d| d.iter().any(|p| !p.is_zombie()))
                    .unwrap_or(false);
                if !status.success() || !alive_below {
                    bail!(
                        "{}",
                        self.failure(&format!("exited before accepting connections on {addr}"))
                    );
                }
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
            shutdown.sleep(Duration::from_millis(50).min(left));
        }
    }

    /// Whether the server (a process below smoke) listens where `addr` is
    /// reached. For an address of this host the TCP tables say, without a
    /// connection (a probe would cost a forking server a child, and a leaky
    /// one a zombie); for another host, or without /proc/net, a connection
    /// is the only way to ask.
    fn accepts(&self, addr: SocketAddr, deadline: Instant) -> bool {
        if (addr.ip().is_loopback() || addr.ip().is_unspecified())
            && let Some(owners) = owners_below_smoke_opt(addr)
        {
            return !owners.is_empty();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        TcpStream::connect_timeout(
            &addr,
            left.clamp(Duration::from_millis(1), Duration::from_millis(500)),
        )
        .is_ok()
    }

    /// An error message naming the server, how it ended, and its last stderr
    /// lines, on one line (escaped: they come from another process).
    fn failure(&mut self, what: &str) -> String {
        // Let the readers catch the last lines of a server that just died.
        std::thread::sleep(Duration::from_millis(50));
        let exit = self
            .try_exit()
            .map(|s| format!(" ({})", describe_exit(Some(s), true)))
            .unwrap_or_default();
        let tail: Vec<String> = self
            .stderr_tail
            .lock()
            .map(|t| {
                t.iter()
                    .rev()
                    .take(3)
                    .rev()
                    .map(|l| crate::text::escape(l).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let mut msg = format!(
            "the server `{}` {what}{exit}",
            crate::text::escape(&self.command_line)
        );
        if tail.is_empty() {
            msg.push_str("; it printed nothing on stderr");
        } else {
            msg.push_str("; its last stderr lines: ");
            msg.push_str(&tail.join(" | "));
        }
        msg
    }

    /// Reaps the server if it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
        }
        self.exit
    }

    /// SIGTERM, up to `grace` for it to exit (less after a second stop
    /// request), then SIGKILL to its process group; reaps it. Returns its status
    /// and whether it exited within the grace period. What it leaves behind is
    /// the caller's to list and stop.
    pub fn stop(&mut self, grace: Duration, shutdown: &Shutdown) -> (Option<ExitStatus>, bool) {
        let pid = Pid::from_raw(self.pid as i32);
        if self.try_exit().is_none() {
            let _ = kill(pid, Signal::SIGTERM);
        } else if self.exited_unasked.is_none() {
            self.exited_unasked = self.exit;
        }
        let mut deadline = Instant::now() + grace;
        let mut stop_seen = shutdown.requested();
        while self.try_exit().is_none() && Instant::now() < deadline && !shutdown.urgent() {
            if !stop_seen && shutdown.requested() {
                // A stop signal now: nobody waits for a verdict any more, and
                // the job that sent it may kill smoke soon.
                stop_seen = true;
                deadline = deadline.min(Instant::now() + STOP_GRACE);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let graceful = self.exit.is_some();
        if !graceful {
            let _ = kill(Pid::from_raw(-(self.pid as i32)), Signal::SIGKILL);
            // SIGKILL is prompt unless the process sleeps uninterruptibly: bound it.
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.try_exit().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        (self.exit, graceful)
    }

    /// Kills what is left of the server's process group (children it left
    /// running) and lets the pipe readers finish. A daemon that escaped with
    /// the server's stdout would keep a reader blocked: wait a moment, then
    /// leave that reader be.
    pub fn kill_group(&mut self) {
        let _ = kill(Pid::from_raw(-(self.pid as i32)), Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for reader in self.readers.drain(..) {
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
    }

    /// The built-in server's `Shutdown: ...` line, if it printed one.
    pub fn summary_line(&self) -> Option<String> {
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
            self.stop(Duration::ZERO, &Shutdown::new());
        }
        self.kill_group();
    }
}

/// How the server ended, in words.
pub fn describe_exit(status: Option<ExitStatus>, graceful: bool) -> String {
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
