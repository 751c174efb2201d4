//! Text from export objects (names, URIs, errors that quote them) made safe to print: control
//! characters (ESC starts terminal escape sequences) and bidirectional overrides (U+202E shows
//! `gz.csv` as `vsc.zg`) are written as `\u{…}` escapes. Summaries, status lines and logs that
//! carry such text go through [`escaped`].

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` changes how a terminal shows what follows it: C0 and C1 controls, DEL, the
/// bidirectional marks, embeddings, overrides and isolates, and the line and paragraph
/// separators.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
                | '\u{2028}' | '\u{2029}'
        )
}

/// `text` with every control and bidirectional character escaped (`\u{1b}`, `\n`, `\u{202e}`);
/// borrowed unchanged when there is none.
pub fn escaped(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_overrides_are_escaped() {
        assert_eq!(
            escaped("a\u{1b}[2Jb\u{202e}zg.vsc\n\t\u{7f}\u{9b}"),
            "a\\u{1b}[2Jb\\u{202e}zg.vsc\\n\\t\\u{7f}\\u{9b}"
        );
        assert_eq!(
            escaped("\u{2066}x\u{2069}\u{200f}"),
            "\\u{2066}x\\u{2069}\\u{200f}"
        );
    }

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for text in ["Order Placed+é-20220921.csv.gz", "日本語", "", "a\\b"] {
            assert!(matches!(escaped(text), Cow::Borrowed(t) if t == text));
        }
    }
}
