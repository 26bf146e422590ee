//! What a run left behind: the processes below this one (a child subreaper)
//! that outlived the process it started, how they are reaped, and the
//! clean-up that stops them.
//!
//! Owns the rule of what counts as left behind (alive, below us, outside the
//! trees a caller keeps; a leader whose threads run on is alive), reaping
//! that never loses an exit status ([`reap_each`]), and the bounded stop
//! (TERM to each leftover and its group, a grace, then stop everything below
//! us and KILL it, until none is left). Used by `smoke` for its server and by
//! `audit -- COMMAND`. Must never signal a process or group that is not
//! provably ours at that instant (our unreaped children's pids cannot be
//! recycled, nor the id of a group one of them is in; a deeper process is
//! reached only through a pidfd checked against its scanned start time),
//! never signal our own process group, and never wait without a bound.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::{Pid, getpgid, getpgrp};
use serde::Serialize;

use crate::proc::{ProcReader, ProcStat};

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
    /// The process that started it, when a sample saw it before it was
    /// re-parented (`audit -- COMMAND` samples; smoke does not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_by: Option<Origin>,
}

/// The parent a process had when it was first seen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Origin {
    pub pid: i32,
    pub comm: String,
    pub cmdline: Option<String>,
}

impl Leftover {
    /// `p` as a leftover, its age on the boot clock (`uptime` seconds, `ticks`
    /// per second), its command line read now.
    pub fn of(p: &ProcStat, uptime: f64, ticks: f64) -> Leftover {
        Leftover {
            pid: p.pid,
            ppid: p.ppid,
            state: p.state,
            age_s: ((uptime - p.starttime as f64 / ticks).max(0.0) * 100.0).round() / 100.0,
            comm: p.comm.clone(),
            cmdline: crate::proc::cmdline(p.pid),
            started_by: None,
        }
    }
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
    let mut left: Vec<Leftover> = crate::proc::walk(&everyone, &[me], keep)
        .into_iter()
        // A Z leader whose threads run on ("Zl") is alive: see `is_zombie`.
        .filter(|p| !p.is_zombie())
        .map(|p| Leftover::of(p, uptime, ticks))
        .collect();
    left.sort_by_key(|l| l.pid);
    Ok(left)
}

/// A child of this process that was reaped, with what its `stat` said just
/// before (a zombie keeps comm and start time; its cmdline is already empty).
#[derive(Debug, Clone)]
pub struct Reaped {
    pub pid: i32,
    pub status: WaitStatus,
    pub stat: Option<ProcStat>,
}

/// At most this many reaps per [`reap_each`] call, so that a stream of
/// exiting orphans cannot keep the caller from its other duties.
const MAX_REAPS_PER_CALL: usize = 4096;

/// Reaps the children that have exited, one at a time, and hands each to
/// `on_reaped`. Each is peeked at first (waitid with WNOWAIT), so its `stat`
/// is read while the zombie still has one, then reaped by its own pid
/// (waitpid(pid)): no exit status is ever discarded, so a caller that needs one
/// child's status (`audit -- COMMAND`) gets it exactly, among any number of
/// re-parented orphans. Returns how many were reaped.
pub fn reap_each(procs: &mut ProcReader, mut on_reaped: impl FnMut(Reaped)) -> usize {
    let peek = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    let mut n = 0;
    while n < MAX_REAPS_PER_CALL {
        // ECHILD (no children) or EINTR: nothing more this time.
        let Ok(Some(pid)) = waitid(Id::All, peek).map(|s| s.pid()) else {
            break;
        };
        let stat = procs.stat(pid.as_raw()).ok().flatten();
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                n += 1;
                on_reaped(Reaped {
                    pid: pid.as_raw(),
                    status,
                    stat,
                });
            }
            // Only this thread reaps, so the peeked child is there; anything
            // else would loop on the same peek: stop and let the caller retry.
            _ => break,
        }
    }
    n
}

/// Stops every process below this one and reaps it, until none is left or
/// `limit` passes. First SIGTERM (and SIGCONT, so that a stopped process can
/// act on it) to our children and, where safe, their process groups (a
/// daemon's workers go with it), and up to `grace` for them to exit. Then,
/// round after round until none is left: every process below us is stopped
/// (SIGSTOP, scan after scan until a scan finds none that was not stopped
/// yet; a stopped process cannot fork), then all of them are killed
/// (SIGKILL), so that a fork bomb whose children leave their group and
/// session (setsid) and ignore SIGTERM cannot out-fork the clean-up, and a
/// deep chain costs one round instead of one per level. Returns every process
/// still below us when the bound ran out.
///
/// Processes below our children are signalled through a pidfd checked
/// against the start time the scan read, so a pid reused meanwhile is never
/// hit (kernels before 5.3 have no pidfd: only our children are signalled,
/// and their orphans come to us round by round).
///
/// Call it only once every child whose exit status matters has been reaped:
/// it reaps any child.
pub fn stop_children(grace: Duration, limit: Duration, groups: &[i32]) -> Vec<i32> {
    let deadline = Instant::now() + limit;
    let mut procs = ProcReader::new(Path::new(crate::proc::ROOT));
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
            signal_each(&pids, groups, Signal::SIGTERM);
            signal_each(&pids, groups, Signal::SIGCONT);
            let grace_end = (Instant::now() + grace).min(deadline);
            // Peek, do not reap: a reaped child's pid, or the id of the group
            // it led, could be recycled before a signal below is sent.
            while Instant::now() < grace_end && !pids.iter().all(|&p| exited(p)) {
                std::thread::sleep(Duration::from_millis(10));
            }
            if pids.iter().all(|&p| exited(p)) {
                continue; // reaped at the top; their orphans come to us
            }
        }
        let frozen = freeze(&mut procs, &pids, groups, deadline);
        signal_each(&pids, groups, Signal::SIGKILL);
        for p in &frozen {
            signal_exactly(&mut procs, p, Signal::SIGKILL);
        }
        // SIGKILL is prompt, but a process in uninterruptible sleep is not:
        // poll within the bound instead of blocking in waitpid.
        while Instant::now() < deadline && !pids.iter().all(|&p| gone(p)) {
            reap_exited();
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// At most this many scans stop the processes below us in one round; a tree
/// that still grows after that many is killed as far as it was found, and
/// the next round goes on.
const MAX_FREEZE_SCANS: usize = 50;

/// Stops (SIGSTOP) our children `pids` (and their groups where safe), then
/// every other live process below us, scan after scan, until a scan finds
/// none it has not stopped yet, `deadline` passes or [`MAX_FREEZE_SCANS`]
/// were made. Returns the processes it stopped below our children, as
/// scanned (for [`signal_exactly`]).
///
/// Why it converges: a process that was sent SIGSTOP forks no more (a fork
/// under way when the signal comes is restarted by the kernel, not
/// finished), so every child it has existed before the next scan started and
/// is found by it; only processes not stopped yet can add to the tree, and
/// each scan stops all that it finds.
fn freeze(
    procs: &mut ProcReader,
    pids: &[i32],
    groups: &[i32],
    deadline: Instant,
) -> Vec<ProcStat> {
    let me = std::process::id() as i32;
    signal_each(pids, groups, Signal::SIGSTOP);
    let mut stopped: HashMap<i32, ProcStat> = HashMap::new();
    for _ in 0..MAX_FREEZE_SCANS {
        let Ok(everyone) = procs.scan(|_| true) else {
            break; // /proc unreadable: what was found is killed, and we retry
        };
        // Known processes lead the walk too: a parent that exited mid-scan
        // must not hide its children. Only those still the same process (the
        // same start time), so a reused pid cannot adopt strangers.
        let by_pid: HashMap<i32, &ProcStat> = everyone.iter().map(|p| (p.pid, p)).collect();
        let mut roots = vec![me];
        roots.extend(stopped.values().filter_map(|s| {
            by_pid
                .get(&s.pid)
                .is_some_and(|now| now.starttime == s.starttime)
                .then_some(s.pid)
        }));
        let new: Vec<ProcStat> = crate::proc::walk(&everyone, &roots, &[])
            .into_iter()
            .filter(|p| !p.is_zombie() && p.ppid != me)
            .filter(|p| {
                stopped
                    .get(&p.pid)
                    .is_none_or(|s| s.starttime != p.starttime)
            })
            .cloned()
            .collect();
        if new.is_empty() {
            break;
        }
        for p in new {
            signal_exactly(procs, &p, Signal::SIGSTOP);
            stopped.insert(p.pid, p);
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    stopped.into_values().collect()
}

/// Sends `signal` to the process `p` describes and to no other: a pidfd
/// names whichever process has the pid when it is opened, and that one must
/// still have the start time the scan read (a pid reused meanwhile has
/// another). Returns whether it was sent.
fn signal_exactly(procs: &mut ProcReader, p: &ProcStat, signal: Signal) -> bool {
    let Ok(pidfd) = lsbaws_server::pidfd_open(p.pid) else {
        return false; // gone, or no pidfd on this kernel
    };
    let same = procs
        .stat(p.pid)
        .ok()
        .flatten()
        .is_some_and(|now| now.starttime == p.starttime);
    same && lsbaws_server::pidfd_kill(pidfd.as_fd(), signal as i32).is_ok()
}

/// Sends `signal` to each of our unreaped children `pids` and, once each, to
/// the process groups they are in that are safe to signal: a group one of them
/// leads, or one of `groups`, never ours. The child is unreaped and in that
/// group at this instant, so the group id names that group and no other.
fn signal_each(pids: &[i32], groups: &[i32], signal: Signal) {
    let own = getpgrp();
    let mut signalled = HashSet::new();
    for &pid in pids {
        let pid = Pid::from_raw(pid);
        if let Ok(group) = getpgid(Some(pid)) {
            let ours = group == pid || groups.contains(&group.as_raw());
            if ours && group != own && group.as_raw() > 1 && signalled.insert(group) {
                let _ = killpg(group, signal);
            }
        }
        let _ = kill(pid, signal);
    }
}

/// Whether our child `pid` has exited (or is no child of ours), without
/// reaping it.
fn exited(pid: i32) -> bool {
    let peek = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    !matches!(
        waitid(Id::Pid(Pid::from_raw(pid)), peek),
        Ok(WaitStatus::StillAlive) | Err(Errno::EINTR)
    )
}

/// Whether our child `pid` has been reaped (waitpid says it is no child of ours).
fn gone(pid: i32) -> bool {
    matches!(
        waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)),
        Err(Errno::ECHILD) | Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..))
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
            pgrp: pid,
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

    /// A root missing from the scan (it exited while the scan ran) still leads
    /// to the children whose `stat` still named it, and a loop of parent links
    /// (pids reused mid-scan) ends.
    #[test]
    fn a_vanished_root_still_leads_to_its_children_and_loops_end() {
        let all = [p(11, 10), p(12, 11), p(40, 41), p(41, 40)];
        let mut found: Vec<i32> = walk(&all, &[10, 40], &[]).iter().map(|p| p.pid).collect();
        found.sort_unstable();
        assert_eq!(found, [11, 12, 41]);
    }
}
