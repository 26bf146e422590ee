//! `lsbaws-server`: the forking reaper server of "Let's Build A Web Server, Part 3".
//!
//! Map of the crate:
//! - this file: [`Config`], [`Error`], [`bind`] (makes the listener) and [`run`]
//!   (arms the server, serves until SIGINT/SIGTERM/SIGHUP, shuts down, returns
//!   a [`Summary`]). The caller prints the ready line in between, so tests and
//!   `smoke` can bind port 0 and read the real address.
//! - `accept`: the parent's loop: accept, fork, back off, reap (signalfd).
//! - `shutdown`: stop accepting, wait `--grace`, stop what is left, count.
//! - [`summary`]: the [`Summary`] a run returns.
//! - `signals`: the SIGCHLD/stop handlers of each [`Reaper`] strategy.
//! - `child`: what a forked child does with its one connection.
//! - [`http`]: the tiny request parser and the canned responses.
//! - `cgi`: runs a program per request (`--cgi`), in the child.
//! - [`log`]: output that never blocks: request lines, statuses, the summary.
//! - `procs`: this process's children, from /proc.
//! - `tree`: stopping what a CGI program started, wherever it went.
//! - [`stdio`]: which of stdin, stdout and stderr were closed at start, kept
//!   closed for a program `audit -- COMMAND` starts.
//! - `sys`: the system calls; with `signals`, `log` and `stdio` it holds all
//!   `unsafe` code.
//!
//! Rules: the process must be single-threaded when [`run`] starts (checked), and
//! neither the parent nor a child ever starts a thread, so every `fork` is
//! sound and a child's signal handler runs on its only thread. The crate
//! never depends on an async runtime; a child ends with `_exit` and never returns
//! into the caller.

mod accept;
mod cgi;
mod child;
pub mod http;
pub mod log;
mod procs;
mod shutdown;
mod signals;
pub mod stdio;
pub mod summary;
mod sys;
mod tree;

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use cgi::Cgi;
pub use summary::Summary;
pub use sys::{die_with_parent, pidfd_kill, pidfd_open};

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
    #[error(
        "the open-file limit (ulimit -n {0}) leaves no descriptor for a connection once the server's own are open: raise it"
    )]
    NoDescriptors(u64),
    /// Serving ended on an error (`cause`), after a full shutdown: children
    /// waited for, stopped and reaped. `summary` says what the server did and
    /// is still worth printing.
    #[error("{cause}")]
    Stopped {
        cause: Box<Error>,
        summary: Box<Summary>,
    },
}

/// The line a server prints once it is armed, before its first accept:
/// `Serving HTTP on 127.0.0.1:41234 (pid 99, reaper loop)`, with the real port
/// when port 0 was asked. A contract: `smoke` and the tests read it back with
/// [`parse_ready_line`].
pub fn ready_line(addr: SocketAddr, reaper: Reaper) -> String {
    format!(
        "Serving HTTP on {addr} (pid {}, reaper {reaper})",
        std::process::id()
    )
}

/// The address in a [`ready_line`].
pub fn parse_ready_line(line: &str) -> Option<SocketAddr> {
    line.strip_prefix("Serving HTTP on ")?
        .split(' ')
        .next()?
        .parse()
        .ok()
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

/// Serves `listener` until SIGINT/SIGTERM/SIGHUP, then shuts down gracefully.
///
/// `ready` is called once everything is set up (handlers installed, timeouts
/// set on the listener, output set up) and before the first accept: the place
/// to announce the address, so that no client can arrive before the server is
/// fully armed. It must not block without a bound ([`log::announce`] does
/// not): a stop signal meanwhile only sets a flag, and the server then shuts
/// down at once without serving. An error while serving (a fatal accept error) still runs the
/// whole shutdown, and comes back as [`Error::Stopped`] with the summary.
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
    if config.subreaper {
        signals::become_subreaper().map_err(setup("becoming a child subreaper"))?;
    }
    // Decided before any SIGCHLD handler exists: a child inherited across
    // `exec` that exits once a handler is installed must already count as
    // foreign. The children file lists it alive or dead until it is reaped,
    // and nothing reaps before the handler.
    let foreign_possible =
        config.subreaper || std::process::id() == 1 || !procs::children().is_empty();
    signals::FOREIGN_POSSIBLE.store(foreign_possible, Ordering::SeqCst);
    if blocking {
        signals::BLOCKING_LISTENER.store(listener.as_raw_fd(), Ordering::SeqCst);
    }
    signals::install(config.reaper, wake_w.as_raw_fd(), !blocking)
        .map_err(setup("installing signal handlers"))?;
    log::init();
    if !sys::can_open_one_more(listener.as_fd()) {
        // Every accept would fail with EMFILE, and the server would back off
        // forever without serving anyone.
        signals::BLOCKING_LISTENER.store(-1, Ordering::SeqCst);
        return Err(Error::NoDescriptors(sys::nofile_limit()));
    }

    let addr = listener
        .local_addr()
        .map_err(setup("reading the bound address"))?;
    if let Err(e) = ready(addr) {
        signals::BLOCKING_LISTENER.store(-1, Ordering::SeqCst);
        return Err(Error::Setup("announcing the server", e));
    }
    let mut server = accept::Server::new(config, listener, blocking, wake_r, wake_w, sigfd);
    let served = server.accept_loop();
    let summary = server.shutdown();
    match served {
        Ok(()) => Ok(summary),
        Err(cause) => Err(Error::Stopped {
            cause: Box::new(cause),
            summary: Box::new(summary),
        }),
    }
}
