//! The merge engine: blast reports from many runs (many machines, many pods)
//! added into one, exactly.
//!
//! Counts, error kinds, statuses, timeouts, slow connects, sockets and
//! unfinished requests are summed; the HDR histograms are added, so every
//! percentile of the total is the percentile of all samples together (never
//! an average of percentiles); elapsed runs from the first release to the last
//! end. Reports that cannot be added exactly (another URL, keep-alive on one
//! side only, another schema or histogram settings) are refused by name.
//!
//! - `input`: the input text → JSON documents with their positions.
//! - `shard`: one document → a checked [`shard::Shard`].
//!
//! Must never read files or stdin, print, or return a total it could not add
//! exactly: `cmd::merge` reads, `render::merge` draws.

pub mod input;
pub mod shard;

use std::collections::BTreeMap;
use std::time::SystemTime;

use anyhow::{Context, ensure};
use serde::Serialize;

use crate::blast::{BlastReport, Histograms, LatencyMs, SCHEMA, Timeouts, histogram};
use crate::shutdown::Signal;
use shard::Shard;

/// One input's line in the shard table (and in `--json`'s `shards`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardRow {
    pub tag: String,
    /// Where it was read: `FILE line N` or `stdin line N`.
    pub source: String,
    pub clients: u64,
    pub connections: u64,
    pub ok: u64,
    pub errors: u64,
    pub unfinished: u64,
    /// Its release − the earliest release of all shards, in ms (clocks of
    /// different machines included); None when it was never released.
    pub started_ms: Option<f64>,
    /// `--start-at`'s own skew, when the run had one.
    pub release_skew_ms: Option<f64>,
    pub interrupted: bool,
}

/// The sum, and the rows it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeReport {
    pub shards: Vec<ShardRow>,
    /// A blast report like any other: `merge --json` prints it, so merges
    /// can be merged again.
    pub total: BlastReport,
    /// One line each, for stderr: things that are not wrong but look it.
    pub warnings: Vec<String>,
}

/// Adds `shards`. `tag` names the total (default `merge of N shards`).
pub fn merge(shards: &[Shard], tag: Option<&str>) -> anyhow::Result<MergeReport> {
    let first = shards.first().context("no blast report in the input")?;
    for s in &shards[1..] {
        ensure!(
            s.url == first.url,
            "{}: url {} differs from {} in {}: reports of different targets do not add up",
            s.at,
            crate::text::escape(&s.url),
            crate::text::escape(&first.url),
            first.at
        );
        ensure!(
            s.keep_alive == first.keep_alive,
            "{}: keep_alive {} differs from {} in {}: connections and requests would mix",
            s.at,
            s.keep_alive,
            first.keep_alive,
            first.at
        );
    }
    let sum = |f: fn(&Shard) -> u64, what: &str| -> anyhow::Result<u64> {
        shards
            .iter()
            .try_fold(0u64, |a, s| a.checked_add(f(s)))
            .with_context(|| format!("the sum of {what} overflows"))
    };
    let mut errors = first.errors.clone();
    let mut status: BTreeMap<String, u64> = BTreeMap::new();
    let mut hist = Histograms {
        total: histogram::new(),
        connect: histogram::new(),
        first_byte: histogram::new(),
    };
    for s in shards {
        if !std::ptr::eq(s, first) {
            for (kind, n) in &s.errors {
                let slot = errors.entry(kind).or_insert(0);
                *slot = slot.checked_add(*n).context("error counts overflow")?;
            }
        }
        for (code, n) in &s.status {
            let slot = status.entry(code.clone()).or_insert(0);
            *slot = slot.checked_add(*n).context("status counts overflow")?;
        }
        // Same settings on both sides (checked by `shard::read`).
        let add = |into: &mut hdrhistogram::Histogram<u64>, from, name: &str| {
            into.add(from)
                .map_err(|e| anyhow::anyhow!("{}: cannot add histograms.{name}: {e:?}", s.at))
        };
        add(&mut hist.total, &s.total, "total")?;
        add(&mut hist.connect, &s.connect, "connect")?;
        add(&mut hist.first_byte, &s.first_byte, "first_byte")?;
    }
    // Shards stopped before their release have no instants and add no time.
    let started_at = shards.iter().filter_map(|s| s.started_at).min();
    let ended_at = shards.iter().filter_map(|s| s.ended_at).max();
    let elapsed_s = match (started_at, ended_at) {
        (Some(start), Some(end)) => end.duration_since(start).unwrap_or_default().as_secs_f64(),
        _ => 0.0,
    };
    let connections = sum(|s| s.connections, "connections")?;
    let total = BlastReport {
        schema: SCHEMA,
        tag: tag.map_or_else(
            || {
                let n = crate::text::count(shards.len() as u64, "shard", "shards");
                format!("merge of {n}")
            },
            str::to_string,
        ),
        url: first.url.clone(),
        clients: sum(|s| s.clients, "clients")?,
        // A shape all shards share, or none.
        conns_per_client: all_same(shards.iter().map(|s| s.conns_per_client)).flatten(),
        duration_s: all_same(shards.iter().map(|s| s.duration_s)).flatten(),
        threads: usize::try_from(sum(|s| s.threads, "threads")?).unwrap_or(usize::MAX),
        keep_alive: first.keep_alive,
        connections,
        ok: sum(|s| s.ok, "ok")?,
        errors,
        timeouts: Timeouts {
            connect: sum(|s| s.timeouts.connect, "timeouts")?,
            write: sum(|s| s.timeouts.write, "timeouts")?,
            read: sum(|s| s.timeouts.read, "timeouts")?,
        },
        status,
        started_at,
        ended_at,
        elapsed_s,
        conns_per_s: if elapsed_s > 0.0 {
            connections as f64 / elapsed_s
        } else {
            0.0
        },
        latency_ms: LatencyMs::of(&hist.total),
        connect_ms: LatencyMs::of(&hist.connect),
        first_byte_ms: LatencyMs::of(&hist.first_byte),
        histograms: hist,
        slow_connects: sum(|s| s.slow_connects, "slow_connects")?,
        sockets_opened: sum(|s| s.sockets_opened, "sockets_opened")?,
        unfinished: sum(|s| s.unfinished, "unfinished")?,
        interrupted: shards.iter().any(|s| s.signal.is_some()),
        signal: shards.iter().find_map(|s| s.signal),
    };
    Ok(MergeReport {
        shards: shards.iter().map(|s| row(s, started_at)).collect(),
        total,
        warnings: duplicate_tags(shards),
    })
}

/// The one value every item has, if they agree.
fn all_same<T: PartialEq>(mut items: impl Iterator<Item = T>) -> Option<T> {
    let first = items.next()?;
    items.all(|x| x == first).then_some(first)
}

/// Marks a total as cut short by a stop signal while its input was read.
pub fn interrupted(report: &mut MergeReport, signal: Signal) {
    report.total.interrupted = true;
    report.total.signal.get_or_insert(signal);
}

fn row(s: &Shard, first_start: Option<SystemTime>) -> ShardRow {
    ShardRow {
        tag: s.tag.clone(),
        source: s.at.to_string(),
        clients: s.clients,
        connections: s.connections,
        ok: s.ok,
        errors: s.errors_total(),
        unfinished: s.unfinished,
        started_ms: s
            .started_at
            .zip(first_start)
            .map(|(at, first)| at.duration_since(first).unwrap_or_default().as_secs_f64() * 1000.0),
        release_skew_ms: s.release_skew_ms,
        interrupted: s.signal.is_some(),
    }
}

/// The same tag twice is allowed (merging a report with itself is exact) but
/// usually means one run's output was fed in twice, or a retried pod's too.
fn duplicate_tags(shards: &[Shard]) -> Vec<String> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for s in shards {
        *seen.entry(&s.tag).or_default() += 1;
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(tag, n)| {
            format!(
                "tag {:?} appears {n} times: the same run's report twice, or a retried pod?",
                crate::text::escape(tag)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
