//! Pauses that tests use to widen a race window on purpose, so a race
//! (a file changed just before its source is removed, a crash between the
//! final rename and the Complete record) is tested deterministically.
//!
//! `DISPATCH_TEST_PAUSE="after-send=1500,before-remove=800"` pauses for that
//! many milliseconds at the named points. Unset (always, outside tests),
//! each point costs one lookup of a value read once.

use std::sync::OnceLock;
use std::time::Duration;

/// The points a pause can be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// The item is about to be handed to its backend.
    BeforeSend,
    /// A backend said the item was sent; before the source's re-check.
    AfterSend,
    /// The item is settled at its final name; before its Complete record.
    BeforeComplete,
    /// The Complete record is on disk; before the source is removed.
    BeforeRemove,
    /// The local backend copied a directory; before its final rename.
    BeforeRename,
    /// A poll's plugin listed its root; before its items are weighed.
    AfterList,
}

impl Point {
    fn name(self) -> &'static str {
        match self {
            Point::BeforeSend => "before-send",
            Point::AfterSend => "after-send",
            Point::BeforeComplete => "before-complete",
            Point::BeforeRemove => "before-remove",
            Point::BeforeRename => "before-rename",
            Point::AfterList => "after-list",
        }
    }
}

fn pauses() -> &'static Vec<(String, Duration)> {
    static PAUSES: OnceLock<Vec<(String, Duration)>> = OnceLock::new();
    PAUSES.get_or_init(|| {
        std::env::var("DISPATCH_TEST_PAUSE")
            .unwrap_or_default()
            .split(',')
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((
                    k.trim().to_string(),
                    Duration::from_millis(v.trim().parse().ok()?),
                ))
            })
            .collect()
    })
}

/// How long to pause at `point` (zero unless a test asked).
pub fn pause(point: Point) -> Duration {
    pauses()
        .iter()
        .find(|(k, _)| k == point.name())
        .map_or(Duration::ZERO, |(_, d)| *d)
}

/// Pauses a blocking thread at `point`, if a test asked.
pub fn block_at(point: Point) {
    let d = pause(point);
    if !d.is_zero() {
        tracing::debug!("test pause {}: {d:?}", point.name());
        std::thread::sleep(d);
    }
}

/// Pauses a task at `point`, if a test asked.
pub async fn wait_at(point: Point) {
    let d = pause(point);
    if !d.is_zero() {
        tracing::debug!("test pause {}: {d:?}", point.name());
        tokio::time::sleep(d).await;
    }
}
