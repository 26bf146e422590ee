//! How a command ended, and the exit code that says so.
//!
//! Owns the mapping verdict → exit code, the one place the contract's codes are
//! written down. Depends on nothing; must never print or decide a verdict (the
//! engines' reports do that).

/// Exit code of an error that left no verdict: bad usage, a server that could not
/// start, a /proc read that failed for a reason other than "gone".
pub const ERROR: u8 = 2;

/// How a command that ran ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing over the limits: exit 0.
    Pass,
    /// A finding over the limits (failed requests, zombies, leftovers): exit 1.
    Finding,
    /// A stop signal ended the command before a verdict: exit 128 + the signal.
    Interrupted(i32),
    /// The run ended but could not do what was asked (the load generator ran
    /// out of descriptors, say): no verdict, exit 2.
    Inconclusive,
    /// A command run under `audit -- COMMAND` failed: its own exit code.
    Status(u8),
}

impl Outcome {
    /// `Finding` when `finding`, else `Pass`.
    pub fn of(finding: bool) -> Outcome {
        if finding {
            Outcome::Finding
        } else {
            Outcome::Pass
        }
    }

    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Pass => 0,
            Outcome::Finding => 1,
            // Shells report a death by signal N as 128 + N; saying it ourselves
            // keeps that meaning while still printing what was measured.
            Outcome::Interrupted(signal) => u8::try_from(128 + signal.clamp(1, 127)).unwrap_or(255),
            Outcome::Inconclusive => ERROR,
            Outcome::Status(code) => code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_contract() {
        assert_eq!(Outcome::Pass.code(), 0);
        assert_eq!(Outcome::Finding.code(), 1);
        assert_eq!(Outcome::Interrupted(2).code(), 130);
        assert_eq!(Outcome::Interrupted(15).code(), 143);
        assert_eq!(Outcome::Interrupted(1).code(), 129);
        assert_eq!(Outcome::Status(3).code(), 3);
        assert_eq!(Outcome::Inconclusive.code(), 2);
        assert_eq!(Outcome::of(true), Outcome::Finding);
    }
}
