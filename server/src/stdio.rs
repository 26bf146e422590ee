//! Which standard descriptors (0, 1, 2) were closed when the process started,
//! and how a program this process starts gets them closed too.
//!
//! Rust's runtime opens /dev/null on a closed 0, 1 or 2 before `main` (so
//! that a later `open` cannot become "stdout" by accident), and a program
//! spawned with inherited stdio then gets /dev/null where its caller gave it
//! nothing: `audit -- COMMAND` must pass COMMAND the descriptors as they are
//! (a test of how a program behaves with stdout closed must not pass under
//! lsbaws and fail without it). So a constructor notes the closed ones before
//! the runtime runs, and [`keep_closed`] closes them again in the child,
//! between fork and exec. Owns only that; must never close a descriptor in
//! this process.

use std::io;
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicU8, Ordering};

/// Bit `n` set: descriptor `n` was closed at start.
static CLOSED_AT_START: AtomicU8 = AtomicU8::new(0);

/// Notes which of 0, 1, 2 are closed. Runs from `.init_array`, before Rust's
/// runtime reopens them; glibc and musl call these after their own start-up,
/// so `fcntl` is usable.
extern "C" fn note_closed_stdio() {
    for fd in 0..3 {
        // SAFETY: F_GETFD takes a descriptor number and touches no memory.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            CLOSED_AT_START.fetch_or(1 << fd, Ordering::Relaxed);
        }
    }
}

// SAFETY: `.init_array` holds pointers to functions the loader calls once,
// with no arguments required, before `main`; `note_closed_stdio` is such a
// function and only reads descriptor flags and stores an atomic. `#[used]`
// keeps it in the binary (rustc also links every `#[used]` static of a
// library into an executable).
#[used]
#[unsafe(link_section = ".init_array")]
static NOTE_CLOSED_STDIO: extern "C" fn() = note_closed_stdio;

/// Whether standard descriptor `fd` (0, 1 or 2) was closed when this process
/// started (it now holds the runtime's /dev/null).
pub fn closed_at_start(fd: i32) -> bool {
    (0..3).contains(&fd) && CLOSED_AT_START.load(Ordering::Relaxed) & (1 << fd) != 0
}

/// Makes the program `cmd` starts find closed whichever of 0, 1, 2 were
/// closed when this process started, as its caller left them. Use with
/// inherited stdio only (a piped or null one is set up before this runs and
/// would be closed again).
pub fn keep_closed(cmd: &mut std::process::Command) {
    let closed: Vec<i32> = (0..3).filter(|&fd| closed_at_start(fd)).collect();
    if closed.is_empty() {
        return;
    }
    // SAFETY: the closure runs between fork and exec, allocates nothing and
    // calls only close, which is async-signal-safe; the descriptors it closes
    // are the child's copies of the runtime's /dev/null.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &closed {
                if libc::close(fd) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}
