//! Rendering only: tables, JSON, JUnit XML, manual pages and the progress
//! bar's look, from plain report data into `impl Write`.
//!
//! One submodule per command, plus [`json`] for JSON that carries no raw
//! control character (names from other processes go through `crate::text`).
//! Must never compute results, read the clock, decide a verdict or choose where
//! output goes: callers pass the writer (stdout in `cmd`, a buffer in tests).

pub mod audit;
pub mod blast;
pub mod exec;
pub mod histogram;
pub mod json;
pub mod junit;
pub mod merge;
pub mod progress;
pub mod serve;
pub mod smoke;

use comfy_table::{Table, presets};

/// The house table style: plain ASCII borders, so output pastes into CI logs
/// and issues unchanged.
pub fn table() -> Table {
    let mut table = Table::new();
    table.load_preset(presets::ASCII_MARKDOWN);
    table
}

/// Text from another process (a comm, a command line) as a table cell:
/// `|` written `\|` and `\` written `\\` (Markdown's own escapes, so a name
/// cannot add columns for a Markdown reader of these tables, nor end one
/// with a backslash of its own), then made safe by `crate::text::escape`.
pub fn cell(s: &str) -> String {
    if !s.contains(['|', '\\']) {
        return crate::text::escape(s).into_owned();
    }
    crate::text::escape(&s.replace('\\', r"\\").replace('|', r"\|")).into_owned()
}

#[cfg(test)]
mod tests {
    use super::cell;

    /// Attack 3, F20: a `|` in a name added a column for a Markdown reader.
    #[test]
    fn a_name_cannot_add_a_column_or_end_a_cell() {
        assert_eq!(cell("plain name"), "plain name");
        assert_eq!(cell("x|1|2|"), r"x\|1\|2\|");
        // A backslash of the name's own cannot cancel the escape of a `|`.
        assert_eq!(cell(r"a\|b"), r"a\\\|b");
        assert_eq!(cell("q\n|\x1b"), r"q\n\|\x1b");
    }
}
