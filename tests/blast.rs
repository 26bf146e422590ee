//! Integration tests of `lsbaws blast`: the real binary against small in-process
//! listeners (so these tests do not depend on `serve`) and against the real
//! `lsbaws serve`.
//!
//! Must never use a fixed port, leave a thread or process running, or time
//! anything tightly: bounds are generous for a noisy 2-core machine.

use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::listener::*;
use crate::common::*;

#[test]
fn blast_128_clients_2_conns_all_ok_with_contract_json() {
    let server = hello_server();
    let (code, r, err) = blast_json(&server.url(), &["--max-clients", "128", "--max-conns", "2"]);
    assert_eq!(code, Some(0), "{r} {err}");
    assert_eq!(r["connections"], 256, "{r}");
    assert_eq!(r["ok"], 256, "{r}");
    assert_eq!(errors_total(&r), 0, "{r}");
    assert_eq!(r["status"], serde_json::json!({"200": 256}), "{r}");
    assert!(r["elapsed_s"].as_f64().expect("elapsed_s") > 0.0, "{r}");
    assert!(r["conns_per_s"].as_f64().expect("conns_per_s") > 0.0, "{r}");
    for key in ["min", "p50", "p90", "p99", "max"] {
        let v = r["latency_ms"][key].as_f64();
        assert!(v.is_some_and(|v| v > 0.0), "latency_ms.{key}: {r}");
    }
    let lat = &r["latency_ms"];
    assert!(
        lat["min"].as_f64() <= lat["p50"].as_f64() && lat["p99"].as_f64() <= lat["max"].as_f64()
    );
    for kind in [
        "refused",
        "reset",
        "timeout",
        "bad_response",
        "http_status",
        "addr_not_available",
        "fd_exhausted",
    ] {
        assert_eq!(errors_of(&r, kind), 0, "{kind}");
    }
    assert_eq!(server.accepted(), 256);
    assert!(err.is_empty(), "no progress bar off a terminal: {err:?}");
}

/// Every other request gets a 500: counted per status code, non-2xx is an error.
#[test]
fn blast_500_every_other_request_counts_status_and_exits_1() {
    let server = TestServer::start(|n, mut conn, _| {
        let resp = if n % 2 == 1 {
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\nConnection: close\r\n\r\noops\n"
        } else {
            HELLO
        };
        answer(&mut conn, resp.as_bytes())
    });
    let args = ["--max-clients", "32", "--max-conns", "2"];
    let (code, r, _) = blast_json(&server.url(), &args);
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(
        r["status"],
        serde_json::json!({"200": 32, "500": 32}),
        "{r}"
    );
    assert_eq!(errors_of(&r, "http_status"), 32, "{r}");
    assert_eq!(
        (r["ok"].as_u64(), r["connections"].as_u64()),
        (Some(32), Some(64))
    );

    // --max-errors lets the same failures pass, and one fewer does not.
    let (code, r, _) = blast_json(
        &server.url(),
        &[&args[..], &["--max-errors", "32"]].concat(),
    );
    assert_eq!(code, Some(0), "{r}");
    let (code, _, _) = blast_json(
        &server.url(),
        &[&args[..], &["--max-errors", "31"]].concat(),
    );
    assert_eq!(code, Some(1));

    // The table says the same.
    let (status, out, _) = lsbaws(&["blast", &server.url(), "--max-clients", "4"], RUN_LIMIT);
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("200: 2, 500: 2"), "{out}");
    assert!(out.contains("http_status"), "{out}");
    assert!(out.contains("first byte"), "{out}");
}

#[test]
fn blast_refused_port_ends_fast_with_all_refused() {
    // Bind and drop: a free port nobody listens on.
    let addr = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let started = Instant::now();
    let (code, r, _) = blast_json(&format!("http://{addr}/"), &["--max-clients", "64"]);
    let wall = started.elapsed();
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(errors_of(&r, "refused"), 64, "{r}");
    assert_eq!(errors_total(&r), 64, "{r}");
    // Refusals are immediate; the bound only tells them from waiting out a
    // timeout (seconds), with room for a loaded 2-core host.
    assert!(r["elapsed_s"].as_f64().expect("elapsed") < 5.0, "{r}");
    // The whole process, start-up included, on a noisy machine.
    assert!(wall < Duration::from_secs(10), "{wall:?}");
}

/// A server that accepts and never answers: every connection ends as a read
/// timeout, and the run ends within --timeout plus slack.
#[test]
fn blast_silent_server_times_out_within_the_timeout() {
    let server = TestServer::start(|_, _conn, stopping| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !stopping.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let started = Instant::now();
    let (code, r, _) = blast_json(&server.url(), &["--max-clients", "16", "--timeout", "1s"]);
    let wall = started.elapsed();
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(errors_of(&r, "timeout"), 16, "{r}");
    assert_eq!(r["timeouts"]["read"], 16, "{r}");
    let elapsed = r["elapsed_s"].as_f64().expect("elapsed");
    assert!((0.9..5.0).contains(&elapsed), "{r}");
    assert!(wall < Duration::from_secs(15), "{wall:?}");
}

/// The server closes without reading the request, so the kernel sends RST.
#[test]
fn blast_reset_connections_are_counted_as_reset() {
    let server = TestServer::start(|_, conn, _| {
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        // Wait until the request is here, leave it unread, close: RST.
        let _ = conn.peek(&mut [0u8; 1]);
        drop(conn);
    });
    let (code, r, _) = blast_json(&server.url(), &["--max-clients", "32"]);
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(errors_of(&r, "reset"), 32, "{r}");
}

/// Content-Length promises more than arrives before the close: a short response.
#[test]
fn blast_truncated_response_is_a_bad_response() {
    let server = TestServer::start(|_, mut conn, _| {
        answer(
            &mut conn,
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nshort",
        )
    });
    let (code, r, _) = blast_json(&server.url(), &["--max-clients", "16"]);
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(errors_of(&r, "bad_response"), 16, "{r}");
    assert_eq!(r["ok"], 0, "{r}");
}

/// client3.py's exact bytes (bare LF), against a server like the article's that
/// answers without Content-Length and closes: a normal completion.
#[test]
fn blast_raw_client3_request_against_eof_delimited_server_is_ok() {
    const CLIENT3: &[u8] = b"GET /hello HTTP/1.1\nHost: localhost:8888\n\n";
    let exact = Arc::new(AtomicUsize::new(0));
    let server = {
        let exact = exact.clone();
        TestServer::start(move |_, mut conn, _| {
            if read_request(&mut conn) == CLIENT3 {
                exact.fetch_add(1, Ordering::SeqCst);
            }
            let _ = conn
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nHello, World!\n");
        })
    };
    let (code, r, _) = blast_json(
        &server.url(),
        &[
            "--max-clients",
            "8",
            "--raw-request",
            r"GET /hello HTTP/1.1\nHost: localhost:8888\n\n",
        ],
    );
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["ok"], 8, "{r}");
    assert_eq!(
        exact.load(Ordering::SeqCst),
        8,
        "request bytes not sent verbatim"
    );
}

/// With --keep-alive a client sends all its requests on one connection when
/// the server allows it.
#[test]
fn blast_keep_alive_reuses_one_connection_per_client() {
    let server = TestServer::start(|_, mut conn, _| {
        loop {
            let req = read_request(&mut conn);
            if req.is_empty() {
                break;
            }
            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\nHello, World!\n";
            if conn.write_all(ok).is_err() {
                break;
            }
        }
    });
    let (code, r, _) = blast_json(
        &server.url(),
        &["--max-clients", "4", "--max-conns", "5", "--keep-alive"],
    );
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["ok"], 20, "{r}");
    assert_eq!(r["sockets_opened"], 4, "{r}");
    assert_eq!(server.accepted(), 4);
}

#[test]
fn blast_duration_mode_loops_until_the_duration() {
    let server = hello_server();
    let (code, r, _) = blast_json(
        &server.url(),
        &["--max-clients", "4", "--duration", "1s", "--threads", "1"],
    );
    assert_eq!(code, Some(0), "{r}");
    assert!(r["connections"].as_u64().expect("connections") > 4, "{r}");
    assert_eq!(r["connections"], r["ok"], "{r}");
    assert!(r["conns_per_client"].is_null(), "{r}");
    let elapsed = r["elapsed_s"].as_f64().expect("elapsed");
    assert!((0.9..10.0).contains(&elapsed), "{r}");
}

/// 2000 simultaneous clients against the real forking server. blast raises its
/// own open-file limit (soft to hard); a hard limit too low for 2000 sockets
/// (plus blast's own descriptors) cannot pass, so the test skips there. Every
/// connection is accounted for against serve's own log (a reset is allowed
/// only for a child that never got its request: see `KERNEL_RESETS_MAX`).
#[test]
fn blast_2000_clients_against_serve_all_ok() {
    use crate::common::logged::{LoggedServer, assert_accounted};
    let hard = hard_nofile();
    if hard < 2100 {
        return skip(&format!("hard open-file limit {hard} is below 2100"));
    }
    let server = LoggedServer::start(&[]);
    let (code, r, err) = blast_json(
        &server.url(),
        &["--max-clients", "2000", "--timeout", "30s"],
    );
    let resets = r["errors"]["reset"].as_u64().unwrap_or(u64::MAX);
    // exit 1 exactly when a request failed (--max-errors 0).
    assert_eq!(code, Some(i32::from(resets > 0)), "{r} {err}");
    assert_eq!(r["status"]["200"].as_u64(), Some(2000 - resets), "{r}");
    let pid = server.pid();
    assert!(eventually(Duration::from_secs(20), || children_of(pid).is_empty()));
    let (status, out) = server.stop(Duration::from_secs(20));
    assert!(status.success(), "{out}");
    assert!(out.contains("2000 connections served"), "{out}");
    assert_accounted("blast 2000", &out, &[(&r, 2000)], 2000);
}

/// The article's backlog trouble on purpose: one child at a time that lingers,
/// and a backlog of 1, so the other connects wait for SYN retransmits and hit
/// --connect-timeout (counted as connect-phase timeouts).
#[test]
fn blast_full_backlog_gives_connect_timeouts() {
    let server = Server::start(&[
        "--quiet",
        "--backlog",
        "1",
        "--max-children",
        "1",
        "--delay",
        "3s",
    ]);
    let (code, r, _) = blast_json(
        &server.url(),
        &[
            "--max-clients",
            "16",
            "--connect-timeout",
            "500ms",
            "--timeout",
            "2s",
        ],
    );
    assert_eq!(code, Some(1), "{r}");
    let connect = r["timeouts"]["connect"].as_u64().expect("timeouts.connect");
    assert!(connect >= 1, "{r}");
    assert_eq!(errors_total(&r), 16 - r["ok"].as_u64().expect("ok"), "{r}");
    let _ = server.stop(Duration::from_secs(20));
}

#[test]
fn blast_bad_usage_exits_2_with_one_line() {
    for args in [
        &["blast", "not a url"][..],
        &["blast", "ftp://127.0.0.1:1/"],
        &["blast", "http://127.0.0.1:99999/"],
        &["blast", "http://127.0.0.1:1/", "--max-clients", "0"],
        &["blast", "http://127.0.0.1:1/", "--max-conns", "0"],
        &["blast", "http://127.0.0.1:1/", "--threads", "0"],
        &["blast", "http://127.0.0.1:1/", "--threads", "100000"],
        &["blast", "http://127.0.0.1:1/", "--timeout", "0s"],
        &["blast", "http://127.0.0.1:1/", "-H", "no colon"],
    ] {
        let (status, out, err) = lsbaws(args, RUN_LIMIT);
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.starts_with("lsbaws: "), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
    let (_, _, err) = lsbaws(&["blast", "ftp://127.0.0.1:1/"], RUN_LIMIT);
    assert!(err.contains("use http:// or https://"), "{err}");
}

/// Runs `lsbaws ARGS` under `sh -c 'ulimit ...; exec lsbaws ...'`, so the limit
/// applies to blast alone. Exit code 99: sh could not set the limit.
fn lsbaws_with_ulimit(ulimit: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = std::process::Command::new("sh");
    // `$0` is the ulimit argument, word-split on purpose ("-n 64").
    cmd.args(["-c", "ulimit $0 || exit 99; exec \"$@\"", ulimit, bin()])
        .args(args);
    let (status, out, err) = run_bounded(&mut cmd, RUN_LIMIT);
    (status.code(), out, err)
}

/// The hard open-file limit of this process (u64::MAX for "unlimited").
fn hard_nofile() -> u64 {
    std::process::Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(u64::MAX)
}

/// Regression guard for wrk's bug (wg/wrk#47): running out of file descriptors
/// must be its own kind with a `ulimit -n` hint, never counted as the server
/// refusing or resetting connections.
#[test]
fn blast_fd_exhaustion_is_its_own_kind_with_a_ulimit_hint() {
    let server = hello_server();
    let url = server.url();
    // `ulimit -n` sets soft and hard: blast cannot raise it.
    let (code, out, err) =
        lsbaws_with_ulimit("-n 64", &["blast", &url, "--max-clients", "200", "--json"]);
    assert_ne!(code, Some(99), "sh could not set the limit");
    assert_eq!(code, Some(1), "{out} {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("ulimit -n") && err.contains("200 simultaneous"),
        "{err}"
    );
    let r: Value = serde_json::from_str(out.trim()).expect("json");
    let exhausted = errors_of(&r, "fd_exhausted");
    assert!(exhausted > 0, "{r}");
    assert_eq!(r["ok"].as_u64().expect("ok") + exhausted, 200, "{r}");
    for kind in ["refused", "reset", "timeout", "other"] {
        assert_eq!(errors_of(&r, kind), 0, "{kind}: {r}");
    }
}

/// Regression: under a low fd limit, `--duration` clients retried
/// fd-exhausted connects hot without yielding, and each took its deadline when
/// it first ran, so `--duration 1s --max-clients 100` under `ulimit -n 64` took
/// 22 s, with millions of fd_exhausted and starved connections counted as bad
/// responses. The run must end near its duration, failing only for want of fds.
#[test]
fn blast_duration_under_a_low_fd_limit_ends_on_time() {
    let server = hello_server();
    let url = server.url();
    let started = Instant::now();
    let (code, out, err) = lsbaws_with_ulimit(
        "-n 64",
        &[
            "blast",
            &url,
            "--max-clients",
            "100",
            "--duration",
            "1s",
            "--json",
        ],
    );
    let wall = started.elapsed();
    assert_ne!(code, Some(99), "sh could not set the limit");
    assert_eq!(code, Some(1), "{out} {err}");
    // 1 s plus generous slack for start-up and a noisy 2-core machine.
    assert!(wall < Duration::from_secs(6), "{wall:?}: {out}");
    let r: Value = serde_json::from_str(out.trim()).expect("json");
    let elapsed = r["elapsed_s"].as_f64().expect("elapsed");
    assert!((0.9..6.0).contains(&elapsed), "{r}");
    let exhausted = errors_of(&r, "fd_exhausted");
    assert!(exhausted > 0, "{r}");
    assert!(r["ok"].as_u64().expect("ok") > 0, "{r}");
    assert_eq!(errors_total(&r), exhausted, "only fd_exhausted: {r}");
    assert_eq!(
        r["connections"].as_u64(),
        Some(r["ok"].as_u64().expect("ok") + exhausted),
        "{r}"
    );
}

/// A low soft limit under a high enough hard one is raised, silently.
#[test]
fn blast_raises_the_soft_fd_limit_to_the_hard_one() {
    let hard = hard_nofile();
    if hard < 400 {
        return skip(&format!("hard open-file limit {hard} is below 400"));
    }
    let server = hello_server();
    let url = server.url();
    let (code, out, err) =
        lsbaws_with_ulimit("-Sn 64", &["blast", &url, "--max-clients", "200", "--json"]);
    assert_eq!(code, Some(0), "{out} {err}");
    assert!(err.is_empty(), "{err}");
    let r: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(r["ok"], 200, "{r}");
}

/// A server that allows keep-alive in its headers but closes after each
/// response anyway (as one does when its idle timeout passes): the reused
/// connection fails before any answer, and blast retries once on a new one
/// instead of blaming the server.
#[test]
fn blast_keep_alive_retries_a_connection_closed_while_idle() {
    let server = TestServer::start(|_, mut conn, _| {
        answer(
            &mut conn,
            b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\nHello, World!\n",
        )
    });
    let (code, r, _) = blast_json(
        &server.url(),
        &["--max-clients", "4", "--max-conns", "3", "--keep-alive"],
    );
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["ok"], 12, "{r}");
    assert_eq!(server.accepted(), 12);
}

#[test]
fn blast_ipv6_loopback_url() {
    let Ok(probe) = TcpListener::bind("[::1]:0") else {
        return skip("no IPv6 loopback");
    };
    drop(probe);
    let server = TestServer::start_on("[::1]:0", |_, mut conn, _| {
        answer(&mut conn, HELLO.as_bytes())
    });
    let url = format!("http://[::1]:{}/hello", server.addr.port());
    let (code, r, _) = blast_json(&url, &["--max-clients", "8"]);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["ok"], 8, "{r}");
}

/// Attack finding F3: tokio's multi-thread runtime panicked (exit 134) when the
/// OS refused a worker thread, and then hung on its half-started workers.
/// Under RLIMIT_NPROC for a uid of its own, lsbaws gets its main and signal
/// threads and no more: the blast must end with exit 2 and one line.
#[test]
fn blast_refused_threads_is_exit_2_not_a_panic() {
    if !is_root() {
        return skip("needs root to run lsbaws as another uid (root ignores RLIMIT_NPROC)");
    }
    let copy = NprocCopy::new("threads", 61_003);
    let blast = |nproc| {
        let args = ["blast", "-q", "--threads", "4", "--max-clients", "8"];
        let mut cmd = copy.command(nproc, &args);
        run_bounded(cmd.arg("http://127.0.0.1:1/"), Duration::from_secs(30))
    };
    let (status, out, err) = blast(2);
    assert_eq!(status.code(), Some(2), "{status}: {out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot start 4 threads"), "{err}");
    // The control: with room for its threads, the same run gets to the server
    // (refused: nothing listens on port 1) and says so.
    let (status, _, err) = blast(20);
    assert_eq!(status.code(), Some(1), "{err}");
}
