//! The module store: plugin components fetched from the web app by sha256,
//! each checked while it streams in (temporary file, then renamed), so a
//! module in the store is always the one its name says.

use super::Client;
use futures_util::StreamExt as _;
use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Why a module could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("downloading module {sha256}: {reason}")]
    Download { sha256: String, reason: String },
    #[error(
        "module {sha256} from the web app does not match its sha256 (got {got}): refused, the previous version keeps running"
    )]
    Mismatch { sha256: String, got: String },
    #[error("module store {}: {source}", .dir.display())]
    Store {
        dir: PathBuf,
        source: std::io::Error,
    },
}

pub struct ModuleStore {
    dir: PathBuf,
}

impl ModuleStore {
    pub fn open(dir: &Path) -> Result<Self, ModuleError> {
        let store = |source| ModuleError::Store {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(store)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.wasm"))
    }

    /// Makes sure module `sha256` is in the store, fetching it if not.
    pub async fn ensure(&self, client: &Client, sha256: &str) -> Result<(), ModuleError> {
        if self.path(sha256).exists() {
            return Ok(());
        }
        let failed = |reason: String| ModuleError::Download {
            sha256: sha256.to_string(),
            reason,
        };
        let store = |source| ModuleError::Store {
            dir: self.dir.clone(),
            source,
        };
        let res = client
            .get(&format!("/api/v1/plugins/{sha256}"))
            .await
            .map_err(failed)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(store)?;
        let mut hash = Sha256::new();
        let mut body = res.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| failed(e.to_string()))?;
            hash.update(&chunk);
            tmp.write_all(&chunk).map_err(store)?;
        }
        let got = hex::encode(hash.finalize());
        if got != sha256 {
            return Err(ModuleError::Mismatch {
                sha256: sha256.to_string(),
                got,
            });
        }
        tmp.as_file().sync_all().map_err(store)?;
        tmp.persist(self.path(sha256)).map_err(|e| store(e.error))?;
        tracing::info!(sha256, "module fetched");
        Ok(())
    }
}
