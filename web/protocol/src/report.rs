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
