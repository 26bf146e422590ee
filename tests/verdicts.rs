//! Regression tests of the verdict contract (DESIGN.md "Verdicts") for `blast`,
//! and the helpers the other verdict files share: a verdict never changes
//! because of a closed pipe, a deadline or a signal, and every planned request
//! is accounted for. `audit` is in verdicts_audit.rs, `smoke` in verdicts_smoke.rs.
//!
//! Each test names the defect it pins (issue 10, item N). Every process a test
//! starts is owned by a guard that kills and reaps it, also when the test fails.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// Generous bound on one run on a noisy 2-core machine.
const LIMIT: Duration = Duration::from_secs(60);
const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

pub(crate) fn json(out: &[u8]) -> Value {
    serde_json::from_slice(out).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {:?}",
            String::from_utf8_lossy(out)
                .chars()
                .take(2000)
                .collect::<String>()
        )
    })
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What a `Loopback` connection gets.
#[derive(Clone, Copy)]
enum Reply {
    /// Reads the request, answers 200 `Hello, World!`, closes.
    Hello,
    /// Accepts and never answers (holds the connection until the test ends).
    Never,
}

/// A loopback listener on threads, one per connection; counts what it accepted
/// and keeps the first request heads. Dropping it stops and joins everything.
struct Loopback {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    acceptor: Option<JoinHandle<()>>,
    handlers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Loopback {
    fn start(reply: Reply) -> Loopback {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stopping = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let handlers: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let acceptor = {
            let (stopping, accepted, requests, handlers) = (
                stopping.clone(),
                accepted.clone(),
                requests.clone(),
                handlers.clone(),
            );
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let (stopping, requests) = (stopping.clone(), requests.clone());
                    let t = std::thread::spawn(move || serve(conn, reply, &stopping, &requests));
                    handlers.lock().expect("lock").push(t);
                }
            })
        };
        Loopback {
            addr,
            stopping,
            accepted,
            requests,
            acceptor: Some(acceptor),
            handlers,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hello", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn serve(mut conn: TcpStream, reply: Reply, stopping: &AtomicBool, requests: &Mutex<Vec<Vec<u8>>>) {
    match reply {
        Reply::Hello => {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = conn.write_all(HELLO.as_bytes());
            let mut kept = requests.lock().expect("lock");
            if kept.len() < 100 {
                kept.push(head);
            }
        }
        Reply::Never => {
            let deadline = Instant::now() + LIMIT;
            while !stopping.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the acceptor sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        for t in std::mem::take(&mut *self.handlers.lock().expect("lock")) {
            let _ = t.join();
        }
    }
}

fn errors_total(r: &Value) -> u64 {
    r["errors"]
        .as_object()
        .unwrap_or_else(|| panic!("no errors object: {r}"))
        .values()
        .map(|v| v.as_u64().expect("an error count"))
        .sum()
}

fn count(r: &Value, key: &str) -> u64 {
    r[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a count: {r}"))
}

/// A URL nobody listens on: every connection is refused, so blast exits 1.
fn refused_url() -> String {
    format!("http://127.0.0.1:{}/", unused_port())
}

pub(crate) const CLOSINGS: [Closed; 4] = [
    Closed::StdoutAfterOneLine,
    Closed::Stdout,
    Closed::Stderr,
    Closed::Both,
];

pub(crate) fn assert_exit_1(status: ExitStatus, what: &str) {
    assert_eq!(
        status.code(),
        Some(1),
        "{what}: a closed output changed the verdict ({status}; 0 = the finding was lost, \
         134 = abort, no code = killed by a signal)"
    );
}

/// Item 2: `blast ... -q | head -1` with failures exited 0 (most runs).
#[test]
fn blast_keeps_exit_1_when_its_output_is_closed() {
    let url = refused_url();
    for round in 0..3 {
        for closed in CLOSINGS {
            for extra in [&[][..], &["--json"]] {
                let status = exit_with_closed_output(
                    Command::new(bin())
                        .args(["blast", &url, "--max-clients", "64", "-q"])
                        .args(extra),
                    closed,
                    LIMIT,
                );
                assert_exit_1(
                    status,
                    &format!("round {round}, blast {extra:?}, {closed:?}"),
                );
            }
        }
    }
}

/// Item 4: with many clients and a tiny --duration, clients that never made a
/// request appeared nowhere in the report (2000 clients, 0-29 connections).
#[test]
fn blast_duration_accounts_for_every_client() {
    let server = Server::start(&["--quiet"]);
    let url = server.url();
    for round in 0..2 {
        for keep_alive in [true, false] {
            let mut args = vec!["blast", &url, "--max-clients", "2000", "--duration", "1ms"];
            args.extend(["--timeout", "20s", "--json"]);
            if keep_alive {
                args.push("--keep-alive");
            }
            let (status, out, err) = lsbaws(&args, LIMIT);
            let what = format!("round {round}, keep-alive {keep_alive}: {status} {err}");
            assert_ne!(status.code(), Some(2), "{what}");
            let r = json(out.as_bytes());
            let unfinished = count(&r, "unfinished");
            if keep_alive {
                let seen = count(&r, "sockets_opened") + errors_total(&r) + unfinished;
                assert!(seen >= 2000, "{what}: clients vanished: {r}");
            } else {
                let seen = count(&r, "connections") + unfinished;
                assert!(seen >= 2000, "{what}: clients vanished: {r}");
            }
        }
    }
    let _ = server.stop(LIMIT);
}

/// Starts `lsbaws blast ARGS` against `server`, waits until it has made
/// `connections` connections, sends `sig`, and returns the status, stdout and
/// how long blast took to exit after the signal.
fn interrupt_blast(
    server: &Loopback,
    args: &[&str],
    connections: usize,
    sig: i32,
) -> (ExitStatus, Vec<u8>, Duration) {
    let url = server.url();
    let mut argv = vec!["blast", &url];
    argv.extend_from_slice(args);
    let blast = Spawned::lsbaws(&argv);
    assert!(
        eventually(Duration::from_secs(20), || server.accepted() >= connections),
        "blast made {} connections, not {connections}",
        server.accepted()
    );
    blast.signal(sig);
    let signalled = Instant::now();
    let (status, out, err) = blast.finish(LIMIT);
    let took = signalled.elapsed();
    assert!(!text(&err).contains("panicked"), "{}", text(&err));
    (status, out, took)
}

/// Item 5: blast interrupted during `--duration 30s` died with no output. The
/// report must still be printed, marked interrupted, with exit 128+signal, at once.
#[test]
fn blast_interrupted_mid_duration_prints_the_report_and_exits_128_plus_signal() {
    let server = Loopback::start(Reply::Hello);
    let base = ["--max-clients", "2", "--duration", "30s", "-q"];

    let (status, out, took) = interrupt_blast(&server, &base, 5, SIGINT);
    assert_eq!(status.code(), Some(130), "{status}: {}", text(&out));
    assert!(text(&out).contains("interrupted"), "{}", text(&out));
    assert!(took < Duration::from_secs(3), "took {took:?} after SIGINT");

    for (sig, name, code) in [(SIGINT, "SIGINT", 130), (SIGTERM, "SIGTERM", 143)] {
        let args = [&base[..], &["--json"]].concat();
        let (status, out, took) = interrupt_blast(&server, &args, server.accepted() + 5, sig);
        assert_eq!(status.code(), Some(code), "{status}: {}", text(&out));
        let r = json(&out);
        assert_eq!(r["interrupted"], true, "{r}");
        assert_eq!(r["signal"], name, "{r}");
        assert!(took < Duration::from_secs(3), "took {took:?} after {name}");
    }
}

/// Item 5, count mode: a server that never answers, interrupted: every planned
/// connection is in the report, finished or not.
#[test]
fn blast_interrupted_in_count_mode_accounts_for_every_connection() {
    let server = Loopback::start(Reply::Never);
    let args = [
        "--max-clients",
        "10",
        "--max-conns",
        "3",
        "--timeout",
        "30s",
        "--json",
    ];
    let (status, out, took) = interrupt_blast(&server, &args, 10, SIGINT);
    assert_eq!(status.code(), Some(130), "{status}: {}", text(&out));
    let r = json(&out);
    assert_eq!(r["interrupted"], true, "{r}");
    assert_eq!(r["signal"], "SIGINT", "{r}");
    assert_eq!(
        count(&r, "connections") + count(&r, "unfinished"),
        30,
        "{r}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?} after SIGINT");
}

/// Item 25: `-H` sent control bytes other than CR/LF verbatim.
#[test]
fn blast_header_with_a_control_byte_is_exit_2_and_a_tab_is_sent() {
    let url = refused_url();
    for header in [
        "X-A: a\x01b",
        "X-A: a\x7fb",
        "X-A: a\x1b[2Jb",
        "X\x01A: b",
        "X-A: a\rb",
    ] {
        let (status, out, err) = lsbaws(&["blast", &url, "-H", header], LIMIT);
        let what = format!("-H {header:?}: {status}, stderr {err:?}");
        assert_eq!(status.code(), Some(2), "{what}");
        assert!(out.is_empty(), "{what}: {out}");
        assert_eq!(err.lines().count(), 1, "{what}");
        assert!(
            err.starts_with("lsbaws: ") && err.contains("--header"),
            "{what}"
        );
    }
    // Negative control: a tab inside a value is allowed, and sent as it is.
    let server = Loopback::start(Reply::Hello);
    let (status, out, err) = lsbaws(
        &["blast", &server.url(), "-H", "X-A: a\tb", "--json"],
        LIMIT,
    );
    assert_eq!(status.code(), Some(0), "{out}{err}");
    assert_eq!(json(out.as_bytes())["ok"], 1, "{out}");
    let requests = server.requests.lock().expect("lock").clone();
    assert!(
        requests
            .iter()
            .any(|r| r.windows(10).any(|w| w == b"X-A: a\tb\r\n")),
        "{requests:?}"
    );
}

/// Lower-case hex of `bytes` (how tests/servers/*.py take names).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `lsbaws ARGS` to completion (bounded), output as bytes.
pub(crate) fn run_bounded_bytes(args: &[&str]) -> (ExitStatus, Vec<u8>, Vec<u8>) {
    Spawned::lsbaws(args).finish(LIMIT)
}

/// Checks the `--json` error shape: exit 2, stdout one JSON object
/// `{"error": "..."}` on one line, stderr its one `lsbaws: ` line.
pub(crate) fn assert_json_error(args: &[&str], status: ExitStatus, out: &[u8], err: &[u8]) {
    let (out, err) = (text(out), text(err));
    let what = format!("{args:?}: {status}, stdout {out:?}, stderr {err:?}");
    assert_eq!(status.code(), Some(2), "{what}");
    assert_eq!(out.lines().count(), 1, "{what}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(v.is_object(), "{what}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}");
    assert!(err.starts_with("lsbaws: "), "{what}");
    assert_eq!(err.lines().count(), 1, "{what}");
}

/// Item 29: with `--json`, errors printed nothing on stdout, so a script that
/// parses it had nothing to parse.
#[test]
fn json_errors_of_blast_and_audit_are_one_json_object() {
    let url = refused_url();
    for args in [
        &["blast", "not a url", "--json"][..],
        &["blast", &url, "--max-clients", "0", "--json"],
        &["blast", &url, "--json", "--no-such-flag"],
        &["blast", "--no-such-flag", &url, "--json"],
        &["audit", "--pid", "2147483647", "--json"],
        &[
            "audit",
            "--json",
            "--proc-root",
            "/nonexistent/proc",
            "--pid",
            "1",
        ],
    ] {
        let (status, out, err) = run_bounded_bytes(args);
        assert_json_error(args, status, &out, &err);
    }
}
