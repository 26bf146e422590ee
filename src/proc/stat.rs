//! `PID/stat` files (and, on the fast path, the `children` files) under an
//! injectable proc root, read into plain [`ProcStat`] values.
//!
//! Owns the per-entry cost, so it reads one small file per process and nothing
//! else (no `status`, `cmdline` or directory `stat()`), into one reused buffer.
//! A process that is gone (ENOENT, ESRCH) is skipped; any other failure to read
//! (EMFILE, EACCES, EIO) is an error, because skipping it would shrink a count
//! that a verdict rests on. Must never panic on what a file contains, and never
//! decide what counts as a finding.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use procfs::FromRead;

/// One process as its `stat` file shows it: only what an audit uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcStat {
    pub pid: i32,
    pub ppid: i32,
    /// Its process group: `audit -- COMMAND` watches COMMAND's group for
    /// members stopped by job control.
    pub pgrp: i32,
    /// The one-letter state (`R`, `S`, `Z`, ...).
    pub state: char,
    pub num_threads: i64,
    /// Start time in clock ticks after boot.
    pub starttime: u64,
    /// The command name (`comm`); `cmdline` is empty for zombies, so this is all
    /// a zombie has left.
    pub comm: String,
}

impl ProcStat {
    /// Whether the process is defunct: exited and waiting to be reaped.
    pub fn is_zombie(&self) -> bool {
        // A leader that called pthread_exit shows Z while its other threads run
        // (ps prints "Zl"): that process is alive and cannot be reaped yet, so it
        // is no leak. A real zombie has only its leader left.
        self.state == 'Z' && self.num_threads <= 1
    }
}

/// Parses a `stat` line, or `None` when it is malformed.
///
/// procfs does the parsing; the shape checks come first because procfs slices
/// around the parentheses by index and would panic on, say, a truncated line,
/// and a panic aborts a release build.
pub fn parse_stat(bytes: &[u8]) -> Option<ProcStat> {
    let open = bytes.iter().position(|&b| b == b'(')?;
    let close = bytes.iter().rposition(|&b| b == b')')?;
    let shaped = open >= 2
        && close > open
        && bytes[..open - 1].iter().all(u8::is_ascii_digit)
        && bytes[open - 1] == b' '
        && bytes.get(close + 1) == Some(&b' ')
        && bytes.get(close + 2).is_some_and(u8::is_ascii_alphabetic);
    if !shaped {
        return None;
    }
    let stat = procfs::process::Stat::from_read(bytes).ok()?;
    Some(ProcStat {
        pid: stat.pid,
        ppid: stat.ppid,
        pgrp: stat.pgrp,
        state: stat.state,
        num_threads: stat.num_threads,
        starttime: stat.starttime,
        comm: stat.comm,
    })
}

/// The audited process does not exist: an error a caller can tell apart from
/// an unreadable /proc (`err.is::<Gone>()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone(pub i32);

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no process with pid {}", self.0)
    }
}

impl std::error::Error for Gone {}

/// Reads a proc tree; one per audit, so its buffers are reused across entries.
pub struct ProcReader {
    root: PathBuf,
    /// `root` as bytes, then `/PID/stat` appended in place for each read.
    path: Vec<u8>,
    root_len: usize,
    buf: Vec<u8>,
}

/// At most this many threads share a scan.
const MAX_WORKERS: usize = 4;

/// A thread is worth starting for this many processes (a thread costs tens of
/// microseconds; this many stats cost milliseconds).
const PER_WORKER_MIN: usize = 512;

/// Big enough for any `stat` line (52 numbers and a 64-byte comm), so one read
/// returns the whole file.
const BUF_SIZE: usize = 4096;

impl ProcReader {
    pub fn new(root: &Path) -> Self {
        let path = root.as_os_str().as_bytes().to_vec();
        ProcReader {
            root: root.to_path_buf(),
            root_len: path.len(),
            path,
            buf: vec![0; BUF_SIZE],
        }
    }

    /// Reads one process's `stat`: `None` when the process is gone (ENOENT, or
    /// ESRCH between open and read) or the file is malformed (a fixture; the
    /// kernel's never is). Any other error is returned: an unreadable entry may
    /// be a zombie, and a scan that skipped it would under-count.
    pub fn stat(&mut self, pid: i32) -> io::Result<Option<ProcStat>> {
        match self.read_stat(pid) {
            Ok(len) => Ok(parse_stat(&self.buf[..len])),
            Err(err) if is_gone(&err) => Ok(None),
            Err(err) => Err(err),
        }
    }

    fn read_stat(&mut self, pid: i32) -> io::Result<usize> {
        let path = join(&mut self.path, self.root_len, format_args!("/{pid}/stat"));
        read_into(path, &mut self.buf, false)
    }

    /// Reads the audited process's `stat`: unlike [`Self::stat`], a missing
    /// target is an error, told apart from an unreadable proc root.
    /// A thread id is refused too: `/proc/TID` exists (hidden from listings) but
    /// its children have the thread group id as their parent, so its audit would
    /// pass whatever the process leaks.
    pub fn target(&mut self, pid: i32) -> Result<ProcStat> {
        match self.read_stat(pid) {
            Ok(len) => {
                let stat = parse_stat(&self.buf[..len])
                    .ok_or_else(|| anyhow!("cannot parse {}/{pid}/stat", self.root.display()))?;
                match self.tgid(pid) {
                    Some(tgid) if tgid != pid => Err(anyhow!(
                        "pid {pid} is a thread of process {tgid}; audit --pid {tgid}"
                    )),
                    _ => Ok(stat),
                }
            }
            Err(err) if is_gone(&err) => {
                fs::read_dir(&self.root)
                    .with_context(|| format!("cannot read {}", self.root.display()))?;
                Err(Gone(pid).into())
            }
            Err(err) => {
                Err(err).with_context(|| format!("cannot read {}/{pid}/stat", self.root.display()))
            }
        }
    }

    /// The `Tgid:` of `PID/status`, or `None` when it cannot be read (the
    /// process just exited, or a fixture tree has no `status`): only a thread
    /// check, so an unknown answer lets the audit go on.
    fn tgid(&mut self, pid: i32) -> Option<i32> {
        let path = join(&mut self.path, self.root_len, format_args!("/{pid}/status"));
        let len = read_into(path, &mut self.buf, true).ok()?;
        let line = self.buf[..len]
            .split(|&b| b == b'\n')
            .find_map(|l| l.strip_prefix(b"Tgid:"))?;
        parse_pid(line.trim_ascii())
    }

    /// Seconds since boot, the clock `starttime` is measured on.
    pub fn uptime(&mut self) -> Result<f64> {
        let path = join(&mut self.path, self.root_len, format_args!("/uptime"));
        let len = read_into(path, &mut self.buf, true)
            .with_context(|| format!("cannot read {}", path.display()))?;
        procfs::Uptime::from_read(&self.buf[..len])
            .map(|u| u.uptime)
            .map_err(|e| anyhow!("cannot parse {}: {e}", path.display()))
    }

    /// Every process under the root that `keep` accepts, in one pass.
    ///
    /// The pid directories are listed in pid order by the kernel, so a process
    /// that exists for the whole scan is always seen, whatever exits meanwhile.
    pub fn scan(&mut self, keep: impl Fn(&ProcStat) -> bool + Sync) -> Result<Vec<ProcStat>> {
        let dir = fs::read_dir(&self.root)
            .with_context(|| format!("cannot read {}", self.root.display()))?;
        let mut pids = Vec::new();
        for entry in dir {
            let entry = entry.with_context(|| format!("cannot read {}", self.root.display()))?;
            // Skips self, sys, meminfo, ...
            pids.extend(parse_pid(entry.file_name().as_bytes()));
        }
        self.stat_many(&pids, keep)
    }

    /// The `stat` of each of `pids` that exists and that `keep` accepts.
    ///
    /// Large lists are split over a few scoped threads (joined before this
    /// returns): nearly all the cost is the kernel's per-file open/read/close,
    /// about 6 µs per process, which runs in parallel on separate cores.
    pub fn stat_many(
        &mut self,
        pids: &[i32],
        keep: impl Fn(&ProcStat) -> bool + Sync,
    ) -> Result<Vec<ProcStat>> {
        // Asked only for large scans: std answers from cgroup files and affinity.
        let workers = match pids.len() / PER_WORKER_MIN {
            0 | 1 => 1,
            n => std::thread::available_parallelism()
                .map_or(1, usize::from)
                .min(MAX_WORKERS)
                .min(n),
        };
        if workers == 1 {
            return self.stat_each(pids, &keep);
        }
        let chunk = pids.len().div_ceil(workers);
        let root = &self.root;
        let keep = &keep;
        std::thread::scope(|scope| {
            let mut all = Vec::new();
            let mut handles = Vec::new();
            for part in pids.chunks(chunk) {
                let spawned = std::thread::Builder::new()
                    .spawn_scoped(scope, move || ProcReader::new(root).stat_each(part, keep));
                match spawned {
                    Ok(handle) => handles.push(handle),
                    // No thread to be had (RLIMIT_NPROC, memory): read this
                    // share here instead; slower, never less.
                    Err(_) => all.extend(ProcReader::new(root).stat_each(part, keep)?),
                }
            }
            for handle in handles {
                // A worker only reads files and parses, so a panic is a bug; its
                // share is unknown, not vanished (it may hold zombies), and a
                // verdict without it could pass a leak: fail the audit instead.
                let part = handle
                    .join()
                    .map_err(|_| anyhow!("internal error: a /proc scan thread panicked"))?;
                all.extend(part?);
            }
            Ok(all)
        })
    }

    fn stat_each(
        &mut self,
        pids: &[i32],
        keep: impl Fn(&ProcStat) -> bool,
    ) -> Result<Vec<ProcStat>> {
        let mut kept = Vec::new();
        for &pid in pids {
            let stat = self
                .stat(pid)
                .with_context(|| format!("cannot read {}/{pid}/stat", self.root.display()))?;
            kept.extend(stat.filter(|s| keep(s)));
        }
        Ok(kept)
    }

    /// The pids listed in `PID/task/*/children`, or `None` when a file could not
    /// be read (the kernel lacks CONFIG_PROC_CHILDREN, or a thread exited mid-read
    /// and its children moved to another thread). Only a hint: see the fast-path
    /// rule in `audit::children`.
    pub fn listed_children(&mut self, pid: i32) -> Option<ListedChildren> {
        let tasks = join(&mut self.path, self.root_len, format_args!("/{pid}/task"));
        let tasks = fs::read_dir(tasks).ok()?;
        let mut listed = ListedChildren::default();
        for task in tasks {
            let task = task.ok()?;
            let Some(tid) = parse_pid(task.file_name().as_bytes()) else {
                continue;
            };
            listed.threads += 1;
            let file = join(
                &mut self.path,
                self.root_len,
                format_args!("/{pid}/task/{tid}/children"),
            );
            let len = read_into(file, &mut self.buf, true).ok()?;
            for word in self.buf[..len].split(u8::is_ascii_whitespace) {
                if word.is_empty() {
                    continue;
                }
                listed.pids.push(parse_pid(word)?);
            }
        }
        (listed.threads > 0).then_some(listed)
    }
}

/// What the `children` files of a process listed.
#[derive(Debug, Default, Clone)]
pub struct ListedChildren {
    pub pids: Vec<i32>,
    /// How many threads (task directories) the target had.
    pub threads: usize,
}

/// `ROOT/<rel>`, built in place in the reused path buffer (no allocation per
/// process).
fn join<'a>(path: &'a mut Vec<u8>, root_len: usize, rel: std::fmt::Arguments<'_>) -> &'a Path {
    path.truncate(root_len);
    // Writing into a Vec cannot fail.
    let _ = path.write_fmt(rel);
    Path::new(OsStr::from_bytes(path))
}

fn parse_pid(name: &[u8]) -> Option<i32> {
    if name.is_empty() || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(name).ok()?.parse().ok()
}

/// Whether a read failed because the process is gone: ENOENT (exited and
/// reaped before the open) or ESRCH (exited between open and read).
pub fn is_gone(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound || err.raw_os_error() == Some(3)
}

/// Reads a file into `buf` (grown as needed); returns the length read.
///
/// The kernel renders `stat` whole on the first read when the buffer is big
/// enough, so a short read is the whole file and one read() is all it costs
/// (std's `read_to_end` would also fstat and lseek first: two more syscalls per
/// process). Multi-page seq files such as `children` hand out one page per read,
/// so those are read to EOF (`to_eof`).
fn read_into(path: &Path, buf: &mut Vec<u8>, to_eof: bool) -> io::Result<usize> {
    let mut file = File::open(path)?;
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match file.read(&mut buf[filled..]) {
            Ok(0) => return Ok(filled),
            Ok(n) => {
                filled += n;
                if !to_eof && filled < buf.len() {
                    return Ok(filled);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "4242 (my (odd) cmd) Z 17 4242 4242 0 -1 4227140 88 0 0 0 0 0 0 0 20 0 1 0 123456 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn parses_what_an_audit_needs() {
        let s = parse_stat(LINE.as_bytes()).expect("valid line");
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "my (odd) cmd");
        assert_eq!(
            (s.state, s.ppid, s.num_threads, s.starttime),
            ('Z', 17, 1, 123456)
        );
        assert!(s.is_zombie());
    }

    /// Regression: procfs 0.18 slices by index and panics on lines such as
    /// `1 (a)` (cut after the command name), `(a) Z` or `1 )a( Z 1`; a panic
    /// aborts a release build. No prefix of a valid line may panic.
    #[test]
    fn malformed_lines_are_rejected_without_panicking() {
        for end in 0..LINE.len() - 1 {
            let _ = parse_stat(&LINE.as_bytes()[..end]);
        }
        for bad in [
            &b""[..],
            b"(",
            b")(",
            b"1 )x( Z 1",
            b" 1 (a) Z 1",
            b"1 (a)",
            b"(a) Z",
            b"1 (a) ",
            b"1 (a) Z",
            b"x (a) Z 1 1 1",
            b"99999999999 (a) Z 1",
            b"1 (\xff\xfe) \xff",
        ] {
            assert_eq!(parse_stat(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    /// A scan large enough to be split over threads finds every readable entry
    /// once, skipping the malformed and the vanished.
    #[test]
    fn a_split_scan_sees_every_process_once() {
        let root = std::env::temp_dir().join(format!("lsbaws-scan-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let n = 2 * PER_WORKER_MIN as i32; // two workers
        for pid in 1..=n {
            fs::create_dir_all(root.join(pid.to_string())).unwrap();
            let line = match pid {
                7 => "7 (broken".to_string(),
                8 => continue, // vanished: a directory without stat
                _ => LINE.replacen("4242", &pid.to_string(), 1),
            };
            fs::write(root.join(format!("{pid}/stat")), line).unwrap();
        }
        let found = ProcReader::new(&root).scan(|s| s.pid % 2 == 1);
        let _ = fs::remove_dir_all(&root);
        let mut pids: Vec<i32> = found.unwrap().iter().map(|s| s.pid).collect();
        pids.sort_unstable();
        let expected: Vec<i32> = (1..=n).filter(|p| p % 2 == 1 && *p != 7).collect();
        assert_eq!(pids, expected);
    }

    /// Regression: a worker that panicked was taken for a share of vanished
    /// processes (`unwrap_or_default`), so its zombies went uncounted and the
    /// audit could pass. It must be an error.
    #[test]
    fn a_panicking_scan_worker_fails_the_scan() {
        let root = std::env::temp_dir().join(format!("lsbaws-panic-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let n = 2 * PER_WORKER_MIN as i32; // two workers
        for pid in 1..=n {
            fs::create_dir_all(root.join(pid.to_string())).unwrap();
            let line = LINE.replacen("4242", &pid.to_string(), 1);
            fs::write(root.join(format!("{pid}/stat")), line).unwrap();
        }
        let found = ProcReader::new(&root).scan(|s| {
            assert!(s.pid != n, "a bug in a worker");
            true
        });
        let _ = fs::remove_dir_all(&root);
        let err = found.expect_err("a lost share must not pass");
        assert!(err.to_string().contains("panicked"), "{err}");
    }

    #[test]
    fn a_leader_whose_threads_run_on_is_not_a_zombie() {
        let line = LINE.replace(" 20 0 1 0 123456", " 20 0 3 0 123456");
        let s = parse_stat(line.as_bytes()).expect("valid line");
        assert_eq!(s.state, 'Z');
        assert!(!s.is_zombie());
    }
}
