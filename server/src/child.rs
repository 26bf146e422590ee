//! What a forked child does with its one connection.
//!
//! Owns the child's life: read one request head (bounded in size by
//! [`http::MAX_HEAD`] and in time by the read timeout), answer it, log one line,
//! sleep `--delay`, exit. Must never return into the parent's code: the caller
//! ends the child with `_exit` on the code this returns.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::http::{self, Parse};
use crate::{Config, cgi, log, sys};

/// How the exchange ended, for the log line.
enum Outcome {
    /// Answered with this status.
    Answered(u16),
    /// The client closed or reset before sending a request: nothing to answer.
    Gone,
    /// The client sent nothing within the read timeout.
    Idle,
}

/// Serves `conn` and returns the child's exit code (0 unless the log could not
/// be written, which is not worth a non-zero status either).
///
/// `accepted` is when the parent accepted the connection: taken there, where the
/// clock's vDSO page is already mapped, it costs the child no page faults (about
/// 3 per connection if the child read the clock itself, measured with perf).
pub fn serve(mut conn: TcpStream, peer: SocketAddr, accepted: Instant, config: &Config) -> i32 {
    let mut buf = [0u8; http::MAX_HEAD];
    let (outcome, (start, line_len)) = exchange(&mut conn, &mut buf, peer, accepted, config);
    if !config.quiet {
        log(peer, &buf[start..start + line_len], &outcome);
    }
    if !config.delay.is_zero() {
        std::thread::sleep(config.delay);
    }
    drop(conn);
    0
}

/// Reads, parses and answers. Returns the outcome and where the request line
/// is in `buf` (start, length; for the log).
fn exchange(
    conn: &mut TcpStream,
    buf: &mut [u8],
    peer: SocketAddr,
    accepted: Instant,
    config: &Config,
) -> (Outcome, (usize, usize)) {
    // The listener's SO_RCVTIMEO is inherited by the accepted socket, so the first
    // read is already bounded without a system call here.
    let deadline = accepted + config.read_timeout;
    let mut len = 0;
    loop {
        let n = match conn.read(&mut buf[len..]) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if len == 0 {
                    return (Outcome::Idle, (0, 0));
                }
                answer(conn, http::TIMEOUT, true);
                return (Outcome::Answered(408), first_line(&buf[..len]));
            }
            Err(_) => return (Outcome::Gone, (0, 0)),
        };
        if n == 0 {
            if len == 0 {
                return (Outcome::Gone, (0, 0));
            }
            // The client half-closed mid-request: what it sent is all there is.
            answer(conn, http::BAD_REQUEST, false);
            return (Outcome::Answered(400), first_line(&buf[..len]));
        }
        len += n;
        match http::parse(&buf[..len]) {
            Parse::Complete(req) => {
                // The log shows the request line itself, after any empty
                // lines the client sent first.
                let line = (req.start, req.line.len());
                if let Some(cgi) = &config.cgi {
                    let status = cgi::respond(conn, &buf[..len], &req, peer, cgi, deadline);
                    return (Outcome::Answered(status), line);
                }
                let response = if req.method == b"HEAD" {
                    http::OK_HEAD
                } else {
                    http::OK
                };
                // Unread bytes (a body, a pipelined request) would make close()
                // send RST, which can destroy the response before the client
                // reads it; only then is the slower careful close worth it.
                let unread = len > req.head_len || req.content_length.unwrap_or(0) > 0;
                answer(conn, response, unread);
                return (Outcome::Answered(200), line);
            }
            Parse::Bad => {
                answer(conn, http::BAD_REQUEST, true);
                return (Outcome::Answered(400), first_line(&buf[..len]));
            }
            Parse::TooLarge => {
                answer(conn, http::TOO_LARGE, true);
                return (Outcome::Answered(431), first_line(&buf[..len]));
            }
            Parse::Incomplete => {
                // A slow client must not stretch the deadline read by read.
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || sys::set_recv_timeout(conn.as_fd(), left).is_err() {
                    answer(conn, http::TIMEOUT, true);
                    return (Outcome::Answered(408), first_line(&buf[..len]));
                }
            }
        }
    }
}

/// Writes a response. With `careful`, the client may still be sending: shut our
/// side down and drain briefly so that close() does not reset the connection
/// before the client has read the response.
fn answer(conn: &mut TcpStream, response: &[u8], careful: bool) {
    if conn.write_all(response).is_err() || !careful {
        return;
    }
    let _ = conn.shutdown(Shutdown::Write);
    let _ = sys::set_recv_timeout(conn.as_fd(), Duration::from_millis(200));
    let mut sink = [0u8; 4096];
    for _ in 0..64 {
        match conn.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// Where the first non-empty line of `buf` is (start, length), for the log of
/// a request that was not parsed.
fn first_line(buf: &[u8]) -> (usize, usize) {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = &buf[start..];
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    (start, end.min(200))
}

/// One log line, written with one `write` so lines of many children never mix,
/// and dropped rather than waited for when nobody reads the output.
fn log(peer: SocketAddr, line: &[u8], outcome: &Outcome) {
    let mut out = [0u8; 320];
    let mut w = std::io::Cursor::new(&mut out[..]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let _ = write!(w, "{peer} \"");
    for &b in line.iter().take(200) {
        // Keep the log one line of text whatever the client sent.
        let b = if b.is_ascii_graphic() || b == b' ' {
            b
        } else {
            b'?'
        };
        let _ = w.write_all(&[b]);
    }
    let _ = match outcome {
        Outcome::Answered(status) => writeln!(w, "\" {status}"),
        Outcome::Gone => writeln!(w, "\" - closed before a request"),
        Outcome::Idle => writeln!(w, "\" - idle past the read timeout"),
    };
    let written = usize::try_from(w.position()).unwrap_or(0);
    log::out(&out[..written]);
}
