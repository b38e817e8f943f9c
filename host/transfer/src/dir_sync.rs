//! Directory fsyncs shared by concurrent transfers (group commit): a
//! transfer that renamed a file into a directory needs one fsync of that
//! directory that *started after* its rename. When several transfers land
//! files in the same directory at once, one fsync serves all of them
//! instead of each paying its own, which is most of the cost of many small
//! files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// The directories being synced, each with who waits for it.
#[derive(Default)]
pub struct DirSyncs {
    dirs: Mutex<HashMap<PathBuf, Arc<DirSync>>>,
}

#[derive(Default)]
struct DirSync {
    state: Mutex<SyncState>,
    finished: Condvar,
}

#[derive(Default)]
struct SyncState {
    /// Tickets handed out: one per request, in order.
    requested: u64,
    /// Every ticket up to this one is covered by a finished fsync.
    synced: u64,
    running: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DirSyncs {
    /// Returns once an fsync of `dir` that started after this call has
    /// succeeded (its own, or one made for another caller meanwhile).
    /// Blocking: call it from a blocking thread.
    pub fn sync(&self, dir: &Path) -> std::io::Result<()> {
        let entry = lock(&self.dirs)
            .entry(dir.to_path_buf())
            .or_default()
            .clone();
        let result = entry.sync(dir);
        let mut dirs = lock(&self.dirs);
        // Only the map and this caller hold it: nobody waits, forget it.
        if Arc::strong_count(&entry) == 2 {
            dirs.remove(dir);
        }
        result
    }
}

impl DirSync {
    fn sync(&self, dir: &Path) -> std::io::Result<()> {
        let mut st = lock(&self.state);
        st.requested += 1;
        let ticket = st.requested;
        loop {
            if st.synced >= ticket {
                return Ok(());
            }
            if st.running {
                st = self
                    .finished
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // This fsync starts after every request made so far.
            st.running = true;
            let covers = st.requested;
            drop(st);
            let result = std::fs::File::open(dir).and_then(|d| d.sync_all());
            st = lock(&self.state);
            st.running = false;
            if result.is_ok() {
                st.synced = st.synced.max(covers);
            }
            self.finished.notify_all();
            // On failure the others try for themselves (and see their own
            // error): none is told its rename is durable when it is not.
            result?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_requests_share_fsyncs_and_all_return() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let syncs = Arc::new(DirSyncs::default());
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (syncs, dir) = (syncs.clone(), dir.path().to_path_buf());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        syncs.sync(&dir).unwrap_or_else(|e| panic!("{e}"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join()
                .unwrap_or_else(|_| panic!("a syncing thread panicked"));
        }
        assert!(
            lock(&syncs.dirs).is_empty(),
            "finished entries are forgotten"
        );
    }

    #[test]
    fn a_directory_that_cannot_be_opened_is_an_error_for_its_caller() {
        let syncs = DirSyncs::default();
        let err = syncs
            .sync(Path::new("/nonexistent/dispatch-dir-sync"))
            .err()
            .unwrap_or_else(|| panic!("syncing a missing directory succeeded"));
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
