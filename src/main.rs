//! The `lsbaws` binary: parse, dispatch, turn the outcome into an exit code.
//! Synchronous on purpose: `serve` forks, so nothing may start a thread first.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = lsbaws::cli::Cli::parse();
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
