//! Thin, safe wrappers over the few system calls the server needs.
//!
//! Owns every `unsafe` block of the server except the signal handlers (which live
//! in `signals.rs`). A wrapper that can fail says so in its result (`io::Result`,
//! or `Option` where "nothing" is the only failure); the ones a child calls per
//! connection do not allocate ([`thread_count`], [`reopen_nonblocking`] and
//! [`die_with_parent`] do, and run only at start-up or before an `exec`). Must
//! never hide a system call's failure.

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

/// Retries a call that failed with EINTR before doing anything.
fn retry_eintr(mut call: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One `write(2)`: a line of up to PIPE_BUF bytes to a pipe goes out whole or
/// not at all, so lines from many processes never interleave.
pub fn write_once(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: bytes is valid for reads of its length.
    retry_eintr(|| unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) })
}

/// One `send(2)` that never blocks (MSG_DONTWAIT) and never raises SIGPIPE,
/// whatever the socket's own flags: for a stdout that is a socket, whose
/// description the server must not change.
pub fn send_nowait(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    // SAFETY: bytes is valid for reads of its length.
    retry_eintr(|| unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), flags) })
}

/// One write that fails with EAGAIN instead of blocking, without touching the
/// description's flags (`pwritev2` with RWF_NOWAIT, Linux ≥ 4.14; pipes honour
/// it since 5.x). EOPNOTSUPP where the file or kernel does not.
pub fn write_nowait(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    // SAFETY: iov describes `bytes`, which the kernel only reads; offset -1
    // means the file's own position, as write(2) uses.
    retry_eintr(|| unsafe { libc::pwritev2(fd, &iov, 1, -1, libc::RWF_NOWAIT) })
}

/// What kind of file a descriptor is open on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Fifo,
    CharDevice,
    Socket,
    Other,
}

/// `fstat(2)`'s file type of `fd`; EBADF when it is not open.
pub fn file_kind(fd: RawFd) -> io::Result<FileKind> {
    // SAFETY: stat is plain data; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is valid for writes.
    cvt(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => FileKind::Regular,
        libc::S_IFIFO => FileKind::Fifo,
        libc::S_IFCHR => FileKind::CharDevice,
        libc::S_IFSOCK => FileKind::Socket,
        _ => FileKind::Other,
    })
}

/// Opens what `fd` is open on anew, write-only and non-blocking, through
/// /proc/self/fd: a private description whose O_NONBLOCK no one else sees (the
/// inherited one is shared with the shell or the terminal). For pipes, FIFOs
/// and terminals only: a regular file would get an offset of its own.
pub fn reopen_nonblocking(fd: RawFd) -> io::Result<OwnedFd> {
    let path = std::ffi::CString::new(format!("/proc/self/fd/{fd}"))
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // O_NOCTTY: reopening a terminal must never make it our controlling one.
    let flags = libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    // SAFETY: path is a valid NUL-terminated string.
    let new = cvt(unsafe { libc::open(path.as_ptr(), flags) })?;
    // SAFETY: open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// A counter in memory shared with every process forked after this call
/// (an anonymous MAP_SHARED page): children count into it, the parent reads it.
/// Never unmapped: it lives as long as the process.
pub fn shared_counter() -> io::Result<&'static std::sync::atomic::AtomicU64> {
    let len = std::mem::size_of::<std::sync::atomic::AtomicU64>();
    // SAFETY: a fresh anonymous mapping; no existing memory is affected.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the mapping is page-aligned, zero-filled (a valid AtomicU64 of 0),
    // at least `len` bytes, never unmapped, and only ever accessed atomically.
    Ok(unsafe { &*ptr.cast::<std::sync::atomic::AtomicU64>() })
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

/// `waitpid(pid, WNOHANG)` for one child: Some(status) once it has exited and
/// is reaped here, None while it runs (or when it is not our child).
pub fn reap_pid(pid: libc::pid_t) -> Option<libc::c_int> {
    let mut status = 0;
    // SAFETY: status is valid for writes.
    let got = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    (got == pid).then_some(status)
}

/// How a child that has exited but is not reaped yet ended, read without
/// reaping it (`waitid` with WNOWAIT): Some(true) when a signal killed it,
/// Some(false) when it exited, None when it has not exited (or is not ours).
pub fn peek_killed(pid: libc::pid_t) -> Option<bool> {
    let Ok(id) = libc::id_t::try_from(pid) else {
        return None;
    };
    // SAFETY: siginfo_t is plain data; waitid fills it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: info is valid for writes; WNOWAIT leaves the child unreaped.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            id,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: waitid filled si_pid (0 when nothing had exited).
    if rc != 0 || unsafe { info.si_pid() } != pid {
        return None;
    }
    Some(matches!(info.si_code, libc::CLD_KILLED | libc::CLD_DUMPED))
}

/// `pidfd_open(2)` (Linux ≥ 5.3): a descriptor that names this very process
/// (no pid reuse can redirect it) and polls readable once it has exited.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain system call taking integers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_send_signal(2)`: signals exactly the process the pidfd names.
pub fn pidfd_kill(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: a null siginfo is allowed; the other arguments are integers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Asks for `sig` when this process's parent ends (PR_SET_PDEATHSIG); false
/// when the parent is no longer `parent` (it ended before the call).
pub fn signal_on_parent_death(sig: libc::c_int, parent: libc::pid_t) -> bool {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes integers only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig, 0, 0, 0) };
    // SAFETY: getppid is always safe.
    unsafe { libc::getppid() == parent }
}

/// Whether one more descriptor can be opened now (a `dup` of `fd` that is
/// closed at once): false under an open-file limit that the descriptors in use
/// fill.
pub fn can_open_one_more(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we borrow; the copy is ours.
    let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if copy < 0 {
        return false;
    }
    // SAFETY: copy was just made here and nothing else owns it.
    unsafe { libc::close(copy) };
    true
}

/// The soft open-file limit (RLIMIT_NOFILE).
pub fn nofile_limit() -> u64 {
    // SAFETY: rlimit is plain data; getrlimit fills it.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: lim is valid for writes.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    lim.rlim_cur
}
