//! Splits merge input into JSON documents, each with where it began.
//!
//! Input is what `blast --json` printed, saved to files or streamed from many
//! machines: `kubectl logs -l job-name=…` prints every pod's output one after
//! another, stdout and stderr together. So a document is any JSON value that
//! begins a line with `{` (also after a `kubectl logs --prefix` tag such as
//! `[pod/x/blast] `) and may span lines; several may share a line. Other
//! non-blank lines (blast's one-line warnings on stderr, a shell's noise) are
//! skipped and counted: failing on them would fail the common case, and a pod
//! that printed only noise shows up as a missing report, which `--shards`
//! catches. A line that begins with `{` and does not parse is an error: a
//! truncated report must never be merged as a smaller count.
//!
//! Owns the splitting and positions. Must never read files (cmd does) or
//! judge what a document says (`shard` does).

use std::fmt;

use anyhow::bail;
use serde_json::Value;

/// Where a document began: the input's name and a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub source: String,
    pub line: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}", self.source, self.line)
    }
}

/// One JSON value of the input.
#[derive(Debug, Clone)]
pub struct Document {
    pub at: Position,
    pub value: Value,
}

/// What one input held.
#[derive(Debug, Default)]
pub struct Split {
    pub documents: Vec<Document>,
    /// Non-blank lines that are not JSON, and the first of them.
    pub skipped: usize,
    pub first_skipped: Option<(Position, String)>,
    /// The input was cut (a stop signal while reading) inside a document,
    /// which was left out.
    pub cut_inside: bool,
}

/// Where a JSON document begins in `line` (after leading blanks or a
/// `kubectl logs --prefix` tag), if one does.
fn json_start(line: &str) -> Option<usize> {
    let trimmed = line.trim_start();
    let lead = line.len() - trimmed.len();
    if trimmed.starts_with('{') {
        return Some(lead);
    }
    // `[pod/NAME/CONTAINER] {...}`
    if trimmed.starts_with('[')
        && let Some(close) = trimmed.find("] ")
        && !trimmed[..close].contains(char::is_whitespace)
        && trimmed[close + 2..].starts_with('{')
    {
        return Some(lead + close + 2);
    }
    None
}

/// Splits `text`, read from `source`. `cut`: the input did not end but was
/// cut off, so an unfinished last document is left out instead of an error.
pub fn split(source: &str, text: &str, cut: bool) -> anyhow::Result<Split> {
    let mut out = Split::default();
    let mut pos = 0;
    let mut line = 1;
    // Bounded: each turn consumes at least one byte (a line or a document).
    while pos < text.len() {
        let line_end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
        let here = &text[pos..line_end];
        let Some(offset) = json_start(here) else {
            if !here.trim().is_empty() {
                out.skipped += 1;
                out.first_skipped.get_or_insert_with(|| {
                    let at = Position {
                        source: source.to_string(),
                        line,
                    };
                    (at, here.chars().take(120).collect())
                });
            }
            pos = line_end + 1;
            line += 1;
            continue;
        };
        let start = pos + offset;
        let at = Position {
            source: source.to_string(),
            line,
        };
        let mut stream = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(value)) => {
                let end = start + stream.byte_offset();
                line += text[pos..end].matches('\n').count();
                pos = end;
                out.documents.push(Document { at, value });
            }
            Some(Err(e)) if e.is_eof() && cut => {
                out.cut_inside = true;
                break;
            }
            Some(Err(e)) if e.is_eof() => {
                bail!("{at}: truncated JSON: the input ends inside this object")
            }
            Some(Err(e)) => {
                let bad = line + e.line().saturating_sub(1);
                bail!(
                    "{at}: this JSON object does not parse (truncated, or cut by other \
                     output?): {} at line {bad}",
                    describe(&e)
                )
            }
            None => bail!("{at}: internal: no JSON where one begins"),
        }
    }
    Ok(out)
}

/// serde_json's message without its own (relative) position.
fn describe(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &Split) -> Vec<usize> {
        s.documents.iter().map(|d| d.at.line).collect()
    }

    #[test]
    fn documents_among_noise_with_their_lines() {
        let text = "lsbaws: a warning on stderr\n\
                    {\"a\": 1}\n\
                    \n\
                    [pod/job-1-x/blast] {\"a\": 2}\n\
                    {\"a\":\n  3}  {\"a\": 4}\n\
                    trailing noise\n\
                    {\"a\": 5}";
        let s = split("stdin", text, false).expect("split");
        let values: Vec<i64> = s
            .documents
            .iter()
            .map(|d| d.value["a"].as_i64().expect("a"))
            .collect();
        assert_eq!(values, [1, 2, 3, 4, 5]);
        assert_eq!(lines(&s), [2, 4, 5, 6, 8]);
        assert_eq!(s.skipped, 2);
        let (at, first) = s.first_skipped.expect("first");
        assert_eq!(
            (at.to_string(), first.as_str()),
            ("stdin line 1".into(), "lsbaws: a warning on stderr")
        );
        assert!(!s.cut_inside);
    }

    #[test]
    fn truncated_objects_are_errors_naming_the_line() {
        let err = split("r.json", "{\"a\": 1}\n{\"a\": [1, 2", false).expect_err("eof");
        assert!(
            err.to_string().starts_with("r.json line 2: truncated JSON"),
            "{err}"
        );
        // A report cut off and followed by another pod's output.
        let err = split("stdin", "{\"a\": 1,\n{\"b\": 2}\n", false).expect_err("cut");
        let msg = err.to_string();
        assert!(
            msg.starts_with("stdin line 1: this JSON object does not parse"),
            "{msg}"
        );
        assert!(msg.ends_with("at line 2"), "{msg}");
        let err = split("stdin", "{not json}\n", false).expect_err("junk");
        assert!(err.to_string().starts_with("stdin line 1:"), "{err}");
    }

    #[test]
    fn a_cut_input_leaves_its_unfinished_object_out() {
        let s = split("stdin", "{\"a\": 1}\n{\"a\": ", true).expect("cut is fine");
        assert_eq!(s.documents.len(), 1);
        assert!(s.cut_inside);
    }

    #[test]
    fn nothing_but_noise_is_no_document() {
        let s = split("f", "\n\nhello\n[not a prefix] x\n", false).expect("split");
        assert!(s.documents.is_empty());
        assert_eq!(s.skipped, 2);
    }
}
