//! `dispatch-web backup` and `restore`: a consistent copy of the SQLite
//! database taken while the web app runs (`VACUUM INTO`, one read
//! transaction: every write committed before it began is in the copy), and
//! the copy put back while no process uses the database. The database it
//! replaces is kept beside it; nothing is lost by a restore.
//!
//! The secret key is not in the database: a backup without the key cannot
//! read the targets' secrets, so both commands say where the key is.

use crate::database;
use anyhow::{Context as _, bail};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _};
use std::path::{Path, PathBuf};

/// What a backup or restore did, for the one line printed.
pub struct Done {
    pub bytes: u64,
    pub schema: i64,
    /// `restore`: where the database it replaced is kept.
    pub kept: Option<PathBuf>,
}

/// Copies the database of `options` to `to`, which must not exist. The copy
/// is written under a temporary name, checked, synced, then given its name.
pub async fn backup(options: SqliteConnectOptions, to: &Path) -> anyhow::Result<Done> {
    let from = options.get_filename().to_path_buf();
    if !from.is_file() {
        bail!("no database at {}", from.display());
    }
    if to.exists() {
        bail!(
            "{} already exists: give a new file name (a backup never overwrites)",
            to.display()
        );
    }
    let dir = parent(to);
    if !dir.is_dir() {
        bail!("{}: no such directory", dir.display());
    }
    let tmp = dir.join(format!(
        ".{}.partial-{}",
        to.file_name()
            .map_or_else(Default::default, |n| n.to_string_lossy()),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let written = async {
        let mut conn = options
            .create_if_missing(false)
            .busy_timeout(std::time::Duration::from_secs(30))
            .connect()
            .await
            .with_context(|| format!("cannot open {}", from.display()))?;
        let tmp_text = tmp
            .to_str()
            .with_context(|| format!("{} is not UTF-8", tmp.display()))?;
        sqlx::query("VACUUM INTO $1")
            .bind(tmp_text)
            .execute(&mut conn)
            .await
            .with_context(|| format!("cannot copy {}", from.display()))?;
        conn.close().await.ok();
        let schema = check(&tmp).await?;
        std::fs::File::open(&tmp)?.sync_all()?;
        // A link fails if `to` appeared meanwhile: never overwrite.
        std::fs::hard_link(&tmp, to).with_context(|| format!("cannot name {}", to.display()))?;
        std::fs::File::open(dir)?.sync_all()?;
        anyhow::Ok(schema)
    }
    .await;
    let _ = std::fs::remove_file(&tmp);
    let schema = written?;
    Ok(Done {
        bytes: std::fs::metadata(to)?.len(),
        schema,
        kept: None,
    })
}

/// Puts the backup `from` in place of the database of `options`. Refused
/// while a web app uses the database; the database replaced is renamed to
/// `<db>.before-restore-<unix seconds>`.
pub async fn restore(options: SqliteConnectOptions, from: &Path) -> anyhow::Result<Done> {
    let db = options.get_filename().to_path_buf();
    if !from.is_file() {
        bail!("{}: no such file", from.display());
    }
    let schema = check(from).await?;
    if schema > database::newest_schema() {
        bail!(
            "{} has schema version {schema}, newer than this dispatch-web knows ({}): restore it with the version that made it",
            from.display(),
            database::newest_schema()
        );
    }
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let _whole = database::take_whole(&db)?;
    let _migrations = database::migration_lock(&db).await?;
    let dir = parent(&db).to_path_buf();
    let incoming = database::beside(&db, ".restoring");
    std::fs::copy(from, &incoming)
        .with_context(|| format!("cannot copy {} to {}", from.display(), incoming.display()))?;
    std::fs::File::open(&incoming)?.sync_all()?;
    let kept = if db.exists() {
        // Everything of the old database into its main file, so that file
        // alone is the whole of it once renamed.
        let mut conn = options.clone().connect().await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut conn)
            .await
            .with_context(|| format!("cannot checkpoint {}", db.display()))?;
        conn.close().await?;
        let kept = database::beside(&db, &format!(".before-restore-{}", crate::now_ms() / 1000));
        std::fs::rename(&db, &kept)
            .with_context(|| format!("cannot keep {} as {}", db.display(), kept.display()))?;
        Some(kept)
    } else {
        None
    };
    for suffix in ["-wal", "-shm"] {
        match std::fs::remove_file(database::beside(&db, suffix)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    std::fs::rename(&incoming, &db)?;
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(Done {
        bytes: std::fs::metadata(&db)?.len(),
        schema,
        kept,
    })
}

/// Checks that `file` is a whole Dispatch database; its schema version.
async fn check(file: &Path) -> anyhow::Result<i64> {
    let what = || format!("{} is not a Dispatch database", file.display());
    let mut conn = SqliteConnectOptions::new()
        .filename(file)
        .read_only(true)
        .connect()
        .await
        .with_context(what)?;
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .with_context(what)?;
    if verdict != "ok" {
        bail!("{} is damaged: {verdict}", file.display());
    }
    let schema: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut conn)
            .await
            .with_context(what)?;
    conn.close().await.ok();
    schema.with_context(what)
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}
