//! The tiny HTTP exchange: parse one request head, pick one canned response.
//!
//! Owns the request grammar the server accepts (HTTP/1.x request line, headers,
//! CRLF or bare LF line endings) and the response bytes. Pure functions over byte
//! slices: no I/O, no allocation, so it is cheap in the child and easy to fuzz.
//! Must never panic on any input.

/// Largest request head (request line + headers) a child reads: 8 KiB.
pub const MAX_HEAD: usize = 8 * 1024;

/// What a buffer holding the start of a request amounts to so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse<'a> {
    /// A whole, valid request head.
    Complete(Request<'a>),
    /// Valid so far; read more.
    Incomplete,
    /// Malformed: answer 400.
    Bad,
    /// No end of head within [`MAX_HEAD`] bytes: answer 431.
    TooLarge,
}

/// A parsed request head, borrowing from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub version: &'a [u8],
    /// The request line without its line ending, for the log.
    pub line: &'a [u8],
    /// Where the request line starts: after the empty lines RFC 9112 §2.2 lets
    /// a client send first. `buf[start..head_len]` is the head proper.
    pub start: usize,
    /// Bytes of the head, line endings and blank line included.
    pub head_len: usize,
    /// The Content-Length header, when present and valid.
    pub content_length: Option<u64>,
}

/// RFC 9110 token characters (method and header names).
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Finds the end of the head: the index just past the blank line, accepting
/// `\n\n`, `\n\r\n` (and so `\r\n\r\n`).
pub(crate) fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + off;
        match buf.get(nl + 1..) {
            Some([b'\n', ..]) => return Some(nl + 2),
            Some([b'\r', b'\n', ..]) => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Checks a request line; `None` when malformed.
fn request_line(line: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let mut parts = line.split(|&b| b == b' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let valid_method = !method.is_empty() && method.iter().all(|&b| is_tchar(b));
    let valid_target = !target.is_empty() && target.iter().all(|&b| b.is_ascii_graphic());
    let valid_version =
        matches!(version, [b'H', b'T', b'T', b'P', b'/', b'1', b'.', d] if d.is_ascii_digit());
    (valid_method && valid_target && valid_version).then_some((method, target, version))
}

/// A prefix of the request line that can already be rejected: a method byte that
/// is no token character means garbage, so the child answers 400 at once instead
/// of waiting for a line end that binary noise may never send.
fn prefix_is_bad(buf: &[u8]) -> bool {
    let method_end = buf.iter().position(|&b| b == b' ').unwrap_or(buf.len());
    buf[..method_end].iter().any(|&b| !is_tchar(b)) || method_end == 0 && !buf.is_empty()
}

/// Parses the head of one request from the bytes read so far.
///
/// Empty lines before the request line are skipped, as RFC 9112 §2.2 asks
/// (clients that send a stray CRLF after a previous request's body).
pub fn parse(buf: &[u8]) -> Parse<'_> {
    let mut skip = 0;
    loop {
        match &buf[skip..] {
            [b'\r', b'\n', ..] => skip += 2,
            [b'\n', ..] => skip += 1,
            [b'\r'] if buf.len() >= MAX_HEAD => return Parse::TooLarge,
            [b'\r'] => return Parse::Incomplete,
            _ => break,
        }
        if skip >= MAX_HEAD {
            return Parse::TooLarge;
        }
    }
    match parse_from_request_line(&buf[skip..]) {
        Parse::Complete(req) => Parse::Complete(Request {
            head_len: req.head_len + skip,
            start: skip,
            ..req
        }),
        Parse::Incomplete if buf.len() >= MAX_HEAD => Parse::TooLarge,
        other => other,
    }
}

fn parse_from_request_line(buf: &[u8]) -> Parse<'_> {
    let Some(end) = head_end(buf) else {
        // A CR is valid only before an LF: a bare one can never become a
        // valid head, so there is no point waiting for the rest.
        if prefix_is_bad(buf) || buf.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n') {
            return Parse::Bad;
        }
        // A complete request line can be checked before the headers arrive.
        if let Some(nl) = buf.iter().position(|&b| b == b'\n')
            && request_line(strip_cr(&buf[..nl])).is_none()
        {
            return Parse::Bad;
        }
        return if buf.len() >= MAX_HEAD {
            Parse::TooLarge
        } else {
            Parse::Incomplete
        };
    };
    if end > MAX_HEAD {
        return Parse::TooLarge;
    }
    let head = &buf[..end];
    let mut lines = head.split(|&b| b == b'\n').map(strip_cr);
    let line = lines.next().unwrap_or_default();
    let Some((method, target, version)) = request_line(line) else {
        return Parse::Bad;
    };
    let mut content_length = None;
    for header in lines.filter(|l| !l.is_empty()) {
        let Some(colon) = header.iter().position(|&b| b == b':') else {
            return Parse::Bad;
        };
        let (name, value) = (&header[..colon], &header[colon + 1..]);
        // Names are tokens (no whitespace before the colon, no obs-fold); values
        // may hold any visible byte, space or tab, but no control bytes (bare CR).
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Parse::Bad;
        }
        if value.iter().any(|&b| b.is_ascii_control() && b != b'\t') {
            return Parse::Bad;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let value = value.trim_ascii();
            // RFC 9110 §8.6: 1*DIGIT. Rust's integer parser also takes a `+`,
            // which other parsers on the path may read differently (smuggling).
            let digits = !value.is_empty() && value.iter().all(u8::is_ascii_digit);
            let parsed = std::str::from_utf8(value)
                .ok()
                .filter(|_| digits)
                .and_then(|v| v.parse::<u64>().ok());
            match (parsed, content_length) {
                (None, _) => return Parse::Bad,
                (Some(n), Some(prev)) if n != prev => return Parse::Bad,
                (Some(n), _) => content_length = Some(n),
            }
        }
    }
    Parse::Complete(Request {
        method,
        target,
        version,
        line,
        start: 0,
        head_len: end,
        content_length,
    })
}

/// The header fields of a head that [`parse`] accepted, given from its request
/// line on (`buf[req.start..req.head_len]`): (name, trimmed value).
pub fn headers(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    head.split(|&b| b == b'\n')
        .skip(1)
        .map(strip_cr)
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            Some((&line[..colon], line[colon + 1..].trim_ascii()))
        })
}

/// The contract's reply to every valid request.
pub const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\nConnection: close\r\n\r\nHello, World!\n";
/// [`OK`] without its body, for HEAD.
pub const OK_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\nConnection: close\r\n\r\n";
pub const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nBad Request\n";
pub const TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 16\r\nConnection: close\r\n\r\nRequest Timeout\n";
pub const PAYLOAD_TOO_LARGE: &[u8] = b"HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain\r\nContent-Length: 18\r\nConnection: close\r\n\r\nContent Too Large\n";
pub const LENGTH_REQUIRED: &[u8] = b"HTTP/1.1 411 Length Required\r\nContent-Type: text/plain\r\nContent-Length: 16\r\nConnection: close\r\n\r\nLength Required\n";
pub const BAD_GATEWAY: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nBad Gateway\n";
pub const GATEWAY_TIMEOUT: &[u8] = b"HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain\r\nContent-Length: 16\r\nConnection: close\r\n\r\nGateway Timeout\n";
pub const UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 20\r\nConnection: close\r\n\r\nService Unavailable\n";
pub const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\nContent-Length: 32\r\nConnection: close\r\n\r\nRequest Header Fields Too Large\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> Request<'_> {
        match parse(buf) {
            Parse::Complete(r) => r,
            other => panic!("{:?} → {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn client3_bare_lf_request_is_valid() {
        // The exact bytes client3.py sends.
        let r = complete(b"GET /hello HTTP/1.1\nHost: localhost:8888\n\n");
        assert_eq!(r.method, b"GET");
        assert_eq!(r.target, b"/hello");
        assert_eq!(r.line, b"GET /hello HTTP/1.1");
        assert_eq!(r.head_len, 42);
    }

    #[test]
    fn crlf_request_with_body_length() {
        let buf = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        let r = complete(buf);
        assert_eq!(r.content_length, Some(5));
        assert_eq!(&buf[r.head_len..], b"hello");
    }

    #[test]
    fn headers_iterate_trimmed_fields() {
        let head = b"GET / HTTP/1.1\r\nHost:  a \r\nX-Y:b\n\r\n";
        let got: Vec<_> = headers(head).collect();
        assert_eq!(
            got,
            vec![(&b"Host"[..], &b"a"[..]), (&b"X-Y"[..], &b"b"[..])]
        );
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        let buf = b"\r\n\nGET / HTTP/1.1\r\n\r\n";
        let r = complete(buf);
        assert_eq!(r.line, b"GET / HTTP/1.1");
        assert_eq!(r.head_len, buf.len());
        assert_eq!(r.start, 3);
        assert_eq!(parse(b"\r\n\r\n"), Parse::Incomplete);
        assert_eq!(parse(b"\r"), Parse::Incomplete);
    }

    #[test]
    fn incomplete_until_blank_line() {
        assert_eq!(parse(b""), Parse::Incomplete);
        assert_eq!(parse(b"GE"), Parse::Incomplete);
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n"), Parse::Incomplete);
    }

    #[test]
    fn malformed_requests_are_bad() {
        for bad in [
            &b"\x00\x01\x02garbage"[..],
            b"GET /\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\n folded\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            // Regression (issue 10): Rust's parser takes a sign; RFC 9110 does not.
            b"GET / HTTP/1.1\r\nContent-Length: +0\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: -0\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
            b"GET / HTTP/1.1\n",
        ] {
            let got = parse(bad);
            let early_ok = bad == b"GET / HTTP/1.1\n" && got == Parse::Incomplete;
            assert!(
                got == Parse::Bad || early_ok,
                "{:?} → {got:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_bare_cr_or_a_full_buffer_ends_the_wait() {
        // Attack report S16: both waited for the whole read timeout.
        assert_eq!(parse(b"GET / HTTP/1.1\r\r\r\r"), Parse::Bad);
        let mut full = vec![b'\n'; MAX_HEAD - 1];
        full.push(b'\r');
        assert_eq!(parse(&full), Parse::TooLarge);
    }

    #[test]
    fn garbage_is_rejected_before_a_line_end() {
        assert_eq!(parse(b"\x16\x03\x01\x02"), Parse::Bad); // a TLS hello
    }

    #[test]
    fn oversized_head_is_too_large() {
        let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
        while buf.len() < MAX_HEAD {
            buf.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(parse(&buf), Parse::TooLarge);
        buf.extend_from_slice(b"\r\n");
        assert_eq!(parse(&buf), Parse::TooLarge);
    }

    #[test]
    fn canned_responses_have_true_content_length() {
        for resp in [
            OK,
            BAD_REQUEST,
            TIMEOUT,
            TOO_LARGE,
            PAYLOAD_TOO_LARGE,
            LENGTH_REQUIRED,
            BAD_GATEWAY,
            GATEWAY_TIMEOUT,
            UNAVAILABLE,
        ] {
            let r = std::str::from_utf8(resp).unwrap();
            let (head, body) = r.split_once("\r\n\r\n").unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(len, body.len(), "{head}");
            assert!(head.contains("Connection: close"));
        }
        assert!(OK.starts_with(OK_HEAD));
    }
}
