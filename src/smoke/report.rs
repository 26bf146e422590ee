//! What a smoke run found, as plain data for the table, JSON and JUnit
//! renderers, with its verdict.
//!
//! Owns the verdict's wording (`PASS`, `FAIL: reasons`, `INTERRUPTED by
//! SIGINT`, `INCONCLUSIVE: why`) and the exit outcome. Must never run anything or print.

use serde::Serialize;

use crate::audit::AuditReport;
use crate::audit::leftovers::Leftover;
use crate::blast::BlastReport;
use crate::outcome::Outcome;
use crate::shutdown::Signal;

/// The whole job's findings.
#[derive(Debug, Clone, Serialize)]
pub struct SmokeReport {
    /// The server command line as run.
    pub server: String,
    pub server_pid: u32,
    /// The URL blasted; empty when a stop came before the server announced it.
    pub url: String,
    /// None when a stop came before the blast.
    pub blast: Option<BlastReport>,
    /// None when the server died before it could be audited, or a stop came first.
    pub audit: Option<AuditReport>,
    /// Processes the server left behind: still running after it exited, other
    /// than the server that owns the listening socket. Stopped by smoke since.
    pub orphans: Vec<Leftover>,
    /// How the server ended: `exit status 0`, `killed by SIGKILL after the grace period`.
    pub server_exit: String,
    /// The built-in server's own summary line, when it printed one.
    pub server_summary: Option<String>,
    pub max_errors: u64,
    pub max_zombies: u64,
    pub max_orphans: u64,
    /// The verdict; None (null) when a stop signal ended the run first or the
    /// run was inconclusive.
    pub pass: Option<bool>,
    /// Why it failed; empty on PASS.
    pub reasons: Vec<String>,
    /// Why there is no verdict although the run ended: the load generator
    /// could not make every request (out of descriptors or ports, or
    /// `--duration` too short to start every client). Exit 2.
    pub inconclusive: Option<String>,
    /// What the load generator lacked, said before the blast.
    pub warnings: Vec<String>,
    /// Wall-clock seconds of the whole job.
    pub elapsed_s: f64,
    /// A stop signal ended the run: the figures are what was measured until then.
    pub interrupted: bool,
    pub signal: Option<Signal>,
    /// Children of smoke that could not be stopped within the clean-up's bound
    /// (a process in uninterruptible sleep): said, not waited for.
    pub unstopped: Vec<i32>,
}

impl SmokeReport {
    /// `PASS`, `FAIL: reason; reason`, `INTERRUPTED by SIGINT`, or
    /// `INCONCLUSIVE: why`.
    pub fn verdict(&self) -> String {
        match (self.signal, &self.inconclusive, self.pass) {
            (Some(signal), _, _) => format!("INTERRUPTED by {signal}"),
            (None, Some(why), _) => format!("INCONCLUSIVE: {why}"),
            (None, None, Some(true)) => "PASS".to_string(),
            (None, None, _) => format!("FAIL: {}", self.reasons.join("; ")),
        }
    }

    /// A stop signal after the verdict was decided, before the report was
    /// printed: it carries no verdict either (exit 128 + the signal).
    pub fn interrupt(&mut self, signal: Signal) {
        if self.signal.is_none() {
            self.signal = Some(signal);
            self.interrupted = true;
            self.pass = None;
        }
    }

    pub fn outcome(&self) -> Outcome {
        match (self.signal, &self.inconclusive, self.pass) {
            (Some(Signal(sig)), _, _) => Outcome::Interrupted(sig),
            (None, Some(_), _) => Outcome::Inconclusive,
            (None, None, Some(true)) => Outcome::Pass,
            (None, None, _) => Outcome::Finding,
        }
    }

    pub fn failed_requests(&self) -> u64 {
        self.blast.as_ref().map_or(0, BlastReport::errors_total)
    }

    pub fn zombies(&self) -> Option<u64> {
        self.audit.as_ref().map(|a| a.count)
    }
}
