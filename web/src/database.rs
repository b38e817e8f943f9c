//! Where the database is and opening it (SQLite or PostgreSQL, by the
//! URL), and for SQLite the lock files beside it that keep processes
//! sharing it out of each other's way: `<db>.migrate-lock` (one process
//! applies migrations at a time) and `<db>.in-use` (held shared by every
//! running web app, taken whole by `restore`, which must not replace a
//! database under a running process).

use crate::db::Db;
use sqlx::SqlitePool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The migrations this binary knows, for SQLite.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// The same schema, version for version, for PostgreSQL (the two sets are
/// kept one by `tests/backends.rs` against a real server).
pub static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// The newest schema version this binary knows.
pub fn newest_schema() -> i64 {
    MIGRATOR
        .migrations
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

/// The database URL in effect: `url`, else `<data_dir>/dispatch.sqlite`.
pub fn url(data_dir: &Path, url: Option<&str>) -> String {
    url.map_or_else(
        || format!("sqlite://{}", data_dir.join("dispatch.sqlite").display()),
        str::to_string,
    )
}

/// `url` as messages may show it: a password in it (`postgres://user:pw@…`)
/// is never said back.
pub fn shown(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..host_end].rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{}", &rest[host_end..])
        }
        None => url.to_string(),
    }
}

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The SQLite options of `url`, or why it cannot be used.
pub fn sqlite_options(url: &str) -> anyhow::Result<SqliteConnectOptions> {
    if !url.starts_with("sqlite:") {
        anyhow::bail!(
            "DATABASE_URL {}: backup and restore work on SQLite; back PostgreSQL up with \
             pg_dump and restore it with pg_restore",
            shown(url)
        );
    }
    SqliteConnectOptions::from_str(url)
        .map_err(|e| anyhow::anyhow!("DATABASE_URL {}: {e}", shown(url)))
}

/// `<db><suffix>`, beside the database file.
pub fn beside(db_file: &Path, suffix: &str) -> PathBuf {
    let mut name = db_file.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn lock_file(db_file: &Path, suffix: &str) -> std::io::Result<File> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(beside(db_file, suffix))
}

fn in_memory(db_file: &Path) -> bool {
    db_file == Path::new(":memory:")
}

/// Waits for, then holds, the right to migrate (or restore) `db_file`.
pub async fn migration_lock(db_file: &Path) -> anyhow::Result<Option<File>> {
    if in_memory(db_file) {
        return Ok(None);
    }
    let db_file = db_file.to_path_buf();
    let lock = tokio::task::spawn_blocking(move || -> std::io::Result<File> {
        let f = lock_file(&db_file, ".migrate-lock")?;
        f.lock()?;
        Ok(f)
    })
    .await??;
    Ok(Some(lock))
}

/// Applies the migrations, one process at a time: replicas sharing a
/// database file that start together would otherwise both apply the first
/// one, and the second would fail on the tables the first made.
pub async fn migrate(pool: &SqlitePool, db_file: &Path) -> anyhow::Result<()> {
    let lock = migration_lock(db_file).await?;
    MIGRATOR.run(pool).await?;
    drop(lock);
    Ok(())
}

/// The database at `url` (`sqlite:` or `postgres://`), its migrations
/// applied, and for SQLite the lock file that keeps `restore` away while
/// this process runs.
pub async fn open(url: &str) -> anyhow::Result<(Db, Option<File>)> {
    if is_postgres(url) {
        let bad = |e: sqlx::Error| anyhow::anyhow!("DATABASE_URL {}: {e}", shown(url));
        let options = PgConnectOptions::from_str(url).map_err(bad)?;
        // One connection first: a pool would retry until its timeout and
        // then say only that it timed out, not why.
        sqlx::Connection::close(sqlx::ConnectOptions::connect(&options).await.map_err(bad)?)
            .await
            .map_err(bad)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(bad)?;
        // The migrator holds a session-level advisory lock while it runs,
        // so replicas starting together apply each migration once.
        POSTGRES_MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| anyhow::anyhow!("DATABASE_URL {}: migrating: {e}", shown(url)))?;
        return Ok((Db::Postgres(pool), None));
    }
    if !url.starts_with("sqlite:") {
        anyhow::bail!(
            "DATABASE_URL {}: not a database this app runs on: give a sqlite: or postgres:// URL",
            shown(url)
        );
    }
    let options = sqlite_options(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .busy_timeout(std::time::Duration::from_secs(10));
    let db_file = options.get_filename().to_path_buf();
    // Before the first connection: a restore running now finishes first.
    let in_use = hold_in_use(&db_file)?;
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await?;
    migrate(&pool, &db_file).await?;
    Ok((Db::Sqlite(pool), in_use))
}

/// Marks `db_file` in use by this process while the returned file lives.
pub fn hold_in_use(db_file: &Path) -> anyhow::Result<Option<File>> {
    if in_memory(db_file) {
        return Ok(None);
    }
    let f = lock_file(db_file, ".in-use")
        .map_err(|e| anyhow::anyhow!("{}: {e}", beside(db_file, ".in-use").display()))?;
    f.lock_shared()?;
    Ok(Some(f))
}

/// Takes `db_file` whole, or says which process kind holds it.
pub fn take_whole(db_file: &Path) -> anyhow::Result<File> {
    let path = beside(db_file, ".in-use");
    let f =
        lock_file(db_file, ".in-use").map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "dispatch-web is running on {}: stop every process using it first",
            db_file.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => anyhow::bail!("{}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::{MIGRATOR, POSTGRES_MIGRATOR, shown};

    /// Health, backups and `newest_schema` compare version numbers: a
    /// version means the same schema on either backend.
    #[test]
    fn both_backends_have_the_same_migrations() {
        let list = |m: &sqlx::migrate::Migrator| -> Vec<(i64, String)> {
            m.migrations
                .iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect()
        };
        assert!(MIGRATOR.migrations.len() >= 10);
        assert_eq!(list(&MIGRATOR), list(&POSTGRES_MIGRATOR));
    }

    #[test]
    fn a_password_in_a_database_url_is_never_shown() {
        assert_eq!(
            shown("postgres://dispatch:s3cr%40t@db.example:5432/dispatch?sslmode=require"),
            "postgres://dispatch:***@db.example:5432/dispatch?sslmode=require"
        );
        assert_eq!(shown("postgres://db/x"), "postgres://db/x");
        assert_eq!(
            shown("sqlite://data/dispatch.sqlite"),
            "sqlite://data/dispatch.sqlite"
        );
    }
}
