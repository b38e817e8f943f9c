//! File-system events: each poller's root is watched (recursively) and any
//! event that may be news asks that poller for a poll. Roots that cannot be
//! watched rely on the periodic rescan.

mod tree;

use super::poller::Poller;
use super::removal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use tree::{Change, Kind, Trees};

type Routes = Arc<Mutex<Vec<(PathBuf, Weak<Poller>)>>>;

pub(super) struct Watcher {
    routes: Routes,
    trees: Option<Trees>,
}

impl Watcher {
    pub fn new() -> Self {
        let routes: Routes = Arc::default();
        let to = routes.clone();
        let trees = Trees::start(move |changes: &[Change]| {
            // One poll request per poller and batch, whatever its size.
            let routes: Vec<(PathBuf, Weak<Poller>)> = super::lock(&to).clone();
            for (root, p) in &routes {
                if let Some(news) = changes.iter().find(|c| is_news(c, root))
                    && let Some(p) = p.upgrade()
                {
                    tracing::trace!(poller = %p.name(), ?news, "file-system event: a poll asked for");
                    p.request_poll();
                }
            }
        })
        .map_err(|e| tracing::warn!("file-system events unavailable, relying on the rescan: {e}"))
        .ok();
        Self { routes, trees }
    }

    fn root_of(p: &Poller) -> PathBuf {
        p.root()
            .canonicalize()
            .unwrap_or_else(|_| p.root().to_path_buf())
    }

    pub fn add(&self, p: &Arc<Poller>) {
        let root = Self::root_of(p);
        if let Some(trees) = &self.trees
            && let Err(e) = trees.watch(&root)
        {
            tracing::warn!(poller = %p.name(), "cannot watch {}: {e}; relying on the rescan", root.display());
        }
        super::lock(&self.routes).push((root, Arc::downgrade(p)));
    }

    pub fn remove(&self, p: &Arc<Poller>) {
        let root = {
            let mut routes = super::lock(&self.routes);
            let Some(i) = routes
                .iter()
                .position(|(_, q)| q.upgrade().is_some_and(|q| Arc::ptr_eq(&q, p)))
            else {
                return;
            };
            let (root, _) = routes.remove(i);
            if routes.iter().any(|(r, _)| *r == root) {
                return;
            }
            root
        };
        if let Some(trees) = &self.trees {
            trees.unwatch(&root);
        }
    }
}

/// Whether `change` may change what a poll of `root` finds (changes lost
/// in an overflow are news to every root). Not news:
/// - a name moved away (a rename's first half): the pending item's own
///   stability timer polls again, and a rename within the root also
///   arrives under its new name, judged on its own;
/// - the agent's own removals: a source moved to its set-aside name, and
///   what happens under that name. Otherwise every removal of a drain
///   would ask for a poll, and the last ones would keep an idle poller
///   polling after the drain;
/// - a directory below the root gone (its parent's entry says so).
///
/// Reads are not watched at all (our own polls and copies open files).
fn is_news(change: &Change, root: &Path) -> bool {
    let Ok(rel) = change.path.strip_prefix(root) else {
        return change.kind == Kind::Overflow;
    };
    let own = rel.to_str().is_some_and(removal::is_set_aside);
    match change.kind {
        Kind::Overflow => true,
        Kind::MovedFrom => false,
        Kind::SelfGone => rel.as_os_str().is_empty(),
        // Put back from a set-aside name is news; set aside is not.
        Kind::MovedTo | Kind::Changed => !own,
    }
}

#[cfg(test)]
mod tests {
    use super::is_news;
    use super::tree::{Change, Kind};
    use std::path::Path;

    fn ch(kind: Kind, path: &str) -> Change {
        Change {
            kind,
            path: path.into(),
        }
    }

    #[test]
    fn the_agents_own_removals_are_not_news_the_rest_is() {
        let root = Path::new("/in");
        let aside = "/in/show/.dispatch-removing-0123456789abcdef";
        let not_news = [
            // A source set aside: its first half, then its arrival.
            ch(Kind::MovedFrom, "/in/show/clip.mxf"),
            ch(Kind::MovedTo, aside),
            ch(Kind::Changed, aside),
            ch(Kind::Changed, &format!("{aside}/sub/a.mxf")),
            // A directory below the root gone (its parent says so).
            ch(Kind::SelfGone, "/in/show"),
            // Outside the root.
            ch(Kind::Changed, "/elsewhere/x"),
            ch(Kind::Changed, "/input/x"),
        ];
        for c in &not_news {
            assert!(!is_news(c, root), "news: {c:?}");
        }
        let news = [
            ch(Kind::Changed, "/in/new.mxf"),
            ch(Kind::MovedTo, "/in/clip.mxf"),
            // Put back from its set-aside name.
            ch(Kind::MovedTo, "/in/show/clip.mxf"),
            // The root itself deleted or moved away.
            ch(Kind::SelfGone, "/in"),
            // The kernel's queue overflowed: changes were lost.
            ch(Kind::Overflow, ""),
        ];
        for c in &news {
            assert!(is_news(c, root), "not news: {c:?}");
        }
    }
}
