//! PostgreSQL's binary COPY format: the statement, the header and trailer, and each row's
//! fields (text as its bytes, `ts` and lineage numbers as eight-byte integers; `ts` goes from the
//! parser's epoch microseconds to `timestamptz` with no text in between).

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::SinkExt;
use tokio_postgres::{Client, CopyInSink};

use super::{ident, op};
use crate::export::Row;
use crate::warehouse::catalog::TableColumns;
use crate::warehouse::{LINEAGE_COLUMNS, WarehouseError};

/// Binary COPY header: signature, flags, header extension length.
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_OFFSET: i64 = 946_684_800;
/// Microseconds from the Unix epoch to PostgreSQL's.
const PG_EPOCH_OFFSET_MICROS: i64 = PG_EPOCH_OFFSET * crate::time::MICROS_PER_SECOND;

/// The statement that streams rows of `columns` (raw names) and the lineage columns into
/// `table`, in binary form.
pub(super) fn copy_statement(table: &TableColumns, columns: &[String]) -> String {
    let names: Vec<String> = columns
        .iter()
        .map(|raw| ident(&table.columns[raw]))
        .chain(LINEAGE_COLUMNS.iter().map(|c| ident(c)))
        .collect();
    format!(
        "COPY {} ({}) FROM STDIN (FORMAT binary)",
        ident(&table.name),
        names.join(", ")
    )
}

/// A binary `COPY … FROM STDIN` being streamed.
pub(super) struct OpenCopy {
    /// The (event, batch columns) it was opened for.
    pub(super) key: (String, Vec<String>),
    /// The table rows go to.
    pub(super) table: String,
    sink: std::pin::Pin<Box<CopyInSink<Bytes>>>,
    /// Position of `ts` in the batch columns (sent as `timestamptz`; every other data column is
    /// text).
    pub(super) ts_index: Option<usize>,
}

impl OpenCopy {
    /// Starts the COPY `sql` on `client` and sends the header.
    pub(super) async fn start(
        client: &Client,
        sql: &str,
        key: (String, Vec<String>),
        table: String,
        ts_index: Option<usize>,
    ) -> Result<Self, WarehouseError> {
        let sink = client.copy_in::<_, Bytes>(sql).await.map_err(op("copy"))?;
        let mut sink = Box::pin(sink);
        sink.send(Bytes::from_static(COPY_HEADER))
            .await
            .map_err(op("copy"))?;
        Ok(Self {
            key,
            table,
            sink,
            ts_index,
        })
    }

    /// Sends encoded rows.
    pub(super) async fn send(&mut self, data: Bytes) -> Result<(), WarehouseError> {
        self.sink.send(data).await.map_err(op("copy"))
    }

    /// Sends the trailer and ends the COPY: required before any other statement.
    pub(super) async fn finish(mut self) -> Result<(), WarehouseError> {
        // The trailer: a field count of -1.
        self.sink
            .send(Bytes::from_static(&[0xff, 0xff]))
            .await
            .map_err(op("copy"))?;
        self.sink.as_mut().finish().await.map_err(op("copy"))?;
        Ok(())
    }
}

/// What every row of a load carries besides its data: the lineage columns' values.
pub(super) struct Lineage<'a> {
    /// `_source_uri`.
    pub(super) uri: &'a str,
    /// `_load_id`.
    pub(super) load_id: i64,
    /// `_loaded_at`, as [`pg_micros`].
    pub(super) loaded_at: i64,
}

/// Appends one row: its `width` data values, `ts` (at `ts_index`) as `timestamptz`, then the
/// lineage columns.
pub(super) fn put_row(
    buf: &mut BytesMut,
    row: &Row<'_>,
    width: usize,
    ts_index: Option<usize>,
    lineage: &Lineage<'_>,
) {
    buf.put_i16((width + LINEAGE_COLUMNS.len()) as i16);
    for i in 0..width {
        if Some(i) == ts_index {
            put_i64_field(buf, row.ts_micros() - PG_EPOCH_OFFSET_MICROS);
        } else {
            put_field(buf, row.value(i).map(str::as_bytes));
        }
    }
    put_field(buf, Some(lineage.uri.as_bytes()));
    put_i64_field(buf, row.line as i64);
    put_i64_field(buf, lineage.load_id);
    put_i64_field(buf, lineage.loaded_at);
}

/// Appends one binary COPY field: length then bytes, or -1 for NULL.
fn put_field(buf: &mut BytesMut, value: Option<&[u8]>) {
    match value {
        Some(v) => {
            buf.put_i32(v.len() as i32);
            buf.put_slice(v);
        }
        None => buf.put_i32(-1),
    }
}

/// Appends a `timestamptz` or `bigint` field: eight bytes.
fn put_i64_field(buf: &mut BytesMut, value: i64) {
    buf.put_i32(8);
    buf.put_i64(value);
}

/// Microseconds since PostgreSQL's epoch, the binary form of `timestamptz`.
pub(super) fn pg_micros(unix_seconds: i64) -> i64 {
    (unix_seconds - PG_EPOCH_OFFSET) * 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_fields_and_timestamps() {
        let mut buf = BytesMut::new();
        put_field(&mut buf, Some(b"ab"));
        put_field(&mut buf, None);
        put_i64_field(&mut buf, 1);
        assert_eq!(
            &buf[..],
            b"\0\0\0\x02ab\xff\xff\xff\xff\0\0\0\x08\0\0\0\0\0\0\0\x01"
        );
        assert_eq!(pg_micros(946_684_800), 0);
        assert_eq!(pg_micros(946_684_801), 1_000_000);
        assert_eq!(COPY_HEADER.len(), 19);
    }
}
