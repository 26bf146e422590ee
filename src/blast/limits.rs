//! Host limits a burst runs into: open files and ephemeral ports.
//!
//! Owns raising RLIMIT_NOFILE's soft limit to the hard limit and the one-line
//! warnings when a run needs more than the host allows (returned, for `cmd` to
//! print). Must never lower a limit, touch system-wide settings, or fail the
//! run: a limit that cannot be read or raised only means no warning.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// File descriptors the process uses besides client sockets (stdio, the
/// runtime's epoll, eventfd and timers), with some room for the progress bar.
const FD_RESERVE: u64 = 16;

/// Raises the soft open-file limit to the hard one; returns the (soft, hard)
/// limits in force afterwards, or None when they cannot be read.
pub fn raise_nofile() -> Option<(u64, u64)> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some((hard, hard));
    }
    Some((soft, hard))
}

/// The warning to print when `sockets` simultaneous connections need more
/// descriptors than the limit leaves.
pub fn fd_warning(sockets: u64, soft: u64) -> Option<String> {
    let open = crate::proc::open_fds().unwrap_or(0);
    let available = soft.saturating_sub(open + FD_RESERVE);
    (sockets > available).then(|| {
        format!(
            "{sockets} simultaneous connections need more file descriptors than this process \
             can open (open-file limit {soft}, {open} open already); raise it with `ulimit -n` \
             (failures will be counted as fd_exhausted)"
        )
    })
}

/// The warning to print when more simultaneous connections are asked for than
/// there are ephemeral ports for one destination.
pub fn port_warning(sockets: u64) -> Option<String> {
    let (lo, hi) = crate::proc::local_port_range()?;
    let ports = hi.checked_sub(lo)? + 1;
    (sockets > ports).then(|| {
        format!(
            "{sockets} simultaneous connections are more than the {ports} ephemeral ports \
             (net.ipv4.ip_local_port_range); failures will be counted as addr_not_available"
        )
    })
}
