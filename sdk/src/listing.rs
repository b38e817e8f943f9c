//! A directory read in pages ([`crate::Context::entries`]): the poller holds
//! one page at a time, so a folder of a million frames costs no more memory
//! than one of ten.

use crate::Entry;

/// The entries of one directory, in the order the file system gives them
/// (not sorted), hidden names included. Each item is an entry or the one
/// line of error that ended the listing.
pub struct Entries {
    source: Source,
    page: std::vec::IntoIter<Entry>,
    done: bool,
}

enum Source {
    /// The agent's `fs.open-dir` (inside the sandbox).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    Host(crate::glue::HostListing),
    /// `std::fs`, for native unit tests.
    #[cfg(not(target_arch = "wasm32"))]
    Native { dir: String, read: std::fs::ReadDir },
}

impl Entries {
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn host(dir: &str) -> Result<Self, String> {
        Ok(Self::new(Source::Host(crate::glue::HostListing::open(
            dir,
        )?)))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn native(dir: &str, read: std::fs::ReadDir) -> Self {
        Self::new(Source::Native {
            dir: dir.to_string(),
            read,
        })
    }

    fn new(source: Source) -> Self {
        Self {
            source,
            page: Vec::new().into_iter(),
            done: false,
        }
    }

    /// The next page, empty when the listing is done.
    fn next_page(&mut self) -> Result<Vec<Entry>, String> {
        match &mut self.source {
            Source::Host(listing) => listing.next_page(),
            #[cfg(not(target_arch = "wasm32"))]
            Source::Native { dir, read } => {
                let mut page = Vec::new();
                for item in read.by_ref().take(1024) {
                    let item = item.map_err(|e| format!("cannot list `{dir}`: {e}"))?;
                    // Vanished between readdir and stat: left out, as the host does.
                    let Ok(meta) = item.metadata() else { continue };
                    page.push(crate::context::native_entry(
                        item.file_name().to_string_lossy().into_owned(),
                        &meta,
                    ));
                }
                Ok(page)
            }
        }
    }
}

impl Iterator for Entries {
    type Item = Result<Entry, String>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.page.next() {
                return Some(Ok(e));
            }
            if self.done {
                return None;
            }
            match self.next_page() {
                Ok(page) if page.is_empty() => self.done = true,
                Ok(page) => self.page = page.into_iter(),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
