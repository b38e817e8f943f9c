//! Reports to the web app: the journal's events (at least once, in order,
//! from a cursor kept in the journal, so nothing is lost while the web app
//! is away), the progress of transfers in flight, and heartbeats with each
//! poller's health. The web app ignores an event id it already has, so a
//! batch resent after a lost answer changes nothing.

use super::poller::Poller;
use crate::config::ReportConfig;
use crate::journal::{Journal, ReportEvent, new_id, now_ms};
use crate::secret::Secret;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const BATCH: i64 = 500;

pub(crate) struct Reporter {
    http: reqwest::Client,
    base: String,
    token: Secret,
    journal: Journal,
    host: String,
    pollers: Vec<Arc<Poller>>,
    interval: Duration,
    heartbeat: Duration,
    /// Bytes last reported per transfer in flight.
    sent_progress: HashMap<String, i64>,
    /// Retries asked for on the web page and already acted on.
    retried: HashSet<String>,
    /// The last failure, logged once until it changes.
    last_error: Option<String>,
}

impl Reporter {
    pub(crate) fn new(
        cfg: &ReportConfig,
        token: Secret,
        journal: Journal,
        host: String,
        pollers: Vec<Arc<Poller>>,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            http,
            base: cfg.url.trim_end_matches('/').to_string(),
            token,
            journal,
            host,
            pollers,
            interval: cfg.interval,
            heartbeat: cfg.heartbeat,
            sent_progress: HashMap::new(),
            retried: HashSet::new(),
            last_error: None,
        })
    }

    /// Reports until `stop`, then once more so the last events go out.
    pub(crate) async fn run(mut self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_beat: Option<tokio::time::Instant> = None;
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                () = stop.cancelled() => true,
            };
            if stopping {
                self.journal.flush().await;
            }
            let mut result = self.send_events().await;
            if result.is_ok() {
                result = self.send_progress().await;
            }
            if result.is_ok() && last_beat.is_none_or(|t| t.elapsed() >= self.heartbeat) {
                result = self.send_heartbeat().await;
                if result.is_ok() {
                    result = self.take_retries().await;
                }
                if result.is_ok() {
                    last_beat = Some(tokio::time::Instant::now());
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
                    tracing::info!(to = %self.base, "reporting to the web app again");
                }
            }
            Err(e) => {
                if self.last_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!(to = %self.base, "cannot report to the web app (will retry): {e}");
                }
                self.last_error = Some(e);
            }
        }
    }

    async fn post(&self, path: &str, body: &serde_json::Value) -> Result<(), String> {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.token.expose())
            .json(body)
            .send()
            .await
            .map_err(|e| format!("POST {path}: {e}"))?;
        if res.status().is_success() {
            return Ok(());
        }
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        Err(format!(
            "POST {path}: {status}: {}",
            text.chars().take(300).collect::<String>()
        ))
    }

    /// Every journal event after the cursor, in batches; the cursor moves
    /// only after the web app has taken a batch.
    async fn send_events(&self) -> Result<(), String> {
        let journal_err = |e: sqlx::Error| format!("reading the journal: {e}");
        let mut cursor = self.journal.report_cursor().await.map_err(journal_err)?;
        loop {
            let (events, last) = self
                .journal
                .events_after(cursor, BATCH)
                .await
                .map_err(journal_err)?;
            let Some(last) = last else { return Ok(()) };
            if !events.is_empty() {
                self.post(
                    "/api/v1/agent/events",
                    &serde_json::json!({ "events": events }),
                )
                .await?;
            }
            self.journal
                .set_report_cursor(last)
                .await
                .map_err(journal_err)?;
            cursor = last;
        }
    }

    /// The bytes of each transfer in flight, when they changed.
    async fn send_progress(&mut self) -> Result<(), String> {
        let rows = self
            .journal
            .transferring()
            .await
            .map_err(|e| format!("reading the journal: {e}"))?;
        let now = now_ms();
        let events: Vec<ReportEvent> = rows
            .iter()
            .filter(|r| self.sent_progress.get(&r.id) != Some(&r.bytes_done))
            .map(|r| ReportEvent {
                id: format!("progress-{}", new_id()),
                transfer_id: r.id.clone(),
                poller: r.poller.clone(),
                path: r.path.clone(),
                event: "progress".into(),
                size: r.size,
                bytes_done: r.bytes_done,
                attempt: r.attempts,
                error: None,
                at: now,
                host: Some(self.host.clone()),
            })
            .collect();
        if events.is_empty() {
            return Ok(());
        }
        self.post(
            "/api/v1/agent/events",
            &serde_json::json!({ "events": events }),
        )
        .await?;
        self.sent_progress = rows.into_iter().map(|r| (r.id, r.bytes_done)).collect();
        Ok(())
    }

    /// Failed transfers a person asked to retry now (`retry_now` in this
    /// agent's config): their backoff ends. The web app lists one until the
    /// agent reports on it again, so each is acted on once.
    async fn take_retries(&mut self) -> Result<(), String> {
        let res = self
            .http
            .get(format!("{}/api/v1/agent/config", self.base))
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(|e| format!("GET /api/v1/agent/config: {e}"))?;
        if !res.status().is_success() {
            return Err(format!("GET /api/v1/agent/config: {}", res.status()));
        }
        #[derive(serde::Deserialize)]
        struct Retries {
            #[serde(default)]
            retry_now: Vec<String>,
        }
        let asked: Retries = res
            .json()
            .await
            .map_err(|e| format!("GET /api/v1/agent/config: {e}"))?;
        tracing::debug!(asked = ?asked.retry_now, done = ?self.retried, "retry requests");
        self.retried.retain(|id| asked.retry_now.contains(id));
        for id in asked.retry_now {
            if self.retried.contains(&id) {
                continue;
            }
            if self.pollers.iter().any(|p| p.retry_now(&id)) {
                tracing::info!(transfer = %id, "retrying now, as asked on the web page");
            }
            self.retried.insert(id);
        }
        Ok(())
    }

    async fn send_heartbeat(&self) -> Result<(), String> {
        let pollers: Vec<serde_json::Value> = self
            .pollers
            .iter()
            .map(|p| {
                let h = p.health();
                serde_json::json!({
                    "name": p.name,
                    "consecutive_errors": h.failures,
                    "disabled": h.disabled,
                    "reason": h.reason,
                })
            })
            .collect();
        self.post(
            "/api/v1/agent/heartbeat",
            &serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "host_name": self.host,
                "pollers": pollers,
            }),
        )
        .await
    }
}
