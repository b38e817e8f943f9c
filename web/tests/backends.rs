//! The two database backends keep one schema and give the same answers:
//! the SQLite and PostgreSQL migrations (`migrations/sqlite`,
//! `migrations/postgres`) make the same tables and columns, of matching
//! kinds; the rollup triggers count a stream of transfer writes into the
//! same cells; and what already runs on `Db` (statistics, retention) says
//! the same on both. Against a real PostgreSQL 15 cluster of the test's own.
#![allow(clippy::unwrap_used)] // a test that fails panics

mod support;

use dispatch_web::database::{MIGRATOR, POSTGRES_MIGRATOR};
use dispatch_web::db::Db;
use dispatch_web::rollups::{Span, Sums, first_hour, per_bucket, per_poller};
use sqlx::{PgPool, Row as _, SqlitePool};
use std::collections::BTreeMap;
use support::postgres::Postgres;

/// table -> column -> (kind, not null)
type Columns = BTreeMap<String, BTreeMap<String, (&'static str, bool)>>;

/// Both databases, migrated to the newest schema.
async fn both(pg: &Postgres, name: &str) -> (tempfile::TempDir, SqlitePool, PgPool) {
    both_at(pg, name, i64::MAX).await
}

/// Both databases, migrated up to `version`.
async fn both_at(
    pg: &Postgres,
    name: &str,
    version: i64,
) -> (tempfile::TempDir, SqlitePool, PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqlitePool::connect(&format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("d.sqlite").display()
    ))
    .await
    .unwrap();
    MIGRATOR.run_to(version, &sqlite).await.unwrap();
    let postgres = PgPool::connect(&pg.database(name).await).await.unwrap();
    POSTGRES_MIGRATOR.run_to(version, &postgres).await.unwrap();
    (dir, sqlite, postgres)
}

/// SQLite's storage classes; a flag is an integer 0/1 there.
fn sqlite_kind(declared: &str) -> &'static str {
    match declared.to_ascii_uppercase().as_str() {
        "INTEGER" => "integer",
        "TEXT" => "text",
        "BLOB" => "bytes",
        "REAL" => "real",
        _ => "other",
    }
}

/// PostgreSQL's types as the app reads them: every integer is an i64
/// (BIGINT), a flag is a BOOLEAN (SQLite's 0/1 integer).
fn postgres_kind(data_type: &str) -> &'static str {
    match data_type {
        "bigint" | "boolean" => "integer",
        "text" => "text",
        "bytea" => "bytes",
        "double precision" => "real",
        _ => "other",
    }
}

async fn sqlite_columns(db: &SqlitePool) -> Columns {
    let rows = sqlx::query(
        "SELECT m.name AS t, p.name AS c, p.type AS ty, p.\"notnull\" AS nn, p.pk AS pk
         FROM sqlite_master m JOIN pragma_table_info(m.name) p
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '\\_sqlx%' ESCAPE '\\'
           AND m.name NOT LIKE 'transfers_fts%'",
    )
    .fetch_all(db)
    .await
    .unwrap();
    let mut out = Columns::new();
    for r in rows {
        let ty: String = r.get("ty");
        // An INTEGER PRIMARY KEY is the rowid: never null.
        let not_null = r.get::<i64, _>("nn") == 1 || r.get::<i64, _>("pk") > 0;
        out.entry(r.get("t"))
            .or_default()
            .insert(r.get("c"), (sqlite_kind(&ty), not_null));
    }
    out
}

async fn postgres_columns(db: &PgPool) -> Columns {
    let rows = sqlx::query(
        "SELECT table_name::text AS t, column_name::text AS c, data_type::text AS ty, is_nullable::text AS n
         FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(db)
    .await
    .unwrap();
    let mut out = Columns::new();
    for r in rows {
        let ty: String = r.get("ty");
        let not_null = r.get::<String, _>("n") == "NO";
        out.entry(r.get("t"))
            .or_default()
            .insert(r.get("c"), (postgres_kind(&ty), not_null));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_have_the_same_tables_and_columns() {
    let pg = Postgres::start();
    let (_dir, sqlite, postgres) = both(&pg, "columns").await;
    let (s, p) = (
        sqlite_columns(&sqlite).await,
        postgres_columns(&postgres).await,
    );
    assert!(s.len() > 15, "too few tables read: {s:?}");
    assert_eq!(
        s.keys().collect::<Vec<_>>(),
        p.keys().collect::<Vec<_>>(),
        "the same tables"
    );
    for (table, columns) in &s {
        assert_eq!(
            columns, &p[table],
            "the columns of `{table}`: SQLite, then PostgreSQL"
        );
        assert!(
            !columns.values().any(|(kind, _)| *kind == "other"),
            "`{table}` has a column of no known kind: {columns:?}"
        );
    }
    // The seeded row is there on both.
    let seeded = "SELECT version FROM config_version WHERE id = 1";
    let a: i64 = sqlx::query_scalar(seeded).fetch_one(&sqlite).await.unwrap();
    let b: i64 = sqlx::query_scalar(seeded)
        .fetch_one(&postgres)
        .await
        .unwrap();
    assert_eq!((a, b), (1, 1), "config_version");
}

/// One write to `transfers`, run alike on both databases.
enum Write {
    Insert {
        transfer: String,
        poller: &'static str,
        agent: &'static str,
        status: &'static str,
        size: Option<i64>,
        at: i64,
    },
    Update {
        transfer: String,
        status: &'static str,
        bytes_done: i64,
        at: i64,
    },
    Delete {
        transfer: String,
    },
}

/// A stream of writes like ingest's and retention's: transfers queued,
/// progressing, finishing (some sizes unknown), moving between hours,
/// retried, deleted.
fn writes(n: usize) -> Vec<Write> {
    let mut rng = fastrand::Rng::with_seed(7);
    let statuses = ["Queued", "Transferring", "Complete", "Error", "Cancelled"];
    // Each live transfer's status and time, so some updates keep them
    // (progress, or a Complete's size learned late) and change bytes only.
    let mut live: Vec<(String, &'static str, i64)> = Vec::new();
    let mut out = Vec::new();
    for i in 0..n {
        // Over three days, so whole days come from the daily rollups.
        let at = 3_600_000 * 100 + rng.i64(0..3_600_000 * 72);
        let pick = rng.usize(0..live.len().max(1));
        match rng.u8(0..10) {
            0..=3 => {
                let (transfer, status) = (format!("t{i}"), statuses[rng.usize(0..3)]);
                live.push((transfer.clone(), status, at));
                out.push(Write::Insert {
                    transfer,
                    poller: ["news", "sports", "promos"][rng.usize(0..3)],
                    agent: ["edge-1", "edge-2"][rng.usize(0..2)],
                    status,
                    size: rng.bool().then(|| rng.i64(0..1 << 40)),
                    at,
                });
            }
            4..=8 if !live.is_empty() => {
                let t = &mut live[pick];
                if rng.bool() {
                    (t.1, t.2) = (statuses[rng.usize(0..statuses.len())], at);
                }
                out.push(Write::Update {
                    transfer: t.0.clone(),
                    status: t.1,
                    bytes_done: rng.i64(0..1 << 40),
                    at: t.2,
                });
            }
            _ if !live.is_empty() => {
                let (transfer, ..) = live.swap_remove(pick);
                out.push(Write::Delete { transfer });
            }
            _ => {}
        }
    }
    out
}

macro_rules! apply {
    ($db:expr, $w:expr) => {
        match $w {
            Write::Insert { transfer, poller, agent, status, size, at } => sqlx::query(
                "INSERT INTO transfers (agent_id, agent, transfer_id, poller, path, file_name, size, status, updated_at)
                 VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(*agent)
            .bind(transfer)
            .bind(*poller)
            .bind(format!("in/{transfer}.mxf"))
            .bind(format!("{transfer}.mxf"))
            .bind(*size)
            .bind(*status)
            .bind(*at),
            Write::Update { transfer, status, bytes_done, at } => sqlx::query(
                "UPDATE transfers SET status = $1, bytes_done = $2, updated_at = $3 WHERE transfer_id = $4",
            )
            .bind(*status)
            .bind(*bytes_done)
            .bind(*at)
            .bind(transfer),
            Write::Delete { transfer } => {
                sqlx::query("DELETE FROM transfers WHERE transfer_id = $1").bind(transfer)
            }
        }
        .execute($db)
        .await
        .unwrap()
    };
}

const CELLS: &str = "SELECT hour, poller, agent, status, transfers, bytes FROM transfer_rollups
     ORDER BY hour, poller, agent, status";

/// The daily rollups' cells with something in them, and the hourly ones
/// added up per day: the same, on each backend.
const DAYS: &str = "SELECT day, poller, status, transfers, bytes FROM transfer_rollups_daily
     WHERE transfers <> 0 OR bytes <> 0 ORDER BY day, poller, status";
const HOURS_BY_DAY: &str = "SELECT hour / 24, poller, status,
            CAST(SUM(transfers) AS BIGINT), CAST(SUM(bytes) AS BIGINT)
     FROM transfer_rollups GROUP BY 1, 2, 3
     HAVING SUM(transfers) <> 0 OR SUM(bytes) <> 0 ORDER BY 1, 2, 3";

/// The hourly cells are the same on both backends; on each, every day is
/// the sum of its hours and every status's total the sum of its cells.
async fn counts_agree(sqlite: &SqlitePool, postgres: &PgPool) {
    type Cell = (i64, String, String, String, i64, i64);
    let s: Vec<Cell> = sqlx::query_as(CELLS).fetch_all(sqlite).await.unwrap();
    let p: Vec<Cell> = sqlx::query_as(CELLS).fetch_all(postgres).await.unwrap();
    assert!(s.len() > 20, "too few cells: {s:?}");
    assert_eq!(s, p, "the same cells (SQLite, then PostgreSQL)");
    type Day = (i64, String, String, i64, i64);
    type Total = (String, i64);
    const TOTALS: &str = "SELECT status, CAST(transfers AS BIGINT) FROM transfer_totals
         WHERE transfers <> 0 ORDER BY status";
    const CELLS_BY_STATUS: &str =
        "SELECT status, CAST(SUM(transfers) AS BIGINT) FROM transfer_rollups
         GROUP BY status HAVING SUM(transfers) <> 0 ORDER BY status";
    for db in [Db::Sqlite(sqlite.clone()), Db::Postgres(postgres.clone())] {
        let days: Vec<Day> =
            dispatch_web::on_db!(&db, pool => sqlx::query_as(DAYS).fetch_all(pool).await).unwrap();
        let summed: Vec<Day> =
            dispatch_web::on_db!(&db, pool => sqlx::query_as(HOURS_BY_DAY).fetch_all(pool).await)
                .unwrap();
        assert!(days.len() > 10, "too few days' cells: {days:?}");
        let backend = db.backend();
        assert_eq!(days, summed, "{backend}: each day is the sum of its hours");
        let totals: Vec<Total> =
            dispatch_web::on_db!(&db, pool => sqlx::query_as(TOTALS).fetch_all(pool).await)
                .unwrap();
        let summed: Vec<Total> =
            dispatch_web::on_db!(&db, pool => sqlx::query_as(CELLS_BY_STATUS).fetch_all(pool).await)
                .unwrap();
        assert!(totals.len() >= 3, "{backend}: {totals:?}");
        assert_eq!(totals, summed, "{backend}: the totals are the cells' sums");
    }
}

/// A log written before the daily rollups (migration 0013) is counted
/// into them at the upgrade, and writes after it go on counting into all
/// three, on both backends (PostgreSQL's row triggers were replaced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_rollups_are_filled_at_the_upgrade() {
    let pg = Postgres::start();
    let (_dir, sqlite, postgres) = both_at(&pg, "upgrade", 12).await;
    let writes = writes(600);
    let (before, after) = writes.split_at(300);
    for w in before {
        apply!(&sqlite, w);
        apply!(&postgres, w);
    }
    MIGRATOR.run(&sqlite).await.unwrap();
    POSTGRES_MIGRATOR.run(&postgres).await.unwrap();
    counts_agree(&sqlite, &postgres).await;
    for w in after {
        apply!(&sqlite, w);
        apply!(&postgres, w);
    }
    counts_agree(&sqlite, &postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_count_the_same_rollups_from_the_same_writes() {
    let pg = Postgres::start();
    let (_dir, sqlite, postgres) = both(&pg, "rollups").await;
    let writes = writes(600);
    assert!(writes.iter().any(|w| matches!(w, Write::Delete { .. })));
    for w in &writes {
        apply!(&sqlite, w);
        apply!(&postgres, w);
    }
    counts_agree(&sqlite, &postgres).await;
    // And right: with nothing deleted in a cell, it counts what is there.
    let counted: i64 =
        sqlx::query_scalar("SELECT CAST(SUM(transfers) AS BIGINT) FROM transfer_rollups")
            .fetch_one(&postgres)
            .await
            .unwrap();
    let inserted = writes
        .iter()
        .filter(|w| matches!(w, Write::Insert { .. }))
        .count();
    assert_eq!(
        counted,
        i64::try_from(inserted).unwrap(),
        "every transfer counted once, deleted ones too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_and_retention_say_the_same_on_both_backends() {
    const H: i64 = 3_600_000;
    let pg = Postgres::start();
    let (_dir, sqlite, postgres) = both(&pg, "stats").await;
    for w in &writes(600) {
        apply!(&sqlite, w);
        apply!(&postgres, w);
    }
    let (s, p) = (Db::Sqlite(sqlite), Db::Postgres(postgres));
    let all = Span {
        from: None,
        to: None,
    };
    let spans = [
        all,
        Span {
            from: Some(100 * H),
            to: Some(103 * H),
        },
        // Partial hours at both ends: those come from the log itself.
        Span {
            from: Some(100 * H + 1_234),
            to: Some(104 * H + 99),
        },
        Span {
            from: Some(102 * H + 5),
            to: None,
        },
        // Whole days (120 h to 168 h) between whole hours and partial ones.
        Span {
            from: Some(100 * H + 5),
            to: Some(170 * H + 7),
        },
        Span {
            from: None,
            to: Some(150 * H),
        },
    ];
    for span in spans {
        let (a, b) = (
            per_poller(&s, span).await.unwrap(),
            per_poller(&p, span).await.unwrap(),
        );
        assert!(!a.is_empty(), "{span:?}");
        assert_eq!(a, b, "per poller over {span:?}");
        for (first, width) in [(100 * H, H), (100 * H, 2 * H), (100 * H + 17, 600_000)] {
            let a = per_bucket(&s, span, first, width).await.unwrap();
            let b = per_bucket(&p, span, first, width).await.unwrap();
            assert!(!a.is_empty(), "{span:?} {first} {width}");
            assert_eq!(a, b, "per bucket of {width} ms from {first} over {span:?}");
        }
        // Daily buckets (from the daily rollups where days are whole) are
        // the hourly ones added up.
        for db in [&s, &p] {
            let days = per_bucket(db, span, 96 * H, 24 * H).await.unwrap();
            let mut summed: BTreeMap<i64, Sums> = BTreeMap::new();
            for (hour, h) in per_bucket(db, span, 96 * H, H).await.unwrap() {
                let d = summed.entry(hour / 24).or_default();
                d.transfers += h.transfers;
                d.complete += h.complete;
                d.errors += h.errors;
                d.finished += h.finished;
                d.bytes += h.bytes;
            }
            assert!(!days.is_empty(), "{span:?}");
            assert_eq!(days, summed, "{}: days over {span:?}", db.backend());
        }
    }
    assert_eq!(first_hour(&s).await.unwrap(), Some(100 * H));
    assert_eq!(first_hour(&p).await.unwrap(), Some(100 * H));

    // Every finished transfer is older than a day (they are from 1970):
    // retention removes the same rows, and the statistics stay.
    let before = per_poller(&p, all).await.unwrap();
    let day = std::time::Duration::from_secs(86_400);
    let gone_s = dispatch_web::retention::forget_finished_transfers(&s, day)
        .await
        .unwrap();
    let gone_p = dispatch_web::retention::forget_finished_transfers(&p, day)
        .await
        .unwrap();
    assert!(gone_s > 50, "{gone_s}");
    assert_eq!(gone_s, gone_p);
    assert_eq!(per_poller(&p, all).await.unwrap(), before);
    assert_eq!(per_poller(&s, all).await.unwrap(), before);
}

/// Writers go one at a time on PostgreSQL too (an advisory lock, as
/// SQLite's `BEGIN IMMEDIATE`): a second writer waits for the first to
/// commit, so a check it reads (the last admin) is never stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_go_one_at_a_time_on_postgresql() {
    let pg = Postgres::start();
    let (_dir, _sqlite, postgres) = both(&pg, "writers").await;
    let db = Db::Postgres(postgres.clone());
    let mut first = db.begin_write().await.unwrap();
    dispatch_web::on_tx!(&mut first, conn => {
        sqlx::query("UPDATE config_version SET version = version + 1 WHERE id = 1")
            .execute(conn)
            .await
            .map(|_| ())
    })
    .unwrap();
    let second = tokio::spawn({
        let db = db.clone();
        async move {
            let mut tx = db.begin_write().await.unwrap();
            let seen: i64 = dispatch_web::on_tx!(&mut tx, conn => {
                sqlx::query_scalar("SELECT version FROM config_version WHERE id = 1")
                    .fetch_one(conn)
                    .await
            })
            .unwrap();
            tx.commit().await.unwrap();
            seen
        }
    });
    // The second writer is waiting for the lock (not merely not started).
    let waiting = "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted";
    support::wait_until(
        "the second writer waits",
        std::time::Duration::from_secs(10),
        async || {
            sqlx::query_scalar::<_, i64>(waiting)
                .fetch_one(&postgres)
                .await
                .unwrap()
                == 1
        },
    )
    .await;
    assert!(!second.is_finished());
    first.commit().await.unwrap();
    assert_eq!(second.await.unwrap(), 2, "it read what the first wrote");
}

/// Replicas starting together on an empty database make one first admin
/// between them, on either backend; the local agent's token is made once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_is_made_once_on_both_backends() {
    let pg = Postgres::start();
    let (dir, sqlite, postgres) = both(&pg, "admins").await;
    for db in [Db::Sqlite(sqlite), Db::Postgres(postgres)] {
        let mut tries = tokio::task::JoinSet::new();
        for i in 0..8 {
            let db = db.clone();
            tries.spawn(async move {
                dispatch_web::ensure_admin(&db, &format!("admin{i}"), None)
                    .await
                    .unwrap()
            });
        }
        let made: Vec<String> = tries.join_all().await.into_iter().flatten().collect();
        assert_eq!(made.len(), 1, "{}: one password printed", db.backend());
        let users: Vec<(String, String)> = dispatch_web::on_db!(&db, pool => {
            sqlx::query_as("SELECT username, role FROM users").fetch_all(pool).await
        })
        .unwrap();
        assert_eq!(users.len(), 1, "{}: {users:?}", db.backend());
        assert_eq!(users[0].1, "admin");

        let token = dir.path().join(format!("{}.token", db.backend()));
        dispatch_web::ensure_local_agent(&db, "local", &token)
            .await
            .unwrap();
        let written = std::fs::read_to_string(&token).unwrap();
        dispatch_web::ensure_local_agent(&db, "local", &token)
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(&token).unwrap(), written, "kept");
        let agents: i64 = dispatch_web::on_db!(&db, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM agents WHERE name = 'local'")
                .fetch_one(pool)
                .await
        })
        .unwrap();
        assert_eq!(agents, 1);
    }
}
