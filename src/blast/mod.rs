//! `lsbaws blast`: N simultaneous connections on tokio (issue: blast).

use crate::Outcome;
use crate::cli::BlastArgs;

pub fn run(_args: &BlastArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("blast is not yet implemented")
}
