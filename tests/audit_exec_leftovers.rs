//! `lsbaws audit -- COMMAND` against the third hostile test (notes/attack-3.md):
//! leftovers that are alive but look defunct (F1, also for `smoke`). Each
//! test names its finding; each failed on the attacked build
//! (`LSBAWS_TEST_BIN=/work/bin/lsbaws-main3`) as its comment says.

use std::process::Command;
use std::time::Duration;

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
