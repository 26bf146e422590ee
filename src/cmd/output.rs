//! Output files (`--junit FILE`, `--report FILE`): opened before any work,
//! checked against each other and against lsbaws's own stdout and stderr,
//! and emptied only once they are known to be no other output.
//!
//! Owns how an output path is opened and written: without ever blocking
//! where a stop signal cannot end the wait (a FIFO with no reader blocks
//! `open(2)`, and one that never reads blocks `write(2)`; the signal handlers
//! restart both), a reader that goes away (EPIPE) ending that output only,
//! and the refusal of two outputs that are one file or one pipe. Must never
//! empty a file before every check passed (a refused run destroys nothing)
//! and never render a document: the commands do.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::shutdown::Shutdown;

/// An output file asked for: its flag (`--junit`), its path, and what it is
/// called in an error (`JUnit file`).
pub type Wanted<'a> = (&'static str, Option<&'a Path>, &'static str);

/// An output file opened and emptied, ready for its document.
pub type Opened<'a> = Option<(&'a Path, File)>;

/// A stop signal came while an output file waited for a reader, before the
/// job ran: nothing was measured, and the exit is 128 + the signal
/// (`cmd::run` turns this error into that outcome).
#[derive(Debug)]
pub struct StoppedBeforeRun {
    pub signal: i32,
    pub waiting_for: String,
}

impl std::fmt::Display for StoppedBeforeRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "interrupted by {} while {}; nothing ran",
            crate::shutdown::Signal(self.signal),
            self.waiting_for
        )
    }
}

impl std::error::Error for StoppedBeforeRun {}

/// How often an open of a FIFO with no reader is tried again.
const FIFO_POLL: Duration = Duration::from_millis(20);

/// After this long without a reader, a FIFO's wait is said on stderr (a
/// silent wait looks like a hang).
const FIFO_NOTICE: Duration = Duration::from_secs(1);

/// Opens every wanted output (in order), then refuses two that are one
/// file, or one that is the file lsbaws's stdout or stderr writes to (`why`
/// ends that message: what would overwrite what), then empties the regular
/// ones. Returns them in the order given.
pub fn open_all<'a>(
    wanted: &[Wanted<'a>],
    why: &str,
    shutdown: &Shutdown,
) -> Result<Vec<Opened<'a>>> {
    let mut opened = Vec::with_capacity(wanted.len());
    for &(flag, path, what) in wanted {
        let Some(path) = path else {
            opened.push(None);
            continue;
        };
        let file = open(path, what, shutdown)?;
        let id = identity(&file)
            .with_context(|| format!("cannot create the {what} {}", path.display()))?;
        opened.push(Some((flag, path, file, id)));
    }
    let present: Vec<_> = opened.iter().flatten().collect();
    for (i, (flag_a, a, _, id_a)) in present.iter().enumerate() {
        if let Some((flag_b, b, _, _)) = present[i + 1..].iter().find(|o| o.3.same_file(id_a)) {
            let kind = if id_a.regular { "file" } else { "pipe" };
            bail!(
                "{flag_a} {} and {flag_b} {} are the same {kind}: each needs its own",
                a.display(),
                b.display()
            );
        }
    }
    let shared = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .ok()
            .and_then(|fd| identity(&File::from(fd)).ok())
    };
    let streams = [
        ("stdout", shared(std::io::stdout().as_fd())),
        ("stderr", shared(std::io::stderr().as_fd())),
    ];
    for (flag, path, _, id) in &present {
        // A pipe is compared with stdout's only: a document written into
        // stderr's pipe follows COMMAND's stderr, as the diagnostics do.
        if let Some((stream, _)) = streams.iter().find(|(stream, s)| {
            s.as_ref()
                .is_some_and(|s| s.same_file(id) && (id.regular || *stream == "stdout"))
        }) {
            if id.regular {
                bail!(
                    "{flag} {} is the file lsbaws's {stream} writes to: {why}",
                    path.display()
                );
            }
            bail!(
                "{flag} {} is the pipe lsbaws's {stream} writes to: its reader would get two documents mixed into one stream (give {flag} its own path)",
                path.display()
            );
        }
    }
    opened
        .into_iter()
        .map(|o| {
            o.map(|(_, path, file, id)| {
                if id.regular {
                    file.set_len(0)
                        .with_context(|| format!("cannot empty {}", path.display()))?;
                }
                Ok((path, file))
            })
            .transpose()
        })
        .collect()
}

/// Opens `path` for writing, created if missing and not emptied yet. A FIFO
/// with no reader is waited for (as a shell's `>` waits) without blocking in
/// `open(2)`: a stop signal ends the wait with [`StoppedBeforeRun`]. It
/// stays O_NONBLOCK: [`FileOut`] waits for room in a way a stop signal ends.
fn open(path: &Path, what: &str, shutdown: &Shutdown) -> Result<File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let started = Instant::now();
    let mut told = false;
    loop {
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            // Emptied by `open_all`, once known to be no other output.
            .truncate(false)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(path);
        match opened {
            Ok(file) => return Ok(file),
            // ENXIO: a FIFO with no reader (or a socket, refused below).
            Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {
                let fifo = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
                if !fifo {
                    return Err(e)
                        .with_context(|| format!("cannot create the {what} {}", path.display()));
                }
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot create the {what} {}", path.display()));
            }
        }
        let waiting_for = format!(
            "waiting for a reader of the FIFO {}",
            crate::text::escape(&path.display().to_string())
        );
        if let Some(signal) = shutdown.signal() {
            return Err(StoppedBeforeRun {
                signal,
                waiting_for,
            }
            .into());
        }
        if !told && started.elapsed() >= FIFO_NOTICE {
            told = true;
            super::diag(&format!(
                "the {what} is a FIFO with no reader: {waiting_for} (a stop signal ends lsbaws)"
            ));
        }
        shutdown.sleep(FIFO_POLL);
    }
}

/// What tells two open files apart.
struct Identity {
    dev: u64,
    ino: u64,
    regular: bool,
    /// A FIFO or a pipe (`/dev/stdout` on `| cat`).
    pipe: bool,
}

impl Identity {
    /// One regular file twice (the second document overwrites the first),
    /// or one FIFO or pipe twice (its reader gets two documents mixed into
    /// one stream, which no parser reads). Devices are left alone: writes to
    /// /dev/null or a terminal neither overwrite nor corrupt each other.
    fn same_file(&self, other: &Identity) -> bool {
        let kind = (self.regular && other.regular) || (self.pipe && other.pipe);
        kind && self.dev == other.dev && self.ino == other.ino
    }
}

fn identity(file: &File) -> std::io::Result<Identity> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata()?;
    Ok(Identity {
        dev: meta.dev(),
        ino: meta.ino(),
        regular: meta.file_type().is_file(),
        pipe: std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()),
    })
}

/// After a stop signal, how long an output file whose reader makes no room
/// may hold up the outputs after it (the whole output phase has
/// `cmd::OUTPUT_GRACE`): a stuck file must not cost the report on stdout.
const STUCK_GRACE: Duration = Duration::from_secs(1);

/// How a document went into its output file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Whole,
    /// The reader went away (EPIPE): the rest went nowhere, the exit code
    /// stands (DESIGN, Verdicts).
    ReaderGone,
    /// A stop signal came while the reader made no room: the rest was
    /// dropped so the other outputs are still written.
    Stopped(i32),
}

/// The writer of an output file (opened O_NONBLOCK by [`open_all`]): waits
/// for room as `write(2)` would, but gives way to a stop signal after
/// [`STUCK_GRACE`], and turns EPIPE into "the rest goes nowhere". Other
/// errors (ENOSPC, EIO) are errors.
pub struct FileOut<'a> {
    file: &'a File,
    shutdown: &'a Shutdown,
    stopped_at: Option<Instant>,
    written: Written,
}

impl<'a> FileOut<'a> {
    pub fn new(file: &'a File, shutdown: &'a Shutdown) -> Self {
        FileOut {
            file,
            shutdown,
            stopped_at: None,
            written: Written::Whole,
        }
    }

    pub fn written(&self) -> Written {
        self.written
    }
}

impl Write for FileOut<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use nix::poll::{PollFd, PollFlags, poll};
        loop {
            if self.written != Written::Whole {
                return Ok(buf.len());
            }
            match (&mut &*self.file).write(buf) {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    self.written = Written::ReaderGone;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Some(signal) = self.shutdown.signal() {
                        let since = *self.stopped_at.get_or_insert_with(Instant::now);
                        if since.elapsed() >= STUCK_GRACE {
                            self.written = Written::Stopped(signal);
                            continue;
                        }
                    }
                    let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLOUT)];
                    // Woken by room, or after FIFO_POLL to look at the signal.
                    let _ = poll(&mut fds, FIFO_POLL.as_millis() as u16);
                }
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
