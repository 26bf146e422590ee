//! JUnit XML for `smoke` and `audit -- COMMAND`: one testsuite with a testcase
//! per check (smoke: requests, zombies, orphans; audit: command, orphans,
//! zombies), what most CI systems display natively.
//!
//! Owns well-formed XML whatever the names hold: markup escaped, names from
//! other processes escaped visibly (`crate::text`), and characters XML 1.0
//! cannot carry replaced. Must never decide a verdict: the report carries it.

use std::io::{self, Write};

use crate::smoke::SmokeReport;
use crate::text::escape;

/// `s` as XML character data or an attribute value.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0's Char production: anything else cannot appear, even
            // escaped as a character reference.
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || matches!(c, '\u{fffe}' | '\u{ffff}') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// A name from elsewhere as XML: visible escapes first, then markup.
pub(crate) fn name(s: &str) -> String {
    xml_escape(&escape(s))
}

/// One testcase's outcome.
pub(crate) enum Case {
    Pass,
    /// (message, detail): a finding.
    Failure(String, String),
    /// (message, detail): the check could not run or reach a verdict.
    Error(String, String),
}

/// A whole document: one testsuite of named checks.
pub(crate) struct Suite<'a> {
    /// `lsbaws smoke`; the classname is it with a dot (`lsbaws.smoke`).
    pub name: &'a str,
    pub time: f64,
    /// Values from elsewhere (command lines): escaped here.
    pub properties: Vec<(&'a str, &'a str)>,
    /// (name, seconds, outcome) of each check.
    pub cases: Vec<(&'static str, f64, Case)>,
    /// The `type` of every failure and error when set (`interrupted`); else
    /// each check's own name.
    pub kind: Option<&'a str>,
    pub system_out: &'a str,
}

/// Writes `suite` as a JUnit document.
pub(crate) fn suite(suite: &Suite<'_>, out: &mut impl Write) -> io::Result<()> {
    let cases = &suite.cases;
    let failures = cases
        .iter()
        .filter(|(_, _, c)| matches!(c, Case::Failure(..)))
        .count();
    let errors = cases
        .iter()
        .filter(|(_, _, c)| matches!(c, Case::Error(..)))
        .count();
    let classname = suite.name.replace(' ', ".");
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        out,
        r#"<testsuite name="{}" tests="{}" failures="{failures}" errors="{errors}" skipped="0" time="{:.3}">"#,
        xml_escape(suite.name),
        cases.len(),
        suite.time
    )?;
    writeln!(out, "  <properties>")?;
    for (key, value) in &suite.properties {
        writeln!(
            out,
            r#"    <property name="{key}" value="{}"/>"#,
            name(value)
        )?;
    }
    writeln!(out, "  </properties>")?;
    for (case_name, time, case) in cases {
        match case {
            Case::Pass => writeln!(
                out,
                r#"  <testcase classname="{classname}" name="{case_name}" time="{time:.3}"/>"#
            )?,
            Case::Failure(message, detail) | Case::Error(message, detail) => {
                let tag = if matches!(case, Case::Failure(..)) {
                    "failure"
                } else {
                    "error"
                };
                writeln!(
                    out,
                    r#"  <testcase classname="{classname}" name="{case_name}" time="{time:.3}">"#
                )?;
                // What kind of problem: the check's name, or why there is none.
                let kind = suite.kind.unwrap_or(case_name);
                writeln!(
                    out,
                    r#"    <{tag} type="{kind}" message="{}">{}</{tag}>"#,
                    xml_escape(message),
                    name(detail)
                )?;
                writeln!(out, "  </testcase>")?;
            }
        }
    }
    writeln!(out, "  <system-out>{}</system-out>", name(suite.system_out))?;
    writeln!(out, "</testsuite>")
}

/// The JUnit document for `report`.
pub fn smoke(report: &SmokeReport, out: &mut impl Write) -> io::Result<()> {
    let verdict = report.verdict();
    suite(
        &Suite {
            name: "lsbaws smoke",
            time: report.elapsed_s,
            properties: vec![
                ("server", report.server.as_str()),
                ("url", report.url.as_str()),
                ("server_exit", report.server_exit.as_str()),
            ],
            cases: cases(report),
            kind: if report.interrupted {
                Some("interrupted")
            } else if report.inconclusive.is_some() {
                Some("inconclusive")
            } else {
                None
            },
            system_out: &verdict,
        },
        out,
    )
}

/// The document for a smoke that could not run (the server did not start):
/// one testcase with an `<error>`, so the CI job shows why.
pub fn error(message: &str, out: &mut impl Write) -> io::Result<()> {
    error_in("lsbaws smoke", "smoke", message, out)
}

/// The document for a command (`suite`) that could not run: one testcase
/// `case` with an `<error>`.
pub fn error_in(suite: &str, case: &str, message: &str, out: &mut impl Write) -> io::Result<()> {
    let classname = suite.replace(' ', ".");
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        out,
        r#"<testsuite name="{suite}" tests="1" failures="0" errors="1" skipped="0" time="0.000">"#
    )?;
    writeln!(
        out,
        r#"  <testcase classname="{classname}" name="{case}" time="0.000">"#
    )?;
    writeln!(
        out,
        r#"    <error type="setup" message="{}"/>"#,
        name(message)
    )?;
    writeln!(out, "  </testcase>")?;
    writeln!(out, "</testsuite>")
}

/// (name, seconds, outcome) of each check.
fn cases(report: &SmokeReport) -> Vec<(&'static str, f64, Case)> {
    let no_verdict = match (report.signal, &report.inconclusive) {
        (Some(signal), _) => Some(format!("interrupted by {signal} before a verdict")),
        (None, Some(why)) => Some(why.clone()),
        (None, None) => None,
    };
    if let Some(why) = no_verdict {
        // No verdict: every check is an error, so no CI reads it as a pass.
        return ["requests", "zombies", "orphans"]
            .into_iter()
            .map(|n| (n, 0.0, Case::Error(why.clone(), report.verdict())))
            .collect();
    }
    let elapsed = report.blast.as_ref().map_or(0.0, |b| b.elapsed_s);
    let requests = match &report.blast {
        Some(b) if report.failed_requests() > report.max_errors => {
            let kinds: Vec<String> = b
                .errors
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            Case::Failure(
                format!(
                    "{} of {} requests failed (limit {})",
                    report.failed_requests(),
                    b.connections,
                    report.max_errors
                ),
                kinds.join("\n"),
            )
        }
        Some(_) => Case::Pass,
        None => Case::Error("no request was sent".into(), String::new()),
    };
    let zombies = match &report.audit {
        Some(a) if a.count > report.max_zombies => Case::Failure(
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
        ),
        Some(_) => Case::Pass,
        // Not a finding about zombies: the check could not run.
        None => Case::Error(
            "the server exited during the run: nothing to audit".into(),
            report.server_exit.clone(),
        ),
    };
    let orphans = if report.orphans.len() as u64 > report.max_orphans {
        Case::Failure(
            format!(
                "{} processes left behind by the server (limit {})",
                report.orphans.len(),
                report.max_orphans
            ),
            report
                .orphans
                .iter()
                .map(|o| {
                    format!(
                        "pid {} ppid {} age {:.2}s {}",
                        o.pid,
                        o.ppid,
                        o.age_s,
                        o.cmdline.as_deref().unwrap_or(&o.comm)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
        )
    } else {
        Case::Pass
    };
    vec![
        ("requests", elapsed, requests),
        ("zombies", 0.0, zombies),
        ("orphans", 0.0, orphans),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escape_covers_markup_and_controls() {
        assert_eq!(
            xml_escape(r#"<a href="x">&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;"
        );
        assert_eq!(xml_escape("bell\x07"), "bell?");
        // Regression: U+FFFF passed through and made the document invalid.
        assert_eq!(xml_escape("a\u{ffff}b\u{fffe}"), "a?b?");
        assert_eq!(name("x\u{ffff}\u{202e}"), "x\\u{ffff}\\u{202e}");
    }
}
