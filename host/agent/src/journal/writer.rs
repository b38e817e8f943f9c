//! The journal's one writer: a thread of its own with a synchronous SQLite
//! connection (rusqlite). Events arrive on a channel and are committed in
//! batches, one transaction each, with cached prepared statements. Through
//! sqlx every statement was a round trip to its worker thread (two context
//! switches), about ten per small file sent; here a batch costs none.

use super::{Ack, Event, EventKind, Msg, Status};
use rusqlite::{Connection, Transaction, params};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// At most this many events in one transaction.
const BATCH: usize = 2000;

static EVENT_SEQ: AtomicU64 = AtomicU64::new(0);

/// Starts the writer's thread on `conn` (the schema is in place), which
/// ends when every sender is gone.
pub(super) fn start(
    conn: Connection,
    rx: mpsc::UnboundedReceiver<Msg>,
    host: String,
) -> Result<(), String> {
    let writer = Writer {
        conn,
        host,
        run: format!("{:08x}", fastrand::u32(..)),
        synced: true,
    };
    std::thread::Builder::new()
        .name("journal-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| format!("cannot start its writer: {e}"))?;
    Ok(())
}

/// The writer's connection: every commit flushed unless a batch says
/// otherwise.
pub(super) fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

struct Writer {
    conn: Connection,
    host: String,
    /// Part of every event id: unique to this process.
    run: String,
    /// Whether `synchronous` is FULL now (else NORMAL).
    synced: bool,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let mut acks: Vec<Ack> = Vec::new();
            let mut events = Vec::with_capacity(batch.len());
            for msg in batch {
                match msg {
                    Msg::Flush(ack) => acks.push(ack),
                    Msg::Event(e, at, ack) => {
                        acks.extend(ack);
                        events.push((e, at));
                    }
                }
            }
            // A batch nobody waits for (queued, started, progress…) is
            // committed without an fsync; the next waited-for batch's fsync
            // of the WAL makes it durable too. Thousands of small transfers
            // then cost about one fsync per batch of Completes.
            let answer = self.commit(&events, !acks.is_empty()).map_err(|e| {
                tracing::error!("cannot write the transfer journal: {e}");
                format!("cannot write the transfer journal: {e}")
            });
            for a in acks {
                let _ = a.send(answer.clone());
            }
        }
    }

    fn commit(&mut self, events: &[(Event, i64)], durable: bool) -> rusqlite::Result<()> {
        if durable != self.synced {
            let mode = if durable { "FULL" } else { "NORMAL" };
            self.conn.pragma_update(None, "synchronous", mode)?;
            self.synced = durable;
        }
        let tx = self.conn.transaction()?;
        for (e, at) in events {
            let seq = EVENT_SEQ.fetch_add(1, Ordering::Relaxed);
            let event_id = format!("{}-{}-{seq}", e.transfer_id, self.run);
            apply(&tx, e, *at, &self.host, &event_id)?;
        }
        tx.commit()
    }
}

/// Writes one event: its row in `events` (but a progress report's) and
/// what it changes of its transfer's row.
fn apply(
    tx: &Transaction<'_>,
    e: &Event,
    at: i64,
    host: &str,
    event_id: &str,
) -> rusqlite::Result<()> {
    let size = e.size.map(|s| i64::try_from(s).unwrap_or(i64::MAX));
    let done = i64::try_from(e.bytes_done).unwrap_or(i64::MAX);
    if e.kind != EventKind::Progress {
        tx.prepare_cached(
            "INSERT INTO events (event_id, transfer_id, poller, path, event, size, bytes_done, attempt, error, at, host)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )?
        .execute(params![
            event_id,
            e.transfer_id,
            e.poller,
            e.path,
            e.kind.as_str(),
            size,
            done,
            e.attempt,
            e.error,
            at,
            host
        ])?;
    }
    match e.kind {
        EventKind::Queued => tx
            .prepare_cached(
                "INSERT INTO transfers (id, poller, path, item_kind, status, size, host, queued_at, signature)
                 VALUES (?, ?, ?, ?, 'Queued', ?, ?, ?, ?)
                 ON CONFLICT(id) DO UPDATE SET status = 'Queued', size = excluded.size, signature = excluded.signature",
            )?
            .execute(params![
                e.transfer_id,
                e.poller,
                e.path,
                e.item_kind,
                size,
                host,
                at,
                e.signature
            ])?,
        EventKind::Started => tx
            .prepare_cached(
                "UPDATE transfers SET status = 'Transferring', attempts = ?1, started_at = ?2, progress_at = ?2, bytes_done = 0, ended_at = NULL WHERE id = ?3",
            )?
            .execute(params![e.attempt, at, e.transfer_id])?,
        EventKind::Progress => tx
            .prepare_cached("UPDATE transfers SET bytes_done = ?, progress_at = ? WHERE id = ?")?
            .execute(params![done, at, e.transfer_id])?,
        EventKind::SourceRemoved => tx
            .prepare_cached("UPDATE transfers SET source_removed = 1 WHERE id = ?")?
            .execute(params![e.transfer_id])?,
        EventKind::Complete | EventKind::Error | EventKind::Cancelled => {
            let status = match e.kind {
                EventKind::Complete => Status::Complete,
                EventKind::Error => Status::Error,
                _ => Status::Cancelled,
            };
            tx.prepare_cached(
                "UPDATE transfers SET status = ?, bytes_done = ?, error = ?, ended_at = ? WHERE id = ?",
            )?
            .execute(params![status.as_str(), done, e.error, at, e.transfer_id])?
        }
    };
    Ok(())
}
