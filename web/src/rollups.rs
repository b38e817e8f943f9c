//! Statistics of the transfer log over a time range, read from the
//! per-day and per-hour rollups the database keeps up to date
//! (`transfer_rollups_daily` and `transfer_rollups`, maintained by
//! triggers on `transfers`): whole days come from the daily rollups, the
//! whole hours around them from the hourly ones, and the partial hours at
//! the range's edges from the log itself (an index range of at most two
//! hours). The cost follows the range in days, not the size of the log,
//! and the figures are exactly what a scan would give.
//!
//! A transfer counts in the hour of its last change (`updated_at`), by its
//! status then; bytes are those of the complete ones.

use crate::db::Db;
use crate::on_db;
use std::collections::BTreeMap;

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = HOURS_A_DAY * HOUR_MS;
const HOURS_A_DAY: i64 = 24;

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

/// The coarsest rollups a caller's groups can take whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grain {
    /// Groups finer than an hour: everything comes from the log.
    Log,
    Hours,
    Days,
}

const NONE: (i64, i64) = (0, 0);

/// The parts of a span: whole days `[d0, d1)` from the daily rollups, the
/// whole hours before and after them from the hourly ones, and the ms
/// ranges at the edges from the log.
struct Parts {
    days: (i64, i64),
    hours: [(i64, i64); 2],
    log: [(i64, i64); 2],
}

impl Span {
    fn parts(self, grain: Grain) -> Parts {
        let from = self.from.unwrap_or(i64::MIN);
        let to = self.to.unwrap_or(i64::MAX);
        let log_only = Parts {
            days: NONE,
            hours: [NONE; 2],
            log: [(from, to), NONE],
        };
        if grain == Grain::Log {
            return log_only;
        }
        let (h0, h1) = whole(self.from, self.to, HOUR_MS);
        if h0 >= h1 {
            return log_only;
        }
        // Saturating: `from` and `to` come from the query string.
        let log = [
            self.from.map_or(NONE, |f| (f, h0.saturating_mul(HOUR_MS))),
            self.to.map_or(NONE, |t| (h1.saturating_mul(HOUR_MS), t)),
        ];
        let hours_only = Parts {
            days: NONE,
            hours: [(h0, h1), NONE],
            log,
        };
        if grain == Grain::Hours {
            return hours_only;
        }
        let (d0, d1) = whole(self.from.map(|_| h0), self.to.map(|_| h1), HOURS_A_DAY);
        if d0 >= d1 {
            return hours_only;
        }
        Parts {
            days: (d0, d1),
            hours: [
                self.from
                    .map_or(NONE, |_| (h0, d0.saturating_mul(HOURS_A_DAY))),
                self.to
                    .map_or(NONE, |_| (d1.saturating_mul(HOURS_A_DAY), h1)),
            ],
            log,
        }
    }
}

/// The whole units of `unit` in `[from, to)`, as unit numbers `[u0, u1)`
/// (open ends stay open).
fn whole(from: Option<i64>, to: Option<i64>, unit: i64) -> (i64, i64) {
    (
        from.map_or(i64::MIN, |f| {
            f.div_euclid(unit) + i64::from(f.rem_euclid(unit) != 0)
        }),
        to.map_or(i64::MAX, |t| t.div_euclid(unit)),
    )
}

/// The cells of a span, grouped by `$key` (an expression of `at`, the
/// day's or hour's start or the transfer's time, and `poller`) and status.
macro_rules! cells_sql {
    ($key:literal) => {
        concat!(
            "SELECT ", $key, " AS k, status, CAST(SUM(n) AS BIGINT) AS n, CAST(SUM(bytes) AS BIGINT) AS bytes FROM (
                SELECT day * 86400000 AS at, poller, status, transfers AS n, bytes
                  FROM transfer_rollups_daily WHERE day >= $1 AND day < $2
                UNION ALL
                SELECT hour * 3600000 AS at, poller, status, transfers AS n, bytes
                  FROM transfer_rollups WHERE hour >= $3 AND hour < $4
                UNION ALL
                SELECT hour * 3600000 AS at, poller, status, transfers AS n, bytes
                  FROM transfer_rollups WHERE hour >= $5 AND hour < $6
                UNION ALL
                SELECT updated_at AS at, poller, status, 1 AS n,
                       CASE WHEN status = 'Complete' THEN COALESCE(size, bytes_done) ELSE 0 END AS bytes
                  FROM transfers WHERE updated_at >= $7 AND updated_at < $8
                UNION ALL
                SELECT updated_at AS at, poller, status, 1 AS n,
                       CASE WHEN status = 'Complete' THEN COALESCE(size, bytes_done) ELSE 0 END AS bytes
                  FROM transfers WHERE updated_at >= $9 AND updated_at < $10
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
                .bind(p.days.0)
                .bind(p.days.1)
                .bind(p.hours[0].0)
                .bind(p.hours[0].1)
                .bind(p.hours[1].0)
                .bind(p.hours[1].1)
                .bind(p.log[0].0)
                .bind(p.log[0].1)
                .bind(p.log[1].0)
                .bind(p.log[1].1)
                $(.bind($extra))*
                .fetch_all(pool)
                .await
        })
    }};
}

/// Per poller over `span`, in name order.
pub async fn per_poller(db: &Db, span: Span) -> Result<Vec<(String, Sums)>, sqlx::Error> {
    let cells = cells!(db, "poller", String, &span.parts(Grain::Days))?;
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
    // A rollup's day or hour falls whole into a bucket only when buckets
    // are whole days (hours) on the day (hour).
    let on = |unit: i64| width % unit == 0 && first % unit == 0;
    let grain = if on(DAY_MS) {
        Grain::Days
    } else if on(HOUR_MS) {
        Grain::Hours
    } else {
        Grain::Log
    };
    let cells = cells!(
        db,
        "(at - $11) / $12",
        i64,
        &span.parts(grain),
        first,
        width.max(1)
    )?;
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
