//! `lsbaws`: load-test and zombie-audit toolkit for servers that fork.
//!
//! Data flows one way: arguments ([`cli`]) → a command's config ([`cmd`]) → an
//! engine that returns a report value → a renderer that writes it → an exit
//! code ([`outcome`]). Map of the crate:
//! - [`cli`]: what clap parses, one `Args` struct per command, shared groups;
//!   `cli::help` the exit status and examples that `--help` and the manual
//!   pages share, and `cli::man` those pages in roff. `lsbaws completions`
//!   is made from the same definitions.
//! - [`cmd`]: one file per command; the only code that touches stdout, stderr,
//!   the terminal, files and signal handlers.
//! - Engines, each config → report, taking a [`shutdown::Shutdown`] as input:
//!   [`blast`] (the tokio client), [`audit`] (zombies and leftovers in /proc),
//!   [`smoke`] (the CI job's sequence), [`merge`] (blast reports of many runs
//!   added exactly; pure computation, so it takes no shutdown). `serve` is
//!   the `lsbaws-server` crate, which holds the forking server and all of the
//!   project's `unsafe` code.
//! - [`proc`]: the one reader of /proc. [`render`]: tables, JSON, JUnit, the
//!   progress bar's look; reads report types only. [`text`]: names from other
//!   processes made safe to print.
//!
//! Rules: engines never import `cmd`, `cli` or `render`; nothing starts a
//! thread before `serve` forks (`cmd::serve` runs on the main thread alone).

pub mod audit;
pub mod blast;
pub mod cli;
pub mod cmd;
pub mod merge;
pub mod outcome;
pub mod proc;
pub mod render;
pub mod shutdown;
pub mod smoke;
pub mod text;

pub use outcome::Outcome;

/// Runs one parsed command; returns the process exit code.
pub fn run(cli: cli::Cli) -> u8 {
    cmd::run(cli)
}

/// Reports a command line clap could not parse; returns the exit code.
pub fn usage_error(err: &clap::Error) -> u8 {
    cmd::usage_error(err)
}
