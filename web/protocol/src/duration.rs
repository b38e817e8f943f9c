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

/// The OpenAPI schema of a duration: text such as `10s`, `500ms`, `4h`
/// (how it is written back) or a number of seconds.
pub fn schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(PATTERN))
                .examples([serde_json::json!("10s")]),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .minimum(Some(0.0)),
        )
        .description(Some(
            "A duration: text such as `10s`, `500ms`, `1h 30m`, or a number of seconds",
        ))
        .into()
}

/// The text [`parse`] reads: numbers, each with a unit (every unit
/// `humantime` reads; [`serialize`] writes years and months too).
const PATTERN: &str = r"^\s*([0-9]{1,9}\s*(nsec|ns|usec|us|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|w|months|month|M|years|year|y)\s*)+$";

#[cfg(test)]
mod tests {
    use super::PATTERN;
    use std::time::Duration;

    /// What the API writes back matches the schema it publishes, however
    /// long (a property-based run of the contract found "8years 10months
    /// 7days 9h 46m 9s" outside the pattern).
    #[test]
    fn every_written_duration_matches_the_published_pattern() {
        let pattern = regex::Regex::new(PATTERN).unwrap();
        let mut secs: u64 = 0;
        while secs < 500 * 365 * 86_400 {
            for d in [
                Duration::from_secs(secs),
                Duration::from_millis(secs * 1000 + 7),
            ] {
                let text = humantime::format_duration(d).to_string();
                assert!(pattern.is_match(&text), "{text}");
                assert_eq!(super::parse(&text), Ok(d), "{text}");
            }
            secs = secs * 3 + 1;
        }
        for text in ["2y", "1M 3d", "1 year", "5 months"] {
            assert!(pattern.is_match(text), "{text}");
            assert!(super::parse(text).is_ok(), "{text}");
        }
    }
}
