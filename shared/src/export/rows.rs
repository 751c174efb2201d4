//! The row model between parsers and warehouses: batches of validated rows sharing one schema.
//!
//! A batch keeps every field's text in one buffer with offsets, so a row costs one copy of its
//! bytes rather than one allocation per field. `ts` travels as epoch microseconds beside the
//! text: each warehouse writes it in its own form (PostgreSQL as a `timestamptz` integer, SQLite
//! and BigQuery as the text of [`write_ts_text`]) with no text round trip in between.

use std::sync::Arc;

use super::column_kind::{ColumnKind, classify, widen};
use super::{PROFILE_SNAPSHOTS_KEY, TS_COLUMN};
use crate::time::write_ts_text;

/// Raw column names of the rows in a batch, in file order. `ts` is carried as epoch
/// microseconds (see [`Row::ts_micros`]) and `eventName` holds the resolved event name (from the row, else from the file name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    columns: Vec<String>,
}

impl Schema {
    /// A schema over these raw names; callers guarantee they are unique.
    pub fn new(columns: Vec<String>) -> Self {
        Self { columns }
    }

    /// The raw names, in order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Position of a raw name.
    pub fn index_of(&self, raw: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == raw)
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Whether there are no columns.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }
}

/// Marks a NULL field in [`RowBatch`] offsets (an empty CSV field is NULL: CleverTap writes
/// nothing for an absent property).
const NULL: (u32, u32) = (u32::MAX, u32::MAX);

/// Rows that passed validation plus the rejects seen since the previous batch.
#[derive(Debug, Clone)]
pub struct RowBatch {
    schema: Arc<Schema>,
    event_name_index: usize,
    /// The table key every row goes to when the batch is not routed by a column (profile
    /// snapshots: [`PROFILE_SNAPSHOTS_KEY`]).
    route: Option<&'static str>,
    /// Position of `ts` in the schema; its field is kept in `ts`, not in `text`.
    ts_index: Option<usize>,
    /// Schema position of the next field [`push_field`](Self::push_field) takes: counted, as
    /// the remainder of the fields pushed by the schema width costs a division per field.
    next_column: usize,
    text: String,
    fields: Vec<(u32, u32)>,
    lines: Vec<u64>,
    /// Each row's `ts`, epoch microseconds, beside `lines`.
    ts: Vec<i64>,
    /// Rows that failed validation, with their reasons.
    pub rejects: Vec<Reject>,
    /// The kinds of the rows' columns, per run of one table, once
    /// [`classify_columns`](Self::classify_columns) ran; a row added since clears them.
    kinds: Option<Vec<KindRun>>,
}

/// The kinds of one run of consecutive rows bound for one table (one event name), by schema
/// position: `None` where the run held only NULLs; `ts` is a timestamp by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindRun {
    /// Index of the run's first row in the batch.
    pub first_row: usize,
    /// Per schema column, the widened kind of the run's non-NULL values.
    pub kinds: Vec<Option<ColumnKind>>,
}

impl RowBatch {
    /// An empty batch of rows with `schema`; `event_name_index` is the column holding the
    /// resolved event name.
    pub fn new(schema: Arc<Schema>, event_name_index: usize) -> Self {
        Self {
            ts_index: schema.index_of(TS_COLUMN),
            schema,
            event_name_index,
            route: None,
            next_column: 0,
            text: String::new(),
            fields: Vec::new(),
            lines: Vec::new(),
            ts: Vec::new(),
            rejects: Vec::new(),
            kinds: None,
        }
    }

    /// An empty batch of profile snapshot rows with `schema`: every row goes to the table
    /// registered under [`PROFILE_SNAPSHOTS_KEY`] (`profile_snapshots`), whatever its columns.
    /// `ts` is the snapshot's instant (the export run, or the pull).
    pub fn for_profiles(schema: Arc<Schema>) -> Self {
        let mut batch = Self::new(schema, usize::MAX);
        batch.route = Some(PROFILE_SNAPSHOTS_KEY);
        batch
    }

    /// An empty batch with the same schema and route, its buffers sized like this one's: the
    /// next batch of a file is about as large, and growing it from nothing cost reallocations
    /// and fresh pages on every batch.
    pub fn empty_like(&self) -> Self {
        let mut batch = Self::new(self.schema.clone(), self.event_name_index);
        batch.route = self.route;
        batch.text.reserve_exact(self.text.len());
        batch.fields.reserve_exact(self.fields.len());
        batch.lines.reserve_exact(self.lines.len());
        batch.ts.reserve_exact(self.ts.len());
        batch
    }

    /// Whether the rows are profile snapshots ([`Self::for_profiles`]).
    pub fn is_profiles(&self) -> bool {
        self.route == Some(PROFILE_SNAPSHOTS_KEY)
    }

    /// The schema shared by every row.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// Number of rows (rejects not counted).
    pub fn row_count(&self) -> usize {
        self.lines.len()
    }

    /// Whether the batch holds neither rows nor rejects.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.rejects.is_empty()
    }

    /// Bytes of field text held, to bound a batch's memory.
    pub fn text_bytes(&self) -> usize {
        self.text.len()
    }

    /// Starts a row at source line `line` whose `ts` is `ts_micros` (epoch microseconds); push
    /// exactly `schema.len()` fields next.
    pub fn start_row(&mut self, line: u64, ts_micros: i64) {
        self.lines.push(line);
        self.ts.push(ts_micros);
        self.next_column = 0;
        self.kinds = None;
    }

    /// Appends the next field of the current row; `None` and `""` are NULL. The value pushed at
    /// the `ts` position is ignored: `ts` is the integer given to [`start_row`](Self::start_row).
    pub fn push_field(&mut self, value: Option<&str>) {
        let column = self.next_column;
        self.next_column += 1;
        if self.ts_index == Some(column) {
            self.fields.push(NULL);
            return;
        }
        match value {
            Some(v) if !v.is_empty() => {
                let start = self.text.len() as u32;
                self.text.push_str(v);
                self.fields.push((start, self.text.len() as u32));
            }
            _ => self.fields.push(NULL),
        }
    }

    /// Appends a row's field text in one piece, for [`push_field_in`](Self::push_field_in) to
    /// name its fields by range: one copy per row rather than one per field (a CSV record's
    /// fields are contiguous). Returns the offset of its first byte.
    pub fn push_row_text(&mut self, text: &str) -> u32 {
        let start = self.text.len() as u32;
        self.text.push_str(text);
        start
    }

    /// Appends the next field of the current row as the bytes `range` of the text
    /// [`push_row_text`](Self::push_row_text) placed at `base` (a range on character
    /// boundaries); an empty range is NULL, and so is the `ts` position, as in
    /// [`push_field`](Self::push_field).
    pub fn push_field_in(&mut self, base: u32, range: std::ops::Range<usize>) {
        let column = self.next_column;
        self.next_column += 1;
        if self.ts_index == Some(column) || range.is_empty() {
            self.fields.push(NULL);
            return;
        }
        self.fields
            .push((base + range.start as u32, base + range.end as u32));
    }

    /// Drops the current row's fields and line after a late validation failure.
    pub fn cancel_row(&mut self) {
        let n = self.schema.len();
        let keep = (self.lines.len() - 1) * n;
        self.fields.truncate(keep);
        self.lines.pop();
        self.ts.pop();
        self.kinds = None;
    }

    /// Classifies every column of every run of rows bound for one table (see
    /// [`column_kind_runs`](Self::column_kind_runs)) and keeps the result with the batch: the
    /// parser calls it on its own thread before handing the batch over, so that the warehouse's
    /// writer, the busier thread of a load, only merges the kinds.
    pub fn classify_columns(&mut self) {
        self.kinds = Some(self.column_kind_runs());
    }

    /// The kinds [`classify_columns`](Self::classify_columns) kept, if it ran since the last row.
    pub fn kind_runs(&self) -> Option<&[KindRun]> {
        self.kinds.as_deref()
    }

    /// The kinds of each run of consecutive rows with one table key ([`Row::event_name`]): per
    /// column, the widened kind of its non-NULL values. A column that reached text is not
    /// classified again within the run.
    pub fn column_kind_runs(&self) -> Vec<KindRun> {
        let n = self.schema.len();
        let mut runs = Vec::new();
        let mut rows = self.rows().enumerate().peekable();
        // The columns still worth classifying: one that reached text is dropped from the list.
        let mut open: Vec<usize> = Vec::with_capacity(n);
        while let Some((first_row, first)) = rows.peek().copied() {
            let key = first.event_name();
            let mut run: Vec<Option<ColumnKind>> = vec![None; n];
            open.clear();
            open.extend((0..n).filter(|i| self.ts_index != Some(*i)));
            while let Some((_, row)) = rows.next_if(|(_, r)| r.event_name() == key) {
                open.retain(|&i| {
                    if let Some(value) = row.value(i) {
                        let seen = classify(value);
                        run[i] = Some(run[i].map_or(seen, |k| widen(k, seen)));
                    }
                    run[i] != Some(ColumnKind::Text)
                });
            }
            if let Some(i) = self.ts_index {
                run[i] = Some(ColumnKind::Timestamp);
            }
            runs.push(KindRun {
                first_row,
                kinds: run,
            });
        }
        runs
    }

    /// Row `index` (0-based, below [`row_count`](Self::row_count)).
    pub fn row(&self, index: usize) -> Row<'_> {
        let n = self.schema.len();
        Row {
            line: self.lines[index],
            ts_micros: self.ts[index],
            fields: &self.fields[index * n..(index + 1) * n],
            text: &self.text,
            event_name_index: self.event_name_index,
            route: self.route,
            ts_index: self.ts_index,
        }
    }

    /// The rows, in source order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = Row<'_>> {
        let n = self.schema.len();
        self.lines.iter().enumerate().map(move |(i, &line)| Row {
            line,
            ts_micros: self.ts[i],
            fields: &self.fields[i * n..(i + 1) * n],
            text: &self.text,
            event_name_index: self.event_name_index,
            route: self.route,
            ts_index: self.ts_index,
        })
    }
}

/// One validated row: field values by schema position.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// 1-based source line where the record starts (the header is line 1).
    pub line: u64,
    ts_micros: i64,
    fields: &'a [(u32, u32)],
    text: &'a str,
    event_name_index: usize,
    route: Option<&'static str>,
    ts_index: Option<usize>,
}

impl<'a> Row<'a> {
    /// The text of schema column `index`; `None` is NULL, and so is the `ts` column, which is
    /// an integer: read it with [`ts_micros`](Self::ts_micros) or [`text`](Self::text).
    pub fn value(&self, index: usize) -> Option<&'a str> {
        let (start, end) = self.fields[index];
        (start != u32::MAX).then(|| &self.text[start as usize..end as usize])
    }

    /// The row's `ts`, epoch microseconds.
    pub fn ts_micros(&self) -> i64 {
        self.ts_micros
    }

    /// Position of `ts` in the schema, if the batch has that column.
    pub fn ts_index(&self) -> Option<usize> {
        self.ts_index
    }

    /// The value of schema column `index` as text, `ts` included (written into `buf` by
    /// [`write_ts_text`]): for warehouses that store `ts` as text.
    pub fn text<'b>(&self, index: usize, buf: &'b mut [u8; 20]) -> Option<&'b str>
    where
        'a: 'b,
    {
        if self.ts_index == Some(index) {
            Some(write_ts_text(self.ts_micros, buf))
        } else {
            self.value(index)
        }
    }

    /// The event this row belongs to (decides its table): for a profile snapshot,
    /// [`PROFILE_SNAPSHOTS_KEY`].
    pub fn event_name(&self) -> &'a str {
        match self.route {
            Some(key) => key,
            None => self.value(self.event_name_index).unwrap_or_default(),
        }
    }
}

/// A row that did not pass validation: stored in `_tapline_rejects`, never silently dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// 1-based source line where the record starts.
    pub line: u64,
    /// The raw column at fault, when one is.
    pub column: Option<String>,
    /// Why the row was rejected.
    pub reason: String,
    /// The raw record, lossily decoded and cut at [`MAX_RAW_LINE_BYTES`].
    pub raw: String,
}

/// Longest raw record kept with a reject.
pub const MAX_RAW_LINE_BYTES: usize = 4096;

impl Reject {
    /// A reject with the raw record bytes, cut to [`MAX_RAW_LINE_BYTES`] at a character boundary;
    /// invalid UTF-8 becomes U+FFFD and NUL becomes `\0` so every warehouse can store it.
    pub fn new(line: u64, column: Option<String>, reason: String, raw: &[u8]) -> Self {
        let start = raw
            .iter()
            .take_while(|&&b| b == b'\n' || b == b'\r')
            .count();
        let raw = &raw[start..];
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let cut = &raw[..raw.len().min(MAX_RAW_LINE_BYTES)];
        let mut text = String::from_utf8_lossy(cut).replace('\0', "\\0");
        if text.len() > MAX_RAW_LINE_BYTES {
            let mut end = MAX_RAW_LINE_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        Self {
            line,
            column,
            reason,
            raw: text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_keeps_fields_nulls_and_cancelled_rows_apart() {
        let schema = Arc::new(Schema::new(vec![
            "ts".into(),
            "eventName".into(),
            "x".into(),
        ]));
        let mut b = RowBatch::new(schema, 1);
        b.start_row(2, 1_663_718_400_000_000);
        for v in [None, Some("Charged"), None] {
            b.push_field(v);
        }
        b.start_row(3, 0);
        b.push_field(None);
        b.push_field(Some("bad"));
        b.cancel_row();
        b.start_row(4, 1_663_718_401_000_000);
        for v in [
            Some("ignored: ts is the integer"),
            Some("Charged"),
            Some(""),
        ] {
            b.push_field(v);
        }
        let rows: Vec<_> = b.rows().collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 2);
        let mut buf = [0u8; 20];
        assert_eq!(rows[0].text(0, &mut buf), Some("2022-09-21T00:00:00Z"));
        assert_eq!(rows[0].value(0), None, "ts is not text");
        assert_eq!(rows[1].ts_micros(), 1_663_718_401_000_000);
        assert_eq!(rows[1].text(0, &mut buf), Some("2022-09-21T00:00:01Z"));
        assert_eq!(b.text_bytes(), "ChargedbadCharged".len());
        assert_eq!(rows[0].event_name(), "Charged");
        assert_eq!(rows[0].value(2), None);
        assert_eq!(rows[1].line, 4);
        assert_eq!(rows[1].value(2), None, "empty text is NULL");
    }

    #[test]
    fn fields_by_range_of_one_row_text() {
        let schema = Arc::new(Schema::new(vec![
            "ts".into(),
            "eventName".into(),
            "x".into(),
            "y".into(),
        ]));
        let mut b = RowBatch::new(schema, 1);
        b.start_row(2, 1_663_718_400_000_000);
        let base = b.push_row_text("20220921Chargedé");
        b.push_field_in(base, 0..8);
        b.push_field_in(base, 8..15);
        b.push_field_in(base, 15..15);
        b.push_field_in(base, 15..17);
        b.start_row(3, 0);
        let base = b.push_row_text("0Viewed1");
        for range in [0..1, 1..7, 7..8, 8..8] {
            b.push_field_in(base, range);
        }
        let rows: Vec<_> = b.rows().collect();
        let mut buf = [0u8; 20];
        assert_eq!(rows[0].value(0), None, "ts is not text");
        assert_eq!(rows[0].text(0, &mut buf), Some("2022-09-21T00:00:00Z"));
        assert_eq!(rows[0].event_name(), "Charged");
        assert_eq!((rows[0].value(2), rows[0].value(3)), (None, Some("é")));
        assert_eq!(rows[1].event_name(), "Viewed");
        assert_eq!((rows[1].value(2), rows[1].value(3)), (Some("1"), None));
    }

    #[test]
    fn reject_raw_is_cut_and_storable() {
        let raw = vec![b'a'; 10_000];
        assert_eq!(Reject::new(1, None, "r".into(), &raw).raw.len(), 4096);
        let r = Reject::new(1, None, "r".into(), b"a\0b\xff\r\n");
        assert_eq!(r.raw, "a\\0b\u{fffd}");
        let multibyte = "é".repeat(3000);
        let r = Reject::new(1, None, "r".into(), multibyte.as_bytes());
        assert!(r.raw.len() <= 4096 && r.raw.chars().all(|c| c == 'é' || c == '\u{fffd}'));
    }
}
