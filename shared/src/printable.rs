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

/// A log writer that escapes, in each line it is handed, the characters [`escaped`] does, except
/// ESC and the line's own final newline: names quoted in log fields (object keys, raw headers,
/// errors that cite them) cannot reorder text or forge a line. ESC stays because the text
/// formatter colours with it and escapes ESC inside field values itself (tracing-subscriber
/// 0.3.20+), and JSON escapes every C0 control.
pub struct EscapedLines<W> {
    inner: W,
    json: bool,
}

impl<W> EscapedLines<W> {
    /// For text logs: U+202E is written `\u{202e}`.
    pub fn text(inner: W) -> Self {
        Self { inner, json: false }
    }

    /// For JSON logs: the escape's backslash is itself escaped, so the line stays valid JSON and
    /// the value reads `\u{202e}`.
    pub fn json(inner: W) -> Self {
        Self { inner, json: true }
    }
}

impl<W: std::io::Write> std::io::Write for EscapedLines<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let text = String::from_utf8_lossy(buf);
        let (line, end) = match text.strip_suffix('\n') {
            Some(line) => (line, "\n"),
            None => (&*text, ""),
        };
        let unsafe_here = |c: char| c != '\u{1b}' && is_unsafe(c);
        if !line.chars().any(unsafe_here) {
            return self.inner.write_all(buf);
        }
        let slash = if self.json { "\\\\" } else { "\\" };
        let mut out = String::with_capacity(line.len() + 16);
        for c in line.chars() {
            if unsafe_here(c) {
                let _ = write!(out, "{slash}u{{{:x}}}", c as u32);
            } else {
                out.push(c);
            }
        }
        out.push_str(end);
        self.inner.write_all(out.as_bytes())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
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

    #[test]
    fn log_lines_keep_colours_and_their_newline_and_lose_the_rest() {
        use std::io::Write;
        let mut text = EscapedLines::text(Vec::new());
        text.write_all("\u{1b}[32mINFO\u{1b}[0m uri=a\u{202e}zg.vsc\nfake line\u{9b}\n".as_bytes())
            .unwrap();
        text.write_all(b"plain\n").unwrap();
        assert_eq!(
            String::from_utf8(text.inner).unwrap(),
            "\u{1b}[32mINFO\u{1b}[0m uri=a\\u{202e}zg.vsc\\u{a}fake line\\u{9b}\nplain\n"
        );
        let mut json = EscapedLines::json(Vec::new());
        json.write_all("{\"uri\":\"a\u{202e}b\"}\n".as_bytes())
            .unwrap();
        let line = String::from_utf8(json.inner).unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["uri"], "a\\u{202e}b");
    }
}
