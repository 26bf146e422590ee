//! The commands as the user meets them: flags in, output out, an exit code.
//!
//! Owns everything that touches the outside world: stdout (through [`Out`],
//! which stops quietly when the reader goes away), stderr ([`diag`]), the
//! terminal (whether progress is shown, decided once per command), files
//! (opened before any work), and the stop signals (turned into a
//! [`Shutdown`] for the engines). Each command turns its `Args` into the
//! engine's config, calls the engine, renders the report and returns the
//! [`Outcome`](crate::outcome::Outcome). Must never measure or judge: engines do.

pub mod audit;
pub mod blast;
pub mod completions;
pub mod man;
pub mod merge;
pub mod serve;
pub mod smoke;

mod output;
mod progress;

pub use output::Written;

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::cli::{Cli, Command};
use crate::outcome::ERROR;
use crate::shutdown::Shutdown;
use crate::text;

/// Runs one command; returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    let json = cli.command.json();
    let result = match cli.command {
        Command::Serve(args) => serve::run(&args),
        Command::Blast(args) => blast::run(&args),
        Command::Audit(args) => audit::run(&args),
        Command::Smoke(args) => smoke::run(&args),
        Command::Merge(args) => merge::run(&args),
        Command::Completions(args) => completions::run(&args),
        Command::Man(args) => man::run(&args),
    };
    match result {
        Ok(outcome) => outcome.code(),
        Err(err) if err.is::<output::StoppedBeforeRun>() => stopped_before_run(&err, json),
        // Its `{"error": ...}` is in the --report file: stdout is COMMAND's.
        Err(err) if err.is::<ErrorInReport>() => {
            diag(&format!("{err:#}"));
            ERROR
        }
        Err(err) => {
            error(&format!("{err:#}"), json);
            ERROR
        }
    }
}

/// A stop signal before the job ran (an output FIFO waited for its reader):
/// said on stderr, and with `--json` as `{"interrupted": true, "signal":
/// ...}` (nothing was measured); exit 128 + the signal, no verdict.
fn stopped_before_run(err: &anyhow::Error, json: bool) -> u8 {
    let Some(stopped) = err.downcast_ref::<output::StoppedBeforeRun>() else {
        return ERROR;
    };
    diag(&stopped.to_string());
    if json {
        #[derive(serde::Serialize)]
        struct Interrupted {
            interrupted: bool,
            signal: crate::shutdown::Signal,
        }
        let mut out = stdout();
        let _ = crate::render::json::line(
            &Interrupted {
                interrupted: true,
                signal: crate::shutdown::Signal(stopped.signal),
            },
            &mut out,
        );
        let _ = out.flush();
    }
    crate::outcome::Outcome::Interrupted(stopped.signal).code()
}

/// `--help` and `--version` print as clap made them. Usage errors become one
/// line, `lsbaws: <what is wrong>`, like every other error of the tool, so CI
/// logs and scripts see one line and exit 2 (and, with `--json`, one JSON
/// object on stdout).
pub fn usage_error(err: &clap::Error) -> u8 {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            0
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            ERROR
        }
        _ => {
            let text = err.render().to_string();
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .collect();
            let mut line = String::new();
            for l in lines.iter().filter(|l| !l.starts_with("tip: ")) {
                let l = l.strip_prefix("error: ").unwrap_or(l);
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(l);
            }
            // Keep clap's "similar argument" tips; drop its advice to pass a
            // negative number after `--`, which would make it a positional.
            for tip in lines.iter().filter_map(|l| l.strip_prefix("tip: ")) {
                if !tip.contains("'-- ") {
                    line.push_str(&format!(" ({tip})"));
                }
            }
            line.push_str("; see --help");
            error(&line, json_in_argv());
            ERROR
        }
    }
}

/// Whether `--json` is among the arguments before `--` (clap could not tell us:
/// the parse failed).
fn json_in_argv() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// An error of `audit --json --report FILE -- COMMAND` whose `{"error":
/// ...}` object went into FILE: said on stderr only. Without it (FILE was
/// what failed, or the error came before FILE was opened) the object goes on
/// stdout, as every command's does.
#[derive(Debug)]
pub struct ErrorInReport(pub anyhow::Error);

impl std::fmt::Display for ErrorInReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for ErrorInReport {}

/// Reports an error: one line on stderr, and with `--json` one object on stdout.
fn error(message: &str, json: bool) {
    diag(message);
    if json {
        let mut out = stdout();
        let _ = json_error(message, &mut out);
        let _ = out.flush();
    }
}

/// `{"error": "..."}` and a newline.
pub fn json_error(message: &str, out: &mut impl Write) -> io::Result<()> {
    #[derive(serde::Serialize)]
    struct Error<'a> {
        error: &'a str,
    }
    crate::render::json::line(&Error { error: message }, out)
}

/// One diagnostic line on stderr, `lsbaws: <msg>`. Never fails, never panics
/// (`eprintln!` would, on a closed stderr) and never blocks for more than
/// `DIAG_PATIENCE` (a stderr pipe nobody reads must not hang a command on
/// its way out): a diagnostic that cannot be written must not change the exit
/// code.
pub fn diag(msg: &str) {
    let line = format!("lsbaws: {msg}\n");
    let _ = lsbaws_server::log::write_stderr_within(line.as_bytes(), DIAG_PATIENCE);
}

/// How long a diagnostic waits for a stderr reader that makes no room.
const DIAG_PATIENCE: Duration = Duration::from_secs(3);

/// Standard output for results: buffered, and when the reader goes away
/// (EPIPE: `| head -1`), silently discarding the rest, so that a closed pipe
/// stops the output and never changes the exit code (as ripgrep treats it).
/// Other write errors (a full disk) are errors.
pub fn stdout() -> io::BufWriter<Out<io::StdoutLock<'static>>> {
    io::BufWriter::with_capacity(1 << 16, Out::new(io::stdout().lock()))
}

/// A writer that turns EPIPE into "the rest goes nowhere".
pub struct Out<W: Write> {
    inner: W,
    closed: bool,
}

impl<W: Write> Out<W> {
    pub fn new(inner: W) -> Self {
        Out {
            inner,
            closed: false,
        }
    }

    /// Whether the reader went away.
    pub fn closed(&self) -> bool {
        self.closed
    }
}

impl<W: Write> Write for Out<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        match self.inner.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(buf.len())
            }
            other => other,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        match self.inner.flush() {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            other => other,
        }
    }
}

/// Set once nothing is left to stop or reap and only output remains: a stop
/// signal then ends the process after [`OUTPUT_GRACE`] even if stdout is a
/// pipe nobody reads (a write blocked there cannot be interrupted).
static OUTPUT_PHASE: AtomicBool = AtomicBool::new(false);

/// How long output may go on after a stop signal.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Marks the start of the output phase (see `OUTPUT_PHASE`); a stop signal
/// that already came gets its bounded exit from here.
pub fn output_phase(shutdown: &Shutdown) {
    OUTPUT_PHASE.store(true, Ordering::SeqCst);
    if let Some(signal) = shutdown.signal() {
        let _ = std::thread::Builder::new()
            .name("lsbaws-exit".into())
            .spawn(move || exit_after_output_grace(signal));
    }
}

/// Gives the output [`OUTPUT_GRACE`] to finish, then exits 128 + `signal`:
/// the exit code the signal asked for, whatever the output is stuck on.
fn exit_after_output_grace(signal: i32) {
    std::thread::sleep(OUTPUT_GRACE);
    std::process::exit(i32::from(
        crate::outcome::Outcome::Interrupted(signal).code(),
    ));
}

/// Turns SIGINT, SIGTERM and SIGHUP into a stop request the engines see, from
/// now on (a thread waits for them: never call this before `serve` forks).
pub fn stop_signals() -> anyhow::Result<Shutdown> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let shutdown = Shutdown::new();
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| anyhow::anyhow!("cannot install the signal handlers: {e}"))?;
    let trigger = shutdown.clone();
    // Without this thread the handlers would swallow every stop signal: a
    // failure to start it is an error, before any work is done.
    std::thread::Builder::new()
        .name("lsbaws-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                trigger.trigger(signal);
                if OUTPUT_PHASE.load(Ordering::SeqCst) {
                    exit_after_output_grace(signal);
                }
            }
        })
        .map_err(|e| anyhow::anyhow!("cannot start the signal thread: {e}"))?;
    Ok(shutdown)
}

/// Writes a document (JUnit XML, a report) into an output file opened by
/// `output::open_all` (before any work); an error names the file. A reader
/// that went away, or a stop signal while the reader made no room, ends this
/// document only (said on stderr): the other outputs are still written, and
/// the caller decides the exit code from [`Written`].
pub fn write_file(
    path: &std::path::Path,
    file: &std::fs::File,
    shutdown: &Shutdown,
    render: impl FnOnce(&mut io::BufWriter<output::FileOut<'_>>) -> io::Result<()>,
) -> anyhow::Result<Written> {
    use anyhow::Context;
    let mut out = io::BufWriter::new(output::FileOut::new(file, shutdown));
    render(&mut out)
        .and_then(|()| out.flush())
        .with_context(|| format!("writing {}", path.display()))?;
    let written = out.get_ref().written();
    let shown = path.display().to_string();
    let name = text::escape(&shown);
    match written {
        Written::Whole => {}
        Written::ReaderGone => diag(&format!(
            "writing {name}: its reader went away (broken pipe); the rest of it was dropped"
        )),
        Written::Stopped(signal) => diag(&format!(
            "writing {name}: interrupted by {} while its reader made no room; the rest of it was dropped",
            crate::shutdown::Signal(signal)
        )),
    }
    Ok(written)
}

/// Whether a live progress display is wanted: a person watching a terminal,
/// no machine-readable output, no `--quiet`.
pub fn show_progress(json: bool, quiet: bool) -> bool {
    !json && !quiet && io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose reader has gone away.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn a_closed_pipe_swallows_the_rest() {
        let mut out = Out::new(Closed);
        assert!(writeln!(out, "a line").is_ok());
        assert!(out.closed());
        assert!(out.flush().is_ok());
    }
}
