//! Statistics over a chosen range: totals, bytes, successes and errors,
//! per poller, with charts.

use super::chart::{self, Bar};
use super::{Chrome, PageError, PageResult, PageUser, fmt, html};
use crate::AppState;
use crate::api::transfers::{self as api, Range};
use crate::error::ApiError;
use askama::Template;
use axum::extract::{Query, State};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize, Default)]
pub struct RangeForm {
    /// `24h`, `7d`, `30d`, `all`, or empty for from/to.
    #[serde(default)]
    last: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

pub struct PollerRow {
    pub poller: String,
    pub transfers: i64,
    pub complete: i64,
    pub errors: i64,
    pub bytes: String,
}

#[derive(Template)]
#[template(path = "stats.html")]
struct StatsPage {
    chrome: Chrome,
    last: String,
    from: String,
    to: String,
    range_text: String,
    transfers: i64,
    complete: i64,
    errors: i64,
    bytes: String,
    pollers_enabled: i64,
    pollers_disabled: i64,
    per_poller: Vec<PollerRow>,
    charts: Vec<String>,
}

/// The time axis over `start..end`: the first bucket's start (a whole
/// bucket, in UTC), the bucket's width (a round one, at most about 30 over
/// the range: 24 hours are 24 hourly buckets) and how a bucket is labelled
/// (as short as the range allows).
fn time_axis(start: i64, end: i64) -> (i64, i64, fn(i64) -> String) {
    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;
    const DAY: i64 = 24 * HOUR;
    const STEPS: [i64; 16] = [
        MIN,
        5 * MIN,
        15 * MIN,
        30 * MIN,
        HOUR,
        2 * HOUR,
        3 * HOUR,
        6 * HOUR,
        12 * HOUR,
        DAY,
        2 * DAY,
        7 * DAY,
        14 * DAY,
        30 * DAY,
        91 * DAY,
        365 * DAY,
    ];
    let span = end - start;
    let bucket = STEPS
        .into_iter()
        .find(|s| span / s <= 30)
        .unwrap_or(span / 30);
    let first = start.div_euclid(bucket) * bucket;
    // `fmt::time` is `YYYY-MM-DD HH:MM:SS UTC`.
    let label: fn(i64) -> String = if bucket >= DAY && span > 365 * DAY {
        |ms| fmt::time(ms).get(..10).unwrap_or("").to_string()
    } else if bucket >= DAY {
        |ms| fmt::time(ms).get(5..10).unwrap_or("").to_string()
    } else if span <= DAY {
        |ms| fmt::time(ms).get(11..16).unwrap_or("").to_string()
    } else {
        |ms| fmt::time(ms).get(5..16).unwrap_or("").to_string()
    };
    (first, bucket, label)
}

pub async fn page(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Query(f): Query<RangeForm>,
) -> PageResult {
    const DAY: i64 = 86_400_000;
    let now = crate::now_ms();
    let custom = |field: &str, v: &str| -> Result<Option<i64>, PageError> {
        if v.trim().is_empty() {
            return Ok(None);
        }
        fmt::parse_local(v)
            .map(Some)
            .ok_or_else(|| ApiError::bad(field, format!("`{v}` is not a date and time")).into())
    };
    let last = if f.last.is_empty() && f.from.is_empty() && f.to.is_empty() {
        "7d".to_string()
    } else {
        f.last.clone()
    };
    let (from, to) = match last.as_str() {
        "24h" => (Some(now - DAY), None),
        "7d" => (Some(now - 7 * DAY), None),
        "30d" => (Some(now - 30 * DAY), None),
        "all" => (None, None),
        _ => (custom("from", &f.from)?, custom("to", &f.to)?),
    };
    let s = api::stats(
        State(state.clone()),
        user.0.clone(),
        Query(Range { from, to }),
    )
    .await?
    .0;
    // Over time: up to 30 buckets across the range (or the data's span).
    let start = match from {
        Some(f) => f,
        None => crate::rollups::first_hour(&state.db)
            .await?
            .unwrap_or(now - 7 * DAY),
    };
    let end = to.unwrap_or(now).max(start + 1);
    let (first, bucket, label_of) = time_axis(start, end);
    let sums = crate::rollups::per_bucket(
        &state.db,
        crate::rollups::Span {
            from: Some(start),
            to: Some(end),
        },
        first,
        bucket,
    )
    .await?;
    let n = (end - first + bucket - 1) / bucket;
    let over_time: Vec<Bar> = (0..n)
        .map(|i| Bar {
            label: label_of(first + i * bucket),
            value: sums.get(&i).map_or(0.0, |s| s.bytes as f64),
        })
        .collect();
    let per_poller_bars: Vec<Bar> = s
        .per_poller
        .iter()
        .map(|p| Bar {
            label: p.poller.clone(),
            value: p.bytes_sent as f64,
        })
        .collect();
    let outcome: Vec<Bar> = vec![
        Bar {
            label: "complete".into(),
            value: s.complete as f64,
        },
        Bar {
            label: "errors".into(),
            value: s.errors as f64,
        },
        Bar {
            label: "other".into(),
            value: (s.transfers - s.complete - s.errors) as f64,
        },
    ];
    let show_bytes = |v: f64| fmt::bytes(v as i64);
    let range_text = match (from, to) {
        (None, None) => "all time".to_string(),
        (Some(f), None) => format!("since {}", fmt::time(f)),
        (None, Some(t)) => format!("until {}", fmt::time(t)),
        (Some(f), Some(t)) => format!("{} to {}", fmt::time(f), fmt::time(t)),
    };
    html(&StatsPage {
        chrome: user.chrome("stats"),
        from: from
            .filter(|_| last.is_empty())
            .map(fmt::to_local)
            .unwrap_or_default(),
        to: to.map(fmt::to_local).unwrap_or_default(),
        last,
        range_text,
        transfers: s.transfers,
        complete: s.complete,
        errors: s.errors,
        bytes: fmt::bytes(s.bytes_sent),
        pollers_enabled: s.pollers_enabled,
        pollers_disabled: s.pollers_disabled,
        charts: vec![
            chart::bars("Bytes sent over time", &over_time, show_bytes),
            chart::hbars("Bytes sent per poller", &per_poller_bars, show_bytes),
            chart::bars("Transfers by outcome", &outcome, |v| format!("{v:.0}")),
        ],
        per_poller: s
            .per_poller
            .into_iter()
            .map(|p| PollerRow {
                poller: p.poller,
                transfers: p.transfers,
                complete: p.complete,
                errors: p.errors,
                bytes: fmt::bytes(p.bytes_sent),
            })
            .collect(),
    })
}
