//! The blast engine: N simultaneous connections on tokio, with honest accounting.
//!
//! Owns the run: the runtime it builds for itself (main stays synchronous, so
//! `serve` can fork), the start barrier, the client loops, and the merge of
//! per-thread stats into a [`BlastReport`]. [`run`] takes the stop request as an
//! input and returns the report; `cmd::blast` and `smoke` call it. Must never
//! print (warnings are returned by [`preflight`], progress is read from
//! [`Progress`] by whoever shows it), keep per-request records, let a run outlive
//! its bounds, or lose a planned request: each ends ok, failed or `unfinished`.
//!
//! - `config`: settings → validated [`BlastConfig`].
//! - `conn`: one request on a connection, its deadline, error classification.
//! - `http1`: the response reader.
//! - `stats`: per-thread histograms and counters.
//! - `report`: the report's shape and error kinds.
//! - `histogram`: the histograms' shared settings and their wire encoding.
//! - `limits`: open-file limit and ephemeral-port warnings.

mod config;
mod conn;
pub mod histogram;
mod http1;
mod limits;
mod report;
mod stats;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::sync::Barrier;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use config::{BlastConfig, Load, RequestSpec};
pub use report::{BlastReport, ErrorKind, Histograms, LatencyMs, SCHEMA, Timeouts, format_time};
pub use stats::SLOW_CONNECT;

use crate::shutdown::Shutdown;
use conn::{ClientState, Exchange};
use report::ReportHeader;
use stats::Stats;

/// Live counters of a run, for a progress display: relaxed atomics the clients
/// bump once per request, read by whoever draws the bar.
#[derive(Debug, Default)]
pub struct Progress {
    /// Requests finished.
    pub done: AtomicU64,
    /// Of those, failed.
    pub failed: AtomicU64,
    /// Set when the clients are released: the display's clock starts there.
    pub released: AtomicBool,
}

/// Prepares the host for `config` (raises the soft open-file limit to the hard
/// one) and returns one-line warnings about what it still lacks: file
/// descriptors or ephemeral ports for this many simultaneous connections.
pub fn preflight(config: &BlastConfig) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some((soft, _hard)) = limits::raise_nofile()
        && let Some(warning) = limits::fd_warning(config.clients, soft)
    {
        warnings.push(warning);
    }
    warnings.extend(limits::port_warning(config.clients));
    warnings
}

/// Runs a blast until every planned request has ended, its deadline, or a stop
/// request, and returns what happened. Failed connections are data in the
/// report; an `Err` means the run itself could not happen (or lost count).
/// A stop request aborts the requests in flight (they count as `unfinished`)
/// and marks the report interrupted.
pub fn run(
    config: &BlastConfig,
    shutdown: &Shutdown,
    progress: &Arc<Progress>,
) -> anyhow::Result<BlastReport> {
    // Each runtime thread hands its stats over here once, when it stops.
    let handed_over: Arc<Mutex<Vec<Stats>>> = Arc::default();
    let runtime = {
        let mut builder = if config.threads == 1 {
            // One worker: run the tasks on this thread and save the cross-thread
            // wakeups a one-worker multi-thread runtime would still pay
            // (against nginx: ~3% more connections/s and 1 MB less RSS).
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(config.threads);
            b
        };
        let sink = handed_over.clone();
        builder
            .enable_io()
            .enable_time()
            .thread_name("lsbaws-blast")
            .on_thread_stop(move || {
                if let Some(stats) = stats::take_local()
                    && let Ok(mut all) = sink.lock()
                {
                    all.push(stats);
                }
            })
            .build()
            .context("cannot start the tokio runtime")?
    };
    // A previous run on this thread (current-thread mode) must not leak in.
    let _ = stats::take_local();
    let shared = Arc::new(Shared::new(config, progress.clone()));
    let ran = runtime.block_on(drive(shared.clone(), shutdown.clone()));
    // Dropping the runtime cancels what was aborted and joins its threads,
    // which run `on_thread_stop`: every count is in `handed_over` after this.
    drop(runtime);
    let elapsed = ran?;

    let mut total = stats::take_local().unwrap_or_default();
    let all = handed_over
        .lock()
        .map_err(|_| anyhow::anyhow!("a runtime thread panicked while handing over stats"))?;
    for stats in all.iter() {
        total.merge(stats);
    }
    // Whether the run was cut short is read once, after the last request
    // ended, so the report and the verdict agree.
    let signal = shutdown.interruption();
    let header = ReportHeader {
        tag: config.tag.clone(),
        started_at: shared.release.get().map(|r| r.wall),
        url: config.url.clone(),
        clients: config.clients,
        conns_per_client: config.duration.is_none().then_some(config.conns_per_client),
        duration: config.duration,
        threads: config.threads,
        keep_alive: config.keep_alive,
    };
    let unfinished = unfinished(config, &total, &shared);
    let report = total.report(header, elapsed, unfinished, signal);
    // The per-thread hand-over rests on the runtime running `on_thread_stop`
    // for every worker; if that ever changed, counts would go missing silently.
    // Honest accounting means failing loudly instead.
    let done = progress.done.load(Ordering::Relaxed);
    anyhow::ensure!(
        report.connections == done,
        "internal: {done} requests finished but {} were counted",
        report.connections
    );
    if let (Some(planned), None) = (config.planned(), signal) {
        anyhow::ensure!(
            report.connections == planned,
            "internal: {planned} requests planned but {} were made",
            report.connections
        );
    }
    Ok(report)
}

/// Requests that neither succeeded nor failed: begun and cut off, plus those
/// never begun. In count mode that is every planned request not finished; with
/// `--duration`, a client that never got to begin one (its task ran only after
/// the deadline, or a signal came first) counts one, so that every client
/// shows up in the report.
fn unfinished(config: &BlastConfig, total: &Stats, shared: &Shared) -> u64 {
    let cut_off = total.begun().saturating_sub(total.finished());
    let never_begun = match config.planned() {
        Some(planned) => planned.saturating_sub(total.begun()),
        None => config
            .clients
            .saturating_sub(shared.clients_begun.load(Ordering::Relaxed)),
    };
    cut_off + never_begun
}

/// What every client task shares: the settings and the counters.
struct Shared {
    config: BlastConfig,
    progress: Arc<Progress>,
    /// Clients that began at least one request (`--duration` accounting).
    clients_begun: AtomicU64,
    /// The instant the clients were released, set by the first task past the
    /// start barrier: every client's `--duration` deadline and the elapsed
    /// time count from it. A deadline each client took when it first ran let
    /// clients that ran late (their worker busy) run late by as much.
    release: OnceLock<Release>,
}

/// The release, on both clocks, read together once.
#[derive(Debug, Clone, Copy)]
struct Release {
    /// Monotonic: deadlines and the elapsed time.
    at: Instant,
    /// Wall clock: the report's `started_at`, comparable across machines.
    wall: SystemTime,
}

impl Shared {
    fn new(config: &BlastConfig, progress: Arc<Progress>) -> Shared {
        Shared {
            config: config.clone(),
            progress,
            clients_begun: AtomicU64::new(0),
            release: OnceLock::new(),
        }
    }

    /// The release instant (see `release`); the first caller sets it.
    fn released(&self) -> Instant {
        self.release
            .get_or_init(|| Release {
                at: Instant::now(),
                wall: SystemTime::now(),
            })
            .at
    }

    fn exchange(&self) -> Exchange<'_> {
        Exchange {
            addr: self.config.addr,
            request: &self.config.request,
            head_request: self.config.head_request,
            timeout: self.config.timeout,
            connect_timeout: self.config.connect_timeout,
            keep_alive: self.config.keep_alive,
        }
    }
}

/// Spawns the clients, releases them together, waits for all (or aborts them
/// on a stop request); returns the time from the release to the end, or an
/// error when a client task died.
async fn drive(shared: Arc<Shared>, shutdown: Shutdown) -> anyhow::Result<Duration> {
    let clients = shared.config.clients;
    // +1: this task waits too, so the clock starts when the clients are released.
    let barrier = Arc::new(Barrier::new(
        usize::try_from(clients).unwrap_or(usize::MAX) + 1,
    ));
    let mut handles = Vec::with_capacity(usize::try_from(clients).unwrap_or(0));
    for _ in 0..clients {
        handles.push(tokio::spawn(client(shared.clone(), barrier.clone())));
    }
    let aborts: Vec<_> = handles.iter().map(JoinHandle::abort_handle).collect();
    let stopped = tokio::select! {
        _ = barrier.wait() => false,
        _ = shutdown.requested_async() => true,
    };
    let start = shared.released();
    shared.progress.released.store(true, Ordering::Relaxed);
    let joined = if stopped {
        None
    } else {
        tokio::select! {
            joined = join_clients(handles) => Some(joined),
            _ = shutdown.requested_async() => None,
        }
    };
    let elapsed = start.elapsed();
    match joined {
        Some(joined) => joined?,
        // In-flight requests end here, uncounted: `unfinished` accounts for them.
        None => aborts.iter().for_each(tokio::task::AbortHandle::abort),
    }
    Ok(elapsed)
}

/// Waits for every client task. One that panicked took its uncounted requests
/// with it, so the report would be wrong: that is an internal error, returned
/// once the others have ended (they are bounded by `--timeout`).
async fn join_clients(handles: Vec<JoinHandle<()>>) -> anyhow::Result<()> {
    let mut failure = None;
    for handle in handles {
        if let Err(e) = handle.await {
            failure.get_or_insert(e);
        }
    }
    match failure {
        Some(e) => Err(anyhow::anyhow!("internal: a blast client failed: {e}")),
        None => Ok(()),
    }
}

/// First pause of a `--duration` client after a failure for want of local
/// resources (fds, ephemeral ports); doubled on each one in a row up to
/// [`BACKOFF_MAX`]. Retrying at once only fails again, and millions of
/// instant failures drown the real counts and burn the CPU that the
/// connections in flight need.
const BACKOFF_MIN: Duration = Duration::from_millis(1);
const BACKOFF_MAX: Duration = Duration::from_millis(10);

/// One client: its requests one after another, each bounded by `--timeout`.
async fn client(shared: Arc<Shared>, barrier: Arc<Barrier>) {
    let config = &shared.config;
    let mut state = ClientState {
        // Made before the barrier so the release is nothing but connects.
        presocket: Some(conn::socket_for(config.addr)),
        ..ClientState::default()
    };
    barrier.wait().await;
    let ex = shared.exchange();
    let end = config.duration.map(|d| shared.released() + d);
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
        let result = conn::run_one(&ex, &mut state).await;
        shared.progress.done.fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            shared.progress.failed.fetch_add(1, Ordering::Relaxed);
        }
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

/// A report with one of everything, for rendering tests.
#[cfg(test)]
pub(crate) fn sample_report() -> BlastReport {
    let mut s = Stats::default();
    s.connected(Duration::from_millis(1));
    s.connected(Duration::from_millis(1500));
    s.first_byte(Duration::from_millis(2));
    s.response(200, Duration::from_millis(3));
    s.response(503, Duration::from_millis(4));
    s.failed(ErrorKind::FdExhausted, report::Phase::Connect);
    s.failed(ErrorKind::Timeout, report::Phase::Read);
    let header = ReportHeader {
        tag: "sample".into(),
        started_at: Some(std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
        url: "http://127.0.0.1:8888/hello".into(),
        clients: 2,
        conns_per_client: Some(2),
        duration: None,
        threads: 1,
        keep_alive: false,
    };
    s.report(header, Duration::from_millis(500), 0, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a client task that panicked was dropped silently (`let _ =
    /// handle.await`) and the run reported counts without its requests.
    #[tokio::test]
    async fn a_panicking_client_is_an_internal_error() {
        let handles = vec![
            tokio::spawn(async {}),
            tokio::spawn(async { panic!("client bug") }),
            tokio::spawn(async {}),
        ];
        let err = join_clients(handles)
            .await
            .expect_err("a panic is an error");
        let msg = format!("{err:#}");
        assert!(
            msg.starts_with("internal: ") && msg.contains("panicked"),
            "{msg}"
        );
        let handles = vec![tokio::spawn(async {}), tokio::spawn(async {})];
        assert!(join_clients(handles).await.is_ok());
    }
}
