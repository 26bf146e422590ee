//! `lsbaws man [COMMAND]`: every page renders under `groff -man -ww` (every
//! warning on) without one, and holds what `--help` holds: every flag, the
//! exit status and the examples.

use std::process::Command;
use std::time::Duration;

use crate::common::{TempDir, lsbaws, run_bounded};

const LIMIT: Duration = Duration::from_secs(60);

/// `lsbaws man PAGE` ("" for lsbaws(1)) into a file; its path.
fn page(dir: &TempDir, page: &str) -> String {
    let args: Vec<&str> = ["man"]
        .into_iter()
        .chain((!page.is_empty()).then_some(page))
        .collect();
    let (status, stdout, stderr) = lsbaws(&args, LIMIT);
    assert!(status.success(), "man {page}: {status}\n{stderr}");
    assert!(stderr.is_empty(), "man {page}: {stderr}");
    assert!(
        stdout.starts_with(".ie \\n(.g .ds Aq"),
        "man {page}: not roff"
    );
    let file = dir.path(&format!(
        "{}.1",
        if page.is_empty() { "lsbaws" } else { page }
    ));
    std::fs::write(&file, stdout).expect("write the page");
    file
}

/// groff on `file`; (status, stdout, stderr).
fn groff(args: &[&str], file: &str) -> (std::process::ExitStatus, String, String) {
    run_bounded(Command::new("groff").args(args).arg(file), LIMIT)
}

fn pages() -> Vec<&'static str> {
    std::iter::once("").chain(lsbaws::cli::MAN_PAGES).collect()
}

#[test]
fn every_page_renders_without_a_groff_warning() {
    let dir = TempDir::new("man");
    for name in pages() {
        let file = page(&dir, name);
        // -ww: every warning; -z: format, print nothing.
        let (status, _, stderr) = groff(&["-man", "-ww", "-Tutf8", "-z"], &file);
        assert!(status.success(), "man {name}: groff {status}\n{stderr}");
        assert!(stderr.is_empty(), "man {name}: groff warned:\n{stderr}");
    }
}

/// A bad page does warn, so the test above can see one (its negative control,
/// on every run).
#[test]
fn groff_warns_about_a_broken_page() {
    let dir = TempDir::new("man-broken");
    let file = page(&dir, "blast");
    let broken = std::fs::read_to_string(&file).expect("page") + ".XY not a macro\n\\fQ\n";
    std::fs::write(&file, broken).expect("write");
    let (_, _, stderr) = groff(&["-man", "-ww", "-Tutf8", "-z"], &file);
    assert!(stderr.contains("warning"), "groff said nothing: {stderr:?}");
}

/// Each page as plain text, one paragraph a line (no wrapping, no
/// hyphenation, no bold): what a reader sees.
fn text(dir: &TempDir, name: &str) -> String {
    let file = page(dir, name);
    let (status, stdout, stderr) = groff(&["-man", "-Tascii", "-rLL=10000n", "-P-cbou"], &file);
    assert!(status.success(), "{stderr}");
    stdout
}

#[test]
fn every_page_holds_its_flags_exit_status_and_examples() {
    use clap::CommandFactory;
    let dir = TempDir::new("man-text");
    let mut root = lsbaws::cli::Cli::command();
    root.build();
    for name in pages() {
        let text = text(&dir, name);
        let (title, cmd) = match name {
            "" => ("lsbaws".to_string(), &root),
            _ => (
                format!("lsbaws-{name}"),
                root.find_subcommand(name).expect(name),
            ),
        };
        let about = cmd.get_about().expect("about").to_string();
        assert!(
            text.contains(&format!("{title} - {about}")),
            "{name}: NAME\n{text}"
        );
        let synopsis = if name.is_empty() {
            "lsbaws [".to_string()
        } else {
            format!("lsbaws {name} [")
        };
        assert!(text.contains(&synopsis), "{name}: SYNOPSIS\n{text}");
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                assert!(text.contains(&format!("--{long}")), "{name}: no --{long}");
            }
        }
        for section in lsbaws::cli::help::sections(name) {
            let heading = format!("\n{}\n", section.title.to_uppercase());
            assert!(text.contains(&heading), "{name}: no {heading:?}\n{text}");
            for (_, lines) in section.examples {
                for line in lines.lines() {
                    assert!(text.contains(line.trim()), "{name}: example {line:?}");
                }
            }
        }
        assert!(text.contains("\nEXAMPLES\n"), "{name}: no examples");
        if name != "completions" && name != "man" {
            assert!(text.contains("\nEXIT STATUS"), "{name}: no exit status");
        }
    }
    // lsbaws(1) lists every command's page, and not clap's `help`.
    let text = text(&dir, "");
    for page in lsbaws::cli::MAN_PAGES {
        assert!(text.contains(&format!("lsbaws-{page}(1)")), "{page}");
    }
    assert!(!text.contains("lsbaws-help"), "{text}");
}
