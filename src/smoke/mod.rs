//! The smoke engine: the CI job in one sequence.
//!
//! Owns the order and the verdict: start the server (`server`), wait until it
//! accepts, blast it, audit its whole process tree (settling), stop it, list
//! what it left behind, stop that too, and judge. Takes the stop request as an
//! input: a stop signal in any phase ends the run with no verdict, after the
//! same clean-up. Must never fork this process (it has threads), never leave a
//! process or a zombie of its own behind, and never print (`cmd::smoke` renders
//! the [`SmokeReport`]).

mod report;
mod server;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use report::SmokeReport;

use crate::audit::{self, AuditConfig, AuditReport, Scope, leftovers};
use crate::blast::{self, BlastConfig, ErrorKind, Load, Progress, RequestSpec};
use crate::shutdown::Shutdown;
use server::{ServerProcess, Start, describe_exit};

/// Which server to test.
#[derive(Debug, Clone)]
pub enum ServerSpec {
    /// `lsbaws serve` re-executed from this binary, with this `--reaper` and
    /// optional `--cgi` program.
    BuiltIn {
        reaper: String,
        cgi: Option<PathBuf>,
    },
    /// The user's command; `{port}` already replaced.
    Command { argv: Vec<String>, port: u16 },
}

/// A validated smoke run.
#[derive(Debug, Clone)]
pub struct SmokeConfig {
    pub server: ServerSpec,
    /// Overrides the URL blasted (and the address waited for); `{port}` in it
    /// is the server's port.
    pub url: Option<String>,
    pub ready_timeout: Duration,
    pub grace: Duration,
    pub settle: Duration,
    pub max_zombies: u64,
    pub max_orphans: u64,
    /// The burst; its validation ran before any server started.
    pub load: Load,
    pub max_errors: u64,
}

/// How long processes still running when the server exited get to finish on
/// their own before they count as left behind (a worker that exits when it
/// sees its master gone needs a moment).
const STRAGGLERS: Duration = Duration::from_millis(500);

/// Bound on stopping what the server left behind, whatever it is.
const CLEANUP_LIMIT: Duration = Duration::from_secs(3);

/// Grace between SIGTERM and SIGKILL for what the server left behind.
const LEFTOVER_GRACE: Duration = Duration::from_millis(200);

impl SmokeConfig {
    /// The blast of `url` this run makes, checked the way `lsbaws blast` checks it.
    pub fn blast_config(&self, url: &str) -> anyhow::Result<BlastConfig> {
        BlastConfig::new(url, &self.load, &RequestSpec::default(), self.max_errors)
    }
}

/// Runs the whole job. Errors (exit 2) only when the server could not be
/// started or reached, or the blast could not be set up; then, too, the server
/// and everything it started are stopped first. A stop request gives a report
/// marked interrupted, after the same clean-up.
pub fn run(
    config: &SmokeConfig,
    shutdown: &Shutdown,
    progress: &Arc<Progress>,
) -> anyhow::Result<SmokeReport> {
    let started = Instant::now();
    // Orphans of the server (daemons, children of a server that died) come to
    // smoke instead of init, so smoke can list, stop and reap them.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let mut server = match ServerProcess::start(config, shutdown) {
        Ok(Start::Ready(server)) => server,
        Ok(Start::Interrupted(server)) => {
            return Ok(finish(config, server, Found::default(), shutdown, started));
        }
        Err(err) => {
            // The server is gone (start dropped it); what it started may not be.
            leftovers::stop_children(LEFTOVER_GRACE, CLEANUP_LIMIT, &[]);
            return Err(err);
        }
    };
    let mut found = Found::default();
    match test(config, &mut server, &mut found, shutdown, progress) {
        Ok(()) => Ok(finish(config, Some(server), found, shutdown, started)),
        Err(err) => {
            server.stop(config.grace.min(server::STOP_GRACE), shutdown);
            server.kill_group();
            leftovers::stop_children(LEFTOVER_GRACE, CLEANUP_LIMIT, &[]);
            Err(err)
        }
    }
}

/// The phases between start and stop: ready, blast, audit. Returns early (Ok)
/// on a stop request; what ran is in `found`.
fn test(
    config: &SmokeConfig,
    server: &mut ServerProcess,
    found: &mut Found,
    shutdown: &Shutdown,
    progress: &Arc<Progress>,
) -> anyhow::Result<()> {
    found.url = match &config.url {
        Some(url) => url.replace("{port}", &server.addr.port().to_string()),
        None => format!("http://{}/{}", server.addr, server.path),
    };
    // Checked the way `lsbaws blast` checks it; its resolved address is where
    // readiness is awaited and what is blasted.
    let blast = config.blast_config(&found.url)?;
    let addr = blast.addr;
    if !matches!(config.server, ServerSpec::BuiltIn { .. })
        && !server.wait_ready(addr, config.ready_timeout, shutdown)?
    {
        return Ok(());
    }
    // Raised now, not before the server started: it keeps the limits it was
    // given; only the load generator needs more descriptors.
    found.warnings = blast::preflight(&blast);
    found.blast = Some(blast::run(&blast, shutdown, progress)?);
    if shutdown.requested() {
        return Ok(());
    }

    // Audit while the server still runs: its zombies are only visible as its
    // children. The roots are the process smoke started and whoever below
    // smoke owns the listening socket: a launcher script may have daemonized
    // the real server out of its own tree (to smoke, the subreaper). A
    // listener that is not below smoke is not the server's, and not audited.
    let mut roots = Vec::new();
    found.early_exit = server.try_exit();
    if found.early_exit.is_none() {
        roots.push(server.pid as i32);
    }
    let below_server = crate::proc::descendants(server.pid as i32).unwrap_or_default();
    for owner in server::owners_below_smoke(addr) {
        // An owner inside the server's own tree is audited with it already.
        if !roots.contains(&owner) && !below_server.iter().any(|p| p.pid == owner) {
            roots.push(owner);
            found.owners.push(owner);
        }
    }
    if !roots.is_empty() {
        let mut audit_config = AuditConfig::new(Scope::Trees(roots));
        audit_config.max_zombies = config.max_zombies;
        audit_config.settle = config.settle;
        found.audit = match audit::settle(&audit_config, shutdown) {
            Ok(report) => Some(report),
            // The server (and every owner) exited meanwhile: nothing to audit,
            // which the verdict reports.
            Err(e) if e.is::<audit::Gone>() => None,
            Err(e) => return Err(e),
        };
    }
    Ok(())
}

/// What the phases that ran found.
#[derive(Default)]
struct Found {
    url: String,
    /// What the load generator lacked (descriptors, ports), said before the blast.
    warnings: Vec<String>,
    blast: Option<blast::BlastReport>,
    audit: Option<AuditReport>,
    /// Listening-socket owners outside the server's tree (a daemonized server):
    /// not leftovers.
    owners: Vec<i32>,
    /// The server's status when it had exited before the audit.
    early_exit: Option<std::process::ExitStatus>,
}

/// Stops the server, lists and stops what it left behind, and judges (no
/// verdict after a stop request).
fn finish(
    config: &SmokeConfig,
    server: Option<ServerProcess>,
    found: Found,
    shutdown: &Shutdown,
    started: Instant,
) -> SmokeReport {
    let Some(mut server) = server else {
        // A stop came before the server existed: nothing ran, nothing to stop.
        return report(
            config,
            None,
            found,
            Vec::new(),
            (None, true),
            shutdown,
            started,
        );
    };
    let grace = if shutdown.requested() {
        config.grace.min(server::STOP_GRACE)
    } else {
        config.grace
    };
    let (exit, graceful) = server.stop(grace, shutdown);
    // Exited between the audit and the stop: still a death during the run.
    let mut found = found;
    if found.early_exit.is_none() {
        found.early_exit = server.exited_unasked;
    }
    // The server is reaped: every process still below smoke outlived it.
    let orphans = left_behind(&found.owners, shutdown);
    server.kill_group();
    // Unkillable within the bound (uninterruptible sleep): reported, not
    // waited for.
    let unstopped = leftovers::stop_children(LEFTOVER_GRACE, CLEANUP_LIMIT, &[]);
    let mut report = report(
        config,
        Some(&server),
        found,
        orphans,
        (exit, graceful),
        shutdown,
        started,
    );
    report.unstopped = unstopped;
    report
}

/// The processes below smoke once the server is gone, except the listening
/// socket's owners (a daemonized server is not a leak), after the stragglers
/// had a moment to exit on their own.
fn left_behind(owners: &[i32], shutdown: &Shutdown) -> Vec<leftovers::Leftover> {
    let deadline = Instant::now() + STRAGGLERS;
    loop {
        leftovers::reap_exited();
        // An unreadable /proc leaves nothing to list; the clean-up that follows
        // still stops every child of ours.
        let left = leftovers::below_self(owners).unwrap_or_default();
        if left.is_empty() || Instant::now() >= deadline || shutdown.urgent() {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Judges the run.
fn report(
    config: &SmokeConfig,
    server: Option<&ServerProcess>,
    found: Found,
    orphans: Vec<leftovers::Leftover>,
    (exit, graceful): (Option<std::process::ExitStatus>, bool),
    shutdown: &Shutdown,
    started: Instant,
) -> SmokeReport {
    let signal = shutdown.interruption();
    let server_exit = match server {
        Some(_) => describe_exit(exit, graceful),
        None => "not started".to_string(),
    };
    let mut reasons = Vec::new();
    // Requests the load generator itself could not make say nothing about the
    // server: no verdict then, rather than a FAIL blamed on it (or a PASS of a
    // server that was not really tested).
    let inconclusive = found.blast.as_ref().and_then(|b| {
        let fds = b.errors_of(ErrorKind::FdExhausted);
        let ports = b.errors_of(ErrorKind::AddrNotAvailable);
        let unstarted = if b.interrupted { 0 } else { b.unfinished };
        let mut why = Vec::new();
        if fds > 0 {
            why.push(format!(
                "{fds} requests found no file descriptor (raise `ulimit -n`)"
            ));
        }
        if ports > 0 {
            why.push(format!(
                "{ports} requests found no ephemeral port (fewer clients, or a wider net.ipv4.ip_local_port_range)"
            ));
        }
        if unstarted > 0 {
            why.push(format!(
                "{unstarted} requests never started before --duration ended (fewer clients or a longer --duration)"
            ));
        }
        (!why.is_empty()).then(|| {
            format!(
                "the load generator could not make every request: {}",
                why.join("; ")
            )
        })
    });
    if let Some(b) = &found.blast {
        let failed = b.errors_total();
        if failed > config.max_errors {
            reasons.push(format!(
                "{failed} of {} requests failed (limit {})",
                b.connections, config.max_errors
            ));
        }
    }
    match &found.audit {
        Some(a) if a.count > config.max_zombies => {
            reasons.push(format!(
                "{} left (limit {})",
                crate::text::count(a.count, "zombie", "zombies"),
                config.max_zombies
            ));
        }
        Some(_) => {}
        None => reasons.push(format!(
            "the server exited during the run ({server_exit}): nothing to audit"
        )),
    }
    if let (Some(status), Some(_)) = (found.early_exit, &found.audit) {
        // A launcher that daemonized the server exits 0; a crash does not.
        if !status.success() {
            reasons.push(format!(
                "the server exited during the run ({})",
                describe_exit(Some(status), true)
            ));
        }
    }
    let clean_exit = exit.is_some_and(|s| s.success()) && graceful;
    if found.audit.is_some() && !clean_exit && matches!(config.server, ServerSpec::BuiltIn { .. }) {
        // The built-in server promises a clean exit on SIGTERM; other servers
        // may die of the signal by design, so theirs is only reported.
        reasons.push(format!(
            "the server did not shut down cleanly ({server_exit})"
        ));
    }
    if orphans.len() as u64 > config.max_orphans {
        reasons.push(format!(
            "{} left behind by the server (limit {})",
            crate::text::count(orphans.len() as u64, "process", "processes"),
            config.max_orphans
        ));
    }
    SmokeReport {
        server: server.map(|s| s.command_line.clone()).unwrap_or_default(),
        server_pid: server.map_or(0, |s| s.pid),
        url: found.url,
        blast: found.blast,
        audit: found.audit,
        orphans,
        server_exit,
        server_summary: server.and_then(ServerProcess::summary_line),
        max_errors: config.max_errors,
        max_zombies: config.max_zombies,
        max_orphans: config.max_orphans,
        pass: (signal.is_none() && inconclusive.is_none()).then_some(reasons.is_empty()),
        reasons: if signal.is_some() {
            Vec::new()
        } else {
            reasons
        },
        inconclusive: if signal.is_some() { None } else { inconclusive },
        warnings: found.warnings,
        elapsed_s: started.elapsed().as_secs_f64(),
        interrupted: signal.is_some(),
        signal,
        unstopped: Vec::new(),
    }
}
