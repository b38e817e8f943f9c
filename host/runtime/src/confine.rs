//! Confining a plugin's paths to its root.
//!
//! Every path a plugin hands the host (to list, to stat, in an action) is
//! relative to the root with `/` separators. It is refused when it is
//! absolute, has a `..` component, or resolves through a symlink to a place
//! outside the root.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Component, Path, PathBuf};

/// Why a path was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("path `{0}` is absolute; paths must be relative to the root")]
    Absolute(String),
    #[error("path `{0}` contains `..`; paths must stay inside the root")]
    ParentDir(String),
    #[error("path `{0}` contains a NUL byte")]
    Nul(String),
    #[error("path `{0}` leads outside the root through a symlink")]
    Escapes(String),
    #[error("path `{path}`: {reason}")]
    Io { path: String, reason: String },
}

/// Why a root cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("root {0} does not exist")]
    Missing(PathBuf),
    #[error("root {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("root {path} cannot be read: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
}

/// Entries remembered per poll (see [`Root::note_entry`]).
pub const KNOWN_ENTRIES_MAX: usize = 100_000;

/// A poller's root directory, canonicalized once.
#[derive(Debug)]
pub struct Root {
    canonical: PathBuf,
    /// Relative paths already seen to be real directories (not symlinks) by a
    /// listing of their parent: they resolve without another `realpath`, which
    /// keeps large scans cheap.
    known_dirs: HashSet<String>,
    /// Other entries a listing in this poll saw as not symlinks, with what
    /// its `lstat` saw: the poll's actions on them resolve without another
    /// `lstat`, and the caller takes their stamps from it (a poll of a
    /// large directory returns most of what it listed).
    known_entries: HashMap<String, std::fs::Metadata>,
    /// The root opened as a directory, for reads resolved beneath it; opened
    /// at the first read, then kept for the poll.
    dir_fd: std::sync::OnceLock<std::os::fd::OwnedFd>,
}

impl Root {
    /// Opens `path` as a root: it must exist and be a directory.
    pub fn open(path: &Path) -> Result<Self, RootError> {
        let canonical = match path.canonicalize() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RootError::Missing(path.to_path_buf()));
            }
            Err(source) => {
                return Err(RootError::Unreadable {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        if !canonical.is_dir() {
            return Err(RootError::NotADirectory(path.to_path_buf()));
        }
        let mut known_dirs = HashSet::new();
        known_dirs.insert(String::new());
        Ok(Self {
            canonical,
            known_dirs,
            known_entries: HashMap::new(),
            dir_fd: std::sync::OnceLock::new(),
        })
    }

    /// The root's canonical absolute path.
    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// The root as an open directory (see `dir_fd`).
    pub fn dir_fd(&self) -> io::Result<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        if let Some(fd) = self.dir_fd.get() {
            return Ok(fd.as_fd());
        }
        let fd = rustix::fs::open(
            &self.canonical,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        Ok(self.dir_fd.get_or_init(|| fd).as_fd())
    }

    /// Remembers that `rel` is a real directory (seen by listing its parent).
    pub fn note_dir(&mut self, rel: String) {
        self.known_dirs.insert(rel);
    }

    /// Remembers that `rel` is not a symlink nor a directory (seen by
    /// listing its parent), up to [`KNOWN_ENTRIES_MAX`]: past that a
    /// listing of a huge folder would cost the agent more memory than the
    /// `lstat`s it saves.
    pub fn note_entry(&mut self, rel: String, meta: std::fs::Metadata) {
        if self.known_entries.len() < KNOWN_ENTRIES_MAX {
            self.known_entries.insert(rel, meta);
        }
    }

    /// Takes what a listing in this poll saw of `rel` (normal form), if it
    /// listed it as neither a directory nor a symlink; `rel` resolves the
    /// slow way afterwards.
    pub fn take_listed(&mut self, rel: &str) -> Option<(String, std::fs::Metadata)> {
        self.known_entries.remove_entry(rel)
    }

    /// Resolves `rel` to an absolute path inside the root. A path that does
    /// not exist resolves (there is nothing to escape through); one that
    /// exists must canonicalize to somewhere inside the root.
    pub fn resolve(&self, rel: &str) -> Result<PathBuf, PathError> {
        let normal = normalize(rel)?;
        let joined = self.canonical.join(&normal);
        if self.known_dirs.contains(&normal) || self.known_entries.contains_key(&normal) {
            return Ok(joined);
        }
        // Inside a known real directory only the last component can be a
        // symlink: one lstat tells.
        let parent = normal.rsplit_once('/').map_or("", |(p, _)| p);
        if self.known_dirs.contains(parent) {
            match joined.symlink_metadata() {
                Ok(m) if !m.file_type().is_symlink() => return Ok(joined),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(joined),
                _ => {}
            }
        }
        match joined.canonicalize() {
            Ok(real) if real.starts_with(&self.canonical) => Ok(joined),
            Ok(_) => Err(PathError::Escapes(rel.to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.absent(&normal, rel, joined),
            Err(e) => Err(PathError::Io {
                path: rel.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// A path that does not resolve: harmless when a component is truly
    /// missing, but a dangling symlink on the way is an escape (it may be
    /// pointed anywhere, or its target created, before the agent acts).
    fn absent(&self, normal: &str, rel: &str, joined: PathBuf) -> Result<PathBuf, PathError> {
        let mut at = self.canonical.clone();
        for part in normal.split('/') {
            at.push(part);
            match at.symlink_metadata() {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(joined),
                Err(e) => {
                    return Err(PathError::Io {
                        path: rel.to_string(),
                        reason: e.to_string(),
                    });
                }
                Ok(m) if m.file_type().is_symlink() => match at.canonicalize() {
                    Ok(real) if real.starts_with(&self.canonical) => at = real,
                    _ => return Err(PathError::Escapes(rel.to_string())),
                },
                Ok(_) => {}
            }
        }
        Ok(joined)
    }
}

/// Checks `rel` lexically and returns it in normal form: components joined
/// by `/`, without `.` or empty components (`""` is the root).
pub fn normalize(rel: &str) -> Result<String, PathError> {
    if rel.contains('\0') {
        return Err(PathError::Nul(rel.to_string()));
    }
    if rel.starts_with('/') {
        return Err(PathError::Absolute(rel.to_string()));
    }
    let mut parts = Vec::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy()),
            Component::CurDir => {}
            Component::ParentDir => return Err(PathError::ParentDir(rel.to_string())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(PathError::Absolute(rel.to_string()));
            }
        }
    }
    Ok(parts.join("/"))
}

/// Joins a relative directory in normal form and a name.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_rules() {
        assert_eq!(normalize("a/./b/").unwrap(), "a/b");
        assert_eq!(normalize("").unwrap(), "");
        assert_eq!(normalize(".").unwrap(), "");
        assert!(matches!(normalize("/etc"), Err(PathError::Absolute(_))));
        assert!(matches!(normalize("a/../b"), Err(PathError::ParentDir(_))));
        assert!(matches!(normalize(".."), Err(PathError::ParentDir(_))));
        assert!(matches!(normalize("a\0b"), Err(PathError::Nul(_))));
    }

    #[test]
    fn symlinks_out_of_the_root_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let root_dir = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::fs::create_dir(root_dir.path().join("in")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root_dir.path().join("out")).unwrap();
        std::os::unix::fs::symlink("in", root_dir.path().join("inner-link")).unwrap();
        let root = Root::open(root_dir.path()).unwrap();
        assert!(matches!(root.resolve("out"), Err(PathError::Escapes(_))));
        assert!(matches!(
            root.resolve("out/secret"),
            Err(PathError::Escapes(_))
        ));
        assert!(root.resolve("inner-link").is_ok());
        assert!(root.resolve("in").is_ok());
        assert!(root.resolve("not-there").is_ok());
        assert!(root.resolve("in/not-there/either").is_ok());
        // Dangling: it can be pointed anywhere before the agent acts.
        std::os::unix::fs::symlink("/nonexistent/x", root_dir.path().join("dangling")).unwrap();
        std::os::unix::fs::symlink("in/later", root_dir.path().join("inside-dangling")).unwrap();
        assert!(matches!(
            root.resolve("dangling"),
            Err(PathError::Escapes(_))
        ));
        assert!(matches!(
            root.resolve("dangling/deeper"),
            Err(PathError::Escapes(_))
        ));
        assert!(matches!(
            root.resolve("inside-dangling"),
            Err(PathError::Escapes(_))
        ));
    }

    #[test]
    fn bad_roots_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = Root::open(&missing).unwrap_err().to_string();
        assert!(
            err.contains("does not exist") && err.contains("nope"),
            "{err}"
        );
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let err = Root::open(&file).unwrap_err().to_string();
        assert!(err.contains("is not a directory"), "{err}");
    }
}
