//! Compiled components cached on disk, keyed by the module's sha256 and the
//! engine's configuration, so a restart loads in a millisecond instead of
//! compiling again (Python and JavaScript pollers take seconds).

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How many components were compiled and how many came from the cache.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub compiled: AtomicU64,
    pub loaded_from_cache: AtomicU64,
}

/// A private directory of serialized components.
pub struct CompileCache {
    dir: PathBuf,
    /// Changes with wasmtime's version and the engine's settings, which a
    /// serialized artifact is tied to.
    engine_key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot use the compile cache {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("compile cache {0} is writable by other users; refusing to load compiled code from it")]
    Unsafe(PathBuf),
}

impl CompileCache {
    /// Opens (creating, mode 0700) the cache directory.
    pub fn open(dir: &Path, engine: &Engine) -> Result<Self, CacheError> {
        let io = |source| CacheError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let meta = std::fs::metadata(dir).map_err(io)?;
        if meta.permissions().mode() & 0o022 != 0 {
            // Only deserialize what this agent wrote: nobody else may write here.
            return Err(CacheError::Unsafe(dir.to_path_buf()));
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    fn path_for(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// The component for `bytes`: deserialized from the cache when this agent
    /// compiled it before, else compiled and stored.
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
        sha256: &str,
        stats: &CacheStats,
    ) -> wasmtime::Result<Component> {
        let path = self.path_for(sha256);
        if path.exists() {
            // SAFETY: the file was written by `store` below into a directory
            // only this user can write, under a name that includes the sha256
            // of the source and the engine's compatibility hash.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => {
                    stats.loaded_from_cache.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%sha256, cache = %path.display(), "component loaded from the compile cache");
                    return Ok(c);
                }
                Err(e) => {
                    tracing::warn!(cache = %path.display(), "unusable cached component, compiling again: {e}");
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        stats.compiled.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%sha256, "component compiled");
        if let Err(e) = self.store(&component, &path) {
            tracing::warn!(cache = %path.display(), "cannot write the compile cache: {e}");
        }
        Ok(component)
    }

    fn store(&self, component: &Component, path: &Path) -> anyhow::Result<()> {
        let data = component.serialize()?;
        // A unique 0600 file in the same directory, renamed into place: a
        // reader never sees half an artifact.
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(&data)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path)?;
        Ok(())
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
