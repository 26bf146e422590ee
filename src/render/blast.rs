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
    t.add_row(["url".to_string(), super::cell(&report.url)]);
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
            // Escaped: a merged report's codes come from files.
            .map(|(code, n)| format!("{}: {n}", super::cell(code)))
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
    extra_rows(report, &mut t);
    writeln!(out, "{t}")?;
    writeln!(out)?;

    let tls = report.tls_handshake_ms.count > 0 || is_https(&report.url);
    let rows: Vec<(&str, &LatencyMs)> = [
        ("connect", Some(&report.connect_ms)),
        ("tls handshake", tls.then_some(&report.tls_handshake_ms)),
        ("first byte", Some(&report.first_byte_ms)),
        ("total", Some(&report.latency_ms)),
    ]
    .into_iter()
    .filter_map(|(name, l)| Some((name, l?)))
    .collect();
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

fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// Rows of the options that change how the run was made: `--source`,
/// `--start-at`, `--rate`, TLS session resumption.
fn extra_rows(report: &BlastReport, t: &mut comfy_table::Table) {
    if report.sources > 0 {
        t.add_row(["source addresses".to_string(), report.sources.to_string()]);
    }
    if let (Some(at), Some(skew)) = (report.start_at, report.release_skew_ms) {
        t.add_row(["start at".to_string(), crate::blast::format_time(at)]);
        t.add_row(["release skew".to_string(), format!("{skew:+.3} ms")]);
    }
    if let Some(rate) = &report.rate {
        let achieved = rate
            .achieved_per_s
            .map_or_else(|| "-".to_string(), |r| format!("{r:.1}/s"));
        t.add_row([
            "rate".to_string(),
            format!(
                "{:.1}/s asked, {achieved} achieved, {} planned",
                rate.target_per_s, rate.planned
            ),
        ]);
        t.add_row([
            "behind schedule".to_string(),
            format!(
                "{} (start lag p99 {:.3} ms)",
                report.behind_schedule, rate.start_lag_ms.p99
            ),
        ]);
    }
    if report.tls_resumed > 0 {
        t.add_row([
            "tls sessions resumed".to_string(),
            report.tls_resumed.to_string(),
        ]);
    }
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
             --keep-alive, more --source addresses, or a wider net.ipv4.ip_local_port_range"
                .to_string(),
        );
    }
    if report.errors_of(ErrorKind::TlsCertificate) > 0 {
        hints.push(
            "note: tls_certificate: the server's certificate was not trusted; name its CA \
             with --cacert FILE (or --insecure to skip verification)"
                .to_string(),
        );
    }
    if report.rate.is_some() && report.behind_schedule > 0 {
        hints.push(format!(
            "note: {} requests could not start on time because every client was busy \
             (they started late, their wait in the latency, or not before the run ended); \
             more --max-clients to keep the schedule",
            report.behind_schedule
        ));
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
    /// Regression (attack 3, F10): a merged report's status codes come from
    /// files, and one with ESC in it reached the terminal raw.
    #[test]
    fn status_codes_are_printed_escaped() {
        let mut r = crate::blast::sample_report();
        r.status.insert("2\u{1b}[0m".into(), 1);
        r.url = "http://x/\u{202e}".into();
        let mut out = Vec::new();
        summary(&r, &mut out).expect("render");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.contains("2\\x1b[0m: 1"), "{text}");
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{202e}'),
            "{text}"
        );
    }

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

    /// The keys of `--start-at`, `--rate`, `--source` and TLS, in JSON and
    /// in the table.
    #[test]
    fn start_rate_source_and_tls_figures_are_shown() {
        use std::time::{Duration, UNIX_EPOCH};
        let mut r = crate::blast::sample_report();
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        r.url = "https://127.0.0.1:8443/".into();
        r.start_at = Some(at);
        r.started_at = Some(at + Duration::from_micros(1500));
        r.release_skew_ms = Some(1.5);
        r.sources = 3;
        r.behind_schedule = 7;
        r.rate = Some(crate::blast::RateReport {
            target_per_s: 200.0,
            planned: 800,
            achieved_per_s: Some(199.5),
            start_lag_ms: LatencyMs::default(),
        });
        let mut out = Vec::new();
        json(&r, &mut out).expect("render");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["start_at"], "2027-01-15T08:00:00.000000000Z");
        assert_eq!(v["started_at"], "2027-01-15T08:00:00.001500000Z");
        assert_eq!(v["release_skew_ms"], 1.5);
        assert_eq!(v["behind_schedule"], 7);
        assert_eq!(v["rate"]["planned"], 800);
        assert_eq!(v["sources"], 3);
        assert!(v["tls_handshake_ms"]["p99"].is_f64(), "{v}");
        assert_eq!(v["timeouts"]["handshake"], 0);
        let mut out = Vec::new();
        summary(&r, &mut out).expect("render");
        let text = String::from_utf8(out).expect("utf8");
        for needle in [
            "| release skew ",
            "+1.500 ms",
            "200.0/s asked, 199.5/s achieved, 800 planned",
            "| behind schedule ",
            "| source addresses ",
            "| tls handshake ",
            "note: 7 requests could not start on time",
        ] {
            assert!(text.contains(needle), "{needle:?} missing:\n{text}");
        }
    }
}
