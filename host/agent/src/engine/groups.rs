//! Groups: transfers whose follow-ups (markers, a directory's removal) run
//! only once every one of them succeeded. A group is saved in the journal
//! while it is unfinished, so a restart resumes it, and its directories are
//! listed once more before the follow-ups: a marker that says "the delivery
//! is whole" is never created while a file that was not sent sits there.

use dispatch_runtime::actions::{FollowUp, Transfer};
use std::collections::BTreeSet;
use std::path::Path;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Group {
    /// Identifies the group as a poll returns it.
    #[serde(skip)]
    pub key: String,
    pub transfers: Vec<Transfer>,
    /// Transfers not yet succeeded.
    pub remaining: BTreeSet<String>,
    pub then: Vec<FollowUp>,
    /// When the group was made (journal time, ms): a restart counts the
    /// Completes recorded since then, which a crash may have kept from
    /// reaching `remaining`. `None` in a body saved by an older agent.
    #[serde(default)]
    pub since: Option<i64>,
    /// Returned by the latest poll.
    #[serde(skip)]
    pub seen: bool,
    /// Read back from the journal: its remaining transfers are wanted
    /// whether or not a poll returns them (the poll may no longer see the
    /// markers that made it, which were sent already).
    #[serde(skip)]
    pub restored: bool,
}

impl Group {
    pub fn new(transfers: Vec<Transfer>, then: Vec<FollowUp>) -> Self {
        Self {
            key: key(&transfers, &then),
            remaining: transfers.iter().map(|t| t.path.clone()).collect(),
            transfers,
            then,
            since: Some(crate::journal::now_ms()),
            seen: true,
            restored: false,
        }
    }

    /// A group as the journal saved it.
    pub fn restore(key: String, body: &str) -> Option<Self> {
        let mut g: Group = serde_json::from_str(body).ok()?;
        g.key = key;
        g.restored = true;
        g.seen = false;
        Some(g)
    }

    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The group's name for people: its transfers' common directory.
    pub fn label(&self) -> String {
        let dirs = self.dirs();
        match dirs.iter().next() {
            Some(d) if dirs.len() == 1 && !d.is_empty() => d.clone(),
            _ => self
                .transfers
                .first()
                .map_or_else(String::new, |t| t.path.clone()),
        }
    }

    /// The directories its transfers are in.
    fn dirs(&self) -> BTreeSet<String> {
        self.transfers
            .iter()
            .map(|t| t.path.rsplit_once('/').map_or("", |(d, _)| d).to_string())
            .collect()
    }

    /// What sits in the group's directories that the group did not send,
    /// now that all of it was sent: names of files added during the
    /// delivery, and names that are not UTF-8. Hidden names are left to
    /// the poller (pollers skip them unless `include_hidden`), and so are
    /// the agent's own temporary names, which are hidden.
    pub fn strangers(&self, root: &Path) -> Vec<String> {
        let sent: BTreeSet<&str> = self.transfers.iter().map(|t| t.path.as_str()).collect();
        let mut out = Vec::new();
        for dir in self.dirs() {
            let Ok(read) = std::fs::read_dir(root.join(&dir)) else {
                continue;
            };
            for entry in read.flatten() {
                let path = match entry.file_name().into_string() {
                    Ok(name) if name.starts_with('.') => continue,
                    Ok(name) => dispatch_runtime::confine::join(&dir, &name),
                    Err(raw) => dispatch_runtime::confine::join(&dir, &raw.to_string_lossy()),
                };
                if !sent.contains(path.as_str()) {
                    out.push(path);
                }
            }
        }
        out.sort();
        out
    }
}

fn key(transfers: &[Transfer], then: &[FollowUp]) -> String {
    format!("{transfers:?}{then:?}")
}
