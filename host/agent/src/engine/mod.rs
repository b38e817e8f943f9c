//! The agent engine: a live set of pollers keyed by id. Its one entry point
//! is [`Engine::apply`]: given the desired state (from `agent.toml` or from
//! the web app), it starts what is new, stops what is gone and replaces
//! what changed, while everything else keeps running.

mod alert;
mod build;
mod groups;
mod poller;
mod recovery;
mod removal;
mod watch;

pub use dispatch_transfer::stability;

use crate::journal::Journal;
use build::Builder;
use dispatch_protocol::{AgentConfig, AgentSettings, PollerSpec};
use dispatch_runtime::{Limits, Runtime, RuntimeConfig};
use poller::Poller;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

/// What every poller of an agent shares.
pub(crate) struct Shared {
    journal: Journal,
    host: String,
    settings: Mutex<Arc<AgentSettings>>,
    /// The agent-wide cap on transfers in flight, if any.
    agent_slots: Mutex<Option<Arc<Semaphore>>>,
    /// Woken when an agent-wide slot frees up.
    slot_freed: Notify,
}

impl Shared {
    fn settings(&self) -> Arc<AgentSettings> {
        lock(&self.settings).clone()
    }

    fn agent_slots(&self) -> Option<Arc<Semaphore>> {
        lock(&self.agent_slots).clone()
    }

    fn slot_freed(&self) {
        self.slot_freed.notify_waiters();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What only this agent's machine decides.
#[derive(Debug, Clone)]
pub struct Local {
    /// The name transfers are logged under.
    pub host: String,
    /// Compiled components (none: compile every time).
    pub cache_dir: Option<PathBuf>,
    /// Transfer state that outlives a process (unfinished S3 uploads).
    pub state_dir: PathBuf,
    /// Where modules fetched from the web app are kept (by sha256).
    pub module_dir: Option<PathBuf>,
}

/// A poller at work.
struct Running {
    poller: Arc<Poller>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// The pollers running, those stopped whose transfers still finish, and
/// why a poller's newest settings are not running.
#[derive(Default)]
struct Live {
    running: BTreeMap<String, Running>,
    retired: Vec<Arc<Poller>>,
    errors: BTreeMap<String, String>,
    /// Ids already read back from the journal in this process.
    recovered: HashSet<String>,
}

/// What an [`Engine::apply`] could not do, by poller id (the previous
/// settings of such a poller keep running, if it had any).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub errors: BTreeMap<String, String>,
}

/// The live set of pollers (see the module doc).
pub struct Engine {
    shared: Arc<Shared>,
    builder: Builder,
    live: Mutex<Live>,
    /// One `apply` at a time.
    applying: tokio::sync::Mutex<()>,
    watcher: watch::Watcher,
    stop: CancellationToken,
    /// A desired state was applied (its settings are the agent's).
    applied_once: std::sync::atomic::AtomicBool,
}

impl Engine {
    /// An engine with no pollers yet.
    pub fn new(local: Local, journal: Journal) -> anyhow::Result<Arc<Self>> {
        // One TLS provider for the HTTP clients (web app, alerts, WebDAV).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let settings = AgentSettings::default();
        let runtime = Runtime::new(RuntimeConfig {
            limits: limits_of(&settings),
            cache_dir: local.cache_dir.clone(),
            ..RuntimeConfig::default()
        })?;
        let engine = Arc::new(Self {
            shared: Arc::new(Shared {
                journal,
                host: local.host.clone(),
                settings: Mutex::new(Arc::new(settings)),
                agent_slots: Mutex::new(None),
                slot_freed: Notify::new(),
            }),
            builder: Builder::new(runtime, local),
            live: Mutex::new(Live::default()),
            applying: tokio::sync::Mutex::new(()),
            watcher: watch::Watcher::new(),
            stop: CancellationToken::new(),
            applied_once: std::sync::atomic::AtomicBool::new(false),
        });
        engine.clone().spawn_slot_listener();
        Ok(engine)
    }

    /// A freed agent-wide slot lets every poller try to start what it has
    /// queued (a dispatch, not a poll: nothing new is to be found).
    fn spawn_slot_listener(self: Arc<Self>) {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = self.shared.slot_freed.notified() => {
                        for p in self.pollers() { p.wake(); }
                    }
                    () = self.stop.cancelled() => break,
                }
            }
        });
    }

    /// Prunes the journal now and then (see `Journal::prune`), until the
    /// engine stops. `reporting`: a web app is told the events, so those it
    /// has not acknowledged are kept.
    pub fn keep_journal_pruned(self: &Arc<Self>, reporting: bool) {
        const EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
        let engine = self.clone();
        tokio::spawn(async move {
            // Not before the configured retention is known (a connected
            // agent's settings arrive after the start).
            let mut first = true;
            loop {
                if engine
                    .applied_once
                    .load(std::sync::atomic::Ordering::Relaxed)
                {
                    let keep = engine.shared.settings().journal_retention;
                    match engine.shared.journal.prune(keep, reporting).await {
                        Ok(p) => tracing::debug!(
                            events = p.events,
                            transfers = p.transfers,
                            "journal pruned"
                        ),
                        Err(e) => tracing::warn!("cannot prune the transfer journal: {e}"),
                    }
                    first = false;
                }
                let wait = if first { EVERY / 60 } else { EVERY };
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = engine.stop.cancelled() => break,
                }
            }
        });
    }

    pub fn host(&self) -> &str {
        &self.shared.host
    }

    pub(crate) fn journal(&self) -> &Journal {
        &self.shared.journal
    }

    /// The running pollers.
    pub(crate) fn pollers(&self) -> Vec<Arc<Poller>> {
        lock(&self.live)
            .running
            .values()
            .map(|r| r.poller.clone())
            .collect()
    }

    /// Why a poller's newest settings are not running, by id.
    pub fn errors(&self) -> BTreeMap<String, String> {
        lock(&self.live).errors.clone()
    }

    /// The current name of poller `id` (also of one stopped in this
    /// process); the id itself when none is known.
    pub(crate) fn name_of(&self, id: &str) -> String {
        let live = lock(&self.live);
        live.running
            .get(id)
            .map(|r| r.poller.name())
            .or_else(|| live.retired.iter().find(|p| p.id == id).map(|p| p.name()))
            .unwrap_or_else(|| id.to_string())
    }

    /// Applies a desired state as a diff (see the module doc). `refused`:
    /// pollers known not to be applicable (a module that could not be
    /// fetched), with why; their previous settings keep running.
    pub async fn apply(
        self: &Arc<Self>,
        desired: &AgentConfig,
        mut refused: BTreeMap<String, String>,
    ) -> Applied {
        let _one = self.applying.lock().await;
        let settings_changed = match desired.settings.validate() {
            Ok(()) => self.apply_settings(&desired.settings),
            Err(e) => {
                let e = e.within("settings").to_string();
                tracing::error!("agent settings not applied: {e}");
                refused.insert(String::new(), e);
                false
            }
        };
        let mut errors = BTreeMap::new();
        let wanted: Vec<&PollerSpec> = desired.pollers.iter().filter(|p| p.enabled).collect();
        refused.extend(crate::config::refused(&desired.pollers));
        // Stop what is gone or disabled first: its directory may be the
        // one a new poller takes over.
        let gone: Vec<String> = {
            let live = lock(&self.live);
            live.running
                .keys()
                .filter(|id| !wanted.iter().any(|p| &p.id == *id))
                .cloned()
                .collect()
        };
        for id in gone {
            self.retire(&id, "the poller was removed or disabled");
        }
        if let Some(why) = refused.get("") {
            errors.insert(String::new(), why.clone());
        }
        for spec in wanted {
            if let Some(why) = refused.get(&spec.id) {
                errors.insert(spec.id.clone(), why.clone());
                continue;
            }
            if let Err(e) = self.apply_one(spec, settings_changed).await {
                tracing::error!(poller = %spec.name, "not applied, the previous settings (if any) keep running: {e}");
                errors.insert(spec.id.clone(), e);
            }
        }
        lock(&self.live).errors.clone_from(&errors);
        self.sweep_retired();
        let in_use: HashSet<String> = {
            let live = lock(&self.live);
            let running = live.running.values().map(|r| &r.poller);
            running
                .chain(live.retired.iter())
                .map(|p| p.cfg().plugin.sha256().to_string())
                .collect()
        };
        self.builder.keep_only(&in_use);
        self.applied_once
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Applied { errors }
    }

    /// True when the sandbox limits changed (every plugin is reloaded).
    fn apply_settings(&self, new: &AgentSettings) -> bool {
        let old = self.shared.settings();
        if *old == *new {
            return false;
        }
        if old.max_transfers != new.max_transfers {
            // Transfers in flight keep their permits of the old cap.
            *lock(&self.shared.agent_slots) =
                new.max_transfers.map(|n| Arc::new(Semaphore::new(n)));
        }
        *lock(&self.shared.settings) = Arc::new(new.clone());
        let limits_changed = limits_of(&old) != limits_of(new);
        if limits_changed {
            self.builder.set_limits(limits_of(new));
        }
        for p in self.pollers() {
            p.request_poll();
        }
        limits_changed
    }

    async fn apply_one(self: &Arc<Self>, spec: &PollerSpec, reload: bool) -> Result<(), String> {
        spec.validate(true).map_err(|e| e.to_string())?;
        let current = lock(&self.live)
            .running
            .get(&spec.id)
            .map(|r| r.poller.clone());
        if let Some(p) = &current {
            let cfg = p.cfg();
            if cfg.spec == *spec && !reload {
                return Ok(());
            }
            if cfg.spec.path == spec.path {
                let settings = self.builder.build(spec).await?;
                tracing::info!(poller = %spec.name, plugin = %settings.plugin.info().version, "settings replaced");
                p.replace(settings);
                return Ok(());
            }
            // Another directory: another poller under the same id.
            self.retire(&spec.id, "the poller's directory changed");
        }
        let settings = self.builder.build(spec).await?;
        self.start(spec, settings).await;
        Ok(())
    }

    async fn start(self: &Arc<Self>, spec: &PollerSpec, settings: poller::Settings) {
        let p = Poller::new(
            spec.id.clone(),
            spec.path.clone(),
            settings,
            self.shared.clone(),
        );
        let first = lock(&self.live).recovered.insert(spec.id.clone());
        if first && let Err(e) = recovery::recover(&self.shared.journal, &p).await {
            tracing::error!(poller = %spec.name, "cannot read the journal back: {e}");
        }
        self.watcher.add(&p);
        let stop = self.stop.child_token();
        let task = tokio::spawn(p.clone().run(stop.clone()));
        tracing::info!(poller = %spec.name, root = %spec.path.display(), "poller started");
        lock(&self.live).running.insert(
            spec.id.clone(),
            Running {
                poller: p,
                stop,
                task,
            },
        );
    }

    /// Stops polling `id`; its transfers in flight finish.
    fn retire(&self, id: &str, why: &str) {
        let Some(r) = lock(&self.live).running.remove(id) else {
            return;
        };
        // The task ends after the poll it may be in; `stop` keeps that
        // poll from starting anything.
        r.stop.cancel();
        drop(r.task);
        self.watcher.remove(&r.poller);
        r.poller.stop(why);
        tracing::info!(poller = %r.poller.name(), "poller stopped: {why}");
        lock(&self.live).retired.push(r.poller);
    }

    fn sweep_retired(&self) {
        lock(&self.live).retired.retain(|p| p.in_flight() > 0);
    }

    /// A person re-enabled poller `id`: its breaker resets. False when it
    /// does not run here.
    pub fn reset_breaker(&self, id: &str) -> bool {
        let p = lock(&self.live).running.get(id).map(|r| r.poller.clone());
        p.map(|p| p.reset_breaker()).is_some()
    }

    /// A person asked for another try of a failed transfer now.
    pub fn retry_now(&self, transfer_id: &str) -> bool {
        self.pollers().iter().any(|p| p.retry_now(transfer_id))
    }

    /// Nothing queued, in flight or waiting to become stable anywhere.
    pub fn is_idle(&self) -> bool {
        self.sweep_retired();
        let live = lock(&self.live);
        live.retired.is_empty() && live.running.values().all(|r| r.poller.is_idle())
    }

    fn in_flight(&self) -> usize {
        let live = lock(&self.live);
        live.running
            .values()
            .map(|r| &r.poller)
            .chain(live.retired.iter())
            .map(|p| p.in_flight())
            .sum()
    }

    /// Stops every poller, lets in-flight transfers finish for up to the
    /// shutdown grace, then cancels them and waits until they have recorded
    /// it. The journal is flushed.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let tasks: Vec<_> = {
            let mut live = lock(&self.live);
            let running = std::mem::take(&mut live.running);
            running
                .into_values()
                .map(|r| {
                    live.retired.push(r.poller);
                    r.task
                })
                .collect()
        };
        for t in tasks {
            let _ = t.await;
        }
        let grace = self.shared.settings().shutdown_grace;
        if self.in_flight() > 0 {
            tracing::info!(
                in_flight = self.in_flight(),
                "waiting up to {grace:?} for transfers in flight"
            );
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if self.in_flight() > 0 {
            tracing::warn!(
                in_flight = self.in_flight(),
                "grace period over: cancelling transfers"
            );
            for p in lock(&self.live).retired.iter() {
                p.cancel_all();
            }
            let hard = tokio::time::Instant::now() + Duration::from_secs(10);
            while self.in_flight() > 0 && tokio::time::Instant::now() < hard {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.shared.journal.flush().await;
        for p in lock(&self.live).retired.iter() {
            if let Some(why) = p.failing() {
                tracing::error!(poller = %p.name(), "poller is failing: {why}");
            }
            for problem in p.problems() {
                tracing::warn!(poller = %p.name(), "needs attention: {problem}");
            }
        }
    }
}

fn limits_of(s: &AgentSettings) -> Limits {
    Limits {
        memory_bytes: s.poll_memory_mib.saturating_mul(1 << 20),
        timeout: s.poll_timeout,
    }
}
