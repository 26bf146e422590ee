//! `lsbaws smoke`: flags → [`SmokeConfig`] (the blast through blast's own
//! validation), the JUnit file opened first, the run, the table or JSON, the
//! verdict.
//!
//! Owns every check that must fail before a server starts, and smoke's
//! output. Must never start or judge a server: the engine does.

use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};

use crate::blast::Progress;
use crate::cli::SmokeArgs;
use crate::outcome::Outcome;
use crate::smoke::{self, ServerSpec, SmokeConfig};

/// Shortest `--grace` the built-in server is given: it needs a moment to exit
/// on SIGTERM and print its summary, and a shorter grace would fail a correct
/// server for being killed.
const BUILT_IN_MIN_GRACE: Duration = Duration::from_secs(1);

/// Validates smoke's flags; every error here comes before any server starts.
pub fn config(args: &SmokeArgs) -> anyhow::Result<SmokeConfig> {
    let load = super::blast::load(&args.load);
    let config_for = |server| SmokeConfig {
        server,
        url: args.url.clone(),
        ready_timeout: args.ready_timeout,
        grace: args.grace,
        settle: args.settle,
        max_zombies: args.max_zombies,
        max_orphans: args.max_orphans,
        load: load.clone(),
        max_errors: args.max_errors,
    };
    ensure!(
        !args.ready_timeout.is_zero(),
        "--ready-timeout must be more than 0"
    );
    ensure!(args.port != Some(0), "--port must be from 1 to 65535");
    let server = if args.command.is_empty() {
        ensure!(
            args.port.is_none(),
            "--port applies to a server command (after --)"
        );
        if let Some(url) = &args.url {
            ensure!(
                url.contains("{port}"),
                "--url for the built-in server needs {{port}} where its port goes, e.g. http://127.0.0.1:{{port}}/path"
            );
        }
        ensure!(
            args.grace >= BUILT_IN_MIN_GRACE,
            "--grace {:?} leaves the built-in server no time to shut down cleanly; give it at least 1s",
            args.grace
        );
        let reaper = args.reaper.unwrap_or(crate::cli::ReaperArg::Loop);
        let reaper = clap::ValueEnum::to_possible_value(&reaper)
            .map(|v| v.get_name().to_string())
            .unwrap_or_else(|| "loop".to_string());
        ServerSpec::BuiltIn {
            reaper,
            cgi: args.cgi.clone(),
        }
    } else {
        ensure!(
            args.reaper.is_none(),
            "--reaper applies to the built-in server, not to a server command"
        );
        ensure!(
            args.cgi.is_none(),
            "--cgi applies to the built-in server, not to a server command"
        );
        let has_placeholder = args.command.iter().any(|a| a.contains("{port}"));
        ensure!(
            has_placeholder || args.port.is_some() || args.url.is_some(),
            "the server command has no {{port}}: put {{port}} where it takes its port, or say where it listens with --port or --url"
        );
        let port = match args.port {
            Some(p) => p,
            None => free_port()?,
        };
        let argv = args
            .command
            .iter()
            .map(|a| a.replace("{port}", &port.to_string()))
            .collect();
        ServerSpec::Command { argv, port }
    };
    // The same checks as `lsbaws blast` (zero clients, --threads 0, a URL it
    // would refuse, ...), before the server starts rather than after.
    let port = match &server {
        ServerSpec::Command { port, .. } => *port,
        ServerSpec::BuiltIn { .. } => 1,
    };
    let config = config_for(server);
    let url = match &args.url {
        Some(url) => url.replace("{port}", &port.to_string()),
        None => "http://127.0.0.1:1/".to_string(),
    };
    config
        .blast_config(&url)
        .with_context(|| format!("--url {:?}", crate::text::escape(&url)))?;
    Ok(config)
}

/// A free loopback port: bound, read, released. Another process could take it
/// in between; the engine checks again that the port is free right before it
/// starts the command, so a clash is an error, not a test of the wrong server.
fn free_port() -> anyhow::Result<u16> {
    let probe = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(probe.local_addr().context("finding a free port")?.port())
}

/// The `smoke` command.
pub fn run(args: &SmokeArgs) -> anyhow::Result<Outcome> {
    let shutdown = super::stop_signals()?;
    let config = config(args)?;
    // Output files first (as hyperfine's exporters do): a path that cannot be
    // written, or the file stdout already writes to (`--junit /dev/stdout >
    // out.txt`: two descriptors writing from offset 0), fails now, not after
    // the whole job.
    let junit = super::output::open_all(
        &[("--junit", args.junit.as_deref(), "JUnit file")],
        "the report and the JUnit document would overwrite each other (pipe stdout, or give the JUnit file its own path)",
        &shutdown,
    )?
    .into_iter()
    .next()
    .flatten();
    let progress = Arc::new(Progress::default());
    let planned = config.load.duration.is_none().then(|| {
        config
            .load
            .clients
            .saturating_mul(config.load.conns_per_client)
    });
    let display = super::show_progress(args.json, args.quiet)
        .then(|| super::progress::Display::start(progress.clone(), planned, config.load.duration));
    let result = smoke::run(&config, &shutdown, &progress);
    if let Some(display) = display {
        display.finish();
    }
    let mut report = match result {
        Ok(report) => report,
        Err(err) => {
            // The CI job still gets a well-formed file that says why.
            if let Some((path, file)) = &junit {
                let _ = super::write_file(path, file, &shutdown, |out| {
                    crate::render::junit::error(&format!("{err:#}"), out)
                });
            }
            return Err(err);
        }
    };
    // The server and all it left behind are stopped and reaped: only output
    // remains.
    super::output_phase(&shutdown);
    for warning in &report.warnings {
        super::diag(warning);
    }
    // The JUnit file first: a failure to write it is exit 2, and must not
    // follow a verdict already printed. Its reader going away (EPIPE) or
    // making no room until a stop signal ends it only: the report below is
    // still printed.
    if let Some((path, file)) = &junit {
        super::write_file(path, file, &shutdown, |out| {
            crate::render::junit::smoke(&report, out)
        })?;
    }
    // A stop signal while the JUnit file was written (it cut a stuck one) or
    // after the engine's last look: the report is not printed yet, so it
    // carries no verdict either (exit 128 + the signal).
    if let Some(signal) = shutdown.interruption() {
        report.interrupt(signal);
    }
    let mut out = super::stdout();
    if args.json {
        crate::render::smoke::json(&report, &mut out)?;
    } else {
        crate::render::smoke::table(&report, &mut out)?;
    }
    out.flush()?;
    Ok(report.outcome())
}
