//! What one line of merge input begins with: a document (after a BOM, a
//! `kubectl logs --prefix` tag and a `--timestamps` time), the `[` of an
//! array, or noise; and whether a line of noise hides a blast report.
//!
//! Owns only the looking at one line, in time linear in its length. Must
//! never consume input or keep state: the splitter does.

/// What a line begins with.
pub(super) enum Start {
    /// Not a document: noise.
    Noise,
    /// An object at this byte of the line.
    Object(usize),
    /// A `[` at this byte that may open an array of reports: `{` follows
    /// it on the line, or nothing does (then the next non-blank byte tells).
    Array(usize),
}

/// Where a document begins in `line` (a whole line, or the input's last
/// bytes).
pub(super) fn start_of(line: &[u8]) -> Start {
    let mut i = skip_blank(line, 0);
    if line.get(i) == Some(&b'[') && opens_array(line, i) {
        return Start::Array(i);
    }
    if let Some(after) = kubectl_prefix(line, i) {
        i = after;
    }
    if let Some(after) = timestamp(line, i) {
        i = after;
    }
    i = skip_blank(line, i);
    match line.get(i) {
        Some(b'{') => Start::Object(i),
        Some(b'[') if opens_array(line, i) => Start::Array(i),
        _ => Start::Noise,
    }
}

/// What the first bytes of a line not yet ended already tell for sure: an
/// object, or an array whose first `{` has come. None: wait for more (the
/// line may still turn out to be noise). Looks at most [`PEEK`] bytes, so
/// asking again as each chunk of a long line arrives stays linear.
pub(super) fn start_known(partial: &[u8]) -> Option<Start> {
    let head = &partial[..partial.len().min(PEEK)];
    // Each part of start_of decides on the bytes it has seen: more bytes
    // never change an object or an array that shows its `{`.
    match start_of(head) {
        Start::Object(i) => Some(Start::Object(i)),
        Start::Array(i) if head[i + 1..].iter().any(|b| !b.is_ascii_whitespace()) => {
            Some(Start::Array(i))
        }
        _ => None,
    }
}

/// How many bytes of a line [`start_known`] looks at: more than a prefix
/// ([`MOST_PREFIX`]), a time and some blanks take.
const PEEK: usize = 1024;

/// The longest `kubectl logs --prefix` tag: `[pod/NAME/CONTAINER]`, a pod
/// name being at most 253 bytes and a container's 63.
const MOST_PREFIX: usize = 512;

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

/// Whether the `[` at `line[i]` may open an array of reports: what follows
/// it on its line is blank or begins with `{`.
fn opens_array(line: &[u8], i: usize) -> bool {
    let after = line.get(i + 1..).unwrap_or_default();
    after
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_none_or(|&b| b == b'{')
}

/// After a `kubectl logs --prefix` tag at `line[i]`: `[NAME] ` with no
/// blank inside the brackets, and no longer than [`MOST_PREFIX`].
fn kubectl_prefix(line: &[u8], i: usize) -> Option<usize> {
    let rest = line.get(i..)?;
    if rest.first() != Some(&b'[') {
        return None;
    }
    let head = &rest[..rest.len().min(MOST_PREFIX)];
    let close = head.windows(2).position(|w| w == b"] ")?;
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

/// How a line of noise holds a blast report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Held {
    /// As blast printed it, behind a prefix this splitter does not know.
    Plain,
    /// JSON-escaped: the value of a JSON string in another format (a log
    /// shipper's `{"log": "{\"schema\":…"}`, logfmt `msg="{\"schema\":…"`).
    Escaped,
}

/// How many levels of JSON escaping [`holds_report`] undoes: a report
/// wrapped in a log line, and that line wrapped again by a second shipper.
const ESCAPE_LEVELS: usize = 3;

/// Whether a line holds a blast report's start (`"schema": "lsbaws-blast/`)
/// somewhere, and how. Each level of escaping is undone on the whole line,
/// string or not: where the strings of an unknown format begin is not
/// known, and a `\"schema\"` read as it stands is no key. Linear in the
/// line's length (a bounded number of passes).
pub(super) fn holds_report(text: &str) -> Option<Held> {
    if holds_plain(text) {
        return Some(Held::Plain);
    }
    let mut text = std::borrow::Cow::Borrowed(text);
    for _ in 0..ESCAPE_LEVELS {
        if !text.contains('\\') {
            return None;
        }
        text = std::borrow::Cow::Owned(unescape(&text));
        if holds_plain(&text) {
            return Some(Held::Escaped);
        }
    }
    None
}

/// `text` with one level of JSON string escapes undone wherever they are;
/// what JSON does not have (`\x`, a lone surrogate) is kept as it is.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let simple = match after.as_bytes().first() {
            Some(b'"') => Some('"'),
            Some(b'\\') => Some('\\'),
            Some(b'/') => Some('/'),
            Some(b'b') => Some('\u{8}'),
            Some(b'f') => Some('\u{c}'),
            Some(b'n') => Some('\n'),
            Some(b'r') => Some('\r'),
            Some(b't') => Some('\t'),
            _ => None,
        };
        let hex = after
            .strip_prefix('u')
            .and_then(|h| h.get(..4))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32);
        match (simple, hex) {
            (Some(c), _) => {
                out.push(c);
                rest = &after[1..];
            }
            (None, Some(c)) => {
                out.push(c);
                rest = &after[5..];
            }
            (None, None) => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether `text` holds `"schema": "lsbaws-blast/` as JSON reads it: its
/// strings decoded, so an encoder that writes `/` as `\/` or a letter as
/// `\u0073` hides no report.
fn holds_plain(text: &str) -> bool {
    let b = text.as_bytes();
    // Linear: each attempt reads a bounded number of bytes.
    b.iter().enumerate().any(|(i, &c)| {
        if c != b'"' {
            return false;
        }
        let Some((key, Some(after))) = json_string_head(b, i, 8) else {
            return false;
        };
        if key != "schema" {
            return false;
        }
        let j = skip_json_blank(b, after);
        if b.get(j) != Some(&b':') {
            return false;
        }
        let j = skip_json_blank(b, j + 1);
        json_string_head(b, j, REPORT_SCHEMA.len())
            .is_some_and(|(value, _)| value.starts_with(REPORT_SCHEMA))
    })
}

/// What a report's `schema` begins with.
const REPORT_SCHEMA: &str = "lsbaws-blast/";

fn skip_json_blank(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\r')) {
        i += 1;
    }
    i
}

/// The JSON string that opens at `b[i]` (a `"`), decoded up to `most`
/// characters, and the byte after its closing quote when it closes within
/// them. None: no string there, or an escape JSON does not have.
fn json_string_head(b: &[u8], i: usize, most: usize) -> Option<(String, Option<usize>)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut out = String::new();
    let mut j = i + 1;
    while out.chars().count() < most {
        match *b.get(j)? {
            b'"' => return Some((out, Some(j + 1))),
            b'\\' => {
                let c = match *b.get(j + 1)? {
                    b'"' => '"',
                    b'\\' => '\\',
                    b'/' => '/',
                    b'b' => '\u{8}',
                    b'f' => '\u{c}',
                    b'n' => '\n',
                    b'r' => '\r',
                    b't' => '\t',
                    b'u' => {
                        let hex = std::str::from_utf8(b.get(j + 2..j + 6)?).ok()?;
                        let c = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
                        j += 4;
                        c
                    }
                    _ => return None,
                };
                out.push(c);
                j += 2;
            }
            _ => {
                // A whole UTF-8 character (the text came from a &str).
                let len = match b[j] {
                    0..0x80 => 1,
                    0xe0..0xf0 => 3,
                    0xf0.. => 4,
                    _ => 2,
                };
                out.push_str(std::str::from_utf8(b.get(j..j + len)?).ok()?);
                j += len;
            }
        }
    }
    // The limit came first; a closing quote right there still counts.
    Some((out, (b.get(j) == Some(&b'"')).then_some(j + 1)))
}
