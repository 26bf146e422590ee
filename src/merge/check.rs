//! The invariants every blast report holds, checked on each input before it
//! is added: counts that do not add up are not a report of any run, and a
//! sum of them would be exact about nothing.
//!
//! Each rule below is one the blast engine keeps by construction (see
//! `blast::stats` and `blast::clients`), and one a merge of such reports
//! keeps too (all are sums, or bounds that sums preserve). Owns only those
//! rules; must never accept a report a rule refuses, nor refuse one that a
//! real run (any mode, interrupted or not) or a merge of them can print.

use anyhow::{bail, ensure};

use super::shard::{Shard, WireRow};
use crate::blast::ErrorKind;

/// Checks `s`; `rows`: a merged report's shard rows.
pub fn shard(s: &Shard, rows: Option<&[WireRow]>) -> anyhow::Result<()> {
    let at = &s.at;
    let err = |k: ErrorKind| s.errors.get(k.key()).copied().unwrap_or(0);
    ensure!(
        s.clients >= 1,
        "{at}: clients is 0: a blast has at least one"
    );
    ensure!(
        s.threads >= 1,
        "{at}: threads is 0: a blast has at least one"
    );

    // Complete responses: each is counted once by status, as ok (2xx) or as
    // an http_status error, and timed once in the total histogram.
    let mut ok_codes = 0u64;
    let mut other_codes = 0u64;
    for (code, n) in &s.status {
        let valid =
            code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) && !code.starts_with('0');
        ensure!(
            valid,
            "{at}: status code \"{}\" is not a 3-digit HTTP status",
            crate::text::escape(code)
        );
        ensure!(
            *n > 0,
            "{at}: status {code} counts 0 (blast lists only codes seen)"
        );
        let slot = if code.starts_with('2') {
            &mut ok_codes
        } else {
            &mut other_codes
        };
        *slot = slot.checked_add(*n).unwrap_or(u64::MAX);
    }
    let http_status = err(ErrorKind::HttpStatus);
    ensure!(
        ok_codes == s.ok && other_codes == http_status,
        "{at}: status counts {ok_codes} 2xx and {other_codes} other, but ok is {} and \
         errors.http_status {http_status}: the report does not add up",
        s.ok
    );
    let responses = s.ok.saturating_add(http_status);
    ensure!(
        s.total.len() == responses,
        "{at}: {} latency samples for {responses} complete responses (ok + http_status)",
        s.total.len()
    );

    // Timeouts by phase add up to the timeout errors.
    let t = s.timeouts;
    let phases = [t.connect, t.write, t.read, t.handshake]
        .iter()
        .try_fold(0u64, |a, n| a.checked_add(*n));
    ensure!(
        phases == Some(err(ErrorKind::Timeout)),
        "{at}: timeouts connect {} + write {} + read {} + handshake {} is not errors.timeout {}",
        t.connect,
        t.write,
        t.read,
        t.handshake,
        err(ErrorKind::Timeout)
    );

    // Sockets: each is timed once when connected; a request opens at most
    // one (a cut-off one may have), so they are bounded by the requests.
    let requests = s.connections.saturating_add(s.unfinished);
    ensure!(
        s.connect.len() == s.sockets_opened,
        "{at}: {} connect samples for {} sockets opened",
        s.connect.len(),
        s.sockets_opened
    );
    ensure!(
        s.sockets_opened <= requests,
        "{at}: {} sockets opened for {requests} requests (connections + unfinished)",
        s.sockets_opened
    );
    ensure!(
        s.slow_connects <= s.sockets_opened,
        "{at}: {} slow connects of {} sockets opened",
        s.slow_connects,
        s.sockets_opened
    );
    // Without keep-alive every complete response had a socket of its own.
    let sockets_needed = if s.keep_alive {
        responses.min(1)
    } else {
        responses
    };
    ensure!(
        s.sockets_opened >= sockets_needed,
        "{at}: {responses} complete responses over {} sockets{}",
        s.sockets_opened,
        if s.keep_alive {
            ""
        } else {
            " without keep-alive"
        }
    );
    // A complete response had a first byte; a request has at most one.
    ensure!(
        s.first_byte.len() >= responses && s.first_byte.len() <= requests,
        "{at}: {} first-byte samples for {responses} complete responses of {requests} requests",
        s.first_byte.len()
    );

    // TLS: handshakes on sockets that connected; none for http://.
    let handshakes = s.tls_handshake.len();
    ensure!(
        handshakes <= s.sockets_opened && s.tls_resumed <= handshakes,
        "{at}: {handshakes} TLS handshakes ({} resumed) on {} sockets",
        s.tls_resumed,
        s.sockets_opened
    );
    let scheme = s.url.split_once("://").map(|(scheme, _)| scheme);
    let https = match scheme {
        Some(x) if x.eq_ignore_ascii_case("https") => true,
        Some(x) if x.eq_ignore_ascii_case("http") => false,
        _ => bail!(
            "{at}: url {} is not http:// or https://",
            crate::text::escape(&s.url)
        ),
    };
    if !https {
        let tls_errors = err(ErrorKind::TlsCertificate) + err(ErrorKind::TlsHandshake);
        ensure!(
            handshakes == 0 && s.tls_resumed == 0 && t.handshake == 0 && tls_errors == 0,
            "{at}: TLS handshakes, timeouts or errors for an http:// url"
        );
    }

    plan(s, requests)?;
    merged(s, rows)
}

/// The plan: requests made and unfinished against what the mode planned,
/// and the open model's schedule.
fn plan(s: &Shard, requests: u64) -> anyhow::Result<()> {
    let at = &s.at;
    let lag = s.start_lag.len();
    match s.rate {
        None => ensure!(
            lag == 0 && s.behind_schedule == 0,
            "{at}: start lag or behind_schedule without a --rate"
        ),
        Some((target, planned, achieved)) => {
            ensure!(
                target.is_finite() && target > 0.0 && achieved.is_none_or(f64::is_finite),
                "{at}: rate.target_per_s {target} is not a rate"
            );
            // Every planned request is made, or unfinished.
            ensure!(
                requests == planned,
                "{at}: connections {} + unfinished {} is not rate.planned {planned}",
                s.connections,
                s.unfinished
            );
            // Each request begun was timed for its start (made ones all
            // began). A request is behind schedule at most once, whether it
            // began late or never began (then it is unfinished too).
            ensure!(
                lag >= s.connections && lag <= requests && s.behind_schedule <= requests,
                "{at}: {lag} start-lag samples and {} behind schedule for {} requests made \
                 of {requests}",
                s.behind_schedule,
                s.connections
            );
        }
    }
    match (s.conns_per_client, s.duration_s) {
        (Some(_), Some(_)) => bail!("{at}: both conns_per_client and duration_s: which mode?"),
        // A merge of runs of different shapes; or an open-model run, whose
        // plan is rate.planned (checked above) whatever these say.
        (None, None) => ensure!(
            s.merged || s.rate.is_some(),
            "{at}: neither conns_per_client nor duration_s"
        ),
        (Some(per), None) => {
            ensure!(per >= 1, "{at}: conns_per_client is 0");
            // Closed count mode: clients × conns is every request. (With
            // --rate the plan is rate.planned, checked above.)
            if s.rate.is_none() {
                ensure!(
                    s.clients.checked_mul(per) == Some(requests),
                    "{at}: connections {} + unfinished {} is not clients {} × conns_per_client \
                     {per}",
                    s.connections,
                    s.unfinished,
                    s.clients
                );
            }
            // A count run that was not stopped made every request.
            ensure!(
                s.signal.is_some() || s.unfinished == 0,
                "{at}: {} unfinished requests in a count run that was not interrupted",
                s.unfinished
            );
        }
        (None, Some(d)) => {
            ensure!(
                d.is_finite() && d > 0.0,
                "{at}: duration_s {d} is not a duration"
            );
            // A --duration client has at most one request cut off, or
            // counts one when it never began.
            if s.rate.is_none() {
                ensure!(
                    s.unfinished <= s.clients,
                    "{at}: {} unfinished requests for {} --duration clients",
                    s.unfinished,
                    s.clients
                );
            }
        }
    }
    if s.started_at.is_none() {
        // Never released: only a stop signal does that, and nothing began.
        ensure!(
            s.signal.is_some() && s.first_byte.is_empty() && lag == 0,
            "{at}: no started_at, yet not interrupted or something was timed"
        );
    }
    Ok(())
}

/// A merged report: its rows add up to it, and it names at least one run
/// per row.
fn merged(s: &Shard, rows: Option<&[WireRow]>) -> anyhow::Result<()> {
    let at = &s.at;
    let Some(rows) = rows else {
        return Ok(());
    };
    ensure!(!rows.is_empty(), "{at}: a merged report with no shards");
    ensure!(
        s.runs.len() >= rows.len(),
        "{at}: {} runs for {} shards",
        s.runs.len(),
        rows.len()
    );
    let sum = |f: fn(&WireRow) -> u64| {
        rows.iter()
            .try_fold(0u64, |a, r| a.checked_add(f(r)))
            .unwrap_or(u64::MAX)
    };
    let errors = s
        .errors
        .values()
        .try_fold(0u64, |a, n| a.checked_add(*n))
        .unwrap_or(u64::MAX);
    for (name, rows, total) in [
        ("clients", sum(|r| r.clients), s.clients),
        ("connections", sum(|r| r.connections), s.connections),
        ("ok", sum(|r| r.ok), s.ok),
        ("errors", sum(|r| r.errors), errors),
        ("unfinished", sum(|r| r.unfinished), s.unfinished),
    ] {
        ensure!(
            rows == total,
            "{at}: its shards' {name} add up to {rows}, not its {total}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
