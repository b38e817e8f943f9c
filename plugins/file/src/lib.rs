//! FilePoller: every regular file directly in the root, one transfer each.
//! Never directories, never recursion.
//!
//! The root is read in pages and at most [`MAX_PER_POLL`] files (the first
//! by name) are returned per poll, so a folder of a million frames polls in
//! bounded memory: the rest follow as the first are sent and removed.

use dispatch_poller_sdk::{
    Action, Context, EntryKind, Info, Level, ParamSpec, Poller, export_poller,
};
use std::collections::BinaryHeap;

/// Files returned per poll, at most.
pub const MAX_PER_POLL: usize = 10_000;

pub struct FilePoller;

impl Poller for FilePoller {
    fn describe() -> Info {
        Info::new(
            "file",
            env!("CARGO_PKG_VERSION"),
            "Sends each file directly in the root; never directories, never recursion.",
        )
        .param(ParamSpec::include_hidden())
    }

    fn poll(ctx: &Context) -> Result<Vec<Action>, String> {
        // A max-heap of the smallest names seen: its top is the one to drop.
        let mut first: BinaryHeap<String> = BinaryHeap::new();
        let mut more = 0usize;
        for e in ctx.entries("")? {
            let e = e?;
            if e.kind != EntryKind::File || (!ctx.include_hidden() && e.is_hidden()) {
                continue;
            }
            if first.len() < MAX_PER_POLL {
                first.push(e.name);
            } else if first.peek().is_some_and(|top| e.name < *top) {
                first.pop();
                first.push(e.name);
                more += 1;
            } else {
                more += 1;
            }
        }
        if more > 0 {
            ctx.log(
                Level::Info,
                &format!("{more} more files wait for the next polls ({MAX_PER_POLL} per poll)"),
            );
        }
        Ok(first
            .into_sorted_vec()
            .into_iter()
            .map(Action::transfer_file)
            .collect())
    }
}

export_poller!(FilePoller);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use dispatch_poller_sdk::testing;

    #[test]
    fn a_huge_folder_gives_the_first_files_by_name_each_poll() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..MAX_PER_POLL + 5 {
            std::fs::write(dir.path().join(format!("f{i:06}.dpx")), b"").unwrap();
        }
        std::fs::write(dir.path().join(".a.part"), b"").unwrap();
        std::fs::create_dir(dir.path().join("a-dir")).unwrap();
        let actions = testing::poll::<FilePoller>(dir.path(), &[]).unwrap();
        let want: Vec<Action> = (0..MAX_PER_POLL)
            .map(|i| Action::transfer_file(format!("f{i:06}.dpx")))
            .collect();
        assert_eq!(actions, want);
    }
}
