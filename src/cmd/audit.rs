//! `lsbaws audit`: flags → [`AuditConfig`], one scan (settling) or a watch, the
//! table or JSON, the verdict.
//!
//! Owns the validation of audit's flags and its output, one line per `--watch`
//! sample as it happens. Must never read /proc: the engine does.

use std::io::Write;

use anyhow::{Result, bail};

use crate::audit::{self, AuditConfig, Scope, WatchConfig};
use crate::cli::AuditArgs;
use crate::outcome::Outcome;

/// Validates what clap parsed.
pub fn config(args: &AuditArgs) -> Result<AuditConfig> {
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

/// `--watch INTERVAL --count K`, validated; `None` without `--watch`.
pub fn watch_config(args: &AuditArgs) -> Result<Option<WatchConfig>> {
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

/// The `audit` command.
pub fn run(args: &AuditArgs) -> Result<Outcome> {
    let shutdown = super::stop_signals()?;
    let config = config(args)?;
    let watch = watch_config(args)?;
    // An audit starts and stops nothing: all of it is output, which a stop
    // signal may end (after a grace) even when nobody reads it.
    super::output_phase(&shutdown);
    let mut out = super::stdout();
    if let Some(w) = watch {
        let last = audit::watch(&config, &w, &shutdown, |sample| {
            if args.json {
                crate::render::audit::sample_json(sample, &mut out)?;
            } else {
                crate::render::audit::sample_line(sample, &mut out)?;
            }
            out.flush()?; // one line per sample, as it happens
            // Nobody reads the samples any more: an endless watch would go on
            // for no one. The last sample's verdict stands.
            Ok(!out.get_ref().closed())
        })?;
        if let Some(signal) = shutdown.interruption() {
            // The samples were the output; this line says they end early.
            if args.json {
                crate::render::audit::watch_interrupted_json(signal, &mut out)?;
            } else {
                crate::render::audit::watch_interrupted(signal, &mut out)?;
            }
            out.flush()?;
        }
        return Ok(match (last, shutdown.interruption()) {
            (_, Some(signal)) => Outcome::Interrupted(signal.0),
            (Some(report), None) => report.outcome(),
            (None, None) => Outcome::Pass,
        });
    }
    let report = audit::settle(&config, &shutdown)?;
    if args.json {
        crate::render::audit::json(&report, &mut out)?;
    } else {
        crate::render::audit::table(&report, &mut out)?;
    }
    out.flush()?;
    // A signal during the one scan (which does not wait for it) still means
    // no verdict.
    Ok(match shutdown.interruption() {
        Some(signal) => Outcome::Interrupted(signal.0),
        None => report.outcome(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use std::time::Duration;

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
        let c = config(&args(&["--pid", "7"])).unwrap();
        assert_eq!(c.scope, Scope::Children(7));
        let c = config(&args(&["--pid", "7", "--tree"])).unwrap();
        assert_eq!(c.scope, Scope::Tree(7));
        let c = config(&args(&["--all", "--min-age", "2s"])).unwrap();
        assert_eq!(c.scope, Scope::All);
        assert_eq!(c.min_age, Duration::from_secs(2));
    }

    #[test]
    fn non_positive_pids_and_zero_intervals_are_refused() {
        assert!(config(&args(&["--pid", "0"])).is_err());
        assert!(config(&args(&["--pid=-3"])).is_err());
        assert!(watch_config(&args(&["--pid", "1", "--watch", "0s"])).is_err());
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
