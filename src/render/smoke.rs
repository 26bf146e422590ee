//! Rendering of `smoke` reports: the summary table and JSON (JUnit XML is in
//! `junit`).
//!
//! Pure functions of a [`SmokeReport`] into a writer. Must never decide the
//! verdict: the report carries it.

use std::io::{self, Write};

use serde::Serialize;

use crate::smoke::SmokeReport;
use crate::text::{count, escape};

/// Zombie and orphan rows shown in the table.
const ROWS: usize = 10;

/// The summary table, the zombies and orphans (if any) and the verdict line.
pub fn table(report: &SmokeReport, out: &mut impl Write) -> io::Result<()> {
    let mut t = super::table();
    t.set_header(vec!["check", "result"]);
    if let Some(signal) = report.signal {
        t.add_row(vec![
            "interrupted".to_string(),
            format!("by {signal}: partial results, no verdict"),
        ]);
    }
    t.add_row(vec![
        "server".to_string(),
        format!(
            "{} (pid {})",
            crate::text::cell(&report.server),
            report.server_pid
        ),
    ]);
    let url = if report.url.is_empty() {
        "(not known: the server never announced it)".to_string()
    } else {
        crate::text::cell(&report.url)
    };
    t.add_row(vec!["url".to_string(), url]);
    match &report.blast {
        Some(b) => {
            let failed = report.failed_requests();
            let mut line = format!(
                "{} sent, {} ok, {} failed (limit {})",
                b.connections, b.ok, failed, report.max_errors
            );
            if b.unfinished > 0 {
                line.push_str(&format!(", {} unfinished", b.unfinished));
            }
            t.add_row(vec!["requests".to_string(), line]);
            let kinds: Vec<String> = b
                .errors
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            if !kinds.is_empty() {
                t.add_row(vec!["errors".to_string(), kinds.join(", ")]);
            }
            let statuses: Vec<String> = b
                .status
                .iter()
                .map(|(code, n)| format!("{code} × {n}"))
                .collect();
            if !statuses.is_empty() {
                t.add_row(vec!["status".to_string(), statuses.join(", ")]);
            }
            t.add_row(vec![
                "throughput".to_string(),
                format!("{:.0} conn/s over {:.2} s", b.conns_per_s, b.elapsed_s),
            ]);
            t.add_row(vec![
                "latency".to_string(),
                format!(
                    "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                    b.latency_ms.p50, b.latency_ms.p99, b.latency_ms.max
                ),
            ]);
            if b.slow_connects > 0 {
                t.add_row(vec![
                    "slow connects".to_string(),
                    format!(
                        "{} took ≥ 1 s (SYN retransmits: a full listen backlog?)",
                        b.slow_connects
                    ),
                ]);
            }
            &mut t
        }
        None => t.add_row(vec![
            "requests".to_string(),
            "none sent: the run stopped first".to_string(),
        ]),
    };
    let zombies = match (&report.audit, report.interrupted) {
        (Some(a), _) => format!(
            "{} in the server's tree (limit {}), {} live",
            a.count,
            report.max_zombies,
            a.live_children.unwrap_or(0)
        ),
        (None, true) => "not audited: the run stopped first".to_string(),
        (None, false) => "not audited: the server was gone".to_string(),
    };
    t.add_row(vec!["zombies".to_string(), zombies]);
    t.add_row(vec![
        "orphans".to_string(),
        format!(
            "{} left behind by the server (limit {})",
            count(report.orphans.len() as u64, "process", "processes"),
            report.max_orphans
        ),
    ]);
    t.add_row(vec!["server exit".to_string(), report.server_exit.clone()]);
    if let Some(line) = &report.server_summary {
        t.add_row(vec!["server summary".to_string(), crate::text::cell(line)]);
    }
    writeln!(out, "{t}")?;
    if let Some(a) = report.audit.as_ref().filter(|a| !a.zombies.is_empty()) {
        // A leak of hundreds would bury the verdict; the first rows show the
        // pattern and --json has them all.
        let mut shown = a.clone();
        shown.zombies.truncate(ROWS);
        writeln!(out)?;
        super::audit::table(&shown, out)?;
        if a.zombies.len() > ROWS {
            writeln!(
                out,
                "({} more zombies not shown; --json lists them all)",
                a.zombies.len() - ROWS
            )?;
        }
    }
    if !report.orphans.is_empty() {
        writeln!(out)?;
        let mut o = super::table();
        o.set_header(["PID", "PPID", "AGE", "COMMAND"]);
        for l in report.orphans.iter().take(ROWS) {
            let command = l.cmdline.as_deref().unwrap_or(&l.comm);
            o.add_row([
                l.pid.to_string(),
                l.ppid.to_string(),
                format!("{:.2}s", l.age_s),
                crate::text::cell(command),
            ]);
        }
        writeln!(out, "{o}")?;
        if report.orphans.len() > ROWS {
            writeln!(
                out,
                "({} more not shown; --json lists them all)",
                report.orphans.len() - ROWS
            )?;
        }
        writeln!(out, "(all of them were stopped after this report's scan)")?;
    }
    if !report.unstopped.is_empty() {
        writeln!(
            out,
            "warning: could not stop {} within the clean-up's bound: {:?}",
            count(report.unstopped.len() as u64, "process", "processes"),
            report.unstopped
        )?;
    }
    match (report.signal, &report.inconclusive) {
        (Some(_), _) => writeln!(out, "{}: no verdict", report.verdict()),
        (None, Some(_)) => writeln!(out, "{} (no verdict)", report.verdict()),
        (None, None) => writeln!(out, "{}", escape(&report.verdict())),
    }
}

#[derive(Serialize)]
struct Json<'a> {
    verdict: String,
    #[serde(flatten)]
    report: &'a SmokeReport,
}

/// One JSON object: the whole report plus the `verdict` line.
pub fn json(report: &SmokeReport, out: &mut impl Write) -> io::Result<()> {
    let doc = Json {
        verdict: report.verdict(),
        report,
    };
    super::json::pretty(&doc, out)
}
