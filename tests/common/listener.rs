//! A small loopback HTTP server on threads for blast's tests, and helpers to
//! run `lsbaws blast --json` and read its report.
//!
//! Must never use a fixed port or leave a thread running: dropping a
//! [`TestServer`] stops accepting and joins every handler.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use super::{HELLO, lsbaws};

/// Generous bound on one `lsbaws blast` run: a noisy 2-core CI machine.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// A loopback listener on a thread. Each accepted connection goes to `handle`
/// on its own thread, with its sequence number. Dropping it stops accepting and
/// joins every thread; handlers must end by themselves (they use timeouts or
/// watch `stopping`).
pub struct TestServer {
    pub addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    acceptor: Option<JoinHandle<()>>,
    handlers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

pub type Handler = dyn Fn(usize, TcpStream, &AtomicBool) + Send + Sync;

impl TestServer {
    pub fn start(handle: impl Fn(usize, TcpStream, &AtomicBool) + Send + Sync + 'static) -> Self {
        Self::start_on("127.0.0.1:0", handle)
    }

    pub fn start_on(
        bind: &str,
        handle: impl Fn(usize, TcpStream, &AtomicBool) + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind(bind).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stopping = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let handlers: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let handle: Arc<Handler> = Arc::new(handle);
        let acceptor = {
            let (stopping, accepted, handlers) =
                (stopping.clone(), accepted.clone(), handlers.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let n = accepted.fetch_add(1, Ordering::SeqCst);
                    let (handle, stopping) = (handle.clone(), stopping.clone());
                    let t = std::thread::spawn(move || handle(n, conn, &stopping));
                    handlers.lock().expect("lock").push(t);
                }
            })
        };
        TestServer {
            addr,
            stopping,
            accepted,
            acceptor: Some(acceptor),
            handlers,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hello", self.addr)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the acceptor sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        let handlers = std::mem::take(&mut *self.handlers.lock().expect("lock"));
        for t in handlers {
            let _ = t.join();
        }
    }
}

/// Reads a request head (CRLF or bare-LF blank line), bounded in size and time.
pub fn read_request(conn: &mut TcpStream) -> Vec<u8> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !(req.ends_with(b"\r\n\r\n") || req.ends_with(b"\n\n")) && req.len() < 64 * 1024 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    req
}

pub fn answer(conn: &mut TcpStream, response: &[u8]) {
    let _ = read_request(conn);
    let _ = conn.write_all(response);
}

pub fn hello_server() -> TestServer {
    TestServer::start(|_, mut conn, _| answer(&mut conn, HELLO.as_bytes()))
}

/// Runs blast with `--json`; returns (exit code, parsed report, stderr).
pub fn blast_json(url: &str, args: &[&str]) -> (Option<i32>, Value, String) {
    let mut all = vec!["blast", url, "--json"];
    all.extend_from_slice(args);
    let (status, out, err) = lsbaws(&all, RUN_LIMIT);
    let report: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}, stderr {err:?}"));
    (status.code(), report, err)
}

pub fn errors_of(report: &Value, kind: &str) -> u64 {
    report["errors"][kind]
        .as_u64()
        .unwrap_or_else(|| panic!("errors.{kind} missing: {report}"))
}

pub fn errors_total(report: &Value) -> u64 {
    report["errors"]
        .as_object()
        .expect("errors object")
        .values()
        .map(|v| v.as_u64().expect("count"))
        .sum()
}
