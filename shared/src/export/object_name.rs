//! Recognition of CleverTap export objects by their key or path.
//!
//! A bucket listing gives little more than names, and users point Tapline at folders that also
//! hold other files, so the name alone decides whether an object is read, and what the name says
//! about it (event, data date, request, …) is recovered here. Nothing is read from the object.

use jiff::civil::Date;

/// What the file body is once decompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line (`.json`, `.jsonl`, `.ndjson`).
    Json,
    /// Apache Parquet (`.parquet`, legacy `.parquet.gz(ip)` and `-parquet.gz`): Export Center's
    /// event layout, read by `parquet_rows` in builds with the `parquet` feature.
    Parquet,
}

impl DataFormat {
    /// Lowercase name for logs and messages: `csv`, `json` or `parquet`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Json => "json",
            Self::Parquet => "parquet",
        }
    }
}

/// Which CleverTap data set a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportKind {
    /// Event records (one event per row or line).
    Events,
    /// User profile records.
    Profiles,
}

impl ExportKind {
    /// Lowercase name for logs and messages: `events` or `profiles`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::Profiles => "profiles",
        }
    }
}

/// A recognised export file and everything its name tells about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportObject {
    /// Events or profiles, from the name pattern or the enclosing `events/` / `profile(s)/` folder.
    pub kind: ExportKind,
    /// Body format, from the extension (or the `-csv.gz` suffix of legacy profile files).
    pub format: DataFormat,
    /// Event name as written in the file name: lossy (whitespace, tab, slash, NUL became '-'). None for profiles and for files whose name carries none.
    pub event_name_in_name: Option<String>,
    /// Data date of the file (yyyymmdd in the name) when the name carries one.
    pub data_date: Option<Date>,
    /// Export request id (digits, kept as written) when the name carries one.
    pub request_id: Option<String>,
    /// Epoch seconds of the export run when the name carries one.
    pub run_timestamp: Option<i64>,
    /// Index of the file within one split output (0, 1, 2, …) when the name carries one.
    pub file_index: Option<u32>,
    /// CleverTap database id (digits, kept as written) when the name carries one.
    pub database_id: Option<String>,
    /// CleverTap account id (digits, kept as written): profile and Export Center names only.
    pub account_id: Option<String>,
    /// Whether the name says the body is gzip-compressed (.gz/.gzip). Informational only: decoding sniffs magic bytes.
    pub gzip_in_name: bool,
}

/// Outcome of [`recognise`]: an export file to load, or the reason to leave the object alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recognition {
    /// A CleverTap export file in a supported format.
    Export(ExportObject),
    /// Not something Tapline loads; the reason is shown to the user.
    Skip(SkipReason),
}

/// Why an object is not loaded; `Display` gives a reason a user understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    /// The key is empty or blank.
    #[error("empty name")]
    EmptyName,
    /// The key ends in `/` (or `_$folder$`): a placeholder for a folder, not a file.
    #[error("folder marker")]
    FolderMarker,
    /// The base name starts with `.`.
    #[error("hidden file")]
    HiddenFile,
    /// A job marker or partly written file (`_SUCCESS`, `*.crc`, `*.tmp`, `*.part`, …).
    #[error("temporary or marker file")]
    TemporaryOrMarker,
    /// A Parquet export, in a build without the `parquet` feature.
    #[error("this build does not read Parquet exports (cargo feature `parquet`)")]
    ParquetUnsupported,
    /// An XML export, which Tapline cannot read yet.
    #[error("XML exports are not supported yet")]
    XmlUnsupported,
    /// Any other object; carries the base name.
    #[error("not a CleverTap export name: {0}")]
    NotExportName(String),
}

/// Recognises a CleverTap export object from its `/`-separated key or relative path.
///
/// The base name decides the format and, when it follows a CleverTap pattern, the kind and the
/// name-derived fields. A folder named `events` or `profile(s)` (nearest one wins) marks other
/// supported files as events or profiles; elsewhere, names that follow no pattern are skipped.
#[must_use]
pub fn recognise(key: &str) -> Recognition {
    match recognise_inner(key) {
        Ok(object) => Recognition::Export(object),
        Err(reason) => Recognition::Skip(reason),
    }
}

/// What the extension says the body is, before deciding whether it is supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Data(DataFormat),
    Parquet,
    Xml,
}

/// A base name split into the part before the extension and what the extension says.
struct Extension<'a> {
    stem: &'a str,
    body: Body,
    gzip: bool,
    /// The legacy profile form `…-csv.gz`, where the format is the last dash part.
    dash_form: bool,
}

const FORMAT_EXTENSIONS: &[(&str, Body)] = &[
    (".csv", Body::Data(DataFormat::Csv)),
    (".json", Body::Data(DataFormat::Json)),
    (".jsonl", Body::Data(DataFormat::Json)),
    (".ndjson", Body::Data(DataFormat::Json)),
    (".parquet", Body::Parquet),
    (".xml", Body::Xml),
];

const DASH_FORMATS: &[(&str, Body)] = &[
    ("-csv", Body::Data(DataFormat::Csv)),
    ("-json", Body::Data(DataFormat::Json)),
    ("-parquet", Body::Parquet),
    ("-xml", Body::Xml),
];

const GZIP_EXTENSIONS: &[&str] = &[".gz", ".gzip"];

/// Suffixes of files still being written or of tool bookkeeping, never export data.
const TEMPORARY_SUFFIXES: &[&str] = &[
    ".crc",
    ".tmp",
    ".temp",
    ".part",
    ".partial",
    ".crdownload",
    ".download",
    ".swp",
    ".lock",
    "~",
];

fn recognise_inner(key: &str) -> Result<ExportObject, SkipReason> {
    if key.trim().is_empty() {
        return Err(SkipReason::EmptyName);
    }
    if key.ends_with('/') {
        return Err(SkipReason::FolderMarker);
    }
    let (folders, base) = match key.rsplit_once('/') {
        Some((folders, base)) => (folders, base),
        None => ("", key),
    };
    if base.starts_with('.') {
        return Err(SkipReason::HiddenFile);
    }
    let lower = base.to_ascii_lowercase();
    // Hadoop-style tools (EMR, S3 console exports) mark folders with `<name>_$folder$` objects.
    if lower.ends_with("_$folder$") {
        return Err(SkipReason::FolderMarker);
    }
    // CleverTap names start with a digit; `_`-prefixed names are job markers (`_SUCCESS`,
    // `_committed_…`, `_temporary`), which Hadoop and Spark treat as hidden too.
    if lower.starts_with('_') || TEMPORARY_SUFFIXES.iter().any(|s| lower.ends_with(s)) {
        return Err(SkipReason::TemporaryOrMarker);
    }
    let not_export = || SkipReason::NotExportName(base.to_owned());
    let ext = split_extension(base).ok_or_else(not_export)?;
    let parts: Vec<&str> = ext.stem.split('-').collect();
    let numbered = parse_numbered(&parts);
    // Only the legacy profile shape uses the dash form; `notes-csv.gz` is not an export.
    if ext.dash_form && numbered.is_none() {
        return Err(not_export());
    }
    let format = match ext.body {
        Body::Data(format) => format,
        Body::Parquet if cfg!(feature = "parquet") => DataFormat::Parquet,
        Body::Parquet => return Err(SkipReason::ParquetUnsupported),
        Body::Xml => return Err(SkipReason::XmlUnsupported),
    };
    let hint = folder_kind(folders);
    if let Some(ids) = numbered {
        // The legacy dash form is documented for profiles only. Export Center documents the plain
        // shape for profiles; an events folder says the same shape holds events there.
        let kind = match hint {
            Some(kind) if !ext.dash_form => kind,
            _ => ExportKind::Profiles,
        };
        return Ok(ids.into_object(kind, format, ext.gzip));
    }
    if let Some(mut object) = parse_legacy_event(&parts) {
        object.format = format;
        object.gzip_in_name = ext.gzip;
        return Ok(object);
    }
    match hint {
        Some(kind) => Ok(ExportObject {
            kind,
            ..ExportObject::bare(format, ext.gzip)
        }),
        None => Err(not_export()),
    }
}

/// Splits the extension off `base`, matching it case-insensitively.
fn split_extension(base: &str) -> Option<Extension<'_>> {
    // ASCII lowercasing keeps byte offsets, so lengths measured on `lower` slice `base`.
    let lower = base.to_ascii_lowercase();
    let (rest, gzip) = match GZIP_EXTENSIONS.iter().find(|g| lower.ends_with(*g)) {
        Some(g) => (&lower[..lower.len() - g.len()], true),
        None => (lower.as_str(), false),
    };
    if let Some((ext, body)) = FORMAT_EXTENSIONS.iter().find(|(e, _)| rest.ends_with(e)) {
        return Some(Extension {
            stem: &base[..rest.len() - ext.len()],
            body: *body,
            gzip,
            dash_form: false,
        });
    }
    if !gzip {
        return None;
    }
    let (ext, body) = DASH_FORMATS.iter().find(|(e, _)| rest.ends_with(e))?;
    Some(Extension {
        stem: &base[..rest.len() - ext.len()],
        body: *body,
        gzip,
        dash_form: true,
    })
}

/// The kind named by the deepest `events` / `profile(s)` folder in `folders`.
fn folder_kind(folders: &str) -> Option<ExportKind> {
    folders.rsplit('/').find_map(|folder| {
        if folder.eq_ignore_ascii_case("events") {
            Some(ExportKind::Events)
        } else if folder.eq_ignore_ascii_case("profile") || folder.eq_ignore_ascii_case("profiles")
        {
            Some(ExportKind::Profiles)
        } else {
            None
        }
    })
}

/// `<request id>-<run ts>-<Event-Name>-<yyyymmdd>-<file index>-<db id>`, parsed from both ends
/// because the event name may itself contain dashes and digit-only parts.
fn parse_legacy_event(parts: &[&str]) -> Option<ExportObject> {
    let [request, run, middle @ .., date, index, database] = parts else {
        return None;
    };
    let event = middle.join("-");
    if event.is_empty() {
        return None;
    }
    let request = digits(request)?;
    let run_timestamp = digits(run)?.parse().ok()?;
    let data_date = parse_yyyymmdd(date)?;
    let file_index = digits(index)?.parse().ok()?;
    let database = digits(database)?;
    Some(ExportObject {
        event_name_in_name: Some(event),
        data_date: Some(data_date),
        request_id: Some(request.to_owned()),
        run_timestamp: Some(run_timestamp),
        file_index: Some(file_index),
        database_id: Some(database.to_owned()),
        ..ExportObject::bare(DataFormat::Csv, false)
    })
}

/// Ids from `<account id>-<request id>-<run ts>-<database id>`, the profile and Export Center shape.
struct NumberedName {
    account: String,
    request: String,
    run_timestamp: i64,
    database: String,
}

impl NumberedName {
    fn into_object(self, kind: ExportKind, format: DataFormat, gzip: bool) -> ExportObject {
        ExportObject {
            kind,
            account_id: Some(self.account),
            request_id: Some(self.request),
            run_timestamp: Some(self.run_timestamp),
            database_id: Some(self.database),
            ..ExportObject::bare(format, gzip)
        }
    }
}

fn parse_numbered(parts: &[&str]) -> Option<NumberedName> {
    let [account, request, run, database] = parts else {
        return None;
    };
    Some(NumberedName {
        account: digits(account)?.to_owned(),
        request: digits(request)?.to_owned(),
        run_timestamp: digits(run)?.parse().ok()?,
        database: digits(database)?.to_owned(),
    })
}

impl ExportObject {
    /// An events object with no name-derived fields; callers override what they know.
    fn bare(format: DataFormat, gzip: bool) -> Self {
        Self {
            kind: ExportKind::Events,
            format,
            event_name_in_name: None,
            data_date: None,
            request_id: None,
            run_timestamp: None,
            file_index: None,
            database_id: None,
            account_id: None,
            gzip_in_name: gzip,
        }
    }
}

/// `s` when it is one or more ASCII digits.
fn digits(s: &str) -> Option<&str> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

/// A valid calendar date written as exactly eight digits `yyyymmdd`.
fn parse_yyyymmdd(s: &str) -> Option<Date> {
    let s = digits(s).filter(|s| s.len() == 8)?;
    let year = s[0..4].parse().ok()?;
    let month = s[4..6].parse().ok()?;
    let day = s[6..8].parse().ok()?;
    Date::new(year, month, day).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn export(key: &str) -> ExportObject {
        match recognise(key) {
            Recognition::Export(object) => object,
            Recognition::Skip(reason) => panic!("{key:?} skipped: {reason}"),
        }
    }

    fn skip(key: &str) -> SkipReason {
        match recognise(key) {
            Recognition::Skip(reason) => reason,
            Recognition::Export(object) => panic!("{key:?} recognised: {object:?}"),
        }
    }

    fn not_export(base: &str) -> SkipReason {
        SkipReason::NotExportName(base.to_owned())
    }

    #[test]
    fn legacy_event_seed_example() {
        let object =
            export("exports/2022-09-21/1663664837-1663785000-Order-Placed-20220921-0-0.csv.gz");
        assert_eq!(
            object,
            ExportObject {
                kind: ExportKind::Events,
                format: DataFormat::Csv,
                event_name_in_name: Some("Order-Placed".to_owned()),
                data_date: Some(date(2022, 9, 21)),
                request_id: Some("1663664837".to_owned()),
                run_timestamp: Some(1_663_785_000),
                file_index: Some(0),
                database_id: Some("0".to_owned()),
                account_id: None,
                gzip_in_name: true,
            }
        );
    }

    #[test]
    fn legacy_event_without_folder() {
        let object = export("1663664837-1663785000-Charged-20220921-3-1.json.gz");
        assert_eq!(object.kind, ExportKind::Events);
        assert_eq!(object.format, DataFormat::Json);
        assert_eq!(object.event_name_in_name.as_deref(), Some("Charged"));
        assert_eq!(object.file_index, Some(3));
        assert_eq!(object.database_id.as_deref(), Some("1"));
    }

    #[test]
    fn legacy_event_name_with_digit_parts() {
        let object = export("1-2-App-Launched-2-20220101-3-0.csv.gz");
        assert_eq!(object.event_name_in_name.as_deref(), Some("App-Launched-2"));
        assert_eq!(object.request_id.as_deref(), Some("1"));
        assert_eq!(object.run_timestamp, Some(2));
        assert_eq!(object.data_date, Some(date(2022, 1, 1)));
        assert_eq!(object.file_index, Some(3));
        assert_eq!(object.database_id.as_deref(), Some("0"));
    }

    #[test]
    fn legacy_event_name_with_spaces_encoded() {
        let object = export("10-20-Added-To-Cart-20230105-12-0.csv.gz");
        assert_eq!(object.event_name_in_name.as_deref(), Some("Added-To-Cart"));
        // A double space stays as two dashes: the name is kept as written.
        let object = export("10-20-Order--Placed-20230105-0-0.csv.gz");
        assert_eq!(object.event_name_in_name.as_deref(), Some("Order--Placed"));
        let object = export("10-20-Notification-Sent-20230105-0-0.csv.gz");
        assert_eq!(
            object.event_name_in_name.as_deref(),
            Some("Notification-Sent")
        );
    }

    #[test]
    fn legacy_event_name_looking_like_a_date() {
        let object = export("1-2-Ev-20220101-20220102-0-0.csv.gz");
        assert_eq!(object.event_name_in_name.as_deref(), Some("Ev-20220101"));
        assert_eq!(object.data_date, Some(date(2022, 1, 2)));
    }

    #[test]
    fn legacy_event_digit_only_name() {
        let object = export("1-2-404-20220101-0-0.csv");
        assert_eq!(object.event_name_in_name.as_deref(), Some("404"));
    }

    #[test]
    fn legacy_event_uncompressed_and_other_extensions() {
        let cases = [
            ("1-2-E-20220101-0-0.csv", DataFormat::Csv, false),
            ("1-2-E-20220101-0-0.json", DataFormat::Json, false),
            ("1-2-E-20220101-0-0.jsonl", DataFormat::Json, false),
            ("1-2-E-20220101-0-0.jsonl.gz", DataFormat::Json, true),
            ("1-2-E-20220101-0-0.ndjson", DataFormat::Json, false),
            ("1-2-E-20220101-0-0.ndjson.gz", DataFormat::Json, true),
            ("1-2-E-20220101-0-0.csv.gzip", DataFormat::Csv, true),
            ("1-2-E-20220101-0-0.json.gzip", DataFormat::Json, true),
        ];
        for (key, format, gzip) in cases {
            let object = export(key);
            assert_eq!(object.format, format, "{key}");
            assert_eq!(object.gzip_in_name, gzip, "{key}");
            assert_eq!(object.event_name_in_name.as_deref(), Some("E"), "{key}");
        }
    }

    #[test]
    fn uppercase_extensions_accepted() {
        let object = export("1663664837-1663785000-Order-Placed-20220921-0-0.CSV.GZ");
        assert_eq!(object.format, DataFormat::Csv);
        assert!(object.gzip_in_name);
        assert_eq!(object.event_name_in_name.as_deref(), Some("Order-Placed"));
        let object = export("100000000-1761651721-1761651721-0.Json.Gzip");
        assert_eq!(object.format, DataFormat::Json);
        assert!(object.gzip_in_name);
        let object = export("1-2-3-0-CSV.GZ");
        assert_eq!(object.kind, ExportKind::Profiles);
    }

    #[test]
    fn invalid_date_fails_legacy_pattern() {
        let key = "1-2-Order-Placed-20221341-0-0.csv.gz";
        assert_eq!(skip(key), not_export(key));
        assert_eq!(
            skip("1-2-Ev-20230229-0-0.csv.gz"),
            not_export("1-2-Ev-20230229-0-0.csv.gz")
        );
        // Under an events folder it falls through to a plain events file.
        let object = export("acct/events/1-2-Order-Placed-20221341-0-0.csv.gz");
        assert_eq!(object, ExportObject::bare(DataFormat::Csv, true));
    }

    #[test]
    fn leap_day_is_a_valid_date() {
        let object = export("1-2-Ev-20240229-0-0.csv.gz");
        assert_eq!(object.data_date, Some(date(2024, 2, 29)));
    }

    #[test]
    fn too_few_parts() {
        let key = "1663664837-Order-20220921-0.csv.gz";
        assert_eq!(skip(key), not_export(key));
        // Five parts: no room for an event name.
        let key = "1-2-20220101-0-0.csv.gz";
        assert_eq!(skip(key), not_export(key));
        let key = "1-2--20220101-0-0.csv.gz";
        assert_eq!(skip(key), not_export(key));
    }

    #[test]
    fn non_digit_ids_fail_legacy_pattern() {
        for key in [
            "a1-2-E-20220101-0-0.csv.gz",
            "1-2x-E-20220101-0-0.csv.gz",
            "1-2-E-20220101-x-0.csv.gz",
            "1-2-E-20220101-0-db.csv.gz",
            "1-2-E-2022010-0-0.csv.gz",
            // A file index beyond u32 is not a CleverTap index.
            "1-2-E-20220101-99999999999-0.csv.gz",
        ] {
            assert_eq!(skip(key), not_export(key), "{key}");
        }
    }

    #[test]
    fn export_center_profile() {
        let object = export("100000000-1761651721-1761651721-0.csv.gz");
        assert_eq!(
            object,
            ExportObject {
                kind: ExportKind::Profiles,
                format: DataFormat::Csv,
                event_name_in_name: None,
                data_date: None,
                request_id: Some("1761651721".to_owned()),
                run_timestamp: Some(1_761_651_721),
                file_index: None,
                database_id: Some("0".to_owned()),
                account_id: Some("100000000".to_owned()),
                gzip_in_name: true,
            }
        );
        let object = export("bucket/profile/2025-10-28/100000000-1761651721-1761651721-0.json.gz");
        assert_eq!(object.kind, ExportKind::Profiles);
        assert_eq!(object.format, DataFormat::Json);
    }

    #[test]
    fn export_center_shape_under_events_folder_is_events() {
        let object = export("acct/events/2025-10-28/100000000-1761651721-1761651721-0.csv.gz");
        assert_eq!(object.kind, ExportKind::Events);
        assert_eq!(object.account_id.as_deref(), Some("100000000"));
        assert_eq!(object.event_name_in_name, None);
    }

    #[test]
    fn legacy_profile() {
        let object = export("exports/100000000-55-1663785000-0-csv.gz");
        assert_eq!(
            object,
            ExportObject {
                kind: ExportKind::Profiles,
                format: DataFormat::Csv,
                event_name_in_name: None,
                data_date: None,
                request_id: Some("55".to_owned()),
                run_timestamp: Some(1_663_785_000),
                file_index: None,
                database_id: Some("0".to_owned()),
                account_id: Some("100000000".to_owned()),
                gzip_in_name: true,
            }
        );
        let object = export("100000000-55-1663785000-0-json.gz");
        assert_eq!(object.format, DataFormat::Json);
        assert_eq!(object.kind, ExportKind::Profiles);
        let object = export("100000000-55-1663785000-0-csv.gzip");
        assert_eq!(object.format, DataFormat::Csv);
    }

    #[test]
    fn legacy_profile_shape_required_for_dash_form() {
        assert_eq!(skip("notes-csv.gz"), not_export("notes-csv.gz"));
        assert_eq!(skip("profiles/notes-csv.gz"), not_export("notes-csv.gz"));
        assert_eq!(skip("1-2-3-csv.gz"), not_export("1-2-3-csv.gz"));
        // Without `.gz` the dash form is not an extension at all.
        assert_eq!(skip("1-2-3-0-csv"), not_export("1-2-3-0-csv"));
    }

    #[test]
    fn parquet_recognised_in_builds_that_read_it() {
        let keys = [
            ("1-2-E-20220101-0-0.parquet", ExportKind::Events, false),
            ("1-2-E-20220101-0-0.parquet.gz", ExportKind::Events, true),
            ("1-2-E-20220101-0-0.parquet.gzip", ExportKind::Events, true),
            ("events/part-0001.PARQUET", ExportKind::Events, false),
            (
                "100000000-55-1663785000-0-parquet.gz",
                ExportKind::Profiles,
                true,
            ),
        ];
        for (key, kind, gzip) in keys {
            if cfg!(feature = "parquet") {
                let object = export(key);
                assert_eq!(object.format, DataFormat::Parquet, "{key}");
                assert_eq!(object.kind, kind, "{key}");
                assert_eq!(object.gzip_in_name, gzip, "{key}");
            } else {
                assert_eq!(skip(key), SkipReason::ParquetUnsupported, "{key}");
            }
        }
    }

    #[test]
    fn xml_skipped() {
        for key in [
            "1-2-E-20220101-0-0.xml",
            "1-2-E-20220101-0-0.xml.gz",
            "profile/100000000-1761651721-1761651721-0.xml.gz",
            "100000000-55-1663785000-0-xml.gz",
        ] {
            assert_eq!(skip(key), SkipReason::XmlUnsupported, "{key}");
        }
    }

    #[test]
    fn hidden_marker_and_empty() {
        assert_eq!(skip(""), SkipReason::EmptyName);
        assert_eq!(skip("   "), SkipReason::EmptyName);
        assert_eq!(skip("exports/"), SkipReason::FolderMarker);
        assert_eq!(skip("/"), SkipReason::FolderMarker);
        assert_eq!(skip("exports/events_$folder$"), SkipReason::FolderMarker);
        assert_eq!(skip(".DS_Store"), SkipReason::HiddenFile);
        assert_eq!(
            skip("events/.1-2-E-20220101-0-0.csv.gz"),
            SkipReason::HiddenFile
        );
        assert_eq!(skip("events/._x.csv.gz"), SkipReason::HiddenFile);
    }

    #[test]
    fn relative_dot_folders_are_not_hidden() {
        let object = export("./events/../events/x.csv.gz");
        assert_eq!(object.kind, ExportKind::Events);
    }

    #[test]
    fn temporary_and_marker_files() {
        for key in [
            "exports/_SUCCESS",
            "events/_committed_123",
            "events/1-2-E-20220101-0-0.csv.gz.crc",
            "events/1-2-E-20220101-0-0.csv.gz.tmp",
            "events/1-2-E-20220101-0-0.json.gz.tmp",
            "events/1-2-E-20220101-0-0.csv.gz.part",
            "events/1-2-E-20220101-0-0.csv.gz.TMP",
            "events/1-2-E-20220101-0-0.csv~",
        ] {
            assert_eq!(skip(key), SkipReason::TemporaryOrMarker, "{key}");
        }
    }

    #[test]
    fn nested_export_center_paths() {
        let object = export(
            "acct/events/2022-09-21/1234/1663664837-1663785000-Order-Placed-20220921-0-0.csv.gz",
        );
        assert_eq!(object.kind, ExportKind::Events);
        assert_eq!(object.event_name_in_name.as_deref(), Some("Order-Placed"));
        assert_eq!(object.data_date, Some(date(2022, 9, 21)));

        let object = export("acct/events/2022-09-21/1234/part-0001.csv.gz");
        assert_eq!(object, ExportObject::bare(DataFormat::Csv, true));

        let object = export("acct/Profiles/1234/2022-09-21/users.json");
        assert_eq!(
            object,
            ExportObject {
                kind: ExportKind::Profiles,
                ..ExportObject::bare(DataFormat::Json, false)
            }
        );
        let object = export("acct/EVENTS/x.ndjson.gz");
        assert_eq!(object.kind, ExportKind::Events);
    }

    #[test]
    fn nearest_kind_folder_wins() {
        assert_eq!(
            export("profiles/archive/events/x.csv.gz").kind,
            ExportKind::Events
        );
        assert_eq!(
            export("events/archive/profile/x.csv.gz").kind,
            ExportKind::Profiles
        );
    }

    #[test]
    fn name_pattern_beats_folder_for_legacy_files() {
        let object = export("profile/1-2-Charged-20220101-0-0.csv.gz");
        assert_eq!(object.kind, ExportKind::Events);
        let object = export("events/100000000-55-1663785000-0-csv.gz");
        assert_eq!(object.kind, ExportKind::Profiles);
    }

    #[test]
    fn folder_names_only_match_whole_components() {
        assert_eq!(skip("my-events/x.csv.gz"), not_export("x.csv.gz"));
        assert_eq!(skip("eventsx/x.csv.gz"), not_export("x.csv.gz"));
        assert_eq!(skip("acct/events.csv.gz"), not_export("events.csv.gz"));
    }

    #[test]
    fn unrecognised_names_outside_kind_folders() {
        for key in [
            "data/report.csv.gz",
            "report.json",
            "exports/2022-09-21/readme.csv",
        ] {
            let base = key.rsplit('/').next().unwrap_or(key);
            assert_eq!(skip(key), not_export(base), "{key}");
        }
    }

    #[test]
    fn unsupported_extensions() {
        for key in [
            "events/x.txt",
            "events/x.gz",
            "events/x.tsv.gz",
            "events/x.csv.gz.1",
            "events/x.zip",
            "events/csv",
        ] {
            let base = key.rsplit('/').next().unwrap_or(key);
            assert_eq!(skip(key), not_export(base), "{key}");
        }
    }

    #[test]
    fn skip_reasons_read_well() {
        assert_eq!(SkipReason::HiddenFile.to_string(), "hidden file");
        assert_eq!(SkipReason::FolderMarker.to_string(), "folder marker");
        assert_eq!(SkipReason::EmptyName.to_string(), "empty name");
        assert_eq!(
            SkipReason::TemporaryOrMarker.to_string(),
            "temporary or marker file"
        );
        assert_eq!(
            SkipReason::ParquetUnsupported.to_string(),
            "this build does not read Parquet exports (cargo feature `parquet`)"
        );
        assert_eq!(
            SkipReason::XmlUnsupported.to_string(),
            "XML exports are not supported yet"
        );
        assert_eq!(
            not_export("notes.txt").to_string(),
            "not a CleverTap export name: notes.txt"
        );
    }

    #[test]
    fn kind_and_format_names() {
        assert_eq!(ExportKind::Events.as_str(), "events");
        assert_eq!(ExportKind::Profiles.as_str(), "profiles");
        assert_eq!(DataFormat::Csv.as_str(), "csv");
        assert_eq!(DataFormat::Json.as_str(), "json");
    }
}
