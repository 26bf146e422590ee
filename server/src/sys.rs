//! Thin, safe wrappers over the few system calls the server needs.
//!
//! Owns every `unsafe` block of the server except the signal handlers (which live
//! in `signals.rs`). A wrapper that can fail says so in its result (`io::Result`,
//! or `Option` where "nothing" is the only failure; the log writers drop what
//! they cannot write, on purpose); the ones a child calls per connection do not
//! allocate ([`thread_count`] and [`die_with_parent`] do, and run only at
//! start-up or before an `exec`). Must never hide a system call's failure.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Returns `Err(last_os_error)` when a libc call reported failure with -1.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `accept4` with `SOCK_CLOEXEC`: one system call, no retry on EINTR (the caller
/// decides what EINTR means; see `--on-eintr`).
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<(OwnedFd, SocketAddr)> {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage and len are valid for writes and len holds storage's size.
    let fd = cvt(unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            (&raw mut storage).cast::<libc::sockaddr>(),
            &mut len,
            libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: accept4 returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((fd, sockaddr_to_std(&storage)))
}

fn sockaddr_to_std(storage: &libc::sockaddr_storage) -> SocketAddr {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6, and
            // sockaddr_storage is large and aligned enough for it.
            let a = unsafe { &*(std::ptr::from_ref(storage).cast::<libc::sockaddr_in6>()) };
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            ))
        }
        _ => {
            // SAFETY: a TCP listener of ours is AF_INET or AF_INET6; for AF_INET
            // the storage holds a sockaddr_in, which it is large enough for.
            let a = unsafe { &*(std::ptr::from_ref(storage).cast::<libc::sockaddr_in>()) };
            SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            ))
        }
    }
}

/// Re-issues `listen` to set the backlog (std binds with its own fixed backlog).
pub fn listen(fd: BorrowedFd<'_>, backlog: u32) -> io::Result<()> {
    let backlog = libc::c_int::try_from(backlog).unwrap_or(libc::c_int::MAX);
    // SAFETY: plain system call on a descriptor we borrow.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) }).map(drop)
}

/// Sets `SO_RCVTIMEO` (0 = none). On a listener it is inherited by every accepted
/// socket, which saves each child a system call.
pub fn set_recv_timeout(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<()> {
    set_timeout(fd, libc::SO_RCVTIMEO, timeout)
}

/// Sets `SO_SNDTIMEO`, so that a client that stops reading cannot pin a child
/// in a blocking write. Inherited from a listener like `SO_RCVTIMEO`.
pub fn set_send_timeout(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<()> {
    set_timeout(fd, libc::SO_SNDTIMEO, timeout)
}

fn set_timeout(fd: BorrowedFd<'_>, option: libc::c_int, timeout: Duration) -> io::Result<()> {
    let mut tv = libc::timeval {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros() as i32),
    };
    if tv.tv_sec == 0 && tv.tv_usec == 0 && !timeout.is_zero() {
        // A zero timeval means "no timeout": a few nanoseconds left must not
        // turn into waiting forever.
        tv.tv_usec = 1;
    }
    // SAFETY: tv is a valid timeval and the length passed is its size.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&raw const tv).cast::<libc::c_void>(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Sets or clears `O_NONBLOCK`.
pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: fcntl F_GETFL/F_SETFL on a descriptor we borrow.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) }).map(drop)
}

/// A non-blocking, close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two new descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reads and discards whatever is buffered in a non-blocking descriptor.
pub fn drain(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 256];
    loop {
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
    }
}

/// Writes all of `bytes` to a raw descriptor (stdout, stderr) with as few `write`
/// calls as the kernel allows: a line of up to PIPE_BUF bytes goes out in one call,
/// so lines from many children never interleave.
pub fn write_fd(fd: RawFd, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: bytes is valid for reads of its length.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        match n {
            n if n > 0 => bytes = &bytes[n as usize..],
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => return,
        }
    }
}

/// Waits for readiness. `timeout` None blocks. Returns Ok(0) on timeout; EINTR is
/// returned as an error so that the caller re-checks its flags.
pub fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms = timeout.map_or(-1, |t| {
        // Round up so that a 100 µs wait does not become a busy 0 ms poll.
        libc::c_int::try_from(t.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX)
    });
    // SAFETY: fds is a valid slice of pollfd for its length.
    let n = cvt(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) })?;
    Ok(n as usize)
}

/// Result of `fork`.
pub enum Fork {
    Parent(libc::pid_t),
    Child,
}

/// `fork(2)`. The caller must be single-threaded (checked once by `run`), so the
/// child may allocate and use std freely until it calls [`exit_now`].
pub fn fork() -> io::Result<Fork> {
    // SAFETY: the process is single-threaded (run() checks /proc/self/task before
    // serving and nothing in the server starts a thread), so the child inherits
    // consistent allocator and std state.
    match cvt(unsafe { libc::fork() })? {
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(pid)),
    }
}

/// `_exit(2)`: ends the child without running the parent's atexit handlers or
/// flushing std buffers it inherited.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// `waitpid(-1, WNOHANG)`: Some((pid, status)) for one reaped child, None when
/// no child has changed state or there are no children.
pub fn reap_one() -> Option<(libc::pid_t, libc::c_int)> {
    let mut status = 0;
    // SAFETY: status is valid for writes.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    (pid > 0).then_some((pid, status))
}

/// `kill(pid, sig)`. Callers signal only their own children (or a process
/// group they made), and must not have reaped them: a reaped pid can be reused.
pub fn kill(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: plain system call, no memory involved.
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Blocks `sig` in this thread and returns a non-blocking signalfd that reports it.
pub fn signalfd(sig: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t; the calls only write to it / read it.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
    }
    // SAFETY: set is initialised; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: set is initialised; -1 asks for a new descriptor.
    let fd = cvt(unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
    // SAFETY: signalfd returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Number of threads of this process, from /proc/self/task.
pub fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Writes raw bytes to stdout with one `write` (see [`write_fd`]).
pub fn write_stdout(bytes: &[u8]) {
    write_fd(libc::STDOUT_FILENO, bytes);
}

/// Writes raw bytes to stderr with one `write` (see [`write_fd`]).
pub fn write_stderr(bytes: &[u8]) {
    write_fd(libc::STDERR_FILENO, bytes);
}

/// Makes a program started by `cmd` receive `signal` when the thread that
/// spawned it ends, however it ends (PR_SET_PDEATHSIG): a backstop so that no
/// program outlives its supervisor (a CGI program its child, a server `smoke`).
/// The kernel ties it to the spawning *thread*, not the process: spawn from a
/// thread that lives as long as the supervisor (its main thread), or the
/// program is killed when a short-lived thread exits.
pub fn die_with_parent(cmd: &mut std::process::Command, signal: libc::c_int) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and calls only prctl,
    // which is async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal, 0, 0, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
