//! What an agent reports: transfer events (`POST /api/v1/agent/events`),
//! heartbeats (`POST /api/v1/agent/heartbeat`), and the commands a
//! heartbeat's answer carries back.

use serde::{Deserialize, Serialize};

/// One transfer event; `id` is chosen by the agent and makes ingest
/// idempotent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub id: String,
    pub transfer_id: String,
    /// The poller's name when the event happened.
    pub poller: String,
    /// The poller's stable id (see [`crate::PollerSpec::id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poller_id: Option<String>,
    pub path: String,
    /// One of [`EVENT_KINDS`].
    pub event: String,
    pub size: Option<i64>,
    #[serde(default)]
    pub bytes_done: i64,
    #[serde(default)]
    pub attempt: i64,
    pub error: Option<String>,
    /// Milliseconds since the epoch.
    pub at: i64,
    pub host: Option<String>,
}

/// What the web app accepts from an agent: a batch or a field past these
/// is refused whole (413 for a batch's size, 422 naming the field), so an
/// agent keeps within them ([`Event::fit`], [`Heartbeat::fit`]).
pub mod limits {
    /// Events in one batch.
    pub const EVENTS_PER_BATCH: usize = 5_000;
    /// Bytes of an id (`id`, `transfer_id`, `poller_id`, a command id).
    pub const ID_BYTES: usize = 128;
    /// Bytes of a name: a poller's, a host's, a version.
    pub const NAME_BYTES: usize = 256;
    /// Bytes of a path relative to a poller's root (Linux's `PATH_MAX`).
    pub const PATH_BYTES: usize = 4_096;
    /// Bytes of an error, a reason or a not-ready line (an agent cuts
    /// longer ones).
    pub const TEXT_BYTES: usize = 8_192;
    /// Poller states in one heartbeat, and done commands.
    pub const POLLERS_PER_HEARTBEAT: usize = 10_000;
    /// Not-ready lines of one poller state.
    pub const NOT_READY_LINES: usize = 1_000;
    /// Configuration long-polls one agent may hold open at once (it needs
    /// one; a few allow for a request the agent gave up on still open).
    pub const LONG_POLLS_PER_AGENT: usize = 4;
}

/// Cuts `text` to at most `max` bytes, at a character boundary, ending
/// with `…` when it was cut.
pub fn cut(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
}

impl Event {
    /// Cuts what an agent cannot bound otherwise (an error's text) to the
    /// web app's limits.
    pub fn fit(&mut self) {
        if let Some(e) = &mut self.error {
            cut(e, limits::TEXT_BYTES);
        }
    }
}

impl Heartbeat {
    /// Cuts texts and lists to the web app's limits.
    pub fn fit(&mut self) {
        if let Some(e) = &mut self.config_error {
            cut(e, limits::TEXT_BYTES);
        }
        self.pollers.truncate(limits::POLLERS_PER_HEARTBEAT);
        // A command whose acknowledgement is cut is listed again, and done
        // again: retries and enables are safe to repeat.
        self.done.truncate(limits::POLLERS_PER_HEARTBEAT);
        for p in &mut self.pollers {
            for text in [&mut p.reason, &mut p.config_error].into_iter().flatten() {
                cut(text, limits::TEXT_BYTES);
            }
            p.not_ready.truncate(limits::NOT_READY_LINES);
            for line in &mut p.not_ready {
                cut(line, limits::TEXT_BYTES);
            }
        }
    }
}

/// The event kinds, in a transfer's order.
pub const EVENT_KINDS: [&str; 6] = [
    "queued",
    "started",
    "progress",
    "complete",
    "error",
    "cancelled",
];

/// A batch of events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventBatch {
    pub events: Vec<Event>,
}

/// What the web app did with a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ingested {
    pub accepted: u64,
    pub duplicates: u64,
}

/// The agent is alive: its version, host name and each poller's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Heartbeat {
    pub version: String,
    pub host_name: String,
    /// Every poller's state, unless `pollers_unchanged`.
    #[serde(default)]
    pub pollers: Vec<PollerState>,
    /// The states are as in the last heartbeat, so `pollers` is left
    /// empty (an agent sends them when they change, and all now and then).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pollers_unchanged: bool,
    /// The ETag of the configuration the agent runs (connected agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_etag: Option<String>,
    /// Why the last configuration could not be applied in full (a module
    /// that did not download, verify or load), if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
    /// Commands done since the last heartbeat.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub done: Vec<String>,
    /// The size of the agent's journal on disk (bytes), so a journal that
    /// grows is seen before the disk fills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal_bytes: Option<i64>,
}

/// How a poller is doing on the agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PollerState {
    /// Its stable id, if the agent knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub consecutive_errors: i64,
    /// Disabled by the agent after too many failures.
    #[serde(default)]
    pub disabled: bool,
    /// Until when (ms since the epoch), when disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_until: Option<i64>,
    /// Why it is failing or disabled.
    pub reason: Option<String>,
    /// The plugin version it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_version: Option<String>,
    /// Why its newest configuration is not running (the previous one is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
    /// What its plugin's latest poll said is not ready, and why (`item:
    /// reason`, a bounded list: the last line may count the rest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ready: Vec<String>,
}

/// The answer to a heartbeat: commands for the agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeartbeatReply {
    #[serde(default)]
    pub commands: Vec<Command>,
}

/// Something a person asked an agent to do now. Listed in each heartbeat's
/// answer until the agent says it is done (`Heartbeat::done`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Command {
    pub id: String,
    /// `retry` (a failed transfer, `transfer_id`) or `enable` (reset the
    /// breaker of poller `poller_id`). Agents ignore kinds they do not know.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poller_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_cuts_what_it_sends_to_the_limits_at_a_character_boundary() {
        let mut e = Event {
            id: "e".into(),
            transfer_id: "t".into(),
            poller: "p".into(),
            poller_id: None,
            path: "a".into(),
            event: "error".into(),
            size: None,
            bytes_done: 0,
            attempt: 1,
            error: Some("é".repeat(limits::TEXT_BYTES)),
            at: 0,
            host: None,
        };
        e.fit();
        let error = e.error.unwrap_or_default();
        assert!(error.len() <= limits::TEXT_BYTES && error.ends_with('…'));
        let mut hb = Heartbeat {
            pollers: vec![PollerState::default(); limits::POLLERS_PER_HEARTBEAT + 1],
            config_error: Some("x".repeat(limits::TEXT_BYTES + 1)),
            ..Heartbeat::default()
        };
        hb.pollers[0].not_ready = vec!["y".repeat(9_000); limits::NOT_READY_LINES + 1];
        hb.fit();
        assert_eq!(hb.pollers.len(), limits::POLLERS_PER_HEARTBEAT);
        assert_eq!(hb.pollers[0].not_ready.len(), limits::NOT_READY_LINES);
        assert!(hb.pollers[0].not_ready[0].len() <= limits::TEXT_BYTES);
        assert!(
            hb.config_error
                .is_some_and(|e| e.len() <= limits::TEXT_BYTES)
        );
        let mut short = "ok".to_string();
        cut(&mut short, 10);
        assert_eq!(short, "ok");
    }
}
