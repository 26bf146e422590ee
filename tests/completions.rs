//! `lsbaws completions SHELL`: bash loads the script and completes with it;
//! every shell's script names every command and the value hints (files, a
//! command after `--`) reach the shells that use them.

use std::process::Command;
use std::time::Duration;

use crate::common::{TempDir, lsbaws, run_bounded};

const LIMIT: Duration = Duration::from_secs(60);

fn script(shell: &str) -> String {
    let (status, stdout, stderr) = lsbaws(&["completions", shell], LIMIT);
    assert!(status.success(), "completions {shell}: {status}\n{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert!(!stdout.trim().is_empty(), "empty {shell} script");
    stdout
}

/// Runs `body` in a bash without startup files that has sourced the bash
/// script; returns its stdout (stderr must be empty).
fn bash(body: &str) -> String {
    let dir = TempDir::new("completions");
    let file = dir.path("lsbaws.bash");
    std::fs::write(&file, script("bash")).expect("write the script");
    let program = format!("source {file} || exit 9\n{body}");
    let (status, stdout, stderr) = run_bounded(
        Command::new("bash").args(["--norc", "--noprofile", "-c", &program]),
        LIMIT,
    );
    assert!(status.success(), "bash: {status}\n{stdout}\n{stderr}");
    assert!(stderr.is_empty(), "bash said: {stderr}");
    stdout
}

#[test]
fn bash_sources_the_script_and_registers_lsbaws() {
    let out = bash("complete -p lsbaws");
    assert!(
        out.contains("-F _lsbaws") && out.trim_end().ends_with(" lsbaws"),
        "{out}"
    );
}

/// What a user gets at the prompt: the words bash offers after TAB.
#[test]
fn bash_completes_commands_modes_and_pages() {
    // Calls the completion function as bash would for the words given; one
    // line per case, the offers after a colon.
    let out = bash(
        r#"offer() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*";
                  COMP_POINT=${#COMP_LINE}; COMPREPLY=();
                  _lsbaws lsbaws "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}";
                  echo "$*: ${COMPREPLY[*]}"; }
           offer lsbaws bl
           offer lsbaws serve --reaper ''
           offer lsbaws man ''
           offer lsbaws completions ''"#,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "lsbaws bl: blast");
    assert!(
        lines[1].ends_with(": loop once none ignore signalfd"),
        "{out}"
    );
    for page in lsbaws::cli::MAN_PAGES {
        assert!(lines[2].split(' ').any(|w| w == page), "man {page}: {out}");
    }
    for shell in ["bash", "elvish", "fish", "powershell", "zsh"] {
        assert!(lines[3].split(' ').any(|w| w == shell), "{shell}: {out}");
    }
}

/// zsh and fish are not run here (they are not on CI's machine); their
/// scripts are checked as text: every command, every command's flags, and
/// the value hints they turn into file or command completion.
#[test]
fn every_script_names_every_command() {
    use clap::CommandFactory;
    let cli = lsbaws::cli::Cli::command();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let text = script(shell);
        for command in cli.get_subcommands() {
            let name = command.get_name();
            // As each shell quotes a command's name in its list of commands.
            let quoted = match shell {
                "zsh" => format!("'{name}:"),
                "fish" => format!("-a \"{name}\""),
                "elvish" => format!("cand {name} '"),
                "powershell" => format!("new('{name}', '{name}'"),
                _ => format!("lsbaws,{name})"),
            };
            assert!(text.contains(&quoted), "{shell}: no {quoted} in the script");
            for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    assert!(text.contains(long), "{shell}: no --{long} of {name}");
                }
            }
        }
    }
}

#[test]
fn zsh_and_fish_complete_files_and_commands_where_flags_take_them() {
    let zsh = script("zsh");
    for flag in ["--cacert", "--junit", "--report", "--cgi"] {
        let hinted = zsh
            .lines()
            .any(|l| l.contains(&format!("{flag}=")) && l.contains(":_files"));
        assert!(hinted, "zsh: {flag} does not complete files");
    }
    assert!(zsh.contains("*::files -- Reports"), "zsh: merge's FILE");
    // audit's COMMAND and smoke's SERVER COMMAND: a command, then its arguments.
    assert_eq!(
        zsh.matches(":_cmdambivalent'").count(),
        2,
        "zsh: commands after --"
    );
    let fish = script("fish");
    for flag in ["-l cacert", "-l junit", "-l report", "-l cgi "] {
        let hinted = fish
            .lines()
            .any(|l| l.contains(flag) && l.ends_with("-r -F"));
        assert!(hinted, "fish: {flag} does not complete files");
    }
}

/// A reader that goes away (`| head -1`) stops the output and never changes
/// the exit code: the read end is closed before lsbaws writes a byte.
#[test]
fn a_closed_pipe_is_not_an_error() {
    for args in [&["completions", "bash"][..], &["man", "blast"]] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let mut cmd = Command::new(crate::common::bin());
        cmd.args(args);
        let mut child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        drop(cmd);
        let stderr = child.stderr.take().expect("stderr");
        let mut guard = crate::common::ProcGuard::new(child);
        let status = guard.wait_timeout(LIMIT).expect("lsbaws did not exit");
        let mut said = String::new();
        std::io::Read::read_to_string(&mut { stderr }, &mut said).expect("stderr");
        assert!(status.success(), "{args:?}: {status}: {said}");
        assert!(said.is_empty(), "{args:?}: {said}");
    }
}
