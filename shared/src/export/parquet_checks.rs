//! Checks that keep a hostile Parquet file away from the parquet crate's panics: its record API
//! asserts on a schema it cannot assemble, on a level above a column's maximum and on a type it
//! does not convert, and its column reader slices pages by sizes their headers claim. A panic
//! aborts a release build, so every such file is refused here with a reason instead.

use parquet::basic::{ConvertedType, Encoding, Repetition, Type as PhysicalType};
use parquet::bloom_filter::Sbbf;
use parquet::column::page::{Page, PageMetadata, PageReader};
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::DataType;
use parquet::errors::{ParquetError, Result as ParquetResult};
use parquet::file::metadata::RowGroupMetaData;
use parquet::file::reader::RowGroupReader;
use parquet::record::reader::RowIter;
use parquet::schema::types::{ColumnDescriptor, SchemaDescriptor, Type as SchemaType};

use super::parse_error::FileProblem;

/// Deepest nesting of groups read; Export Center's maps of unions are four deep.
const MAX_NESTING: usize = 16;

/// Decimal precision read at most (a 256-bit decimal's); the crate's text of a decimal pads
/// with as many zeros as its scale, so a hostile scale must not be unbounded.
const MAX_DECIMAL_PRECISION: i32 = 76;

/// Levels and values decoded at a time while a row group's columns are checked.
const CHECK_BATCH: usize = 4096;

/// Refuses a schema the record API would panic on: a group without fields, a `LIST` or `MAP`
/// not laid out as the format specifies, a field without a repetition, a leaf type it does not
/// convert, a decimal with an impossible scale, nesting deeper than [`MAX_NESTING`].
pub(crate) fn check_schema(schema: &SchemaDescriptor) -> Result<(), FileProblem> {
    let root = schema.root_schema();
    if root.get_fields().is_empty() {
        return Err(corrupt_schema("the schema has no columns"));
    }
    for field in root.get_fields() {
        check_field(field, field.name(), 1)?;
    }
    Ok(())
}

fn corrupt_schema(what: &str) -> FileProblem {
    FileProblem::Corrupt(format!("Parquet schema: {what}"))
}

fn check_field(field: &SchemaType, path: &str, depth: usize) -> Result<(), FileProblem> {
    if depth > MAX_NESTING {
        return Err(FileProblem::Unsupported(format!(
            "Parquet field {path:?} is nested deeper than {MAX_NESTING} levels"
        )));
    }
    let info = field.get_basic_info();
    if !info.has_repetition() {
        return Err(corrupt_schema(&format!("field {path:?} has no repetition")));
    }
    if field.is_primitive() {
        return check_leaf(field, path);
    }
    let fields = field.get_fields();
    if fields.is_empty() {
        return Err(corrupt_schema(&format!("group {path:?} has no fields")));
    }
    let repeated_group = |f: &SchemaType| {
        f.get_basic_info().has_repetition()
            && f.get_basic_info().repetition() == Repetition::REPEATED
    };
    // The shapes the crate's record reader asserts (`record/reader.rs`, `reader_tree`).
    match info.converted_type() {
        ConvertedType::LIST if fields.len() != 1 || !repeated_group(&fields[0]) => {
            return Err(corrupt_schema(&format!(
                "LIST {path:?} does not hold exactly one repeated field"
            )));
        }
        ConvertedType::MAP | ConvertedType::MAP_KEY_VALUE
            if fields.len() != 1
                || fields[0].is_primitive()
                || !repeated_group(&fields[0])
                || !(1..=2).contains(&fields[0].get_fields().len()) =>
        {
            return Err(corrupt_schema(&format!(
                "MAP {path:?} does not hold one repeated group of a key and a value"
            )));
        }
        _ => {}
    }
    for child in fields {
        check_field(child, &format!("{path}.{}", child.name()), depth + 1)?;
    }
    Ok(())
}

/// The leaf types the record API converts (`record/api.rs`, `Field::convert_*`); any other
/// pairing of physical type and annotation is an `unimplemented!` there.
fn check_leaf(field: &SchemaType, path: &str) -> Result<(), FileProblem> {
    let physical = field.get_physical_type();
    let converted = field.get_basic_info().converted_type();
    use ConvertedType as C;
    let readable = match physical {
        PhysicalType::BOOLEAN | PhysicalType::FLOAT | PhysicalType::DOUBLE => true,
        PhysicalType::INT96 => converted == C::NONE,
        PhysicalType::INT32 => matches!(
            converted,
            C::NONE
                | C::INT_8
                | C::INT_16
                | C::INT_32
                | C::UINT_8
                | C::UINT_16
                | C::UINT_32
                | C::DATE
                | C::TIME_MILLIS
                | C::DECIMAL
        ),
        PhysicalType::INT64 => matches!(
            converted,
            C::NONE
                | C::INT_64
                | C::UINT_64
                | C::TIME_MICROS
                | C::TIMESTAMP_MILLIS
                | C::TIMESTAMP_MICROS
                | C::DECIMAL
        ),
        PhysicalType::BYTE_ARRAY => matches!(
            converted,
            C::NONE | C::UTF8 | C::ENUM | C::JSON | C::BSON | C::DECIMAL
        ),
        // Fixed-length byte arrays go through a separate page path in the crate and are not in
        // Export Center's layout: refused rather than trusted.
        PhysicalType::FIXED_LEN_BYTE_ARRAY => false,
    };
    if !readable {
        return Err(FileProblem::Unsupported(format!(
            "Parquet column {path:?} is {physical} annotated {converted}, which this loader does \
             not read"
        )));
    }
    if converted == C::DECIMAL {
        let (precision, scale) = (field.get_precision(), field.get_scale());
        if !(0 <= scale && scale <= precision && precision <= MAX_DECIMAL_PRECISION) {
            return Err(corrupt_schema(&format!(
                "decimal {path:?} has precision {precision} and scale {scale}"
            )));
        }
    }
    Ok(())
}

/// A row group whose pages are checked as they are read ([`CheckedPages`]); its row iterator
/// is the crate's, over those pages. Call [`check_row_group_levels`] before iterating rows.
pub(crate) struct CheckedRowGroup<'a> {
    inner: Box<dyn RowGroupReader + 'a>,
}

impl<'a> CheckedRowGroup<'a> {
    pub(crate) fn new(inner: Box<dyn RowGroupReader + 'a>) -> Self {
        Self { inner }
    }
}

impl RowGroupReader for CheckedRowGroup<'_> {
    fn metadata(&self) -> &RowGroupMetaData {
        self.inner.metadata()
    }

    fn num_columns(&self) -> usize {
        self.inner.num_columns()
    }

    fn get_column_page_reader(&self, i: usize) -> ParquetResult<Box<dyn PageReader>> {
        let descr = self.metadata().schema_descr().column(i);
        Ok(Box::new(CheckedPages {
            inner: self.inner.get_column_page_reader(i)?,
            levels: MaxLevels {
                def: descr.max_def_level(),
                rep: descr.max_rep_level(),
                physical: descr.physical_type(),
            },
            dictionary_seen: false,
        }))
    }

    fn get_column_bloom_filter(&self, i: usize) -> Option<&Sbbf> {
        self.inner.get_column_bloom_filter(i)
    }

    fn get_row_iter(&self, projection: Option<SchemaType>) -> ParquetResult<RowIter<'_>> {
        RowIter::from_row_group(projection, self)
    }
}

/// A column chunk's pages, each refused if a decoder would panic on it ([`check_page`]).
struct CheckedPages {
    inner: Box<dyn PageReader>,
    levels: MaxLevels,
    /// Whether a dictionary page came first: the crate expects one before dictionary-encoded
    /// data (`Decoder for dict should have been set`).
    dictionary_seen: bool,
}

impl CheckedPages {
    fn checked(&mut self, page: Option<Page>) -> ParquetResult<Option<Page>> {
        if let Some(page) = &page {
            check_page(page, self.levels, self.dictionary_seen).map_err(ParquetError::General)?;
            self.dictionary_seen |= matches!(page, Page::DictionaryPage { .. });
        }
        Ok(page)
    }
}

impl Iterator for CheckedPages {
    type Item = ParquetResult<Page>;

    fn next(&mut self) -> Option<Self::Item> {
        self.get_next_page().transpose()
    }
}

impl PageReader for CheckedPages {
    fn get_next_page(&mut self) -> ParquetResult<Option<Page>> {
        let page = self.inner.get_next_page()?;
        self.checked(page)
    }

    fn peek_next_page(&mut self) -> ParquetResult<Option<PageMetadata>> {
        self.inner.peek_next_page()
    }

    fn skip_next_page(&mut self) -> ParquetResult<()> {
        // A dictionary skipped here comes back through `take_deferred_dictionary` (checked
        // there) when a data page needs it. The loader reads every row, so this is for safety.
        let dictionary = self
            .inner
            .peek_next_page()?
            .is_some_and(|page| page.is_dict);
        self.dictionary_seen |= dictionary && self.inner.supports_deferred_dictionary();
        self.inner.skip_next_page()
    }

    fn supports_deferred_dictionary(&self) -> bool {
        self.inner.supports_deferred_dictionary()
    }

    fn take_deferred_dictionary(&mut self) -> ParquetResult<Option<Page>> {
        let page = self.inner.take_deferred_dictionary()?;
        self.checked(page)
    }

    fn at_record_boundary(&mut self) -> ParquetResult<bool> {
        self.inner.at_record_boundary()
    }
}

/// What a column's pages are checked against.
#[derive(Debug, Clone, Copy)]
struct MaxLevels {
    def: i16,
    rep: i16,
    physical: PhysicalType,
}

/// A page the crate's decoders can read without panicking. They slice and assert on what the
/// bytes claim: level sections sized by a header (a v2 page's lengths are checked against the
/// size the header claims, not the bytes there are; v1 bit-packed levels are sized from the
/// value count alone), run headers of the RLE/bit-packed hybrid longer than the crate's limit
/// (an `assert!`), dictionary indices wider than 32 bits, dictionary-encoded data before any
/// dictionary, a plain byte array's 4-byte length cut short (read unchecked). Value encodings
/// other than plain, dictionary and boolean RLE are refused: the delta encodings decode
/// variable-length integers the same unchecked way, and Export Center's v1 pages do not use
/// them.
fn check_page(page: &Page, max: MaxLevels, dictionary_seen: bool) -> Result<(), String> {
    let (values, encoding, num_values, present) = match page {
        Page::DictionaryPage {
            buf, num_values, ..
        } => {
            if max.physical == PhysicalType::BYTE_ARRAY {
                check_plain_byte_arrays(buf, u64::from(*num_values))?;
            }
            return Ok(());
        }
        Page::DataPageV2 {
            buf,
            num_values,
            encoding,
            def_levels_byte_len,
            rep_levels_byte_len,
            ..
        } => {
            let (rep_len, def_len) = (*rep_levels_byte_len as usize, *def_levels_byte_len as usize);
            if rep_len as u64 + def_len as u64 > buf.len() as u64 {
                return Err(format!(
                    "a data page claims {} bytes of levels but holds {} bytes",
                    rep_len as u64 + def_len as u64,
                    buf.len()
                ));
            }
            if max.rep > 0 {
                walk_hybrid(&buf[..rep_len], level_bit_width(max.rep), *num_values, None)?;
            }
            let present = match max.def {
                0 => u64::from(*num_values),
                def => {
                    let section = &buf[rep_len..rep_len + def_len];
                    walk_hybrid(section, level_bit_width(def), *num_values, Some(def))?
                }
            };
            (
                &buf[rep_len + def_len..],
                *encoding,
                *num_values,
                Some(present),
            )
        }
        Page::DataPage {
            buf,
            num_values,
            encoding,
            def_level_encoding,
            rep_level_encoding,
            ..
        } => {
            let mut rest = &buf[..];
            if max.rep > 0 {
                (rest, _) = check_v1_levels(*rep_level_encoding, max.rep, *num_values, rest)?;
            }
            let mut present = Some(u64::from(*num_values));
            if max.def > 0 {
                (rest, present) = check_v1_levels(*def_level_encoding, max.def, *num_values, rest)?;
            }
            (rest, *encoding, *num_values, present)
        }
    };
    match encoding {
        Encoding::PLAIN if max.physical == PhysicalType::BYTE_ARRAY => match present {
            Some(present) => check_plain_byte_arrays(values, present),
            None => Err("plain byte arrays under bit-packed levels".into()),
        },
        Encoding::PLAIN => Ok(()),
        Encoding::PLAIN_DICTIONARY | Encoding::RLE_DICTIONARY => {
            if !dictionary_seen {
                return Err("a dictionary-encoded data page comes before any dictionary".into());
            }
            let Some((&bit_width, indices)) = values.split_first() else {
                return Err("a dictionary-encoded data page has no bit width".into());
            };
            if bit_width > 32 {
                return Err(format!("dictionary indices {bit_width} bits wide"));
            }
            walk_hybrid(indices, bit_width, num_values, None).map(drop)
        }
        Encoding::RLE if max.physical == PhysicalType::BOOLEAN => {
            let (section, _) = length_prefixed(values)?;
            walk_hybrid(section, 1, num_values, None).map(drop)
        }
        other => Err(format!(
            "a data page's values use the encoding {other}, which this loader does not read"
        )),
    }
}

/// The bits a level of at most `max` takes.
fn level_bit_width(max: i16) -> u8 {
    (16 - max.leading_zeros()) as u8
}

/// Checks a v1 page's level section (as the crate's `parse_v1_level` reads it) and returns the
/// bytes after it, and how many of its levels are `max` when it is RLE: a 4-byte length and
/// that many bytes. Bit-packed levels (deprecated) are the value count at the level's width.
fn check_v1_levels(
    encoding: Encoding,
    max: i16,
    num_values: u32,
    rest: &[u8],
) -> Result<(&[u8], Option<u64>), String> {
    #[expect(deprecated, reason = "old writers still write bit-packed levels")]
    match encoding {
        Encoding::RLE => {
            let (section, after) = length_prefixed(rest)?;
            let at_max = walk_hybrid(section, level_bit_width(max), num_values, Some(max))?;
            Ok((after, Some(at_max)))
        }
        Encoding::BIT_PACKED => {
            let bytes = (u64::from(num_values) * u64::from(level_bit_width(max))).div_ceil(8);
            match usize::try_from(bytes) {
                Ok(bytes) if bytes <= rest.len() => Ok((&rest[bytes..], None)),
                _ => Err(format!(
                    "a data page's levels run past its {} bytes",
                    rest.len()
                )),
            }
        }
        other => Err(format!("a data page's levels use the encoding {other}")),
    }
}

/// A 4-byte little-endian length and that many bytes; the section and what follows it.
fn length_prefixed(bytes: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let (len, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or("a data page ends inside a length")?;
    let len = u32::from_le_bytes(*len) as usize;
    if len > rest.len() {
        return Err(format!(
            "a data page's section of {len} bytes runs past its end"
        ));
    }
    Ok(rest.split_at(len))
}

/// `count` plain byte arrays (a 4-byte length, then the bytes) all whole: the crate reads the
/// length unchecked, so one cut short is a panic.
fn check_plain_byte_arrays(mut bytes: &[u8], count: u64) -> Result<(), String> {
    for _ in 0..count {
        let (_, rest) = length_prefixed(bytes)
            .map_err(|_| format!("a page ends inside one of its {count} byte arrays"))?;
        bytes = rest;
    }
    Ok(())
}

/// Longest run header read, in bytes: a run of up to 2^31 values (a page's most) takes five.
/// The crate asserts at ten, and in a debug build overflows a shift before that.
const MAX_RUN_HEADER_BYTES: usize = 5;

/// Walks an RLE/bit-packed hybrid stream for `values` values (or to its end, or a zero header,
/// where the crate stops too), each run header within [`MAX_RUN_HEADER_BYTES`]; returns how
/// many of the values it holds equal `count` (0 without one).
fn walk_hybrid(
    stream: &[u8],
    bit_width: u8,
    values: u32,
    count: Option<i16>,
) -> Result<u64, String> {
    let width = usize::from(bit_width);
    let (mut at, mut seen, mut counted) = (0usize, 0u64, 0u64);
    let wanted = u64::from(values);
    while at < stream.len() && seen < wanted {
        let mut header = 0u64;
        let mut bytes = 0;
        loop {
            let Some(&byte) = stream.get(at) else {
                return Ok(counted);
            };
            at += 1;
            header |= u64::from(byte & 0x7f) << (7 * bytes);
            bytes += 1;
            if byte & 0x80 == 0 {
                break;
            }
            if bytes == MAX_RUN_HEADER_BYTES {
                return Err(format!(
                    "a run header longer than {MAX_RUN_HEADER_BYTES} bytes in an RLE stream"
                ));
            }
        }
        if header == 0 {
            return Ok(counted);
        }
        let run = header >> 1;
        if header & 1 == 1 {
            // Bit-packed: `run` groups of 8 values, least significant bit first.
            let end = at.saturating_add(
                usize::try_from(run.saturating_mul(u64::from(bit_width))).unwrap_or(usize::MAX),
            );
            let packed = &stream[at..end.min(stream.len())];
            let in_run = run.saturating_mul(8).min(wanted - seen);
            if let Some(target) = count.filter(|_| width > 0) {
                let whole = (packed.len() * 8 / width) as u64;
                for i in 0..in_run.min(whole) as usize {
                    let value = (0..width).fold(0u64, |v, bit| {
                        let at_bit = i * width + bit;
                        v | u64::from((packed[at_bit / 8] >> (at_bit % 8)) & 1) << bit
                    });
                    counted += u64::from(value == target as u64);
                }
            }
            seen = seen.saturating_add(in_run);
            at = end;
        } else {
            let value_bytes = width.div_ceil(8);
            let Some(value) = stream.get(at..at + value_bytes) else {
                return Ok(counted);
            };
            let value = value.iter().rev().fold(0u64, |v, &b| v << 8 | u64::from(b));
            let in_run = run.min(wanted - seen);
            if count.is_some_and(|target| value == target as u64) {
                counted += in_run;
            }
            seen += in_run;
            at += value_bytes;
        }
    }
    Ok(counted)
}

/// Decodes every column of a row group once, before its rows are assembled: every definition
/// and repetition level within its column's maximum, each column holding as many rows as the
/// footer says the group has, and text columns holding UTF-8. The record API asserts the first and trusts the second (a
/// count the footer inflates would have it assemble rows from nothing), so the check runs
/// first; memory stays one page and one batch per column.
pub(crate) fn check_row_group_levels(group: &CheckedRowGroup<'_>) -> Result<(), String> {
    let rows = u64::try_from(group.metadata().num_rows())
        .map_err(|_| format!("the footer gives {} rows", group.metadata().num_rows()))?;
    let schema = group.metadata().schema_descr();
    if group.num_columns() != schema.num_columns() {
        return Err(format!(
            "it has {} columns, the schema {}",
            group.num_columns(),
            schema.num_columns()
        ));
    }
    for i in 0..group.num_columns() {
        let descr = schema.column(i);
        // The record API's error for a string that is not UTF-8 quotes the bytes (personal
        // data, unbounded) as the reason; checked here first, it names only the column.
        let text = matches!(
            descr.converted_type(),
            ConvertedType::UTF8 | ConvertedType::ENUM | ConvertedType::JSON
        );
        let reader = group.get_column_reader(i).map_err(|e| e.to_string())?;
        let read = match reader {
            ColumnReader::BoolColumnReader(r) => column_rows(r, &descr, rows, |_| true),
            ColumnReader::Int32ColumnReader(r) => column_rows(r, &descr, rows, |_| true),
            ColumnReader::Int64ColumnReader(r) => column_rows(r, &descr, rows, |_| true),
            ColumnReader::Int96ColumnReader(r) => column_rows(r, &descr, rows, |_| true),
            ColumnReader::FloatColumnReader(r) => column_rows(r, &descr, rows, |_| true),
            ColumnReader::DoubleColumnReader(r) => column_rows(r, &descr, rows, |_| true),
            ColumnReader::ByteArrayColumnReader(r) => column_rows(r, &descr, rows, |v| {
                !text || std::str::from_utf8(v.data()).is_ok()
            }),
            ColumnReader::FixedLenByteArrayColumnReader(r) => {
                column_rows(r, &descr, rows, |_| true)
            }
        };
        let read = read.map_err(|e| format!("column {:?}: {e}", descr.path().string()))?;
        if read != rows {
            return Err(format!(
                "column {:?} holds {read} rows, the footer says {rows}",
                descr.path().string()
            ));
        }
    }
    Ok(())
}

/// Rows in one column chunk, its levels checked and each value passing `valid`; stops early
/// past `rows`.
fn column_rows<T: DataType>(
    mut reader: ColumnReaderImpl<T>,
    descr: &ColumnDescriptor,
    rows: u64,
    valid: impl Fn(&T::T) -> bool,
) -> Result<u64, String> {
    let (max_def, max_rep) = (descr.max_def_level(), descr.max_rep_level());
    let mut def = (max_def > 0).then(Vec::new);
    let mut rep = (max_rep > 0).then(Vec::new);
    let mut values = Vec::new();
    let mut read = 0u64;
    loop {
        values.clear();
        for levels in [&mut def, &mut rep].into_iter().flatten() {
            levels.clear();
        }
        let (records, _, levels) = reader
            .read_records(CHECK_BATCH, def.as_mut(), rep.as_mut(), &mut values)
            .map_err(|e| e.to_string())?;
        if records == 0 && levels == 0 {
            return Ok(read);
        }
        for (kind, levels, max) in [("definition", &def, max_def), ("repetition", &rep, max_rep)] {
            if let Some(bad) = levels.iter().flatten().find(|&&l| !(0..=max).contains(&l)) {
                return Err(format!(
                    "a {kind} level of {bad}, above the column's maximum {max}"
                ));
            }
        }
        if !values.iter().all(&valid) {
            return Err("a value is not valid UTF-8".to_string());
        }
        read += records as u64;
        if read > rows {
            return Err(format!("more rows than the footer's {rows}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const LEVELS: MaxLevels = MaxLevels {
        def: 1,
        rep: 1,
        physical: PhysicalType::INT32,
    };

    fn v2(buf: Vec<u8>, rep: u32, def: u32, encoding: Encoding) -> Page {
        Page::DataPageV2 {
            buf: Bytes::from(buf),
            num_values: 1,
            encoding,
            num_nulls: 0,
            num_rows: 1,
            def_levels_byte_len: def,
            rep_levels_byte_len: rep,
            is_compressed: false,
            statistics: None,
        }
    }

    fn v1(buf: Vec<u8>, num_values: u32, levels: Encoding, encoding: Encoding) -> Page {
        Page::DataPage {
            buf: Bytes::from(buf),
            num_values,
            encoding,
            def_level_encoding: levels,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        }
    }

    #[test]
    fn v2_page_levels_must_fit_its_bytes() {
        let plain = Encoding::PLAIN;
        assert_eq!(
            check_page(&v2(vec![0; 10], 6, 4, plain), LEVELS, false),
            Ok(())
        );
        assert_eq!(
            check_page(&v2(vec![0; 10], 7, 4, plain), LEVELS, false),
            Err("a data page claims 11 bytes of levels but holds 10 bytes".to_string())
        );
        assert!(check_page(&v2(vec![0; 10], u32::MAX, u32::MAX, plain), LEVELS, false).is_err());
    }

    #[test]
    #[expect(deprecated, reason = "the encoding under test")]
    fn v1_page_levels_must_fit_its_bytes() {
        let (plain, rle, packed) = (Encoding::PLAIN, Encoding::RLE, Encoding::BIT_PACKED);
        let def_only = MaxLevels {
            def: 4,
            rep: 0,
            physical: PhysicalType::INT32,
        };
        // Bit-packed definition levels of maximum 4 take 3 bits each: 8 values, 3 bytes.
        assert_eq!(
            check_page(&v1(vec![0; 3], 8, packed, plain), def_only, false),
            Ok(())
        );
        assert!(check_page(&v1(vec![0; 3], 9, packed, plain), def_only, false).is_err());
        // RLE: a 4-byte length, then that many bytes (repetition, then definition).
        let levels = [2u8, 0, 0, 0, 9, 9, 1, 0, 0, 0, 9];
        assert_eq!(
            check_page(&v1(levels.to_vec(), 1, rle, plain), LEVELS, false),
            Ok(())
        );
        assert!(check_page(&v1(levels[..10].to_vec(), 1, rle, plain), LEVELS, false).is_err());
        assert!(check_page(&v1(vec![0; 2], 1, rle, plain), def_only, false).is_err());
        assert!(check_page(&v1(vec![0; 8], 1, plain, plain), def_only, false).is_err());
    }

    /// The crate asserts a run header is at most ten bytes (and a debug build overflows a
    /// shift at the tenth): refused past five, the most a page's run needs.
    #[test]
    fn rle_run_headers_are_bounded() {
        let def_only = MaxLevels {
            def: 1,
            rep: 0,
            physical: PhysicalType::INT32,
        };
        let page = |header: &[u8]| {
            let mut buf = (header.len() as u32 + 1).to_le_bytes().to_vec();
            buf.extend_from_slice(header);
            buf.push(1);
            v1(buf, 100, Encoding::RLE, Encoding::PLAIN)
        };
        assert_eq!(check_page(&page(&[0x80, 0x01]), def_only, false), Ok(()));
        assert_eq!(
            check_page(&page(&[0xff, 0xff, 0xff, 0xff, 0x0f]), def_only, false),
            Ok(())
        );
        assert_eq!(
            check_page(&page(&[0xff; 11]), def_only, false),
            Err("a run header longer than 5 bytes in an RLE stream".to_string())
        );
    }

    #[test]
    fn dictionary_data_needs_a_dictionary_and_indices_of_at_most_32_bits() {
        let dict = |bit_width: u8| v2(vec![bit_width, 2, 0], 0, 0, Encoding::RLE_DICTIONARY);
        assert_eq!(check_page(&dict(3), LEVELS, true), Ok(()));
        assert_eq!(
            check_page(&dict(3), LEVELS, false),
            Err("a dictionary-encoded data page comes before any dictionary".to_string())
        );
        assert_eq!(
            check_page(&dict(33), LEVELS, true),
            Err("dictionary indices 33 bits wide".to_string())
        );
        assert_eq!(
            check_page(&v2(vec![], 0, 0, Encoding::RLE_DICTIONARY), LEVELS, true),
            Err("a dictionary-encoded data page has no bit width".to_string())
        );
        assert_eq!(
            check_page(
                &v2(vec![0; 8], 0, 0, Encoding::DELTA_BINARY_PACKED),
                LEVELS,
                true
            ),
            Err(
                "a data page's values use the encoding DELTA_BINARY_PACKED, which this loader \
                 does not read"
                    .to_string()
            )
        );
    }

    /// Plain byte arrays are walked for as many values as the definition levels make present
    /// (here RLE: 3 levels at 1, then bit-packed 1,0,1,0,0,0,0,0: five present).
    #[test]
    fn plain_byte_arrays_are_whole_for_every_present_value() {
        let strings = MaxLevels {
            def: 1,
            rep: 0,
            physical: PhysicalType::BYTE_ARRAY,
        };
        let page = |values: &[u8]| {
            let levels = [6u8, 1, 3, 0b0000_0101];
            let mut buf = (levels.len() as u32).to_le_bytes().to_vec();
            buf.extend_from_slice(&levels);
            buf.extend_from_slice(values);
            v1(buf, 11, Encoding::RLE, Encoding::PLAIN)
        };
        let five: Vec<u8> = (0..5).flat_map(|_| [1u8, 0, 0, 0, b'x']).collect();
        assert_eq!(check_page(&page(&five), strings, false), Ok(()));
        assert_eq!(
            check_page(&page(&five[..23]), strings, false),
            Err("a page ends inside one of its 5 byte arrays".to_string())
        );
        assert_eq!(walk_hybrid(&[6, 1, 3, 0b0000_0101], 1, 11, Some(1)), Ok(5));
        assert_eq!(walk_hybrid(&[6, 1, 3, 0b0000_0101], 1, 4, Some(1)), Ok(4));
    }

    /// A one-column file of `values` (a `None` is a null), in one row group.
    fn one_column_file(values: &[Option<&[u8]>]) -> Bytes {
        use parquet::data_type::{ByteArray, ByteArrayType};
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        use parquet::schema::parser::parse_message_type;
        use std::sync::Arc;
        let schema =
            Arc::new(parse_message_type("message m { optional binary s (UTF8); }").unwrap());
        let mut out = Vec::new();
        let props = Arc::new(WriterProperties::builder().build());
        let mut writer = SerializedFileWriter::new(&mut out, schema, props).unwrap();
        let mut group = writer.next_row_group().unwrap();
        let mut column = group.next_column().unwrap().unwrap();
        let present: Vec<ByteArray> = values
            .iter()
            .flatten()
            .map(|v| ByteArray::from(v.to_vec()))
            .collect();
        let def: Vec<i16> = values.iter().map(|v| i16::from(v.is_some())).collect();
        column
            .typed::<ByteArrayType>()
            .write_batch(&present, Some(&def), None)
            .unwrap();
        column.close().unwrap();
        group.close().unwrap();
        writer.close().unwrap();
        Bytes::from(out)
    }

    fn check_first_group(file: Bytes) -> Result<(), String> {
        use parquet::file::reader::FileReader;
        use parquet::file::serialized_reader::SerializedFileReader;
        let reader = SerializedFileReader::new(file).unwrap();
        check_row_group_levels(&CheckedRowGroup::new(reader.get_row_group(0).unwrap()))
    }

    /// The record API's error for such a string quotes its bytes; the check names the column.
    #[test]
    fn a_string_that_is_not_utf8_is_named_by_column_not_by_its_bytes() {
        assert_eq!(
            check_first_group(one_column_file(&[Some(b"ok"), None])),
            Ok(())
        );
        assert_eq!(
            check_first_group(one_column_file(&[Some(b"ok"), None, Some(b"\xff\xfe")])),
            Err("column \"s\": a value is not valid UTF-8".to_string())
        );
    }

    #[test]
    fn schemas_the_record_reader_cannot_assemble_are_refused() {
        use parquet::schema::parser::parse_message_type;
        use std::sync::Arc;
        let check = |text: &str| {
            let schema = SchemaDescriptor::new(Arc::new(parse_message_type(text).unwrap()));
            check_schema(&schema).map_err(|e| e.to_string())
        };
        let map = "message m { optional group m (MAP) { repeated group key_value { \
                   required binary key (UTF8); optional int32 value; } } }";
        assert_eq!(check(map), Ok(()));
        for (text, reason) in [
            (
                "message m { optional group m (MAP) { required group key_value { \
                 required binary key (UTF8); } } }",
                "corrupt or truncated data: Parquet schema: MAP \"m\" does not hold one repeated \
                 group of a key and a value",
            ),
            (
                "message m { optional group l (LIST) { repeated int32 a; repeated int32 b; } }",
                "corrupt or truncated data: Parquet schema: LIST \"l\" does not hold exactly one \
                 repeated field",
            ),
            (
                "message m { optional group g { } }",
                "corrupt or truncated data: Parquet schema: group \"g\" has no fields",
            ),
            (
                "message m { optional group g { optional fixed_len_byte_array(12) t (INTERVAL); } }",
                "Parquet column \"g.t\" is FIXED_LEN_BYTE_ARRAY annotated INTERVAL, which this \
                 loader does not read",
            ),
        ] {
            assert_eq!(check(text), Err(reason.to_string()), "{text}");
        }
    }
}
