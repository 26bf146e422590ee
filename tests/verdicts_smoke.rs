//! Regression tests of the verdict contract (DESIGN.md "Verdicts") for
//! `smoke`: no PASS after a stop signal, no job run for a report that cannot be
//! written, no leaked process passed over, no hostile name printed raw, no
//! unbounded buffering of the server's output.
//!
//! Each test names the defect it pins (issue 10, item N). smoke runs in its own
//! process group through `Spawned`, which kills the group and every descendant
//! if a test fails, so no server or daemon outlives a failed test.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;
use crate::verdicts::{assert_json_error, hex, json, text};

const LIMIT: Duration = Duration::from_secs(120);
const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// Python's forking server (as in smoke.rs): correct, reaps by polling.
const PY_FORKING_SERVER: &str = "import http.server, socketserver, sys
class Server(socketserver.ForkingMixIn, http.server.HTTPServer):
    request_queue_size = 1024
Server(('127.0.0.1', int(sys.argv[1])), http.server.SimpleHTTPRequestHandler).serve_forever()";

/// `lsbaws smoke --quiet ARGS` in `dir`, to completion (bounded); the exit code
/// (-1 for a signal), stdout and stderr.
fn smoke_in(dir: &TempDir, args: &[&str]) -> (i32, Vec<u8>, Vec<u8>) {
    let (status, out, err) = Spawned::start(
        Command::new(bin())
            .current_dir(&dir.0)
            .args(["smoke", "--quiet"])
            .args(args),
    )
    .finish(LIMIT);
    (status.code().unwrap_or(-1), out, err)
}

fn assert_no_verdict(out: &str) {
    assert!(
        !out.lines().any(|l| l == "PASS" || l.starts_with("FAIL")),
        "a verdict after a stop signal: {out}"
    );
}

/// Starts `smoke --reaper none --settle 20s --max-clients 20 EXTRA`, waits until
/// the built-in server holds its 20 zombies (the blast is over, the settle
/// phase runs), sends `sig`; returns the exit code, stdout, stderr and the
/// server's pid.
fn interrupt_smoke_in_settle(extra: &[&str], sig: i32) -> (i32, String, String, i32) {
    let mut args = vec![
        "smoke",
        "--quiet",
        "--reaper",
        "none",
        "--settle",
        "20s",
        "--max-clients",
        "20",
    ];
    args.extend_from_slice(extra);
    let smoke = Spawned::lsbaws(&args);
    let mut server = 0;
    let settling = eventually(Duration::from_secs(60), || {
        server = children_of(smoke.pid)
            .into_iter()
            .map(|(p, _)| p)
            .find(|&p| zombies_of(p) == 20)
            .unwrap_or(0);
        server != 0
    });
    assert!(settling, "the server never held 20 zombies");
    std::thread::sleep(Duration::from_millis(500));
    smoke.signal(sig);
    let (status, out, err) = smoke.finish(LIMIT);
    // Everything smoke started is stopped.
    assert!(
        eventually(Duration::from_secs(2), || !alive(server)),
        "server {server} outlived smoke"
    );
    (status.code().unwrap_or(-1), text(&out), text(&err), server)
}

/// Item 1: SIGINT in the settle phase printed PASS and exit 0 on a leaking
/// server (`--reaper none --settle 10s`, signal at ~2 s), and the JUnit file
/// said failures="0" errors="0".
#[test]
fn smoke_sigint_during_settle_is_130_without_a_verdict() {
    let dir = TempDir::new("sigint");
    let junit = dir.path("smoke.xml");
    let (code, out, err, _) = interrupt_smoke_in_settle(&["--junit", &junit], SIGINT);
    assert_eq!(code, 130, "{out}{err}");
    assert_no_verdict(&out);
    assert_eq!(
        out.lines().last(),
        Some("INTERRUPTED by SIGINT: no verdict"),
        "{out}"
    );
    assert!(!err.contains("exited before accepting"), "{err}");

    let xml = std::fs::read_to_string(&junit).expect("junit file");
    let doc = roxmltree::Document::parse(&xml).expect("junit parses as XML");
    let suite = doc.root_element();
    let n = |attr: &str| -> u64 {
        suite
            .attribute(attr)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert!(
        n("failures") + n("errors") > 0,
        "an interrupted run passed: {xml}"
    );
    let cases: Vec<_> = suite
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert!(!cases.is_empty(), "{xml}");
    for case in cases {
        assert!(
            case.children()
                .any(|e| e.has_tag_name("error") && e.attribute("type") == Some("interrupted")),
            "{xml}"
        );
    }
}

/// Item 1, JSON and SIGTERM: marked interrupted, no pass/fail, what was
/// measured so far still there.
#[test]
fn smoke_sigterm_during_settle_is_143_and_json_says_interrupted() {
    let (code, out, err, server) = interrupt_smoke_in_settle(&["--json"], SIGTERM);
    assert_eq!(code, 143, "{out}{err}");
    let v = json(out.as_bytes());
    assert_eq!(v["interrupted"], true, "{v}");
    assert_eq!(v["signal"], "SIGTERM", "{v}");
    assert_eq!(v["pass"], Value::Null, "{v}");
    assert_eq!(v["verdict"], "INTERRUPTED by SIGTERM", "{v}");
    assert_eq!(v["blast"]["ok"], 20, "the blast's results were lost: {v}");
    assert_eq!(v["server_pid"], server, "{v}");
}

/// Item 1, ready wait: SIGINT while the server was still starting blamed the
/// server ("exited before accepting", exit 2).
#[test]
fn smoke_sigint_while_the_server_starts_is_130_and_leaves_nothing() {
    let dir = TempDir::new("ready");
    // `sleep 5.0TAG`: about 5 s, and a command line no other process has.
    let marker = format!("5.0{}", tag());
    let server = format!(
        "sleep {marker}; exec {} -m http.server {{port}} --bind 127.0.0.1",
        python3()
    );
    let smoke = Spawned::start(
        Command::new(bin())
            .current_dir(&dir.0)
            .args(["smoke", "--quiet", "--", "sh", "-c", &server]),
    );
    let sleeping = || {
        pids_with_arg(&marker).into_iter().any(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\0"))
        })
    };
    assert!(
        eventually(Duration::from_secs(20), sleeping),
        "the server command never started"
    );
    smoke.signal(SIGINT);
    let (status, out, err) = smoke.finish(LIMIT);
    let (out, err) = (text(&out), text(&err));
    assert_eq!(status.code(), Some(130), "{status}: {out}{err}");
    assert!(!err.contains("exited before accepting"), "{err}");
    assert_no_verdict(&out);
    assert!(
        eventually(Duration::from_secs(2), || pids_with_arg(&marker).is_empty()),
        "left running: {:?}",
        pids_with_arg(&marker)
    );
}

/// Item 6: `--junit` into a directory that does not exist ran the whole job
/// (here 10 s of settling), then exited 2.
#[test]
fn smoke_unwritable_junit_is_exit_2_before_the_job() {
    let dir = TempDir::new("junit");
    let path = format!("/nonexistent-{}/x.xml", tag());
    let started = Instant::now();
    let args = ["--reaper", "none", "--settle", "10s", "--max-clients", "20"];
    let (code, out, err) = smoke_in(&dir, &[&args[..], &["--junit", &path]].concat());
    let took = started.elapsed();
    let (out, err) = (text(&out), text(&err));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains(&path), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(out.is_empty(), "a table was printed: {out}");
    // About a second; 10 s of settle would mean the job ran.
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// Item 29: with `--json`, smoke's errors printed nothing on stdout.
#[test]
fn smoke_json_errors_are_one_json_object() {
    let dir = TempDir::new("jsonerr");
    let path = format!("/nonexistent-{}/x.xml", tag());
    for args in [
        &["--json", "--junit", &path][..],
        &["--json", "--max-clients", "0"],
    ] {
        let (status, out, err) = Spawned::start(
            Command::new(bin())
                .current_dir(&dir.0)
                .args(["smoke", "--quiet"])
                .args(args),
        )
        .finish(LIMIT);
        assert_json_error(args, status, &out, &err);
    }
}

/// The orphans of a JSON report whose text holds `marker`.
fn orphans_with(v: &Value, marker: &str) -> usize {
    v["orphans"]
        .as_array()
        .unwrap_or_else(|| panic!("no orphans list: {v}"))
        .iter()
        .filter(|o| o.to_string().contains(marker))
        .count()
}

/// Item 7: a server that leaves daemons behind: smoke SIGKILLed the leaked
/// processes and said PASS. They must be listed and fail the job (beyond
/// --max-orphans), and still be gone when smoke exits. (The built-in server
/// no longer leaves a CGI program's daemons: its children stop them; here
/// its launcher leaves five.)
#[test]
fn smoke_fails_on_processes_the_server_left_behind() {
    let dir = TempDir::new("orphans");
    let run = |extra: &[&str]| {
        let t = tag();
        let url = format!("http://127.0.0.1:{{port}}/hello?{t}");
        let launcher = format!(
            "for i in 1 2 3 4 5; do (sleep 30.{t} </dev/null >/dev/null 2>&1 &); done; \
             exec \"$0\" serve --bind 127.0.0.1:{{port}} --quiet"
        );
        let args = ["--max-clients", "5", "--settle", "200ms", "--url", &url];
        let server = ["--", "sh", "-c", &launcher, bin()];
        let (code, out, err) = smoke_in(&dir, &[&args[..], extra, &server[..]].concat());
        let marker = format!("30.{t}");
        assert!(
            eventually(Duration::from_secs(2), || pids_with_arg(&marker).is_empty()),
            "daemons outlived smoke: {:?}",
            pids_with_arg(&marker)
        );
        (code, text(&out), text(&err), marker)
    };

    let (code, out, err, marker) = run(&["--json"]);
    assert_eq!(code, 1, "{out}{err}");
    let v = json(out.as_bytes());
    assert_eq!(v["pass"], false, "{v}");
    assert_eq!(orphans_with(&v, &marker), 5, "{v}");
    assert_eq!(v["max_orphans"], 0, "{v}");
    assert!(
        v["verdict"]
            .as_str()
            .is_some_and(|s| s.contains("left behind")),
        "{v}"
    );

    let (code, out, err, _) = run(&[]);
    assert_eq!(code, 1, "{out}{err}");
    let last = out.lines().last().unwrap_or("");
    assert!(
        last.starts_with("FAIL") && last.contains("left behind"),
        "{out}"
    );
    assert!(out.lines().any(|l| l.contains("orphans")), "{out}");

    let (code, out, err, _) = run(&["--max-orphans", "10"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().last(), Some("PASS"), "{out}");
}

/// Item 7, negative control: a launcher that daemonizes a correct server. The
/// daemon owns the listening socket, so it is the server, not a leak (see also
/// smoke.rs `a_server_that_daemonizes_is_still_audited_and_stopped`).
#[test]
fn smoke_daemonized_correct_server_has_no_orphans() {
    let dir = TempDir::new("launcher");
    let launcher = format!(
        "(exec {} -c \"$1\" {{port}} &); {}",
        python3(),
        crate::common::WAIT_LISTEN
    );
    let (code, out, err) = smoke_in(
        &dir,
        &[
            "--json",
            "--max-clients",
            "16",
            "--settle",
            "3s",
            "--",
            "sh",
            "-c",
            &launcher,
            "sh",
            PY_FORKING_SERVER,
        ],
    );
    assert_eq!(code, 0, "{}{}", text(&out), text(&err));
    let v = json(&out);
    assert_eq!(v["orphans"], serde_json::json!([]), "{v}");
}

/// A hostile comm (15 bytes, all kept by the kernel): a raw newline followed by
/// "ZQ", BEL, a screen clear, U+202E and U+FFFF.
const HOSTILE: &str = "q\nZQ\x07\x1b[2J\u{202e}\u{ffff}";

/// Every string in a JSON value.
fn strings(v: &Value, into: &mut Vec<String>) {
    match v {
        Value::String(s) => into.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, into)),
        Value::Object(o) => o.values().for_each(|x| strings(x, into)),
        _ => {}
    }
}

/// smoke's args for tests/servers/leaky_named_server.py: 3 clients, so 3
/// zombies named HOSTILE; `extra_argv` goes to the server's command line.
fn leaky_named(extra_argv: &str) -> Vec<String> {
    assert_eq!(HOSTILE.len(), 15);
    [
        "--max-clients",
        "3",
        "--settle",
        "300ms",
        "--",
        python3(),
        &fixture("servers/leaky_named_server.py"),
        "{port}",
        &hex(HOSTILE.as_bytes()),
        extra_argv,
    ]
    .map(str::to_string)
    .to_vec()
}

/// Item 23: smoke's zombie table printed comm raw.
#[test]
fn smoke_escapes_hostile_zombie_names() {
    let dir = TempDir::new("names");
    let args = leaky_named("x");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = smoke_in(&dir, &args);
    assert_eq!(code, 1, "{}{}", text(&out), text(&err));
    assert_no_raw_controls(&out, "smoke table");
    assert!(
        !text(&out).lines().any(|l| l.starts_with("ZQ")),
        "a raw newline from a name: {}",
        text(&out)
    );

    let (code, out, err) = smoke_in(&dir, &[&["--json"][..], &args].concat());
    assert_eq!(code, 1, "{}", text(&err));
    assert_no_raw_controls(&out, "smoke --json");
    let mut all = Vec::new();
    strings(&json(&out), &mut all);
    assert!(
        all.iter().any(|s| s == HOSTILE),
        "no string decodes to the exact name: {}",
        text(&out)
    );
}

/// Item 24: the JUnit XML was not well-formed when a name held U+FFFF (here in
/// a zombie's comm and in the server's command line).
#[test]
fn smoke_junit_stays_well_formed_with_uffff_in_names() {
    let dir = TempDir::new("junit-ffff");
    let junit = dir.path("smoke.xml");
    let args = leaky_named("a\u{ffff}b");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = smoke_in(&dir, &[&["--junit", &junit][..], &args].concat());
    assert_eq!(code, 1, "{}{}", text(&out), text(&err));
    let bytes = std::fs::read(&junit).expect("junit file");
    let xml = String::from_utf8(bytes.clone()).expect("UTF-8 XML");
    let doc = roxmltree::Document::parse(&xml)
        .unwrap_or_else(|e| panic!("junit is not well-formed XML ({e}): {xml:?}"));
    assert_no_raw_controls(&bytes, "junit");
    let failures: u64 = doc
        .root_element()
        .attribute("failures")
        .and_then(|f| f.parse().ok())
        .unwrap_or(0);
    assert!(failures >= 1, "the zombies are not a failure: {xml}");
}

/// Item 26: smoke buffered server output that has no newline without bound
/// (494 MB RSS). A server that writes 300 MB of it, then serves: smoke's
/// resident memory must stay small, and the correct server still passes.
#[test]
fn smoke_memory_stays_bounded_when_the_server_prints_no_newline() {
    let dir = TempDir::new("flood");
    let program = "import http.server, sys
w = sys.stdout.buffer
chunk = b'x' * (1 << 20)
for _ in range(300):
    w.write(chunk)
w.flush()
http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), http.server.SimpleHTTPRequestHandler).serve_forever()";
    let mut smoke = Spawned::start(Command::new(bin()).current_dir(&dir.0).args([
        "smoke",
        "--quiet",
        "--max-clients",
        "4",
        "--ready-timeout",
        "60s",
        "--settle",
        "500ms",
        "--",
        python3(),
        "-c",
        program,
        "{port}",
    ]));
    let status_file = format!("/proc/{}/status", smoke.pid);
    let kib = |status: &str, key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let (mut peak_kib, mut samples) = (0, 0);
    let deadline = Instant::now() + LIMIT;
    while smoke.wait_timeout(Duration::from_millis(20)).is_none() {
        assert!(Instant::now() < deadline, "smoke did not end");
        if let Ok(status) = std::fs::read_to_string(&status_file) {
            // VmHWM: the peak so far, so no spike between samples is missed.
            let now = kib(&status, "VmHWM:").max(kib(&status, "VmRSS:"));
            if now > 0 {
                peak_kib = peak_kib.max(now);
                samples += 1;
            }
        }
    }
    let (status, out, err) = smoke.finish(LIMIT);
    assert!(samples > 0, "smoke was never sampled");
    assert!(
        peak_kib < 64 * 1024,
        "smoke's RSS reached {} MiB",
        peak_kib / 1024
    );
    assert_eq!(status.code(), Some(0), "{}{}", text(&out), text(&err));
}

/// Item 27: `--grace 0` was accepted, then failed a correct built-in server
/// (killed by SIGKILL after the grace period: FAIL). Below 1 s it is a usage
/// error with the built-in server; a server command may have 0 (SIGKILL at once).
#[test]
fn smoke_grace_below_1s_is_a_usage_error_with_the_builtin_server() {
    let dir = TempDir::new("grace");
    for grace in ["0", "0s", "500ms"] {
        let (code, out, err) = smoke_in(&dir, &["--grace", grace, "--max-clients", "4"]);
        let (out, err) = (text(&out), text(&err));
        assert_eq!(code, 2, "--grace {grace}: {out}{err}");
        assert!(out.is_empty(), "--grace {grace}: it ran: {out}");
        assert_eq!(err.lines().count(), 1, "--grace {grace}: {err}");
        assert!(err.starts_with("lsbaws: "), "--grace {grace}: {err}");
    }
    // Negative control: a server command with --grace 0 runs, and passes.
    let (code, out, err) = smoke_in(
        &dir,
        &[
            "--grace",
            "0",
            "--max-clients",
            "8",
            "--",
            python3(),
            "-m",
            "http.server",
            "{port}",
            "--bind",
            "127.0.0.1",
        ],
    );
    assert_eq!(code, 0, "{}{}", text(&out), text(&err));
}
