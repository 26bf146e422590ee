//! Shared test support: run the real `lsbaws` binary, own the processes a test
//! starts, and read /proc directly (so serve's tests do not depend on `audit`).

#![allow(dead_code)]

pub mod listener;
pub mod logged;

/// A `sh` fragment for launcher scripts: waits (at most 20 s) until something
/// listens on `{port}` on 127.0.0.1, read from /proc/net/tcp so that no probe
/// connection reaches the server.
pub const WAIT_LISTEN: &str = "i=0; while [ $i -lt 200 ] && ! grep -q \":$(printf %04X {port}) 00000000:0000 0A\" /proc/net/tcp; do sleep 0.1; i=$((i+1)); done";

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Path of the binary under test: this build's, or `LSBAWS_TEST_BIN` (used to
/// show that a regression test fails on an older build).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("LSBAWS_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_lsbaws").into())
    })
}

/// Runs `lsbaws ARGS` to completion with a time bound; returns (status, stdout, stderr).
pub fn lsbaws(args: &[&str], limit: Duration) -> (ExitStatus, String, String) {
    run_bounded(Command::new(bin()).args(args), limit)
}

/// Runs a command to completion with a time bound, reading its output while it
/// runs (a full pipe must not stall it); returns (status, stdout, stderr).
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> (ExitStatus, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let read_all = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = r.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let (out, err) = (read_all(Box::new(stdout)), read_all(Box::new(stderr)));
    let mut guard = ProcGuard::new(child);
    let status = guard
        .wait_timeout(limit)
        .unwrap_or_else(|| panic!("{cmd:?} did not finish in {limit:?}"));
    (
        status,
        out.join().expect("stdout reader"),
        err.join().expect("stderr reader"),
    )
}

/// Owns a child process: on drop (also when the test panics) it is killed and
/// reaped, so no test leaves a process or a zombie behind. When the child leads
/// its own process group (`process_group(0)`), the whole group is killed, so
/// that what it forked dies with it.
pub struct ProcGuard {
    pub child: Option<Child>,
    /// The child leads a process group of its own (its pgid is its pid).
    group: bool,
}

impl ProcGuard {
    pub fn new(child: Child) -> Self {
        let pid = child.id() as i32;
        // spawn() returns after exec, so a process_group(0) is already in effect.
        let group = pgid_of(pid) == Some(pid);
        ProcGuard {
            child: Some(child),
            group,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Waits up to `limit` for exit; None if it is still running.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn signal(&self, sig: i32) {
        let pid = self.pid();
        assert!(pid > 0);
        send_signal(pid, sig).unwrap_or_else(|e| panic!("kill -{sig} {pid}: {e}"));
    }

    /// Signals the child's whole process group (as a terminal's Ctrl-C does).
    pub fn signal_group(&self, sig: i32) {
        assert!(self.group, "the child does not lead a process group");
        signal_group(self.pid(), sig)
            .unwrap_or_else(|e| panic!("kill -{sig} -{}: {e}", self.pid()));
    }
}

impl Drop for ProcGuard {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as i32;
        let running = child.try_wait().ok().flatten().is_none();
        // A group id stays reserved while the group has members, even after its
        // leader is reaped, so this reaches only what the child left behind.
        if self.group && (running || !group_members(pid).is_empty()) {
            let _ = signal_group(pid, 9);
        }
        if running {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

/// The process group of `pid`, from /proc (None when it is gone).
pub fn pgid_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the comm: state, ppid, pgrp.
    stat.rsplit_once(')')?
        .1
        .split_ascii_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// Processes in process group `pgid` that are not zombies (zombies hold nothing
/// open, and an orphaned one may wait for an init that does not reap).
pub fn group_members(pgid: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&p| pgid_of(p) == Some(pgid) && state_of(p).is_some_and(|s| s != 'Z'))
        .collect()
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect()
}

/// The state letter of `pid` (R, S, Z, ...), None when it is gone.
pub fn state_of(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// kill(2) to a whole process group.
pub fn signal_group(pgid: i32, sig: i32) -> nix::Result<()> {
    assert!(pgid > 1, "refusing to signal process group {pgid}");
    let sig = nix::sys::signal::Signal::try_from(sig)?;
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), sig)
}

/// Reports a test that cannot run here. Under CI (the `CI` variable set, as
/// CI services do) that is a failure: a check that silently does not run must
/// not pass there. Elsewhere it prints why and the test returns.
pub fn skip(reason: &str) {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(!ci, "cannot run under CI: {reason}");
    eprintln!("skipped: {reason}");
}

/// A running `lsbaws serve`: its address, pid, and everything it printed.
pub struct Server {
    pub guard: ProcGuard,
    pub addr: SocketAddr,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

fn pump(stream: impl Read + Send + 'static, sink: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            sink.lock()
                .expect("lock")
                .push_str(&String::from_utf8_lossy(&line));
            line.clear();
        }
    })
}

impl Server {
    /// Starts `lsbaws serve --bind 127.0.0.1:0 ARGS` and waits for its ready line.
    pub fn start(args: &[&str]) -> Server {
        Self::start_with(
            Command::new(bin())
                .arg("serve")
                .arg("--bind")
                .arg("127.0.0.1:0")
                .args(args),
        )
    }

    /// Starts a prepared command whose first stdout line is serve's ready line,
    /// in a process group of its own: what the server forks can be found and
    /// killed by group, and a terminal's Ctrl-C does not reach it.
    pub fn start_with(cmd: &mut Command) -> Server {
        let cmd_text = format!("{cmd:?}");
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lsbaws serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let stderr = child.stderr.take().expect("stderr");
        let guard = ProcGuard::new(child);
        // Bounded: a server that hangs before announcing must fail the test, not hang it.
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut ready = String::new();
            let _ = stdout.read_line(&mut ready);
            let _ = tx.send(ready);
            stdout
        });
        let ready = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let stdout = if ready.is_empty() {
            panic!("no ready line from {cmd_text} within 30 s")
        } else {
            reader.join().expect("ready reader")
        };
        let addr = parse_ready(&ready).unwrap_or_else(|| panic!("no ready line, got {ready:?}"));
        assert!(
            ready.contains(&format!("(pid {}, reaper ", guard.pid())),
            "{ready}"
        );
        let out = Arc::new(Mutex::new(ready));
        let err = Arc::new(Mutex::new(String::new()));
        // Drain both pipes so children never block writing their log lines.
        let readers = vec![pump(stdout, out.clone()), pump(stderr, err.clone())];
        Server {
            guard,
            addr,
            stdout: out,
            stderr: err,
            readers,
        }
    }

    pub fn pid(&self) -> i32 {
        self.guard.pid()
    }

    pub fn url(&self) -> String {
        format!("http://{}/hello", self.addr)
    }

    /// What the server has printed so far (stdout, then stderr), for the
    /// message of an assertion that fails while it still runs.
    pub fn output(&self) -> String {
        let out = self.stdout.lock().expect("lock").clone();
        let err = self.stderr.lock().expect("lock").clone();
        format!("server stdout:\n{out}server stderr:\n{err}")
    }

    /// Sends SIGTERM and waits (bounded) for exit; returns status and all output,
    /// after checking that nothing the server started survived it.
    pub fn stop(mut self, limit: Duration) -> (ExitStatus, String, String) {
        let tree = self.tree();
        self.guard.signal(15);
        self.finish(&tree, limit)
    }

    /// Waits (bounded) for the server to exit by itself, checks that nothing it
    /// started survived it, and returns its status and all its output.
    pub fn wait_exit(&mut self, limit: Duration) -> (ExitStatus, String, String) {
        let tree = self.tree();
        self.finish(&tree, limit)
    }

    /// The server's descendants now (children, CGI programs in groups of their
    /// own), while they are still linked to it.
    fn tree(&self) -> Vec<i32> {
        descendants_of(self.pid())
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }

    /// Waits for exit, then checks that no process of the server's group and
    /// none of `tree` is left, and only then joins the pipe readers, with a
    /// bound: a survivor holds the pipes open, so an unbounded join would hang
    /// on exactly the failure it should report.
    fn finish(&mut self, tree: &[i32], limit: Duration) -> (ExitStatus, String, String) {
        let pid = self.pid();
        let status = self
            .guard
            .wait_timeout(limit)
            .unwrap_or_else(|| panic!("serve did not exit within {limit:?}"));
        let survivors = || {
            let mut left = group_members(pid);
            for &p in tree {
                if state_of(p).is_some_and(|s| s != 'Z') && !left.contains(&p) {
                    left.push(p);
                }
            }
            left
        };
        // Killed processes take a moment to go; 5 s is slack on a loaded host.
        assert!(
            eventually(Duration::from_secs(5), || survivors().is_empty()),
            "processes survived serve's exit ({status}): {:?}",
            survivors()
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            self.readers.iter().all(JoinHandle::is_finished),
            "serve's output pipes are still open 5 s after it exited: something it started holds them"
        );
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let out = self.stdout.lock().expect("lock").clone();
        let err = self.stderr.lock().expect("lock").clone();
        (status, out, err)
    }

    /// Waits (bounded) until the server has no children, stops it, and checks
    /// that it exited 0 reporting no zombie; returns its stdout and stderr.
    pub fn stop_clean(self) -> (String, String) {
        let pid = self.pid();
        assert!(
            eventually(Duration::from_secs(10), || children_of(pid).is_empty()),
            "children left: {:?}",
            children_of(pid)
        );
        let (status, out, err) = self.stop(Duration::from_secs(10));
        assert!(status.success(), "{status}: {err}");
        assert!(out.contains("0 zombies left"), "{out}");
        (out, err)
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("lock").clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }
}

/// `Serving HTTP on 127.0.0.1:41234 (pid 99, reaper loop)` → the address.
pub fn parse_ready(line: &str) -> Option<SocketAddr> {
    line.strip_prefix("Serving HTTP on ")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

/// Sends `request` and reads until the server closes; returns the response text.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut conn = TcpStream::connect(addr).expect("connect");
    // Generous: a burst through a Python CGI app takes seconds on 2 cores.
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    conn.write_all(request).expect("write request");
    let mut response = Vec::new();
    let _ = conn.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

/// Sends `request` (tolerating a server that stops reading) and returns what came
/// back before the close, and how long that took.
pub fn try_exchange(addr: SocketAddr, request: &[u8]) -> (String, Duration) {
    let started = Instant::now();
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let _ = conn.write_all(request);
    let mut response = Vec::new();
    let _ = conn.read_to_end(&mut response);
    (
        String::from_utf8_lossy(&response).into_owned(),
        started.elapsed(),
    )
}

/// The contract's reply to a valid request.
pub const HELLO: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\nConnection: close\r\n\r\nHello, World!\n";

/// Opens `n` connections at once (one thread each, released together), sends a
/// GET on each and returns every response.
pub fn burst(addr: SocketAddr, n: usize) -> Vec<String> {
    let barrier = Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                exchange(addr, b"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n")
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect()
}

/// (pid, state) of each child of `pid`, read from /proc/*/stat (a full scan:
/// the `children` file can miss children that are exiting).
pub fn children_of(pid: i32) -> Vec<(i32, char)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_ascii_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: i32 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if ppid == pid {
            out.push((child, state));
        }
    }
    out
}

/// The children of a single-threaded `pid` from its `children` file: one read,
/// fast, but it can miss a child that is exiting (use for sampling only).
pub fn children_file_of(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_ascii_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

pub fn zombies_of(pid: i32) -> usize {
    children_of(pid).iter().filter(|(_, s)| *s == 'Z').count()
}

/// Polls until `cond` holds or `limit` passes; returns whether it held.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a process with this pid exists (zombies count as existing).
pub fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Every descendant of `pid` as (pid, state), from one full /proc scan.
pub fn descendants_of(pid: i32) -> Vec<(i32, char)> {
    // (pid, ppid, state) of every process, read once.
    let table: Vec<(i32, i32, char)> = all_pids()
        .into_iter()
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let mut fields = stat.rsplit_once(')')?.1.split_ascii_whitespace();
            let state = fields.next()?.chars().next()?;
            let ppid = fields.next()?.parse().ok()?;
            Some((p, ppid, state))
        })
        .collect();
    let mut all = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(child, ppid, state) in &table {
            if ppid == parent {
                frontier.push(child);
                all.push((child, state));
            }
        }
    }
    all
}

/// Path of a file under tests/.
pub fn fixture(rel: &str) -> String {
    format!("{}/tests/{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// A loopback port nothing listens on: bound, then released.
pub fn unused_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    probe.local_addr().expect("addr").port()
}

/// Whether this test process runs as root (some fault tests need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        .unwrap_or(false)
}

/// kill(2) by pid (no `kill` binary needed: minimal images lack procps).
pub fn send_signal(pid: i32, sig: i32) -> nix::Result<()> {
    assert!(pid > 0, "refusing to signal pid {pid}");
    let sig = nix::sys::signal::Signal::try_from(sig)?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
}

/// Starts `serve --quiet --delay DELAY --grace 1s`, gives it `n` connections (so
/// `n` children sleep in their delay), then sends SIGTERM. Returns how long the
/// server took to exit, its stdout, and the pids its children had, after checking
/// that it exited 0 and that none of those children is still alive.
pub fn sigterm_mid_delay(n: usize, delay: &str) -> (Duration, String, Vec<i32>) {
    let server = Server::start(&["--quiet", "--delay", delay, "--grace", "1s"]);
    let conns: Vec<TcpStream> = (0..n)
        .map(|_| {
            let mut c = TcpStream::connect(server.addr).expect("connect");
            c.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
            c
        })
        .collect();
    let pid = server.pid();
    assert!(eventually(Duration::from_secs(10), || children_of(pid)
        .len()
        == n));
    let kids: Vec<i32> = children_of(pid).into_iter().map(|(p, _)| p).collect();
    let started = Instant::now();
    let (status, out, _) = server.stop(Duration::from_secs(10));
    let took = started.elapsed();
    assert!(status.success(), "{status}");
    for kid in &kids {
        assert!(!alive(*kid), "child {kid} survived shutdown");
    }
    drop(conns);
    (took, out, kids)
}

// ---- Helpers of the verdict tests (tests/verdicts*.rs) ----

/// The real python3 interpreter (`sys.executable`), resolved once: `python3` on
/// PATH may be a shim script (pyenv) that is slow to start and forks helpers.
pub fn python3() -> &'static str {
    static PY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .stdin(Stdio::null())
            .output()
            .expect("python3 is needed by these tests");
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(!path.is_empty(), "python3 did not name its executable");
        path
    })
}

/// Pids of the processes whose command line holds `marker` (never this test
/// process): proof that nothing a test started is still running.
pub fn pids_with_arg(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .collect()
}

/// A process started in its own process group, with stdout and stderr captured
/// as bytes while it runs. On drop (also when the test fails) it kills the
/// group and every descendant it has (found before the kill, as the tree comes
/// apart after it), then reaps it.
pub struct Spawned {
    pub pid: i32,
    guard: ProcGuard,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

fn pump_bytes(mut stream: impl Read + Send + 'static, sink: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => sink.lock().expect("lock").extend_from_slice(&buf[..n]),
            }
        }
    })
}

impl Spawned {
    pub fn start(cmd: &mut Command) -> Spawned {
        Self::start_with(cmd.stdin(Stdio::null()))
    }

    /// Started as [`Spawned::start`], with stdin a pipe for [`Spawned::take_stdin`].
    pub fn start_with_stdin(cmd: &mut Command) -> Spawned {
        Self::start_with(cmd.stdin(Stdio::piped()))
    }

    /// The write end of its stdin (started with [`Spawned::start_with_stdin`]).
    pub fn take_stdin(&mut self) -> std::process::ChildStdin {
        self.guard
            .child
            .as_mut()
            .and_then(|c| c.stdin.take())
            .expect("started with a stdin pipe")
    }

    fn start_with(cmd: &mut Command) -> Spawned {
        use std::os::unix::process::CommandExt;
        let mut child = cmd
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let (out, err) = (Arc::default(), Arc::default());
        let readers = vec![
            pump_bytes(child.stdout.take().expect("stdout"), Arc::clone(&out)),
            pump_bytes(child.stderr.take().expect("stderr"), Arc::clone(&err)),
        ];
        let guard = ProcGuard::new(child);
        Spawned {
            pid: guard.pid(),
            guard,
            out,
            err,
            readers,
        }
    }

    /// `lsbaws ARGS`, started as above.
    pub fn lsbaws(args: &[&str]) -> Spawned {
        Self::start(Command::new(bin()).args(args))
    }

    pub fn stdout(&self) -> Vec<u8> {
        self.out.lock().expect("lock").clone()
    }

    pub fn stderr(&self) -> Vec<u8> {
        self.err.lock().expect("lock").clone()
    }

    /// Sends `sig` to this process alone (not its group).
    pub fn signal(&self, sig: i32) {
        self.guard.signal(sig);
    }

    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.guard.wait_timeout(limit)
    }

    /// Waits up to `limit` for exit, then (bounded) for the end of its output;
    /// returns the status, stdout and stderr.
    pub fn finish(mut self, limit: Duration) -> (ExitStatus, Vec<u8>, Vec<u8>) {
        let status = self
            .guard
            .wait_timeout(limit)
            .unwrap_or_else(|| panic!("pid {} did not exit within {limit:?}", self.pid));
        // A process it left behind could hold its pipes open: bounded.
        let ended = eventually(Duration::from_secs(10), || {
            self.readers.iter().all(|r| r.is_finished())
        });
        assert!(
            ended,
            "pid {} exited but its stdout/stderr stayed open (a process it started holds them)",
            self.pid
        );
        (status, self.stdout(), self.stderr())
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.guard.wait_timeout(Duration::ZERO).is_none() {
            let tree = descendants_of(self.pid);
            let _ = signal_group(self.pid, 9);
            for (pid, _) in tree {
                let _ = send_signal(pid, 9);
            }
        }
        // The guard (a field) then kills the process itself and reaps it.
    }
}

/// Which output of a process the reader closes early.
#[derive(Clone, Copy, Debug)]
pub enum Closed {
    /// stdout, after reading its first line (as `| head -1`).
    StdoutAfterOneLine,
    /// stdout, before anything was read.
    Stdout,
    /// stderr, before anything was read.
    Stderr,
    /// both, before anything was read.
    Both,
}

/// Runs `cmd` with stdout and stderr piped, closes the read end(s) as `closed`
/// says, drains the other one, and returns the exit status (bounded).
pub fn exit_with_closed_output(cmd: &mut Command, closed: Closed, limit: Duration) -> ExitStatus {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let mut guard = ProcGuard::new(child);
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        })
    };
    match closed {
        Closed::StdoutAfterOneLine => {
            // Read the line on a thread, so a process that prints nothing cannot
            // hang the test; the pipe closes when that thread ends.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                let _ = tx.send(line);
            });
            let _ = rx.recv_timeout(limit);
            drain(Box::new(stderr));
        }
        Closed::Stdout => {
            drop(stdout);
            drain(Box::new(stderr));
        }
        Closed::Stderr => {
            drop(stderr);
            drain(Box::new(stdout));
        }
        Closed::Both => {
            drop(stdout);
            drop(stderr);
        }
    }
    guard
        .wait_timeout(limit)
        .unwrap_or_else(|| panic!("{cmd:?} did not exit within {limit:?} ({closed:?})"))
}

/// Byte sequences that must never reach output raw when a name from another
/// process holds them: C0 controls that move or clear the screen, DEL, C1 NEL,
/// the right-to-left override U+202E and the non-character U+FFFF.
pub const RAW_CONTROLS: [(&str, &[u8]); 6] = [
    ("ESC", b"\x1b"),
    ("BEL", b"\x07"),
    ("DEL", b"\x7f"),
    ("U+0085", "\u{85}".as_bytes()),
    ("U+202E", "\u{202e}".as_bytes()),
    ("U+FFFF", "\u{ffff}".as_bytes()),
];

/// Panics when `bytes` holds any of `RAW_CONTROLS`.
pub fn assert_no_raw_controls(bytes: &[u8], what: &str) {
    for (name, seq) in RAW_CONTROLS {
        assert!(
            !bytes.windows(seq.len()).any(|w| w == seq),
            "{what} holds a raw {name}: {}",
            String::from_utf8_lossy(bytes).escape_debug()
        );
    }
}

/// A unique token of digits for this test process: `n` tells calls apart (one
/// counter for the whole binary, so no two tests share a marker).
pub fn tag() -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    format!(
        "{}{:03}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    )
}

/// A fresh directory of its own under the target dir (with an `index.html`
/// for servers that list it); removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("verdicts-{what}-{}", tag()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("index.html"), "hello\n").expect("index");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().expect("utf-8 path").to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A copy of the binary under test in a directory anyone can enter, run as an
/// unprivileged uid of its own under RLIMIT_NPROC: root ignores that limit,
/// and a user may not reach the build directory (a checkout under /root is
/// mode 700). RLIMIT_NPROC counts every process of the real uid, so each test
/// takes a uid no other test (nor anything else here) uses: with a shared one
/// (`nobody`), tests running at once would eat each other's limit.
pub struct NprocCopy {
    dir: std::path::PathBuf,
    pub bin: String,
    uid: u32,
}

impl NprocCopy {
    pub fn new(tag: &str, uid: u32) -> NprocCopy {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("lsbaws-nproc-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
        let copy = dir.join("lsbaws");
        std::fs::copy(bin(), &copy).expect("copy binary");
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))
            .expect("chmod binary");
        let bin = copy.to_str().expect("utf-8 path").to_string();
        NprocCopy { dir, bin, uid }
    }

    /// `lsbaws ARGS` as this copy's uid under RLIMIT_NPROC `limit` (setpriv,
    /// then prlimit, which execs it: the pid stays lsbaws's).
    pub fn command(&self, limit: u32, args: &[&str]) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.current_dir(&self.dir)
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.uid))
            .args(["--clear-groups", "--"])
            .arg("prlimit")
            .arg(format!("--nproc={limit}:{limit}"))
            .arg(&self.bin)
            .args(args);
        cmd
    }
}

impl Drop for NprocCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The data of a complete chunked body (RFC 9112 §7.1), None when it is cut
/// short or malformed: how a client tells a whole streamed response apart.
pub fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&body[..line_end]).ok()?, 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return (body == b"\r\n").then_some(data);
        }
        data.extend_from_slice(body.get(..size)?);
        body = body.get(size..)?.strip_prefix(b"\r\n")?;
    }
}
