//! `lsbaws merge`: files and stdin read, reports split and checked, the sum,
//! the tables or JSON, the verdict.
//!
//! Owns the reading: every file is opened before anything is read (a missing
//! one is exit 2 at once), then all inputs are read on a helper thread so that
//! a stop signal during a slow stream (`kubectl logs -f | lsbaws merge -`)
//! still prints the sum of the reports that had arrived, marked interrupted.
//! Must never add or judge: the `merge` engine does.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};

use crate::cli::MergeArgs;
use crate::merge::{self, input, shard};
use crate::outcome::Outcome;
use crate::shutdown::{Shutdown, Signal};

/// Most input read in all: a report is a few kB, so this is tens of thousands
/// of them; an endless stream must end in an error, not in memory exhaustion.
const MAX_INPUT: usize = 256 << 20;

/// How often the wait for input looks at the stop signals.
const POLL: Duration = Duration::from_millis(50);

/// One input, opened.
struct Source {
    name: String,
    reader: Box<dyn Read + Send>,
}

/// What the reader thread hands over.
enum Chunk {
    Data(usize, Vec<u8>),
    End(usize),
    Failed(usize, std::io::Error),
}

/// One input, read: its text and whether it ended (not cut by a signal).
struct Text {
    name: String,
    bytes: Vec<u8>,
    ended: bool,
}

/// The `merge` command.
pub fn run(args: &MergeArgs) -> anyhow::Result<Outcome> {
    if let Some(tag) = &args.tag {
        ensure!(!tag.trim().is_empty(), "--tag must not be empty");
    }
    let sources = open(&args.files)?;
    let shutdown = super::stop_signals()?;
    let (texts, signal) = read(sources, &shutdown)?;

    let mut shards = Vec::new();
    let mut skipped = 0;
    let mut first_skipped = None;
    for text in &texts {
        let split = input::split(
            &text.name,
            &String::from_utf8_lossy(&text.bytes),
            !text.ended,
        )?;
        skipped += split.skipped;
        if first_skipped.is_none() {
            first_skipped = split.first_skipped;
        }
        for doc in &split.documents {
            shards.push(shard::read(doc)?);
        }
    }
    let skip_note = first_skipped.map(|(at, line)| {
        format!(
            "skipped {} that {} not JSON (first: {at}: {})",
            crate::text::count(skipped as u64, "line", "lines"),
            if skipped == 1 { "is" } else { "are" },
            crate::text::escape(&line)
        )
    });
    match (&skip_note, shards.is_empty() && signal.is_none()) {
        // One line, as every error: the note explains the error.
        (Some(note), true) => bail!("no blast report in the input ({note})"),
        (Some(note), false) => super::diag(note),
        (None, _) => {}
    }
    if let Some(signal) = signal {
        if shards.is_empty() {
            super::diag(&format!(
                "interrupted by {signal} before any report was read"
            ));
            return Ok(Outcome::Interrupted(signal.0));
        }
    } else if let Some(expected) = args.shards {
        ensure!(
            shards.len() == expected,
            "--shards {expected}: found {} (a run's output is missing, or one was fed in twice)",
            crate::text::count(shards.len() as u64, "report", "reports")
        );
    }
    let mut report = merge::merge(&shards, args.tag.as_deref())?;
    if let Some(signal) = signal {
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
                reader: Box::new(std::io::stdin()),
            });
            continue;
        }
        let name = crate::text::escape(&path.to_string_lossy()).into_owned();
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {name}"))?;
        sources.push(Source {
            name,
            reader: Box::new(file),
        });
    }
    Ok(sources)
}

/// Reads every source to its end, or until a stop signal: returns what was
/// read and the signal, if one came. A read error is an error (exit 2): a
/// report half read must not be merged as a smaller count.
fn read(sources: Vec<Source>, shutdown: &Shutdown) -> anyhow::Result<(Vec<Text>, Option<Signal>)> {
    let mut texts: Vec<Text> = sources
        .iter()
        .map(|s| Text {
            name: s.name.clone(),
            bytes: Vec::new(),
            ended: false,
        })
        .collect();
    let (tx, rx) = mpsc::channel();
    // Not joined: on a signal it may be blocked in a read that never returns
    // (a quiet pipe), and the process exits with it still there.
    std::thread::Builder::new()
        .name("lsbaws-merge-read".into())
        .spawn(move || reader(sources, &tx))
        .context("cannot start the input thread")?;
    let mut total = 0usize;
    loop {
        if let Some(signal) = shutdown.interruption() {
            return Ok((texts, Some(signal)));
        }
        match rx.recv_timeout(POLL) {
            Ok(Chunk::Data(i, bytes)) => {
                total += bytes.len();
                ensure!(
                    total <= MAX_INPUT,
                    "more than {} MiB of input: not blast reports",
                    MAX_INPUT >> 20
                );
                if let Some(t) = texts.get_mut(i) {
                    t.bytes.extend_from_slice(&bytes);
                }
            }
            Ok(Chunk::End(i)) => {
                if let Some(t) = texts.get_mut(i) {
                    t.ended = true;
                }
            }
            Ok(Chunk::Failed(i, e)) => {
                let name = texts.get(i).map_or("input", |t| t.name.as_str());
                bail!("cannot read {name}: {e}");
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok((texts, None)),
        }
    }
}

/// The input thread: each source in turn, in chunks, to its end.
fn reader(sources: Vec<Source>, tx: &mpsc::Sender<Chunk>) {
    for (i, mut source) in sources.into_iter().enumerate() {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let chunk = match source.reader.read(&mut buf) {
                Ok(0) => Chunk::End(i),
                Ok(n) => Chunk::Data(i, buf[..n].to_vec()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Chunk::Failed(i, e),
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
