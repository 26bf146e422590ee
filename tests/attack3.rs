//! Regression tests for the third hostile round's findings on `blast`
//! (`/work/notes`-style ids F2, F8, F9, F16, F17, F18 in the closing note):
//! a run whose exit code depended on which thread took the last descriptor,
//! unbounded reads, absurd schedules, and addresses that are not addresses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::listener::{blast_json, hello_server};
use crate::common::*;

const LIMIT: Duration = Duration::from_secs(60);

/// Runs `lsbaws ARGS` under the shell limit `ulimit` (`-n 256`, `-v 2000000`).
fn under_ulimit(ulimit: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = std::process::Command::new("sh");
    // `$0` is the ulimit argument, word-split on purpose.
    cmd.args(["-c", "ulimit $0 || exit 99; exec \"$@\"", ulimit, bin()])
        .args(args);
    let (status, out, err) = run_bounded(&mut cmd, LIMIT);
    (status.code(), out, err)
}

/// F2: under `ulimit -n 256`, 1000 clients on 4 threads ended in exit 1
/// (fd_exhausted counted) or exit 2 ("cannot start 2 threads: Too many open
/// files") by chance: worker threads' clients took the descriptors the last
/// runtime still needed (24 of 30 runs were exit 2 on the old build). Every
/// run must now be the same: exit 1, the exhaustion counted.
#[test]
fn a_low_fd_limit_gives_the_same_verdict_every_time() {
    let server = hello_server();
    let url = server.url();
    for round in 0..8 {
        let (code, out, err) = under_ulimit(
            "-n 256",
            &[
                "blast",
                &url,
                "--max-clients",
                "1000",
                "--threads",
                "4",
                "--json",
            ],
        );
        assert_eq!(code, Some(1), "round {round}: {out}{err}");
        assert!(out.contains("\"fd_exhausted\":"), "round {round}: {out}");
    }
}

/// F8: `--cacert /dev/zero` read without a bound until the machine ran out of
/// memory. Now: exit 2 at once, one line. (Under a memory limit, so that the
/// old build fails this test instead of the machine.)
#[test]
fn an_endless_cacert_is_refused_not_read() {
    let (code, out, err) = under_ulimit(
        "-v 2000000",
        &["blast", "https://127.0.0.1:1/", "--cacert", "/dev/zero"],
    );
    assert_eq!(code, Some(2), "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--cacert /dev/zero"), "{err}");
    // Refused for its size, not after memory ran out (the old build said
    // "out of memory" here, having read 2 GB first).
    assert!(err.contains("larger than"), "{err}");
}

/// F9: `--rate 1e-20` panicked ("overflow when adding duration to instant")
/// and `--rate 1e-9` scheduled a run of decades. Both are refused, one line.
#[test]
fn absurd_rates_are_refused_without_a_panic() {
    for rate in ["1e-20", "1e-9"] {
        let (status, out, err) = lsbaws(
            &[
                "blast",
                "http://127.0.0.1:1/",
                "--rate",
                rate,
                "--max-conns",
                "10",
            ],
            LIMIT,
        );
        assert_eq!(status.code(), Some(2), "--rate {rate}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "--rate {rate}: {err}");
        assert!(!err.contains("panicked"), "--rate {rate}: {err}");
    }
}

/// F16: with `--rate`, `conns_per_client` held the schedule's total, so
/// `clients × conns_per_client` no longer was the planned count. It is null
/// then, and `rate.planned` holds the total.
#[test]
fn an_open_model_report_has_no_per_client_count() {
    let server = hello_server();
    let (code, v, err) = blast_json(
        &server.url(),
        &["--rate", "500", "--max-conns", "50", "--max-clients", "5"],
    );
    assert_eq!(code, Some(0), "{v}{err}");
    assert_eq!(v["conns_per_client"], serde_json::Value::Null, "{v}");
    assert_eq!(v["rate"]["planned"], 50, "{v}");
    assert_eq!(v["connections"], 50, "{v}");
}

/// F17: `0.0.0.0` and `::` passed as `--source` addresses and were counted
/// in the port prediction, hiding its warning. A wildcard is no source.
#[test]
fn wildcard_sources_are_refused() {
    for source in ["0.0.0.0", "::", "224.0.0.1"] {
        let (status, out, err) =
            lsbaws(&["blast", "http://127.0.0.1:1/", "--source", source], LIMIT);
        assert_eq!(status.code(), Some(2), "--source {source}: {out}{err}");
        assert!(err.contains("--source"), "{err}");
    }
}

/// F18: a leap second (`:60Z`) fired a second early, and lower-case `t`/`z`
/// (which RFC 3339 allows) were refused. The leap second is refused; the
/// lower-case form is read.
#[test]
fn start_at_reads_lower_case_and_refuses_leap_seconds() {
    let soon = SystemTime::now() + Duration::from_secs(2);
    let text = humantime::format_rfc3339_seconds(soon)
        .to_string()
        .to_ascii_lowercase();
    let server = hello_server();
    let (code, v, err) = blast_json(&server.url(), &["--start-at", &text]);
    assert_eq!(code, Some(0), "{text}: {v}{err}");
    assert_eq!(v["ok"], 1, "{v}");

    let year = 1970
        + SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            / 31_557_600;
    let leap = format!("{}-06-30T23:59:60Z", year + 1);
    let (status, out, err) = lsbaws(
        &["blast", "http://127.0.0.1:1/", "--start-at", &leap],
        LIMIT,
    );
    assert_eq!(status.code(), Some(2), "{leap}: {out}{err}");
    assert!(err.contains("leap second"), "{err}");
}
