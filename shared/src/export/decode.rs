//! Bytes of an export object to the bytes of its CSV/JSON text.
//!
//! Compression is decided by magic bytes, not by the name: CleverTap names say `.gz` but users
//! also drop plain files into the folder, and exports can be multi-member gzip (several gzip
//! streams back to back), which a single-member decoder would silently cut short.

use std::io::{self, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::bufread::MultiGzDecoder;

use super::limits::ExportLimits;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const UTF8_BOM: [u8; 3] = [0xef, 0xbb, 0xbf];
/// Compressed bytes read ahead of the inflater. Also the step of the ratio check, which judges
/// text against compressed bytes read: a bomb stops within 16 MiB (or 100 × 64 KiB) of text.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Marks an I/O error that came from the source (network, disk), as opposed to bad bytes in
/// the object: the first is worth a retry, the second is a property of the file.
#[derive(Debug, thiserror::Error)]
#[error("reading the source failed: {0}")]
pub struct SourceReadError(#[source] pub io::Error);

/// Whether an error raised while decoding or parsing came from the source rather than the data.
pub fn is_source_error(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<SourceReadError>())
}

/// Takes the source error back out of an I/O error marked by [`is_source_error`].
pub fn into_source_error(err: io::Error) -> io::Error {
    match err.into_inner() {
        Some(inner) => match inner.downcast::<SourceReadError>() {
            Ok(source) => source.0,
            Err(other) => io::Error::other(other),
        },
        None => io::Error::other("unknown source error"),
    }
}

/// Counts the bytes read from a source and marks its errors as [`SourceReadError`].
pub struct SourceReader<R> {
    inner: R,
    bytes: Arc<AtomicU64>,
}

impl<R: Read> SourceReader<R> {
    /// Wraps `inner`; `bytes` grows as bytes are read (a progress bar may watch it).
    pub fn new(inner: R, bytes: Arc<AtomicU64>) -> Self {
        Self { inner, bytes }
    }
}

impl<R: Read> Read for SourceReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.bytes.fetch_add(n as u64, Ordering::Relaxed);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => Err(io::Error::new(e.kind(), SourceReadError(e))),
        }
    }
}

/// How an object's bytes were encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// One or more gzip members.
    Gzip,
    /// Plain text.
    None,
}

/// The decoded text stream of an object, with a leading UTF-8 byte-order mark removed.
pub struct Decoded {
    /// What the magic bytes said.
    pub compression: Compression,
    /// The decompressed bytes.
    pub reader: Box<dyn Read + Send>,
}

/// Why decoding stopped: the decoded text grew past a per-object limit of [`ExportLimits`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecompressionLimit {
    /// More decoded bytes than `ratio` times the compressed bytes read so far.
    #[error(
        "decompresses to more than {ratio}x its compressed size ({compressed} bytes read): a decompression bomb?"
    )]
    Ratio {
        /// The configured ratio.
        ratio: u64,
        /// Compressed bytes read when the limit was passed.
        compressed: u64,
    },
    /// More decoded bytes than the absolute limit.
    #[error("decompresses to more than {limit} bytes, the per-object limit")]
    Bytes {
        /// The configured limit.
        limit: u64,
    },
}

/// Opens `source` for reading its text, without size limits. `Ok(None)` means the object has
/// no bytes at all.
pub fn decode<R: Read + Send + 'static>(source: R) -> io::Result<Option<Decoded>> {
    let unlimited = ExportLimits {
        max_decompressed_ratio: 0,
        max_decompressed_bytes: 0,
        ..ExportLimits::default()
    };
    decode_limited(source, &unlimited)
}

/// Opens `source` for reading its text; reading fails with a [`DecompressionLimit`] (inside an
/// `io::Error`) once the text passes `limits`. `Ok(None)` means the object has no bytes at all.
pub fn decode_limited<R: Read + Send + 'static>(
    mut source: R,
    limits: &ExportLimits,
) -> io::Result<Option<Decoded>> {
    // Read the magic bytes by hand: a source may hand out one byte at a time.
    let mut head = Vec::with_capacity(GZIP_MAGIC.len());
    while head.len() < GZIP_MAGIC.len() {
        let mut byte = [0u8; 1];
        match source.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => head.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if head.is_empty() {
        return Ok(None);
    }
    let is_gzip = head == GZIP_MAGIC;
    let compressed = Arc::new(AtomicU64::new(0));
    let counted = CountedReader {
        inner: io::Cursor::new(head).chain(source),
        bytes: compressed.clone(),
    };
    let buffered = BufReader::with_capacity(READ_BUFFER_BYTES, counted);
    let (compression, reader): (_, Box<dyn Read + Send>) = if is_gzip {
        // No buffer after inflate: the parsers read in large chunks into their own buffers, and
        // every copy of the text shows in the load's profile.
        (Compression::Gzip, Box::new(MultiGzDecoder::new(buffered)))
    } else {
        (Compression::None, Box::new(buffered))
    };
    let limited = DecodedLimit {
        inner: reader,
        // Plain text decodes to itself: only the absolute limit applies.
        compressed: is_gzip.then_some(compressed),
        decoded: 0,
        ratio: limits.max_decompressed_ratio,
        max_bytes: limits.max_decompressed_bytes,
    };
    Ok(Some(Decoded {
        compression,
        reader: Box::new(BomStripper::new(limited)),
    }))
}

/// Text never judged by the ratio: one legitimate record may be this large (the record limit)
/// and as compressible as a run of one byte.
const RATIO_FREE_BYTES: u64 = 16 * 1024 * 1024;

/// Fails the read that takes the decoded text past a limit, before the parser sees those bytes.
/// The ratio is judged against compressed bytes read so far, which run ahead of what the
/// inflater has consumed, so a real export is never judged higher than its true ratio.
struct DecodedLimit {
    inner: Box<dyn Read + Send>,
    compressed: Option<Arc<AtomicU64>>,
    decoded: u64,
    ratio: u64,
    max_bytes: u64,
}

impl Read for DecodedLimit {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.decoded += n as u64;
        if self.max_bytes > 0 && self.decoded > self.max_bytes {
            return Err(limit_error(DecompressionLimit::Bytes {
                limit: self.max_bytes,
            }));
        }
        if let Some(compressed) = &self.compressed
            && self.ratio > 0
        {
            let compressed = compressed.load(Ordering::Relaxed);
            if self.decoded > compressed.saturating_mul(self.ratio).max(RATIO_FREE_BYTES) {
                return Err(limit_error(DecompressionLimit::Ratio {
                    ratio: self.ratio,
                    compressed,
                }));
            }
        }
        Ok(n)
    }
}

/// Counts compressed bytes for the ratio check; errors pass through unmarked.
struct CountedReader<R> {
    inner: R,
    bytes: Arc<AtomicU64>,
}

impl<R: Read> Read for CountedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn limit_error(limit: DecompressionLimit) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, limit)
}

/// Drops a UTF-8 BOM at the start of the text (spreadsheet tools add one).
struct BomStripper<R> {
    inner: R,
    pending: Vec<u8>,
    checked: bool,
}

impl<R: Read> BomStripper<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            checked: false,
        }
    }
}

impl<R: Read> Read for BomStripper<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.checked {
            let mut head = [0u8; 3];
            let mut got = 0;
            while got < head.len() {
                let n = self.inner.read(&mut head[got..])?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            self.checked = true;
            if head[..got] != UTF8_BOM {
                self.pending = head[..got].to_vec();
            }
        }
        if !self.pending.is_empty() {
            let n = self.pending.len().min(buf.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression as Level;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Level::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn read_all(bytes: Vec<u8>) -> io::Result<(Compression, Vec<u8>)> {
        let d = decode(io::Cursor::new(bytes))?.expect("not empty");
        let mut out = Vec::new();
        let mut r = d.reader;
        r.read_to_end(&mut out)?;
        Ok((d.compression, out))
    }

    #[test]
    fn gzip_is_found_by_magic_bytes() {
        let (c, out) = read_all(gzip(b"ts,eventName\n")).unwrap();
        assert_eq!(
            (c, out.as_slice()),
            (Compression::Gzip, &b"ts,eventName\n"[..])
        );
    }

    #[test]
    fn plain_text_passes_through() {
        let (c, out) = read_all(b"ts,eventName\n".to_vec()).unwrap();
        assert_eq!(
            (c, out.as_slice()),
            (Compression::None, &b"ts,eventName\n"[..])
        );
    }

    #[test]
    fn every_gzip_member_is_read() {
        let mut bytes = gzip(b"ts,eventName\n1,a\n");
        bytes.extend(gzip(b"2,b\n"));
        bytes.extend(gzip(b"3,c\n"));
        let (_, out) = read_all(bytes).unwrap();
        assert_eq!(out, b"ts,eventName\n1,a\n2,b\n3,c\n");
    }

    #[test]
    fn bom_is_removed_once() {
        let (_, out) = read_all(b"\xef\xbb\xbfts\n\xef\xbb\xbf".to_vec()).unwrap();
        assert_eq!(out, b"ts\n\xef\xbb\xbf");
        let (_, out) = read_all(gzip(b"\xef\xbb\xbfts\n")).unwrap();
        assert_eq!(out, b"ts\n");
        let (_, out) = read_all(b"t".to_vec()).unwrap();
        assert_eq!(out, b"t");
    }

    #[test]
    fn empty_object_is_none() {
        assert!(decode(io::Cursor::new(Vec::new())).unwrap().is_none());
    }

    #[test]
    fn truncated_gzip_is_an_error_not_a_short_file() {
        let full = gzip(&b"ts,eventName\n".repeat(1000));
        let err = read_all(full[..full.len() / 2].to_vec()).unwrap_err();
        assert!(!is_source_error(&err));
        let err = read_all(full[..10].to_vec()).unwrap_err();
        assert!(
            !is_source_error(&err),
            "a gzip header alone is corrupt data: {err}"
        );
    }

    #[test]
    fn source_failures_are_marked() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
            }
        }
        let counter = Arc::new(AtomicU64::new(0));
        let err = match decode(SourceReader::new(Broken, counter)) {
            Err(e) => e,
            Ok(_) => panic!("expected an error"),
        };
        assert!(is_source_error(&err));
        assert_eq!(
            into_source_error(err).kind(),
            io::ErrorKind::ConnectionReset
        );
    }

    fn read_limited(bytes: Vec<u8>, limits: ExportLimits) -> io::Result<u64> {
        let d = decode_limited(io::Cursor::new(bytes), &limits)?.expect("not empty");
        io::copy(&mut { d.reader }, &mut io::sink())
    }

    fn limit_of(err: io::Error) -> DecompressionLimit {
        err.get_ref()
            .and_then(|e| e.downcast_ref::<DecompressionLimit>())
            .cloned()
            .unwrap_or_else(|| panic!("not a limit: {err}"))
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_ratio() {
        let bomb = gzip(&vec![b'a'; 50 << 20]);
        let compressed = bomb.len() as u64;
        let err = read_limited(bomb, ExportLimits::default()).unwrap_err();
        assert_eq!(
            limit_of(err),
            DecompressionLimit::Ratio {
                ratio: 100,
                compressed
            }
        );
    }

    #[test]
    fn the_absolute_limit_holds_for_plain_and_gzip() {
        let limits = ExportLimits {
            max_decompressed_bytes: 1000,
            ..ExportLimits::default()
        };
        let err = read_limited(vec![b'a'; 1001], limits).unwrap_err();
        assert_eq!(limit_of(err), DecompressionLimit::Bytes { limit: 1000 });
        assert_eq!(read_limited(vec![b'a'; 1000], limits).unwrap(), 1000);
        let err = read_limited(gzip(&[b'a'; 1001]), limits).unwrap_err();
        assert!(!is_source_error(&err));
    }

    #[test]
    fn ordinary_text_passes_the_default_limits() {
        let mut text = Vec::new();
        for i in 0..20_000u32 {
            text.extend(
                format!(
                    "20220921{i:06},Charged,user{},{}\n",
                    i * 7919 % 1000,
                    i * 31
                )
                .as_bytes(),
            );
        }
        let len = text.len() as u64;
        assert_eq!(
            read_limited(gzip(&text), ExportLimits::default()).unwrap(),
            len
        );
        let off = ExportLimits {
            max_decompressed_ratio: 0,
            max_decompressed_bytes: 0,
            ..ExportLimits::default()
        };
        assert_eq!(
            read_limited(gzip(&vec![b'a'; 1 << 20]), off).unwrap(),
            1 << 20
        );
    }
}
