//! Durations as people write them (`10s`, `500ms`, `4h`) or as a number of
//! seconds; written back as text.

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

/// Reads `10s`, `500ms`, `4h`, or a number of seconds.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Float(f64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Float(f) if f >= 0.0 && f.is_finite() && f < 1e15 => Ok(Duration::from_secs_f64(f)),
        Raw::Float(f) => Err(serde::de::Error::custom(format!("`{f}` is not a duration"))),
        Raw::Text(t) => parse(&t).map_err(serde::de::Error::custom),
    }
}

/// Writes `1m 30s`-style text that [`deserialize`] reads back.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// `10s`, `500ms`, `4h`; the error says what to write instead.
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. `10s`, `500ms`, `4h`"))
}
