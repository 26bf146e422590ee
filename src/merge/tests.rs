//! Tests of the merge engine through the real wire form: reports rendered by
//! `render::blast::json`, split, read back and added.

use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;

use super::*;
use crate::blast::ErrorKind;

const URL: &str = "http://127.0.0.1:8888/hello";

/// Deterministic pseudo-random latencies (µs): a body and a tail whose shape
/// depends on `seed`, so shards differ.
pub(super) fn samples(seed: u64, n: usize) -> Vec<u64> {
    let mut x = seed
        .wrapping_mul(2_862_933_555_777_941_757)
        .wrapping_add(3_037_000_493);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let r = x >> 33;
            if r.is_multiple_of(50) {
                200_000 + r % 3_000_000 // 2%: a tail up to 3 s
            } else {
                50 + (r % (1000 * (seed + 1)))
            }
        })
        .collect()
}

pub(super) fn hist(values: &[u64]) -> Histogram<u64> {
    let mut h = histogram::new();
    for v in values {
        h.record(*v).expect("in range");
    }
    h
}

/// A report whose every request succeeded with these total latencies
/// (connect and first byte: a fraction of each), released at `start_s`: one
/// client per request.
pub(super) fn report(tag: &str, values: &[u64], start_s: f64, elapsed_s: f64) -> BlastReport {
    let n = values.len() as u64;
    let connect: Vec<u64> = values.iter().map(|v| (v / 10).max(1)).collect();
    let first: Vec<u64> = values.iter().map(|v| (v / 2).max(1)).collect();
    let elapsed = Duration::from_secs_f64(elapsed_s);
    let started_at = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(1_800_000_000.0 + start_s);
    let histograms = Histograms {
        total: hist(values),
        connect: hist(&connect),
        first_byte: hist(&first),
        tls_handshake: hist(&[]),
        start_lag: hist(&[]),
    };
    BlastReport {
        schema: SCHEMA,
        tag: tag.into(),
        url: URL.into(),
        clients: n.max(1),
        conns_per_client: Some(1),
        duration_s: None,
        threads: 2,
        keep_alive: false,
        connections: n,
        ok: n,
        errors: ErrorKind::ALL.iter().map(|k| (k.key(), 0)).collect(),
        timeouts: Timeouts::default(),
        status: [("200".to_string(), n)]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect(),
        started_at: Some(started_at),
        ended_at: Some(started_at + elapsed),
        // As blast computes it: from the Duration.
        elapsed_s: elapsed.as_secs_f64(),
        conns_per_s: n as f64 / elapsed.as_secs_f64(),
        latency_ms: LatencyMs::of(&histograms.total),
        connect_ms: LatencyMs::of(&histograms.connect),
        first_byte_ms: LatencyMs::of(&histograms.first_byte),
        tls_handshake_ms: LatencyMs::default(),
        tls_resumed: 0,
        histograms,
        slow_connects: 0,
        sockets_opened: n,
        unfinished: 0,
        sources: 0,
        start_at: None,
        release_skew_ms: None,
        behind_schedule: 0,
        rate: None,
        interrupted: false,
        signal: None,
    }
}

pub(super) fn json(r: &BlastReport) -> String {
    let mut out = Vec::new();
    crate::render::blast::json(r, &mut out).expect("render");
    String::from_utf8(out).expect("utf8")
}

/// Splits, reads and merges `text` as one stdin stream.
pub(super) fn merge_text(text: &str) -> anyhow::Result<MergeReport> {
    let split = input::split("stdin", text, false)?;
    let shards = split
        .documents
        .iter()
        .map(super::read)
        .collect::<anyhow::Result<Vec<_>>>()?;
    merge(shards, None)
}

pub(super) fn err_of(text: &str) -> String {
    match merge_text(text) {
        // Not the report's Debug: its histograms are 190 kB each.
        Ok(m) => panic!("must be refused, merged {} shards", m.shards.len()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn added_histograms_equal_the_histogram_of_all_samples() {
    let parts = [samples(1, 3000), samples(2, 1234), samples(5, 77)];
    let text: String = parts
        .iter()
        .enumerate()
        .map(|(i, p)| json(&report(&format!("pod-{i}"), p, i as f64 * 0.01, 2.0)))
        .collect();
    let m = merge_text(&text).expect("merge");
    let all: Vec<u64> = parts.concat();
    let expected = hist(&all);
    assert!(m.total.histograms.total == expected, "histograms differ");
    assert_eq!(m.total.latency_ms, LatencyMs::of(&expected));
    let p99_of_all = expected.value_at_quantile(0.99) as f64 / 1000.0;
    assert_eq!(m.total.latency_ms.p99, p99_of_all);
    // An average of the shards' p99s is not the p99 of all (what this guards).
    let mean_p99: f64 = parts
        .iter()
        .map(|p| LatencyMs::of(&hist(p)).p99)
        .sum::<f64>()
        / 3.0;
    assert!(
        (mean_p99 - p99_of_all).abs() > 1.0,
        "{mean_p99} {p99_of_all}"
    );
    assert_eq!(m.total.connections, all.len() as u64);
    assert_eq!(m.total.ok, all.len() as u64);
    assert_eq!(m.total.clients, 3000 + 1234 + 77);
    assert_eq!(m.total.status["200"], all.len() as u64);
    // First release (0 s) to last end (0.02 s + 2 s).
    assert!(
        (m.total.elapsed_s - 2.02).abs() < 1e-5,
        "{}",
        m.total.elapsed_s
    );
    assert_eq!(
        m.total.started_at,
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
    );
    assert_eq!(m.total.tag, "merge of 3 shards");
    let rows: Vec<(&str, u64, f64)> = m
        .shards
        .iter()
        .map(|r| {
            (
                r.tag.as_str(),
                r.connections,
                (r.started_ms.expect("released") * 10.0).round() / 10.0,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("pod-0", 3000, 0.0),
            ("pod-1", 1234, 10.0),
            ("pod-2", 77, 20.0)
        ]
    );
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
}

/// `merge --json`'s line for `m`.
pub(super) fn merged_json(m: &MergeReport) -> String {
    let mut out = Vec::new();
    crate::render::merge::json(m, &mut out).expect("render");
    String::from_utf8(out).expect("utf8")
}

/// Two runs with the same samples (a retried pod: same tag, another
/// instant): every percentile of the total is theirs, every count doubles.
#[test]
fn two_runs_of_the_same_samples_keep_every_percentile_and_double_the_counts() {
    let mut r = report("a", &samples(3, 2000), 0.0, 1.5);
    r.errors.insert(ErrorKind::Timeout.key(), 7);
    r.timeouts.read = 7;
    r.connections += 7;
    r.slow_connects = 2;
    // Cut by SIGTERM with 3 requests in flight.
    (r.unfinished, r.clients) = (3, 2010);
    (r.interrupted, r.signal) = (true, Some(Signal(15)));
    let mut again = r.clone();
    let later = Duration::from_micros(1);
    again.started_at = r.started_at.map(|t| t + later);
    again.ended_at = r.ended_at.map(|t| t + later);
    let m = merge_text(&format!("{}{}", json(&r), json(&again))).expect("merge");
    let t = &m.total;
    for (a, b) in [
        (&t.latency_ms, &r.latency_ms),
        (&t.connect_ms, &r.connect_ms),
        (&t.first_byte_ms, &r.first_byte_ms),
    ] {
        assert_eq!(
            (a.min, a.p50, a.p90, a.p99, a.max),
            (b.min, b.p50, b.p90, b.p99, b.max)
        );
        assert!((a.mean - b.mean).abs() < 1e-9);
        assert_eq!(a.count, 2 * b.count);
    }
    assert_eq!(
        (t.connections, t.ok, t.clients),
        (2 * r.connections, 2 * r.ok, 2 * r.clients)
    );
    assert_eq!(t.errors_of(ErrorKind::Timeout), 14);
    assert_eq!((t.timeouts.read, t.slow_connects, t.unfinished), (14, 4, 6));
    assert_eq!(t.sockets_opened, 2 * r.sockets_opened);
    assert_eq!(t.status["200"], 2 * r.status["200"]);
    assert!(
        (t.elapsed_s - r.elapsed_s - 1e-6).abs() < 1e-9,
        "{}",
        t.elapsed_s
    );
    assert_eq!(t.conns_per_client, Some(1));
    assert_eq!(
        m.warnings.len(),
        1,
        "the same tag twice is said: {:?}",
        m.warnings
    );
    assert_eq!(m.runs.len(), 2);
    // A merge of merges is a merge: the total's JSON reads back as a shard.
    let again = merge_text(&merged_json(&m)).expect("merge of a merge");
    assert_eq!(again.total.latency_ms, t.latency_ms);
    assert_eq!(again.total.connections, t.connections);
    assert_eq!(again.runs, m.runs);
}

/// Regression (attack 3, F13): a merge given with one of its own inputs
/// counted that input twice without a word; so did a report given twice
/// (only a warning about its tag). Both are refused, naming both places.
#[test]
fn a_run_given_twice_is_refused_however_deep() {
    let a = report("a", &samples(1, 20), 0.0, 1.0);
    let b = report("b", &samples(2, 30), 0.5, 1.0);
    let c = report("c", &samples(3, 40), 0.7, 1.0);
    let err = err_of(&format!("{}{}", json(&a), json(&a)));
    assert!(
        err.starts_with(
            "stdin line 2: the run tagged \"a\" released at 2027-01-15T08:00:00.000000000Z"
        ) && err.contains("is already in the total (from stdin line 1)"),
        "{err}"
    );
    let ab = merged_json(&merge_text(&format!("{}{}", json(&a), json(&b))).expect("ab"));
    let err = err_of(&format!("{ab}{}", json(&a)));
    assert!(
        err.starts_with("stdin line 2: the run tagged \"a\"")
            && err.contains("(from stdin line 1 (a merge))"),
        "{err}"
    );
    // Two levels down: merge(merge(a, b), c) with b.
    let abc = merged_json(&merge_text(&format!("{ab}{}", json(&c))).expect("abc"));
    let err = err_of(&format!("{}{abc}", json(&b)));
    assert!(
        err.starts_with("stdin line 2 (a merge): the run tagged \"b\""),
        "{err}"
    );
    // The control: disjoint merges of merges add up exactly.
    let m = merge_text(&format!(
        "{abc}{}",
        json(&report("d", &samples(4, 5), 0.9, 1.0))
    ))
    .expect("disjoint");
    assert_eq!(m.total.connections, 20 + 30 + 40 + 5);
    assert_eq!(m.runs.len(), 4);
    // A merged report from before `runs` cannot be checked: refused.
    let mut old: serde_json::Value = serde_json::from_str(&ab).expect("json");
    old.as_object_mut().expect("object").remove("runs");
    let err = err_of(&format!("{old}\n{}", json(&c)));
    assert!(err.contains("a merged report without \"runs\""), "{err}");
}

#[test]
fn one_report_merges_to_itself() {
    let r = report("only", &samples(4, 500), 0.0, 1.0);
    let m = merge_text(&json(&r)).expect("merge");
    let mut expected = r.clone();
    expected.tag = "merge of 1 shard".into();
    // Everything, elapsed_s and conns_per_s included (the instants carry ns).
    assert_eq!(m.total, expected);
}

#[test]
fn an_interrupted_shard_makes_the_total_interrupted() {
    let mut r = report("cut", &samples(6, 10), 0.0, 1.0);
    r.interrupted = true;
    r.signal = Some(Signal(15));
    let ok = report("fine", &samples(7, 10), 0.0, 1.0);
    let m = merge_text(&(json(&ok) + &json(&r))).expect("merge");
    assert!(m.total.interrupted);
    assert_eq!(m.total.signal, Some(Signal(15)));
    assert_eq!(m.total.outcome(u64::MAX), crate::Outcome::Interrupted(15));
    assert_eq!(
        m.shards.iter().map(|s| s.interrupted).collect::<Vec<_>>(),
        [false, true]
    );
}

/// A run stopped before its release measured nothing and has no instants:
/// it adds its clients and unfinished requests, and no time.
#[test]
fn a_shard_stopped_before_its_release_adds_no_time() {
    let ok = report("fine", &samples(8, 10), 0.0, 1.0);
    let mut never = report("never", &[], 0.0, 1.0);
    (never.started_at, never.ended_at) = (None, None);
    (never.clients, never.conns_per_client) = (2, Some(2));
    (never.unfinished, never.interrupted, never.signal) = (4, true, Some(Signal(2)));
    let m = merge_text(&(json(&ok) + &json(&never))).expect("merge");
    assert_eq!(m.total.elapsed_s, ok.elapsed_s);
    assert_eq!(
        (m.total.started_at, m.total.ended_at),
        (ok.started_at, ok.ended_at)
    );
    assert_eq!((m.total.connections, m.total.unfinished), (10, 4));
    assert_eq!(m.shards[1].started_ms, None);
    assert!(m.total.interrupted);
}

#[test]
fn mixed_urls_and_keep_alive_are_refused_naming_both() {
    let a = report("a", &samples(1, 10), 0.0, 1.0);
    let mut b = report("b", &samples(1, 10), 0.0, 1.0);
    b.url = "http://127.0.0.2/other".into();
    let err = err_of(&format!("{}{}", json(&a), json(&b)));
    assert!(
        err.starts_with("stdin line 2: url http://127.0.0.2/other differs"),
        "{err}"
    );
    assert!(err.contains("in stdin line 1"), "{err}");
    let mut c = report("c", &samples(1, 10), 0.0, 1.0);
    c.keep_alive = true;
    let err = err_of(&format!("{}{}", json(&a), json(&c)));
    assert!(err.contains("keep_alive true differs"), "{err}");
}

#[test]
fn documents_that_are_not_mergeable_reports_are_refused_with_a_reason() {
    let good = json(&report("a", &samples(1, 10), 0.0, 1.0));
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_str(&good).expect("json");
        f(&mut v);
        format!("{good}{v}\n")
    };
    let mut other = Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).expect("bounds");
    other.record_n(100, 10).expect("in range");
    let other = histogram::encode(&other).expect("encode");
    let cases: Vec<(String, &str)> = vec![
        (
            edit(&|v| v["schema"] = "lsbaws-blast/2".into()),
            "schema \"lsbaws-blast/2\" is not \"lsbaws-blast/1\"",
        ),
        (
            edit(&|v| {
                v.as_object_mut().expect("object").remove("schema");
            }),
            "without \"schema\" and histograms (an older lsbaws)",
        ),
        (
            "{\"zombies\": [], \"count\": 0}\n".into(),
            "not a blast report (no \"schema\" key)",
        ),
        (
            "{\"error\": \"bad URL\"}\n".into(),
            "a blast failed and reported no counts: bad URL",
        ),
        (
            edit(&|v| {
                v.as_object_mut().expect("object").remove("histograms");
            }),
            "missing field `histograms`",
        ),
        (
            edit(&|v| v["histograms"]["total"] = other.clone().into()),
            "histograms.total: other settings (lowest 1, highest 60000000, 2 digits)",
        ),
        (
            edit(&|v| v["histograms"]["connect"] = "HISTFAAAAB94nJNpmSz".into()),
            "histograms.connect: ",
        ),
        (
            edit(&|v| v["latency_ms"]["count"] = 11.into()),
            "histograms.total holds 10 samples but the report counts 11",
        ),
        (
            edit(&|v| v["errors"]["warp_drive"] = 1.into()),
            "error kind \"warp_drive\" is unknown",
        ),
        (
            edit(&|v| v["ok"] = 9.into()),
            "connections 10 is not ok 9 + errors 0",
        ),
        (
            edit(&|v| v["started_at"] = "yesterday".into()),
            "started_at \"yesterday\" is not an RFC 3339",
        ),
        (
            edit(&|v| {
                v["started_at"] = serde_json::Value::Null;
                v["ended_at"] = serde_json::Value::Null;
            }),
            "no started_at, yet 10 connections",
        ),
        (
            edit(&|v| v["ended_at"] = serde_json::Value::Null),
            "one of started_at and ended_at is null",
        ),
        (
            edit(&|v| v["interrupted"] = true.into()),
            "\"interrupted\" and \"signal\" disagree",
        ),
        (
            "[1, 2]\n{\"a\": 1}\n".into(),
            "not a blast report (no \"schema\" key)",
        ),
        // Names from elsewhere are escaped once, as everywhere: `\x1b`, not
        // the `\\x1b` of a Debug of the escaped text.
        (
            edit(&|v| v["errors"]["\u{1b}[2J"] = 1.into()),
            "error kind \"\\x1b[2J\" is unknown",
        ),
        (
            edit(&|v| v["started_at"] = "\u{1b}[2J".into()),
            "started_at \"\\x1b[2J\" is not an RFC 3339",
        ),
        (
            edit(&|v| {
                v["interrupted"] = true.into();
                v["signal"] = "\u{1b}[2J".into();
            }),
            "unknown signal \"\\x1b[2J\"",
        ),
        (
            "{\"\\u001b\": 1, \"\\u001b\": 2}\n".into(),
            "the key \"\\x1b\" appears twice",
        ),
    ];
    for (text, why) in cases {
        let err = err_of(&text);
        assert!(err.contains(why), "{why:?} not in {err:?}");
        assert!(err.starts_with("stdin line "), "names the position: {err}");
    }
    assert_eq!(err_of("\n"), "no blast report in the input");
}
