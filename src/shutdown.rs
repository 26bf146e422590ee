//! The stop request an engine takes as an input (as mini-redis's
//! `server::run(listener, shutdown)` does): a SIGINT, SIGTERM or SIGHUP, or a
//! test's trigger.
//!
//! Owns the shared state and the ways to wait on it: a check, an interruptible
//! sleep for synchronous engines, and a future for the tokio one. Must never
//! install signal handlers or print (`cmd` does both), so engines stay testable
//! without signals.

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A cheap handle; clones share one state.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The first stop signal received (0: none yet).
    signal: AtomicI32,
    /// How many stop requests arrived: a second one asks to skip the grace.
    count: AtomicU32,
    /// Wakes synchronous sleepers.
    lock: Mutex<()>,
    woken: Condvar,
    /// Wakes async waiters.
    notify: tokio::sync::Notify,
}

impl Shutdown {
    /// A stop request that has not been made.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Requests a stop on behalf of `signal`; the first signal is the one reported.
    pub fn trigger(&self, signal: i32) {
        let _ = self
            .inner
            .signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        self.inner.count.fetch_add(1, Ordering::SeqCst);
        // Taking the lock orders this notify after a sleeper's check of the flag.
        drop(self.inner.lock.lock());
        self.inner.woken.notify_all();
        self.inner.notify.notify_waiters();
    }

    /// The signal that asked to stop, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.inner.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.signal().is_some()
    }

    /// A second stop request: cleanup should not wait out its grace periods.
    pub fn urgent(&self) -> bool {
        self.inner.count.load(Ordering::SeqCst) >= 2
    }

    /// Sleeps `d` or until a stop is requested; returns whether one was.
    pub fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let Ok(mut guard) = self.inner.lock.lock() else {
            std::thread::sleep(d);
            return self.requested();
        };
        loop {
            if self.requested() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = match self.inner.woken.wait_timeout(guard, left) {
                Ok((g, _)) => g,
                Err(_) => return self.requested(),
            };
        }
    }

    /// Completes once a stop is requested.
    pub async fn requested_async(&self) {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a trigger in between is not lost.
            notified.as_mut().enable();
            if self.requested() {
                return;
            }
            notified.await;
        }
    }
}

/// The stop signal that interrupted a run, as reports carry it: serialized as
/// its name (`"SIGINT"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(pub i32);

impl serde::Serialize for Signal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&signal_name(self.0))
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&signal_name(self.0))
    }
}

impl Shutdown {
    /// The stop signal as a report field, once one arrived.
    pub fn interruption(&self) -> Option<Signal> {
        self.signal().map(Signal)
    }
}

/// The number of a name [`signal_name`] gives (a report read back).
pub fn signal_number(name: &str) -> Option<i32> {
    match name {
        "SIGHUP" => Some(1),
        "SIGINT" => Some(2),
        "SIGQUIT" => Some(3),
        "SIGTERM" => Some(15),
        other => other
            .strip_prefix("signal ")?
            .parse()
            .ok()
            .filter(|n| (1..128).contains(n)),
    }
}

/// `SIGINT`, `SIGTERM`, `SIGHUP`, or `signal N`.
pub fn signal_name(signal: i32) -> String {
    match signal {
        1 => "SIGHUP".into(),
        2 => "SIGINT".into(),
        3 => "SIGQUIT".into(),
        15 => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_wakes_a_sleeper_and_is_remembered() {
        let s = Shutdown::new();
        assert!(!s.sleep(Duration::from_millis(1)));
        let t = s.clone();
        let waker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            t.trigger(15);
        });
        let started = Instant::now();
        assert!(s.sleep(Duration::from_secs(30)));
        assert!(started.elapsed() < Duration::from_secs(10));
        waker.join().unwrap();
        s.trigger(2);
        assert_eq!(s.signal(), Some(15), "the first signal is reported");
        assert!(s.urgent());
    }

    #[test]
    fn the_future_completes_on_a_trigger() {
        let s = Shutdown::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let t = s.clone();
        rt.block_on(async move {
            let waiter = tokio::spawn(async move { s.requested_async().await });
            tokio::time::sleep(Duration::from_millis(10)).await;
            t.trigger(1);
            tokio::time::timeout(Duration::from_secs(10), waiter)
                .await
                .unwrap()
                .unwrap();
        });
    }

    #[test]
    fn signal_names_read_back() {
        for n in [1, 2, 3, 15, 9, 127] {
            assert_eq!(signal_number(&signal_name(n)), Some(n));
        }
        assert_eq!(signal_number("SIGFOO"), None);
        assert_eq!(signal_number("signal 300"), None);
    }
}
