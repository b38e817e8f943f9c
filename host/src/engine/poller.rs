//! One poller at work: poll (in the sandbox), wait for stability, queue
//! (FIFO, de-duplicated), send at most `max_transfers` at once, remove the
//! source after a verified transfer, run a group's follow-ups once all of
//! its transfers succeeded, retry failures with backoff, and trip the
//! breaker after too many failures in a row.

use super::Shared;
use super::alert::{self, Alert};
use super::stability::signature;
use crate::actions::{Action, FollowUp, ItemKind, Transfer};
use crate::journal::{Event, EventKind, new_id};
use crate::runtime::Plugin;
use crate::transfer::{Backend, Job, Progress, TransferError};
use globset::GlobSet;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Polls closer together than this are merged (bursts of file events).
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often a running transfer's progress goes to the journal.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What waits for stability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    Transfer(ItemKind),
    /// A `remove-dir` action: the directory must be quiet too.
    Remove,
}

#[derive(Debug)]
struct Pending {
    work: Work,
    sig: String,
    since: Instant,
}

/// An item waiting to be sent.
#[derive(Debug, Clone)]
pub(super) struct Queued {
    pub id: String,
    pub path: String,
    pub kind: ItemKind,
    pub sig: String,
    /// Attempts made so far.
    pub attempt: u32,
    pub not_before: Instant,
    pub size: u64,
}

#[derive(Debug)]
struct Group {
    key: String,
    remaining: HashSet<String>,
    then: Vec<FollowUp>,
    /// Returned by the latest poll.
    seen: bool,
}

#[derive(Debug, Default)]
struct State {
    pending: HashMap<String, Pending>,
    queue: VecDeque<Queued>,
    in_flight: HashMap<String, Arc<Progress>>,
    groups: Vec<Group>,
    /// Sent and verified, but the source could not be removed: never send
    /// the same signature again.
    sent: HashMap<String, String>,
    failures: u32,
    disabled_until: Option<Instant>,
    /// Why the last poll failed (root missing, plugin crashed…).
    failing: Option<String>,
    /// The last transfer error since the last success.
    last_error: Option<String>,
    poll_requested: bool,
    last_poll: Option<Instant>,
    /// The last poll changed nothing (nothing new pending, queued, touched
    /// or removed).
    quiet: bool,
}

/// A poller's health as the web app shows it.
pub(super) struct Health {
    pub failures: u32,
    pub disabled: bool,
    pub reason: Option<String>,
}

pub(super) struct Poller {
    pub name: String,
    root: PathBuf,
    plugin: Arc<Plugin>,
    params: Vec<(String, String)>,
    backend: Arc<dyn Backend>,
    excludes: Arc<GlobSet>,
    max_transfers: usize,
    stability: Duration,
    shared: Arc<Shared>,
    state: Mutex<State>,
    wake: Notify,
}

/// How a poller is set up.
pub(super) struct Setup {
    pub name: String,
    pub root: PathBuf,
    pub plugin: Arc<Plugin>,
    pub params: Vec<(String, String)>,
    pub backend: Arc<dyn Backend>,
    pub excludes: GlobSet,
    pub max_transfers: usize,
    pub stability: Duration,
}

impl Poller {
    pub fn new(setup: Setup, shared: Arc<Shared>) -> Arc<Self> {
        Arc::new(Self {
            name: setup.name,
            root: setup.root,
            plugin: setup.plugin,
            params: setup.params,
            backend: setup.backend,
            excludes: Arc::new(setup.excludes),
            max_transfers: setup.max_transfers,
            stability: setup.stability,
            shared,
            state: Mutex::new(State {
                poll_requested: true,
                ..State::default()
            }),
            wake: Notify::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Asks for a poll soon (a file-system event, a finished transfer).
    pub fn request_poll(&self) {
        self.state().poll_requested = true;
        self.wake.notify_one();
    }

    /// A person asked (on the web page) for another try of a failed
    /// transfer now: its backoff wait ends. False when this poller does not
    /// have it queued.
    pub fn retry_now(&self, transfer_id: &str) -> bool {
        let mut s = self.state();
        let Some(q) = s.queue.iter_mut().find(|q| q.id == transfer_id) else {
            return false;
        };
        q.not_before = Instant::now();
        drop(s);
        self.wake.notify_one();
        true
    }

    /// Nothing queued, in flight or waiting to become stable, and the last
    /// poll found nothing new.
    pub fn is_idle(&self) -> bool {
        let s = self.state();
        tracing::trace!(
            poller = %self.name, pending = s.pending.len(), queued = s.queue.len(), in_flight = s.in_flight.len(),
            poll_requested = s.poll_requested, quiet = s.quiet, "idle check"
        );
        s.pending.is_empty()
            && s.queue.is_empty()
            && s.in_flight.is_empty()
            && !s.poll_requested
            && s.quiet
    }

    pub fn in_flight(&self) -> usize {
        self.state().in_flight.len()
    }

    /// Why the poller is failing, if it is.
    pub fn failing(&self) -> Option<String> {
        self.state().failing.clone()
    }

    /// How the poller is doing, for heartbeats.
    pub fn health(&self) -> Health {
        let s = self.state();
        Health {
            failures: s.failures,
            disabled: s.disabled_until.is_some(),
            reason: s.failing.clone().or_else(|| s.last_error.clone()),
        }
    }

    /// Cancels every running transfer (shutdown after the grace period).
    pub fn cancel_all(&self) {
        for p in self.state().in_flight.values() {
            p.cancel.cancel();
        }
    }

    /// Puts a transfer left unfinished by a previous run back in the queue.
    pub fn requeue(&self, q: Queued) {
        tracing::info!(poller = %self.name, path = %q.path, "re-queued after a restart");
        self.state().queue.push_back(q);
    }

    /// The poller's loop, until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let now = Instant::now();
            if self.reenable_if_due(now) || self.poll_due(now) {
                self.poll_once().await;
            }
            self.dispatch();
            let deadline = self.next_deadline();
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep_until(deadline) => {}
                () = stop.cancelled() => break,
            }
        }
    }

    fn poll_due(&self, now: Instant) -> bool {
        let s = self.state();
        if s.disabled_until.is_some() {
            return false;
        }
        let Some(last) = s.last_poll else { return true };
        let since = now.saturating_duration_since(last);
        (s.poll_requested && since >= MIN_POLL_INTERVAL)
            || since >= self.shared.rescan_interval
            || s.pending
                .values()
                .any(|p| now.saturating_duration_since(p.since) >= self.stability)
    }

    fn next_deadline(&self) -> Instant {
        let s = self.state();
        let now = Instant::now();
        let mut next = now + self.shared.rescan_interval;
        if let Some(until) = s.disabled_until {
            return until.min(next);
        }
        if let Some(last) = s.last_poll {
            next = next.min(last + self.shared.rescan_interval);
            if s.poll_requested {
                next = next.min(last + MIN_POLL_INTERVAL);
            }
        }
        for p in s.pending.values() {
            next = next.min(p.since + self.stability);
        }
        if s.in_flight.len() < self.max_transfers
            && let Some(q) = s.queue.iter().map(|q| q.not_before).min()
        {
            next = next.min(q);
        }
        next.max(now + Duration::from_millis(1))
    }

    /// Re-enables a poller whose cooldown is over; true when it did.
    fn reenable_if_due(&self, now: Instant) -> bool {
        let mut s = self.state();
        match s.disabled_until {
            Some(until) if now >= until => {
                s.disabled_until = None;
                s.failures = 0;
                s.poll_requested = true;
                tracing::warn!(poller = %self.name, "re-enabled after its cooldown");
                true
            }
            _ => false,
        }
    }

    fn excluded(&self, path: &str) -> bool {
        let name = path.rsplit('/').next().unwrap_or(path);
        self.excludes.is_match(name)
    }

    /// One poll: run the plugin, then sort its actions into pending,
    /// queued, done now.
    async fn poll_once(self: &Arc<Self>) {
        {
            let mut s = self.state();
            s.poll_requested = false;
            s.last_poll = Some(Instant::now());
        }
        let (plugin, root, params) = (self.plugin.clone(), self.root.clone(), self.params.clone());
        let result = tokio::task::spawn_blocking(move || plugin.poll(&root, &params)).await;
        let actions = match result {
            Ok(Ok(actions)) => actions,
            Ok(Err(e)) => return self.poll_failed(e.to_string()),
            Err(e) => return self.poll_failed(format!("poll task failed: {e}")),
        };
        tracing::trace!(poller = %self.name, actions = actions.len(), "polled");
        if let Some(was) = self.state().failing.take() {
            tracing::info!(poller = %self.name, "polling again (was failing: {was})");
        }

        // What the poll wants, with the group each transfer belongs to.
        let mut wanted: Vec<(String, Work)> = Vec::new();
        let mut touches: Vec<String> = Vec::new();
        let mut returned_groups: Vec<(String, Vec<Transfer>, Vec<FollowUp>)> = Vec::new();
        for action in actions {
            match action {
                Action::Transfer(t) => wanted.push((t.path, Work::Transfer(t.kind))),
                Action::Touch(p) => touches.push(p),
                Action::RemoveDir(p) => wanted.push((p, Work::Remove)),
                Action::Group { transfers, then } => {
                    let key = format!("{transfers:?}{then:?}");
                    for t in &transfers {
                        wanted.push((t.path.clone(), Work::Transfer(t.kind)));
                    }
                    returned_groups.push((key, transfers, then));
                }
            }
        }
        wanted.retain(|(p, w)| !(matches!(w, Work::Transfer(_)) && self.excluded(p)));

        // Signatures (file-system reads) outside the lock.
        let root = self.root.clone();
        let candidates: Vec<(String, Work, Option<String>)> = {
            let busy: HashSet<String> = {
                let s = self.state();
                s.queue
                    .iter()
                    .map(|q| q.path.clone())
                    .chain(s.in_flight.keys().cloned())
                    .collect()
            };
            let todo: Vec<(String, Work)> = wanted
                .into_iter()
                .filter(|(p, _)| !busy.contains(p))
                .collect();
            tokio::task::spawn_blocking(move || {
                todo.into_iter()
                    .map(|(p, w)| {
                        let sig = signature(&root.join(&p));
                        (p, w, sig)
                    })
                    .collect()
            })
            .await
            .unwrap_or_default()
        };

        let now = Instant::now();
        let mut removals = Vec::new();
        let mut changed = !touches.is_empty();
        {
            let mut s = self.state();
            let s = &mut *s;
            for g in &mut s.groups {
                g.seen = false;
            }
            for (key, transfers, then) in returned_groups {
                if let Some(g) = s.groups.iter_mut().find(|g| g.key == key) {
                    g.seen = true;
                    continue;
                }
                let remaining: HashSet<String> = transfers
                    .iter()
                    .map(|t| t.path.clone())
                    .filter(|p| !self.excluded(p))
                    .collect();
                s.groups.push(Group {
                    key,
                    remaining,
                    then,
                    seen: true,
                });
            }
            let mut keep = HashSet::new();
            for (path, work, sig) in candidates {
                let Some(sig) = sig else { continue }; // vanished
                keep.insert(path.clone());
                if s.sent.get(&path) == Some(&sig) {
                    continue; // sent already; its source could not be removed
                }
                let stable = match s.pending.get(&path) {
                    Some(p) if p.sig == sig && p.work == work => {
                        now.saturating_duration_since(p.since) >= self.stability
                    }
                    _ => {
                        s.pending.insert(
                            path.clone(),
                            Pending {
                                work,
                                sig: sig.clone(),
                                since: now,
                            },
                        );
                        changed = true;
                        self.stability.is_zero()
                    }
                };
                if !stable {
                    continue;
                }
                s.pending.remove(&path);
                changed = true;
                match work {
                    Work::Remove => removals.push(path),
                    Work::Transfer(kind) => {
                        let q = Queued {
                            id: new_id(),
                            size: crate::transfer::item_size(&self.root.join(&path)),
                            path,
                            kind,
                            sig,
                            attempt: 0,
                            not_before: now,
                        };
                        self.shared
                            .journal
                            .record(self.event(&q, EventKind::Queued, 0, None));
                        tracing::debug!(poller = %self.name, path = %q.path, "stable: queued");
                        s.queue.push_back(q);
                    }
                }
            }
            s.pending.retain(|p, _| keep.contains(p));
            // Groups nobody waits for any more (their items vanished).
            let busy: HashSet<&String> = s
                .queue
                .iter()
                .map(|q| &q.path)
                .chain(s.in_flight.keys())
                .chain(s.pending.keys())
                .collect();
            s.groups
                .retain(|g| g.seen || g.remaining.iter().any(|p| busy.contains(p)));
            s.quiet = !changed;
        }
        for p in touches {
            self.touch(&p);
        }
        for p in removals {
            self.remove_dir(&p);
        }
        if changed {
            self.state().poll_requested = true;
        }
    }

    fn poll_failed(&self, reason: String) {
        let mut s = self.state();
        if s.failing.as_deref() != Some(reason.as_str()) {
            tracing::error!(poller = %self.name, "poll failed: {reason}");
        }
        s.failing = Some(reason);
        s.quiet = true;
    }

    fn touch(&self, rel: &str) {
        let path = self.root.join(rel);
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            Ok(_) => tracing::info!(poller = %self.name, path = %rel, "created marker"),
            Err(e) => {
                tracing::error!(poller = %self.name, path = %rel, "cannot create marker: {e}")
            }
        }
    }

    fn remove_dir(&self, rel: &str) {
        match std::fs::remove_dir_all(self.root.join(rel)) {
            Ok(()) => tracing::info!(poller = %self.name, path = %rel, "removed directory"),
            Err(e) => {
                tracing::error!(poller = %self.name, path = %rel, "cannot remove directory: {e}")
            }
        }
    }

    fn event(&self, q: &Queued, kind: EventKind, bytes_done: u64, error: Option<String>) -> Event {
        Event {
            transfer_id: q.id.clone(),
            poller: self.name.clone(),
            path: q.path.clone(),
            item_kind: q.kind.as_str(),
            kind,
            size: Some(q.size),
            bytes_done,
            attempt: q.attempt,
            error,
            signature: Some(q.sig.clone()),
        }
    }

    /// Starts queued transfers while there is room.
    fn dispatch(self: &Arc<Self>) {
        let now = Instant::now();
        let mut s = self.state();
        if s.disabled_until.is_some() {
            return;
        }
        while s.in_flight.len() < self.max_transfers {
            let Some(i) = s.queue.iter().position(|q| q.not_before <= now) else {
                break;
            };
            let permit = match &self.shared.agent_slots {
                Some(sem) => match sem.clone().try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) => break,
                },
                None => None,
            };
            let Some(q) = s.queue.remove(i) else { break };
            let progress = Arc::new(Progress::default());
            s.in_flight.insert(q.path.clone(), progress.clone());
            let this = self.clone();
            tokio::spawn(async move {
                let shared = this.shared.clone();
                this.transfer(q, progress).await;
                drop(permit);
                shared.slot_freed();
            });
        }
    }

    /// Sends one item, then records, removes, retries or trips the breaker.
    async fn transfer(self: Arc<Self>, mut q: Queued, progress: Arc<Progress>) {
        q.attempt += 1;
        self.shared
            .journal
            .record(self.event(&q, EventKind::Started, 0, None));
        tracing::info!(poller = %self.name, path = %q.path, attempt = q.attempt, to = %self.backend.describe(), "transfer started");
        let job = Job {
            root: self.root.clone(),
            path: q.path.clone(),
            kind: q.kind,
            excludes: self.excludes.clone(),
            id: q.id.clone(),
            sig: q.sig.clone(),
        };
        let send = self.backend.send(&job, progress.clone());
        tokio::pin!(send);
        let mut ticker = tokio::time::interval(PROGRESS_EVERY);
        ticker.tick().await;
        let mut result = loop {
            tokio::select! {
                r = &mut send => break r,
                _ = ticker.tick() => {
                    self.shared.journal.record(self.event(&q, EventKind::Progress, progress.bytes_done(), None));
                }
            }
        };
        // The source must not have changed while it was sent.
        let source = job.source();
        let after = tokio::task::spawn_blocking(move || signature(&source))
            .await
            .ok()
            .flatten();
        let changed = after.as_deref() != Some(q.sig.as_str());
        if result.is_ok() && changed {
            result = Err(TransferError::transient(
                "the source changed during the transfer; it will be sent again once stable",
            ));
        }
        match result {
            Ok(sent) => self.succeeded(q, sent.bytes).await,
            Err(e) if e.cancelled => {
                self.shared.journal.record(self.event(
                    &q,
                    EventKind::Cancelled,
                    progress.bytes_done(),
                    Some("cancelled at shutdown".into()),
                ));
                tracing::warn!(poller = %self.name, path = %q.path, "transfer cancelled");
                self.state().in_flight.remove(&q.path);
            }
            Err(e) => self.failed(q, e, changed, progress.bytes_done()),
        }
        self.request_poll();
    }

    async fn succeeded(&self, q: Queued, bytes: u64) {
        // On disk before the source goes: a crash never loses the record of
        // a transfer whose source was removed.
        self.shared
            .journal
            .record_durable(self.event(&q, EventKind::Complete, bytes, None))
            .await;
        let source = self.root.join(&q.path);
        let removed = match q.kind {
            ItemKind::File => std::fs::remove_file(&source),
            ItemKind::Dir => std::fs::remove_dir_all(&source),
        };
        if removed.is_ok() {
            self.shared
                .journal
                .record(self.event(&q, EventKind::SourceRemoved, bytes, None));
        }
        tracing::info!(poller = %self.name, path = %q.path, bytes, "transfer complete");
        let mut follow_ups = Vec::new();
        {
            let mut s = self.state();
            s.in_flight.remove(&q.path);
            s.failures = 0;
            s.last_error = None;
            if let Err(e) = removed {
                tracing::error!(poller = %self.name, path = %q.path, "sent, but the source cannot be removed: {e}");
                s.sent.insert(q.path.clone(), q.sig.clone());
            }
            let mut done = Vec::new();
            for (i, g) in s.groups.iter_mut().enumerate() {
                g.remaining.remove(&q.path);
                if g.remaining.is_empty() {
                    done.push(i);
                }
            }
            for i in done.into_iter().rev() {
                follow_ups.extend(s.groups.remove(i).then);
            }
        }
        for f in follow_ups {
            match f {
                FollowUp::Touch(p) => self.touch(&p),
                FollowUp::RemoveDir(p) => self.remove_dir(&p),
            }
        }
    }

    fn failed(&self, mut q: Queued, e: TransferError, changed: bool, bytes_done: u64) {
        self.shared.journal.record(self.event(
            &q,
            EventKind::Error,
            bytes_done,
            Some(e.message.clone()),
        ));
        let retry = &self.shared.retry;
        let wait = if e.permanent {
            retry.max
        } else {
            let exp = retry.initial.as_secs_f64()
                * 2f64.powi(
                    i32::try_from(q.attempt.saturating_sub(1))
                        .unwrap_or(30)
                        .min(30),
                );
            Duration::from_secs_f64(exp.min(retry.max.as_secs_f64()))
        };
        let jitter = 1.0 + retry.jitter * (fastrand::f64() * 2.0 - 1.0);
        let wait = wait.mul_f64(jitter);
        let mut s = self.state();
        s.in_flight.remove(&q.path);
        s.failures += 1;
        s.last_error = Some(e.message.clone());
        tracing::warn!(
            poller = %self.name, path = %q.path, attempt = q.attempt, retry_in = ?wait,
            permanent = e.permanent, "transfer failed: {}", e.message
        );
        if changed {
            // Back through the stability check, as a new item.
            return;
        }
        q.not_before = Instant::now() + wait;
        s.queue.push_front(q);
        if s.failures >= self.shared.failures_before_disable && s.disabled_until.is_none() {
            let cooldown = self.shared.disable_cooldown;
            s.disabled_until = Some(Instant::now() + cooldown);
            tracing::error!(
                poller = %self.name, failures = s.failures, "disabled after {} consecutive failures; re-enabled in {cooldown:?}. Last error: {}",
                s.failures, e.message
            );
            let alert = Alert {
                poller: self.name.clone(),
                host: self.shared.host.clone(),
                failures: s.failures,
                reason: e.message,
                reenable_in_secs: cooldown.as_secs(),
            };
            let shared = self.shared.clone();
            tokio::spawn(async move { alert::send(&shared.alerts, alert).await });
        }
    }
}
