//! `lsbaws audit -- COMMAND` and the descriptors it shares with COMMAND,
//! against the third hostile test (notes/attack-3.md): closed descriptors
//! passed on as closed (F15). Each test names its finding and how it failed
//! on the attacked build (`LSBAWS_TEST_BIN=/work/bin/lsbaws-main3`).

use std::process::Command;

use crate::audit_exec::LIMIT;
use crate::common::*;

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
