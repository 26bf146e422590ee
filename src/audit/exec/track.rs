//! The samples of `audit -- COMMAND`: which processes are the run's, which of
//! them are zombies and for how long, and who started whom.
//!
//! Owns membership across samples and the zombie bookkeeping. A sample reads
//! the run's own tree with the audit's two scans: most walk it (every known
//! member's `stat`, then the `children` files from us down: cost in
//! proportion to the run, not to the machine); the settle's and the
//! report's read every process (`ProcReader::scan`, then `proc::walk`),
//! and so does a safety-net scan at most once a second and within 1 % of the
//! time. Must never print, signal or reap (the runner
//! does), and never let a scan's inconsistency hide a process that stays.
//!
//! Why a zombie that stays is not lost to a list read mid-change: once seen,
//! a process is a member, and every sample reads a member's own `stat` (a
//! file that exists until it is reaped), whatever the `children` files said;
//! nothing leaves a subreaper's tree but by exiting. A `children` read that
//! races with a reap can skip an entry, so a new process can be found one
//! sample late (or at the next full scan). A full scan lists /proc in pid
//! order, so a process that exists for the whole scan is always read; its
//! parent links are read at different instants, so a zombie whose parent
//! exited and was reaped mid-scan could lose its path from us: members lead
//! the walk even when absent from the scan, and re-parenting (at the parent's
//! exit) makes it our child by the next sample.
//!
//! Limits: a zombie that lasts less than one interval may not be seen at all;
//! one that is seen is timed from the end of the first scan that saw it to the
//! start of the last, which is at most two intervals (and two scans) short of
//! its real time, never longer. That is what `--min-age` means here: a zombie
//! counts once it was seen defunct for at least that long. On a starved
//! machine samples come late (a 2 s gap at load 50 on 2 cores was seen), and
//! the runner spaces samples out when a tree of thousands makes them costly
//! (sampling stays within a tenth of the time): a zombie held little longer
//! than `--min-age` can then go uncounted, never a brief one counted.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::report::{MAX_LISTED, ReapedOrphan, ZombieHolder};
use crate::audit::leftovers::{Leftover, Origin, Reaped};
use crate::proc::{ProcReader, ProcStat};

/// Distinct zombie command names kept per parent.
const MAX_COMMS: usize = 5;

/// A process of the run, as remembered between samples.
struct Member {
    starttime: u64,
    comm: String,
    /// Read once when first seen alive, again when its comm changes (exec).
    cmdline: Option<String>,
    /// Its parent when first seen, unless that was this process.
    started_by: Option<Origin>,
}

/// A zombie being timed.
struct Seen {
    /// The end of the first scan that saw it defunct.
    first: Instant,
    counted: bool,
}

/// A parent that held zombies beyond the minimum age.
struct Holder {
    report: ZombieHolder,
    longest: Duration,
}

/// Everything the samples have learned.
pub struct Tracker {
    me: i32,
    min_age: Duration,
    started: Instant,
    procs: ProcReader,
    ticks: f64,
    members: HashMap<i32, Member>,
    /// Zombies seen in the last sample, by (pid, start time).
    zombies: HashMap<(i32, u64), Seen>,
    /// By (pid, start time) of the parent.
    holders: HashMap<(i32, u64), Holder>,
    zombie_count: u64,
    /// The run's processes in the last sample, and the uptime it was read at.
    last: Vec<ProcStat>,
    last_uptime: f64,
    reaped: Vec<ReapedOrphan>,
    reaped_count: u64,
    pub samples: u64,
    /// Time spent sampling, in all.
    pub sampling: Duration,
    /// When the next sample scans every process on the machine.
    next_full: Instant,
    /// The last sample failed.
    stale: bool,
}

/// How a sample finds the run's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Walk the run's own tree; a full scan when the safety net is due.
    Walk,
    /// Read every process on the machine: the sample a report of leftovers
    /// rests on (the settle's last, and the one after a stop signal).
    Full,
}

/// The safety-net full scan runs at most this often, and never costs more
/// than 1/FULL_COST_RATIO of the time (on a machine with thousands of
/// processes one full scan can take 100 ms and more).
const FULL_PERIOD: Duration = Duration::from_secs(1);
const FULL_COST_RATIO: u32 = 100;

impl Tracker {
    /// A tracker of this process's descendants from `started` on.
    pub fn new(min_age: Duration, started: Instant) -> Tracker {
        Tracker {
            me: std::process::id() as i32,
            min_age,
            started,
            procs: ProcReader::new(Path::new(crate::proc::ROOT)),
            ticks: crate::proc::ticks_per_second() as f64,
            members: HashMap::new(),
            zombies: HashMap::new(),
            holders: HashMap::new(),
            zombie_count: 0,
            last: Vec::new(),
            last_uptime: 0.0,
            reaped: Vec::new(),
            reaped_count: 0,
            samples: 0,
            sampling: Duration::ZERO,
            next_full: started + FULL_PERIOD,
            stale: false,
        }
    }

    /// Takes one sample: a walk of the run's tree, or a full scan when `scan`
    /// asks for one or the safety net is due. An error leaves what earlier
    /// samples learned as it was.
    pub fn sample(&mut self, scan: Scan) -> Result<()> {
        let began = Instant::now();
        let full = scan == Scan::Full || began >= self.next_full;
        let result = self.sample_now(began, full);
        // A failed sample leaves the last list stale: no orphan is named from
        // it (the error, which makes the verdict exit 2, says why).
        self.stale = result.is_err();
        let took = began.elapsed();
        self.sampling += took;
        if full {
            self.next_full = Instant::now() + FULL_PERIOD.max(took * FULL_COST_RATIO);
        }
        result
    }

    fn sample_now(&mut self, began: Instant, full: bool) -> Result<()> {
        let uptime = self.procs.uptime()?;
        let walked = if full { None } else { self.walk()? };
        let run = match walked {
            Some(run) => run,
            None => self.full_scan()?,
        };
        let scanned = Instant::now();
        let by_pid: HashMap<i32, &ProcStat> = run.iter().map(|p| (p.pid, p)).collect();
        self.remember(&run);
        self.time_zombies(&run, &by_pid, (began, scanned));
        self.last = run;
        self.last_uptime = uptime;
        self.samples += 1;
        Ok(())
    }

    /// The run's processes from one scan of every process on the machine:
    /// the members, and whatever descends from them or from us.
    fn full_scan(&mut self) -> Result<Vec<ProcStat>> {
        let everyone = self.procs.scan(|_| true)?;
        let index: HashMap<i32, usize> = everyone
            .iter()
            .enumerate()
            .map(|(i, p)| (p.pid, i))
            .collect();
        // A member whose pid now has another start time exited, and the pid
        // went to a stranger.
        self.members.retain(|pid, m| {
            index
                .get(pid)
                .is_none_or(|&i| everyone[i].starttime == m.starttime)
        });
        let mut roots = vec![self.me];
        let mut run: Vec<ProcStat> = Vec::new();
        for &pid in self.members.keys() {
            roots.push(pid);
            if let Some(&i) = index.get(&pid) {
                run.push(everyone[i].clone());
            }
        }
        run.extend(
            crate::proc::walk(&everyone, &roots, &[])
                .into_iter()
                .cloned(),
        );
        Ok(run)
    }

    /// The run's processes from its own tree: each member's `stat`, then the
    /// `children` files from us down (the audit's fast path), each listed
    /// child confirmed by its own `stat`. Costs a few reads per process of
    /// the run instead of one per process on the machine. A `children` read
    /// that races with a reap can skip an entry (see `audit::children`): a
    /// member is never lost to that (its `stat` is read directly), and a new
    /// process is found at a later sample or by the next full scan. Our own
    /// `children` files cannot skip: only the thread that reads them reaps
    /// our children, and nothing is re-parented away from a live parent. So
    /// a walk that finds no child of ours and no member is exact: every
    /// descendant has a live chain of parents up to us. None when our own
    /// `children` files cannot be read (a kernel without
    /// CONFIG_PROC_CHILDREN): the caller scans in full.
    fn walk(&mut self) -> Result<Option<Vec<ProcStat>>> {
        let known: Vec<i32> = self.members.keys().copied().collect();
        let stats = self.procs.stat_many(&known, |_| true)?;
        let mut run: Vec<ProcStat> = stats
            .into_iter()
            .filter(|s| {
                self.members
                    .get(&s.pid)
                    .is_some_and(|m| m.starttime == s.starttime)
            })
            .collect();
        let mut seen: std::collections::HashSet<i32> = run.iter().map(|p| p.pid).collect();
        // A zombie has no children (they are re-parented when it exits): a
        // farm of thousands costs one `stat` each, not three reads.
        let mut queue: std::collections::VecDeque<i32> = run
            .iter()
            .filter(|p| !p.is_zombie())
            .map(|p| p.pid)
            .collect();
        queue.push_front(self.me);
        while let Some(parent) = queue.pop_front() {
            let Some(listed) = self.procs.listed_children(parent) else {
                if parent == self.me {
                    return Ok(None);
                }
                continue; // it exited meanwhile: its children moved to us
            };
            let new: Vec<i32> = listed
                .pids
                .into_iter()
                .filter(|p| !seen.contains(p))
                .collect();
            for child in self.procs.stat_many(&new, |s| s.ppid == parent)? {
                seen.insert(child.pid);
                if !child.is_zombie() {
                    queue.push_back(child.pid);
                }
                run.push(child);
            }
        }
        Ok(Some(run))
    }

    /// Updates the members from this sample's processes of the run; the
    /// members that are gone are forgotten.
    fn remember(&mut self, run: &[ProcStat]) {
        let mut next: HashMap<i32, Member> = HashMap::with_capacity(run.len());
        let mut new = Vec::new();
        for p in run {
            let member = match self.members.remove(&p.pid) {
                Some(mut m) => {
                    if m.comm != p.comm {
                        // It exec'd: the command line is another one now.
                        m.comm.clone_from(&p.comm);
                        m.cmdline = (!p.is_zombie())
                            .then(|| crate::proc::cmdline(p.pid))
                            .flatten();
                    }
                    m
                }
                None => {
                    new.push((p.pid, p.ppid));
                    Member {
                        starttime: p.starttime,
                        comm: p.comm.clone(),
                        cmdline: (!p.is_zombie())
                            .then(|| crate::proc::cmdline(p.pid))
                            .flatten(),
                        started_by: None,
                    }
                }
            };
            next.insert(p.pid, member);
        }
        // Parents are members too (every process of the run descends from
        // one), so a new process's parent is named from what is known of it.
        for (pid, ppid) in new {
            if ppid == self.me {
                continue;
            }
            let origin = next.get(&ppid).map(|parent| Origin {
                pid: ppid,
                comm: parent.comm.clone(),
                cmdline: parent.cmdline.clone(),
            });
            if let Some(m) = next.get_mut(&pid) {
                m.started_by = origin;
            }
        }
        self.members = next;
    }

    /// Times the zombies of this sample, whose scan ran from `began` to
    /// `scanned`, and credits those over the minimum age to their parents.
    /// Zombies of this process are not counted: they are re-parented orphans,
    /// reaped at once by the runner.
    ///
    /// Each `stat` is read at some instant within its scan, so a zombie seen
    /// by two scans was defunct at least from the end of the first to the
    /// start of the second: that is the time credited, never more (a scan
    /// slowed by a loaded machine must not make a zombie look older).
    fn time_zombies(
        &mut self,
        run: &[ProcStat],
        by_pid: &HashMap<i32, &ProcStat>,
        (began, scanned): (Instant, Instant),
    ) {
        let mut seen_now = HashMap::new();
        let mut held_now: HashMap<(i32, u64), u64> = HashMap::new();
        for p in run.iter().filter(|p| p.is_zombie() && p.ppid != self.me) {
            let key = (p.pid, p.starttime);
            let mut seen = self.zombies.remove(&key).unwrap_or(Seen {
                first: scanned,
                counted: false,
            });
            let held = began.saturating_duration_since(seen.first);
            if held >= self.min_age {
                let parent = by_pid.get(&p.ppid).copied();
                let parent_key = (p.ppid, parent.map_or(0, |s| s.starttime));
                let holder = self.holders.entry(parent_key).or_insert_with(|| {
                    let member = self.members.get(&p.ppid);
                    Holder {
                        report: ZombieHolder {
                            ppid: p.ppid,
                            comm: parent
                                .map(|s| s.comm.clone())
                                .or_else(|| member.map(|m| m.comm.clone()))
                                .unwrap_or_else(|| "?".into()),
                            cmdline: member.and_then(|m| m.cmdline.clone()),
                            zombies: 0,
                            peak: 0,
                            longest_s: 0.0,
                            first_seen_s: round2(
                                began.saturating_duration_since(self.started).as_secs_f64(),
                            ),
                            pids: Vec::new(),
                            zombie_comms: Vec::new(),
                        },
                        longest: Duration::ZERO,
                    }
                });
                if !seen.counted {
                    seen.counted = true;
                    self.zombie_count += 1;
                    holder.report.zombies += 1;
                    if holder.report.pids.len() < MAX_LISTED {
                        holder.report.pids.push(p.pid);
                    }
                    let comms = &mut holder.report.zombie_comms;
                    if comms.len() < MAX_COMMS && !comms.contains(&p.comm) {
                        comms.push(p.comm.clone());
                    }
                }
                holder.longest = holder.longest.max(held);
                *held_now.entry(parent_key).or_default() += 1;
            }
            seen_now.insert(key, seen);
        }
        // Zombies not seen now were reaped: they are done being timed.
        self.zombies = seen_now;
        for (key, n) in held_now {
            if let Some(h) = self.holders.get_mut(&key) {
                h.report.peak = h.report.peak.max(n);
            }
        }
    }

    /// Notes a child this process reaped (not COMMAND).
    pub fn reaped(&mut self, r: &Reaped) {
        self.reaped_count += 1;
        let member = self.members.remove(&r.pid);
        if self.reaped.len() >= MAX_LISTED {
            return;
        }
        let comm = r
            .stat
            .as_ref()
            .map(|s| s.comm.clone())
            .or_else(|| member.as_ref().map(|m| m.comm.clone()))
            .unwrap_or_else(|| "?".into());
        self.reaped.push(ReapedOrphan {
            pid: r.pid,
            comm,
            started_by: member.and_then(|m| m.started_by),
            status: super::describe(r.status),
        });
    }

    /// Whether the last sample saw no process of the run at all.
    pub fn empty(&self) -> bool {
        self.last.is_empty()
    }

    /// A process of process group `pgid`, other than its leader, that the
    /// last sample saw stopped by job control (state T), with its comm.
    pub fn stopped_in_group(&self, pgid: i32) -> Option<(i32, String)> {
        self.last
            .iter()
            .find(|p| p.pgrp == pgid && p.pid != pgid && p.state == 'T')
            .map(|p| (p.pid, p.comm.clone()))
    }

    /// The run's live processes in the last sample, in pid order, with who
    /// started them where a sample saw it; none when the last sample failed.
    pub fn orphans(&self) -> Vec<Leftover> {
        if self.stale {
            return Vec::new();
        }
        let mut out: Vec<Leftover> = self
            .last
            .iter()
            // Not `state != 'Z'`: a leader that called pthread_exit shows Z
            // while its threads run on ("Zl"), and that process is alive.
            .filter(|p| !p.is_zombie())
            .map(|p| {
                let mut l = Leftover::of(p, self.last_uptime, self.ticks);
                l.started_by = self.members.get(&p.pid).and_then(|m| m.started_by.clone());
                l
            })
            .collect();
        out.sort_by_key(|l| l.pid);
        out
    }

    /// The parents that held zombies beyond the minimum age, most zombies
    /// first, and how many zombies that was in all.
    pub fn zombies(&self) -> (Vec<ZombieHolder>, u64) {
        let mut out: Vec<ZombieHolder> = self
            .holders
            .values()
            .map(|h| {
                let mut r = h.report.clone();
                r.longest_s = round2(h.longest.as_secs_f64());
                r
            })
            .collect();
        out.sort_by(|a, b| b.zombies.cmp(&a.zombies).then(a.ppid.cmp(&b.ppid)));
        (out, self.zombie_count)
    }

    /// The orphans reaped so far (the first `MAX_LISTED`) and their number.
    pub fn reaped_orphans(&self) -> (Vec<ReapedOrphan>, u64) {
        (self.reaped.clone(), self.reaped_count)
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
