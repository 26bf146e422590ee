//! `lsbaws blast`: N simultaneous connections on tokio, with honest accounting.
//!
//! Owns the run: the runtime it builds for itself (main stays synchronous, so
//! `serve` can fork), the start barrier, the client loops, progress, and the
//! merge of per-thread stats into a [`BlastReport`]. [`run_blast`] is the
//! reusable engine (`smoke` calls it); [`run`] is the command around it.
//! Must never print results (rendering is `report::blast`), keep per-request
//! records, or let a run outlive its bounds.
//!
//! - `config`: flags → validated [`BlastConfig`].
//! - `conn`: one request, the response reader, error classification.
//! - `stats`: per-thread histograms and counters, the report shape.
//! - `limits`: open-file limit and ephemeral-port warnings.

mod config;
mod conn;
mod limits;
mod stats;

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Barrier;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use config::BlastConfig;
pub use stats::{BlastReport, ErrorKind, LatencyMs, SLOW_CONNECT, Timeouts};

use crate::Outcome;
use crate::cli::BlastArgs;
use conn::{ClientState, Exchange};
use stats::{ReportHeader, Stats};

/// The `blast` command: validate, run, render, judge.
pub fn run(args: &BlastArgs) -> anyhow::Result<Outcome> {
    let config = BlastConfig::from_args(args)?;
    // Decided once here: progress only for a person watching a terminal.
    let progress = !args.quiet && !args.json && std::io::stderr().is_terminal();
    let report = run_blast(&config, progress)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        crate::report::blast::json(&report, &mut out)?;
    } else {
        crate::report::blast::summary(&report, &mut out)?;
    }
    out.flush()?;
    Ok(outcome(&report, config.max_errors))
}

/// Pass when the failures are within `max_errors`, a finding above.
pub fn outcome(report: &BlastReport, max_errors: u64) -> Outcome {
    if report.errors_total() > max_errors {
        Outcome::Finding
    } else {
        Outcome::Pass
    }
}

/// Runs a blast to completion and returns what happened. Failed connections
/// are data in the report; an `Err` means the run itself could not happen.
/// Prints nothing on stdout; a limit warning (one line) and the progress bar,
/// when `progress` is set, go to stderr.
pub fn run_blast(config: &BlastConfig, progress: bool) -> anyhow::Result<BlastReport> {
    if let Some((soft, _hard)) = limits::raise_nofile()
        && let Some(warning) = limits::fd_warning(config.clients, soft)
    {
        eprintln!("{warning}");
    }
    if let Some(warning) = limits::port_warning(config.clients) {
        eprintln!("{warning}");
    }

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
    let shared = Arc::new(Shared::new(config));
    let elapsed = runtime.block_on(drive(shared.clone(), progress));
    // Dropping the runtime joins its threads, which run `on_thread_stop`.
    drop(runtime);
    let elapsed = elapsed?;

    let mut total = stats::take_local().unwrap_or_default();
    let all = handed_over
        .lock()
        .map_err(|_| anyhow::anyhow!("a runtime thread panicked while handing over stats"))?;
    for stats in all.iter() {
        total.merge(stats);
    }
    let header = ReportHeader {
        url: config.url.clone(),
        clients: config.clients,
        conns_per_client: config.duration.is_none().then_some(config.conns_per_client),
        duration: config.duration,
        threads: config.threads,
        keep_alive: config.keep_alive,
    };
    let report = BlastReport::new(&total, header, elapsed);
    // The per-thread hand-over rests on the runtime running `on_thread_stop`
    // for every worker; if that ever changed, counts would go missing silently.
    // Honest accounting means failing loudly instead.
    let done = shared.done.load(Ordering::Relaxed);
    anyhow::ensure!(
        report.connections == done,
        "internal: {done} requests finished but {} were counted",
        report.connections
    );
    if let Some(planned) = config.planned() {
        anyhow::ensure!(
            report.connections == planned,
            "internal: {planned} requests planned but {} were made",
            report.connections
        );
    }
    Ok(report)
}

/// What every client task shares: the settings and the progress counters.
struct Shared {
    config: BlastConfig,
    /// Requests finished, for the progress bar (one relaxed add per request).
    done: AtomicU64,
    failed: AtomicU64,
    /// The instant the clients were released, set by the first task past the
    /// start barrier: every client's `--duration` deadline and the elapsed
    /// time count from it. A deadline each client took when it first ran let
    /// clients that ran late (their worker busy) run late by as much.
    release: OnceLock<Instant>,
}

impl Shared {
    fn new(config: &BlastConfig) -> Shared {
        Shared {
            config: config.clone(),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            release: OnceLock::new(),
        }
    }

    /// The release instant (see `release`); the first caller sets it.
    fn released(&self) -> Instant {
        *self.release.get_or_init(Instant::now)
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

/// Spawns the clients, releases them together, waits for all; returns the time
/// from the release to the last response, or an error when a client task died.
async fn drive(shared: Arc<Shared>, progress: bool) -> anyhow::Result<Duration> {
    let clients = shared.config.clients;
    // +1: this task waits too, so the clock starts when the clients are released.
    let barrier = Arc::new(Barrier::new(
        usize::try_from(clients).unwrap_or(usize::MAX) + 1,
    ));
    let mut handles = Vec::with_capacity(usize::try_from(clients).unwrap_or(0));
    for _ in 0..clients {
        handles.push(tokio::spawn(client(shared.clone(), barrier.clone())));
    }
    barrier.wait().await;
    let start = shared.released();
    let bar = progress.then(|| match shared.config.planned() {
        Some(total) => crate::report::blast::progress_bar(total),
        None => crate::report::blast::progress_spinner(),
    });
    let ticker = bar
        .clone()
        .map(|bar| tokio::spawn(show_progress(shared.clone(), bar, start)));
    let joined = join_clients(handles).await;
    let elapsed = start.elapsed();
    if let Some(ticker) = ticker {
        ticker.abort();
        let _ = ticker.await;
    }
    if let Some(bar) = bar {
        // The summary follows on stdout; a finished bar would only repeat it.
        bar.finish_and_clear();
    }
    joined?;
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
        made += 1;
        let result = conn::run_one(&ex, &mut state).await;
        shared.done.fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            shared.failed.fetch_add(1, Ordering::Relaxed);
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

/// Updates the progress bar ten times a second until aborted.
async fn show_progress(shared: Arc<Shared>, bar: indicatif::ProgressBar, start: Instant) {
    let config = &shared.config;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let done = shared.done.load(Ordering::Relaxed);
        let failed = shared.failed.load(Ordering::Relaxed);
        let secs = start.elapsed().as_secs_f64().max(1e-3);
        bar.set_position(done);
        bar.set_message(format!("{:.0} conn/s, {failed} errors", done as f64 / secs));
        if let Some(end) = config.duration
            && start.elapsed() >= end
        {
            bar.set_message(format!("{failed} errors, finishing"));
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
    s.failed(ErrorKind::FdExhausted, stats::Phase::Connect);
    s.failed(ErrorKind::Timeout, stats::Phase::Read);
    let header = ReportHeader {
        url: "http://127.0.0.1:8888/hello".into(),
        clients: 2,
        conns_per_client: Some(2),
        duration: None,
        threads: 1,
        keep_alive: false,
    };
    BlastReport::new(&s, header, Duration::from_millis(500))
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
