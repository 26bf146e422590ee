//! What an audit found, as plain data: [`AuditReport`] for one scan and
//! [`Sample`] for one `--watch` line. `Serialize` gives the `--json` shapes.
//!
//! Owns the verdict ([`AuditReport::outcome`]). Must never read /proc or print:
//! the scan fills these, `crate::render::audit` renders them.

use serde::Serialize;

use crate::outcome::Outcome;
use crate::shutdown::Signal;

/// How the processes of a report were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanMethod {
    /// `PID/task/*/children` and one `stat` per listed child.
    ChildrenFile,
    /// One `stat` per process on the machine.
    Full,
}

/// The result of one scan.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// `children`, `tree` or `all`.
    pub scope: &'static str,
    /// The audited process (absent with `--all`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Its command name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    /// Children (descendants with `--tree`) that are not zombies. The table's
    /// summary line calls this "live children" in every scope (a contract). When
    /// `scan` is `children_file` it is a lower bound: that file can skip entries
    /// (see `audit::children`), and a finding from it is returned without the
    /// full scan that would count every child. The zombies listed are all real.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_children: Option<u64>,
    /// The zombies that count, by pid.
    pub zombies: Vec<Zombie>,
    /// `zombies.len()`, the number the verdict compares with `max_zombies`.
    pub count: u64,
    /// Zombies seen but not counted because they were younger than `min_age_s`.
    pub younger: u64,
    pub min_age_s: f64,
    pub max_zombies: u64,
    /// `--all`: zombies per parent, largest group first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<ZombieGroup>>,
    pub scan: ScanMethod,
    /// A stop signal ended the audit (during `--settle`) before its verdict:
    /// the report is what the last scan saw.
    pub interrupted: bool,
    pub signal: Option<Signal>,
}

/// One defunct process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Zombie {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
    /// Seconds since the process started (10 ms resolution).
    pub age_s: f64,
    pub comm: String,
}

/// The zombies of one parent (`--all`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZombieGroup {
    pub ppid: i32,
    /// The parent's command name; `?` when it exited during the scan.
    pub comm: String,
    pub count: u64,
}

impl AuditReport {
    /// Pass when at most `max_zombies` zombies count, a finding above; no
    /// verdict when a stop signal cut the audit short.
    pub fn outcome(&self) -> Outcome {
        match self.signal {
            Some(Signal(sig)) => Outcome::Interrupted(sig),
            None => Outcome::of(self.count > self.max_zombies),
        }
    }
}

/// One `--watch` sample.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Wall-clock time of the sample, RFC 3339 in UTC.
    pub time: String,
    /// Seconds since the first sample.
    pub elapsed_s: f64,
    pub pid: Option<i32>,
    pub live_children: u64,
    pub zombies: u64,
}

impl Sample {
    pub fn new(report: &AuditReport, at: std::time::SystemTime, elapsed_s: f64) -> Self {
        Sample {
            time: humantime::format_rfc3339_millis(at).to_string(),
            elapsed_s: round2(elapsed_s),
            pid: report.pid,
            live_children: report.live_children.unwrap_or(0),
            zombies: report.count,
        }
    }
}

/// Rounds to hundredths: the resolution of `starttime` and `/proc/uptime`.
pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
