//! Rendering of `audit -- COMMAND` reports: the tables of leftovers and the
//! summary line, JSON, and JUnit XML.
//!
//! Pure functions of an [`ExecReport`] into a writer. Every name (command
//! lines, comms) comes from other processes and is escaped. Must never decide
//! the verdict: the report carries it. The summary line is last, so `tail -1`
//! gets it, and starts `lsbaws audit: ` so it stands out after COMMAND's own
//! output.

use std::io::{self, Write};

use serde::Serialize;

use super::junit::{Case, Suite};
use crate::audit::exec::ExecReport;
use crate::audit::leftovers::Origin;
use crate::text::{count, escape};

/// Rows shown per table; `--json` lists them all.
const ROWS: usize = 20;

/// Longest command line shown in the summary line and in a table cell.
const SHOWN_COMMAND: usize = 60;

/// A name from another process as a table cell: escaped (`|` too, see
/// `render::cell`) and cut (see [`short`]).
fn cell(s: &str) -> String {
    cut(super::cell(s))
}

/// A name from another process in a line of text: escaped, and cut to
/// `SHOWN_COMMAND` characters (`python3 -c '<a whole script>'` would make a
/// table no terminal can show; `--json` has it whole).
fn short(s: &str) -> String {
    cut(escape(s).into_owned())
}

fn cut(s: String) -> String {
    if s.chars().count() <= SHOWN_COMMAND {
        return s;
    }
    s.chars().take(SHOWN_COMMAND - 1).collect::<String>() + "…"
}

/// The tables (processes left running, zombie holders, reaped orphans), notes,
/// then the summary line.
pub fn table(report: &ExecReport, w: &mut impl Write) -> io::Result<()> {
    if !report.orphans.is_empty() {
        let fate = if report.kept {
            "left running: --keep"
        } else {
            "stopped after this report's scan"
        };
        writeln!(w, "Processes left running ({fate}):")?;
        let mut t = super::table();
        t.set_header(["PID", "PPID", "AGE", "STARTED BY", "COMMAND"]);
        for o in report.orphans.iter().take(ROWS) {
            t.add_row([
                o.pid.to_string(),
                o.ppid.to_string(),
                format!("{:.2}s", o.age_s),
                cell(&origin(o.started_by.as_ref())),
                cell(o.cmdline.as_deref().unwrap_or(&o.comm)),
            ]);
        }
        writeln!(w, "{t}")?;
        more(report.orphans.len(), w)?;
    }
    if !report.zombies.is_empty() {
        writeln!(
            w,
            "Zombies held longer than {:.2}s, by parent:",
            report.min_age_s
        )?;
        let mut t = super::table();
        t.set_header([
            "PARENT",
            "PARENT COMMAND",
            "ZOMBIES",
            "PEAK",
            "LONGEST",
            "ZOMBIE COMMAND",
        ]);
        for z in report.zombies.iter().take(ROWS) {
            t.add_row([
                z.ppid.to_string(),
                cell(z.cmdline.as_deref().unwrap_or(&z.comm)),
                z.zombies.to_string(),
                z.peak.to_string(),
                format!("{:.2}s", z.longest_s),
                cell(&z.zombie_comms.join(", ")),
            ]);
        }
        writeln!(w, "{t}")?;
        more(report.zombies.len(), w)?;
    }
    if !report.reaped.is_empty() {
        writeln!(
            w,
            "Orphans that exited on their own, reaped by lsbaws (not a leak):"
        )?;
        let mut t = super::table();
        t.set_header(["PID", "STARTED BY", "COMMAND", "STATUS"]);
        for r in report.reaped.iter().take(ROWS) {
            t.add_row([
                r.pid.to_string(),
                cell(&origin(r.started_by.as_ref())),
                cell(&r.comm),
                r.status.clone(),
            ]);
        }
        writeln!(w, "{t}")?;
        more(report.reaped_count as usize, w)?;
    }
    if !report.unstopped.is_empty() {
        writeln!(
            w,
            "warning: could not stop {} within the clean-up's bound: {:?}",
            count(report.unstopped.len() as u64, "process", "processes"),
            report.unstopped
        )?;
    }
    if let Some(error) = &report.error {
        writeln!(w, "error: {}", escape(error))?;
    }
    writeln!(w, "{}", summary(report))
}

/// `(N more not shown; --json lists them all)` when a table was cut.
fn more(n: usize, w: &mut impl Write) -> io::Result<()> {
    if n > ROWS {
        writeln!(w, "({} more not shown; --json lists them all)", n - ROWS)?;
    }
    Ok(())
}

/// `4200 sh -c ...`, or `?` when no sample saw the parent; not escaped.
fn origin(o: Option<&Origin>) -> String {
    match o {
        Some(o) => format!("{} {}", o.pid, o.cmdline.as_deref().unwrap_or(&o.comm)),
        None => "?".to_string(),
    }
}

/// `lsbaws audit: PASS (`cargo test`: exit status 0; 0 left running, 0 zombies
/// held over 1.00s, 2 orphans reaped)`.
pub fn summary(report: &ExecReport) -> String {
    let verdict = match report.signal {
        Some(_) => format!("{}: no verdict", report.verdict()),
        None => report.verdict(),
    };
    let command = short(&crate::audit::exec::shown(
        &report.command.iter().map(Into::into).collect::<Vec<_>>(),
    ));
    let exit = report
        .exit
        .map_or_else(|| "not reaped".to_string(), |e| e.describe());
    format!(
        "lsbaws audit: {} (`{command}`: {exit}; {} left running, {} held over {:.2}s, {} reaped)",
        escape(&verdict),
        count(report.orphans.len() as u64, "process", "processes"),
        count(report.zombie_count, "zombie", "zombies"),
        report.min_age_s,
        count(report.reaped_count, "orphan", "orphans"),
    )
}

#[derive(Serialize)]
struct Json<'a> {
    verdict: String,
    #[serde(flatten)]
    report: &'a ExecReport,
}

/// One JSON object on one line (the last line of stdout, after COMMAND's
/// output): the whole report plus the `verdict`.
pub fn json(report: &ExecReport, out: &mut impl Write) -> io::Result<()> {
    super::json::line(
        &Json {
            verdict: report.verdict(),
            report,
        },
        out,
    )
}

/// The JUnit document: testcases `command` (its exit status), `orphans` and
/// `zombies` (one per kind of leak). After a stop signal all three are errors
/// of type `interrupted`; when a /proc read failed, the leak checks are errors.
pub fn junit(report: &ExecReport, out: &mut impl Write) -> io::Result<()> {
    let verdict = report.verdict();
    let command = report.command.join(" ");
    let exit = report
        .exit
        .map_or_else(|| "not reaped".to_string(), |e| e.describe());
    let mut system_out = verdict.clone();
    for r in report.reaped.iter().take(ROWS) {
        system_out.push_str(&format!(
            "\nreaped orphan: pid {} {} ({})",
            r.pid, r.comm, r.status
        ));
    }
    super::junit::suite(
        &Suite {
            name: "lsbaws audit",
            time: report.elapsed_s,
            properties: vec![("command", command.as_str()), ("exit", exit.as_str())],
            cases: cases(report, &verdict),
            kind: report.interrupted.then_some("interrupted"),
            system_out: &system_out,
        },
        out,
    )
}

fn cases(report: &ExecReport, verdict: &str) -> Vec<(&'static str, f64, Case)> {
    let names = ["command", "orphans", "zombies"];
    if let Some(signal) = report.signal {
        let why = format!("interrupted by {signal} before a verdict");
        return names
            .into_iter()
            .map(|n| (n, 0.0, Case::Error(why.clone(), verdict.to_string())))
            .collect();
    }
    let command = match report.exit {
        Some(e) if e.success() => Case::Pass,
        Some(e) => Case::Failure(
            format!("the command failed ({})", e.describe()),
            String::new(),
        ),
        None => Case::Error("the command could not be reaped".into(), String::new()),
    };
    let leaks = |over: bool, message: String, detail: String| match &report.error {
        Some(error) => Case::Error(error.clone(), String::new()),
        None if over => Case::Failure(message, detail),
        None => Case::Pass,
    };
    let orphans = leaks(
        report.orphans.len() as u64 > report.max_orphans,
        format!(
            "{} left running (limit {})",
            count(report.orphans.len() as u64, "process", "processes"),
            report.max_orphans
        ),
        report
            .orphans
            .iter()
            .map(|o| {
                format!(
                    "pid {} ppid {} age {:.2}s started by {} {}",
                    o.pid,
                    o.ppid,
                    o.age_s,
                    origin(o.started_by.as_ref()),
                    o.cmdline.as_deref().unwrap_or(&o.comm)
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let zombies = leaks(
        report.zombie_count > report.max_zombies,
        format!(
            "{} held longer than {:.2}s (limit {})",
            count(report.zombie_count, "zombie", "zombies"),
            report.min_age_s,
            report.max_zombies
        ),
        report
            .zombies
            .iter()
            .map(|z| {
                format!(
                    "parent pid {} {}: {} zombies, {} at once, longest {:.2}s",
                    z.ppid,
                    z.cmdline.as_deref().unwrap_or(&z.comm),
                    z.zombies,
                    z.peak,
                    z.longest_s
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
    );
    vec![
        ("command", report.elapsed_s, command),
        ("orphans", 0.0, orphans),
        ("zombies", 0.0, zombies),
    ]
}
