//! The TCP listen table (`/proc/net/tcp`, `tcp6`) and which processes hold a
//! listening socket (their `fd` links).
//!
//! Owns the parsing of those tables for one question: who listens where. Must
//! never connect to anything: a probe connection would cost a forking server a
//! child (and a leaky one a zombie). Describes this network namespace only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const TABLES: [&str; 2] = ["/proc/net/tcp", "/proc/net/tcp6"];

/// State `0A` in the tables: LISTEN.
const LISTEN: &str = "0A";

/// A listening TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// The address it is bound to (maybe unspecified: every address).
    pub addr: SocketAddr,
    pub inode: u64,
}

impl Listener {
    /// Whether a connection to `target` reaches this socket: the same port,
    /// and the same address, an unspecified one of the family, or (for a
    /// dual-stack `::` or a v4-mapped address) the IPv4 address.
    pub fn serves(&self, target: SocketAddr) -> bool {
        if self.addr.port() != target.port() {
            return false;
        }
        match (self.addr.ip(), target.ip()) {
            (a, t) if a == t => true,
            (IpAddr::V4(a), IpAddr::V4(_)) => a.is_unspecified(),
            (IpAddr::V6(a), IpAddr::V6(_)) => a.is_unspecified(),
            (IpAddr::V6(a), IpAddr::V4(t)) => a.is_unspecified() || a.to_ipv4_mapped() == Some(t),
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

/// The sockets listening on `port`, from both tables; None when neither table
/// can be read.
pub fn listeners(port: u16) -> Option<Vec<Listener>> {
    let mut readable = false;
    let mut found = Vec::new();
    for table in TABLES {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        readable = true;
        for line in text.lines().skip(1) {
            // Columns: sl local rem st tx:rx tr:when retrnsmt uid timeout inode.
            let cols: Vec<&str> = line.split_ascii_whitespace().collect();
            if cols.len() <= 9 || cols[3] != LISTEN {
                continue;
            }
            let (Some(addr), Ok(inode)) = (parse_addr(cols[1]), cols[9].parse::<u64>()) else {
                continue;
            };
            if addr.port() == port {
                found.push(Listener { addr, inode });
            }
        }
    }
    readable.then_some(found)
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): the kernel prints
/// each 32-bit word of the address in host byte order.
fn parse_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Whether a socket on this machine listens on `port`; None when the tables
/// cannot be read.
pub fn listening(port: u16) -> Option<bool> {
    listeners(port).map(|l| !l.is_empty())
}

/// Which of `pids` hold one of the sockets `inodes` (read from their fd
/// tables; a process that is gone or not ours to read holds nothing).
pub fn holders(inodes: &[u64], pids: &[i32]) -> Vec<i32> {
    if inodes.is_empty() {
        return Vec::new();
    }
    let links: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    pids.iter()
        .copied()
        .filter(|pid| {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                return false;
            };
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|t| links.iter().any(|l| t.as_os_str() == l.as_str()))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_addresses_parse_in_host_order() {
        assert_eq!(
            parse_addr("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_addr("00000000000000000000000001000000:0050"),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(
            parse_addr("0000000000000000FFFF00000100007F:0050"),
            Some("[::ffff:127.0.0.1]:80".parse().unwrap())
        );
        assert_eq!(parse_addr("zz:1"), None);
    }

    #[test]
    fn a_listener_serves_its_address_and_wildcards_serve_all() {
        let l = |a: &str| Listener {
            addr: a.parse().unwrap(),
            inode: 1,
        };
        let v4: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert!(l("127.0.0.1:80").serves(v4));
        assert!(l("0.0.0.0:80").serves(v4));
        assert!(l("[::]:80").serves(v4));
        assert!(l("[::ffff:127.0.0.1]:80").serves(v4));
        assert!(!l("127.0.0.2:80").serves(v4));
        assert!(!l("[::1]:80").serves(v4));
        assert!(!l("127.0.0.1:81").serves(v4));
        assert!(l("[::1]:80").serves("[::1]:80".parse().unwrap()));
        assert!(!l("0.0.0.0:80").serves("[::1]:80".parse().unwrap()));
    }
}
