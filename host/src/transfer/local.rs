//! `local`: copy into a destination directory, keeping the item's path
//! relative to the root. Each file is written under a temporary name
//! (`.<name>.dispatch-part`), synced (unless `fsync = false`), checked (size, and sha256 when asked),
//! then renamed: no half-written file ever carries the final name. A
//! directory is copied as a whole tree the same way, then moved into place.

use super::{Backend, Job, Progress, RateLimiter, Sent, TransferError};
use crate::actions::ItemKind;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes per copy step: progress, cancellation and the rate limit are
/// checked between steps.
const CHUNK: usize = 8 << 20;
/// Suffix of temporary names; an interrupted copy leaves at most this.
pub const PART_SUFFIX: &str = ".dispatch-part";

pub struct LocalBackend {
    destination: PathBuf,
    verify_sha256: bool,
    fsync: bool,
    rate: Option<Arc<RateLimiter>>,
}

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
        }
    }
}

#[async_trait::async_trait]
impl Backend for LocalBackend {
    async fn send(&self, job: &Job, progress: Arc<Progress>) -> Result<Sent, TransferError> {
        let job = job.clone();
        let dest = self.destination.clone();
        let verify = self.verify_sha256;
        let fsync = self.fsync;
        let rate = self.rate.clone();
        // The copy is blocking I/O; it checks `progress` for cancellation.
        tokio::task::spawn_blocking(move || {
            let copier = Copier {
                rate: rate.as_deref(),
                progress: &progress,
                verify,
                fsync,
            };
            match job.kind {
                ItemKind::File => copier.file_item(&job, &dest),
                ItemKind::Dir => copier.dir_item(&job, &dest),
            }
        })
        .await
        .map_err(|e| TransferError::transient(format!("copy task failed: {e}")))?
    }

    fn describe(&self) -> String {
        format!("local:{}", self.destination.display())
    }
}

struct Copier<'a> {
    rate: Option<&'a RateLimiter>,
    progress: &'a Progress,
    verify: bool,
    fsync: bool,
}

impl Copier<'_> {
    fn file_item(&self, job: &Job, dest_root: &Path) -> Result<Sent, TransferError> {
        let src = job.source();
        let dst = dest_root.join(&job.path);
        let parent = create_parent(&dst)?;
        let tmp = part_name(&dst);
        let bytes = self.copy_file(&src, &tmp)?;
        std::fs::rename(&tmp, &dst).map_err(|e| {
            TransferError::io(&format!("cannot rename {} into place", tmp.display()), &e)
        })?;
        if self.fsync {
            sync_dir(parent);
        }
        Ok(Sent { bytes })
    }

    fn dir_item(&self, job: &Job, dest_root: &Path) -> Result<Sent, TransferError> {
        let src = job.source();
        let dst = dest_root.join(&job.path);
        let parent = create_parent(&dst)?;
        let tmp = part_name(&dst);
        if tmp.exists() {
            // Left by an interrupted attempt.
            std::fs::remove_dir_all(&tmp)
                .map_err(|e| TransferError::io(&format!("cannot clear {}", tmp.display()), &e))?;
        }
        let mut files = Vec::new();
        let bytes = self.copy_tree(job, &src, &tmp, &mut files)?;
        if dst.exists() {
            // Merge into an existing directory, file by file (each rename is
            // atomic), then drop the temporary tree.
            for rel in &files {
                let to = dst.join(rel);
                if let Some(p) = to.parent() {
                    std::fs::create_dir_all(p).map_err(|e| {
                        TransferError::io(&format!("cannot create {}", p.display()), &e)
                    })?;
                }
                std::fs::rename(tmp.join(rel), &to).map_err(|e| {
                    TransferError::io(&format!("cannot move {} into place", to.display()), &e)
                })?;
            }
            std::fs::remove_dir_all(&tmp)
                .map_err(|e| TransferError::io(&format!("cannot clear {}", tmp.display()), &e))?;
        } else {
            std::fs::rename(&tmp, &dst).map_err(|e| {
                TransferError::io(&format!("cannot rename {} into place", tmp.display()), &e)
            })?;
        }
        if self.fsync {
            sync_dir(parent);
        }
        Ok(Sent { bytes })
    }

    /// Copies the tree `src` to `dst` (which must not exist), skipping
    /// excluded names and symlinks (which could lead out of the root).
    fn copy_tree(
        &self,
        job: &Job,
        src: &Path,
        dst: &Path,
        files: &mut Vec<PathBuf>,
    ) -> Result<u64, TransferError> {
        let mut bytes = 0;
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let from = src.join(&rel);
            let to = dst.join(&rel);
            std::fs::create_dir_all(&to)
                .map_err(|e| TransferError::io(&format!("cannot create {}", to.display()), &e))?;
            let entries = std::fs::read_dir(&from)
                .map_err(|e| TransferError::io(&format!("cannot list {}", from.display()), &e))?;
            for entry in entries {
                let entry = entry.map_err(|e| {
                    TransferError::io(&format!("cannot list {}", from.display()), &e)
                })?;
                let name = entry.file_name();
                if job.excludes.is_match(Path::new(&name)) {
                    continue;
                }
                let ft = entry.file_type().map_err(|e| {
                    TransferError::io(&format!("cannot stat {}", entry.path().display()), &e)
                })?;
                let child = rel.join(&name);
                if ft.is_dir() {
                    stack.push(child);
                } else if ft.is_file() {
                    bytes += self.copy_file(&src.join(&child), &dst.join(&child))?;
                    files.push(child);
                } else {
                    tracing::warn!(path = %entry.path().display(), "not a regular file or directory: not sent");
                }
            }
        }
        Ok(bytes)
    }

    /// Copies one file to `to` (created or truncated), syncs it, verifies it.
    fn copy_file(&self, from: &Path, to: &Path) -> Result<u64, TransferError> {
        let mut src = File::open(from)
            .map_err(|e| TransferError::io(&format!("cannot open {}", from.display()), &e))?;
        let expected = src
            .metadata()
            .map_err(|e| TransferError::io(&format!("cannot stat {}", from.display()), &e))?
            .len();
        let mut dst = File::create(to)
            .map_err(|e| TransferError::io(&format!("cannot create {}", to.display()), &e))?;
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
                match rustix::fs::copy_file_range(&src, None, &dst, None, chunk) {
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
        if self.fsync {
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
        if self.verify {
            let (a, b) = (sha256_file(from)?, sha256_file(to)?);
            if a != b {
                return Err(TransferError::transient(format!(
                    "sha256 check failed for {}",
                    from.display()
                )));
            }
        }
        Ok(copied)
    }
}

/// Creates the directory `dst` goes into, and returns it.
fn create_parent(dst: &Path) -> Result<&Path, TransferError> {
    let parent = dst
        .parent()
        .ok_or_else(|| TransferError::permanent(format!("no parent for {}", dst.display())))?;
    std::fs::create_dir_all(parent)
        .map_err(|e| TransferError::io(&format!("cannot create {}", parent.display()), &e))?;
    Ok(parent)
}

fn part_name(dst: &Path) -> PathBuf {
    let name = dst
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dst.with_file_name(format!(".{name}{PART_SUFFIX}"))
}

fn sha256_file(path: &Path) -> Result<String, TransferError> {
    let mut f = File::open(path)
        .map_err(|e| TransferError::io(&format!("cannot open {}", path.display()), &e))?;
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

/// Makes a rename durable; failure only weakens crash safety, so it is
/// logged, not fatal.
fn sync_dir(dir: &Path) {
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(dir = %dir.display(), "cannot sync directory: {e}");
    }
}
