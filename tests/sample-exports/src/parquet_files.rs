//! The `parquet` subcommand: one day of "Charged" events as a CSV export and as an Export
//! Center Parquet export (the layout of a real deployment's Athena DDL), and Parquet files a
//! loader must refuse. Written with the parquet crate's column writers, levels by hand, so the
//! files are exactly that layout: no Arrow in between.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use parquet::basic::Compression as ParquetCompression;
use parquet::column::writer::ColumnWriter;
use parquet::data_type::ByteArray;
use parquet::file::properties::{WriterProperties, WriterVersion};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use super::{
    Clock, DEMO_MIX, DEMO_REQUEST_ID, DEMO_RUN_TS, DEMO_USERS, Date, Event, csv_bytes, day_rows,
    export_file_name, gzip, make_users,
};

/// The maps of the layout, in column order; a CSV column `<map>.<key>` is entry `key` of `map`.
const MAPS: [&str; 5] = [
    "identity",
    "profile",
    "deviceInfo",
    "eventProps",
    "commPrefs",
];

/// An Export Center Parquet layout: the message name, its leading text columns and its maps of
/// unions, in column order.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    message: &'static str,
    leading: &'static [&'static str],
    maps: &'static [&'static str],
}

/// Events: `eventName`, `eventTime`, then [`MAPS`].
const EVENTS: Layout = Layout {
    message: "event",
    leading: &["eventName", "eventTime"],
    maps: &MAPS,
};

/// Profiles: `identity`, then maps whose entries are the profile's properties. (Export Center's
/// `profileIdentities` union is `member0 VARCHAR, member1 VARCHAR[]`; written here with the
/// events' union, which the loader reads alike: it takes whichever member is set.)
pub(super) const PROFILES: Layout = Layout {
    message: "profile",
    leading: &["identity"],
    maps: &["profileIdentities", "device", "commPrefs", "profileProps"],
};

/// The union's members, in order: `member0` … `member5`.
const MEMBERS: [(&str, &str); 6] = [
    ("boolean", ""),
    ("int32", ""),
    ("int64", ""),
    ("float", ""),
    ("double", ""),
    ("binary", " (UTF8)"),
];

/// What the good files hold: rows, rows per row group, codec, page version, the day.
pub(super) struct Shape {
    pub(super) rows: u64,
    pub(super) row_group_rows: u64,
    pub(super) codec: String,
    pub(super) v2_pages: bool,
    pub(super) date: Date,
}

/// How the good files are written: codec and page version.
#[derive(Debug, Clone, Copy)]
struct Pages {
    codec: ParquetCompression,
    v2: bool,
}

impl Pages {
    /// Snappy, v1 pages: what the bad files are made from.
    const DEFAULT: Self = Self {
        codec: ParquetCompression::SNAPPY,
        v2: false,
    };

    fn properties(self) -> WriterProperties {
        let builder = WriterProperties::builder().set_compression(self.codec);
        if self.v2 {
            // Several pages per column chunk, so that page boundaries are read too.
            builder
                .set_writer_version(WriterVersion::PARQUET_2_0)
                .set_data_page_row_count_limit(37)
                .build()
        } else {
            builder.build()
        }
    }
}

/// A union value: which members are set. Exactly one in a good file.
#[derive(Debug, Clone)]
enum Member {
    Bool(bool),
    Int(i32),
    Long(i64),
    Double(f64),
    Str(String),
}

impl Member {
    fn index(&self) -> usize {
        match self {
            Self::Bool(_) => 0,
            Self::Int(_) => 1,
            Self::Long(_) => 2,
            Self::Double(_) => 4,
            Self::Str(_) => 5,
        }
    }

    /// The member a CSV value is written as: its text must come back from the loader unchanged,
    /// so a number is typed only when its text is the one the loader writes for it.
    fn of_text(text: &str) -> Self {
        match text {
            "true" => return Self::Bool(true),
            "false" => return Self::Bool(false),
            _ => {}
        }
        if let Ok(n) = text.parse::<i64>()
            && n.to_string() == text
        {
            return i32::try_from(n).map_or(Self::Long(n), Self::Int);
        }
        if let Ok(x) = text.parse::<f64>()
            && serde_json::Number::from_f64(x).is_some_and(|n| n.to_string() == text)
        {
            return Self::Double(x);
        }
        Self::Str(text.to_owned())
    }
}

/// One Parquet row: the leading columns (in the layout's order) and the maps' entries, each
/// holding the members set (one, or none/several in bad rows).
#[derive(Debug, Clone, Default)]
pub(super) struct PqRow {
    leading: [Option<String>; 2],
    maps: [Vec<(String, Vec<Member>)>; 5],
}

impl PqRow {
    /// A profile row ([`PROFILES`]): its identity (NULL when empty) and `(map index, name, text)` entries, each
    /// written as the union member its text reads back as.
    pub(super) fn profile(identity: &str, entries: &[(usize, &str, &str)]) -> Self {
        let mut row = Self::default();
        row.leading[0] = (!identity.is_empty()).then(|| identity.to_owned());
        for (map, name, text) in entries {
            row.maps[*map].push(((*name).to_owned(), vec![Member::of_text(text)]));
        }
        row
    }
}

/// The `parquet` subcommand: see `Command::Parquet`.
pub(super) fn parquet(
    out: &Path,
    shape: Shape,
    bench_repeat: Option<u64>,
    seed: u64,
    clock: &Clock,
) -> Result<()> {
    let Shape {
        rows,
        row_group_rows,
        codec,
        v2_pages,
        date,
    } = shape;
    let codec = match codec.as_str() {
        "snappy" => ParquetCompression::SNAPPY,
        "gzip" => ParquetCompression::GZIP(Default::default()),
        "uncompressed" => ParquetCompression::UNCOMPRESSED,
        other => bail!("--codec {other:?}: snappy, gzip or uncompressed"),
    };
    let pages = Pages {
        codec,
        v2: v2_pages,
    };
    let clock = *clock;
    if rows < 4 || row_group_rows == 0 {
        bail!("--rows must be at least 4 and --row-group-rows at least 1");
    }
    let users = make_users(seed, DEMO_USERS, DEMO_MIX);
    let event = Event::Charged;
    let full_header = event.header(true);
    let csv_rows = day_rows(seed, &users, clock, event, date, rows, true);
    // Only columns the Parquet layout carries: `ts`, `eventName` and `<map>.<key>`.
    let keep: Vec<usize> = full_header
        .iter()
        .enumerate()
        .filter(|(_, name)| {
            matches!(name.as_str(), "ts" | "eventName")
                || name
                    .split_once('.')
                    .is_some_and(|(map, _)| MAPS.contains(&map))
        })
        .map(|(i, _)| i)
        .collect();
    let header: Vec<String> = keep.iter().map(|&i| full_header[i].clone()).collect();
    let csv_rows: Vec<Vec<String>> = csv_rows
        .iter()
        .map(|row| keep.iter().map(|&i| row[i].clone()).collect())
        .collect();
    let pq_rows: Vec<PqRow> = csv_rows
        .iter()
        .map(|row| to_parquet_row(&header, row, clock))
        .collect::<Result<_>>()?;

    let csv_name = export_file_name(DEMO_REQUEST_ID, DEMO_RUN_TS, event.name(), date, 0, 0);
    let stem = csv_name.trim_end_matches(".csv.gz");
    let name = |index: u32| format!("{}-{index}-0.parquet", stem.trim_end_matches("-0-0"));
    let (csv_dir, pq_dir, bad_dir) = (out.join("csv"), out.join("parquet"), out.join("bad"));
    for dir in [&csv_dir, &pq_dir, &bad_dir] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut written = Vec::new();
    if let Some(times) = bench_repeat {
        let good = pq_dir.join(name(0));
        write_parquet(&good, &pq_rows, row_group_rows, true, times, pages)?;
        let size = fs::metadata(&good)?.len();
        println!("rows={} bytes={size} path={}", rows * times, good.display());
        return Ok(());
    }
    let csv_path = csv_dir.join(&csv_name);
    fs::write(&csv_path, gzip(&csv_bytes(&header, &csv_rows))?)?;
    written.push((csv_path, rows));

    let good = pq_dir.join(name(0));
    write_parquet(&good, &pq_rows, row_group_rows, true, 1, pages)?;
    written.push((good.clone(), rows));

    // The bad files are cut from the default good file (their damage is placed by its layout).
    if pages.v2 || pages.codec != Pages::DEFAULT.codec {
        return print_written(written);
    }

    // Row 2: `eventProps.Amount` with no member set; row 3: with two.
    let mut unions = pq_rows.clone();
    set_members(&mut unions[1], "Amount", vec![]);
    set_members(
        &mut unions[2],
        "Amount",
        vec![Member::Str("1.00".into()), Member::Double(1.0)],
    );
    let path = bad_dir.join(name(1));
    write_parquet(&path, &unions, row_group_rows, true, 1, Pages::DEFAULT)?;
    written.push((path, rows));

    let path = bad_dir.join(name(2));
    write_parquet(&path, &pq_rows, row_group_rows, false, 1, Pages::DEFAULT)?;
    written.push((path, rows));

    let bytes = fs::read(&good)?;
    let path = bad_dir.join(name(3));
    fs::write(&path, &bytes[..bytes.len() * 6 / 10])?;
    written.push((path, 0));

    let path = bad_dir.join(name(4));
    fs::write(&path, b"eventName,eventTime\nCharged,1663718400\n")?;
    written.push((path, 0));

    let path = bad_dir.join(name(6));
    fs::write(&path, negative_column_size(&good, bytes.clone())?)?;
    written.push((path, rows));

    let path = bad_dir.join(name(5));
    fs::write(&path, damage_second_row_group(&good, bytes)?)?;
    written.push((path, rows));
    print_written(written)
}

/// Prints `path  rows  bytes` per file written.
fn print_written(written: Vec<(PathBuf, u64)>) -> Result<()> {
    for (path, rows) in written {
        let size = fs::metadata(&path)?.len();
        println!("{}  {rows}  {size}", path.display());
    }
    Ok(())
}

/// A CSV row in the Parquet layout: `ts` (local time) back to epoch seconds, empty fields left
/// out of their map.
fn to_parquet_row(header: &[String], row: &[String], clock: Clock) -> Result<PqRow> {
    let mut out = PqRow::default();
    for (name, value) in header.iter().zip(row) {
        match name.as_str() {
            "ts" => out.leading[1] = Some(epoch_of_local(value, clock)?.to_string()),
            "eventName" => out.leading[0] = Some(value.clone()),
            _ if value.is_empty() => {}
            _ => {
                let (map, key) = name.split_once('.').context("a map column")?;
                let slot = MAPS.iter().position(|m| *m == map).context("a map")?;
                out.maps[slot].push((key.to_owned(), vec![Member::of_text(value)]));
            }
        }
    }
    Ok(out)
}

/// Epoch seconds of a `YYYYMMDDhhmmss` local time at the clock's offset.
fn epoch_of_local(text: &str, clock: Clock) -> Result<i64> {
    let num = |r: std::ops::Range<usize>| -> Result<i64> {
        text.get(r)
            .context("a 14-digit time")?
            .parse()
            .context("digits")
    };
    let date = Date::new(num(0..4)?, num(4..6)?, num(6..8)?);
    let seconds = date.days_since_epoch() * 86_400 + num(8..10)? * 3600 + num(10..12)? * 60;
    Ok(seconds + num(12..14)? - clock.offset_secs)
}

fn set_members(row: &mut PqRow, key: &str, members: Vec<Member>) {
    let props = &mut row.maps[3];
    match props.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = members,
        None => props.push((key.to_owned(), members)),
    }
}

/// The leading columns a file of `layout` has: all, or without `eventTime` for the bad file
/// that lacks it (the last leading column, so the others keep their index).
fn leading(layout: Layout, with_event_time: bool) -> impl Iterator<Item = &'static str> {
    layout
        .leading
        .iter()
        .copied()
        .filter(move |c| with_event_time || *c != "eventTime")
}

/// The layout's schema.
fn schema(layout: Layout, with_event_time: bool) -> String {
    let mut text = format!("message {} {{\n", layout.message);
    for column in leading(layout, with_event_time) {
        text.push_str(&format!("  optional binary {column} (UTF8);\n"));
    }
    for map in layout.maps {
        text.push_str(&format!(
            "  optional group {map} (MAP) {{\n    repeated group key_value {{\n      \
             required binary key (UTF8);\n      optional group value {{\n"
        ));
        for (i, (ty, annotation)) in MEMBERS.iter().enumerate() {
            text.push_str(&format!("        optional {ty} member{i}{annotation};\n"));
        }
        text.push_str("      }\n    }\n  }\n");
    }
    text.push('}');
    text
}

/// Writes event `rows` (`times` times over) in row groups of `group_rows`, pages as `pages`
/// says.
fn write_parquet(
    path: &Path,
    rows: &[PqRow],
    group_rows: u64,
    with_event_time: bool,
    times: u64,
    pages: Pages,
) -> Result<()> {
    write_layout(
        path,
        EVENTS,
        rows,
        group_rows,
        with_event_time,
        times,
        pages,
    )
}

/// Writes profile `rows` ([`PqRow::profile`]) in one snappy row group.
pub(super) fn write_profiles(path: &Path, rows: &[PqRow]) -> Result<()> {
    let group = rows.len().max(1) as u64;
    write_layout(path, PROFILES, rows, group, true, 1, Pages::DEFAULT)
}

fn write_layout(
    path: &Path,
    layout: Layout,
    rows: &[PqRow],
    group_rows: u64,
    with_event_time: bool,
    times: u64,
    pages: Pages,
) -> Result<()> {
    let schema = Arc::new(parse_message_type(&schema(layout, with_event_time))?);
    let props = Arc::new(pages.properties());
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut writer = SerializedFileWriter::new(file, schema, props)?;
    let groups = (0..times).flat_map(|_| rows.chunks(group_rows as usize));
    for group in groups {
        let mut group_writer = writer.next_row_group()?;
        let mut leaf = 0usize;
        while let Some(mut column) = group_writer.next_column()? {
            let which = leaf_kind(leaf, leading(layout, with_event_time).count());
            write_leaf(column.untyped(), group, which)?;
            column.close()?;
            leaf += 1;
        }
        group_writer.close()?;
    }
    writer.close()?;
    Ok(())
}

/// What a leaf column holds, by its position in the schema.
#[derive(Debug, Clone, Copy)]
enum Leaf {
    Leading(usize),
    Key(usize),
    Member(usize, usize),
}

/// The leaf at `index` of a schema with `top` leading columns.
fn leaf_kind(index: usize, top: usize) -> Leaf {
    if index < top {
        return Leaf::Leading(index);
    }
    let rest = index - top;
    let per_map = 1 + MEMBERS.len();
    let (map, within) = (rest / per_map, rest % per_map);
    if within == 0 {
        Leaf::Key(map)
    } else {
        Leaf::Member(map, within - 1)
    }
}

/// Values and levels of one leaf over a row group. A map is optional (definition 1 = present),
/// its `key_value` repeated (2 = an entry), `value` optional (3 = the union is there) and each
/// member optional (4 = set).
fn write_leaf(writer: &mut ColumnWriter<'_>, rows: &[PqRow], leaf: Leaf) -> Result<()> {
    let mut def = Vec::new();
    let mut rep = Vec::new();
    let mut members: Vec<&Member> = Vec::new();
    let mut texts: Vec<ByteArray> = Vec::new();
    for row in rows {
        match leaf {
            Leaf::Leading(i) => {
                let value = &row.leading[i];
                def.push(i16::from(value.is_some()));
                texts.extend(value.as_deref().map(ByteArray::from));
            }
            Leaf::Key(map) | Leaf::Member(map, _) => {
                let entries = &row.maps[map];
                if entries.is_empty() {
                    def.push(0);
                    rep.push(0);
                    continue;
                }
                for (i, (key, set)) in entries.iter().enumerate() {
                    rep.push(i16::from(i > 0));
                    match leaf {
                        Leaf::Key(_) => {
                            def.push(2);
                            texts.push(ByteArray::from(key.as_str()));
                        }
                        Leaf::Member(_, m) => match set.iter().find(|v| v.index() == m) {
                            Some(member) => {
                                def.push(4);
                                members.push(member);
                            }
                            None => def.push(3),
                        },
                        _ => unreachable!("map leaves only"),
                    }
                }
            }
        }
    }
    let rep = (!rep.is_empty()).then_some(rep.as_slice());
    let def = Some(def.as_slice());
    match writer {
        ColumnWriter::BoolColumnWriter(w) => {
            let values: Vec<bool> = members
                .iter()
                .map(|m| matches!(m, Member::Bool(true)))
                .collect();
            w.write_batch(&values, def, rep)?;
        }
        ColumnWriter::Int32ColumnWriter(w) => {
            let values: Vec<i32> = members
                .iter()
                .filter_map(|m| match m {
                    Member::Int(n) => Some(*n),
                    _ => None,
                })
                .collect();
            w.write_batch(&values, def, rep)?;
        }
        ColumnWriter::Int64ColumnWriter(w) => {
            let values: Vec<i64> = members
                .iter()
                .filter_map(|m| match m {
                    Member::Long(n) => Some(*n),
                    _ => None,
                })
                .collect();
            w.write_batch(&values, def, rep)?;
        }
        ColumnWriter::FloatColumnWriter(w) => {
            w.write_batch(&[], def, rep)?;
        }
        ColumnWriter::DoubleColumnWriter(w) => {
            let values: Vec<f64> = members
                .iter()
                .filter_map(|m| match m {
                    Member::Double(x) => Some(*x),
                    _ => None,
                })
                .collect();
            w.write_batch(&values, def, rep)?;
        }
        ColumnWriter::ByteArrayColumnWriter(w) => {
            if matches!(leaf, Leaf::Member(..)) {
                texts = members
                    .iter()
                    .filter_map(|m| match m {
                        Member::Str(s) => Some(ByteArray::from(s.as_str())),
                        _ => None,
                    })
                    .collect();
            }
            w.write_batch(&texts, def, rep)?;
        }
        _ => bail!("unexpected column type"),
    }
    Ok(())
}

/// `bytes` (the good file) with the first page header of its second row group overwritten, so
/// that row group cannot be decoded while the footer still reads.
fn damage_second_row_group(good: &Path, mut bytes: Vec<u8>) -> Result<Vec<u8>> {
    let reader = SerializedFileReader::new(File::open(good)?)?;
    let meta = reader.metadata();
    if meta.num_row_groups() < 2 {
        bail!("--rows must exceed --row-group-rows for the damaged row group file");
    }
    let start = meta.row_group(1).column(0).data_page_offset() as usize;
    for byte in &mut bytes[start..start + 16] {
        *byte = 0xff;
    }
    Ok(bytes)
}

/// `bytes` (the good file) with a footer claiming a negative size for the first column chunk:
/// the compact-Thrift `total_compressed_size` (field 7, an i64 after field 6) has its zigzag
/// varint made odd, which reads as negative. A hostile footer, which once made the reader panic.
fn negative_column_size(good: &Path, mut bytes: Vec<u8>) -> Result<Vec<u8>> {
    let reader = SerializedFileReader::new(File::open(good)?)?;
    let size = reader.metadata().row_group(0).column(0).compressed_size();
    let mut pattern = vec![0x16u8];
    let mut zigzag = (size << 1) as u64;
    loop {
        let byte = (zigzag & 0x7f) as u8;
        zigzag >>= 7;
        if zigzag == 0 {
            pattern.push(byte);
            break;
        }
        pattern.push(byte | 0x80);
    }
    let footer_len = u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into()?);
    let footer_start = bytes.len() - 8 - footer_len as usize;
    let at = bytes[footer_start..]
        .windows(pattern.len())
        .position(|w| w == pattern.as_slice())
        .context("the first column chunk's size in the footer")?;
    bytes[footer_start + at + 1] |= 1;
    Ok(bytes)
}
