//! CGI (RFC 3875) in the forked child: run a program per request.
//!
//! Owns the request → meta-variables mapping, feeding the body to the program,
//! parsing its CGI response, and always reaping it (timeouts kill its whole
//! process group). Runs only in a child, never in the server's parent; the one
//! thread it starts (feeding the body) is started after the program is spawned
//! and the child never forks again. Must never pass the server's whole
//! environment, set HTTP_PROXY from a `Proxy:` header (httpoxy), relay a header
//! line holding a control character, or keep the client waiting for a program
//! that has finished its output.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http::{self, Request};
use crate::{log, signals, sys};

/// Settings of `--cgi`.
#[derive(Debug, Clone)]
pub struct Cgi {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// A program still running after this is killed with its process group (504).
    pub timeout: Duration,
    /// PATH and the `--cgi-env` variables, read once in the parent so that
    /// children do no lookups.
    pub env: Vec<(OsString, OsString)>,
    /// Largest request body passed to the program (413 above).
    pub max_body: u64,
}

/// Program output buffered before the response falls back to close-delimited
/// streaming (no Content-Length).
const MAX_BUFFERED: usize = 16 * 1024 * 1024;

/// Answers `req` (whose head and first body bytes are in `read`) by running the
/// program. Returns the status sent.
pub fn respond(
    conn: &mut TcpStream,
    read: &[u8],
    req: &Request<'_>,
    peer: SocketAddr,
    cgi: &Cgi,
    deadline: Instant,
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
    let have = read.len() - req.head_len;
    let expects_continue = http::headers(head)
        .any(|(n, v)| n.eq_ignore_ascii_case(b"expect") && v.eq_ignore_ascii_case(b"100-continue"));
    if expects_continue && (have as u64) < length {
        // curl and others wait a second for this before sending a large body.
        let _ = conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let Some(body) = read_body(conn, &read[req.head_len..], length, deadline) else {
        return send(conn, http::TIMEOUT, 408);
    };
    let local = conn.local_addr().ok();
    let mut cmd = Command::new(&cgi.program);
    cmd.args(&cgi.args)
        .env_clear()
        .envs(cgi.env.iter().map(|(k, v)| (k, v)))
        .envs(meta_variables(req, head, peer, local, body.len()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Its own process group, so a timeout kills everything it started.
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
    // If this child is told to stop (shutdown after --grace, Ctrl-C), the
    // program's whole group goes with it.
    signals::CGI_GROUP.store(
        i32::try_from(child.id()).unwrap_or(0),
        std::sync::atomic::Ordering::SeqCst,
    );
    let run_deadline = Instant::now().checked_add(cgi.timeout).unwrap_or(deadline);
    // The body is fed from a thread that is never joined: once the program is
    // reaped its stdin is closed and the thread ends, and `_exit` ends it anyway.
    // Joining it could wait forever on a program that never reads.
    let output = run(&mut child, body, run_deadline);
    let status = match output {
        Output::TimedOut => {
            complain(
                cgi,
                &format!("killed after --cgi-timeout {:?}", cgi.timeout),
            );
            send(conn, http::GATEWAY_TIMEOUT, 504)
        }
        Output::Complete(out) if out.is_empty() => {
            reap_by(&mut child, run_deadline);
            let how = match child.try_wait() {
                Ok(Some(status)) => format!("{status}"),
                _ => "ended".to_string(),
            };
            complain(cgi, &format!("printed nothing ({how})"));
            send(conn, http::BAD_GATEWAY, 502)
        }
        Output::Complete(out) => match parse_response(&out) {
            // Answer first: the output is whole even if the program lingers.
            Ok(parsed) => write_response(
                conn,
                &parsed,
                &out[parsed.body_start..],
                req.method == b"HEAD",
            ),
            Err(why) => {
                complain(cgi, &format!("printed an invalid CGI header block: {why}"));
                send(conn, http::BAD_GATEWAY, 502)
            }
        },
        Output::Streaming(first) => match parse_response(&first) {
            Ok(parsed) => stream_response(
                conn,
                &parsed,
                &first[parsed.body_start..],
                &mut child,
                run_deadline,
                req.method == b"HEAD",
            ),
            Err(why) => {
                kill_group(&child);
                complain(cgi, &format!("printed an invalid CGI header block: {why}"));
                send(conn, http::BAD_GATEWAY, 502)
            }
        },
    };
    // The response ends with the program's output, not with the program: a
    // client reading to EOF must not wait for one that lingers after closing
    // its stdout (up to --cgi-timeout).
    let _ = conn.shutdown(Shutdown::Write);
    // Always reaped, within --cgi-timeout or killed: no zombie at any level.
    reap_by(&mut child, run_deadline);
    signals::CGI_GROUP.store(0, std::sync::atomic::Ordering::SeqCst);
    status
}

/// Waits for the program until `deadline`, then kills its group; always reaps it.
fn reap_by(child: &mut Child, deadline: Instant) {
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() >= deadline => {
                kill_group(child);
                let _ = child.wait();
                return;
            }
            Ok(None) => {
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(Duration::from_millis(20));
            }
        }
    }
}

/// Says on stderr, in one line written at once, why a request got 502/504: the
/// status alone does not tell a broken program from a slow one.
fn complain(cgi: &Cgi, what: &str) {
    let line = format!("lsbaws: CGI program {}: {what}\n", cgi.program.display());
    log::err(line.as_bytes());
}

fn send(conn: &mut TcpStream, response: &[u8], status: u16) -> u16 {
    let _ = conn.write_all(response);
    status
}

/// Reads the rest of a `length`-byte body, of which `have` arrived with the head.
fn read_body(conn: &mut TcpStream, have: &[u8], length: u64, deadline: Instant) -> Option<Vec<u8>> {
    let length = usize::try_from(length).ok()?;
    let mut body = Vec::with_capacity(length);
    body.extend_from_slice(&have[..have.len().min(length)]);
    let mut chunk = [0u8; 16 * 1024];
    while body.len() < length {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || sys::set_recv_timeout(conn.as_fd(), left).is_err() {
            return None;
        }
        let want = (length - body.len()).min(chunk.len());
        match conn.read(&mut chunk[..want]) {
            Ok(0) => return None,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(body)
}

/// The RFC 3875 meta-variables for one request.
fn meta_variables(
    req: &Request<'_>,
    head: &[u8],
    peer: SocketAddr,
    local: Option<SocketAddr>,
    body_len: usize,
) -> Vec<(String, String)> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (path, query) = match req.target.iter().position(|&b| b == b'?') {
        Some(q) => (&req.target[..q], &req.target[q + 1..]),
        None => (req.target, &b""[..]),
    };
    let host = http::headers(head)
        .find(|(n, _)| n.eq_ignore_ascii_case(b"host"))
        .map(|(_, v)| text(v));
    let server_name = host
        .as_deref()
        .map(|h| {
            h.rsplit_once(':')
                .filter(|(_, p)| p.parse::<u16>().is_ok())
                .map_or(h, |(n, _)| n)
        })
        .map(str::to_string)
        .or_else(|| local.map(|l| l.ip().to_string()))
        .unwrap_or_default();
    let mut vars = vec![
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        ("REQUEST_METHOD".into(), text(req.method)),
        ("SCRIPT_NAME".into(), String::new()),
        ("PATH_INFO".into(), text(path)),
        ("QUERY_STRING".into(), text(query)),
        ("SERVER_NAME".into(), server_name),
        (
            "SERVER_PORT".into(),
            local.map(|l| l.port().to_string()).unwrap_or_default(),
        ),
        ("SERVER_PROTOCOL".into(), text(req.version)),
        (
            "SERVER_SOFTWARE".into(),
            concat!("lsbaws/", env!("CARGO_PKG_VERSION")).into(),
        ),
        ("REMOTE_ADDR".into(), peer.ip().to_string()),
        ("REMOTE_PORT".into(), peer.port().to_string()),
    ];
    if req.content_length.is_some() {
        vars.push(("CONTENT_LENGTH".into(), body_len.to_string()));
    }
    for (name, value) in http::headers(head) {
        if name.contains(&b'_') {
            // `X_Foo` and `X-Foo` would both become HTTP_X_FOO, and `Content_Type`
            // would pose as CONTENT_TYPE: drop such names, as nginx does.
            continue;
        }
        let upper: String = text(name)
            .chars()
            .map(|c| {
                if c == '-' {
                    '_'
                } else {
                    c.to_ascii_uppercase()
                }
            })
            .collect();
        match upper.as_str() {
            "CONTENT_TYPE" => vars.push(("CONTENT_TYPE".into(), text(value))),
            // Already a meta-variable; and `Proxy:` must never become HTTP_PROXY,
            // which HTTP clients in the program would take as their proxy (httpoxy).
            "CONTENT_LENGTH" | "PROXY" => {}
            _ => {
                let key = format!("HTTP_{upper}");
                match vars.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, v)) => {
                        v.push_str(", ");
                        v.push_str(&text(value));
                    }
                    None => vars.push((key, text(value))),
                }
            }
        }
    }
    vars
}

enum Output {
    /// The program closed its stdout: everything it printed.
    Complete(Vec<u8>),
    /// More than [`MAX_BUFFERED`] so far; the rest must be streamed.
    Streaming(Vec<u8>),
    /// Killed at the deadline.
    TimedOut,
}

/// Feeds the body (from a detached thread, so that a program that writes before
/// reading cannot deadlock with us) and collects stdout until EOF, the buffer
/// limit, or the deadline (then the program's group is killed).
fn run(child: &mut Child, body: Vec<u8>, deadline: Instant) -> Output {
    if let Some(mut stdin) = child.stdin.take() {
        std::thread::spawn(move || {
            // A program that ignores its stdin closes it: EPIPE is fine.
            let _ = stdin.write_all(&body);
        });
    }
    let Some(mut stdout) = child.stdout.take() else {
        return Output::Complete(Vec::new());
    };
    let _ = sys::set_nonblocking(stdout.as_fd(), true);
    let mut out = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match stdout.read(&mut chunk) {
            Ok(0) => break Output::Complete(out),
            Ok(n) => {
                out.extend_from_slice(&chunk[..n]);
                if out.len() > MAX_BUFFERED {
                    child.stdout = Some(stdout);
                    break Output::Streaming(out);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    kill_group(child);
                    break Output::TimedOut;
                }
                let mut fds = [libc::pollfd {
                    fd: std::os::fd::AsRawFd::as_raw_fd(&stdout),
                    events: libc::POLLIN,
                    revents: 0,
                }];
                let _ = sys::poll(&mut fds, Some(left));
            }
            Err(_) => break Output::Complete(out),
        }
    }
}

fn kill_group(child: &Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // The group id is the program's pid (process_group(0)).
        let _ = sys::kill(-pid, libc::SIGKILL);
    }
}

/// A CGI response head.
struct Parsed {
    status: String,
    headers: Vec<(String, String)>,
    body_start: usize,
}

/// Parses the program's header block: `Status:` becomes the status line,
/// `Location:` without `Status:` a 302. Err says why it is malformed (→ 502).
fn parse_response(out: &[u8]) -> Result<Parsed, String> {
    let end = http::head_end(out)
        .ok_or_else(|| "no empty line ends it (or the output is empty)".to_string())?;
    let text = std::str::from_utf8(&out[..end]).map_err(|_| "it is not UTF-8".to_string())?;
    let mut status = None;
    let mut location = false;
    let mut headers = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let n = n + 1;
        // A bare CR (or any control byte) relayed into our response head would
        // let the program's output split it differently for different readers.
        if line.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(format!(
                "line {n} holds a control character: {}",
                shown(line)
            ));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("line {n} has no colon: {}", shown(line)))?;
        if name.is_empty() || !name.bytes().all(http::is_tchar) {
            return Err(format!("line {n} has no valid field name: {}", shown(line)));
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("status") {
            // 1xx is not a final response and cannot carry a body.
            let code = value
                .get(..3)
                .filter(|_| value.len() == 3 || value.as_bytes()[3] == b' ')
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (200..=599).contains(c));
            if code.is_none() {
                return Err(format!(
                    "line {n} is not a final status (200-599): {}",
                    shown(line)
                ));
            }
            status = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("connection")
        {
            // Ours describe the response as sent.
        } else {
            location |= name.eq_ignore_ascii_case("location");
            headers.push((name.to_string(), value.to_string()));
        }
    }
    if headers.is_empty() && status.is_none() {
        // RFC 3875 §6.2: at least one CGI field.
        return Err("it holds no header field".to_string());
    }
    let status = status.unwrap_or_else(|| {
        if location {
            "302 Found".into()
        } else {
            "200 OK".into()
        }
    });
    Ok(Parsed {
        status,
        headers,
        body_start: end,
    })
}

/// A line of the program's output for a log line: quoted, escaped, cut short.
fn shown(line: &str) -> String {
    let cut: String = line.chars().take(60).collect();
    format!("{cut:?}")
}

fn head_bytes(parsed: &Parsed, length: Option<usize>) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {}\r\n", parsed.status);
    for (name, value) in &parsed.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(length) = length {
        head.push_str(&format!("Content-Length: {length}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    head.into_bytes()
}

fn status_code(parsed: &Parsed) -> u16 {
    parsed
        .status
        .get(..3)
        .and_then(|c| c.parse().ok())
        .unwrap_or(200)
}

fn write_response(conn: &mut TcpStream, parsed: &Parsed, body: &[u8], head_only: bool) -> u16 {
    let mut response = head_bytes(parsed, Some(body.len()));
    if !head_only {
        response.extend_from_slice(body);
    }
    let _ = conn.write_all(&response);
    status_code(parsed)
}

/// Output too large to buffer: close-delimited body, copied until EOF or the
/// deadline. For HEAD only the head is sent and the program's output is closed
/// (it gets EPIPE): the body must not be sent, and need not be read.
fn stream_response(
    conn: &mut TcpStream,
    parsed: &Parsed,
    first: &[u8],
    child: &mut Child,
    deadline: Instant,
    head_only: bool,
) -> u16 {
    let code = status_code(parsed);
    if conn.write_all(&head_bytes(parsed, None)).is_err()
        || !head_only && conn.write_all(first).is_err()
    {
        kill_group(child);
        return code;
    }
    if head_only {
        drop(child.stdout.take());
        return code;
    }
    let mut chunk = [0u8; 64 * 1024];
    if let Some(mut stdout) = child.stdout.take() {
        loop {
            if Instant::now() >= deadline {
                kill_group(child);
                break;
            }
            match stdout.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    if conn.write_all(&chunk[..n]).is_err() {
                        kill_group(child);
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut fds = [libc::pollfd {
                        fd: std::os::fd::AsRawFd::as_raw_fd(&stdout),
                        events: libc::POLLIN,
                        revents: 0,
                    }];
                    let left = deadline.saturating_duration_since(Instant::now());
                    let _ = sys::poll(&mut fds, Some(left));
                }
                Err(_) => break,
            }
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_header_becomes_the_status_line() {
        let out = b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope";
        let p = parse_response(out).unwrap();
        assert_eq!(&out[p.body_start..], b"nope");
        assert_eq!(p.status, "404 Not Found");
        assert_eq!(
            p.headers,
            vec![("Content-Type".to_string(), "text/plain".to_string())]
        );
    }

    #[test]
    fn location_without_status_is_a_302() {
        let p = parse_response(b"Location: /x\n\n").unwrap();
        assert_eq!(parse_response(b"Status: 204\n\n").unwrap().status, "204");
        assert_eq!(p.status, "302 Found");
    }

    #[test]
    fn malformed_output_is_rejected_with_a_reason() {
        for (out, why) in [
            (&b"no header block at all"[..], "no empty line"),
            (b"Content-Type text/plain\n\nbody", "line 1 has no colon"),
            (b"Status: abc\n\n", "line 1 is not a final status"),
            (b"Status: 200abc\n\n", "line 1 is not a final status"),
            (b"\n\nbody", "no header field"),
            (b"X: 1\nBad Name: 2\n\n", "line 2 has no valid field name"),
            // Regression (issue 10): a bare CR was relayed to the client.
            (
                b"Content-Type: text/plain\rX-Injected: yes\r\n\r\n",
                "control character",
            ),
            (b"X: a\x00b\n\n", "control character"),
        ] {
            match parse_response(out) {
                Err(e) => assert!(e.contains(why), "{out:?}: {e}"),
                Ok(_) => panic!("{out:?} accepted"),
            }
        }
        // A tab is allowed inside a value.
        assert!(parse_response(b"X: a\tb\r\n\r\n").is_ok());
    }

    #[test]
    fn proxy_header_never_becomes_http_proxy() {
        let head =
            b"GET /a/b?x=1 HTTP/1.1\r\nHost: h:81\r\nProxy: evil\r\nX-A: 1\r\nX-A: 2\r\n\r\n";
        let req = match http::parse(head) {
            http::Parse::Complete(r) => r,
            other => panic!("{other:?}"),
        };
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let vars = meta_variables(&req, head, peer, None, 0);
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("HTTP_PROXY"), None);
        assert_eq!(get("PATH_INFO"), Some("/a/b"));
        assert_eq!(get("QUERY_STRING"), Some("x=1"));
        assert_eq!(get("SERVER_NAME"), Some("h"));
        assert_eq!(get("HTTP_X_A"), Some("1, 2"));
        assert_eq!(get("CONTENT_LENGTH"), None);
    }
}
