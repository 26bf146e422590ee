//! The controlling terminal of an interactive `audit -- COMMAND`: handed to
//! COMMAND's process group while it runs, taken back before the report.
//!
//! COMMAND runs in its own process group, which on a terminal makes it a
//! background job: reading the terminal, or changing its modes (a pager, a
//! REPL), would stop it with SIGTTIN/SIGTTOU and lsbaws would wait forever.
//! So, as a shell does for a job, its group is made the terminal's foreground
//! group; Ctrl-C and Ctrl-Z then reach it as if it ran alone. Owns only that
//! exchange; used only when the caller (`cmd::audit`) found lsbaws in the
//! terminal's foreground. Must never leave the terminal with a group that is
//! gone.

use std::io::stdin;
use std::os::fd::AsFd;

use nix::sys::signal::{SigSet, Signal, kill, killpg};
use nix::unistd::{Pid, getpgrp, getpid, tcgetpgrp, tcsetpgrp};

/// The terminal on stdin, held for COMMAND's group; given back on drop.
pub struct Terminal {
    ours: Pid,
    group: Pid,
}

impl Terminal {
    /// Gives the terminal to `group` and continues it, in case COMMAND read
    /// the terminal before it was its own and stopped (SIGTTIN).
    pub fn give_to(group: Pid) -> Terminal {
        let terminal = Terminal {
            ours: getpgrp(),
            group,
        };
        set_foreground(group);
        let _ = killpg(group, Signal::SIGCONT);
        terminal
    }

    /// Whether the terminal's foreground group is `group`.
    fn held_by(group: Pid) -> bool {
        tcgetpgrp(stdin().as_fd()) == Ok(group)
    }

    /// COMMAND stopped on `signal`. A stop for touching the terminal before
    /// it was COMMAND's is just continued. Any other stop (Ctrl-Z, SIGSTOP,
    /// or reading the terminal while lsbaws itself was put in the background)
    /// stops the whole job, as a shell's job stops: the terminal goes back to
    /// our group, lsbaws stops, and when continued gives the terminal back
    /// (only when continued in the foreground: `fg`, not `bg`) and continues
    /// COMMAND.
    pub fn stopped(&self, signal: Signal) {
        let has_it = Self::held_by(self.group);
        if !(has_it && matches!(signal, Signal::SIGTTIN | Signal::SIGTTOU)) {
            if has_it {
                set_foreground(self.ours);
            }
            // SIGSTOP, not SIGTSTP: the kernel drops SIGTSTP sent to an
            // orphaned process group (lsbaws as a session leader).
            let _ = kill(getpid(), Signal::SIGSTOP);
            if Self::held_by(self.ours) {
                set_foreground(self.group);
            }
        }
        let _ = killpg(self.group, Signal::SIGCONT);
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // Only from COMMAND's group: when lsbaws runs in the background the
        // terminal is the shell's, and taking it would steal it.
        if Self::held_by(self.group) {
            set_foreground(self.ours);
        }
    }
}

/// tcsetpgrp on stdin with SIGTTOU blocked: from a background group the call
/// would otherwise stop this process.
fn set_foreground(group: Pid) {
    let ttou = SigSet::from(Signal::SIGTTOU);
    let Ok(old) = SigSet::thread_get_mask() else {
        return;
    };
    if ttou.thread_block().is_ok() {
        let _ = tcsetpgrp(stdin().as_fd(), group);
        let _ = old.thread_set_mask();
    }
}
