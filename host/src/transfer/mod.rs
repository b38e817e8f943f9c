//! Transfer backends behind one trait: each streams from disk, reports
//! progress, honours a rate limit, can be cancelled, and verifies the result
//! before it says the item was sent. The engine removes the source only
//! after that.

pub mod aspera;
pub mod ftp;
pub mod local;
mod rate;
mod read_ahead;
pub mod s3;
pub mod sftp;
pub mod webdav;

use crate::actions::ItemKind;
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
}

impl Job {
    pub fn source(&self) -> PathBuf {
        self.root.join(&self.path)
    }
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
    pub message: String,
}

impl TransferError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            permanent: false,
            cancelled: false,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            permanent: true,
            cancelled: false,
            message: message.into(),
        }
    }

    pub fn cancelled() -> Self {
        Self {
            permanent: false,
            cancelled: true,
            message: "cancelled".into(),
        }
    }

    /// Classifies an I/O error: permission problems are permanent.
    pub fn io(context: &str, e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let message = format!("{context}: {e}");
        match e.kind() {
            K::PermissionDenied | K::ReadOnlyFilesystem => Self::permanent(message),
            K::Interrupted if e.to_string().contains("cancelled") => Self::cancelled(),
            _ => Self::transient(message),
        }
    }
}

/// What a verified transfer sent.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub bytes: u64,
}

/// A way to send items somewhere.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Sends `job`, verifies it arrived whole, and returns what was sent.
    async fn send(&self, job: &Job, progress: Arc<Progress>) -> Result<Sent, TransferError>;

    /// Where items go, for logs (never contains a secret).
    fn describe(&self) -> String;
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
