//! What the server did, reported once at shutdown.
//!
//! Owns [`Summary`], plain data with public fields, and (for now) its one-line
//! rendering. Smoke and the tests parse that line ("Shutdown: N connections
//! served", "N zombies left"): its existing clauses must never change wording;
//! new ones are appended. Must never compute anything: the shutdown fills it.

use std::fmt;

use crate::Reaper;

/// What the server did, reported once at shutdown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub reaper: Option<Reaper>,
    /// Connections handed to a child.
    pub connections: u64,
    /// Connections closed unserved because fork failed.
    pub fork_failures: u64,
    /// Children this process reaped; None when the kernel reaped them (ignore).
    pub reaped: Option<u64>,
    /// Most children alive or unreaped at once; None when unknown (ignore).
    pub peak_children: Option<u64>,
    /// SIGCHLD signals handled (loop/once): fewer than exits shows coalescing.
    pub sigchld: u64,
    /// The server's own children still running after `--grace`, stopped with
    /// SIGTERM (then SIGKILL if that was not enough).
    pub killed: u64,
    /// Processes the server never forked (orphans adopted as a subreaper or
    /// PID 1, children inherited across `exec`) still running at the end of the
    /// grace, stopped the same way: a CGI program's daemons, say.
    pub foreign_killed: u64,
    /// Children that exited non-zero or died of a signal (signalfd logs them).
    pub abnormal_exits: u64,
    /// Reaped processes this server never forked: children inherited across
    /// `exec`, or orphans re-parented to it (`--subreaper`, PID 1).
    pub foreign_reaped: u64,
    /// Defunct children at exit: 0 unless the mode is `none` or `once`.
    pub zombies_left: u64,
    /// Log lines (request lines, exit statuses, warnings) that could not be
    /// written at once, because nobody read the output fast enough, and were
    /// dropped rather than stall the server.
    pub dropped_log_lines: u64,
    /// The signal that started the shutdown (SIGINT, SIGTERM, SIGHUP); None when
    /// serving stopped on an error.
    pub stop_signal: Option<i32>,
}

/// `1 connection`, `2 connections`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Shutdown: {} served, ",
            count(self.connections, "connection", "connections")
        )?;
        match self.reaped {
            Some(n) => write!(f, "{} reaped, ", count(n, "child", "children"))?,
            None => write!(f, "children reaped by the kernel, ")?,
        }
        match (self.peak_children, self.reaper) {
            // In none/once modes the count includes zombies: call it what it is.
            (Some(n), Some(Reaper::None | Reaper::Once)) => write!(
                f,
                "peak {} at once, ",
                count(n, "unreaped child", "unreaped children")
            )?,
            (Some(n), _) => write!(f, "peak {}, ", count(n, "live child", "live children"))?,
            (None, _) => write!(f, "peak live children unknown, ")?,
        }
        write!(f, "{} left", count(self.zombies_left, "zombie", "zombies"))?;
        if self.fork_failures > 0 {
            write!(
                f,
                ", {}",
                count(self.fork_failures, "fork failure", "fork failures")
            )?;
        }
        if self.killed > 0 {
            write!(
                f,
                ", {} after grace",
                count(self.killed, "child killed", "children killed")
            )?;
        }
        if self.abnormal_exits > 0 {
            write!(
                f,
                ", {}",
                count(self.abnormal_exits, "abnormal exit", "abnormal exits")
            )?;
        }
        if self.foreign_reaped > 0 {
            write!(
                f,
                ", {} reaped",
                count(self.foreign_reaped, "foreign process", "foreign processes")
            )?;
        }
        if self.sigchld > 0 {
            write!(
                f,
                " ({})",
                count(self.sigchld, "SIGCHLD signal", "SIGCHLD signals")
            )?;
        }
        // Clauses added after the line's wording was fixed: appended, so that
        // whatever parses the clauses above keeps working.
        if self.foreign_killed > 0 {
            write!(
                f,
                ", {} after grace",
                count(
                    self.foreign_killed,
                    "foreign process killed",
                    "foreign processes killed"
                )
            )?;
        }
        if self.dropped_log_lines > 0 {
            write!(
                f,
                ", {} dropped (output not read)",
                count(self.dropped_log_lines, "log line", "log lines")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_clauses_are_appended_after_the_fixed_wording() {
        let s = Summary {
            reaper: Some(Reaper::Loop),
            connections: 3,
            reaped: Some(3),
            peak_children: Some(2),
            sigchld: 2,
            foreign_killed: 1,
            dropped_log_lines: 5,
            ..Summary::default()
        };
        assert_eq!(
            s.to_string(),
            "Shutdown: 3 connections served, 3 children reaped, peak 2 live children, \
             0 zombies left (2 SIGCHLD signals), 1 foreign process killed after grace, \
             5 log lines dropped (output not read)"
        );
    }
}
