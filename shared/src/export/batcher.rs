//! Rows and rejects gathered into batches of bounded size and handed to the caller's sink,
//! with the counts of the file: the one place the CSV and JSON parsers hand data over.

use super::limits::MAX_STORED_REJECTS;
use super::parse_error::ParseError;
use super::rows::{Reject, RowBatch};

/// Text per batch above which it is handed over early (wide rows, huge fields).
pub const MAX_BATCH_TEXT_BYTES: usize = 4 * 1024 * 1024;

/// Counts of one parsed file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseSummary {
    /// Rows that passed validation.
    pub rows: u64,
    /// Rows rejected.
    pub rejected: u64,
    /// Bytes of decoded text.
    pub decoded_bytes: u64,
}

impl ParseSummary {
    /// Data rows seen, good and bad.
    pub fn total(&self) -> u64 {
        self.rows + self.rejected
    }
}

/// Receives each batch; returns `false` to stop the parser.
pub type BatchSink<'a> = dyn FnMut(RowBatch) -> bool + 'a;

/// Accumulates batches and hands them over when full. Rejects count towards fullness too, and
/// only the first [`MAX_STORED_REJECTS`] of a file are kept at all: a file of bad rows costs no
/// more memory than a file of good ones.
pub(crate) struct Batcher<'s, 'o> {
    pub(crate) batch: RowBatch,
    pub(crate) summary: ParseSummary,
    sink: &'s mut BatchSink<'o>,
    batch_rows: usize,
    /// Rejects handed over or held so far in this file.
    stored_rejects: usize,
    /// Text held by the current batch's rejects.
    reject_bytes: usize,
}

impl<'s, 'o> Batcher<'s, 'o> {
    pub(crate) fn new(batch: RowBatch, sink: &'s mut BatchSink<'o>, batch_rows: usize) -> Self {
        Self {
            batch,
            summary: ParseSummary::default(),
            sink,
            batch_rows,
            stored_rejects: 0,
            reject_bytes: 0,
        }
    }

    /// Counts a reject; keeps it while the file's stored-reject cap allows, and hands the batch
    /// over when its rejects fill it (a file of bad rows has no good row to do that).
    pub(crate) fn reject(&mut self, reject: Reject) -> Result<(), ParseError> {
        self.summary.rejected += 1;
        if self.stored_rejects >= MAX_STORED_REJECTS {
            return Ok(());
        }
        self.stored_rejects += 1;
        self.reject_bytes += reject.raw.len() + reject.reason.len();
        self.batch.rejects.push(reject);
        if self.batch.rejects.len() >= self.batch_rows || self.reject_bytes >= MAX_BATCH_TEXT_BYTES
        {
            self.flush(None)?;
        }
        Ok(())
    }

    pub(crate) fn row_done(&mut self) -> Result<(), ParseError> {
        self.summary.rows += 1;
        if self.batch.row_count() >= self.batch_rows
            || self.batch.text_bytes() >= MAX_BATCH_TEXT_BYTES
        {
            self.flush(None)?;
        }
        Ok(())
    }

    /// Hands the current batch over, continuing with `next` (a new schema) or an empty copy.
    pub(crate) fn flush(&mut self, next: Option<RowBatch>) -> Result<(), ParseError> {
        let fresh = next.unwrap_or_else(|| self.batch.empty_like());
        let mut full = std::mem::replace(&mut self.batch, fresh);
        // Column kinds (issue 19) are classified here, on the parser's thread: the writer's
        // thread is the busier one of a load (`make bench`'s stage breakdown).
        if !cfg!(feature = "bench-no-kind-inference") {
            full.classify_columns();
        }
        self.reject_bytes = 0;
        if !full.is_empty() && !(self.sink)(full) {
            return Err(ParseError::Stopped);
        }
        Ok(())
    }

    pub(crate) fn finish(mut self, decoded_bytes: u64) -> Result<ParseSummary, ParseError> {
        self.flush(None)?;
        self.summary.decoded_bytes = decoded_bytes;
        Ok(self.summary)
    }
}
