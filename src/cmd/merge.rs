//! `lsbaws merge`: files and stdin read, reports split, checked and added as
//! they arrive, the tables or JSON, the verdict.
//!
//! Owns the reading: the stop signals are installed first, then every file is
//! opened before anything is read (a missing one is exit 2 at once), then all
//! inputs are read on a helper thread so that a stop signal during a slow
//! stream (`kubectl logs -f | lsbaws merge -`) still prints the sum of the
//! reports that had arrived, marked interrupted. A FIFO is only checked up
//! front and opened on that thread when its turn comes: its `open(2)` waits
//! for a writer, and a stop signal must end that wait as it ends a read.
//! Each chunk read is split at once and each report in it added to the
//! running total, so memory stays that of one report and the table's rows,
//! however many reports come. A file named on the command line must hold at
//! least one report: one that holds none (a report it could not recognise)
//! is an error, never an input that silently adds nothing. Must never add or
//! judge: the `merge` engine does.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};

use crate::cli::MergeArgs;
use crate::merge::input::{Position, Splitter};
use crate::merge::{self, Merger};
use crate::outcome::Outcome;
use crate::shutdown::{Shutdown, Signal};

/// Most input read in all: a report is a few kB, so this is tens of thousands
/// of them; an endless stream must end in an error, not run forever.
const MAX_INPUT: usize = 256 << 20;

/// Chunks (of 64 kB) the input thread may read ahead of the adding.
const CHUNKS_AHEAD: usize = 4;

/// How often the wait for input looks at the stop signals.
const POLL: Duration = Duration::from_millis(50);

/// One input, opened.
struct Source {
    name: String,
    /// A file named on the command line (not `-`).
    named: bool,
    reader: Reader,
}

/// An input opened, or a FIFO to open on the input thread.
enum Reader {
    Open(Box<dyn Read + Send>),
    Fifo(PathBuf),
}

/// What the reader thread hands over.
enum Chunk {
    Data(usize, Vec<u8>),
    End(usize),
    /// What failed ("open", "read") and why.
    Failed(usize, &'static str, std::io::Error),
}

/// One input being read: its splitter, and whether it ended.
struct Input {
    name: String,
    named: bool,
    splitter: Splitter,
    ended: bool,
}

/// The inputs and the running total.
struct Intake {
    inputs: Vec<Input>,
    merger: Merger,
}

impl Intake {
    fn add_all(&mut self, docs: Vec<merge::input::Document>) -> anyhow::Result<()> {
        for doc in docs {
            let shard = merge::read(&doc)?;
            self.merger.add(shard)?;
        }
        Ok(())
    }

    fn data(&mut self, i: usize, bytes: &[u8]) -> anyhow::Result<()> {
        let Some(input) = self.inputs.get_mut(i) else {
            return Ok(());
        };
        let docs = input.splitter.feed(bytes)?;
        self.add_all(docs)
    }

    fn end(&mut self, i: usize) -> anyhow::Result<()> {
        let Some(input) = self.inputs.get_mut(i) else {
            return Ok(());
        };
        input.ended = true;
        let docs = input.splitter.finish()?;
        self.add_all(docs)?;
        let input = &self.inputs[i];
        if input.named && input.splitter.documents == 0 {
            let note = skip_note(input.splitter.skipped, &input.splitter.first_skipped)
                .map_or_else(String::new, |n| format!(" ({n})"));
            let name = crate::text::escape(&input.name);
            bail!("{name}: no blast report in this file{note}");
        }
        Ok(())
    }

    /// A stop signal: the whole reports of inputs not ended are added, an
    /// unfinished one left out.
    fn cut(&mut self) -> anyhow::Result<()> {
        for i in 0..self.inputs.len() {
            if !self.inputs[i].ended {
                let docs = self.inputs[i].splitter.cut()?;
                self.add_all(docs)?;
            }
        }
        Ok(())
    }
}

/// "skipped N lines that are not JSON (first: …)", when some were.
fn skip_note(skipped: usize, first: &Option<(Position, String)>) -> Option<String> {
    let (at, line) = first.as_ref()?;
    Some(format!(
        "skipped {} that {} not JSON (first: {at}: {})",
        crate::text::count(skipped as u64, "line", "lines"),
        if skipped == 1 { "is" } else { "are" },
        crate::text::escape(line)
    ))
}

/// The `merge` command.
pub fn run(args: &MergeArgs) -> anyhow::Result<Outcome> {
    if let Some(tag) = &args.tag {
        ensure!(!tag.trim().is_empty(), "--tag must not be empty");
    }
    // First: a signal while a FIFO input waits for its writer is handled.
    let shutdown = super::stop_signals()?;
    let sources = open(&args.files)?;
    let mut intake = Intake {
        inputs: sources
            .iter()
            .map(|s| Input {
                name: s.name.clone(),
                named: s.named,
                splitter: Splitter::new(&s.name),
                ended: false,
            })
            .collect(),
        merger: Merger::new(),
    };
    let signal = read(sources, &shutdown, &mut intake)?;
    if signal.is_some() {
        intake.cut()?;
    }
    // Nothing was started, so only the sum and the output remain: a stop
    // signal from here on ends merge within the output grace, 128 + N, even
    // with stdout a pipe nobody reads.
    super::output_phase(&shutdown);
    // One that came after the input ended: no verdict either.
    let signal = signal.or_else(|| shutdown.interruption());
    let skipped: usize = intake.inputs.iter().map(|i| i.splitter.skipped).sum();
    let first_skipped = intake
        .inputs
        .iter()
        .find_map(|i| i.splitter.first_skipped.clone());
    let skip_note = skip_note(skipped, &first_skipped);
    let Intake { merger, .. } = intake;
    match (&skip_note, merger.is_empty() && signal.is_none()) {
        // One line, as every error: the note explains the error.
        (Some(note), true) => bail!("no blast report in the input ({note})"),
        (Some(note), false) => super::diag(note),
        (None, _) => {}
    }
    if let Some(signal) = signal {
        if merger.is_empty() {
            super::diag(&format!(
                "interrupted by {signal} before any report was read"
            ));
            if args.json {
                let mut out = super::stdout();
                crate::render::merge::json_interrupted_before_any(signal, &mut out)?;
                out.flush()?;
            }
            return Ok(Outcome::Interrupted(signal.0));
        }
    } else if let Some(expected) = args.shards {
        ensure!(
            merger.len() == expected,
            "--shards {expected}: found {} (a run's output is missing, or one was fed in twice)",
            crate::text::count(merger.len() as u64, "report", "reports")
        );
    }
    let mut report = merger.finish(args.tag.as_deref())?;
    // A signal during the sum: the total is what was read, but no verdict.
    if let Some(signal) = signal.or_else(|| shutdown.interruption()) {
        merge::interrupted(&mut report, signal);
    }
    for warning in &report.warnings {
        super::diag(warning);
    }
    let mut out = super::stdout();
    if args.json {
        crate::render::merge::json(&report, &mut out)?;
    } else {
        crate::render::merge::table(&report, &mut out)?;
    }
    out.flush()?;
    // A signal while the output was written (the grace did not run out).
    if let Some(signal) = shutdown.interruption() {
        return Ok(Outcome::Interrupted(signal.0));
    }
    Ok(report.total.outcome(args.max_errors))
}

/// Opens every input before any is read; `-` is standard input, once.
fn open(files: &[std::path::PathBuf]) -> anyhow::Result<Vec<Source>> {
    let mut sources = Vec::with_capacity(files.len());
    let mut stdin = false;
    for path in files {
        if path == Path::new("-") {
            ensure!(!stdin, "- (standard input) is given twice");
            stdin = true;
            sources.push(Source {
                name: "stdin".into(),
                named: false,
                reader: Reader::Open(Box::new(std::io::stdin())),
            });
            continue;
        }
        // As it is: escaped where it is printed (the table, messages), and
        // the real name in JSON.
        let name = path.to_string_lossy().into_owned();
        let cannot = || format!("cannot open {}", crate::text::escape(&name));
        let fifo = std::fs::metadata(path).is_ok_and(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.file_type().is_fifo()
        });
        let reader = if fifo {
            // Checked, not opened: an open for reading could not end a wait
            // for the writer (O_NONBLOCK opens at once, but then reads an
            // end of file until a writer comes).
            nix::unistd::access(path, nix::unistd::AccessFlags::R_OK)
                .map_err(std::io::Error::from)
                .with_context(cannot)?;
            Reader::Fifo(path.clone())
        } else {
            Reader::Open(Box::new(std::fs::File::open(path).with_context(cannot)?))
        };
        sources.push(Source {
            name,
            named: true,
            reader,
        });
    }
    Ok(sources)
}

/// Reads every source to its end, or until a stop signal, handing each
/// chunk to `intake` as it comes; returns the signal, if one came. A read
/// error is an error (exit 2): a report half read must not be merged as a
/// smaller count.
fn read(
    sources: Vec<Source>,
    shutdown: &Shutdown,
    intake: &mut Intake,
) -> anyhow::Result<Option<Signal>> {
    // Bounded: a reader ahead of the adding would otherwise queue the whole
    // input in memory.
    let (tx, rx) = mpsc::sync_channel(CHUNKS_AHEAD);
    // Not joined: on a signal it may be blocked in a read that never returns
    // (a quiet pipe), or in the open of a FIFO with no writer, and the
    // process exits with it still there.
    std::thread::Builder::new()
        .name("lsbaws-merge-read".into())
        .spawn(move || reader(sources, &tx))
        .context("cannot start the input thread")?;
    let mut total = 0usize;
    loop {
        if let Some(signal) = shutdown.interruption() {
            // What was read before the signal was measured: it is added,
            // not lost (bounded: what the channel holds).
            for _ in 0..=CHUNKS_AHEAD {
                match rx.try_recv() {
                    Ok(chunk) => take(chunk, &mut total, intake)?,
                    Err(_) => break,
                }
            }
            return Ok(Some(signal));
        }
        match rx.recv_timeout(POLL) {
            Ok(chunk) => take(chunk, &mut total, intake)?,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(None),
        }
    }
}

/// One chunk from the input thread, added to `intake`.
fn take(chunk: Chunk, total: &mut usize, intake: &mut Intake) -> anyhow::Result<()> {
    match chunk {
        Chunk::Data(i, bytes) => {
            *total += bytes.len();
            ensure!(
                *total <= MAX_INPUT,
                "more than {} MiB of input: not blast reports",
                MAX_INPUT >> 20
            );
            intake.data(i, &bytes)
        }
        Chunk::End(i) => intake.end(i),
        Chunk::Failed(i, what, e) => {
            let name = intake.inputs.get(i).map_or("input", |t| t.name.as_str());
            bail!("cannot {what} {}: {e}", crate::text::escape(name));
        }
    }
}

/// The input thread: each source in turn (a FIFO opened when its turn
/// comes), in chunks, to its end.
fn reader(sources: Vec<Source>, tx: &mpsc::SyncSender<Chunk>) {
    for (i, source) in sources.into_iter().enumerate() {
        let mut input: Box<dyn Read + Send> = match source.reader {
            Reader::Open(input) => input,
            // Blocks until a writer opens it, as `cat FIFO` does.
            Reader::Fifo(path) => match std::fs::File::open(&path) {
                Ok(file) => Box::new(file),
                Err(e) => {
                    let _ = tx.send(Chunk::Failed(i, "open", e));
                    return;
                }
            },
        };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let chunk = match input.read(&mut buf) {
                Ok(0) => Chunk::End(i),
                Ok(n) => Chunk::Data(i, buf[..n].to_vec()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Chunk::Failed(i, "read", e),
            };
            let last = !matches!(chunk, Chunk::Data(..));
            if tx.send(chunk).is_err() {
                return; // the command is done with its input
            }
            if last {
                break;
            }
        }
    }
}
