//! One request: connect (or reuse), write, read the whole response, classify.
//!
//! Owns the per-connection syscall budget and deadlines; the bytes of the
//! response are `http1`'s to parse. Must never allocate per request (reads go
//! to a per-thread scratch buffer), set socket options the exchange does not
//! need, or outlive its deadline.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout_at};

use super::http1::Reader;
use super::report::{ErrorKind, Phase};
use super::stats;

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
        };
        let mut st = ClientState {
            conn: Some(TcpStream::from_std(kept).expect("tokio stream")),
            ..ClientState::default()
        };
        let _ = stats::take_local();
        assert_eq!(run_one(&ex, &mut st).await, Err(ErrorKind::Timeout));
        let s = stats::take_local().expect("recorded on this thread");
        let header = crate::blast::report::ReportHeader {
            tag: "t".into(),
            started_at: None,
            url: "u".into(),
            clients: 1,
            conns_per_client: Some(1),
            duration: None,
            threads: 1,
            keep_alive: true,
        };
        let r = s.report(header, Duration::from_secs(1), 0, None);
        assert_eq!(
            r.timeouts,
            crate::blast::report::Timeouts {
                connect: 1,
                write: 0,
                read: 0
            }
        );
    }
}
