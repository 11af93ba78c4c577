//! Instants as the runtime keeps them: i64 microseconds since the Unix
//! epoch, UTC. Parsing and printing for the command line, and the one
//! conversion of Arrow timestamp columns of any unit to microseconds.

use std::time::{SystemTime, UNIX_EPOCH};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{Array, TimestampMicrosecondArray};
use arrow_schema::{DataType, TimeUnit};

use crate::types::{FeatureType, UTC};

/// Any Arrow array of a type that maps onto [`FeatureType::Timestamp`]
/// (any unit; UTC or no zone), as microseconds UTC: the runtime's one
/// timestamp representation. Seconds and milliseconds saturate at the i64
/// range; nanoseconds floor to the microsecond, so 1970-01-01T00:00:00.000000999Z
/// and -1 ns become 0 and -1 us. `None` for any other type.
pub fn micros_array(array: &dyn Array) -> Option<TimestampMicrosecondArray> {
    let DataType::Timestamp(unit, _) = array.data_type() else {
        return None;
    };
    FeatureType::from_arrow(array.data_type())?;
    let micros: TimestampMicrosecondArray = match unit {
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().clone(),
        TimeUnit::Second => array
            .as_primitive::<TimestampSecondType>()
            .unary(|s| s.saturating_mul(1_000_000)),
        TimeUnit::Millisecond => array
            .as_primitive::<TimestampMillisecondType>()
            .unary(|ms| ms.saturating_mul(1_000)),
        TimeUnit::Nanosecond => array
            .as_primitive::<TimestampNanosecondType>()
            .unary(|ns| ns.div_euclid(1_000)),
    };
    Some(micros.with_timezone(UTC))
}

/// Microseconds since the epoch of a system time.
pub fn micros(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

/// Now, in microseconds since the epoch.
pub fn now_micros() -> i64 {
    micros(SystemTime::now())
}

/// Parses `2021-04-12`, `2021-04-12T10:59:42Z`, `2021-04-12 10:59:42.123`
/// (UTC when no offset is given) or a plain integer of microseconds.
pub fn parse_timestamp(text: &str) -> Result<i64, BadTimestamp> {
    let text = text.trim();
    if let Ok(micros) = text.parse::<i64>() {
        return Ok(micros);
    }
    // A numeric offset (`+02:00`, `-0500`; Python's isoformat() writes `+00:00`):
    // parse the local time, then move it to UTC.
    let (local, offset_secs) = match split_offset(text) {
        Some((local, offset)) => (local, offset),
        None => (text, 0),
    };
    parse_utc(local)
        .and_then(|t| t.checked_sub(offset_secs * 1_000_000).ok_or("out of range"))
        .map_err(|reason| BadTimestamp {
            text: text.to_string(),
            reason,
        })
}

/// Text that is not a timestamp [`parse_timestamp`] takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a timestamp like 2021-04-12 or 2021-04-12T10:59:42Z ({reason})")]
pub struct BadTimestamp {
    /// The text.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// `YYYY-MM-DD`, optionally followed by `T` (or a space) and
/// `HH:MM[:SS[.fraction]]`, optionally `Z`: the forms [`format_timestamp`]
/// writes, for any year it writes (before 1970 included). Fractions finer
/// than a microsecond floor, as Arrow's nanosecond columns do.
fn parse_utc(text: &str) -> Result<i64, &'static str> {
    let text = text.strip_suffix(['Z', 'z']).unwrap_or(text);
    let (date, time) = match text.find(['T', 't', ' ']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let (negative, date) = match date.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, date.strip_prefix('+').unwrap_or(date)),
    };
    let mut parts = date.splitn(3, '-');
    let (year, month, day) = (parts.next(), parts.next(), parts.next());
    let number = |part: Option<&str>, min_digits: usize, max_digits: usize| -> Result<i64, &'static str> {
        let part = part.ok_or("missing a part")?;
        if part.len() < min_digits || part.len() > max_digits || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err("malformed number");
        }
        part.parse().map_err(|_| "malformed number")
    };
    // Years before 0 print with their sign and as few as one digit (`-221`).
    let year = if negative {
        -number(year, 1, 6)?
    } else {
        number(year, 4, 6)?
    };
    let month = number(month, 2, 2)?;
    let day = number(day, 2, 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("no such date");
    }
    let mut micros_of_day = 0;
    if let Some(time) = time {
        let (clock, fraction) = match time.split_once('.') {
            Some((clock, fraction)) => (clock, Some(fraction)),
            None => (time, None),
        };
        let mut fields = clock.split(':');
        let hour = number(fields.next(), 2, 2)?;
        let minute = number(fields.next(), 2, 2)?;
        let second = match fields.next() {
            Some(s) => number(Some(s), 2, 2)?,
            None if fraction.is_none() => 0,
            None => return Err("a fraction needs seconds"),
        };
        if fields.next().is_some() || hour > 23 || minute > 59 || second > 59 {
            return Err("no such time of day");
        }
        let fraction = match fraction {
            None => 0,
            Some(f) => {
                let digits = number(Some(f), 1, 9)?;
                // To microseconds, flooring what is finer.
                let scale = 10i64.pow(f.len() as u32);
                digits * 1_000_000 / scale
            }
        };
        micros_of_day = ((hour * 60 + minute) * 60 + second) * 1_000_000 + fraction;
    }
    days_from_civil(year, month, day)
        .checked_mul(86_400_000_000)
        .and_then(|m| m.checked_add(micros_of_day))
        .ok_or("out of range")
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date: the inverse of
/// [`civil_from_days`], after Howard Hinnant's `days_from_civil`.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2021-04-12T10:59:42+02:00` -> (`2021-04-12T10:59:42`, 7200).
fn split_offset(text: &str) -> Option<(&str, i64)> {
    // An offset is ASCII; anything else (`é` in the last bytes) would split
    // a character below and panic.
    if text.len() <= 16 || !text.as_bytes()[text.len() - 6..].is_ascii() {
        return None;
    }
    let (head, tail) = text.split_at(text.len() - 6);
    let (head, tail) = if tail.as_bytes()[3] == b':' {
        (head, tail.to_string())
    } else {
        // `+HHMM`
        let (head, tail) = text.split_at(text.len() - 5);
        (head, format!("{}:{}", &tail[..3], &tail[3..]))
    };
    let sign = match tail.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hours: i64 = tail[1..3].parse().ok()?;
    let minutes: i64 = tail[4..6].parse().ok()?;
    Some((head, sign * (hours * 3600 + minutes * 60)))
}

/// RFC 3339 with microseconds, e.g. `2021-04-12T10:59:42.000000Z`, for any
/// instant, before the epoch included.
pub fn format_timestamp(micros: i64) -> String {
    let (days, micros_of_day) = (micros.div_euclid(86_400_000_000), micros.rem_euclid(86_400_000_000));
    let (year, month, day) = civil_from_days(days);
    let secs = micros_of_day / 1_000_000;
    if (0..=9999).contains(&year) {
        // The common case without the formatting machinery: served responses
        // print one of these per value.
        let mut out = [0u8; 27];
        let mut put = |at: usize, width: usize, mut value: u64| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year as u64);
        put(5, 2, month.into());
        put(8, 2, day.into());
        put(11, 2, (secs / 3600) as u64);
        put(14, 2, (secs / 60 % 60) as u64);
        put(17, 2, (secs % 60) as u64);
        put(20, 6, (micros_of_day % 1_000_000) as u64);
        for (at, c) in [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (26, b'Z'),
        ] {
            out[at] = c;
        }
        return String::from_utf8(out.to_vec()).expect("ASCII digits and separators");
    }
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        micros_of_day % 1_000_000
    )
}

/// The proleptic Gregorian date of a day number (days since 1970-01-01),
/// after Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_offsets_are_applied() {
        let utc = parse_timestamp("2021-04-12T10:59:42Z").unwrap();
        assert_eq!(parse_timestamp("2021-04-12T12:59:42+02:00"), Ok(utc));
        assert_eq!(parse_timestamp("2021-04-12T05:59:42-0500"), Ok(utc));
        assert_eq!(parse_timestamp("2021-04-12T10:59:42+00:00"), Ok(utc));
        assert_eq!(parse_timestamp("2021-04-12T10:59:42.5+00:00"), Ok(utc + 500_000));
        assert!(parse_timestamp("2021-04-12T10:59:42+2").is_err());
    }

    #[test]
    fn parses_the_forms_users_type() {
        assert_eq!(parse_timestamp("1970-01-02").unwrap(), 86_400_000_000);
        assert_eq!(parse_timestamp("1970-01-01T00:00:01Z").unwrap(), 1_000_000);
        assert_eq!(parse_timestamp("1970-01-01 00:00:00.5").unwrap(), 500_000);
        assert_eq!(parse_timestamp("42").unwrap(), 42);
        assert!(
            parse_timestamp("yesterday")
                .unwrap_err()
                .to_string()
                .contains("yesterday")
        );
        assert_eq!(format_timestamp(1_500_000), "1970-01-01T00:00:01.500000Z");
        assert_eq!(format_timestamp(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(format_timestamp(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
        for micros in [
            -86_400_000_000 * 400 * 366,
            -1,
            0,
            1_700_000_000_123_456,
            4_102_444_800_000_000,
        ] {
            assert_eq!(parse_timestamp(&format_timestamp(micros)), Ok(micros), "{micros}");
        }
    }

    /// Regression: a long value ending in non-ASCII text panicked while
    /// looking for an offset (a push's `event_timestamp` reaches this).
    #[test]
    fn non_ascii_text_is_an_error_not_a_panic() {
        for bad in [
            "2021-04-12T10:59:42ééé",
            "2021-04-12T10:59:4é",
            "xxxxxxxxxxxxxxxxxx🚕",
            "2021-04-12T10:59:42+0é",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
    }

    /// Regression: a pre-1970 time the server printed could not be pushed
    /// back (`1969-12-31T23:59:59.999999Z` was "out of range").
    #[test]
    fn times_before_1970_parse_as_they_print() {
        assert_eq!(parse_timestamp("1969-12-31T23:59:59.999999Z"), Ok(-1));
        assert_eq!(parse_timestamp("1900-03-01"), Ok(-2_203_891_200_000_000));
        assert_eq!(parse_timestamp("0001-01-01T00:00:00Z"), Ok(-62_135_596_800_000_000));
        assert_eq!(parse_timestamp("1970-01-01T00:00:00.0000019"), Ok(1));
        assert_eq!(parse_timestamp("1970-01-01T01:02"), Ok(3_720_000_000));
        for day in (-800_000i64..800_000).step_by(37) {
            let micros = day * 86_400_000_000 + 45_296_000_001;
            assert_eq!(parse_timestamp(&format_timestamp(micros)), Ok(micros));
        }
        for bad in [
            "2021-02-29",
            "2021-13-01",
            "2021-04-31",
            "2021-04-12T24:00:00Z",
            "2021-04-12T10:60",
            "2021-4-12",
            "2021-04-12T10:59:42.",
            "2021-04-12T10:59:42.1234567891",
            "2021-04-12T10",
            "99999999-01-01",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
    }
}
