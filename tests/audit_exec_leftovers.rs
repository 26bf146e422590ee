//! `lsbaws audit -- COMMAND` against the third hostile test (notes/attack-3.md):
//! leftovers that are alive but look defunct (F1, also for `smoke`), a fork
//! bomb that leaves its session and ignores SIGTERM (F7), and the leftover
//! table of names holding `|` (F20). Each test names its finding; each failed
//! on the attacked build (`LSBAWS_TEST_BIN=/work/bin/lsbaws-main3`) as its
//! comment says. Output and file cases are in audit_exec_output.rs.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::audit_exec::{LIMIT, audit, marker, orphans_with, report, text};
use crate::common::*;

/// A program whose main thread calls pthread_exit while a worker thread
/// sleeps HOLD seconds: the process lives on with /proc state Z and two
/// threads (`ps` prints "Zl"). argv: MARKER HOLD [daemon]; with `daemon` it
/// first forks and the parent exits, so the live "Zl" process is left behind
/// (its output elsewhere: it holds no pipe of the test's).
const ZLEADER: &str = r#"import ctypes, os, sys, threading, time
if len(sys.argv) > 3:
    if os.fork() != 0:
        os._exit(0)
    fd = os.open(os.devnull, os.O_RDWR)
    for i in (0, 1, 2):
        os.dup2(fd, i)
threading.Thread(target=time.sleep, args=(float(sys.argv[2]),)).start()
ctypes.CDLL(None).pthread_exit(None)
"#;

/// Pids of the processes any of whose threads has `marker` in its command
/// line: a "Zl" leader's own `cmdline` reads empty (its memory went with its
/// main thread), so `pids_with_arg` cannot see it.
fn alive_with(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(tasks) = std::fs::read_dir(entry.path().join("task")) else {
            continue;
        };
        let holds = tasks.flatten().any(|t| {
            std::fs::read(t.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        });
        if holds {
            found.push(pid);
        }
    }
    found
}

/// Kills every process with a thread whose arguments hold the marker, when
/// dropped (a failed test leaves nothing).
struct ThreadSweep(String);

impl Drop for ThreadSweep {
    fn drop(&mut self) {
        for pid in alive_with(&self.0) {
            let _ = send_signal(pid, 9);
        }
    }
}

/// F1: a daemon whose main thread exited ("Zl") was neither "left running"
/// (the filter was `state != 'Z'`) nor a zombie (threads run), so the run
/// passed. On lsbaws-main3: exit 0, `"orphans":[]`, and with --keep the
/// daemon ran on after a PASS.
#[test]
fn a_leftover_whose_main_thread_exited_is_listed_and_stopped() {
    let m = marker();
    let _sweep = ThreadSweep(m.clone());
    let (code, out, err) = audit(&["--json"], &[python3(), "-c", ZLEADER, &m, "60", "daemon"]);
    assert_eq!(code, 1, "{}{}", text(&out), text(&err));
    let r = report(&out);
    let left = orphans_with(&r, &m);
    assert_eq!(left.len(), 1, "{r}");
    assert_eq!(r["zombie_count"], 0, "alive, so no zombie: {r}");
    assert!(
        r["verdict"]
            .as_str()
            .is_some_and(|v| v.contains("1 process left running")),
        "{r}"
    );
    assert_eq!(alive_with(&m), Vec::<i32>::new(), "it outlived lsbaws");

    // --keep: listed, and left running.
    let m = marker();
    let _sweep = ThreadSweep(m.clone());
    let (code, out, _) = audit(
        &["--json", "--keep"],
        &[python3(), "-c", ZLEADER, &m, "60", "daemon"],
    );
    assert_eq!(code, 1, "{}", text(&out));
    let r = report(&out);
    let left = orphans_with(&r, &m);
    assert_eq!(left.len(), 1, "{r}");
    let pid = left[0]["pid"].as_i64().unwrap_or(0) as i32;
    assert_eq!(alive_with(&m), vec![pid], "--keep must leave it running");
    send_signal(pid, 9).expect("kill the kept daemon");

    // Negative control: COMMAND itself is "Zl" for half a second, then
    // exits: it is waited for, and nothing is left.
    let m = marker();
    let _sweep = ThreadSweep(m.clone());
    let (code, out, err) = audit(&["--json"], &[python3(), "-c", ZLEADER, &m, "0.5"]);
    assert_eq!(code, 0, "{}{}", text(&out), text(&err));
    let r = report(&out);
    assert_eq!(r["orphans"], serde_json::json!([]), "{r}");
    assert_eq!(r["exit"]["code"], 0, "{r}");
}

/// F1 in `smoke`: its leftover filter (`leftovers::below_self`) had the same
/// `state != 'Z'`. On lsbaws-main3: "0 processes left behind", PASS, exit 0.
#[test]
fn smoke_lists_a_leftover_whose_main_thread_exited() {
    let m = marker();
    let _sweep = ThreadSweep(m.clone());
    let launcher = format!(
        "{} -c \"$1\" {m} 60 daemon; exec \"$0\" serve --bind 127.0.0.1:{{port}} --quiet",
        python3()
    );
    let (status, out, err) = Spawned::start(
        Command::new(bin())
            .args(["smoke", "--quiet", "--json", "--max-clients", "5"])
            .args(["--settle", "200ms", "--", "sh", "-c", &launcher, bin()])
            .arg(ZLEADER),
    )
    .finish(LIMIT);
    let v: serde_json::Value = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {}{}", text(&out), text(&err)));
    assert_eq!(status.code(), Some(1), "{v} {}", text(&err));
    let listed = v["orphans"]
        .as_array()
        .unwrap_or_else(|| panic!("no orphans list: {v}"))
        .iter()
        .filter(|o| o.to_string().contains(&m))
        .count();
    assert_eq!(listed, 1, "{v}");
    assert!(
        eventually(Duration::from_secs(2), || alive_with(&m).is_empty()),
        "it outlived smoke: {:?}",
        alive_with(&m)
    );
}

/// The uid the fork bomb runs as: used by no other test, so RLIMIT_NPROC
/// counts the bomb alone, and every process of that uid is the bomb's.
const BOMB_UID: u32 = 61_031;

/// tests/shims/setsid_bomb.c, built into a directory of its own that the
/// bomb's uid can enter (a checkout under /root is not), removed on drop.
struct Bomb {
    dir: std::path::PathBuf,
    path: String,
}

impl Bomb {
    /// None (after `skip`) without a C compiler.
    fn build() -> Option<Bomb> {
        let dir = std::env::temp_dir().join(format!("lsbaws-bomb-{}", tag()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = dir
            .join("setsid_bomb")
            .to_str()
            .expect("utf-8 path")
            .to_string();
        let bomb = Bomb { dir, path };
        let built = Command::new("cc")
            .args(["-O1", "-o", &bomb.path])
            .arg(fixture("shims/setsid_bomb.c"))
            .status()
            .is_ok_and(|s| s.success());
        if !built {
            skip("no C compiler (cc) to build the fork bomb");
            return None;
        }
        Some(bomb)
    }
}

impl Drop for Bomb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Pids of the processes of `uid`, from /proc.
fn pids_of_uid(uid: u32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok())
                    == Some(uid)
            })
        })
        .collect()
}

/// Stops, then kills, every process of the bomb's uid, until none is left
/// (bounded): what a failed test leaves, it ends.
struct UidSweep(u32);

impl Drop for UidSweep {
    fn drop(&mut self) {
        for _ in 0..200 {
            let pids = pids_of_uid(self.0);
            if pids.is_empty() {
                return;
            }
            for &pid in &pids {
                let _ = send_signal(pid, 19); // SIGSTOP: no more forks
            }
            for &pid in &pids {
                let _ = send_signal(pid, 9);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// F7: a fork bomb (under RLIMIT_NPROC, as a uid of its own) whose children
/// call setsid and ignore SIGTERM outlived the clean-up: each round killed
/// our children, and their re-parented children had forked again. On
/// lsbaws-main3: exit 1 with `"unstopped"` listing 113 processes after the
/// 10 s bound, and 120 bomb processes still running after lsbaws exited.
/// Stopping every process below us before killing any wins that race.
#[test]
fn a_setsid_fork_bomb_that_ignores_sigterm_is_stopped() {
    if !is_root() {
        skip("needs root: the bomb runs as an unprivileged uid of its own");
        return;
    }
    let Some(bomb) = Bomb::build() else { return };
    let _sweep = UidSweep(BOMB_UID);
    let m = format!("bomb{}", tag());
    // Everything ends by itself 60 s from now, whatever lsbaws does.
    let deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 60;
    let (code, out, err) = audit(
        &["--json"],
        &[
            "setpriv",
            &format!("--reuid={BOMB_UID}"),
            &format!("--regid={BOMB_UID}"),
            "--clear-groups",
            "--",
            "prlimit",
            "--nproc=120:120",
            &bomb.path,
            &deadline.to_string(),
            &m,
        ],
    );
    assert_eq!(code, 1, "{}{}", text(&out), text(&err));
    let r = report(&out);
    assert_eq!(r["unstopped"], serde_json::json!([]), "{r}");
    assert!(!orphans_with(&r, &m).is_empty(), "{r}");
    let left = pids_of_uid(BOMB_UID);
    assert!(
        left.is_empty(),
        "{} bomb processes outlived lsbaws",
        left.len()
    );
}

/// F20: a `|` in a leftover's command line made the table's row wider (one
/// column per `|`) for any Markdown reader. On lsbaws-main3 the row read
/// `| ... | x|1|2| -c ... |`: 8 column separators where the header has 6.
#[test]
fn a_pipe_in_a_name_adds_no_column() {
    const PIPED_ARGV0: &str = r#"import os, sys, time
if os.fork() == 0:
    fd = os.open(os.devnull, os.O_RDWR)
    for i in (0, 1, 2):
        os.dup2(fd, i)
    os.execv(sys.executable, ["x|1|2|", "-c", "import time; time.sleep(300)", sys.argv[1]])
time.sleep(0.3)
"#;
    let m = marker();
    let _sweep = crate::audit_exec::Sweep(m.clone());
    let (code, out, err) = audit(&[], &[python3(), "-c", PIPED_ARGV0, &m]);
    assert_eq!(code, 1, "{}{}", text(&out), text(&err));
    let out = text(&out);
    // Column separators: `|` that the Markdown escapes `\\` and `\|` leave.
    let separators = |line: &str| {
        line.replace(r"\\", "")
            .replace(r"\|", "")
            .matches('|')
            .count()
    };
    let header = out
        .lines()
        .find(|l| l.contains("STARTED BY"))
        .unwrap_or_else(|| panic!("no leftover table: {out}"));
    let row = out
        .lines()
        .find(|l| l.contains("time.sleep"))
        .unwrap_or_else(|| panic!("no row of the leftover: {out}"));
    assert_eq!(separators(row), separators(header), "{out}");
    assert!(row.contains(r"x\|1\|2\|"), "{row}");
    assert!(pids_with_arg(&m).is_empty());
}
