//! What a restart picks up from the journal: sources sent but not yet
//! removed, transfers a crash left queued or in flight, versions held back,
//! and groups whose follow-ups still wait.

use super::groups::Group;
use super::poller::{Poller, Queued};
use super::removal::{Removed, dir_aside_id, remove_sent, restore};
use crate::journal::{Event, EventKind, Journal, TransferRow};
use dispatch_runtime::actions::ItemKind;
use dispatch_transfer::Job;
use dispatch_transfer::beneath::Beneath;
use dispatch_transfer::stability::{Scan, matches};

/// Reads the journal back into `p` (see the module doc): once per poller
/// and process, when it starts.
pub(super) async fn recover(journal: &Journal, p: &Poller) -> Result<(), sqlx::Error> {
    let mine = |poller: &str| poller == p.id;
    for (poller, path, sig, reason) in journal.held().await? {
        if mine(&poller) {
            p.hold(path, sig, reason);
        }
    }
    for row in journal.complete_not_removed().await? {
        if mine(&row.poller) {
            remove_sent_before(journal, p, &row).await;
        }
    }
    journal.flush().await;
    for row in journal.unfinished().await? {
        if mine(&row.poller) {
            requeue(journal, p, &row).await;
        }
    }
    // A `remove-dir` the crash interrupted: its directory had markers.
    for dir in journal.marker_dirs(&p.id).await? {
        if let Err(e) = restore(p.root(), &p.root().join(&dir), &dir_aside_id(&p.id, &dir)) {
            tracing::error!(poller = %p.name(), path = %dir, "cannot put back what an interrupted removal left: {e}");
        }
    }
    for (key, body) in journal.groups(&p.id).await? {
        match Group::restore(key.clone(), &body) {
            Some(mut g) => {
                // A crash between an item's Complete and the group's next
                // save left the item in `remaining`: it is never sent again,
                // so the group would wait for it forever.
                if let Some(since) = g.since {
                    for path in journal.completed_since(&p.id, since).await? {
                        g.remaining.remove(&path);
                    }
                }
                p.restore_group(g).await;
            }
            None => journal.delete_group(&p.id, &key).await?,
        }
    }
    Ok(())
}

fn event(row: &TransferRow, kind: EventKind, error: Option<String>) -> Event {
    Event {
        transfer_id: row.id.clone(),
        poller: row.poller.clone(),
        path: row.path.clone(),
        item_kind: if row.item_kind == "dir" {
            "dir"
        } else {
            "file"
        },
        kind,
        size: row.size.and_then(|s| u64::try_from(s).ok()),
        bytes_done: 0,
        attempt: u32::try_from(row.attempts).unwrap_or(0),
        error,
        signature: row.signature.clone(),
    }
}

/// Sent and recorded Complete, but the agent stopped before the source was
/// removed: remove what was sent now, so it is not sent twice. A source
/// that still cannot be removed is held back (never sent again).
async fn remove_sent_before(journal: &Journal, p: &Poller, row: &TransferRow) {
    let root = p.root().to_path_buf();
    let source = root.join(&row.path);
    let sent = row.signature.clone().unwrap_or_default();
    let (excludes, id) = (p.excludes().clone(), row.id.clone());
    let outcome = tokio::task::spawn_blocking(move || {
        // A removal the crash interrupted is undone first.
        restore(&root, &source, &id)?;
        // Still the content that was sent: this scan is what was sent.
        match Scan::of(&source) {
            Some(scan) if matches(&sent, &scan.signature()) => {
                remove_sent(&Beneath::open(&root)?, &source, &scan, &excludes, &id).map(Some)
            }
            // Gone already, or other content (a new item): nothing to do.
            _ => Ok(None),
        }
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
    match outcome {
        Ok(Some(Removed::All)) => {
            tracing::warn!(poller = %row.poller, path = %row.path, "removed a source sent before the last shutdown");
        }
        Ok(Some(Removed::Kept(why))) => {
            tracing::warn!(poller = %row.poller, path = %row.path, "removed what was sent before the last shutdown; {why}");
            if let Some(sig) = dispatch_transfer::stability::signature(&p.root().join(&row.path)) {
                let reason = format!("sent; {why}, left in place");
                if let Err(e) = journal.hold(&row.poller, &row.path, &sig, &reason).await {
                    tracing::error!("cannot update the journal: {e}");
                }
                p.hold(row.path.clone(), sig, reason);
            }
        }
        Ok(_) => {}
        Err(e) => {
            let reason = format!("sent, but the source cannot be removed: {e}");
            tracing::error!(poller = %row.poller, path = %row.path, "{reason}");
            let sig = row.signature.clone().unwrap_or_default();
            if let Err(e) = journal.hold(&row.poller, &row.path, &sig, &reason).await {
                tracing::error!("cannot update the journal: {e}");
            }
            p.hold(row.path.clone(), sig, reason);
            return;
        }
    }
    journal.record(event(row, EventKind::SourceRemoved, None));
}

/// A transfer a crash left queued or in flight goes back in the queue (same
/// transfer id; the attempt count goes on) if its source is unchanged. One
/// that was in flight is first looked for at the destination: the crash may
/// have come after its final rename. One whose source changed or vanished
/// ends, and what its attempt left at the destination is discarded.
async fn requeue(journal: &Journal, p: &Poller, row: &TransferRow) {
    let kind = if row.item_kind == "dir" {
        ItemKind::Dir
    } else {
        ItemKind::File
    };
    let sig = dispatch_transfer::stability::signature(&p.root().join(&row.path));
    let (ended, why) = match sig {
        Some(sig) if row.signature.as_deref().is_some_and(|s| matches(s, &sig)) => {
            journal.record(event(row, EventKind::Queued, None));
            p.requeue(Queued {
                id: row.id.clone(),
                path: row.path.clone(),
                kind,
                sig,
                attempt: u32::try_from(row.attempts).unwrap_or(0),
                not_before: tokio::time::Instant::now(),
                size: row.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                check_delivered: row.status == "Transferring",
            });
            return;
        }
        // Changed since: back through the stability check instead.
        Some(_) => (
            EventKind::Cancelled,
            "the source changed while the agent was down",
        ),
        None => (
            EventKind::Error,
            "the source vanished before the transfer finished",
        ),
    };
    // Never sent again under this id: what its attempt left goes.
    let cfg = p.cfg();
    let job = Job {
        root: p.root().to_path_buf(),
        path: row.path.clone(),
        kind,
        excludes: cfg.excludes.clone(),
        id: row.id.clone(),
        sig: String::new(),
        restarted: true,
    };
    cfg.backend.discard(&job).await;
    journal.record(event(row, ended, Some(why.into())));
}
