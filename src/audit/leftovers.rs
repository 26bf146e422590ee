//! What a run left behind: the processes below this one (a child subreaper)
//! that outlived the process it started, and the clean-up that stops them.
//!
//! Owns the rule of what counts as left behind (alive, below us, outside the
//! trees a caller keeps) and the bounded stop (TERM, a grace, KILL, reap until
//! none is left). Used by `smoke` for its server and by `audit -- COMMAND`.
//! Must never signal a process that is not our own child by pid (a grandchild's
//! pid could be recycled; our children's cannot until we reap them), and never
//! wait without a bound.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::Serialize;

use crate::proc::ProcReader;

/// A process left behind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Leftover {
    pub pid: i32,
    /// Its parent now: this process when it was re-parented to us.
    pub ppid: i32,
    pub state: char,
    /// Seconds since it started.
    pub age_s: f64,
    pub comm: String,
    /// Its command line, when /proc still has one.
    pub cmdline: Option<String>,
}

/// The live processes below this one, except the trees rooted at `keep` (and
/// the pids in `keep` themselves), in pid order. Zombies are not listed: they
/// exited on their own and are ours to reap.
pub fn below_self(keep: &[i32]) -> Result<Vec<Leftover>> {
    let me = std::process::id() as i32;
    let mut procs = ProcReader::new(Path::new(crate::proc::ROOT));
    let uptime = procs.uptime()?;
    let ticks = crate::proc::ticks_per_second() as f64;
    let everyone = procs.scan(|_| true)?;
    let found = crate::proc::walk(&everyone, &[me], keep);
    let mut left: Vec<Leftover> = found
        .into_iter()
        .filter(|p| p.state != 'Z')
        .map(|p| Leftover {
            pid: p.pid,
            ppid: p.ppid,
            state: p.state,
            age_s: ((uptime - p.starttime as f64 / ticks).max(0.0) * 100.0).round() / 100.0,
            comm: p.comm.clone(),
            cmdline: crate::proc::cmdline(p.pid),
        })
        .collect();
    left.sort_by_key(|l| l.pid);
    Ok(left)
}

/// Stops every child of this process and reaps it, until none is left or
/// `limit` passes: SIGTERM and up to `grace` for them to exit, then SIGKILL.
/// Killing a re-parented daemon re-parents its own children to us only then,
/// so this repeats; later rounds (processes that already outlived a SIGTERM
/// to their parent) get SIGKILL at once, so a deep chain of processes that
/// ignore SIGTERM costs one grace, not one per level. Returns every process
/// still below us when the bound ran out.
///
/// Call it only once every child whose exit status matters has been reaped:
/// it reaps any child.
pub fn stop_children(grace: Duration, limit: Duration) -> Vec<i32> {
    let deadline = Instant::now() + limit;
    let mut first = true;
    loop {
        reap_exited();
        let pids = match crate::proc::own_children() {
            Ok(pids) => pids,
            Err(_) => return Vec::new(), // no children files: nothing we can list
        };
        if pids.is_empty() {
            return pids;
        }
        if Instant::now() >= deadline {
            let me = std::process::id() as i32;
            return crate::proc::descendants(me)
                .map(|d| d.iter().map(|p| p.pid).collect())
                .unwrap_or(pids);
        }
        if std::mem::take(&mut first) {
            for &pid in &pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            let grace_end = (Instant::now() + grace).min(deadline);
            while Instant::now() < grace_end && !pids.iter().all(|&p| gone(p)) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        for &pid in &pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // SIGKILL is prompt, but a process in uninterruptible sleep is not:
        // poll within the bound instead of blocking in waitpid.
        while Instant::now() < deadline && !pids.iter().all(|&p| gone(p)) {
            reap_exited();
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Whether our child `pid` has been reaped (waitpid says it is no child of ours).
fn gone(pid: i32) -> bool {
    matches!(
        waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)),
        Err(nix::errno::Errno::ECHILD) | Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..))
    )
}

/// Reaps every child that has exited; returns how many.
pub fn reap_exited() -> usize {
    let mut n = 0;
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use crate::proc::{ProcStat, walk};

    fn p(pid: i32, ppid: i32) -> ProcStat {
        ProcStat {
            pid,
            ppid,
            state: 'S',
            num_threads: 1,
            starttime: 0,
            comm: "x".into(),
        }
    }

    #[test]
    fn kept_trees_are_skipped_and_the_rest_found() {
        // 1 ─ 10 ─ 11 ─ 12      keep 11: 12 goes with it
        //      └── 20 ─ 21
        let all = [
            p(10, 1),
            p(11, 10),
            p(12, 11),
            p(20, 10),
            p(21, 20),
            p(30, 1),
        ];
        let mut found: Vec<i32> = walk(&all, &[10], &[11]).iter().map(|p| p.pid).collect();
        found.sort_unstable();
        assert_eq!(found, [20, 21]);
    }
}
