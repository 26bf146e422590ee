//! Integration tests of `lsbaws audit`: real zombies made on purpose, a real
//! `lsbaws serve`, and a fake /proc under tests/fixtures/proc (see its README).
//!
//! Every process a test starts is owned by a `ProcGuard` (killed by pid and
//! reaped on drop, also when the test fails); grandchildren, which only their
//! parent can reap, are killed by pid through `PidGuard` before their parent.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(30);

/// Starts a shell command as a child of the test, owned by a guard.
fn spawn_sh(script: &str) -> ProcGuard {
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn sh");
    ProcGuard::new(child)
}

/// Kills a process the test did not start itself (a grandchild) by pid on drop.
/// Declare it after the guard of its parent so that it drops first.
struct PidGuard(i32);

impl Drop for PidGuard {
    fn drop(&mut self) {
        // `kill -9 0` would hit the whole process group, -1 everything.
        if self.0 <= 0 {
            return;
        }
        let _ = crate::common::send_signal(self.0, 9);
    }
}

/// Runs `lsbaws audit ARGS`; returns (exit code, stdout, stderr).
fn audit(args: &[&str]) -> (i32, String, String) {
    let mut full = vec!["audit"];
    full.extend_from_slice(args);
    let (status, out, err) = lsbaws(&full, LIMIT);
    (status.code().unwrap_or(-1), out, err)
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// The PID column of the table's rows.
fn table_pids(out: &str) -> BTreeSet<i32> {
    out.lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split('|').next()?.trim().parse().ok())
        .collect()
}

fn json_pids(v: &Value) -> BTreeSet<i32> {
    v["zombies"]
        .as_array()
        .expect("zombies list")
        .iter()
        .map(|z| z["pid"].as_i64().expect("pid") as i32)
        .collect()
}

fn zombie_pids(pid: i32) -> BTreeSet<i32> {
    children_of(pid)
        .into_iter()
        .filter(|&(_, s)| s == 'Z')
        .map(|(p, _)| p)
        .collect()
}

/// `sh -c 'sleep 0 & sleep 0 & exec sleep 30'`: the shell becomes `sleep`,
/// which never waits, so both `sleep 0` children stay defunct. Returns the guard
/// and the two zombie pids once they exist.
fn two_zombies() -> (ProcGuard, BTreeSet<i32>) {
    let guard = spawn_sh("sleep 0 & sleep 0 & exec sleep 30");
    let pid = guard.pid();
    // The `sleep 0`s can exit before the shell has become `sleep`: wait for both.
    let exec_done =
        || std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "sleep\n");
    assert!(
        eventually(LIMIT, || exec_done() && zombie_pids(pid).len() == 2),
        "no two zombies under {pid}: {:?}",
        children_of(pid)
    );
    (guard, zombie_pids(pid))
}

fn fixture() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc")
}

/// Audits the fixture tree with `--json`; returns (exit code, report).
fn audit_fixture(args: &[&str]) -> (i32, Value) {
    let mut full = vec!["--proc-root", fixture(), "--json"];
    full.extend_from_slice(args);
    let (code, out, err) = audit(&full);
    assert!(err.is_empty(), "{err}");
    (code, json(&out))
}

#[test]
fn two_defunct_sleeps_are_listed_with_state_z_and_comm_sleep() {
    let (guard, zombies) = two_zombies();
    let pid = guard.pid().to_string();

    let (code, out, err) = audit(&["--pid", &pid]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(table_pids(&out), zombies, "{out}");
    for row in out
        .lines()
        .filter(|l| l.starts_with("| ") && !l.contains("PID"))
    {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[2], pid, "{row}");
        assert_eq!(cells[3], "Z", "{row}");
        assert_eq!(cells[5], "sleep", "{row}");
    }
    assert_eq!(
        out.lines().last(),
        Some(format!("pid {pid} (sleep): 2 zombies, 0 live children").as_str()),
        "{out}"
    );

    let (code, out, _) = audit(&["--pid", &pid, "--max-zombies", "2"]);
    assert_eq!(code, 0, "{out}");

    let (code, out, _) = audit(&["--pid", &pid, "--json"]);
    assert_eq!(code, 1);
    let v = json(&out);
    assert_eq!(v["pid"].as_i64(), Some(guard.pid().into()));
    assert_eq!(v["comm"], "sleep");
    assert_eq!(v["count"], 2);
    assert_eq!(v["live_children"], 0);
    assert_eq!(json_pids(&v), zombies);
    for z in v["zombies"].as_array().expect("list") {
        assert_eq!(z["ppid"].as_i64(), Some(guard.pid().into()));
        assert_eq!(z["state"], "Z");
        assert_eq!(z["comm"], "sleep");
        assert!(z["age_s"].as_f64().is_some_and(|a| a >= 0.0), "{z}");
    }
}

/// Negative control: a shell that waits for its `sleep 0` leaves no zombie.
#[test]
fn a_parent_that_reaps_has_no_zombies() {
    let guard = spawn_sh("sleep 0; sleep 30");
    let pid = guard.pid();
    // Running `sleep 30` means `sleep 0` has exited and was waited for (the shell
    // either forked `sleep 30` or became it).
    let runs_sleep_30 =
        |p: i32| std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == b"sleep\x0030\x00");
    let sleeping = || runs_sleep_30(pid) || children_of(pid).iter().any(|&(c, _)| runs_sleep_30(c));
    assert!(eventually(LIMIT, sleeping));
    let (code, out, err) = audit(&["--pid", &pid.to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(&format!("No zombies among the children of pid {pid}.\n")),
        "{out}"
    );
    assert!(out.contains(": 0 zombies, "), "{out}");
    let (code, out, _) = audit(&["--pid", &pid.to_string(), "--json"]);
    assert_eq!(code, 0);
    assert_eq!(json(&out)["count"], 0);
}

#[test]
fn tree_finds_zombies_of_a_grandchild_and_children_mode_does_not() {
    let guard = spawn_sh(r#"sh -c "sleep 0 & sleep 0 & exec sleep 30" & exec sleep 30"#);
    let pid = guard.pid();
    let mut middle = 0;
    assert!(
        eventually(LIMIT, || {
            middle = children_of(pid)
                .into_iter()
                .map(|(c, _)| c)
                .find(|&c| zombie_pids(c).len() == 2)
                .unwrap_or(0);
            middle != 0
        }),
        "no grandchild zombies under {pid}"
    );
    let _middle_guard = PidGuard(middle);
    let zombies = zombie_pids(middle);

    let (code, out, err) = audit(&["--pid", &pid.to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": 0 zombies, 1 live child"), "{out}");

    let (code, out, _) = audit(&["--pid", &pid.to_string(), "--tree"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(table_pids(&out), zombies, "{out}");
    assert!(out.contains(&format!("| {middle} ")), "ppid column: {out}");
    // The contract line says "live child(ren)" also with --tree (it counts descendants).
    assert!(out.contains(": 2 zombies, 1 live child"), "{out}");

    let (_, out, _) = audit(&["--pid", &pid.to_string(), "--tree", "--json"]);
    let v = json(&out);
    assert_eq!(v["scope"], "tree");
    assert_eq!(json_pids(&v), zombies);
}

#[test]
fn all_lists_the_test_zombies_under_their_parent() {
    let (guard, zombies) = two_zombies();
    let pid = i64::from(guard.pid());

    let (code, out, _) = audit(&["--all", "--json"]);
    assert_eq!(code, 1, "{out}");
    let v = json(&out);
    let group = v["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["ppid"].as_i64() == Some(pid))
        .unwrap_or_else(|| panic!("no group for {pid}: {v}"));
    assert_eq!(group["count"], 2);
    assert_eq!(group["comm"], "sleep");
    let ours: BTreeSet<i32> = v["zombies"]
        .as_array()
        .expect("zombies")
        .iter()
        .filter(|z| z["ppid"].as_i64() == Some(pid))
        .map(|z| z["pid"].as_i64().expect("pid") as i32)
        .collect();
    assert_eq!(ours, zombies);

    let (code, out, _) = audit(&["--all"]);
    assert_eq!(code, 1);
    assert!(
        out.lines().any(|l| l.starts_with(&format!("| {pid} "))
            && l.contains("| sleep ")
            && l.ends_with("| 2       |")),
        "{out}"
    );
}

#[test]
fn a_missing_pid_exits_2_with_one_line() {
    // Pids are below pid_max (at most 2^22), so this one cannot exist.
    let (code, out, err) = audit(&["--pid", "2147483647"]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(err, "lsbaws: no process with pid 2147483647\n");
    assert!(out.is_empty());
}

/// Regression: `/proc/TID/stat` exists for a thread id, and the process's
/// children name the thread group id as their parent, so auditing a thread
/// found none and passed whatever the process leaked.
#[test]
fn a_thread_id_exits_2_and_names_its_process() {
    use std::io::BufRead;
    let script = "import threading, time\n\
        def f():\n    print(threading.get_native_id(), flush=True)\n    time.sleep(60)\n\
        t = threading.Thread(target=f)\nt.start()\nt.join()\n";
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let stdout = child.stdout.take().expect("piped stdout");
    let guard = ProcGuard::new(child);
    let mut line = String::new();
    // Python exiting early closes the pipe, so this read cannot hang.
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the thread id");
    let tid: i32 = line.trim().parse().expect("a thread id");
    let pid = guard.pid();
    assert_ne!(tid, pid);

    let (code, out, err) = audit(&["--pid", &tid.to_string()]);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(
        err,
        format!("lsbaws: pid {tid} is a thread of process {pid}; audit --pid {pid}\n")
    );
    assert!(out.is_empty(), "{out}");
    // The process itself is audited as usual.
    let (code, out, err) = audit(&["--pid", &pid.to_string()]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_pid_that_is_not_a_positive_number_exits_2() {
    for bad in ["abc", "0", "-5", ""] {
        let (code, out, err) = audit(&[&format!("--pid={bad}")]);
        assert_eq!(code, 2, "--pid {bad:?}: {out}{err}");
        assert!(err.contains("pid"), "{err}");
    }
}

#[test]
fn an_unreadable_proc_root_exits_2() {
    let (code, _, err) = audit(&["--pid", "1", "--proc-root", "/nonexistent/proc"]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("lsbaws: cannot read /nonexistent/proc"),
        "{err}"
    );
    let (code, _, err) = audit(&["--all", "--proc-root", "/nonexistent/proc"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn fixture_vanished_and_malformed_entries_are_skipped() {
    let (code, v) = audit_fixture(&["--pid", "100"]);
    assert_eq!(code, 1);
    // 103 (malformed stat) and 104 (no stat) are skipped; 105 is a running
    // process whose leader thread exited, so it counts as live.
    assert_eq!(json_pids(&v), BTreeSet::from([101, 106]));
    assert_eq!(v["count"], 2);
    assert_eq!(v["live_children"], 2);
    assert_eq!(v["comm"], "server");
    assert_eq!(v["zombies"][0]["age_s"], 10.0);
    assert_eq!(v["zombies"][0]["comm"], "worker");

    // Without --json, the same finding in a table.
    let (code, out, _) = audit(&["--proc-root", fixture(), "--pid", "100"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("| 101 | 100  | Z     | 10.00s | worker  |"),
        "{out}"
    );
    assert!(
        out.ends_with("pid 100 (server): 2 zombies, 2 live children\n"),
        "{out}"
    );
}

#[test]
fn fixture_targets_that_are_malformed_or_gone_exit_2() {
    let (code, _, err) = audit(&["--proc-root", fixture(), "--pid", "103"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot parse") && err.contains("103/stat"),
        "{err}"
    );
    let (code, _, err) = audit(&["--proc-root", fixture(), "--pid", "104"]);
    assert_eq!(code, 2);
    assert_eq!(err, "lsbaws: no process with pid 104\n");
}

#[test]
fn fixture_min_age_counts_only_older_zombies() {
    let (code, v) = audit_fixture(&["--pid", "100", "--min-age", "1s"]);
    assert_eq!(code, 1);
    assert_eq!(json_pids(&v), BTreeSet::from([101]));
    assert_eq!(v["younger"], 1);
    let (code, v) = audit_fixture(&["--pid", "100", "--min-age", "11s"]);
    assert_eq!(code, 0);
    assert_eq!(v["count"], 0);
    assert_eq!(v["younger"], 2);
}

#[test]
fn fixture_tree_and_all_walk_one_scan() {
    let (code, v) = audit_fixture(&["--pid", "100", "--tree"]);
    assert_eq!(code, 1);
    assert_eq!(json_pids(&v), BTreeSet::from([101, 106, 200]));
    assert_eq!(v["live_children"], 2);
    assert_eq!(v["scan"], "full");

    let (code, v) = audit_fixture(&["--all"]);
    assert_eq!(code, 1);
    assert_eq!(
        json_pids(&v),
        BTreeSet::from([101, 106, 200, 302, 401, 502])
    );
    let groups: Vec<(i64, &str, i64)> = v["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                g["ppid"].as_i64().expect("ppid"),
                g["comm"].as_str().expect("comm"),
                g["count"].as_i64().expect("count"),
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            (100, "server", 2),
            (102, "worker", 1),
            (300, "reaper", 1),
            (400, "nochildfile", 1),
            (500, "threaded", 1)
        ]
    );
}

/// The fast-path rule (`audit::children`): a finding from the `children` file
/// stands; a clean or within-limit count is confirmed by a full scan, because
/// the file can miss children while the parent reaps.
#[test]
fn fast_path_findings_stand_and_clean_counts_are_confirmed() {
    // A finding: served from the children file alone.
    let (code, v) = audit_fixture(&["--pid", "100"]);
    assert_eq!((code, &v["scan"]), (1, &Value::from("children_file")));
    // Within the limit: confirmed by a full scan, same answer.
    let (code, v) = audit_fixture(&["--pid", "100", "--max-zombies", "2"]);
    assert_eq!((code, &v["scan"]), (0, &Value::from("full")));
    assert_eq!(json_pids(&v), BTreeSet::from([101, 106]));
    // The children file of 300 misses zombie 302: trusting it would pass.
    let (code, v) = audit_fixture(&["--pid", "300"]);
    assert_eq!((code, &v["scan"]), (1, &Value::from("full")));
    assert_eq!(json_pids(&v), BTreeSet::from([302]));
    assert_eq!(v["live_children"], 1);
    // No children files at all: full scan.
    let (code, v) = audit_fixture(&["--pid", "400"]);
    assert_eq!((code, &v["scan"]), (1, &Value::from("full")));
    assert_eq!(json_pids(&v), BTreeSet::from([401]));
    // Empty files of a two-threaded target are not trusted...
    let (code, v) = audit_fixture(&["--pid", "500"]);
    assert_eq!((code, &v["scan"]), (1, &Value::from("full")));
    assert_eq!(json_pids(&v), BTreeSet::from([502]));
    // ...but an empty file of a single-threaded one is exact.
    let (code, v) = audit_fixture(&["--pid", "600"]);
    assert_eq!((code, &v["scan"]), (0, &Value::from("children_file")));
}

/// More children than fit one page of the `children` file: a finding is still
/// sound from the file (each zombie is confirmed by its own `stat`; a skip can
/// only hide more), so it is served from it; a within-limit count is confirmed
/// by a full scan. Before, any list above 256 went to a full scan.
#[test]
fn many_children_findings_take_the_fast_path_and_clean_counts_are_confirmed() {
    let root = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("audit-many-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let stat = |pid: i32, state: char, ppid: i32| {
        format!(
            "{pid} (w) {state} {ppid} 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"
        )
    };
    let write = |rel: String, text: String| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write("uptime".into(), "50.00 0.00\n".into());
    write("10/stat".into(), stat(10, 'S', 1));
    let kids: Vec<i32> = (1000..1300).collect();
    let listed: String = kids.iter().map(|k| format!("{k} ")).collect();
    write("10/task/10/children".into(), listed);
    for &k in &kids {
        write(format!("{k}/stat"), stat(k, 'Z', 10));
    }
    // A zombie the children file skipped: only a full scan finds it.
    write("1300/stat".into(), stat(1300, 'Z', 10));
    let root_s = root.to_str().expect("utf-8 path");
    let (code, out, err) = audit(&["--proc-root", root_s, "--pid", "10", "--json"]);
    let within = audit(&[
        "--proc-root",
        root_s,
        "--pid",
        "10",
        "--json",
        "--max-zombies",
        "301",
    ]);
    let _ = std::fs::remove_dir_all(&root);
    assert_eq!(code, 1, "{err}");
    let v = json(&out);
    assert_eq!(v["count"], 300);
    assert_eq!(v["scan"], "children_file");
    let (code, out, err) = within;
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    assert_eq!(v["count"], 301);
    assert_eq!(v["scan"], "full");
}

#[test]
fn serve_with_reaper_none_leaves_50_zombies_and_loop_none() {
    let server = Server::start(&["--quiet", "--reaper", "none"]);
    let replies = burst(server.addr, 50);
    assert!(replies.iter().all(|r| r == HELLO));
    let pid = server.pid();
    // Each child exits after replying; wait until all 50 are defunct.
    assert!(eventually(LIMIT, || zombies_of(pid) == 50));
    let (code, out, _) = audit(&["--pid", &pid.to_string(), "--json"]);
    assert_eq!(code, 1, "{out}");
    let v = json(&out);
    assert_eq!(v["count"], 50);
    assert_eq!(v["comm"], "lsbaws");
    assert_eq!(v["zombies"].as_array().expect("zombies").len(), 50, "{out}");
    let (status, _, _) = server.stop(LIMIT);
    assert!(status.success());

    let server = Server::start(&["--quiet", "--reaper", "loop"]);
    let replies = burst(server.addr, 50);
    assert!(replies.iter().all(|r| r == HELLO));
    let pid = server.pid().to_string();
    let (code, out, err) = audit(&["--pid", &pid, "--settle", "20s"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("pid {pid} (lsbaws): 0 zombies, ")),
        "{out}"
    );
    let (status, _, _) = server.stop(LIMIT);
    assert!(status.success());
}

#[test]
fn watch_prints_one_line_per_sample() {
    let (guard, _) = two_zombies();
    let pid = guard.pid().to_string();
    let started = Instant::now();
    let (code, out, err) = audit(&["--pid", &pid, "--watch", "100ms", "--count", "5"]);
    assert_eq!(code, 1, "{err}");
    assert!(started.elapsed() >= Duration::from_millis(400));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    for line in lines {
        assert!(line.ends_with("  live 0  zombies 2"), "{line}");
        assert!(line.starts_with("20") && line.contains('T'), "{line}");
    }

    let (code, out, _) = audit(&["--pid", &pid, "--watch", "100ms", "--count", "5", "--json"]);
    assert_eq!(code, 1);
    assert_eq!(out.lines().count(), 5, "{out}");
    let elapsed: Vec<f64> = out
        .lines()
        .map(|l| {
            let v = json(l);
            assert_eq!(v["zombies"], 2);
            assert_eq!(v["live_children"], 0);
            v["elapsed_s"].as_f64().expect("elapsed_s")
        })
        .collect();
    assert!(elapsed.windows(2).all(|w| w[0] < w[1]), "{elapsed:?}");
}

/// `--settle`: a parent that reaps late passes once it has reaped; one that
/// never reaps still fails when the settle time is up.
#[test]
fn settle_waits_for_a_late_reaper_and_gives_up_on_a_leak() {
    // Reaps its one child only when told to (SIGUSR1).
    let script = "import os, signal, time\n\
        signal.signal(signal.SIGUSR1, lambda *a: os.wait())\n\
        if os.fork() == 0:\n    os._exit(0)\n\
        while True:\n    time.sleep(1)\n";
    let child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn python3");
    let parent = ProcGuard::new(child);
    let pid = parent.pid();
    // `python3` may be a shim script whose own short-lived children are zombies
    // for an instant: wait until the pid runs python itself.
    let is_python = || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with("python"))
    };
    assert!(eventually(LIMIT, || is_python() && zombies_of(pid) == 1));
    let (code, out, _) = audit(&["--pid", &pid.to_string()]);
    assert_eq!(code, 1, "{out}");

    let settling = Command::new(bin())
        .args(["audit", "--pid", &pid.to_string(), "--settle", "20s"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn audit");
    let mut settling = ProcGuard::new(settling);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        settling.wait_timeout(Duration::ZERO).is_none(),
        "--settle returned before the zombie was reaped"
    );
    parent.signal(10); // SIGUSR1: reap now
    let status = settling.wait_timeout(LIMIT).expect("settle ended");
    assert_eq!(status.code(), Some(0));

    let (guard, _) = two_zombies();
    let started = Instant::now();
    let (code, _, _) = audit(&["--pid", &guard.pid().to_string(), "--settle", "300ms"]);
    assert_eq!(code, 1);
    assert!(started.elapsed() >= Duration::from_millis(300));
}
