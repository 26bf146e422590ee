//! The look of the live progress display on stderr: a bar when the number of
//! requests is known, a spinner with `--duration`.
//!
//! Owns the templates and the message text. Must never decide whether a
//! display is shown (`cmd` decides once: a terminal, no `--json`, no `-q`) or
//! read the counters it shows (the caller passes them in).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A hidden-until-drawn display for `planned` requests (None: a spinner).
pub fn bar(planned: Option<u64>) -> ProgressBar {
    match planned {
        Some(total) => {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style =
                ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {msg}")
                    .map(|s| s.progress_chars("=> "))
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        }
        None => {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let style =
                ProgressStyle::with_template("{elapsed_precise} {spinner} {pos} done, {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar
        }
    }
}

/// Shows `done` requests, `failed` of them, after `secs` seconds; `finishing`
/// once a `--duration` has passed and the last requests drain.
pub fn update(bar: &ProgressBar, done: u64, failed: u64, secs: f64, finishing: bool) {
    bar.set_position(done);
    if finishing {
        bar.set_message(format!("{failed} errors, finishing"));
    } else {
        bar.set_message(format!(
            "{:.0} conn/s, {failed} errors",
            done as f64 / secs.max(1e-3)
        ));
    }
}
