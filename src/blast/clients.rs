//! The client tasks: what they share, the closed model's loop (each client
//! makes its requests one after another) and the open model's (`--rate`:
//! clients take the next request of a fixed schedule).
//!
//! Owns when each request begins and its accounting as begun. Must never
//! begin a request past its deadline or the schedule's end, nor measure an
//! open-model request from anything but its intended start.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::Barrier;
use tokio::time::Instant;

use super::Progress;
use super::config::BlastConfig;
use super::conn::{self, ClientState, Exchange};
use super::report::ErrorKind;
use super::schedule::Schedule;
use super::source::Sources;
use super::stats::{self, Stats};

/// What every client task shares: the settings and the counters.
pub(super) struct Shared {
    pub config: BlastConfig,
    pub progress: Arc<Progress>,
    /// Clients that began at least one request (`--duration` accounting).
    pub clients_begun: AtomicU64,
    /// The instant the clients were released, on the monotonic clock and on
    /// the wall clock, set by the first task past the start barrier: every
    /// client's `--duration` deadline, the schedule and the elapsed time
    /// count from it. A deadline each client took when it first ran let
    /// clients that ran late (their worker busy) run late by as much.
    release: OnceLock<(Instant, SystemTime)>,
    /// `--source` addresses and whose turn is next.
    sources: Sources,
    /// The open model's schedule (`--rate`).
    schedule: Option<Schedule>,
}

impl Shared {
    pub fn new(config: &BlastConfig, progress: Arc<Progress>) -> Shared {
        Shared {
            config: config.clone(),
            progress,
            clients_begun: AtomicU64::new(0),
            release: OnceLock::new(),
            sources: Sources::new(config.sources.clone()),
            schedule: config
                .rate
                .zip(config.planned())
                .map(|(rate, planned)| Schedule::new(rate, planned)),
        }
    }

    /// The release instant (see `release`); the first caller sets it.
    pub fn released(&self) -> Instant {
        self.release
            .get_or_init(|| (Instant::now(), SystemTime::now()))
            .0
    }

    /// Time since the release; None when the clients were never released.
    pub fn since_release(&self) -> Option<Duration> {
        self.release.get().map(|r| r.0.elapsed())
    }

    /// The release on the wall clock, once released.
    pub fn released_at(&self) -> Option<SystemTime> {
        self.release.get().map(|r| r.1)
    }

    fn exchange(&self) -> Exchange<'_> {
        Exchange {
            addr: self.config.addr,
            request: &self.config.request,
            head_request: self.config.head_request,
            timeout: self.config.timeout,
            connect_timeout: self.config.connect_timeout,
            keep_alive: self.config.keep_alive,
            sources: &self.sources,
            tls: self.config.tls.as_ref(),
        }
    }

    /// A client's state with its socket made, so the burst is only connects.
    fn prepared(&self) -> ClientState {
        ClientState {
            presocket: Some(self.sources.socket(self.config.addr)),
            ..ClientState::default()
        }
    }

    /// Counts one finished request for the progress display.
    fn finished(&self, result: Result<(), ErrorKind>) {
        self.progress.done.fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            self.progress.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// First pause of a `--duration` client after a failure for want of local
/// resources (fds, ephemeral ports); doubled on each one in a row up to
/// [`BACKOFF_MAX`]. Retrying at once only fails again, and millions of
/// instant failures drown the real counts and burn the CPU that the
/// connections in flight need.
const BACKOFF_MIN: Duration = Duration::from_millis(1);
const BACKOFF_MAX: Duration = Duration::from_millis(10);

/// An open-model request taken this much after its intended start is behind
/// schedule: no client was free for it. Less is the runtime's own jitter
/// (tokio's timers tick in milliseconds), not a want of clients.
const BEHIND_SLACK: Duration = Duration::from_millis(1);

/// One client of the closed model: its requests one after another, each
/// bounded by `--timeout`.
pub(super) async fn client(shared: Arc<Shared>, barrier: Arc<Barrier>) {
    let config = &shared.config;
    let mut state = shared.prepared();
    barrier.wait().await;
    let ex = shared.exchange();
    let end = config.duration.map(|d| shared.released() + d);
    let deadline = tokio::time::sleep(config.timeout);
    tokio::pin!(deadline);
    let mut made = 0u64;
    let mut backoff = BACKOFF_MIN;
    loop {
        match end {
            Some(end) if Instant::now() >= end => break,
            None if made >= config.conns_per_client => break,
            _ => {}
        }
        if made == 0 {
            shared.clients_begun.fetch_add(1, Ordering::Relaxed);
        }
        made += 1;
        stats::record(Stats::started);
        let result = conn::run_one(&ex, &mut state, None, deadline.as_mut()).await;
        shared.finished(result);
        match (result, end) {
            (Err(ErrorKind::FdExhausted | ErrorKind::AddrNotAvailable), Some(end)) => {
                tokio::time::sleep_until((Instant::now() + backoff).min(end)).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            _ => {
                backoff = BACKOFF_MIN;
                // An attempt that fails synchronously (EMFILE from socket(),
                // EADDRNOTAVAIL from connect) never reaches an await that
                // yields; without this a client could hold its worker thread
                // and starve the timers and sockets of every other client.
                tokio::task::coop::consume_budget().await;
            }
        }
    }
}

/// One client of the open model: takes the next request of the schedule,
/// waits for its intended start (or starts at once when that has passed: it
/// is then behind schedule, every client having been busy), and measures its
/// latency from the intended start, as wrk2 does, so that a stall shows in
/// the percentiles instead of slowing the load down.
pub(super) async fn paced_client(shared: Arc<Shared>, barrier: Arc<Barrier>) {
    let mut state = shared.prepared();
    barrier.wait().await;
    let Some(schedule) = &shared.schedule else {
        return;
    };
    let ex = shared.exchange();
    let release = shared.released();
    let end = shared.config.duration.map(|d| release + d);
    let deadline = tokio::time::sleep(shared.config.timeout);
    tokio::pin!(deadline);
    while let Some((index, offset)) = schedule.take() {
        let intended = release + offset;
        let taken = Instant::now();
        // Past the deadline nothing new begins: this one and those after it
        // count as unfinished.
        if end.is_some_and(|end| taken >= end) {
            break;
        }
        let behind = taken > intended + BEHIND_SLACK;
        if taken < intended {
            tokio::time::sleep_until(intended).await;
        }
        let began = Instant::now();
        stats::record(|s| {
            s.started();
            s.scheduled(
                index,
                began - release,
                began.saturating_duration_since(intended),
                behind,
            );
        });
        let result = conn::run_one(&ex, &mut state, Some(intended), deadline.as_mut()).await;
        shared.finished(result);
        // Behind schedule, failures that need no await (EMFILE) would run
        // back to back: let the other tasks in between.
        tokio::task::coop::consume_budget().await;
    }
}
