//! `lsbaws audit`: defunct children of a PID in /proc (issue: audit).

use crate::Outcome;
use crate::cli::AuditArgs;

pub fn run(_args: &AuditArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("audit is not yet implemented")
}
