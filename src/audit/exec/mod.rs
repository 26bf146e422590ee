//! `audit -- COMMAND`: run a command as a child subreaper, sample its tree
//! while it runs, and report what it left behind.
//!
//! Owns the run's sequence: start COMMAND in its own process group with this
//! process's stdin, stdout and stderr (its bytes never pass through us), reap
//! (COMMAND's status exactly, and every orphan re-parented to us), sample
//! every interval (`track`), forward stop signals to COMMAND's group, wait
//! `settle` for stragglers once it exits, take the report, then stop what is
//! left (`leftovers::stop_children`) unless asked to keep it. On a terminal
//! it hands COMMAND's group the terminal as a shell hands it to a job
//! (`terminal`), and says (through the caller's `notify`) when COMMAND is
//! stopped waiting for one it cannot give. Must never print (the report is
//! `cmd::audit`'s to render), never discard COMMAND's exit status, never wait
//! without a bound once COMMAND has exited or a stop was asked for, and never
//! leave a process of the run behind by default.

mod report;
mod terminal;
mod track;

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::sys::signal::{Signal as Sig, kill, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::{Pid, getpgid};

pub use report::{ExecReport, Exit, MAX_LISTED, ReapedOrphan, ZombieHolder};

use super::leftovers;
use crate::proc::ProcReader;
use crate::shutdown::Shutdown;
use terminal::Terminal;
use track::{Scan, Tracker};

/// A validated `audit -- COMMAND` run.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// COMMAND and its arguments (never empty), passed to exec as they are.
    pub argv: Vec<OsString>,
    /// Time between the starts of two samples of the tree (more than zero).
    pub interval: Duration,
    /// A zombie counts once it was seen defunct for this long.
    pub min_age: Duration,
    /// After COMMAND exits, how long its stragglers get to exit on their own.
    pub settle: Duration,
    pub max_zombies: u64,
    pub max_orphans: u64,
    /// Leave the orphans running instead of stopping them after the report.
    pub keep: bool,
    /// lsbaws's controlling terminal, when it has one: COMMAND's group gets
    /// it while it runs, whenever lsbaws's group is its foreground
    /// (`terminal`).
    pub terminal: Option<Arc<File>>,
}

/// How often the runner reaps and looks for COMMAND's exit between samples:
/// the delay before lsbaws notices that COMMAND ended, and the longest a
/// re-parented orphan stays our zombie.
const TICK: Duration = Duration::from_millis(10);

/// Sampling takes at most 1/SAMPLE_COST_RATIO of the run's time.
const SAMPLE_COST_RATIO: u32 = 10;

/// After a stop signal was forwarded, how long COMMAND gets to exit before
/// SIGKILL (a second stop signal skips it).
const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// After SIGKILL, how long COMMAND is waited for (a process in uninterruptible
/// sleep ignores even that).
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Grace between SIGTERM and SIGKILL for the leftovers, and the bound on
/// stopping all of them.
const LEFTOVER_GRACE: Duration = Duration::from_millis(200);
const CLEANUP_LIMIT: Duration = Duration::from_secs(10);

/// Runs COMMAND to the end and reports. Errors (exit 2) only when nothing ran:
/// /proc cannot be read, this process cannot become a subreaper, or COMMAND
/// cannot be started (the message names it). `notify` gets what a person
/// waiting for the run must know while it runs (COMMAND stopped, waiting for
/// a terminal lsbaws cannot give it), one line each.
pub fn run(
    config: &ExecConfig,
    shutdown: &Shutdown,
    notify: &mut dyn FnMut(&str),
) -> Result<ExecReport> {
    let started = Instant::now();
    let mut tracker = Tracker::new(config.min_age, started);
    // A /proc that cannot be read fails now, before COMMAND runs, not after
    // (a walk: our own tree is empty yet; the settle scans in full).
    tracker.sample(Scan::Walk)?;
    // Orphans of the run (daemons, children of a parent that exited) come to
    // us instead of init, so they are listed, reaped and stopped here.
    nix::sys::prctl::set_child_subreaper(true)
        .context("cannot become a child subreaper (prctl PR_SET_CHILD_SUBREAPER)")?;
    let (program, args) = config.argv.split_first().context("no command to run")?;
    let mut command = Command::new(program);
    // Its own process group, so that a stop signal and the clean-up reach
    // all of it, and SIGTERM if lsbaws itself is killed (a cancelled CI job).
    command.args(args).process_group(0);
    lsbaws_server::die_with_parent(&mut command, nix::libc::SIGTERM);
    // stdin, stdout and stderr as lsbaws got them: closed stays closed (not
    // the /dev/null Rust's runtime put there).
    lsbaws_server::stdio::keep_closed(&mut command);
    let child = command.spawn().with_context(|| {
        format!(
            "cannot start `{}`",
            crate::text::escape(&shown(&config.argv))
        )
    })?;
    // Waited for by pid below: std's Child neither reaps on drop nor is asked.
    let pid = child.id() as i32;
    drop(child);
    let mut run = Running::new(pid, config, notify);
    run.until_exit(config, shutdown, &mut tracker);
    // COMMAND is gone: the terminal is ours again (leftovers are no job).
    run.terminal = None;
    // A stop signal to lsbaws, or the terminal's own (Ctrl-C) that killed
    // COMMAND while it held the terminal: no verdict either way.
    let early = shutdown
        .interruption()
        .or(run.terminal_signal.map(crate::shutdown::Signal));
    if early.is_none() {
        // Cut short by a stop signal, which is read again below.
        run.settle(config, shutdown, &mut tracker);
    } else {
        run.reap(&mut tracker);
        run.note(tracker.sample(Scan::Full));
    }
    let mut report = run.report(config, &tracker, started);
    if !config.keep {
        // Done in full even after a stop signal (bounded by CLEANUP_LIMIT):
        // a stop must never leave the run's processes behind.
        report.unstopped = leftovers::stop_children(LEFTOVER_GRACE, CLEANUP_LIMIT, &[pid]);
    }
    report.elapsed_s = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    // A stop signal during the settle or the clean-up ends the run without a
    // verdict as surely as one while COMMAND ran (attack 4, F1).
    if let Some(signal) = early.or(shutdown.interruption()) {
        report.interrupted = true;
        report.signal = Some(signal);
    }
    Ok(report)
}

/// COMMAND, as it runs.
struct Running<'n> {
    pid: i32,
    /// Its exit status, once reaped.
    exit: Option<Exit>,
    procs: ProcReader,
    /// When a stop signal was forwarded to it, and when SIGKILL followed.
    forwarded: Option<Instant>,
    killed: Option<Instant>,
    /// The first sampling error: the counts are uncertain.
    error: Option<String>,
    /// The controlling terminal, handed to COMMAND's group while lsbaws's
    /// group is its foreground.
    terminal: Option<Terminal>,
    /// COMMAND was killed by SIGINT or SIGHUP while its group held the
    /// terminal: the terminal's Ctrl-C (or hang-up) reached COMMAND alone.
    terminal_signal: Option<i32>,
    /// A stopped process of COMMAND's group was reported (once a run).
    told_stopped_member: bool,
    /// COMMAND is no child of ours, yet was not reaped here.
    lost: bool,
    /// Where what a person must know while the run goes on is said.
    notify: &'n mut dyn FnMut(&str),
    /// COMMAND as people read it, for those messages.
    shown: String,
}

impl<'n> Running<'n> {
    fn new(pid: i32, config: &ExecConfig, notify: &'n mut dyn FnMut(&str)) -> Running<'n> {
        Running {
            pid,
            exit: None,
            procs: ProcReader::new(Path::new(crate::proc::ROOT)),
            forwarded: None,
            killed: None,
            error: None,
            terminal: config
                .terminal
                .clone()
                .map(|tty| Terminal::new(tty, Pid::from_raw(pid))),
            terminal_signal: None,
            told_stopped_member: false,
            lost: false,
            notify,
            shown: cut(shown(&config.argv)),
        }
    }

    /// Reaps every child that has exited: COMMAND's status is kept, the
    /// others are noted as reaped orphans.
    fn reap(&mut self, tracker: &mut Tracker) {
        let pid = self.pid;
        let mut exit = None;
        leftovers::reap_each(&mut self.procs, |r| {
            if r.pid == pid {
                exit = Some(r.status);
            } else {
                tracker.reaped(&r);
            }
        });
        if let Some(status) = exit {
            self.exited(status);
        } else if self.exit.is_none()
            && waitid(Id::Pid(Pid::from_raw(pid)), peek()) == Err(Errno::ECHILD)
        {
            // Not our child any more, yet never reaped here: its status is
            // lost (only this thread reaps, so this cannot happen). End the
            // run rather than wait for it forever; no status is no verdict.
            self.lost = true;
        }
        // COMMAND's stops: job control to act on once its group had the
        // terminal, else said (a stopped COMMAND must not be a silent hang).
        if self.exit.is_none() {
            let untraced = WaitPidFlag::WUNTRACED | WaitPidFlag::WNOHANG;
            match waitpid(Pid::from_raw(pid), Some(untraced)) {
                Ok(WaitStatus::Stopped(_, signal)) => self.stopped(signal),
                Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    self.exited(status);
                }
                _ => {}
            }
        }
    }

    /// COMMAND ended with `status`. Killed by SIGINT or SIGHUP while its
    /// group held the terminal, it got the terminal's Ctrl-C (or hang-up),
    /// which with the terminal handed over reaches COMMAND's group and not
    /// lsbaws's: as a shell does (wait and cooperative exit), lsbaws takes
    /// that as its own interruption. A COMMAND that handles Ctrl-C and exits
    /// by itself has decided what it means (a server that ends on Ctrl-C
    /// with exit 0): its status and the verdict stand.
    fn exited(&mut self, status: WaitStatus) {
        let exit = exit_of(status);
        let by_terminal = matches!(exit.signal, Some(nix::libc::SIGINT | nix::libc::SIGHUP));
        if by_terminal && self.terminal.as_ref().is_some_and(Terminal::commands) {
            self.terminal_signal = exit.signal;
        }
        self.exit = Some(exit);
    }

    /// COMMAND stopped on `signal`.
    fn stopped(&mut self, signal: Sig) {
        if let Some(terminal) = self.terminal.as_mut().filter(|t| t.handed()) {
            terminal.stopped(signal);
            return;
        }
        let why = if matches!(signal, Sig::SIGTTIN | Sig::SIGTTOU) {
            "it wants the terminal, and lsbaws runs in the background (bring lsbaws to the foreground with `fg` to give it the terminal, or give the command an input other than the terminal)"
        } else {
            "lsbaws waits until it is continued (SIGCONT)"
        };
        let message = format!(
            "`{}` (pid {}) is stopped by {}: {why}; a stop signal to lsbaws ends the run",
            self.shown,
            self.pid,
            signal.as_str()
        );
        (self.notify)(&message);
    }

    /// Says once when a sample finds a process of COMMAND's group stopped
    /// while the group does not hold the terminal: it may wait for it.
    fn check_stopped_members(&mut self, tracker: &Tracker) {
        if self.told_stopped_member || self.terminal.as_ref().is_none_or(Terminal::commands) {
            return;
        }
        if let Some((pid, comm)) = tracker.stopped_in_group(self.pid) {
            self.told_stopped_member = true;
            let message = format!(
                "pid {pid} ({}) of `{}` is stopped: a process of its group that touches the terminal while lsbaws runs in the background stops, as a background job's does (bring lsbaws to the foreground with `fg` to give it the terminal); a stop signal to lsbaws ends the run",
                comm, self.shown
            );
            (self.notify)(&message);
        }
    }

    fn note(&mut self, sampled: Result<()>) {
        if let Err(e) = sampled {
            self.error
                .get_or_insert_with(|| format!("the counts are uncertain: {e:#}"));
        }
    }

    /// Reaps and samples until COMMAND has exited, or (after a stop signal)
    /// until it could not be made to.
    fn until_exit(&mut self, config: &ExecConfig, shutdown: &Shutdown, tracker: &mut Tracker) {
        let mut next_sample = Instant::now();
        let mut tick = Duration::from_millis(1);
        loop {
            if let Some(terminal) = self.terminal.as_mut() {
                terminal.follow();
            }
            self.reap(tracker);
            if self.exit.is_some() || self.lost {
                return;
            }
            let now = Instant::now();
            if let Some(signal) = shutdown.signal()
                && !self.stop(signal, shutdown.urgent(), now)
            {
                return; // unkillable: reported without its status
            }
            if now >= next_sample {
                let sampled = tracker.sample(Scan::Walk);
                self.note(sampled);
                self.check_stopped_members(tracker);
                let took = now.elapsed();
                // Due at fixed steps; a slow scan skips steps, never bunches
                // them, and a costly one (a tree of thousands) spaces the
                // next out, so sampling takes at most 1/SAMPLE_COST_RATIO of
                // the time. Zombie times stay lower bounds, only coarser.
                next_sample += config.interval;
                let after = Instant::now();
                if next_sample < after {
                    next_sample = after + config.interval;
                }
                next_sample = next_sample.max(after + took * (SAMPLE_COST_RATIO - 1));
            }
            let wait = next_sample
                .saturating_duration_since(Instant::now())
                .min(tick);
            pause(shutdown, wait);
            // 1 ms, 2 ms, ... up to TICK: a short COMMAND is noticed at once,
            // a long one costs 100 wake-ups a second.
            tick = (tick * 2).min(TICK);
        }
    }

    /// Forwards a stop signal to COMMAND's group once, then SIGKILL to COMMAND
    /// after the grace (at once on a second stop request). Returns false when COMMAND
    /// outlived even SIGKILL's bound.
    fn stop(&mut self, signal: i32, urgent: bool, now: Instant) -> bool {
        let forwarded = match self.forwarded {
            Some(at) => at,
            None => {
                self.signal(Sig::try_from(signal).unwrap_or(Sig::SIGTERM));
                // A stopped process acts on it only once continued.
                self.signal(Sig::SIGCONT);
                *self.forwarded.insert(now)
            }
        };
        if self.killed.is_none() && (urgent || now >= forwarded + INTERRUPT_GRACE) {
            // COMMAND alone: what else survived the stop signal is listed as
            // left running by the report, then stopped by the clean-up.
            let _ = kill(Pid::from_raw(self.pid), Sig::SIGKILL);
            self.killed = Some(now);
        }
        self.killed.is_none_or(|k| now < k + KILL_WAIT)
    }

    /// Sends `signal` to COMMAND's process group, and to COMMAND itself when
    /// it left that group. COMMAND is not reaped yet, so its pid (the group's
    /// id) cannot name another process or group.
    fn signal(&self, signal: Sig) {
        let pid = Pid::from_raw(self.pid);
        let _ = killpg(pid, signal);
        if getpgid(Some(pid)).is_ok_and(|g| g != pid) {
            let _ = kill(pid, signal);
        }
    }

    /// After COMMAND's exit: reap and sample until the run has no process
    /// left, `settle` has passed, or a stop is asked for. A walk that finds
    /// the run empty is exact (see `Tracker::walk`); the sample a report of
    /// leftovers rests on is a full scan.
    fn settle(&mut self, config: &ExecConfig, shutdown: &Shutdown, tracker: &mut Tracker) {
        let deadline = Instant::now() + config.settle;
        loop {
            self.reap(tracker);
            let last = Instant::now() >= deadline || shutdown.requested();
            let sampled = tracker.sample(if last { Scan::Full } else { Scan::Walk });
            self.note(sampled);
            if last || tracker.empty() {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            pause(shutdown, config.interval.min(left));
        }
    }

    fn report(&self, config: &ExecConfig, tracker: &Tracker, started: Instant) -> ExecReport {
        let (zombies, zombie_count) = tracker.zombies();
        let (reaped, reaped_count) = tracker.reaped_orphans();
        ExecReport {
            command: config
                .argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            pid: self.pid,
            exit: self.exit,
            elapsed_s: started.elapsed().as_secs_f64(),
            orphans: tracker.orphans(),
            zombies,
            zombie_count,
            reaped,
            reaped_count,
            samples: tracker.samples,
            interval_s: config.interval.as_secs_f64(),
            sampling_s: (tracker.sampling.as_secs_f64() * 1e4).round() / 1e4,
            min_age_s: config.min_age.as_secs_f64(),
            settle_s: config.settle.as_secs_f64(),
            max_zombies: config.max_zombies,
            max_orphans: config.max_orphans,
            kept: config.keep,
            unstopped: Vec::new(),
            error: self
                .lost
                .then(|| "the command's exit status was lost".to_string())
                .or_else(|| self.error.clone()),
            interrupted: false,
            signal: None,
        }
    }
}

/// Sleeps `d`, waking early on a first stop request (after one, sleeps
/// plainly: the runner has already seen it).
fn pause(shutdown: &Shutdown, d: Duration) {
    if shutdown.requested() {
        std::thread::sleep(d);
    } else {
        shutdown.sleep(d);
    }
}

fn exit_of(status: WaitStatus) -> Exit {
    match status {
        WaitStatus::Exited(_, code) => Exit {
            code: Some(code),
            signal: None,
        },
        WaitStatus::Signaled(_, sig, _) => Exit {
            code: None,
            signal: Some(sig as i32),
        },
        _ => Exit {
            code: None,
            signal: None,
        },
    }
}

/// Flags that ask whether a child has exited without reaping it.
fn peek() -> WaitPidFlag {
    WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT
}

/// `exit status 0`, `killed by SIGTERM`.
fn describe(status: WaitStatus) -> String {
    exit_of(status).describe()
}

/// Longest command line in a message while the run goes on (`python3 -c
/// '<a whole script>'` would bury the message).
const SHOWN_IN_MESSAGES: usize = 60;

fn cut(s: String) -> String {
    if s.chars().count() <= SHOWN_IN_MESSAGES {
        return s;
    }
    s.chars().take(SHOWN_IN_MESSAGES - 1).collect::<String>() + "…"
}

/// The command line as people read it: arguments joined by spaces, those
/// with spaces or quotes in single quotes.
pub fn shown(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| {
            let a = a.to_string_lossy();
            if !a.is_empty() && !a.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c)) {
                a.into_owned()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
