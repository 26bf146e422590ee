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
//! line that holds a blast report behind text this does not know, or
//! JSON-escaped inside another format: a report must never be dropped as
//! noise.
//!
//! Owns the splitting and positions. Must never read files (cmd does) or
//! judge what a document says (`shard` does).

use std::fmt;

use anyhow::bail;
use serde_json::Value;

use super::strict::Strict;
use line::{Held, Start, holds_report, start_known, start_of};

/// Where a document began: the input's name, a 1-based line, and its place
/// in a JSON array when it came in one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub source: String,
    pub line: usize,
    pub item: Option<usize>,
}

impl Position {
    /// As it displays, with the source's name as it is (a file name may hold
    /// any byte): for the report's rows, which their renderers escape.
    pub fn text(&self) -> String {
        match self.item {
            Some(item) => format!("{} line {} item {item}", self.source, self.line),
            None => format!("{} line {}", self.source, self.line),
        }
    }
}

/// For messages: the source's name escaped.
impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} line {}",
            crate::text::escape(&self.source),
            self.line
        )?;
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

/// Where the splitter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between documents: at a line's start, or after a document on it.
    Lines,
    /// Inside a JSON array that began on `line`, `items` read: its items
    /// are read one at a time, so an array of any length costs the memory
    /// of one report, as a stream of lines does.
    Array {
        line: usize,
        items: usize,
        next: Next,
    },
}

/// What an array expects after the blanks at `pos`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The byte that tells whether the `[` opened an array of reports (`{`)
    /// or was a line of noise (kept in `Splitter::opened`).
    First,
    Item,
    CommaOrEnd,
}

/// How much of a `[` line is kept while the next line decides what it is.
const OPENED_TEXT: usize = 512;

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
    /// No newline in `buf[pos..scanned]`: a long line is searched once,
    /// whatever it begins with.
    scanned: usize,
    /// A document at `pos` that ended early is parsed again only once this
    /// many bytes wait: each attempt reads them all, so growing by half
    /// keeps a document that arrives in many chunks linear, not quadratic.
    wait_for: usize,
    state: State,
    /// A `[` line whose blanks go on past it, with where it was: noise
    /// unless the next non-blank byte is `{`.
    opened: Option<(Position, String)>,
    /// Non-blank lines that are not JSON, and the first of them.
    pub skipped: usize,
    pub first_skipped: Option<(Position, String)>,
    /// Documents found so far (each item of an array is one).
    pub documents: usize,
    /// The input was cut (a stop signal while reading) inside a document,
    /// which was left out (inside an array: the items read are in).
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
            state: State::Lines,
            opened: None,
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

    /// Consumes bytes up to `to`, counting the lines they end.
    fn advance(&mut self, to: usize) {
        let lines = self.buf[self.pos..to].iter().filter(|&&b| b == b'\n');
        self.line += lines.count();
        self.pos = to;
    }

    /// Consumes every whole line, document and array item in the buffer.
    /// Each byte is looked at a bounded number of times (a document that
    /// ends early waits for half as much again), so the work is linear in
    /// the input however it is cut into chunks.
    fn step(&mut self, end: End) -> anyhow::Result<Vec<Document>> {
        let mut out = Vec::new();
        // Bounded: each turn consumes at least one byte, or changes state
        // to one that does, or leaves the loop.
        loop {
            let go_on = match self.state {
                State::Lines => self.line_step(end, &mut out)?,
                State::Array { line, items, next } => {
                    self.array_step(end, (line, items, next), &mut out)?
                }
            };
            if !go_on {
                break;
            }
        }
        self.compact();
        Ok(out)
    }

    /// The line at `pos`: noise, an object, or the `[` of an array.
    fn line_step(&mut self, end: End, out: &mut Vec<Document>) -> anyhow::Result<bool> {
        if self.pos >= self.buf.len() {
            return Ok(false);
        }
        // Whatever the line turns out to be, the bytes searched are never
        // searched again (an object that waits for more of itself comes
        // back here with each chunk).
        let from = self.scanned.max(self.pos);
        let newline = self.buf[from..].iter().position(|&b| b == b'\n');
        self.scanned = newline.map_or(self.buf.len(), |i| from + i);
        let (line_end, start) = match newline {
            Some(i) => (from + i, start_of(&self.buf[self.pos..from + i])),
            // A line not ended yet may already show a document's start: an
            // array of reports on one line (`json.dump` of a list) is then
            // read item by item, not held whole until its newline.
            None if end == End::More => match start_known(&self.buf[self.pos..]) {
                Some(start) => (self.buf.len(), start),
                None => return Ok(false),
            },
            None => (self.buf.len(), start_of(&self.buf[self.pos..])),
        };
        let line = &self.buf[self.pos..line_end];
        match start {
            Start::Noise => {
                self.noise(line_end)?;
                Ok(true)
            }
            Start::Array(offset) => {
                let kept = &line[..line.len().min(OPENED_TEXT)];
                let text = String::from_utf8_lossy(kept).into_owned();
                self.opened = Some((self.here(None), text));
                self.state = State::Array {
                    line: self.line,
                    items: 0,
                    next: Next::First,
                };
                self.advance(self.pos + offset + 1);
                Ok(true)
            }
            Start::Object(offset) => {
                self.advance(self.pos + offset);
                self.value(end, None, out)
            }
        }
    }

    /// Inside an array: past blanks, then its first item's `{`, an item, or
    /// the `,` or `]` after one.
    fn array_step(
        &mut self,
        end: End,
        (line, items, next): (usize, usize, Next),
        out: &mut Vec<Document>,
    ) -> anyhow::Result<bool> {
        let array_at = Position {
            source: self.source.clone(),
            line,
            item: None,
        };
        let blanks = self.buf[self.pos..]
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
        let Some(blanks) = blanks else {
            self.advance(self.buf.len());
            return match (end, next) {
                (End::More, _) => Ok(false),
                (_, Next::First) => {
                    self.not_an_array()?;
                    Ok(true)
                }
                (End::Cut, _) => {
                    self.cut_inside = true;
                    Ok(false)
                }
                (End::Ended, _) => {
                    bail!("{array_at}: truncated JSON: the input ends inside this array")
                }
            };
        };
        self.advance(self.pos + blanks);
        let set = |next| State::Array { line, items, next };
        match (next, self.buf[self.pos]) {
            (Next::First, b'{') => {
                self.opened = None;
                self.state = set(Next::Item);
            }
            (Next::First, _) => self.not_an_array()?,
            (Next::Item, _) => return self.value(end, Some((line, items + 1)), out),
            (Next::CommaOrEnd, b',') => {
                self.advance(self.pos + 1);
                self.state = set(Next::Item);
            }
            (Next::CommaOrEnd, b']') => {
                self.advance(self.pos + 1);
                self.state = State::Lines;
            }
            (Next::CommaOrEnd, _) => bail!(
                "{array_at}: this JSON array does not parse (truncated, or cut by other \
                 output?): expected `,` or `]` after item {items} at line {}",
                self.line
            ),
        }
        Ok(true)
    }

    /// The `[` line kept in `opened` was not an array of reports: it is a
    /// line of noise, and reading goes on at `pos` (the blanks after it
    /// consumed).
    fn not_an_array(&mut self) -> anyhow::Result<()> {
        self.state = State::Lines;
        if let Some((at, text)) = self.opened.take() {
            self.skip(at, &text)?;
        }
        Ok(())
    }

    /// The JSON value at `pos`: an object that begins a line, or the item
    /// `item` (the array's line, the item's number) of an array. Returns
    /// whether to go on.
    fn value(
        &mut self,
        end: End,
        item: Option<(usize, usize)>,
        out: &mut Vec<Document>,
    ) -> anyhow::Result<bool> {
        let waiting = self.buf.len() - self.pos;
        if end == End::More && waiting < self.wait_for {
            return Ok(false);
        }
        let (at, what) = match item {
            Some((line, n)) => {
                let at = Position {
                    source: self.source.clone(),
                    line,
                    item: Some(n),
                };
                (at, "array")
            }
            None => (self.here(None), "object"),
        };
        let start_at = Position {
            item: None,
            ..at.clone()
        };
        let mut stream =
            serde_json::Deserializer::from_slice(&self.buf[self.pos..]).into_iter::<Strict>();
        match stream.next() {
            Some(Ok(Strict(value))) => {
                let stop = self.pos + stream.byte_offset();
                // A number (an item that is no report) may go on in the
                // bytes still to come.
                if end == End::More && stop == self.buf.len() && !value.is_object() {
                    self.wait_for = waiting + waiting / 2 + 1;
                    return Ok(false);
                }
                out.push(Document { at, value });
                self.documents += 1;
                self.advance(stop);
                self.wait_for = 0;
                if let State::Array { line, items, .. } = self.state {
                    self.state = State::Array {
                        line,
                        items: items + 1,
                        next: Next::CommaOrEnd,
                    };
                }
                Ok(true)
            }
            Some(Err(e)) if e.is_eof() => match end {
                End::More => {
                    self.wait_for = waiting + waiting / 2 + 1;
                    Ok(false)
                }
                End::Cut => {
                    self.cut_inside = true;
                    self.advance(self.buf.len());
                    Ok(false)
                }
                End::Ended => {
                    bail!("{start_at}: truncated JSON: the input ends inside this {what}")
                }
            },
            Some(Err(e)) if e.is_data() => bail!("{at}: {}", describe(&e)),
            Some(Err(e)) => {
                let bad = self.line + e.line().saturating_sub(1);
                bail!(
                    "{start_at}: this JSON {what} does not parse (truncated, or cut by other \
                     output?): {} at line {bad}",
                    describe(&e)
                )
            }
            None => bail!("{start_at}: internal: no JSON where one begins"),
        }
    }

    /// Skips the line that ends at `line_end`, counting it unless blank.
    fn noise(&mut self, line_end: usize) -> anyhow::Result<()> {
        let text = String::from_utf8_lossy(&self.buf[self.pos..line_end]).into_owned();
        self.skip(self.here(None), &text)?;
        self.advance((line_end + 1).min(self.buf.len()));
        self.wait_for = 0;
        Ok(())
    }

    /// Counts a line of noise at `at` unless blank; a blast report in it is
    /// an error, never noise.
    fn skip(&mut self, at: Position, text: &str) -> anyhow::Result<()> {
        if text.trim().is_empty() {
            return Ok(());
        }
        let head = || crate::text::escape(&text.chars().take(60).collect::<String>()).to_string();
        match holds_report(text) {
            Some(Held::Plain) => bail!(
                "{at}: a blast report behind text merge does not know ({}…): a report \
                 starts a line, after at most a BOM, a `kubectl logs --prefix` tag and a \
                 `--timestamps` time",
                head()
            ),
            Some(Held::Escaped) => bail!(
                "{at}: a blast report JSON-escaped inside another format ({}…): merge \
                 reads reports as blast printed them; take the report out of its log \
                 line first (for a log shipper's JSON: jq -r .log)",
                head()
            ),
            None => {}
        }
        self.skipped += 1;
        if self.first_skipped.is_none() {
            self.first_skipped = Some((at, text.chars().take(120).collect()));
        }
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

mod line;
#[cfg(test)]
mod tests;
