//! Signal handlers and the process-wide state they share with the main loop.
//!
//! Owns SIGCHLD, SIGINT, SIGTERM and SIGHUP dispositions for each reaper
//! strategy, and the record of which children are the server's own. A handler
//! here does only async-signal-safe work: `waitpid`, `write` to the wake pipe,
//! `getpid`, `kill`, `shutdown`, `open`/`read`/`close` of a /proc file into a
//! stack buffer, `clock_gettime`, `nanosleep`, atomics, and saving/restoring
//! errno. It must never print, allocate or lock.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

use crate::Reaper;

/// Own children reaped (by a SIGCHLD handler or the signalfd main loop).
pub static REAPED: AtomicU64 = AtomicU64::new(0);
/// Reaped processes this server did not fork: children it inherited across
/// `exec`, or orphans re-parented to it as a subreaper or PID 1.
pub static FOREIGN: AtomicU64 = AtomicU64::new(0);
/// One bit per possible pid (PID_MAX_LIMIT is 2^22 on 64-bit Linux), set while
/// the pid is a child this server forked and has not reaped. Lets a handler tell
/// own from foreign children without a lock; untouched pages cost nothing.
static OWN: [AtomicU64; 1 << 16] = [const { AtomicU64::new(0) }; 1 << 16];
/// SIGCHLD handler invocations: how many signals actually arrived.
pub static SIGCHLD_COUNT: AtomicU64 = AtomicU64::new(0);
/// Set by SIGINT/SIGTERM/SIGHUP: stop accepting and shut down.
pub static SHUTDOWN: AtomicBool = AtomicBool::new(false);
/// The first stop signal that arrived (0: none yet).
pub static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// `--on-eintr fail`: the listener, which the stop handler shuts down so that a
/// blocking `accept` entered just after the handler ran fails at once instead
/// of waiting for the next connection (-1: not in that mode).
pub static BLOCKING_LISTENER: AtomicI32 = AtomicI32::new(-1);
/// Write end of the wake pipe, -1 before install.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// When set, the SIGCHLD handler also wakes the main loop. Only the cap and
/// shutdown need that, so a normal burst pays no extra `write` per exit.
pub static WAKE_ON_CHILD: AtomicBool = AtomicBool::new(false);
/// In a child running a CGI program: the program's process group, killed with
/// the child when the child is told to stop (0: none).
pub static CGI_GROUP: AtomicI32 = AtomicI32::new(0);
/// The server's pid: a forked child that inherited our handlers must not act on
/// the parent's behalf (see `on_term`).
static SERVER_PID: AtomicI32 = AtomicI32::new(0);

/// The server's pid, as `getpid` gave it when the handlers were installed.
pub fn server_pid() -> libc::pid_t {
    SERVER_PID.load(Ordering::Relaxed)
}

/// Runs `f` with errno saved and restored, as every handler must: the main loop
/// may be between a failing system call and its read of errno.
fn preserving_errno(f: impl FnOnce()) {
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    let saved = unsafe { *libc::__errno_location() };
    f();
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

fn slot(pid: libc::pid_t) -> Option<(&'static AtomicU64, u64)> {
    slot_in(&OWN, pid)
}

/// The word and bit of `pid` in a per-pid bit set.
fn slot_in(
    set: &'static [AtomicU64; 1 << 16],
    pid: libc::pid_t,
) -> Option<(&'static AtomicU64, u64)> {
    let pid = usize::try_from(pid).ok()?;
    Some((set.get(pid / 64)?, 1 << (pid % 64)))
}

/// Whether this server can have children it did not fork: it is a subreaper or
/// PID 1 (orphans are re-parented to it), or it inherited children across
/// `exec`. Only then are own pids tracked, which costs the parent two
/// `sigprocmask` calls per fork (measured: ~8% of fork-per-connection
/// throughput), so a plain server does not pay for it.
pub static FOREIGN_POSSIBLE: AtomicBool = AtomicBool::new(false);

/// Marks `pid` as a child this server forked. Called with SIGCHLD blocked, so
/// that a child that exits at once cannot be reaped before it is marked.
pub fn mark_own(pid: libc::pid_t) {
    if let Some((word, bit)) = slot(pid) {
        word.fetch_or(bit, Ordering::Relaxed);
    }
}

/// Whether `pid`, a child of this process, is one the server forked (else it
/// was inherited across `exec` or adopted as an orphan). Exact in every mode but
/// `ignore`, where the kernel reaps unseen and a pid it freed could return as an
/// adopted orphan's.
pub fn is_own(pid: libc::pid_t) -> bool {
    !FOREIGN_POSSIBLE.load(Ordering::Relaxed)
        || slot(pid).is_some_and(|(word, bit)| word.load(Ordering::Relaxed) & bit != 0)
}

/// Counts a reaped pid as own or foreign; returns whether it was own.
/// Async-signal-safe (atomics only).
pub fn record_reap(pid: libc::pid_t) -> bool {
    let own = !FOREIGN_POSSIBLE.load(Ordering::Relaxed)
        || slot(pid).is_some_and(|(word, bit)| word.fetch_and(!bit, Ordering::Relaxed) & bit != 0);
    if own {
        REAPED.fetch_add(1, Ordering::Relaxed);
    } else {
        FOREIGN.fetch_add(1, Ordering::Relaxed);
    }
    own
}

/// One bit per pid, set when a process the server reaped died of SIGTERM or
/// SIGKILL: the shutdown counts as killed only the processes it signalled that
/// died of it (one that exited by itself between the listing and the `kill`
/// was a zombie, and `kill` on a zombie succeeds).
static DIED_OF_STOP: [AtomicU64; 1 << 16] = [const { AtomicU64::new(0) }; 1 << 16];

/// Records how a reaped process ended (see [`DIED_OF_STOP`]). Async-signal-safe.
pub fn note_exit(pid: libc::pid_t, status: libc::c_int) {
    let stopped = libc::WIFSIGNALED(status)
        && matches!(libc::WTERMSIG(status), libc::SIGTERM | libc::SIGKILL);
    if let (true, Some((word, bit))) = (stopped, slot_in(&DIED_OF_STOP, pid)) {
        word.fetch_or(bit, Ordering::Relaxed);
    }
}

/// Forgets how an earlier process with this pid ended: called for an unreaped
/// child just before the shutdown signals it.
pub fn forget_exit(pid: libc::pid_t) {
    if let Some((word, bit)) = slot_in(&DIED_OF_STOP, pid) {
        word.fetch_and(!bit, Ordering::Relaxed);
    }
}

/// Whether `pid` was reaped after dying of SIGTERM or SIGKILL.
pub fn died_of_stop(pid: libc::pid_t) -> bool {
    slot_in(&DIED_OF_STOP, pid).is_some_and(|(word, bit)| word.load(Ordering::Relaxed) & bit != 0)
}

/// Blocks (true) or unblocks (false) SIGCHLD for this thread.
pub fn block_sigchld(block: bool) -> io::Result<()> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t; the calls only write to it.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
    }
    let how = if block {
        libc::SIG_BLOCK
    } else {
        libc::SIG_UNBLOCK
    };
    // SAFETY: set is initialised; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(how, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

fn wake() {
    let fd = WAKE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: write is async-signal-safe; a full pipe (EAGAIN) is fine, since
        // one pending byte is enough to wake the loop.
        unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    }
}

/// The article's fix (webserver3g): reap until nothing is left, because one
/// signal may stand for many exits.
extern "C" fn on_chld_loop(_: libc::c_int) {
    preserving_errno(|| {
        SIGCHLD_COUNT.fetch_add(1, Ordering::Relaxed);
        let mut status = 0;
        loop {
            // SAFETY: waitpid is async-signal-safe; status is a valid local.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            note_exit(pid, status);
            record_reap(pid);
        }
        if WAKE_ON_CHILD.load(Ordering::Relaxed) {
            wake();
        }
    });
}

/// BROKEN ON PURPOSE (webserver3e/3f): one wait per signal. Pending signals of one
/// kind are not queued, so exits that coalesce into one signal leave zombies.
/// WNOHANG instead of the article's blocking `wait()` so that a stale signal
/// cannot freeze the server; the leak is the same.
extern "C" fn on_chld_once(_: libc::c_int) {
    preserving_errno(|| {
        SIGCHLD_COUNT.fetch_add(1, Ordering::Relaxed);
        let mut status = 0;
        // SAFETY: waitpid is async-signal-safe; status is a valid local.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            note_exit(pid, status);
            record_reap(pid);
        }
        if WAKE_ON_CHILD.load(Ordering::Relaxed) {
            wake();
        }
    });
}

extern "C" fn on_term(sig: libc::c_int) {
    preserving_errno(|| {
        // SAFETY: getpid is async-signal-safe.
        if unsafe { libc::getpid() } != SERVER_PID.load(Ordering::Relaxed) {
            on_term_in_child(sig);
            return;
        }
        let _ = STOP_SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
        SHUTDOWN.store(true, Ordering::SeqCst);
        wake();
        let listener = BLOCKING_LISTENER.load(Ordering::SeqCst);
        if listener >= 0 {
            // The main loop may be past its SHUTDOWN check and about to block in
            // accept: a listener shut down for reading fails accept at once
            // (EINVAL). Shutdown closes it anyway, so nothing is lost.
            // SAFETY: shutdown is async-signal-safe; the fd is the listener,
            // still open (the main loop clears this before closing it).
            unsafe { libc::shutdown(listener, libc::SHUT_RD) };
        }
    });
}

/// A forked child inherited the server's stop handler (resetting it in every
/// child would cost each connection system calls). SIGINT and SIGHUP reach the
/// whole process group (Ctrl-C, a terminal hang-up): the server decides, and
/// its `--grace` lets the child finish, so the child ignores them. SIGTERM is
/// the server's own "stop now" after the grace (or a user's, aimed at this
/// child, or the parent-death signal when the server died): the child kills
/// the process group of a CGI program it runs and, as the subreaper of that
/// program's tree, everything else below it, then takes the default action.
fn on_term_in_child(sig: libc::c_int) {
    if sig != libc::SIGTERM {
        return;
    }
    let group = CGI_GROUP.load(Ordering::SeqCst);
    if group > 0 {
        // SAFETY: kill is async-signal-safe; a negative pid names the group.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
    if CGI_CHILD.load(Ordering::SeqCst) {
        kill_tree_in_handler();
    }
    // SAFETY: signal and raise are async-signal-safe.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Set in a connection child that runs a CGI program: it is then the child
/// subreaper of the program's tree, and its SIGTERM handler stops that tree.
pub static CGI_CHILD: AtomicBool = AtomicBool::new(false);

/// How long the SIGTERM handler of a CGI child goes on stopping the tree: the
/// server waits 200 ms after SIGTERM before it sends SIGKILL.
const HANDLER_KILL_MS: i64 = 150;

/// `tree::kill_all_below` with async-signal-safe calls only (open, read, kill,
/// waitpid, clock_gettime, nanosleep; no allocation): SIGKILL every child this
/// (single-threaded) process has, reap, and again for the orphans that come
/// back, for at most [`HANDLER_KILL_MS`].
fn kill_tree_in_handler() {
    let now_ms = || {
        // SAFETY: timespec is plain data; clock_gettime fills it.
        let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: ts is valid for writes.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
    };
    let start = now_ms();
    loop {
        let mut buf = [0u8; 4096];
        // SAFETY: a constant NUL-terminated path; open is async-signal-safe.
        let fd = unsafe {
            libc::open(
                c"/proc/thread-self/children".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return;
        }
        // SAFETY: buf is valid for writes of its length; fd is ours.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        // SAFETY: fd was opened above.
        unsafe { libc::close(fd) };
        let Ok(n) = usize::try_from(n) else { return };
        if n == 0 {
            return; // nothing left below
        }
        let mut pid: libc::pid_t = 0;
        for &b in buf[..n].iter().chain(b" ") {
            if b.is_ascii_digit() {
                pid = pid
                    .saturating_mul(10)
                    .saturating_add(libc::pid_t::from(b - b'0'));
            } else if pid > 0 {
                // SAFETY: kill is async-signal-safe; pid is our own unreaped
                // child (only this thread reaps, and not since the read).
                unsafe { libc::kill(pid, libc::SIGKILL) };
                pid = 0;
            }
        }
        let mut status = 0;
        // SAFETY: waitpid is async-signal-safe; status is a valid local.
        while unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } > 0 {}
        if now_ms() - start > HANDLER_KILL_MS {
            return;
        }
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        // SAFETY: nanosleep is async-signal-safe; a null remainder is allowed.
        unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
    }
}

fn set_handler(
    sig: libc::c_int,
    handler: libc::sighandler_t,
    flags: libc::c_int,
) -> io::Result<()> {
    // SAFETY: sigaction is plain data; zeroed is a valid empty action.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler;
    action.sa_flags = flags;
    // SAFETY: sa_mask is a valid sigset_t inside action.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: action is fully initialised; a null old-action pointer is allowed.
    if unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Installs the handlers for `reaper`. `restart` chooses SA_RESTART: without it a
/// blocking `accept` fails with EINTR when a child exits (webserver3e's crash).
pub fn install(reaper: Reaper, wake_fd: i32, restart: bool) -> io::Result<()> {
    // SAFETY: getpid is always safe.
    SERVER_PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
    WAKE_FD.store(wake_fd, Ordering::Relaxed);
    let restart = if restart { libc::SA_RESTART } else { 0 };
    let term = on_term as extern "C" fn(libc::c_int) as libc::sighandler_t;
    set_handler(libc::SIGTERM, term, restart)?;
    set_handler(libc::SIGINT, term, restart)?;
    // A hang-up (the terminal closed, `kill -HUP`) would otherwise kill the
    // server with no summary and orphan its children: stop as for SIGTERM.
    set_handler(libc::SIGHUP, term, restart)?;
    // SA_NOCLDSTOP: stopped/continued children are not exits and must not be
    // "reaped" by the once handler's single wait.
    let chld_flags = restart | libc::SA_NOCLDSTOP;
    match reaper {
        Reaper::Loop => set_handler(
            libc::SIGCHLD,
            on_chld_loop as extern "C" fn(libc::c_int) as libc::sighandler_t,
            chld_flags,
        ),
        Reaper::Once => set_handler(
            libc::SIGCHLD,
            on_chld_once as extern "C" fn(libc::c_int) as libc::sighandler_t,
            chld_flags,
        ),
        Reaper::Ignore => set_handler(libc::SIGCHLD, libc::SIG_IGN, 0),
        // None: the default disposition, so children stay zombies. Signalfd: the
        // signal is blocked and read from a signalfd by the main loop.
        Reaper::None | Reaper::Signalfd => set_handler(libc::SIGCHLD, libc::SIG_DFL, 0),
    }
}

/// Puts SIGCHLD back to the default and unblocks it, in a child that is about to
/// start a program of its own: the parent's reaper (a handler, SIG_IGN or a
/// blocked signal for signalfd) would otherwise steal or hide that program's
/// exit status from the child's own `wait`, and SIG_IGN and the mask would even
/// be inherited across `exec`.
pub fn reset_sigchld() -> io::Result<()> {
    set_handler(libc::SIGCHLD, libc::SIG_DFL, 0)?;
    block_sigchld(false)
}

/// `ignore` mode at shutdown: SIGCHLD back to the default, so that children
/// that exit from now on stay zombies until the server reaps them. The kernel
/// would otherwise free a pid between the sweep listing it and signalling it.
pub fn stop_kernel_reaping() -> io::Result<()> {
    set_handler(libc::SIGCHLD, libc::SIG_DFL, 0)
}

/// Makes this process a child subreaper: orphaned descendants are re-parented
/// to it instead of to init, as tini's `-s` and PID 1 in a container do.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes no pointers.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
