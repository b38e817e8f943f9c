//! Statistics of the transfer log over a time range, read from the
//! per-hour rollups the database keeps up to date (`transfer_rollups`,
//! maintained by triggers on `transfers`): whole hours come from the
//! rollups, the partial hours at the range's edges from the log itself (an
//! index range of at most two hours). The cost follows the range, not the
//! size of the log, and the figures are exactly what a scan would give.
//!
//! A transfer counts in the hour of its last change (`updated_at`), by its
//! status then; bytes are those of the complete ones.

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};
use std::collections::BTreeMap;

pub const HOUR_MS: i64 = 3_600_000;

/// What the transfers of one group add up to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sums {
    /// All transfers, whatever their status.
    pub transfers: i64,
    pub complete: i64,
    pub errors: i64,
    /// Complete, failed or cancelled.
    pub finished: i64,
    /// Bytes of the complete transfers.
    pub bytes: i64,
}

impl Sums {
    fn add(&mut self, status: &str, n: i64, bytes: i64) {
        self.transfers += n;
        self.bytes += bytes;
        match status {
            "Complete" => self.complete += n,
            "Error" => self.errors += n,
            _ => {}
        }
        if matches!(status, "Complete" | "Error" | "Cancelled") {
            self.finished += n;
        }
    }
}

/// `[from, to)` in ms since the epoch; `None` is open.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// The parts of a span: whole hours `[h0, h1)` from the rollups and the
/// ms ranges before and after them from the log.
struct Parts {
    hours: (i64, i64),
    head: (i64, i64),
    tail: (i64, i64),
}

impl Span {
    /// `whole_hours`: false when the caller's groups are finer than an
    /// hour, so everything comes from the log.
    fn parts(self, whole_hours: bool) -> Parts {
        const NONE: (i64, i64) = (0, 0);
        let from = self.from.unwrap_or(i64::MIN);
        let to = self.to.unwrap_or(i64::MAX);
        if !whole_hours {
            return Parts {
                hours: NONE,
                head: (from, to),
                tail: NONE,
            };
        }
        let h0 = self.from.map_or(i64::MIN, |f| {
            f.div_euclid(HOUR_MS) + i64::from(f.rem_euclid(HOUR_MS) != 0)
        });
        let h1 = self.to.map_or(i64::MAX, |t| t.div_euclid(HOUR_MS));
        if h0 >= h1 {
            return Parts {
                hours: NONE,
                head: (from, to),
                tail: NONE,
            };
        }
        // Saturating: `from` and `to` come from the query string.
        Parts {
            hours: (h0, h1),
            head: self.from.map_or(NONE, |f| (f, h0.saturating_mul(HOUR_MS))),
            tail: self.to.map_or(NONE, |t| (h1.saturating_mul(HOUR_MS), t)),
        }
    }
}

/// The cells of a span, grouped by `$key` (an expression of `at`, the
/// hour's start or the transfer's time, and `poller`) and status.
macro_rules! cells_sql {
    ($key:literal) => {
        concat!(
            "SELECT ", $key, " AS k, status, CAST(SUM(n) AS BIGINT) AS n, CAST(SUM(bytes) AS BIGINT) AS bytes FROM (
                SELECT hour * 3600000 AS at, poller, status, transfers AS n, bytes
                  FROM transfer_rollups WHERE hour >= $1 AND hour < $2
                UNION ALL
                SELECT updated_at AS at, poller, status, 1 AS n,
                       CASE WHEN status = 'Complete' THEN COALESCE(size, bytes_done) ELSE 0 END AS bytes
                  FROM transfers WHERE updated_at >= $3 AND updated_at < $4
                UNION ALL
                SELECT updated_at AS at, poller, status, 1 AS n,
                       CASE WHEN status = 'Complete' THEN COALESCE(size, bytes_done) ELSE 0 END AS bytes
                  FROM transfers WHERE updated_at >= $5 AND updated_at < $6
             ) AS cells GROUP BY k, status"
        )
    };
}

fn bind_parts<'q>(
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    p: &Parts,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    q.bind(p.hours.0)
        .bind(p.hours.1)
        .bind(p.head.0)
        .bind(p.head.1)
        .bind(p.tail.0)
        .bind(p.tail.1)
}

/// Per poller over `span`, in name order.
pub async fn per_poller(pool: &SqlitePool, span: Span) -> Result<Vec<(String, Sums)>, sqlx::Error> {
    let rows = bind_parts(sqlx::query(cells_sql!("poller")), &span.parts(true))
        .fetch_all(pool)
        .await?;
    Ok(fold::<String>(&rows)
        .into_iter()
        .filter(|(_, s)| s.transfers > 0)
        .collect())
}

/// Per bucket of `width` ms starting at `first` (bucket `i` is
/// `[first + i * width, …)`), over `span`.
pub async fn per_bucket(
    pool: &SqlitePool,
    span: Span,
    first: i64,
    width: i64,
) -> Result<BTreeMap<i64, Sums>, sqlx::Error> {
    // Rollup hours fall whole into a bucket only when buckets are whole
    // hours on the hour.
    let whole_hours = width % HOUR_MS == 0 && first % HOUR_MS == 0;
    let rows = bind_parts(
        sqlx::query(cells_sql!("(at - $7) / $8")),
        &span.parts(whole_hours),
    )
    .bind(first)
    .bind(width.max(1))
    .fetch_all(pool)
    .await?;
    Ok(fold(&rows))
}

/// The cells (`k`, status, n, bytes) added up per key.
fn fold<K>(rows: &[SqliteRow]) -> BTreeMap<K, Sums>
where
    K: Ord + for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    let mut by: BTreeMap<K, Sums> = BTreeMap::new();
    for r in rows {
        by.entry(r.get("k"))
            .or_default()
            .add(r.get("status"), r.get("n"), r.get("bytes"));
    }
    by
}

/// The start of the hour of the oldest transfer counted, if any.
pub async fn first_hour(pool: &SqlitePool) -> Result<Option<i64>, sqlx::Error> {
    Ok(sqlx::query_scalar::<_, Option<i64>>(
        "SELECT MIN(hour) FROM transfer_rollups WHERE transfers > 0",
    )
    .fetch_one(pool)
    .await?
    .map(|h| h * HOUR_MS))
}
