//! Regression tests of the verdict contract (DESIGN.md "Verdicts") for `audit`:
//! a verdict never changes because of a closed pipe, a full fd table, a reused
//! pid or a hostile process name.
//!
//! Each test names the defect it pins (issue 10, item N). Every process a test
//! starts is owned by a guard that kills and reaps it, also when the test fails.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use crate::verdicts::{CLOSINGS, assert_exit_1, hex, json, run_bounded_bytes, text};

/// Generous bound on one run on a noisy 2-core machine.
const LIMIT: Duration = Duration::from_secs(60);

/// A python3 process (tests/servers/zombies.py) that made zombies and never
/// reaps them; killed (its zombies then go to init) on drop.
pub(crate) struct ZombieParent {
    guard: ProcGuard,
}

impl ZombieParent {
    pub(crate) fn spawn(args: &[String]) -> ZombieParent {
        let mut child = Command::new(python3())
            .arg(fixture("servers/zombies.py"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn zombies.py");
        let stdout = child.stdout.take().expect("stdout");
        let guard = ProcGuard::new(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let ready = rx.recv_timeout(LIMIT).unwrap_or_default();
        assert_eq!(ready, "ready\n", "zombies.py {args:?} did not get ready");
        ZombieParent { guard }
    }

    pub(crate) fn with_count(n: usize) -> ZombieParent {
        let z = Self::spawn(&["--count".into(), n.to_string()]);
        assert_eq!(zombies_of(z.pid()), n, "zombies of {}", z.pid());
        z
    }

    pub(crate) fn pid(&self) -> i32 {
        self.guard.pid()
    }
}

/// Item 2: `audit --pid P | head -1` with ~5000 zombies exited 0 (1 without the
/// pipe): an EPIPE on stdout turned a finding into a pass.
#[test]
fn audit_keeps_exit_1_when_its_output_is_closed() {
    let parent = ZombieParent::with_count(5000);
    let pid = parent.pid().to_string();
    // Negative control: with the pipes open, the finding is exit 1.
    let (status, out, err) = lsbaws(&["audit", "--pid", &pid], LIMIT);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(out.contains(": 5000 zombies, "), "{out}");
    for closed in CLOSINGS {
        for extra in [&[][..], &["--json"]] {
            let status = exit_with_closed_output(
                Command::new(bin())
                    .args(["audit", "--pid", &pid])
                    .args(extra),
                closed,
                LIMIT,
            );
            assert_exit_1(status, &format!("audit {extra:?}, {closed:?}"));
        }
    }
}

/// `audit --watch I --count K | head -1` stopped sampling at the closed pipe
/// and exited with the verdict of the second sample: a zombie that appeared
/// later turned exit 1 into 0. With `--count` the run is bounded, so the K
/// samples are taken and the last one's verdict stands (only an endless watch
/// stops for want of a reader).
#[test]
fn watch_with_a_count_keeps_sampling_after_its_output_is_closed() {
    // The child exits after a second and is never reaped (`sleep` waits for nobody).
    let parent = ProcGuard::new(
        Command::new("sh")
            .args(["-c", "sleep 1 & exec sleep 60"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn sh"),
    );
    let pid = parent.pid().to_string();
    let args = [
        "audit",
        "--pid",
        &pid,
        "--min-age",
        "0s",
        "--watch",
        "200ms",
        "--count",
        "20",
    ];
    for extra in [&[][..], &["--json"]] {
        let status = exit_with_closed_output(
            Command::new(bin()).args(args).args(extra),
            Closed::StdoutAfterOneLine,
            LIMIT,
        );
        assert_exit_1(
            status,
            &format!("audit --watch {extra:?}, stdout closed after a line"),
        );
    }
}

/// Item 3: every error reading /proc/N/stat counted as "vanished": under
/// `prlimit --nofile=4:4` audit reported ~500-900 of 2000 zombies and, with
/// `--max-zombies 1500`, exit 0. EMFILE must be exit 2 with its reason (or,
/// should audit manage with 4 fds, the whole count): never a smaller count.
#[test]
fn audit_out_of_fds_is_exit_2_never_a_smaller_count() {
    // No skipping: CI installs util-linux.
    let probe = Command::new("prlimit").arg("--version").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "prlimit (util-linux) is needed by this test"
    );
    let parent = ZombieParent::with_count(2000);
    let pid = parent.pid().to_string();
    for round in 0..3 {
        for json_out in [false, true] {
            let mut cmd = Command::new("prlimit");
            cmd.args(["--nofile=4:4", bin(), "audit", "--pid", &pid])
                .args(["--max-zombies", "1500"]);
            if json_out {
                cmd.arg("--json");
            }
            let (status, out, err) = run_bounded(&mut cmd, LIMIT);
            let what = format!("round {round}, json {json_out}: exit {status}, stderr {err:?}");
            match status.code() {
                Some(2) => {
                    assert_eq!(err.lines().count(), 1, "{what}");
                    assert!(err.contains("Too many open files"), "{what}");
                    if json_out {
                        assert_eq!(out.lines().count(), 1, "{what}: {out}");
                        assert!(json(out.as_bytes())["error"].is_string(), "{what}: {out}");
                    }
                }
                Some(1) => {
                    let counted = if json_out {
                        json(out.as_bytes())["count"].as_u64()
                    } else {
                        out.lines()
                            .last()
                            .and_then(|l| l.split(": ").nth(1))
                            .and_then(|l| l.split(' ').next())
                            .and_then(|n| n.parse().ok())
                    };
                    assert_eq!(counted, Some(2000), "{what}: {out}");
                }
                _ => panic!(
                    "{what}: the count shrank silently: {}",
                    out.lines().last().unwrap_or("")
                ),
            }
        }
    }
}

/// The first 15 bytes of `name`, as the kernel keeps a comm; must be UTF-8.
fn comm_of(name: &[u8]) -> String {
    String::from_utf8(name[..name.len().min(15)].to_vec()).expect("a UTF-8 comm")
}

/// The comm of `pid` from its stat (between the first '(' and the last ')').
fn stat_comm(pid: i32) -> Vec<u8> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).expect("stat");
    let open = stat.iter().position(|&b| b == b'(').expect("(");
    let close = stat.iter().rposition(|&b| b == b')').expect(")");
    stat[open + 1..close].to_vec()
}

/// Checks a table output: no raw control sequence, and no line break inside a
/// name (each name here holds "\nZQ", so a raw one starts a line with "ZQ").
fn assert_table_escaped(out: &[u8], what: &str) {
    assert_no_raw_controls(out, what);
    let out = text(out);
    assert!(
        !out.lines().any(|l| l.starts_with("ZQ")),
        "{what}: a raw newline from a name: {out}"
    );
}

/// Item 23: the audit summary line and tables printed `comm` raw: a process
/// named "x\n\e[2J\e]0;t\a" cleared the screen, and U+202E passed.
#[test]
fn audit_escapes_hostile_process_names() {
    let parent_name = b"p\nZQ\x1b[2Jar\xef\xbf\xbf".as_slice();
    let names: [&[u8]; 2] = [
        // 18 bytes: the kernel keeps 15, so BEL survives and the rest goes.
        b"x\nZQ\x1b[2J\x1b]0;t\x07!!!!!",
        "\u{202e}gpj.exe\u{85}\x7f".as_bytes(),
    ];
    let parent = ZombieParent::spawn(&[
        "--parent".into(),
        hex(parent_name),
        hex(names[0]),
        hex(names[1]),
    ]);
    let pid = parent.pid();
    let expected: BTreeSet<String> = names.iter().map(|n| comm_of(n)).collect();
    // The setup itself: the kernel holds these names.
    let kids: BTreeSet<String> = children_of(pid)
        .into_iter()
        .map(|(k, _)| String::from_utf8(stat_comm(k)).expect("utf-8"))
        .collect();
    assert_eq!(kids, expected);
    assert_eq!(stat_comm(pid), parent_name);
    let pid_s = pid.to_string();

    let (status, out, err) = run_bounded_bytes(&["audit", "--pid", &pid_s]);
    assert_eq!(status.code(), Some(1), "{}", text(&err));
    assert_table_escaped(&out, "audit --pid");
    let summary: Vec<String> = text(&out)
        .lines()
        .filter(|l| l.starts_with(&format!("pid {pid} (")))
        .map(str::to_string)
        .collect();
    assert_eq!(summary.len(), 1, "{}", text(&out));
    assert!(
        summary[0].ends_with("): 2 zombies, 0 live children"),
        "the summary is not one line: {}",
        text(&out)
    );

    let (status, out, _) = run_bounded_bytes(&["audit", "--pid", &pid_s, "--json"]);
    assert_eq!(status.code(), Some(1));
    assert_no_raw_controls(&out, "audit --json");
    let v = json(&out);
    assert_eq!(v["comm"], comm_of(parent_name), "{v}");
    let comms: BTreeSet<String> = v["zombies"]
        .as_array()
        .expect("zombies")
        .iter()
        .map(|z| z["comm"].as_str().expect("comm").to_string())
        .collect();
    assert_eq!(comms, expected, "{v}");

    let (status, out, _) = run_bounded_bytes(&["audit", "--all"]);
    assert_eq!(status.code(), Some(1));
    assert_table_escaped(&out, "audit --all");

    let (status, out, _) = run_bounded_bytes(&["audit", "--all", "--json"]);
    assert_eq!(status.code(), Some(1));
    assert_no_raw_controls(&out, "audit --all --json");
    let v = json(&out);
    let ours: BTreeSet<String> = v["zombies"]
        .as_array()
        .expect("zombies")
        .iter()
        .filter(|z| z["ppid"].as_i64() == Some(pid.into()))
        .map(|z| z["comm"].as_str().expect("comm").to_string())
        .collect();
    assert_eq!(ours, expected, "{v}");
    let group = v["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["ppid"].as_i64() == Some(pid.into()))
        .unwrap_or_else(|| panic!("no group for {pid}: {v}"));
    assert_eq!(group["comm"], comm_of(parent_name), "{group}");
}

/// A stat line of the fake /proc (100 clock ticks a second).
fn fake_stat(pid: i32, comm: &str, state: char, ppid: i32, start_ticks: u64) -> String {
    format!(
        "{pid} ({comm}) {state} {ppid} {pid} {pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 \
         {start_ticks} 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
    )
}

/// Item 28: `audit --watch` followed a reused pid silently, sampling another
/// process under the same number. It must stop: exit 2, "reused" on stderr.
#[test]
fn watch_stops_with_exit_2_when_its_pid_is_reused() {
    let root = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("verdict-watch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("10/task/10")).expect("mkdir");
    std::fs::write(root.join("uptime"), "1000.00 1800.00\n").expect("uptime");
    std::fs::write(root.join("meminfo"), "MemTotal: 1 kB\n").expect("meminfo");
    std::fs::write(root.join("10/task/10/children"), "").expect("children");
    let stat = root.join("10/stat");
    std::fs::write(&stat, fake_stat(10, "server", 'S', 1, 1000)).expect("stat");
    let root_s = root.to_str().expect("utf-8 path").to_string();
    let watch = |count: &str| {
        Spawned::lsbaws(&[
            "audit",
            "--proc-root",
            &root_s,
            "--pid",
            "10",
            "--watch",
            "300ms",
            "--count",
            count,
        ])
    };

    // Negative control: the same process all along.
    let (status, out, err) = watch("2").finish(LIMIT);
    assert_eq!(status.code(), Some(0), "{}", text(&err));
    assert_eq!(text(&out).lines().count(), 2, "{}", text(&out));

    let running = watch("20");
    assert!(
        eventually(Duration::from_secs(20), || running
            .stdout()
            .contains(&b'\n')),
        "no first sample"
    );
    // Another process now has pid 10: started later, another name. Renamed
    // into place, so audit never reads half a file.
    let next = root.join("10/stat.next");
    std::fs::write(&next, fake_stat(10, "impostor", 'S', 1, 90000)).expect("stat");
    std::fs::rename(&next, &stat).expect("rename");
    let (status, out, err) = running.finish(LIMIT);
    let _ = std::fs::remove_dir_all(&root);
    let (out, err) = (text(&out), text(&err));
    assert_eq!(status.code(), Some(2), "{status}: {out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("reused"), "{err}");
    assert!(out.lines().count() < 20, "it went on sampling: {out}");
}
