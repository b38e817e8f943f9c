//! What a plugin may read of its root (the `fs` import): listings, whole or
//! in pages, `stat`, and small files. Every path is confined to the root
//! (`confine`); what is listed is noted so the poll's actions resolve
//! cheaply.

use crate::bindings::latest::{fs, types};
use crate::confine::{self, Root};
use crate::sandbox::PollState;
use std::io::Read as _;
use std::time::UNIX_EPOCH;
use wasmtime::component::Resource;

/// Most entries one `listing.next` gives, whatever the plugin asks.
pub const PAGE_MAX: u32 = 4096;
/// Most bytes one `read-file` gives (a manifest, a sidecar: not media).
pub const READ_FILE_MAX: u64 = 1 << 20;
/// Most bytes `read-file` gives in one poll, so a plugin reading in a loop
/// cannot keep the agent's disk busy.
pub const READ_PER_POLL: u64 = 8 << 20;
/// Listings a poll may hold open at once (each holds a file descriptor).
const OPEN_LISTINGS_MAX: usize = 64;

/// A directory being read in pages (the `listing` resource).
pub struct Listing {
    /// The directory, relative to the root in normal form.
    dir: String,
    read: std::fs::ReadDir,
}

fn entry(name: String, meta: &std::fs::Metadata) -> types::Entry {
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        types::EntryKind::Symlink
    } else if ft.is_file() {
        types::EntryKind::File
    } else if ft.is_dir() {
        types::EntryKind::Dir
    } else {
        types::EntryKind::Other
    };
    let mtime_ms = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    types::Entry {
        name,
        kind,
        size: if ft.is_dir() { 0 } else { meta.len() },
        mtime_ms,
    }
}

impl PollState {
    /// Opens the directory `path` for reading; errors are one line.
    fn open_listing(&self, path: &str) -> Result<Listing, String> {
        let root = self.root()?;
        let dir = confine::normalize(path).map_err(|e| e.to_string())?;
        let abs = root.resolve(&dir).map_err(|e| e.to_string())?;
        let read = std::fs::read_dir(&abs).map_err(|e| format!("cannot list `{path}`: {e}"))?;
        Ok(Listing { dir, read })
    }

    /// Up to `max` entries of `listing`, noted in the root: names that are
    /// not UTF-8 are left out (and reported), entries that vanished too.
    fn read_page(
        mut root: Option<&mut Root>,
        unreadable: &mut Vec<String>,
        plugin: &str,
        listing: &mut Listing,
        max: usize,
    ) -> Result<Vec<types::Entry>, String> {
        let dir = &listing.dir;
        let mut out = Vec::new();
        while out.len() < max {
            let Some(item) = listing.read.next() else {
                break;
            };
            let item = item.map_err(|e| format!("cannot list `{dir}`: {e}"))?;
            let name = match item.file_name().into_string() {
                Ok(name) => name,
                Err(raw) => {
                    tracing::debug!(%plugin, %dir, "skipping a name that is not UTF-8");
                    unreadable.push(confine::join(dir, &raw.to_string_lossy()));
                    continue;
                }
            };
            // Vanished between readdir and stat: leave it out.
            let Ok(meta) = item.metadata() else { continue };
            let e = entry(name, &meta);
            if let Some(root) = root.as_deref_mut() {
                let rel = confine::join(dir, &e.name);
                match e.kind {
                    types::EntryKind::Dir => root.note_dir(rel),
                    types::EntryKind::Symlink => {}
                    types::EntryKind::File | types::EntryKind::Other => root.note_entry(rel, meta),
                }
            }
            out.push(e);
        }
        Ok(out)
    }

    /// Up to `max` entries of the open listing `res`.
    fn page(&mut self, res: &Resource<Listing>, max: usize) -> Result<Vec<types::Entry>, String> {
        let listing = self
            .table
            .get_mut(res)
            .map_err(|e| format!("the listing is gone: {e}"))?;
        Self::read_page(
            self.root.as_mut(),
            &mut self.unreadable,
            &self.plugin,
            listing,
            max,
        )
    }

    /// `read-file`: the whole file, bounded, opened so that the kernel
    /// keeps the resolution beneath the root (no symlink out, no `..`).
    fn read_small_file(&mut self, path: &str, max_bytes: u32) -> Result<Vec<u8>, String> {
        let root = self.root()?;
        let rel = confine::normalize(path).map_err(|e| e.to_string())?;
        if rel.is_empty() {
            return Err(format!("cannot read `{path}`: it is the root, a directory"));
        }
        let bound = u64::from(max_bytes).min(READ_FILE_MAX);
        let left = READ_PER_POLL.saturating_sub(self.read_bytes);
        if left == 0 {
            return Err(format!(
                "cannot read `{path}`: this poll has read {READ_PER_POLL} bytes, the most one poll may read"
            ));
        }
        let dir = root
            .dir_fd()
            .map_err(|e| format!("cannot read `{path}`: cannot open the root: {e}"))?;
        let file = open_beneath(dir, &rel).map_err(|e| match e {
            rustix::io::Errno::XDEV | rustix::io::Errno::LOOP => {
                format!("cannot read `{path}`: it leads outside the root")
            }
            rustix::io::Errno::NOENT => format!("cannot read `{path}`: no such file"),
            e => format!("cannot read `{path}`: {}", std::io::Error::from(e)),
        })?;
        let mut file = std::fs::File::from(file);
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read `{path}`: {e}"))?;
        if meta.is_dir() {
            return Err(format!("cannot read `{path}`: it is a directory"));
        }
        if !meta.is_file() {
            return Err(format!("cannot read `{path}`: it is not a regular file"));
        }
        let too_big = |size: u64| {
            format!("cannot read `{path}`: it is {size} bytes, over the bound of {bound} bytes")
        };
        if meta.len() > bound {
            return Err(too_big(meta.len()));
        }
        let mut bytes = Vec::new();
        // One byte over the bound tells a file that grew since the stat.
        (&mut file)
            .take(bound + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read `{path}`: {e}"))?;
        let read = bytes.len() as u64;
        if read > bound {
            return Err(too_big(read));
        }
        if read > left {
            return Err(format!(
                "cannot read `{path}`: its {read} bytes would take this poll over the {READ_PER_POLL} bytes one poll may read"
            ));
        }
        self.read_bytes += read;
        Ok(bytes)
    }
}

/// Opens `rel` under the root directory `dir`, read-only, with `RESOLVE_BENEATH`: a symlink or
/// `..` that leads out fails with `EXDEV`; a fifo does not block the poll.
fn open_beneath(
    dir: std::os::fd::BorrowedFd<'_>,
    rel: &str,
) -> rustix::io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    rustix::fs::openat2(
        dir,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )
}

impl fs::Host for PollState {
    fn open_dir(&mut self, path: String) -> Result<Resource<Listing>, String> {
        let listing = self.open_listing(&path)?;
        if self.open_listings >= OPEN_LISTINGS_MAX {
            return Err(format!(
                "cannot list `{path}`: {OPEN_LISTINGS_MAX} listings are open in this poll, the most it may hold"
            ));
        }
        let res = self
            .table
            .push(listing)
            .map_err(|e| format!("cannot list `{path}`: {e}"))?;
        self.open_listings += 1;
        Ok(res)
    }

    fn list_dir(&mut self, path: String) -> Result<Vec<types::Entry>, String> {
        let listing = self.open_listing(&path)?;
        let res = self
            .table
            .push(listing)
            .map_err(|e| format!("cannot list `{path}`: {e}"))?;
        let out = self.page(&res, usize::MAX);
        // Closed whatever the page gave.
        let _ = self.table.delete(res);
        let mut out = out?;
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn stat(&mut self, path: String) -> Result<Option<types::Entry>, String> {
        let root = self.root()?;
        let abs = root.resolve(&path).map_err(|e| e.to_string())?;
        match std::fs::metadata(&abs) {
            Ok(meta) => {
                let name = abs
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Ok(Some(entry(name, &meta)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot stat `{path}`: {e}")),
        }
    }

    fn read_file(&mut self, path: String, max_bytes: u32) -> Result<Vec<u8>, String> {
        self.read_small_file(&path, max_bytes)
    }
}

impl fs::HostListing for PollState {
    fn next(&mut self, this: Resource<Listing>, max: u32) -> Result<Vec<types::Entry>, String> {
        let max = usize::try_from(max.clamp(1, PAGE_MAX)).unwrap_or(1);
        self.page(&this, max)
    }

    fn drop(&mut self, this: Resource<Listing>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        self.open_listings = self.open_listings.saturating_sub(1);
        Ok(())
    }
}
