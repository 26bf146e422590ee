//! The request as a CGI program sees it: RFC 3875 meta-variables.
//!
//! Owns the mapping from a request head to environment variables: the target
//! split into PATH_INFO and QUERY_STRING (absolute-form included, PATH_INFO
//! percent-decoded), SERVER_NAME, and HTTP_* for the header fields. Must never
//! let a `Proxy:` header become HTTP_PROXY (httpoxy), nor two header names
//! collide into one variable. Pure: no I/O.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStringExt;

use crate::http::{self, Request};

/// The RFC 3875 meta-variables for one request; Err (a 400) when the path
/// cannot be decoded into one (a bad `%` escape, or `%00`, which no
/// environment variable can hold).
pub(super) fn meta_variables(
    req: &Request<'_>,
    head: &[u8],
    peer: SocketAddr,
    local: Option<SocketAddr>,
    content_length: Option<u64>,
) -> Result<Vec<(OsString, OsString)>, &'static str> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let target = Target::of(req.target);
    let host = target.authority.map(text).or_else(|| {
        http::headers(head)
            .find(|(n, _)| n.eq_ignore_ascii_case(b"host"))
            .map(|(_, v)| text(v))
    });
    let server_name = host
        .as_deref()
        .map(|h| {
            let h = h.rsplit_once('@').map_or(h, |(_, h)| h);
            h.rsplit_once(':')
                .filter(|(n, p)| {
                    p.parse::<u16>().is_ok() && (!n.starts_with('[') || n.ends_with(']'))
                })
                .map_or(h, |(n, _)| n)
        })
        .map(str::to_string)
        .or_else(|| local.map(|l| l.ip().to_string()))
        .unwrap_or_default();
    let path_info = percent_decode(target.path)?;
    let mut vars: Vec<(OsString, OsString)> = vec![
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        ("REQUEST_METHOD".into(), text(req.method).into()),
        ("SCRIPT_NAME".into(), OsString::new()),
        ("PATH_INFO".into(), OsString::from_vec(path_info)),
        ("QUERY_STRING".into(), text(target.query).into()),
        ("SERVER_NAME".into(), server_name.into()),
        (
            "SERVER_PORT".into(),
            local
                .map(|l| l.port().to_string())
                .unwrap_or_default()
                .into(),
        ),
        ("SERVER_PROTOCOL".into(), text(req.version).into()),
        (
            "SERVER_SOFTWARE".into(),
            concat!("lsbaws/", env!("CARGO_PKG_VERSION")).into(),
        ),
        ("REMOTE_ADDR".into(), peer.ip().to_string().into()),
        ("REMOTE_PORT".into(), peer.port().to_string().into()),
    ];
    if let Some(length) = content_length {
        vars.push(("CONTENT_LENGTH".into(), length.to_string().into()));
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
            "CONTENT_TYPE" => vars.push(("CONTENT_TYPE".into(), text(value).into())),
            // Already a meta-variable; and `Proxy:` must never become HTTP_PROXY,
            // which HTTP clients in the program would take as their proxy (httpoxy).
            "CONTENT_LENGTH" | "PROXY" => {}
            _ => {
                let key = OsString::from(format!("HTTP_{upper}"));
                match vars.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, v)) => {
                        v.push(", ");
                        v.push(text(value));
                    }
                    None => vars.push((key, text(value).into())),
                }
            }
        }
    }
    Ok(vars)
}

/// A request target split into its parts. In absolute-form
/// (`GET http://host:81/p?q HTTP/1.1`, RFC 9112 §3.2.2) the path is what follows
/// the authority, and the authority names the host, not the Host header.
struct Target<'a> {
    authority: Option<&'a [u8]>,
    path: &'a [u8],
    query: &'a [u8],
}

impl<'a> Target<'a> {
    fn of(target: &'a [u8]) -> Target<'a> {
        let (rest, query) = match target.iter().position(|&b| b == b'?') {
            Some(q) => (&target[..q], &target[q + 1..]),
            None => (target, &b""[..]),
        };
        let scheme_end = rest.windows(3).position(|w| w == b"://");
        let absolute = scheme_end.is_some_and(|end| {
            let scheme = &rest[..end];
            scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https")
        });
        match (absolute, scheme_end) {
            (true, Some(end)) => {
                let after = &rest[end + 3..];
                let slash = after.iter().position(|&b| b == b'/').unwrap_or(after.len());
                let path = if slash == after.len() {
                    &b"/"[..]
                } else {
                    &after[slash..]
                };
                Target {
                    authority: Some(&after[..slash]),
                    path,
                    query,
                }
            }
            _ => Target {
                authority: None,
                path: rest,
                query,
            },
        }
    }
}

/// RFC 3875 §4.1.5: PATH_INFO is decoded (`%20` is a space, `%2F` a slash,
/// as PEP 3333 and WSGI apps expect). Err for a malformed escape or a NUL.
fn percent_decode(path: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] != b'%' {
            out.push(path[i]);
            i += 1;
            continue;
        }
        let hex = |b: u8| (b as char).to_digit(16);
        let byte = match (
            path.get(i + 1).and_then(|&b| hex(b)),
            path.get(i + 2).and_then(|&b| hex(b)),
        ) {
            (Some(hi), Some(lo)) => (hi * 16 + lo) as u8,
            _ => return Err("a malformed percent-escape in the path"),
        };
        if byte == 0 {
            return Err("%00 in the path");
        }
        out.push(byte);
        i += 3;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars_of(head: &[u8]) -> Vec<(String, String)> {
        let req = match http::parse(head) {
            http::Parse::Complete(r) => r,
            other => panic!("{other:?}"),
        };
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        meta_variables(
            &req,
            &head[req.start..req.head_len],
            peer,
            None,
            req.content_length,
        )
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.into_string().unwrap(), v.to_string_lossy().into_owned()))
        .collect()
    }

    #[test]
    fn proxy_header_never_becomes_http_proxy() {
        let head =
            b"GET /a/b?x=1 HTTP/1.1\r\nHost: h:81\r\nProxy: evil\r\nX-A: 1\r\nX-A: 2\r\n\r\n";
        let vars = vars_of(head);
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("HTTP_PROXY"), None);
        assert_eq!(get("PATH_INFO"), Some("/a/b"));
        assert_eq!(get("QUERY_STRING"), Some("x=1"));
        assert_eq!(get("SERVER_NAME"), Some("h"));
        assert_eq!(get("HTTP_X_A"), Some("1, 2"));
        assert_eq!(get("CONTENT_LENGTH"), None);
    }

    #[test]
    fn absolute_form_gives_the_path_and_the_host_of_the_uri() {
        let vars = vars_of(b"GET http://example.com:8080/x/y?q=1 HTTP/1.1\r\nHost: other\r\n\r\n");
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PATH_INFO"), Some("/x/y"));
        assert_eq!(get("QUERY_STRING"), Some("q=1"));
        assert_eq!(get("SERVER_NAME"), Some("example.com"));
        let vars = vars_of(b"GET http://[::1]:81 HTTP/1.1\r\n\r\n");
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PATH_INFO"), Some("/"));
        assert_eq!(get("SERVER_NAME"), Some("[::1]"));
    }

    #[test]
    fn path_info_is_percent_decoded() {
        assert_eq!(
            percent_decode(b"/a%20b/%2Fc%e2%80%ae").unwrap(),
            "/a b//c\u{202e}".as_bytes()
        );
        assert!(percent_decode(b"/a%2").is_err());
        assert!(percent_decode(b"/a%zz").is_err());
        assert!(percent_decode(b"/a%00").is_err());
    }
}
