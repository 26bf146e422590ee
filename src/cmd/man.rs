//! `lsbaws man [COMMAND]`: the roff page of lsbaws or of lsbaws-COMMAND.
//!
//! Owns choosing the page and writing it to stdout; `cli::man` draws it
//! from the clap definitions and `cli::help`'s sections. Must never hold any
//! text of its own.

use std::io::Write;

use anyhow::{Context, anyhow};
use clap::CommandFactory;

use crate::cli::{Cli, ManArgs, help};
use crate::outcome::Outcome;

pub fn run(args: &ManArgs) -> anyhow::Result<Outcome> {
    // Built, so that subcommands know their full names (`lsbaws-blast`, and
    // `lsbaws blast` in the synopsis); `help` is clap's own and has no page.
    let mut root = Cli::command();
    root.build();
    let root = root.mut_subcommand("help", |c| c.hide(true));
    let name = args.command.as_deref().unwrap_or("");
    let cmd = match name {
        "" => &root,
        name => root
            .find_subcommand(name)
            .ok_or_else(|| anyhow!("no command {name:?}"))?,
    };
    let mut page = Vec::new();
    crate::cli::man::page(cmd, help::sections(name), &mut page)
        .context("rendering the manual page")?;
    let mut out = super::stdout();
    out.write_all(&page)
        .and_then(|()| out.flush())
        .context("writing the manual page")?;
    Ok(Outcome::Pass)
}
