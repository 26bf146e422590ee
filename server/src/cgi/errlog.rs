//! A CGI program's stderr, relayed into the server's log.
//!
//! Owns how a program's diagnostics reach the operator: one log line per line
//! the program wrote, prefixed with the program's name, escaped (no control
//! sequence or bidi override from a program reaches a terminal), written with
//! the log's one non-blocking write (a reader that stops costs a dropped,
//! counted line, never a blocked program), at most [`LINE_MAX`] bytes a line
//! and [`STDERR_MAX`] a request. Must never block or write raw bytes.

use super::Cgi;
use crate::log;

/// Longest stderr line relayed as one log line; longer ones are split.
const LINE_MAX: usize = 512;
/// Stderr relayed per request; the rest is counted in one note.
const STDERR_MAX: usize = 64 * 1024;

/// The program's stderr, relayed as log lines: one escaped line per write,
/// each at most [`LINE_MAX`] bytes, at most [`STDERR_MAX`] per request.
pub(super) struct ErrLog {
    line: Vec<u8>,
    logged: usize,
    skipped: usize,
    prefix: String,
}

impl ErrLog {
    pub(super) fn new(cgi: &Cgi) -> Self {
        let mut prefix = String::from("lsbaws: CGI program ");
        log::escape_into(&mut prefix, cgi.program.as_os_str().as_encoded_bytes());
        prefix.push_str(" said: ");
        ErrLog {
            line: Vec::new(),
            logged: 0,
            skipped: 0,
            prefix,
        }
    }

    pub(super) fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.flush();
            } else {
                self.line.push(b);
                if self.line.len() >= LINE_MAX {
                    self.flush();
                }
            }
        }
    }

    fn flush(&mut self) {
        if self.line.is_empty() {
            return;
        }
        if self.logged + self.line.len() > STDERR_MAX {
            self.skipped += self.line.len();
        } else {
            self.logged += self.line.len();
            let mut text = self.prefix.clone();
            log::escape_into(&mut text, &self.line);
            text.push('\n');
            log::err(text.as_bytes());
        }
        self.line.clear();
    }

    pub(super) fn finish(&mut self) {
        self.flush();
        if self.skipped > 0 {
            let note = format!(
                "{}[{} more bytes of stderr not logged: over {} KiB from one request]\n",
                self.prefix,
                self.skipped,
                STDERR_MAX / 1024
            );
            log::err(note.as_bytes());
            self.skipped = 0;
        }
    }
}
