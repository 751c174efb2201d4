//! The row checks the CSV and JSON parsers share: `ts` in the project's time zone (or a
//! profile snapshot's instant), the event name, no NUL bytes.

use super::parse_options::ParseOptions;
use super::{EVENT_NAME_COLUMN, PROFILE_SNAPSHOTS_KEY, TS_COLUMN};
use crate::time::{MICROS_PER_SECOND, TsError};

/// The row checks shared by the CSV and JSON parsers.
pub(crate) struct RowChecks<'a> {
    opts: &'a ParseOptions,
}

/// A failed check: the column at fault and why.
pub(crate) type CheckFailure = (Option<&'static str>, String);

impl<'a> RowChecks<'a> {
    pub(crate) fn new(opts: &'a ParseOptions) -> Self {
        Self { opts }
    }

    /// Parses `ts` into epoch microseconds.
    pub(crate) fn ts(&self, raw: Option<&str>) -> Result<i64, CheckFailure> {
        let raw = match raw {
            Some(r) if !r.is_empty() => r,
            _ => return Err((Some(TS_COLUMN), "ts is empty".to_string())),
        };
        let seconds = self
            .opts
            .ts
            .parse(raw)
            .map_err(|e: TsError| (Some(TS_COLUMN), e.to_string()))?;
        // At most 12 digits of seconds or a year below 10000: far from overflowing.
        Ok(seconds * MICROS_PER_SECOND)
    }

    /// The event name of a row: its own value, else the one from the object name.
    pub(crate) fn event_name<'v>(&'v self, raw: Option<&'v str>) -> Result<&'v str, CheckFailure>
    where
        'a: 'v,
    {
        let name = match raw {
            Some(name) if !name.is_empty() => name,
            _ => self.opts.event_name_fallback.as_deref().ok_or((
                Some(EVENT_NAME_COLUMN),
                "eventName is empty and the file name carries none".to_string(),
            ))?,
        };
        if name == PROFILE_SNAPSHOTS_KEY {
            return Err((
                Some(EVENT_NAME_COLUMN),
                format!("the event name {PROFILE_SNAPSHOTS_KEY} is reserved for profile snapshots"),
            ));
        }
        Ok(name)
    }

    /// A profile snapshot row's `ts`: the instant the caller gave for the whole file or page.
    pub(crate) fn snapshot_ts(&self) -> Result<i64, CheckFailure> {
        self.opts.snapshot_micros.ok_or((
            Some(TS_COLUMN),
            "the loader gave no snapshot time for this profile file".to_string(),
        ))
    }

    /// Text with a NUL byte is refused: PostgreSQL cannot store it and BI tools cut at it.
    pub(crate) fn no_nul(&self, text: &str) -> Result<(), CheckFailure> {
        if text.as_bytes().contains(&0) {
            return Err((None, "NUL byte in a field".to_string()));
        }
        Ok(())
    }
}
