//! `lsbaws audit`: flags → [`AuditConfig`], one scan (settling) or a watch, the
//! table or JSON, the verdict; or, with `-- COMMAND`, flags → [`ExecConfig`],
//! the run, the report after COMMAND's output (or in `--report FILE`), JUnit.
//!
//! Owns the validation of audit's flags, the defaults that differ between the
//! two modes, and the output, one line per `--watch` sample as it happens.
//! Must never read /proc or run anything: the engines do. Must never write to
//! stdout while COMMAND runs: stdout is COMMAND's until it ends.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail, ensure};

use crate::audit::exec::{ExecConfig, ExecReport};
use crate::audit::{self, AuditConfig, Scope, WatchConfig};
use crate::cli::AuditArgs;
use crate::outcome::Outcome;

/// `--min-age` and `--settle` with `-- COMMAND`: a test suite's children are
/// short-lived, so only a zombie left for a second is a finding, and a
/// daemon's workers get half a second to follow their master out.
const EXEC_MIN_AGE: Duration = Duration::from_secs(1);
const EXEC_SETTLE: Duration = Duration::from_millis(500);

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
        min_age: args.min_age.unwrap_or(Duration::ZERO),
        max_zombies: args.max_zombies,
        settle: args.settle.unwrap_or(Duration::ZERO),
    })
}

/// Validates the flags of `audit -- COMMAND`.
pub fn exec_config(args: &AuditArgs) -> Result<ExecConfig> {
    ensure!(!args.command.is_empty(), "no command after --");
    ensure!(
        !args.interval.is_zero(),
        "--interval 0: the interval must be longer than zero"
    );
    Ok(ExecConfig {
        argv: args.command.clone(),
        interval: args.interval,
        min_age: args.min_age.unwrap_or(EXEC_MIN_AGE),
        settle: args.settle.unwrap_or(EXEC_SETTLE),
        max_zombies: args.max_zombies,
        max_orphans: args.max_orphans,
        keep: args.keep,
        // Opened by `run_exec`: validation touches no terminal.
        terminal: None,
    })
}

/// lsbaws's controlling terminal, whatever stdin is (a COMMAND that asks for
/// a password opens /dev/tty while its input is a file), when it has one:
/// COMMAND's group is given it while it runs, as a shell gives it to a job.
fn controlling_terminal() -> Option<Arc<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        // Never make it ours: lsbaws has one already, or none to take.
        .custom_flags(nix::libc::O_NOCTTY)
        .open("/dev/tty")
        .ok()
        .map(Arc::new)
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
    if !args.command.is_empty() {
        return run_exec(args);
    }
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
            // for no one, so it ends here and the last sample's verdict stands.
            // A `--count` watch is bounded and its verdict is the K-th sample's:
            // a closed pipe must not pass it early (DESIGN: EPIPE never changes
            // the exit code).
            Ok(w.count.is_some() || !out.get_ref().closed())
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

/// `audit -- COMMAND`.
fn run_exec(args: &AuditArgs) -> Result<Outcome> {
    let shutdown = super::stop_signals()?;
    let mut config = exec_config(args)?;
    // Output files first: a path that cannot be written, or two outputs
    // that are one file, fail before COMMAND runs, not after it.
    let (junit, report_file) = open_outputs(args, &shutdown)?;
    config.terminal = controlling_terminal();
    let mut notify = |message: &str| super::diag(&crate::text::escape(message));
    let mut report = match audit::exec::run(&config, &shutdown, &mut notify) {
        Ok(report) => report,
        Err(err) => {
            // COMMAND did not run. The files say why too; with --report, the
            // --json error object goes there (stdout stays COMMAND's), or on
            // stdout when it could not.
            let message = format!("{err:#}");
            if let Some((path, file)) = &junit {
                let _ = super::write_file(path, file, &shutdown, |out| {
                    crate::render::junit::error_in("lsbaws audit", "command", &message, out)
                });
            }
            if let Some((path, file)) = &report_file {
                let written = super::write_file(path, file, &shutdown, |out| {
                    if args.json {
                        super::json_error(&message, out)
                    } else {
                        writeln!(out, "lsbaws: {}", crate::text::escape(&message))
                    }
                });
                if args.json && matches!(written, Ok(super::Written::Whole)) {
                    return Err(super::ErrorInReport(err).into());
                }
            }
            return Err(err);
        }
    };
    // Everything of the run is stopped and reaped (or kept): only output is
    // left, which a stop signal may end after a grace.
    super::output_phase(&shutdown);
    // A stop signal that came after the engine's last look (it returned)
    // still means no verdict: the report is not rendered yet.
    if report.signal.is_none()
        && let Some(signal) = shutdown.interruption()
    {
        report.interrupted = true;
        report.signal = Some(signal);
    }
    // An output error is exit 2, unless the exit code is already COMMAND's
    // own failure or a stop signal's: those come first (the contract), and
    // the error is said on stderr. A reader that went away (EPIPE) is no
    // error: that output stops, the others are written, the code stands.
    let stands =
        |report: &ExecReport| report.signal.is_some() || report.exit.is_some_and(|e| !e.success());
    let mut stopped = None;
    let output =
        |written: Result<super::Written>, stands: bool, stopped: &mut Option<i32>| -> Result<()> {
            match written {
                Ok(super::Written::Stopped(signal)) => {
                    stopped.get_or_insert(signal);
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(err) if stands => {
                    super::diag(&format!("{err:#}"));
                    Ok(())
                }
                Err(err) => Err(err),
            }
        };
    // The JUnit file first: a failure to write it that makes the exit code
    // 2 must not follow a verdict already printed. A reader that makes no
    // room holds it up until a stop signal only (then the report is still
    // written).
    if let Some((path, file)) = &junit {
        let written = super::write_file(path, file, &shutdown, |out| {
            crate::render::exec::junit(&report, out)
        });
        output(written, stands(&report), &mut stopped)?;
    }
    // A stop signal while the JUnit file was written (it cut a stuck one):
    // the report is not rendered yet, so it carries no verdict either.
    if report.signal.is_none()
        && let Some(signal) = shutdown.interruption()
    {
        report.interrupted = true;
        report.signal = Some(signal);
    }
    let stands = stands(&report);
    match &report_file {
        Some((path, file)) => output(
            super::write_file(path, file, &shutdown, |out| {
                render_exec(&report, args.json, out)
            }),
            stands,
            &mut stopped,
        )?,
        None => {
            let mut out = super::stdout();
            // The report shares stdout with COMMAND, whose output may end
            // without a newline (`printf abc`): it starts on a line of its
            // own, so the summary (or the JSON object) is a whole last line.
            // After output that did end with one, this is an empty line.
            let written = out
                .write_all(b"\n")
                .and_then(|()| render_exec(&report, args.json, &mut out))
                .and_then(|()| out.flush())
                .map(|()| super::Written::Whole)
                .map_err(|e| anyhow::Error::new(e).context("writing the report to stdout"));
            output(written, stands, &mut stopped)?;
        }
    }
    if let Some(error) = &report.error {
        super::diag(&crate::text::escape(error));
    }
    // A stop signal that cut an output came after the verdict was decided:
    // still no verdict (exit 128 + the signal).
    Ok(match stopped {
        Some(signal) if report.signal.is_none() => Outcome::Interrupted(signal),
        _ => report.outcome(),
    })
}

/// Opens `--junit` and `--report` before COMMAND runs (`output::open_all`):
/// two of them that are one file, or one that is the file stdout or stderr
/// already writes to (`--report out.txt > out.txt`), are refused before
/// either is emptied, so a refused run destroys nothing.
fn open_outputs<'a>(
    args: &'a AuditArgs,
    shutdown: &crate::shutdown::Shutdown,
) -> Result<(super::output::Opened<'a>, super::output::Opened<'a>)> {
    let mut opened = super::output::open_all(
        &[
            ("--junit", args.junit.as_deref(), "JUnit file"),
            ("--report", args.report.as_deref(), "report file"),
        ],
        "COMMAND's output and the document would overwrite each other (without --report the report follows COMMAND's output on stdout)",
        shutdown,
    )?
    .into_iter();
    Ok((opened.next().flatten(), opened.next().flatten()))
}

fn render_exec(report: &ExecReport, json: bool, out: &mut impl Write) -> std::io::Result<()> {
    if json {
        crate::render::exec::json(report, out)
    } else {
        crate::render::exec::table(report, out)
    }
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

    /// The defaults differ by mode: --pid keeps its own (0s, 0s) unchanged;
    /// -- COMMAND counts zombies held 1s and settles 500ms.
    #[test]
    fn each_mode_has_its_own_min_age_and_settle() {
        let c = config(&args(&["--pid", "7"])).unwrap();
        assert_eq!((c.min_age, c.settle), (Duration::ZERO, Duration::ZERO));
        let e = exec_config(&args(&["--", "true"])).unwrap();
        assert_eq!(e.min_age, Duration::from_secs(1));
        assert_eq!(e.settle, Duration::from_millis(500));
        assert_eq!(e.interval, Duration::from_millis(100));
        assert_eq!((e.max_orphans, e.max_zombies, e.keep), (0, 0, false));
        let e = exec_config(&args(&[
            "--min-age",
            "2s",
            "--settle",
            "0",
            "--keep",
            "--",
            "sh",
            "-c",
            "x",
        ]))
        .unwrap();
        assert_eq!(
            (e.min_age, e.settle, e.keep),
            (Duration::from_secs(2), Duration::ZERO, true)
        );
        assert_eq!(e.argv, ["sh", "-c", "x"]);
        assert!(exec_config(&args(&["--interval", "0", "--", "true"])).is_err());
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
            // -- COMMAND is its own mode; its flags need it.
            &["--pid", "1", "--", "true"],
            &["--all", "--", "true"],
            &["--tree", "--", "true"],
            &["--watch", "1s", "--", "true"],
            &["--pid", "1", "--keep"],
            &["--pid", "1", "--max-orphans", "1"],
            &["--pid", "1", "--junit", "x.xml"],
            &["--pid", "1", "--report", "x.txt"],
            &["--pid", "1", "--interval", "1s"],
            &[],
        ] {
            let mut full = vec!["lsbaws", "audit"];
            full.extend_from_slice(argv);
            assert!(Cli::try_parse_from(&full).is_err(), "{argv:?}");
        }
    }
}
