//! The one loop of a CGI exchange: every descriptor of it polled together.
//!
//! Owns the moving parts between the client and the program: the request body
//! streamed from the socket into the program's stdin as it arrives (never
//! buffered whole, so a huge Content-Length costs nothing up front), its
//! stdout collected or streamed out, its stderr relayed into the log one
//! escaped line at a time, the program's exit (a pidfd), and every write to the
//! client non-blocking and bounded by `--cgi-timeout`. Single-threaded: a
//! program that writes before it reads its body cannot deadlock with it, and
//! nothing here can fail to start. Must never block outside `poll`, wait past
//! a deadline, or signal a pid it may have reaped.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{ChildStderr, ChildStdin, ChildStdout};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::errlog::ErrLog;
use super::reply::{self, Framing};
use super::{Cgi, complain};
use crate::{http, signals, sys, tree};

/// Program output buffered before the response is streamed instead.
const MAX_BUFFERED: usize = 16 * 1024 * 1024;
/// Body bytes held between the socket and the program's stdin.
const BODY_BUF: usize = 64 * 1024;
/// How long, after its stdout ends, the program's exit is awaited before
/// answering: long enough to see a crash (a signal ends the output and the
/// process together), short for one that closes stdout and lingers.
const EXIT_WAIT: Duration = Duration::from_millis(100);
/// Bound on killing and reaping what is left of the tree.
const KILL_LIMIT: Duration = Duration::from_secs(2);
/// Bound on writing a canned response whose deadline has passed (504, 408).
const SEND_LIMIT: Duration = Duration::from_secs(1);

/// What the program's stdout amounted to.
pub(super) enum Output {
    /// It ended (EOF, or the program exited): everything it printed.
    Complete(Vec<u8>),
    /// More than [`MAX_BUFFERED`] so far; the rest must be streamed.
    Streaming(Vec<u8>),
    /// `--cgi-timeout` passed first.
    TimedOut,
    /// The client did not send the whole body within the read timeout.
    BodyLate,
}

/// What readiness `turn` saw that its caller acts on.
struct Ready {
    /// The program's stdout has data (or ended).
    out: bool,
}

pub(super) struct Exchange<'a> {
    conn: &'a mut TcpStream,
    pid: libc::pid_t,
    /// Polls readable when the program exits (None on kernels before 5.3:
    /// then each turn checks with `waitid`, at most 20 ms apart).
    pidfd: Option<OwnedFd>,
    /// The program's wait status, once reaped.
    status: Option<libc::c_int>,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    /// Body bytes from the client not yet written to the program.
    body: Vec<u8>,
    /// Body bytes the client has still to send.
    body_left: u64,
    /// The client closed before the body was complete.
    client_gone: bool,
    read_deadline: Instant,
    deadline: Instant,
    errlog: ErrLog,
    cgi: &'a Cgi,
}

impl<'a> Exchange<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        conn: &'a mut TcpStream,
        pid: libc::pid_t,
        pipes: (Option<ChildStdin>, Option<ChildStdout>, Option<ChildStderr>),
        early: &[u8],
        length: u64,
        read_deadline: Instant,
        deadline: Instant,
        cgi: &'a Cgi,
    ) -> Self {
        let (stdin, stdout, stderr) = pipes;
        let nonblocking = |fd: Option<std::os::fd::BorrowedFd<'_>>| {
            if let Some(fd) = fd {
                let _ = sys::set_nonblocking(fd, true);
            }
        };
        nonblocking(stdin.as_ref().map(AsFd::as_fd));
        nonblocking(stdout.as_ref().map(AsFd::as_fd));
        nonblocking(stderr.as_ref().map(AsFd::as_fd));
        let mut ex = Exchange {
            conn,
            pid,
            pidfd: sys::pidfd_open(pid).ok(),
            status: None,
            stdin,
            stdout,
            stderr,
            body: early.to_vec(),
            body_left: length.saturating_sub(early.len() as u64),
            client_gone: false,
            read_deadline,
            deadline,
            errlog: ErrLog::new(cgi),
            cgi,
        };
        ex.close_stdin_when_fed();
        ex
    }

    pub(super) fn conn(&mut self) -> &mut TcpStream {
        self.conn
    }

    /// The program's stdin gets EOF once the whole body was written to it.
    fn close_stdin_when_fed(&mut self) {
        if self.body.is_empty() && self.body_left == 0 {
            self.stdin = None;
        }
    }

    /// One poll of everything that is open, bounded by `until` (and by the
    /// client's room, with `write_conn`); moves the body along, relays stderr,
    /// notes the program's exit, and reports whether stdout has data.
    fn turn(&mut self, read_out: bool, write_conn: bool, until: Instant) -> Ready {
        let entry = |fd: i32, events: libc::c_short| libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        let mut fds = [entry(-1, 0); 5];
        let (out_i, err_i, in_i, conn_i, pid_i) = (0, 1, 2, 3, 4);
        if let (true, Some(out)) = (read_out, &self.stdout) {
            fds[out_i] = entry(out.as_raw_fd(), libc::POLLIN);
        }
        if let Some(err) = &self.stderr {
            fds[err_i] = entry(err.as_raw_fd(), libc::POLLIN);
        }
        if let (false, Some(stdin)) = (self.body.is_empty(), &self.stdin) {
            fds[in_i] = entry(stdin.as_raw_fd(), libc::POLLOUT);
        }
        let read_body = self.body_left > 0 && self.body.len() < BODY_BUF && !self.client_gone;
        let conn_events =
            if read_body { libc::POLLIN } else { 0 } | if write_conn { libc::POLLOUT } else { 0 };
        if conn_events != 0 {
            fds[conn_i] = entry(self.conn.as_raw_fd(), conn_events);
        }
        let mut until = until;
        if read_body {
            until = until.min(self.read_deadline);
        }
        match (&self.pidfd, self.status) {
            (Some(pidfd), None) => fds[pid_i] = entry(pidfd.as_raw_fd(), libc::POLLIN),
            (None, None) => until = until.min(Instant::now() + Duration::from_millis(20)),
            _ => {}
        }
        // poll ignores entries with a negative fd.
        let left = until.saturating_duration_since(Instant::now());
        if sys::poll(&mut fds, Some(left)).is_err() {
            return Ready { out: false };
        }
        if fds[err_i].revents != 0 {
            self.relay_stderr();
        }
        if fds[in_i].revents != 0 {
            self.feed_stdin();
        }
        if fds[conn_i].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 && read_body {
            self.read_body();
        }
        if self.status.is_none() && (fds[pid_i].revents != 0 || self.pidfd.is_none()) {
            self.reap_program();
        }
        Ready {
            out: fds[out_i].revents != 0,
        }
    }

    /// Reaps the program if it has exited. The group id is forgotten first:
    /// once the leader is reaped, its number may name another group.
    fn reap_program(&mut self) {
        if self.status.is_some() || sys::peek_killed(self.pid).is_none() {
            return;
        }
        signals::CGI_GROUP.store(0, Ordering::SeqCst);
        self.status = sys::reap_pid(self.pid);
        self.pidfd = None;
    }

    fn relay_stderr(&mut self) {
        let Some(err) = &mut self.stderr else { return };
        let mut buf = [0u8; 8192];
        loop {
            match err.read(&mut buf) {
                Ok(0) => {
                    self.stderr = None;
                    self.errlog.finish();
                    return;
                }
                Ok(n) => self.errlog.feed(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.stderr = None;
                    return;
                }
            }
        }
    }

    fn feed_stdin(&mut self) {
        let Some(stdin) = &mut self.stdin else { return };
        match stdin.write(&self.body) {
            Ok(n) => {
                self.body.drain(..n);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => {
                // The program closed its stdin: it does not want the rest.
                self.stdin = None;
                self.body.clear();
            }
        }
        self.close_stdin_when_fed();
    }

    fn read_body(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        let room = BODY_BUF.saturating_sub(self.body.len()).min(buf.len());
        let want = usize::try_from(self.body_left)
            .unwrap_or(usize::MAX)
            .min(room);
        match self.conn.read(&mut buf[..want]) {
            Ok(0) => self.client_gone = true,
            Ok(n) => {
                self.body_left -= n as u64;
                if self.stdin.is_some() {
                    self.body.extend_from_slice(&buf[..n]);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => self.client_gone = true,
        }
        self.close_stdin_when_fed();
    }

    /// Reads what stdout has now into `out`: Some(true) at EOF, Some(false)
    /// past [`MAX_BUFFERED`], None when it has nothing more for now.
    fn read_out(&mut self, out: &mut Vec<u8>, limit: usize) -> Option<bool> {
        let Some(stdout) = &mut self.stdout else {
            return Some(true);
        };
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match stdout.read(&mut chunk) {
                Ok(0) => {
                    self.stdout = None;
                    return Some(true);
                }
                Ok(n) => {
                    out.extend_from_slice(&chunk[..n]);
                    if out.len() > limit {
                        return Some(false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(_) => {
                    self.stdout = None;
                    return Some(true);
                }
            }
        }
    }

    /// Collects stdout until it ends, outgrows the buffer, or a deadline. A
    /// program that exits while something it started still holds its stdout
    /// has ended its response: what is in the pipe then is all of it.
    pub(super) fn collect(&mut self) -> Output {
        let mut out = Vec::new();
        loop {
            let now = Instant::now();
            if now >= self.deadline {
                return Output::TimedOut;
            }
            let body_late = self.body_left > 0 && (self.client_gone || now >= self.read_deadline);
            if body_late {
                return Output::BodyLate;
            }
            let ready = self.turn(true, false, self.deadline);
            if ready.out || self.status.is_some() {
                match self.read_out(&mut out, MAX_BUFFERED) {
                    Some(true) => return Output::Complete(out),
                    Some(false) => return Output::Streaming(out),
                    None if self.status.is_some() => return Output::Complete(out),
                    None => {}
                }
            }
        }
    }

    /// Waits up to [`EXIT_WAIT`] (and the deadline) for the program to exit.
    fn await_exit(&mut self) {
        let until = (Instant::now() + EXIT_WAIT).min(self.deadline);
        while self.status.is_none() && Instant::now() < until {
            self.turn(false, false, until);
        }
    }

    /// The signal that killed the program, once it is known to have died.
    fn killed_by(&self) -> Option<i32> {
        self.status
            .filter(|&s| libc::WIFSIGNALED(s))
            .map(|s| libc::WTERMSIG(s))
    }

    /// Answers with the whole output, framed by its length.
    pub(super) fn answer(&mut self, out: &[u8], head_only: bool) -> u16 {
        self.stdin = None;
        self.await_exit();
        if let Some(sig) = self.killed_by() {
            // Its output may stop anywhere: a response with a true length
            // would pass a truncated body off as whole.
            complain(
                self.cgi,
                &format!(
                    "killed by signal {sig} after printing {} bytes: not relayed",
                    out.len()
                ),
            );
            return self.send(http::BAD_GATEWAY, 502);
        }
        if out.is_empty() {
            let how = self
                .status
                .map_or("ended".to_string(), |s| exit_text(s).to_string());
            complain(self.cgi, &format!("printed nothing ({how})"));
            return self.send(http::BAD_GATEWAY, 502);
        }
        let parsed = match reply::parse_response(out) {
            Ok(parsed) => parsed,
            Err(why) => {
                complain(
                    self.cgi,
                    &format!("printed an invalid CGI header block: {why}"),
                );
                return self.send(http::BAD_GATEWAY, 502);
            }
        };
        let code = reply::status_code(&parsed);
        let body = &out[parsed.body_start..];
        let framing = if reply::has_body(code) {
            Framing::Length(body.len())
        } else {
            Framing::None
        };
        let mut response = reply::head_bytes(&parsed, framing);
        if !head_only && framing != Framing::None {
            response.extend_from_slice(body);
        }
        // Bounded by --cgi-timeout: a client that reads slowly must not keep
        // this child (and a lingering program) past it.
        let deadline = self.deadline;
        self.write_until(&response, deadline);
        code
    }

    /// Output too large to buffer: streamed as it comes, chunked to an
    /// HTTP/1.1 client (so that a response cut short shows), close-delimited
    /// to HTTP/1.0. HEAD gets the head alone and the program's output is
    /// closed (it gets EPIPE).
    pub(super) fn stream(&mut self, first: &[u8], head_only: bool, chunked_ok: bool) -> u16 {
        let parsed = match reply::parse_response(first) {
            Ok(parsed) => parsed,
            Err(why) => {
                self.kill_tree();
                complain(
                    self.cgi,
                    &format!("printed an invalid CGI header block: {why}"),
                );
                return self.send(http::BAD_GATEWAY, 502);
            }
        };
        let code = reply::status_code(&parsed);
        let framing = match (reply::has_body(code), chunked_ok) {
            (false, _) => Framing::None,
            (true, true) => Framing::Chunked,
            (true, false) => Framing::Close,
        };
        let deadline = self.deadline;
        if !self.write_until(&reply::head_bytes(&parsed, framing), deadline) {
            self.kill_tree();
            return code;
        }
        if head_only || framing == Framing::None {
            self.stdout = None;
            return code;
        }
        let mut pending = Vec::with_capacity(BODY_BUF + 16);
        self.frame(&first[parsed.body_start..], framing, &mut pending);
        let mut data = Vec::with_capacity(64 * 1024);
        loop {
            if !pending.is_empty() {
                if !self.write_until(&pending, deadline) {
                    // Too slow a client, or gone: cut, without the last chunk.
                    self.kill_tree();
                    return code;
                }
                pending.clear();
            }
            if Instant::now() >= deadline {
                self.kill_tree();
                complain(
                    self.cgi,
                    &format!(
                        "killed after --cgi-timeout {:?} while streaming its output: the response is cut short",
                        self.cgi.timeout
                    ),
                );
                return code;
            }
            let ready = self.turn(true, false, deadline);
            if !ready.out && self.status.is_none() {
                continue;
            }
            data.clear();
            let end = self.read_out(&mut data, 60 * 1024);
            self.frame(&data, framing, &mut pending);
            match end {
                Some(true) => break,
                None if self.status.is_some() => break,
                _ => {}
            }
        }
        if !pending.is_empty() && !self.write_until(&pending, deadline) {
            self.kill_tree();
            return code;
        }
        self.await_exit();
        if let Some(sig) = self.killed_by() {
            complain(
                self.cgi,
                &format!(
                    "killed by signal {sig} while its output was streamed: the response is cut short"
                ),
            );
            return code;
        }
        if framing == Framing::Chunked {
            self.write_until(reply::LAST_CHUNK, deadline);
        }
        code
    }

    fn frame(&self, data: &[u8], framing: Framing, into: &mut Vec<u8>) {
        if data.is_empty() {
            return;
        }
        match framing {
            Framing::Chunked => reply::chunk(data, into),
            _ => into.extend_from_slice(data),
        }
    }

    /// Writes all of `bytes` to the client by `until`, moving the rest of the
    /// exchange along while it waits; false when it could not.
    fn write_until(&mut self, bytes: &[u8], until: Instant) -> bool {
        let mut off = 0;
        while off < bytes.len() {
            match self.conn.write(&bytes[off..]) {
                Ok(0) => return false,
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= until {
                        return false;
                    }
                    self.turn(false, true, until);
                }
                Err(_) => return false,
            }
        }
        true
    }

    /// A canned response (502, 504, 408), written within [`SEND_LIMIT`].
    pub(super) fn send(&mut self, response: &[u8], status: u16) -> u16 {
        let until = Instant::now() + SEND_LIMIT;
        self.write_until(response, until);
        status
    }

    /// Kills the program (its group, and itself should it have left it) and
    /// everything below this child; returns how many processes died of it.
    pub(super) fn kill_tree(&mut self) -> usize {
        let mut killed = 0;
        if self.status.is_none() {
            // Not reaped, so its pid (the group's id) names no one else.
            let _ = sys::kill(-self.pid, libc::SIGKILL);
            signals::CGI_GROUP.store(0, Ordering::SeqCst);
            let _ = sys::kill(self.pid, libc::SIGKILL);
            let until = Instant::now() + KILL_LIMIT;
            while self.status.is_none() && Instant::now() < until {
                self.status = sys::reap_pid(self.pid);
                if self.status.is_none() {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            killed += usize::from(self.killed_by() == Some(libc::SIGKILL));
            self.pidfd = None;
        }
        self.stdout = None;
        self.stdin = None;
        killed + tree::kill_all_below(KILL_LIMIT)
    }

    /// After the response: the program gets until `--cgi-timeout` to exit (its
    /// stderr still relayed), then it is killed; whatever it leaves running
    /// when it exits is killed then. A request's processes end with it.
    pub(super) fn finish(&mut self) {
        self.stdout = None;
        self.stdin = None;
        while self.status.is_none() && Instant::now() < self.deadline {
            // The pidfd wakes this at the exit (without one, `turn` polls).
            self.turn(false, false, self.deadline);
        }
        let lingered = self.status.is_none();
        tree::reap_all();
        if lingered || tree::has_children() {
            let killed = self.kill_tree();
            if killed > 0 {
                let when = if lingered {
                    format!(
                        "at --cgi-timeout {:?}, after its response",
                        self.cgi.timeout
                    )
                } else {
                    "when it exited".to_string()
                };
                complain(
                    self.cgi,
                    &format!("{killed} of its processes still ran {when}, and were killed"),
                );
            }
        }
        self.relay_stderr();
        self.stderr = None;
        self.errlog.finish();
        signals::CGI_GROUP.store(0, Ordering::SeqCst);
        if self.body_left > 0 && !self.client_gone {
            super::drain_briefly(self.conn);
        }
    }
}

/// A wait status as a person reads it.
fn exit_text(status: libc::c_int) -> String {
    if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("exit status {}", libc::WEXITSTATUS(status))
    }
}
