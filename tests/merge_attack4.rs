//! Regressions from the fourth hostile test of `lsbaws merge`
//! (notes/attack-4.md): a stop signal while the output is stuck (F2), a
//! failing report dropped as noise because its JSON writes `/` as `\/`
//! (F3), a JSON array held whole (F4), nothing on stdout for `--json`
//! interrupted before any report (F11) and file names escaped twice (F9).
//! Each test fails on the build that was attacked
//! (`LSBAWS_TEST_BIN=…/lsbaws-main4`).
//!
//! Every report starts as a real `blast --json` against a server this test
//! starts (or a port nothing listens on, for a failing one).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::merge::{TempDir as Dir, blast_report, lsbaws_with_stdin};

const LIMIT: Duration = Duration::from_secs(120);

fn parse(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

/// A passing report (`--max-clients 2`, 2 connections), as a value.
fn passing() -> Value {
    let server = Server::start(&["--quiet"]);
    let report = parse(&blast_report(&server.url(), &["--max-clients", "2"]));
    let _ = server.stop(Duration::from_secs(20));
    report
}

/// `n` copies of `report` with tags of their own (distinct runs).
fn copies(report: &Value, n: usize) -> Vec<String> {
    let mut r = report.clone();
    (0..n)
        .map(|i| {
            r["tag"] = format!("pod-{i}").into();
            r.to_string()
        })
        .collect()
}

/// Whether `pid` has a handler for `sig` (SigCgt in /proc): the stop
/// signals are installed, so a signal now is merge's to handle.
fn catches(pid: i32, sig: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (sig - 1)) != 0)
}

/// Bytes `pid` has read so far (rchar in /proc/PID/io).
fn read_so_far(pid: i32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Regression (F2): merge ignored SIGTERM and SIGINT while it wrote its
/// output: with stdout a pipe nobody reads it stayed blocked, then exited 0
/// (a PASS) when the reader went away. Now a stop signal ends it within the
/// output grace (2 s), 128 + N. The attacked build is still blocked when
/// this test gives up on it, 20 s after the signal.
#[test]
fn a_stop_signal_while_the_output_is_stuck_ends_merge_with_128_plus_n() {
    let report = passing();
    let dir = Dir::new("merge-stuck-output");
    // A table far larger than a pipe's buffer (64 kB).
    let many = dir.file("many.json", &(copies(&report, 3000).join("\n") + "\n"));
    for (sig, code) in [(15, 143), (2, 130)] {
        let mut child = Command::new(bin())
            .args(["merge", &many])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut stdout = child.stdout.take().expect("stdout");
        let mut guard = ProcGuard::new(child);
        // The first byte of the table: the output has begun. Then nobody
        // reads, and the pipe fills.
        let mut first = [0u8; 1];
        let n = stdout.read(&mut first).expect("read");
        assert_eq!(n, 1, "merge printed nothing");
        assert!(catches(guard.pid(), 15), "no handler for SIGTERM");
        guard.signal(sig);
        let status = guard.wait_timeout(Duration::from_secs(20));
        drop(stdout);
        let status = status
            .unwrap_or_else(|| panic!("merge still runs 20 s after signal {sig}, its stdout full"));
        assert_eq!(status.code(), Some(code), "signal {sig}: {status:?}");
    }
}

/// Regression (F11): `merge --json -` interrupted before any report came
/// printed nothing on stdout (a `| jq` step got no input). It prints one
/// object: `interrupted`, `signal`, and the `error` saying why there is no
/// total; exit 128 + N.
#[test]
fn json_interrupted_before_any_report_is_still_one_object() {
    let mut cmd = Command::new(bin());
    cmd.args(["merge", "--json", "-"]);
    let mut spawned = Spawned::start_with_stdin(&mut cmd);
    let stdin = spawned.take_stdin();
    let pid = spawned.pid;
    assert!(
        eventually(LIMIT, || catches(pid, 2)),
        "no handler for SIGINT"
    );
    spawned.signal(2);
    let (status, out, err) = spawned.finish(LIMIT);
    drop(stdin);
    let (out, err) = (String::from_utf8_lossy(&out), String::from_utf8_lossy(&err));
    assert_eq!(status.code(), Some(130), "{out} {err}");
    let m = parse(&out);
    assert_eq!(m["interrupted"], true, "{m}");
    assert_eq!(m["signal"], "SIGINT", "{m}");
    assert_eq!(
        m["error"], "interrupted by SIGINT before any report was read",
        "{m}"
    );
}

/// Regression (F4): a JSON array of reports was parsed whole: 20 000
/// reports on one line (`json.dump` of a list) took 285 MB, and the
/// attacked build aborts under a 96 MB address-space limit (SIGABRT). Its
/// items are now added as they arrive: it merges within the limit, exact.
#[test]
fn an_array_of_reports_is_added_item_by_item_in_bounded_memory() {
    let report = passing();
    let dir = Dir::new("merge-array-memory");
    let n = 12_000;
    let array = dir.file(
        "array.json",
        &format!("[{}]\n", copies(&report, n).join(", ")),
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -v \"$0\" && exec \"$@\"")
        .arg((96 << 10).to_string())
        .arg(bin())
        .args(["merge", "--json", &array]);
    let (status, out, err) = run_bounded(&mut cmd, Duration::from_secs(300));
    assert_eq!(status.code(), Some(0), "{status:?}: {err}");
    let m = parse(&out);
    assert_eq!(m["connections"], 2 * n);
    assert_eq!(m["shards"].as_array().map(Vec::len), Some(n));
    assert_eq!(
        m["shards"][n - 1]["source"],
        format!("{array} line 1 item {n}")
    );
}

/// Regression (F4): inside an array that has not ended (a stream still
/// open), the items that arrived are merged when a stop signal comes; the
/// attacked build had merged none ("interrupted before any report").
#[test]
fn a_stop_signal_inside_an_open_array_merges_the_items_that_came() {
    let report = passing();
    let items = copies(&report, 50);
    let mut cmd = Command::new(bin());
    cmd.args(["merge", "--json", "-"]);
    let mut spawned = Spawned::start_with_stdin(&mut cmd);
    let mut stdin = spawned.take_stdin();
    let text = format!("[\n{},\n", items.join(",\n"));
    stdin.write_all(text.as_bytes()).expect("write");
    stdin.flush().expect("flush");
    let pid = spawned.pid;
    assert!(eventually(LIMIT, || read_so_far(pid) >= text.len() as u64));
    spawned.signal(15);
    let (status, out, err) = spawned.finish(LIMIT);
    drop(stdin);
    let (out, err) = (String::from_utf8_lossy(&out), String::from_utf8_lossy(&err));
    assert_eq!(status.code(), Some(143), "{out} {err}");
    let m = parse(&out);
    assert_eq!(m["interrupted"], true, "{m}");
    // All of them, unless the signal beat the adding of the last chunk.
    let shards = m["shards"].as_array().map_or(0, Vec::len);
    assert!((1..=50).contains(&shards), "{shards} shards");
    assert_eq!(m["connections"], 2 * shards);
}

/// Regression (F3): a failing report behind a prefix merge does not know,
/// whose JSON writes `/` as `\/` (PHP's json_encode, some log shippers), was
/// skipped as noise, and the merge of a failing fleet exited 0. It is an
/// error now (exit 2), as the same line without `\/` already was.
#[test]
fn a_report_escaping_its_slashes_behind_a_prefix_is_never_noise() {
    let good = passing();
    let failing = blast_report(
        &format!("http://127.0.0.1:{}/", unused_port()),
        &["--max-clients", "2"],
    );
    assert!(failing.contains("\"lsbaws-blast/1\""), "{failing}");
    let hidden = failing
        .trim()
        .replace("lsbaws-blast/1", "lsbaws-blast\\/1")
        .replace("\"schema\"", "\"\\u0073chema\"");
    for line in [
        format!("svc-1  | {hidden}"),
        format!("svc-1  | {}", hidden.replace("\\u0073chema", "schema")),
    ] {
        let [a, b] = [0, 1].map(|i| copies(&good, 2)[i].clone());
        let input = format!("{a}\n{line}\n{b}\n");
        let (status, out, err) = lsbaws_with_stdin(&["merge", "-"], &input);
        assert_eq!(status.code(), Some(2), "{line}\n{out} {err}");
        assert!(
            err.contains("stdin line 2: a blast report behind text merge does not know"),
            "{err}"
        );
    }
}

/// Regression (F9): the `from` column escaped a file name twice
/// (`\\x1b`), and JSON `shards[].source` held the escaped text, not the
/// name. Now: escaped once in the table, the real name in JSON.
#[test]
fn a_file_name_is_escaped_once_in_the_table_and_real_in_json() {
    let good = passing();
    let dir = Dir::new("merge-names");
    let name = "ev\u{1b}[31m|x|\n\u{202e}.json";
    let path = dir.file(name, &format!("{good}\n"));
    let (status, out, err) = lsbaws(&["merge", &path], LIMIT);
    assert_eq!(status.code(), Some(0), "{err}");
    assert_no_raw_controls(out.as_bytes(), "stdout");
    assert!(
        out.contains("ev\\x1b[31m\\|x\\|\\n\\u{202e}.json line 1"),
        "{out}"
    );
    assert!(!out.contains("\\\\"), "escaped twice: {out}");
    let (status, out, err) = lsbaws(&["merge", "--json", &path], LIMIT);
    assert_eq!(status.code(), Some(0), "{err}");
    let m = parse(&out);
    assert_eq!(m["shards"][0]["source"], format!("{path} line 1"));
}
