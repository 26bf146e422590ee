//! Process trees below the server: what a CGI program started, wherever it went.
//!
//! Owns two ways of stopping a tree. A connection child that runs a CGI
//! program is a child subreaper, so every orphan of the program's tree (a
//! daemon that double-forked, a worker in a process group of its own, a job
//! left behind at exit) is re-parented to it: [`kill_all_below`] SIGKILLs its
//! own children round after round (each round's orphans come back to it) and
//! reaps them, never signalling a pid it did not just list as its own
//! unreaped child. The server's shutdown, when a child does not stop on
//! SIGTERM, uses [`kill_descendants`]: one /proc scan, then each descendant
//! SIGKILLed through a pidfd checked against the scanned start time, so that a
//! pid reused meanwhile is never hit. Must never signal a process outside the
//! tree, nor wait without a bound.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::{procs, sys};

/// SIGKILLs and reaps every process below this one (a subreaper), until none is
/// left or `limit` passes. Returns how many died of that SIGKILL.
pub fn kill_all_below(limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    let mut killed = 0;
    loop {
        killed += reap_all();
        let Some(children) = procs::child_pids() else {
            return killed;
        };
        if children.is_empty() || Instant::now() >= deadline {
            return killed;
        }
        for pid in children {
            // Our own child, not yet reaped (we reap only in this thread, and
            // not between the listing and here): its pid cannot be reused.
            let _ = sys::kill(pid, libc::SIGKILL);
        }
        // Their orphans are re-parented to us once they are gone.
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Reaps every child that has exited; returns how many a SIGKILL ended.
pub fn reap_all() -> usize {
    let mut killed = 0;
    while let Some((_, status)) = sys::reap_one() {
        if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL {
            killed += 1;
        }
    }
    killed
}

/// Whether this process has children (alive or not yet reaped).
pub fn has_children() -> bool {
    procs::child_pids().is_some_and(|c| !c.is_empty())
}

/// SIGKILLs every live descendant of `roots` (the roots themselves are left
/// alone), found in one /proc scan. Returns how many were signalled. Does
/// nothing when the mounted /proc numbers processes differently from this
/// process (a pid namespace of its own): a pid read there would name another.
pub fn kill_descendants(roots: &[libc::pid_t]) -> usize {
    if roots.is_empty() || !procs::proc_is_ours() {
        return 0;
    }
    let table = procs::table();
    let mut below: HashMap<libc::pid_t, Vec<procs::Row>> = HashMap::new();
    for row in &table {
        below.entry(row.ppid).or_default().push(*row);
    }
    let mut frontier: Vec<libc::pid_t> = roots.to_vec();
    let mut signalled = 0;
    while let Some(parent) = frontier.pop() {
        for row in below.get(&parent).into_iter().flatten() {
            frontier.push(row.pid);
            if !row.zombie && kill_exactly(row) {
                signalled += 1;
            }
        }
    }
    signalled
}

/// SIGKILLs the process `row` describes, and no other: the pidfd pins a
/// process, and its start time must be the one scanned.
fn kill_exactly(row: &procs::Row) -> bool {
    let Ok(pidfd) = sys::pidfd_open(row.pid) else {
        return false;
    };
    let same = procs::row(row.pid).is_some_and(|now| now.start == row.start && !now.zombie);
    same && sys::pidfd_kill(pidfd.as_fd(), libc::SIGKILL).is_ok()
}
