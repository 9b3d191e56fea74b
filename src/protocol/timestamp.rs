//! Timestamps as plugins send them: every form the original tracker's validation accepted.
//!
//! - RFC 3339 / ISO 8601 text: `2026-01-01T12:00:00Z`, `2026-01-01T12:00:00.123+02:00`;
//!   the separator may also be a space, `t` or `_`; seconds are optional; the offset may be `Z`,
//!   `±HH`, `±HHMM` or `±HH:MM`; without an offset the time is UTC; a date alone is midnight UTC.
//! - Unix epoch seconds or milliseconds, as a JSON number or a numeric string, with or without a
//!   fraction. Values above [`EPOCH_MS_THRESHOLD`] are milliseconds (the same rule as the
//!   original's: 2e10 seconds would be the year 2603).

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};

/// Epoch values whose magnitude is above this are taken as milliseconds.
pub const EPOCH_MS_THRESHOLD: f64 = 2e10;

/// Serializes a time exactly as chrono's `Serialize` does (RFC 3339 in UTC with `Z`, and 0, 3, 6
/// or 9 fraction digits, the fewest that show it exactly), without going through `fmt`: for
/// answers with hundreds of thousands of timestamps (`/trails`), where chrono's formatter is most
/// of the time spent.
pub fn serialize_rfc3339<S: serde::Serializer>(
    t: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use chrono::{Datelike, Timelike};
    let (date, time) = (t.date_naive(), t.time());
    let Ok(year) = u32::try_from(date.year()) else {
        return serde::Serialize::serialize(t, serializer);
    };
    if year > 9999 || time.nanosecond() >= 1_000_000_000 {
        // Years beyond four digits and leap seconds: chrono's own formatting.
        return serde::Serialize::serialize(t, serializer);
    }
    let mut buf = [0u8; 30];
    let mut put = |at: usize, value: u32, digits: usize| {
        let mut v = value;
        for i in (0..digits).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, date.month(), 2);
    put(8, date.day(), 2);
    put(11, time.hour(), 2);
    put(14, time.minute(), 2);
    put(17, time.second(), 2);
    let nanos = time.nanosecond();
    let digits = match nanos {
        0 => 0,
        n if n % 1_000_000 == 0 => 3,
        n if n % 1_000 == 0 => 6,
        _ => 9,
    };
    if digits > 0 {
        put(20, nanos / 10u32.pow(9 - digits as u32), digits);
    }
    buf[4] = b'-';
    buf[7] = b'-';
    buf[10] = b'T';
    buf[13] = b':';
    buf[16] = b':';
    let mut end = 19;
    if digits > 0 {
        buf[19] = b'.';
        end = 20 + digits;
    }
    buf[end] = b'Z';
    let text = std::str::from_utf8(&buf[..=end]).map_err(serde::ser::Error::custom)?;
    serializer.serialize_str(text)
}

/// Parses a timestamp in any accepted text form (numbers arrive here as their decimal text).
pub fn parse(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    if let Ok(whole) = raw.parse::<i64>() {
        return from_epoch_int(whole);
    }
    if raw
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
        && let Ok(value) = raw.parse::<f64>()
    {
        return from_epoch(value);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    parse_iso(raw)
}

/// Whole Unix epoch seconds (or milliseconds, above the threshold), exactly.
pub fn from_epoch_int(value: i64) -> Option<DateTime<Utc>> {
    if value.unsigned_abs() as f64 > EPOCH_MS_THRESHOLD {
        DateTime::from_timestamp_millis(value)
    } else {
        DateTime::from_timestamp(value, 0)
    }
}

/// Unix epoch seconds (or milliseconds, above the threshold), with an optional fraction, to the
/// microsecond.
pub fn from_epoch(value: f64) -> Option<DateTime<Utc>> {
    if !value.is_finite() {
        return None;
    }
    let micros = if value.abs() > EPOCH_MS_THRESHOLD {
        value * 1e3
    } else {
        value * 1e6
    };
    // Far outside any date chrono can represent: refuse rather than saturate.
    if micros.abs() > 1e19 {
        return None;
    }
    DateTime::from_timestamp_micros(micros.round() as i64)
}

/// ISO 8601 forms that RFC 3339 does not cover.
fn parse_iso(raw: &str) -> Option<DateTime<Utc>> {
    let (date, rest) = raw.split_at_checked(10).unwrap_or((raw, ""));
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    if rest.is_empty() {
        return Some(date.and_time(NaiveTime::MIN).and_utc());
    }
    let mut chars = rest.chars();
    if !matches!(chars.next(), Some('T' | 't' | ' ' | '_')) {
        return None;
    }
    let rest = chars.as_str();
    let (time, offset_secs) = if let Some(time) = rest.strip_suffix(['Z', 'z']) {
        (time, 0)
    } else if let Some(at) = rest.rfind(['+', '-']) {
        (&rest[..at], parse_offset(&rest[at..])?)
    } else {
        (rest, 0)
    };
    let time = NaiveTime::parse_from_str(time, "%H:%M:%S%.f")
        .or_else(|_| NaiveTime::parse_from_str(time, "%H:%M"))
        .ok()?;
    let local = date.and_time(time);
    let offset = FixedOffset::east_opt(offset_secs)?;
    Some(
        offset
            .from_local_datetime(&local)
            .single()?
            .with_timezone(&Utc),
    )
}

/// `+HH`, `+HHMM` or `+HH:MM` (or `-`), in seconds east of UTC.
fn parse_offset(text: &str) -> Option<i32> {
    let (sign, digits) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let digits: String = digits.chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        2 => (digits.parse::<i32>().ok()?, 0),
        4 => (
            digits[..2].parse::<i32>().ok()?,
            digits[2..].parse::<i32>().ok()?,
        ),
        _ => return None,
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 3600 + minutes * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> String {
        parse(text)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| "refused".to_owned())
    }

    #[test]
    fn epoch_seconds_and_milliseconds_as_numbers_or_strings() {
        for (text, expected) in [
            ("1745329500", "2025-04-22T13:45:00.000Z"),
            ("1745329500.25", "2025-04-22T13:45:00.250Z"),
            ("1745329500000", "2025-04-22T13:45:00.000Z"),
            ("1745329500123", "2025-04-22T13:45:00.123Z"),
            ("1.7453295e9", "2025-04-22T13:45:00.000Z"),
        ] {
            assert_eq!(at(text), expected, "{text}");
        }
    }

    #[test]
    fn iso_forms_beyond_rfc3339() {
        let noon = "2026-01-01T12:00:00.000Z";
        for (text, expected) in [
            ("2026-01-01T12:00:00Z", noon),
            ("2026-01-01 12:00:00", noon),
            ("2026-01-01T12:00:00.123456", "2026-01-01T12:00:00.123Z"),
            ("2026-01-01t12:00", noon),
            ("2026-01-01_12:00:00z", noon),
            ("2026-01-01T14:00:00+02", noon),
            ("2026-01-01T14:30:00+0230", noon),
            ("2026-01-01T07:00:00-05:00", noon),
            ("2026-01-01", "2026-01-01T00:00:00.000Z"),
        ] {
            assert_eq!(at(text), expected, "{text}");
        }
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in [
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-01-01X12:00:00",
            "2026-01-01T25:00:00",
            "2026-01-01T12:00:00+99:00",
            "NaN",
            "inf",
            "1e300",
        ] {
            assert_eq!(at(bad), "refused", "{bad}");
        }
    }

    #[test]
    fn fast_serialization_writes_what_chrono_writes() {
        #[derive(serde::Serialize)]
        struct Fast(#[serde(serialize_with = "serialize_rfc3339")] DateTime<Utc>);
        for raw in [
            "2026-11-28T04:46:18Z",
            "2026-11-28T04:46:18.862Z",
            "2026-11-28T04:46:18.862061Z",
            "2026-11-28T04:46:18.862061123Z",
            "2026-01-02T03:04:05.000001Z",
            "0999-12-31T23:59:59.5Z",
            "1970-01-01T00:00:00Z",
        ] {
            let t = DateTime::parse_from_rfc3339(raw)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default();
            let fast = serde_json::to_string(&Fast(t)).unwrap_or_default();
            let chrono = serde_json::to_string(&t).unwrap_or_default();
            assert_eq!(fast, chrono, "{raw}");
        }
    }
}
