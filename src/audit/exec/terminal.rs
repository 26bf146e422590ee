//! The controlling terminal of an interactive `audit -- COMMAND`: handed to
//! COMMAND's process group while lsbaws is in its foreground, taken back
//! before the report.
//!
//! COMMAND runs in its own process group, which on a terminal makes it a
//! background job: reading the terminal, or changing its modes (a pager, a
//! REPL, a password prompt that opens /dev/tty while stdin is a file), would
//! stop it with SIGTTIN/SIGTTOU and lsbaws would wait forever. So, as a shell
//! does for a job, its group is made the terminal's foreground group whenever
//! lsbaws's own group is (at the start, or later when lsbaws is brought to
//! the foreground with `fg`); Ctrl-C and Ctrl-Z then reach it as if it ran
//! alone. Owns only that exchange, on the terminal `cmd::audit` opened (the
//! controlling terminal, whatever stdin is). Must never take the terminal
//! from a group that is not COMMAND's, and never leave it with a group that
//! is gone.

use std::fs::File;
use std::os::fd::AsFd;
use std::sync::Arc;

use nix::sys::signal::{SigSet, Signal, kill, killpg};
use nix::unistd::{Pid, getpgrp, getpid, tcgetpgrp, tcsetpgrp};

/// The controlling terminal and COMMAND's group; the terminal goes back to
/// lsbaws's group on drop when COMMAND's group holds it.
pub struct Terminal {
    tty: Arc<File>,
    ours: Pid,
    group: Pid,
    /// COMMAND's group was given the terminal at least once: job control is
    /// in effect (a shell put lsbaws in the foreground), so a stop of
    /// COMMAND is a stop of the whole job.
    handed: bool,
}

impl Terminal {
    /// The terminal `tty`, to be handed to `group` (see [`Self::follow`]).
    pub fn new(tty: Arc<File>, group: Pid) -> Terminal {
        Terminal {
            tty,
            ours: getpgrp(),
            group,
            handed: false,
        }
    }

    /// Whether the terminal's foreground group is `group`.
    fn held_by(&self, group: Pid) -> bool {
        tcgetpgrp(self.tty.as_fd()) == Ok(group)
    }

    /// Whether COMMAND's group holds the terminal now.
    pub fn commands(&self) -> bool {
        self.held_by(self.group)
    }

    /// Whether COMMAND's group was ever given the terminal.
    pub fn handed(&self) -> bool {
        self.handed
    }

    /// When lsbaws's group is the terminal's foreground (at the start, or
    /// brought there by `fg`), gives the terminal to COMMAND's group and
    /// continues it, in case it touched the terminal from the background and
    /// stopped (SIGTTIN/SIGTTOU). Cheap (one ioctl): called every tick.
    pub fn follow(&mut self) {
        if self.held_by(self.ours) {
            set_foreground(&self.tty, self.group);
            let _ = killpg(self.group, Signal::SIGCONT);
            self.handed = true;
        }
    }

    /// COMMAND stopped on `signal` after its group was handed the terminal.
    /// A stop for touching the terminal before it was COMMAND's is just
    /// continued. Any other stop (Ctrl-Z, SIGSTOP, or reading the terminal
    /// while lsbaws itself was put in the background) stops the whole job,
    /// as a shell's job stops: the terminal goes back to our group, lsbaws
    /// stops, and when continued gives the terminal back (only when
    /// continued in the foreground: `fg`, not `bg`) and continues COMMAND.
    pub fn stopped(&mut self, signal: Signal) {
        let has_it = self.commands();
        if !(has_it && matches!(signal, Signal::SIGTTIN | Signal::SIGTTOU)) {
            if has_it {
                set_foreground(&self.tty, self.ours);
            }
            // SIGSTOP, not SIGTSTP: the kernel drops SIGTSTP sent to an
            // orphaned process group (lsbaws as a session leader).
            let _ = kill(getpid(), Signal::SIGSTOP);
            if self.held_by(self.ours) {
                set_foreground(&self.tty, self.group);
            }
        }
        let _ = killpg(self.group, Signal::SIGCONT);
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // Only from COMMAND's group: when lsbaws runs in the background the
        // terminal is the shell's, and taking it would steal it.
        if self.commands() {
            set_foreground(&self.tty, self.ours);
        }
    }
}

/// tcsetpgrp with SIGTTOU blocked: from a background group the call would
/// otherwise stop this process.
fn set_foreground(tty: &File, group: Pid) {
    let ttou = SigSet::from(Signal::SIGTTOU);
    let Ok(old) = SigSet::thread_get_mask() else {
        return;
    };
    if ttou.thread_block().is_ok() {
        let _ = tcsetpgrp(tty.as_fd(), group);
        let _ = old.thread_set_mask();
    }
}
