//! What a blast run did, as plain data: [`BlastReport`] and its parts, the
//! error kinds and their JSON keys.
//!
//! Owns the report's shape: its field names are the JSON contract
//! (`connections`, `ok`, `errors`, `status`, `elapsed_s`, `conns_per_s`,
//! `latency_ms`, `unfinished`, `interrupted`, and for `merge`: `schema`,
//! `tag`, `started_at`, `ended_at`, `histograms`). Must never measure or
//! print: `stats` fills it, `crate::render::blast` draws it.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::outcome::Outcome;
use crate::shutdown::Signal;

/// Why a connection failed. Failures are data, not errors of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Nothing listens (RST to the SYN).
    Refused,
    /// The peer reset the connection (or closed it under our write).
    Reset,
    /// `--timeout` or `--connect-timeout` passed, or the kernel gave up connecting.
    Timeout,
    /// A response that is not HTTP, or shorter than it said; over TLS also
    /// one that ends at the close, cut by a close without close_notify.
    BadResponse,
    /// A complete response whose status is not 2xx.
    HttpStatus,
    /// EADDRNOTAVAIL or EADDRINUSE: no free local (address, port) pair for
    /// this destination, the ephemeral ports used up (TIME_WAIT, or more
    /// simultaneous connections than one source address has ports). One kind
    /// for both: which errno the kernel returns depends only on whether it
    /// ran out at bind or at connect, and the cure is the same (`--source`,
    /// fewer clients, `--keep-alive`).
    AddrNotAvailable,
    /// EMFILE/ENFILE: out of file descriptors here, not a fault of the server.
    FdExhausted,
    /// The server's certificate was refused: unknown issuer, wrong name,
    /// expired (TLS).
    TlsCertificate,
    /// The TLS handshake failed otherwise: an alert, no common protocol or
    /// cipher, a server that does not speak TLS or closed mid-handshake.
    TlsHandshake,
    /// Anything else (unreachable network, ENOBUFS...).
    Other,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::Refused,
        ErrorKind::Reset,
        ErrorKind::Timeout,
        ErrorKind::BadResponse,
        ErrorKind::HttpStatus,
        ErrorKind::AddrNotAvailable,
        ErrorKind::FdExhausted,
        ErrorKind::TlsCertificate,
        ErrorKind::TlsHandshake,
        ErrorKind::Other,
    ];

    /// The JSON key and table label.
    pub fn key(self) -> &'static str {
        match self {
            ErrorKind::Refused => "refused",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::BadResponse => "bad_response",
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::AddrNotAvailable => "addr_not_available",
            ErrorKind::FdExhausted => "fd_exhausted",
            ErrorKind::TlsCertificate => "tls_certificate",
            ErrorKind::TlsHandshake => "tls_handshake",
            ErrorKind::Other => "other",
        }
    }

    /// Classifies an I/O error by errno first: std's `ErrorKind` has no name
    /// for EMFILE, and fd exhaustion must never pass for a connect error
    /// (wrk's bug, wg/wrk#47).
    pub fn of_io(err: &std::io::Error) -> ErrorKind {
        use nix::errno::Errno;
        use std::io::ErrorKind as K;
        if let Some(code) = err.raw_os_error() {
            match Errno::from_raw(code) {
                Errno::EMFILE | Errno::ENFILE => return ErrorKind::FdExhausted,
                Errno::EADDRNOTAVAIL | Errno::EADDRINUSE => return ErrorKind::AddrNotAvailable,
                _ => {}
            }
        }
        match err.kind() {
            K::ConnectionRefused => ErrorKind::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => ErrorKind::Reset,
            K::TimedOut => ErrorKind::Timeout,
            K::UnexpectedEof | K::InvalidData => ErrorKind::BadResponse,
            K::AddrNotAvailable | K::AddrInUse => ErrorKind::AddrNotAvailable,
            _ => ErrorKind::Other,
        }
    }
}

/// Where in a connection a timeout struck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connect,
    Write,
    Read,
    /// The TLS handshake, after the TCP connect.
    Handshake,
}

/// Min, percentiles and max of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencyMs {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl LatencyMs {
    pub(crate) fn of(h: &Histogram<u64>) -> LatencyMs {
        if h.is_empty() {
            return LatencyMs::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencyMs {
            count: h.len(),
            min: ms(h.min()),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

/// Timeouts by the phase they struck in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Timeouts {
    pub connect: u64,
    pub write: u64,
    pub read: u64,
    /// In the TLS handshake (0 for http://).
    pub handshake: u64,
}

/// The `schema` of a blast report: what `merge` checks before adding reports.
/// Bump it when a key changes meaning or the histogram settings change;
/// adding a key does not bump it.
pub const SCHEMA: &str = "lsbaws-blast/1";

/// What a blast run did: plain data, rendered by `render::blast`. Field names are
/// the JSON contract (connections, ok, errors, status, elapsed_s, conns_per_s,
/// latency_ms); the others are additions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlastReport {
    /// Always [`SCHEMA`]: says "a blast report, in this version of its shape".
    pub schema: &'static str,
    /// Names this run among others (`--tag`, default the host name).
    pub tag: String,
    pub url: String,
    pub clients: u64,
    /// Requests per client, or null with `--duration`.
    pub conns_per_client: Option<u64>,
    pub duration_s: Option<f64>,
    pub threads: usize,
    pub keep_alive: bool,
    /// Requests attempted (a new connection each, unless `--keep-alive`).
    pub connections: u64,
    /// Complete responses with a 2xx status.
    pub ok: u64,
    /// Failed connections by kind; every kind is present, zero or not.
    pub errors: BTreeMap<&'static str, u64>,
    /// Where the timeouts among `errors.timeout` struck.
    pub timeouts: Timeouts,
    /// Complete responses by status code.
    pub status: BTreeMap<String, u64>,
    /// When the clients were released (wall clock, RFC 3339 UTC); null when
    /// a stop signal came before the release.
    #[serde(serialize_with = "rfc3339")]
    pub started_at: Option<SystemTime>,
    /// `started_at` + `elapsed_s`: the end as the monotonic clock measured it,
    /// so a wall-clock step during the run does not stretch or shrink it.
    #[serde(serialize_with = "rfc3339")]
    pub ended_at: Option<SystemTime>,
    /// From the release to the end of the last request.
    pub elapsed_s: f64,
    pub conns_per_s: f64,
    /// Total time per request, from connect to the last byte read.
    pub latency_ms: LatencyMs,
    /// Time to establish each connection.
    pub connect_ms: LatencyMs,
    /// Time from the start of the request to the first response byte.
    pub first_byte_ms: LatencyMs,
    /// The HDR histograms behind the three latency rows, in microseconds, for
    /// `merge` and other tools (see `super::histogram`).
    pub histograms: Histograms,
    /// Time of each TLS handshake, from the TCP connect to its end (empty
    /// for http://).
    pub tls_handshake_ms: LatencyMs,
    /// TLS handshakes that resumed a session (only with `--tls-resume`).
    pub tls_resumed: u64,
    /// Connects that took at least 1 s: SYN retransmits, usually a full backlog.
    pub slow_connects: u64,
    /// TCP connections established (fewer than `connections` with keep-alive).
    pub sockets_opened: u64,
    /// Requests that were planned (or, with `--duration`, a client that never
    /// got to start one) but cut off by the deadline or a stop signal: neither
    /// ok nor failed. `connections + unfinished` is every planned request.
    pub unfinished: u64,
    /// Local addresses the connections were spread over (`--source`); 0:
    /// the kernel chose the address.
    pub sources: usize,
    /// `--start-at`: the instant asked for (RFC 3339 UTC).
    #[serde(serialize_with = "rfc3339")]
    pub start_at: Option<SystemTime>,
    /// `--start-at`: the actual release minus the instant asked for, in ms
    /// (positive: late).
    pub release_skew_ms: Option<f64>,
    /// `--rate`: requests that could not start on time, every client being
    /// busy at their intended start: those that started late (among
    /// `connections`) and those never started before the deadline or a stop
    /// signal ended the run (among `unfinished`). 0 without `--rate`. Every
    /// planned request started on time, is behind schedule, or (only when
    /// interrupted) was not yet due when the run ended.
    pub behind_schedule: u64,
    /// `--rate`: the schedule asked for and the one achieved.
    pub rate: Option<RateReport>,
    /// A stop signal ended the run early: the figures are what was measured
    /// until then, and there is no verdict.
    pub interrupted: bool,
    pub signal: Option<Signal>,
}

/// The latency histograms of a report, in microseconds; serialized in the
/// standard V2-deflate base64 encoding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histograms {
    /// Connect to the last byte read, per complete response.
    #[serde(serialize_with = "super::histogram::serialize")]
    pub total: Histogram<u64>,
    /// Establishing each connection.
    #[serde(serialize_with = "super::histogram::serialize")]
    pub connect: Histogram<u64>,
    /// Request start to the first response byte.
    #[serde(serialize_with = "super::histogram::serialize")]
    pub first_byte: Histogram<u64>,
    /// Each TLS handshake (empty for http://).
    #[serde(serialize_with = "super::histogram::serialize")]
    pub tls_handshake: Histogram<u64>,
    /// How late each request of an open-model run (`--rate`) started (empty
    /// otherwise).
    #[serde(serialize_with = "super::histogram::serialize")]
    pub start_lag: Histogram<u64>,
}

/// An open-model run (`--rate`): the schedule and how well it was kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateReport {
    /// Requests per second asked for.
    pub target_per_s: f64,
    /// Requests the schedule holds (rate × duration, or `--max-conns`).
    pub planned: u64,
    /// The rate at which requests actually started: the inverse slope of a
    /// least-squares fit of start time against schedule position, so that a
    /// few late starts (a busy machine) move it little; null under 2 starts.
    pub achieved_per_s: Option<f64>,
    /// How late each request started after its intended start.
    pub start_lag_ms: LatencyMs,
}

impl BlastReport {
    /// Failed connections of every kind: what `--max-errors` is compared with.
    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Failures of one kind.
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors.get(kind.key()).copied().unwrap_or(0)
    }

    /// Pass when the requests that did not succeed are within `max_errors`, a
    /// finding above; no verdict when a stop signal cut the run short.
    /// Requests that never ran (a `--duration` client that never got to start
    /// one) count with the failures: a run that tested nothing must not pass.
    pub fn outcome(&self, max_errors: u64) -> Outcome {
        match self.signal {
            Some(Signal(sig)) => Outcome::Interrupted(sig),
            None => Outcome::of(self.errors_total() + self.unfinished > max_errors),
        }
    }
}

/// The run's settings echoed in the report, and when it was released.
#[derive(Debug, Clone)]
pub(crate) struct ReportHeader {
    pub tag: String,
    pub url: String,
    pub clients: u64,
    pub conns_per_client: Option<u64>,
    pub duration: Option<Duration>,
    pub threads: usize,
    pub keep_alive: bool,
    pub sources: usize,
    /// Requests per second of an open-model run.
    pub rate: Option<f64>,
    /// Requests an open-model run schedules.
    pub rate_planned: Option<u64>,
    /// `--start-at`, as asked.
    pub start_at: Option<SystemTime>,
    /// The release on the wall clock; None: a stop came before it.
    pub started_at: Option<SystemTime>,
}

impl Default for ReportHeader {
    /// A one-client, one-request run (tests fill in what they need).
    fn default() -> Self {
        ReportHeader {
            tag: String::new(),
            url: String::new(),
            clients: 1,
            conns_per_client: Some(1),
            duration: None,
            threads: 1,
            keep_alive: false,
            sources: 0,
            rate: None,
            rate_planned: None,
            start_at: None,
            started_at: None,
        }
    }
}

/// An instant as RFC 3339 UTC with nanoseconds, `2026-11-30T12:00:00.123456789Z`:
/// `ended_at` − `started_at` read back is `elapsed_s` exactly, so a report
/// merged alone keeps its elapsed time to the last digit.
pub fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

fn rfc3339<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format_time(*t)),
        None => s.serialize_none(),
    }
}

/// `a − b` in milliseconds, negative when `a` is earlier.
pub(crate) fn diff_ms(a: SystemTime, b: SystemTime) -> f64 {
    match a.duration_since(b) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -e.duration().as_secs_f64() * 1000.0,
    }
}
