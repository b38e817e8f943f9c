//! A poller's transfers: start queued items while there is room, send
//! them, check that each source did not change meanwhile, settle, record
//! each Complete durably, remove the sources, and retry failures with
//! backoff. Small files of a target that takes batches go several to a
//! slot: their fixed cost per item (thread hops, a journal round trip, a
//! wake-up) is paid once per batch, which is most of the time with many
//! small files.

use super::{Poller, Queued, Settings};
use crate::engine::alert::{self, Alert};
use crate::engine::groups::Group;
use crate::engine::removal::{self, Removed};
use crate::journal::EventKind;
use dispatch_runtime::actions::{FollowUp, ItemKind};
use dispatch_transfer::beneath::Beneath;
use dispatch_transfer::stability::{Scan, matches, signature};
use dispatch_transfer::testhook::{self, Point};
use dispatch_transfer::{Job, Progress, Sent, TransferError};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often a running transfer's progress goes to the journal.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Files up to this size may share a slot (see [`Poller::dispatch`]).
const BATCH_ITEM_MAX: u64 = 1 << 20;

/// One item of a running transfer.
struct Item {
    q: Queued,
    progress: Arc<Progress>,
}

/// A sent source to remove, as its scan after the send saw it.
struct Removal {
    source: PathBuf,
    scan: Scan,
    id: String,
}

/// An item sent, unchanged since, and not yet complete.
struct Sending {
    item: Item,
    sent: Sent,
    scan: Scan,
}

/// Whether `q` may share a slot with others: a small file, not one that
/// a restart left in flight (that one asks the target first).
fn batchable(q: &Queued) -> bool {
    q.kind == ItemKind::File && q.size <= BATCH_ITEM_MAX && !q.check_delivered
}

/// Takes the next ready item from the queue and, if it is a small file
/// and the target takes batches, more ready small files after it: the
/// ready ones spread over the free slots, at most `limit` to one. With few
/// items each goes on its own, as many at once as before.
fn take_batch(
    queue: &mut VecDeque<Queued>,
    now: Instant,
    limit: usize,
    free: usize,
) -> Vec<Queued> {
    let ready = |q: &Queued| q.not_before <= now;
    let Some(i) = queue.iter().position(ready) else {
        return Vec::new();
    };
    let Some(first) = queue.remove(i) else {
        return Vec::new();
    };
    if limit <= 1 || !batchable(&first) {
        return vec![first];
    }
    let others = queue.iter().filter(|q| ready(q) && batchable(q)).count();
    let take = (others + 1).div_ceil(free.max(1)).min(limit);
    let mut batch = vec![first];
    let mut j = i;
    while batch.len() < take && j < queue.len() {
        if ready(&queue[j]) && batchable(&queue[j]) {
            batch.extend(queue.remove(j));
        } else {
            j += 1;
        }
    }
    batch
}

impl Poller {
    /// Starts queued transfers while there is room.
    pub(super) fn dispatch(self: &Arc<Self>) {
        let now = Instant::now();
        let mut s = self.state();
        if s.disabled_until.is_some() || s.stopped {
            return;
        }
        let cfg = self.cfg();
        let limit = cfg.backend.batch_limit();
        while s.sending < cfg.max_transfers {
            if !s.queue.iter().any(|q| q.not_before <= now) {
                break;
            }
            let permit = match &self.shared.agent_slots() {
                Some(sem) => match sem.clone().try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) => break,
                },
                None => None,
            };
            let free = cfg.max_transfers - s.sending;
            let items: Vec<Item> = take_batch(&mut s.queue, now, limit, free)
                .into_iter()
                .map(|q| Item {
                    q,
                    progress: Arc::new(Progress::default()),
                })
                .collect();
            for it in &items {
                s.in_flight.insert(it.q.path.clone(), it.progress.clone());
            }
            s.sending += 1;
            s.tasks += 1;
            let (this, cfg) = (self.clone(), cfg.clone());
            tokio::spawn(async move {
                let shared = this.shared.clone();
                this.clone().transfer(items, cfg).await;
                this.transfer_ended();
                drop(permit);
                shared.slot_freed();
            });
        }
    }

    /// Sends one item or a batch, then records, removes, retries or trips
    /// the breaker, item by item.
    async fn transfer(self: Arc<Self>, mut items: Vec<Item>, cfg: Arc<Settings>) {
        for it in &mut items {
            it.q.attempt += 1;
            self.shared
                .journal
                .record(self.event(&it.q, EventKind::Started, 0, None));
            tracing::info!(poller = %self.name(), path = %it.q.path, attempt = it.q.attempt, to = %cfg.backend.describe(), "transfer started");
        }
        let jobs: Vec<Job> = items
            .iter()
            .map(|it| Job {
                root: self.root.clone(),
                path: it.q.path.clone(),
                kind: it.q.kind,
                excludes: cfg.excludes.clone(),
                id: it.q.id.clone(),
                sig: it.q.sig.clone(),
                restarted: it.q.check_delivered,
            })
            .collect();
        testhook::wait_at(Point::BeforeSend).await;
        let mut results = self.send(&cfg, &jobs, &items).await;
        // One result per item, whatever the backend did.
        results.resize_with(items.len(), || {
            Err(TransferError::transient(
                "the target gave no result for this item",
            ))
        });
        testhook::wait_at(Point::AfterSend).await;
        // The source must not have changed while it was sent; this scan is
        // also what the removal compares each entry with.
        let sources: Vec<PathBuf> = jobs.iter().map(Job::source).collect();
        let n = sources.len();
        let scans =
            tokio::task::spawn_blocking(move || sources.iter().map(|s| Scan::of(s)).collect())
                .await
                .unwrap_or_else(|_| vec![None; n]);
        // Sent (or failed): the slot goes to the next items now.
        self.state().sending -= 1;
        self.wake.notify_one();
        let mut sent = Vec::new();
        for ((item, result), scan) in items.into_iter().zip(results).zip(scans) {
            sent.extend(self.checked(&cfg, item, result, scan).await);
        }
        self.complete(sent, &cfg).await;
    }

    /// A transfer task ends: it asks for a poll (what comes next may be
    /// ready now) in the same step, so the poller is never seen idle
    /// between the two.
    fn transfer_ended(&self) {
        {
            let mut s = self.state();
            s.tasks -= 1;
            s.poll_requested = true;
            s.drain_ended = s.tasks == 0 && s.queue.is_empty() && s.in_flight.is_empty();
        }
        self.wake.notify_one();
    }

    /// The backend's send (a batch's in one go), with progress going to
    /// the journal. An item a restart left in flight is first looked for
    /// at the destination.
    async fn send(
        &self,
        cfg: &Settings,
        jobs: &[Job],
        items: &[Item],
    ) -> Vec<Result<Sent, TransferError>> {
        if let ([job], [it]) = (jobs, items)
            && it.q.check_delivered
            && cfg.backend.delivered(job).await == Some(true)
        {
            // A crash came between the final rename and the Complete
            // record: what the receiver has is this very item.
            tracing::warn!(poller = %self.name(), path = %it.q.path, "found whole at the destination after a restart: not sent again");
            return vec![Ok(Sent::of(it.q.size))];
        }
        let send = async {
            match (jobs, items) {
                ([job], [it]) => vec![cfg.backend.send(job, it.progress.clone()).await],
                _ => {
                    let pairs: Vec<(Job, Arc<Progress>)> = jobs
                        .iter()
                        .cloned()
                        .zip(items.iter().map(|it| it.progress.clone()))
                        .collect();
                    cfg.backend.send_batch(&pairs).await
                }
            }
        };
        tokio::pin!(send);
        let mut ticker = tokio::time::interval(PROGRESS_EVERY);
        ticker.tick().await;
        loop {
            tokio::select! {
                r = &mut send => break r,
                _ = ticker.tick() => {
                    for it in items {
                        self.shared.journal.record(self.event(&it.q, EventKind::Progress, it.progress.bytes_done(), None));
                    }
                }
            }
        }
    }

    /// What the send of one item came to, once its source was scanned
    /// again: sent and unchanged (to complete), or recorded as failed,
    /// cancelled or changed (its copy abandoned).
    async fn checked(
        &self,
        cfg: &Settings,
        item: Item,
        mut result: Result<Sent, TransferError>,
        scan: Option<Scan>,
    ) -> Option<Sending> {
        let q = &item.q;
        let changed = !scan
            .as_ref()
            .is_some_and(|s| matches(&q.sig, &s.signature()));
        if changed && let Ok(sent) = &result {
            // Not to be settled: nothing of it may take the final name.
            cfg.backend.abandon(sent).await;
            if scan.is_some() {
                result = Err(TransferError::transient(
                    "the source changed during the transfer; it will be sent again once stable",
                ));
            }
        }
        let done = item.progress.bytes_done();
        match (result, scan) {
            (Ok(sent), Some(scan)) => return Some(Sending { item, sent, scan }),
            (Err(e), _) if e.cancelled => {
                self.shared.journal.record(self.event(
                    q,
                    EventKind::Cancelled,
                    done,
                    Some("cancelled at shutdown".into()),
                ));
                tracing::warn!(poller = %self.name(), path = %q.path, "transfer cancelled");
                self.state().in_flight.remove(&q.path);
            }
            (Err(e), _) => self.failed(item.q, e, changed, done),
            (Ok(_), None) => self.failed(
                item.q,
                TransferError::transient("the source vanished during the transfer"),
                true,
                done,
            ),
        }
        None
    }

    /// Makes the sent items durable at their final names, records their
    /// Completes durably, and only then removes their sources.
    async fn complete(&self, batch: Vec<Sending>, cfg: &Settings) {
        let batch = self.settle_all(batch, cfg).await;
        if batch.is_empty() {
            return;
        }
        testhook::wait_at(Point::BeforeComplete).await;
        let batch = self.record_complete(batch).await;
        if batch.is_empty() {
            return;
        }
        testhook::wait_at(Point::BeforeRemove).await;
        for (q, bytes, outcome) in self.remove_sources(batch, cfg).await {
            self.note_removal(&q, bytes, outcome).await;
            tracing::info!(poller = %self.name(), path = %q.path, bytes, "transfer complete");
            self.succeeded(&q.path).await;
        }
    }

    /// Settles the items (concurrently: their flushes share the disk's
    /// work); gives those that settled, and fails the others.
    async fn settle_all(&self, batch: Vec<Sending>, cfg: &Settings) -> Vec<Sending> {
        let sent: Vec<&Sent> = batch.iter().map(|b| &b.sent).collect();
        let settled = cfg.backend.settle_batch(&sent).await;
        let mut ok = Vec::with_capacity(batch.len());
        for (b, r) in batch.into_iter().zip(settled) {
            match r {
                Ok(()) => ok.push(b),
                Err(e) => self.failed(b.item.q, e, false, b.sent.bytes),
            }
        }
        ok
    }

    /// Records the items' Completes on disk (one commit for a batch),
    /// before any source goes: a crash never loses the record of a
    /// transfer whose source was removed. An item whose record did not
    /// reach the disk keeps its source and is sent again.
    async fn record_complete(&self, batch: Vec<Sending>) -> Vec<Sending> {
        let events = batch
            .iter()
            .map(|b| self.event(&b.item.q, EventKind::Complete, b.sent.bytes, None))
            .collect();
        let recorded = self.shared.journal.record_durable_all(events).await;
        let mut ok = Vec::with_capacity(batch.len());
        for (b, r) in batch.into_iter().zip(recorded) {
            match r {
                Ok(()) => ok.push(b),
                Err(e) => {
                    let e = TransferError::transient(format!(
                        "sent, but the Complete record could not be written ({e}): the source is kept and sent again"
                    ));
                    self.failed(b.item.q, e, false, b.sent.bytes);
                }
            }
        }
        ok
    }

    /// Removes the sources (one blocking task for a batch), each only as
    /// far as its scan after the send saw it.
    async fn remove_sources(
        &self,
        batch: Vec<Sending>,
        cfg: &Settings,
    ) -> Vec<(Queued, u64, std::io::Result<Removed>)> {
        let mut done = Vec::with_capacity(batch.len());
        let mut todo = Vec::with_capacity(batch.len());
        for b in batch {
            todo.push(Removal {
                source: self.root.join(&b.item.q.path),
                id: b.item.q.id.clone(),
                scan: b.scan,
            });
            done.push((b.item.q, b.sent.bytes));
        }
        let (root, excludes, n) = (self.root.clone(), cfg.excludes.clone(), todo.len());
        let outcomes = tokio::task::spawn_blocking(move || match Beneath::open(&root) {
            Ok(root) => todo
                .iter()
                .map(|r| removal::remove_sent(&root, &r.source, &r.scan, &excludes, &r.id))
                .collect::<Vec<_>>(),
            Err(e) => todo
                .iter()
                .map(|_| Err(std::io::Error::new(e.kind(), e.to_string())))
                .collect(),
        })
        .await
        .unwrap_or_else(|e| {
            (0..n)
                .map(|_| Err(std::io::Error::other(e.to_string())))
                .collect()
        });
        done.into_iter()
            .zip(outcomes)
            .map(|((q, bytes), outcome)| (q, bytes, outcome))
            .collect()
    }

    /// An item is complete: it leaves the in-flight set, and the groups
    /// waiting for it are saved, or finished when it was their last.
    async fn succeeded(&self, path: &str) {
        let done = {
            let mut s = self.state();
            s.in_flight.remove(path);
            s.failures = 0;
            s.last_error = None;
            s.item_problems.remove(path);
            let mut done = Vec::new();
            let mut i = 0;
            while i < s.groups.len() {
                if s.groups[i].remaining.remove(path) && s.groups[i].remaining.is_empty() {
                    done.push(s.groups.remove(i));
                } else {
                    i += 1;
                }
            }
            done
        };
        self.save_groups_with(path).await;
        for g in done {
            self.finish_group(g).await;
        }
    }

    /// Records what the removal of a sent source did.
    async fn note_removal(&self, q: &Queued, bytes: u64, outcome: std::io::Result<Removed>) {
        let removed_event = || self.event(q, EventKind::SourceRemoved, bytes, None);
        match outcome {
            Ok(Removed::All | Removed::Gone) => self.shared.journal.record(removed_event()),
            Ok(Removed::Changed) => {
                // The version sent is gone (replaced); the new one is an
                // item of its own and goes through the stability check.
                tracing::info!(poller = %self.name(), path = %q.path, "a new version arrived after the transfer: it is kept and sent in turn");
                self.shared.journal.record(removed_event());
            }
            Ok(Removed::Kept(why)) => {
                tracing::warn!(poller = %self.name(), path = %q.path, "sent; {why}: left in place");
                self.shared.journal.record(removed_event());
                let rest = self.root.join(&q.path);
                if let Some(sig) = tokio::task::spawn_blocking(move || signature(&rest))
                    .await
                    .ok()
                    .flatten()
                {
                    self.hold_in_journal(&q.path, &sig, &format!("sent; {why}, left in place"))
                        .await;
                }
            }
            Err(e) => {
                let why = format!("sent, but the source cannot be removed: {e}");
                tracing::error!(poller = %self.name(), path = %q.path, "{why}");
                self.hold_in_journal(&q.path, &q.sig, &why).await;
            }
        }
    }

    /// Saves (in the journal) every group that was waiting for `path`.
    async fn save_groups_with(&self, path: &str) {
        let bodies: Vec<(String, String)> = self
            .state()
            .groups
            .iter()
            .filter(|g| g.transfers.iter().any(|t| t.path == path))
            .map(|g| (g.key.clone(), g.body()))
            .collect();
        for (key, body) in bodies {
            if let Err(e) = self.shared.journal.save_group(&self.id, &key, &body).await {
                tracing::error!(poller = %self.name(), "cannot save a group in the journal: {e}");
            }
        }
    }

    /// Every transfer of `g` succeeded: runs its follow-ups, unless a file
    /// it did not send sits among the ones it did.
    pub(super) async fn finish_group(&self, g: Group) {
        if let Err(e) = self.shared.journal.delete_group(&self.id, &g.key).await {
            tracing::error!(poller = %self.name(), "cannot update a group in the journal: {e}");
        }
        let strangers = {
            let (g, root) = (g.clone(), self.root.clone());
            tokio::task::spawn_blocking(move || g.strangers(&root))
                .await
                .unwrap_or_default()
        };
        if !strangers.is_empty() {
            let shown: Vec<String> = strangers.iter().take(5).map(|p| format!("`{p}`")).collect();
            let why = format!(
                "{} arrived during the delivery and {} not sent, so {} not done: the delivery is not whole",
                shown.join(", "),
                if strangers.len() == 1 { "was" } else { "were" },
                g.then
                    .iter()
                    .map(|f| match f {
                        FollowUp::Touch(p) => format!("`{p}` was"),
                        FollowUp::RemoveDir(p) => format!("removing `{p}` was"),
                    })
                    .collect::<Vec<_>>()
                    .join(" and ")
            );
            tracing::error!(poller = %self.name(), group = %g.label(), "{why}");
            self.state().item_problems.insert(g.label(), why);
            return;
        }
        for f in g.then {
            match f {
                FollowUp::Touch(p) => self.touch(&p).await,
                FollowUp::RemoveDir(p) => self.remove_dir(&p).await,
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
        let settings = self.shared.settings();
        let retry = &settings.retry;
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
        s.last_error = Some(e.message.clone());
        if e.item_only {
            // This item's own problem: the poller goes on with the others.
            s.item_problems.insert(q.path.clone(), e.message.clone());
            tracing::warn!(poller = %self.name(), path = %q.path, retry_in = ?wait, "transfer failed: {}", e.message);
            q.not_before = Instant::now() + wait;
            s.queue.push_back(q);
            return;
        }
        s.failures += 1;
        tracing::warn!(
            poller = %self.name(), path = %q.path, attempt = q.attempt, retry_in = ?wait,
            permanent = e.permanent, "transfer failed: {}", e.message
        );
        if changed {
            // Back through the stability check, as a new item.
            return;
        }
        q.not_before = Instant::now() + wait;
        s.queue.push_front(q);
        if s.failures >= self.shared.settings().failures_before_disable
            && s.disabled_until.is_none()
        {
            let cooldown = self.shared.settings().disable_cooldown;
            s.disabled_until = Some(Instant::now() + cooldown);
            tracing::error!(
                poller = %self.name(), failures = s.failures, "disabled after {} consecutive failures; re-enabled in {cooldown:?}. Last error: {}",
                s.failures, e.message
            );
            let alert = Alert {
                poller: self.name(),
                host: self.shared.host.clone(),
                failures: s.failures,
                reason: e.message,
                reenable_in_secs: cooldown.as_secs(),
            };
            let shared = self.shared.clone();
            tokio::spawn(async move { alert::send(&shared.settings().alerts, alert).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(path: &str, kind: ItemKind, size: u64, not_before: Instant) -> Queued {
        Queued {
            id: path.to_string(),
            path: path.to_string(),
            kind,
            sig: String::new(),
            attempt: 0,
            not_before,
            size,
            check_delivered: false,
        }
    }

    fn paths(batch: &[Queued]) -> Vec<&str> {
        batch.iter().map(|q| q.path.as_str()).collect()
    }

    #[test]
    fn small_files_are_spread_over_the_free_slots_in_queue_order() {
        let now = Instant::now();
        let mut queue: VecDeque<Queued> = (0..10)
            .map(|i| queued(&format!("f{i}"), ItemKind::File, 4096, now))
            .collect();
        // 10 ready over 3 free slots: 4, then 3 over 2, then 3 over 1.
        assert_eq!(
            paths(&take_batch(&mut queue, now, 64, 3)),
            ["f0", "f1", "f2", "f3"]
        );
        assert_eq!(
            paths(&take_batch(&mut queue, now, 64, 2)),
            ["f4", "f5", "f6"]
        );
        assert_eq!(paths(&take_batch(&mut queue, now, 2, 1)), ["f7", "f8"]);
        assert_eq!(paths(&take_batch(&mut queue, now, 64, 1)), ["f9"]);
        assert!(take_batch(&mut queue, now, 64, 1).is_empty());
    }

    #[test]
    fn large_files_directories_waiting_and_restarted_items_go_alone() {
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        let mut restarted = queued("restarted", ItemKind::File, 10, now);
        restarted.check_delivered = true;
        let mut queue: VecDeque<Queued> = [
            queued("big", ItemKind::File, BATCH_ITEM_MAX + 1, now),
            queued("a", ItemKind::File, 10, now),
            queued("dir", ItemKind::Dir, 10, now),
            queued("backoff", ItemKind::File, 10, later),
            restarted,
            queued("b", ItemKind::File, 10, now),
        ]
        .into();
        assert_eq!(paths(&take_batch(&mut queue, now, 64, 1)), ["big"]);
        // Small ready files after `a` join it; the others stay, in order.
        assert_eq!(paths(&take_batch(&mut queue, now, 64, 1)), ["a", "b"]);
        assert_eq!(paths(&take_batch(&mut queue, now, 64, 1)), ["dir"]);
        assert_eq!(paths(&take_batch(&mut queue, now, 64, 1)), ["restarted"]);
        assert_eq!(
            paths(&queue.iter().cloned().collect::<Vec<_>>()),
            ["backoff"]
        );
        // A target that takes no batches: one at a time.
        let mut queue: VecDeque<Queued> = (0..3)
            .map(|i| queued(&format!("f{i}"), ItemKind::File, 1, now))
            .collect();
        assert_eq!(paths(&take_batch(&mut queue, now, 1, 1)), ["f0"]);
    }
}
