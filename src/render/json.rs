//! JSON output that is safe to print: serde_json's, with the characters of
//! [`crate::text::is_dangerous`] written as `\uXXXX` escapes.
//!
//! serde_json already escapes C0 controls; C1 controls, bidi overrides and
//! U+2028 would otherwise pass raw into a terminal or log. Escaping them keeps
//! the decoded value exact (a consumer sees the real name) while the bytes carry
//! no control. Must never change the document's meaning.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter, PrettyFormatter};

/// One JSON object on one line, newline-terminated.
pub fn line(value: &impl Serialize, out: &mut impl Write) -> io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, Safe(CompactFormatter));
    value.serialize(&mut ser).map_err(io::Error::from)?;
    writeln!(out)
}

/// One JSON object, indented, newline-terminated.
pub fn pretty(value: &impl Serialize, out: &mut impl Write) -> io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, Safe(PrettyFormatter::new()));
    value.serialize(&mut ser).map_err(io::Error::from)?;
    writeln!(out)
}

/// A formatter that escapes dangerous characters in strings and otherwise does
/// what the wrapped one does.
struct Safe<F>(F);

impl<F: Formatter> Formatter for Safe<F> {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some((i, c)) = rest
            .char_indices()
            .find(|&(_, c)| crate::text::is_dangerous(c))
        {
            writer.write_all(&rest.as_bytes()[..i])?;
            write!(writer, "\\u{:04x}", c as u32)?;
            rest = &rest[i + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }

    // The layout of the wrapped formatter (indentation for the pretty one).
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn end_object_key<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_key(w)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangerous_characters_are_escaped_and_the_value_kept() {
        let name = "x\n\x1b[2J\u{202e}\u{9b}ok ✓";
        let mut out = Vec::new();
        line(&serde_json::json!({ "comm": name }), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1);
        for bad in ['\x1b', '\u{202e}', '\u{9b}'] {
            assert!(!text.contains(bad), "{text:?}");
        }
        assert!(text.contains("\\u202e") && text.contains("ok ✓"), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["comm"], name);
    }

    #[test]
    fn pretty_output_keeps_its_layout() {
        let v = serde_json::json!({ "a": [1, 2], "b": { "c": "\u{2066}" } });
        let mut out = Vec::new();
        pretty(&v, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut expected = serde_json::to_string_pretty(&v)
            .unwrap()
            .replace('\u{2066}', "\\u2066");
        expected.push('\n');
        assert_eq!(text, expected);
    }
}
