//! The shutdown: stop accepting, wait `--grace` for the children, stop what is
//! left, reap what the mode reaps, and count it all into the [`Summary`].
//!
//! Owns the sweep that signals processes still running after the grace: the
//! server's own children and, counted apart, foreign ones (orphans adopted as a
//! subreaper or PID 1, children inherited across `exec`), and, for a CGI
//! child that did not stop on SIGTERM, its program's tree before the child
//! itself (`tree::kill_descendants`). Counts as killed only what died of the
//! signal. Must never signal a pid it may already have reaped (the kernel can
//! hand a reaped pid to any new process at once), so each sweep lists and
//! signals with reaping held off; and must never wait without a bound.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::accept::Server;
use crate::signals::{self, FOREIGN, SIGCHLD_COUNT, WAKE_ON_CHILD};
use crate::{Reaper, Summary, log, procs, sys, tree};

/// How long children get to act on SIGTERM before SIGKILL.
const TERM_WAIT: Duration = Duration::from_millis(200);
/// Bound on stopping what SIGTERM left: SIGKILL takes effect promptly, but
/// orphans can keep being re-parented to a subreaper for a moment.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// Processes a sweep signalled, each counted once however often it was signalled.
#[derive(Default)]
struct Stopped {
    own: Vec<libc::pid_t>,
    foreign: Vec<libc::pid_t>,
}

impl Stopped {
    fn note(&mut self, pid: libc::pid_t, own: bool) {
        if !self.own.contains(&pid) && !self.foreign.contains(&pid) {
            if own {
                self.own.push(pid);
            } else {
                self.foreign.push(pid);
            }
        }
    }
}

/// Whether any child (own or foreign) is still running.
fn any_running() -> bool {
    procs::children().iter().any(|c| !c.zombie)
}

impl Server<'_> {
    /// Own children still running (not zombies).
    fn live_children(&mut self) -> u64 {
        if self.sigfd.is_some() {
            self.reap_main();
        }
        if self.config.reaper.counts_exactly() {
            self.unreaped()
        } else if self.config.reaper == Reaper::Ignore {
            self.ignore_live()
        } else {
            procs::children()
                .iter()
                .filter(|c| !c.zombie && signals::is_own(c.pid))
                .count() as u64
        }
    }

    /// Signals every running child with `sig`. Nothing reaps from the listing
    /// to the last `kill`: loop/once block SIGCHLD (their handler reaps);
    /// signalfd and none reap only in this thread, and not here; ignore stopped
    /// the kernel's reaping before the first sweep.
    fn sweep(&mut self, sig: libc::c_int, stopped: &mut Stopped) {
        let hold = matches!(self.config.reaper, Reaper::Loop | Reaper::Once);
        if hold {
            let _ = signals::block_sigchld(true);
        }
        let running: Vec<libc::pid_t> = procs::children()
            .iter()
            .filter(|c| !c.zombie)
            .map(|c| c.pid)
            .collect();
        if sig == libc::SIGKILL && self.config.cgi.is_some() {
            // A child that did not act on SIGTERM has not stopped its CGI
            // program's tree: stop it from here, before the child, whose death
            // would hand that tree to init.
            tree::kill_descendants(&running);
        }
        for pid in running {
            signals::forget_exit(pid);
            if sys::kill(pid, sig).is_ok() {
                stopped.note(pid, signals::is_own(pid));
            }
        }
        if hold {
            let _ = signals::block_sigchld(false);
        }
    }

    /// Stops accepting, waits up to `--grace` for children, stops the rest,
    /// reaps what the mode reaps, and counts what is left.
    pub(crate) fn shutdown(mut self) -> Summary {
        // Cleared before the close: the stop handler must never shut down a
        // descriptor number that something else may be given next.
        signals::BLOCKING_LISTENER.store(-1, Ordering::SeqCst);
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
        if self.config.reaper == Reaper::Ignore {
            // From here exits stay zombies until reaped below, so that no pid the
            // sweep lists can be freed and reused before it is signalled.
            let _ = signals::stop_kernel_reaping();
        }
        // Past the grace period: SIGTERM first, which a child turns into killing
        // the process group of a CGI program it runs (a SIGKILL would leave that
        // program orphaned), then SIGKILL whatever still runs, including orphans
        // re-parented to a subreaper meanwhile.
        let mut stopped = Stopped::default();
        self.sweep(libc::SIGTERM, &mut stopped);
        let term_deadline = Instant::now() + TERM_WAIT;
        while any_running() && Instant::now() < term_deadline {
            self.wait(false, Some(Duration::from_millis(10)));
        }
        let kill_deadline = Instant::now() + KILL_WAIT;
        while any_running() && Instant::now() < kill_deadline {
            self.sweep(libc::SIGKILL, &mut stopped);
            self.wait(false, Some(Duration::from_millis(10)));
        }
        match self.config.reaper {
            // The handler reaps; this catches an exit whose signal is still pending.
            Reaper::Loop => {
                while let Some((pid, status)) = sys::reap_one() {
                    signals::note_exit(pid, status);
                    signals::record_reap(pid);
                }
            }
            Reaper::Signalfd => self.reap_main(),
            // Exits since the kernel stopped reaping: what it would have done.
            Reaper::Ignore => {
                while let Some((pid, status)) = sys::reap_one() {
                    signals::note_exit(pid, status);
                }
            }
            Reaper::None | Reaper::Once => {}
        }
        // Only what this server forked: orphans it adopted are not its zombies.
        // Under another namespace's /proc, its own records: what it forked and
        // did not reap (the kernel reaps nothing in none/once).
        let ignore = self.config.reaper == Reaper::Ignore;
        let zombies_left = if procs::proc_is_ours() {
            procs::children()
                .iter()
                .filter(|c| c.zombie && signals::is_own(c.pid))
                .count() as u64
        } else if ignore {
            0
        } else {
            self.unreaped()
        };
        // Signalled and died of it: one that exited by itself in between (a
        // zombie, which `kill` does not refuse) was not killed. Unreaped ones
        // (none, once) are read without reaping them.
        let died = |pid: &&libc::pid_t| {
            signals::died_of_stop(**pid) || sys::peek_killed(**pid) == Some(true)
        };
        let killed = stopped.own.iter().filter(died).count() as u64;
        let foreign_killed = stopped.foreign.iter().filter(died).count() as u64;
        let ignore = self.config.reaper == Reaper::Ignore;
        let stop_signal = signals::STOP_SIGNAL.load(Ordering::SeqCst);
        Summary {
            reaper: Some(self.config.reaper),
            connections: self.forked,
            fork_failures: self.fork_failures,
            reaped: (!ignore).then(|| self.reaped()),
            peak_children: (!ignore).then_some(self.peak),
            sigchld: SIGCHLD_COUNT.load(Ordering::Relaxed),
            killed,
            foreign_killed,
            abnormal_exits: self.abnormal,
            foreign_reaped: FOREIGN.load(Ordering::Relaxed),
            zombies_left,
            dropped_log_lines: log::dropped(),
            stop_signal: (stop_signal != 0).then_some(stop_signal),
        }
    }
}
