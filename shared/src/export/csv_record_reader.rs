//! The CSV export tokeniser: reads records the way the csv crate's reader does (csv-core's
//! RFC 4180 grammar: `,` between fields, a record ends at LF, CR or CRLF, blank lines skipped,
//! `"` opens a quoted field only at a field's start, `""` inside one is a quote), with the
//! record's raw bytes, stream positions and line at hand for rejects.
//!
//! Why not the csv crate: its reader copies every byte three times (its buffer, our tap of the
//! raw record, the unescaped record) and runs a byte-at-a-time state machine; it was the
//! parser's largest item. Here the decoded text is read into one buffer, and a record whose
//! quoted fields hold no doubled quote (nearly every exported record) is scanned with `memchr`
//! and handed out as ranges of that buffer. Any other record (a doubled quote, text after a
//! closing quote, an open quote at the end of the file) is read by csv-core itself from its
//! first byte, so its fields are exactly the csv crate's. The reads (64 KiB requests, made only
//! once every buffered byte is parsed), the record-size limit and the BOM rule are the csv
//! reader's and our former tap's; `csv_record_reader_equivalence` tests that against them.

use std::io::{self, Read};
use std::ops::Range;

use super::parse_error::RecordTooLargeError;

/// Bytes asked of the decoder per read: the csv reader's buffer size, kept so that the
/// record-size limit trips at the same reads as before.
pub(crate) const READ_BYTES: usize = 64 * 1024;
/// Dead bytes tolerated before they are dropped: compaction moves only the live tail, so its
/// cost stays a small fraction of the bytes read.
const COMPACT_AFTER_BYTES: usize = 256 * 1024;
/// Bytes held past a record's start may include a read's worth not part of the record.
const READ_AHEAD_SLACK: usize = 128 * 1024;
const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// Reads CSV records from decoded text; see the module's documentation.
pub(crate) struct CsvRecordReader {
    inner: Box<dyn Read + Send>,
    read_bytes: usize,
    max_record_bytes: usize,
    /// Text from stream offset `base`; `buf[..filled]` is read, the rest is room for reads.
    buf: Vec<u8>,
    base: u64,
    filled: usize,
    /// Parse position in `buf`.
    pos: usize,
    /// Bytes read so far.
    total: u64,
    eof: bool,
    first_read: bool,
    /// Line feeds before the current record's start.
    newlines: u64,
    /// Line feeds in the current record (leading blank lines included).
    record_newlines: u64,
    start: u64,
    end: u64,
    line: u64,
    /// Fields as ranges of the record text: the raw record from `text_at` (`raw_text`) or
    /// csv-core's unescaped output.
    fields: Vec<Range<usize>>,
    raw_text: bool,
    text_at: u64,
    text_len: usize,
    unescaped: Vec<u8>,
    ends: Vec<usize>,
    core: csv_core::Reader,
}

/// One record: its text and its fields as byte ranges of it. The text is either the raw
/// record (fields unquoted in place: separators and quotes lie between the ranges) or the
/// fields' unescaped bytes end to end, as the csv crate's `ByteRecord` holds them.
#[derive(Clone, Copy)]
pub(crate) struct CsvRecord<'r> {
    text: &'r [u8],
    fields: &'r [Range<usize>],
    raw_text: bool,
}

impl<'r> CsvRecord<'r> {
    /// Number of fields.
    pub(crate) fn len(&self) -> usize {
        self.fields.len()
    }

    /// Byte range of field `i` in [`text`](Self::text).
    pub(crate) fn range(&self, i: usize) -> Option<Range<usize>> {
        self.fields.get(i).cloned()
    }

    /// The text every field is a range of.
    pub(crate) fn text(&self) -> &'r [u8] {
        self.text
    }

    /// Whether the text is the raw record (only ASCII separators and quotes between fields),
    /// so that valid UTF-8 text means every field is valid UTF-8 on its own.
    pub(crate) fn text_is_raw(&self) -> bool {
        self.raw_text
    }

    /// The fields' bytes, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &'r [u8]> + 'r {
        let text = self.text;
        self.fields.iter().map(move |r| &text[r.clone()])
    }
}

/// What the fast scan of a record found.
enum Scanned {
    /// Fields in `self.fields` (relative to the record's first byte); the record ends at this
    /// offset from it, its text is this long, and a quoted field was met.
    Record {
        end: usize,
        text_len: usize,
        quoted: bool,
    },
    /// Not a record the fast scan reads exactly: csv-core reads it.
    Fallback,
}

impl CsvRecordReader {
    /// A reader of `inner` refusing records past `max_record_bytes` (as the csv reader over
    /// our tap did: checked at each read, with [`READ_AHEAD_SLACK`]).
    pub(crate) fn new(inner: Box<dyn Read + Send>, max_record_bytes: usize) -> Self {
        Self::with_read_bytes(inner, max_record_bytes, READ_BYTES)
    }

    /// [`new`](Self::new) with reads of `read_bytes` (tests use tiny ones).
    pub(crate) fn with_read_bytes(
        inner: Box<dyn Read + Send>,
        max_record_bytes: usize,
        read_bytes: usize,
    ) -> Self {
        let mut core = csv_core::Reader::new();
        // csv-core drops a BOM at the start of the first input it is given; here that is the
        // stream's start, handled in `fill`, never a quoted record's first byte. A line feed
        // is skipped as a blank line and leaves the reader at a record's start.
        let (primed, ..) = core.read_record(b"\n", &mut [0; 1], &mut [0; 1]);
        debug_assert!(matches!(primed, csv_core::ReadRecordResult::InputEmpty));
        Self {
            inner,
            read_bytes: read_bytes.max(1),
            max_record_bytes,
            buf: Vec::new(),
            base: 0,
            filled: 0,
            pos: 0,
            total: 0,
            eof: false,
            first_read: true,
            newlines: 0,
            record_newlines: 0,
            start: 0,
            end: 0,
            line: 1,
            fields: Vec::new(),
            raw_text: true,
            text_at: 0,
            text_len: 0,
            unescaped: Vec::new(),
            ends: Vec::new(),
            core,
        }
    }

    /// Reads the next record; `false` at the end of the text. The previous record's bytes
    /// are released.
    pub(crate) fn read_record(&mut self) -> io::Result<bool> {
        self.newlines += self.record_newlines;
        self.record_newlines = 0;
        self.start = self.end;
        self.fields.clear();
        // Blank lines and the LF of a CRLF come before a record's first byte.
        let mut leading = 0;
        loop {
            // (A first read of only a BOM leaves nothing to parse.)
            while self.pos == self.filled {
                if !self.more()? {
                    return Ok(false);
                }
            }
            match self.buf[self.pos] {
                b'\n' => leading += 1,
                b'\r' => {}
                _ => break,
            }
            self.pos += 1;
        }
        self.line = self.newlines + 1 + leading;
        let first = self.base + self.pos as u64;
        let newlines_in_record = match self.scan(first)? {
            Scanned::Record {
                end,
                text_len,
                quoted,
            } => {
                let at = (first - self.base) as usize;
                self.raw_text = true;
                self.text_at = first;
                self.text_len = text_len;
                self.pos = at + end;
                let record = &self.buf[at..at + end];
                if quoted {
                    count_newlines(record)
                } else {
                    u64::from(record.last() == Some(&b'\n'))
                }
            }
            Scanned::Fallback => {
                self.fields.clear();
                self.pos = (first - self.base) as usize;
                self.read_with_csv_core()?;
                count_newlines(&self.buf[(first - self.base) as usize..self.pos])
            }
        };
        self.end = self.base + self.pos as u64;
        self.record_newlines = leading + newlines_in_record;
        Ok(true)
    }

    /// The record last read.
    pub(crate) fn record(&self) -> CsvRecord<'_> {
        let text = if self.raw_text {
            let at = (self.text_at - self.base) as usize;
            &self.buf[at..at + self.text_len]
        } else {
            &self.unescaped[..self.text_len]
        };
        CsvRecord {
            text,
            fields: &self.fields,
            raw_text: self.raw_text,
        }
    }

    /// Stream offset where the record last read starts (after the previous one's end, so
    /// blank lines and the LF of a CRLF before it are included).
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    /// Stream offset just past the record last read (its line end included, when read).
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// 1-based line where the record last read begins.
    pub(crate) fn line(&self) -> u64 {
        self.line
    }

    /// 1-based line of the next record, before it is read (for an error while reading it).
    pub(crate) fn next_line(&self) -> u64 {
        self.newlines + self.record_newlines + 1
    }

    /// The stream's bytes `start..end` within the record last read (its raw text).
    pub(crate) fn raw(&self, start: u64, end: u64) -> &[u8] {
        let from = start.saturating_sub(self.base) as usize;
        let to = (end.saturating_sub(self.base) as usize).min(self.filled);
        &self.buf[from.min(to)..to]
    }

    /// Bytes read so far.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Whether a read found the end of the text.
    pub(crate) fn eof(&self) -> bool {
        self.eof
    }

    /// Reads more text after `filled`; `false` at the end. Refuses a record whose bytes held
    /// would pass the limit, as our tap under the csv reader did.
    fn more(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let dead = (self.start - self.base) as usize;
        if dead >= COMPACT_AFTER_BYTES {
            self.buf.copy_within(dead..self.filled, 0);
            self.filled -= dead;
            self.pos -= dead;
            self.base = self.start;
        }
        if self.buf.len() < self.filled + self.read_bytes {
            self.buf.resize(self.filled + self.read_bytes, 0);
        }
        let n = self
            .inner
            .read(&mut self.buf[self.filled..self.filled + self.read_bytes])?;
        if n == 0 {
            self.eof = true;
            self.first_read = false;
            return Ok(false);
        }
        if (self.total + n as u64 - self.start) as usize > self.max_record_bytes + READ_AHEAD_SLACK
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                RecordTooLargeError,
            ));
        }
        // csv-core drops a BOM when the first input it sees starts with one.
        if std::mem::take(&mut self.first_read)
            && self.buf[self.filled..self.filled + n].starts_with(UTF8_BOM)
        {
            self.pos += UTF8_BOM.len();
        }
        self.filled += n;
        self.total += n as u64;
        Ok(true)
    }

    /// Scans the record whose first byte (not a line end) is at stream offset `first`,
    /// pushing its fields as ranges relative to that byte.
    fn scan(&mut self, first: u64) -> io::Result<Scanned> {
        // Offsets are relative to the record's first byte: reads may move the buffer.
        let at = |s: &Self| (first - s.base) as usize;
        let mut field = 0usize;
        let mut quoted = false;
        loop {
            if at(self) + field == self.filled && !self.more()? {
                // The end of the text right after a separator: an empty last field.
                self.fields.push(field..field);
                return Ok(Scanned::Record {
                    end: field,
                    text_len: field,
                    quoted,
                });
            }
            if self.buf[at(self) + field] == b'"' {
                quoted = true;
                let mut from = field + 1;
                let close = loop {
                    let q = at(self);
                    match memchr::memchr(b'"', &self.buf[q + from..self.filled]) {
                        Some(i) => break from + i,
                        None => {
                            from = self.filled - q;
                            if !self.more()? {
                                return Ok(Scanned::Fallback);
                            }
                        }
                    }
                };
                if at(self) + close + 1 == self.filled && !self.more()? {
                    self.fields.push(field + 1..close);
                    return Ok(Scanned::Record {
                        end: close + 1,
                        text_len: close,
                        quoted,
                    });
                }
                match self.buf[at(self) + close + 1] {
                    b',' => {
                        self.fields.push(field + 1..close);
                        field = close + 2;
                    }
                    b'\n' | b'\r' => {
                        self.fields.push(field + 1..close);
                        return Ok(Scanned::Record {
                            end: close + 2,
                            text_len: close,
                            quoted,
                        });
                    }
                    // A doubled quote, or text after the closing quote.
                    _ => return Ok(Scanned::Fallback),
                }
            } else {
                let mut from = field;
                loop {
                    let q = at(self);
                    let rest = &self.buf[q + from..self.filled];
                    match memchr::memchr3(b',', b'\n', b'\r', rest) {
                        Some(i) => {
                            let stop = from + i;
                            self.fields.push(field..stop);
                            if rest[i] == b',' {
                                field = stop + 1;
                                break;
                            }
                            return Ok(Scanned::Record {
                                end: stop + 1,
                                text_len: stop,
                                quoted,
                            });
                        }
                        None => {
                            from = self.filled - q;
                            if !self.more()? {
                                self.fields.push(field..from);
                                return Ok(Scanned::Record {
                                    end: from,
                                    text_len: from,
                                    quoted,
                                });
                            }
                        }
                    }
                }
            }
        }
    }

    /// Reads the record starting at `pos` with csv-core, as the csv crate's reader does.
    fn read_with_csv_core(&mut self) -> io::Result<()> {
        use csv_core::ReadRecordResult as R;
        if self.unescaped.is_empty() {
            self.unescaped.resize(1024, 0);
        }
        if self.ends.is_empty() {
            self.ends.resize(64, 0);
        }
        let (mut out, mut nends) = (0, 0);
        loop {
            if self.pos == self.filled {
                self.more()?;
            }
            let (res, nin, nout, nend) = self.core.read_record(
                &self.buf[self.pos..self.filled],
                &mut self.unescaped[out..],
                &mut self.ends[nends..],
            );
            self.pos += nin;
            out += nout;
            nends += nend;
            match res {
                R::InputEmpty => {}
                R::OutputFull => {
                    let grown = self.unescaped.len() * 2;
                    self.unescaped.resize(grown, 0);
                }
                R::OutputEndsFull => {
                    let grown = self.ends.len() * 2;
                    self.ends.resize(grown, 0);
                }
                // The record's first byte is not a line end, so csv-core always ends a record.
                R::Record | R::End => break,
            }
        }
        let mut from = 0;
        for &to in &self.ends[..nends] {
            self.fields.push(from..to);
            from = to;
        }
        self.raw_text = false;
        self.text_len = out;
        Ok(())
    }
}

/// Line feeds in `bytes`, counted in 8-bit lanes over chunks short enough not to overflow them:
/// the compiler vectorises this 16 or 32 bytes at a time, where counting into a `u64` per byte
/// took 4.
pub(crate) fn count_newlines(bytes: &[u8]) -> u64 {
    bytes
        .chunks(255)
        .map(|chunk| u64::from(chunk.iter().fold(0u8, |n, &b| n + u8::from(b == b'\n'))))
        .sum()
}
