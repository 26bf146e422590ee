//! Rendering of `serve`'s own lines: the ready line and the shutdown summary.
//!
//! Owns their wording. Smoke and the tests parse the summary ("Shutdown: N
//! connections served", "N zombies left"): its existing clauses must never
//! change wording; new ones are appended. The ready line's format belongs to
//! the server crate (`lsbaws_server::ready_line`), which smoke parses.
//! Must never compute anything: the server fills the [`Summary`].

use std::fmt::{self, Write};

use crate::text::count;
use lsbaws_server::{Reaper, Summary};

/// The summary line, `Shutdown: 3 connections served, ...`.
pub fn summary_line(summary: &Summary) -> String {
    let mut line = String::new();
    // Writing into a String cannot fail.
    let _ = write_summary(summary, &mut line);
    line
}

fn write_summary(this: &Summary, f: &mut impl Write) -> fmt::Result {
    write!(
        f,
        "Shutdown: {} served, ",
        count(this.connections, "connection", "connections")
    )?;
    match this.reaped {
        Some(n) => write!(f, "{} reaped, ", count(n, "child", "children"))?,
        None => write!(f, "children reaped by the kernel, ")?,
    }
    match (this.peak_children, this.reaper) {
        // In none/once modes the count includes zombies: call it what it is.
        (Some(n), Some(Reaper::None | Reaper::Once)) => write!(
            f,
            "peak {} at once, ",
            count(n, "unreaped child", "unreaped children")
        )?,
        (Some(n), _) => write!(f, "peak {}, ", count(n, "live child", "live children"))?,
        (None, _) => write!(f, "peak live children unknown, ")?,
    }
    write!(f, "{} left", count(this.zombies_left, "zombie", "zombies"))?;
    if this.fork_failures > 0 {
        write!(
            f,
            ", {}",
            count(this.fork_failures, "fork failure", "fork failures")
        )?;
    }
    if this.killed > 0 {
        write!(
            f,
            ", {} after grace",
            count(this.killed, "child killed", "children killed")
        )?;
    }
    if this.abnormal_exits > 0 {
        write!(
            f,
            ", {}",
            count(this.abnormal_exits, "abnormal exit", "abnormal exits")
        )?;
    }
    if this.foreign_reaped > 0 {
        write!(
            f,
            ", {} reaped",
            count(this.foreign_reaped, "foreign process", "foreign processes")
        )?;
    }
    if this.sigchld > 0 {
        write!(
            f,
            " ({})",
            count(this.sigchld, "SIGCHLD signal", "SIGCHLD signals")
        )?;
    }
    // Clauses added after the line's wording was fixed: appended, so that
    // whatever parses the clauses above keeps working.
    if this.foreign_killed > 0 {
        write!(
            f,
            ", {} after grace",
            count(
                this.foreign_killed,
                "foreign process killed",
                "foreign processes killed"
            )
        )?;
    }
    if this.dropped_log_lines > 0 {
        write!(
            f,
            ", {} dropped (output not read)",
            count(this.dropped_log_lines, "log line", "log lines")
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lsbaws_server::Reaper;

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
            summary_line(&s),
            "Shutdown: 3 connections served, 3 children reaped, peak 2 live children, \
             0 zombies left (2 SIGCHLD signals), 1 foreign process killed after grace, \
             5 log lines dropped (output not read)"
        );
    }
}
