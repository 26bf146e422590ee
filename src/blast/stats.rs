//! Counting: per-thread histograms and counters, merged once into a report.
//!
//! Owns the error kinds, the [`BlastReport`] data shape (the JSON keys are a
//! contract) and the per-thread accumulator. Must never keep a record per
//! request (memory stays flat however long the run) and never take a lock on the
//! hot path: each runtime thread records into its own thread-local [`Stats`],
//! handed over once when the thread stops.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Why a connection failed. Failures are data, not errors of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Nothing listens (RST to the SYN).
    Refused,
    /// The peer reset the connection (or closed it under our write).
    Reset,
    /// `--timeout` or `--connect-timeout` passed, or the kernel gave up connecting.
    Timeout,
    /// A response that is not HTTP, or shorter than it said.
    BadResponse,
    /// A complete response whose status is not 2xx.
    HttpStatus,
    /// EADDRNOTAVAIL: the ephemeral ports are used up (TIME_WAIT).
    AddrNotAvailable,
    /// EMFILE/ENFILE: out of file descriptors here, not a fault of the server.
    FdExhausted,
    /// Anything else (unreachable network, ENOBUFS...).
    Other,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Refused,
        ErrorKind::Reset,
        ErrorKind::Timeout,
        ErrorKind::BadResponse,
        ErrorKind::HttpStatus,
        ErrorKind::AddrNotAvailable,
        ErrorKind::FdExhausted,
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
                Errno::EADDRNOTAVAIL => return ErrorKind::AddrNotAvailable,
                _ => {}
            }
        }
        match err.kind() {
            K::ConnectionRefused => ErrorKind::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => ErrorKind::Reset,
            K::TimedOut => ErrorKind::Timeout,
            K::UnexpectedEof | K::InvalidData => ErrorKind::BadResponse,
            K::AddrNotAvailable => ErrorKind::AddrNotAvailable,
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
}

/// Histograms record microseconds; a bound of an hour covers any `--timeout`
/// anyone sets, and 3 significant digits keep each one near 100 kB.
const HIST_MAX_US: u64 = 3_600_000_000;
/// Status codes are three digits; an array indexed by code is cheaper per
/// request than a map.
const STATUS_SLOTS: usize = 1000;

/// One thread's accumulator.
#[derive(Debug, Clone)]
pub struct Stats {
    connect: Histogram<u64>,
    first_byte: Histogram<u64>,
    total: Histogram<u64>,
    ok: u64,
    errors: [u64; ErrorKind::ALL.len()],
    timeouts: [u64; 3],
    status: Vec<u64>,
    slow_connects: u64,
    sockets: u64,
}

fn histogram() -> Histogram<u64> {
    // Bounds are constants that the crate accepts; a failure is a bug here.
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("constant histogram bounds are valid")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// A connect that took this long was not answered at the first SYN.
pub const SLOW_CONNECT: Duration = Duration::from_secs(1);

impl Default for Stats {
    fn default() -> Self {
        Stats {
            connect: histogram(),
            first_byte: histogram(),
            total: histogram(),
            ok: 0,
            errors: [0; ErrorKind::ALL.len()],
            timeouts: [0; 3],
            status: vec![0; STATUS_SLOTS],
            slow_connects: 0,
            sockets: 0,
        }
    }
}

impl Stats {
    pub fn connected(&mut self, took: Duration) {
        self.sockets += 1;
        self.connect.saturating_record(micros(took));
        if took >= SLOW_CONNECT {
            self.slow_connects += 1;
        }
    }

    pub fn first_byte(&mut self, took: Duration) {
        self.first_byte.saturating_record(micros(took));
    }

    /// A whole response arrived; 2xx is ok, anything else an `http_status` error.
    pub fn response(&mut self, status: u16, took: Duration) {
        self.total.saturating_record(micros(took));
        if let Some(slot) = self.status.get_mut(usize::from(status)) {
            *slot += 1;
        }
        if (200..300).contains(&status) {
            self.ok += 1;
        } else {
            self.errors[ErrorKind::HttpStatus as usize] += 1;
        }
    }

    /// A request that ended without a complete response. A timeout, ours or
    /// the kernel's ETIMEDOUT, is also counted under the phase it struck in:
    /// one entry point for both keeps `timeouts.connect + write + read` equal
    /// to `errors.timeout`.
    pub fn failed(&mut self, kind: ErrorKind, phase: Phase) {
        self.errors[kind as usize] += 1;
        if kind == ErrorKind::Timeout {
            self.timeouts[phase as usize] += 1;
        }
    }

    pub fn merge(&mut self, other: &Stats) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.connect.add(&other.connect);
        let _ = self.first_byte.add(&other.first_byte);
        let _ = self.total.add(&other.total);
        self.ok += other.ok;
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        for (a, b) in self.timeouts.iter_mut().zip(other.timeouts) {
            *a += b;
        }
        for (a, b) in self.status.iter_mut().zip(&other.status) {
            *a += b;
        }
        self.slow_connects += other.slow_connects;
        self.sockets += other.sockets;
    }
}

thread_local! {
    /// This thread's accumulator. Borrowed only between awaits, never across one,
    /// so the RefCell is never contended.
    static LOCAL: RefCell<Option<Stats>> = const { RefCell::new(None) };
}

/// Records into this thread's accumulator.
pub fn record(f: impl FnOnce(&mut Stats)) {
    LOCAL.with(|cell| f(cell.borrow_mut().get_or_insert_with(Stats::default)));
}

/// Takes this thread's accumulator (None when nothing was recorded here).
pub fn take_local() -> Option<Stats> {
    LOCAL.with(|cell| cell.borrow_mut().take())
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
    fn of(h: &Histogram<u64>) -> LatencyMs {
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
}

/// What a blast run did: plain data, rendered by `report::blast`. Field names are
/// the JSON contract (connections, ok, errors, status, elapsed_s, conns_per_s,
/// latency_ms); the others are additions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlastReport {
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
    pub elapsed_s: f64,
    pub conns_per_s: f64,
    /// Total time per request, from connect to the last byte read.
    pub latency_ms: LatencyMs,
    /// Time to establish each connection.
    pub connect_ms: LatencyMs,
    /// Time from the start of the request to the first response byte.
    pub first_byte_ms: LatencyMs,
    /// Connects that took at least 1 s: SYN retransmits, usually a full backlog.
    pub slow_connects: u64,
    /// TCP connections established (fewer than `connections` with keep-alive).
    pub sockets_opened: u64,
}

impl BlastReport {
    pub(crate) fn new(stats: &Stats, header: ReportHeader, elapsed: Duration) -> BlastReport {
        let errors = ErrorKind::ALL
            .iter()
            .map(|k| (k.key(), stats.errors[*k as usize]))
            .collect::<BTreeMap<_, _>>();
        let failed: u64 = stats.errors.iter().sum();
        let connections = stats.ok + failed;
        let status = stats
            .status
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(code, n)| (code.to_string(), *n))
            .collect();
        let elapsed_s = elapsed.as_secs_f64();
        BlastReport {
            url: header.url,
            clients: header.clients,
            conns_per_client: header.conns_per_client,
            duration_s: header.duration.map(|d| d.as_secs_f64()),
            threads: header.threads,
            keep_alive: header.keep_alive,
            connections,
            ok: stats.ok,
            errors,
            timeouts: Timeouts {
                connect: stats.timeouts[Phase::Connect as usize],
                write: stats.timeouts[Phase::Write as usize],
                read: stats.timeouts[Phase::Read as usize],
            },
            status,
            elapsed_s,
            conns_per_s: if elapsed_s > 0.0 {
                connections as f64 / elapsed_s
            } else {
                0.0
            },
            latency_ms: LatencyMs::of(&stats.total),
            connect_ms: LatencyMs::of(&stats.connect),
            first_byte_ms: LatencyMs::of(&stats.first_byte),
            slow_connects: stats.slow_connects,
            sockets_opened: stats.sockets,
        }
    }

    /// Failed connections of every kind: what `--max-errors` is compared with.
    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Failures of one kind.
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors.get(kind.key()).copied().unwrap_or(0)
    }
}

/// The run's settings echoed in the report.
pub(crate) struct ReportHeader {
    pub url: String,
    pub clients: u64,
    pub conns_per_client: Option<u64>,
    pub duration: Option<Duration>,
    pub threads: usize,
    pub keep_alive: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_stats_count_everything_once() {
        let mut a = Stats::default();
        a.connected(Duration::from_millis(2));
        a.response(200, Duration::from_millis(3));
        let mut b = Stats::default();
        b.connected(Duration::from_secs(1));
        b.response(500, Duration::from_millis(5));
        b.failed(ErrorKind::Timeout, Phase::Read);
        a.merge(&b);
        let header = ReportHeader {
            url: "u".into(),
            clients: 1,
            conns_per_client: Some(3),
            duration: None,
            threads: 1,
            keep_alive: false,
        };
        let r = BlastReport::new(&a, header, Duration::from_secs(1));
        assert_eq!((r.connections, r.ok, r.errors_total()), (3, 1, 2));
        assert_eq!(r.errors_of(ErrorKind::HttpStatus), 1);
        assert_eq!(r.timeouts.read, 1);
        assert_eq!(r.status.get("500"), Some(&1));
        assert_eq!(r.slow_connects, 1);
        assert_eq!(r.latency_ms.count, 2);
        assert!((r.latency_ms.min - 3.0).abs() < 0.01, "{:?}", r.latency_ms);
    }

    /// Regression: the kernel's ETIMEDOUT was counted in `errors.timeout`
    /// without a phase, so the phases did not add up to the total.
    #[test]
    fn timeout_phases_add_up_to_the_timeout_count() {
        let mut s = Stats::default();
        for kind in ErrorKind::ALL {
            for phase in [Phase::Connect, Phase::Write, Phase::Read] {
                s.failed(kind, phase);
            }
        }
        let header = ReportHeader {
            url: "u".into(),
            clients: 1,
            conns_per_client: None,
            duration: None,
            threads: 1,
            keep_alive: false,
        };
        let r = BlastReport::new(&s, header, Duration::from_secs(1));
        let t = r.timeouts;
        assert_eq!(
            t.connect + t.write + t.read,
            r.errors_of(ErrorKind::Timeout)
        );
        assert_eq!((t.connect, t.write, t.read), (1, 1, 1));
        assert_eq!(r.errors_total(), 3 * ErrorKind::ALL.len() as u64);
    }

    #[test]
    fn errno_classification_keeps_fd_exhaustion_apart() {
        use std::io::Error;
        let of = |e: nix::errno::Errno| ErrorKind::of_io(&Error::from_raw_os_error(e as i32));
        use nix::errno::Errno::*;
        assert_eq!(of(EMFILE), ErrorKind::FdExhausted);
        assert_eq!(of(ENFILE), ErrorKind::FdExhausted);
        assert_eq!(of(EADDRNOTAVAIL), ErrorKind::AddrNotAvailable);
        assert_eq!(of(ECONNREFUSED), ErrorKind::Refused);
        assert_eq!(of(ECONNRESET), ErrorKind::Reset);
        assert_eq!(of(EPIPE), ErrorKind::Reset);
        assert_eq!(of(ETIMEDOUT), ErrorKind::Timeout);
        assert_eq!(of(EHOSTUNREACH), ErrorKind::Other);
    }
}
