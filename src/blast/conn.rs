//! One request: connect (or reuse), write, read the whole response, classify.
//!
//! Owns the per-connection syscall budget and the small HTTP/1.x response reader
//! (status line, Content-Length, chunked, or until EOF). Must never allocate per
//! request (reads go to a per-thread scratch buffer), set socket options the exchange
//! does not need, or outlive its deadline.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout_at};

use super::stats::{self, ErrorKind, Phase};

/// Response heads larger than this are not what a load test expects.
const MAX_HEAD: usize = 64 * 1024;

/// What the engine needs from the configuration for each request.
pub struct Exchange<'a> {
    pub addr: SocketAddr,
    pub request: &'a [u8],
    pub head_request: bool,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub keep_alive: bool,
}

/// A client's state carried from one request to the next.
#[derive(Default)]
pub struct ClientState {
    /// A socket made before the start barrier, so the burst is only connects.
    pub presocket: Option<io::Result<TcpSocket>>,
    /// The open connection kept for the next request (`--keep-alive`).
    pub conn: Option<TcpStream>,
    /// A response head split across reads waits here (rare: empty otherwise).
    pub buf: Vec<u8>,
}

/// A new unconnected socket for `addr`, with no options set: the exchange
/// writes one small request, so Nagle and linger do not matter, and each
/// setsockopt would be one more syscall per connection.
pub fn socket_for(addr: SocketAddr) -> io::Result<TcpSocket> {
    if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
}

/// Why an attempt ended without a complete response.
enum Fail {
    Error(ErrorKind),
    /// `--connect-timeout` passed (the overall `--timeout` is caught outside).
    ConnectTimeout,
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Fail {
        Fail::Error(ErrorKind::of_io(&e))
    }
}

/// Runs one request and records its outcome in this thread's stats; returns
/// Ok for a complete 2xx response, else the kind of failure (`HttpStatus` for
/// a complete response of another status).
pub async fn run_one(ex: &Exchange<'_>, st: &mut ClientState) -> Result<(), ErrorKind> {
    let start = Instant::now();
    let mut phase = Phase::Connect;
    let result = timeout_at(start + ex.timeout, attempt(ex, st, start, &mut phase)).await;
    if !matches!(result, Ok(Ok(_))) {
        // Whatever went wrong, this connection carries nothing more.
        st.conn = None;
    }
    let kind = match result {
        Ok(Ok(status)) => {
            stats::record(|s| s.response(status, start.elapsed()));
            return if (200..300).contains(&status) {
                Ok(())
            } else {
                Err(ErrorKind::HttpStatus)
            };
        }
        // A kernel ETIMEDOUT lands here too, with the phase it struck in.
        Ok(Err(Fail::Error(kind))) => kind,
        Ok(Err(Fail::ConnectTimeout)) => {
            phase = Phase::Connect;
            ErrorKind::Timeout
        }
        Err(_elapsed) => ErrorKind::Timeout,
    };
    stats::record(|s| s.failed(kind, phase));
    Err(kind)
}

/// Connect (or reuse), write, read. Returns the status of a complete response;
/// `phase` says how far it got when the caller's deadline strikes.
async fn attempt(
    ex: &Exchange<'_>,
    st: &mut ClientState,
    start: Instant,
    phase: &mut Phase,
) -> Result<u16, Fail> {
    loop {
        // Each pass starts over: a retry after a kept-alive connection failed
        // must not carry the failed pass's phase into its new connect.
        *phase = Phase::Connect;
        let (stream, reused) = match st.conn.take() {
            Some(s) => (s, true),
            None => (connect(ex, st, start).await?, false),
        };
        *phase = Phase::Write;
        let mut answered = false;
        match request_on(&stream, ex, &mut st.buf, start, phase, &mut answered).await {
            Ok((status, reusable)) => {
                if ex.keep_alive && reusable {
                    st.conn = Some(stream);
                }
                return Ok(status);
            }
            // A kept-alive connection the server closed while idle fails before
            // any answer: that is no fault of the server, so try once more on a
            // new connection (the next pass cannot be a reused one).
            Err(_) if reused && !answered => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Connects a new socket (the pre-made one first) within `--connect-timeout`.
async fn connect(
    ex: &Exchange<'_>,
    st: &mut ClientState,
    start: Instant,
) -> Result<TcpStream, Fail> {
    let sock = st.presocket.take().unwrap_or_else(|| socket_for(ex.addr))?;
    let connect = sock.connect(ex.addr);
    let stream = if ex.connect_timeout < ex.timeout {
        timeout_at(start + ex.connect_timeout, connect)
            .await
            .map_err(|_| Fail::ConnectTimeout)??
    } else {
        connect.await?
    };
    stats::record(|s| s.connected(start.elapsed()));
    Ok(stream)
}

/// Writes the request and reads the whole response on `stream`.
async fn request_on(
    stream: &TcpStream,
    ex: &Exchange<'_>,
    pending: &mut Vec<u8>,
    start: Instant,
    phase: &mut Phase,
    answered: &mut bool,
) -> io::Result<(u16, bool)> {
    write_all(stream, ex.request).await?;
    *phase = Phase::Read;
    read_response(stream, pending, ex.head_request, start, answered).await
}

/// `write_all` on a shared reference (tokio's needs `&mut`, which the
/// keep-alive path cannot lend while it may still keep the stream).
async fn write_all(stream: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        stream.writable().await?;
        match stream.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn bad(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn short() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "response ended early")
}

/// How the body of a response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    Length(u64),
    Chunked,
    /// No length: the body ends when the server closes (HTTP/1.0 style, as the
    /// article's servers answer). A normal completion, not an error.
    Eof,
}

/// The parts of a response head that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    status: u16,
    body: Body,
    /// The server allows another request on this connection.
    reusable: bool,
}

/// Reads one whole response. Returns its status and whether the connection may
/// carry another request.
///
/// Reads land in this thread's scratch buffer and are consumed at once; only
/// a head split across reads is copied into the client's `pending` buffer. So
/// a client costs no read buffer of its own, however many clients there are.
async fn read_response(
    stream: &TcpStream,
    pending: &mut Vec<u8>,
    head_request: bool,
    start: Instant,
    answered: &mut bool,
) -> io::Result<(u16, bool)> {
    pending.clear();
    let mut reader = Reader::new(head_request);
    loop {
        stream.readable().await?;
        let mut got = 0;
        let step = SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            match stream.try_read(&mut scratch[..]) {
                Ok(0) => reader.eof(),
                Ok(n) => {
                    got = n;
                    reader.feed(&scratch[..n], pending)
                }
                // Readiness was stale; tokio has cleared it, wait again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(e),
            }
        });
        if got > 0 && !*answered {
            *answered = true;
            stats::record(|s| s.first_byte(start.elapsed()));
        }
        if let Some(done) = step? {
            pending.clear();
            return Ok(done);
        }
    }
}

/// Size of each thread's read buffer: a small reply arrives in one read, and
/// a large body takes fewer syscalls.
const SCRATCH_LEN: usize = 16 * 1024;

thread_local! {
    /// This thread's read buffer, borrowed only inside one synchronous
    /// `try_read` and the parsing of its bytes, never across an await.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_LEN].into_boxed_slice());
}

/// Incremental response reader: head, then the body until its end.
struct Reader {
    head_request: bool,
    head: Option<Head>,
    /// Body bytes still expected (`Body::Length`).
    left: u64,
    chunked: Chunked,
}

impl Reader {
    fn new(head_request: bool) -> Reader {
        Reader {
            head_request,
            head: None,
            left: 0,
            chunked: Chunked::default(),
        }
    }

    /// Consumes one read's bytes; returns (status, reusable) once complete.
    fn feed(&mut self, data: &[u8], pending: &mut Vec<u8>) -> io::Result<Option<(u16, bool)>> {
        let rest;
        let body = match self.head {
            Some(_) => data,
            None => {
                // Usual case: the whole head is in this one read, no copy.
                let (head, body) = if pending.is_empty() {
                    match head_end(data) {
                        Some(end) => (parse_head(&data[..end], self.head_request)?, &data[end..]),
                        None => {
                            pending.extend_from_slice(data);
                            return Ok(None);
                        }
                    }
                } else {
                    pending.extend_from_slice(data);
                    match head_end(pending) {
                        Some(end) => {
                            let head = parse_head(&pending[..end], self.head_request)?;
                            rest = pending.split_off(end);
                            (head, &rest[..])
                        }
                        None if pending.len() > MAX_HEAD => {
                            return Err(bad("response head too large"));
                        }
                        None => return Ok(None),
                    }
                };
                if (100..200).contains(&head.status) && head.status != 101 {
                    // An interim response (100 Continue, 103 Early Hints): the
                    // real one follows on the same connection.
                    let after = body.to_vec();
                    pending.clear();
                    return self.feed(&after, pending);
                }
                if let Body::Length(n) = head.body {
                    self.left = n;
                }
                self.head = Some(head);
                body
            }
        };
        let Some(head) = self.head else {
            return Ok(None);
        };
        let done = match head.body {
            Body::None => true,
            Body::Length(_) => {
                self.left = self.left.saturating_sub(body.len() as u64);
                self.left == 0
            }
            Body::Chunked => self.chunked.feed(body)?,
            Body::Eof => false,
        };
        Ok(done.then_some((head.status, head.reusable)))
    }

    /// The server closed: complete only for a body that ends at EOF.
    fn eof(&mut self) -> io::Result<Option<(u16, bool)>> {
        match self.head {
            Some(Head {
                status,
                body: Body::Eof,
                ..
            }) => Ok(Some((status, false))),
            _ => Err(short()),
        }
    }
}

/// Length of the head including its blank line; bare LF line ends accepted.
fn head_end(buf: &[u8]) -> Option<usize> {
    let i = buf.windows(2).position(|w| w == b"\n\n" || w == b"\n\r")?;
    if buf[i + 1] == b'\n' {
        return Some(i + 2);
    }
    // "\n\r": a CRLF blank line needs the "\n" after it.
    match buf.get(i + 2) {
        Some(b'\n') => Some(i + 3),
        Some(_) => head_end(&buf[i + 1..]).map(|e| e + i + 1),
        None => None,
    }
}

fn parse_head(head: &[u8], head_request: bool) -> io::Result<Head> {
    let text = std::str::from_utf8(head).map_err(|_| bad("response head is not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(bad("not an HTTP/1.x status line")),
    };
    let code = parts.next().unwrap_or("");
    if code.len() != 3 {
        return Err(bad("bad status code"));
    }
    let status: u16 = code.parse().map_err(|_| bad("bad status code"))?;
    if !(100..1000).contains(&status) {
        return Err(bad("bad status code"));
    }
    let mut length = None;
    let mut chunked = false;
    let mut close = !http11;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or_else(|| bad("bad header line"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value.parse().map_err(|_| bad("bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad("conflicting Content-Length"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && !http11 {
                    close = false;
                }
            }
        }
    }
    // RFC 9112 §6.3: these never have a body, whatever the headers say.
    let body = if head_request || status < 200 || status == 204 || status == 304 {
        Body::None
    } else if chunked {
        Body::Chunked
    } else if let Some(n) = length {
        if n == 0 { Body::None } else { Body::Length(n) }
    } else {
        Body::Eof
    };
    Ok(Head {
        status,
        body,
        reusable: !close && body != Body::Eof,
    })
}

/// Streaming chunked-body decoder that only finds the end; data is discarded.
#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy)]
enum ChunkState {
    /// Reading the hex size (`digits` seen so far).
    #[default]
    Start,
    Size {
        size: u64,
    },
    /// After `;` up to the end of the size line.
    Ext {
        size: u64,
    },
    Data {
        left: u64,
    },
    /// The CRLF after chunk data.
    DataEnd,
    /// Trailer section: `len` bytes of the current line so far.
    Trailer {
        len: usize,
    },
    Done,
}

impl Chunked {
    /// Consumes bytes; returns true once the last chunk and trailers are read.
    fn feed(&mut self, mut input: &[u8]) -> io::Result<bool> {
        use ChunkState::*;
        while let Some((&b, rest)) = input.split_first() {
            self.state = match self.state {
                Done => return Ok(true),
                Data { left } => {
                    let take = (left.min(input.len() as u64)) as usize;
                    input = &input[take..];
                    let left = left - take as u64;
                    self.state = if left == 0 { DataEnd } else { Data { left } };
                    continue;
                }
                Start | Size { .. } if b.is_ascii_hexdigit() => {
                    let size = match self.state {
                        Size { size } => size,
                        _ => 0,
                    };
                    let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
                    let size = size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(digit))
                        .ok_or_else(|| bad("chunk size overflow"))?;
                    Size { size }
                }
                Size { size } | Ext { size } if b == b'\n' => {
                    if size == 0 {
                        Trailer { len: 0 }
                    } else {
                        Data { left: size }
                    }
                }
                Size { size } if b == b';' || b == b'\r' || b == b' ' || b == b'\t' => Ext { size },
                Ext { size } => Ext { size },
                DataEnd if b == b'\r' => DataEnd,
                DataEnd if b == b'\n' => Start,
                Trailer { len } if b == b'\n' => {
                    if len == 0 {
                        Done
                    } else {
                        Trailer { len: 0 }
                    }
                }
                Trailer { len } if b == b'\r' => Trailer { len },
                Trailer { len } => Trailer { len: len + 1 },
                _ => return Err(bad("bad chunked body")),
            };
            input = rest;
        }
        Ok(matches!(self.state, Done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_accepts_crlf_and_bare_lf() {
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n\r\nbody"), Some(19));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\n\nbody"), Some(17));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n"), None);
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n\r"), None);
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n"), Some(25));
    }

    #[test]
    fn heads_say_how_the_body_ends() {
        let h = |s: &str| parse_head(s.as_bytes(), false).expect(s);
        let r = h("HTTP/1.1 200 OK\r\nContent-Length: 14\r\nConnection: close\r\n\r\n");
        assert_eq!(
            (r.status, r.body, r.reusable),
            (200, Body::Length(14), false)
        );
        let r = h("HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n");
        assert_eq!((r.status, r.body, r.reusable), (500, Body::None, true));
        let r = h("HTTP/1.0 200 OK\n\n");
        assert_eq!((r.body, r.reusable), (Body::Eof, false));
        let r = h("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(r.body, Body::Chunked);
        let r = h("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(r.body, Body::None);
        let r = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).expect("head");
        assert_eq!(r.body, Body::None);
        for badh in [
            "SSH-2.0-OpenSSH\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nnocolon\r\n\r\n",
        ] {
            assert!(parse_head(badh.as_bytes(), false).is_err(), "{badh}");
        }
    }

    #[test]
    fn reader_completes_at_content_length_across_any_split() {
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\nHello, World!\n";
        for split in 1..resp.len() {
            let mut r = Reader::new(false);
            let mut pending = Vec::new();
            assert_eq!(r.feed(&resp[..split], &mut pending).expect("first"), None);
            let done = r.feed(&resp[split..], &mut pending).expect("second");
            assert_eq!(done, Some((200, true)), "split at {split}");
        }
        // Short: the server closed before the promised body.
        let mut r = Reader::new(false);
        let mut pending = Vec::new();
        assert_eq!(r.feed(&resp[..40], &mut pending).expect("part"), None);
        assert!(r.eof().is_err());
        // No length: EOF completes it, and the connection cannot be reused.
        let mut r = Reader::new(false);
        assert_eq!(
            r.feed(b"HTTP/1.0 200 OK\n\nhi", &mut pending)
                .expect("eof body"),
            None
        );
        assert_eq!(r.eof().expect("eof"), Some((200, false)));
    }

    #[test]
    fn interim_responses_are_skipped() {
        let resp =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
        let mut r = Reader::new(false);
        let mut pending = Vec::new();
        assert_eq!(r.feed(resp, &mut pending).expect("feed"), Some((201, true)));
        let mut r = Reader::new(false);
        assert_eq!(r.feed(&resp[..30], &mut pending).expect("feed"), None);
        assert_eq!(
            r.feed(&resp[30..], &mut pending).expect("feed"),
            Some((201, true))
        );
    }

    /// Regression: when a kept-alive connection turned out closed and the
    /// request was retried on a new one, a timeout in that new connect was
    /// counted as a read timeout (the phase the failed pass had reached).
    #[tokio::test]
    async fn a_timeout_in_the_retry_connect_is_a_connect_timeout() {
        use socket2::{Domain, Socket, Type};
        // The kept-alive connection, closed by its peer while idle.
        let idle = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let kept = std::net::TcpStream::connect(idle.local_addr().expect("addr")).expect("connect");
        drop(idle.accept().expect("accept"));
        kept.set_nonblocking(true).expect("nonblocking");
        // Where the retry goes: a listener whose accept queue is full (backlog
        // 0 holds one connection), so the kernel drops the SYN and the connect
        // hangs until the overall --timeout.
        let full = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        full.bind(&any.into()).expect("bind");
        full.listen(0).expect("listen");
        let addr = full.local_addr().expect("addr").as_socket().expect("inet");
        let _queued = std::net::TcpStream::connect(addr).expect("fill the queue");
        let ex = Exchange {
            addr,
            request: b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
            head_request: false,
            timeout: Duration::from_millis(300),
            connect_timeout: Duration::from_millis(300),
            keep_alive: true,
        };
        let mut st = ClientState {
            conn: Some(TcpStream::from_std(kept).expect("tokio stream")),
            ..ClientState::default()
        };
        let _ = stats::take_local();
        assert_eq!(run_one(&ex, &mut st).await, Err(ErrorKind::Timeout));
        let s = stats::take_local().expect("recorded on this thread");
        let header = stats::ReportHeader {
            url: "u".into(),
            clients: 1,
            conns_per_client: Some(1),
            duration: None,
            threads: 1,
            keep_alive: true,
        };
        let r = stats::BlastReport::new(&s, header, Duration::from_secs(1));
        assert_eq!(
            r.timeouts,
            stats::Timeouts {
                connect: 1,
                write: 0,
                read: 0
            }
        );
    }

    #[test]
    fn chunked_decoder_finds_the_end_across_reads() {
        let body = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\n";
        for split in 0..body.len() {
            let mut d = Chunked::default();
            let first = d.feed(&body[..split]).expect("first part");
            assert!(!first, "done too early at {split}");
            assert!(
                d.feed(&body[split..]).expect("second part"),
                "split {split}"
            );
        }
        let mut d = Chunked::default();
        assert!(d.feed(b"zz\r\n").is_err());
    }
}
