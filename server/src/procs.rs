//! This process's own children as /proc shows them.
//!
//! Owns the shutdown's view of which children exist and which are zombies, for
//! modes whose counters cannot tell (`ignore`: the kernel reaps; `none`/`once`:
//! zombies are never or not always reaped) and for the sweep that stops them.
//! Never used per connection, except in `ignore` mode at the `--max-children`
//! cap. Also the process table the shutdown walks to find what a connection
//! child started (`table`). Must never reap or signal.

use std::fs;

/// One child: its pid and whether it is defunct.
#[derive(Debug, Clone, Copy)]
pub struct Child {
    pub pid: libc::pid_t,
    pub zombie: bool,
}

/// Lists this process's children. The server is single-threaded, so the main
/// thread's `children` file holds them all; a kernel built without
/// CONFIG_PROC_CHILDREN has no such file, and then every process's `stat` is
/// scanned for its parent. Either can miss a child that is exiting at that
/// instant; callers re-list until their condition holds.
pub fn children() -> Vec<Child> {
    if !proc_is_ours() {
        return Vec::new();
    }
    match child_pids() {
        Some(pids) => pids
            .into_iter()
            .filter_map(|pid| {
                // A child that vanished between the two reads has been reaped.
                let (_, zombie) = stat(pid)?;
                Some(Child { pid, zombie })
            })
            .collect(),
        None => scan(proc_pid()),
    }
}

/// The pids in this thread's `children` file, without a `stat` each (children
/// that have exited are listed until reaped; without CONFIG_PROC_CHILDREN, a
/// scan of every process's parent); None when /proc is another namespace's.
/// Read through /proc/thread-self: `/proc/<getpid()>` names another process
/// when the server runs in a pid namespace of its own under the host's /proc
/// (`unshare --pid --fork` without `--mount-proc`), and PID 1's children there
/// are the host's.
pub fn child_pids() -> Option<Vec<libc::pid_t>> {
    if !proc_is_ours() {
        // The file would name them in the other namespace's numbers.
        return None;
    }
    let Ok(list) = fs::read_to_string("/proc/thread-self/children") else {
        // No CONFIG_PROC_CHILDREN: every process's parent, the slow way.
        return Some(scan(proc_pid()).iter().map(|c| c.pid).collect());
    };
    Some(
        list.split_ascii_whitespace()
            .filter_map(|p| p.parse::<libc::pid_t>().ok())
            .collect(),
    )
}

/// This process's pid as the mounted /proc numbers it (which differs from
/// `getpid()` when /proc belongs to another pid namespace).
fn proc_pid() -> u32 {
    fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str()?.parse().ok())
        .unwrap_or_else(std::process::id)
}

/// Whether the mounted /proc numbers processes as this process's system calls
/// do: only then may a pid read there be signalled or counted. When it does
/// not (a pid namespace of its own under the host's /proc), the server sees no
/// children in /proc and counts from its own records. Decided once per process
/// (a forked child shares its parent's namespace and mounts).
pub fn proc_is_ours() -> bool {
    static OURS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OURS.get_or_init(|| proc_pid() == std::process::id())
}

/// One row of the process table: pid, parent, defunct, start time (clock ticks
/// after boot: with the pid, it names one process however pids are reused).
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub pid: libc::pid_t,
    pub ppid: libc::pid_t,
    pub zombie: bool,
    pub start: u64,
}

/// Every process /proc shows, in one pass (processes that vanish are skipped).
pub fn table() -> Vec<Row> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter_map(row)
        .collect()
}

/// The table row of `pid`, None when it is gone.
pub fn row(pid: libc::pid_t) -> Option<Row> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_ascii_whitespace().collect();
    Some(Row {
        pid,
        ppid: fields.get(1)?.parse().ok()?,
        zombie: *fields.first()? == "Z",
        // Field 22 of stat; the slice starts at field 3.
        start: fields.get(19)?.parse().ok()?,
    })
}

/// The full scan: every process whose parent is `me`.
fn scan(me: u32) -> Vec<Child> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter_map(|pid| {
            let (ppid, zombie) = stat(pid)?;
            (u32::try_from(ppid).ok() == Some(me)).then_some(Child { pid, zombie })
        })
        .collect()
}

/// (parent pid, defunct) of `pid`, or None when it is gone.
fn stat(pid: libc::pid_t) -> Option<(libc::pid_t, bool)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields follow the last ')' (comm may contain parentheses).
    let mut fields = stat.rsplit_once(')')?.1.split_ascii_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state == "Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_finds_the_same_children_as_the_children_file() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn sleep");
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        // The test harness runs tests on threads: the scan (by parent pid)
        // sees children of every thread, the children file only the main one's,
        // so compare the scan with the child we know.
        let scanned: Vec<_> = scan(std::process::id()).iter().map(|c| c.pid).collect();
        let _ = child.kill();
        let _ = child.wait();
        assert!(scanned.contains(&pid), "{scanned:?} lacks {pid}");
    }
}
