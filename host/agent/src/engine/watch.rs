//! File-system events: each poller's root is watched (recursively) and any
//! event asks that poller for a poll. Roots that cannot be watched rely on
//! the periodic rescan.

use super::poller::Poller;
use std::path::PathBuf;
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
            // Our own polls open and read directories: access events are not news.
            if matches!(event.kind, notify::EventKind::Access(_)) {
                return;
            }
            for (root, p) in super::lock(&to).iter() {
                if event.paths.iter().any(|path| path.starts_with(root))
                    && let Some(p) = p.upgrade()
                {
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
