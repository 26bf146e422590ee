//! Regression (attack 3, F5): reports whose counts do not add up were
//! merged. Each case breaks one invariant of a real report; the control is
//! the same report unbroken, which merges.

use serde_json::{Value, json};

use super::super::tests::{err_of, hist, json as report_json, merge_text, report, samples};
use crate::blast::histogram;

/// The fixture: 10 requests, all ok, one client each, http://.
fn good() -> Value {
    let text = report_json(&report("a", &samples(1, 10), 0.0, 1.0));
    serde_json::from_str(&text).expect("json")
}

fn encoded(values: &[u64]) -> Value {
    histogram::encode(&hist(values)).expect("encode").into()
}

/// `edit` applied to the fixture must be refused for `why`.
fn refused(edit: impl Fn(&mut Value), why: &str) {
    let mut v = good();
    edit(&mut v);
    let err = err_of(&format!("{v}\n"));
    assert!(err.contains(why), "{why:?} not in {err:?}");
    assert!(
        err.starts_with("stdin line 1: "),
        "names the position: {err}"
    );
    assert!(!err.contains('\u{1b}'), "escaped: {err:?}");
}

#[test]
fn the_unbroken_report_merges() {
    let m = merge_text(&format!("{}\n", good())).expect("merges");
    assert_eq!(m.total.connections, 10);
}

#[test]
fn responses_statuses_and_latency_samples_agree() {
    refused(
        |v| {
            v["histograms"]["total"] = encoded(&[5]);
            v["latency_ms"]["count"] = 1.into();
        },
        "1 latency samples for 10 complete responses",
    );
    refused(
        |v| v["status"] = json!({"200": 999_999, "500": 3}),
        "status counts 999999 2xx and 3 other, but ok is 10 and errors.http_status 0",
    );
    refused(|v| v["status"] = json!({}), "status counts 0 2xx");
    refused(
        |v| v["status"] = json!({"-1": 10}),
        "status code \"-1\" is not a 3-digit HTTP status",
    );
    refused(
        |v| v["status"] = json!({"2\u{1b}[0m": 10}),
        "status code \"2\\x1b[0m\" is not",
    );
    refused(
        |v| v["status"] = json!({"200": 10, "503": 0}),
        "status 503 counts 0",
    );
    refused(
        |v| {
            v["ok"] = 0.into();
            v["errors"]["refused"] = 10.into();
        },
        "status counts 10 2xx and 0 other, but ok is 0",
    );
}

#[test]
fn sockets_connects_and_first_bytes_agree() {
    let many: Vec<u64> = (1..=100_000).collect();
    refused(
        |v| {
            v["histograms"]["connect"] = encoded(&many);
            v["connect_ms"]["count"] = 100_000.into();
        },
        "100000 connect samples for 10 sockets opened",
    );
    refused(
        |v| v["sockets_opened"] = 0.into(),
        "10 connect samples for 0 sockets",
    );
    refused(
        |v| v["slow_connects"] = 1_000_000_000_000u64.into(),
        "1000000000000 slow connects of 10 sockets",
    );
    refused(
        |v| {
            v["histograms"]["first_byte"] = encoded(&many[..11]);
            v["first_byte_ms"]["count"] = 11.into();
        },
        "11 first-byte samples for 10 complete responses of 10 requests",
    );
    refused(
        |v| {
            v["histograms"]["tls_handshake"] = encoded(&[5]);
            v["tls_handshake_ms"]["count"] = 1.into();
        },
        "TLS handshakes, timeouts or errors for an http:// url",
    );
    refused(
        |v| v["url"] = "ftp://x/".into(),
        "url ftp://x/ is not http://",
    );
}

#[test]
fn timeouts_and_the_plan_agree() {
    refused(
        |v| v["timeouts"]["connect"] = 1000.into(),
        "timeouts connect 1000 + write 0 + read 0 + handshake 0 is not errors.timeout 0",
    );
    refused(|v| v["clients"] = 0.into(), "clients is 0");
    refused(|v| v["threads"] = 0.into(), "threads is 0");
    refused(
        |v| v["unfinished"] = 1_000_000.into(),
        "connections 10 + unfinished 1000000 is not clients 10 × conns_per_client 1",
    );
    // The plan adds up, but a run that was not stopped left requests.
    refused(
        |v| {
            v["unfinished"] = 2.into();
            v["clients"] = 12.into();
        },
        "2 unfinished requests in a count run that was not interrupted",
    );
    refused(
        |v| v["duration_s"] = 1.0.into(),
        "both conns_per_client and duration_s",
    );
    refused(
        |v| v["conns_per_client"] = Value::Null,
        "neither conns_per_client nor duration_s",
    );
    refused(
        |v| {
            v["conns_per_client"] = Value::Null;
            v["duration_s"] = 1.0.into();
            v["unfinished"] = 11.into();
        },
        "11 unfinished requests for 10 --duration clients",
    );
    refused(
        |v| v["behind_schedule"] = 1.into(),
        "start lag or behind_schedule without a --rate",
    );
    let rate = |planned: u64, lag: u64| {
        json!({"target_per_s": 100.0, "planned": planned, "achieved_per_s": 99.0,
               "start_lag_ms": {"count": lag}})
    };
    refused(
        |v| {
            v["rate"] = rate(12, 10);
            v["histograms"]["start_lag"] = encoded(&[1; 10]);
        },
        "connections 10 + unfinished 0 is not rate.planned 12",
    );
    refused(
        |v| {
            v["rate"] = rate(10, 9);
            v["histograms"]["start_lag"] = encoded(&[1; 9]);
        },
        "9 start-lag samples and 0 behind schedule for 10 requests made",
    );
    // The control: the same open-model report, consistent.
    let mut v = good();
    v["rate"] = rate(10, 10);
    v["histograms"]["start_lag"] = encoded(&[1; 10]);
    v["behind_schedule"] = 3.into();
    merge_text(&format!("{v}\n")).expect("a consistent --rate report merges");
}

#[test]
fn a_merged_report_adds_up_to_its_rows() {
    let m = merge_text(&format!("{}\n", good())).expect("merges");
    let text = super::super::tests::merged_json(&m);
    merge_text(&text).expect("a merged report merges");
    let mut v: Value = serde_json::from_str(&text).expect("json");
    v["shards"][0]["ok"] = 9.into();
    let err = err_of(&format!("{v}\n"));
    assert!(
        err.contains("its shards' ok add up to 9, not its 10"),
        "{err}"
    );
    v["shards"] = json!([]);
    let err = err_of(&format!("{v}\n"));
    assert!(err.contains("a merged report with no shards"), "{err}");
}
