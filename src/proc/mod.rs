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

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;

pub use net::{Listener, holders, listeners, listening};
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
///
/// A leader that called pthread_exit (state Z, threads running on: "Zl")
/// has no memory of its own any more, so its `cmdline` reads empty; one of
/// its live threads still has it.
pub fn cmdline(pid: i32) -> Option<String> {
    joined(&std::fs::read(format!("/proc/{pid}/cmdline")).ok()?).or_else(|| {
        // Bounded: a few threads are tried, a real zombie has only its leader.
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .flatten()
            .filter(|t| t.file_name().to_str() != Some(&pid.to_string()))
            .take(4)
            .find_map(|t| joined(&std::fs::read(t.path().join("cmdline")).ok()?))
    })
}

/// NUL-separated arguments joined by spaces; None when there are none.
fn joined(raw: &[u8]) -> Option<String> {
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

/// The descendants of `roots` among `everyone` (one scan), skipping the
/// subtrees rooted at `skip`; breadth first. A scan is not atomic and a reused
/// pid could close a loop of parent links, so each pid is visited once, and a
/// root inside another root's tree is walked once.
pub fn walk<'a>(everyone: &'a [ProcStat], roots: &[i32], skip: &[i32]) -> Vec<&'a ProcStat> {
    let mut by_parent: HashMap<i32, Vec<&ProcStat>> = HashMap::new();
    for p in everyone {
        by_parent.entry(p.ppid).or_default().push(p);
    }
    let mut seen: HashSet<i32> = roots.iter().chain(skip).copied().collect();
    let mut queue: VecDeque<i32> = roots.iter().copied().collect();
    let mut out = Vec::new();
    while let Some(parent) = queue.pop_front() {
        for p in by_parent.get(&parent).map_or(&[][..], Vec::as_slice) {
            if seen.insert(p.pid) {
                queue.push_back(p.pid);
                out.push(*p);
            }
        }
    }
    out
}

/// The descendants of `root` now, from one full scan of /proc.
pub fn descendants(root: i32) -> anyhow::Result<Vec<ProcStat>> {
    let everyone = ProcReader::new(std::path::Path::new(ROOT)).scan(|_| true)?;
    Ok(walk(&everyone, &[root], &[]).into_iter().cloned().collect())
}

/// Why this process cannot see every process in /proc, if it cannot: /proc is
/// mounted with `hidepid=invisible` (or `2`), which hides other users'
/// processes from a user who is not root and not in the mount's `gid=` group.
/// Hidden processes leave no error to notice, so a scan would quietly count
/// fewer.
pub fn hidden_pids() -> Option<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // Fields: id parent major:minor root mountpoint options ... - fstype source superoptions
    // The last proc mounted on /proc is the one in force (a stacked mount, as
    // systemd's ProtectProc= makes, hides the first).
    let super_options = mountinfo.lines().rev().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mountpoint = left.split(' ').nth(4)?;
        let mut right = right.split(' ');
        let fstype = right.next()?;
        (mountpoint == ROOT && fstype == "proc").then(|| right.nth(1).unwrap_or("").to_string())
    })?;
    let option = |name: &str| {
        super_options
            .split(',')
            .find_map(|o| o.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string)
    };
    let hidepid = option("hidepid")?;
    if !matches!(hidepid.as_str(), "2" | "invisible") {
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| {
                v.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    // Uid: real effective saved fs; root (effective) sees everything.
    if field("Uid:").get(1) == Some(&0) {
        return None;
    }
    if let Some(gid) = option("gid").and_then(|g| g.parse::<u32>().ok())
        && (field("Groups:").contains(&gid) || field("Gid:").get(1) == Some(&gid))
    {
        return None;
    }
    Some(format!("/proc is mounted with hidepid={hidepid}"))
}

/// Whether a process with this pid exists, visible to us or not (kill with no
/// signal: EPERM still means it exists).
pub fn exists(pid: i32) -> bool {
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// Seconds since boot (the clock of `starttime`).
pub fn uptime() -> anyhow::Result<f64> {
    ProcReader::new(std::path::Path::new(ROOT)).uptime()
}
