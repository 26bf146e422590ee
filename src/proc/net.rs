//! The TCP listen table (`/proc/net/tcp`, `tcp6`) and which processes hold a
//! listening socket (their `fd` links).
//!
//! Owns the parsing of those tables for one question: who listens on a port.
//! Must never connect to anything: a probe connection would cost a forking
//! server a child (and a leaky one a zombie). Describes this network namespace
//! only.

const TABLES: [&str; 2] = ["/proc/net/tcp", "/proc/net/tcp6"];

/// State `0A` in the tables: LISTEN.
const LISTEN: &str = "0A";

/// The inodes of sockets listening on `port`, or None when neither table can
/// be read.
fn listen_inodes(port: u16) -> Option<Vec<String>> {
    let want = format!(":{port:04X}");
    let mut readable = false;
    let mut inodes = Vec::new();
    for table in TABLES {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        readable = true;
        for line in text.lines().skip(1) {
            // Columns: sl local rem st tx:rx tr:when retrnsmt uid timeout inode.
            let cols: Vec<&str> = line.split_ascii_whitespace().collect();
            if cols.len() > 9 && cols[3] == LISTEN && cols[1].ends_with(&want) {
                inodes.push(cols[9].to_string());
            }
        }
    }
    readable.then_some(inodes)
}

/// Whether a socket on this machine listens on `port`; None when the tables
/// cannot be read.
pub fn listening(port: u16) -> Option<bool> {
    listen_inodes(port).map(|inodes| !inodes.is_empty())
}

/// Pids of the processes holding a socket that listens on `port` (every
/// process's fd table is read). Empty when unknown.
pub fn listener_owners(port: u16) -> Vec<i32> {
    let Some(inodes) = listen_inodes(port).filter(|i| !i.is_empty()) else {
        return Vec::new();
    };
    let links: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let mut owners = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return owners;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue; // gone, or not ours to read
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|t| links.iter().any(|l| t.as_os_str() == l.as_str()))
        });
        if holds {
            owners.push(pid);
        }
    }
    owners
}
