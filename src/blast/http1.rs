//! The HTTP/1.x response reader: status line, headers, and where the body ends
//! (Content-Length, chunked, or the server's close).
//!
//! Owns the parsing of what a server sends back, incrementally, one read at a
//! time. Must never do I/O, allocate per read in the usual case (a head that
//! arrives in one read is parsed in place), or accept a response it cannot
//! account for (a malformed head is a `bad_response`, never a success).

use std::io;

/// Response heads larger than this are not what a load test expects.
const MAX_HEAD: usize = 64 * 1024;

pub(super) fn bad(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

pub(super) fn short() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "response ended early")
}

/// A TLS connection closed without close_notify before the response ended:
/// over TLS a close-delimited body can tell a cut from its end, and this is
/// a cut (a `bad_response`, as [`short`] is).
pub(super) fn cut() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "TLS closed without close_notify before the response ended",
    )
}

/// How the body of a response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    Length(u64),
    Chunked,
    /// No length: the body ends when the server closes (HTTP/1.0 style, as the
    /// article's servers answer). A normal completion, not an error; over TLS
    /// only a close with close_notify ends it (see [`cut`]).
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
/// Incremental response reader: head, then the body until its end.
pub(super) struct Reader {
    head_request: bool,
    head: Option<Head>,
    /// Body bytes still expected (`Body::Length`).
    left: u64,
    chunked: Chunked,
}

impl Reader {
    pub(super) fn new(head_request: bool) -> Reader {
        Reader {
            head_request,
            head: None,
            left: 0,
            chunked: Chunked::default(),
        }
    }

    /// Consumes one read's bytes; returns (status, reusable) once complete.
    pub(super) fn feed(
        &mut self,
        data: &[u8],
        pending: &mut Vec<u8>,
    ) -> io::Result<Option<(u16, bool)>> {
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
    pub(super) fn eof(&mut self) -> io::Result<Option<(u16, bool)>> {
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
/// One pass from newline to newline (this runs once per response, and a
/// load test reads hundreds of thousands).
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(off) = buf[from..].iter().position(|&b| b == b'\n') {
        let i = from + off;
        match buf.get(i + 1)? {
            b'\n' => return Some(i + 2),
            // "\n\r": a CRLF blank line needs the "\n" after it.
            b'\r' if *buf.get(i + 2)? == b'\n' => return Some(i + 3),
            _ => from = i + 1,
        }
    }
    None
}

/// The next line of `rest` (without its line end and trailing CRs), and
/// `rest` moved past it.
fn next_line<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    let (mut line, after) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (*rest, &[][..]),
    };
    *rest = after;
    while let [head @ .., b'\r'] = line {
        line = head;
    }
    line
}

/// `1*DIGIT` as a number (no sign, no spaces, no overflow).
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))?
    })
}

/// Parses a response head on its bytes (it is checked to be UTF-8 first, as
/// any text a server sends should be); only the status and the headers that
/// say where the body ends and whether the connection stays open are read.
fn parse_head(head: &[u8], head_request: bool) -> io::Result<Head> {
    if std::str::from_utf8(head).is_err() {
        return Err(bad("response head is not UTF-8"));
    }
    let mut rest = head;
    let status_line = next_line(&mut rest);
    let http11 = match status_line.get(..9) {
        Some(b"HTTP/1.1 ") => true,
        Some(b"HTTP/1.0 ") => false,
        _ => return Err(bad("not an HTTP/1.x status line")),
    };
    let after = &status_line[9..];
    let code = match after.iter().position(|&b| b == b' ') {
        Some(i) => &after[..i],
        None => after,
    };
    let status = match code {
        [a, b, c] if code.iter().all(u8::is_ascii_digit) => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return Err(bad("bad status code")),
    };
    if status < 100 {
        return Err(bad("bad status code"));
    }
    let mut length = None;
    let mut chunked = false;
    let mut close = !http11;
    while !rest.is_empty() {
        let line = next_line(&mut rest);
        if line.is_empty() {
            continue;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| bad("bad header line"))?;
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        // RFC 9112 §5.1: no whitespace before the colon (`Content-Length : 5`
        // would be taken for another header and the body read to the close).
        if name.is_empty() || name.iter().any(|b| b.is_ascii_whitespace()) {
            return Err(bad("bad header name"));
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = digits(value).ok_or_else(|| bad("bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad("conflicting Content-Length"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && !http11 {
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
        assert_eq!(head_end(b"A\n\rB\n\n"), Some(6), "a CR not followed by LF");
        assert_eq!(head_end(b""), None);
        assert_eq!(head_end(b"\n"), None);
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
        let r = h("HTTP/1.1 200\r\nCONNECTION:  Keep-Alive, Close \r\ncontent-length:3\r\r\n\r\n");
        assert_eq!(
            (r.status, r.body, r.reusable),
            (200, Body::Length(3), false)
        );
        let r = h("HTTP/1.0 404 Not Found\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n");
        assert_eq!((r.status, r.reusable), (404, true));
        let r = h("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n");
        assert_eq!(r.body, Body::Chunked);
        for badh in [
            "SSH-2.0-OpenSSH\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 20x OK\r\n\r\n",
            "HTTP/1.1 099 Low\r\n\r\n",
            "HTTP/1.1  200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            // Regression: whitespace before the colon hid the length.
            "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nnocolon\r\n\r\n",
        ] {
            assert!(parse_head(badh.as_bytes(), false).is_err(), "{badh}");
        }
        assert!(parse_head(b"HTTP/1.1 200 \xff\r\n\r\n", false).is_err());
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
