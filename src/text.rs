//! Text that came from elsewhere (a process's `comm` or command line, a server's
//! output) made safe to print: no control sequence, line break or bidi override
//! reaches a terminal, a CI log, JSON or XML.
//!
//! Owns the list of dangerous characters and their visible form; used by
//! `render` and by the error messages engines build. Depends on nothing; must
//! never change a safe character, so that ordinary names print as they are.

use std::borrow::Cow;

/// Whether `c` must never be printed raw: C0 controls and DEL (escape sequences,
/// line breaks that forge rows), C1 controls (8-bit CSI), the Unicode bidi
/// controls that reorder a line (Trojan Source), line and paragraph separators,
/// the BOM, and the noncharacters U+FFFE/U+FFFF (not allowed in XML).
pub fn is_dangerous(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{61c}'
        | '\u{200e}' | '\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}'
        | '\u{2028}' | '\u{2029}'
        | '\u{feff}'
        | '\u{fffe}' | '\u{ffff}')
}

/// `s` with each dangerous character written visibly: `\n`, `\r`, `\t`, `\x1b`,
/// `\u{202e}`. Borrowed when there is nothing to escape.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_dangerous) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_dangerous(c) && (c as u32) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if is_dangerous(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `1 zombie`, `2 zombies`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangerous_characters_become_visible() {
        assert_eq!(escape("worker"), "worker");
        assert!(matches!(escape("wörker ✓"), Cow::Borrowed(_)));
        assert_eq!(
            escape("x\n\x1b[2J\x1b]0;t\x07"),
            "x\\n\\x1b[2J\\x1b]0;t\\x07"
        );
        assert_eq!(escape("a\u{202e}b\u{9b}c"), "a\\u{202e}b\\u{9b}c");
        assert_eq!(escape("\t\r\u{7f}\u{ffff}"), "\\t\\r\\x7f\\u{ffff}");
        for c in [
            '\u{2066}', '\u{2069}', '\u{200f}', '\u{61c}', '\u{2028}', '\u{feff}',
        ] {
            assert!(!escape(&c.to_string()).contains(c), "{c:?}");
        }
    }

    /// The server crate keeps its own copy of the list (it depends on no other
    /// crate of the project, and runs it after fork): both must escape the same
    /// characters the same way, or `serve` logs could print what `audit` never
    /// would.
    #[test]
    fn the_server_escapes_exactly_what_this_module_escapes() {
        let mut buf = [0u8; 4];
        for c in (0..=0x10ffff_u32).filter_map(char::from_u32) {
            let mut server = String::new();
            lsbaws_server::log::escape_into(&mut server, c.encode_utf8(&mut buf).as_bytes());
            assert_eq!(server, escape(c.encode_utf8(&mut buf)), "{c:?}");
        }
    }
}
