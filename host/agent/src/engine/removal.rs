//! Removing a source after its verified transfer without ever removing what
//! was not sent (rsync's `--remove-source-files` rule).
//!
//! The item is first moved to a private name beside it (set aside, in one
//! atomic rename), so nothing written to its name from then on can be
//! touched. Of what was set aside only the entries that were sent, still
//! the very versions that were sent (inode, size, mtime, ctime), are unlinked;
//! directories go one `rmdir` at a time. Whatever is left (added since,
//! excluded, hidden, symlinks, fifos, names that are not UTF-8) is put back
//! under the item's name, and the caller is told why.
//!
//! Every rename, unlink and rmdir resolves beneath the poller's root
//! (`dispatch_transfer::beneath`): a folder swapped for a symlink out of the
//! root between the poll and the removal makes it fail, never act outside.

use dispatch_transfer::beneath::Beneath;
use dispatch_transfer::stability::{Kind, Scan, Stamp};
use globset::GlobSet;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

/// How the private names of items set aside start.
pub const ASIDE_PREFIX: &str = ".dispatch-removing-";

/// Whether `path` (relative, `/`-separated) is or is inside a aside.
pub fn is_set_aside(path: &str) -> bool {
    path.split('/').any(|c| c.starts_with(ASIDE_PREFIX))
}

/// What a removal did.
#[derive(Debug, PartialEq, Eq)]
pub enum Removed {
    /// Everything is gone, and nothing else was there.
    All,
    /// What was sent is gone; the rest stays at the item's name, for this
    /// reason.
    Kept(String),
    /// The item is not (any more) what was sent: nothing was removed.
    Changed,
    /// Nothing was there.
    Gone,
}

/// An item moved aside to a private name in its own directory.
struct Aside<'a> {
    root: &'a Beneath,
    source: PathBuf,
    path: PathBuf,
}

/// The private name transfer `id` sets its item aside under: hidden, short (whatever
/// the item's name), and the same for every try of that transfer, so one
/// left by a crash is found again.
fn aside_path(source: &Path, id: &str) -> PathBuf {
    let short: String = id.chars().take(16).collect();
    source.with_file_name(format!("{ASIDE_PREFIX}{short}"))
}

impl<'a> Aside<'a> {
    /// Moves `source` aside; `None` when nothing is there. What a crash
    /// left under the private name is put back first (found by the
    /// rename, which never replaces it: the common case costs no lookup).
    fn take(root: &'a Beneath, source: &Path, id: &str) -> io::Result<Option<Self>> {
        let path = aside_path(source, id);
        let mut put_back = false;
        loop {
            match root.rename(source, &path, false) {
                Ok(()) => {
                    return Ok(Some(Aside {
                        root,
                        source: source.to_path_buf(),
                        path,
                    }));
                }
                Err(e) if put_back => return Err(e),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // A crash may have left the item aside, its name free.
                    if path.symlink_metadata().is_err() {
                        return Ok(None);
                    }
                }
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                Err(_) => {}
            }
            if let Some(at) = put_back_left(root, source, id)? {
                return Err(io::Error::other(format!(
                    "{} (left by an interrupted removal) is in the way: move it back by hand",
                    at.display()
                )));
            }
            put_back = true;
        }
    }

    /// Moves it back to the item's name, never over something that
    /// arrived there meanwhile: then it stays under its private name, which
    /// is returned.
    fn put_back(&self) -> io::Result<Option<PathBuf>> {
        match self.root.rename(&self.path, &self.source, false) {
            Ok(()) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Some(self.path.clone())),
            Err(e) => Err(e),
        }
    }

    /// Puts back what is left and says why it stays.
    fn keep(&self, why: String) -> io::Result<Removed> {
        Ok(match self.put_back()? {
            None => Removed::Kept(why),
            Some(at) => Removed::Kept(format!(
                "{why}; a new item took its name meanwhile, so they wait in {}",
                at.display()
            )),
        })
    }
}

/// Puts back what transfer `id` set aside beside `source` before a crash;
/// gives its path when `source` was taken meanwhile (then it stays).
pub fn restore(root: &Path, source: &Path, id: &str) -> io::Result<Option<PathBuf>> {
    put_back_left(&Beneath::open(root)?, source, id)
}

fn put_back_left(root: &Beneath, source: &Path, id: &str) -> io::Result<Option<PathBuf>> {
    let path = aside_path(source, id);
    if path.symlink_metadata().is_err() {
        return Ok(None);
    }
    tracing::warn!(path = %source.display(), "putting back what an interrupted removal left");
    Aside {
        root,
        source: source.to_path_buf(),
        path,
    }
    .put_back()
}

/// The id under which a `remove-dir` of `rel` by `poller` sets the
/// directory aside: the same every time, so the next try (or a restart)
/// finds what a crash left.
pub fn dir_aside_id(poller: &str, rel: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!("{poller}\0{rel}")))
}

/// Removes what of `source` was sent, as `sent` (the scan that matched the
/// signature after the transfer) saw it, beneath the poller's `root`
/// (opened once for many removals). For a directory, the files sent
/// are those a backend sends (`transfer::tree::walk`: regular files with
/// UTF-8 names outside `excludes`).
pub fn remove_sent(
    root: &Beneath,
    source: &Path,
    sent: &Scan,
    excludes: &GlobSet,
    id: &str,
) -> io::Result<Removed> {
    // Checked once more just before it is set aside (full signature, ctime
    // included), then once aside (a rename moves only the ctime).
    match (Scan::of(source), sent) {
        (None, _) if !aside_path(source, id).exists() => return Ok(Removed::Gone),
        (Some(Scan::File(now)), Scan::File(was)) if now != *was => return Ok(Removed::Changed),
        (Some(Scan::File(_)), Scan::Dir { .. }) | (Some(Scan::Dir { .. }), Scan::File(_)) => {
            return Ok(Removed::Changed);
        }
        _ => {}
    }
    let Some(aside) = Aside::take(root, source, id)? else {
        return Ok(Removed::Gone);
    };
    match sent {
        Scan::File(was) => {
            let meta = std::fs::symlink_metadata(&aside.path)?;
            if meta.is_dir() || !Stamp::of(&meta).same_but_renamed(was) {
                aside.keep(String::new())?;
                return Ok(Removed::Changed);
            }
            root.unlink(&aside.path)?;
            Ok(Removed::All)
        }
        Scan::Dir { entries, .. } => {
            let sent: HashMap<&Path, (Kind, Stamp)> = entries
                .iter()
                .filter(|e| matches!(e.kind, Kind::File | Kind::Dir) && is_sent(&e.rel, excludes))
                .map(|e| (e.rel.as_path(), (e.kind, e.stamp)))
                .collect();
            remove_tree(&aside, |rel, kind, stamp| {
                sent.get(rel)
                    .is_some_and(|(k, s)| *k == kind && (kind == Kind::Dir || *s == stamp))
            })
        }
    }
}

/// Removes the directory `dir` whose only entries are markers this agent
/// created (`markers`: names directly inside it, each an empty regular
/// file): the markers, then the directory. Anything else (hidden entries,
/// subdirectories, symlinks, names that are not UTF-8) keeps it all in
/// place, with the reason.
pub fn remove_marked_dir(
    root: &Path,
    dir: &Path,
    markers: &[String],
    id: &str,
) -> io::Result<Removed> {
    let root = Beneath::open(root)?;
    let Some(aside) = Aside::take(&root, dir, id)? else {
        return Ok(Removed::Gone);
    };
    let Some(Scan::Dir { entries, .. }) = Scan::of(&aside.path) else {
        aside.keep("it is no directory".into())?;
        return Ok(Removed::Changed);
    };
    let others: Vec<&Path> = entries
        .iter()
        .filter(|e| {
            !(e.kind == Kind::File
                && e.stamp.size == 0
                && e.rel
                    .to_str()
                    .is_some_and(|n| markers.iter().any(|m| m == n)))
        })
        .map(|e| e.rel.as_path())
        .collect();
    if !others.is_empty() {
        return aside.keep(format!("it holds {}", never_sent(&others)));
    }
    for e in &entries {
        root.unlink(&aside.path.join(&e.rel))?;
    }
    match root.rmdir(&aside.path) {
        Ok(()) => Ok(Removed::All),
        Err(_) => {
            let left = left_in(&aside.path);
            aside.keep(format!("it holds {}", never_sent(&left_refs(&left))))
        }
    }
}

/// Unlinks the files of the tree set aside that `was_sent` accepts, then
/// each directory it accepts once empty (deepest first), then the tree's
/// top; puts back whatever is left.
fn remove_tree(
    aside: &Aside,
    was_sent: impl Fn(&Path, Kind, Stamp) -> bool,
) -> io::Result<Removed> {
    let Some(Scan::Dir { entries, .. }) = Scan::of(&aside.path) else {
        aside.keep(String::new())?;
        return Ok(Removed::Changed);
    };
    let mut dirs = Vec::new();
    for e in &entries {
        if !was_sent(&e.rel, e.kind, e.stamp) {
            continue;
        }
        match e.kind {
            Kind::Dir => dirs.push(&e.rel),
            _ => aside.root.unlink(&aside.path.join(&e.rel))?,
        }
    }
    // Deepest first; a directory that still holds something stays.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        let _ = aside.root.rmdir(&aside.path.join(d));
    }
    if aside.root.rmdir(&aside.path).is_ok() {
        return Ok(Removed::All);
    }
    let left = left_in(&aside.path);
    aside.keep(format!("kept {}", never_sent(&left_refs(&left))))
}

/// Whether a backend sends the entry at `rel` of a directory item.
fn is_sent(rel: &Path, excludes: &GlobSet) -> bool {
    rel.components().all(|c| {
        c.as_os_str()
            .to_str()
            .is_some_and(|name| !excludes.is_match(name))
    })
}

fn left_in(dir: &Path) -> Vec<PathBuf> {
    match Scan::of(dir) {
        Some(Scan::Dir { entries, .. }) => entries.into_iter().map(|e| e.rel).collect(),
        _ => Vec::new(),
    }
}

fn left_refs(left: &[PathBuf]) -> Vec<&Path> {
    left.iter().map(PathBuf::as_path).collect()
}

/// "3 entries that were never sent: `.hidden`, `sub`, …" (at most 5 named).
fn never_sent(paths: &[&Path]) -> String {
    let mut names: Vec<String> = paths
        .iter()
        .take(5)
        .map(|p| format!("`{}`", p.to_string_lossy()))
        .collect();
    if paths.len() > 5 {
        names.push("…".into());
    }
    let n = paths.len();
    format!(
        "{n} {} that {} never sent: {}",
        if n == 1 { "entry" } else { "entries" },
        if n == 1 { "was" } else { "were" },
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    fn no_excludes() -> GlobSet {
        GlobSet::empty()
    }

    #[test]
    fn a_file_renamed_over_after_the_scan_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("clip.mxf");
        std::fs::write(&f, "old").unwrap();
        let sent = Scan::of(&f).unwrap();
        std::fs::write(d.path().join("n"), "new").unwrap();
        std::fs::rename(d.path().join("n"), &f).unwrap();
        let r = remove_sent(
            &Beneath::open(d.path()).unwrap(),
            &f,
            &sent,
            &no_excludes(),
            "0123456789abcdef",
        )
        .unwrap();
        assert_eq!(r, Removed::Changed);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new");
    }

    #[test]
    fn what_an_interrupted_removal_set_aside_is_put_back_then_removed() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("clip.mxf");
        std::fs::write(&f, "sent").unwrap();
        let sent = Scan::of(&f).unwrap();
        let id = "0123456789abcdef";
        // The crash came between the set-aside and the unlink.
        std::fs::rename(&f, aside_path(&f, id)).unwrap();
        let root = Beneath::open(d.path()).unwrap();
        let r = remove_sent(&root, &f, &sent, &no_excludes(), id).unwrap();
        assert_eq!(r, Removed::All);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_old_aside_under_a_new_item_keeps_both_and_names_it() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("clip.mxf");
        let id = "0123456789abcdef";
        std::fs::write(&f, "old").unwrap();
        std::fs::rename(&f, aside_path(&f, id)).unwrap();
        std::fs::write(&f, "new").unwrap();
        let sent = Scan::of(&f).unwrap();
        let root = Beneath::open(d.path()).unwrap();
        let e = remove_sent(&root, &f, &sent, &no_excludes(), id).unwrap_err();
        assert!(e.to_string().contains("is in the way"), "{e}");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(aside_path(&f, id)).unwrap(), "old");
    }

    #[test]
    fn only_the_sent_files_of_a_tree_go() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("asset");
        std::fs::create_dir_all(t.join("sub")).unwrap();
        std::fs::write(t.join("a.mxf"), "a").unwrap();
        std::fs::write(t.join("sub/b.mxf"), "b").unwrap();
        std::fs::write(t.join("x.tmp"), "excluded").unwrap();
        std::fs::write(t.join(std::ffi::OsStr::from_bytes(b"bad\xff")), "latin-1").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", t.join("link")).unwrap();
        let sent = Scan::of(&t).unwrap();
        std::fs::write(t.join("sub/late.mxf"), "late").unwrap();
        let mut ex = globset::GlobSetBuilder::new();
        ex.add(globset::Glob::new("*.tmp").unwrap());
        let r = remove_sent(
            &Beneath::open(d.path()).unwrap(),
            &t,
            &sent,
            &ex.build().unwrap(),
            "0123456789abcdef",
        )
        .unwrap();
        let Removed::Kept(why) = r else {
            panic!("{r:?}")
        };
        assert!(why.contains("5 entries"), "{why}");
        let mut left: Vec<String> = left_in(&t)
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["bad\u{fffd}", "link", "sub", "sub/late.mxf", "x.tmp"]
        );
        assert!(!t.join("a.mxf").exists());
    }

    #[test]
    fn a_marked_dir_goes_only_when_it_holds_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("D");
        std::fs::create_dir(&t).unwrap();
        std::fs::write(t.join("dispatch.done"), "").unwrap();
        std::fs::write(t.join(".hidden"), "keep me").unwrap();
        let markers = vec!["dispatch.done".to_string()];
        let r = remove_marked_dir(d.path(), &t, &markers, "0123456789abcdef").unwrap();
        assert!(
            matches!(r, Removed::Kept(ref w) if w.contains("`.hidden`")),
            "{r:?}"
        );
        assert!(t.join(".hidden").exists() && t.join("dispatch.done").exists());
        std::fs::remove_file(t.join(".hidden")).unwrap();
        assert_eq!(
            remove_marked_dir(d.path(), &t, &markers, "0123456789abcdef").unwrap(),
            Removed::All
        );
        assert!(!t.exists());
    }

    /// A root whose folder `show` was moved outside it (the same inodes,
    /// so every stamp still matches) and replaced by a symlink there.
    fn swapped() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let (root, outside) = (d.path().join("root"), d.path().join("outside"));
        std::fs::create_dir_all(root.join("show/D")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("show/clip.mxf"), "clip").unwrap();
        std::fs::write(root.join("show/D/dispatch.done"), "").unwrap();
        std::fs::rename(root.join("show"), outside.join("show")).unwrap();
        std::os::unix::fs::symlink(outside.join("show"), root.join("show")).unwrap();
        (d, root, outside)
    }

    #[test]
    fn a_folder_swapped_for_a_symlink_out_of_the_root_loses_nothing_outside() {
        let (_d, root, outside) = swapped();
        let f = root.join("show/clip.mxf");
        let sent = Scan::of(&f).unwrap();
        let e = remove_sent(
            &Beneath::open(&root).unwrap(),
            &f,
            &sent,
            &no_excludes(),
            "0123456789abcdef",
        )
        .unwrap_err();
        assert!(e.to_string().contains("leads outside"), "{e}");
        let markers = vec!["dispatch.done".to_string()];
        let e = remove_marked_dir(&root, &root.join("show/D"), &markers, "0123456789abcdef")
            .unwrap_err();
        assert!(e.to_string().contains("leads outside"), "{e}");
        assert_eq!(
            std::fs::read_to_string(outside.join("show/clip.mxf")).unwrap(),
            "clip"
        );
        assert!(outside.join("show/D/dispatch.done").exists());
        assert_eq!(std::fs::read_dir(outside.join("show")).unwrap().count(), 2);
    }
}
