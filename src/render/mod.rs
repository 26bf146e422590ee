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
