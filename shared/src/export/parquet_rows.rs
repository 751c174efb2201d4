//! Parquet event and profile exports (CleverTap Export Center). Events: `eventName`, `eventTime` (epoch seconds as
//! text) and maps (`identity`, `profile`, `deviceInfo`, `eventProps`, `commPrefs`) whose values
//! are unions — a struct of typed members `member0 … memberN` of which exactly one is set.
//! Profile exports: `identity` and maps (`profileIdentities`, `device`, `commPrefs`,
//! `profileProps`) of the same unions; each map's entries become the record's own properties, as
//! the profile CSV and JSON exports hold them (`Email`, `MSG-push`, `clevertapId`, `token`), so a
//! profile hashes alike in every format (an entry whose name is taken stays `<map>.<name>`).
//!
//! Each row becomes the JSON record the legacy JSON export would hold (`eventTime` as `ts`, each
//! map entry as a nested key, the one set member as its text) and goes through the JSON parser's
//! per-record body (`JsonRecords::record`): the same dotted column names as the CSV header
//! (`eventProps.CT Source`, `profile.identity`), row checks, column limit and rejects. A row
//! rejected here (a union with no member or several set) keeps its converted JSON as raw text and
//! its 1-based row number as its line.
//!
//! Parquet needs random access (the footer comes last), so the decoded stream is spooled to an
//! anonymous temporary file first, capped by the decoded-bytes limit (`decode_limited` enforces
//! it while the copy reads), then read one row group at a time: memory is bounded by a row group's
//! pages, not by the file. Each row group's columns are decoded and checked (`parquet_checks`)
//! before the parquet crate's record API assembles its rows, since that API panics on levels a
//! damaged page can hold. A file that is not Parquet, has a damaged footer or a schema the
//! record API cannot read, uses a codec this build leaves out, has no `eventTime` column or has
//! a row group that does not decode is quarantined whole; rows already handed over are not
//! committed (the loader's transaction).

use std::fs::File;
use std::io::{self, Read};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use parquet::basic::Compression;
use parquet::file::reader::{FileReader, RowGroupReader};
use parquet::file::serialized_reader::SerializedFileReader;
use parquet::record::{Field, Row};
use serde_json::{Map, Number, Value};

use super::batcher::{BatchSink, ParseSummary};
use super::json_rows::{JsonRecords, RawRecord, reject};
use super::object_name::ExportKind;
use super::parquet_checks::{CheckedRowGroup, check_row_group_levels, check_schema};
use super::parse_error::{FileProblem, ParseError, io_to_parse_error};
use super::parse_options::ParseOptions;
use super::{PROFILE_IDENTITY_COLUMN, TS_COLUMN};

/// The Parquet column holding the event time (epoch seconds), loaded as `ts`.
pub const EVENT_TIME_COLUMN: &str = "eventTime";
/// The maps of a profile export whose entries are the profile's properties.
pub const PROFILE_MAPS: [&str; 4] = ["profileIdentities", "device", "commPrefs", "profileProps"];

/// Codecs this build decodes; the others (brotli, lz4, zstd, lzo) are left out of the parquet
/// crate's features to keep the build small, and a file using one is quarantined naming it.
fn codec_supported(codec: Compression) -> bool {
    matches!(
        codec,
        Compression::UNCOMPRESSED | Compression::SNAPPY | Compression::GZIP(_)
    )
}

/// Parses a decoded Parquet export.
pub(crate) fn parse_parquet(
    mut input: Box<dyn Read + Send>,
    opts: &ParseOptions,
    sink: &mut BatchSink<'_>,
) -> Result<ParseSummary, ParseError> {
    // A temporary file that cannot be made or written is the machine's problem (a full disk),
    // not the file's: retried, not quarantined.
    let mut spool = tempfile::tempfile().map_err(ParseError::Source)?;
    let decoded = copy_to_spool(&mut input, &mut spool, opts)?;
    drop(input);
    let reader = SerializedFileReader::new(spool).map_err(|e| {
        FileProblem::Corrupt(format!("not a Parquet file, or its footer is damaged: {e}"))
    })?;
    check_file(&reader, decoded, opts.kind)?;

    let mut records = JsonRecords::new(opts, sink);
    let mut line = 0u64;
    for group in 0..reader.num_row_groups() {
        let undecodable = |e: &dyn std::fmt::Display| {
            FileProblem::Corrupt(format!("row group {} cannot be decoded: {e}", group + 1))
        };
        let group_reader =
            CheckedRowGroup::new(reader.get_row_group(group).map_err(|e| undecodable(&e))?);
        check_row_group_levels(&group_reader).map_err(|e| undecodable(&e))?;
        for row in group_reader
            .get_row_iter(None)
            .map_err(|e| undecodable(&e))?
        {
            let row = row.map_err(|e| undecodable(&e))?;
            line += 1;
            match row_to_record(&row, opts.kind) {
                Ok(record) => records.record(line, &record, RawRecord::Value(&record), None)?,
                Err(bad) => reject(
                    &mut records.batcher,
                    line,
                    bad.column.as_deref(),
                    bad.reason,
                    RawRecord::Value(&bad.converted),
                )?,
            }
        }
    }
    records.finish(decoded)
}

/// Copies the decoded stream into the spool; the stream's own limit stops a bomb mid-copy.
fn copy_to_spool(
    input: &mut dyn Read,
    spool: &mut File,
    opts: &ParseOptions,
) -> Result<u64, ParseError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_to_parse_error(e, 1, opts)),
        };
        io::Write::write_all(spool, &buf[..n]).map_err(ParseError::Source)?;
        total += n as u64;
    }
}

/// Whole-file checks from the footer, before any row is read: a required column, a schema the
/// record API can assemble, codecs, and column chunks inside the file (the parquet crate panics
/// on a negative offset or size, which a hostile footer can write; a panic would abort a release
/// build).
fn check_file(
    reader: &SerializedFileReader<File>,
    file_bytes: u64,
    kind: ExportKind,
) -> Result<(), FileProblem> {
    let meta = reader.metadata();
    let schema = meta.file_metadata().schema_descr();
    // Events need their time; profiles their key (the snapshot's time is the export run's).
    let required = match kind {
        ExportKind::Events => EVENT_TIME_COLUMN,
        ExportKind::Profiles => PROFILE_IDENTITY_COLUMN,
    };
    let has_required = schema
        .root_schema()
        .get_fields()
        .iter()
        .any(|f| f.name() == required);
    if !has_required {
        return Err(FileProblem::MissingColumn(required.to_string()));
    }
    check_schema(schema)?;
    for group in meta.row_groups() {
        for column in group.columns() {
            let start = column
                .dictionary_page_offset()
                .unwrap_or(column.data_page_offset());
            let inside = u64::try_from(start)
                .ok()
                .zip(u64::try_from(column.compressed_size()).ok())
                .and_then(|(start, len)| start.checked_add(len))
                .is_some_and(|end| end <= file_bytes);
            if !inside {
                return Err(FileProblem::Corrupt(format!(
                    "Parquet column {:?} claims bytes outside the file (offset {start}, size {})",
                    column.column_path().string(),
                    column.compressed_size()
                )));
            }
            let codec = column.compression();
            if !codec_supported(codec) {
                return Err(FileProblem::Unsupported(format!(
                    "Parquet column {:?} is compressed with {codec}, which this build does not \
                     decode (supported: uncompressed, snappy, gzip)",
                    column.column_path().string()
                )));
            }
        }
    }
    Ok(())
}

/// Why one row cannot be loaded, with what was converted of it for the reject's raw text.
struct BadRow {
    column: Option<String>,
    reason: String,
    converted: Value,
}

/// One Parquet row as the JSON export's record: `eventTime` becomes `ts`, maps and structs
/// nested objects, unions their one set member.
fn row_to_record(row: &Row, kind: ExportKind) -> Result<Value, BadRow> {
    let mut record = Map::new();
    let mut problem = None;
    let mut properties = Vec::new();
    for (name, field) in row.get_column_iter() {
        let (key, value) = match (kind, name.as_str()) {
            (ExportKind::Events, EVENT_TIME_COLUMN) => (TS_COLUMN, event_time(field)),
            (_, other) => (other, to_value(field, name)),
        };
        match value {
            Ok(Value::Object(entries))
                if kind == ExportKind::Profiles && PROFILE_MAPS.contains(&key) =>
            {
                properties.push((key, entries));
            }
            Ok(value) => insert_present(&mut record, key.to_string(), value),
            Err(bad) => {
                problem.get_or_insert(bad);
                record.insert(key.to_string(), Value::Null);
            }
        }
    }
    // After the plain columns, so that `identity` keeps its place; first come, first named.
    for (map, entries) in properties {
        for (name, value) in entries {
            let key = if record.contains_key(&name) {
                format!("{map}.{name}")
            } else {
                name
            };
            insert_present(&mut record, key, value);
        }
    }
    match problem {
        None => Ok(Value::Object(record)),
        Some((column, reason)) => Err(BadRow {
            column: Some(column),
            reason,
            converted: Value::Object(record),
        }),
    }
}

/// A field that cannot be converted: the dotted column at fault and why.
type FieldProblem = (String, String);

/// `eventTime` as the text `ts` parses: epoch seconds only. Fourteen digits would otherwise be
/// read as a local `YYYYMMDDhhmmss` (the CSV form), which a Parquet export never writes.
fn event_time(field: &Field) -> Result<Value, FieldProblem> {
    let text = match field {
        Field::Null => return Ok(Value::Null),
        Field::Str(s) => s.clone(),
        Field::Int(n) => n.to_string(),
        Field::Long(n) => n.to_string(),
        other => {
            let shown = to_value(other, TS_COLUMN).map_or_else(|(_, why)| why, |v| v.to_string());
            return Err((
                TS_COLUMN.to_string(),
                format!("eventTime is not epoch seconds: {shown}"),
            ));
        }
    };
    if text.len() > 12 && text.bytes().all(|b| b.is_ascii_digit()) {
        return Err((
            TS_COLUMN.to_string(),
            format!("eventTime {text:?} is not epoch seconds"),
        ));
    }
    Ok(Value::String(text))
}

/// A field as the JSON value the export's record would hold: scalars as the text the CSV export
/// carries, lists as arrays (written as JSON text like the JSON export's), maps and structs as
/// objects, a union (a struct of `memberN` fields) as its one set member.
fn to_value(field: &Field, path: &str) -> Result<Value, FieldProblem> {
    Ok(match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::String(b.to_string()),
        Field::Byte(n) => Value::String(n.to_string()),
        Field::Short(n) => Value::String(n.to_string()),
        Field::Int(n) => Value::String(n.to_string()),
        Field::Long(n) => Value::String(n.to_string()),
        Field::UByte(n) => Value::String(n.to_string()),
        Field::UShort(n) => Value::String(n.to_string()),
        Field::UInt(n) => Value::String(n.to_string()),
        Field::ULong(n) => Value::String(n.to_string()),
        Field::Float16(x) => Value::String(float_text(f64::from(*x), &x.to_string())),
        Field::Float(x) => Value::String(float_text(f64::from(*x), &x.to_string())),
        Field::Double(x) => Value::String(float_text(*x, &x.to_string())),
        Field::Str(s) => Value::String(s.clone()),
        Field::Bytes(bytes) => match std::str::from_utf8(bytes.data()) {
            Ok(text) => Value::String(text.to_string()),
            Err(_) => {
                return Err((
                    path.to_string(),
                    format!("invalid UTF-8 in column {path:?}"),
                ));
            }
        },
        // Decimals and times of day: the parquet crate's text for them (safe: the schema check
        // bounds a decimal's scale, and a time's text is arithmetic).
        Field::Decimal(_) | Field::TimeMillis(_) | Field::TimeMicros(_) => {
            Value::String(field.to_string())
        }
        // Dates and timestamps: the crate's text, written here, because the crate's own unwraps
        // a value outside its calendar (a panic); such a value is the row's reject.
        Field::Date(days) => Value::String(instant_text(
            i64::from(*days)
                .checked_mul(86_400)
                .and_then(|s| Timestamp::from_second(s).ok()),
            "%Y-%m-%d",
            path,
        )?),
        Field::TimestampMillis(ms) => Value::String(instant_text(
            Timestamp::from_millisecond(*ms).ok(),
            "%Y-%m-%d %H:%M:%S%.3f %:z",
            path,
        )?),
        Field::TimestampMicros(us) => Value::String(instant_text(
            Timestamp::from_microsecond(*us).ok(),
            "%Y-%m-%d %H:%M:%S%.6f %:z",
            path,
        )?),
        Field::Group(group) if is_union(group) => union_member(group, path)?,
        Field::Group(group) => {
            let mut object = Map::new();
            for (name, inner) in group.get_column_iter() {
                let value = to_value(inner, &format!("{path}.{name}"))?;
                insert_present(&mut object, name.clone(), value);
            }
            Value::Object(object)
        }
        Field::ListInternal(list) => Value::Array(
            list.elements()
                .iter()
                .map(|e| to_value(e, path))
                .collect::<Result<_, _>>()?,
        ),
        Field::MapInternal(map) => {
            let mut object = Map::new();
            for (key, value) in map.entries() {
                let key = match to_value(key, path)? {
                    Value::String(k) => k,
                    other => other.to_string(),
                };
                let inner_path = format!("{path}.{key}");
                // A map value with no member set is a broken union, not an absent property.
                let value = match value {
                    Field::Null => return Err(no_member(&inner_path)),
                    other => to_value(other, &inner_path)?,
                };
                if object.insert(key, value).is_some() {
                    return Err((
                        inner_path.clone(),
                        format!("the name {inner_path:?} appears twice in the map"),
                    ));
                }
            }
            Value::Object(object)
        }
    })
}

/// An instant in UTC as `format` writes it; `None` (out of the calendar's range) is the row's
/// reject.
fn instant_text(
    instant: Option<Timestamp>,
    format: &str,
    path: &str,
) -> Result<String, FieldProblem> {
    match instant {
        Some(instant) => Ok(instant
            .to_zoned_datetime(TimeZone::UTC)
            .strftime(format)
            .to_string()),
        None => Err((
            path.to_string(),
            format!("the date or time in column {path:?} is out of range"),
        )),
    }
}

/// Adds `value` unless it is NULL or an empty object: the CSV export has no column for an
/// absent property or an empty map (`eventProps` of an event without properties), and the JSON
/// flattening would make one.
fn insert_present(object: &mut Map<String, Value>, key: String, value: Value) {
    let absent = match &value {
        Value::Null => true,
        Value::Object(inner) => inner.is_empty(),
        _ => false,
    };
    if !absent {
        object.insert(key, value);
    }
}

/// A struct whose fields are all named `member<N>`: the Avro-style union Export Center writes.
fn is_union(group: &Row) -> bool {
    group.len() > 0
        && group.get_column_iter().all(|(name, _)| {
            name.strip_prefix("member")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// The one set member of a union, as text; none or several set is the row's reject.
fn union_member(group: &Row, path: &str) -> Result<Value, FieldProblem> {
    let mut set = group
        .get_column_iter()
        .filter(|(_, value)| !matches!(value, Field::Null));
    let Some((_, member)) = set.next() else {
        return Err(no_member(path));
    };
    let others = set.count();
    if others > 0 {
        return Err((
            path.to_string(),
            format!(
                "the value of {path:?} has {} members set; a union has exactly one",
                others + 1
            ),
        ));
    }
    to_value(member, path)
}

fn no_member(path: &str) -> FieldProblem {
    (
        path.to_string(),
        format!("the value of {path:?} has no member set; a union has exactly one"),
    )
}

/// A float as its shortest round-trip text in JSON's number form (`5.0`, `0.1`, `1e+30`), the
/// way the JSON export's numbers are written; `shortest` is the value's own type's shortest
/// decimal (so an `f32` 0.1 stays `0.1`, not its `f64` widening). NaN and infinities, which
/// JSON has no number for, keep Rust's names.
fn float_text(value: f64, shortest: &str) -> String {
    let parsed: f64 = shortest.parse().unwrap_or(value);
    match Number::from_f64(parsed) {
        Some(n) => n.to_string(),
        None => shortest.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_built_codecs_are_accepted() {
        use parquet::basic::{BrotliLevel, GzipLevel, ZstdLevel};
        for codec in [
            Compression::UNCOMPRESSED,
            Compression::SNAPPY,
            Compression::GZIP(GzipLevel::default()),
        ] {
            assert!(codec_supported(codec), "{codec}");
        }
        for codec in [
            Compression::ZSTD(ZstdLevel::default()),
            Compression::BROTLI(BrotliLevel::default()),
            Compression::LZ4,
            Compression::LZ4_RAW,
            Compression::LZO,
        ] {
            assert!(!codec_supported(codec), "{codec}");
        }
    }

    /// The crate's text for dates and timestamps (which panics out of range), kept for the
    /// values it can write; out of range is a reject, not a panic.
    #[test]
    fn dates_and_timestamps_read_as_the_crate_writes_them_and_never_panic() {
        for field in [
            Field::Date(19_256),
            Field::Date(-1),
            Field::TimestampMillis(1_663_718_400_123),
            Field::TimestampMicros(1_663_718_400_123_456),
            Field::TimestampMillis(0),
        ] {
            assert_eq!(to_value(&field, "c"), Ok(Value::String(field.to_string())));
        }
        for field in [
            Field::Date(i32::MAX),
            Field::Date(i32::MIN),
            Field::TimestampMillis(i64::MAX),
            Field::TimestampMicros(i64::MIN),
        ] {
            assert_eq!(
                to_value(&field, "c"),
                Err((
                    "c".to_string(),
                    "the date or time in column \"c\" is out of range".to_string()
                ))
            );
        }
        assert!(event_time(&Field::Date(i32::MAX)).is_err());
    }

    #[test]
    fn floats_are_shortest_round_trip_in_json_form() {
        assert_eq!(float_text(5.0, &5.0f64.to_string()), "5.0");
        assert_eq!(float_text(f64::from(0.1f32), &0.1f32.to_string()), "0.1");
        assert_eq!(float_text(1e30, &1e30f64.to_string()), "1e+30");
        assert_eq!(float_text(49.99, &49.99f64.to_string()), "49.99");
        assert_eq!(float_text(f64::NAN, &f64::NAN.to_string()), "NaN");
    }
}
