//! When requests start: the common release instant (`--start-at`) and the
//! open model's fixed schedule (`--rate`).
//!
//! Owns reading TIME, the interruptible wait for it on the realtime clock,
//! and the schedule's tickets (which request is next and when it was meant to
//! start). Must never start a request itself, release early, or wait past a
//! stop request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};

use crate::shutdown::Shutdown;

/// `--start-at` further away than this is refused: a typo (a year, ms for
/// s) would leave a process waiting where nobody looks.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// Reads `--start-at`: RFC 3339 in UTC (`2026-11-30T12:00:00Z`, fractions
/// allowed) or Unix seconds (`1796040000`, `1796040000.25`); it must lie in
/// the future, at most [`MAX_WAIT`] from `now`.
pub fn parse_start_at(s: &str, now: SystemTime) -> anyhow::Result<SystemTime> {
    let s = s.trim();
    let at = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = s
            .parse()
            .with_context(|| format!("--start-at {s:?}: bad Unix seconds"))?;
        let since = Duration::try_from_secs_f64(secs)
            .with_context(|| format!("--start-at {s:?}: bad Unix seconds"))?;
        UNIX_EPOCH
            .checked_add(since)
            .with_context(|| format!("--start-at {s:?}: out of range"))?
    } else {
        // RFC 3339 allows a lower-case `t` and `z`; humantime reads UTC
        // only; "+00:00" is the same instant as "Z".
        let upper = s.to_ascii_uppercase();
        let utc = upper.strip_suffix("+00:00").map(|t| format!("{t}Z"));
        let text = utc.as_deref().unwrap_or(&upper);
        // A leap second (`:60`) has no instant of its own on the Unix clock
        // the wait runs on: refused rather than fired a second early.
        if text.get(17..19) == Some("60") {
            bail!(
                "--start-at {s}: a leap second cannot be waited for on this clock; use :59 or the next minute"
            );
        }
        humantime::parse_rfc3339(text).map_err(|e| {
            anyhow::anyhow!(
                "--start-at {s:?}: {e} (expected RFC 3339 UTC such as \
                 2026-11-30T12:00:00Z, or Unix seconds)"
            )
        })?
    };
    match at.duration_since(now) {
        Err(e) => bail!(
            "--start-at {s}: that was {:.3} s ago (it must be in the future)",
            e.duration().as_secs_f64()
        ),
        Ok(wait) => ensure!(
            wait <= MAX_WAIT,
            "--start-at {s}: {:.0} s away, more than 24 h",
            wait.as_secs_f64()
        ),
    }
    Ok(at)
}

/// Below this much left, the wait ends in a blocking sleep of the thread:
/// tokio's timers tick in whole milliseconds, and every client is parked at
/// the start barrier, so nothing else needs the thread.
const FINE: Duration = Duration::from_millis(3);

/// Each coarse sleep is at most this long, so that a step of the realtime
/// clock (NTP) is seen within a second.
const COARSE: Duration = Duration::from_secs(1);

/// Sleeps until the realtime clock reads `at`; returns true when a stop
/// request came first.
pub async fn wait_until(at: SystemTime, shutdown: &Shutdown) -> bool {
    loop {
        if shutdown.requested() {
            return true;
        }
        let Ok(left) = at.duration_since(SystemTime::now()) else {
            return false;
        };
        if left <= FINE {
            std::thread::sleep(left);
            return shutdown.requested();
        }
        let nap = (left - FINE + Duration::from_micros(500)).min(COARSE);
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = shutdown.requested_async() => return true,
        }
    }
}

/// The open model's schedule: request `i` is meant to start `i / rate`
/// seconds after the release, whichever client is free to make it.
#[derive(Debug)]
pub struct Schedule {
    rate: f64,
    planned: u64,
    next: AtomicU64,
}

impl Schedule {
    pub fn new(rate: f64, planned: u64) -> Schedule {
        Schedule {
            rate,
            planned,
            next: AtomicU64::new(0),
        }
    }

    /// Requests on the schedule: `count`, or all whose intended start falls
    /// within `duration` of the release.
    pub fn planned(rate: f64, count: u64, duration: Option<Duration>) -> u64 {
        let Some(d) = duration else {
            return count;
        };
        // The same arithmetic as `offset`, so the count and the tickets agree.
        let within = |i: u64| offset(rate, i) < d;
        let mut n = (d.as_secs_f64() * rate).ceil() as u64;
        while n > 0 && !within(n - 1) {
            n -= 1;
        }
        while within(n) {
            n += 1;
        }
        n
    }

    /// Requests of a schedule of `planned` at `rate` whose intended start
    /// falls at most `t` after the release.
    pub fn due_by(rate: f64, planned: u64, t: Duration) -> u64 {
        // The same arithmetic as `offset`, so the count and the tickets agree.
        let due = |i: u64| offset(rate, i) <= t;
        let mut n = ((t.as_secs_f64() * rate).floor() as u64)
            .saturating_add(1)
            .min(planned);
        while n > 0 && !due(n - 1) {
            n -= 1;
        }
        while n < planned && due(n) {
            n += 1;
        }
        n
    }

    /// The next request to make: its place in the schedule and its intended
    /// start after the release; None once all are handed out.
    pub fn take(&self) -> Option<(u64, Duration)> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.planned).then(|| (i, offset(self.rate, i)))
    }
}

/// Intended start of request `i` after the release.
fn offset(rate: f64, i: u64) -> Duration {
    Duration::try_from_secs_f64(i as f64 / rate).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_at_reads_rfc3339_and_unix_seconds_in_the_future_only() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = parse_start_at("2027-01-15T09:00:00Z", now).expect("rfc3339");
        assert_eq!(
            at.duration_since(UNIX_EPOCH).expect("after").as_secs(),
            1_800_000_000 + 3600
        );
        let at = parse_start_at("2027-01-15T09:00:00.25+00:00", now).expect("+00:00");
        assert_eq!(
            at.duration_since(UNIX_EPOCH).expect("after").as_millis(),
            1_800_003_600_250
        );
        let at = parse_start_at("1800000010.5", now).expect("unix");
        assert_eq!(
            at.duration_since(now).expect("after"),
            Duration::from_millis(10_500)
        );
        for (bad, why) in [
            ("1799999999", "ago"),
            ("2027-01-15T06:59:59Z", "ago"),
            ("1800086401", "more than 24 h"),
            ("2027-01-15T08:00:00+01:00", "expected RFC 3339 UTC"),
            ("tomorrow", "expected RFC 3339 UTC"),
            ("1.2.3", "bad Unix seconds"),
        ] {
            let err = format!("{:#}", parse_start_at(bad, now).expect_err(bad));
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn the_schedule_holds_rate_times_duration() {
        assert_eq!(
            Schedule::planned(200.0, 1, Some(Duration::from_secs(4))),
            800
        );
        assert_eq!(
            Schedule::planned(3.0, 1, Some(Duration::from_millis(1001))),
            4
        );
        assert_eq!(Schedule::planned(0.5, 1, Some(Duration::from_secs(1))), 1);
        assert_eq!(Schedule::planned(1000.0, 77, None), 77);
        assert_eq!(Schedule::due_by(4.0, 3, Duration::ZERO), 1);
        assert_eq!(Schedule::due_by(4.0, 3, Duration::from_millis(249)), 1);
        assert_eq!(Schedule::due_by(4.0, 3, Duration::from_millis(250)), 2);
        assert_eq!(Schedule::due_by(4.0, 3, Duration::from_secs(9)), 3);
        assert_eq!(Schedule::due_by(4.0, 0, Duration::from_secs(9)), 0);
        assert_eq!(Schedule::due_by(1e6, 5, Duration::MAX), 5);
        // A --duration schedule is all due at the deadline.
        let d = Duration::from_millis(1001);
        assert_eq!(
            Schedule::due_by(3.0, Schedule::planned(3.0, 1, Some(d)), d),
            4
        );
        let s = Schedule::new(4.0, 3);
        let tickets: Vec<_> = std::iter::from_fn(|| s.take()).collect();
        assert_eq!(
            tickets,
            [
                (0, Duration::ZERO),
                (1, Duration::from_millis(250)),
                (2, Duration::from_millis(500))
            ]
        );
    }

    #[test]
    fn a_stop_request_ends_the_wait() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let shutdown = Shutdown::new();
        let trigger = shutdown.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            trigger.trigger(2);
        });
        let far = SystemTime::now() + Duration::from_secs(3600);
        let started = std::time::Instant::now();
        assert!(rt.block_on(wait_until(far, &shutdown)));
        assert!(started.elapsed() < Duration::from_secs(30));
        t.join().expect("join");
        let soon = SystemTime::now() + Duration::from_millis(20);
        let shutdown = Shutdown::new();
        assert!(!rt.block_on(wait_until(soon, &shutdown)));
        assert!(SystemTime::now() >= soon);
    }
}
