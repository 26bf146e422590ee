//! Rendering of `smoke` reports: the summary table, JSON, and JUnit XML.
//!
//! Pure functions of a [`SmokeReport`] into a writer. Must never decide the
//! verdict: the report carries it.

use std::io::{self, Write};

use serde::Serialize;

use crate::smoke::SmokeReport;

/// Zombie rows shown in the table.
const ZOMBIE_ROWS: usize = 10;

/// The summary table, the zombies (if any) and the verdict line.
pub fn table(report: &SmokeReport, out: &mut impl Write) -> io::Result<()> {
    let b = &report.blast;
    let mut t = super::table();
    t.set_header(vec!["check", "result"]);
    t.add_row(vec![
        "server".to_string(),
        format!("{} (pid {})", report.server, report.server_pid),
    ]);
    t.add_row(vec!["url".to_string(), report.url.clone()]);
    let failed = report.failed_requests();
    t.add_row(vec![
        "requests".to_string(),
        format!(
            "{} sent, {} ok, {} failed (limit {})",
            b.connections, b.ok, failed, report.max_errors
        ),
    ]);
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
    match &report.audit {
        Some(a) => t.add_row(vec![
            "zombies".to_string(),
            format!(
                "{} in the server's tree (limit {}), {} live",
                a.count,
                report.max_zombies,
                a.live_children.unwrap_or(0)
            ),
        ]),
        None => t.add_row(vec![
            "zombies".to_string(),
            "not audited: the server was gone".to_string(),
        ]),
    };
    t.add_row(vec!["server exit".to_string(), report.server_exit.clone()]);
    if let Some(line) = &report.server_summary {
        t.add_row(vec!["server summary".to_string(), line.clone()]);
    }
    writeln!(out, "{t}")?;
    if let Some(a) = report.audit.as_ref().filter(|a| !a.zombies.is_empty()) {
        // A leak of hundreds would bury the verdict; the first rows show the
        // pattern and --json has them all.
        let mut shown = a.clone();
        shown.zombies.truncate(ZOMBIE_ROWS);
        writeln!(out)?;
        crate::report::audit::table(&shown, out)?;
        if a.zombies.len() > ZOMBIE_ROWS {
            writeln!(
                out,
                "({} more zombies not shown; --json lists them all)",
                a.zombies.len() - ZOMBIE_ROWS
            )?;
        }
    }
    writeln!(out, "{}", report.verdict())
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
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 cannot carry most control characters, even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one testsuite, testcases `requests` and `zombies`, each with a
/// `<failure>` when it failed; what most CI systems display natively.
pub fn junit(report: &SmokeReport, out: &mut impl Write) -> io::Result<()> {
    let b = &report.blast;
    let failed = report.failed_requests();
    let requests_failure = (failed > report.max_errors).then(|| {
        let kinds: Vec<String> = b
            .errors
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        (
            format!(
                "{failed} of {} requests failed (limit {})",
                b.connections, report.max_errors
            ),
            kinds.join("\n"),
        )
    });
    let zombies_failure = match &report.audit {
        Some(a) if a.count > report.max_zombies => Some((
            format!("{} zombies left (limit {})", a.count, report.max_zombies),
            a.zombies
                .iter()
                .map(|z| {
                    format!(
                        "pid {} ppid {} {} age {:.2}s {}",
                        z.pid, z.ppid, z.state, z.age_s, z.comm
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
        )),
        Some(_) => None,
        // Not a finding about zombies: the check could not run (a JUnit <error>).
        None => None,
    };
    let zombies_error = report.audit.is_none().then(|| {
        (
            "the server exited during the run: nothing to audit".to_string(),
            report.server_exit.clone(),
        )
    });
    let failures = usize::from(requests_failure.is_some()) + usize::from(zombies_failure.is_some());
    let errors = usize::from(zombies_error.is_some());
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        out,
        r#"<testsuite name="lsbaws smoke" tests="2" failures="{failures}" errors="{errors}" skipped="0" time="{:.3}">"#,
        report.elapsed_s
    )?;
    writeln!(out, "  <properties>")?;
    for (name, value) in [
        ("server", report.server.as_str()),
        ("url", report.url.as_str()),
        ("server_exit", report.server_exit.as_str()),
    ] {
        writeln!(
            out,
            r#"    <property name="{name}" value="{}"/>"#,
            xml_escape(value)
        )?;
    }
    writeln!(out, "  </properties>")?;
    let case = |out: &mut dyn Write,
                name: &str,
                time: f64,
                failure: &Option<(String, String)>,
                tag: &str|
     -> io::Result<()> {
        match failure {
            None => writeln!(
                out,
                r#"  <testcase classname="lsbaws.smoke" name="{name}" time="{time:.3}"/>"#
            ),
            Some((message, detail)) => {
                writeln!(
                    out,
                    r#"  <testcase classname="lsbaws.smoke" name="{name}" time="{time:.3}">"#
                )?;
                writeln!(
                    out,
                    r#"    <{tag} type="{name}" message="{}">{}</{tag}>"#,
                    xml_escape(message),
                    xml_escape(detail)
                )?;
                writeln!(out, "  </testcase>")
            }
        }
    };
    case(out, "requests", b.elapsed_s, &requests_failure, "failure")?;
    match &zombies_error {
        Some(_) => case(out, "zombies", 0.0, &zombies_error, "error")?,
        None => case(out, "zombies", 0.0, &zombies_failure, "failure")?,
    }
    writeln!(
        out,
        "  <system-out>{}</system-out>",
        xml_escape(&report.verdict())
    )?;
    writeln!(out, "</testsuite>")
}

#[cfg(test)]
mod tests {
    use super::xml_escape;

    #[test]
    fn xml_escape_covers_markup_and_controls() {
        assert_eq!(
            xml_escape(r#"<a href="x">&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;"
        );
        assert_eq!(xml_escape("bell\x07"), "bell?");
    }
}
