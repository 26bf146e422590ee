//! Integration tests of `lsbaws merge`: reports of real blasts against a real
//! `lsbaws serve`, merged from files and from a stream, and the inputs that
//! must be refused (exit 2, naming where).
//!
//! Must never use a fixed port or leave a process running; bounds are generous.

use std::io::Write;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(60);

/// A directory of this test's files, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("lsbaws-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    /// Writes `text` to a file here; returns its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write");
        path.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `lsbaws ARGS` with `input` on stdin; returns (status, stdout, stderr).
pub fn lsbaws_with_stdin(args: &[&str], input: &str) -> (ExitStatus, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args).stdin(Stdio::piped());
    let mut spawned = Spawned::start_with_stdin(&mut cmd);
    let mut stdin = spawned.take_stdin();
    let input = input.to_string();
    // On a thread: a child that stops reading must not block the test.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let (status, out, err) = spawned.finish(LIMIT);
    let _ = writer.join();
    (
        status,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// One `blast --json` report (its exact output line) against `url`.
pub fn blast_report(url: &str, args: &[&str]) -> String {
    let mut all = vec!["blast", url, "--json", "--threads", "1"];
    all.extend_from_slice(args);
    let (status, out, err) = lsbaws(&all, LIMIT);
    assert!(status.code().is_some_and(|c| c <= 1), "{status:?} {err}");
    serde_json::from_str::<Value>(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    out
}

fn json(out: &str) -> Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"))
}

fn hist(report: &Value, name: &str) -> lsbaws::blast::histogram::Histogram<u64> {
    lsbaws::blast::histogram::decode(report["histograms"][name].as_str().expect(name))
        .expect("decodes")
}

#[test]
fn merge_of_two_real_blasts_is_exact() {
    let server = Server::start(&["--quiet"]);
    let url = server.url();
    let dir = TempDir::new("merge-exact");
    let a = dir.file(
        "a.json",
        &blast_report(
            &url,
            &["--max-clients", "20", "--max-conns", "5", "--tag", "a"],
        ),
    );
    let b = dir.file(
        "b.json",
        &blast_report(
            &url,
            &["--max-clients", "7", "--max-conns", "3", "--tag", "b"],
        ),
    );
    let (ra, rb) = (
        json(&std::fs::read_to_string(&a).unwrap()),
        json(&std::fs::read_to_string(&b).unwrap()),
    );

    let (status, out, err) = lsbaws(&["merge", "--json", &a, &b], LIMIT);
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
    let m = json(&out);
    assert_eq!(m["connections"], 121);
    assert_eq!(m["ok"], 121);
    assert_eq!(m["clients"], 27);
    assert_eq!(m["status"]["200"], 121);
    assert_eq!(m["tag"], "merge of 2 shards");
    assert!(m["conns_per_client"].is_null(), "5 and 3 differ: {m}");
    // The merged histograms are the sum of the inputs', exactly, and the
    // percentiles are those of the sum.
    for name in ["total", "connect", "first_byte"] {
        let mut sum = hist(&ra, name);
        sum.add(hist(&rb, name)).expect("same settings");
        assert!(hist(&m, name) == sum, "{name}");
    }
    let total = hist(&m, "total");
    let ms = |q: f64| total.value_at_quantile(q) as f64 / 1000.0;
    assert_eq!(m["latency_ms"]["p50"].as_f64(), Some(ms(0.5)));
    assert_eq!(m["latency_ms"]["p99"].as_f64(), Some(ms(0.99)));
    assert_eq!(m["latency_ms"]["count"], 121);
    // Elapsed: first release to last end (the two ran one after the other).
    let elapsed = m["elapsed_s"].as_f64().expect("elapsed");
    let parts = ra["elapsed_s"].as_f64().unwrap() + rb["elapsed_s"].as_f64().unwrap();
    assert!(elapsed >= parts, "{elapsed} < {parts}");
    assert_eq!(m["started_at"], ra["started_at"]);
    assert_eq!(m["ended_at"], rb["ended_at"]);
    assert_eq!(m["shards"][0]["tag"], "a");
    assert_eq!(m["shards"][1]["source"], format!("{b} line 1"));

    // A merge of the merge with another report: merges merge. (With one of
    // its own inputs it is refused: merge_attack::a_run_counted_twice_is_refused.)
    let ab = dir.file("ab.json", &out);
    let c = dir.file(
        "c.json",
        &blast_report(
            &url,
            &["--max-clients", "10", "--max-conns", "10", "--tag", "c"],
        ),
    );
    let (status, out, err) = lsbaws(&["merge", "--json", &ab, &c], LIMIT);
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(json(&out)["connections"], 221);

    // The table: a row per shard, the total, blast's summary and histogram.
    let (status, out, _) = lsbaws(&["merge", &a, &b], LIMIT);
    assert_eq!(status.code(), Some(0));
    for needle in [
        "| a ",
        "| b ",
        "| total ",
        "| 2 shards ",
        "| connections          | 121 ",
        "Latency histogram",
    ] {
        assert!(out.contains(needle), "{needle:?} missing:\n{out}");
    }
    // The histogram for people: its rows add up to the responses.
    let rows: u64 = out
        .split("Latency histogram")
        .nth(1)
        .expect("histogram")
        .lines()
        .filter_map(|l| l.split('|').nth(2)?.trim().parse::<u64>().ok())
        .sum();
    assert_eq!(rows, 121, "{out}");
    let _ = server.stop(Duration::from_secs(20));
}

/// Two runs with the same samples (one report, and a copy tagged as another
/// run, so that it is not refused as the same run twice): the total keeps
/// every percentile and doubles every count.
#[test]
fn two_runs_of_the_same_samples_keep_their_percentiles() {
    let server = Server::start(&["--quiet"]);
    let report = blast_report(&server.url(), &["--max-clients", "16", "--max-conns", "4"]);
    let r = json(&report);
    let mut copy = r.clone();
    copy["tag"] = "a copy".into();
    let (status, out, err) =
        lsbaws_with_stdin(&["merge", "--json", "-"], &format!("{report}{copy}\n"));
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
    let m = json(&out);
    for key in ["connect_ms", "first_byte_ms", "latency_ms"] {
        for q in ["min", "p50", "p90", "p99", "max"] {
            assert_eq!(m[key][q], r[key][q], "{key}.{q}");
        }
        assert_eq!(
            m[key]["count"].as_u64(),
            r[key]["count"].as_u64().map(|n| 2 * n)
        );
    }
    for key in ["connections", "ok", "clients", "sockets_opened"] {
        assert_eq!(m[key].as_u64(), r[key].as_u64().map(|n| 2 * n), "{key}");
    }
    // Exact: the instants carry nanoseconds.
    assert_eq!(m["elapsed_s"], r["elapsed_s"]);
    let _ = server.stop(Duration::from_secs(20));
}

#[test]
fn a_stream_with_noise_merges_and_errors_decide_the_exit_code() {
    // Nothing listens: every connection is refused, so each report has errors.
    let port = unused_port();
    let url = format!("http://127.0.0.1:{port}/");
    let one = blast_report(&url, &["--max-clients", "3", "--tag", "pod-0"]);
    let two = blast_report(&url, &["--max-clients", "2", "--tag", "pod-1"]);
    // What `kubectl logs -l job-name=…` prints: each pod's stderr and stdout.
    let stream = format!(
        "lsbaws: 3 simultaneous connections need more open files (a warning)\n{one}\n\
         [pod/lsbaws-blast-1-xyz/blast] {two}"
    );
    let (status, out, err) = lsbaws_with_stdin(&["merge", "--shards", "2", "--json", "-"], &stream);
    assert_eq!(status.code(), Some(1), "5 refused > --max-errors 0: {err}");
    let m = json(&out);
    assert_eq!(m["errors"]["refused"], 5);
    assert_eq!(m["connections"], 5);
    assert!(m["latency_ms"]["count"] == 0, "{m}");
    assert!(
        err.contains(
            "skipped 1 line that is not JSON (first: stdin line 1: lsbaws: 3 simultaneous"
        ),
        "{err}"
    );
    let (status, _, _) = lsbaws_with_stdin(&["merge", "--max-errors", "5", "-"], &stream);
    assert_eq!(status.code(), Some(0));
    let (status, _, _) = lsbaws_with_stdin(&["merge", "--max-errors", "4", "-"], &stream);
    assert_eq!(status.code(), Some(1));
    // The table says so instead of rows of 0.000.
    let (_, out, _) = lsbaws_with_stdin(&["merge", "--max-errors", "5", "-"], &stream);
    assert!(out.contains("latency: no samples"), "{out}");
    assert!(!out.contains("0.000"), "{out}");
}

/// Exit 2 with one line on stderr naming the position, and with --json an
/// error object on stdout.
fn refused(args: &[&str], input: &str, why: &str) {
    let mut all = vec!["merge"];
    all.extend_from_slice(args);
    let (status, out, err) = lsbaws_with_stdin(&all, input);
    assert_eq!(status.code(), Some(2), "{args:?}: {out} {err}");
    assert!(
        err.starts_with("lsbaws: ") && err.contains(why),
        "{why:?} not in {err:?}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let mut json_args = all.clone();
    json_args.push("--json");
    let (_, out, _) = lsbaws_with_stdin(&json_args, input);
    assert!(
        json(&out)["error"]
            .as_str()
            .is_some_and(|e| e.contains(why)),
        "{out}"
    );
}

#[test]
fn bad_inputs_exit_2_naming_where() {
    let server = Server::start(&["--quiet"]);
    let good = blast_report(&server.url(), &["--max-clients", "4"]);
    let dir = TempDir::new("merge-bad");
    let good_file = dir.file("good.json", &good);
    // Truncated: a pod killed mid-write, then the next pod's output.
    let cut = dir.file("cut.json", &good[..good.len() / 2]);
    refused(
        &[&good_file, &cut],
        "",
        &format!("{cut} line 1: truncated JSON"),
    );
    // Where the cut falls decides how it reads (a value cut after its colon
    // swallows the next report and the input ends inside it; a cut string
    // meets a raw newline): either way line 1 is named, never merged.
    refused(
        &["-"],
        &format!("{}\n{good}", &good[..good.len() / 2]),
        "stdin line 1: ",
    );
    // Another schema version.
    let v2 = good.replace("\"lsbaws-blast/1\"", "\"lsbaws-blast/2\"");
    refused(
        &["-"],
        &format!("{good}{v2}"),
        "stdin line 2: schema \"lsbaws-blast/2\"",
    );
    // Another URL (another server).
    let other = Server::start(&["--quiet"]);
    let elsewhere = dir.file(
        "other.json",
        &blast_report(&other.url(), &["--max-clients", "4"]),
    );
    refused(
        &[&good_file, &elsewhere],
        "",
        &format!("{elsewhere} line 1: url http://"),
    );
    // Not a blast report: audit's JSON, a failed pod's error object, nothing.
    refused(
        &["-"],
        "{\"zombies\": [], \"count\": 0}\n",
        "stdin line 1: not a blast report",
    );
    refused(
        &["-"],
        "{\"error\": \"bad URL\"}\n",
        "a blast failed and reported no counts: bad URL",
    );
    refused(&["-"], "just noise\n", "no blast report in the input");
    refused(&["-", "-"], "", "given twice");
    refused(
        &[&format!("{}/missing.json", dir.0.display())],
        "",
        "cannot open",
    );
    refused(
        &["--shards", "3", "-"],
        &format!(
            "{good}{}",
            good.replacen("\"tag\":\"", "\"tag\":\"second ", 1)
        ),
        "--shards 3: found 2 reports",
    );
    let _ = other.stop(Duration::from_secs(20));
    let _ = server.stop(Duration::from_secs(20));
}

/// A stop signal while a stream is still open (`kubectl logs -f | merge -`):
/// the reports that arrived are merged and printed, marked interrupted, exit
/// 128 + signal, no verdict.
#[test]
fn sigint_mid_stream_prints_what_arrived() {
    let port = unused_port();
    let report = blast_report(
        &format!("http://127.0.0.1:{port}/"),
        &["--max-clients", "2"],
    );
    let mut cmd = Command::new(bin());
    cmd.args(["merge", "--json", "-"]).stdin(Stdio::piped());
    let mut spawned = Spawned::start_with_stdin(&mut cmd);
    let mut stdin = spawned.take_stdin();
    // One whole report, then half of the next, and the pipe stays open.
    stdin.write_all(report.as_bytes()).expect("write");
    stdin.write_all(&report.as_bytes()[..40]).expect("write");
    stdin.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(500));
    spawned.signal(2);
    let (status, out, err) = spawned.finish(LIMIT);
    drop(stdin);
    let out = String::from_utf8_lossy(&out);
    assert_eq!(
        status.code(),
        Some(130),
        "{out} {}",
        String::from_utf8_lossy(&err)
    );
    let m = json(&out);
    assert_eq!(m["interrupted"], true);
    assert_eq!(m["signal"], "SIGINT");
    assert_eq!(m["connections"], 2);
}
