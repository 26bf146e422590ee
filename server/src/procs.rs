//! This process's own children as /proc shows them.
//!
//! Owns the shutdown's view of which children exist and which are zombies, for
//! modes whose counters cannot tell (`ignore`: the kernel reaps; `none`/`once`:
//! zombies are never or not always reaped). Never used per connection, except in
//! `ignore` mode at the `--max-children` cap. Must never reap or signal.

use std::fs;

/// One child: its pid and whether it is defunct.
#[derive(Debug, Clone, Copy)]
pub struct Child {
    pub pid: libc::pid_t,
    pub zombie: bool,
}

/// Lists this process's children. The server is single-threaded, so the main
/// thread's `children` file holds them all. The file can miss a child that is
/// exiting at that instant; callers re-list until their condition holds.
pub fn children() -> Vec<Child> {
    let pid = std::process::id();
    let Ok(list) = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) else {
        return Vec::new();
    };
    list.split_ascii_whitespace()
        .filter_map(|p| p.parse::<libc::pid_t>().ok())
        .filter_map(|pid| {
            // A child that vanished between the two reads has been reaped.
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The state follows the last ')' (comm may contain parentheses).
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            Some(Child {
                pid,
                zombie: state == 'Z',
            })
        })
        .collect()
}
