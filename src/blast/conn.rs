//! One request: connect (or reuse), handshake (https), write, read the whole
//! response, classify.
//!
//! Owns the per-connection syscall budget and deadlines; the bytes of the
//! response are `http1`'s to parse, the TLS session `tls`'s. Must never
//! allocate per request (reads go to a per-thread scratch buffer), set socket
//! options the exchange does not need, or outlive its deadline.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, SockaddrStorage};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep, timeout_at};
use tokio_rustls::client::TlsStream;

use super::http1::Reader;
use super::report::{ErrorKind, Phase};
use super::source::Sources;
use super::stats;
use super::tls::TlsSetup;

/// What the engine needs from the configuration for each request.
pub struct Exchange<'a> {
    pub addr: SocketAddr,
    pub request: &'a [u8],
    pub head_request: bool,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub keep_alive: bool,
    /// `--source` addresses, in turn (none: the kernel picks).
    pub sources: &'a Sources,
    /// The TLS client, for https://.
    pub tls: Option<&'a TlsSetup>,
}

/// An open connection.
pub enum Stream {
    Plain(TcpStream),
    /// Boxed: a TLS session is large, and most runs have none.
    Tls(Box<TlsStream<TcpStream>>),
}

/// A client's state carried from one request to the next.
#[derive(Default)]
pub struct ClientState {
    /// A socket made before the start barrier, so the burst is only connects.
    pub presocket: Option<io::Result<std::net::TcpStream>>,
    /// Eager requests (see `open`) to skip after one found the connection
    /// still being made: a remote server's handshake takes a round trip.
    pub eager_skip: u8,
    /// The open connection kept for the next request (`--keep-alive`).
    pub conn: Option<Stream>,
    /// A response head split across reads waits here (rare: empty otherwise).
    pub buf: Vec<u8>,
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
/// a complete response of another status). Its total and first-byte latency
/// count from `origin` when given (an open model's intended start, so a
/// request that waited for a free client shows the wait), else from now;
/// `--timeout` always counts from now.
///
/// `deadline` is the client's one timer, moved on for each request: a
/// later deadline only updates the timer entry in place, where a new
/// `timeout_at` per request took the timer wheel's lock twice (insert and
/// remove), a twentieth of blast's user time per connection.
pub async fn run_one(
    ex: &Exchange<'_>,
    st: &mut ClientState,
    origin: Option<Instant>,
    mut deadline: Pin<&mut Sleep>,
) -> Result<(), ErrorKind> {
    let start = Instant::now();
    let origin = origin.unwrap_or(start);
    let mut phase = Phase::Connect;
    deadline.as_mut().reset(start + ex.timeout);
    let result = tokio::select! {
        biased;
        done = attempt(ex, st, start, origin, &mut phase) => Ok(done),
        () = deadline => Err(()),
    };
    if !matches!(result, Ok(Ok(_))) {
        // Whatever went wrong, this connection carries nothing more.
        st.conn = None;
    }
    let kind = match result {
        Ok(Ok(status)) => {
            stats::record(|s| s.response(status, origin.elapsed()));
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
        Err(()) => ErrorKind::Timeout,
    };
    stats::record(|s| s.failed(kind, phase));
    Err(kind)
}

/// Connect (or reuse), handshake, write, read. Returns the status of a
/// complete response; `phase` says how far it got when the caller's deadline
/// strikes.
async fn attempt(
    ex: &Exchange<'_>,
    st: &mut ClientState,
    start: Instant,
    origin: Instant,
    phase: &mut Phase,
) -> Result<u16, Fail> {
    loop {
        // Each pass starts over: a retry after a kept-alive connection failed
        // must not carry the failed pass's phase into its new connect.
        *phase = Phase::Connect;
        let (mut stream, reused, sent) = match st.conn.take() {
            Some(s) => (s, true, 0),
            None => {
                let (s, sent) = open(ex, st, start, phase).await?;
                (s, false, sent)
            }
        };
        *phase = Phase::Write;
        let mut answered = false;
        let answer = match &mut stream {
            Stream::Plain(tcp) => {
                let unsent = &ex.request[sent..];
                request_on(tcp, unsent, ex, &mut st.buf, origin, phase, &mut answered).await
            }
            Stream::Tls(tls) => {
                tls_request_on(tls, ex, &mut st.buf, origin, phase, &mut answered).await
            }
        };
        match answer {
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

/// A new connection: the TCP connect, then the TLS handshake for https; with
/// how many bytes of the request are already sent.
///
/// Plain http writes the request at once, before waiting for the connect to
/// be reported: on loopback the handshake is over when `connect` returns, so
/// this saves the wait for writability and its `getsockopt(SO_ERROR)` (7
/// syscalls per connection instead of 8, one task wake-up instead of two).
/// When the connection is still being made (EAGAIN: a remote server), it
/// waits as usual, and the next few connections of this client do not try.
async fn open(
    ex: &Exchange<'_>,
    st: &mut ClientState,
    start: Instant,
    phase: &mut Phase,
) -> Result<(Stream, usize), Fail> {
    let sock = match st.presocket.take() {
        Some(sock) => sock,
        None => ex.sources.socket(ex.addr),
    }?;
    match nix::sys::socket::connect(sock.as_raw_fd(), &SockaddrStorage::from(ex.addr)) {
        Ok(()) | Err(Errno::EINPROGRESS) => {}
        Err(e) => return Err(io::Error::from(e).into()),
    }
    let tcp = TcpStream::from_std(sock)?;
    let Some(tls) = ex.tls else {
        if st.eager_skip > 0 {
            st.eager_skip -= 1;
        } else {
            match nix::sys::socket::send(tcp.as_raw_fd(), ex.request, MsgFlags::MSG_NOSIGNAL) {
                Ok(sent) => {
                    stats::record(|s| s.connected(start.elapsed()));
                    return Ok((Stream::Plain(tcp), sent));
                }
                Err(Errno::EAGAIN) => st.eager_skip = EAGER_SKIP,
                // The connect failed (refused, unreachable, out of ports).
                Err(e) => return Err(io::Error::from(e).into()),
            }
        }
        connected(&tcp, ex, start).await?;
        return Ok((Stream::Plain(tcp), 0));
    };
    connected(&tcp, ex, start).await?;
    *phase = Phase::Handshake;
    let begun = Instant::now();
    let (stream, resumed) = tls.handshake(tcp).await.map_err(Fail::Error)?;
    stats::record(|s| s.handshake(begun.elapsed(), resumed));
    Ok((Stream::Tls(Box::new(stream)), 0))
}

/// Connections a client makes without trying an eager request after one
/// found its connection still being made.
const EAGER_SKIP: u8 = 16;

/// Waits, within `--connect-timeout`, until the connect is reported, and
/// fails with its error if it failed.
async fn connected(tcp: &TcpStream, ex: &Exchange<'_>, start: Instant) -> Result<(), Fail> {
    let ready = tcp.writable();
    if ex.connect_timeout < ex.timeout {
        timeout_at(start + ex.connect_timeout, ready)
            .await
            .map_err(|_| Fail::ConnectTimeout)??;
    } else {
        ready.await?;
    }
    if let Some(e) = tcp.take_error()? {
        return Err(e.into());
    }
    stats::record(|s| s.connected(start.elapsed()));
    Ok(())
}

/// Writes the request (what is left of it) and reads the whole response on
/// `stream`.
async fn request_on(
    stream: &TcpStream,
    unsent: &[u8],
    ex: &Exchange<'_>,
    pending: &mut Vec<u8>,
    origin: Instant,
    phase: &mut Phase,
    answered: &mut bool,
) -> io::Result<(u16, bool)> {
    write_all(stream, unsent).await?;
    *phase = Phase::Read;
    read_response(stream, pending, ex.head_request, origin, answered).await
}

/// [`request_on`] over TLS.
async fn tls_request_on(
    stream: &mut TlsStream<TcpStream>,
    ex: &Exchange<'_>,
    pending: &mut Vec<u8>,
    origin: Instant,
    phase: &mut Phase,
    answered: &mut bool,
) -> io::Result<(u16, bool)> {
    stream.write_all(ex.request).await?;
    stream.flush().await?;
    *phase = Phase::Read;
    pending.clear();
    let mut reader = Reader::new(ex.head_request);
    loop {
        let mut got = 0;
        // The scratch buffer is borrowed only inside one poll, never across
        // an await, as in `read_response`.
        let step = std::future::poll_fn(|cx| {
            SCRATCH.with(|cell| {
                let mut scratch = cell.borrow_mut();
                let mut buf = ReadBuf::new(&mut scratch[..]);
                match Pin::new(&mut *stream).poll_read(cx, &mut buf) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Ok(())) => {
                        got = buf.filled().len();
                        Poll::Ready(match got {
                            0 => reader.eof(),
                            n => reader.feed(&scratch[..n], pending),
                        })
                    }
                    // The TCP connection closed without close_notify. A
                    // response whose end is known (a length, the last
                    // chunk) was already complete: most servers close so.
                    // Reaching here, the response still lacked its end: a
                    // body that ends at the close is then cut, not ended
                    // (RFC 9112 §9.8), and counts as a short response.
                    Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        Poll::Ready(Err(super::http1::cut()))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                }
            })
        })
        .await;
        if got > 0 && !*answered {
            *answered = true;
            stats::record(|s| s.first_byte(origin.elapsed()));
        }
        if let Some(done) = step? {
            pending.clear();
            return Ok(done);
        }
    }
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
    origin: Instant,
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
            stats::record(|s| s.first_byte(origin.elapsed()));
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

#[cfg(test)]
mod tests {
    use super::*;

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
            sources: &Sources::default(),
            tls: None,
        };
        let mut st = ClientState {
            conn: Some(Stream::Plain(
                TcpStream::from_std(kept).expect("tokio stream"),
            )),
            ..ClientState::default()
        };
        let _ = stats::take_local();
        let deadline = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(deadline);
        let result = run_one(&ex, &mut st, None, deadline.as_mut()).await;
        assert_eq!(result, Err(ErrorKind::Timeout));
        let s = stats::take_local().expect("recorded on this thread");
        let header = crate::blast::report::ReportHeader {
            keep_alive: true,
            ..Default::default()
        };
        let r = s.report(header, Duration::from_secs(1), 0, None);
        assert_eq!(
            r.timeouts,
            crate::blast::report::Timeouts {
                connect: 1,
                write: 0,
                read: 0,
                handshake: 0
            }
        );
    }
}
