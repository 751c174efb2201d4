//! The CSV reader the parser used before [`CsvRecordReader`] (the csv crate's reader over a
//! tap that kept the raw record), kept as an oracle: [`compare`] reads one text with both, in a
//! given chunking, and says where they differ (records: fields, start and end offsets, line,
//! raw text, end-of-file state; the reads of the source; errors and their line). The unit tests
//! below run it over hostile and generated text in every chunking from one byte up, and
//! `make fuzz` over every CSV case (the `csv-reader-oracle` feature).

use std::cell::RefCell;
use std::io::{self, Read};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use super::csv_record_reader::{CsvRecordReader, count_newlines};
use super::parse_error::RecordTooLargeError;

/// What a reader yields: each record, then the end or an error.
#[derive(Debug, PartialEq)]
enum Event {
    Record {
        fields: Vec<Vec<u8>>,
        start: u64,
        end: u64,
        line: u64,
        raw: Vec<u8>,
        at_eof: bool,
    },
    End {
        total: u64,
    },
    Error {
        too_large: bool,
        message: String,
        next_line: u64,
    },
}

/// A source returning `data` in the sizes `chunks` says (cycled), logging each read.
struct ChunkedSource {
    data: Vec<u8>,
    at: usize,
    chunks: Vec<usize>,
    call: usize,
    log: Arc<Mutex<Vec<(usize, usize)>>>,
}

impl Read for ChunkedSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let chunk = self.chunks[self.call % self.chunks.len()];
        self.call += 1;
        let n = buf.len().min(chunk).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        self.log.lock().unwrap().push((buf.len(), n));
        Ok(n)
    }
}

fn source(
    data: &[u8],
    chunks: &[usize],
) -> (Box<dyn Read + Send>, Arc<Mutex<Vec<(usize, usize)>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let src = ChunkedSource {
        data: data.to_vec(),
        at: 0,
        chunks: chunks.to_vec(),
        call: 0,
        log: log.clone(),
    };
    (Box::new(src), log)
}

fn error_event(e: io::Error, next_line: u64) -> Event {
    Event::Error {
        too_large: e.get_ref().is_some_and(|e| e.is::<RecordTooLargeError>()),
        message: e.to_string(),
        next_line,
    }
}

fn new_events(reader: &mut CsvRecordReader) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        match reader.read_record() {
            Ok(true) => {
                let r = reader.record();
                events.push(Event::Record {
                    fields: r.iter().map(<[u8]>::to_vec).collect(),
                    start: reader.start(),
                    end: reader.end(),
                    line: reader.line(),
                    raw: reader.raw(reader.start(), reader.end()).to_vec(),
                    at_eof: reader.eof() && reader.end() == reader.total(),
                });
            }
            Ok(false) => {
                events.push(Event::End {
                    total: reader.total(),
                });
                return events;
            }
            Err(e) => {
                events.push(error_event(e, reader.next_line()));
                return events;
            }
        }
    }
}

/// The reader as it was: the csv crate's reader over the tap (code kept as it ran).
mod legacy {
    use super::*;

    pub(super) struct Tap {
        inner: Box<dyn Read + Send>,
        pub(super) state: Rc<RefCell<TapState>>,
    }

    pub(super) struct TapState {
        base: u64,
        bytes: Vec<u8>,
        pub(super) total: u64,
        keep_from: u64,
        newlines: u64,
        pub(super) eof: bool,
        max_record_bytes: usize,
    }

    const COMPACT_AFTER_BYTES: u64 = 256 * 1024;
    const READ_AHEAD_SLACK: usize = 128 * 1024;

    impl Read for Tap {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            let mut s = self.state.borrow_mut();
            if n == 0 {
                s.eof = true;
                return Ok(0);
            }
            if s.keep_from - s.base >= COMPACT_AFTER_BYTES {
                let dead = (s.keep_from - s.base) as usize;
                s.bytes.drain(..dead);
                s.base = s.keep_from;
            }
            if (s.total + n as u64 - s.keep_from) as usize > s.max_record_bytes + READ_AHEAD_SLACK {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    RecordTooLargeError,
                ));
            }
            s.bytes.extend_from_slice(&buf[..n]);
            s.total += n as u64;
            Ok(n)
        }
    }

    impl TapState {
        pub(super) fn release(&mut self, upto: u64) {
            let done = self.slice(self.keep_from, upto);
            self.newlines += count_newlines(done);
            self.keep_from = upto;
        }

        pub(super) fn next_line(&self) -> u64 {
            self.newlines + 1
        }

        pub(super) fn line_of(&self, start: u64, end: u64) -> u64 {
            let leading = self
                .slice(start, end)
                .iter()
                .take_while(|&&b| b == b'\n' || b == b'\r')
                .filter(|&&b| b == b'\n')
                .count() as u64;
            self.newlines + 1 + leading
        }

        pub(super) fn slice(&self, start: u64, end: u64) -> &[u8] {
            let from = start.saturating_sub(self.base) as usize;
            let to = (end.saturating_sub(self.base) as usize).min(self.bytes.len());
            &self.bytes[from.min(to)..to]
        }
    }

    pub(super) fn events(
        inner: Box<dyn Read + Send>,
        max_record_bytes: usize,
        buffer: usize,
    ) -> Vec<Event> {
        let tap = Tap {
            inner,
            state: Rc::new(RefCell::new(TapState {
                base: 0,
                bytes: Vec::new(),
                total: 0,
                keep_from: 0,
                newlines: 0,
                eof: false,
                max_record_bytes,
            })),
        };
        let taped = tap.state.clone();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(buffer)
            .from_reader(tap);
        let mut record = csv::ByteRecord::new();
        let mut events = Vec::new();
        loop {
            match reader.read_byte_record(&mut record) {
                Ok(true) => {
                    let start = record.position().map(|p| p.byte()).unwrap_or(0);
                    let end = reader.position().byte();
                    let state = taped.borrow();
                    events.push(Event::Record {
                        fields: record.iter().map(<[u8]>::to_vec).collect(),
                        start,
                        end,
                        line: state.line_of(start, end),
                        raw: state.slice(start, end).to_vec(),
                        at_eof: state.eof && end == state.total,
                    });
                    drop(state);
                    taped.borrow_mut().release(end);
                }
                Ok(false) => {
                    events.push(Event::End {
                        total: taped.borrow().total,
                    });
                    return events;
                }
                Err(e) => {
                    let next_line = taped.borrow().next_line();
                    match e.into_kind() {
                        csv::ErrorKind::Io(e) => events.push(error_event(e, next_line)),
                        other => panic!("the csv reader, flexible, gave {other:?}"),
                    }
                    return events;
                }
            }
        }
    }
}

/// Reads (request, returned) up to and including the first that returned nothing: the csv
/// reader asks again after the end, which nothing observes.
fn reads_until_end(log: &Mutex<Vec<(usize, usize)>>) -> Vec<(usize, usize)> {
    let log = log.lock().unwrap();
    let end = log
        .iter()
        .position(|&(_, n)| n == 0)
        .map_or(log.len(), |i| i + 1);
    log[..end].to_vec()
}

/// Reads `data` with the former reader and with [`CsvRecordReader`], each asking for
/// `read_bytes` per read of a source that returns at most `chunks[i]` bytes at its i-th read
/// (cycled), with the record limit `max_record_bytes`; `Err` says how they differ.
pub fn compare(
    data: &[u8],
    read_bytes: usize,
    chunks: &[usize],
    max_record_bytes: usize,
) -> Result<(), String> {
    let (old_src, old_log) = source(data, chunks);
    let old = legacy::events(old_src, max_record_bytes, read_bytes);
    // The one difference kept on purpose: when the first read is a BOM and nothing else,
    // csv-core drops it and takes the empty rest for the end of the text, so the former
    // reader saw an empty file (a file that starts with two BOMs, the decoder having dropped
    // one, could load no rows). The new reader reads on.
    if old_log.lock().unwrap().first().is_some_and(|&(_, n)| n == 3)
        && data.starts_with(b"\xef\xbb\xbf")
        && old == [Event::End { total: 3 }]
    {
        return Ok(());
    }
    let (new_src, new_log) = source(data, chunks);
    let mut reader = CsvRecordReader::with_read_bytes(new_src, max_record_bytes, read_bytes);
    let mut new = new_events(&mut reader);
    let mut old = old;
    // The former reader did not count blank lines after a BOM csv-core dropped into the first
    // record's line; the first record is the header, whose line nothing reads.
    if data.starts_with(b"\xef\xbb\xbf") {
        for events in [&mut old, &mut new] {
            if let Some(Event::Record { line, .. }) = events.first_mut() {
                *line = 0;
            }
        }
    }
    if old != new {
        let first = old.iter().zip(&new).position(|(a, b)| a != b);
        return Err(format!(
            "readers differ (read {read_bytes}, chunks {chunks:?}, limit {max_record_bytes}) on {:?}\n\
             first difference at event {first:?}:\nold {:?}\nnew {:?}",
            String::from_utf8_lossy(data),
            first.map(|i| &old[i]),
            first.map(|i| &new[i]),
        ));
    }
    let is_error = matches!(new.last(), Some(Event::Error { .. }));
    if !is_error && reads_until_end(&old_log) != reads_until_end(&new_log) {
        return Err(format!(
            "reads differ (read {read_bytes}, chunks {chunks:?}) on {:?}",
            String::from_utf8_lossy(data)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::compare;

    fn assert_same(data: &[u8], read_bytes: usize, chunks: &[usize], max_record_bytes: usize) {
        if let Err(e) = compare(data, read_bytes, chunks, max_record_bytes) {
            panic!("{e}");
        }
    }

    /// Every chunking worth trying on a small input: one byte at a time up to whole.
    fn assert_same_all_chunkings(data: &[u8]) {
        for read_bytes in [1, 2, 3, 4, 5, 7, 16, 64, 64 * 1024] {
            assert_same(data, read_bytes, &[usize::MAX], 1 << 20);
        }
        for chunks in [&[1, 3][..], &[2, 1, 5], &[7, 1, 1, 2]] {
            assert_same(data, 64 * 1024, chunks, 1 << 20);
        }
    }

    const HOSTILE: &[&[u8]] = &[
        b"",
        b"\n",
        b"\r\n\r\n",
        b"a",
        b"a,b",
        b"a,b\n",
        b"a,b\r\nc,d\r\n",
        b"a,b\rc,d\r",
        b"a,\n,b\n,\n",
        b"\n\n\r\na,b\n\n\nc\n",
        b"\"a\",\"b\"\n",
        b"\"a,b\",\"c\nd\"\n\"e\r\nf\",g\n",
        b"\"a\"\"b\",c\n",
        b"\"\"\"\",\"\"\n",
        b"\"\",\"\"\n\"\"",
        b"\"a\"b,c\n",
        b"\"a\" ,c\n",
        b"a\"b,c\"d\n",
        b"a,\"b\n",
        b"a,\"b\nc,d\n",
        b"\"unterminated",
        b"\"",
        b"\"\"",
        b"\"a\"",
        b"\"a\"\r",
        b"\"a\"\r\n\"b\"\n",
        b"\xef\xbb\xbfts,a\n1,2\n",
        b"\xef\xbb\xbf\"ts\",a\n1,2\n",
        b"\xef\xbb\xbf\xef\xbb\xbfts\n",
        b"\xef\xbb",
        b"ts,a\n\xef\xbb\xbf\"x\",y\n",
        b"a,b\0c\n\"\0\",\"\xff\"\n",
        b"\xe2\x82,\xac\n\"\xe2\",\"\x82\xac\"\n",
        b"a,b,c\nd\ne,f,g,h\n",
        b",,,\n,,,",
    ];

    #[test]
    fn hostile_inputs_read_alike_in_every_chunking() {
        for data in HOSTILE {
            assert_same_all_chunkings(data);
        }
    }

    /// Generated CSV: fields plain, quoted, with doubled quotes, commas, CR, LF, CRLF, NUL,
    /// multi-byte text, quotes in unquoted fields and text after closing quotes; records of
    /// varying widths, line ends and blank lines; sometimes no final line end or an open quote.
    fn generated(rng: &mut fastrand::Rng) -> Vec<u8> {
        const PIECES: &[&[u8]] = &[
            b"a",
            b"xyz",
            b"12345",
            b"",
            b" ",
            b",",
            b"\"",
            b"\"\"",
            b"\n",
            b"\r",
            b"\r\n",
            b"\0",
            "é€".as_bytes(),
            b"\xff",
            b"[a, b]",
        ];
        let mut out = Vec::new();
        if rng.u8(..) < 16 {
            out.extend_from_slice(b"\xef\xbb\xbf");
        }
        let records = rng.usize(0..12);
        let width = rng.usize(1..6);
        for _ in 0..records {
            let fields = if rng.u8(..) < 32 {
                rng.usize(1..8)
            } else {
                width
            };
            for f in 0..fields {
                if f > 0 {
                    out.push(b',');
                }
                let quoted = rng.bool();
                if quoted {
                    out.push(b'"');
                }
                for _ in 0..rng.usize(0..4) {
                    let piece = PIECES[rng.usize(..PIECES.len())];
                    if quoted && piece == b"\"" && rng.u8(..) < 200 {
                        out.extend_from_slice(b"\"\"");
                    } else if !quoted
                        && rng.u8(..) < 200
                        && piece.iter().any(|b| b"\r\n,".contains(b))
                    {
                        out.push(b'x');
                    } else {
                        out.extend_from_slice(piece);
                    }
                }
                if quoted && rng.u8(..) < 245 {
                    out.push(b'"');
                    if rng.u8(..) < 10 {
                        out.extend_from_slice(b"tail");
                    }
                }
            }
            match rng.u8(..) {
                0..=150 => out.push(b'\n'),
                151..=210 => out.extend_from_slice(b"\r\n"),
                211..=225 => out.push(b'\r'),
                226..=240 => out.extend_from_slice(b"\n\n"),
                _ => {}
            }
        }
        out
    }

    #[test]
    fn generated_inputs_read_alike_in_every_chunking() {
        let mut rng = fastrand::Rng::with_seed(13);
        for _ in 0..3000 {
            let data = generated(&mut rng);
            let read_bytes = [1, 2, 3, 5, 8, 64, 64 * 1024][rng.usize(..7)];
            let chunks: Vec<usize> = (0..rng.usize(1..4)).map(|_| rng.usize(1..10)).collect();
            assert_same(&data, read_bytes, &chunks, 1 << 20);
            assert_same(&data, read_bytes, &[usize::MAX], 1 << 20);
        }
    }

    #[test]
    fn random_bytes_read_alike() {
        let mut rng = fastrand::Rng::with_seed(21);
        let alphabet = b"a,\"\r\n\0\xef\xbb\xbf";
        for _ in 0..3000 {
            let data: Vec<u8> = (0..rng.usize(0..40))
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            assert_same(
                &data,
                [1, 2, 3, 64 * 1024][rng.usize(..4)],
                &[usize::MAX],
                1 << 20,
            );
        }
    }

    /// Records near and past the size limit (which counts the read-ahead, so it trips at the same
    /// read for both), long fields across many reads, and compaction of the buffer.
    #[test]
    fn long_records_and_the_size_limit_read_alike() {
        let mut long_plain = b"h\n".to_vec();
        long_plain.extend(vec![b'x'; 300 * 1024]);
        long_plain.extend_from_slice(b",y\nz\n");
        let mut long_quoted = b"h\n\"".to_vec();
        long_quoted.extend(b"ab\ncd,".repeat(50 * 1024));
        long_quoted.extend_from_slice(b"\",y\nz\n");
        let mut long_doubled = b"h\n\"".to_vec();
        long_doubled.extend(b"a\"\"b".repeat(60 * 1024));
        long_doubled.extend_from_slice(b"\"\n");
        let mut many = Vec::new();
        for i in 0..20_000 {
            many.extend_from_slice(format!("{i},\"q{i}\",x\"y,\"a\"\"b\"\r\n").as_bytes());
        }
        for data in [&long_plain, &long_quoted, &long_doubled, &many] {
            for limit in [0, 64 * 1024, 200 * 1024, 1 << 20] {
                for read_bytes in [1000, 64 * 1024] {
                    assert_same(data, read_bytes, &[usize::MAX], limit);
                    assert_same(data, read_bytes, &[4093, 17], limit);
                }
            }
        }
    }
}
