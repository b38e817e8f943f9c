//! File-system events: each poller's root is watched (recursively) and any
//! event that may be news asks that poller for a poll. Roots that cannot be
//! watched rely on the periodic rescan.

use super::poller::Poller;
use super::removal;
use notify::event::{ModifyKind, RenameMode};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

type Routes = Arc<Mutex<Vec<(PathBuf, Weak<Poller>)>>>;

pub(super) struct Watcher {
    routes: Routes,
    inner: Mutex<Option<notify::RecommendedWatcher>>,
}

impl Watcher {
    pub fn new() -> Self {
        let routes: Routes = Arc::default();
        let to = routes.clone();
        let inner = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            for (root, p) in super::lock(&to).iter() {
                if is_news(&event, root)
                    && let Some(p) = p.upgrade()
                {
                    tracing::trace!(poller = %p.name(), ?event, "file-system event: a poll asked for");
                    p.request_poll();
                }
            }
        })
        .map_err(|e| tracing::warn!("file-system events unavailable, relying on the rescan: {e}"))
        .ok();
        Self {
            routes,
            inner: Mutex::new(inner),
        }
    }

    fn root_of(p: &Poller) -> PathBuf {
        p.root()
            .canonicalize()
            .unwrap_or_else(|_| p.root().to_path_buf())
    }

    pub fn add(&self, p: &Arc<Poller>) {
        use notify::{RecursiveMode, Watcher as _};
        let root = Self::root_of(p);
        if let Some(w) = super::lock(&self.inner).as_mut()
            && let Err(e) = w.watch(&root, RecursiveMode::Recursive)
        {
            tracing::warn!(poller = %p.name(), "cannot watch {}: {e}; relying on the rescan", root.display());
        }
        super::lock(&self.routes).push((root, Arc::downgrade(p)));
    }

    pub fn remove(&self, p: &Arc<Poller>) {
        use notify::Watcher as _;
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
        if let Some(w) = super::lock(&self.inner).as_mut() {
            let _ = w.unwatch(&root);
        }
    }
}

/// Whether `event` may change what a poll of `root` finds (events lost
/// in an overflow are news to every root). Not news:
/// - reads (our own polls and copies open and read files);
/// - a name moved away (a rename's first half): the pending item's own
///   stability timer polls again, and a rename within the root also
///   comes whole (`Both`), judged below;
/// - the agent's own removals: a source moved to its set-aside name, and
///   what happens under that name. Otherwise every removal of a drain
///   would ask for a poll, and the last ones would keep an idle poller
///   polling after the drain.
fn is_news(event: &notify::Event, root: &Path) -> bool {
    use notify::EventKind;
    if event.need_rescan() {
        // The kernel dropped events (its queue overflowed): look again.
        return true;
    }
    let own = |path: &PathBuf| {
        path.strip_prefix(root)
            .ok()
            .and_then(Path::to_str)
            .is_some_and(removal::is_set_aside)
    };
    let not_news = match event.kind {
        EventKind::Access(_) => true,
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => event.tracker().is_some(),
        // Put back from a set-aside name is news; set aside is not.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
            event.paths.last().is_some_and(own)
        }
        _ => event.paths.iter().any(own),
    };
    !not_news && event.paths.iter().any(|path| path.starts_with(root))
}

#[cfg(test)]
mod tests {
    use super::is_news;
    use notify::event::{AccessKind, CreateKind, Flag, RemoveKind};
    use notify::{Event, EventKind};
    use std::path::Path;

    fn ev(kind: EventKind, paths: &[&str]) -> Event {
        paths
            .iter()
            .fold(Event::new(kind), |e, p| e.add_path(Path::new(p).into()))
    }

    #[test]
    fn the_agents_own_reads_and_removals_are_not_news_the_rest_is() {
        use super::{ModifyKind, RenameMode};
        let root = Path::new("/in");
        let aside = "/in/show/.dispatch-removing-0123456789abcdef";
        let name = |m| EventKind::Modify(ModifyKind::Name(m));
        let not_news = [
            ev(EventKind::Access(AccessKind::Any), &["/in/clip.mxf"]),
            // A source set aside: its first half, then the whole rename.
            ev(name(RenameMode::From), &["/in/show/clip.mxf"]).set_tracker(7),
            ev(name(RenameMode::To), &[aside]).set_tracker(7),
            ev(name(RenameMode::Both), &["/in/show/clip.mxf", aside]),
            ev(EventKind::Remove(RemoveKind::File), &[aside]),
            ev(
                EventKind::Remove(RemoveKind::File),
                &[&format!("{aside}/sub/a.mxf")],
            ),
            // Outside the root.
            ev(EventKind::Create(CreateKind::File), &["/elsewhere/x"]),
        ];
        for e in &not_news {
            assert!(!is_news(e, root), "news: {e:?}");
        }
        let news = [
            ev(EventKind::Create(CreateKind::File), &["/in/new.mxf"]),
            ev(name(RenameMode::To), &["/in/clip.mxf"]).set_tracker(8),
            // Written under a temporary name, then renamed to its own.
            ev(name(RenameMode::Both), &["/in/.clip.tmp", "/in/clip.mxf"]),
            // Put back from its set-aside name.
            ev(name(RenameMode::Both), &[aside, "/in/show/clip.mxf"]),
            ev(EventKind::Remove(RemoveKind::File), &["/in/gone.mxf"]),
            // The root itself moved away (no rename cookie).
            ev(name(RenameMode::From), &["/in"]),
            // The kernel's queue overflowed: events were lost.
            Event::new(EventKind::Other).set_flag(Flag::Rescan),
        ];
        for e in &news {
            assert!(is_news(e, root), "not news: {e:?}");
        }
    }
}
