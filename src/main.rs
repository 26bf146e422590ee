//! The `lsbaws` binary: parse, run, exit. Synchronous on purpose: `serve` forks,
//! so nothing may start a thread first.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let code = match lsbaws::cli::Cli::try_parse() {
        Ok(cli) => lsbaws::run(cli),
        Err(err) => lsbaws::usage_error(&err),
    };
    ExitCode::from(code)
}
