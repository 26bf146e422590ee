//! The one reader of /proc in this crate: process `stat` lines, children lists,
//! command lines, this process's descriptors and children, the TCP listen
//! table and the ephemeral port range.
//!
//! Owns every /proc path the crate reads (the server crate keeps its own,
//! allocation-free reader for use after fork). Must never judge what it reads
//! (engines decide what counts) and never turn an unreadable entry into an
//! absent one: only a process that is gone (ENOENT, ESRCH) is skipped.

mod net;
mod stat;

/// Where procfs is mounted: the default root of every reader here.
pub const ROOT: &str = "/proc";

use std::io;

pub use net::{listener_owners, listening};
pub use stat::{Gone, ListedChildren, ProcReader, ProcStat, is_gone, parse_stat};

/// Clock ticks per second, the unit of `starttime` in `stat`.
pub fn ticks_per_second() -> u64 {
    procfs::ticks_per_second().max(1)
}

/// This process's children, from every thread's `children` file. Errors when
/// the files cannot be read (no CONFIG_PROC_CHILDREN): the caller must then
/// scan.
pub fn own_children() -> io::Result<Vec<i32>> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task")? {
        let task = task?;
        let list = match std::fs::read_to_string(task.path().join("children")) {
            Ok(list) => list,
            // The thread exited between the listing and the read; its children
            // moved to another thread. Callers repeat until none are left.
            Err(e) if is_gone(&e) && task.path().exists() => return Err(e),
            Err(_) => continue,
        };
        pids.extend(
            list.split_ascii_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    Ok(pids)
}

/// The command line of `pid`, arguments joined by spaces (lossy UTF-8); None
/// when it is gone or has none (a zombie, a kernel thread).
pub fn cmdline(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (!args.is_empty()).then(|| args.join(" "))
}

/// Descriptors this process has open (None when /proc is not readable).
pub fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// `net.ipv4.ip_local_port_range` as (low, high), when readable.
pub fn local_port_range() -> Option<(u64, u64)> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = range.split_whitespace().map(|s| s.parse::<u64>().ok());
    Some((it.next()??, it.next()??))
}

/// Whether `pid` descends from `ancestor`, following parent links. A link that
/// cannot be read ends the walk (false).
pub fn descends_from(pid: i32, ancestor: i32) -> bool {
    let mut reader = ProcReader::new(std::path::Path::new(ROOT));
    let mut current = pid;
    // Bounded: a chain of parents is short, and a reused pid could close a loop.
    for _ in 0..64 {
        let Ok(Some(stat)) = reader.stat(current) else {
            return false;
        };
        if stat.ppid == ancestor {
            return true;
        }
        if stat.ppid <= 1 {
            return false;
        }
        current = stat.ppid;
    }
    false
}

/// Seconds since boot (the clock of `starttime`).
pub fn uptime() -> anyhow::Result<f64> {
    ProcReader::new(std::path::Path::new(ROOT)).uptime()
}
