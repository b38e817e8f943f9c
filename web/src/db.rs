//! The web app's database, of either backend. A query is written once, in
//! SQL both accept (ARCHITECTURE.md, "The web app"), and compiled for each
//! pool by [`on_db!`]; where the backends must differ, the match on [`Db`]
//! holds one statement per backend, side by side.
//!
//! Being moved onto it module by module: the statistics (`rollups`), the
//! pruning (`retention`), health, people (`api::users`), logins and
//! sessions (`auth`) are; the rest still takes the SQLite pool.

use sqlx::{PgPool, SqlitePool};

/// A pool of connections to the web app's database.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A transaction that writes, on either backend ([`Db::begin_write`]);
/// its statements go through [`on_tx!`].
pub enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// The advisory lock a writing transaction holds on PostgreSQL (the bytes
/// of "Dispatch").
const WRITE_LOCK: i64 = 0x4469_7370_6174_6368;

impl Db {
    /// Starts a transaction that writes, one at a time per database, so a
    /// check read in it (the last admin, a poller that was enabled) still
    /// holds when it commits. SQLite takes its write lock at `BEGIN
    /// IMMEDIATE` (a deferred one that read first fails at once with
    /// "database is locked" if another connection wrote in between);
    /// PostgreSQL takes a transaction-level advisory lock, held by every
    /// replica's writers alike.
    pub async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        match self {
            Db::Sqlite(pool) => Ok(Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?)),
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Ok(Tx::Postgres(tx))
            }
        }
    }

    /// The backend's name, as health reports it.
    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }
}

/// Evaluates `$body` with `$pool` bound to `$db`'s pool, whichever the
/// backend: the same query text, type-checked against each driver.
#[macro_export]
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool) => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}

/// Evaluates `$body` with `$conn` bound to the connection of the
/// transaction `$tx` (a `&mut Tx`), whichever the backend.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            $crate::db::Tx::Sqlite(tx) => {
                let $conn = &mut **tx;
                $body
            }
            $crate::db::Tx::Postgres(tx) => {
                let $conn = &mut **tx;
                $body
            }
        }
    };
}
