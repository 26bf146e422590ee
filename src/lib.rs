//! `lsbaws`: load-test and zombie-audit toolkit for servers that fork.
//!
//! Map of the crate:
//! - [`cli`]: what clap parses, one `Args` struct per command.
//! - [`serve`]: adapter from `ServeArgs` to the `lsbaws-server` crate, which
//!   holds the forking server and all of the project's `unsafe` code.
//! - `blast`, `audit`, `smoke`: the other commands, each `Args` → `Config` →
//!   `run` → a plain-data report. [`audit::audit`], [`audit::settle`] and
//!   [`audit::watch`] are also a library API (`smoke` audits its server with them).
//! - `report`: rendering only (tables, JSON).
//!
//! [`run`] dispatches and returns an [`Outcome`]; errors become exit code 2 in
//! `main`. Nothing here may start a thread before `serve` forks.

pub mod audit;
pub mod blast;
pub mod cli;
pub mod report;
pub mod serve;
pub mod smoke;

use std::process::ExitCode;

use cli::{Cli, Command};

/// How a command that ran to completion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing over the limits: exit 0.
    Pass,
    /// A finding over the limits (failed requests, zombies): exit 1.
    Finding,
}

impl Outcome {
    pub fn exit_code(self) -> ExitCode {
        match self {
            Outcome::Pass => ExitCode::SUCCESS,
            Outcome::Finding => ExitCode::from(1),
        }
    }
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Serve(args) => serve::run(&args),
        Command::Blast(args) => blast::run(&args),
        Command::Audit(args) => audit::run(&args),
        Command::Smoke(args) => smoke::run(&args),
    }
}

/// Whether the error chain ends in a broken pipe (stdout closed by the reader).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
