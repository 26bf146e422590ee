//! CGI (RFC 3875) in the forked child: run a program per request.
//!
//! Owns the life of one program and everything it starts: spawning it with
//! the request's meta-variables ([`env`]), the exchange with it and the client
//! ([`pump`]: the body streamed in, the output in, the response out, its
//! stderr into the log through [`errlog`]), the response's framing
//! ([`reply`]), and the bound on
//! the whole tree. The child is the program's child subreaper, so whatever the
//! program starts (a job left behind, a worker in a group of its own, a
//! double-forked daemon) stays below the child, which waits for it up to
//! `--cgi-timeout`, then kills and reaps all of it; its SIGTERM handler does the
//! same, and so does the parent's shutdown for a child that does not stop.
//! Runs only in a child, never in the server's parent, and starts no thread.
//! Must never pass the server's whole environment, set HTTP_PROXY from a
//! `Proxy:` header (httpoxy), relay a header line holding a control character
//! or a hop-by-hop field, write a program's stderr raw, keep the client waiting
//! for a program that has finished its output, or answer 200 for a program
//! that a signal killed before its response was sent.

mod env;
mod errlog;
mod pump;
mod reply;

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::http::{self, Request};
use crate::{log, signals, sys};
use pump::{Exchange, Output};

/// Settings of `--cgi`.
#[derive(Debug, Clone)]
pub struct Cgi {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// A program still running after this is killed with everything it
    /// started (504 if it had not answered).
    pub timeout: Duration,
    /// PATH and the `--cgi-env` variables, read once in the parent so that
    /// children do no lookups.
    pub env: Vec<(OsString, OsString)>,
    /// Largest request body passed to the program (413 above).
    pub max_body: u64,
}

/// Answers `req` (whose head and first body bytes are in `read`) by running the
/// program. `read_deadline` bounds the arrival of the body. Returns the status
/// sent.
pub fn respond(
    conn: &mut TcpStream,
    read: &[u8],
    req: &Request<'_>,
    peer: SocketAddr,
    cgi: &Cgi,
    read_deadline: Instant,
) -> u16 {
    // From the request line on: empty lines a client sent before it are not
    // a header.
    let head = &read[req.start..req.head_len];
    if http::headers(head).any(|(n, _)| n.eq_ignore_ascii_case(b"transfer-encoding")) {
        return send(conn, http::LENGTH_REQUIRED, 411);
    }
    let length = req.content_length.unwrap_or(0);
    if length > cgi.max_body {
        return send(conn, http::PAYLOAD_TOO_LARGE, 413);
    }
    let local = conn.local_addr().ok();
    let vars = match env::meta_variables(req, head, peer, local, req.content_length) {
        Ok(vars) => vars,
        Err(_) => return send(conn, http::BAD_REQUEST, 400),
    };
    let early = &read[req.head_len..];
    let early = &early[..early
        .len()
        .min(usize::try_from(length).unwrap_or(usize::MAX))];
    let expects_continue = http::headers(head)
        .any(|(n, v)| n.eq_ignore_ascii_case(b"expect") && v.eq_ignore_ascii_case(b"100-continue"));
    if expects_continue && (early.len() as u64) < length {
        // curl and others wait a second for this before sending a large body.
        let _ = conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    // Orphans of the program's tree come to this child, which kills them at
    // the end; and if the server dies, this child hears of it (SIGTERM: its
    // handler stops the tree) instead of running on unseen.
    signals::CGI_CHILD.store(true, Ordering::SeqCst);
    if signals::become_subreaper().is_err()
        || !sys::signal_on_parent_death(libc::SIGTERM, signals::server_pid())
        || sys::set_nonblocking(conn.as_fd(), true).is_err()
    {
        return send(conn, http::UNAVAILABLE, 503);
    }
    let mut cmd = Command::new(&cgi.program);
    cmd.args(&cgi.args)
        .env_clear()
        .envs(cgi.env.iter().map(|(k, v)| (k, v)))
        .envs(vars)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // Never the server's own stderr: a log reader that stops reading
        // would block the program; the child relays it, escaped, non-blocking.
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills it in one call.
        .process_group(0);
    sys::die_with_parent(&mut cmd, libc::SIGKILL);
    if signals::reset_sigchld().is_err() {
        return send(conn, http::BAD_GATEWAY, 502);
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            complain(cgi, &format!("cannot be started: {e}"));
            return send(conn, http::BAD_GATEWAY, 502);
        }
    };
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return send(conn, http::BAD_GATEWAY, 502);
    };
    // If this child is told to stop (shutdown after --grace, Ctrl-C), the
    // program's whole group goes with it.
    signals::CGI_GROUP.store(pid, Ordering::SeqCst);
    let deadline = Instant::now()
        .checked_add(cgi.timeout)
        .unwrap_or(read_deadline);
    let mut ex = Exchange::new(
        conn,
        pid,
        (child.stdin.take(), child.stdout.take(), child.stderr.take()),
        early,
        length,
        read_deadline,
        deadline,
        cgi,
    );
    // `child` is not waited for through std: the exchange reaps the program
    // (and the rest of its tree) itself.
    drop(child);
    let head_only = req.method == b"HEAD";
    let chunked_ok = req.version == b"HTTP/1.1";
    let status = match ex.collect() {
        Output::TimedOut => {
            ex.kill_tree();
            complain(
                cgi,
                &format!("killed after --cgi-timeout {:?}", cgi.timeout),
            );
            ex.send(http::GATEWAY_TIMEOUT, 504)
        }
        Output::BodyLate => {
            ex.kill_tree();
            ex.send(http::TIMEOUT, 408)
        }
        Output::Complete(out) => ex.answer(&out, head_only),
        Output::Streaming(first) => ex.stream(&first, head_only, chunked_ok),
    };
    // The response ends with the program's output, not with the program: a
    // client reading to EOF must not wait for one that lingers after closing
    // its stdout (up to --cgi-timeout).
    let _ = ex.conn().shutdown(Shutdown::Write);
    // Always reaped, with all it started, by --cgi-timeout: no zombie and no
    // process left at any level.
    ex.finish();
    status
}

/// Says on stderr, in one line written at once, why a request got 502/504: the
/// status alone does not tell a broken program from a slow one.
fn complain(cgi: &Cgi, what: &str) {
    let line = format!("lsbaws: CGI program {}: {what}\n", cgi.program.display());
    log::err(line.as_bytes());
}

/// A canned response on a connection that is still blocking (before the
/// exchange), bounded by the socket's SO_SNDTIMEO.
fn send(conn: &mut TcpStream, response: &[u8], status: u16) -> u16 {
    let _ = sys::set_nonblocking(conn.as_fd(), false);
    let _ = conn.write_all(response);
    status
}

/// After the response: reads and discards what the client still sends (a body
/// the program did not read), briefly, so that the close does not reset the
/// connection before the client has read the response.
fn drain_briefly(conn: &mut TcpStream) {
    let _ = sys::set_nonblocking(conn.as_fd(), false);
    let _ = sys::set_recv_timeout(conn.as_fd(), Duration::from_millis(200));
    let mut sink = [0u8; 4096];
    for _ in 0..64 {
        match conn.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}
