//! `lsbaws smoke`: start a server, blast it, audit it (issue: smoke).

use crate::Outcome;
use crate::cli::SmokeArgs;

pub fn run(_args: &SmokeArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("smoke is not yet implemented")
}
