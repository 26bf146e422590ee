//! What an audit looks at and how it judges: [`AuditConfig`], validated once from
//! [`AuditArgs`] or built by other commands (`smoke`) through [`AuditConfig::new`].
//!
//! Owns validation (a pid must be positive, a watch interval non-zero). Must never
//! touch /proc: whether the pid exists is the scan's question, asked at scan time.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::cli::AuditArgs;

/// Which processes are audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The direct children of a pid (the default).
    Children(i32),
    /// Every descendant of a pid (`--tree`).
    Tree(i32),
    /// Every zombie on the machine (`--all`).
    All,
}

impl Scope {
    /// The audited pid, when there is one.
    pub fn pid(self) -> Option<i32> {
        match self {
            Scope::Children(pid) | Scope::Tree(pid) => Some(pid),
            Scope::All => None,
        }
    }
}

/// A validated audit: everything [`super::audit`] and [`super::settle`] need.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Which processes are looked at.
    pub scope: Scope,
    /// Where procfs is mounted; tests point it at a fixture tree.
    pub proc_root: PathBuf,
    /// Zombies whose process started less than this long ago are not counted
    /// (the age is since start: /proc keeps no time of exit). It spares the
    /// short-lived children of a correct reaper; `settle` suits long-lived ones.
    pub min_age: Duration,
    /// The verdict: more zombies than this is a finding.
    pub max_zombies: u64,
    /// How long [`super::settle`] re-scans while the count is over the limit.
    pub settle: Duration,
}

impl AuditConfig {
    /// The defaults of `lsbaws audit`: real /proc, every zombie counts, none allowed,
    /// no settling.
    pub fn new(scope: Scope) -> Self {
        AuditConfig {
            scope,
            proc_root: PathBuf::from("/proc"),
            min_age: Duration::ZERO,
            max_zombies: 0,
            settle: Duration::ZERO,
        }
    }

    /// Validates what clap parsed.
    pub fn from_args(args: &AuditArgs) -> Result<Self> {
        let scope = match (args.all, args.pid) {
            (true, _) => Scope::All,
            (false, Some(pid)) if pid <= 0 => {
                bail!("--pid {pid}: a process id is a positive number")
            }
            (false, Some(pid)) if args.tree => Scope::Tree(pid),
            (false, Some(pid)) => Scope::Children(pid),
            // clap requires --pid unless --all; kept as an error, not a panic.
            (false, None) => bail!("--pid is required unless --all is given"),
        };
        Ok(AuditConfig {
            scope,
            proc_root: args.proc_root.clone(),
            min_age: args.min_age,
            max_zombies: args.max_zombies,
            settle: args.settle,
        })
    }
}

/// `--watch INTERVAL --count K`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchConfig {
    /// Time between the starts of two samples.
    pub interval: Duration,
    /// How many samples; `None` runs until interrupted.
    pub count: Option<u64>,
}

impl WatchConfig {
    /// `None` when `--watch` was not given.
    pub fn from_args(args: &AuditArgs) -> Result<Option<Self>> {
        let Some(interval) = args.watch else {
            return Ok(None);
        };
        if interval.is_zero() {
            bail!("--watch 0: the interval must be longer than zero");
        }
        Ok(Some(WatchConfig {
            interval,
            count: args.count,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn args(argv: &[&str]) -> AuditArgs {
        let mut full = vec!["lsbaws", "audit"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full).map(|c| c.command) {
            Ok(Command::Audit(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scope_follows_the_flags() {
        let c = AuditConfig::from_args(&args(&["--pid", "7"])).unwrap();
        assert_eq!(c.scope, Scope::Children(7));
        let c = AuditConfig::from_args(&args(&["--pid", "7", "--tree"])).unwrap();
        assert_eq!(c.scope, Scope::Tree(7));
        let c = AuditConfig::from_args(&args(&["--all", "--min-age", "2s"])).unwrap();
        assert_eq!(c.scope, Scope::All);
        assert_eq!(c.min_age, Duration::from_secs(2));
    }

    #[test]
    fn non_positive_pids_and_zero_intervals_are_refused() {
        assert!(AuditConfig::from_args(&args(&["--pid", "0"])).is_err());
        assert!(AuditConfig::from_args(&args(&["--pid=-3"])).is_err());
        assert!(WatchConfig::from_args(&args(&["--pid", "1", "--watch", "0s"])).is_err());
    }

    #[test]
    fn contradictory_flags_are_usage_errors() {
        for argv in [
            &["--pid", "abc"][..],
            &["--all", "--pid", "1"],
            &["--all", "--tree"],
            &["--pid", "1", "--count", "3"],
            &["--pid", "1", "--watch", "1s", "--count", "0"],
            &["--pid", "1", "--watch", "1s", "--settle", "1s"],
        ] {
            let mut full = vec!["lsbaws", "audit"];
            full.extend_from_slice(argv);
            assert!(Cli::try_parse_from(&full).is_err(), "{argv:?}");
        }
    }
}
