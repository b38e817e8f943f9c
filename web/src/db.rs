//! The web app's database, of either backend. A query is written once, in
//! SQL both accept (ARCHITECTURE.md, "The web app"), and compiled for each
//! pool by [`on_db!`]; where the backends must differ, the match on [`Db`]
//! holds one statement per backend, side by side.
//!
//! Being moved onto it module by module: the statistics (`rollups`), the
//! pruning (`retention`) and health are; the rest still takes the SQLite
//! pool.

use sqlx::{PgPool, SqlitePool};

/// A pool of connections to the web app's database.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Db {
    /// The backend's name, as health reports it.
    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
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
