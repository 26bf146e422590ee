//! `lsbaws-server`: the forking reaper server of "Let's Build A Web Server, Part 3".
//!
//! Map of the crate:
//! - [`bind`] makes the listener; [`run`] serves it until SIGINT/SIGTERM and
//!   returns a [`Summary`]. The caller prints the ready line in between, so tests
//!   and `smoke` can bind port 0 and read the real address.
//! - `signals` holds the SIGCHLD/SIGTERM handlers of each [`Reaper`] strategy.
//! - `child` is what a forked child does with its one connection.
//! - `http` is the tiny request parser and the canned responses.
//! - `cgi` runs a program per request (`--cgi`), in the child.
//! - `procs` lists this process's children from /proc for the shutdown.
//! - `sys` wraps the system calls; with `signals` it holds all `unsafe` code.
//!
//! Rules: the process must be single-threaded when [`run`] starts (checked) and
//! this crate never starts a thread, so `fork` is sound; it never depends on an
//! async runtime; a child ends with `_exit` and never returns into the caller.

mod cgi;
mod child;
pub mod http;
mod procs;
mod signals;
mod sys;

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use cgi::Cgi;
use signals::{FOREIGN, REAPED, SHUTDOWN, SIGCHLD_COUNT, WAKE_ON_CHILD};
pub use sys::die_with_parent;

/// How the server reaps its children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaper {
    /// SIGCHLD handler loops `waitpid(-1, WNOHANG)` until nothing is left.
    Loop,
    /// One wait per SIGCHLD: leaks zombies under a burst (on purpose).
    Once,
    /// Never reap: one zombie per connection (on purpose).
    None,
    /// SIGCHLD = SIG_IGN: the kernel reaps.
    Ignore,
    /// SIGCHLD read from a signalfd; the main loop reaps and logs statuses.
    Signalfd,
}

impl Reaper {
    /// The mode's name as `--reaper` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Reaper::Loop => "loop",
            Reaper::Once => "once",
            Reaper::None => "none",
            Reaper::Ignore => "ignore",
            Reaper::Signalfd => "signalfd",
        }
    }

    /// Whether the server's own counters know exactly how many children are left.
    fn counts_exactly(self) -> bool {
        matches!(self, Reaper::Loop | Reaper::Signalfd)
    }
}

impl fmt::Display for Reaper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What `accept` does on EINTR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnEintr {
    /// Handlers use SA_RESTART and the loop retries.
    Retry,
    /// No SA_RESTART, a blocking raw accept, and EINTR ends the server
    /// (webserver3e's crash, on purpose).
    Fail,
}

/// Validated server settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub reaper: Reaper,
    pub on_eintr: OnEintr,
    /// The child sleeps this long after responding.
    pub delay: Duration,
    /// Children not yet reaped at which the parent pauses accepting.
    pub max_children: Option<u32>,
    /// Bound on reading one request head.
    pub read_timeout: Duration,
    /// Shutdown wait before children are killed.
    pub grace: Duration,
    /// No per-request log lines.
    pub quiet: bool,
    /// Run this CGI program for every request instead of the canned reply.
    pub cgi: Option<Cgi>,
    /// Become a child subreaper: orphaned descendants (say, daemons a CGI
    /// program started) are re-parented to the server, which must reap them.
    pub subreaper: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            reaper: Reaper::Loop,
            on_eintr: OnEintr::Retry,
            delay: Duration::ZERO,
            max_children: None,
            read_timeout: Duration::from_secs(10),
            grace: Duration::from_secs(5),
            quiet: false,
            cgi: None,
            subreaper: false,
        }
    }
}

/// Why the server could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The OS error is the source: `{:#}` prints it once, after this.
    #[error("cannot listen on {addr}")]
    Bind { addr: String, source: io::Error },
    #[error("refusing to fork: this process has {0} threads, and fork copies only the caller")]
    Threaded(usize),
    #[error("a server is already running in this process (signal handlers are process-wide)")]
    AlreadyRunning,
    #[error(
        "--on-eintr fail needs a SIGCHLD handler to interrupt accept: use --reaper loop or once, not {0}"
    )]
    EintrNeedsHandler(Reaper),
    #[error(
        "accept interrupted by a signal (EINTR): a child exited and SIGCHLD's handler was installed without SA_RESTART (--on-eintr fail reproduces webserver3e)"
    )]
    AcceptInterrupted,
    #[error("accept failed: {0}")]
    Accept(io::Error),
    #[error("{0}: {1}")]
    Setup(&'static str, io::Error),
}

/// What the server did, reported once at shutdown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub reaper: Option<Reaper>,
    /// Connections handed to a child.
    pub connections: u64,
    /// Connections closed unserved because fork failed.
    pub fork_failures: u64,
    /// Children this process reaped; None when the kernel reaped them (ignore).
    pub reaped: Option<u64>,
    /// Most children alive or unreaped at once; None when unknown (ignore).
    pub peak_children: Option<u64>,
    /// SIGCHLD signals handled (loop/once): fewer than exits shows coalescing.
    pub sigchld: u64,
    /// Children still running after `--grace`, killed with SIGKILL.
    pub killed: u64,
    /// Children that exited non-zero or died of a signal (signalfd logs them).
    pub abnormal_exits: u64,
    /// Reaped processes this server never forked: children inherited across
    /// `exec`, or orphans re-parented to it (`--subreaper`, PID 1).
    pub foreign_reaped: u64,
    /// Defunct children at exit: 0 unless the mode is `none` or `once`.
    pub zombies_left: u64,
}

/// `1 connection`, `2 connections`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Shutdown: {} served, ",
            count(self.connections, "connection", "connections")
        )?;
        match self.reaped {
            Some(n) => write!(f, "{} reaped, ", count(n, "child", "children"))?,
            None => write!(f, "children reaped by the kernel, ")?,
        }
        match (self.peak_children, self.reaper) {
            // In none/once modes the count includes zombies: call it what it is.
            (Some(n), Some(Reaper::None | Reaper::Once)) => write!(
                f,
                "peak {} at once, ",
                count(n, "unreaped child", "unreaped children")
            )?,
            (Some(n), _) => write!(f, "peak {}, ", count(n, "live child", "live children"))?,
            (None, _) => write!(f, "peak live children unknown, ")?,
        }
        write!(f, "{} left", count(self.zombies_left, "zombie", "zombies"))?;
        if self.fork_failures > 0 {
            write!(
                f,
                ", {}",
                count(self.fork_failures, "fork failure", "fork failures")
            )?;
        }
        if self.killed > 0 {
            write!(
                f,
                ", {} after grace",
                count(self.killed, "child killed", "children killed")
            )?;
        }
        if self.abnormal_exits > 0 {
            write!(
                f,
                ", {}",
                count(self.abnormal_exits, "abnormal exit", "abnormal exits")
            )?;
        }
        if self.foreign_reaped > 0 {
            write!(
                f,
                ", {} reaped",
                count(self.foreign_reaped, "foreign process", "foreign processes")
            )?;
        }
        if self.sigchld > 0 {
            write!(
                f,
                " ({})",
                count(self.sigchld, "SIGCHLD signal", "SIGCHLD signals")
            )?;
        }
        Ok(())
    }
}

/// Binds `addr` (anything `ToSocketAddrs` takes, e.g. `127.0.0.1:0`, `[::1]:8888`)
/// and sets the listen backlog.
pub fn bind(addr: &str, backlog: u32) -> Result<TcpListener, Error> {
    let bind_err = |source| Error::Bind {
        addr: addr.to_string(),
        source,
    };
    let listener = TcpListener::bind(addr).map_err(bind_err)?;
    sys::listen(listener.as_fd(), backlog).map_err(bind_err)?;
    Ok(listener)
}

/// Guards the process-wide signal state: one server per process.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Serves `listener` until SIGINT/SIGTERM, then shuts down gracefully.
///
/// `ready` is called once everything is set up (handlers installed, timeouts
/// set on the listener) and before the first accept: the place to announce the
/// address, so that no client can arrive before the server is fully armed.
pub fn run(
    listener: TcpListener,
    config: &Config,
    ready: impl FnOnce(SocketAddr) -> io::Result<()>,
) -> Result<Summary, Error> {
    if RUNNING.swap(true, Ordering::SeqCst) {
        return Err(Error::AlreadyRunning);
    }
    let threads = sys::thread_count().map_err(|e| Error::Setup("reading /proc/self/task", e))?;
    if threads > 1 {
        return Err(Error::Threaded(threads));
    }
    let blocking = config.on_eintr == OnEintr::Fail;
    if blocking && !matches!(config.reaper, Reaper::Loop | Reaper::Once) {
        return Err(Error::EintrNeedsHandler(config.reaper));
    }
    let setup = |what| move |e| Error::Setup(what, e);
    sys::set_recv_timeout(listener.as_fd(), config.read_timeout)
        .map_err(setup("setting SO_RCVTIMEO"))?;
    // Writes are bounded by the same timeout: a client that stops reading is gone.
    sys::set_send_timeout(listener.as_fd(), config.read_timeout)
        .map_err(setup("setting SO_SNDTIMEO"))?;
    sys::set_nonblocking(listener.as_fd(), !blocking).map_err(setup("setting O_NONBLOCK"))?;
    let (wake_r, wake_w) = sys::pipe().map_err(setup("creating the wake pipe"))?;
    let sigfd = match config.reaper {
        Reaper::Signalfd => {
            Some(sys::signalfd(libc::SIGCHLD).map_err(setup("creating a signalfd"))?)
        }
        _ => None,
    };
    signals::install(config.reaper, wake_w.as_raw_fd(), !blocking)
        .map_err(setup("installing signal handlers"))?;
    if config.subreaper {
        signals::become_subreaper().map_err(setup("becoming a child subreaper"))?;
    }
    let foreign_possible =
        config.subreaper || std::process::id() == 1 || !procs::children().is_empty();
    signals::FOREIGN_POSSIBLE.store(foreign_possible, Ordering::SeqCst);

    let addr = listener
        .local_addr()
        .map_err(setup("reading the bound address"))?;
    ready(addr).map_err(setup("announcing the server"))?;
    let mut server = Server {
        config,
        listener: Some(listener),
        blocking,
        wake_r,
        _wake_w: wake_w,
        sigfd,
        forked: 0,
        fork_failures: 0,
        peak: 0,
        abnormal: 0,
        accept_failing: false,
        fork_failing: false,
        cap_logged: false,
    };
    server.accept_loop()?;
    Ok(server.shutdown())
}

/// How long the parent waits before retrying after EMFILE, ENOBUFS or a failed fork.
const BACKOFF: Duration = Duration::from_millis(10);
/// In signalfd mode, reap after this many forks even if accept never runs dry, so
/// that a sustained load cannot starve reaping.
const REAP_EVERY: u32 = 32;

struct Server<'a> {
    config: &'a Config,
    /// None once shutdown began (closing it refuses new connections).
    listener: Option<TcpListener>,
    /// `--on-eintr fail`: blocking accept, EINTR is fatal.
    blocking: bool,
    /// Read end of the pipe the signal handlers write to, to wake `poll`.
    wake_r: OwnedFd,
    /// Kept open for the handlers; never read here.
    _wake_w: OwnedFd,
    /// Signalfd mode: SIGCHLD arrives here instead of a handler.
    sigfd: Option<OwnedFd>,
    forked: u64,
    fork_failures: u64,
    peak: u64,
    /// Signalfd mode: own children that exited non-zero or died of a signal.
    abnormal: u64,
    /// An accept failure was logged and no accept has succeeded since: log once
    /// per burst, not once per failure.
    accept_failing: bool,
    /// The same for fork.
    fork_failing: bool,
    /// The cap was logged as filled by zombies (once per run).
    cap_logged: bool,
}

impl Server<'_> {
    fn reaped(&self) -> u64 {
        REAPED.load(Ordering::Relaxed)
    }

    /// Children forked and not yet reaped (alive or zombie).
    fn unreaped(&self) -> u64 {
        self.forked.saturating_sub(self.reaped())
    }

    fn at_cap(&self) -> bool {
        let Some(cap) = self.config.max_children else {
            return false;
        };
        let cap = u64::from(cap);
        if self.config.reaper == Reaper::Ignore {
            // No counter can see the kernel's reaping; /proc can, and is read only
            // once the forks alone could have reached the cap.
            self.forked >= cap && procs::children().len() as u64 >= cap
        } else {
            self.unreaped() >= cap
        }
    }

    fn accept_loop(&mut self) -> Result<(), Error> {
        let mut since_reap = 0;
        while !SHUTDOWN.load(Ordering::SeqCst) {
            if self.at_cap() {
                WAKE_ON_CHILD.store(true, Ordering::SeqCst);
                // Re-check after arming the wake-up, or an exit in between is missed.
                if self.at_cap() {
                    self.note_stuck_at_cap();
                    self.wait(false, Some(Duration::from_millis(50)));
                }
                continue;
            }
            if WAKE_ON_CHILD.load(Ordering::Relaxed) {
                // Below the cap again: exits need not wake the loop any more.
                WAKE_ON_CHILD.store(false, Ordering::Relaxed);
            }
            let Some(listener) = &self.listener else {
                break;
            };
            match sys::accept(listener.as_fd()) {
                Ok((conn, peer)) => {
                    self.accept_failing = false;
                    self.spawn(conn, peer);
                    since_reap += 1;
                    if self.sigfd.is_some() && since_reap >= REAP_EVERY {
                        since_reap = 0;
                        self.reap_main();
                    }
                }
                Err(e) => match e.raw_os_error().unwrap_or(0) {
                    libc::EAGAIN => {
                        since_reap = 0;
                        self.wait(true, None);
                    }
                    libc::EINTR if self.blocking && !SHUTDOWN.load(Ordering::SeqCst) => {
                        return Err(Error::AcceptInterrupted);
                    }
                    libc::EINTR => {}
                    // The client gave up before we accepted it: not our problem.
                    libc::ECONNABORTED | libc::EPROTO | libc::EPERM => {}
                    libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                        let logged = std::mem::replace(&mut self.accept_failing, true);
                        self.back_off("accept", &e, logged);
                    }
                    _ => return Err(Error::Accept(e)),
                },
            }
        }
        Ok(())
    }

    /// In `none`/`once` modes zombies are never (or not all) reaped, so they fill
    /// the cap as they fill the process table: say so once instead of going
    /// silently deaf.
    fn note_stuck_at_cap(&mut self) {
        if self.cap_logged
            || self.config.reaper.counts_exactly()
            || self.config.reaper == Reaper::Ignore
        {
            return;
        }
        self.cap_logged = true;
        let msg = format!(
            "lsbaws: at --max-children {}: {} children are unreaped (zombies count, as they do against RLIMIT_NPROC); accept paused until one is reaped\n",
            self.config.max_children.unwrap_or(0),
            self.unreaped()
        );
        sys::write_stderr(msg.as_bytes());
    }

    fn spawn(&mut self, conn: OwnedFd, peer: SocketAddr) {
        let accepted = Instant::now();
        // When foreign children are possible, SIGCHLD stays blocked from fork until
        // the pid is marked as ours, or a child that exits at once could be reaped
        // first and counted as foreign. The signal is held, not lost.
        let counting = signals::FOREIGN_POSSIBLE.load(Ordering::Relaxed)
            && self.config.reaper != Reaper::Ignore
            && self.sigfd.is_none();
        if counting {
            let _ = signals::block_sigchld(true);
        }
        let forked = sys::fork();
        if let (Ok(sys::Fork::Parent(pid)), true) =
            (&forked, signals::FOREIGN_POSSIBLE.load(Ordering::Relaxed))
        {
            signals::mark_own(*pid);
        }
        if counting {
            let _ = signals::block_sigchld(false);
        }
        match forked {
            Ok(sys::Fork::Child) => {
                // The child must not keep the port open after the parent is gone.
                drop(self.listener.take());
                let code = child::serve(TcpStream::from(conn), peer, accepted, self.config);
                sys::exit_now(code);
            }
            Ok(sys::Fork::Parent(_)) => {
                self.fork_failing = false;
                drop(conn);
                self.forked += 1;
                self.peak = self.peak.max(self.unreaped());
            }
            Err(e) => {
                // Best effort: a client told 503 knows to retry; one that reset
                // already just gets the close.
                let mut conn = TcpStream::from(conn);
                let _ = std::io::Write::write_all(&mut conn, http::UNAVAILABLE);
                drop(conn);
                self.fork_failures += 1;
                let logged = std::mem::replace(&mut self.fork_failing, true);
                self.back_off("fork", &e, logged);
            }
        }
    }

    /// Logs a resource failure once per burst and pauses briefly, so a full fd
    /// table or process table does not turn the parent into a busy loop.
    fn back_off(&mut self, what: &str, e: &io::Error, logged: bool) {
        if !logged {
            let msg = format!(
                "lsbaws: {what} failed: {e}; backing off and retrying (logged once per burst)\n"
            );
            sys::write_stderr(msg.as_bytes());
        }
        self.wait(false, Some(BACKOFF));
    }

    /// Sleeps in poll until a signal handler writes to the wake pipe, SIGCHLD
    /// arrives on the signalfd, the listener is readable (`listen`), or `timeout`.
    fn wait(&mut self, listen: bool, timeout: Option<Duration>) {
        let entry = |fd: std::os::fd::BorrowedFd<'_>| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let mut fds = [
            entry(self.wake_r.as_fd()),
            entry(self.wake_r.as_fd()),
            entry(self.wake_r.as_fd()),
        ];
        let mut n = 1;
        if let Some(sigfd) = &self.sigfd {
            fds[n] = entry(sigfd.as_fd());
            n += 1;
        }
        if let (true, Some(listener)) = (listen, &self.listener) {
            fds[n] = entry(listener.as_fd());
            n += 1;
        }
        if sys::poll(&mut fds[..n], timeout).is_err() {
            return; // EINTR: the caller re-checks its flags.
        }
        if fds[0].revents != 0 {
            sys::drain(self.wake_r.as_fd());
        }
        if self.sigfd.is_some() && fds[1].revents != 0 {
            self.reap_main();
        }
    }

    /// Signalfd mode: drain the signalfd, reap every exited child, log statuses.
    fn reap_main(&mut self) {
        if let Some(sigfd) = &self.sigfd {
            sys::drain(sigfd.as_fd());
        }
        while let Some((pid, status)) = sys::reap_one() {
            let own = signals::record_reap(pid);
            let clean = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
            if !clean && own {
                self.abnormal += 1;
            }
            if clean && self.config.quiet {
                continue;
            }
            let what = if libc::WIFSIGNALED(status) {
                format!("killed by signal {}", libc::WTERMSIG(status))
            } else {
                format!("exited with status {}", libc::WEXITSTATUS(status))
            };
            let who = if own { "child" } else { "foreign process" };
            let line = format!("reaped {who} {pid}: {what}\n");
            if clean {
                sys::write_stdout(line.as_bytes());
            } else {
                sys::write_stderr(line.as_bytes());
            }
        }
    }

    /// Children still running (not zombies).
    fn live_children(&mut self) -> u64 {
        if self.sigfd.is_some() {
            self.reap_main();
        }
        if self.config.reaper.counts_exactly() {
            self.unreaped()
        } else {
            procs::children().iter().filter(|c| !c.zombie).count() as u64
        }
    }

    /// Stops accepting, waits up to `--grace` for children, kills the rest,
    /// reaps what the mode reaps, and counts what is left.
    fn shutdown(mut self) -> Summary {
        drop(self.listener.take());
        WAKE_ON_CHILD.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + self.config.grace;
        while self.live_children() > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.wait(false, Some(left.min(Duration::from_millis(20))));
        }
        // Past the grace period: SIGTERM first, which a child turns into killing
        // the process group of a CGI program it runs (a SIGKILL would leave that
        // program orphaned), then SIGKILL whatever still lives.
        let mut killed = 0;
        for child in procs::children().iter().filter(|c| !c.zombie) {
            if sys::kill(child.pid, libc::SIGTERM).is_ok() {
                killed += 1;
            }
        }
        let deadline = Instant::now() + Duration::from_millis(200);
        while killed > 0 && self.live_children() > 0 && Instant::now() < deadline {
            self.wait(false, Some(Duration::from_millis(10)));
        }
        for child in procs::children().iter().filter(|c| !c.zombie) {
            let _ = sys::kill(child.pid, libc::SIGKILL);
        }
        // SIGKILL takes effect promptly; bound the wait all the same.
        let deadline = Instant::now() + Duration::from_secs(2);
        while killed > 0 && self.live_children() > 0 && Instant::now() < deadline {
            self.wait(false, Some(Duration::from_millis(10)));
        }
        if self.config.reaper == Reaper::Loop {
            // The handler reaps; this catches an exit whose signal is still pending.
            while let Some((pid, _)) = sys::reap_one() {
                signals::record_reap(pid);
            }
        }
        let zombies_left = procs::children().iter().filter(|c| c.zombie).count() as u64;
        let ignore = self.config.reaper == Reaper::Ignore;
        Summary {
            reaper: Some(self.config.reaper),
            connections: self.forked,
            fork_failures: self.fork_failures,
            reaped: (!ignore).then(|| self.reaped()),
            peak_children: (!ignore).then_some(self.peak),
            sigchld: SIGCHLD_COUNT.load(Ordering::Relaxed),
            killed,
            abnormal_exits: self.abnormal,
            foreign_reaped: FOREIGN.load(Ordering::Relaxed),
            zombies_left,
        }
    }
}
