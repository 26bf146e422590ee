//! `lsbaws blast` beyond one address and one process: `--source` spreads
//! connections over local addresses, `--start-at` releases the clients at a
//! wall-clock instant (sockets made before it, a stop signal honoured during
//! the wait).
//!
//! Uses loopback addresses only (127.0.0.0/8 is all local on Linux).

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::common::listener::*;
use crate::common::*;

/// A hello server that records each connection's peer address.
fn peer_recording_server() -> (TestServer, Arc<Mutex<Vec<String>>>) {
    let peers: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = peers.clone();
    let server = TestServer::start(move |_, mut conn: TcpStream, _| {
        if let Ok(peer) = conn.peer_addr() {
            sink.lock().expect("lock").push(peer.ip().to_string());
        }
        answer(&mut conn, HELLO.as_bytes());
    });
    (server, peers)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// Round-robin: 3 addresses from a range, 30 connections, 10 from each.
#[test]
fn sources_take_turns() {
    let (server, peers) = peer_recording_server();
    let args = [
        "--source",
        "127.0.0.2-127.0.0.3",
        "--source",
        "127.0.0.4",
        "--max-clients",
        "6",
        "--max-conns",
        "5",
    ];
    let (code, r, err) = blast_json(&server.url(), &args);
    assert_eq!(code, Some(0), "{r} {err}");
    assert_eq!(
        (r["ok"].as_u64(), r["sources"].as_u64()),
        (Some(30), Some(3)),
        "{r}"
    );
    let mut by_source: BTreeMap<String, usize> = BTreeMap::new();
    for p in peers.lock().expect("lock").iter() {
        *by_source.entry(p.clone()).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|a| (a.to_string(), 10))
        .collect();
    assert_eq!(by_source, expected);
    // A CIDR gives its host addresses: 127.0.0.8/30 is .9 and .10.
    let (code, r, _) = blast_json(
        &server.url(),
        &["--source", "127.0.0.8/30", "--max-clients", "2"],
    );
    assert_eq!((code, r["sources"].as_u64()), (Some(0), Some(2)), "{r}");
}

#[test]
fn a_source_that_is_not_local_is_one_line_and_exit_2() {
    // TEST-NET-3 (RFC 5737): never an address of this host.
    for (source, why) in [
        (
            "203.0.113.7",
            "--source 203.0.113.7 is not an address of this host",
        ),
        ("::1", "not of the target's address family"),
        ("127.0.0.9-127.0.0.2", "the range runs backwards"),
        ("127.0.0.0/8", "more than 4096"),
    ] {
        let (status, out, err) = lsbaws(
            &["blast", "http://127.0.0.1:9/", "--source", source],
            RUN_LIMIT,
        );
        assert_eq!(status.code(), Some(2), "{source}: {out} {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(why), "{source}: {err}");
        assert!(out.is_empty(), "{out}");
    }
    let (status, out, _) = lsbaws(
        &[
            "blast",
            "http://127.0.0.1:9/",
            "--json",
            "--source",
            "203.0.113.7",
        ],
        RUN_LIMIT,
    );
    assert_eq!(status.code(), Some(2));
    let v: Value = serde_json::from_str(out.trim()).expect("json error");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("203.0.113.7")),
        "{v}"
    );
}

/// The clients are released at TIME, not before, with every socket made
/// while waiting; the report says how late the release was.
#[test]
fn start_at_releases_at_the_instant_with_sockets_made_before() {
    let server = hello_server();
    let at = unix_now() + 3.0;
    let at_arg = format!("{at:.3}");
    let url = server.url();
    let blast = Spawned::lsbaws(&[
        "blast",
        &url,
        "--json",
        "--max-clients",
        "40",
        "--start-at",
        &at_arg,
    ]);
    // While it waits: nothing connected yet, and its 40 sockets already made.
    std::thread::sleep(Duration::from_millis(1500));
    let sockets = std::fs::read_dir(format!("/proc/{}/fd", blast.pid))
        .expect("fd dir")
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
        })
        .count();
    let early = server.accepted();
    let (status, out, err) = blast.finish(RUN_LIMIT);
    assert_eq!(status.code(), Some(0), "{}", String::from_utf8_lossy(&err));
    assert_eq!(early, 0, "a connection before --start-at");
    assert!(sockets >= 40, "{sockets} sockets before the release");
    let r: Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(r["ok"], 40, "{r}");
    let skew = r["release_skew_ms"].as_f64().expect("skew");
    assert!((0.0..500.0).contains(&skew), "skew {skew} ms: {r}");
    assert!(
        r["start_at"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{r}"
    );
    assert!(
        r["started_at"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{r}"
    );
}

#[test]
fn start_at_in_the_past_or_beyond_a_day_is_refused() {
    let past = format!("{}", unix_now() as u64 - 5);
    let far = format!("{}", unix_now() as u64 + 25 * 3600);
    for (at, why) in [
        (past.as_str(), "ago (it must be in the future)"),
        ("2001-01-01T00:00:00Z", "ago (it must be in the future)"),
        (far.as_str(), "more than 24 h"),
        ("next tuesday", "expected RFC 3339 UTC"),
    ] {
        let (status, out, err) = lsbaws(
            &["blast", "http://127.0.0.1:9/", "--start-at", at],
            RUN_LIMIT,
        );
        assert_eq!(status.code(), Some(2), "{at}: {out} {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(why), "{at}: {err}");
    }
}

/// A stop signal during the wait ends it at once: exit 130, the report marked
/// interrupted, nothing released, every client unfinished.
#[test]
fn sigterm_during_the_start_at_wait_leaves_every_client_unfinished() {
    let server = hello_server();
    let at = format!("{:.3}", unix_now() + 600.0);
    let url = server.url();
    let mut blast = Spawned::lsbaws(&[
        "blast",
        &url,
        "--json",
        "--max-clients",
        "7",
        "--max-conns",
        "3",
        "--start-at",
        &at,
    ]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        blast.wait_timeout(Duration::ZERO).is_none(),
        "still waiting"
    );
    blast.signal(15);
    let started = std::time::Instant::now();
    let (status, out, err) = blast.finish(RUN_LIMIT);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&err)
    );
    let r: Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(r["interrupted"], true, "{r}");
    assert_eq!(r["signal"], "SIGTERM", "{r}");
    assert_eq!(
        (r["connections"].as_u64(), r["unfinished"].as_u64()),
        (Some(0), Some(21)),
        "{r}"
    );
    assert_eq!(r["started_at"], Value::Null, "never released: {r}");
    assert_eq!(r["release_skew_ms"], Value::Null, "{r}");
    assert_eq!(server.accepted(), 0);
}
