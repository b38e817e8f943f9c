//! What agents call, with their bearer token: their configuration (ETag +
//! long poll), transfer events (idempotent batches), heartbeats.

use crate::AppState;
use crate::auth::Agent;
use crate::error::{ApiError, ApiResult};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(Serialize, utoipa::ToSchema)]
pub struct AgentConfig {
    pub agent: String,
    pub pollers: Vec<AgentPoller>,
    /// Failed transfers (their `transfer_id`) a person asked to retry now.
    pub retry_now: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AgentPoller {
    pub name: String,
    pub path: String,
    pub plugin: String,
    pub plugin_version: String,
    /// Fetch the module at `/api/v1/plugins/{sha256}`.
    pub plugin_sha256: String,
    pub params: BTreeMap<String, String>,
    pub enabled: bool,
    pub max_transfers: i64,
    pub stability_secs: f64,
    pub excludes: Vec<String>,
    pub target: AgentTarget,
}

/// Everything needed to transfer, secrets included (this agent only).
#[derive(Serialize, utoipa::ToSchema)]
pub struct AgentTarget {
    pub kind: String,
    pub host: String,
    pub username: String,
    pub password: Option<String>,
    pub ssh_key: Option<String>,
    pub port: i64,
    pub destination: String,
    pub rate_limit_mbps: f64,
    pub encrypt: bool,
    pub passphrase: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ConfigQuery {
    /// Seconds to wait for a change when `If-None-Match` matches (at most 60).
    pub wait: Option<u64>,
}

async fn build_config(state: &AppState, agent: &Agent) -> ApiResult<AgentConfig> {
    let rows = sqlx::query(
        "SELECT p.*, pl.name AS plugin_name FROM pollers p JOIN poller_agents pa ON pa.poller_id = p.id
         JOIN plugins pl ON pl.id = p.plugin_id WHERE pa.agent_id = ? ORDER BY p.name",
    )
    .bind(agent.id)
    .fetch_all(&state.pool)
    .await?;
    let mut pollers = Vec::new();
    for r in rows {
        let version_id: Option<i64> = r.get("plugin_version_id");
        let (version, sha) = match version_id {
            Some(id) => {
                let v = sqlx::query("SELECT version, sha256 FROM plugin_versions WHERE id = ?")
                    .bind(id)
                    .fetch_one(&state.pool)
                    .await?;
                (v.get("version"), v.get("sha256"))
            }
            None => match super::plugins::latest_version(&state.pool, r.get("plugin_id")).await? {
                Some((_, v, s)) => (v, s),
                None => continue,
            },
        };
        let secret =
            |col: &str, field: &str| -> ApiResult<Option<String>> {
                match r.get::<Option<Vec<u8>>, _>(col) {
                    None => Ok(None),
                    Some(blob) => state.crypto.decrypt(field, &blob).map(Some).map_err(|e| {
                        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                    }),
                }
            };
        pollers.push(AgentPoller {
            name: r.get("name"),
            path: r.get("path"),
            plugin: r.get("plugin_name"),
            plugin_version: version,
            plugin_sha256: sha,
            params: serde_json::from_str(r.get("params_json")).unwrap_or_default(),
            enabled: r.get("enabled"),
            max_transfers: r.get("max_transfers"),
            stability_secs: r.get("stability_secs"),
            excludes: r
                .get::<String, _>("excludes")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            target: AgentTarget {
                kind: r.get("transfer_kind"),
                host: r.get("host"),
                username: r.get("username"),
                password: secret("password_enc", "password")?,
                ssh_key: secret("ssh_key_enc", "ssh_key")?,
                port: r.get("port"),
                destination: r.get("destination"),
                rate_limit_mbps: r.get("speed_mbps"),
                encrypt: r.get("encrypt"),
                passphrase: secret("passphrase_enc", "passphrase")?,
            },
        });
    }
    let retry_now = sqlx::query_scalar(
        "SELECT transfer_id FROM transfers WHERE agent_id = ? AND status = 'Error' AND retry_requested_at IS NOT NULL ORDER BY id",
    )
    .bind(agent.id)
    .fetch_all(&state.pool)
    .await?;
    Ok(AgentConfig {
        agent: agent.name.clone(),
        pollers,
        retry_now,
    })
}

fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", &hex::encode(Sha256::digest(body))[..32])
}

/// This agent's pollers and what they need. With `If-None-Match` equal to
/// the current ETag: 304, or with `?wait=N`, an answer as soon as the
/// configuration changes (304 after N seconds if it does not).
#[utoipa::path(get, path = "/api/v1/agent/config", tag = "agent", params(ConfigQuery),
    responses((status = 200, body = AgentConfig), (status = 304), (status = 401, body = crate::error::ErrorBody)),
    security(("agent_token" = [])))]
pub async fn config(
    State(state): State<Arc<AppState>>,
    agent: Agent,
    headers: HeaderMap,
    Query(q): Query<ConfigQuery>,
) -> ApiResult<Response> {
    let known = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(q.wait.unwrap_or(0).min(60));
    let mut changes = state.config_version.subscribe();
    loop {
        changes.borrow_and_update();
        let cfg = build_config(&state, &agent).await?;
        let body = serde_json::to_vec(&cfg)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let etag = etag_of(&body);
        if known.as_deref() != Some(etag.as_str()) {
            return Ok((
                [
                    (header::ETAG, etag),
                    (header::CONTENT_TYPE, "application/json".into()),
                    (header::CACHE_CONTROL, "no-store".into()),
                ],
                body,
            )
                .into_response());
        }
        // Unchanged: wait for a change of anything config depends on.
        tokio::select! {
            r = changes.changed() => if r.is_err() { break },
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    Ok((
        StatusCode::NOT_MODIFIED,
        [(header::ETAG, known.unwrap_or_default())],
    )
        .into_response())
}

/// One transfer event; `id` is chosen by the agent and makes ingest
/// idempotent.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventIn {
    pub id: String,
    pub transfer_id: String,
    pub poller: String,
    pub path: String,
    /// queued, started, progress, complete, error, cancelled
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    pub events: Vec<EventIn>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Ingested {
    pub accepted: u64,
    pub duplicates: u64,
}

/// Ingest a batch of transfer events in one transaction; events already
/// ingested (same agent, same id) change nothing.
#[utoipa::path(post, path = "/api/v1/agent/events", tag = "agent", request_body = EventBatch,
    responses((status = 200, body = Ingested), (status = 422, body = crate::error::ErrorBody)), security(("agent_token" = [])))]
pub async fn events(
    State(state): State<Arc<AppState>>,
    agent: Agent,
    body: Result<Json<EventBatch>, JsonRejection>,
) -> ApiResult<Json<Ingested>> {
    let Json(batch) = body?;
    for (i, e) in batch.events.iter().enumerate() {
        if !matches!(
            e.event.as_str(),
            "queued" | "started" | "progress" | "complete" | "error" | "cancelled"
        ) {
            return Err(ApiError::bad(
                &format!("events[{i}].event"),
                format!("`{}` is not an event kind", e.event),
            ));
        }
        if e.id.is_empty() || e.transfer_id.is_empty() {
            return Err(ApiError::bad(
                &format!("events[{i}].id"),
                "ids must not be empty",
            ));
        }
    }
    let (mut accepted, mut duplicates) = (0u64, 0u64);
    let mut tx = state.pool.begin().await?;
    for e in &batch.events {
        let fresh =
            sqlx::query("INSERT OR IGNORE INTO ingested_events (agent_id, event_id) VALUES (?, ?)")
                .bind(agent.id)
                .bind(&e.id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
        if !fresh {
            duplicates += 1;
            continue;
        }
        accepted += 1;
        apply(&mut tx, &agent, e).await?;
    }
    // An agent that reports is alive, heartbeat or not.
    sqlx::query("UPDATE agents SET last_seen = ? WHERE id = ?")
        .bind(crate::now_ms())
        .bind(agent.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    state
        .metrics
        .events_ingested
        .fetch_add(accepted, Ordering::Relaxed);
    state
        .metrics
        .events_duplicate
        .fetch_add(duplicates, Ordering::Relaxed);
    Ok(Json(Ingested {
        accepted,
        duplicates,
    }))
}

async fn apply(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    agent: &Agent,
    e: &EventIn,
) -> Result<(), sqlx::Error> {
    let file_name = e.path.rsplit('/').next().unwrap_or(&e.path);
    let status = match e.event.as_str() {
        "queued" => "Queued",
        "started" | "progress" => "Transferring",
        "complete" => "Complete",
        "error" => "Error",
        _ => "Cancelled",
    };
    let started = (e.event == "started").then_some(e.at);
    let ended = matches!(e.event.as_str(), "complete" | "error" | "cancelled").then_some(e.at);
    sqlx::query(
        "INSERT INTO transfers (agent_id, agent, transfer_id, poller, path, file_name, size, bytes_done, status, attempts, started_at, ended_at, error, host, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (agent_id, transfer_id) DO UPDATE SET
            size = COALESCE(excluded.size, size),
            bytes_done = MAX(bytes_done, excluded.bytes_done),
            status = CASE WHEN excluded.updated_at >= updated_at THEN excluded.status ELSE status END,
            attempts = MAX(attempts, excluded.attempts),
            started_at = COALESCE(excluded.started_at, started_at),
            ended_at = CASE WHEN excluded.status IN ('Queued', 'Transferring') AND excluded.updated_at >= updated_at THEN NULL ELSE COALESCE(excluded.ended_at, ended_at) END,
            error = CASE WHEN excluded.error IS NOT NULL THEN excluded.error WHEN excluded.status = 'Complete' THEN NULL ELSE error END,
            host = COALESCE(excluded.host, host),
            retry_requested_at = CASE WHEN excluded.updated_at >= updated_at THEN NULL ELSE retry_requested_at END,
            updated_at = MAX(updated_at, excluded.updated_at)",
    )
    .bind(agent.id)
    .bind(&agent.name)
    .bind(&e.transfer_id)
    .bind(&e.poller)
    .bind(&e.path)
    .bind(file_name)
    .bind(e.size)
    .bind(e.bytes_done)
    .bind(status)
    .bind(e.attempt)
    .bind(started)
    .bind(ended)
    .bind(&e.error)
    .bind(&e.host)
    .bind(e.at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub version: String,
    pub host_name: String,
    #[serde(default)]
    pub pollers: Vec<PollerState>,
}

/// How a poller is doing on the agent.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PollerState {
    pub name: String,
    #[serde(default)]
    pub consecutive_errors: i64,
    /// Disabled by the agent after too many failures.
    #[serde(default)]
    pub disabled: bool,
    /// Why it is failing or disabled.
    pub reason: Option<String>,
}

/// The agent is alive: its version, host name and poller states.
#[utoipa::path(post, path = "/api/v1/agent/heartbeat", tag = "agent", request_body = Heartbeat,
    responses((status = 204), (status = 422, body = crate::error::ErrorBody)), security(("agent_token" = [])))]
pub async fn heartbeat(
    State(state): State<Arc<AppState>>,
    agent: Agent,
    body: Result<Json<Heartbeat>, JsonRejection>,
) -> ApiResult<StatusCode> {
    let Json(hb) = body?;
    let now = crate::now_ms();
    let mut tx = state.pool.begin().await?;
    sqlx::query("UPDATE agents SET version = ?, host_name = ?, last_seen = ?, poller_states = ? WHERE id = ?")
        .bind(&hb.version)
        .bind(&hb.host_name)
        .bind(now)
        .bind(serde_json::to_string(&hb.pollers).unwrap_or_default())
        .bind(agent.id)
        .execute(&mut *tx)
        .await?;
    for p in &hb.pollers {
        // Only pollers assigned to this agent.
        sqlx::query(
            "UPDATE pollers SET consecutive_errors = ?,
                disabled_at = CASE WHEN ? THEN COALESCE(disabled_at, ?) ELSE NULL END,
                disabled_by_agent = CASE WHEN ? THEN ? ELSE NULL END,
                disabled_reason = CASE WHEN ? THEN ? ELSE disabled_reason END
             WHERE name = ? AND id IN (SELECT poller_id FROM poller_agents WHERE agent_id = ?)",
        )
        .bind(p.consecutive_errors)
        .bind(p.disabled)
        .bind(now)
        .bind(p.disabled)
        .bind(&agent.name)
        .bind(p.disabled)
        .bind(&p.reason)
        .bind(&p.name)
        .bind(agent.id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
