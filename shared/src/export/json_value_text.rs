//! The JSON-lines text of a record held as a value, without building it: its length (the
//! per-record cap and a page's size) and, for a reject, the start of it that a reject keeps.

use std::io;

use serde_json::Value;

use super::rows::MAX_RAW_LINE_BYTES;

/// Bytes of `value` written as one JSON-lines line (compact JSON, as `serde_json::to_writer`
/// writes it, and its newline), counted as it is written: nothing is allocated.
pub fn json_line_bytes(value: &Value) -> u64 {
    let mut counted = ByteCounter(0);
    // A `Value` has string keys and finite numbers, and counting never fails: no error can come.
    serde_json::to_writer(&mut counted, value).expect("a JSON value serialises");
    counted.0 + 1
}

/// The first [`MAX_RAW_LINE_BYTES`] bytes of `value`'s compact JSON text: all of it that a
/// [`super::rows::Reject`] keeps, written no further however large the record is.
pub(crate) fn json_text_start(value: &Value) -> Vec<u8> {
    let mut start = TextStart(Vec::new());
    // The writer refuses bytes past the limit to stop the serialiser there: that error is the
    // expected end, not a failure.
    let _ = serde_json::to_writer(&mut start, value);
    start.0
}

/// Counts the bytes written to it.
struct ByteCounter(u64);

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Keeps the first [`MAX_RAW_LINE_BYTES`] bytes written, then fails the write.
struct TextStart(Vec<u8>);

impl io::Write for TextStart {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = MAX_RAW_LINE_BYTES - self.0.len();
        if room == 0 && !buf.is_empty() {
            return Err(io::Error::other("a reject keeps no more of a record"));
        }
        let n = room.min(buf.len());
        self.0.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_and_starts_match_the_written_text() {
        let long = "é".repeat(5000);
        for value in [
            json!({"a": {"b": [1, 2.5, null]}, "k e.y": "\u{1F600}\n\t\"", "n": -0.0}),
            json!(u64::MAX),
            json!({ "long": long }),
        ] {
            let text = serde_json::to_vec(&value).unwrap();
            assert_eq!(json_line_bytes(&value), text.len() as u64 + 1);
            let start = json_text_start(&value);
            assert_eq!(start, text[..text.len().min(MAX_RAW_LINE_BYTES)]);
        }
    }
}
