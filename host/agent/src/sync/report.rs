//! Reports to the web app: the journal's events (at least once, in order,
//! from a cursor kept in the journal, so nothing is lost while the web app
//! is away; the web app ignores an event id it already has, so the log
//! holds each exactly once), the progress of transfers in flight, and
//! heartbeats with each poller's health, whose answers carry commands.

use super::Client;
use crate::engine::Engine;
use crate::journal::{ReportEvent, TransferRow, new_id, now_ms};
use dispatch_protocol::{Command, Heartbeat, HeartbeatReply, PollerState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const BATCH: i64 = 500;
/// Every poller's state goes out at least this often (more often when it
/// changes).
const FULL_STATE_EVERY: Duration = Duration::from_secs(15);

/// What the configuration loop tells the heartbeat (connected mode).
#[derive(Debug, Default)]
pub struct ConfigStatus {
    pub etag: Option<String>,
    pub error: Option<String>,
}

pub(crate) struct Reporter {
    client: Client,
    engine: Arc<Engine>,
    status: Arc<Mutex<ConfigStatus>>,
    interval: Duration,
    heartbeat: Duration,
    /// Bytes last reported per transfer in flight.
    sent_progress: HashMap<String, i64>,
    /// Commands done, said in the next heartbeat.
    done: Vec<String>,
    /// Poller states as last sent, and when all were last sent.
    sent_states: Vec<PollerState>,
    full_at: Option<Instant>,
    /// The last failure, logged once until it changes.
    last_error: Option<String>,
}

impl Reporter {
    pub(crate) fn new(
        client: Client,
        engine: Arc<Engine>,
        status: Arc<Mutex<ConfigStatus>>,
        interval: Duration,
        heartbeat: Duration,
    ) -> Self {
        Self {
            client,
            engine,
            status,
            interval,
            heartbeat,
            sent_progress: HashMap::new(),
            done: Vec::new(),
            sent_states: Vec::new(),
            full_at: None,
            last_error: None,
        }
    }

    /// Reports until `stop`, then once more so the last events go out.
    pub(crate) async fn run(mut self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_beat: Option<Instant> = None;
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                () = stop.cancelled() => true,
            };
            if stopping {
                self.engine.journal().flush().await;
            }
            let mut result = self.send_events().await;
            if result.is_ok() {
                result = self.send_progress().await;
            }
            if result.is_ok() && last_beat.is_none_or(|t| t.elapsed() >= self.heartbeat) {
                result = self.send_heartbeat().await;
                if result.is_ok() {
                    last_beat = Some(Instant::now());
                }
            }
            self.note(result);
            if stopping {
                break;
            }
        }
    }

    fn note(&mut self, result: Result<(), String>) {
        match result {
            Ok(()) => {
                if self.last_error.take().is_some() {
                    tracing::info!(to = %self.client.base, "reporting to the web app again");
                }
            }
            Err(e) => {
                if self.last_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!(to = %self.client.base, "cannot report to the web app (will retry): {e}");
                }
                self.last_error = Some(e);
            }
        }
    }

    /// Names instead of ids, as the log shows them.
    fn named(&self, mut events: Vec<ReportEvent>) -> Vec<ReportEvent> {
        for e in &mut events {
            e.poller = self.engine.name_of(&e.poller);
            e.fit();
        }
        events
    }

    async fn post_events(&self, events: Vec<ReportEvent>) -> Result<(), String> {
        let batch = dispatch_protocol::EventBatch {
            events: self.named(events),
        };
        self.client
            .post("/api/v1/agent/events", &batch)
            .await
            .map(drop)
    }

    /// Every journal event after the cursor, in batches; the cursor moves
    /// only after the web app has taken a batch.
    async fn send_events(&self) -> Result<(), String> {
        let journal = self.engine.journal();
        let journal_err = |e: sqlx::Error| format!("reading the journal: {e}");
        let mut cursor = journal.report_cursor().await.map_err(journal_err)?;
        loop {
            let (events, last) = journal
                .events_after(cursor, BATCH)
                .await
                .map_err(journal_err)?;
            let Some(last) = last else { return Ok(()) };
            if !events.is_empty() {
                self.post_events(events).await?;
            }
            journal.set_report_cursor(last).await.map_err(journal_err)?;
            cursor = last;
        }
    }

    /// The bytes of each transfer in flight, when they changed.
    async fn send_progress(&mut self) -> Result<(), String> {
        let rows = self
            .engine
            .journal()
            .transferring()
            .await
            .map_err(|e| format!("reading the journal: {e}"))?;
        let host = self.engine.host();
        let events: Vec<ReportEvent> = rows
            .iter()
            .filter(|r| self.sent_progress.get(&r.id) != Some(&r.bytes_done))
            .map(|r| progress_event(r, host))
            .collect();
        if events.is_empty() {
            return Ok(());
        }
        self.post_events(events).await?;
        self.sent_progress = rows.into_iter().map(|r| (r.id, r.bytes_done)).collect();
        Ok(())
    }

    fn poller_states(&self) -> Vec<PollerState> {
        let errors = self.engine.errors();
        let mut states: Vec<PollerState> = self
            .engine
            .pollers()
            .iter()
            .map(|p| {
                let h = p.health();
                let cfg = p.cfg();
                PollerState {
                    id: Some(p.id.clone()),
                    name: cfg.name.clone(),
                    consecutive_errors: i64::from(h.failures),
                    disabled: h.disabled,
                    disabled_until: h.disabled_until,
                    reason: h.reason,
                    plugin_version: Some(cfg.plugin.info().version.clone()),
                    config_error: errors.get(&p.id).cloned(),
                    not_ready: p.not_ready(),
                }
            })
            .collect();
        // Pollers whose newest settings could not start at all (the empty
        // id is the agent settings' error, said in `config_error`).
        for (id, error) in errors.iter().filter(|(id, _)| !id.is_empty()) {
            if !states.iter().any(|s| s.id.as_deref() == Some(id)) {
                states.push(PollerState {
                    id: Some(id.clone()),
                    name: self.engine.name_of(id),
                    config_error: Some(error.clone()),
                    reason: Some(error.clone()),
                    ..PollerState::default()
                });
            }
        }
        states
    }

    async fn send_heartbeat(&mut self) -> Result<(), String> {
        let states = self.poller_states();
        let full = self.full_at.is_none_or(|t| t.elapsed() >= FULL_STATE_EVERY);
        let unchanged = !full && states == self.sent_states;
        let pollers = if unchanged {
            Vec::new()
        } else {
            states.clone()
        };
        let (config_etag, config_error) = {
            let s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            (s.etag.clone(), s.error.clone())
        };
        let mut beat = Heartbeat {
            version: env!("CARGO_PKG_VERSION").into(),
            host_name: self.engine.host().to_string(),
            pollers,
            pollers_unchanged: unchanged,
            config_etag,
            config_error,
            done: self.done.clone(),
            journal_bytes: i64::try_from(self.engine.journal().size_on_disk()).ok(),
        };
        beat.fit();
        let answer = self.client.post("/api/v1/agent/heartbeat", &beat).await?;
        self.done.clear();
        if full {
            self.full_at = Some(Instant::now());
        }
        self.sent_states = states;
        // An older web app answers 204 with no body: no commands.
        let reply: HeartbeatReply = serde_json::from_slice(&answer).unwrap_or_default();
        for c in reply.commands {
            self.run_command(&c);
            self.done.push(c.id);
        }
        Ok(())
    }

    /// Does what a person asked; a command of an unknown kind is
    /// acknowledged and ignored (a newer web app).
    fn run_command(&self, c: &Command) {
        match (c.kind.as_str(), &c.transfer_id, &c.poller_id) {
            ("retry", Some(id), _) => {
                if self.engine.retry_now(id) {
                    tracing::info!(transfer = %id, "retrying now, as asked on the web page");
                }
            }
            ("enable", _, Some(id)) => {
                if self.engine.reset_breaker(id) {
                    tracing::info!(poller = %self.engine.name_of(id), "breaker reset, as asked on the web page");
                }
            }
            (kind, _, _) => tracing::debug!(command = %c.id, "ignored a command of kind `{kind}`"),
        }
    }
}

/// A progress report of a transfer in flight, timed when its bytes were
/// measured: the attempt's end may already be recorded (and go out in the
/// next batch) with a time earlier than now, and the web app keeps the
/// newest status by time.
fn progress_event(r: &TransferRow, host: &str) -> ReportEvent {
    ReportEvent {
        id: format!("progress-{}", new_id()),
        transfer_id: r.id.clone(),
        poller: r.poller.clone(),
        poller_id: Some(r.poller.clone()),
        path: r.path.clone(),
        event: "progress".into(),
        size: r.size,
        bytes_done: r.bytes_done,
        attempt: r.attempts,
        error: None,
        at: r.progress_at.or(r.started_at).unwrap_or_else(now_ms),
        host: Some(host.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Event, EventKind, Journal};

    fn event(kind: EventKind, bytes_done: u64) -> Event {
        Event {
            transfer_id: "t".into(),
            poller: "p".into(),
            path: "big.mxf".into(),
            item_kind: "file",
            kind,
            size: Some(100),
            bytes_done,
            attempt: 1,
            error: None,
            signature: None,
        }
    }

    /// Seen in CI: the reporter read a transfer in flight, the transfer
    /// ended meanwhile, and the progress went out stamped "now", newer
    /// than the end: the web app's log kept showing it in flight.
    #[tokio::test]
    async fn a_progress_read_before_the_end_is_never_newer_than_the_end() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let j = Journal::open(&dir.path().join("j.sqlite"), "h")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for (kind, done) in [
            (EventKind::Queued, 0),
            (EventKind::Started, 0),
            (EventKind::Progress, 40),
        ] {
            j.record(event(kind, done));
        }
        j.flush().await;
        let in_flight = j.transferring().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(in_flight.len(), 1);
        j.record(event(EventKind::Complete, 100));
        j.flush().await;
        let (events, _) = j
            .events_after(0, 10)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let end = events
            .iter()
            .find(|e| e.event == "complete")
            .map(|e| e.at)
            .unwrap_or_else(|| panic!("no complete event in {events:?}"));
        // The report is built after the end, on a later clock tick.
        while now_ms() <= end {
            tokio::task::yield_now().await;
        }
        let progress = progress_event(&in_flight[0], "h");
        assert_eq!(progress.bytes_done, 40);
        assert!(
            progress.at <= end,
            "progress at {} is newer than the end at {end}",
            progress.at
        );
    }
}
