//! Regressions from the fifth hostile test of `lsbaws merge`
//! (notes/attack-5.md): a failing report JSON-escaped inside a log line
//! skipped as noise (G2), and a FIFO input with no writer that a stop signal
//! killed before anything was printed (G5). Each test fails on the build
//! that was attacked (`LSBAWS_TEST_BIN=…/lsbaws-main5`). G3 (a long line
//! that begins with `{` took quadratic time) is a unit test of the splitter.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::merge::{TempDir as Dir, blast_report, lsbaws_with_stdin};

const LIMIT: Duration = Duration::from_secs(120);

fn parse(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

/// A passing report (`--max-clients 2`, 2 connections), on one line.
fn passing() -> String {
    let server = Server::start(&["--quiet"]);
    let report = blast_report(&server.url(), &["--max-clients", "2"]);
    let _ = server.stop(Duration::from_secs(20));
    parse(&report).to_string()
}

/// Whether `pid` has a handler for `sig` (SigCgt in /proc).
fn catches(pid: i32, sig: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (sig - 1)) != 0)
}

/// Whether a thread of `pid` waits in the open of a FIFO for its writer
/// (its wchan): the inputs before the FIFO were read and handed over.
fn waits_for_a_writer(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        std::fs::read_to_string(t.path().join("wchan"))
            .is_ok_and(|w| w.contains("wait_for_partner") || w.contains("fifo_open"))
    })
}

/// Regression (G2): a failing report that is the value of a JSON string in
/// a log line (fluentd's stdout format, logfmt `msg=`) was skipped as noise,
/// and the merge of a failing fleet through stdin exited 0. It is an error
/// now (exit 2), naming the line and saying what hid the report.
#[test]
fn a_report_json_escaped_inside_a_log_line_is_never_noise() {
    let good = passing();
    let failing = parse(&blast_report(
        &format!("http://127.0.0.1:{}/", unused_port()),
        &["--max-clients", "2"],
    ))
    .to_string();
    let escaped = serde_json::to_string(&format!("{failing}\n")).expect("encode");
    for line in [
        format!(
            "2026-11-30 01:02:03.000000000 +0000 pod.blast: {{\"log\":{escaped},\"stream\":\"stdout\"}}"
        ),
        format!("level=info msg={escaped}"),
    ] {
        let [a, b] = ["a", "b"].map(|tag| {
            let mut r = parse(&good);
            r["tag"] = tag.into();
            r.to_string()
        });
        let input = format!("{a}\n{line}\n{b}\n");
        let (status, out, err) = lsbaws_with_stdin(&["merge", "-"], &input);
        assert_eq!(status.code(), Some(2), "{line}\n{out} {err}");
        assert!(
            err.contains("stdin line 2: a blast report JSON-escaped inside another format"),
            "{err}"
        );
    }
}

/// Regression (G5): `merge FILE FIFO` with no writer on the FIFO was killed
/// by SIGTERM's default action (it waited in `open(2)` before the stop
/// signals were installed): nothing on stdout, even with `--json`, and the
/// file already named was lost. Now the sum of what was read is printed,
/// marked interrupted, and with only the FIFO the `--json` error object;
/// 128 + N either way.
#[test]
fn a_stop_signal_while_a_fifo_input_waits_for_its_writer_prints_what_was_read() {
    let good = passing();
    let dir = Dir::new("merge-fifo-input");
    let a = dir.file("a.json", &format!("{good}\n"));
    let fifo = dir.0.join("in.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let fifo = fifo.to_string_lossy().into_owned();
    for (files, sig, code) in [(vec![a.as_str(), &fifo], 15, 143), (vec![&fifo], 2, 130)] {
        let mut cmd = Command::new(bin());
        cmd.args(["merge", "--json"]).args(&files);
        let spawned = Spawned::start(&mut cmd);
        let pid = spawned.pid;
        // Ready: the handler is there and the FIFO's open waits for a
        // writer (a.json was read before it). The attacked build waits
        // with no handler, and is signalled anyway.
        let ready = eventually(Duration::from_secs(10), || {
            catches(pid, sig as u32) && waits_for_a_writer(pid)
        });
        spawned.signal(sig);
        let (status, out, err) = spawned.finish(LIMIT);
        let (out, err) = (String::from_utf8_lossy(&out), String::from_utf8_lossy(&err));
        assert_eq!(
            status.code(),
            Some(code),
            "{files:?}: {status:?} [{out}] [{err}]"
        );
        assert!(ready, "{files:?}: never ready");
        let m = parse(&out);
        assert_eq!(m["interrupted"], true, "{m}");
        if files.len() == 2 {
            assert_eq!(m["signal"], "SIGTERM", "{m}");
            assert_eq!(m["connections"], 2, "{m}");
            assert_eq!(m["shards"][0]["source"], format!("{a} line 1"), "{m}");
        } else {
            assert_eq!(m["signal"], "SIGINT", "{m}");
            assert_eq!(
                m["error"], "interrupted by SIGINT before any report was read",
                "{m}"
            );
        }
    }
}

/// A FIFO input is still read when its writer comes late (not a
/// regression: the open moved to the input thread).
#[test]
fn a_fifo_input_is_read_when_its_writer_comes() {
    let good = passing();
    let dir = Dir::new("merge-fifo-late");
    let fifo = dir.0.join("in.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let fifo = fifo.to_string_lossy().into_owned();
    let mut cmd = Command::new(bin());
    cmd.args(["merge", "--json", &fifo]);
    let spawned = Spawned::start(&mut cmd);
    // A writer that comes after merge has started (and waits in its open).
    std::thread::sleep(Duration::from_millis(300));
    // Opening for writing blocks until merge opens it for reading.
    std::fs::write(&fifo, format!("{good}\n")).expect("write the FIFO");
    let (status, out, err) = spawned.finish(LIMIT);
    let (out, err) = (String::from_utf8_lossy(&out), String::from_utf8_lossy(&err));
    assert_eq!(status.code(), Some(0), "{out} {err}");
    assert_eq!(parse(&out)["connections"], 2);
}
