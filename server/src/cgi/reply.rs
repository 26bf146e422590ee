//! The program's side of a CGI response: its header block parsed into ours,
//! and how the body is framed on the wire.
//!
//! Owns what may pass from a program's header block into the response head
//! (never a control character, never a hop-by-hop field such as
//! Transfer-Encoding), and the framings. Pure functions: no I/O.

use crate::http;

/// Header fields a program may not set: they describe the connection, which
/// is the server's (RFC 9110 §7.6.1, RFC 3875 §6.3.4).
const HOP_BY_HOP: [&str; 8] = [
    "content-length",
    "connection",
    "transfer-encoding",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

/// A CGI response head.
pub(super) struct Parsed {
    pub status: String,
    pub headers: Vec<(String, String)>,
    pub body_start: usize,
}

/// Parses the program's header block: `Status:` becomes the status line,
/// `Location:` without `Status:` a 302. Err says why it is malformed (→ 502).
pub(super) fn parse_response(out: &[u8]) -> Result<Parsed, String> {
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
        } else if HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            // Ours describe the response as sent: a program's own
            // Transfer-Encoding next to our Content-Length would frame the
            // body two ways (RFC 9112 §6.1), and hop-by-hop fields are the
            // server's to set (RFC 3875 §6.3.4).
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
pub(super) fn shown(line: &str) -> String {
    let cut: String = line.chars().take(60).collect();
    format!("{cut:?}")
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// `Content-Length` (the whole output was buffered).
    Length(usize),
    /// `Transfer-Encoding: chunked` (streamed to an HTTP/1.1 client): a
    /// response cut short lacks its last chunk, which the client sees.
    Chunked,
    /// The close ends it (streamed to an HTTP/1.0 client, which knows no
    /// chunks): a response cut short looks complete.
    Close,
    /// No body at all (204, 304): no length either (RFC 9110 §8.6).
    None,
}

pub(super) fn head_bytes(parsed: &Parsed, framing: Framing) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {}\r\n", parsed.status);
    for (name, value) in &parsed.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    match framing {
        Framing::Length(length) => head.push_str(&format!("Content-Length: {length}\r\n")),
        Framing::Chunked => head.push_str("Transfer-Encoding: chunked\r\n"),
        Framing::Close | Framing::None => {}
    }
    head.push_str("Connection: close\r\n\r\n");
    head.into_bytes()
}

/// Whether a response with this status may carry a body (RFC 9110 §6.4.1:
/// never 204 or 304).
pub(super) fn has_body(code: u16) -> bool {
    !matches!(code, 204 | 304)
}

/// One chunk of a chunked body: size in hex, CRLF, data, CRLF.
pub(super) fn chunk(data: &[u8], into: &mut Vec<u8>) {
    into.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    into.extend_from_slice(data);
    into.extend_from_slice(b"\r\n");
}

/// The last chunk of a chunked body (no trailers).
pub(super) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

pub(super) fn status_code(parsed: &Parsed) -> u16 {
    parsed
        .status
        .get(..3)
        .and_then(|c| c.parse().ok())
        .unwrap_or(200)
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
    fn hop_by_hop_fields_of_the_program_are_dropped() {
        let p = parse_response(
            b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nUpgrade: h2c\r\nTE: trailers\r\nTrailer: X\r\nX-Kept: 1\r\n\r\nbody",
        )
        .unwrap();
        assert_eq!(p.headers, vec![("X-Kept".to_string(), "1".to_string())]);
    }

    #[test]
    fn chunks_are_framed_in_hex() {
        let mut out = Vec::new();
        chunk(&[b'x'; 26], &mut out);
        assert_eq!(&out[..4], b"1a\r\n");
        assert!(out.ends_with(b"x\r\n"));
    }
}
