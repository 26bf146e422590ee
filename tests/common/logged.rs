//! `lsbaws serve` with its output in files instead of pipes, and what its
//! per-connection log says, for tests that account for every connection of a
//! large burst.
//!
//! serve never blocks on its log: a line a slow reader's full pipe refuses is
//! dropped and counted. Under a loaded CI machine a pipe can fill during a
//! burst, so lines counted from a pipe are not exact; a regular file never
//! refuses a write. Must never leave the server running: the guard kills its
//! process group.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use std::os::unix::process::CommandExt;

use super::{ProcGuard, TempDir, bin, eventually, group_members, parse_ready};

/// A running `lsbaws serve --bind 127.0.0.1:0 ARGS` whose stdout and stderr
/// go to files.
pub struct LoggedServer {
    guard: ProcGuard,
    pub addr: SocketAddr,
    out: PathBuf,
    err: PathBuf,
    _dir: TempDir,
}

impl LoggedServer {
    /// Starts the server in a process group of its own and waits (at most
    /// 30 s) for its ready line.
    pub fn start(args: &[&str]) -> LoggedServer {
        let dir = TempDir::new("serve-log");
        let (out, err) = (dir.0.join("stdout"), dir.0.join("stderr"));
        // Append: every child writes through the same open file.
        let open = |p: &PathBuf| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .expect("log file")
        };
        let child = Command::new(bin())
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(args)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(open(&out))
            .stderr(open(&err))
            .spawn()
            .expect("spawn lsbaws serve");
        let guard = ProcGuard::new(child);
        let mut addr = None;
        eventually(Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            addr = text.lines().next().and_then(parse_ready);
            addr.is_some()
        });
        let Some(addr) = addr else {
            panic!(
                "no ready line from serve {args:?} within 30 s: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            )
        };
        LoggedServer {
            guard,
            addr,
            out,
            err,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> i32 {
        self.guard.pid()
    }

    pub fn url(&self) -> String {
        format!("http://{}/hello", self.addr)
    }

    /// Everything printed so far: stdout, then stderr.
    pub fn output(&self) -> String {
        let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "server stdout:\n{}server stderr:\n{}",
            read(&self.out),
            read(&self.err)
        )
    }

    /// SIGTERM, a bounded wait for exit, and a check that nothing of its
    /// process group survived; returns the status and all its output.
    pub fn stop(mut self, limit: Duration) -> (ExitStatus, String) {
        let pid = self.pid();
        self.guard.signal(15);
        let status = self
            .guard
            .wait_timeout(limit)
            .unwrap_or_else(|| panic!("serve did not exit within {limit:?}"));
        assert!(
            eventually(Duration::from_secs(5), || group_members(pid).is_empty()),
            "processes survived serve's exit: {:?}",
            group_members(pid)
        );
        (status, self.output())
    }
}

/// What the children's log lines (one per accepted connection, without
/// `--quiet`) say.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ChildLog {
    /// Requests answered 200.
    pub ok: u64,
    /// Connections whose child never received a byte of a request: idle past
    /// the read timeout, or closed by the client first.
    pub requestless: u64,
    /// Any other answer (400, 408, 431...): none is expected from blast.
    pub other: Vec<String>,
}

/// Reads the children's lines (`127.0.0.1:PORT "REQUEST LINE" OUTCOME`) out
/// of serve's stdout; the ready, reap and summary lines are skipped.
pub fn child_log(stdout: &str) -> ChildLog {
    let mut log = ChildLog::default();
    for line in stdout.lines() {
        let Some((peer, rest)) = line.split_once(" \"") else {
            continue;
        };
        if peer.parse::<SocketAddr>().is_err() {
            continue;
        }
        if rest.ends_with("\" 200") {
            log.ok += 1;
        } else if rest.ends_with("\" - idle past the read timeout")
            || rest.ends_with("\" - closed before a request")
        {
            log.requestless += 1;
        } else {
            log.other.push(line.to_string());
        }
    }
    log
}

/// Resets a run of bursts against serve may show. Under a burst the accept
/// queue overflows (serve's backlog is 1024: ~600-1400 SYNs dropped and
/// retried per 2000 burst), and on a loaded 2-core CI machine one connection
/// of a 2000 burst once ended in a reset before any byte of its answer (CI,
/// `--reaper ignore`; not reproduced here in ~980 000 connections, idle and
/// under the whole suite). A reset is allowed only when the server's log
/// shows that many children that never received a request (the client's
/// socket was reset under it), so the bound only caps how often: 20 is 1% of
/// a 2000 burst, far above anything seen, far below a server that loses
/// clients.
pub const KERNEL_RESETS_MAX: u64 = 20;

/// Checks blast `reports` (each with the connections it planned) against the
/// whole of serve's stdout `out`: blast's only errors are resets, every 200 a
/// child logged reached blast, `served` connections were logged, and the
/// rest are exactly the resets, at most [`KERNEL_RESETS_MAX`].
pub fn assert_accounted(
    label: &str,
    out: &str,
    reports: &[(&serde_json::Value, u64)],
    served: u64,
) {
    let (mut ok, mut resets) = (0, 0);
    for &(report, planned) in reports {
        let errors: u64 = report["errors"]
            .as_object()
            .map_or(u64::MAX, |m| m.values().filter_map(|v| v.as_u64()).sum());
        let reset = report["errors"]["reset"].as_u64().unwrap_or(u64::MAX);
        assert_eq!(errors, reset, "{label}: not only resets: {report}\n{out}");
        assert_eq!(report["connections"], planned, "{label}: {report}");
        assert_eq!(
            report["ok"].as_u64(),
            Some(planned - reset),
            "{label}: {report}"
        );
        ok += planned - reset;
        resets += reset;
    }
    assert!(!out.contains("dropped"), "{label}: {out}");
    let log = child_log(out);
    assert!(log.other.is_empty(), "{label}: {:?}", log.other);
    assert_eq!(log.ok, ok, "{label}: 200s logged vs received");
    assert_eq!(log.ok + log.requestless, served, "{label}: log lines");
    assert_eq!(
        log.requestless, resets,
        "{label}: resets vs request-less children"
    );
    assert!(resets <= KERNEL_RESETS_MAX, "{label}: {resets} resets");
}

#[test]
fn child_log_sorts_answers_requestless_and_others() {
    let out = "Serving HTTP on 127.0.0.1:1 (pid 2, reaper loop)\n\
               127.0.0.1:40000 \"GET /hello HTTP/1.1\" 200\n\
               127.0.0.1:40002 \"\" - idle past the read timeout\n\
               127.0.0.1:40004 \"\" - closed before a request\n\
               127.0.0.1:40006 \"GET / HTTP/1.1\" 408\n\
               reaped child 7: exited with status 0\n\
               Shutdown: 4 connections served, 0 zombies left\n";
    let log = child_log(out);
    assert_eq!((log.ok, log.requestless), (1, 2));
    assert_eq!(log.other, ["127.0.0.1:40006 \"GET / HTTP/1.1\" 408"]);
}
