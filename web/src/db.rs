//! The web app's database, of either backend. A query is written once, in
//! SQL both accept (ARCHITECTURE.md, "The web app"), and compiled for each
//! pool by [`on_db!`]; where the backends must differ, the match on [`Db`]
//! holds one statement per backend, side by side. A statement built at
//! run time is a [`Sql`].

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

/// An argument of a statement built at run time ([`Sql`]).
#[derive(Debug, Clone)]
pub enum Arg {
    Int(i64),
    Text(String),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_string())
    }
}

/// A statement built at run time (the transfer search's filters), with
/// `$N` placeholders both backends accept, run on either.
#[derive(Debug, Default)]
pub struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    pub fn new(text: &str) -> Self {
        Sql {
            text: text.to_string(),
            args: Vec::new(),
        }
    }

    /// Appends SQL text (never input: that goes through [`Sql::bind`]).
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `arg`.
    pub fn bind(&mut self, arg: impl Into<Arg>) -> &mut Self {
        self.args.push(arg.into());
        self.text.push_str(&format!("${}", self.args.len()));
        self
    }

    /// Every row, as `T`. The statement is planned for its arguments each
    /// time, not cached: after five runs PostgreSQL may give a cached
    /// statement one generic plan, and the search's best plan depends
    /// on the substring (`.mxf` walks the time index, a rare name the
    /// trigram index).
    pub async fn fetch_all<T>(&self, db: &Db) -> Result<Vec<T>, sqlx::Error>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + Send
            + Unpin,
    {
        on_db!(db, pool => {
            let mut q = sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(self.text.as_str()))
                .persistent(false);
            for arg in &self.args {
                q = match arg {
                    Arg::Int(v) => q.bind(*v),
                    Arg::Text(v) => q.bind(v.as_str()),
                };
            }
            q.fetch_all(pool).await
        })
    }
}
