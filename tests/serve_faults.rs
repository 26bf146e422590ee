//! Regression tests of `lsbaws serve` for issue 10 ("Verdicts you can trust"),
//! and of the harness that judges them.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// Test-suite item of issue 10: `stop()` must be able to fail. A process the
/// server's command left running (an orphaned `sleep` in its process group)
/// holds its output pipes; the old `stop()` joined their readers first and so
/// hung until it ended, and never looked for survivors.
#[test]
#[should_panic(expected = "survived")]
fn stop_fails_when_a_process_outlives_the_server() {
    let server = Server::start_with(
        Command::new("sh")
            .arg("-c")
            .arg("(sleep 60 &); exec \"$0\" serve --bind 127.0.0.1:0 --quiet")
            .arg(bin()),
    );
    // Dropped while unwinding, the guard kills the sleep with the group.
    let _ = server.stop(Duration::from_secs(10));
}
