//! Rendering of `audit` reports: the zombie table and summary line, the `--all`
//! groups, JSON, and `--watch` sample lines.
//!
//! Pure functions of the report data into a writer; must never scan or judge.
//! The summary line `pid N (<comm>): Z zombies, L live children` is a contract
//! that scripts grep: keep its shape.

use std::io::{self, Write};

use crate::audit::{AuditReport, Sample};
use crate::shutdown::Signal;
use crate::text::count;
use crate::text::escape;

/// The human form: a table of zombies (or a line saying there are none), an
/// optional note on uncounted young zombies, then the summary line last so that
/// `tail -1` gets it.
pub fn table(report: &AuditReport, w: &mut impl Write) -> io::Result<()> {
    if let Some(groups) = &report.groups {
        return all_table(report, groups, w);
    }
    let whose = if report.scope == "tree" {
        "descendants"
    } else {
        "children"
    };
    let pid = report.pid.unwrap_or(0);
    let comm = report.comm.as_deref().unwrap_or("?");
    if report.zombies.is_empty() {
        writeln!(w, "No zombies among the {whose} of pid {pid}.")?;
    } else if report.zombies.len() > PLAIN_ROWS_FROM && report.zombies.iter().all(is_ascii) {
        plain_zombie_table(&report.zombies, w)?;
    } else {
        writeln!(w, "{}", comfy_zombie_table(&report.zombies))?;
    }
    young_note(report, w)?;
    interrupted_note(report, w)?;
    // Always "live children", also with --tree (where the number counts all live
    // descendants, as `live_children` does in JSON): scripts grep this shape.
    writeln!(
        w,
        "pid {pid} ({}): {}, {}",
        escape(comm),
        count(report.count, "zombie", "zombies"),
        count(
            report.live_children.unwrap_or(0),
            "live child",
            "live children"
        )
    )
}

/// Said before the summary line (which stays last, for `tail -1`).
fn interrupted_note(report: &AuditReport, w: &mut impl Write) -> io::Result<()> {
    if let Some(signal) = report.signal {
        writeln!(
            w,
            "(interrupted by {signal}: this is the last scan; no verdict)"
        )?;
    }
    Ok(())
}

/// From this many zombie rows on, the table is written directly instead of by
/// comfy-table, whose general layout costs about 3 µs a row: 15 ms for 5000
/// zombies, more than the /proc scan that found them.
const PLAIN_ROWS_FROM: usize = 500;

/// The zombie rows as a comfy-table: the reference layout the plain writer
/// below must reproduce byte for byte.
fn comfy_zombie_table(zombies: &[crate::audit::Zombie]) -> comfy_table::Table {
    let mut t = super::table();
    t.set_header(ZOMBIE_HEADER);
    for z in zombies {
        t.add_row([
            z.pid.to_string(),
            z.ppid.to_string(),
            z.state.to_string(),
            age(z.age_s),
            printable(&z.comm),
        ]);
    }
    t
}

const ZOMBIE_HEADER: [&str; 5] = ["PID", "PPID", "STATE", "AGE", "COMMAND"];

/// Whether every cell of the row is ASCII, so that a byte is a column of the
/// terminal (comfy-table measures Unicode display width; the plain writer does
/// not, so it leaves other rows to comfy-table).
fn is_ascii(z: &crate::audit::Zombie) -> bool {
    z.state.is_ascii() && z.comm.is_ascii()
}

/// The zombie table in comfy-table's ASCII_MARKDOWN layout, byte for byte (a
/// test compares the two): `| cell |` padded to each column's widest cell,
/// then a `|---|` rule under the header. Only for ASCII cells.
fn plain_zombie_table(zombies: &[crate::audit::Zombie], w: &mut impl Write) -> io::Result<()> {
    let rows: Vec<[String; 5]> = zombies
        .iter()
        .map(|z| {
            [
                z.pid.to_string(),
                z.ppid.to_string(),
                z.state.to_string(),
                age(z.age_s),
                printable(&z.comm),
            ]
        })
        .collect();
    let mut widths = ZOMBIE_HEADER.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |w: &mut dyn Write, cells: [&str; 5]| -> io::Result<()> {
        for (cell, width) in cells.iter().zip(widths) {
            write!(w, "| {cell:<width$} ")?;
        }
        writeln!(w, "|")
    };
    line(w, ZOMBIE_HEADER)?;
    for width in widths {
        write!(w, "|{:-<1$}", "", width + 2)?;
    }
    writeln!(w, "|")?;
    for row in &rows {
        line(w, row.each_ref().map(String::as_str))?;
    }
    Ok(())
}

fn all_table(
    report: &AuditReport,
    groups: &[crate::audit::ZombieGroup],
    w: &mut impl Write,
) -> io::Result<()> {
    if groups.is_empty() {
        writeln!(w, "No zombies on this machine.")?;
    } else {
        let mut t = super::table();
        t.set_header(["PPID", "PARENT COMMAND", "ZOMBIES"]);
        for g in groups {
            t.add_row([g.ppid.to_string(), printable(&g.comm), g.count.to_string()]);
        }
        writeln!(w, "{t}")?;
    }
    young_note(report, w)?;
    interrupted_note(report, w)?;
    writeln!(
        w,
        "all: {} under {}",
        count(report.count, "zombie", "zombies"),
        count(groups.len() as u64, "parent", "parents")
    )
}

fn young_note(report: &AuditReport, w: &mut impl Write) -> io::Result<()> {
    if report.younger > 0 {
        writeln!(
            w,
            "({} younger than {} not counted)",
            report.younger,
            age(report.min_age_s)
        )?;
    }
    Ok(())
}

/// One JSON object and a newline.
pub fn json(report: &AuditReport, w: &mut impl Write) -> io::Result<()> {
    super::json::line(report, w)
}

/// One `--watch` line: time, live children, zombies.
pub fn sample_line(sample: &Sample, w: &mut impl Write) -> io::Result<()> {
    writeln!(
        w,
        "{}  live {}  zombies {}",
        sample.time, sample.live_children, sample.zombies
    )
}

/// The last line of a `--watch` that a stop signal ended: no verdict.
pub fn watch_interrupted(signal: Signal, w: &mut impl Write) -> io::Result<()> {
    writeln!(w, "(interrupted by {signal}: no verdict)")
}

/// The same as one `--watch --json` line: `{"interrupted":true,"signal":"SIGINT"}`.
pub fn watch_interrupted_json(signal: Signal, w: &mut impl Write) -> io::Result<()> {
    #[derive(serde::Serialize)]
    struct End {
        interrupted: bool,
        signal: Signal,
    }
    super::json::line(
        &End {
            interrupted: true,
            signal,
        },
        w,
    )
}

/// One `--watch --json` line.
pub fn sample_json(sample: &Sample, w: &mut impl Write) -> io::Result<()> {
    super::json::line(sample, w)
}

/// A command name as a table cell: any process can name itself anything
/// (`prctl(PR_SET_NAME)`), and a newline or escape sequence in a cell would
/// forge rows or garble the terminal.
fn printable(comm: &str) -> String {
    crate::text::cell(comm)
}

/// `0.42s`, `12.00s`, `3m05s`, `2h07m`, `3d04h`.
fn age(secs: f64) -> String {
    if secs < 60.0 {
        return format!("{secs:.2}s");
    }
    let s = secs as u64;
    if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86400 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}d{:02}h", s / 86400, s % 86400 / 3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{ScanMethod, Zombie, ZombieGroup};

    fn report(zombies: Vec<Zombie>) -> AuditReport {
        AuditReport {
            scope: "children",
            pid: Some(10),
            comm: Some("server".into()),
            live_children: Some(3),
            count: zombies.len() as u64,
            zombies,
            younger: 0,
            min_age_s: 0.0,
            max_zombies: 0,
            groups: None,
            scan: ScanMethod::Full,
            interrupted: false,
            signal: None,
        }
    }

    fn render(r: &AuditReport) -> String {
        let mut out = Vec::new();
        table(r, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rows_then_the_summary_line() {
        let r = report(vec![Zombie {
            pid: 11,
            ppid: 10,
            state: 'Z',
            age_s: 75.5,
            comm: "worker".into(),
        }]);
        let out = render(&r);
        assert!(
            out.contains("| PID | PPID | STATE | AGE   | COMMAND |"),
            "{out}"
        );
        assert!(
            out.contains("| 11  | 10   | Z     | 1m15s | worker  |"),
            "{out}"
        );
        assert_eq!(
            out.lines().last(),
            Some("pid 10 (server): 1 zombie, 3 live children")
        );
    }

    /// Regression: with --tree the summary said "live descendants", which broke
    /// scripts that grep `pid N (<comm>): Z zombies, L live children`.
    #[test]
    fn the_tree_summary_line_keeps_the_contract_shape() {
        let mut r = report(vec![]);
        r.scope = "tree";
        let out = render(&r);
        assert_eq!(
            out,
            "No zombies among the descendants of pid 10.\npid 10 (server): 0 zombies, 3 live children\n"
        );
    }

    #[test]
    fn no_rows_says_so() {
        let mut r = report(vec![]);
        r.younger = 2;
        r.min_age_s = 1.0;
        let out = render(&r);
        assert_eq!(
            out,
            "No zombies among the children of pid 10.\n(2 younger than 1.00s not counted)\npid 10 (server): 0 zombies, 3 live children\n"
        );
    }

    #[test]
    fn groups_largest_first_as_given() {
        let mut r = report(vec![]);
        r.scope = "all";
        r.count = 5;
        r.groups = Some(vec![
            ZombieGroup {
                ppid: 7,
                comm: "a".into(),
                count: 4,
            },
            ZombieGroup {
                ppid: 3,
                comm: "b".into(),
                count: 1,
            },
        ]);
        let out = render(&r);
        let a = out.find("| 7 ").unwrap();
        let b = out.find("| 3 ").unwrap();
        assert!(a < b, "{out}");
        assert!(out.ends_with("all: 5 zombies under 2 parents\n"), "{out}");
    }

    #[test]
    fn control_characters_in_comm_cannot_forge_rows() {
        let r = report(vec![Zombie {
            pid: 11,
            ppid: 10,
            state: 'Z',
            age_s: 1.0,
            comm: "evil\n| 99 | 1 |\x1b[2J".into(),
        }]);
        let out = render(&r);
        // Regression (attack F20): a `|` in a name added columns.
        assert!(out.contains("| evil\\n\\| 99 \\| 1 \\|\\x1b[2J |"), "{out}");
        assert_eq!(out.lines().count(), 4, "{out}");
    }

    /// The plain writer used for large tables must not change a byte of what
    /// comfy-table prints, for tables of any column widths.
    #[test]
    fn the_plain_table_matches_comfy_table() {
        let zombies: Vec<Zombie> = [
            (7, 1, "", 0.0),
            (123456, 4242, "worker", 75.5),
            (99, 4242, "a much longer command", 90000.0),
            (4194304, 1, "x", 3.25),
        ]
        .into_iter()
        .map(|(pid, ppid, comm, age_s): (i32, i32, &str, f64)| Zombie {
            pid,
            ppid,
            state: 'Z',
            age_s,
            comm: comm.into(),
        })
        .collect();
        for n in 1..=zombies.len() {
            let mut plain = Vec::new();
            plain_zombie_table(&zombies[..n], &mut plain).unwrap();
            let comfy = format!("{}\n", comfy_zombie_table(&zombies[..n]));
            assert_eq!(String::from_utf8(plain).unwrap(), comfy);
        }
    }

    /// Large reports take the plain writer; the rows and the summary line are
    /// the same as for small ones.
    #[test]
    fn a_large_table_has_every_row_and_the_summary_line() {
        let n = PLAIN_ROWS_FROM + 1;
        let zombies = (0..n as i32)
            .map(|i| Zombie {
                pid: 1000 + i,
                ppid: 10,
                state: 'Z',
                age_s: 1.0,
                comm: "w".into(),
            })
            .collect();
        let out = render(&report(zombies));
        assert_eq!(out.lines().count(), n + 3, "header, rule, rows, summary");
        assert!(out.starts_with("| PID  | PPID | STATE | AGE   | COMMAND |\n|------|"));
        assert!(out.contains("\n| 1500 | 10   | Z     | 1.00s | w       |\n"));
        assert!(out.ends_with(&format!("pid 10 (server): {n} zombies, 3 live children\n")));
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(age(0.0), "0.00s");
        assert_eq!(age(59.994), "59.99s");
        assert_eq!(age(3600.0), "1h00m");
        assert_eq!(age(90000.0), "1d01h");
    }
}
