//! What the web app forgets, and what it keeps. Ingested event ids go after
//! a week (idempotent ingest needs them only while an agent may send a
//! batch again). With a retention set, finished transfers older than it go
//! from the log. The statistics stay: the hourly rollups keep every
//! transfer counted after its row is gone.

use crate::db::Db;
use crate::on_db;
use std::time::Duration;

/// How long an ingested event's id is remembered (idempotent ingest): far
/// longer than an agent retries a batch whose answer it did not get.
pub const EVENT_IDS_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Rows deleted per statement: the write lock is held briefly, so ingest
/// goes on while a large backlog is pruned.
const BATCH: i64 = 5000;

fn cutoff(kept: Duration) -> i64 {
    crate::now_ms().saturating_sub(i64::try_from(kept.as_millis()).unwrap_or(i64::MAX))
}

/// Forgets ingested event ids older than `kept`; gives how many went.
pub async fn forget_event_ids(db: &Db, kept: Duration) -> Result<u64, sqlx::Error> {
    let before = cutoff(kept);
    on_db!(db, pool => {
        sqlx::query("DELETE FROM ingested_events WHERE at < $1")
            .bind(before)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    })
}

/// Forgets finished transfers (complete, failed, cancelled) last changed
/// more than `kept` ago; transfers still queued or in flight stay whatever
/// their age. Gives how many went.
pub async fn forget_finished_transfers(db: &Db, kept: Duration) -> Result<u64, sqlx::Error> {
    let before = cutoff(kept);
    let mut gone = 0;
    loop {
        let n = on_db!(db, pool => {
            sqlx::query(
                "DELETE FROM transfers WHERE id IN (
                    SELECT id FROM transfers
                    WHERE status IN ('Complete', 'Error', 'Cancelled') AND updated_at < $1
                    LIMIT $2)",
            )
            .bind(before)
            .bind(BATCH)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        gone += n;
        if n < BATCH as u64 {
            return Ok(gone);
        }
    }
}

/// Forgets sessions past their expiry (they no longer log anyone in, but
/// each login adds one); gives how many went.
pub async fn forget_expired_sessions(db: &Db) -> Result<u64, sqlx::Error> {
    let now = crate::now_ms();
    on_db!(db, pool => {
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    })
}

/// Prunes every hour, for as long as the server runs: event ids, expired
/// sessions, and finished transfers when `transfers_kept` is set.
pub fn keep_pruned(db: Db, transfers_kept: Option<Duration>) {
    tokio::spawn(async move {
        loop {
            match forget_event_ids(&db, EVENT_IDS_KEPT).await {
                Ok(n) => tracing::debug!(forgotten = n, "old ingested event ids forgotten"),
                Err(e) => tracing::warn!("cannot prune ingested event ids: {e}"),
            }
            if let Err(e) = forget_expired_sessions(&db).await {
                tracing::warn!("cannot prune expired sessions: {e}");
            }
            if let Some(kept) = transfers_kept {
                match forget_finished_transfers(&db, kept).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        forgotten = n,
                        "finished transfers older than the retention removed from the log (still counted in the statistics)"
                    ),
                    Err(e) => tracing::warn!("cannot prune the transfer log: {e}"),
                }
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    });
}
