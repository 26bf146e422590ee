//! `audit -- COMMAND` and `smoke` against the fourth hostile test
//! (notes/attack-4.md): a stop signal after COMMAND exited (F1), output
//! files that are FIFOs with no reader (F6), and `smoke --junit` naming the
//! file stdout writes to (F8). Each test names its finding and how it failed
//! on the attacked build (`LSBAWS_TEST_BIN=/work/bin/lsbaws-main4`).
//!
//! The signals here are sent when an event shows the phase under test has
//! begun (COMMAND reaped; the leftover's own SIGTERM handler running inside
//! the clean-up; lsbaws saying it waits for a reader), never after a guess
//! of how long a phase takes.

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::audit_exec::{LIMIT, Sweep, marker, report, text};
use crate::common::*;

/// The name lsbaws gives a stop signal.
fn name(sig: i32) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        _ => "SIGTERM",
    }
}

/// A report without a verdict: interrupted by `sig`.
fn assert_interrupted(r: &Value, sig: i32) {
    assert_eq!(r["interrupted"], true, "{r}");
    assert_eq!(r["signal"], name(sig), "{r}");
    let verdict = r["verdict"].as_str().unwrap_or_default();
    assert!(verdict.starts_with("INTERRUPTED by"), "{r}");
}

/// The pid a process wrote into `path`, once it has.
fn pid_in(path: &str) -> i32 {
    let mut pid = None;
    eventually(LIMIT, || {
        pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        pid.is_some()
    });
    pid.unwrap_or_else(|| panic!("no pid in {path}"))
}

/// F1: a stop signal during the settle (COMMAND gone, its leftover still
/// running) cut the settle short, but the report was a verdict: on
/// lsbaws-main4 each signal gave exit 1, "FAIL: 1 process left running",
/// `"interrupted": false`. It must be 128 + N, no verdict, and the leftover
/// still stopped.
#[test]
fn a_stop_signal_in_the_settle_gives_no_verdict() {
    for sig in [15, 2, 1] {
        let mark = marker();
        let _sweep = Sweep(mark.clone());
        let dir = TempDir::new("settle-stop");
        let (command_pid, leftover_pid) = (dir.path("command.pid"), dir.path("leftover.pid"));
        let script = format!("sleep {mark} >/dev/null 2>&1 & echo $! > \"$1\"; echo $$ > \"$0\"");
        let started = Instant::now();
        let run = Spawned::start(Command::new(bin()).args([
            "audit",
            "--json",
            "--settle",
            "60s",
            "--",
            "sh",
            "-c",
            &script,
            &command_pid,
            &leftover_pid,
        ]));
        let command = pid_in(&command_pid);
        let leftover = pid_in(&leftover_pid);
        // COMMAND is reaped (its /proc entry gone): lsbaws is in the settle,
        // which waits 60 s for the leftover.
        assert!(
            eventually(LIMIT, || !alive(command)),
            "COMMAND {command} was not reaped"
        );
        run.signal(sig);
        let (status, out, err) = run.finish(LIMIT);
        let r = report(&out);
        assert_eq!(status.code(), Some(128 + sig), "{}{r}", text(&err));
        assert_interrupted(&r, sig);
        // What was measured is still there: the leftover is listed.
        assert_eq!(r["orphans"][0]["pid"], leftover, "{r}");
        assert!(!alive(leftover), "the leftover {leftover} was left running");
        assert!(
            started.elapsed() < Duration::from_secs(50),
            "the settle was not cut short"
        );
    }
    // Negative control: without a signal, the leftover is a finding.
    let mark = marker();
    let _sweep = Sweep(mark.clone());
    let script = format!("sleep {mark} >/dev/null 2>&1 & exit 0");
    let (code, out, _) =
        crate::audit_exec::audit(&["--json", "--settle", "0"], &["sh", "-c", &script]);
    assert_eq!(code, 1);
    assert_eq!(report(&out)["interrupted"], false);
}

/// A leftover for the clean-up test: on SIGTERM (the clean-up's) it sends
/// SIGTERM to lsbaws, then notes that it did, and stays until the clean-up's
/// SIGKILL, so the clean-up waits out its grace with the signal pending.
const SIGNALS_BACK: &str = r#"
import os, signal, sys, time
lsbaws, ready, sent = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def on_term(*_):
    os.kill(lsbaws, signal.SIGTERM)
    open(sent, "w").close()
signal.signal(signal.SIGTERM, on_term)
open(ready, "w").close()
for _ in range(3000):
    time.sleep(0.1)
"#;

/// F1: a stop signal during the clean-up after the report (here from the
/// leftover itself, in its SIGTERM handler, while the clean-up waits for it
/// to exit) was lost: on lsbaws-main4 the run exited 1 with "FAIL: 1
/// process left running" and `"interrupted": false`. It must be 143, no
/// verdict, and the clean-up still finished (the leftover is gone).
#[test]
fn a_stop_signal_during_the_clean_up_gives_no_verdict() {
    let dir = TempDir::new("cleanup-stop");
    let script_path = dir.path("signals_back.py");
    std::fs::write(&script_path, SIGNALS_BACK).expect("write the leftover's script");
    // The handler must run within the clean-up's 200 ms grace; on a loaded
    // machine it may not get the CPU in time (then no signal was sent, and
    // the run is a plain FAIL): such a run is tried again, a bounded number
    // of times, and never counts.
    for attempt in 1..=5 {
        let mark = marker();
        let _sweep = Sweep(mark.clone());
        let (ready, sent) = (
            dir.path(&format!("ready{attempt}")),
            dir.path(&format!("sent{attempt}")),
        );
        // $PPID of COMMAND is lsbaws. COMMAND exits once the handler is in
        // place (bounded: 30 s).
        let command = format!(
            "{} \"$0\" $PPID \"$1\" \"$2\" {mark} >/dev/null 2>&1 & \
             i=0; while [ ! -e \"$1\" ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done",
            python3()
        );
        let run = Spawned::start(Command::new(bin()).args([
            "audit",
            "--json",
            "--settle",
            "0",
            "--",
            "sh",
            "-c",
            &command,
            &script_path,
            &ready,
            &sent,
        ]));
        let (status, out, err) = run.finish(LIMIT);
        let r = report(&out);
        assert!(
            pids_with_arg(&mark).is_empty(),
            "the clean-up left the leftover running: {r}"
        );
        // No note and a plain FAIL: the handler did not run before the
        // SIGKILL (no note and 143: it was killed between its signal and
        // its note, which counts).
        if !std::path::Path::new(&sent).exists() && status.code() == Some(1) {
            continue;
        }
        assert_eq!(status.code(), Some(143), "{}{r}", text(&err));
        assert_interrupted(&r, 15);
        assert_eq!(r["unstopped"], serde_json::json!([]), "{r}");
        return;
    }
    panic!("in 5 runs the leftover never got to signal lsbaws within the clean-up's grace");
}

/// Starts `lsbaws ARGS` whose output FILE is the FIFO `fifo`, with no reader,
/// and waits until it says it waits for one (bounded: the attacked build
/// says nothing, and is then tested as it is).
fn waiting_for_a_reader(args: &[&str]) -> Spawned {
    let run = Spawned::lsbaws(args);
    eventually(Duration::from_secs(20), || {
        text(&run.stderr()).contains("FIFO with no reader")
    });
    run
}

/// A new FIFO in `dir`.
pub(crate) fn fifo(dir: &TempDir) -> String {
    let path = dir.path("out.fifo");
    let made = Command::new("mkfifo").arg(&path).status().expect("mkfifo");
    assert!(made.success(), "mkfifo {path}");
    path
}

/// F6: `audit --report FIFO` and `smoke --junit FIFO` (and `audit --junit`)
/// with no reader blocked in open(2), which the signal handlers restart: on
/// lsbaws-main4 neither SIGTERM nor SIGINT ended them (each run below was
/// still alive 20 s after the signal). Now the wait ends on a stop signal
/// with 128 + N, before COMMAND or the server ran.
#[test]
fn a_stop_signal_ends_the_wait_for_a_fifo_reader() {
    let dir = TempDir::new("fifo-stop");
    let fifo = fifo(&dir);
    let ran = dir.path("ran");
    let cases: [(&[&str], i32); 4] = [
        (&["audit", "--report", &fifo, "--", "touch", &ran], 15),
        (
            &["audit", "--json", "--junit", &fifo, "--", "touch", &ran],
            2,
        ),
        (
            &[
                "smoke",
                "-q",
                "--junit",
                &fifo,
                "--max-clients",
                "1",
                "--",
                "touch",
                &ran,
                "{port}",
            ],
            15,
        ),
        (
            &[
                "smoke",
                "-q",
                "--json",
                "--junit",
                &fifo,
                "--max-clients",
                "1",
            ],
            1,
        ),
    ];
    for (args, sig) in cases {
        let mut run = waiting_for_a_reader(args);
        run.signal(sig);
        let ended = run.wait_timeout(Duration::from_secs(20));
        assert!(
            ended.is_some(),
            "{args:?}: still blocked 20 s after {}",
            name(sig)
        );
        let (status, out, err) = run.finish(LIMIT);
        let (out, err) = (text(&out), text(&err));
        assert_eq!(status.code(), Some(128 + sig), "{args:?}: {out}{err}");
        assert!(
            err.contains(&format!("interrupted by {}", name(sig))),
            "{err}"
        );
        assert!(
            !std::path::Path::new(&ran).exists(),
            "{args:?}: the job ran"
        );
        if args.contains(&"--json") {
            let v: Value =
                serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
            assert_eq!(v["interrupted"], true, "{v}");
            assert_eq!(v["signal"], name(sig), "{v}");
        }
    }
}

/// F6, the control: a reader that comes after lsbaws started waiting gets
/// the whole document (a FIFO is waited for, not refused), and /dev/null
/// still works as an output.
#[test]
fn a_fifo_reader_that_comes_late_gets_the_document() {
    let dir = TempDir::new("fifo-late");
    let fifo = fifo(&dir);
    let run = waiting_for_a_reader(&["audit", "--report", &fifo, "--", "true"]);
    let mut document = String::new();
    std::fs::File::open(&fifo)
        .and_then(|mut f| f.read_to_string(&mut document))
        .expect("read the FIFO");
    let (status, _, err) = run.finish(LIMIT);
    assert_eq!(status.code(), Some(0), "{}", text(&err));
    assert!(document.starts_with("lsbaws audit: PASS"), "{document}");

    // /dev/null is no other output. (/dev/stdout on a pipe is stdout's
    // stream: refused since attack 5, G4.)
    let (status, out, err) = Spawned::lsbaws(&[
        "audit",
        "--report",
        "/dev/null",
        "--junit",
        "/dev/null",
        "--",
        "true",
    ])
    .finish(LIMIT);
    assert_eq!(status.code(), Some(0), "{}{}", text(&out), text(&err));
}

/// F8: `smoke --junit /dev/stdout` with stdout a file wrote the JUnit and
/// then the JSON over it from offset 0 (the file held the JSON alone) and
/// exited 0 on lsbaws-main4. It is refused before the server starts, as
/// `audit --` refuses it, with one line on stderr and exit 2.
#[test]
fn smoke_refuses_a_junit_file_that_is_its_stdout() {
    let dir = TempDir::new("smoke-junit-stdout");
    let file = dir.path("out.txt");
    let script = "exec \"$0\" smoke -q --json --max-clients 2 --junit /dev/stdout > \"$1\"";
    let started = Instant::now();
    let (status, _, err) =
        run_bounded(Command::new("sh").args(["-c", script, bin(), &file]), LIMIT);
    let written = std::fs::read_to_string(&file).expect("stdout file");
    assert_eq!(status.code(), Some(2), "{err}{written}");
    assert!(
        err.contains("--junit /dev/stdout is the file lsbaws's stdout writes to"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let v: Value =
        serde_json::from_str(written.trim()).unwrap_or_else(|e| panic!("{e}: {written}"));
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("stdout")),
        "{v}"
    );
    assert!(started.elapsed() < LIMIT);
}
