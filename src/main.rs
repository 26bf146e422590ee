//! The `lsbaws` binary: parse, dispatch, turn the outcome into an exit code.
//! Synchronous on purpose: `serve` forks, so nothing may start a thread first.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

fn main() -> ExitCode {
    let cli = match lsbaws::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    match lsbaws::run(cli) {
        Ok(outcome) => outcome.exit_code(),
        Err(err) if lsbaws::is_broken_pipe(&err) => {
            // `lsbaws audit | head -1` closing the pipe early is the reader's
            // choice, not a failure of ours (as ripgrep treats it).
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("lsbaws: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// `--help` and `--version` print as clap made them. Usage errors become one
/// line, `lsbaws: <what is wrong>`, like every other error of the tool, so CI
/// logs and scripts see one line and exit 2.
fn usage_error(err: &clap::Error) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            ExitCode::from(2)
        }
        _ => {
            let text = err.render().to_string();
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .collect();
            let mut line = String::new();
            for l in lines.iter().filter(|l| !l.starts_with("tip: ")) {
                let l = l.strip_prefix("error: ").unwrap_or(l);
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(l);
            }
            // Keep clap's "similar argument" tips; drop its advice to pass a
            // negative number after `--`, which would make it a positional.
            for tip in lines.iter().filter_map(|l| l.strip_prefix("tip: ")) {
                if !tip.contains("'-- ") {
                    line.push_str(&format!(" ({tip})"));
                }
            }
            eprintln!("lsbaws: {line}; see --help");
            ExitCode::from(2)
        }
    }
}
