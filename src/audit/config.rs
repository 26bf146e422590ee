//! What an audit looks at and how it judges: [`AuditConfig`] and [`WatchConfig`],
//! plain values that `cmd::audit` validates from the flags and `smoke` builds
//! for its server.
//!
//! Owns the meaning of each setting. Must never touch /proc (whether a pid
//! exists is the scan's question, asked at scan time) or know about flags.

use std::path::PathBuf;
use std::time::Duration;

/// Which processes are audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The direct children of a pid (the default).
    Children(i32),
    /// Every descendant of a pid (`--tree`).
    Tree(i32),
    /// Every descendant of any of these pids, as one tree (`smoke`: the server
    /// and whoever owns its listening socket). Roots that are gone are skipped;
    /// when all are, the audit fails with [`super::Gone`].
    Trees(Vec<i32>),
    /// Every zombie on the machine (`--all`).
    All,
}

impl Scope {
    /// The audited pid, when there is one (the first root of `Trees`).
    pub fn pid(&self) -> Option<i32> {
        match self {
            Scope::Children(pid) | Scope::Tree(pid) => Some(*pid),
            Scope::Trees(roots) => roots.first().copied(),
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
            proc_root: PathBuf::from(crate::proc::ROOT),
            min_age: Duration::ZERO,
            max_zombies: 0,
            settle: Duration::ZERO,
        }
    }
}

/// `--watch INTERVAL --count K`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchConfig {
    /// Time between the starts of two samples (more than zero).
    pub interval: Duration,
    /// How many samples; `None` runs until interrupted.
    pub count: Option<u64>,
}
