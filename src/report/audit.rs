//! Rendering of `audit` reports.
