//! Counting: per-thread histograms and counters, merged once into a report.
//!
//! Owns the per-thread accumulator [`Stats`] and how it becomes a
//! [`BlastReport`]. Must never keep a record per request (memory stays flat
//! however long the run) and never take a lock on the hot path: each runtime
//! thread records into its own thread-local [`Stats`], handed over once when
//! the thread stops.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::histogram;
use super::report::{
    BlastReport, ErrorKind, Histograms, LatencyMs, Phase, RateReport, ReportHeader, SCHEMA,
    Timeouts, diff_ms,
};
use crate::shutdown::Signal;

/// Status codes are three digits; an array indexed by code is cheaper per
/// request than a map.
const STATUS_SLOTS: usize = 1000;

/// One thread's accumulator.
#[derive(Debug, Clone)]
pub struct Stats {
    connect: Histogram<u64>,
    first_byte: Histogram<u64>,
    total: Histogram<u64>,
    handshake: Histogram<u64>,
    /// How late each request of an open-model run started.
    start_lag: Histogram<u64>,
    ok: u64,
    errors: [u64; ErrorKind::ALL.len()],
    timeouts: [u64; 4],
    resumed: u64,
    behind: u64,
    /// Least-squares sums of (schedule position, start time) of an
    /// open-model run: the achieved rate without a record per request.
    fit: Fit,
    status: Vec<u64>,
    slow_connects: u64,
    sockets: u64,
    /// Requests begun: with the finished ones (`ok` + errors), what tells how
    /// many a deadline or a signal cut off.
    started: u64,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// A connect that took this long was not answered at the first SYN.
pub const SLOW_CONNECT: Duration = Duration::from_secs(1);

impl Default for Stats {
    fn default() -> Self {
        Stats {
            connect: histogram::new(),
            first_byte: histogram::new(),
            total: histogram::new(),
            handshake: histogram::new(),
            start_lag: histogram::new(),
            ok: 0,
            errors: [0; ErrorKind::ALL.len()],
            timeouts: [0; 4],
            resumed: 0,
            behind: 0,
            fit: Fit::default(),
            status: vec![0; STATUS_SLOTS],
            slow_connects: 0,
            sockets: 0,
            started: 0,
        }
    }
}

impl Stats {
    /// A request begins (before its first await, so that a request cut off
    /// later is still known to have begun).
    pub fn started(&mut self) {
        self.started += 1;
    }

    pub fn connected(&mut self, took: Duration) {
        self.sockets += 1;
        self.connect.saturating_record(micros(took));
        if took >= SLOW_CONNECT {
            self.slow_connects += 1;
        }
    }

    /// A TLS handshake ended, resumed or full.
    pub fn handshake(&mut self, took: Duration, resumed: bool) {
        self.handshake.saturating_record(micros(took));
        self.resumed += u64::from(resumed);
    }

    /// A request of an open-model run started: the `index`th of the schedule,
    /// `at` after the release, `lag` after its intended start; `behind` when
    /// every client was busy at that intended start.
    pub fn scheduled(&mut self, index: u64, at: Duration, lag: Duration, behind: bool) {
        self.start_lag.saturating_record(micros(lag));
        self.behind += u64::from(behind);
        self.fit.add(index as f64, at.as_secs_f64());
    }

    /// Requests of an open-model run that never began although their
    /// intended start came before the run ended: behind schedule too.
    pub fn missed_starts(&mut self, n: u64) {
        self.behind += n;
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
        let _ = self.handshake.add(&other.handshake);
        let _ = self.start_lag.add(&other.start_lag);
        self.resumed += other.resumed;
        self.behind += other.behind;
        self.fit.merge(&other.fit);
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
        self.started += other.started;
    }

    /// Requests begun.
    pub fn begun(&self) -> u64 {
        self.started
    }

    /// Requests finished, ok or failed.
    pub fn finished(&self) -> u64 {
        self.ok + self.errors.iter().sum::<u64>()
    }

    /// The report of these figures.
    /// The report of these figures; the histograms move into it (each is
    /// about half a megabyte: a copy would double the run's peak memory).
    pub(crate) fn report(
        self,
        header: ReportHeader,
        elapsed: Duration,
        unfinished: u64,
        signal: Option<Signal>,
    ) -> BlastReport {
        let errors = ErrorKind::ALL
            .iter()
            .map(|k| (k.key(), self.errors[*k as usize]))
            .collect::<BTreeMap<_, _>>();
        let connections = self.finished();
        let status = self
            .status
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(code, n)| (code.to_string(), *n))
            .collect();
        let elapsed_s = elapsed.as_secs_f64();
        let rate = header.rate.map(|target| RateReport {
            target_per_s: target,
            planned: header.rate_planned.unwrap_or(0),
            achieved_per_s: self.fit.rate(),
            start_lag_ms: LatencyMs::of(&self.start_lag),
        });
        BlastReport {
            schema: SCHEMA,
            tag: header.tag,
            url: header.url,
            clients: header.clients,
            conns_per_client: header.conns_per_client,
            duration_s: header.duration.map(|d| d.as_secs_f64()),
            threads: header.threads,
            keep_alive: header.keep_alive,
            connections,
            ok: self.ok,
            errors,
            timeouts: Timeouts {
                connect: self.timeouts[Phase::Connect as usize],
                write: self.timeouts[Phase::Write as usize],
                read: self.timeouts[Phase::Read as usize],
                handshake: self.timeouts[Phase::Handshake as usize],
            },
            status,
            started_at: header.started_at,
            ended_at: header.started_at.map(|t| t + elapsed),
            elapsed_s,
            conns_per_s: if elapsed_s > 0.0 {
                connections as f64 / elapsed_s
            } else {
                0.0
            },
            latency_ms: LatencyMs::of(&self.total),
            connect_ms: LatencyMs::of(&self.connect),
            first_byte_ms: LatencyMs::of(&self.first_byte),
            tls_handshake_ms: LatencyMs::of(&self.handshake),
            tls_resumed: self.resumed,
            slow_connects: self.slow_connects,
            sockets_opened: self.sockets,
            unfinished,
            sources: header.sources,
            start_at: header.start_at,
            release_skew_ms: header
                .start_at
                .zip(header.started_at)
                .map(|(asked, actual)| diff_ms(actual, asked)),
            behind_schedule: self.behind,
            rate,
            interrupted: signal.is_some(),
            signal,
            histograms: Histograms {
                total: self.total,
                connect: self.connect,
                first_byte: self.first_byte,
                tls_handshake: self.handshake,
                start_lag: self.start_lag,
            },
        }
    }
}

/// Running sums for a least-squares line through (x, y) points.
#[derive(Debug, Clone, Copy, Default)]
struct Fit {
    n: f64,
    x: f64,
    y: f64,
    xx: f64,
    xy: f64,
}

impl Fit {
    fn add(&mut self, x: f64, y: f64) {
        self.n += 1.0;
        self.x += x;
        self.y += y;
        self.xx += x * x;
        self.xy += x * y;
    }

    fn merge(&mut self, o: &Fit) {
        self.n += o.n;
        self.x += o.x;
        self.y += o.y;
        self.xx += o.xx;
        self.xy += o.xy;
    }

    /// 1 / slope: x per unit of y (requests per second), when defined.
    fn rate(&self) -> Option<f64> {
        let den = self.n * self.xx - self.x * self.x;
        let num = self.n * self.xy - self.x * self.y;
        (self.n >= 2.0 && den > 0.0 && num > 0.0).then(|| den / num)
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
            conns_per_client: Some(3),
            ..ReportHeader::default()
        };
        let r = a.report(header, Duration::from_secs(1), 0, None);
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
            for phase in [Phase::Connect, Phase::Write, Phase::Read, Phase::Handshake] {
                s.failed(kind, phase);
            }
        }
        let header = ReportHeader {
            conns_per_client: None,
            ..ReportHeader::default()
        };
        let r = s.report(header, Duration::from_secs(1), 0, None);
        let t = r.timeouts;
        assert_eq!(
            t.connect + t.write + t.read + t.handshake,
            r.errors_of(ErrorKind::Timeout)
        );
        assert_eq!((t.connect, t.write, t.read, t.handshake), (1, 1, 1, 1));
        assert_eq!(r.errors_total(), 4 * ErrorKind::ALL.len() as u64);
    }

    #[test]
    fn errno_classification_keeps_fd_exhaustion_apart() {
        use std::io::Error;
        let of = |e: nix::errno::Errno| ErrorKind::of_io(&Error::from_raw_os_error(e as i32));
        use nix::errno::Errno::*;
        assert_eq!(of(EMFILE), ErrorKind::FdExhausted);
        assert_eq!(of(ENFILE), ErrorKind::FdExhausted);
        assert_eq!(of(EADDRNOTAVAIL), ErrorKind::AddrNotAvailable);
        assert_eq!(of(EADDRINUSE), ErrorKind::AddrNotAvailable);
        assert_eq!(of(ECONNREFUSED), ErrorKind::Refused);
        assert_eq!(of(ECONNRESET), ErrorKind::Reset);
        assert_eq!(of(EPIPE), ErrorKind::Reset);
        assert_eq!(of(ETIMEDOUT), ErrorKind::Timeout);
        assert_eq!(of(EHOSTUNREACH), ErrorKind::Other);
    }

    /// The achieved rate is the inverse slope of start time against position,
    /// so one very late start barely moves it (where first-to-last would).
    #[test]
    fn the_achieved_rate_shrugs_off_a_late_start() {
        let mut s = Stats::default();
        for i in 0..1000u64 {
            let mut at = Duration::from_millis(i);
            if i == 999 {
                at += Duration::from_millis(300);
            }
            s.scheduled(i, at, Duration::ZERO, false);
        }
        let rate = s.fit.rate().expect("defined");
        assert!((rate - 1000.0).abs() < 10.0, "{rate}");
        assert_eq!(Fit::default().rate(), None);
    }
}
