//! What the server did, reported once at shutdown.
//!
//! Owns [`Summary`], plain data with public fields (the `lsbaws` crate renders
//! it). Must never compute anything (the shutdown fills it) or print.

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
