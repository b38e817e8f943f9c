//! A recursive inotify watch of directory trees, read in batches by a
//! thread of its own.
//!
//! Written over the raw API instead of `notify` for what a drain of many
//! small files costs: only directories are watched (found by the entry
//! types `getdents` gives, no `lstat` of every file at the start); reads
//! are not subscribed to (every copy of a source opened it: an event, and
//! a wake-up of the reader, per file); and after each batch the reader
//! rests a moment, so the agent's own renames and unlinks pile up in the
//! kernel's queue instead of waking it one by one.

use rustix::event::{PollFd, PollFlags, poll};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The reader's rest after a batch: events of that time come in one batch.
/// Polls are merged over a longer time anyway (`MIN_POLL_INTERVAL`).
const REST: Duration = Duration::from_millis(20);

/// What a directory watch reports: changes to its entries and to itself.
/// No reads (`IN_OPEN`, `IN_ACCESS`, `IN_CLOSE_NOWRITE`), nothing about an
/// entry once it is unlinked, never through a symlink.
const MASK: WatchFlags = WatchFlags::CREATE
    .union(WatchFlags::DELETE)
    .union(WatchFlags::MODIFY)
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::ATTRIB)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::MOVE_SELF)
    .union(WatchFlags::ONLYDIR)
    .union(WatchFlags::DONT_FOLLOW)
    .union(WatchFlags::EXCL_UNLINK);

/// What happened to a path, as far as telling news goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Created, deleted, written, or its attributes changed.
    Changed,
    /// Moved away from this name (a rename's first half).
    MovedFrom,
    /// Arrived at this name by a rename.
    MovedTo,
    /// The watched directory itself was deleted or moved away.
    SelfGone,
    /// The kernel's queue overflowed: changes were lost (no path).
    Overflow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Change {
    pub kind: Kind,
    pub path: PathBuf,
}

/// The watched directories of every tree.
struct Dirs {
    fd: OwnedFd,
    index: Mutex<Index>,
    /// The tops of the trees watched (walked again after an overflow).
    tops: Mutex<Vec<PathBuf>>,
}

/// Watches trees until dropped.
pub(super) struct Trees {
    dirs: Arc<Dirs>,
    /// Written to on drop: the reader thread ends.
    stop: OwnedFd,
}

impl Trees {
    /// Starts the reader thread; `on_batch` gets each batch of changes,
    /// after the directories they created are watched too (so a poll they
    /// ask for misses nothing written in those).
    pub fn start(on_batch: impl Fn(&[Change]) + Send + 'static) -> std::io::Result<Self> {
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        let stop = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        let dirs = Arc::new(Dirs {
            fd,
            index: Mutex::default(),
            tops: Mutex::default(),
        });
        let reader = Reader {
            dirs: dirs.clone(),
            stop: stop.try_clone()?,
            moving: HashMap::new(),
        };
        std::thread::Builder::new()
            .name("file-events".into())
            .spawn(move || reader.run(on_batch))?;
        Ok(Self { dirs, stop })
    }

    /// Watches `top` and every directory below it (symlinks not followed);
    /// an error is `top`'s own (one below it is logged and skipped).
    pub fn watch(&self, top: &Path) -> std::io::Result<()> {
        self.dirs.watch_tree(top)?;
        let mut tops = super::super::lock(&self.dirs.tops);
        if !tops.iter().any(|t| t == top) {
            tops.push(top.to_path_buf());
        }
        Ok(())
    }

    /// Stops watching `top` and what is below it (however many times it
    /// was watched: the caller counts its users).
    pub fn unwatch(&self, top: &Path) {
        let mut tops = super::super::lock(&self.dirs.tops);
        if let Some(i) = tops.iter().position(|t| t == top) {
            tops.remove(i);
        }
        // A tree still watched from another top keeps its watches.
        let kept = |p: &Path| tops.iter().any(|t| p.starts_with(t));
        self.dirs.unwatch_under(top, kept);
    }
}

impl Drop for Trees {
    fn drop(&mut self) {
        let _ = rustix::io::write(&self.stop, &1u64.to_ne_bytes());
    }
}

impl Dirs {
    fn watch_tree(&self, top: &Path) -> std::io::Result<()> {
        self.watch_dir(top)?;
        let mut stack = vec![top.to_path_buf()];
        let mut unwatched: Option<(PathBuf, std::io::Error, usize)> = None;
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                // The type from the listing: no `lstat` unless the file
                // system leaves it unknown.
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let path = e.path();
                match self.watch_dir(&path) {
                    Ok(()) => stack.push(path),
                    // Gone meanwhile: nothing to watch.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => match &mut unwatched {
                        Some((_, _, n)) => *n += 1,
                        None => unwatched = Some((path, e, 1)),
                    },
                }
            }
        }
        // Once per walk, not per folder: a limit reached fails them all.
        if let Some((first, e, n)) = unwatched {
            tracing::warn!(
                "cannot watch {n} folder(s) below {} ({}: {e}); changes there are seen by the rescan",
                top.display(),
                first.display()
            );
        }
        Ok(())
    }

    fn watch_dir(&self, dir: &Path) -> std::io::Result<()> {
        let wd = inotify::add_watch(&self.fd, dir, MASK).map_err(|e| {
            if e == Errno::NOSPC {
                std::io::Error::other(
                    "the system's limit of watched directories is reached (fs.inotify.max_user_watches)",
                )
            } else {
                e.into()
            }
        })?;
        super::super::lock(&self.index).insert(wd, dir.to_path_buf());
        Ok(())
    }

    /// A directory moved from `from` to `to` within the trees: the watches
    /// below it go with it.
    fn moved(&self, from: &Path, to: &Path) {
        super::super::lock(&self.index).moved(from, to);
    }

    /// Removes the watches of `dir` and below it, but those `kept`.
    fn unwatch_under(&self, dir: &Path, kept: impl Fn(&Path) -> bool) {
        let mut index = super::super::lock(&self.index);
        for (p, wd) in index.under(dir) {
            if !kept(&p) {
                let _ = inotify::remove_watch(&self.fd, wd);
                index.remove(wd);
            }
        }
    }
}

/// Watched directories both ways: by descriptor for the events, by path
/// (ordered, so a directory and everything below it are one range) for a
/// move, so each of a drain's set-aside directories costs what is below
/// it, not a pass over every watch.
#[derive(Default)]
struct Index {
    by_wd: HashMap<i32, PathBuf>,
    by_path: BTreeMap<PathBuf, i32>,
}

impl Index {
    fn insert(&mut self, wd: i32, path: PathBuf) {
        if let Some(old) = self.by_wd.insert(wd, path.clone())
            && self.by_path.get(&old) == Some(&wd)
        {
            self.by_path.remove(&old);
        }
        self.by_path.insert(path, wd);
    }

    fn remove(&mut self, wd: i32) {
        if let Some(p) = self.by_wd.remove(&wd)
            && self.by_path.get(&p) == Some(&wd)
        {
            self.by_path.remove(&p);
        }
    }

    fn path(&self, wd: i32) -> Option<PathBuf> {
        self.by_wd.get(&wd).cloned()
    }

    /// Re-paths the watches of `from` and below it to `to`.
    fn moved(&mut self, from: &Path, to: &Path) {
        for (p, wd) in self.under(from) {
            if let Ok(rest) = p.strip_prefix(from) {
                self.insert(wd, to.join(rest));
            }
        }
    }

    /// The watches of `dir` and below it. (Paths order by components, so
    /// those below `dir` follow it at once.)
    fn under(&self, dir: &Path) -> Vec<(PathBuf, i32)> {
        self.by_path
            .range(dir.to_path_buf()..)
            .take_while(|(p, _)| p.starts_with(dir))
            .map(|(p, wd)| (p.clone(), *wd))
            .collect()
    }
}

struct Reader {
    dirs: Arc<Dirs>,
    stop: OwnedFd,
    /// Directories moved away in this batch whose arrival is not read
    /// yet, by cookie.
    moving: HashMap<u32, PathBuf>,
}

impl Reader {
    fn run(mut self, on_batch: impl Fn(&[Change])) {
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
        loop {
            let mut fds = [
                PollFd::new(&self.dirs.fd, PollFlags::IN),
                PollFd::new(&self.stop, PollFlags::IN),
            ];
            match poll(&mut fds, None) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => {
                    tracing::warn!("file-system events stopped, relying on the rescan: {e}");
                    return;
                }
            }
            if !fds[1].revents().is_empty() {
                return;
            }
            let mut changes = Vec::new();
            let dirs = self.dirs.clone();
            let mut events = inotify::Reader::new(&dirs.fd, &mut buf);
            loop {
                match events.next() {
                    Ok(ev) => {
                        let name = ev.file_name().map(|n| OsStr::from_bytes(n.to_bytes()));
                        self.note(ev.wd(), ev.events(), ev.cookie(), name, &mut changes);
                    }
                    Err(Errno::AGAIN) => break,
                    Err(Errno::INTR) => {}
                    Err(e) => {
                        tracing::warn!("file-system events stopped, relying on the rescan: {e}");
                        return;
                    }
                }
            }
            self.settle_moves();
            if !changes.is_empty() {
                on_batch(&changes);
            }
            std::thread::sleep(REST);
        }
    }

    fn note(
        &mut self,
        wd: i32,
        mask: ReadFlags,
        cookie: u32,
        name: Option<&OsStr>,
        out: &mut Vec<Change>,
    ) {
        let dirs = &self.dirs;
        if mask.contains(ReadFlags::QUEUE_OVERFLOW) {
            // Directories created meanwhile may be unwatched.
            let tops = super::super::lock(&dirs.tops).clone();
            for top in tops {
                let _ = dirs.watch_tree(&top);
            }
            out.push(Change {
                kind: Kind::Overflow,
                path: PathBuf::new(),
            });
            return;
        }
        if mask.contains(ReadFlags::IGNORED) {
            super::super::lock(&dirs.index).remove(wd);
            return;
        }
        let Some(dir) = super::super::lock(&dirs.index).path(wd) else {
            return;
        };
        let path = name.map_or_else(|| dir.clone(), |n| dir.join(n));
        let is_dir = mask.contains(ReadFlags::ISDIR);
        let kind = if mask.intersects(ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF) {
            Kind::SelfGone
        } else if mask.contains(ReadFlags::MOVED_FROM) {
            if is_dir {
                self.moving.insert(cookie, path.clone());
            }
            Kind::MovedFrom
        } else if mask.contains(ReadFlags::MOVED_TO) {
            if is_dir {
                match self.moving.remove(&cookie) {
                    Some(from) => dirs.moved(&from, &path),
                    None => {
                        let _ = dirs.watch_tree(&path);
                    }
                }
            }
            Kind::MovedTo
        } else {
            if is_dir && mask.contains(ReadFlags::CREATE) {
                let _ = dirs.watch_tree(&path);
            }
            Kind::Changed
        };
        out.push(Change { kind, path });
    }

    /// A directory moved away whose arrival is not in its batch went out of
    /// the trees. (The kernel queues both halves of a rename together; if a
    /// read ever split them, the arrival alone watches it again.)
    fn settle_moves(&mut self) {
        for (_, from) in self.moving.drain() {
            // Moved out of every tree: its watches go.
            self.dirs.unwatch_under(&from, |_| false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Change, Index, Kind, Trees};
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    #[test]
    fn a_directory_and_what_is_below_it_are_one_range_and_move_together() {
        let mut index = Index::default();
        let names = [
            "/r/a", "/r/a/b", "/r/a/b/c", "/r/a-b", "/r/a.txt", "/r/ab", "/r",
        ];
        for (wd, p) in (1..).zip(names) {
            index.insert(wd, p.into());
        }
        let under = |index: &Index, dir: &str| -> Vec<PathBuf> {
            index
                .under(Path::new(dir))
                .into_iter()
                .map(|(p, _)| p)
                .collect()
        };
        assert_eq!(
            under(&index, "/r/a"),
            ["/r/a", "/r/a/b", "/r/a/b/c"].map(PathBuf::from)
        );

        index.moved(Path::new("/r/a"), Path::new("/r/z"));
        assert!(under(&index, "/r/a").is_empty());
        assert_eq!(
            under(&index, "/r/z"),
            ["/r/z", "/r/z/b", "/r/z/b/c"].map(PathBuf::from)
        );
        assert_eq!(index.path(3), Some("/r/z/b/c".into()));
        index.remove(3);
        assert_eq!(index.path(3), None);
        assert_eq!(under(&index, "/r/z"), ["/r/z", "/r/z/b"].map(PathBuf::from));
        assert_eq!(index.under(Path::new("/r")).len(), 6);
    }

    /// What a watch of a real tree reports, batch by batch.
    struct Seen {
        changes: Arc<Mutex<Vec<Change>>>,
        trees: Trees,
    }

    impl Seen {
        fn watch(top: &Path) -> Self {
            let seen: Arc<Mutex<Vec<Change>>> = Arc::default();
            let to = seen.clone();
            let trees = Trees::start(move |batch: &[Change]| {
                crate::engine::lock(&to).extend_from_slice(batch);
            })
            .unwrap_or_else(|e| panic!("inotify: {e}"));
            trees
                .watch(top)
                .unwrap_or_else(|e| panic!("watch {}: {e}", top.display()));
            Self {
                changes: seen,
                trees,
            }
        }

        /// Waits until a change of `kind` at `path` is reported.
        fn wait_for(&self, kind: Kind, path: &Path) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !crate::engine::lock(&self.changes)
                .iter()
                .any(|c| c.kind == kind && c.path == path)
            {
                assert!(
                    Instant::now() < deadline,
                    "no {kind:?} of {} in {:?}",
                    path.display(),
                    crate::engine::lock(&self.changes)
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }

        fn paths(&self) -> Vec<PathBuf> {
            crate::engine::lock(&self.changes)
                .iter()
                .map(|c| c.path.clone())
                .collect()
        }
    }

    fn write(p: &Path) {
        std::fs::write(p, "x").unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }

    #[test]
    fn a_tree_is_watched_as_it_grows_moves_and_shrinks() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let top = d.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(top.join("old/deep")).unwrap_or_else(|e| panic!("{e}"));
        let seen = Seen::watch(&top);

        // Below a directory there before the watch.
        write(&top.join("old/deep/a"));
        seen.wait_for(Kind::Changed, &top.join("old/deep/a"));

        // Below a directory made after it, however deep, once it is
        // reported (what was written before that, the poll it asks for finds).
        std::fs::create_dir_all(top.join("new/sub")).unwrap_or_else(|e| panic!("{e}"));
        seen.wait_for(Kind::Changed, &top.join("new"));
        write(&top.join("new/sub/b"));
        seen.wait_for(Kind::Changed, &top.join("new/sub/b"));

        // A directory renamed within the tree reports under its new name.
        std::fs::rename(top.join("old"), top.join("moved")).unwrap_or_else(|e| panic!("{e}"));
        seen.wait_for(Kind::MovedTo, &top.join("moved"));
        write(&top.join("moved/deep/c"));
        seen.wait_for(Kind::Changed, &top.join("moved/deep/c"));

        // Reads are not reported.
        let before = seen.paths().len();
        for _ in 0..3 {
            std::fs::read(top.join("moved/deep/c")).unwrap_or_else(|e| panic!("{e}"));
        }
        // A directory moved out of the tree is no longer watched.
        let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::rename(top.join("new"), out.path().join("new")).unwrap_or_else(|e| panic!("{e}"));
        seen.wait_for(Kind::MovedFrom, &top.join("new"));
        write(&out.path().join("new/sub/d"));
        // The end marker: once it is seen, whatever came before it was too.
        write(&top.join("end"));
        seen.wait_for(Kind::Changed, &top.join("end"));
        let after: Vec<PathBuf> = seen.paths().split_off(before);
        assert!(
            after
                .iter()
                .all(|p| !p.ends_with("deep/c") && !p.ends_with("sub/d")),
            "a read or a change outside the tree was reported: {after:?}"
        );

        // The top itself gone.
        drop(d);
        seen.wait_for(Kind::SelfGone, &top);
    }

    #[test]
    fn a_tree_watched_twice_is_unwatched_at_once() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let top = d.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(top.join("sub")).unwrap_or_else(|e| panic!("{e}"));
        let other = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let other = other
            .path()
            .canonicalize()
            .unwrap_or_else(|e| panic!("{e}"));
        let seen = Seen::watch(&other);
        for _ in 0..2 {
            seen.trees
                .watch(&top)
                .unwrap_or_else(|e| panic!("watch {}: {e}", top.display()));
        }
        seen.trees.unwatch(&top);
        write(&top.join("sub/gone"));
        write(&top.join("gone"));
        // The end marker, in a tree still watched.
        write(&other.join("end"));
        seen.wait_for(Kind::Changed, &other.join("end"));
        let paths = seen.paths();
        assert!(
            paths.iter().all(|p| !p.starts_with(&top)),
            "an unwatched tree was reported: {paths:?}"
        );
    }
}
