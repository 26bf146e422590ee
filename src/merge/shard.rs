//! One input report read back: a JSON document checked to be a blast report
//! of this schema, whole and self-consistent, with its histograms decoded.
//!
//! Owns what "a mergeable report" means for one document: [`SCHEMA`], every
//! key the sum needs, histograms in the shared settings whose counts agree
//! with the report's, known error kinds, and (`super::check`) every invariant
//! a blast report holds. A merged report (`merge --json`) is one too, and
//! also names the runs it holds (`runs`), so that none is added twice. Must
//! never accept a document it cannot add exactly: each refusal names the
//! document's position and why.

use std::collections::BTreeMap;
use std::time::SystemTime;

use anyhow::{Context, bail, ensure};
use serde::Deserialize;
use serde_json::Value;

use super::input::Document;
use crate::blast::histogram::{self, Counts};
use crate::blast::{ErrorKind, SCHEMA, Timeouts};
use crate::shutdown::{Signal, signal_number};

/// A blast report ready to be added.
#[derive(Debug, Clone)]
pub struct Shard {
    /// Where it was read, for messages and the shard table.
    pub at: super::input::Position,
    pub tag: String,
    pub url: String,
    pub clients: u64,
    pub conns_per_client: Option<u64>,
    pub duration_s: Option<f64>,
    pub threads: u64,
    pub keep_alive: bool,
    pub connections: u64,
    pub ok: u64,
    /// By [`ErrorKind::key`]; every kind present.
    pub errors: BTreeMap<&'static str, u64>,
    pub timeouts: Timeouts,
    pub status: BTreeMap<String, u64>,
    /// None: a stop came before the release (then nothing was measured).
    pub started_at: Option<SystemTime>,
    pub ended_at: Option<SystemTime>,
    /// The histograms, as the slots that hold counts (a few hundred each,
    /// where a full histogram is 190 kB).
    pub total: Counts,
    pub connect: Counts,
    pub first_byte: Counts,
    pub tls_handshake: Counts,
    pub start_lag: Counts,
    pub tls_resumed: u64,
    pub slow_connects: u64,
    pub sockets_opened: u64,
    pub unfinished: u64,
    pub signal: Option<Signal>,
    /// `--start-at`'s actual release − the time asked, when the run had one.
    pub release_skew_ms: Option<f64>,
    /// `--start-at` as asked.
    pub start_at: Option<SystemTime>,
    pub sources: u64,
    pub behind_schedule: u64,
    /// `--rate`: the target, the planned count and the achieved rate.
    pub rate: Option<(f64, u64, Option<f64>)>,
    /// The blast runs it holds: itself, or a merged report's `runs`.
    pub runs: Vec<Run>,
    /// A merged report (it has `shards`).
    pub merged: bool,
}

/// One blast run, as a merge knows it: its tag and its release instant (with
/// nanoseconds, so two runs never share one), None when it was stopped
/// before the release.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Run {
    pub tag: String,
    pub started_at: Option<SystemTime>,
}

impl Shard {
    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The keys read back, as blast writes them (unknown keys are ignored:
/// adding a key does not change the schema).
#[derive(Deserialize)]
struct Wire {
    tag: String,
    url: String,
    clients: u64,
    conns_per_client: Option<u64>,
    duration_s: Option<f64>,
    threads: u64,
    keep_alive: bool,
    connections: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    timeouts: WireTimeouts,
    status: BTreeMap<String, u64>,
    started_at: Option<String>,
    ended_at: Option<String>,
    latency_ms: Count,
    connect_ms: Count,
    first_byte_ms: Count,
    histograms: WireHistograms,
    slow_connects: u64,
    sockets_opened: u64,
    unfinished: u64,
    interrupted: bool,
    signal: Option<String>,
    release_skew_ms: Option<f64>,
    start_at: Option<String>,
    tls_handshake_ms: Count,
    tls_resumed: u64,
    sources: u64,
    behind_schedule: u64,
    rate: Option<WireRate>,
    /// A merged report's rows, one per input (absent in a blast's own).
    shards: Option<Vec<WireRow>>,
    /// A merged report's runs.
    runs: Option<Vec<WireRun>>,
}

/// The counts of a merged report's row (other keys are for people).
#[derive(Deserialize)]
pub(super) struct WireRow {
    pub clients: u64,
    pub connections: u64,
    pub ok: u64,
    pub errors: u64,
    pub unfinished: u64,
}

#[derive(Deserialize)]
struct WireRun {
    tag: String,
    started_at: Option<String>,
}

#[derive(Deserialize)]
struct WireTimeouts {
    connect: u64,
    write: u64,
    read: u64,
    handshake: u64,
}

#[derive(Deserialize)]
struct WireRate {
    target_per_s: f64,
    planned: u64,
    achieved_per_s: Option<f64>,
    start_lag_ms: Count,
}

#[derive(Deserialize)]
struct Count {
    count: u64,
}

/// Exactly these: a histogram this lsbaws does not know would be dropped from
/// the total without a word.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireHistograms {
    total: String,
    connect: String,
    first_byte: String,
    tls_handshake: String,
    start_lag: String,
}

/// Reads one document as a shard and, for a merged report, its rows, or says
/// why it is not one. Not yet checked: [`super::read`] checks what this reads.
pub(super) fn parse(doc: &Document) -> anyhow::Result<(Shard, Option<Vec<WireRow>>)> {
    let at = &doc.at;
    let Value::Object(map) = &doc.value else {
        bail!("{at}: not a blast report (not a JSON object)");
    };
    match (map.get("schema"), map.get("error")) {
        (None, Some(error)) => {
            let error = error.as_str().unwrap_or("?");
            bail!(
                "{at}: a blast failed and reported no counts: {}",
                crate::text::escape(error)
            )
        }
        (None, None) if map.contains_key("connections") && map.contains_key("latency_ms") => {
            bail!(
                "{at}: a blast report without \"schema\" and histograms (an older lsbaws): \
                 it cannot be added exactly"
            )
        }
        (None, None) => bail!("{at}: not a blast report (no \"schema\" key)"),
        (Some(schema), _) if schema.as_str() != Some(SCHEMA) => bail!(
            "{at}: schema {} is not {SCHEMA:?}, the one this lsbaws merges",
            crate::text::escape(&schema.to_string())
        ),
        (Some(_), _) => {}
    }
    let wire: Wire = serde_json::from_value(doc.value.clone())
        .with_context(|| format!("{at}: a {SCHEMA} report with a missing or wrong key"))?;
    shard(at, wire)
}

fn shard(at: &super::input::Position, w: Wire) -> anyhow::Result<(Shard, Option<Vec<WireRow>>)> {
    let mut errors: BTreeMap<&'static str, u64> =
        ErrorKind::ALL.iter().map(|k| (k.key(), 0)).collect();
    for (key, n) in &w.errors {
        let Some(kind) = ErrorKind::ALL.iter().find(|k| k.key() == key) else {
            bail!(
                "{at}: error kind \"{}\" is unknown to this lsbaws (a newer one made the \
                 report?)",
                crate::text::escape(key)
            );
        };
        errors.insert(kind.key(), *n);
    }
    let failed = errors.values().try_fold(0u64, |a, n| a.checked_add(*n));
    ensure!(
        w.ok.checked_add(failed.unwrap_or(u64::MAX)) == Some(w.connections),
        "{at}: connections {} is not ok {} + errors {}: the report does not add up",
        w.connections,
        w.ok,
        failed.unwrap_or(u64::MAX)
    );
    let decode = |name: &str, text: &str, count: u64| -> anyhow::Result<Counts> {
        let h = histogram::decode_counts(text)
            .map_err(|e| anyhow::anyhow!("{at}: histograms.{name}: {e}"))?;
        ensure!(
            h.len() == count,
            "{at}: histograms.{name} holds {} samples but the report counts {count}",
            h.len()
        );
        Ok(h)
    };
    let total = decode("total", &w.histograms.total, w.latency_ms.count)?;
    let connect = decode("connect", &w.histograms.connect, w.connect_ms.count)?;
    let first_byte = decode(
        "first_byte",
        &w.histograms.first_byte,
        w.first_byte_ms.count,
    )?;
    let tls_handshake = decode(
        "tls_handshake",
        &w.histograms.tls_handshake,
        w.tls_handshake_ms.count,
    )?;
    let lag_count = w.rate.as_ref().map_or(0, |r| r.start_lag_ms.count);
    let start_lag = decode("start_lag", &w.histograms.start_lag, lag_count)?;
    let time = |name: &str, text: &str| {
        humantime::parse_rfc3339(text).map_err(|e| {
            anyhow::anyhow!(
                "{at}: {name} \"{}\" is not an RFC 3339 UTC time: {e}",
                crate::text::escape(text)
            )
        })
    };
    let (started_at, ended_at) = match (&w.started_at, &w.ended_at) {
        (Some(s), Some(e)) => {
            let (s, e) = (time("started_at", s)?, time("ended_at", e)?);
            ensure!(e >= s, "{at}: ended_at is before started_at");
            (Some(s), Some(e))
        }
        // Stopped before the release: nothing can have been measured.
        (None, None) => {
            ensure!(
                w.connections == 0 && w.sockets_opened == 0,
                "{at}: no started_at, yet {} connections",
                w.connections
            );
            (None, None)
        }
        _ => bail!("{at}: one of started_at and ended_at is null"),
    };
    let start_at = w
        .start_at
        .as_deref()
        .map(|t| time("start_at", t))
        .transpose()?;
    let signal = match (&w.signal, w.interrupted) {
        (None, false) => None,
        (Some(name), true) => Some(Signal(signal_number(name).with_context(|| {
            format!("{at}: unknown signal \"{}\"", crate::text::escape(name))
        })?)),
        _ => bail!("{at}: \"interrupted\" and \"signal\" disagree"),
    };
    let runs = match (&w.shards, w.runs) {
        (None, None) => vec![Run {
            tag: w.tag.clone(),
            started_at,
        }],
        (Some(_), Some(runs)) => runs
            .into_iter()
            .map(|r| {
                let started_at = r
                    .started_at
                    .as_deref()
                    .map(|t| time("runs[].started_at", t))
                    .transpose()?;
                Ok(Run {
                    tag: r.tag,
                    started_at,
                })
            })
            .collect::<anyhow::Result<_>>()?,
        (Some(_), None) => bail!(
            "{at}: a merged report without \"runs\" (an older lsbaws): its runs cannot be \
             told from the others', so one could be counted twice; merge its inputs instead"
        ),
        (None, Some(_)) => bail!("{at}: \"runs\" without \"shards\": not a merged report"),
    };
    let rows = w.shards;
    let shard = Shard {
        at: at.clone(),
        tag: w.tag,
        url: w.url,
        clients: w.clients,
        conns_per_client: w.conns_per_client,
        duration_s: w.duration_s,
        threads: w.threads,
        keep_alive: w.keep_alive,
        connections: w.connections,
        ok: w.ok,
        errors,
        timeouts: Timeouts {
            connect: w.timeouts.connect,
            write: w.timeouts.write,
            read: w.timeouts.read,
            handshake: w.timeouts.handshake,
        },
        status: w.status,
        started_at,
        ended_at,
        total,
        connect,
        first_byte,
        tls_handshake,
        start_lag,
        tls_resumed: w.tls_resumed,
        slow_connects: w.slow_connects,
        sockets_opened: w.sockets_opened,
        unfinished: w.unfinished,
        signal,
        release_skew_ms: w.release_skew_ms,
        start_at,
        sources: w.sources,
        behind_schedule: w.behind_schedule,
        rate: w
            .rate
            .map(|r| (r.target_per_s, r.planned, r.achieved_per_s)),
        runs,
        merged: rows.is_some(),
    };
    Ok((shard, rows))
}
