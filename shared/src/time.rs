//! CleverTap timestamps: `yyyyMMddHHmmss` local times in the project's time zone, or epoch
//! seconds; carried from the parser to the warehouses as epoch microseconds, and written as UTC
//! ISO-8601 text (`2022-09-21T04:39:25Z`) by [`write_ts_text`] wherever a warehouse stores text.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;

/// Why a `ts` value was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsError {
    /// Not 14 digits (`yyyyMMddHHmmss`) nor up to 12 digits (epoch seconds).
    #[error("ts {0:?} is neither yyyyMMddHHmmss nor epoch seconds")]
    Format(String),
    /// 14 digits that do not name a real date and time.
    #[error("ts {0:?} is not a valid date and time")]
    Invalid(String),
    /// Outside the file's data date by more than a day.
    #[error("ts {ts} is more than a day outside the file's date {date}")]
    OutsideWindow {
        /// The parsed value, as UTC text.
        ts: String,
        /// The data date in the file name.
        date: Date,
    },
}

/// Parses `ts` values of one file: its time zone and, when the name carries a data date, the
/// window of accepted instants (the date, plus one day either side, in the project time zone).
#[derive(Debug, Clone)]
pub struct TsParser {
    tz: TimeZone,
    is_utc: bool,
    window: Option<(i64, i64, Date)>,
}

impl TsParser {
    /// A parser for files of a project in `tz`; `data_date` bounds the accepted values.
    pub fn new(tz: &TimeZone, data_date: Option<Date>) -> Self {
        let window = data_date.and_then(|date| {
            let start = date
                .yesterday()
                .ok()?
                .to_datetime(jiff::civil::Time::midnight());
            let end = date
                .tomorrow()
                .ok()?
                .tomorrow()
                .ok()?
                .to_datetime(jiff::civil::Time::midnight());
            let start = tz.to_ambiguous_timestamp(start).compatible().ok()?;
            let end = tz.to_ambiguous_timestamp(end).compatible().ok()?;
            Some((start.as_second(), end.as_second(), date))
        });
        Self {
            is_utc: tz.iana_name() == Some("UTC") || *tz == TimeZone::UTC,
            tz: tz.clone(),
            window,
        }
    }

    /// Epoch seconds (UTC) of a raw `ts` value.
    pub fn parse(&self, raw: &str) -> Result<i64, TsError> {
        let bytes = raw.as_bytes();
        if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(TsError::Format(raw.to_string()));
        }
        let seconds = match bytes.len() {
            14 => self.parse_local(bytes, raw)?,
            1..=12 => raw
                .parse::<i64>()
                .map_err(|_| TsError::Format(raw.to_string()))?,
            _ => return Err(TsError::Format(raw.to_string())),
        };
        if let Some((start, end, date)) = self.window
            && !(start..end).contains(&seconds)
        {
            return Err(TsError::OutsideWindow {
                ts: format_utc(seconds),
                date,
            });
        }
        Ok(seconds)
    }

    fn parse_local(&self, b: &[u8], raw: &str) -> Result<i64, TsError> {
        let num = |range: std::ops::Range<usize>| {
            b[range]
                .iter()
                .fold(0i32, |acc, d| acc * 10 + i32::from(d - b'0'))
        };
        let (year, month, day) = (num(0..4), num(4..6), num(6..8));
        let (hour, minute, second) = (num(8..10), num(10..12), num(12..14));
        let invalid = || TsError::Invalid(raw.to_string());
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(invalid());
        }
        let local_seconds = days_from_civil(year, month, day) * 86_400
            + i64::from(hour * 3600 + minute * 60 + second);
        if self.is_utc {
            return Ok(local_seconds);
        }
        // Local times in a DST gap or fold resolve the way most tools do ("compatible"): a
        // skipped time moves forward, a repeated time takes the earlier instant.
        let dt = DateTime::new(
            year as i16,
            month as i8,
            day as i8,
            hour as i8,
            minute as i8,
            second as i8,
            0,
        )
        .map_err(|_| invalid())?;
        self.tz
            .to_ambiguous_timestamp(dt)
            .compatible()
            .map(Timestamp::as_second)
            .map_err(|_| invalid())
    }
}

/// UTC ISO-8601 text of epoch seconds: `2022-09-21T04:39:25Z`.
pub fn format_utc(seconds: i64) -> String {
    let mut buf = [0u8; 20];
    let len = write_utc(seconds, &mut buf);
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// Writes the UTC ISO-8601 text of epoch seconds into `buf`, returning its length (20 for years
/// 0000–9999). Allocation-free because it runs once per loaded row.
pub fn write_utc(seconds: i64, buf: &mut [u8; 20]) -> usize {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    let year = year.clamp(0, 9999) as u32;
    let put = |buf: &mut [u8; 20], at: usize, value: u32, width: usize| {
        let mut v = value;
        for i in (0..width).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(buf, 0, year, 4);
    buf[4] = b'-';
    put(buf, 5, month as u32, 2);
    buf[7] = b'-';
    put(buf, 8, day as u32, 2);
    buf[10] = b'T';
    put(buf, 11, secs / 3600, 2);
    buf[13] = b':';
    put(buf, 14, secs / 60 % 60, 2);
    buf[16] = b':';
    put(buf, 17, secs % 60, 2);
    buf[19] = b'Z';
    20
}

/// Microseconds in a second: `ts` travels as epoch microseconds.
pub const MICROS_PER_SECOND: i64 = 1_000_000;

/// The text of a `ts` given as epoch microseconds, written into `buf`: the one formatting of
/// `ts` as text (`2022-09-21T04:39:25Z`; CleverTap `ts` has whole seconds, so the fraction,
/// always zero from the parser, is not written).
pub fn write_ts_text(micros: i64, buf: &mut [u8; 20]) -> &str {
    let len = write_utc(micros.div_euclid(MICROS_PER_SECOND), buf);
    // write_utc writes ASCII only.
    std::str::from_utf8(&buf[..len]).unwrap_or_default()
}

/// Epoch seconds of UTC ISO-8601 text as [`write_utc`] writes it (`2022-09-21T04:39:25Z`).
pub fn parse_utc(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let shape = b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z';
    if !shape {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i32> {
        b[r].iter().try_fold(0i32, |acc, d| {
            d.is_ascii_digit().then(|| acc * 10 + i32::from(d - b'0'))
        })
    };
    let days = days_from_civil(num(0..4)?, num(5..7)?, num(8..10)?);
    Some(days * 86_400 + i64::from(num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?))
}

/// Now, as UTC ISO-8601 text.
pub fn now_utc() -> String {
    format_utc(Timestamp::now().as_second())
}

/// Days in `month` (1–12) of a proleptic Gregorian `year`.
pub(crate) fn days_in_month(year: i32, month: i32) -> i32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's civil-calendar algorithms: exact for the proleptic Gregorian calendar.
fn days_from_civil(year: i32, month: i32, day: i32) -> i64 {
    let y = i64::from(if month <= 2 { year - 1 } else { year });
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    #[test]
    fn utc_local_time_is_stored_as_is() {
        let p = TsParser::new(&TimeZone::UTC, None);
        assert_eq!(
            format_utc(p.parse("20220921043925").unwrap()),
            "2022-09-21T04:39:25Z"
        );
    }

    #[test]
    fn project_time_zone_is_converted_to_utc() {
        let p = TsParser::new(&tz("Asia/Kolkata"), None);
        assert_eq!(
            format_utc(p.parse("20220921100925").unwrap()),
            "2022-09-21T04:39:25Z"
        );
        let p = TsParser::new(&tz("America/New_York"), None);
        // Summer time (UTC-4) and winter time (UTC-5).
        assert_eq!(
            format_utc(p.parse("20220701120000").unwrap()),
            "2022-07-01T16:00:00Z"
        );
        assert_eq!(
            format_utc(p.parse("20221201120000").unwrap()),
            "2022-12-01T17:00:00Z"
        );
    }

    #[test]
    fn dst_gap_and_fold_resolve_compatibly() {
        let p = TsParser::new(&tz("America/New_York"), None);
        // 02:30 does not exist on 2022-03-13: it moves forward to 03:30 EDT = 07:30Z.
        assert_eq!(
            format_utc(p.parse("20220313023000").unwrap()),
            "2022-03-13T07:30:00Z"
        );
        // 01:30 happens twice on 2022-11-06: the earlier (EDT) instant wins.
        assert_eq!(
            format_utc(p.parse("20221106013000").unwrap()),
            "2022-11-06T05:30:00Z"
        );
    }

    #[test]
    fn epoch_seconds_are_absolute() {
        let p = TsParser::new(&tz("Asia/Kolkata"), None);
        assert_eq!(
            format_utc(p.parse("1663735165").unwrap()),
            "2022-09-21T04:39:25Z"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let p = TsParser::new(&TimeZone::UTC, None);
        assert_eq!(p.parse("notatime"), Err(TsError::Format("notatime".into())));
        assert_eq!(p.parse(""), Err(TsError::Format("".into())));
        assert_eq!(
            p.parse("2022092104392"),
            Err(TsError::Format("2022092104392".into()))
        );
        assert_eq!(
            p.parse("20220230043925"),
            Err(TsError::Invalid("20220230043925".into()))
        );
        assert_eq!(
            p.parse("20220921243925"),
            Err(TsError::Invalid("20220921243925".into()))
        );
        assert_eq!(
            p.parse("-1663735165"),
            Err(TsError::Format("-1663735165".into()))
        );
    }

    #[test]
    fn window_allows_a_day_either_side_in_local_time() {
        let date = Date::new(2022, 9, 21).unwrap();
        let p = TsParser::new(&tz("Asia/Kolkata"), Some(date));
        assert!(p.parse("20220920000000").is_ok());
        assert!(p.parse("20220922235959").is_ok());
        assert_eq!(
            p.parse("20220923000000"),
            Err(TsError::OutsideWindow {
                ts: "2022-09-22T18:30:00Z".into(),
                date
            })
        );
        assert!(matches!(
            p.parse("20220919235959"),
            Err(TsError::OutsideWindow { .. })
        ));
    }

    #[test]
    fn civil_round_trip_over_centuries() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y as i32, m as i32, d as i32), days);
        }
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        for s in [0, 951_782_400, 1_663_735_165, -86_401] {
            assert_eq!(parse_utc(&format_utc(s)), Some(s));
        }
        assert_eq!(parse_utc("2022-09-21 04:39:25Z"), None);
        let mut buf = [0u8; 20];
        assert_eq!(
            write_ts_text(1_663_735_165 * MICROS_PER_SECOND, &mut buf),
            "2022-09-21T04:39:25Z"
        );
        assert_eq!(write_ts_text(-1, &mut buf), "1969-12-31T23:59:59Z");
    }
}
