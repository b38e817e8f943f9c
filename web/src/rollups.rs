//! Statistics of the transfer log over a time range, read from the
//! per-hour rollups the database keeps up to date (`transfer_rollups`,
//! maintained by triggers on `transfers`): whole hours come from the
//! rollups, the partial hours at the range's edges from the log itself (an
//! index range of at most two hours). The cost follows the range, not the
//! size of the log, and the figures are exactly what a scan would give.
//!
//! A transfer counts in the hour of its last change (`updated_at`), by its
//! status then; bytes are those of the complete ones.

use crate::db::Db;
use crate::on_db;
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

/// One cell: its key, a status, how many transfers and their bytes.
type Cell<K> = (K, String, i64, i64);

/// The cells of `span`'s parts grouped by `$key`, on either backend.
macro_rules! cells {
    ($db:expr, $key:literal, $k:ty, $parts:expr $(, $extra:expr)*) => {{
        let p: &Parts = $parts;
        on_db!($db, pool => {
            sqlx::query_as::<_, Cell<$k>>(cells_sql!($key))
                .bind(p.hours.0)
                .bind(p.hours.1)
                .bind(p.head.0)
                .bind(p.head.1)
                .bind(p.tail.0)
                .bind(p.tail.1)
                $(.bind($extra))*
                .fetch_all(pool)
                .await
        })
    }};
}

/// Per poller over `span`, in name order.
pub async fn per_poller(db: &Db, span: Span) -> Result<Vec<(String, Sums)>, sqlx::Error> {
    let cells = cells!(db, "poller", String, &span.parts(true))?;
    Ok(fold(cells)
        .into_iter()
        .filter(|(_, s)| s.transfers > 0)
        .collect())
}

/// Per bucket of `width` ms starting at `first` (bucket `i` is
/// `[first + i * width, …)`), over `span`.
pub async fn per_bucket(
    db: &Db,
    span: Span,
    first: i64,
    width: i64,
) -> Result<BTreeMap<i64, Sums>, sqlx::Error> {
    // Rollup hours fall whole into a bucket only when buckets are whole
    // hours on the hour.
    let whole_hours = width % HOUR_MS == 0 && first % HOUR_MS == 0;
    let parts = span.parts(whole_hours);
    let cells = cells!(db, "(at - $7) / $8", i64, &parts, first, width.max(1))?;
    Ok(fold(cells))
}

/// The cells added up per key.
fn fold<K: Ord>(cells: Vec<Cell<K>>) -> BTreeMap<K, Sums> {
    let mut by: BTreeMap<K, Sums> = BTreeMap::new();
    for (k, status, n, bytes) in cells {
        by.entry(k).or_default().add(&status, n, bytes);
    }
    by
}

/// The start of the hour of the oldest transfer counted, if any.
pub async fn first_hour(db: &Db) -> Result<Option<i64>, sqlx::Error> {
    let hour = on_db!(db, pool => {
        sqlx::query_scalar::<_, Option<i64>>(
            "SELECT MIN(hour) FROM transfer_rollups WHERE transfers > 0",
        )
        .fetch_one(pool)
        .await
    })?;
    Ok(hour.map(|h| h * HOUR_MS))
}

/// A name column of the rollups.
#[derive(Debug, Clone, Copy)]
pub enum Name {
    Poller,
    Agent,
}

/// Every poller or agent name the log has held, in order. The rollups
/// grow with the hours, the names do not: each name is one probe of the
/// column's index (a loose index scan), where `SELECT DISTINCT` read the
/// whole table (50 ms at 140,000 rollup rows, four months of a busy site).
pub async fn names(db: &Db, name: Name) -> Result<Vec<String>, sqlx::Error> {
    let column = match name {
        Name::Poller => "poller",
        Name::Agent => "agent",
    };
    let sql = format!(
        "WITH RECURSIVE n(v) AS (
             SELECT MIN({column}) FROM transfer_rollups
             UNION ALL
             SELECT (SELECT MIN({column}) FROM transfer_rollups WHERE {column} > n.v)
             FROM n WHERE n.v IS NOT NULL
         )
         SELECT v FROM n WHERE v IS NOT NULL"
    );
    on_db!(db, pool => {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str()))
            .fetch_all(pool)
            .await
    })
}
