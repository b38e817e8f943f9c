//! Transfer backends behind one trait: each streams from disk, reports
//! progress, honours a rate limit, can be cancelled, and verifies the result
//! before it says the item was sent. The engine removes the source only
//! after that.

pub mod aspera;
pub mod beneath;
mod dir_sync;
pub mod ftp;
pub mod local;
mod rate;
mod read_ahead;
pub mod s3;
pub mod sftp;
pub mod stability;
pub mod testhook;
pub mod tree;
pub mod webdav;

use dispatch_runtime::actions::ItemKind;
use globset::GlobSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_util::sync::CancellationToken;

pub use rate::RateLimiter;

/// One item to send.
#[derive(Debug, Clone)]
pub struct Job {
    /// The poller's root (canonical).
    pub root: PathBuf,
    /// The item's path relative to the root, `/`-separated.
    pub path: String,
    pub kind: ItemKind,
    /// File names never sent (inside directory transfers).
    pub excludes: Arc<GlobSet>,
    /// The transfer's id: the same over every attempt and restart, unique
    /// to this transfer (temporary names are made from it).
    pub id: String,
    /// The item's stability signature when it was queued; a backend that
    /// moves a whole tree into place checks it once more before the move.
    pub sig: String,
    /// A restart left this transfer in flight: what its attempt before the
    /// restart wrote may still be at its temporary names.
    pub restarted: bool,
}

impl Job {
    pub fn source(&self) -> PathBuf {
        self.root.join(&self.path)
    }

    /// The root opened for reads that never leave it (see [`beneath`]).
    pub fn beneath(&self) -> Result<beneath::Beneath, TransferError> {
        beneath::Beneath::open(&self.root).map_err(|e| TransferError::io("the poller's root", &e))
    }

    /// Opens `path` (the item or a file of its tree) to read, beneath the
    /// root: a folder swapped for a symlink out of it since the poll fails.
    pub fn open_source(&self, path: &std::path::Path) -> Result<std::fs::File, TransferError> {
        self.beneath()?
            .file(path)
            .map_err(|e| TransferError::io(&format!("cannot open {}", path.display()), &e))
    }
}

/// Suffix of temporary names; an interrupted transfer leaves at most these.
pub const PART_SUFFIX: &str = ".dispatch-part";

/// The temporary name an item's file is written under before its final
/// rename: `.<name, cut to 64 bytes>.<16 hex of the transfer id>.dispatch-part`.
/// Unique per transfer, so two transfers of the same name never share one
/// (and the same transfer finds its own again when it resumes), and at most
/// 96 bytes whatever the name's length (file names stop at 255).
pub fn part_name(name: &str, transfer_id: &str) -> String {
    let mut cut = name.len().min(64);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let id: String = transfer_id.chars().take(16).collect();
    format!(".{}.{id}{PART_SUFFIX}", &name[..cut])
}

/// Shared between a running transfer and the engine.
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    pub cancel: CancellationToken,
}

impl Progress {
    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    pub fn bytes_done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

/// Why a transfer failed. Permanent failures (authentication, permission)
/// are retried only after the longest backoff; the others with backoff.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TransferError {
    pub permanent: bool,
    pub cancelled: bool,
    /// Only this item can never go as it is (a name too long for the
    /// destination): it is not retried until it changes, and it does not
    /// count toward the poller's breaker.
    pub item_only: bool,
    pub message: String,
}

impl TransferError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            permanent: false,
            cancelled: false,
            item_only: false,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            permanent: true,
            ..Self::transient(message)
        }
    }

    /// Permanent for this item alone (see `item_only`).
    pub fn item_only(message: impl Into<String>) -> Self {
        Self {
            permanent: true,
            item_only: true,
            ..Self::transient(message)
        }
    }

    pub fn cancelled() -> Self {
        Self {
            cancelled: true,
            ..Self::transient("cancelled")
        }
    }

    /// Classifies an I/O error: permission problems are permanent.
    pub fn io(context: &str, e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let message = format!("{context}: {e}");
        if beneath::is_refused(e) {
            // Only this item leads out of the root; the target is fine.
            return Self::item_only(message);
        }
        match e.kind() {
            K::PermissionDenied | K::ReadOnlyFilesystem => Self::permanent(message),
            K::InvalidFilename => Self::item_only(message),
            K::Interrupted if e.to_string().contains("cancelled") => Self::cancelled(),
            _ => Self::transient(message),
        }
    }
}

/// What a verified transfer sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub bytes: u64,
    /// What [`Backend::settle`] still has to do (a local copy's flush,
    /// final rename and directory syncs).
    unsettled: Unsettled,
}

/// The durable end of a local copy, left for [`Backend::settle`]: the
/// sending slot is given up before it, since with many small files these
/// fsyncs are most of the time, and concurrent transfers share them.
#[derive(Debug, Clone, Default)]
struct Unsettled {
    /// A file written and checked under its temporary name, to flush and
    /// rename to its final one: `(temporary, final)`.
    rename: Option<(PathBuf, PathBuf)>,
    /// Directories whose entries changed (the final rename, folders
    /// created for it), deepest first, to sync after the rename.
    dirs: Vec<PathBuf>,
}

impl Sent {
    /// `bytes` sent, with nothing left to settle.
    pub fn of(bytes: u64) -> Self {
        Self {
            bytes,
            unsettled: Unsettled::default(),
        }
    }
}

/// A way to send items somewhere.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Sends `job`, verifies it arrived whole, and returns what was sent.
    async fn send(&self, job: &Job, progress: Arc<Progress>) -> Result<Sent, TransferError>;

    /// Sends several small files in a row, one result per job in order:
    /// a backend whose cost per small item is mostly fixed (a local copy's
    /// hop to a blocking thread and back) does them in one go. The
    /// default sends them one by one.
    async fn send_batch(&self, jobs: &[(Job, Arc<Progress>)]) -> Vec<Result<Sent, TransferError>> {
        let mut out = Vec::with_capacity(jobs.len());
        for (job, progress) in jobs {
            out.push(self.send(job, progress.clone()).await);
        }
        out
    }

    /// How many small files one [`Backend::send_batch`] takes at most; 1
    /// (the default) means each item is sent on its own.
    fn batch_limit(&self) -> usize {
        1
    }

    /// Where items go, for logs (never contains a secret).
    fn describe(&self) -> String;

    /// Finishes what `send` left to do, to make the item durable at its
    /// final name (a local copy's flush, rename and directory syncs).
    /// Called after the transfer gave up its slot, so the next sends run
    /// meanwhile, and before anything relies on the item being there (its
    /// Complete record, the source's removal). On an error nothing is left
    /// at a temporary name, and the item is sent again.
    async fn settle(&self, _sent: &Sent) -> Result<(), TransferError> {
        Ok(())
    }

    /// [`Backend::settle`] for the items of one batch, a result for each
    /// in order. The default settles them one by one, at once.
    async fn settle_batch(&self, sent: &[&Sent]) -> Vec<Result<(), TransferError>> {
        futures_util::future::join_all(sent.iter().map(|s| self.settle(s))).await
    }

    /// Drops what `send` left for `settle`, when the item is not to be
    /// settled after all (its source changed while it was sent).
    async fn abandon(&self, _sent: &Sent) {}

    /// Drops what an attempt of `job` that a crash interrupted left at the
    /// destination (its temporary name), when `job` is not sent again
    /// under the same id (its source changed or vanished meanwhile).
    async fn discard(&self, _job: &Job) {}

    /// Whether `job`'s item is already at the destination, whole: asked
    /// after a restart about a transfer that was in flight, since a crash
    /// between the final rename and the Complete record leaves it there.
    /// `None` when this backend cannot tell (the item is sent again).
    async fn delivered(&self, _job: &Job) -> Option<bool> {
        None
    }
}

/// Bytes in a file, or in every file of a tree (symlinks not followed).
pub fn item_size(path: &std::path::Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| item_size(&e.path())).sum())
        .unwrap_or(0)
}

/// The backend for `target`. `state_dir` keeps what outlives a process
/// (unfinished S3 uploads). The error names the setting at fault.
pub fn backend_for(
    target: &dispatch_protocol::Target,
    state_dir: &std::path::Path,
) -> Result<Arc<dyn Backend>, dispatch_protocol::FieldError> {
    use dispatch_protocol::{FieldError, Target};
    let limiter = |r: Option<f64>| r.map(|r| Arc::new(RateLimiter::mbps(r)));
    let at = |field: &'static str| move |e: String| FieldError::new(field, e);
    Ok(match target {
        Target::Local(t) => Arc::new(local::LocalBackend::new(
            t.destination.clone(),
            t.verify_sha256,
            t.fsync,
            limiter(t.rate_limit_mbps),
        )),
        Target::Aspera(a) => Arc::new(aspera::AsperaBackend::new(a.clone())),
        Target::Webdav(w) => {
            Arc::new(webdav::WebdavBackend::new(w, limiter(w.rate_limit_mbps)).map_err(at("url"))?)
        }
        Target::Sftp(s) => {
            Arc::new(sftp::SftpBackend::new(s, limiter(s.rate_limit_mbps)).map_err(at(""))?)
        }
        Target::S3(s) => Arc::new(
            s3::S3Backend::new(s, limiter(s.rate_limit_mbps), state_dir.join("s3-uploads"))
                .map_err(at("endpoint"))?,
        ),
        Target::Ftp(f) => {
            Arc::new(ftp::FtpBackend::new(f, limiter(f.rate_limit_mbps)).map_err(at("ca_file"))?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::part_name;

    #[test]
    fn part_names_are_unique_per_transfer_and_short() {
        let a = part_name("clip.mxf", "00112233445566778899aabbccddeeff");
        let b = part_name("clip.mxf", "ffeeddccbbaa99887766554433221100");
        assert_eq!(a, ".clip.mxf.0011223344556677.dispatch-part");
        assert_ne!(a, b);
        let long = "é".repeat(120);
        let p = part_name(&long, "0011223344556677");
        assert!(p.len() <= 96, "{}", p.len());
        assert!(p.starts_with(&format!(".{}", "é".repeat(32))));
    }
}
