//! Numbers and times as people read them.

use std::time::{Duration, UNIX_EPOCH};

/// `1.5 GB`, `320 KB`, `12 B` (decimal units, as transfer tools show).
pub fn bytes(n: i64) -> String {
    let n = n.max(0) as f64;
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut v = n;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{} B", n as i64)
    } else if v >= 100.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `2026-11-27 23:48:55 UTC` from milliseconds since the epoch.
pub fn time(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    format!("{} UTC", s.trim_end_matches('Z').replace('T', " "))
}

/// `3 s`, `4 min`, `2 h 5 min`, `3 d`: how long ago or how long to go.
pub fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d", s / 86400),
    }
}

pub fn ago(ms: i64, now: i64) -> String {
    format!("{} ago", span(now - ms))
}

/// `<input type="datetime-local">` value (taken as UTC) to milliseconds.
pub fn parse_local(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut text = s.replace('T', " ");
    if text.len() == 16 {
        text.push_str(":00");
    }
    humantime::parse_rfc3339_weak(&text)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
}

/// Milliseconds to a `datetime-local` value (UTC).
pub fn to_local(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.get(..16).unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_well() {
        assert_eq!(bytes(12), "12 B");
        assert_eq!(bytes(1_500), "1.5 KB");
        assert_eq!(bytes(1_073_741_824), "1.1 GB");
        assert_eq!(bytes(213_000_000_000_000), "213 TB");
    }

    #[test]
    fn local_times_round_trip() {
        let ms = parse_local("2026-11-27T23:48").unwrap();
        assert_eq!(to_local(ms), "2026-11-27T23:48");
        assert_eq!(time(ms), "2026-11-27 23:48:00 UTC");
        assert_eq!(parse_local("not a time"), None);
    }
}
