//! `lsbaws audit -- COMMAND` and the descriptors and files it shares with
//! COMMAND, against the third hostile test (notes/attack-3.md): the report
//! after output without a final newline (F14), closed descriptors passed on
//! as closed (F15), and output files that fail or collide (F19). Each test
//! names its finding and how it failed on the attacked build
//! (`LSBAWS_TEST_BIN=/work/bin/lsbaws-main3`).

use std::process::Command;

use serde_json::Value;

use crate::audit_exec::{LIMIT, audit, text};
use crate::common::*;

/// F14: the report was glued to COMMAND's last line when that line had no
/// newline (`abc{"verdict":...}`: not JSON; `abclsbaws audit: PASS`). On
/// lsbaws-main3 the last line of `audit --json -- printf abc` did not parse.
/// The report now always starts on a line of its own.
#[test]
fn the_report_starts_on_a_line_of_its_own() {
    let (code, out, err) = audit(&["--json"], &["printf", "abc"]);
    assert_eq!(code, 0, "{}", text(&err));
    let out = text(&out);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("abc"), "{out:?}");
    let v: Value = serde_json::from_str(lines.next().unwrap_or(""))
        .unwrap_or_else(|e| panic!("the report is not a JSON line of its own ({e}): {out:?}"));
    assert_eq!(v["verdict"], "PASS", "{v}");
    assert_eq!(lines.next(), None, "{out:?}");

    let (code, out, _) = audit(&[], &["printf", "abc"]);
    assert_eq!(code, 0);
    let out = text(&out);
    assert!(out.starts_with("abc\nlsbaws audit: PASS ("), "{out:?}");

    // After output that ends with a newline, an empty line sets it apart.
    let (code, out, _) = audit(&[], &["echo", "abc"]);
    assert_eq!(code, 0);
    let out = text(&out);
    assert!(out.starts_with("abc\n\nlsbaws audit: PASS ("), "{out:?}");
}

/// Runs `sh -c SCRIPT` where SCRIPT execs `lsbaws audit --report /dev/null
/// -- sh -c PROBE` with some of its descriptors closed (`REDIRECTS`, such as
/// `>&-`); returns what PROBE wrote on the descriptor left open.
fn probe_closed(redirects: &str, probe: &str) -> String {
    let script = format!("exec \"$0\" audit --report /dev/null -- sh -c '{probe}' {redirects}");
    let (status, out, err) = run_bounded(Command::new("sh").args(["-c", &script, bin()]), LIMIT);
    assert!(status.success(), "{status}: {out}{err}");
    format!("{out}{err}")
}

/// F15: Rust's runtime opens /dev/null on a closed stdin, stdout or stderr,
/// and COMMAND inherited that: with lsbaws's stdout closed, `echo` in
/// COMMAND succeeded where it fails without lsbaws. On lsbaws-main3 every
/// probe below said `open`.
#[test]
fn closed_descriptors_reach_the_command_closed() {
    let probe = |fd: u8, to: u8| {
        format!("test -e /proc/$$/fd/{fd} && echo fd{fd}-open >&{to} || echo fd{fd}-closed >&{to}")
    };
    let said = probe_closed(">&- <&-", &format!("{}; {}", probe(1, 2), probe(0, 2)));
    assert!(said.contains("fd1-closed"), "{said}");
    assert!(said.contains("fd0-closed"), "{said}");
    let said = probe_closed("2>&-", &probe(2, 1));
    assert!(said.contains("fd2-closed"), "{said}");
    // Negative control: open descriptors stay open (and are not /dev/null).
    let said = probe_closed("", &format!("{}; {}", probe(1, 2), probe(2, 1)));
    assert!(
        said.contains("fd1-open") && said.contains("fd2-open"),
        "{said}"
    );
}

/// F19: an error writing --report (or --junit) turned COMMAND's own failure
/// into exit 2. The contract puts COMMAND's non-zero status first; the error
/// is still said on stderr. On lsbaws-main3 the first run exited 2, not 5.
#[test]
fn an_output_error_keeps_the_commands_own_failure() {
    for flag in ["--report", "--junit"] {
        let (code, _, err) = audit(&["--json", flag, "/dev/full"], &["sh", "-c", "exit 5"]);
        let err = text(&err);
        assert_eq!(code, 5, "{flag}: {err}");
        assert!(err.contains("/dev/full"), "{flag}: {err}");
    }
    // Negative control: with a command that passes, the error is exit 2.
    let (code, _, err) = audit(&["--report", "/dev/full"], &["true"]);
    assert_eq!(code, 2, "{}", text(&err));
}

/// F19: `--report F --junit F` emptied the same file twice, wrote both
/// documents from offset 0 (the file held the text report, then the tail of
/// the XML) and exited 0. Two outputs that are one file, or an output that
/// is the file stdout writes to, are refused before COMMAND runs. On
/// lsbaws-main3 the first run exited 0 and ran COMMAND.
#[test]
fn one_file_for_two_outputs_is_refused_before_the_command_runs() {
    let dir = TempDir::new("outputs");
    let file = dir.path("same.txt");
    let ran = dir.path("ran");
    let other_spelling = format!("{}/./same.txt", dir.0.display());
    let (code, out, err) = audit(
        &["--report", &file, "--junit", &other_spelling],
        &["touch", &ran],
    );
    let err = text(&err);
    assert_eq!(code, 2, "{}{err}", text(&out));
    assert!(err.contains("the same file"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        !std::path::Path::new(&ran).exists(),
        "COMMAND ran before the refusal"
    );

    // --report naming the file lsbaws's own stdout goes to: refused, and the
    // file keeps what it had (nothing was emptied).
    let log = dir.path("log.txt");
    std::fs::write(&log, "kept\n").expect("write log");
    let script = "exec \"$0\" audit --report \"$1\" -- touch \"$2\" >> \"$1\"";
    let (status, _, err) = run_bounded(
        Command::new("sh").args(["-c", script, bin(), &log, &ran]),
        LIMIT,
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("stdout"), "{err}");
    assert_eq!(std::fs::read_to_string(&log).expect("log"), "kept\n");
    assert!(!std::path::Path::new(&ran).exists());

    // Negative control: two files of their own are both written.
    let junit = dir.path("j.xml");
    let (code, _, err) = audit(&["--report", &file, "--junit", &junit], &["true"]);
    assert_eq!(code, 0, "{}", text(&err));
    let report = std::fs::read_to_string(&file).expect("report");
    assert!(report.starts_with("lsbaws audit: PASS"), "{report}");
    roxmltree::Document::parse(&std::fs::read_to_string(&junit).expect("junit"))
        .expect("well-formed JUnit");
}
