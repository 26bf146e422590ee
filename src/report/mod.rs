//! Rendering only: tables and JSON from plain report data, into `impl Write`.
//!
//! One submodule per command. Must never compute results or print on its own:
//! callers pass the writer (stdout in the binary, a buffer in tests).

pub mod audit;
pub mod blast;
pub mod smoke;

use comfy_table::{Table, presets};

/// The house table style: plain ASCII borders, so output pastes into CI logs
/// and issues unchanged.
pub fn table() -> Table {
    let mut table = Table::new();
    table.load_preset(presets::ASCII_MARKDOWN);
    table
}
