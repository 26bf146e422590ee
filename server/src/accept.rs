//! The parent's serving loop: accept, fork one child per connection, back off
//! on resource errors, pause at `--max-children`, and (signalfd mode) reap.
//!
//! Owns the [`Server`] state that the shutdown then finishes with. Must never
//! block on anything but its poll (logging never blocks), never die of an error
//! that belongs to one connection, and never return without the caller running
//! the shutdown (a fatal error is returned to [`crate::run`], which shuts down
//! before reporting it).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::signals::{self, REAPED, SHUTDOWN, WAKE_ON_CHILD};
use crate::{Config, Error, Reaper, child, http, log, procs, sys};

/// How long the parent waits before retrying after EMFILE, ENOBUFS or a failed fork.
const BACKOFF: Duration = Duration::from_millis(10);
/// Failures closer together than this are one burst, logged once.
const BURST_GAP: Duration = Duration::from_secs(1);

/// What an `accept` error means for the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AcceptError {
    /// Nothing to accept now: wait for the listener.
    Empty,
    /// One connection's problem (it was aborted, or a network error accept(2)
    /// reports for it): take the next.
    Skip,
    /// The process or system is out of a resource: log, back off, retry.
    BackOff,
    /// A signal interrupted a blocking accept.
    Interrupted,
    /// The listener itself is broken: stop serving.
    Fatal,
}

/// Sorts an accept(2) errno. Linux reports pending network errors of the new
/// connection through accept, and accept(2) says to treat them like EAGAIN.
fn classify(errno: i32) -> AcceptError {
    match errno {
        libc::EAGAIN => AcceptError::Empty,
        libc::EINTR => AcceptError::Interrupted,
        libc::ECONNABORTED
        | libc::EPERM
        | libc::EPROTO
        | libc::ENETDOWN
        | libc::ENOPROTOOPT
        | libc::EHOSTDOWN
        | libc::ENONET
        | libc::EHOSTUNREACH
        | libc::EOPNOTSUPP
        | libc::ENETUNREACH => AcceptError::Skip,
        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => AcceptError::BackOff,
        _ => AcceptError::Fatal,
    }
}

pub(crate) struct Server<'a> {
    pub(crate) config: &'a Config,
    /// None once shutdown began (closing it refuses new connections).
    pub(crate) listener: Option<TcpListener>,
    /// `--on-eintr fail`: blocking accept, EINTR is fatal.
    blocking: bool,
    /// Read end of the pipe the signal handlers write to, to wake `poll`.
    wake_r: OwnedFd,
    /// Kept open for the handlers; never read here.
    _wake_w: OwnedFd,
    /// Signalfd mode: SIGCHLD arrives here instead of a handler.
    pub(crate) sigfd: Option<OwnedFd>,
    pub(crate) forked: u64,
    pub(crate) fork_failures: u64,
    pub(crate) peak: u64,
    /// Signalfd mode: own children that exited non-zero or died of a signal.
    pub(crate) abnormal: u64,
    /// When accept last failed for want of a resource: a failure after a quiet
    /// `BURST_GAP` starts a new burst, and only that one is logged.
    accept_failed_at: Option<Instant>,
    /// The same for fork.
    fork_failed_at: Option<Instant>,
    /// The cap was logged as filled by zombies (once per run).
    cap_logged: bool,
    /// `ignore` mode when foreign children are possible: the pids this server
    /// forked that may still run (pruned against /proc), so that orphans it
    /// adopted are not counted as its children.
    ignore_own: Vec<libc::pid_t>,
}

impl<'a> Server<'a> {
    pub(crate) fn new(
        config: &'a Config,
        listener: TcpListener,
        blocking: bool,
        wake_r: OwnedFd,
        wake_w: OwnedFd,
        sigfd: Option<OwnedFd>,
    ) -> Self {
        Server {
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
            accept_failed_at: None,
            fork_failed_at: None,
            cap_logged: false,
            ignore_own: Vec::new(),
        }
    }

    /// `ignore` mode: own children still running. The kernel reaps them
    /// unseen, so /proc is the count: an exited child leaves the children file
    /// at once (no `stat` per child is needed). Orphans adopted as a subreaper
    /// or PID 1 are listed there too, and left out by keeping the pids this
    /// server forked (a pid the kernel freed and gave to an adopted orphan
    /// would count until that orphan ends).
    pub(crate) fn ignore_live(&mut self) -> u64 {
        let mut listed: Vec<libc::pid_t> = match procs::child_pids() {
            Some(pids) => pids,
            None => procs::children()
                .iter()
                .filter(|c| !c.zombie)
                .map(|c| c.pid)
                .collect(),
        };
        if !signals::FOREIGN_POSSIBLE.load(Ordering::Relaxed) {
            return listed.len() as u64;
        }
        listed.sort_unstable();
        self.ignore_own
            .retain(|pid| listed.binary_search(pid).is_ok());
        self.ignore_own.len() as u64
    }

    pub(crate) fn reaped(&self) -> u64 {
        REAPED.load(Ordering::Relaxed)
    }

    /// Children forked and not yet reaped (alive or zombie).
    pub(crate) fn unreaped(&self) -> u64 {
        self.forked.saturating_sub(self.reaped())
    }

    fn at_cap(&mut self) -> bool {
        let Some(cap) = self.config.max_children else {
            return false;
        };
        let cap = u64::from(cap);
        if self.config.reaper == Reaper::Ignore {
            // No counter can see the kernel's reaping; /proc can, and is read only
            // once the forks alone could have reached the cap.
            self.forked >= cap && self.ignore_live() >= cap
        } else {
            self.unreaped() >= cap
        }
    }

    /// Serves until a stop signal (Ok) or a fatal accept error (Err).
    pub(crate) fn accept_loop(&mut self) -> Result<(), Error> {
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
            let e = match sys::accept(listener.as_fd()) {
                Ok((conn, peer)) => {
                    // In signalfd mode the spawn reaps too, so a sustained
                    // load cannot starve reaping.
                    self.spawn(conn, peer);
                    continue;
                }
                Err(e) => e,
            };
            if SHUTDOWN.load(Ordering::SeqCst) {
                // Whatever failed, a stop was asked for (in blocking mode the stop
                // handler shuts the listener down, and accept fails EINVAL).
                break;
            }
            match classify(e.raw_os_error().unwrap_or(0)) {
                AcceptError::Empty => {
                    self.wait(true, None);
                }
                AcceptError::Interrupted if self.blocking => return Err(Error::AcceptInterrupted),
                AcceptError::Interrupted | AcceptError::Skip => {}
                AcceptError::BackOff => {
                    let first = burst_starts(&mut self.accept_failed_at);
                    self.back_off("accept", &e, first);
                }
                AcceptError::Fatal => return Err(Error::Accept(e)),
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
        log::err(msg.as_bytes());
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
            Ok(sys::Fork::Parent(pid)) => {
                drop(conn);
                self.forked += 1;
                if self.sigfd.is_some() {
                    // Children that have exited are not live: reap what the
                    // signalfd reports before counting the peak.
                    self.reap_main();
                }
                self.peak = self.peak.max(self.unreaped());
                if self.config.reaper == Reaper::Ignore
                    && signals::FOREIGN_POSSIBLE.load(Ordering::Relaxed)
                {
                    self.ignore_own.push(pid);
                    if self.ignore_own.len() >= 1024 && self.forked.is_multiple_of(1024) {
                        self.ignore_live();
                    }
                }
            }
            Err(e) => {
                // Best effort: a client told 503 knows to retry; one that reset
                // already just gets the close.
                let mut conn = TcpStream::from(conn);
                let _ = std::io::Write::write_all(&mut conn, http::UNAVAILABLE);
                drop(conn);
                self.fork_failures += 1;
                let first = burst_starts(&mut self.fork_failed_at);
                self.back_off("fork", &e, first);
            }
        }
    }

    /// Logs the first failure of a burst and pauses briefly, so a full fd table
    /// or process table does not turn the parent into a busy loop.
    fn back_off(&mut self, what: &str, e: &io::Error, first: bool) {
        if first {
            let msg = format!(
                "lsbaws: {what} failed: {e}; backing off and retrying (logged once per burst)\n"
            );
            log::err(msg.as_bytes());
        }
        self.wait(false, Some(BACKOFF));
    }

    /// Sleeps in poll until a signal handler writes to the wake pipe, SIGCHLD
    /// arrives on the signalfd, the listener is readable (`listen`), or `timeout`.
    pub(crate) fn wait(&mut self, listen: bool, timeout: Option<Duration>) {
        let entry = |fd: BorrowedFd<'_>| libc::pollfd {
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
    pub(crate) fn reap_main(&mut self) {
        if let Some(sigfd) = &self.sigfd {
            sys::drain(sigfd.as_fd());
        }
        while let Some((pid, status)) = sys::reap_one() {
            signals::note_exit(pid, status);
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
                log::out(line.as_bytes());
            } else {
                log::err(line.as_bytes());
            }
        }
    }
}

/// Records a failure now; true when it starts a new burst (the first failure,
/// or the first after a quiet `BURST_GAP`). A success in between does not end a
/// burst: under a process limit, forks fail and succeed by turns.
fn burst_starts(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    let first = last.is_none_or(|at| now.duration_since(at) >= BURST_GAP);
    *last = Some(now);
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_errors_accept_reports_for_one_connection_are_skipped() {
        // accept(2), Linux notes: treat these like EAGAIN by retrying.
        for errno in [
            libc::ENETDOWN,
            libc::EPROTO,
            libc::ENOPROTOOPT,
            libc::EHOSTDOWN,
            libc::ENONET,
            libc::EHOSTUNREACH,
            libc::EOPNOTSUPP,
            libc::ENETUNREACH,
            libc::ECONNABORTED,
        ] {
            assert_eq!(classify(errno), AcceptError::Skip, "errno {errno}");
        }
        assert_eq!(classify(libc::EMFILE), AcceptError::BackOff);
        assert_eq!(classify(libc::EINVAL), AcceptError::Fatal);
        assert_eq!(classify(libc::EBADF), AcceptError::Fatal);
    }

    #[test]
    fn failures_by_turns_with_successes_are_one_burst() {
        let mut last = None;
        assert!(burst_starts(&mut last));
        // A success happens here; the next failure is still the same burst.
        assert!(!burst_starts(&mut last));
        last = Some(Instant::now() - BURST_GAP);
        assert!(burst_starts(&mut last));
    }
}
