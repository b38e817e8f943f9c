//! What a poll sees: the root (through the host, or natively in tests), the
//! parameters and the host's clock, plus the helpers every poller needs.

use crate::{Entry, EntryKind, Params};

/// Log levels for [`Context::log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Where listings come from.
enum Backend {
    /// The agent's `fs` imports (inside the sandbox).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    Host,
    /// A real directory read with `std::fs`, for native unit tests.
    #[cfg(not(target_arch = "wasm32"))]
    Native(std::path::PathBuf),
}

/// Everything one poll can use. Paths are relative to the root, `/`-separated;
/// `""` is the root itself.
///
/// ```
/// use dispatch_poller_sdk::{Context, Params};
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::create_dir(dir.path().join("a")).unwrap();
/// std::fs::write(dir.path().join("a/ADI.XML"), b"x").unwrap();
/// std::fs::write(dir.path().join("a/.part"), b"x").unwrap();
/// let ctx = Context::native(dir.path(), Params::default(), 0).unwrap();
/// let files = ctx.files_of("a").unwrap();
/// assert_eq!(files.len(), 1); // `.part` is hidden
/// assert!(ctx.has_all(&files, &["ADI.XML".to_string()]));
/// ```
pub struct Context {
    backend: Backend,
    params: Params,
    now_ms: u64,
    include_hidden: bool,
}

impl Context {
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn host(params: Params, now_ms: u64) -> Result<Self, String> {
        Self::with_backend(Backend::Host, params, now_ms)
    }

    /// A context reading `root` natively with `std::fs`: for unit-testing a
    /// poller without building wasm (see also [`crate::testing`]). Fails when
    /// `include_hidden` is neither `true` nor `false`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn native(root: &std::path::Path, params: Params, now_ms: u64) -> Result<Self, String> {
        Self::with_backend(Backend::Native(root.to_path_buf()), params, now_ms)
    }

    fn with_backend(backend: Backend, params: Params, now_ms: u64) -> Result<Self, String> {
        let include_hidden = params.flag(crate::INCLUDE_HIDDEN)?;
        Ok(Self {
            backend,
            params,
            now_ms,
            include_hidden,
        })
    }

    /// The poll's parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The host's clock, milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Whether hidden names (starting with `.`) are considered.
    pub fn include_hidden(&self) -> bool {
        self.include_hidden
    }

    /// The `markers` parameter as a list of names.
    pub fn markers(&self) -> Result<Vec<String>, String> {
        self.params.list(crate::MARKERS)
    }

    /// Every entry directly inside `dir`, sorted by name, hidden ones included.
    pub fn list(&self, dir: &str) -> Result<Vec<Entry>, String> {
        match &self.backend {
            Backend::Host => crate::glue::host_list(dir),
            #[cfg(not(target_arch = "wasm32"))]
            Backend::Native(root) => native::list(root, dir),
        }
    }

    /// Every entry directly inside `dir`, read in pages: unsorted, hidden
    /// ones included, memory bounded whatever the directory's size. Use it
    /// where a folder can hold hundreds of thousands of files.
    ///
    /// ```
    /// use dispatch_poller_sdk::{Context, Params};
    /// let dir = tempfile::tempdir().unwrap();
    /// for i in 0..3000 {
    ///     std::fs::write(dir.path().join(format!("f{i}")), b"").unwrap();
    /// }
    /// let ctx = Context::native(dir.path(), Params::default(), 0).unwrap();
    /// let n = ctx.entries("").unwrap().filter(|e| e.is_ok()).count();
    /// assert_eq!(n, 3000);
    /// ```
    pub fn entries(&self, dir: &str) -> Result<crate::Entries, String> {
        match &self.backend {
            Backend::Host => crate::Entries::host(dir),
            #[cfg(not(target_arch = "wasm32"))]
            Backend::Native(root) => native::entries(root, dir),
        }
    }

    /// The content of the regular file at `path` (a manifest, a sidecar),
    /// at most `max_bytes` and never over [`crate::READ_FILE_MAX`]: a larger
    /// file, a directory, a path out of the root is an error naming why.
    /// The host also caps what one poll reads in all (8 MiB).
    pub fn read_file(&self, path: &str, max_bytes: u32) -> Result<Vec<u8>, String> {
        match &self.backend {
            Backend::Host => crate::glue::host_read_file(path, max_bytes),
            #[cfg(not(target_arch = "wasm32"))]
            Backend::Native(root) => native::read_file(root, path, max_bytes),
        }
    }

    /// The entry at `path`, or `None` when nothing is there.
    pub fn stat(&self, path: &str) -> Result<Option<Entry>, String> {
        match &self.backend {
            Backend::Host => crate::glue::host_stat(path),
            #[cfg(not(target_arch = "wasm32"))]
            Backend::Native(root) => native::stat(root, path),
        }
    }

    /// Writes a line to the agent's log.
    pub fn log(&self, level: Level, message: &str) {
        match &self.backend {
            Backend::Host => crate::glue::host_log(level, message),
            #[cfg(not(target_arch = "wasm32"))]
            Backend::Native(_) => eprintln!("[{level:?}] {message}"),
        }
    }

    /// Says why `item` is not ready yet (a marker missing, a file in the
    /// way): the agent reports it on the poller's page. It is a debug log
    /// line `not ready: <item>: <reason>`, which pollers in other languages
    /// can write as they are.
    pub fn not_ready(&self, item: &str, reason: &str) {
        self.log(Level::Debug, &format!("not ready: {item}: {reason}"));
    }

    /// The regular files directly inside `dir` (not recursive), honouring the
    /// hidden-name rule.
    pub fn files_of(&self, dir: &str) -> Result<Vec<Entry>, String> {
        self.entries_of(dir, EntryKind::File)
    }

    /// The directories directly inside `dir`, honouring the hidden-name rule.
    pub fn subdirs_of(&self, dir: &str) -> Result<Vec<Entry>, String> {
        self.entries_of(dir, EntryKind::Dir)
    }

    fn entries_of(&self, dir: &str, kind: EntryKind) -> Result<Vec<Entry>, String> {
        Ok(self
            .list(dir)?
            .into_iter()
            .filter(|e| e.kind == kind && (self.include_hidden || !e.is_hidden()))
            .collect())
    }

    /// The names of `names` that `entries` lacks (exact, case-sensitive), in
    /// order: what to say in [`Context::not_ready`].
    pub fn missing(&self, entries: &[Entry], names: &[String]) -> Vec<String> {
        names
            .iter()
            .filter(|n| !entries.iter().any(|e| &e.name == *n))
            .cloned()
            .collect()
    }

    /// Whether `entries` contains every name of `names` (exact,
    /// case-sensitive).
    pub fn has_all(&self, entries: &[Entry], names: &[String]) -> bool {
        names.iter().all(|n| entries.iter().any(|e| &e.name == n))
    }
}

/// Joins a relative directory and a name with `/` (`""` is the root).
///
/// ```
/// assert_eq!(dispatch_poller_sdk::join("", "a"), "a");
/// assert_eq!(dispatch_poller_sdk::join("p/a", "ADI.XML"), "p/a/ADI.XML");
/// ```
pub fn join(dir: &str, name: &str) -> String {
    let dir = dir.trim_end_matches('/');
    if dir.is_empty() || dir == "." {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use native::entry as native_entry;

#[cfg(not(target_arch = "wasm32"))]
mod native {
    //! The same view the host gives, read with `std::fs`.
    use crate::{Entry, EntryKind};
    use std::path::{Component, Path, PathBuf};
    use std::time::UNIX_EPOCH;

    fn resolve(root: &Path, rel: &str) -> Result<PathBuf, String> {
        let rel_path = Path::new(rel);
        if rel_path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(format!("path `{rel}` leaves the root"));
        }
        Ok(root.join(rel_path))
    }

    pub(crate) fn entry(name: String, meta: &std::fs::Metadata) -> Entry {
        let ft = meta.file_type();
        let kind = if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_file() {
            EntryKind::File
        } else if ft.is_dir() {
            EntryKind::Dir
        } else {
            EntryKind::Other
        };
        let mtime_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Entry {
            name,
            kind,
            size: if kind == EntryKind::Dir {
                0
            } else {
                meta.len()
            },
            mtime_ms,
        }
    }

    pub(super) fn list(root: &Path, dir: &str) -> Result<Vec<Entry>, String> {
        let path = resolve(root, dir)?;
        let read = std::fs::read_dir(&path).map_err(|e| format!("cannot list `{dir}`: {e}"))?;
        let mut out = Vec::new();
        for item in read {
            let item = item.map_err(|e| format!("cannot list `{dir}`: {e}"))?;
            let meta = item
                .metadata()
                .map_err(|e| format!("cannot stat in `{dir}`: {e}"))?;
            out.push(entry(
                item.file_name().to_string_lossy().into_owned(),
                &meta,
            ));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub(super) fn entries(root: &Path, dir: &str) -> Result<crate::Entries, String> {
        let path = resolve(root, dir)?;
        let read = std::fs::read_dir(&path).map_err(|e| format!("cannot list `{dir}`: {e}"))?;
        Ok(crate::Entries::native(dir, read))
    }

    /// As the host does, without its kernel-side confinement: native tests
    /// run on the author's own directory.
    pub(super) fn read_file(root: &Path, rel: &str, max_bytes: u32) -> Result<Vec<u8>, String> {
        let path = resolve(root, rel)?;
        let meta = std::fs::metadata(&path).map_err(|e| format!("cannot read `{rel}`: {e}"))?;
        if meta.is_dir() {
            return Err(format!("cannot read `{rel}`: it is a directory"));
        }
        if !meta.is_file() {
            return Err(format!("cannot read `{rel}`: it is not a regular file"));
        }
        let bound = u64::from(max_bytes).min(crate::READ_FILE_MAX);
        if meta.len() > bound {
            return Err(format!(
                "cannot read `{rel}`: it is {} bytes, over the bound of {bound} bytes",
                meta.len()
            ));
        }
        std::fs::read(&path).map_err(|e| format!("cannot read `{rel}`: {e}"))
    }

    pub(super) fn stat(root: &Path, rel: &str) -> Result<Option<Entry>, String> {
        let path = resolve(root, rel)?;
        match std::fs::metadata(&path) {
            Ok(meta) => {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Ok(Some(entry(name, &meta)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot stat `{rel}`: {e}")),
        }
    }
}
