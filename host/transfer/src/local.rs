//! `local`: copy into a destination directory, keeping the item's path
//! relative to the root. Each file is written under a temporary name unique
//! to the transfer (`transfer::part_name`, created with `O_EXCL`), checked
//! (size, and sha256 when asked), synced (unless `fsync = false`), then
//! renamed: no half-written file ever carries the final name. A single
//! file's sync and rename, and every directory sync, are `settle`'s, after
//! the transfer gave up its sending slot. A directory
//! is copied as a whole tree the same way, every directory of it synced,
//! the source's signature checked once more, then moved into place in one
//! rename that never replaces (nor merges into) a directory already there.
//! A failed attempt removes its temporary copy (a local copy never resumes),
//! so a full disk is not kept full by parts. Without flushes (`fsync =
//! false`) a file is written into an unnamed file in its destination's
//! folder instead (`O_TMPFILE`) and linked at its final name: one entry
//! made in the folder instead of a part created and renamed, and nothing
//! left by a crash.

use super::{Backend, Job, Progress, RateLimiter, Sent, TransferError, Unsettled, part_name};
use crate::beneath::Beneath;
use crate::dir_sync::DirSyncs;
use crate::testhook::{self, Point};
use dispatch_runtime::actions::ItemKind;
use rustix::fs::{AtFlags, Mode, OFlags};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Bytes per copy step: progress, cancellation and the rate limit are
/// checked between steps.
const CHUNK: usize = 8 << 20;

pub struct LocalBackend {
    destination: PathBuf,
    verify_sha256: bool,
    fsync: bool,
    rate: Option<Arc<RateLimiter>>,
    /// Shared by this target's transfers: one directory fsync serves all
    /// the renames made into it before it started.
    dir_syncs: Arc<DirSyncs>,
    /// Settles (flush, rename, directory syncs) running at once: they no
    /// longer hold a sending slot, so this bounds them.
    settling: Arc<tokio::sync::Semaphore>,
    /// Cleared when an unnamed file could not be linked (no `/proc`): the
    /// named part is used from then on.
    unnamed: Arc<AtomicBool>,
}

/// At most this many settles of one target at once.
const SETTLING: usize = 64;

impl LocalBackend {
    pub fn new(
        destination: PathBuf,
        verify_sha256: bool,
        fsync: bool,
        rate: Option<Arc<RateLimiter>>,
    ) -> Self {
        Self {
            destination,
            verify_sha256,
            fsync,
            rate,
            dir_syncs: Arc::default(),
            settling: Arc::new(tokio::sync::Semaphore::new(SETTLING)),
            unnamed: Arc::new(AtomicBool::new(true)),
        }
    }
}

/// Small files one batch copies on one blocking thread: enough to make
/// the hop there and back cheap per file, few enough that progress and a
/// cancellation are seen soon.
const BATCH: usize = 64;

/// What a copy needs, moved onto its blocking thread.
#[derive(Clone)]
struct CopyTask {
    dest: PathBuf,
    verify: bool,
    fsync: bool,
    rate: Option<Arc<RateLimiter>>,
    unnamed: Arc<AtomicBool>,
}

impl CopyTask {
    /// Copies `job`'s item; `root` is its poller's root, opened (once for
    /// a batch).
    fn run(&self, job: &Job, root: &Beneath, progress: &Progress) -> Result<Sent, TransferError> {
        let copier = Copier {
            root,
            rate: self.rate.as_deref(),
            progress,
            verify: self.verify,
            fsync: self.fsync,
            unnamed: &self.unnamed,
        };
        match job.kind {
            ItemKind::File => copier.file_item(job, &self.dest),
            ItemKind::Dir => copier.dir_item(job, &self.dest),
        }
    }
}

impl LocalBackend {
    /// Flushes the item's file and renames it to its final name, if
    /// `send` left that to do.
    async fn flush_and_rename(&self, sent: &Sent) -> Result<(), TransferError> {
        let Some((tmp, dst)) = sent.unsettled.rename.clone() else {
            return Ok(());
        };
        let _slot = self
            .settling
            .acquire()
            .await
            .map_err(|e| TransferError::transient(format!("cannot settle: {e}")))?;
        tokio::task::spawn_blocking(move || flush_and_rename(&tmp, &dst))
            .await
            .map_err(|e| TransferError::transient(format!("settle task failed: {e}")))?
    }

    fn task(&self) -> CopyTask {
        CopyTask {
            dest: self.destination.clone(),
            verify: self.verify_sha256,
            fsync: self.fsync,
            rate: self.rate.clone(),
            unnamed: self.unnamed.clone(),
        }
    }
}

#[async_trait::async_trait]
impl Backend for LocalBackend {
    async fn send(&self, job: &Job, progress: Arc<Progress>) -> Result<Sent, TransferError> {
        let (job, task) = (job.clone(), self.task());
        // The copy is blocking I/O; it checks `progress` for cancellation.
        tokio::task::spawn_blocking(move || task.run(&job, &job.beneath()?, &progress))
            .await
            .map_err(|e| TransferError::transient(format!("copy task failed: {e}")))?
    }

    async fn send_batch(&self, jobs: &[(Job, Arc<Progress>)]) -> Vec<Result<Sent, TransferError>> {
        let (jobs, task, n) = (jobs.to_vec(), self.task(), jobs.len());
        tokio::task::spawn_blocking(move || {
            // A batch is one poller's: its root is opened once.
            let first = jobs.first().map(|(j, _)| (j.root.clone(), j.beneath()));
            jobs.iter()
                .map(|(job, progress)| match &first {
                    Some((at, Ok(root))) if *at == job.root => task.run(job, root, progress),
                    _ => task.run(job, &job.beneath()?, progress),
                })
                .collect()
        })
        .await
        .unwrap_or_else(|e| {
            (0..n)
                .map(|_| Err(TransferError::transient(format!("copy task failed: {e}"))))
                .collect()
        })
    }

    fn batch_limit(&self) -> usize {
        BATCH
    }

    fn describe(&self) -> String {
        format!("local:{}", self.destination.display())
    }

    async fn settle(&self, sent: &Sent) -> Result<(), TransferError> {
        let mut settled = self.settle_batch(&[sent]).await;
        settled.pop().unwrap_or(Ok(()))
    }

    /// Flushes and renames each file (at once, up to `SETTLING`), then syncs
    /// each folder once for all of them: a batch of small files costs one
    /// directory fsync, where settling them one by one cost about one per
    /// three files.
    async fn settle_batch(&self, sent: &[&Sent]) -> Vec<Result<(), TransferError>> {
        let renamed =
            futures_util::future::join_all(sent.iter().map(|s| self.flush_and_rename(s))).await;
        let mut dirs: Vec<PathBuf> = sent
            .iter()
            .zip(&renamed)
            .filter(|(_, r)| r.is_ok())
            .flat_map(|(s, _)| s.unsettled.dirs.iter().cloned())
            .collect();
        // Deepest first, so each entry is durable before its parent's.
        dirs.sort_by(|a, b| {
            let depth = |p: &Path| p.components().count();
            depth(b).cmp(&depth(a)).then_with(|| a.cmp(b))
        });
        dirs.dedup();
        let dir_syncs = self.dir_syncs.clone();
        let failed = match dirs.is_empty() {
            true => Ok(HashMap::new()),
            false => tokio::task::spawn_blocking(move || sync_dirs(&dirs, &dir_syncs))
                .await
                .map_err(|e| format!("settle task failed: {e}")),
        };
        sent.iter()
            .zip(renamed)
            .map(|(s, r)| {
                r?;
                let failed = failed.as_ref().map_err(TransferError::transient)?;
                match s
                    .unsettled
                    .dirs
                    .iter()
                    .find_map(|d| Some((d, failed.get(d)?)))
                {
                    Some((d, e)) => Err(TransferError::io(
                        &format!("cannot sync {}", d.display()),
                        &std::io::Error::new(e.kind(), e.to_string()),
                    )),
                    None => Ok(()),
                }
            })
            .collect()
    }

    async fn abandon(&self, sent: &Sent) {
        if let Some((tmp, _)) = sent.unsettled.rename.clone() {
            let _ = tokio::task::spawn_blocking(move || clear(&tmp)).await;
        }
    }

    async fn discard(&self, job: &Job) {
        let (dst, id) = (self.destination.join(&job.path), job.id.clone());
        let _ = tokio::task::spawn_blocking(move || {
            let name = dst.file_name()?.to_string_lossy().into_owned();
            clear(&dst.with_file_name(part_name(&name, &id))).ok()
        })
        .await;
    }

    async fn delivered(&self, job: &Job) -> Option<bool> {
        let (job, root) = (job.clone(), self.destination.clone());
        let fsync = self.fsync;
        tokio::task::spawn_blocking(move || {
            let dest = root.join(&job.path);
            let whole = whole_at(&job, &dest)?;
            if whole && fsync {
                // The crash may have come before the settle: its directory
                // entries (up to the destination's own, which may have been
                // created too) are made durable before the Complete record.
                let mut dir = dest.parent();
                while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
                    sync_dir(d).ok()?;
                    dir = if d == root { None } else { d.parent() };
                }
                if let Some(above) = root.parent().filter(|d| !d.as_os_str().is_empty()) {
                    sync_dir(above).ok()?;
                }
            }
            Some(whole)
        })
        .await
        .ok()
        .flatten()
    }
}

/// Whether `dest` holds `job`'s item whole (`None`: the source unreadable).
fn whole_at(job: &Job, dest: &Path) -> Option<bool> {
    match job.kind {
        ItemKind::File => same_file(&job.source(), dest),
        ItemKind::Dir => {
            let (_, files) = super::tree::walk(job).ok()?;
            Some(
                dest.is_dir()
                    && files.iter().all(|(rel, from)| {
                        same_file(from, &rel.iter().fold(dest.to_path_buf(), |p, s| p.join(s)))
                            == Some(true)
                    }),
            )
        }
    }
}

/// Whether `to` holds the same bytes as `from` (`None`: `from` unreadable).
fn same_file(from: &Path, to: &Path) -> Option<bool> {
    let len = std::fs::metadata(from).ok()?.len();
    match std::fs::metadata(to) {
        Ok(m) if m.is_file() && m.len() == len => {}
        _ => return Some(false),
    }
    Some(sha256_file(from).ok()? == sha256_file(to).ok()?)
}

struct Copier<'a> {
    /// The poller's root: sources are opened beneath it.
    root: &'a Beneath,
    rate: Option<&'a RateLimiter>,
    progress: &'a Progress,
    verify: bool,
    fsync: bool,
    unnamed: &'a AtomicBool,
}

impl Copier<'_> {
    fn file_item(&self, job: &Job, dest_root: &Path) -> Result<Sent, TransferError> {
        self.deliver(job, dest_root, |tmp, dst| {
            // After a restart the part its attempt left is found (and
            // removed) by creating it again.
            if !self.fsync
                && !job.restarted
                && self.unnamed.load(Ordering::Relaxed)
                && let Some(bytes) = self.copy_unnamed(&job.source(), tmp, dst)?
            {
                return Ok((bytes, false));
            }
            // Flushed (and then renamed) by `settle`, outside the slot.
            let bytes = self.copy_file(&job.source(), tmp, false)?;
            if self.fsync {
                return Ok((bytes, true));
            }
            rename_into_place(tmp, dst)?;
            Ok((bytes, false))
        })
    }

    fn dir_item(&self, job: &Job, dest_root: &Path) -> Result<Sent, TransferError> {
        self.deliver(job, dest_root, |tmp, dst| {
            let src = job.source();
            clear_part(tmp)?;
            let bytes = self.copy_tree(job, tmp)?;
            testhook::block_at(Point::BeforeRename);
            // Once more before the tree takes its final name: a file added
            // meanwhile must not make an incomplete directory appear there.
            let now = crate::stability::signature(&src);
            if !job.sig.is_empty()
                && !now.is_some_and(|now| crate::stability::matches(&job.sig, &now))
            {
                return Err(TransferError::transient(
                    "the source changed during the transfer; it will be sent again once stable",
                ));
            }
            move_into_place(tmp, dst)?;
            Ok((bytes, false))
        })
    }

    /// Makes the item's directories, has `put` write it under its
    /// temporary name and move it to its final one (or say that `settle`
    /// is to do that, after a flush), and removes the temporary copy if
    /// that failed (a local copy never resumes). The directories whose
    /// entries changed are synced by `settle`.
    fn deliver(
        &self,
        job: &Job,
        dest_root: &Path,
        put: impl FnOnce(&Path, &Path) -> Result<(u64, bool), TransferError>,
    ) -> Result<Sent, TransferError> {
        let dst = dest_root.join(&job.path);
        let created = create_dirs(dest_root, &dst)?;
        let tmp = part_path(&dst, &job.id);
        let (bytes, rename_later) = put(&tmp, &dst).inspect_err(|_| {
            let _ = clear(&tmp);
        })?;
        let mut sent = Sent::of(bytes);
        if self.fsync {
            sent.unsettled = Unsettled {
                dirs: dirs_to_sync(&dst, &created),
                rename: rename_later.then_some((tmp, dst)),
            };
        }
        Ok(sent)
    }

    /// Copies the tree `src` to `dst` (which must not exist) as
    /// `tree::walk` lists it, syncing every directory of the copy.
    fn copy_tree(&self, job: &Job, dst: &Path) -> Result<u64, TransferError> {
        let (dirs, files) = super::tree::walk(job)?;
        let at = |rel: &[String]| rel.iter().fold(dst.to_path_buf(), |p, s| p.join(s));
        std::fs::create_dir(dst)
            .map_err(|e| TransferError::io(&format!("cannot create {}", dst.display()), &e))?;
        for d in &dirs {
            let to = at(d);
            std::fs::create_dir(&to)
                .map_err(|e| TransferError::io(&format!("cannot create {}", to.display()), &e))?;
        }
        let mut bytes = 0;
        for (rel, from) in &files {
            bytes += self.copy_file(from, &at(rel), self.fsync)?;
        }
        if self.fsync {
            // Deepest first, so each entry is durable before its parent's.
            for d in dirs.iter().rev() {
                sync_dir(&at(d))?;
            }
            sync_dir(dst)?;
        }
        Ok(bytes)
    }

    /// Copies one file into an unnamed file in `dst`'s folder, verifies
    /// it, and links it at `dst`: with many small files, creating and
    /// renaming a part was a tenth of a drain's time. A file already at
    /// `dst` is replaced as with a part (linked at `tmp`, renamed over).
    /// `None` (nothing written anywhere) when the file system has no
    /// unnamed files (NFS, FUSE) or they cannot be linked (no `/proc`).
    fn copy_unnamed(
        &self,
        from: &Path,
        tmp: &Path,
        dst: &Path,
    ) -> Result<Option<u64>, TransferError> {
        let Some(dir) = dst.parent() else {
            return Ok(None);
        };
        let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
        let Ok(fd) = rustix::fs::open(dir, flags, Mode::from_raw_mode(0o666)) else {
            // The named part says what is wrong, if anything is.
            return Ok(None);
        };
        let mut file = File::from(fd);
        let copied = self.copy_into(from, &mut file, dst, false)?;
        if self.verify {
            file.rewind()
                .map_err(|e| TransferError::io(&format!("cannot read {}", dst.display()), &e))?;
            check_sha256(from, sha256_of(file.try_clone(), dst)?)?;
        }
        // Linking a file by its descriptor needs a privilege; by its
        // `/proc` name it needs only that the file is ours.
        let at = format!("/proc/self/fd/{}", file.as_raw_fd());
        let link = |to: &Path| {
            rustix::fs::linkat(
                rustix::fs::CWD,
                at.as_str(),
                rustix::fs::CWD,
                to,
                AtFlags::SYMLINK_FOLLOW,
            )
        };
        match link(dst) {
            Ok(()) => Ok(Some(copied)),
            Err(rustix::io::Errno::EXIST) => {
                if let Err(rustix::io::Errno::EXIST) = link(tmp) {
                    clear_part(tmp)?;
                    link(tmp).map_err(|e| {
                        TransferError::io(&format!("cannot create {}", tmp.display()), &e.into())
                    })?;
                }
                rename_into_place(tmp, dst)?;
                Ok(Some(copied))
            }
            Err(e) => {
                tracing::info!(error = %e, "cannot link unnamed files here: using named parts");
                self.unnamed.store(false, Ordering::Relaxed);
                Ok(None)
            }
        }
    }

    /// Copies one file to `to` (created, never opened over another), syncs
    /// it if `sync`, verifies it.
    fn copy_file(&self, from: &Path, to: &Path, sync: bool) -> Result<u64, TransferError> {
        // Never opened over someone else's file: the name is this
        // transfer's own, and a part its earlier attempt left is removed
        // first (found by the create, so the usual case costs no lookup).
        let create = || File::options().write(true).create_new(true).open(to);
        let mut dst = match create() {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                clear_part(to)?;
                create()
            }
            other => other,
        }
        .map_err(|e| TransferError::io(&format!("cannot create {}", to.display()), &e))?;
        let copied = self.copy_into(from, &mut dst, to, sync)?;
        if self.verify {
            check_sha256(from, sha256_file(to)?)?;
        }
        Ok(copied)
    }

    /// Copies `from` into `dst` (named `to` in errors), syncs it if `sync`,
    /// checks the sizes.
    fn copy_into(
        &self,
        from: &Path,
        dst: &mut File,
        to: &Path,
        sync: bool,
    ) -> Result<u64, TransferError> {
        let mut src = self
            .root
            .file(from)
            .map_err(|e| TransferError::io(&format!("cannot open {}", from.display()), &e))?;
        let expected = src
            .metadata()
            .map_err(|e| TransferError::io(&format!("cannot stat {}", from.display()), &e))?
            .len();
        let chunk = self.rate.map_or(CHUNK, |r| r.chunk(CHUNK));
        let mut copied: u64 = 0;
        let mut in_kernel = true;
        let mut buf = Vec::new();
        loop {
            if self.progress.is_cancelled() {
                return Err(TransferError::cancelled());
            }
            if let Some(r) = self.rate {
                std::thread::sleep(r.reserve(chunk as u64));
            }
            let n = if in_kernel {
                // copy_file_range: the kernel copies, no round trip through
                // user space (what `cp` does too).
                match rustix::fs::copy_file_range(&src, None, &*dst, None, chunk) {
                    Ok(n) => n,
                    Err(
                        rustix::io::Errno::XDEV
                        | rustix::io::Errno::NOSYS
                        | rustix::io::Errno::INVAL
                        | rustix::io::Errno::OPNOTSUPP,
                    ) => {
                        in_kernel = false;
                        buf.resize(chunk.min(1 << 20), 0);
                        continue;
                    }
                    Err(e) => {
                        return Err(TransferError::io(
                            &format!("cannot copy {}", from.display()),
                            &e.into(),
                        ));
                    }
                }
            } else {
                let n = src.read(&mut buf).map_err(|e| {
                    TransferError::io(&format!("cannot read {}", from.display()), &e)
                })?;
                dst.write_all(&buf[..n]).map_err(|e| {
                    TransferError::io(&format!("cannot write {}", to.display()), &e)
                })?;
                n
            };
            if n == 0 {
                break;
            }
            copied += n as u64;
            self.progress.add(n as u64);
        }
        if sync {
            dst.sync_all()
                .map_err(|e| TransferError::io(&format!("cannot sync {}", to.display()), &e))?;
        }
        let written = dst
            .metadata()
            .map_err(|e| TransferError::io(&format!("cannot stat {}", to.display()), &e))?
            .len();
        if copied != expected || written != expected {
            return Err(TransferError::transient(format!(
                "size check failed for {}: source {expected} bytes, copied {copied}, destination {written}",
                from.display()
            )));
        }
        Ok(copied)
    }
}

/// Flushes the copy at `tmp` and renames it to `dst`; a failed flush or
/// rename removes the temporary copy.
fn flush_and_rename(tmp: &Path, dst: &Path) -> Result<(), TransferError> {
    File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| TransferError::io(&format!("cannot sync {}", tmp.display()), &e))
        .and_then(|()| rename_into_place(tmp, dst))
        .inspect_err(|_| {
            let _ = clear(tmp);
        })
}

/// Syncs `dirs` in order (each shared with concurrent batches); gives the
/// ones that failed.
fn sync_dirs(dirs: &[PathBuf], dir_syncs: &DirSyncs) -> HashMap<PathBuf, std::io::Error> {
    dirs.iter()
        .filter_map(|d| dir_syncs.sync(d).err().map(|e| (d.clone(), e)))
        .collect()
}

/// Renames a copied file to its final name, replacing a file there.
fn rename_into_place(tmp: &Path, dst: &Path) -> Result<(), TransferError> {
    std::fs::rename(tmp, dst).map_err(|e| {
        if e.kind() == std::io::ErrorKind::IsADirectory {
            // Retrying cannot help; a person must move it away.
            return TransferError::item_only(format!(
                "{} is a folder: move it away to send this file",
                dst.display()
            ));
        }
        TransferError::io(&format!("cannot rename {} into place", tmp.display()), &e)
    })
}

/// The directories whose entries a delivery to `dst` changed, deepest
/// first (each entry durable before its parent's): `dst`'s own parent
/// (the final rename), then the parent of each directory `created`
/// (listed parents first).
fn dirs_to_sync(dst: &Path, created: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = dst.parent().map(Path::to_path_buf).into_iter().collect();
    for d in created.iter().rev() {
        if let Some(parent) = d.parent().filter(|p| dirs.last().is_none_or(|l| l != p)) {
            dirs.push(parent.to_path_buf());
        }
    }
    dirs
}

/// Creates the missing directories down to `dst`'s parent; gives the
/// ones it created (parents first), whose entries must be synced too.
fn create_dirs(dest_root: &Path, dst: &Path) -> Result<Vec<PathBuf>, TransferError> {
    let parent = dst
        .parent()
        .ok_or_else(|| TransferError::permanent(format!("no parent for {}", dst.display())))?;
    let mut missing = Vec::new();
    let mut at = Some(parent);
    while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d.to_path_buf());
        at = d.parent();
    }
    // A file inside the destination where this item needs a folder is the
    // item's own problem, which retrying cannot fix (at or above the
    // destination, it is the target's, and counts toward its breaker).
    if let Some(blocker) = at.filter(|a| a.starts_with(dest_root) && *a != dest_root && !a.is_dir())
    {
        return Err(TransferError::item_only(format!(
            "cannot create {}: {} is not a folder",
            missing.last().map_or(dst, |d| d.as_path()).display(),
            blocker.display()
        )));
    }
    missing.reverse();
    for d in &missing {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => {
                return Err(TransferError::io(
                    &format!("cannot create {}", d.display()),
                    &e,
                ));
            }
        }
    }
    Ok(missing)
}

/// This transfer's temporary name beside `dst`.
fn part_path(dst: &Path, id: &str) -> PathBuf {
    let name = dst
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dst.with_file_name(part_name(&name, id))
}

/// Removes what an earlier attempt of this transfer left at its
/// temporary name `tmp`.
fn clear_part(tmp: &Path) -> Result<(), TransferError> {
    clear(tmp).map_err(|e| TransferError::io(&format!("cannot clear {}", tmp.display()), &e))
}

/// Removes a temporary file or tree, if there is one.
fn clear(tmp: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(tmp) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(tmp),
        Ok(_) => std::fs::remove_file(tmp),
        Err(_) => Ok(()),
    }
}

/// Renames the copied tree to its final name, which must be free: a
/// directory is never merged into (nor swapped for) one already there.
fn move_into_place(tmp: &Path, dst: &Path) -> Result<(), TransferError> {
    match rustix::fs::renameat_with(
        rustix::fs::CWD,
        tmp,
        rustix::fs::CWD,
        dst,
        rustix::fs::RenameFlags::NOREPLACE,
    ) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) => Err(TransferError::item_only(format!(
            "{} already exists: a directory is never merged into one already there; move it away to send this one",
            dst.display()
        ))),
        Err(e) => Err(TransferError::io(
            &format!("cannot rename {} into place", tmp.display()),
            &e.into(),
        )),
    }
}

/// Fails unless `from` hashes to `copy` (a copy's sha256).
fn check_sha256(from: &Path, copy: String) -> Result<(), TransferError> {
    if sha256_file(from)? != copy {
        return Err(TransferError::transient(format!(
            "sha256 check failed for {}",
            from.display()
        )));
    }
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String, TransferError> {
    sha256_of(File::open(path), path)
}

/// The sha256 of what `f` reads from where it is (`path` names it in
/// errors).
fn sha256_of(f: std::io::Result<File>, path: &Path) -> Result<String, TransferError> {
    let mut f = f.map_err(|e| TransferError::io(&format!("cannot open {}", path.display()), &e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| TransferError::io(&format!("cannot read {}", path.display()), &e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Makes a directory's entries durable (a rename into it, a file created).
fn sync_dir(dir: &Path) -> Result<(), TransferError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| TransferError::io(&format!("cannot sync {}", dir.display()), &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(root: &Path, path: &str, kind: ItemKind) -> Job {
        Job {
            root: root.to_path_buf(),
            path: path.into(),
            kind,
            excludes: Arc::new(globset::GlobSet::empty()),
            id: "00112233445566778899aabbccddeeff".into(),
            sig: String::new(),
            restarted: false,
        }
    }

    /// A file where the destination needs a folder (or a folder where it
    /// needs the file) fails this item for good, instead of being retried
    /// as if it could pass; the source stays.
    #[tokio::test]
    async fn a_destination_blocked_by_the_wrong_kind_is_this_items_problem() {
        let src = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dst = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let write = |p: PathBuf| {
            std::fs::create_dir_all(p.parent().unwrap_or(&p)).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(&p, b"frame").unwrap_or_else(|e| panic!("{e}"));
        };
        write(src.path().join("show/ep1.mxf"));
        write(src.path().join("clip.mxf"));
        write(dst.path().join("show")); // a file where the folder goes
        std::fs::create_dir(dst.path().join("clip.mxf")).unwrap_or_else(|e| panic!("{e}"));
        // With flushes through a part; without, through an unnamed file.
        for fsync in [true, false] {
            let backend = LocalBackend::new(dst.path().to_path_buf(), false, fsync, None);
            for path in ["show/ep1.mxf", "clip.mxf"] {
                let e = match deliver(&backend, &job(src.path(), path, ItemKind::File)).await {
                    Ok(()) => panic!("{path}: sent over the wrong kind of entry"),
                    Err(e) => e,
                };
                assert!(e.permanent && e.item_only, "{path} (fsync {fsync}): {e:?}");
                assert!(src.path().join(path).is_file(), "{path}: source gone");
            }
        }
        assert!(dst.path().join("show").is_file());
        assert!(dst.path().join("clip.mxf").is_dir());
        let left: Vec<_> = std::fs::read_dir(dst.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 2, "a temporary copy was left: {left:?}");
    }

    /// What an earlier attempt of the same transfer left at its temporary
    /// name (a partial file, or a partial tree) never ends up in the copy.
    #[tokio::test]
    async fn a_part_left_by_an_earlier_attempt_is_replaced() {
        let src = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dst = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(src.path().join("a.dpx"), b"frame").unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(src.path().join("asset")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(src.path().join("asset/b.mxf"), b"b").unwrap_or_else(|e| panic!("{e}"));
        let backend = LocalBackend::new(dst.path().to_path_buf(), false, false, None);
        for (path, kind) in [("a.dpx", ItemKind::File), ("asset", ItemKind::Dir)] {
            // Only a crash leaves a part behind: the next attempt is one
            // after a restart.
            let job = Job {
                restarted: true,
                ..job(src.path(), path, kind)
            };
            let part = dst.path().join(part_name(path, &job.id));
            std::fs::create_dir_all(part.join("stale")).unwrap_or_else(|e| panic!("{e}"));
            deliver(&backend, &job)
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(!part.exists(), "{path}: the old part is still there");
            assert!(!dst.path().join(path).join("stale").exists(), "{path}");
        }
        assert_eq!(
            std::fs::read(dst.path().join("a.dpx")).unwrap_or_default(),
            b"frame"
        );
        assert_eq!(
            std::fs::read(dst.path().join("asset/b.mxf")).unwrap_or_default(),
            b"b"
        );
    }

    /// Without flushes (an unnamed copy linked in place, where the file
    /// system has them) no temporary name is left after the send, a file
    /// already there is replaced (even with a stale part at the part's
    /// name), and a sha256-verified copy arrives whole.
    #[tokio::test]
    async fn without_fsync_a_file_appears_whole_and_replaces_the_one_there() {
        let src = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dst = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let out = dst.path().join("new/dir");
        let backend = LocalBackend::new(out.clone(), true, false, None);
        let job = job(src.path(), "a.dpx", ItemKind::File);
        for (round, body) in [b"frame 1", b"frame 2", b"frame 3"].into_iter().enumerate() {
            std::fs::write(src.path().join("a.dpx"), body).unwrap_or_else(|e| panic!("{e}"));
            if round == 2 {
                let stale = out.join(part_name("a.dpx", &job.id));
                std::fs::write(&stale, b"stale").unwrap_or_else(|e| panic!("{e}"));
            }
            let sent = backend
                .send(&job, Arc::default())
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(sent.bytes, 7, "round {round}");
            assert_eq!(names(&out), ["a.dpx"], "round {round}: before the settle");
            backend
                .settle(&sent)
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(
                std::fs::read(out.join("a.dpx")).unwrap_or_default(),
                body,
                "round {round}"
            );
        }
    }

    /// The names in `d`, sorted (none when it is missing).
    fn names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// What the engine does: send, then settle.
    async fn deliver(backend: &LocalBackend, job: &Job) -> Result<(), TransferError> {
        let sent = backend.send(job, Arc::default()).await?;
        backend.settle(&sent).await
    }

    /// With `fsync` on, a file reaches its final name only when settled,
    /// flushed first; an abandoned one leaves nothing behind.
    #[tokio::test]
    async fn a_file_takes_its_final_name_when_settled_and_an_abandoned_one_leaves_nothing() {
        let src = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dst = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(src.path().join("a.dpx"), b"frame").unwrap_or_else(|e| panic!("{e}"));
        let backend = LocalBackend::new(dst.path().join("new/dir"), false, true, None);
        let job = job(src.path(), "a.dpx", ItemKind::File);
        let sent = backend
            .send(&job, Arc::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let out = dst.path().join("new/dir");
        assert_eq!(names(&out), [part_name("a.dpx", &job.id)]);
        backend
            .settle(&sent)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(names(&out), ["a.dpx"]);
        assert_eq!(
            std::fs::read(out.join("a.dpx")).unwrap_or_default(),
            b"frame"
        );

        std::fs::remove_file(out.join("a.dpx")).unwrap_or_else(|e| panic!("{e}"));
        let sent = backend
            .send(&job, Arc::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        backend.abandon(&sent).await;
        assert!(names(&out).is_empty(), "{:?}", names(&out));
    }
}
