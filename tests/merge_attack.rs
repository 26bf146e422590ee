//! Regressions from the third hostile test of `lsbaws merge`
//! (notes/attack-3.md): memory that grew with the number of reports (F3), a
//! histogram that made merge allocate what its header claimed (F4), reports
//! whose counts do not add up (F5), report files dropped as noise (F6), text
//! from a report printed raw (F10) and a run counted twice (F13). Each test
//! fails on the build that was attacked (`LSBAWS_TEST_BIN=…/lsbaws-main3`).
//!
//! Every report starts as a real `blast --json` against a server this test
//! starts; memory-hungry runs are bounded by `ulimit -v`, so a regression
//! fails the test instead of exhausting the machine.

use std::process::{Command, ExitStatus};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::common::listener::{TestServer, read_request};
use crate::common::*;
use crate::merge::{TempDir as Dir, blast_report, lsbaws_with_stdin};

const LIMIT: Duration = Duration::from_secs(120);

fn parse(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

/// `lsbaws ARGS` with its address space limited to `kb` (`ulimit -v`).
fn lsbaws_within(kb: u64, args: &[&str]) -> (ExitStatus, String, String) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -v \"$0\" && exec \"$@\"")
        .arg(kb.to_string())
        .arg(bin())
        .args(args);
    run_bounded(&mut cmd, LIMIT)
}

/// One real report, and the server it ran against (stopped by the caller).
fn real_report(args: &[&str]) -> (Server, Value) {
    let server = Server::start(&["--quiet"]);
    let report = parse(&blast_report(&server.url(), args));
    (server, report)
}

/// Regression (F3): every report's five decoded histograms (about 1 MB)
/// were kept until the sum, so 2000 reports took 1.9 GB and 5000 aborted
/// under a 4 GB limit. Added as they are read, 2000 reports fit in 256 MB of
/// address space (the attacked build aborts there with SIGABRT), and the
/// total is still exact.
#[test]
fn merge_memory_does_not_grow_with_the_reports() {
    let (server, mut r) = real_report(&["--max-clients", "10", "--max-conns", "2"]);
    let _ = server.stop(Duration::from_secs(20));
    let dir = Dir::new("merge-memory");
    let mut text = String::new();
    for i in 0..2000 {
        r["tag"] = format!("pod-{i}").into();
        text.push_str(&r.to_string());
        text.push('\n');
    }
    let many = dir.file("many.json", &text);
    let (status, out, err) = lsbaws_within(256 << 10, &["merge", "--json", &many]);
    assert_eq!(status.code(), Some(0), "{status:?}: {err}");
    let m = parse(&out);
    assert_eq!(m["connections"], 2000 * 20);
    assert_eq!(m["ok"], 2000 * 20);
    assert_eq!(m["latency_ms"]["count"], 2000 * 20);
    assert_eq!(m["shards"].as_array().map(Vec::len), Some(2000));
    assert_eq!(m["runs"].as_array().map(Vec::len), Some(2000));
    // A quarter of them from a pipe adds up the same.
    let quarter: String = text.lines().take(500).map(|l| format!("{l}\n")).collect();
    let (status, out, err) = lsbaws_with_stdin(&["merge", "--json", "-"], &quarter);
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(parse(&out)["connections"], 500 * 20);
}

/// The V2 histogram header of lsbaws's settings, declaring `declared` bytes
/// of payload, then `payload`.
fn v2(declared: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(0x1c84_9313u32.to_be_bytes());
    b.extend(declared.to_be_bytes());
    b.extend(0u32.to_be_bytes());
    b.extend(3u32.to_be_bytes());
    b.extend(1u64.to_be_bytes());
    b.extend(3_600_000_000u64.to_be_bytes());
    b.extend(1.0f64.to_be_bytes());
    b.extend(payload);
    b
}

/// Regression (F4): a 300-byte histogram whose header claimed a 4 GiB
/// payload made merge allocate 4 GiB (SIGABRT under a memory limit), and one
/// that inflates to far more than any histogram of these settings (zeros:
/// counts of 0 never fail) was accepted. Both are refused by size before
/// anything that size is allocated: exit 2, naming the report and the
/// histogram.
#[test]
fn a_histogram_larger_than_its_settings_allow_is_refused_before_allocating() {
    use std::io::Write;
    let (server, good) = real_report(&["--max-clients", "4"]);
    let _ = server.stop(Duration::from_secs(20));
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut bomb = good.clone();
    bomb["histograms"]["tls_handshake"] = b64(&v2(0xFFFF_FFF0, &[0; 260])).into();
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&v2(16 << 20, &vec![0; 16 << 20]))
        .expect("deflate");
    let z = z.finish().expect("deflate");
    let mut deflated = 0x1c84_9314u32.to_be_bytes().to_vec();
    deflated.extend((z.len() as u32).to_be_bytes());
    deflated.extend(z);
    let mut inflating = good.clone();
    inflating["histograms"]["tls_handshake"] = b64(&deflated).into();
    let dir = Dir::new("merge-bomb");
    for (name, report, why) in [
        (
            "bomb.json",
            &bomb,
            "histograms.tls_handshake: the header declares a payload of 4294967280 bytes",
        ),
        (
            "inflating.json",
            &inflating,
            "histograms.tls_handshake: inflates to more than",
        ),
    ] {
        let file = dir.file(name, &format!("{report}\n"));
        let (status, out, err) = lsbaws_within(1 << 20, &["merge", "--json", &file]);
        assert_eq!(status.code(), Some(2), "{name}: {status:?} {out} {err}");
        assert!(
            err.contains(&format!("{file} line 1: {why}")),
            "{name}: {err}"
        );
        assert!(
            parse(&out)["error"]
                .as_str()
                .is_some_and(|e| e.contains(why))
        );
    }
    // The control: the report as blast wrote it merges in the same limit.
    let file = dir.file("good.json", &format!("{good}\n"));
    let (status, _, err) = lsbaws_within(1 << 20, &["merge", &file]);
    assert_eq!(status.code(), Some(0), "{err}");
}

/// Regression (F5): reports whose counts contradict each other were merged
/// (exit 0), and of two equal keys the last silently won. Each edit breaks
/// one invariant of a real report and is refused with exit 2 naming it.
#[test]
fn a_report_whose_counts_do_not_add_up_is_refused() {
    let (server, good) = real_report(&["--max-clients", "5", "--max-conns", "3"]);
    let _ = server.stop(Duration::from_secs(20));
    let text = good.to_string();
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        v.to_string()
    };
    let cases = [
        (
            edit(&|v| v["status"] = json!({"200": 999_999, "500": 3})),
            "status counts 999999 2xx and 3 other, but ok is 15",
        ),
        (
            edit(&|v| v["timeouts"]["connect"] = 1000.into()),
            "timeouts connect 1000 + write 0 + read 0 + handshake 0 is not errors.timeout 0",
        ),
        (edit(&|v| v["clients"] = 0.into()), "clients is 0"),
        (
            edit(&|v| v["unfinished"] = 1_000_000.into()),
            "connections 15 + unfinished 1000000 is not clients 5 × conns_per_client 3",
        ),
        (
            edit(&|v| v["sockets_opened"] = 0.into()),
            "15 connect samples for 0 sockets opened",
        ),
        (
            text.replacen(
                "\"connections\":15,",
                "\"connections\":15,\"connections\":9999,",
                1,
            ),
            "the key \"connections\" appears twice in one object",
        ),
    ];
    for (report, why) in cases {
        assert_ne!(report, text, "the edit for {why:?} changed nothing");
        let (status, out, err) = lsbaws_with_stdin(&["merge", "-"], &format!("{report}\n"));
        assert_eq!(status.code(), Some(2), "{why}: {out} {err}");
        assert!(
            err.contains(&format!("stdin line 1: {why}")),
            "{why}: {err}"
        );
    }
}

/// Runs `blast URL --json ARGS`, stops it with SIGINT after `after` when
/// given; returns its exit code and report.
fn blast_run(url: &str, args: &[&str], after: Option<Duration>) -> (Option<i32>, String) {
    let mut all = vec!["blast", url, "--json", "--threads", "2"];
    all.extend_from_slice(args);
    let run = Spawned::lsbaws(&all);
    if let Some(after) = after {
        std::thread::sleep(after);
        run.signal(2);
    }
    let (status, out, err) = run.finish(LIMIT);
    let out = String::from_utf8_lossy(&out).into_owned();
    let err = String::from_utf8_lossy(&err);
    assert!(out.starts_with("{\"schema\""), "{args:?}: {out} {err}");
    (status.code(), out)
}

/// Merges `reports` (a stream); returns its exit code and output.
fn merged(reports: &[&str]) -> (Option<i32>, Value) {
    let (status, out, err) = lsbaws_with_stdin(&["merge", "--json", "-"], &reports.concat());
    assert_ne!(status.code(), Some(2), "refused: {err}");
    (status.code(), parse(&out))
}

/// The control of F5's checks: every kind of report a real blast prints
/// holds them, alone and merged with others of its kind, and a merge of
/// merges does too. Modes: count, duration, keep-alive, rate (count and
/// duration), https (and resumed sessions), --start-at, --source, refused
/// connections, read timeouts, non-2xx answers, and runs cut by SIGINT
/// during the run and before the release.
#[test]
fn every_real_blast_report_merges() {
    use crate::blast_tls::{Pki, https_url};
    let server = Server::start(&["--quiet"]);
    let url = server.url();
    let start_at = humantime::format_rfc3339_millis(
        std::time::SystemTime::now() + Duration::from_millis(1500),
    )
    .to_string();
    let closed: Vec<(Option<i32>, String)> = [
        &["--max-clients", "5", "--max-conns", "3"][..],
        &["--max-clients", "3", "--duration", "300ms"],
        &["--max-clients", "4", "--start-at", &start_at],
        &[
            "--max-clients",
            "4",
            "--max-conns",
            "2",
            "--source",
            "127.0.0.1",
        ],
    ]
    .iter()
    .map(|args| blast_run(&url, args, None))
    .collect();
    let keep_alive = blast_run(
        &url,
        &["--keep-alive", "--max-clients", "3", "--max-conns", "5"],
        None,
    );
    let rate = [
        blast_run(
            &url,
            &["--rate", "200", "--max-clients", "4", "--max-conns", "20"],
            None,
        ),
        blast_run(
            &url,
            &["--rate", "100", "--max-clients", "4", "--duration", "300ms"],
            None,
        ),
    ];
    let refused = blast_run(
        &format!("http://127.0.0.1:{}/", unused_port()),
        &["--max-clients", "3", "--max-conns", "2"],
        None,
    );
    let silent = TestServer::start(|_, _conn, stopping| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !stopping.load(std::sync::atomic::Ordering::SeqCst)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let timeouts = blast_run(
        &silent.url(),
        &["--max-clients", "3", "--timeout", "200ms"],
        None,
    );
    let cut = blast_run(
        &silent.url(),
        &["--max-clients", "4", "--max-conns", "3", "--timeout", "20s"],
        Some(Duration::from_millis(700)),
    );
    let later =
        humantime::format_rfc3339_millis(std::time::SystemTime::now() + Duration::from_secs(60))
            .to_string();
    let unreleased = blast_run(
        &url,
        &["--max-clients", "2", "--start-at", &later],
        Some(Duration::from_millis(500)),
    );
    let failing = TestServer::start(|_, mut conn, _| {
        crate::common::listener::answer(
            &mut conn,
            b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    });
    let status_503 = blast_run(&failing.url(), &["--max-clients", "3"], None);
    let pki = Pki::new("merge");
    let tls = pki.server();
    let https = [
        blast_run(
            &https_url(&tls),
            &[
                "--cacert",
                pki.ca(),
                "--max-clients",
                "3",
                "--max-conns",
                "2",
            ],
            None,
        ),
        blast_run(
            &https_url(&tls),
            &["--cacert", pki.ca(), "--max-conns", "4", "--tls-resume"],
            None,
        ),
    ];
    assert_eq!(cut.0, Some(130), "{}", cut.1);
    assert_eq!(unreleased.0, Some(130), "{}", unreleased.1);
    assert!(
        parse(&unreleased.1)["started_at"].is_null(),
        "{}",
        unreleased.1
    );

    // Each alone: the same counts and the same exit code as blast's.
    let all = closed
        .iter()
        .chain([
            &keep_alive,
            &refused,
            &timeouts,
            &cut,
            &unreleased,
            &status_503,
        ])
        .chain(&rate)
        .chain(&https);
    for (code, report) in all {
        let (merged_code, m) = merged(&[report]);
        let r = parse(report);
        assert_eq!(merged_code, *code, "{report}");
        for key in [
            "connections",
            "ok",
            "unfinished",
            "sockets_opened",
            "errors",
            "status",
        ] {
            assert_eq!(m[key], r[key], "{key}: {report}");
        }
    }
    // Those of one kind together, then that merge with another report of
    // its kind: merges of merges hold the checks too. The verdict is the
    // worst of theirs (on a busy machine a --duration run may leave requests
    // unfinished, which fails it).
    for group in [&closed[..], &rate, &https] {
        let refs: Vec<&str> = group.iter().map(|r| r.1.as_str()).collect();
        let worst = |runs: &[(Option<i32>, String)]| runs.iter().map(|r| r.0).max().flatten();
        let (code, m) = merged(&refs[1..]);
        assert_eq!(code, worst(&group[1..]), "{m}");
        let (code, again) = merged(&[&format!("{m}\n"), refs[0]]);
        assert_eq!(code, worst(group), "{again}");
        let sum: u64 = refs
            .iter()
            .map(|r| parse(r)["connections"].as_u64().expect("n"))
            .sum();
        assert_eq!(again["connections"], sum);
    }
    drop((silent, failing, tls));
    let _ = server.stop(Duration::from_secs(20));
}

/// A server that answers after 300 ms; a report of it that fails (3 read
/// timeouts at `--timeout 100ms`) and one that passes, as in the attack.
fn failing_and_passing() -> (String, String, TestServer) {
    let server = TestServer::start(|_, mut conn, _| {
        let _ = read_request(&mut conn);
        std::thread::sleep(Duration::from_millis(300));
        let _ = std::io::Write::write_all(&mut conn, HELLO.as_bytes());
    });
    let failing = blast_report(
        &server.url(),
        &[
            "--max-clients",
            "3",
            "--timeout",
            "100ms",
            "--tag",
            "failing",
        ],
    );
    let passing = blast_report(
        &server.url(),
        &["--max-clients", "3", "--timeout", "5s", "--tag", "passing"],
    );
    (failing, passing, server)
}

/// Regression (F6): a named report file whose line began with a UTF-8 BOM
/// or a `kubectl logs --timestamps` time, or that held a JSON array, was
/// skipped as "not JSON" with one stderr note, and a failing run vanished
/// from the total (FAIL became PASS). Now they are reports; and a named
/// file that yields no report is an error, never an input that adds nothing.
#[test]
fn a_report_file_is_never_dropped_as_noise() {
    let (failing, passing, server) = failing_and_passing();
    let dir = Dir::new("merge-noise");
    let pass = dir.file("passing.json", &passing);
    let fail = dir.file("failing.json", &failing);
    // The control: the failing run fails the merge.
    let (status, _, err) = lsbaws(&["merge", &fail, &pass], LIMIT);
    assert_eq!(status.code(), Some(1), "{err}");
    let framed = [
        ("bom.json", format!("\u{feff}{failing}")),
        (
            "stamped.json",
            format!("2026-11-30T01:00:00.000000000Z {failing}"),
        ),
        (
            "both.json",
            format!("[pod/blast-0/blast] 2026-11-30T01:00:00.5Z \u{feff}{failing}"),
        ),
        ("array.json", format!("[{}]\n", failing.trim())),
    ];
    for (name, text) in &framed {
        let file = dir.file(name, text);
        let (status, out, err) = lsbaws(&["merge", "--json", &file, &pass], LIMIT);
        assert_eq!(status.code(), Some(1), "{name}: {err}");
        let m = parse(&out);
        assert_eq!(m["errors"]["timeout"], 3, "{name}: {m}");
        assert_eq!(m["connections"], 6, "{name}: {m}");
        assert!(err.is_empty(), "{name}: {err}");
    }
    // An array of two reports, and a third file: all three are added.
    let array = dir.file(
        "two.json",
        &format!("[\n  {},\n  {}\n]\n", failing.trim(), passing.trim()),
    );
    let third = dir.file(
        "third.json",
        &blast_report(&server.url(), &["--max-clients", "2", "--tag", "third"]),
    );
    let (status, out, err) = lsbaws(&["merge", "--json", &array, &third], LIMIT);
    assert_eq!(status.code(), Some(1), "{err}");
    let m = parse(&out);
    assert_eq!(m["connections"], 3 + 3 + 2, "{m}");
    assert_eq!(m["shards"][1]["source"], format!("{array} line 1 item 2"));
    // A named file with no report in it is exit 2, whatever the others hold.
    for (name, text, why) in [
        (
            "noise.txt",
            "lsbaws: a warning\nsome noise\n",
            "no blast report in this file (skipped 2 lines",
        ),
        ("empty.json", "", "no blast report in this file"),
        ("empty-array.json", "[]\n", "no blast report in this file"),
        (
            "compose.log",
            &format!("blast_1  | {failing}"),
            "line 1: a blast report behind text merge does not know",
        ),
    ] {
        let file = dir.file(name, text);
        let (status, out, err) = lsbaws(&["merge", &pass, &file], LIMIT);
        assert_eq!(status.code(), Some(2), "{name}: {out} {err}");
        assert!(err.contains(&file) && err.contains(why), "{name}: {err}");
    }
    drop(server);
}

/// Regression (F10): a status code from a report file reached the table
/// raw (an ESC sequence on the terminal). Such a report is now refused
/// (it is no status blast can print), with the code escaped; and text that
/// is valid (a tag, a URL path) is escaped in the table, its `|` too.
#[test]
fn text_from_a_report_never_reaches_the_terminal_raw() {
    let (server, good) = real_report(&["--max-clients", "2"]);
    let _ = server.stop(Duration::from_secs(20));
    let mut evil = good.clone();
    evil["status"] = json!({"2\u{1b}[0m": 2});
    let (status, out, err) = lsbaws_with_stdin(&["merge", "-"], &format!("{evil}\n"));
    assert_no_raw_controls(out.as_bytes(), "stdout");
    assert_no_raw_controls(err.as_bytes(), "stderr");
    assert_eq!(status.code(), Some(2), "{out} {err}");
    assert!(err.contains("status code \"2\\x1b[0m\""), "{err}");
    // The control: tags and URLs with controls merge, escaped in the table.
    let mut named = good.clone();
    named["tag"] = "pod\u{1b}]0;title\u{7}\u{202e}|x".into();
    let url = format!("{}\u{1b}[31m", good["url"].as_str().expect("url"));
    named["url"] = url.into();
    let (status, out, err) = lsbaws_with_stdin(&["merge", "-"], &format!("{named}\n"));
    assert_eq!(status.code(), Some(0), "{err}");
    assert_no_raw_controls(out.as_bytes(), "stdout");
    assert!(
        out.contains("pod\\x1b]0;title\\x07\\u{202e}\\|x") && out.contains("\\x1b[31m"),
        "{out}"
    );
}

/// Regression (F13): `merge ab.json a.json`, where ab.json is `merge --json
/// a.json b.json`, counted a twice without a word (and a report given twice
/// only got a warning about its tag). A merged report names its runs, and a
/// run already in the total is refused: a warning would leave a total that
/// is wrong by a whole run, with a verdict on it.
#[test]
fn a_run_counted_twice_is_refused() {
    let server = Server::start(&["--quiet"]);
    let dir = Dir::new("merge-twice");
    let a = dir.file(
        "a.json",
        &blast_report(&server.url(), &["--max-clients", "5", "--tag", "a"]),
    );
    let b = dir.file(
        "b.json",
        &blast_report(&server.url(), &["--max-clients", "3", "--tag", "b"]),
    );
    let (status, out, err) = lsbaws(&["merge", "--json", &a, &b], LIMIT);
    assert_eq!(status.code(), Some(0), "{err}");
    let ab = dir.file("ab.json", &out);
    for args in [[&ab, &a], [&a, &a]] {
        let (status, out, err) = lsbaws(&["merge", "--json", args[0], args[1]], LIMIT);
        assert_eq!(status.code(), Some(2), "{args:?}: {out} {err}");
        assert!(
            err.contains(&format!("{a} line 1: the run tagged \"a\" released at "))
                && err.contains("is already in the total (from "),
            "{err}"
        );
    }
    // The control: the merge with a run it does not hold adds up.
    let c = dir.file(
        "c.json",
        &blast_report(&server.url(), &["--max-clients", "2", "--tag", "c"]),
    );
    let (status, out, err) = lsbaws(&["merge", "--json", &ab, &c], LIMIT);
    assert_eq!(status.code(), Some(0), "{err}");
    let m = parse(&out);
    assert_eq!(m["connections"], 5 + 3 + 2);
    let tags: Vec<&str> = m["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["tag"].as_str().expect("tag"))
        .collect();
    assert_eq!(tags, ["a", "b", "c"]);
    let _ = server.stop(Duration::from_secs(20));
}
