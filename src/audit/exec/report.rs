//! What `audit -- COMMAND` found, as plain data, with its verdict.
//! `Serialize` gives the `--json` shape.
//!
//! Owns the verdict's wording (`PASS`, `FAIL: reasons`, `INTERRUPTED by
//! SIGINT`, `ERROR: why`) and the exit outcome: the command's own failure
//! first, then an uncertain count, then leftovers over the limits. Must never
//! run anything, read /proc or print.

use serde::Serialize;

use crate::audit::leftovers::{Leftover, Origin};
use crate::outcome::{ERROR, Outcome};
use crate::shutdown::Signal;
use crate::text::count;

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct ExecReport {
    /// COMMAND and its arguments as given (lossy UTF-8).
    pub command: Vec<String>,
    /// COMMAND's pid (and process group id).
    pub pid: i32,
    /// How COMMAND ended; None when it could not be reaped (a stop signal
    /// came and it would not die within the bound).
    pub exit: Option<Exit>,
    /// Wall-clock seconds from the start of COMMAND to the report.
    pub elapsed_s: f64,
    /// (1) The run's processes still alive after COMMAND exited and
    /// `settle_s` passed: orphans that escaped. In pid order.
    pub orphans: Vec<Leftover>,
    /// (2) Parents that held zombies for longer than `min_age_s`, most zombies
    /// first.
    pub zombies: Vec<ZombieHolder>,
    /// Distinct zombies held longer than `min_age_s`: what `max_zombies` limits.
    pub zombie_count: u64,
    /// (3) Orphans that exited on their own and were reaped by lsbaws
    /// (informational; at most the first `MAX_LISTED`).
    pub reaped: Vec<ReapedOrphan>,
    /// How many there were in all.
    pub reaped_count: u64,
    /// Samples of the tree taken, the time between two, and the time all of
    /// them took (the sampling's cost).
    pub samples: u64,
    pub interval_s: f64,
    pub sampling_s: f64,
    pub min_age_s: f64,
    pub settle_s: f64,
    pub max_zombies: u64,
    pub max_orphans: u64,
    /// `--keep`: the orphans were left running.
    pub kept: bool,
    /// Processes of the run that could not be stopped within the clean-up's
    /// bound (uninterruptible sleep): said, not waited for.
    pub unstopped: Vec<i32>,
    /// Why there is no verdict on leaks: the counts are uncertain (a /proc
    /// read failed during the run), or COMMAND's status was lost.
    pub error: Option<String>,
    /// A stop signal ended the run: the figures are what was seen until then.
    pub interrupted: bool,
    pub signal: Option<Signal>,
}

/// How COMMAND ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Exit {
    /// Its exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that killed it, when one did.
    pub signal: Option<i32>,
}

impl Exit {
    /// The exit code a shell would report: the code, or 128 + the signal.
    pub fn status(self) -> u8 {
        match (self.code, self.signal) {
            (Some(code), _) => (code & 0xff) as u8,
            (None, Some(sig)) => u8::try_from(128 + sig.clamp(1, 127)).unwrap_or(255),
            (None, None) => ERROR,
        }
    }

    pub fn success(self) -> bool {
        self.code == Some(0)
    }

    /// `exit status 3`, `killed by SIGKILL`.
    pub fn describe(self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(sig)) => match nix::sys::signal::Signal::try_from(sig) {
                Ok(s) => format!("killed by {}", s.as_str()),
                Err(_) => format!("killed by signal {sig}"),
            },
            (None, None) => "unknown".to_string(),
        }
    }
}

/// A parent that held zombies longer than `--min-age`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZombieHolder {
    pub ppid: i32,
    pub comm: String,
    pub cmdline: Option<String>,
    /// Distinct zombies it held longer than `--min-age`.
    pub zombies: u64,
    /// The most of those it held at once (in one sample).
    pub peak: u64,
    /// The longest any of them was seen defunct (a lower bound: up to one
    /// interval more before the first sample that saw it, and after the last).
    pub longest_s: f64,
    /// Seconds after COMMAND started when one of its zombies first counted.
    pub first_seen_s: f64,
    /// The zombies' pids (at most the first `MAX_LISTED`).
    pub pids: Vec<i32>,
    /// Their command names, each once (at most a few).
    pub zombie_comms: Vec<String>,
}

/// An orphan that exited on its own and that lsbaws reaped.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReapedOrphan {
    pub pid: i32,
    pub comm: String,
    pub started_by: Option<Origin>,
    /// `exit status 0`, `killed by SIGTERM`.
    pub status: String,
}

/// Longest lists kept in a report (reaped orphans, zombie pids per parent):
/// enough to find a pattern, bounded whatever a command does for hours.
pub const MAX_LISTED: usize = 10_000;

impl ExecReport {
    /// Why the run fails, in words; empty when it passes. Not meaningful
    /// after a stop signal (no verdict).
    pub fn reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if let Some(exit) = self.exit.filter(|e| !e.success()) {
            reasons.push(format!("the command failed ({})", exit.describe()));
        }
        if let Some(error) = &self.error {
            reasons.push(error.clone());
        }
        let orphans = self.orphans.len() as u64;
        if orphans > self.max_orphans {
            reasons.push(format!(
                "{} left running (limit {})",
                count(orphans, "process", "processes"),
                self.max_orphans
            ));
        }
        if self.zombie_count > self.max_zombies {
            reasons.push(format!(
                "{} held longer than {:.2}s (limit {})",
                count(self.zombie_count, "zombie", "zombies"),
                self.min_age_s,
                self.max_zombies
            ));
        }
        reasons
    }

    /// `PASS`, `FAIL: reason; reason`, `ERROR: ...` or `INTERRUPTED by SIGINT`.
    pub fn verdict(&self) -> String {
        if let Some(signal) = self.signal {
            return format!("INTERRUPTED by {signal}");
        }
        let reasons = self.reasons();
        match self.outcome() {
            Outcome::Pass => "PASS".to_string(),
            Outcome::Status(ERROR) if self.exit.is_none_or(Exit::success) => {
                format!("ERROR: {}", reasons.join("; "))
            }
            _ => format!("FAIL: {}", reasons.join("; ")),
        }
    }

    /// No verdict after a stop signal (128 + it); else COMMAND's own failure
    /// (its status, so a failing suite fails the same way); else 2 when a
    /// count is uncertain; else 1 when leftovers exceed the limits; else 0.
    pub fn outcome(&self) -> Outcome {
        if let Some(Signal(sig)) = self.signal {
            return Outcome::Interrupted(sig);
        }
        match self.exit {
            Some(exit) if !exit.success() => return Outcome::Status(exit.status()),
            // Not reaped without a stop signal cannot happen (the run waits
            // for it); were it to, it is no verdict.
            None => return Outcome::Status(ERROR),
            Some(_) => {}
        }
        if self.error.is_some() {
            // An error that makes a count uncertain is exit 2, never a pass.
            return Outcome::Status(ERROR);
        }
        Outcome::of(
            self.orphans.len() as u64 > self.max_orphans || self.zombie_count > self.max_zombies,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn report() -> ExecReport {
        ExecReport {
            command: vec!["sh".into(), "-c".into(), "true".into()],
            pid: 100,
            exit: Some(Exit {
                code: Some(0),
                signal: None,
            }),
            elapsed_s: 1.0,
            orphans: vec![],
            zombies: vec![],
            zombie_count: 0,
            reaped: vec![],
            reaped_count: 0,
            samples: 10,
            interval_s: 0.1,
            sampling_s: 0.01,
            min_age_s: 1.0,
            settle_s: 0.5,
            max_zombies: 0,
            max_orphans: 0,
            kept: false,
            unstopped: vec![],
            error: None,
            interrupted: false,
            signal: None,
        }
    }

    #[test]
    fn the_command_fails_first_then_errors_then_leftovers() {
        let mut r = report();
        assert_eq!(r.outcome(), Outcome::Pass);
        assert_eq!(r.verdict(), "PASS");
        r.zombie_count = 1;
        assert_eq!(r.outcome(), Outcome::Finding);
        assert!(
            r.verdict().starts_with("FAIL: 1 zombie held"),
            "{}",
            r.verdict()
        );
        r.error = Some("the counts are uncertain: cannot read /proc".into());
        assert_eq!(r.outcome().code(), 2);
        assert!(r.verdict().starts_with("ERROR: "), "{}", r.verdict());
        r.exit = Some(Exit {
            code: Some(3),
            signal: None,
        });
        assert_eq!(r.outcome().code(), 3);
        r.exit = Some(Exit {
            code: None,
            signal: Some(9),
        });
        assert_eq!(r.outcome().code(), 137);
        assert!(r.verdict().contains("killed by SIGKILL"), "{}", r.verdict());
        r.signal = Some(Signal(2));
        assert_eq!(r.outcome().code(), 130);
        assert_eq!(r.verdict(), "INTERRUPTED by SIGINT");
    }

    #[test]
    fn exit_codes_wrap_as_a_shell_reports_them() {
        let code = |c| Exit {
            code: Some(c),
            signal: None,
        };
        assert_eq!(code(256 + 7).status(), 7);
        assert_eq!(code(255).status(), 255);
    }
}
