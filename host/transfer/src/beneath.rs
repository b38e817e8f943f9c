//! Acting on a poller's files without leaving its root.
//!
//! A poll's paths are checked when the poll returns them, but the agent acts
//! on them later, and whoever can write into a watched directory can swap a
//! folder for a symlink in between. So every open, unlink, rename and rmdir
//! the agent makes on a source resolves its path beneath the root's open
//! directory (`openat2` with `RESOLVE_BENEATH`): a symlink that leads out of
//! the root, or an absolute one, fails with an error naming the path instead
//! of being followed. Symlinks that stay inside the root still resolve.
//! Kernels without `openat2` (before 5.6, or a seccomp filter that hides it)
//! get a walk that opens one component at a time and refuses every symlink.

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, ResolveFlags};
use rustix::io::Errno;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// A poller's root, opened once; paths are absolute under it or relative
/// to it.
#[derive(Debug)]
pub struct Beneath {
    root: PathBuf,
    fd: OwnedFd,
}

/// The directory an entry is in: the root's descriptor, or one opened
/// beneath it.
enum Parent<'a> {
    Root(BorrowedFd<'a>),
    Opened(OwnedFd),
}

impl AsFd for Parent<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Parent::Root(fd) => *fd,
            Parent::Opened(fd) => fd.as_fd(),
        }
    }
}

/// One entry of a directory listed beneath the root.
#[derive(Debug)]
pub struct Entry {
    pub name: OsString,
    pub kind: rustix::fs::FileType,
}

impl Beneath {
    /// Opens `root` (configuration: a root that is itself a symlink is
    /// followed, as people set it up).
    pub fn open(root: &Path) -> io::Result<Self> {
        let fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", root.display())))?;
        Ok(Self {
            root: root.to_path_buf(),
            fd,
        })
    }

    /// Opens a file to read it; a symlink inside the root is followed.
    pub fn file(&self, path: &Path) -> io::Result<File> {
        self.resolve(path, OFlags::RDONLY, Mode::empty())
            .map(File::from)
    }

    /// Opens (creating it if needed) an empty marker file; the name itself
    /// must not be a symlink.
    pub fn create(&self, path: &Path) -> io::Result<File> {
        self.resolve(
            path,
            OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o644),
        )
        .map(File::from)
    }

    /// The names and types in a directory (`.` and `..` left out).
    pub fn read_dir(&self, path: &Path) -> io::Result<Vec<Entry>> {
        let fd = self.resolve(path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        let mut out = Vec::new();
        for e in rustix::fs::Dir::read_from(&fd).map_err(|e| self.error(path, e))? {
            let e = e.map_err(|e| self.error(path, e))?;
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            out.push(Entry {
                name: std::ffi::OsStr::from_bytes(name).to_os_string(),
                kind: e.file_type(),
            });
        }
        Ok(out)
    }

    /// Unlinks a file (a symlink itself, never what it points to).
    pub fn unlink(&self, path: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        rustix::fs::unlinkat(&dir, &name, AtFlags::empty()).map_err(|e| self.error(path, e))
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, path: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        rustix::fs::unlinkat(&dir, &name, AtFlags::REMOVEDIR).map_err(|e| self.error(path, e))
    }

    /// Renames `from` to `to`; with `replace` false, never over something
    /// already at `to` (then `AlreadyExists`).
    pub fn rename(&self, from: &Path, to: &Path, replace: bool) -> io::Result<()> {
        let (from_dir, from_name) = self.parent(from)?;
        let flags = if replace {
            RenameFlags::empty()
        } else {
            RenameFlags::NOREPLACE
        };
        // Within one directory (a set-aside, a put-back) its one opening
        // serves both names.
        if from.parent() == to.parent()
            && let Some(Component::Normal(name)) = to.components().next_back()
        {
            return rustix::fs::renameat_with(&from_dir, &from_name, &from_dir, name, flags)
                .map_err(|e| self.error(from, e));
        }
        let (to_dir, to_name) = self.parent(to)?;
        rustix::fs::renameat_with(&from_dir, &from_name, &to_dir, &to_name, flags)
            .map_err(|e| self.error(from, e))
    }

    /// The directory holding `path`, opened beneath the root, and the last
    /// component's name. An entry of the root itself is named from the
    /// root's own descriptor: nothing to resolve, and a drain of thousands
    /// of frames saves an `openat2` and a `close` per rename or unlink.
    fn parent(&self, path: &Path) -> io::Result<(Parent<'_>, OsString)> {
        let rel = self.relative(path)?;
        let Some(Component::Normal(name)) = rel.components().next_back() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} names no entry inside {}",
                    path.display(),
                    self.root.display()
                ),
            ));
        };
        let name = name.to_os_string();
        let parent = rel.parent().unwrap_or(Path::new(""));
        if parent.as_os_str().is_empty() {
            return Ok((Parent::Root(self.fd.as_fd()), name));
        }
        let dir = self.resolve(parent, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
        Ok((Parent::Opened(dir), name))
    }

    /// `path` relative to the root; an absolute path must be under it.
    fn relative<'a>(&self, path: &'a Path) -> io::Result<&'a Path> {
        let rel = if path.is_absolute() {
            path.strip_prefix(&self.root).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not inside {}", path.display(), self.root.display()),
                )
            })?
        } else {
            path
        };
        if rel.components().any(|c| c == Component::ParentDir) {
            return Err(self.escape(path));
        }
        Ok(rel)
    }

    fn resolve(&self, path: &Path, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        let rel = self.relative(path)?;
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        match rustix::fs::openat2(
            &self.fd,
            rel,
            flags | OFlags::CLOEXEC,
            mode,
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        ) {
            // A seccomp filter may answer EPERM for a call it does not
            // know; the walk is stricter, so trying it costs nothing.
            Err(Errno::NOSYS | Errno::PERM) => {
                self.walk(rel, flags, mode).map_err(|e| self.error(path, e))
            }
            other => other.map_err(|e| self.error(path, e)),
        }
    }

    /// One component at a time, no symlink followed (for kernels without
    /// `openat2`).
    fn walk(&self, rel: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
        let parts: Vec<_> = rel
            .components()
            .filter(|c| *c != Component::CurDir)
            .collect();
        let mut dir: Option<OwnedFd> = None;
        for (i, part) in parts.iter().enumerate() {
            let Component::Normal(name) = part else {
                return Err(Errno::XDEV);
            };
            let at = dir.as_ref().map_or(self.fd.as_fd(), AsFd::as_fd);
            let last = i + 1 == parts.len();
            let f = if last {
                flags | OFlags::NOFOLLOW | OFlags::CLOEXEC
            } else {
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
            };
            dir = Some(rustix::fs::openat(at, *name, f, mode)?);
        }
        match dir {
            Some(fd) => Ok(fd),
            None => rustix::fs::openat(&self.fd, ".", flags | OFlags::CLOEXEC, mode),
        }
    }

    fn escape(&self, path: &Path) -> io::Error {
        Refused(format!(
            "{} leads outside {} through a symlink: not followed",
            path.display(),
            self.root.display()
        ))
        .into()
    }

    fn error(&self, path: &Path, e: Errno) -> io::Error {
        match e {
            Errno::XDEV => self.escape(path),
            Errno::LOOP => Refused(format!("{} is a symlink: not followed", path.display())).into(),
            e => io::Error::from(e),
        }
    }
}

/// A path refused because following it would leave the root.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

impl From<Refused> for io::Error {
    fn from(r: Refused) -> Self {
        io::Error::new(io::ErrorKind::PermissionDenied, r)
    }
}

/// Whether `e` is a path refused for leading out of the root.
pub fn is_refused(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Refused>())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Setup {
        _dirs: (tempfile::TempDir, tempfile::TempDir),
        root: PathBuf,
        outside: PathBuf,
    }

    /// A root holding `real/f`, `in-link -> real`, and `out -> <outside>`
    /// where the outside holds `secret`.
    fn setup() -> Setup {
        let (r, o) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let root = r.path().canonicalize().unwrap();
        let outside = o.path().canonicalize().unwrap();
        std::fs::write(outside.join("secret"), "s").unwrap();
        std::fs::create_dir(root.join("real")).unwrap();
        std::fs::write(root.join("real/f"), "f").unwrap();
        std::os::unix::fs::symlink("real", root.join("in-link")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("out")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("secret-link")).unwrap();
        Setup {
            _dirs: (r, o),
            root,
            outside,
        }
    }

    #[test]
    fn nothing_outside_the_root_is_read_created_renamed_or_removed() {
        let s = setup();
        let b = Beneath::open(&s.root).unwrap();
        let err = b.file(&s.root.join("out/secret")).unwrap_err();
        assert!(err.to_string().contains("leads outside"), "{err}");
        assert!(b.file(Path::new("secret-link")).is_err());
        assert!(b.read_dir(Path::new("out")).is_err());
        assert!(b.create(Path::new("out/new")).is_err());
        assert!(b.create(Path::new("secret-link")).is_err());
        assert!(b.unlink(Path::new("out/secret")).is_err());
        assert!(
            b.rename(Path::new("out/secret"), Path::new("took"), false)
                .is_err()
        );
        assert!(
            b.rename(Path::new("real/f"), Path::new("out/f"), false)
                .is_err()
        );
        // An entry of the root itself (named from the root's descriptor)
        // cannot be moved out through a symlink either.
        assert!(
            b.rename(Path::new("secret-link"), Path::new("out/moved"), false)
                .is_err()
        );
        assert!(b.file(Path::new("real/../out/secret")).is_err());
        assert!(b.file(Path::new("/etc/passwd")).is_err());
        assert_eq!(
            std::fs::read_to_string(s.outside.join("secret")).unwrap(),
            "s"
        );
        assert!(!s.outside.join("new").exists() && !s.outside.join("f").exists());
        assert!(!s.root.join("took").exists());
    }

    #[test]
    fn inside_the_root_everything_works_symlinks_included() {
        let s = setup();
        let b = Beneath::open(&s.root).unwrap();
        assert!(b.file(Path::new("in-link/f")).is_ok());
        let names: Vec<_> = b
            .read_dir(Path::new(""))
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
        b.create(Path::new("real/marker")).unwrap();
        b.rename(Path::new("real/f"), Path::new("real/g"), false)
            .unwrap();
        let taken = b
            .rename(Path::new("real/g"), Path::new("real/marker"), false)
            .unwrap_err();
        assert_eq!(taken.kind(), io::ErrorKind::AlreadyExists);
        b.unlink(&s.root.join("real/g")).unwrap();
        b.unlink(Path::new("real/marker")).unwrap();
        b.rmdir(Path::new("real")).unwrap();
        assert!(!s.root.join("real").exists());
        // Entries of the root itself, by relative and by absolute path.
        std::fs::write(s.root.join("top"), "t").unwrap();
        b.rename(Path::new("top"), &s.root.join("top2"), false)
            .unwrap();
        b.unlink(&s.root.join("top2")).unwrap();
        assert!(!s.root.join("top").exists() && !s.root.join("top2").exists());
        // The symlink goes, never what it points to.
        b.unlink(Path::new("secret-link")).unwrap();
        assert!(s.outside.join("secret").exists());
    }

    #[test]
    fn without_openat2_the_walk_refuses_every_symlink() {
        let s = setup();
        let b = Beneath::open(&s.root).unwrap();
        assert!(
            b.walk(Path::new("real/f"), OFlags::RDONLY, Mode::empty())
                .is_ok()
        );
        assert!(
            b.walk(Path::new("out/secret"), OFlags::RDONLY, Mode::empty())
                .is_err()
        );
        assert!(
            b.walk(Path::new("in-link/f"), OFlags::RDONLY, Mode::empty())
                .is_err()
        );
        assert!(
            b.walk(Path::new("secret-link"), OFlags::RDONLY, Mode::empty())
                .is_err()
        );
    }
}
