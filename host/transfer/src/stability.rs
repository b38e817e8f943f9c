//! Stability signatures: an item (file or whole tree) is ready once its
//! names, kinds, sizes, mtimes, inodes and ctimes stayed the same for the
//! stability window. The inode and ctime make a new version renamed over
//! the old one (same size and mtime, e.g. `cp -p` then `mv`) a change.
//!
//! A [`Scan`] keeps every entry it saw, so what was sent can be told apart
//! later, one file at a time, from what arrived since (see `removal`).

use sha2::{Digest, Sha256};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What identifies one version of a file or directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i128,
    pub ino: u64,
    pub ctime_ns: i128,
}

impl Stamp {
    pub fn of(m: &std::fs::Metadata) -> Self {
        Self {
            size: if m.is_dir() { 0 } else { m.len() },
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ino: m.ino(),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }
    }

    /// The same version, allowing for a rename of the entry itself (which
    /// moves its ctime and nothing else).
    pub fn same_but_renamed(&self, other: &Stamp) -> bool {
        self.size == other.size && self.mtime_ns == other.mtime_ns && self.ino == other.ino
    }
}

/// The kind of an entry inside a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// Fifos, sockets, devices.
    Other,
}

impl Kind {
    fn of(ft: std::fs::FileType) -> Self {
        if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_symlink() {
            Kind::Symlink
        } else {
            Kind::Other
        }
    }

    fn letter(self) -> char {
        match self {
            Kind::File => 'f',
            Kind::Dir => 'd',
            Kind::Symlink => 'l',
            Kind::Other => 'o',
        }
    }
}

/// One entry of a tree: its path below the tree (raw bytes, so names
/// that are not UTF-8 count too), kind and stamp.
#[derive(Debug, Clone)]
pub struct Entry {
    pub rel: std::path::PathBuf,
    pub kind: Kind,
    pub stamp: Stamp,
}

/// A file or a whole tree as seen at one moment.
#[derive(Debug, Clone)]
pub enum Scan {
    /// Anything that is not a directory (symlinks as themselves).
    File(Stamp),
    /// Every entry below the directory, sorted by path; `complete` is false
    /// when a subdirectory could not be read.
    Dir { entries: Vec<Entry>, complete: bool },
}

impl Scan {
    /// Scans `path` (never following symlinks); `None` when nothing is there.
    pub fn of(path: &Path) -> Option<Scan> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        if !meta.is_dir() {
            return Some(Scan::File(Stamp::of(&meta)));
        }
        let mut entries = Vec::new();
        let mut complete = true;
        let mut stack = vec![std::path::PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let Ok(read) = std::fs::read_dir(path.join(&rel)) else {
                // Unreadable or vanished while walking: not stable.
                complete = false;
                continue;
            };
            for entry in read.flatten() {
                let Ok(m) = entry.metadata() else { continue };
                let child = rel.join(entry.file_name());
                let kind = Kind::of(m.file_type());
                if kind == Kind::Dir {
                    stack.push(child.clone());
                }
                entries.push(Entry {
                    rel: child,
                    kind,
                    stamp: Stamp::of(&m),
                });
            }
        }
        entries.sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
        Some(Scan::Dir { entries, complete })
    }

    /// The bytes seen: a file's size, or the sum of a tree's (every entry
    /// but directories, as `item_size` counts them).
    pub fn size(&self) -> u64 {
        match self {
            Scan::File(s) => s.size,
            Scan::Dir { entries, .. } => entries.iter().map(|e| e.stamp.size).sum(),
        }
    }

    /// The signature the stability check compares.
    pub fn signature(&self) -> String {
        match self {
            Scan::File(s) => format!("f:{}:{}:{}:{}", s.size, s.mtime_ns, s.ino, s.ctime_ns),
            Scan::Dir { entries, complete } => {
                let mut h = Sha256::new();
                if !complete {
                    // Never equal to a later scan: an unreadable tree is not stable.
                    h.update(format!("?{:x}", fastrand::u64(..)).as_bytes());
                }
                for e in entries {
                    h.update(e.rel.as_os_str().as_encoded_bytes());
                    let s = e.stamp;
                    h.update(
                        format!(
                            "\t{}\t{}\t{}\t{}\t{}\n",
                            e.kind.letter(),
                            s.size,
                            s.mtime_ns,
                            s.ino,
                            s.ctime_ns
                        )
                        .as_bytes(),
                    );
                }
                format!("d:{}", hex::encode(h.finalize()))
            }
        }
    }
}

/// The signature of the file or tree at `path`, or `None` when nothing is
/// there. Symlinks count as themselves (never followed).
pub fn signature(path: &Path) -> Option<String> {
    Scan::of(path).map(|s| s.signature())
}

/// Whether `now` is the signature `recorded` stands for. Journals written
/// before inodes and ctimes were part of a file's signature hold
/// `f:size:mtime`; those still match on size and mtime.
pub fn matches(recorded: &str, now: &str) -> bool {
    if recorded == now {
        return true;
    }
    let legacy: Vec<&str> = recorded.split(':').collect();
    legacy.len() == 3 && legacy[0] == "f" && now.split(':').take(3).eq(legacy.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::{matches, signature};

    #[test]
    fn changes_with_the_tree() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        std::fs::create_dir_all(a.join("sub")).unwrap();
        std::fs::write(a.join("sub/x"), "1").unwrap();
        let s1 = signature(&a).unwrap();
        assert_eq!(signature(&a).unwrap(), s1);
        std::fs::write(a.join("sub/x"), "12").unwrap();
        let s2 = signature(&a).unwrap();
        assert_ne!(s1, s2, "a nested file grew");
        std::fs::write(a.join("sub/y"), "").unwrap();
        assert_ne!(signature(&a).unwrap(), s2, "a nested file appeared");
        assert!(signature(&d.path().join("none")).is_none());
    }

    #[test]
    fn a_version_renamed_over_with_the_same_size_and_mtime_is_a_change() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("clip.mxf");
        std::fs::write(&f, "AAAA").unwrap();
        let before = signature(&f).unwrap();
        let new = d.path().join("new");
        std::fs::write(&new, "BBBB").unwrap();
        let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
        std::fs::File::options()
            .write(true)
            .open(&new)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        std::fs::rename(&new, &f).unwrap();
        assert_ne!(signature(&f).unwrap(), before);
    }

    #[test]
    fn old_file_signatures_match_on_size_and_mtime() {
        assert!(matches("f:4:17", "f:4:17:99:18"));
        assert!(!matches("f:4:17", "f:4:18:99:18"));
        assert!(!matches("f:4:17:1:2", "f:4:17:1:3"));
        assert!(matches("d:ab", "d:ab"));
    }
}
