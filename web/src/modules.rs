//! Module bytes. The database holds them, so every replica of the web app
//! can serve every module; `<data_dir>/modules/<sha256>.wasm` is this
//! replica's cache of them, checked against its name on every read.

use crate::AppState;
use crate::db::{Db, Tx};
use crate::{on_db, on_tx};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("module {0}: {1}")]
    Database(String, sqlx::Error),
    #[error("module {0}: the database has no bytes for it")]
    Missing(String),
}

/// Stores `bytes` (whose hash is `sha256`) with the version row `tx` wrote.
pub async fn put(tx: &mut Tx, sha256: &str, bytes: &[u8]) -> Result<(), sqlx::Error> {
    on_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO plugin_modules (sha256, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(sha256)
        .bind(bytes)
        .execute(conn)
        .await
        .map(|_| ())
    })
}

/// The bytes of module `sha256`: from the cache when it holds them intact,
/// else from the database (and then cached).
pub async fn get(state: &AppState, sha256: &str) -> Result<Vec<u8>, ModuleError> {
    // Reading and hashing up to tens of MB: off the async threads.
    let cached = {
        let (path, sha256) = (cache_path(&state.data_dir, sha256), sha256.to_string());
        tokio::task::spawn_blocking(move || {
            std::fs::read(&path)
                .ok()
                .filter(|bytes| hex::encode(Sha256::digest(bytes)) == sha256)
        })
        .await
        .ok()
        .flatten()
    };
    if let Some(bytes) = cached {
        return Ok(bytes);
    }
    let bytes: Option<Vec<u8>> = on_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT bytes FROM plugin_modules WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(pool)
            .await
    })
    .map_err(|e| ModuleError::Database(sha256.to_string(), e))?;
    let bytes = bytes.ok_or_else(|| ModuleError::Missing(sha256.to_string()))?;
    // Not waited for: the bytes are served now.
    drop(cache_in_background(
        state.data_dir.clone(),
        sha256.to_string(),
        bytes.clone(),
    ));
    Ok(bytes)
}

/// Writes the cached copy on a blocking thread (up to tens of MB, synced);
/// the handle says when it is done. A cache that cannot be written costs a
/// database read next time, no more.
pub fn cache_in_background(
    data_dir: PathBuf,
    sha256: String,
    bytes: Vec<u8>,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        if let Err(e) = write_cache(&data_dir, &sha256, &bytes) {
            tracing::warn!(%sha256, "cannot cache the module: {e}");
        }
    })
}

/// Drops the cached copy of a module whose version was deleted.
pub fn forget(data_dir: &Path, sha256: &str) {
    let _ = std::fs::remove_file(cache_path(data_dir, sha256));
}

/// Writes the cached copy (temporary name, then rename: never a partial
/// file under the final name).
fn write_cache(data_dir: &Path, sha256: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = data_dir.join("modules");
    std::fs::create_dir_all(&dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(cache_path(data_dir, sha256))
        .map_err(|e| e.error)?;
    Ok(())
}

/// Moves into the database the modules that only this data dir holds (a
/// database from before modules were kept in it). A version whose file is
/// gone too is reported: it can be neither served nor run.
pub async fn adopt_cached(db: &Db, data_dir: &Path) -> anyhow::Result<()> {
    let missing: Vec<String> = on_db!(db, pool => {
        sqlx::query_scalar(
            "SELECT v.sha256 FROM plugin_versions v
             WHERE NOT EXISTS (SELECT 1 FROM plugin_modules m WHERE m.sha256 = v.sha256)",
        )
        .fetch_all(pool)
        .await
    })?;
    for sha256 in missing {
        let path = cache_path(data_dir, &sha256);
        match std::fs::read(&path) {
            Ok(bytes) if hex::encode(Sha256::digest(&bytes)) == sha256 => {
                let mut tx = db.begin_write().await?;
                put(&mut tx, &sha256, &bytes).await?;
                tx.commit().await?;
                tracing::info!(%sha256, "module moved into the database");
            }
            Ok(_) => {
                tracing::error!(file = %path.display(), "module file does not match its name: not moved into the database")
            }
            Err(e) => {
                tracing::error!(file = %path.display(), "module of a registered version is missing: {e}")
            }
        }
    }
    Ok(())
}

fn cache_path(data_dir: &Path, sha256: &str) -> PathBuf {
    data_dir.join("modules").join(format!("{sha256}.wasm"))
}
