//! New client sockets, and the local source addresses they may come from
//! (`--source`): reading addresses, CIDRs and ranges, checking that each is
//! local, making each new socket on the next one.
//!
//! Owns socket creation (one `socket()` call, no options: [`socket_for`]),
//! the round-robin over the sources, and the bind that leaves the port to
//! connect (IP_BIND_ADDRESS_NO_PORT, so each source has a whole port range per
//! destination instead of one shared by all). Must never add a system call to
//! a connection when no source is given, nor accept an address this host does
//! not own: connects from it would fail one by one instead of the run failing
//! once.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail, ensure};
use nix::sys::socket::{
    AddressFamily, SockFlag, SockProtocol, SockType, SockaddrStorage, bind, setsockopt, socket,
    sockopt::IpBindAddressNoPort,
};

/// A new TCP socket, not yet connected: non-blocking, close-on-exec, no
/// options set (the exchange writes one small request, so Nagle and linger do
/// not matter, and each setsockopt would be one more syscall per connection).
/// Held as a std `TcpStream` until `conn` connects it.
pub fn socket_for(addr: SocketAddr) -> io::Result<TcpStream> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::Tcp,
    )?;
    Ok(TcpStream::from(fd))
}

/// Upper bound on the addresses all `--source` flags name together: each is
/// checked with a bind before the run, and 4096 addresses hold 100 million
/// ports' worth of connections to one destination.
pub const MAX_SOURCES: usize = 4096;

/// Reads the `--source` values (an address, `a.b.c.d/n`, or `first-last`,
/// IPv4 or IPv6) into a list without repeats, in order, each checked to be an
/// address of this host and of `family`'s family.
pub fn parse_all(specs: &[String], target: SocketAddr) -> anyhow::Result<Vec<IpAddr>> {
    let mut out: Vec<IpAddr> = Vec::new();
    for spec in specs {
        for addr in parse(spec)? {
            if !out.contains(&addr) {
                out.push(addr);
            }
            ensure!(
                out.len() <= MAX_SOURCES,
                "--source: more than {MAX_SOURCES} addresses in all"
            );
        }
    }
    for addr in &out {
        ensure!(
            addr.is_ipv4() == target.is_ipv4(),
            "--source {addr}: not of the target's address family ({})",
            target.ip()
        );
        check_local(*addr)?;
    }
    Ok(out)
}

/// One `--source` value into its addresses.
fn parse(spec: &str) -> anyhow::Result<Vec<IpAddr>> {
    let spec = spec.trim();
    let ip = |s: &str| -> anyhow::Result<IpAddr> {
        s.trim()
            .parse::<IpAddr>()
            .with_context(|| format!("--source {spec:?}: {s:?} is not an IP address"))
    };
    let (first, last) = if let Some((base, prefix)) = spec.split_once('/') {
        let base = ip(base)?;
        let bits: u32 = if base.is_ipv4() { 32 } else { 128 };
        let prefix: u32 = prefix
            .trim()
            .parse()
            .ok()
            .filter(|p| *p <= bits)
            .with_context(|| format!("--source {spec:?}: bad prefix length"))?;
        let host_bits = bits - prefix;
        let mask = if host_bits >= 128 {
            0
        } else {
            !((1u128 << host_bits) - 1)
        };
        let net = to_u128(base) & mask;
        let top = net | !mask & max_of(base);
        // An IPv4 network's first and last addresses name the network and
        // its broadcast; no host owns them (/31 and /32 have no such pair).
        if base.is_ipv4() && host_bits >= 2 {
            (net + 1, top - 1)
        } else {
            (net, top)
        }
    } else if let Some((a, b)) = spec.split_once('-') {
        let (a, b) = (ip(a)?, ip(b)?);
        ensure!(
            a.is_ipv4() == b.is_ipv4(),
            "--source {spec:?}: the two ends are of different families"
        );
        ensure!(
            to_u128(a) <= to_u128(b),
            "--source {spec:?}: the range runs backwards"
        );
        (to_u128(a), to_u128(b))
    } else {
        let a = ip(spec)?;
        (to_u128(a), to_u128(a))
    };
    let v4 = !spec.contains(':');
    let count = (last - first).saturating_add(1);
    ensure!(
        count <= MAX_SOURCES as u128,
        "--source {spec:?}: {count} addresses, more than {MAX_SOURCES}"
    );
    Ok((first..=last).map(|n| from_u128(n, v4)).collect())
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn max_of(ip: IpAddr) -> u128 {
    if ip.is_ipv4() {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    }
}

fn from_u128(n: u128, v4: bool) -> IpAddr {
    if v4 {
        // Within u32 by construction (a v4 base and mask).
        IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(u32::MAX)))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

/// Whether this host owns `addr`: a bind to it, which with
/// IP_BIND_ADDRESS_NO_PORT takes no port, succeeds.
fn check_local(addr: IpAddr) -> anyhow::Result<()> {
    // A wildcard binds to every address, so the kernel picks the source and
    // its ports as without --source: counting it as one would hide the
    // port-exhaustion warning.
    if addr.is_unspecified() || addr.is_multicast() || addr == IpAddr::V4(Ipv4Addr::BROADCAST) {
        bail!(
            "--source {addr} is not one address of this host (a wildcard, multicast or broadcast address)"
        );
    }
    let sock = bound_socket(addr);
    match sock {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EADDRNOTAVAIL as i32) => {
            bail!("--source {addr} is not an address of this host")
        }
        Err(e) => bail!("--source {addr}: cannot bind to it: {e}"),
    }
}

/// A new TCP socket bound to `source` with its port left to connect.
fn bound_socket(source: IpAddr) -> io::Result<TcpStream> {
    let addr = SocketAddr::new(source, 0);
    let sock = socket_for(addr)?;
    setsockopt(&sock, IpBindAddressNoPort, &true)?;
    bind(sock.as_raw_fd(), &SockaddrStorage::from(addr))?;
    Ok(sock)
}

/// The sources of a run and whose turn is next (shared by every client).
#[derive(Debug, Default)]
pub struct Sources {
    addrs: Vec<IpAddr>,
    next: AtomicUsize,
}

impl Sources {
    pub fn new(addrs: Vec<IpAddr>) -> Sources {
        Sources {
            addrs,
            next: AtomicUsize::new(0),
        }
    }

    /// A new socket for `addr`: on the next source in turn when there are
    /// some, else [`socket_for`]'s.
    pub fn socket(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        if self.addrs.is_empty() {
            return socket_for(addr);
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let Some(source) = self.addrs.get(turn % self.addrs.len().max(1)) else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        bound_socket(*source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(spec: &str) -> Vec<String> {
        parse(spec)
            .expect(spec)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn addresses_cidrs_and_ranges() {
        assert_eq!(ips("127.0.0.2"), ["127.0.0.2"]);
        assert_eq!(ips("127.0.0.2/30"), ["127.0.0.1", "127.0.0.2"]);
        assert_eq!(ips("127.0.0.2/31"), ["127.0.0.2", "127.0.0.3"]);
        assert_eq!(ips("127.0.0.9/32"), ["127.0.0.9"]);
        assert_eq!(
            ips("127.0.0.2-127.0.0.5"),
            ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
        );
        assert_eq!(ips("127.0.0.255-127.0.1.0"), ["127.0.0.255", "127.0.1.0"]);
        assert_eq!(ips("::1"), ["::1"]);
        assert_eq!(ips("fd00::1/127"), ["fd00::", "fd00::1"]);
        for bad in [
            "127.0.0.5-127.0.0.2",
            "127.0.0.1/33",
            "127.0.0.1/x",
            "127.0.0.1-::1",
            "10.0.0.0/8",
            "localhost",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_local_addresses_of_the_target_family_pass() {
        let v4: SocketAddr = "127.0.0.1:80".parse().expect("addr");
        let ok = parse_all(&["127.0.0.2-127.0.0.3".into(), "127.0.0.2".into()], v4);
        assert_eq!(ok.expect("loopback is local").len(), 2, "no repeats");
        // TEST-NET-3 (RFC 5737) is never assigned to a host.
        let err = parse_all(&["203.0.113.7".into()], v4).expect_err("not local");
        assert_eq!(
            format!("{err:#}"),
            "--source 203.0.113.7 is not an address of this host"
        );
        assert!(parse_all(&["::1".into()], v4).is_err(), "family");
    }
}
