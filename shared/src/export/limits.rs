//! Per-object bounds on what a hostile export can make the loader build: decoded bytes, column
//! name length and stored rejects. Past a bound the row or the file is refused with the reason.

/// Longest raw column name accepted, as a CSV header name or a flattened JSON name.
pub const DEFAULT_MAX_COLUMN_NAME_BYTES: usize = 1024;
/// Decoded bytes allowed per compressed byte: CleverTap CSV compresses 3–5×, gzip's own
/// ceiling is about 1,000×, so only a crafted object (a decompression bomb) reaches this.
pub const DEFAULT_MAX_DECOMPRESSED_RATIO: u64 = 100;
/// Decoded bytes allowed per object: 30 times a large real export (a 1,000,000-row file is
/// about 250 MB of CSV).
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: u64 = 8 << 30;
/// Rejects kept (in memory, then in `_tapline_rejects`) per file; more are counted, not stored.
pub const MAX_STORED_REJECTS: usize = 10_000;

/// The configurable per-object limits; [`Default`] gives the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportLimits {
    /// Longest raw column name accepted, in bytes.
    pub max_column_name_bytes: usize,
    /// Most decoded bytes per compressed byte read; 0 turns the check off.
    pub max_decompressed_ratio: u64,
    /// Most decoded bytes per object; 0 turns the check off.
    pub max_decompressed_bytes: u64,
}

impl Default for ExportLimits {
    fn default() -> Self {
        Self {
            max_column_name_bytes: DEFAULT_MAX_COLUMN_NAME_BYTES,
            max_decompressed_ratio: DEFAULT_MAX_DECOMPRESSED_RATIO,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }
}

/// The start of an over-long name, for a reason text that stays short.
pub(crate) fn name_preview(name: &str) -> String {
    const SHOWN_CHARS: usize = 40;
    let mut preview: String = name.chars().take(SHOWN_CHARS).collect();
    if preview.len() < name.len() {
        preview.push('…');
    }
    preview
}
