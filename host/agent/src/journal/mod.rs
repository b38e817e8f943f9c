//! The durable transfer journal: every event of every transfer, in a local
//! SQLite file (WAL, synchronous=FULL), for `dispatch-agent transfers` and
//! for the web app to ingest (each event has an id chosen here, so ingest can
//! be idempotent).
//!
//! Writes go through one thread that commits in batches (`writer`):
//! thousands of small transfers cost one fsync per batch, not one per
//! event. `record_durable_all` waits until its events are committed (used
//! before a source is removed). Reads go through sqlx.

mod writer;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Statuses of a transfer, as in the central log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Queued,
    Transferring,
    Complete,
    Error,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "Queued",
            Status::Transferring => "Transferring",
            Status::Complete => "Complete",
            Status::Error => "Error",
            Status::Cancelled => "Cancelled",
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Queued,
    Started,
    Progress,
    Complete,
    Error,
    Cancelled,
    /// The source of a complete transfer was removed.
    SourceRemoved,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::Queued => "queued",
            EventKind::Started => "started",
            EventKind::Progress => "progress",
            EventKind::Complete => "complete",
            EventKind::Error => "error",
            EventKind::Cancelled => "cancelled",
            EventKind::SourceRemoved => "source_removed",
        }
    }
}

/// One event of one transfer.
#[derive(Debug, Clone)]
pub struct Event {
    pub transfer_id: String,
    pub poller: String,
    pub path: String,
    /// `file` or `dir`.
    pub item_kind: &'static str,
    pub kind: EventKind,
    pub size: Option<u64>,
    pub bytes_done: u64,
    pub attempt: u32,
    pub error: Option<String>,
    /// The item's stability signature when queued (path + sizes + mtimes).
    pub signature: Option<String>,
}

/// A row of the journal's transfer table.
#[derive(Debug, Clone)]
pub struct TransferRow {
    pub id: String,
    pub poller: String,
    pub path: String,
    pub item_kind: String,
    pub status: String,
    pub size: Option<i64>,
    pub bytes_done: i64,
    pub attempts: i64,
    pub error: Option<String>,
    pub host: String,
    pub queued_at: Option<i64>,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    /// When `bytes_done` was measured (the attempt's start until the first
    /// progress): a progress report carries this time, not the time of the
    /// report, so it never looks newer than the attempt's end.
    pub progress_at: Option<i64>,
    pub signature: Option<String>,
}

/// The answer to a waiter: committed, or why not.
type Ack = oneshot::Sender<Result<(), String>>;

enum Msg {
    /// An event, its time, and who waits for its commit.
    Event(Event, i64, Option<Ack>),
    /// Answered once everything sent before it is committed.
    Flush(Ack),
}

/// Handle to the journal; cheap to clone.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::UnboundedSender<Msg>,
    pool: SqlitePool,
    path: std::path::PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("transfer journal {path}: {message}")]
pub struct JournalError {
    path: String,
    message: String,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS transfers (
        id TEXT PRIMARY KEY,
        poller TEXT NOT NULL,
        path TEXT NOT NULL,
        item_kind TEXT NOT NULL,
        status TEXT NOT NULL,
        size INTEGER,
        bytes_done INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        host TEXT NOT NULL,
        queued_at INTEGER,
        started_at INTEGER,
        ended_at INTEGER,
        signature TEXT,
        source_removed INTEGER NOT NULL DEFAULT 0,
        progress_at INTEGER
    )",
    "CREATE INDEX IF NOT EXISTS transfers_status ON transfers(status, source_removed)",
    // `event_id` is unique by construction (transfer id, this process's
    // run, a counter) and never looked up here; an index on it cost a
    // random b-tree insert per event (about 5% of the CPU of a drain of
    // small files).
    // Journals made before keep their UNIQUE index (SQLite cannot drop it).
    "CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        transfer_id TEXT NOT NULL,
        poller TEXT NOT NULL,
        path TEXT NOT NULL,
        event TEXT NOT NULL,
        size INTEGER,
        bytes_done INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        error TEXT,
        at INTEGER NOT NULL,
        host TEXT NOT NULL
    )",
    // Versions of items not to send (again), with the reason shown on the
    // poller's state: sent but the source cannot be removed, or what was
    // left of an item because it was never sent.
    "CREATE TABLE IF NOT EXISTS held (
        poller TEXT NOT NULL,
        path TEXT NOT NULL,
        signature TEXT NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (poller, path)
    )",
    // Marker files this agent created (a poller's `touch`): only these may
    // be removed with a directory.
    "CREATE TABLE IF NOT EXISTS markers (
        poller TEXT NOT NULL,
        path TEXT NOT NULL,
        PRIMARY KEY (poller, path)
    )",
    // Groups not finished yet (their follow-ups wait), so a restart resumes them.
    "CREATE TABLE IF NOT EXISTS groups (
        poller TEXT NOT NULL,
        key TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (poller, key)
    )",
    // How far the web app has been told (`[report]`).
    "CREATE TABLE IF NOT EXISTS report_cursor (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL)",
];

/// Creates what is missing of the schema (one transaction: one commit for
/// a new journal) on the writer's connection, before any other opens: a
/// pooled connection that prepared a statement before a column was added
/// would read rows with the old columns.
fn create_schema(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let mut conn = writer::connect(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let tx = conn.transaction()?;
    for stmt in SCHEMA {
        tx.execute(stmt, [])?;
    }
    add_missing_columns(&tx)?;
    tx.commit()?;
    Ok(conn)
}

/// Columns added after a journal's first release: a journal written by an
/// older agent gets them on open.
fn add_missing_columns(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    let has = conn
        .prepare("SELECT name FROM pragma_table_info('transfers')")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    if !has.iter().any(|c| c == "progress_at") {
        conn.execute("ALTER TABLE transfers ADD COLUMN progress_at INTEGER", [])?;
    }
    Ok(())
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A new random transfer id.
pub fn new_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

impl Journal {
    /// Opens (creating) the journal file and starts its writer thread.
    pub async fn open(path: &Path, host: &str) -> Result<Self, JournalError> {
        let err = |message: String| JournalError {
            path: path.display().to_string(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (at, writer_host) = (path.to_path_buf(), host.to_string());
        tokio::task::spawn_blocking(move || {
            let conn = create_schema(&at).map_err(|e| e.to_string())?;
            writer::start(conn, rx, writer_host)
        })
        .await
        .map_err(|e| err(e.to_string()))?
        .map_err(err)?;
        // Reads, and the small state tables written directly.
        let options = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            tx,
            pool,
            path: path.to_path_buf(),
        })
    }

    /// Records an event (committed with the next batch).
    pub fn record(&self, event: Event) {
        let _ = self.tx.send(Msg::Event(event, now_ms(), None));
    }

    /// Records events, in order, nobody waiting for their commit.
    pub fn record_all(&self, events: Vec<Event>) {
        let at = now_ms();
        for event in events {
            let _ = self.tx.send(Msg::Event(event, at, None));
        }
    }

    /// Records events and waits until they are on disk (usually one
    /// commit for all): for each, in order, an error when its commit
    /// failed (then nothing may rely on it).
    pub async fn record_durable_all(&self, events: Vec<Event>) -> Vec<Result<(), String>> {
        let at = now_ms();
        let waits: Vec<_> = events
            .into_iter()
            .map(|event| {
                let (done, wait) = oneshot::channel();
                let sent = self.tx.send(Msg::Event(event, at, Some(done)));
                (sent.is_ok(), wait)
            })
            .collect();
        let mut out = Vec::with_capacity(waits.len());
        for (sent, wait) in waits {
            let stopped = || "the journal writer has stopped".to_string();
            out.push(match sent {
                true => wait.await.unwrap_or_else(|_| Err(stopped())),
                false => Err(stopped()),
            });
        }
        out
    }

    /// Waits until everything recorded so far is committed.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Whether the latest transfer of `path` ended with exactly `error`.
    pub async fn has_error(
        &self,
        poller: &str,
        path: &str,
        error: &str,
    ) -> Result<bool, sqlx::Error> {
        let last: Option<Option<String>> = sqlx::query_scalar(
            "SELECT error FROM transfers WHERE poller = ? AND path = ? ORDER BY rowid DESC LIMIT 1",
        )
        .bind(poller)
        .bind(path)
        .fetch_optional(&self.pool)
        .await?;
        Ok(last.flatten().as_deref() == Some(error))
    }

    /// Holds back this version of an item (see the `held` table).
    pub async fn hold(
        &self,
        poller: &str,
        path: &str,
        signature: &str,
        reason: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO held (poller, path, signature, reason) VALUES (?, ?, ?, ?) ON CONFLICT (poller, path) DO UPDATE SET signature = excluded.signature, reason = excluded.reason")
            .bind(poller)
            .bind(path)
            .bind(signature)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Lets an item go again (it changed since it was held).
    pub async fn release(&self, poller: &str, path: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM held WHERE poller = ? AND path = ?")
            .bind(poller)
            .bind(path)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every held item: (poller, path, signature, reason).
    pub async fn held(&self) -> Result<Vec<(String, String, String, String)>, sqlx::Error> {
        sqlx::query_as("SELECT poller, path, signature, reason FROM held")
            .fetch_all(&self.pool)
            .await
    }

    /// Notes, before it is created, a marker this agent makes.
    pub async fn add_marker(&self, poller: &str, path: &str) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO markers (poller, path) VALUES (?, ?) ON CONFLICT DO NOTHING")
            .bind(poller)
            .bind(path)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Names of the markers this agent made directly inside `dir`.
    pub async fn markers_in(&self, poller: &str, dir: &str) -> Result<Vec<String>, sqlx::Error> {
        let prefix = format!("{dir}/");
        let paths: Vec<String> = sqlx::query_scalar(
            "SELECT path FROM markers WHERE poller = ? AND substr(path, 1, ?) = ?",
        )
        .bind(poller)
        .bind(i64::try_from(prefix.len()).unwrap_or(i64::MAX))
        .bind(&prefix)
        .fetch_all(&self.pool)
        .await?;
        Ok(paths
            .into_iter()
            .filter_map(|p| p.strip_prefix(&prefix).map(str::to_string))
            .filter(|name| !name.contains('/'))
            .collect())
    }

    /// The directories holding markers this agent made.
    pub async fn marker_dirs(&self, poller: &str) -> Result<Vec<String>, sqlx::Error> {
        let paths: Vec<String> = sqlx::query_scalar("SELECT path FROM markers WHERE poller = ?")
            .bind(poller)
            .fetch_all(&self.pool)
            .await?;
        let mut dirs: Vec<String> = paths
            .iter()
            .filter_map(|p| p.rsplit_once('/').map(|(d, _)| d.to_string()))
            .collect();
        dirs.sort();
        dirs.dedup();
        Ok(dirs)
    }

    /// Forgets the markers inside `dir` (it was removed).
    pub async fn forget_markers(&self, poller: &str, dir: &str) -> Result<(), sqlx::Error> {
        let prefix = format!("{dir}/");
        sqlx::query("DELETE FROM markers WHERE poller = ? AND substr(path, 1, ?) = ?")
            .bind(poller)
            .bind(i64::try_from(prefix.len()).unwrap_or(i64::MAX))
            .bind(&prefix)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Saves an unfinished group (`body` is its JSON), replacing the last save.
    pub async fn save_group(&self, poller: &str, key: &str, body: &str) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO groups (poller, key, body) VALUES (?, ?, ?) ON CONFLICT (poller, key) DO UPDATE SET body = excluded.body")
            .bind(poller)
            .bind(key)
            .bind(body)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_group(&self, poller: &str, key: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM groups WHERE poller = ? AND key = ?")
            .bind(poller)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The unfinished groups of `poller`: (key, body).
    pub async fn groups(&self, poller: &str) -> Result<Vec<(String, String)>, sqlx::Error> {
        sqlx::query_as("SELECT key, body FROM groups WHERE poller = ? ORDER BY rowid")
            .bind(poller)
            .fetch_all(&self.pool)
            .await
    }

    /// The paths of `poller` whose transfers completed at `since` or later.
    pub async fn completed_since(
        &self,
        poller: &str,
        since: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT path FROM transfers WHERE poller = ? AND status = 'Complete' AND ended_at >= ?",
        )
        .bind(poller)
        .bind(since)
        .fetch_all(&self.pool)
        .await
    }

    /// The newest transfers first.
    pub async fn list(&self, limit: i64) -> Result<Vec<TransferRow>, sqlx::Error> {
        let rows = sqlx::query("SELECT * FROM transfers ORDER BY COALESCE(started_at, queued_at) DESC, rowid DESC LIMIT ?")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(row).collect())
    }

    /// Transfers left queued or in flight (by a crash), oldest first.
    /// Complete transfers whose source was not (yet) recorded as removed: a
    /// crash between the Complete commit and the unlink leaves these.
    pub async fn complete_not_removed(&self) -> Result<Vec<TransferRow>, sqlx::Error> {
        let rows = sqlx::query("SELECT * FROM transfers WHERE status = 'Complete' AND source_removed = 0 ORDER BY rowid")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(row).collect())
    }

    pub async fn unfinished(&self) -> Result<Vec<TransferRow>, sqlx::Error> {
        let rows = sqlx::query("SELECT * FROM transfers WHERE status IN ('Queued', 'Transferring') ORDER BY queued_at, rowid")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(row).collect())
    }
}

fn row(r: &sqlx::sqlite::SqliteRow) -> TransferRow {
    TransferRow {
        id: r.get("id"),
        poller: r.get("poller"),
        path: r.get("path"),
        item_kind: r.get("item_kind"),
        status: r.get("status"),
        size: r.get("size"),
        bytes_done: r.get("bytes_done"),
        attempts: r.get("attempts"),
        error: r.get("error"),
        host: r.get("host"),
        queued_at: r.get("queued_at"),
        started_at: r.get("started_at"),
        ended_at: r.get("ended_at"),
        progress_at: r.get("progress_at"),
        signature: r.get("signature"),
    }
}

/// A journal event as the web app's agent API takes it (`poller` holds the
/// poller's id until the reporter puts its name there).
pub type ReportEvent = dispatch_protocol::Event;

impl Journal {
    /// Events after `seq` (oldest first, at most `limit`), with their seq.
    /// Source removals are the agent's own bookkeeping and are left out.
    pub async fn events_after(
        &self,
        seq: i64,
        limit: i64,
    ) -> Result<(Vec<ReportEvent>, Option<i64>), sqlx::Error> {
        let rows = sqlx::query("SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(seq)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let last = rows.last().map(|r| r.get::<i64, _>("seq"));
        let events = rows
            .iter()
            .filter(|r| r.get::<String, _>("event") != EventKind::SourceRemoved.as_str())
            .map(|r| ReportEvent {
                id: r.get("event_id"),
                transfer_id: r.get("transfer_id"),
                poller: r.get("poller"),
                poller_id: Some(r.get("poller")),
                path: r.get("path"),
                event: r.get("event"),
                size: r.get("size"),
                bytes_done: r.get("bytes_done"),
                attempt: r.get("attempt"),
                error: r.get("error"),
                at: r.get("at"),
                host: Some(r.get("host")),
            })
            .collect();
        Ok((events, last))
    }

    /// Transfers in flight now, with their bytes so far (progress).
    pub async fn transferring(&self) -> Result<Vec<TransferRow>, sqlx::Error> {
        let rows = sqlx::query("SELECT * FROM transfers WHERE status = 'Transferring'")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(row).collect())
    }

    /// How far the web app has been told (0: nothing yet).
    pub async fn report_cursor(&self) -> Result<i64, sqlx::Error> {
        Ok(
            sqlx::query_scalar("SELECT seq FROM report_cursor WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?
                .unwrap_or(0),
        )
    }

    pub async fn set_report_cursor(&self, seq: i64) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO report_cursor (id, seq) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq")
            .bind(seq)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// What one pruning of the journal removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub events: u64,
    pub transfers: u64,
}

impl Journal {
    /// Keeps the journal's size bounded on a busy agent: removes the events
    /// the web app has acknowledged (at or before the report cursor), and
    /// finished transfers (sent and source removed, failed, cancelled) that
    /// ended more than `keep` ago with their events. Events not reported
    /// yet are kept whatever their age when `reporting`; without a web app
    /// they go with their age. What recovery needs (queued, in flight,
    /// sent with the source not yet removed, held items, markers, groups)
    /// is never removed. Freed pages are reused, so the file stops growing.
    pub async fn prune(
        &self,
        keep: std::time::Duration,
        reporting: bool,
    ) -> Result<Pruned, sqlx::Error> {
        let keep = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        self.prune_ended_before(now_ms().saturating_sub(keep), reporting)
            .await
    }

    async fn prune_ended_before(
        &self,
        cutoff: i64,
        reporting: bool,
    ) -> Result<Pruned, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let transfers = sqlx::query(
            "DELETE FROM transfers WHERE ended_at < ?
               AND ((status = 'Complete' AND source_removed = 1) OR status IN ('Error', 'Cancelled'))",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let cursor: i64 = sqlx::query_scalar("SELECT seq FROM report_cursor WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await?
            .unwrap_or(0);
        let mut events = sqlx::query("DELETE FROM events WHERE seq <= ?")
            .bind(cursor)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if !reporting {
            events += sqlx::query(
                "DELETE FROM events WHERE at < ? AND transfer_id NOT IN (SELECT id FROM transfers)",
            )
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(Pruned { events, transfers })
    }
}

impl Journal {
    /// The journal's size on disk (the database and its write-ahead log).
    pub fn size_on_disk(&self) -> u64 {
        let with = |suffix: &str| {
            let mut p = self.path.as_os_str().to_owned();
            p.push(suffix);
            std::fs::metadata(p).map_or(0, |m| m.len())
        };
        with("") + with("-wal")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, kind: EventKind) -> Event {
        Event {
            transfer_id: id.into(),
            poller: "p".into(),
            path: format!("{id}.mxf"),
            item_kind: "file",
            kind,
            size: Some(1),
            bytes_done: 0,
            attempt: 1,
            error: None,
            signature: None,
        }
    }

    async fn journal_with(transfers: &[(&str, &[EventKind])]) -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let j = Journal::open(&dir.path().join("j.sqlite"), "h")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for (id, kinds) in transfers {
            for k in *kinds {
                j.record(event(id, *k));
            }
        }
        j.flush().await;
        (dir, j)
    }

    async fn ids(j: &Journal, sql: &'static str) -> Vec<String> {
        sqlx::query_scalar(sql)
            .fetch_all(&j.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    use EventKind::{Complete, Error as Failed, Queued, SourceRemoved, Started};

    #[tokio::test]
    async fn old_finished_transfers_go_and_what_recovery_needs_stays() {
        let (_d, j) = journal_with(&[
            ("sent", &[Queued, Started, Complete, SourceRemoved]),
            ("failed", &[Queued, Started, Failed]),
            ("not_removed", &[Queued, Started, Complete]),
            ("in_flight", &[Queued, Started]),
        ])
        .await;
        let later = now_ms() + 1;
        let pruned = j
            .prune_ended_before(later, false)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pruned.transfers, 2);
        let left = ids(&j, "SELECT id FROM transfers ORDER BY id").await;
        assert_eq!(left, ["in_flight", "not_removed"]);
        let with_events = ids(&j, "SELECT DISTINCT transfer_id FROM events ORDER BY 1").await;
        assert_eq!(with_events, ["in_flight", "not_removed"]);
        // Nothing ended before the cutoff: nothing more goes.
        let again = j
            .prune_ended_before(0, false)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again, Pruned::default());
    }

    /// A journal an older agent wrote (no `progress_at`) opens and records
    /// progress with its time.
    #[tokio::test]
    async fn a_journal_from_before_progress_times_opens_and_keeps_them() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("j.sqlite");
        let old = SqlitePoolOptions::new()
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let old_schema = SCHEMA[0].replace(",\n        progress_at INTEGER", "");
        assert!(!old_schema.contains("progress_at"), "{old_schema}");
        sqlx::query(sqlx::AssertSqlSafe(old_schema))
            .execute(&old)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        old.close().await;
        let j = Journal::open(&path, "h")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut progress = event("t", EventKind::Progress);
        progress.bytes_done = 7;
        for e in [
            event("t", EventKind::Queued),
            event("t", EventKind::Started),
            progress,
        ] {
            j.record(e);
        }
        j.flush().await;
        let rows = j.transferring().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].bytes_done, 7);
        assert!(
            rows[0]
                .progress_at
                .is_some_and(|t| t >= rows[0].started_at.unwrap_or(i64::MAX))
        );
    }

    #[tokio::test]
    async fn with_a_web_app_only_acknowledged_events_go() {
        let (_d, j) = journal_with(&[
            ("a", &[Queued, Started, Complete, SourceRemoved]),
            ("b", &[Queued, Started, Complete, SourceRemoved]),
        ])
        .await;
        let first_b: i64 =
            sqlx::query_scalar("SELECT min(seq) FROM events WHERE transfer_id = 'b'")
                .fetch_one(&j.pool)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        j.set_report_cursor(first_b - 1)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Both transfers are old, but b's events were never acknowledged.
        j.prune_ended_before(now_ms() + 1, true)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let left = ids(&j, "SELECT DISTINCT transfer_id FROM events ORDER BY 1").await;
        assert_eq!(left, ["b"]);
        let (events, _) = j
            .events_after(first_b - 1, 100)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            events.len(),
            3,
            "b's events are still reported (source removal aside)"
        );
    }
}
