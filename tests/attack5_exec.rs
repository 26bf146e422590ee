//! Attack 5 (G1, G4, G6, G7): the output files of `audit -- COMMAND` and
//! `smoke`. A reader that goes away (EPIPE) stops that output only; a
//! reader that never reads cannot cost the report on stdout after a stop
//! signal; one FIFO or pipe named twice is refused; an output file that
//! cannot be created still gives `{"error"}` on stdout with `--json`.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use crate::attack4_exec::fifo;
use crate::audit_exec::{LIMIT, Sweep, marker, text};
use crate::common::*;

/// A read end of `fifo`, opened without waiting for a writer.
fn reader(fifo: &str) -> File {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(fifo)
        .expect("open the FIFO for reading")
}

/// Shrinks the pipe behind `read` to one page, the smallest: a document of a
/// few kB cannot fit, so a writer that nobody reads gets stuck in it.
fn shrink(read: &File) {
    use nix::fcntl::{FcntlArg, fcntl};
    fcntl(read, FcntlArg::F_SETPIPE_SZ(4096)).expect("F_SETPIPE_SZ");
}

/// Waits (bounded, 60 s) until the first bytes of the document arrive.
fn wait_for_data(read: &File) {
    use nix::poll::{PollFd, PollFlags, poll};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(read.as_fd(), PollFlags::POLLIN)];
    let ready = poll(&mut fds, 60_000u16).expect("poll");
    assert_eq!(ready, 1, "no document came within 60 s");
}

/// Waits (bounded) until `pid` holds `path` open.
fn wait_until_opened(pid: i32, path: &str) {
    let opened = eventually(Duration::from_secs(20), || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|fds| {
                fds.flatten()
                    .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_str() == Some(path)))
            })
            .unwrap_or(false)
    });
    assert!(opened, "pid {pid} never opened {path}");
}

/// A COMMAND that waits (bounded, 10 s) for the file `go`, then runs `then`.
fn after(go: &str, then: &str) -> String {
    format!("i=0; while [ ! -e '{go}' ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; {then}")
}

/// G1: a reader of a `--report`/`--junit` FIFO that opened it and went away
/// before the document came. On lsbaws-main5 each of these exited 2
/// ("writing …: Broken pipe"), and smoke printed no report on stdout at all.
/// Now the verdict stands (0 for PASS, 1 for FAIL), stderr names the FIFO in
/// one line, and stdout's report is written.
#[test]
fn a_fifo_reader_that_goes_away_changes_no_exit_code() {
    let dir = TempDir::new("fifo-gone");
    let fifo = fifo(&dir);
    let mark = marker();
    let _sweep = Sweep(mark.clone());
    let cases: [(&str, Vec<String>, i32); 3] = [
        ("--report", vec![], 0),
        ("--junit", vec![], 0),
        // A leftover: FAIL.
        ("--report", vec![format!("sleep {mark} & exit 0")], 1),
    ];
    for (n, (flag, leftover, code)) in cases.into_iter().enumerate() {
        let go = dir.path(&format!("go{n}"));
        let then = leftover.first().cloned().unwrap_or_else(|| "true".into());
        let script = after(&go, &then);
        let read = reader(&fifo);
        let run = Spawned::lsbaws(&["audit", flag, &fifo, "--", "sh", "-c", &script]);
        wait_until_opened(run.pid, &fifo);
        drop(read);
        File::create(&go).expect("go");
        let (status, out, err) = run.finish(LIMIT);
        let (out, err) = (text(&out), text(&err));
        assert_eq!(status.code(), Some(code), "{flag}: {out}{err}");
        let said: Vec<_> = err.lines().filter(|l| l.contains("out.fifo")).collect();
        assert_eq!(said.len(), 1, "one line names the FIFO: {err}");
        assert!(said[0].contains("went away"), "{err}");
        if flag == "--junit" {
            assert!(out.contains("lsbaws audit: PASS"), "stdout's report: {out}");
        }
    }

    // smoke: the JUnit reader goes away; the JSON report is still printed.
    let read = reader(&fifo);
    let run = Spawned::lsbaws(&[
        "smoke",
        "-q",
        "--json",
        "--max-clients",
        "2",
        "--settle",
        "1s",
        "--junit",
        &fifo,
    ]);
    wait_until_opened(run.pid, &fifo);
    drop(read);
    let (status, out, err) = run.finish(LIMIT);
    let (out, err) = (text(&out), text(&err));
    assert_eq!(status.code(), Some(0), "{out}{err}");
    assert!(out.contains("\"verdict\""), "no JSON report: {out}");
    assert!(!out.contains("\"error\""), "{out}");
}

/// G6: a `--junit` FIFO whose reader opened it and never reads, a JUnit
/// document bigger than the pipe, and SIGTERM while lsbaws is stuck writing
/// it. On lsbaws-main5 the exit was 143 but stdout had no report (the JUnit
/// file is written first and never finished). Now the file gives way to the
/// signal: stdout has the report, marked interrupted (on the G6 fix alone it
/// still said FAIL: attack 6, H1), and the exit is still 143.
#[test]
fn a_stuck_junit_fifo_does_not_cost_the_report_on_stdout() {
    let dir = TempDir::new("fifo-stuck");
    let fifo = fifo(&dir);
    let go = dir.path("go");
    let mark = marker();
    let _sweep = Sweep(mark.clone());
    // Three leftovers with 3000-byte command lines: the JUnit lists them.
    let long = "x".repeat(3000);
    let then = format!("for i in 1 2 3; do (exec -a \"{long}$i\" sleep {mark}) & done; sleep 0.3");
    let read = reader(&fifo);
    // The smallest pipe: the document cannot fit.
    shrink(&read);
    let run = Spawned::lsbaws(&[
        "audit",
        "--settle",
        "0",
        "--junit",
        &fifo,
        "--",
        "bash",
        "-c",
        &after(&go, &then),
    ]);
    wait_until_opened(run.pid, &fifo);
    File::create(&go).expect("go");
    // The JUnit document has started: lsbaws is in its output.
    wait_for_data(&read);
    std::thread::sleep(Duration::from_millis(200));
    run.signal(15);
    let (status, out, err) = run.finish(LIMIT);
    let (out, err) = (text(&out), text(&err));
    assert_eq!(status.code(), Some(143), "{out}{err}");
    assert!(
        out.contains("lsbaws audit:"),
        "the report on stdout was lost: {out:?} {err}"
    );
    // Attack 6, H1: the report said FAIL while the exit said 143. A signal
    // before the report is printed means no verdict in it either.
    assert!(
        out.contains("INTERRUPTED by SIGTERM") && !out.contains("FAIL"),
        "the report contradicts the exit code: {out}"
    );
    assert!(err.contains("made no room"), "{err}");
    drop(read);
    assert!(
        eventually(Duration::from_secs(10), || pids_with_arg(&mark).is_empty()),
        "leftovers alive: {:?}",
        pids_with_arg(&mark)
    );
}

/// Attack 6, H1, smoke's side: a `--junit` FIFO whose reader never reads (a
/// 4096-byte pipe; the JUnit of 300 zombies is larger) and SIGTERM while smoke
/// is stuck writing it. On lsbaws-main6 stdout said `FAIL: ...` beside exit
/// 143; the report printed after a stop signal carries no verdict.
#[test]
fn smoke_stuck_on_its_junit_fifo_prints_an_interrupted_report() {
    let dir = TempDir::new("fifo-stuck-smoke");
    let fifo = fifo(&dir);
    let read = reader(&fifo);
    shrink(&read);
    let run = Spawned::lsbaws(&[
        "smoke",
        "--quiet",
        "--reaper",
        "none",
        "--max-clients",
        "300",
        "--settle",
        "0s",
        "--junit",
        &fifo,
    ]);
    // The JUnit document has started: smoke is in its output.
    wait_for_data(&read);
    std::thread::sleep(Duration::from_millis(200));
    run.signal(15);
    let (status, out, err) = run.finish(LIMIT);
    let (out, err) = (text(&out), text(&err));
    assert_eq!(status.code(), Some(143), "{out}{err}");
    assert!(err.contains("made no room"), "{err}");
    assert!(
        out.contains("INTERRUPTED by SIGTERM") && !out.contains("FAIL"),
        "the report contradicts the exit code: {out}"
    );
    drop(read);
}

/// G4: one FIFO given to both `--report` and `--junit`, and `--junit
/// /dev/stdout` with stdout a pipe. On lsbaws-main5 each ran (exit 0) and
/// the reader got JUnit XML and the report mixed into one stream. Now each
/// is refused with one line and exit 2 before COMMAND or the server runs.
#[test]
fn one_pipe_named_twice_is_refused() {
    let dir = TempDir::new("fifo-twice");
    let fifo = fifo(&dir);
    let ran = dir.path("ran");
    let _read = reader(&fifo);
    let (status, out, err) = Spawned::lsbaws(&[
        "audit", "--json", "--report", &fifo, "--junit", &fifo, "--", "touch", &ran,
    ])
    .finish(LIMIT);
    let (out, err) = (text(&out), text(&err));
    assert_eq!(status.code(), Some(2), "{out}{err}");
    assert!(err.contains("are the same pipe"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(out.contains("\"error\""), "{out}");
    assert!(!std::path::Path::new(&ran).exists(), "COMMAND ran");

    let (status, out, err) =
        Spawned::lsbaws(&["audit", "--junit", "/dev/stdout", "--", "touch", &ran]).finish(LIMIT);
    let (out, err) = (text(&out), text(&err));
    assert_eq!(status.code(), Some(2), "{out}{err}");
    assert!(
        err.contains("is the pipe lsbaws's stdout writes to"),
        "{err}"
    );
    assert!(!std::path::Path::new(&ran).exists(), "COMMAND ran");

    let (status, out, err) = Spawned::lsbaws(&[
        "smoke",
        "-q",
        "--json",
        "--max-clients",
        "2",
        "--junit",
        "/dev/stdout",
    ])
    .finish(LIMIT);
    let (out, err) = (text(&out), text(&err));
    assert_eq!(status.code(), Some(2), "{out}{err}");
    assert!(!out.contains("<testsuite"), "{out}");
    assert!(out.starts_with("{\"error\""), "{out}");
}

/// G7: `audit --json --report FILE` where FILE cannot be created. On
/// lsbaws-main5 stdout was empty (the error object was meant for FILE).
/// Now it is `{"error": ...}` on stdout, exit 2, COMMAND never ran. The
/// control: an error that did go into FILE is not repeated on stdout.
#[test]
fn audit_json_says_on_stdout_that_the_report_file_failed() {
    let dir = TempDir::new("report-dir");
    let ran = dir.path("ran");
    let (status, out, err) = Spawned::lsbaws(&[
        "audit",
        "--json",
        "--report",
        &dir.0.to_string_lossy(),
        "--",
        "touch",
        &ran,
    ])
    .finish(LIMIT);
    let (out, err) = (text(&out), text(&err));
    assert_eq!(status.code(), Some(2), "{out}{err}");
    let object: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    let message = object["error"].as_str().expect("error");
    assert!(message.contains("cannot create the report file"), "{out}");
    assert!(!std::path::Path::new(&ran).exists(), "COMMAND ran");

    let report = dir.path("report.json");
    let (status, out, err) = Spawned::lsbaws(&[
        "audit",
        "--json",
        "--report",
        &report,
        "--",
        "/nonexistent/lsbaws-attack5",
    ])
    .finish(LIMIT);
    let (out, err) = (text(&out), text(&err));
    assert_eq!(status.code(), Some(2), "{out}{err}");
    assert_eq!(out, "", "stdout stays COMMAND's");
    let written = std::fs::read_to_string(&report).expect("report");
    assert!(written.starts_with("{\"error\""), "{written}");
}
