//! Rendering of `audit` reports: the zombie table and summary line, the `--all`
//! groups, JSON, and `--watch` sample lines.
//!
//! Pure functions of the report data into a writer; must never scan or judge.
//! The summary line `pid N (<comm>): Z zombies, L live children` is a contract
//! that scripts grep: keep its shape.

use std::io::{self, Write};

use crate::audit::{AuditReport, Sample};

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
    } else {
        let mut t = super::table();
        t.set_header(["PID", "PPID", "STATE", "AGE", "COMMAND"]);
        for z in &report.zombies {
            t.add_row([
                z.pid.to_string(),
                z.ppid.to_string(),
                z.state.to_string(),
                age(z.age_s),
                printable(&z.comm),
            ]);
        }
        writeln!(w, "{t}")?;
    }
    young_note(report, w)?;
    // Always "live children", also with --tree (where the number counts all live
    // descendants, as `live_children` does in JSON): scripts grep this exact shape.
    writeln!(
        w,
        "pid {pid} ({comm}): {} zombies, {} live children",
        report.count,
        report.live_children.unwrap_or(0)
    )
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
    writeln!(
        w,
        "all: {} zombies under {} parents",
        report.count,
        groups.len()
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
    serde_json::to_writer(&mut *w, report)?;
    writeln!(w)
}

/// One `--watch` line: time, live children, zombies.
pub fn sample_line(sample: &Sample, w: &mut impl Write) -> io::Result<()> {
    writeln!(
        w,
        "{}  live {}  zombies {}",
        sample.time, sample.live_children, sample.zombies
    )
}

/// One `--watch --json` line.
pub fn sample_json(sample: &Sample, w: &mut impl Write) -> io::Result<()> {
    serde_json::to_writer(&mut *w, sample)?;
    writeln!(w)
}

/// A command name as a table cell: any process can name itself anything
/// (`prctl(PR_SET_NAME)`), and a newline or escape sequence in a cell would
/// forge rows or garble the terminal. JSON escapes them instead.
fn printable(comm: &str) -> String {
    comm.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
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
            Some("pid 10 (server): 1 zombies, 3 live children")
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
        assert!(out.contains("| evil?| 99 | 1 |?[2J |"), "{out}");
        assert_eq!(out.lines().count(), 4, "{out}");
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(age(0.0), "0.00s");
        assert_eq!(age(59.994), "59.99s");
        assert_eq!(age(3600.0), "1h00m");
        assert_eq!(age(90000.0), "1d01h");
    }
}
