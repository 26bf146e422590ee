//! The blast engine: N simultaneous connections on tokio, with honest accounting.
//!
//! Owns the run: the threads and runtimes it builds for itself (main stays
//! synchronous, so `serve` can fork; one current-thread runtime per thread),
//! the start barrier and the release (at once, or at `--start-at`), and the
//! merge of per-thread stats into a [`BlastReport`]. [`run`] takes the stop
//! request as an input and returns the report; `cmd::blast` and `smoke` call
//! it. Must never
//! print (warnings are returned by [`preflight`], progress is read from
//! [`Progress`] by whoever shows it), keep per-request records, let a run outlive
//! its bounds, or lose a planned request: each ends ok, failed or `unfinished`.
//!
//! - `config`: settings → validated [`BlastConfig`].
//! - `clients`: the client tasks, closed model and open (`--rate`).
//! - `conn`: one request on a connection, its deadline, error classification.
//! - `http1`: the response reader.
//! - `tls`: the TLS client (https://).
//! - `source`: `--source` addresses.
//! - `schedule`: `--start-at` and the `--rate` schedule.
//! - `stats`: per-thread histograms and counters.
//! - `report`: the report's shape and error kinds.
//! - `histogram`: the histograms' shared settings and their wire encoding.
//! - `limits`: open-file limit and ephemeral-port warnings.

mod clients;
mod config;
mod conn;
pub mod histogram;
mod http1;
mod limits;
mod report;
mod schedule;
mod source;
mod stats;
mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Barrier;
use tokio::task::JoinHandle;

pub use config::{BlastConfig, Load, RequestSpec};
pub use report::{
    BlastReport, ErrorKind, Histograms, LatencyMs, RateReport, SCHEMA, Timeouts, format_time,
};
pub use stats::SLOW_CONNECT;
pub use tls::TlsOptions;

use crate::shutdown::Shutdown;
use clients::Shared;
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
/// descriptors or ephemeral ports for this many simultaneous connections, and
/// that `--insecure` verifies no certificate.
pub fn preflight(config: &BlastConfig) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some((soft, _hard)) = limits::raise_nofile()
        && let Some(warning) = limits::fd_warning(config.clients, soft)
    {
        warnings.push(warning);
    }
    warnings.extend(limits::port_warning(config.clients, config.sources.len()));
    if config.insecure {
        warnings.push("--insecure: server certificates are not verified".to_string());
    }
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
    // A previous run on this thread must not leak in.
    let _ = stats::take_local();
    let shared = Arc::new(Shared::new(config, progress.clone()));
    let (elapsed, mut total) = run_threads(&shared, shutdown)?;
    // A request whose intended start came while every client was busy, and
    // that never began (the deadline or a stop signal came first), could not
    // start on time either: it is behind schedule as well as unfinished, as
    // the one that began late is. Every request began before now, so those
    // due by now and not begun are exactly the missed ones.
    if let (Some(rate), Some(planned), Some(t)) =
        (config.rate, config.planned(), shared.since_release())
    {
        total.missed_starts(
            schedule::Schedule::due_by(rate, planned, t).saturating_sub(total.begun()),
        );
    }
    let started_at = shared.released_at();
    // Whether the run was cut short is read once, after the last request
    // ended, so the report and the verdict agree.
    let signal = shutdown.interruption();
    let header = ReportHeader {
        tag: config.tag.clone(),
        url: config.url.clone(),
        clients: config.clients,
        // With --rate, --max-conns is the schedule's total (`rate.planned`),
        // not a count per client.
        conns_per_client: (config.duration.is_none() && config.rate.is_none())
            .then_some(config.conns_per_client),
        duration: config.duration,
        threads: config.threads,
        keep_alive: config.keep_alive,
        sources: config.sources.len(),
        rate: config.rate,
        rate_planned: config.rate.and(config.planned()),
        start_at: config.start_at,
        started_at,
    };
    let unfinished = unfinished(config, &total, &shared);
    let report = total.report(header, elapsed, unfinished, signal);
    // Every thread hands its counts over when it ends; one lost on the way
    // would make the report quietly short. Honest accounting means failing
    // loudly instead.
    let done = progress.done.load(Ordering::Relaxed);
    anyhow::ensure!(
        report.connections == done,
        "internal: {done} requests finished but {} were counted",
        report.connections
    );
    // With a deadline (an open model's `--duration`), planned requests may
    // be left unbegun: `unfinished` holds them.
    if let (Some(planned), None, None) = (config.planned(), config.duration, signal) {
        anyhow::ensure!(
            report.connections == planned,
            "internal: {planned} requests planned but {} were made",
            report.connections
        );
    }
    Ok(report)
}

/// A runtime of one thread: each of `--threads` runs one, with its share of
/// the clients (as wrk runs an event loop per thread). Threads are started
/// here, where failing to get one is an error, not inside tokio's
/// multi-thread runtime, which panics (and then hangs on its half-started
/// workers) when the OS refuses a thread (RLIMIT_NPROC, a cgroup's pids.max).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
}

/// The clients of share `k` of `n`: client i runs on thread i mod n.
fn spawn_share(
    shared: &Arc<Shared>,
    barrier: &Arc<Barrier>,
    k: usize,
    n: usize,
    spawn: &dyn Fn(
        std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ) -> JoinHandle<()>,
) -> Vec<JoinHandle<()>> {
    let clients = shared.config.clients;
    let mine = clients.saturating_sub(k as u64).div_ceil(n as u64);
    (0..mine)
        .map(|_| {
            let (shared, barrier) = (shared.clone(), barrier.clone());
            spawn(match shared.config.rate {
                Some(_) => Box::pin(clients::paced_client(shared, barrier)),
                None => Box::pin(clients::client(shared, barrier)),
            })
        })
        .collect()
}

/// Runs the clients on `config.threads` threads, each with a runtime of its
/// own, driven from this one; returns the time from the release to the end and
/// every thread's stats, merged. Every thread is joined before this returns.
fn run_threads(shared: &Arc<Shared>, shutdown: &Shutdown) -> anyhow::Result<(Duration, Stats)> {
    let threads = shared.config.threads.max(1);
    // +1: the driver waits too, so the clock starts when the clients are released.
    let barrier = Arc::new(Barrier::new(
        usize::try_from(shared.config.clients).unwrap_or(usize::MAX) + 1,
    ));
    // Every runtime is built before any client runs: a client's socket must
    // never take the descriptor a runtime still needs (under a low open-file
    // limit the same run would otherwise end in a count or an error by chance).
    let rt = runtime();
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let (built_tx, built_rx) = std::sync::mpsc::channel();
    let (handles_tx, handles_rx) = std::sync::mpsc::channel();
    let mut workers = Vec::new();
    let mut go = Vec::new();
    let mut failure = None;
    for k in 1..threads {
        let (shared, barrier, mut done, built, handles) = (
            shared.clone(),
            barrier.clone(),
            done_rx.clone(),
            built_tx.clone(),
            handles_tx.clone(),
        );
        let (go_tx, go_rx) = std::sync::mpsc::channel::<bool>();
        let spawned = std::thread::Builder::new()
            .name("lsbaws-blast".into())
            .spawn(move || -> Stats {
                let _ = stats::take_local();
                let rt = runtime();
                let _ = built.send(rt.as_ref().err().map(|e| e.to_string()));
                let (Ok(rt), Ok(true)) = (rt, go_rx.recv()) else {
                    return Stats::default();
                };
                rt.block_on(async {
                    let mine = spawn_share(&shared, &barrier, k, threads, &|f| tokio::spawn(f));
                    let _ = handles.send(mine);
                    // Runs the clients until the driver says the run is over.
                    let _ = done.wait_for(|d| *d).await;
                });
                // Dropping the runtime cancels what was aborted.
                drop(rt);
                stats::take_local().unwrap_or_default()
            });
        match spawned {
            Ok(worker) => {
                workers.push(worker);
                go.push(go_tx);
            }
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    drop((built_tx, handles_tx));
    for _ in 0..workers.len() {
        match built_rx.recv() {
            Ok(None) => {}
            Ok(Some(e)) => {
                failure.get_or_insert(e);
            }
            Err(_) => {
                failure.get_or_insert_with(|| "a blast thread ended early".into());
            }
        }
    }
    if let Err(e) = &rt {
        failure.get_or_insert_with(|| e.to_string());
    }
    let ran = match (rt, failure) {
        (Ok(rt), None) => {
            go.iter().for_each(|g| {
                let _ = g.send(true);
            });
            let mut handles = Vec::new();
            let mut lost = false;
            for _ in 0..workers.len() {
                match handles_rx.recv() {
                    Ok(mine) => handles.extend(mine),
                    Err(_) => lost = true,
                }
            }
            if lost {
                // A thread died before its clients existed: the release
                // barrier would wait for them forever.
                handles.iter().for_each(JoinHandle::abort);
                Err(anyhow::anyhow!(
                    "internal: a blast thread ended before its clients started"
                ))
            } else {
                let local = spawn_share(shared, &barrier, 0, threads, &|f| rt.spawn(f));
                handles.extend(local);
                let ran = rt.block_on(drive(shared.clone(), shutdown.clone(), &barrier, handles));
                drop(rt);
                ran
            }
        }
        (_, failure) => {
            // No client was started anywhere: the threads just end.
            go.iter().for_each(|g| {
                let _ = g.send(false);
            });
            let e = failure.unwrap_or_default();
            Err(anyhow::anyhow!(
                "cannot start {threads} threads for the blast: {e} (fewer --threads, or higher process and open-file limits)"
            ))
        }
    };
    let _ = done_tx.send(true);
    let mut total = stats::take_local().unwrap_or_default();
    for worker in workers {
        let stats = worker
            .join()
            .map_err(|_| anyhow::anyhow!("internal: a blast thread panicked"))?;
        total.merge(&stats);
    }
    Ok((ran?, total))
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

/// Spawns the clients, releases them together (at `--start-at`, when given),
/// waits for all (or aborts them on a stop request); returns the time from
/// the release to the end, or an error when a client task died.
async fn drive(
    shared: Arc<Shared>,
    shutdown: Shutdown,
    barrier: &Barrier,
    handles: Vec<JoinHandle<()>>,
) -> anyhow::Result<Duration> {
    let aborts: Vec<_> = handles.iter().map(JoinHandle::abort_handle).collect();
    // The clients make their sockets and wait at the barrier meanwhile.
    let stopped = match shared.config.start_at {
        Some(at) => schedule::wait_until(at, &shutdown).await,
        None => false,
    };
    let stopped = stopped
        || tokio::select! {
            _ = barrier.wait() => false,
            _ = shutdown.requested_async() => true,
        };
    if stopped {
        // Never released: nothing began, every client is unfinished, and
        // there is no release instant to report.
        aborts.iter().for_each(tokio::task::AbortHandle::abort);
        return Ok(Duration::ZERO);
    }
    let start = shared.released();
    shared.progress.released.store(true, Ordering::Relaxed);
    let joined = tokio::select! {
        joined = join_clients(handles) => Some(joined),
        _ = shutdown.requested_async() => None,
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
        ..ReportHeader::default()
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
