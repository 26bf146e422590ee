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
//! Reports are added one at a time as they are read ([`Merger::add`]), so
//! the memory a merge needs is a few histograms and one row per input,
//! whatever the number of inputs.
//!
//! - `input`: the input bytes → JSON documents with their positions.
//! - `strict`: JSON values that refuse a repeated key.
//! - `shard`: one document → a [`shard::Shard`]; `check`: the invariants of
//!   a blast report it must hold; [`read`] does both.
//!
//! Must never read files or stdin, print, or return a total it could not add
//! exactly (a run given twice included): `cmd::merge` reads, `render::merge`
//! draws.

mod check;
pub mod input;
pub mod shard;
mod strict;

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use anyhow::{Context, bail, ensure};
use serde::{Serialize, Serializer};

use crate::blast::{
    BlastReport, Histograms, LatencyMs, RateReport, SCHEMA, Timeouts, format_time, histogram,
};
use crate::shutdown::Signal;
use shard::{Run, Shard};

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

/// One document as a checked shard, or why it is not one (a report that
/// breaks an invariant of blast's is never added).
pub fn read(doc: &input::Document) -> anyhow::Result<Shard> {
    let (shard, rows) = shard::parse(doc)?;
    check::shard(&shard, rows.as_deref())?;
    Ok(shard)
}

/// The sum, and the rows it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeReport {
    pub shards: Vec<ShardRow>,
    /// Every blast run in the total (through merges of merges), so that a
    /// later merge can refuse one given twice.
    pub runs: Vec<Run>,
    /// A blast report like any other: `merge --json` prints it, so merges
    /// can be merged again.
    pub total: BlastReport,
    /// One line each, for stderr: things that are not wrong but look it.
    pub warnings: Vec<String>,
}

impl Serialize for Run {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            tag: &'a str,
            started_at: Option<String>,
        }
        Wire {
            tag: &self.tag,
            started_at: self.started_at.map(format_time),
        }
        .serialize(s)
    }
}

/// A value every input must share to be added (the URL, keep-alive), or
/// one the total keeps only when all agree (the shape of the run).
#[derive(Debug, Clone)]
enum Same<T> {
    None,
    One(T),
    Differ,
}

impl<T: PartialEq> Same<T> {
    fn add(&mut self, v: T) {
        match self {
            Same::None => *self = Same::One(v),
            Same::One(first) if *first == v => {}
            _ => *self = Same::Differ,
        }
    }
}

impl<T: Clone> Same<Option<T>> {
    fn agreed(&self) -> Option<T> {
        match self {
            Same::One(v) => v.clone(),
            _ => None,
        }
    }
}

/// The sum so far: every count, the histograms, and a row per input.
#[derive(Debug)]
pub struct Merger {
    /// The first input's URL, keep-alive and position: every other must match.
    first: Option<(String, bool, String)>,
    /// Whether inputs ran at a --rate: all must, or none.
    open_model: Option<bool>,
    rows: Vec<(ShardRow, Option<SystemTime>)>,
    runs: Vec<Run>,
    /// Each released run's identity → the input it came in.
    seen: HashMap<Run, String>,
    clients: u64,
    conns_per_client: Same<Option<u64>>,
    duration_s: Same<Option<f64>>,
    threads: u64,
    connections: u64,
    ok: u64,
    errors: BTreeMap<&'static str, u64>,
    timeouts: Timeouts,
    status: BTreeMap<String, u64>,
    started_at: Option<SystemTime>,
    ended_at: Option<SystemTime>,
    hist: Histograms,
    tls_resumed: u64,
    slow_connects: u64,
    sockets_opened: u64,
    unfinished: u64,
    sources: u64,
    start_at: Same<Option<SystemTime>>,
    release_skew_ms: Option<f64>,
    behind_schedule: u64,
    /// Summed targets and plans; the achieved rates' sum, None once one is.
    rate: Option<(f64, u64, Option<f64>)>,
    signal: Option<Signal>,
}

impl Default for Merger {
    fn default() -> Self {
        Merger::new()
    }
}

/// `a + b`, or an error naming what overflowed.
fn add(a: &mut u64, b: u64, what: &str) -> anyhow::Result<()> {
    *a = a
        .checked_add(b)
        .with_context(|| format!("the sum of {what} overflows"))?;
    Ok(())
}

impl Merger {
    pub fn new() -> Merger {
        Merger {
            first: None,
            open_model: None,
            rows: Vec::new(),
            runs: Vec::new(),
            seen: HashMap::new(),
            clients: 0,
            conns_per_client: Same::None,
            duration_s: Same::None,
            threads: 0,
            connections: 0,
            ok: 0,
            errors: crate::blast::ErrorKind::ALL
                .iter()
                .map(|k| (k.key(), 0))
                .collect(),
            timeouts: Timeouts::default(),
            status: BTreeMap::new(),
            started_at: None,
            ended_at: None,
            hist: Histograms {
                total: histogram::new(),
                connect: histogram::new(),
                first_byte: histogram::new(),
                tls_handshake: histogram::new(),
                start_lag: histogram::new(),
            },
            tls_resumed: 0,
            slow_connects: 0,
            sockets_opened: 0,
            unfinished: 0,
            sources: 0,
            start_at: Same::None,
            release_skew_ms: None,
            behind_schedule: 0,
            rate: None,
            signal: None,
        }
    }

    /// Inputs added so far.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Adds `s` to the total, or says why it cannot be added exactly. After
    /// an error the total is not to be used (the command stops).
    pub fn add(&mut self, s: Shard) -> anyhow::Result<()> {
        self.compatible(&s)?;
        self.identities(&s)?;
        add(&mut self.clients, s.clients, "clients")?;
        self.conns_per_client.add(s.conns_per_client);
        self.duration_s.add(s.duration_s);
        add(&mut self.threads, s.threads, "threads")?;
        add(&mut self.connections, s.connections, "connections")?;
        add(&mut self.ok, s.ok, "ok")?;
        for (kind, n) in &s.errors {
            add(self.errors.entry(kind).or_insert(0), *n, "error counts")?;
        }
        let t = &mut self.timeouts;
        add(&mut t.connect, s.timeouts.connect, "timeouts")?;
        add(&mut t.write, s.timeouts.write, "timeouts")?;
        add(&mut t.read, s.timeouts.read, "timeouts")?;
        add(&mut t.handshake, s.timeouts.handshake, "timeouts")?;
        for (code, n) in &s.status {
            add(
                self.status.entry(code.clone()).or_insert(0),
                *n,
                "status counts",
            )?;
        }
        s.total.add_to(&mut self.hist.total);
        s.connect.add_to(&mut self.hist.connect);
        s.first_byte.add_to(&mut self.hist.first_byte);
        s.tls_handshake.add_to(&mut self.hist.tls_handshake);
        s.start_lag.add_to(&mut self.hist.start_lag);
        add(&mut self.tls_resumed, s.tls_resumed, "tls_resumed")?;
        add(&mut self.slow_connects, s.slow_connects, "slow_connects")?;
        add(&mut self.sockets_opened, s.sockets_opened, "sockets_opened")?;
        add(&mut self.unfinished, s.unfinished, "unfinished")?;
        add(&mut self.sources, s.sources, "sources")?;
        add(
            &mut self.behind_schedule,
            s.behind_schedule,
            "behind_schedule",
        )?;
        // Shards stopped before their release have no instants and add no time.
        self.started_at = self.started_at.into_iter().chain(s.started_at).min();
        self.ended_at = self.ended_at.into_iter().chain(s.ended_at).max();
        self.start_at.add(s.start_at);
        // The worst shard's: how far apart the release really was.
        if let Some(skew) = s.release_skew_ms
            && self.release_skew_ms.is_none_or(|w| skew.abs() > w.abs())
        {
            self.release_skew_ms = Some(skew);
        }
        // Open-model runs add up as concurrent schedules: targets and plans
        // sum; the achieved rates are each run's own fit, so their sum is the
        // one figure here that is not exact (null when a shard has none).
        if let Some((target, planned, achieved)) = s.rate {
            let (t, p, a) = self.rate.get_or_insert((0.0, 0, Some(0.0)));
            *t += target;
            add(p, planned, "rate.planned")?;
            *a = a.zip(achieved).map(|(a, b)| a + b);
        }
        if self.signal.is_none() {
            self.signal = s.signal;
        }
        let row = ShardRow {
            tag: s.tag.clone(),
            source: s.at.text(),
            clients: s.clients,
            connections: s.connections,
            ok: s.ok,
            errors: s.errors_total(),
            unfinished: s.unfinished,
            started_ms: None,
            release_skew_ms: s.release_skew_ms,
            interrupted: s.signal.is_some(),
        };
        self.rows.push((row, s.started_at));
        self.runs.extend(s.runs);
        Ok(())
    }

    /// Refuses what cannot be added to the inputs before it.
    fn compatible(&mut self, s: &Shard) -> anyhow::Result<()> {
        let Some((url, keep_alive, first_at)) = &self.first else {
            self.first = Some((s.url.clone(), s.keep_alive, s.at.to_string()));
            self.open_model = Some(s.rate.is_some());
            return Ok(());
        };
        ensure!(
            s.url == *url,
            "{}: url {} differs from {} in {first_at}: reports of different targets do not \
             add up",
            s.at,
            crate::text::escape(&s.url),
            crate::text::escape(url),
        );
        ensure!(
            s.keep_alive == *keep_alive,
            "{}: keep_alive {} differs from {keep_alive} in {first_at}: connections and \
             requests would mix",
            s.at,
            s.keep_alive,
        );
        ensure!(
            self.open_model == Some(s.rate.is_some()),
            "{}: some reports ran at a --rate and some did not: open and closed models do \
             not add up",
            s.at
        );
        Ok(())
    }

    /// Refuses a run already in the total (a report given twice, or a merge
    /// given with one of its own inputs): the total would count it twice.
    /// A run is known by its tag and its release instant, which carries
    /// nanoseconds; a run stopped before its release has no instant (and
    /// measured nothing), so it cannot be told apart and is not checked.
    fn identities(&mut self, s: &Shard) -> anyhow::Result<()> {
        let from = if s.merged {
            format!("{} (a merge)", s.at)
        } else {
            s.at.to_string()
        };
        for run in s.runs.iter().filter(|r| r.started_at.is_some()) {
            if let Some(before) = self.seen.get(run) {
                let at = run.started_at.map(format_time).unwrap_or_default();
                bail!(
                    "{from}: the run tagged \"{}\" released at {at} is already in the total \
                     (from {before}): a run counted twice would make every sum wrong; give \
                     each report once",
                    crate::text::escape(&run.tag)
                );
            }
            self.seen.insert(run.clone(), from.clone());
        }
        Ok(())
    }

    /// The total. `tag` names it (default `merge of N shards`).
    pub fn finish(self, tag: Option<&str>) -> anyhow::Result<MergeReport> {
        ensure!(!self.rows.is_empty(), "no blast report in the input");
        let elapsed_s = match (self.started_at, self.ended_at) {
            (Some(start), Some(end)) => end.duration_since(start).unwrap_or_default().as_secs_f64(),
            _ => 0.0,
        };
        let url = self.first.as_ref().map(|f| f.0.clone()).unwrap_or_default();
        let keep_alive = self.first.as_ref().is_some_and(|f| f.1);
        let n = self.rows.len() as u64;
        let first_start = self.started_at;
        let warnings = duplicate_tags(&self.runs);
        let total = BlastReport {
            schema: SCHEMA,
            tag: tag.map_or_else(
                || format!("merge of {}", crate::text::count(n, "shard", "shards")),
                str::to_string,
            ),
            url,
            clients: self.clients,
            conns_per_client: self.conns_per_client.agreed(),
            duration_s: self.duration_s.agreed(),
            threads: usize::try_from(self.threads).unwrap_or(usize::MAX),
            keep_alive,
            connections: self.connections,
            ok: self.ok,
            errors: self.errors,
            timeouts: self.timeouts,
            status: self.status,
            started_at: self.started_at,
            ended_at: self.ended_at,
            elapsed_s,
            conns_per_s: if elapsed_s > 0.0 {
                self.connections as f64 / elapsed_s
            } else {
                0.0
            },
            latency_ms: LatencyMs::of(&self.hist.total),
            connect_ms: LatencyMs::of(&self.hist.connect),
            first_byte_ms: LatencyMs::of(&self.hist.first_byte),
            tls_handshake_ms: LatencyMs::of(&self.hist.tls_handshake),
            tls_resumed: self.tls_resumed,
            slow_connects: self.slow_connects,
            sockets_opened: self.sockets_opened,
            unfinished: self.unfinished,
            sources: usize::try_from(self.sources).unwrap_or(usize::MAX),
            start_at: self.start_at.agreed(),
            release_skew_ms: self.release_skew_ms,
            behind_schedule: self.behind_schedule,
            rate: self
                .rate
                .map(|(target_per_s, planned, achieved_per_s)| RateReport {
                    target_per_s,
                    planned,
                    achieved_per_s,
                    start_lag_ms: LatencyMs::of(&self.hist.start_lag),
                }),
            interrupted: self.signal.is_some(),
            signal: self.signal,
            histograms: self.hist,
        };
        let shards = self
            .rows
            .into_iter()
            .map(|(mut row, started_at)| {
                row.started_ms = started_at.zip(first_start).map(|(at, first)| {
                    at.duration_since(first).unwrap_or_default().as_secs_f64() * 1000.0
                });
                row
            })
            .collect();
        Ok(MergeReport {
            shards,
            runs: self.runs,
            total,
            warnings,
        })
    }
}

/// Adds `shards` (all at hand: tests, and callers that have them).
pub fn merge(
    shards: impl IntoIterator<Item = Shard>,
    tag: Option<&str>,
) -> anyhow::Result<MergeReport> {
    let mut m = Merger::new();
    for s in shards {
        m.add(s)?;
    }
    m.finish(tag)
}

/// Marks a total as cut short by a stop signal while its input was read.
pub fn interrupted(report: &mut MergeReport, signal: Signal) {
    report.total.interrupted = true;
    report.total.signal.get_or_insert(signal);
}

/// The same tag on two different runs is allowed, but usually means a
/// retried pod (another run at another instant) or two runs tagged alike.
fn duplicate_tags(runs: &[Run]) -> Vec<String> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for r in runs {
        *seen.entry(&r.tag).or_default() += 1;
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(tag, n)| {
            format!(
                "tag \"{}\" appears {n} times: a retried pod, or runs tagged alike?",
                crate::text::escape(tag)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
