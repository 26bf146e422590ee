//! Rendering of `blast` reports.
