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
    #[error("compile cache {0} {1}; refusing to load compiled code from it")]
    Unsafe(PathBuf, &'static str),
}

impl CompileCache {
    /// Opens (creating, mode 0700) the cache directory. Compiled code is
    /// run as it is, so only a directory this user owns, that nobody else
    /// can write and that is not a symlink (which another user could have
    /// pointed at a directory of theirs) is used.
    pub fn open(dir: &Path, engine: &Engine) -> Result<Self, CacheError> {
        use std::os::unix::fs::DirBuilderExt;
        let io = |source| CacheError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        let meta = std::fs::symlink_metadata(dir).map_err(io)?;
        if let Some(why) = unsafe_to_trust(&meta) {
            return Err(CacheError::Unsafe(dir.to_path_buf(), why));
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
        let trusted = match std::fs::symlink_metadata(&path) {
            Ok(meta) => match unsafe_to_trust(&meta) {
                None => true,
                Some(why) => {
                    tracing::warn!(cache = %path.display(), "cached component {why}: not loaded, compiling again");
                    false
                }
            },
            Err(_) => false,
        };
        if trusted {
            // SAFETY: the file is this user's own, in a directory only this
            // user can write (both checked), written by `store` below under a
            // name that includes the sha256 of the source and the engine's
            // compatibility hash.
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

impl CompileCache {
    /// Removes the artifact of `sha256` (a component nobody runs, e.g. an
    /// upload that was refused). Returns the bytes freed.
    pub fn forget(&self, sha256: &str) -> u64 {
        let path = self.path_for(sha256);
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        match std::fs::remove_file(&path) {
            Ok(()) => size,
            Err(_) => 0,
        }
    }

    /// Removes every artifact but those of `keep` (sha256s), and those an
    /// older wasmtime or other engine settings wrote: a Python or
    /// JavaScript poller's artifact is ~35 MB, so versions no configuration
    /// runs would otherwise fill the disk. Returns (files, bytes) removed.
    pub fn retain(&self, keep: &std::collections::HashSet<String>) -> (usize, u64) {
        let Ok(read) = std::fs::read_dir(&self.dir) else {
            return (0, 0);
        };
        let (mut files, mut bytes) = (0, 0);
        for entry in read.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".cwasm") else {
                continue;
            };
            let kept = stem
                .split_once('-')
                .is_some_and(|(sha, key)| key == self.engine_key && keep.contains(sha));
            if kept {
                continue;
            }
            let size = entry.metadata().map_or(0, |m| m.len());
            if std::fs::remove_file(entry.path()).is_ok() {
                files += 1;
                bytes += size;
            }
        }
        if files > 0 {
            tracing::info!(
                files,
                bytes,
                "compiled components no configuration uses were removed"
            );
        }
        (files, bytes)
    }
}

/// Why a cache directory or artifact (as `lstat` saw it) must not be
/// trusted: a symlink, another user's, or writable by others.
fn unsafe_to_trust(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::MetadataExt;
    if meta.file_type().is_symlink() {
        Some("is a symlink")
    } else if meta.uid() != rustix::process::geteuid().as_raw() {
        Some("belongs to another user")
    } else if meta.permissions().mode() & 0o022 != 0 {
        Some("is writable by other users")
    } else {
        None
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn retain_keeps_only_what_is_in_use_for_this_engine() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("c");
        let engine = Engine::default();
        let cache = CompileCache::open(&cache_dir, &engine).unwrap();
        let key = cache.engine_key.clone();
        for name in [
            format!("aaa-{key}.cwasm"),
            format!("bbb-{key}.cwasm"),
            "aaa-0123456789abcdef.cwasm".to_string(),
            "notes.txt".to_string(),
        ] {
            std::fs::write(cache_dir.join(name), b"12345").unwrap();
        }
        let keep = std::collections::HashSet::from(["aaa".to_string()]);
        assert_eq!(cache.retain(&keep), (2, 10));
        let mut left: Vec<String> = std::fs::read_dir(&cache_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [format!("aaa-{key}.cwasm"), "notes.txt".to_string()]);
        assert_eq!(cache.forget("aaa"), 5);
        assert_eq!(cache.forget("aaa"), 0);
    }

    /// The smallest component there is.
    const EMPTY: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn only_this_users_own_private_artifacts_are_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("a/b");
        let engine = Engine::default();
        let cache = CompileCache::open(&cache_dir, &engine).unwrap();
        let mode = std::fs::metadata(&cache_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let stats = CacheStats::default();
        let sha = sha256_hex(EMPTY);
        let load = || cache.load(&engine, EMPTY, &sha, &stats).unwrap();
        load();
        load();
        assert_eq!(stats.loaded_from_cache.load(Ordering::Relaxed), 1);
        // Writable by others: compiled again (and stored privately again).
        let artifact = cache.path_for(&sha);
        std::fs::set_permissions(&artifact, std::fs::Permissions::from_mode(0o666)).unwrap();
        load();
        assert_eq!(stats.compiled.load(Ordering::Relaxed), 2);
        load();
        assert_eq!(stats.loaded_from_cache.load(Ordering::Relaxed), 2);
        // A symlink to an artifact elsewhere: never followed.
        let elsewhere = dir.path().join("elsewhere.cwasm");
        std::fs::rename(&artifact, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &artifact).unwrap();
        load();
        assert_eq!(stats.compiled.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_cache_directory_that_is_a_symlink_or_shared_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let engine = Engine::default();
        let err = CompileCache::open(&link, &engine)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("is a symlink"), "{err}");
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = CompileCache::open(&real, &engine)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("writable by other users"), "{err}");
    }
}
