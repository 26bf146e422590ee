//! `lsbaws serve`: turns `ServeArgs` into `lsbaws_server::Config`, binds,
//! prints the ready line, runs the server and prints its summary.
//!
//! Must never start a thread or an async runtime: the server forks.

use std::io::Write;

use anyhow::Context;
use lsbaws_server::{Config, OnEintr, Reaper};

use crate::Outcome;
use crate::cli::{OnEintrArg, ReaperArg, ServeArgs};

impl From<ReaperArg> for Reaper {
    fn from(arg: ReaperArg) -> Self {
        match arg {
            ReaperArg::Loop => Reaper::Loop,
            ReaperArg::Once => Reaper::Once,
            ReaperArg::None => Reaper::None,
            ReaperArg::Ignore => Reaper::Ignore,
            ReaperArg::Signalfd => Reaper::Signalfd,
        }
    }
}

/// Validates the flags that clap cannot.
pub fn config(args: &ServeArgs) -> anyhow::Result<Config> {
    if args.max_children == Some(0) {
        anyhow::bail!("--max-children must be at least 1");
    }
    if args.read_timeout.is_zero() {
        anyhow::bail!("--read-timeout must be more than 0 (a child must not wait forever)");
    }
    if args.backlog == 0 {
        anyhow::bail!("--backlog must be at least 1");
    }
    let on_eintr = match args.on_eintr {
        OnEintrArg::Retry => OnEintr::Retry,
        OnEintrArg::Fail => OnEintr::Fail,
    };
    let reaper = Reaper::from(args.reaper);
    if on_eintr == OnEintr::Fail && !matches!(reaper, Reaper::Loop | Reaper::Once) {
        anyhow::bail!(
            "--on-eintr fail needs a SIGCHLD handler to interrupt accept: use it with --reaper loop or once"
        );
    }
    Ok(Config {
        reaper,
        on_eintr,
        delay: args.delay,
        max_children: args.max_children,
        read_timeout: args.read_timeout,
        grace: args.grace,
        quiet: args.quiet,
    })
}

pub fn run(args: &ServeArgs) -> anyhow::Result<Outcome> {
    let config = config(args)?;
    let listener = lsbaws_server::bind(&args.bind, args.backlog)?;
    let summary = lsbaws_server::run(listener, &config, |addr| {
        // Flushed before the first fork, or every child would inherit (and
        // could print again) a buffered copy of it.
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "Serving HTTP on {addr} (pid {}, reaper {})",
            std::process::id(),
            config.reaper
        )?;
        out.flush()
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{summary}")
        .and_then(|()| out.flush())
        .context("writing the summary")?;
    Ok(Outcome::Pass)
}
