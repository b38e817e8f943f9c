//! One poller at work: poll (in the sandbox), wait for stability, queue
//! (FIFO, de-duplicated), make the markers and remove the directories the
//! plugin asks for, and trip the breaker after too many failures in a
//! row. Its transfers (slots, batches, removal of what was sent, retries,
//! a group's follow-ups) are `transfer`'s.

mod transfer;

use super::Shared;
use super::groups::Group;
use super::removal::{self, Removed};
use crate::journal::{Event, EventKind, new_id};
use dispatch_protocol::PollerSpec;
use dispatch_runtime::actions::{Action, ItemKind};
use dispatch_runtime::{Plugin, Polled};
use dispatch_transfer::beneath::Beneath;
use dispatch_transfer::stability::{Scan, Stamp, matches, signature};
use dispatch_transfer::testhook::{self, Point};
use dispatch_transfer::{Backend, Progress};
use globset::GlobSet;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Polls closer together than this are merged (bursts of file events).
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// A poll starts at most once per this many times its own cost, so that
/// polling a large directory (whose cost grows with it) takes at most a
/// fifth of a thread while transfers drain it, instead of running back to
/// back after every transfer (quadratic in the directory's size).
const POLL_COST_FACTOR: u32 = 5;
/// Polls while a backlog waits are at least this far apart.
const BACKLOG_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Not-ready items a poller reports (the rest are counted): enough for a
/// person to see the pattern, small enough for every heartbeat.
const NOT_READY_SHOWN: usize = 20;

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

/// An item as a poll's scan saw it.
struct Seen {
    sig: String,
    size: u64,
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
    /// Left in flight by a crash: ask the backend whether the item already
    /// arrived whole before sending it again.
    pub check_delivered: bool,
}

#[derive(Debug, Default)]
struct State {
    pending: HashMap<String, Pending>,
    queue: VecDeque<Queued>,
    in_flight: HashMap<String, Arc<Progress>>,
    /// Slots in use: transfers (one item, or a batch of small files)
    /// still sending, what `max_transfers` caps. One that is settling,
    /// recording its Complete and removing its source no longer holds a
    /// slot, so the next send overlaps that bookkeeping (with many small
    /// files, its fsyncs are most of the time).
    sending: usize,
    /// Transfer tasks alive, up to the poll each one asks for as it ends:
    /// a transfer between leaving `in_flight` and that request is not idle.
    tasks: usize,
    /// A poll is running (its findings are not in `quiet` yet).
    polling: bool,
    groups: Vec<Group>,
    /// Versions of items not to send (again), with why (sent but the
    /// source cannot be removed; what was left of an item because it was
    /// never sent): path -> (signature, reason). Kept in the journal too.
    held: HashMap<String, (String, String)>,
    /// What this item needs from a person (an error that only this item
    /// has), cleared when it goes.
    item_problems: BTreeMap<String, String>,
    /// What the latest poll found wrong (names that are not UTF-8, groups
    /// holding an excluded name).
    poll_problems: BTreeMap<String, String>,
    /// What the plugin said, in its latest poll, is not ready and why
    /// (`item: reason`), and how many more it said.
    not_ready: (Vec<String>, usize),
    failures: u32,
    disabled_until: Option<Instant>,
    /// Why the last poll failed (root missing, plugin crashed…).
    failing: Option<String>,
    /// The last transfer error since the last success.
    last_error: Option<String>,
    poll_requested: bool,
    /// The last transfer ended with nothing queued: the poll it asks for
    /// goes at once, whatever the gap, so the end of a drain is seen (an
    /// `--until-idle` run ends on it). Once per drain, so no burst of
    /// events can make polls run back to back.
    drain_ended: bool,
    last_poll: Option<Instant>,
    /// How long the last poll took (plugin, listing, signatures).
    poll_cost: Duration,
    /// The last poll changed nothing (nothing new pending, queued, touched
    /// or removed).
    quiet: bool,
    /// Removed or disabled: nothing new starts.
    stopped: bool,
}

impl State {
    /// The items queued or in flight.
    fn busy_paths(&self) -> impl Iterator<Item = &String> {
        self.queue
            .iter()
            .map(|q| &q.path)
            .chain(self.in_flight.keys())
    }

    /// The least time from one poll's start to the next one's (the rescan
    /// interval aside).
    fn poll_gap(&self) -> Duration {
        let gap = MIN_POLL_INTERVAL.max(self.poll_cost * POLL_COST_FACTOR);
        // While items wait in the queue (every slot busy, or a retry's
        // backoff), what a poll would find waits behind them anyway: no
        // hurry (a drain of thousands of files would otherwise re-list
        // them after every few transfers).
        if !self.queue.is_empty() {
            gap.max(BACKLOG_POLL_INTERVAL)
        } else {
            gap
        }
    }
}

/// A poller's health as the web app shows it.
pub(crate) struct Health {
    pub failures: u32,
    pub disabled: bool,
    /// Until when, in ms since the epoch.
    pub disabled_until: Option<i64>,
    pub reason: Option<String>,
}

pub(crate) struct Poller {
    /// Stable across renames: the journal keys this poller's work by it.
    pub id: String,
    /// Never changes: a poller whose directory changes is a new poller.
    root: PathBuf,
    /// What a person set; replaced while the poller runs (a new plugin
    /// version, parameters, target). A transfer keeps the settings it
    /// started with.
    settings: Mutex<Arc<Settings>>,
    shared: Arc<Shared>,
    state: Mutex<State>,
    wake: Notify,
}

/// A poller's replaceable settings.
pub(crate) struct Settings {
    pub name: String,
    pub plugin: Arc<Plugin>,
    pub params: Vec<(String, String)>,
    pub backend: Arc<dyn Backend>,
    pub excludes: Arc<GlobSet>,
    pub max_transfers: usize,
    pub stability: Duration,
    /// What they were made from, to tell a change.
    pub spec: PollerSpec,
}

impl Poller {
    pub fn new(id: String, root: PathBuf, settings: Settings, shared: Arc<Shared>) -> Arc<Self> {
        Arc::new(Self {
            id,
            root,
            settings: Mutex::new(Arc::new(settings)),
            shared,
            state: Mutex::new(State {
                poll_requested: true,
                ..State::default()
            }),
            wake: Notify::new(),
        })
    }

    /// The settings now (a transfer holds on to the ones it started with).
    pub fn cfg(&self) -> Arc<Settings> {
        self.settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn name(&self) -> String {
        self.cfg().name.clone()
    }

    /// New settings for the next polls and transfers; those in flight
    /// finish on the old ones. Queue, stability and in-flight state stay
    /// (they belong to the directory), so nothing is started twice. A
    /// person changed the poller: its breaker resets.
    pub fn replace(&self, settings: Settings) {
        *self.settings.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(settings);
        self.reset_breaker();
    }

    /// A person re-enabled the poller (or changed it): failures are
    /// forgotten and it polls again now.
    pub fn reset_breaker(&self) {
        let mut s = self.state();
        if s.disabled_until.take().is_some() {
            tracing::warn!(poller = %self.name(), "re-enabled by a person");
        }
        s.failures = 0;
        s.poll_requested = true;
        drop(s);
        self.wake.notify_one();
    }

    /// Stopped for good (removed or disabled): nothing waits for stability
    /// and the queue is dropped (each queued item recorded Cancelled); the
    /// transfers in flight finish.
    pub fn stop(&self, why: &str) {
        let dropped: Vec<Queued> = {
            let mut s = self.state();
            s.stopped = true;
            s.pending.clear();
            s.queue.drain(..).collect()
        };
        for q in &dropped {
            self.shared.journal.record(self.event(
                q,
                EventKind::Cancelled,
                0,
                Some(why.to_string()),
            ));
        }
        if !dropped.is_empty() {
            tracing::info!(poller = %self.name(), dropped = dropped.len(), "{why}: queued items dropped");
        }
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

    /// Wakes the poller's loop: it starts what it has queued if there is
    /// room.
    pub fn wake(&self) {
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
            poller = %self.name(), pending = s.pending.len(), queued = s.queue.len(), in_flight = s.in_flight.len(),
            poll_requested = s.poll_requested, quiet = s.quiet, "idle check"
        );
        s.pending.is_empty()
            && s.queue.is_empty()
            && s.in_flight.is_empty()
            && s.tasks == 0
            && !s.polling
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
            disabled_until: s.disabled_until.map(|until| {
                let left = until.saturating_duration_since(Instant::now());
                crate::journal::now_ms()
                    .saturating_add(i64::try_from(left.as_millis()).unwrap_or(i64::MAX))
            }),
            reason: s
                .failing
                .clone()
                .or_else(|| s.last_error.clone())
                .or_else(|| problems(&s)),
        }
    }

    /// Every item that needs a person, one `path: reason` a line.
    pub fn problems(&self) -> Vec<String> {
        problem_lines(&self.state())
    }

    pub fn excludes(&self) -> Arc<GlobSet> {
        self.cfg().excludes.clone()
    }

    /// What the plugin's latest poll said is not ready, `item: reason` a
    /// line, the first `NOT_READY_SHOWN` and then how many more.
    pub fn not_ready(&self) -> Vec<String> {
        let s = self.state();
        let (lines, more) = &s.not_ready;
        let mut shown: Vec<String> = lines.iter().take(NOT_READY_SHOWN).cloned().collect();
        let more = more + lines.len().saturating_sub(NOT_READY_SHOWN);
        if more > 0 {
            shown.push(format!("and {more} more"));
        }
        shown
    }

    /// Holds back this version of an item (read from the journal).
    pub fn hold(&self, path: String, sig: String, reason: String) {
        self.state().held.insert(path, (sig, reason));
    }

    /// Resumes a group the journal saved; one that has nothing left to send
    /// (its last Complete came just before the stop) is finished now.
    pub(super) async fn restore_group(&self, g: Group) {
        if g.remaining.is_empty() {
            tracing::info!(poller = %self.name(), group = %g.label(), "finishing a group whose transfers completed before a restart");
            self.finish_group(g).await;
            return;
        }
        tracing::info!(poller = %self.name(), group = %g.label(), remaining = g.remaining.len(), "resuming a group after a restart");
        self.state().groups.push(g);
    }

    /// Cancels every running transfer (shutdown after the grace period).
    pub fn cancel_all(&self) {
        for p in self.state().in_flight.values() {
            p.cancel.cancel();
        }
    }

    /// Puts a transfer left unfinished by a previous run back in the queue.
    pub(super) fn requeue(&self, q: Queued) {
        tracing::info!(poller = %self.name(), path = %q.path, "re-queued after a restart");
        self.state().queue.push_back(q);
    }

    /// The poller's loop, until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let now = Instant::now();
            if self.reenable_if_due(now) || self.poll_due(now) {
                self.poll_once().await;
                self.state().poll_cost = now.elapsed();
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
        let cfg = self.cfg();
        let s = self.state();
        if s.disabled_until.is_some() {
            return false;
        }
        let Some(last) = s.last_poll else { return true };
        let since = now.saturating_duration_since(last);
        since >= self.shared.settings().rescan_interval
            || s.drain_ended
            || (since >= s.poll_gap()
                && (s.poll_requested
                    || s.pending
                        .values()
                        .any(|p| now.saturating_duration_since(p.since) >= cfg.stability)))
    }

    fn next_deadline(&self) -> Instant {
        let cfg = self.cfg();
        let rescan = self.shared.settings().rescan_interval;
        let s = self.state();
        let now = Instant::now();
        let mut next = now + rescan;
        if let Some(until) = s.disabled_until {
            return until.min(next);
        }
        if s.drain_ended {
            return now;
        }
        if let Some(last) = s.last_poll {
            next = next.min(last + rescan);
            if s.poll_requested {
                next = next.min(last + s.poll_gap());
            }
            for p in s.pending.values() {
                next = next.min((p.since + cfg.stability).max(last + s.poll_gap()));
            }
        }
        if s.sending < cfg.max_transfers
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
                tracing::warn!(poller = %self.name(), "re-enabled after its cooldown");
                true
            }
            _ => false,
        }
    }

    fn excluded(&self, path: &str) -> bool {
        let name = path.rsplit('/').next().unwrap_or(path);
        self.cfg().excludes.is_match(name)
    }

    /// One poll, marked as running until all it found is in the state
    /// (so the poller is never seen idle halfway through one).
    async fn poll_once(self: &Arc<Self>) {
        self.state().polling = true;
        self.poll_inner().await;
        self.state().polling = false;
    }

    /// Runs the plugin, then sorts its actions into pending, queued, done
    /// now.
    async fn poll_inner(self: &Arc<Self>) {
        // What is queued or in flight as the plugin lists: such an item may
        // be sent and its source removed while it lists, so what its
        // listing saw of it is stale; it is read again below.
        let busy_before: HashSet<String> = {
            let mut s = self.state();
            s.drain_ended = false;
            if s.stopped {
                return;
            }
            s.poll_requested = false;
            s.last_poll = Some(Instant::now());
            s.busy_paths().cloned().collect()
        };
        let cfg = self.cfg();
        let (plugin, root, params) = (cfg.plugin.clone(), self.root.clone(), cfg.params.clone());
        let result = tokio::task::spawn_blocking(move || plugin.poll_full(&root, &params)).await;
        testhook::wait_at(Point::AfterList).await;
        let Polled {
            actions,
            unreadable,
            not_ready,
            not_ready_more,
            memory_peak: _,
            mut listed,
        } = match result {
            Ok(Ok(polled)) => polled,
            Ok(Err(e)) => return self.poll_failed(e.to_string()),
            Err(e) => return self.poll_failed(format!("poll task failed: {e}")),
        };
        tracing::trace!(poller = %self.name(), actions = actions.len(), "polled");
        let not_ready = not_ready
            .into_iter()
            .map(|n| match n.reason.as_str() {
                "" => n.item,
                why => format!("{}: {why}", n.item),
            })
            .collect();
        let was_failing = {
            let mut s = self.state();
            s.not_ready = (not_ready, not_ready_more);
            s.failing.take()
        };
        if let Some(was) = was_failing {
            tracing::info!(poller = %self.name(), "polling again (was failing: {was})");
        }
        let mut problems = self.unreadable_names(unreadable).await;

        // What the poll wants, with the group each transfer belongs to.
        let mut wanted: Vec<(String, Work)> = Vec::new();
        let mut touches: Vec<String> = Vec::new();
        let mut returned_groups: Vec<Group> = Vec::new();
        for action in actions {
            match action {
                Action::Transfer(t) => wanted.push((t.path, Work::Transfer(t.kind))),
                Action::Touch(p) => touches.push(p),
                Action::RemoveDir(p) => wanted.push((p, Work::Remove)),
                Action::Group { transfers, then } => {
                    let group = Group::new(transfers, then);
                    // A group sends all of its files or none: one left out
                    // would make its marker say something untrue.
                    if let Some(t) = group.transfers.iter().find(|t| self.excluded(&t.path)) {
                        problems.insert(
                            group.label(),
                            format!(
                                "`{}` matches `excludes`, and a group sends all of its files or none: nothing of it is sent",
                                t.path
                            ),
                        );
                        continue;
                    }
                    for t in &group.transfers {
                        wanted.push((t.path.clone(), Work::Transfer(t.kind)));
                    }
                    returned_groups.push(group);
                }
            }
        }
        // The agent's own temporary names (a source being removed) are never
        // items, whatever a plugin that shows hidden names says.
        wanted.retain(|(p, w)| {
            let excluded = matches!(w, Work::Transfer(_)) && self.excluded(p);
            !(removal::is_set_aside(p) || excluded)
        });
        // A group resumed after a restart still wants what it has left,
        // whether the poll returns it or not.
        {
            let s = self.state();
            for g in s.groups.iter().filter(|g| g.restored) {
                for t in g.transfers.iter().filter(|t| g.remaining.contains(&t.path)) {
                    if !wanted.iter().any(|(p, _)| p == &t.path) {
                        wanted.push((t.path.clone(), Work::Transfer(t.kind)));
                    }
                }
            }
        }

        // Signatures and sizes: what the plugin listed is stamped as its
        // listing saw it (with thousands of files, a second `stat` of each
        // was a tenth of the start); the rest is read outside the lock.
        let root = self.root.clone();
        let candidates: Vec<(String, Work, Option<Seen>)> = {
            let busy: HashSet<String> = self.state().busy_paths().cloned().collect();
            let todo: Vec<(String, Work)> = wanted
                .into_iter()
                .filter(|(p, _)| !busy.contains(p))
                .collect();
            listed.retain(|p, _| !busy_before.contains(p));
            let all_listed = todo.iter().all(|(p, _)| listed.contains_key(p));
            let stamp_all = move || {
                todo.into_iter()
                    .map(|(p, w)| {
                        let scan = match listed.get(&p) {
                            Some(meta) => Some(Scan::File(Stamp::of(meta))),
                            None => Scan::of(&root.join(&p)),
                        };
                        let seen = scan.map(|s| Seen {
                            sig: s.signature(),
                            size: s.size(),
                        });
                        (p, w, seen)
                    })
                    .collect()
            };
            if all_listed {
                stamp_all()
            } else {
                tokio::task::spawn_blocking(stamp_all)
                    .await
                    .unwrap_or_default()
            }
        };

        let now = Instant::now();
        let mut removals = Vec::new();
        let mut changed = !touches.is_empty();
        let mut new_groups = Vec::new();
        let mut released = Vec::new();
        let mut queued = Vec::new();
        {
            let mut s = self.state();
            let s = &mut *s;
            s.poll_problems = problems;
            for g in &mut s.groups {
                g.seen = false;
            }
            for group in returned_groups {
                if let Some(g) = s.groups.iter_mut().find(|g| g.key == group.key) {
                    g.seen = true;
                    continue;
                }
                new_groups.push((group.key.clone(), group.body()));
                s.groups.push(group);
            }
            let mut keep = HashSet::new();
            for (path, work, seen) in candidates {
                // `None`: it vanished since the plugin listed it.
                let Some(Seen { sig, size }) = seen else {
                    continue;
                };
                keep.insert(path.clone());
                match s.held.get(&path) {
                    // Sent already (its source could not be removed), or
                    // what is left of an item after what was sent.
                    Some((held, _)) if matches(held, &sig) => continue,
                    Some(_) => {
                        s.held.remove(&path);
                        released.push(path.clone());
                    }
                    None => {}
                }
                let stable = match s.pending.get(&path) {
                    Some(p) if p.sig == sig && p.work == work => {
                        now.saturating_duration_since(p.since) >= cfg.stability
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
                        cfg.stability.is_zero()
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
                            size,
                            path,
                            kind,
                            sig,
                            attempt: 0,
                            not_before: now,
                            check_delivered: false,
                        };
                        queued.push(self.event(&q, EventKind::Queued, 0, None));
                        tracing::debug!(poller = %self.name(), path = %q.path, "stable: queued");
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
            let (kept, dropped): (Vec<Group>, Vec<Group>) = std::mem::take(&mut s.groups)
                .into_iter()
                .partition(|g| g.seen || g.remaining.iter().any(|p| busy.contains(p)));
            s.groups = kept;
            new_groups.extend(dropped.into_iter().map(|g| (g.key, String::new())));
            s.quiet = !changed;
        }
        let journal = &self.shared.journal;
        // Before any of them starts: only this poller's loop dispatches,
        // after the poll, so each Queued precedes its Started.
        journal.record_all(queued);
        for (key, body) in new_groups {
            let saved = if body.is_empty() {
                journal.delete_group(&self.id, &key).await
            } else {
                journal.save_group(&self.id, &key, &body).await
            };
            if let Err(e) = saved {
                tracing::error!(poller = %self.name(), "cannot save a group in the journal: {e}");
            }
        }
        for path in released {
            if let Err(e) = journal.release(&self.id, &path).await {
                tracing::error!(poller = %self.name(), path = %path, "cannot update the journal: {e}");
            }
        }
        for p in touches {
            self.touch(&p).await;
        }
        for p in removals {
            self.remove_dir(&p).await;
        }
        if changed {
            self.state().poll_requested = true;
        }
    }

    /// Names the poll could not be shown: each is an error on the poller's
    /// state, and the first time it is seen also a row in the journal.
    async fn unreadable_names(&self, names: Vec<String>) -> BTreeMap<String, String> {
        const WHY: &str =
            "the name is not valid UTF-8, so no poller can see it and it is never sent: rename it";
        let before: HashSet<String> = self.state().poll_problems.keys().cloned().collect();
        let mut out = BTreeMap::new();
        for path in names {
            // Once per name, also over restarts.
            if !before.contains(&path)
                && !self
                    .shared
                    .journal
                    .has_error(&self.id, &path, WHY)
                    .await
                    .unwrap_or(false)
            {
                tracing::error!(poller = %self.name(), path = %path, "{WHY}");
                let q = Queued {
                    id: new_id(),
                    path: path.clone(),
                    kind: ItemKind::File,
                    sig: String::new(),
                    attempt: 0,
                    not_before: Instant::now(),
                    size: 0,
                    check_delivered: false,
                };
                self.shared
                    .journal
                    .record(self.event(&q, EventKind::Queued, 0, None));
                self.shared
                    .journal
                    .record(self.event(&q, EventKind::Error, 0, Some(WHY.into())));
            }
            out.insert(path, WHY.to_string());
        }
        out
    }

    fn poll_failed(&self, reason: String) {
        let mut s = self.state();
        if s.failing.as_deref() != Some(reason.as_str()) {
            tracing::error!(poller = %self.name(), "poll failed: {reason}");
        }
        s.failing = Some(reason);
        s.quiet = true;
    }

    /// Creates a marker, noted in the journal first: only markers this
    /// agent made are ever removed with their directory.
    async fn touch(&self, rel: &str) {
        if let Err(e) = self.shared.journal.add_marker(&self.id, rel).await {
            tracing::error!(poller = %self.name(), path = %rel, "cannot note the marker in the journal: {e}");
        }
        // Beneath the root: a marker whose name (or folder) is a symlink out
        // of it is refused, never created where the link points.
        match Beneath::open(&self.root).and_then(|b| b.create(Path::new(rel))) {
            Ok(_) => tracing::info!(poller = %self.name(), path = %rel, "created marker"),
            Err(e) => {
                tracing::error!(poller = %self.name(), path = %rel, "cannot create marker: {e}")
            }
        }
    }

    /// A `remove-dir`: the directory goes with the markers this agent made
    /// in it, and only if it holds nothing else (whatever was sent from it
    /// was removed already, file by file).
    async fn remove_dir(&self, rel: &str) {
        let journal = &self.shared.journal;
        let markers = match journal.markers_in(&self.id, rel).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(poller = %self.name(), path = %rel, "cannot read the markers from the journal: {e}");
                return;
            }
        };
        let dir = self.root.join(rel);
        let id = removal::dir_aside_id(&self.id, rel);
        let outcome = {
            let (root, dir) = (self.root.clone(), dir.clone());
            tokio::task::spawn_blocking(move || {
                removal::remove_marked_dir(&root, &dir, &markers, &id)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
        };
        let reason = match outcome {
            Ok(Removed::All) => {
                tracing::info!(poller = %self.name(), path = %rel, "removed directory");
                if let Err(e) = journal.forget_markers(&self.id, rel).await {
                    tracing::warn!(poller = %self.name(), "cannot update the journal: {e}");
                }
                return;
            }
            Ok(Removed::Gone | Removed::Changed) => return,
            Ok(Removed::Kept(why)) => format!("not removed: {why}"),
            Err(e) => format!("cannot remove the directory: {e}"),
        };
        tracing::warn!(poller = %self.name(), path = %rel, "{reason}");
        if let Some(sig) = signature(&dir) {
            self.hold_in_journal(rel, &sig, &reason).await;
        }
    }

    /// Holds back this version of an item, in memory and in the journal.
    async fn hold_in_journal(&self, rel: &str, sig: &str, reason: &str) {
        self.state()
            .held
            .insert(rel.to_string(), (sig.to_string(), reason.to_string()));
        if let Err(e) = self.shared.journal.hold(&self.id, rel, sig, reason).await {
            tracing::error!(poller = %self.name(), path = %rel, "cannot note in the journal that this is held back: {e}");
        }
    }

    fn event(&self, q: &Queued, kind: EventKind, bytes_done: u64, error: Option<String>) -> Event {
        Event {
            transfer_id: q.id.clone(),
            poller: self.id.clone(),
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
}

/// Every item that needs a person, as `path: reason`.
fn problem_lines(s: &State) -> Vec<String> {
    s.poll_problems
        .iter()
        .chain(s.item_problems.iter())
        .chain(s.held.iter().map(|(p, (_, r))| (p, r)))
        .map(|(p, r)| format!("{p}: {r}"))
        .collect()
}

/// Every item's problem in one line (the first few).
fn problems(s: &State) -> Option<String> {
    let all = problem_lines(s);
    match all.len() {
        0 => None,
        1..=3 => Some(all.join("; ")),
        n => Some(format!("{}; and {} more", all[..3].join("; "), n - 3)),
    }
}
