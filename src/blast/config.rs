//! [`BlastConfig`]: the one place where a blast's settings are checked, from
//! plain values that `cmd` takes from the flags (`blast`'s, or `smoke`'s).
//!
//! Owns URL parsing (http and https), address resolution, building the
//! request bytes once, `--raw-request` escapes and every "nonsense" check that
//! must end in exit 2 (`--source`, `--start-at` and TLS roots are checked by
//! their modules, called from here). Must never touch the network beyond
//! resolving the host and binding to each `--source`, never print, and never
//! know about clap.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail, ensure};

use super::schedule::{self, Schedule};
use super::source;
use super::tls::{TlsOptions, TlsSetup};

/// Upper bound on `--max-clients`: far beyond what one host has ports or fds
/// for, low enough that a typo (an extra zero or three) is caught as nonsense.
const MAX_CLIENTS: u64 = 1_000_000;

/// Upper bound on `--threads`: far more workers than any machine has cores.
const MAX_THREADS: usize = 1024;

/// Longest schedule `--rate` may make: the bound of every duration flag.
const MAX_SPAN: Duration = Duration::from_secs(365 * 24 * 3600);

/// Upper bound on `--rate`: a hundred times what one machine can open.
const MAX_RATE: f64 = 10_000_000.0;

/// A validated blast run: everything the engine needs, nothing it must re-check.
#[derive(Debug, Clone)]
pub struct BlastConfig {
    /// The URL as given, for the report.
    pub url: String,
    /// Where connections go: resolved once, so no lookup happens per connection.
    pub addr: SocketAddr,
    /// The exact bytes written on each connection (or each keep-alive request).
    pub request: Vec<u8>,
    /// Whether the request is a HEAD, whose response has no body whatever its
    /// headers say.
    pub head_request: bool,
    /// Clients released at the same instant.
    pub clients: u64,
    /// Requests each client makes one after another (ignored with `duration`).
    pub conns_per_client: u64,
    /// Loop each client until this much time has passed instead of counting.
    pub duration: Option<Duration>,
    /// Tokio worker threads.
    pub threads: usize,
    /// Bound on one connection: connect, write and read together.
    pub timeout: Duration,
    /// Bound on the connect alone (never above `timeout`).
    pub connect_timeout: Duration,
    /// Reuse a connection for a client's next request when the server allows it.
    pub keep_alive: bool,
    /// More failed connections than this is a finding (exit 1).
    pub max_errors: u64,
    /// Names this run in its report among others' (`--tag`): the host name
    /// unless the caller sets one.
    pub tag: String,
    /// Local addresses to spread connections over (`--source`); empty: the
    /// kernel chooses.
    pub sources: Vec<IpAddr>,
    /// The TLS client, for https:// URLs.
    pub tls: Option<TlsSetup>,
    /// Whether `--insecure` turned certificate verification off.
    pub insecure: bool,
    /// Release the clients at this wall-clock instant (`--start-at`).
    pub start_at: Option<SystemTime>,
    /// Requests per second over all clients: an open model (`--rate`); then
    /// `conns_per_client` is the total, not per client.
    pub rate: Option<f64>,
}

/// The size and bounds of a burst (the load flags `blast` and `smoke` share).
#[derive(Debug, Clone)]
pub struct Load {
    pub clients: u64,
    pub conns_per_client: u64,
    pub duration: Option<Duration>,
    /// Worker threads; None: one per core.
    pub threads: Option<usize>,
    pub timeout: Duration,
    /// `--rate`: requests per second over all clients (open model).
    pub rate: Option<f64>,
    /// `--start-at`, as written: parsed and checked against the clock here.
    pub start_at: Option<String>,
}

/// What each connection sends, and how (blast's request flags).
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub method: String,
    /// `Name: value` lines.
    pub headers: Vec<String>,
    pub body: Option<String>,
    /// Bytes to send verbatim instead (escapes such as `\n` unescaped).
    pub raw: Option<String>,
    pub keep_alive: bool,
    pub connect_timeout: Option<Duration>,
    /// `--source` values as written (addresses, CIDRs, ranges).
    pub sources: Vec<String>,
    pub tls: TlsOptions,
}

impl Default for RequestSpec {
    /// A plain GET on a new connection: what `smoke` sends.
    fn default() -> Self {
        RequestSpec {
            method: "GET".into(),
            headers: Vec::new(),
            body: None,
            raw: None,
            keep_alive: false,
            connect_timeout: None,
            sources: Vec::new(),
            tls: TlsOptions::default(),
        }
    }
}

impl BlastConfig {
    /// Validates a blast of `url`. Every error here is bad usage (exit 2), and
    /// names the flag at fault.
    pub fn new(
        url: &str,
        load: &Load,
        req: &RequestSpec,
        max_errors: u64,
    ) -> anyhow::Result<BlastConfig> {
        let target = parse_url(url)?;
        ensure!(load.clients > 0, "--max-clients must be at least 1");
        ensure!(
            load.clients <= MAX_CLIENTS,
            "--max-clients {} is more than {MAX_CLIENTS}",
            load.clients
        );
        ensure!(load.conns_per_client > 0, "--max-conns must be at least 1");
        if let Some(d) = load.duration {
            ensure!(!d.is_zero(), "--duration must be more than 0");
        }
        ensure!(!load.timeout.is_zero(), "--timeout must be more than 0");
        let connect_timeout = match req.connect_timeout {
            Some(d) => {
                ensure!(!d.is_zero(), "--connect-timeout must be more than 0");
                d.min(load.timeout)
            }
            None => load.timeout,
        };
        let threads = match load.threads {
            Some(0) => bail!("--threads must be at least 1"),
            // Each is an OS thread started up front: a typo of 100000 would
            // spend minutes creating threads before the first connect.
            Some(t) if t > MAX_THREADS => bail!("--threads {t} is more than {MAX_THREADS}"),
            Some(t) => t,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let (request, head_request) = match &req.raw {
            Some(raw) => {
                let bytes = unescape(raw)?;
                ensure!(!bytes.is_empty(), "--raw-request is empty");
                let head = bytes.starts_with(b"HEAD ");
                (bytes, head)
            }
            None => {
                let method = req.method.to_ascii_uppercase();
                ensure!(
                    !method.is_empty() && method.bytes().all(is_token_byte),
                    "--method {:?} is not an HTTP method",
                    req.method
                );
                let bytes = build_request(
                    &method,
                    &target,
                    &req.headers,
                    req.body.as_deref(),
                    req.keep_alive,
                )?;
                (bytes, method == "HEAD")
            }
        };
        if let Some(rate) = load.rate {
            ensure!(
                rate.is_finite() && rate > 0.0,
                "--rate must be more than 0 requests per second"
            );
            ensure!(rate <= MAX_RATE, "--rate {rate} is more than {MAX_RATE}");
            // A schedule longer than any duration flag allows (a typo such as
            // 1e-9) would keep the run, and its clients, for years.
            let span = match load.duration {
                Some(d) => d.as_secs_f64(),
                None => load.conns_per_client as f64 / rate,
            };
            ensure!(
                1.0 / rate <= MAX_SPAN.as_secs_f64() && span <= MAX_SPAN.as_secs_f64(),
                "--rate {rate}: its schedule would last more than a year"
            );
        }
        let start_at = match &load.start_at {
            Some(s) => Some(schedule::parse_start_at(s, SystemTime::now())?),
            None => None,
        };
        let sources = source::parse_all(&req.sources, target.addr)?;
        let tls = match target.tls {
            true => Some(TlsSetup::new(&target.host, &req.tls)?),
            false => {
                ensure!(
                    req.tls.cacert.is_none() && !req.tls.insecure && !req.tls.resume,
                    "--cacert, --insecure and --tls-resume are for https:// URLs"
                );
                None
            }
        };
        Ok(BlastConfig {
            url: url.to_string(),
            addr: target.addr,
            request,
            head_request,
            clients: load.clients,
            conns_per_client: load.conns_per_client,
            duration: load.duration,
            threads,
            timeout: load.timeout,
            connect_timeout,
            keep_alive: req.keep_alive,
            max_errors,
            tag: host_name(),
            sources,
            tls,
            insecure: req.tls.insecure,
            start_at,
            rate: load.rate,
        })
    }

    /// Total requests planned: clients × requests each, or an open model's
    /// schedule; None in closed `--duration` mode.
    pub fn planned(&self) -> Option<u64> {
        match (self.rate, self.duration) {
            (Some(rate), d) => Some(Schedule::planned(rate, self.conns_per_client, d)),
            (None, Some(_)) => None,
            (None, None) => Some(self.clients.saturating_mul(self.conns_per_client)),
        }
    }
}

/// This machine's name (a pod's name in Kubernetes): the default tag.
fn host_name() -> String {
    nix::unistd::gethostname()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// The parts of an `http://` or `https://` URL that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// The authority as written (`host[:port]`): the Host header.
    authority: String,
    /// The host without brackets or port: the TLS server name.
    host: String,
    /// https://.
    tls: bool,
    /// Path and query, `/` when absent.
    path: String,
    addr: SocketAddr,
}

/// Parses `http[s]://host[:port][/path][?query]` and resolves the host once.
fn parse_url(url: &str) -> anyhow::Result<Target> {
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!("bad URL {url:?}: expected http://host[:port]/path");
    };
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        other => bail!("bad URL {url:?}: unsupported scheme {other:?}, use http:// or https://"),
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    // A fragment never goes on the wire.
    let path = path.split('#').next().unwrap_or("/");
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    ensure!(
        !authority.is_empty() && !authority.contains('@'),
        "bad URL {url:?}: no host (user info is not supported)"
    );
    let (host, port) = split_host_port(authority, if tls { 443 } else { 80 })
        .with_context(|| format!("bad URL {url:?}: cannot read host and port"))?;
    ensure!(!host.is_empty(), "bad URL {url:?}: no host");
    ensure!(
        path.bytes().all(|b| b > b' ' && b != 0x7f),
        "bad URL {url:?}: spaces or control characters in the path"
    );
    // Only the first address is used (as `--help` says): one target keeps the
    // burst and its counts about one listener, with no lookup per connection.
    let addr = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("bad URL {url:?}: cannot resolve {host:?}"))?
        .next()
        .with_context(|| format!("bad URL {url:?}: {host:?} has no address"))?;
    Ok(Target {
        authority: authority.to_string(),
        host: host.to_string(),
        tls,
        path,
        addr,
    })
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` → (host without brackets, port).
fn split_host_port(authority: &str, default_port: u16) -> anyhow::Result<(&str, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').context("unclosed '['")?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').context("junk after ']'")?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .with_context(|| format!("bad port {p:?}"))?,
    };
    Ok((host, port))
}

/// RFC 9110 token characters (method and header names).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The request line, Host, Connection and the user's headers and body.
fn build_request(
    method: &str,
    target: &Target,
    headers: &[String],
    body: Option<&str>,
    keep_alive: bool,
) -> anyhow::Result<Vec<u8>> {
    let mut user = Vec::with_capacity(headers.len());
    for h in headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("--header {h:?}: expected \"Name: value\""))?;
        let name = name.trim();
        ensure!(
            !name.is_empty() && name.bytes().all(is_token_byte),
            "--header {h:?}: bad header name"
        );
        ensure!(
            !value.contains(['\r', '\n']),
            "--header {h:?}: line breaks in the value"
        );
        // RFC 9110 field values: visible characters, spaces and tabs. Any other
        // control byte would go on the wire verbatim and test the server's
        // parser instead of its reaping.
        ensure!(
            !value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f),
            "--header {h:?}: control characters in the value"
        );
        user.push((name, value.trim()));
    }
    let has = |n: &str| user.iter().any(|(name, _)| name.eq_ignore_ascii_case(n));
    let mut req = format!("{method} {} HTTP/1.1\r\n", target.path);
    if !has("host") {
        req.push_str(&format!("Host: {}\r\n", target.authority));
    }
    // HTTP/1.1 is persistent by default: a new connection per request (the
    // point of blasting a forking server) has to be asked for.
    if !keep_alive && !has("connection") {
        req.push_str("Connection: close\r\n");
    }
    for (name, value) in &user {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body
        && !has("content-length")
    {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    if let Some(body) = body {
        req.push_str(body);
    }
    Ok(req.into_bytes())
}

/// Turns `\n`, `\r`, `\t`, `\0`, `\\` and `\xHH` into bytes, so a shell argument can
/// carry client3.py's `GET /hello HTTP/1.1\nHost: localhost:8888\n\n`.
fn unescape(s: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b't') => out.push(b'\t'),
            Some(b'0') => out.push(0),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex = [bytes.next(), bytes.next()];
                let hex = match hex {
                    [Some(a), Some(b)] => [a, b],
                    _ => bail!("--raw-request: \\x needs two hex digits"),
                };
                let hex = std::str::from_utf8(&hex).unwrap_or("");
                let v = u8::from_str_radix(hex, 16)
                    .with_context(|| format!("--raw-request: bad \\x{hex}"))?;
                out.push(v);
            }
            Some(other) => bail!("--raw-request: unknown escape \\{}", other as char),
            None => bail!("--raw-request: ends with a lone backslash"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_resolve() {
        let t = parse_url("http://127.0.0.1:8888/hello").expect("url");
        assert_eq!(t.authority, "127.0.0.1:8888");
        assert_eq!(t.path, "/hello");
        assert_eq!(t.addr, "127.0.0.1:8888".parse().expect("addr"));
        let t = parse_url("http://[::1]:9/a?b=c#frag").expect("v6");
        assert_eq!(t.path, "/a?b=c");
        assert_eq!(t.addr, "[::1]:9".parse().expect("addr"));
        let t = parse_url("http://127.0.0.1").expect("no port");
        assert_eq!((t.addr.port(), t.path.as_str()), (80, "/"));
        let t = parse_url("HTTP://127.0.0.1:1?q").expect("query only");
        assert_eq!(t.path, "/?q");
        let t = parse_url("https://localhost/x").expect("https");
        assert_eq!(
            (t.addr.port(), t.tls, t.host.as_str()),
            (443, true, "localhost")
        );
        let t = parse_url("https://[::1]:8443/").expect("https v6");
        assert_eq!((t.addr.port(), t.host.as_str()), (8443, "::1"));
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        for (url, why) in [
            ("ftp://127.0.0.1/", "unsupported scheme"),
            ("127.0.0.1:8888/hello", "expected http://"),
            ("http:///x", "no host"),
            ("http://127.0.0.1:99999/", "cannot read host and port"),
            ("http://127.0.0.1:0/", "cannot read host and port"),
            ("http://[::1/", "cannot read host and port"),
        ] {
            let err = format!("{:#}", parse_url(url).expect_err(url));
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn escapes_make_client3_request() {
        assert_eq!(
            unescape(r"GET /hello HTTP/1.1\nHost: localhost:8888\n\n").expect("ok"),
            b"GET /hello HTTP/1.1\nHost: localhost:8888\n\n"
        );
        assert_eq!(unescape(r"a\r\x41\\").expect("ok"), b"a\rA\\");
        assert!(unescape(r"a\q").is_err());
        assert!(unescape(r"a\x4").is_err());
        assert!(unescape("a\\").is_err());
    }

    #[test]
    fn request_has_host_close_headers_and_body() {
        let t = parse_url("http://127.0.0.1:8080/p").expect("url");
        let req = build_request("POST", &t, &["X-A: 1".into()], Some("hi"), false).expect("req");
        assert_eq!(
            String::from_utf8(req).expect("utf8"),
            "POST /p HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\nX-A: 1\r\n\
             Content-Length: 2\r\n\r\nhi"
        );
        let req = build_request("GET", &t, &["host: x".into()], None, true).expect("req");
        assert_eq!(req, b"GET /p HTTP/1.1\r\nhost: x\r\n\r\n");
        assert!(build_request("GET", &t, &["nocolon".into()], None, false).is_err());
        // Regression: control bytes other than CR/LF went on the wire verbatim.
        for bad in ["X-A: a\x01b", "X-A: a\x7fb", "X-A: \x1b[2J", "X\x01: v"] {
            assert!(
                build_request("GET", &t, &[bad.into()], None, false).is_err(),
                "{bad:?}"
            );
        }
        assert!(build_request("GET", &t, &["X-A: a\tb".into()], None, false).is_ok());
    }
}
