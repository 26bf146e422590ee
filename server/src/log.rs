//! The server's output once it serves: request lines, exit statuses, warnings.
//!
//! Owns how the parent and every child write to stdout and stderr. A log
//! consumer that stops reading (a full pipe, a stopped terminal) must never
//! stall accept, a child or the shutdown, so each line is one write(2) of at most
//! PIPE_BUF bytes (lines of many processes never interleave) that never blocks;
//! a line that cannot be written at once is dropped and counted, in a counter
//! the children share with the parent, for the summary.
//!
//! How a line is written depends on what the descriptor is, decided once in
//! `init`, before the first fork:
//! - pipe, FIFO, terminal: reopened through /proc/self/fd as a private
//!   non-blocking description;
//! - the same when it cannot be reopened (another user's pipe): `pwritev2`
//!   with RWF_NOWAIT on the inherited one;
//! - socket: `send` with MSG_DONTWAIT;
//! - regular file: plain `write` (it does not block for long).
//!
//! Must never set O_NONBLOCK on an inherited description (the shell and the
//! terminal share it), never reopen a regular file (that would get it an offset
//! of its own and overwrite), and never block, except
//! [`write_stdout_within`], [`announce`] and [`write_stderr_within`], which
//! wait a bounded time.

use std::os::fd::{IntoRawFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sys::{self, FileKind};

/// How lines reach a descriptor (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// Not set up yet: a plain write (only before `run` serves).
    Unset = 0,
    /// Regular file: plain write on the inherited descriptor.
    Plain = 1,
    /// A private non-blocking description, opened anew.
    Private = 2,
    /// Socket: send with MSG_DONTWAIT.
    Socket = 3,
    /// pwritev2 with RWF_NOWAIT on the inherited descriptor.
    NoWait = 4,
    /// Not open at all: every line is dropped.
    Closed = 5,
}

/// One of stdout or stderr.
struct Sink {
    /// The descriptor lines go to (the reopened one in `Private` mode).
    fd: AtomicI32,
    how: AtomicU8,
    /// The standard descriptor it stands for.
    std_fd: RawFd,
}

impl Sink {
    const fn new(std_fd: RawFd) -> Self {
        Sink {
            fd: AtomicI32::new(std_fd),
            how: AtomicU8::new(How::Unset as u8),
            std_fd,
        }
    }

    fn how(&self) -> How {
        match self.how.load(Ordering::Relaxed) {
            1 => How::Plain,
            2 => How::Private,
            3 => How::Socket,
            4 => How::NoWait,
            5 => How::Closed,
            _ => How::Unset,
        }
    }

    fn set_up(&self) {
        if self.how() != How::Unset {
            return; // once per process (stderr may be set up early for diagnostics)
        }
        let fd = self.std_fd;
        let how = match sys::file_kind(fd) {
            Err(_) => How::Closed,
            Ok(FileKind::Socket) => How::Socket,
            Ok(FileKind::Regular | FileKind::Other) => How::Plain,
            Ok(FileKind::Fifo | FileKind::CharDevice) => match sys::reopen_nonblocking(fd) {
                Ok(private) => {
                    // Kept open for the life of the process (and its children).
                    self.fd.store(private.into_raw_fd(), Ordering::Relaxed);
                    How::Private
                }
                Err(_) => How::NoWait,
            },
        };
        self.how.store(how as u8, Ordering::Relaxed);
    }

    /// One attempt to write `line` whole, never blocking (except `Unset`/`Plain`).
    fn try_write(&self, line: &[u8]) -> std::io::Result<usize> {
        let fd = self.fd.load(Ordering::Relaxed);
        match self.how() {
            How::Unset | How::Plain | How::Private => sys::write_once(fd, line),
            How::Socket => sys::send_nowait(fd, line),
            How::NoWait => match sys::write_nowait(fd, line) {
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    // An old kernel: write only when there is room. Another
                    // writer can take that room first, so this can still block;
                    // it is the last resort for a pipe we may not reopen.
                    if writable(fd, Duration::ZERO) {
                        sys::write_once(fd, line)
                    } else {
                        Err(std::io::Error::from_raw_os_error(libc::EAGAIN))
                    }
                }
                other => other,
            },
            How::Closed => Err(std::io::Error::from_raw_os_error(libc::EBADF)),
        }
    }
}

static OUT: Sink = Sink::new(libc::STDOUT_FILENO);
static ERR: Sink = Sink::new(libc::STDERR_FILENO);

/// Drops counted before [`init`] mapped the shared counter (or if it could not).
static LOCAL_DROPS: AtomicU64 = AtomicU64::new(0);
/// The counter shared with the children (a MAP_SHARED page), once mapped.
static SHARED_DROPS: AtomicPtr<AtomicU64> = AtomicPtr::new(std::ptr::null_mut());

fn drops() -> &'static AtomicU64 {
    let shared = SHARED_DROPS.load(Ordering::Acquire);
    if shared.is_null() {
        &LOCAL_DROPS
    } else {
        // SAFETY: the pointer came from `sys::shared_counter`, a `'static`
        // reference to memory that is never unmapped.
        unsafe { &*shared }
    }
}

/// Sets up both sinks and the shared drop counter. Call once, in the parent,
/// before the first fork (children inherit all of it).
pub(crate) fn init() {
    if SHARED_DROPS.load(Ordering::Acquire).is_null()
        && let Ok(counter) = sys::shared_counter()
    {
        counter.store(LOCAL_DROPS.load(Ordering::Relaxed), Ordering::Relaxed);
        SHARED_DROPS.store(std::ptr::from_ref(counter).cast_mut(), Ordering::Release);
    }
    OUT.set_up();
    ERR.set_up();
}

/// Lines dropped so far, by the parent and every child.
pub fn dropped() -> u64 {
    drops().load(Ordering::Relaxed)
}

/// A line cut to PIPE_BUF bytes, still ending in a newline: longer writes to a
/// pipe may be split and interleaved with other processes' lines.
fn bounded<'a>(line: &'a [u8], buf: &'a mut [u8; libc::PIPE_BUF]) -> &'a [u8] {
    if line.len() <= buf.len() {
        return line;
    }
    buf.copy_from_slice(&line[..libc::PIPE_BUF]);
    buf[libc::PIPE_BUF - 1] = b'\n';
    &buf[..]
}

fn emit(sink: &Sink, line: &[u8]) {
    let mut buf = [0u8; libc::PIPE_BUF];
    let line = bounded(line, &mut buf);
    if !matches!(sink.try_write(line), Ok(n) if n == line.len()) {
        drops().fetch_add(1, Ordering::Relaxed);
    }
}

/// Writes one line to stdout now or drops it (counted). Never blocks.
pub(crate) fn out(line: &[u8]) {
    emit(&OUT, line);
}

/// Writes one line to stderr now or drops it (counted). Never blocks.
pub(crate) fn err(line: &[u8]) {
    emit(&ERR, line);
}

/// Whether `fd` has room for a write within `wait`.
fn writable(fd: RawFd, wait: Duration) -> bool {
    let mut fds = [libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    }];
    matches!(sys::poll(&mut fds, Some(wait)), Ok(n) if n > 0)
}

/// What became of a line written with patience.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Written whole.
    Whole,
    /// No room within the patience given (nobody reads).
    TimedOut,
    /// A stop signal came while waiting.
    Stopped,
    /// The output is closed (EPIPE, not open) or failed otherwise.
    Closed,
}

/// Writes `line` whole to `sink`, waiting up to `patience` for a slow reader
/// to make room, and no longer once `stop` says so. Never blocks otherwise.
fn write_within(sink: &Sink, line: &[u8], patience: Duration, stop: &dyn Fn() -> bool) -> Written {
    let mut buf = [0u8; libc::PIPE_BUF];
    let line = bounded(line, &mut buf);
    let deadline = Instant::now() + patience;
    loop {
        if sink.how() == How::Plain {
            // A regular file: a plain write, which does not block for long.
            return match sink.try_write(line) {
                Ok(n) if n == line.len() => Written::Whole,
                _ => Written::Closed,
            };
        }
        match sink.try_write(line) {
            Ok(n) if n == line.len() => return Written::Whole,
            Ok(_) => return Written::Closed,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if stop() {
                    return Written::Stopped;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Written::TimedOut;
                }
                // Room, the time is up, or a signal (EINTR): try again, and
                // look at `stop` again.
                writable(sink.fd.load(Ordering::Relaxed), left);
            }
            Err(_) => return Written::Closed,
        }
    }
}

/// Writes one line (the summary) to stdout, waiting up to `patience` for a slow
/// reader to make room; false when it could not be written whole in that time
/// (nobody reads, the pipe is closed). Bounded: it never holds a shutdown up
/// for longer than `patience`. Not counted as a drop: the summary, which
/// reports the drops, is printed after them.
pub fn write_stdout_within(line: &[u8], patience: Duration) -> bool {
    write_within(&OUT, line, patience, &|| false) == Written::Whole
}

/// Writes the ready line: as [`write_stdout_within`], but a stop signal ends
/// the wait at once (the server then shuts down without having served). A line
/// that cannot be written is counted as dropped: the server serves anyway.
pub fn announce(line: &[u8], patience: Duration) -> Written {
    let written = write_within(&OUT, line, patience, &|| {
        crate::signals::SHUTDOWN.load(Ordering::SeqCst)
    });
    if matches!(written, Written::TimedOut | Written::Closed) {
        drops().fetch_add(1, Ordering::Relaxed);
    }
    written
}

/// Writes one line to stderr, waiting at most `patience` for room: for the
/// messages a command prints on its way out, which a stderr nobody reads must
/// not turn into a hang. Usable before `init` and in any command: stderr is
/// set up (a private non-blocking description) on first use.
pub fn write_stderr_within(line: &[u8], patience: Duration) -> Written {
    if ERR.how() == How::Unset {
        ERR.set_up();
    }
    write_within(&ERR, line, patience, &|| false)
}

/// Whether `c` must never reach a terminal raw: C0 and C1 controls, DEL, the
/// bidi controls, line and paragraph separators, the BOM and U+FFFE/U+FFFF.
/// The same list as `lsbaws::text::is_dangerous` (this crate depends on no
/// other of the project).
fn is_dangerous(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{61c}'
        | '\u{200e}' | '\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}'
        | '\u{2028}' | '\u{2029}'
        | '\u{feff}'
        | '\u{fffe}' | '\u{ffff}')
}

/// Appends `bytes` (text from a program or the network, any bytes) to `out`
/// with every dangerous character made visible (`\x1b`, `\u{202e}`); bytes
/// that are not UTF-8 become U+FFFD.
pub fn escape_into(out: &mut String, bytes: &[u8]) {
    for c in String::from_utf8_lossy(bytes).chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_dangerous(c) && (c as u32) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if is_dangerous(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_to_pipe_buf_and_keep_their_newline() {
        let mut buf = [0u8; libc::PIPE_BUF];
        let long = vec![b'x'; libc::PIPE_BUF * 2];
        let cut = bounded(&long, &mut buf);
        assert_eq!(cut.len(), libc::PIPE_BUF);
        assert_eq!(cut.last(), Some(&b'\n'));
        let mut buf = [0u8; libc::PIPE_BUF];
        assert_eq!(bounded(b"short\n", &mut buf), b"short\n");
    }

    #[test]
    fn escaped_text_keeps_no_raw_control() {
        let mut out = String::new();
        escape_into(
            &mut out,
            "\x1b[31mRED\x1b]0;t\x07 \u{202e}x\u{9b}\n".as_bytes(),
        );
        assert_eq!(out, "\\x1b[31mRED\\x1b]0;t\\x07 \\u{202e}x\\u{9b}\\n");
        let mut out = String::new();
        escape_into(&mut out, b"caf\xc3\xa9 \xff");
        assert_eq!(out, "caf\u{e9} \u{fffd}");
    }
}
