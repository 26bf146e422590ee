//! Rendering of `merge` reports: one row per shard and the total as blast's
//! own table, or JSON in blast's shape with the shard rows added.
//!
//! Pure functions of a [`MergeReport`]. Must never add anything up (the
//! engine did) and never print text from a report unescaped (tags, sources,
//! and through blast's summary the URL and status codes), nor with a `|`
//! that would add a column: reports come from other machines.

use std::io::{self, Write};

use serde::Serialize;

use super::cell;
use crate::blast::BlastReport;
use crate::merge::shard::Run;
use crate::merge::{MergeReport, ShardRow};
use crate::shutdown::Signal;

/// One JSON object on one line: the total in blast's shape (so `merge` reads
/// it back like any blast report) plus `shards` (a row per input) and `runs`
/// (every blast run in it, so a later merge refuses one given twice).
pub fn json(report: &MergeReport, out: &mut impl Write) -> io::Result<()> {
    #[derive(Serialize)]
    struct Merged<'a> {
        #[serde(flatten)]
        total: &'a BlastReport,
        shards: &'a [ShardRow],
        runs: &'a [Run],
    }
    super::json::line(
        &Merged {
            total: &report.total,
            shards: &report.shards,
            runs: &report.runs,
        },
        out,
    )
}

/// `--json` when a stop signal came before any report was read: nothing was
/// measured, so no total, but one object still (a `| jq` step gets input):
/// blast's `interrupted` and `signal`, and the `error` every command's JSON
/// has when it has no result.
pub fn json_interrupted_before_any(signal: Signal, out: &mut impl Write) -> io::Result<()> {
    #[derive(Serialize)]
    struct Nothing {
        error: String,
        interrupted: bool,
        signal: Signal,
    }
    super::json::line(
        &Nothing {
            error: format!("interrupted by {signal} before any report was read"),
            interrupted: true,
            signal,
        },
        out,
    )
}

/// The shard table, then the total as blast's summary (its latency table and
/// histogram included).
pub fn table(report: &MergeReport, out: &mut impl Write) -> io::Result<()> {
    let skew = report.shards.iter().any(|s| s.release_skew_ms.is_some());
    let unfinished = report.total.unfinished > 0;
    let mut header = vec!["shard", "from", "clients", "ok", "errors"];
    if unfinished {
        header.push("unfinished");
    }
    header.push("start (ms)");
    if skew {
        header.push("skew (ms)");
    }
    let mut t = super::table();
    t.set_header(header);
    for s in &report.shards {
        let mut tag = cell(&s.tag);
        if s.interrupted {
            tag.push_str(" (interrupted)");
        }
        let mut row = vec![
            tag,
            cell(&s.source),
            s.clients.to_string(),
            s.ok.to_string(),
            s.errors.to_string(),
        ];
        if unfinished {
            row.push(s.unfinished.to_string());
        }
        row.push(s.started_ms.map_or("-".into(), |ms| format!("+{ms:.1}")));
        if skew {
            row.push(
                s.release_skew_ms
                    .map_or("-".into(), |ms| format!("{ms:.1}")),
            );
        }
        t.add_row(row);
    }
    let total = &report.total;
    let mut row = vec![
        "total".to_string(),
        crate::text::count(report.shards.len() as u64, "shard", "shards"),
        total.clients.to_string(),
        total.ok.to_string(),
        total.errors_total().to_string(),
    ];
    if unfinished {
        row.push(total.unfinished.to_string());
    }
    row.push(String::new());
    if skew {
        let worst = report
            .shards
            .iter()
            .filter_map(|s| s.release_skew_ms)
            .fold(0.0f64, |a, b| a.max(b.abs()));
        row.push(format!("≤ {worst:.1}"));
    }
    t.add_row(row);
    writeln!(out, "{t}")?;
    writeln!(out)?;
    super::blast::summary(total, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MergeReport {
        let total = crate::blast::sample_report();
        let row = |tag: &str, skew| ShardRow {
            tag: tag.into(),
            source: "stdin line 1".into(),
            clients: 1,
            connections: 2,
            ok: 1,
            errors: 1,
            unfinished: 0,
            started_ms: Some(1.25),
            release_skew_ms: skew,
            interrupted: false,
        };
        MergeReport {
            shards: vec![row("pod-0", Some(-3.0)), row("pod-\u{1b}[2J1|x", None)],
            runs: Vec::new(),
            total,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn table_has_a_row_per_shard_the_total_and_blast_summary() {
        let mut out = Vec::new();
        table(&sample(), &mut out).expect("render");
        let text = String::from_utf8(out).expect("utf8");
        for needle in [
            "| shard ",
            "| pod-0 ",
            // Escaped, and its `|` cannot add a column.
            "| pod-\\x1b[2J1\\|x ",
            "| skew (ms) |",
            "| -3.0 ",
            "| ≤ 3.0 ",
            "| total ",
            "| 2 shards ",
            "+1.2",
            "| connections ",
            "Latency histogram",
        ] {
            assert!(text.contains(needle), "{needle:?} missing:\n{text}");
        }
        assert!(!text.contains('\u{1b}'), "{text}");
    }

    #[test]
    fn json_is_blast_shaped_with_shards() {
        let mut out = Vec::new();
        json(&sample(), &mut out).expect("render");
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(text.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["schema"], crate::blast::SCHEMA);
        assert_eq!(v["connections"], 4);
        assert!(v["histograms"]["total"].is_string());
        assert_eq!(v["shards"][1]["tag"], "pod-\u{1b}[2J1|x");
        assert!(!text.contains('\u{1b}'), "escaped on the wire: {text}");
    }
}
