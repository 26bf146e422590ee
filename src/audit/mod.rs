//! The audit engine: which processes of a tree are defunct, read from /proc.
//!
//! [`AuditConfig`] → [`audit`] (one scan through `crate::proc`) → [`AuditReport`]
//! (plain data). [`settle`] and [`watch`] repeat [`audit`] and take a
//! [`Shutdown`] as an input; `smoke` calls them as a library. This module
//! decides which processes count. It must never print (`cmd::audit` renders),
//! never treat an unreadable entry as a vanished one, and never let a process
//! that vanishes mid-scan fail the audit.

mod config;
pub mod exec;
pub mod leftovers;
mod report;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, bail};

pub use config::{AuditConfig, Scope, WatchConfig};
pub use report::{AuditReport, Sample, ScanMethod, Zombie, ZombieGroup};

pub use crate::proc::Gone;
use crate::proc::{ProcReader, ProcStat};
use crate::shutdown::Shutdown;
use report::round2;

/// Pause between the scans of [`settle`].
const SETTLE_POLL: Duration = Duration::from_millis(50);

/// One scan of `config.scope`. Errors when the target pid does not exist
/// ([`Gone`]), or /proc cannot be read.
pub fn audit(config: &AuditConfig) -> Result<AuditReport> {
    // Other users' processes may be hidden from this one: a full scan would
    // quietly count fewer, so only the children mode (which can tell a hidden
    // child from a gone one) goes on.
    let hidden = (config.proc_root == std::path::Path::new(crate::proc::ROOT))
        .then(crate::proc::hidden_pids)
        .flatten();
    if let (Some(why), Scope::Tree(_) | Scope::Trees(_) | Scope::All) = (&hidden, &config.scope) {
        bail!(
            "{why}: other users' processes are invisible here, so a count could be short; run as root, or as a member of the mount's gid= group"
        );
    }
    let mut procs = ProcReader::new(&config.proc_root);
    let ticks = crate::proc::ticks_per_second() as f64;
    if let (Some(why), Some(pid)) = (&hidden, config.scope.pid())
        && procs.target(pid).is_err_and(|e| e.is::<Gone>())
        && crate::proc::exists(pid)
    {
        bail!("pid {pid} exists, but {why} hides it from this user; run as root");
    }
    match &config.scope {
        Scope::Children(pid) => children(config, &mut procs, ticks, *pid, hidden.is_some()),
        Scope::Tree(pid) => tree(config, &mut procs, ticks, &[*pid]),
        Scope::Trees(roots) => tree(config, &mut procs, ticks, roots),
        Scope::All => all(config, &mut procs, ticks),
    }
}

/// Re-scans until at most `config.max_zombies` count, `config.settle` has
/// passed, or a stop is requested, and returns the last report: a correct
/// reaper's zombies last an instant, a leak's stay. With a zero `settle` this
/// is one [`audit`]. A stop request marks the report interrupted (no verdict).
pub fn settle(config: &AuditConfig, shutdown: &Shutdown) -> Result<AuditReport> {
    let deadline = Instant::now() + config.settle;
    loop {
        let mut report = audit(config)?;
        let now = Instant::now();
        let done = report.count <= config.max_zombies || now >= deadline;
        if done || shutdown.sleep(SETTLE_POLL.min(deadline - now)) {
            if let Some(signal) = shutdown.interruption() {
                report.interrupted = true;
                report.signal = Some(signal);
            }
            return Ok(report);
        }
    }
}

/// Scans every `watch.interval` (`watch.count` times, until a stop request,
/// until `on_sample` returns false, or until an error) and hands each sample to
/// `on_sample`; returns the last report, whose verdict is the command's
/// (interrupted when a stop ended it).
/// A target whose pid is taken over by another process (its start time
/// changes) is an error: the samples would describe a stranger.
pub fn watch(
    config: &AuditConfig,
    watch: &WatchConfig,
    shutdown: &Shutdown,
    mut on_sample: impl FnMut(&Sample) -> Result<bool>,
) -> Result<Option<AuditReport>> {
    let start = Instant::now();
    let mut last: Option<AuditReport> = None;
    let mut identity = None;
    let mut taken: u64 = 0;
    while watch.count.is_none_or(|k| taken < k) {
        // Samples are due at fixed times from the start, so a slow scan does not
        // stretch the series.
        let due = start
            + watch
                .interval
                .saturating_mul(u32::try_from(taken).unwrap_or(u32::MAX));
        let wait = due.saturating_duration_since(Instant::now());
        if shutdown.sleep(wait) {
            break;
        }
        let report = audit(config)?;
        if let Some(pid) = config.scope.pid() {
            let now = target_identity(config, pid)?;
            match &identity {
                None => identity = Some(now),
                // The start time alone tells processes apart: a process that
                // execs or renames itself (setproctitle) is still the same one.
                Some(was) if was.0 != now.0 => bail!(
                    "pid {pid} ({}) exited and the pid was reused by another process ({}); stopping the watch",
                    crate::text::escape(&was.1),
                    crate::text::escape(&now.1)
                ),
                Some(_) => {}
            }
        }
        let sample = Sample::new(&report, SystemTime::now(), start.elapsed().as_secs_f64());
        let more = on_sample(&sample)?;
        last = Some(report);
        taken += 1;
        if !more {
            break;
        }
    }
    if let (Some(report), Some(signal)) = (last.as_mut(), shutdown.interruption()) {
        report.interrupted = true;
        report.signal = Some(signal);
    }
    Ok(last)
}

/// (start time, comm) of `pid`: what tells one process from a later one that
/// got the same pid.
fn target_identity(config: &AuditConfig, pid: i32) -> Result<(u64, String)> {
    let stat = ProcReader::new(&config.proc_root).target(pid)?;
    Ok((stat.starttime, stat.comm))
}

/// Direct children, fast path first.
///
/// The fast path reads `PID/task/*/children` and stats only the listed pids.
/// That file is a hint: the kernel walks the child list one record at a time
/// and, whenever the record it stopped at is gone, restarts by position. That
/// happens between two pages of a read (one 4 KiB page per `read`), but also
/// between any two records when a child is reaped meanwhile, so a reap during
/// the read can skip children at any list size (the comment in the kernel's
/// `get_children_pid` says so). A skip can only hide processes, never invent
/// them, and every listed child is confirmed by its own `stat` (state Z, ppid
/// N). So a fast count above the limit is a sound finding and is returned as
/// is; a count within the limit might be an undercount and is confirmed by a
/// full scan, unless nothing at all was listed by a single-threaded target (the
/// walk always finds the first entry of a non-empty list, and with one thread
/// no child can move between `children` files mid-read). A correct server's
/// idle state (no children) and a leak both stay on the fast path, at any
/// number of children; a busy correct server pays a full scan (after the listed
/// stats), which is what a verdict of "clean" needs. A fast finding's live count
/// can be short by the skipped children: `live_children` says so.
fn children(
    config: &AuditConfig,
    procs: &mut ProcReader,
    ticks: f64,
    pid: i32,
    hidden: bool,
) -> Result<AuditReport> {
    let target = procs.target(pid)?;
    let uptime = procs.uptime()?;
    if let Some(listed) = procs.listed_children(pid) {
        let kids = procs.stat_many(&listed.pids, |s| s.ppid == pid)?;
        let report = judge(config, "children", Some(&target), &kids, uptime, ticks);
        let exact_empty = listed.pids.is_empty() && listed.threads == 1;
        if report.count > config.max_zombies || exact_empty {
            return Ok(AuditReport {
                scan: ScanMethod::ChildrenFile,
                ..report
            });
        }
    }
    let kids = if hidden {
        // Other users' processes are hidden from us: a child listed by the
        // kernel before the scan, absent from it and still existing after it
        // was there all along, unseen. Then the count could be short: an
        // error, not a skip.
        let listed = procs
            .listed_children(pid)
            .map(|l| l.pids)
            .unwrap_or_default();
        let seen = procs.scan(|s| s.ppid == pid || listed.contains(&s.pid))?;
        if let Some(unseen) = listed
            .iter()
            .find(|c| !seen.iter().any(|k| k.pid == **c) && crate::proc::exists(**c))
        {
            bail!(
                "child {unseen} of pid {pid} exists but /proc does not show it (hidepid): a count could be short; run as root"
            );
        }
        seen.into_iter().filter(|s| s.ppid == pid).collect()
    } else {
        procs.scan(|s| s.ppid == pid)?
    };
    Ok(judge(
        config,
        "children",
        Some(&target),
        &kids,
        uptime,
        ticks,
    ))
}

/// All descendants: one full scan, then a walk down the parent links.
fn tree(
    config: &AuditConfig,
    procs: &mut ProcReader,
    ticks: f64,
    roots: &[i32],
) -> Result<AuditReport> {
    // The first root that exists names the report; the others (smoke's
    // listener owners) may have gone meanwhile.
    let mut target = None;
    let mut live_roots = Vec::new();
    for &root in roots {
        match procs.target(root) {
            Ok(stat) => {
                target.get_or_insert(stat);
                live_roots.push(root);
            }
            Err(e) if e.is::<Gone>() && roots.len() > 1 => {}
            Err(e) => return Err(e),
        }
    }
    let Some(target) = target else {
        return Err(Gone(roots.first().copied().unwrap_or(0)).into());
    };
    let uptime = procs.uptime()?;
    let everyone = procs.scan(|_| true)?;
    let descendants: Vec<ProcStat> = crate::proc::walk(&everyone, &live_roots, &[])
        .into_iter()
        .cloned()
        .collect();
    Ok(judge(
        config,
        "tree",
        Some(&target),
        &descendants,
        uptime,
        ticks,
    ))
}

/// Every zombie on the machine, grouped by parent.
fn all(config: &AuditConfig, procs: &mut ProcReader, ticks: f64) -> Result<AuditReport> {
    let uptime = procs.uptime()?;
    let everyone = procs.scan(|_| true)?;
    let mut report = judge(config, "all", None, &everyone, uptime, ticks);
    let comm_of: HashMap<i32, &str> = everyone.iter().map(|p| (p.pid, p.comm.as_str())).collect();
    let mut counts: HashMap<i32, u64> = HashMap::new();
    for z in &report.zombies {
        *counts.entry(z.ppid).or_default() += 1;
    }
    let mut groups: Vec<ZombieGroup> = counts
        .into_iter()
        .map(|(ppid, count)| ZombieGroup {
            ppid,
            comm: comm_of.get(&ppid).unwrap_or(&"?").to_string(),
            count,
        })
        .collect();
    groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.ppid.cmp(&b.ppid)));
    report.groups = Some(groups);
    report.live_children = None;
    Ok(report)
}

/// Sorts `procs` into counted zombies, too-young zombies and live ones.
fn judge(
    config: &AuditConfig,
    scope: &'static str,
    target: Option<&ProcStat>,
    procs: &[ProcStat],
    uptime: f64,
    ticks: f64,
) -> AuditReport {
    let min_age = config.min_age.as_secs_f64();
    let mut zombies = Vec::new();
    let mut younger = 0;
    let mut live = 0;
    for p in procs {
        if !p.is_zombie() {
            live += 1;
            continue;
        }
        // Age on the boot clock: uptime and starttime share it, so a wall-clock
        // step cannot make ages jump, and both have 10 ms resolution where the
        // btime of /proc/stat has whole seconds.
        let age_s = (uptime - p.starttime as f64 / ticks).max(0.0);
        if age_s < min_age {
            younger += 1;
            continue;
        }
        zombies.push(Zombie {
            pid: p.pid,
            ppid: p.ppid,
            state: p.state,
            age_s: round2(age_s),
            comm: p.comm.clone(),
        });
    }
    zombies.sort_by_key(|z| z.pid);
    AuditReport {
        scope,
        pid: target.map(|t| t.pid),
        comm: target.map(|t| t.comm.clone()),
        live_children: Some(live),
        count: zombies.len() as u64,
        zombies,
        younger,
        min_age_s: min_age,
        max_zombies: config.max_zombies,
        groups: None,
        scan: ScanMethod::Full,
        interrupted: false,
        signal: None,
    }
}
