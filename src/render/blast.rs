//! Rendering of `blast` reports: the summary tables, the latency histogram
//! for people (not in JSON) and the JSON object.
//!
//! Pure functions of a [`BlastReport`]. Must never compute results, read the
//! clock or decide whether progress is shown (the command decides once).

use std::io::{self, Write};

use crate::blast::{BlastReport, ErrorKind, LatencyMs};
use crate::text::count;

/// One JSON object on one line, newline-terminated.
pub fn json(report: &BlastReport, out: &mut impl Write) -> io::Result<()> {
    super::json::line(report, out)
}

/// The human summary: totals, errors by kind, status codes, latency, and a
/// one-line hint per condition whose cause is known.
pub fn summary(report: &BlastReport, out: &mut impl Write) -> io::Result<()> {
    let mut t = super::table();
    t.set_header(["blast", "value"]);
    if let Some(signal) = report.signal {
        t.add_row([
            "interrupted".to_string(),
            format!("by {signal}: partial results, no verdict"),
        ]);
    }
    t.add_row([
        "url".to_string(),
        crate::text::escape(&report.url).into_owned(),
    ]);
    let shape = match (report.conns_per_client, report.duration_s) {
        (Some(m), _) => format!(
            "{} × {}",
            count(report.clients, "client", "clients"),
            count(m, "request", "requests")
        ),
        (None, Some(d)) => format!("{} for {d:.1}s", count(report.clients, "client", "clients")),
        (None, None) => count(report.clients, "client", "clients"),
    };
    let reuse = if report.keep_alive {
        ", keep-alive"
    } else {
        ""
    };
    t.add_row([
        "run".to_string(),
        format!(
            "{shape}, {}{reuse}",
            count(report.threads as u64, "thread", "threads")
        ),
    ]);
    t.add_row(["connections".to_string(), report.connections.to_string()]);
    t.add_row(["ok".to_string(), report.ok.to_string()]);
    t.add_row(["errors".to_string(), report.errors_total().to_string()]);
    for (kind, n) in report.errors.iter().filter(|(_, n)| **n > 0) {
        let detail = if *kind == ErrorKind::Timeout.key() {
            let tm = report.timeouts;
            format!(
                "{n} (connect {}, write {}, read {})",
                tm.connect, tm.write, tm.read
            )
        } else {
            n.to_string()
        };
        t.add_row([format!("  {kind}"), detail]);
    }
    if report.unfinished > 0 {
        t.add_row([
            "unfinished".to_string(),
            format!(
                "{} (cut off by {})",
                report.unfinished,
                if report.interrupted {
                    "the signal"
                } else {
                    "the deadline"
                }
            ),
        ]);
    }
    if !report.status.is_empty() {
        let codes: Vec<String> = report
            .status
            .iter()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect();
        t.add_row(["status".to_string(), codes.join(", ")]);
    }
    t.add_row(["elapsed".to_string(), format!("{:.3} s", report.elapsed_s)]);
    t.add_row([
        "connections/s".to_string(),
        format!("{:.0}", report.conns_per_s),
    ]);
    if report.keep_alive {
        t.add_row([
            "sockets opened".to_string(),
            report.sockets_opened.to_string(),
        ]);
    }
    t.add_row([
        "slow connects (≥1 s)".to_string(),
        report.slow_connects.to_string(),
    ]);
    writeln!(out, "{t}")?;
    writeln!(out)?;

    let rows = [
        ("connect", &report.connect_ms),
        ("first byte", &report.first_byte_ms),
        ("total", &report.latency_ms),
    ];
    if rows.iter().all(|(_, l)| l.count == 0) {
        // Rows of 0.000 would read as "instant"; there is nothing to show.
        writeln!(
            out,
            "latency: no samples (no connection was established, so nothing was timed)"
        )?;
    } else {
        let mut lat = super::table();
        lat.set_header(["latency (ms)", "count", "min", "p50", "p90", "p99", "max"]);
        for (name, l) in rows {
            lat.add_row(latency_row(name, l));
        }
        writeln!(out, "{lat}")?;
        if report.latency_ms.count == 0 {
            writeln!(
                out,
                "latency: no complete response, so no total latency and no histogram"
            )?;
        }
    }
    if report.latency_ms.count > 0 {
        writeln!(out)?;
        super::histogram::table(
            "Latency histogram (total, per complete response)",
            &report.histograms.total,
            out,
        )?;
    }

    for hint in hints(report) {
        writeln!(out, "{hint}")?;
    }
    Ok(())
}

/// One latency row; a row without samples shows `-`, never 0.000.
fn latency_row(name: &str, l: &LatencyMs) -> Vec<String> {
    let ms = |v: f64| format!("{v:.3}");
    if l.count == 0 {
        let mut row = vec![name.to_string(), "0".to_string()];
        row.extend(std::iter::repeat_n("-".to_string(), 5));
        return row;
    }
    vec![
        name.to_string(),
        l.count.to_string(),
        ms(l.min),
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.max),
    ]
}

/// What the numbers usually mean, one line each.
fn hints(report: &BlastReport) -> Vec<String> {
    let mut hints = Vec::new();
    if report.slow_connects > 0 {
        hints.push(format!(
            "note: {} connects took ≥1 s: SYN retransmits, usually a full listen backlog \
             (the article's servers listen with a backlog of 5)",
            report.slow_connects
        ));
    }
    if report.unfinished > 0 && !report.interrupted {
        hints.push(format!(
            "note: {} never got to start a request before --duration ended; they count \
             against --max-errors (fewer clients, or a longer --duration)",
            count(report.unfinished, "client", "clients")
        ));
    }
    if report.errors_of(ErrorKind::FdExhausted) > 0 {
        hints.push(
            "note: fd_exhausted: this process ran out of file descriptors (not a server \
             fault); raise the limit with `ulimit -n`"
                .to_string(),
        );
    }
    if report.errors_of(ErrorKind::AddrNotAvailable) > 0 {
        hints.push(
            "note: addr_not_available: ephemeral ports used up (TIME_WAIT); fewer clients, \
             --keep-alive, or a wider net.ipv4.ip_local_port_range"
                .to_string(),
        );
    }
    hints
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_contract_keys() {
        let mut out = Vec::new();
        json(&crate::blast::sample_report(), &mut out).expect("render");
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(text.lines().count(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        for key in [
            "connections",
            "ok",
            "errors",
            "status",
            "elapsed_s",
            "conns_per_s",
        ] {
            assert!(v.get(key).is_some(), "{key} missing: {text}");
        }
        for key in ["min", "p50", "p90", "p99", "max"] {
            assert!(v["latency_ms"][key].is_f64(), "latency_ms.{key}: {text}");
        }
        assert_eq!(v["connections"], 4);
        assert_eq!(v["errors"]["http_status"], 1);
        assert_eq!(v["errors"]["timeout"], 1);
        assert_eq!(v["status"]["503"], 1);
        assert_eq!(v["conns_per_s"], 8.0);
        // Added for merge: the schema, tag, instants and the histograms.
        assert_eq!(v["schema"], crate::blast::SCHEMA);
        assert_eq!(v["tag"], "sample");
        assert_eq!(v["started_at"], "2027-01-15T08:00:00.000000000Z");
        assert_eq!(v["ended_at"], "2027-01-15T08:00:00.500000000Z");
        for key in ["total", "connect", "first_byte"] {
            let text = v["histograms"][key].as_str().expect(key);
            let h = crate::blast::histogram::decode(text).expect(key);
            assert!(crate::blast::histogram::has_shared_settings(&h));
        }
        let total = crate::blast::histogram::decode(v["histograms"]["total"].as_str().unwrap());
        assert_eq!(total.map(|h| h.len()), Ok(2));
    }

    #[test]
    fn summary_names_errors_statuses_and_causes() {
        let mut out = Vec::new();
        summary(&crate::blast::sample_report(), &mut out).expect("render");
        let text = String::from_utf8(out).expect("utf8");
        for needle in [
            "| connections ",
            "fd_exhausted",
            "1 (connect 0, write 0, read 1)",
            "200: 1, 503: 1",
            "first byte",
            "1 connects took ≥1 s: SYN retransmits",
            "`ulimit -n`",
        ] {
            assert!(text.contains(needle), "{needle:?} missing:\n{text}");
        }
        assert!(
            !text.contains("refused"),
            "zero kinds are left out:\n{text}"
        );
        // The histogram for people, under the tables, whose rows add up.
        let hist = text.split("Latency histogram").nth(1).expect("histogram");
        let rows: u64 = hist
            .lines()
            .filter_map(|l| l.split('|').nth(2)?.trim().parse::<u64>().ok())
            .sum();
        assert_eq!(rows, 2, "{text}");
    }

    /// Issue 14: when nothing was timed, the latency table said 0.000
    /// everywhere, which reads as "instant".
    #[test]
    fn no_samples_say_so_instead_of_zeros() {
        let mut r = crate::blast::sample_report();
        r.latency_ms = LatencyMs::default();
        r.first_byte_ms = LatencyMs::default();
        let mut out = Vec::new();
        summary(&r, &mut out).expect("render");
        let text = String::from_utf8(out).expect("utf8");
        assert!(!text.contains("0.000"), "{text}");
        assert!(text.contains("| total        | 0     | -   "), "{text}");
        assert!(text.contains("no complete response"), "{text}");
        assert!(!text.contains("Latency histogram"), "{text}");

        r.connect_ms = LatencyMs::default();
        let mut out = Vec::new();
        summary(&r, &mut out).expect("render");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.contains("latency: no samples"), "{text}");
        assert!(!text.contains("| latency (ms)"), "{text}");
    }
}
