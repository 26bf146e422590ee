//! The shutdown: stop accepting, wait `--grace` for the children, stop what is
//! left, reap what the mode reaps, and count it all into the [`Summary`].
//!
//! Owns what happens after the accept loop ends. Must never wait without a
//! bound.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::accept::Server;
use crate::signals::{self, FOREIGN, SIGCHLD_COUNT, WAKE_ON_CHILD};
use crate::{Reaper, Summary, log, procs, sys};

impl Server<'_> {
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
    pub(crate) fn shutdown(mut self) -> Summary {
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
        let stop_signal = signals::STOP_SIGNAL.load(Ordering::SeqCst);
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
            dropped_log_lines: log::dropped(),
            stop_signal: (stop_signal != 0).then_some(stop_signal),
        }
    }
}
