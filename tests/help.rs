//! The command contract's text under review: every command's `--help` and
//! `-h`, and the usage errors, compared with the snapshots in
//! tests/snapshots/. A change to that text fails here until the snapshots are
//! regenerated, never edited by hand:
//!
//!     SNAPSHOTS=overwrite cargo test --test tests help::
//!
//! and the diff of tests/snapshots/ is reviewed with the change.
//!
//! The output must not depend on the machine: the binary runs with an empty
//! environment (no COLUMNS, no CLICOLOR_FORCE, no locale) and no terminal on
//! any of its descriptors, so clap wraps at its fixed default of 100 columns;
//! `wide_terminals_wrap_as_the_snapshots` checks the other half, that a wider
//! terminal changes nothing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{bin, run_bounded};

/// Longest any of these may take (they print and exit; a loaded machine).
const LIMIT: Duration = Duration::from_secs(60);

/// Runs `lsbaws ARGS` with `env` as its whole environment; the transcript
/// `$ lsbaws ARGS`, then the exit status, stdout and stderr, each labelled.
fn transcript(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(bin());
    cmd.args(args).env_clear().envs(env.iter().copied());
    let (status, stdout, stderr) = run_bounded(&mut cmd, LIMIT);
    let command = std::iter::once("lsbaws").chain(args.iter().copied());
    let mut text = format!("$ {}\n", command.collect::<Vec<_>>().join(" "));
    let _ = writeln!(text, "exit {}", status.code().map_or(-1, i64::from));
    for (name, out) in [("stdout", stdout), ("stderr", stderr)] {
        if out.is_empty() {
            let _ = writeln!(text, "--- {name}: empty");
        } else {
            let _ = write!(text, "--- {name}:\n{out}");
            if !out.ends_with('\n') {
                text.push_str("\n(no newline at the end)\n");
            }
        }
    }
    text
}

fn snapshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots")
}

/// Compares `actual` with the snapshot file (byte for byte: no wildcards, no
/// redactions); `SNAPSHOTS=overwrite` rewrites the file instead.
fn assert_snapshot(actual: String, file: &Path) {
    let expected = snapbox::Data::read_from(file, None).raw();
    snapbox::Assert::new()
        .action_env(snapbox::assert::DEFAULT_ACTION_ENV)
        .eq(actual, expected);
}

/// Every command a user can type, `lsbaws` itself first (MAN_PAGES is checked
/// against the clap definitions by a unit test in cli.rs): a new command
/// without a snapshot fails here.
fn commands() -> Vec<Vec<&'static str>> {
    let mut commands = vec![vec![]];
    commands.extend(lsbaws::cli::MAN_PAGES.iter().map(|name| vec![*name]));
    commands
}

/// The snapshot file of a command's help: tests/snapshots/help/lsbaws-blast.txt.
fn help_file(command: &[&str]) -> PathBuf {
    let name = std::iter::once("lsbaws")
        .chain(command.iter().copied())
        .collect::<Vec<_>>()
        .join("-");
    snapshots().join("help").join(format!("{name}.txt"))
}

#[test]
fn every_help_matches_its_snapshot() {
    for command in commands() {
        let mut text = String::new();
        for flag in ["--help", "-h"] {
            let args: Vec<&str> = command.iter().copied().chain([flag]).collect();
            let run = transcript(&args, &[]);
            assert!(run.contains("\nexit 0\n"), "{run}");
            assert!(run.contains("--- stderr: empty\n"), "{run}");
            text.push_str(&run);
            text.push('\n');
        }
        assert_snapshot(text, &help_file(&command));
    }
}

/// `lsbaws help blast` is `lsbaws blast --help`.
#[test]
fn the_help_command_prints_the_long_help() {
    for command in commands().into_iter().filter(|c| !c.is_empty()) {
        let long: Vec<&str> = command.iter().copied().chain(["--help"]).collect();
        let via_help: Vec<&str> = ["help"]
            .into_iter()
            .chain(command.iter().copied())
            .collect();
        let (a, b) = (transcript(&long, &[]), transcript(&via_help, &[]));
        let body = |t: &str| t.split_once('\n').map(|(_, rest)| rest.to_string());
        assert_eq!(body(&a), body(&b), "{command:?}");
    }
}

/// No snapshot is left over from a command that no longer exists (it would
/// pass review unseen).
#[test]
fn no_help_snapshot_without_a_command() {
    let wanted: Vec<PathBuf> = commands().iter().map(|c| help_file(c)).collect();
    for entry in std::fs::read_dir(snapshots().join("help")).expect("tests/snapshots/help") {
        let path = entry.expect("entry").path();
        assert!(
            wanted.contains(&path),
            "{} belongs to no command: delete it",
            path.display()
        );
    }
}

/// clap wraps help to the terminal's width; `max_term_width` caps it at 100,
/// so a wide terminal (or a COLUMNS of 300 in CI's environment) prints what
/// the snapshots hold. (A narrower terminal wraps narrower, as it should.)
#[test]
fn wide_terminals_wrap_as_the_snapshots() {
    for command in commands() {
        let args: Vec<&str> = command.iter().copied().chain(["--help"]).collect();
        let default = transcript(&args, &[]);
        let wide = transcript(&args, &[("COLUMNS", "300")]);
        assert_eq!(default, wide, "{command:?}");
    }
}

/// Usage errors: one line on stderr, `lsbaws: <what is wrong>; see --help`,
/// exit 2, and with `--json` also one JSON object on stdout.
const USAGE_ERRORS: &[&[&str]] = &[
    &[],
    &["bogus"],
    &["blast", "--max-client", "5"],
    &["blast", "--json", "--max-clients", "many"],
    &["blast", "--raw-request", "x", "-X", "POST"],
    &["blast", "--timeout", "soon"],
    &["serve", "--reaper", "sometimes"],
    &["serve", "--cgi-arg", "x"],
    &["audit"],
    &["audit", "--all", "--pid", "1"],
    &["audit", "--pid", "1", "--count", "3"],
    &["audit", "--pid", "1", "--", "true"],
    &[
        "audit", "--json", "--pid", "1", "--watch", "1s", "--settle", "1s",
    ],
    &["smoke", "--max-clients", "-1"],
    &["merge"],
    &["completions"],
    &["completions", "tcsh"],
    &["man", "help"],
];

#[test]
fn usage_errors_match_their_snapshot() {
    let mut text = String::new();
    for args in USAGE_ERRORS {
        let run = transcript(args, &[]);
        assert!(run.contains("\nexit 2\n"), "{run}");
        text.push_str(&run);
        text.push('\n');
    }
    assert_snapshot(text, &snapshots().join("usage-errors.txt"));
}
