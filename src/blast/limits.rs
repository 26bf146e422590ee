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
/// there are ephemeral ports for one destination: the range's size, times the
/// `--source` addresses when there are some (each has the whole range).
pub fn port_warning(sockets: u64, sources: usize) -> Option<String> {
    let (lo, hi) = crate::proc::local_port_range()?;
    let ports = hi.checked_sub(lo)? + 1;
    port_message(sockets, ports, sources)
}

fn port_message(sockets: u64, ports: u64, sources: usize) -> Option<String> {
    let n = u64::try_from(sources.max(1)).unwrap_or(u64::MAX);
    let all = ports.saturating_mul(n);
    let what = match sources {
        0 => format!("the {ports} ephemeral ports (net.ipv4.ip_local_port_range)"),
        _ => format!(
            "the {all} ephemeral ports of {} (net.ipv4.ip_local_port_range × --source)",
            crate::text::count(n, "source address", "source addresses")
        ),
    };
    (sockets > all).then(|| {
        format!(
            "{sockets} simultaneous connections are more than {what}; failures will be \
             counted as addr_not_available (add --source addresses)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_exhaustion_is_predicted_per_source() {
        assert_eq!(port_message(28_232, 28_232, 0), None);
        let one = port_message(36_000, 28_232, 0).expect("too many");
        assert!(
            one.starts_with("36000 simultaneous connections are more than the 28232 ephemeral"),
            "{one}"
        );
        assert_eq!(port_message(36_000, 28_232, 2), None);
        let two = port_message(60_000, 28_232, 2).expect("too many for two");
        assert!(
            two.contains("56464 ephemeral ports of 2 source addresses"),
            "{two}"
        );
    }
}
