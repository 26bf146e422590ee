//! Splits merge input into JSON documents, each with where it began, as the
//! bytes arrive: a [`Splitter`] holds only the unfinished line or document,
//! never the input read so far, so a fan-in of any size costs the memory of
//! one report.
//!
//! Input is what `blast --json` printed, saved to files or streamed from many
//! machines: `kubectl logs -l job-name=…` prints every pod's output one after
//! another, stdout and stderr together. A document is a JSON object that
//! begins a line, or a JSON array of them, and may span lines; several may
//! share a line. Before it a line may carry what tools put there: a UTF-8
//! BOM (Windows editors), a `kubectl logs --prefix` tag (`[pod/x/blast] `)
//! and a `kubectl logs --timestamps` RFC 3339 time, in that order. Other
//! non-blank lines (blast's one-line warnings on stderr, a shell's noise) are
//! skipped and counted: failing on them would fail the common case, and a pod
//! that printed only noise shows up as a missing report, which `--shards`
//! catches. A line that begins a document and does not parse is an error: a
//! truncated report must never be merged as a smaller count. So is a skipped
//! line that holds a blast report behind text this does not know: a report
//! must never be dropped as noise.
//!
//! Owns the splitting and positions. Must never read files (cmd does) or
//! judge what a document says (`shard` does).

use std::fmt;

use anyhow::bail;
use serde_json::Value;

use super::strict::Strict;

/// Where a document began: the input's name, a 1-based line, and its place
/// in a JSON array when it came in one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub source: String,
    pub line: usize,
    pub item: Option<usize>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}", self.source, self.line)?;
        match self.item {
            Some(item) => write!(f, " item {item}"),
            None => Ok(()),
        }
    }
}

/// One JSON value of the input.
#[derive(Debug, Clone)]
pub struct Document {
    pub at: Position,
    pub value: Value,
}

/// How the input stands when the splitter is asked to go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// More may come: an unfinished line or document waits for it.
    More,
    /// The input ended: what is left must be whole.
    Ended,
    /// A stop signal cut the input: an unfinished document is left out.
    Cut,
}

/// One input, split as it arrives.
#[derive(Debug)]
pub struct Splitter {
    source: String,
    /// Bytes not yet consumed start at `pos`; the rest was consumed (kept
    /// until [`Splitter::compact`] drops it).
    buf: Vec<u8>,
    pos: usize,
    /// The line number at `pos`.
    line: usize,
    /// No newline in `buf[pos..scanned]`: a long line is searched once.
    scanned: usize,
    /// A document at `pos` that ended early is parsed again only once this
    /// many bytes wait: each attempt reads them all, so growing by half
    /// keeps a document that arrives in many chunks linear, not quadratic.
    wait_for: usize,
    /// Non-blank lines that are not JSON, and the first of them.
    pub skipped: usize,
    pub first_skipped: Option<(Position, String)>,
    /// Documents found so far.
    pub documents: usize,
    /// The input was cut (a stop signal while reading) inside a document,
    /// which was left out.
    pub cut_inside: bool,
}

impl Splitter {
    pub fn new(source: &str) -> Splitter {
        Splitter {
            source: source.to_string(),
            buf: Vec::new(),
            pos: 0,
            line: 1,
            scanned: 0,
            wait_for: 0,
            skipped: 0,
            first_skipped: None,
            documents: 0,
            cut_inside: false,
        }
    }

    /// Takes the next bytes; returns the documents they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> anyhow::Result<Vec<Document>> {
        self.buf.extend_from_slice(bytes);
        self.step(End::More)
    }

    /// The input ended: returns the last documents, or an error when it ends
    /// inside one.
    pub fn finish(&mut self) -> anyhow::Result<Vec<Document>> {
        self.step(End::Ended)
    }

    /// The input was cut by a stop signal: returns the whole documents left,
    /// and leaves an unfinished one out (`cut_inside`).
    pub fn cut(&mut self) -> anyhow::Result<Vec<Document>> {
        self.step(End::Cut)
    }

    fn here(&self, item: Option<usize>) -> Position {
        Position {
            source: self.source.clone(),
            line: self.line,
            item,
        }
    }

    /// Consumes every whole line and document in the buffer.
    fn step(&mut self, end: End) -> anyhow::Result<Vec<Document>> {
        let mut out = Vec::new();
        // Bounded: each turn consumes at least one byte (a line or a
        // document), or leaves the loop.
        while self.pos < self.buf.len() {
            let from = self.scanned.max(self.pos);
            let line_end = match self.buf[from..].iter().position(|&b| b == b'\n') {
                Some(i) => from + i,
                None if end == End::More => {
                    self.scanned = self.buf.len();
                    break;
                }
                None => self.buf.len(),
            };
            let rest = &self.buf[self.pos..];
            let line = &rest[..line_end - self.pos];
            let offset = match start_of(line, rest, end != End::More) {
                Start::Noise => {
                    self.noise(line_end)?;
                    continue;
                }
                Start::NeedMore => break,
                Start::At(offset) => offset,
            };
            if end == End::More && rest.len() < self.wait_for {
                break;
            }
            let start = self.pos + offset;
            let mut stream =
                serde_json::Deserializer::from_slice(&self.buf[start..]).into_iter::<Strict>();
            match stream.next() {
                Some(Ok(Strict(value))) => {
                    let stop = start + stream.byte_offset();
                    self.found(value, &mut out);
                    let lines = self.buf[self.pos..stop]
                        .iter()
                        .filter(|&&b| b == b'\n')
                        .count();
                    self.line += lines;
                    (self.pos, self.scanned, self.wait_for) = (stop, stop, 0);
                }
                Some(Err(e)) if e.is_eof() => match end {
                    End::More => {
                        self.wait_for = rest.len() + rest.len() / 2 + 1;
                        break;
                    }
                    End::Cut => {
                        self.cut_inside = true;
                        self.pos = self.buf.len();
                        break;
                    }
                    End::Ended => bail!(
                        "{}: truncated JSON: the input ends inside this {}",
                        self.here(None),
                        if self.buf[start] == b'[' {
                            "array"
                        } else {
                            "object"
                        }
                    ),
                },
                Some(Err(e)) if e.is_data() => {
                    bail!("{}: {}", self.here(None), describe(&e))
                }
                Some(Err(e)) => {
                    let bad = self.line + e.line().saturating_sub(1);
                    bail!(
                        "{}: this JSON {} does not parse (truncated, or cut by other \
                         output?): {} at line {bad}",
                        self.here(None),
                        if self.buf[start] == b'[' {
                            "array"
                        } else {
                            "object"
                        },
                        describe(&e)
                    )
                }
                None => bail!("{}: internal: no JSON where one begins", self.here(None)),
            }
        }
        self.compact();
        Ok(out)
    }

    /// A document parsed at the current line: an object, or each item of an
    /// array of them.
    fn found(&mut self, value: Value, out: &mut Vec<Document>) {
        match value {
            Value::Array(items) => {
                for (i, value) in items.into_iter().enumerate() {
                    out.push(Document {
                        at: self.here(Some(i + 1)),
                        value,
                    });
                    self.documents += 1;
                }
            }
            value => {
                out.push(Document {
                    at: self.here(None),
                    value,
                });
                self.documents += 1;
            }
        }
    }

    /// Skips the line that ends at `line_end`, counting it unless blank;
    /// a blast report in it is an error, never noise.
    fn noise(&mut self, line_end: usize) -> anyhow::Result<()> {
        let text = String::from_utf8_lossy(&self.buf[self.pos..line_end]);
        if !text.trim().is_empty() {
            if holds_report(&text) {
                let head: String = text.chars().take(60).collect();
                bail!(
                    "{}: a blast report behind text merge does not know ({}…): a report \
                     starts a line, after at most a BOM, a `kubectl logs --prefix` tag and a \
                     `--timestamps` time",
                    self.here(None),
                    crate::text::escape(&head)
                );
            }
            self.skipped += 1;
            if self.first_skipped.is_none() {
                self.first_skipped = Some((self.here(None), text.chars().take(120).collect()));
            }
        }
        self.pos = (line_end + 1).min(self.buf.len());
        self.scanned = self.pos;
        self.line += 1;
        self.wait_for = 0;
        Ok(())
    }

    /// Drops consumed bytes once they are most of the buffer (so each byte
    /// is moved at most about once).
    fn compact(&mut self) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.scanned -= self.pos.min(self.scanned);
            self.pos = 0;
        }
    }
}

/// What a line begins with.
enum Start {
    /// Not a document: noise.
    Noise,
    /// A `[` whose next non-blank byte has not arrived yet.
    NeedMore,
    /// A document (`{`, or `[` then `{`) at this byte of the line.
    At(usize),
}

/// Where a document begins in `line`, the start of `rest` (everything not
/// yet consumed, to look past the line for an array's first object).
/// `at_end`: nothing more will arrive.
fn start_of(line: &[u8], rest: &[u8], at_end: bool) -> Start {
    let mut i = skip_blank(line, 0);
    if line.get(i) == Some(&b'[') {
        match array_of_objects(rest, i, at_end) {
            Some(true) => return Start::At(i),
            None => return Start::NeedMore,
            Some(false) => {}
        }
    }
    if let Some(after) = kubectl_prefix(line, i) {
        i = after;
    }
    if let Some(after) = timestamp(line, i) {
        i = after;
    }
    i = skip_blank(line, i);
    match line.get(i) {
        Some(b'{') => Start::At(i),
        Some(b'[') => match array_of_objects(rest, i, at_end) {
            Some(true) => Start::At(i),
            None => Start::NeedMore,
            Some(false) => Start::Noise,
        },
        _ => Start::Noise,
    }
}

/// `i` moved past blanks and UTF-8 BOMs.
fn skip_blank(line: &[u8], mut i: usize) -> usize {
    const BOM: &[u8] = b"\xef\xbb\xbf";
    loop {
        match line.get(i..) {
            Some([b' ' | b'\t' | b'\r', ..]) => i += 1,
            Some(r) if r.starts_with(BOM) => i += BOM.len(),
            _ => return i,
        }
    }
}

/// Whether the `[` at `rest[i]` opens an array whose first item is an
/// object; None when the bytes that tell have not arrived.
fn array_of_objects(rest: &[u8], i: usize, at_end: bool) -> Option<bool> {
    let after = rest.get(i + 1..).unwrap_or_default();
    match after.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b) => Some(*b == b'{'),
        None if at_end => Some(false),
        None => None,
    }
}

/// After a `kubectl logs --prefix` tag at `line[i]`: `[NAME] ` with no
/// blank inside the brackets.
fn kubectl_prefix(line: &[u8], i: usize) -> Option<usize> {
    let rest = line.get(i..)?;
    if rest.first() != Some(&b'[') {
        return None;
    }
    let close = rest.windows(2).position(|w| w == b"] ")?;
    (close > 1 && !rest[..close].iter().any(u8::is_ascii_whitespace)).then_some(i + close + 2)
}

/// After a `kubectl logs --timestamps` time at `line[i]` and its space: RFC
/// 3339, `2026-11-30T01:00:00.123456789Z` (kubectl's), any fraction or none,
/// `Z` or an offset.
fn timestamp(line: &[u8], i: usize) -> Option<usize> {
    let s = line.get(i..)?;
    let digits = |from: usize, n: usize| {
        s.get(from..from + n)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let at = |j: usize, c: &[u8]| s.get(j).is_some_and(|b| c.contains(b));
    let date_time = digits(0, 4)
        && at(4, b"-")
        && digits(5, 2)
        && at(7, b"-")
        && digits(8, 2)
        && at(10, b"Tt")
        && digits(11, 2)
        && at(13, b":")
        && digits(14, 2)
        && at(16, b":")
        && digits(17, 2);
    if !date_time {
        return None;
    }
    let mut j = 19;
    if at(j, b".") {
        let n = s[j + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        j += 1 + n;
    }
    if at(j, b"Zz") {
        j += 1;
    } else if at(j, b"+-") && digits(j + 1, 2) && at(j + 3, b":") && digits(j + 4, 2) {
        j += 6;
    } else {
        return None;
    }
    at(j, b" ").then_some(i + j + 1)
}

/// Whether a line holds a blast report's start (`"schema": "lsbaws-blast/`)
/// somewhere: a report behind a prefix this splitter does not know.
fn holds_report(text: &str) -> bool {
    text.match_indices("\"schema\"").any(|(i, key)| {
        let value = text[i + key.len()..].trim_start();
        value
            .strip_prefix(':')
            .is_some_and(|v| v.trim_start().starts_with("\"lsbaws-blast/"))
    })
}

/// serde_json's message without its own (relative) position.
fn describe(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// What one whole input held (tests, and callers that have it all).
#[derive(Debug, Default)]
pub struct Split {
    pub documents: Vec<Document>,
    pub skipped: usize,
    pub first_skipped: Option<(Position, String)>,
    pub cut_inside: bool,
}

/// Splits all of `text`, read from `source`. `cut`: the input did not end
/// but was cut off, so an unfinished last document is left out.
pub fn split(source: &str, text: &str, cut: bool) -> anyhow::Result<Split> {
    let mut s = Splitter::new(source);
    let mut documents = s.feed(text.as_bytes())?;
    documents.extend(if cut { s.cut()? } else { s.finish()? });
    Ok(Split {
        documents,
        skipped: s.skipped,
        first_skipped: s.first_skipped,
        cut_inside: s.cut_inside,
    })
}

#[cfg(test)]
mod tests;
