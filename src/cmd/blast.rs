//! `lsbaws blast`: flags → [`BlastConfig`], the run, the table or JSON, the
//! verdict.
//!
//! Owns the translation of blast's flags (the shared load flags are also
//! `smoke`'s: [`load`]) and the blast's output. Must never measure: the engine
//! does.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;

use crate::blast::{self, BlastConfig, Load, Progress, RequestSpec, TlsOptions};
use crate::cli::{BlastArgs, LoadArgs};
use crate::outcome::Outcome;

/// The burst's size and bounds from the shared load flags.
pub fn load(args: &LoadArgs) -> Load {
    Load {
        clients: args.max_clients,
        conns_per_client: args.max_conns,
        duration: args.duration,
        threads: args.threads,
        timeout: args.timeout,
        rate: None,
        start_at: None,
    }
}

/// Largest `--cacert` file read: far more than any CA bundle (Debian's is
/// about 200 kB), small enough that `--cacert /dev/zero` is an error, not an
/// out-of-memory kill.
const MAX_CACERT: u64 = 16 * 1024 * 1024;

/// The whole file, or an error when it holds more than `limit` bytes.
fn read_bounded(path: &std::path::Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB: not a certificate file",
            limit >> 20
        )));
    }
    Ok(bytes)
}

/// Validates blast's flags (reading `--cacert` first).
pub fn config(args: &BlastArgs) -> anyhow::Result<BlastConfig> {
    let cacert = match &args.cacert {
        Some(path) => {
            let pem = read_bounded(path, MAX_CACERT)
                .with_context(|| format!("--cacert {}: cannot read it", path.display()))?;
            Some((path.display().to_string(), pem))
        }
        None => None,
    };
    let load = Load {
        rate: args.rate,
        start_at: args.start_at.clone(),
        ..load(&args.load)
    };
    let request = RequestSpec {
        method: args.method.clone(),
        headers: args.headers.clone(),
        body: args.body.clone(),
        raw: args.raw_request.clone(),
        keep_alive: args.keep_alive,
        connect_timeout: args.connect_timeout,
        sources: args.sources.clone(),
        tls: TlsOptions {
            cacert,
            insecure: args.insecure,
            resume: args.tls_resume,
        },
    };
    let mut config = BlastConfig::new(&args.url, &load, &request, args.max_errors)?;
    if let Some(tag) = &args.tag {
        anyhow::ensure!(!tag.trim().is_empty(), "--tag must not be empty");
        config.tag = tag.clone();
    }
    Ok(config)
}

/// The `blast` command.
pub fn run(args: &BlastArgs) -> anyhow::Result<Outcome> {
    // Before the host is resolved: a stop signal then is reported like any other.
    let shutdown = super::stop_signals()?;
    let config = config(args)?;
    for warning in blast::preflight(&config) {
        super::diag(&warning);
    }
    let progress = Arc::new(Progress::default());
    let display = super::show_progress(args.json, args.quiet).then(|| {
        super::progress::Display::start(progress.clone(), config.planned(), config.duration)
    });
    let report = blast::run(&config, &shutdown, &progress);
    if let Some(display) = display {
        display.finish();
    }
    let report = report?;
    super::output_phase(&shutdown);
    let mut out = super::stdout();
    if args.json {
        crate::render::blast::json(&report, &mut out)?;
    } else {
        crate::render::blast::summary(&report, &mut out)?;
    }
    out.flush()?;
    Ok(report.outcome(config.max_errors))
}
