//! Instants as the runtime keeps them: i64 microseconds since the Unix
//! epoch, UTC. Parsing and printing for the command line.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_string()
    };
    humantime::parse_rfc3339_weak(&full)
        .map(micros)
        .map_err(|e| format!("`{text}` is not a timestamp like 2021-04-12 or 2021-04-12T10:59:42Z ({e})"))
}

/// RFC 3339 with microseconds, e.g. `2021-04-12T10:59:42.000000Z`.
pub fn format_timestamp(micros: i64) -> String {
    let time = if micros >= 0 {
        UNIX_EPOCH + Duration::from_micros(micros as u64)
    } else {
        UNIX_EPOCH - Duration::from_micros(micros.unsigned_abs())
    };
    humantime::format_rfc3339_micros(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_users_type() {
        assert_eq!(parse_timestamp("1970-01-02").unwrap(), 86_400_000_000);
        assert_eq!(parse_timestamp("1970-01-01T00:00:01Z").unwrap(), 1_000_000);
        assert_eq!(parse_timestamp("1970-01-01 00:00:00.5").unwrap(), 500_000);
        assert_eq!(parse_timestamp("42").unwrap(), 42);
        assert!(parse_timestamp("yesterday").unwrap_err().contains("yesterday"));
        assert_eq!(format_timestamp(1_500_000), "1970-01-01T00:00:01.500000Z");
    }
}
