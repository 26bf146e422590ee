//! Output files (`--junit FILE`, `--report FILE`): opened before any work,
//! checked against each other and against lsbaws's own stdout and stderr,
//! and emptied only once they are known to be no other output.
//!
//! Owns how an output path is opened: without ever blocking where a stop
//! signal cannot end the wait (a FIFO with no reader blocks `open(2)`, and
//! the signal handlers restart it), and the refusal of two outputs that are
//! one file. Must never empty a file before every check passed (a refused
//! run destroys nothing) and never write a document: the commands do.

use std::fs::File;
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
            bail!(
                "{flag_a} {} and {flag_b} {} are the same file: each needs its own",
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
        if let Some((stream, _)) = streams
            .iter()
            .find(|(_, s)| s.as_ref().is_some_and(|s| s.same_file(id)))
        {
            bail!(
                "{flag} {} is the file lsbaws's {stream} writes to: {why}",
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
/// `open(2)`: a stop signal ends the wait with [`StoppedBeforeRun`]. What is
/// opened blocks as usual afterwards (a stuck write after a stop signal is
/// bounded by the output phase).
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
            Ok(file) => {
                blocking(&file)
                    .with_context(|| format!("cannot create the {what} {}", path.display()))?;
                return Ok(file);
            }
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

/// Clears O_NONBLOCK: it was there for the open only.
fn blocking(file: &File) -> std::io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(file.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(file.as_fd(), FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
    Ok(())
}

/// What tells two open files apart.
struct Identity {
    dev: u64,
    ino: u64,
    regular: bool,
}

impl Identity {
    /// One regular file twice. Devices and pipes are left alone: writes to
    /// /dev/null or to one pipe do not overwrite each other.
    fn same_file(&self, other: &Identity) -> bool {
        self.regular && other.regular && self.dev == other.dev && self.ino == other.ino
    }
}

fn identity(file: &File) -> std::io::Result<Identity> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata()?;
    Ok(Identity {
        dev: meta.dev(),
        ino: meta.ino(),
        regular: meta.file_type().is_file(),
    })
}
