//! `lsbaws completions SHELL`: the shell's completion script, made by
//! clap_complete from the same clap definitions as the flags.
//!
//! Owns writing the script to stdout. Must never keep a hand-written list of
//! commands or flags: everything comes from `Cli::command()`.

use std::io::Write;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::outcome::Outcome;

pub fn run(args: &CompletionsArgs) -> anyhow::Result<Outcome> {
    // Made in memory first: clap_complete panics on a failed write, and a full
    // disk must be an error like any other.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "lsbaws", &mut script);
    let mut out = super::stdout();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .context("writing the completion script")?;
    Ok(Outcome::Pass)
}
