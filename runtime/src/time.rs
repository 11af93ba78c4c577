//! Instants as the runtime keeps them: i64 microseconds since the Unix
//! epoch, UTC. Parsing and printing for the command line.

use std::time::{SystemTime, UNIX_EPOCH};

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
pub fn parse_timestamp(text: &str) -> Result<i64, String> {
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
    let full = if local.len() == 10 {
        format!("{local}T00:00:00Z")
    } else {
        local.to_string()
    };
    humantime::parse_rfc3339_weak(&full)
        .map(|t| micros(t) - offset_secs * 1_000_000)
        .map_err(|e| format!("`{text}` is not a timestamp like 2021-04-12 or 2021-04-12T10:59:42Z ({e})"))
}

/// `2021-04-12T10:59:42+02:00` -> (`2021-04-12T10:59:42`, 7200).
fn split_offset(text: &str) -> Option<(&str, i64)> {
    let (head, tail) = text.split_at(text.len().checked_sub(6).filter(|_| text.len() > 16)?);
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
        assert!(parse_timestamp("yesterday").unwrap_err().contains("yesterday"));
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
            assert_eq!(
                parse_timestamp(&format_timestamp(micros)).ok().filter(|_| micros >= 0),
                (micros >= 0).then_some(micros)
            );
        }
    }
}
