//! Agents as people manage them: create (the token is shown once), list
//! (with how their pollers do there), delete.

use crate::AppState;
use crate::auth::{self, User};
use crate::error::{ApiError, ApiResult};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::sync::Arc;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    /// Lowercase letters, digits, `_` or `-`, starting with a letter (64 at most).
    #[schema(pattern = "^[a-z][a-z0-9_-]{0,63}$")]
    pub name: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedAgent {
    pub id: i64,
    pub name: String,
    /// The agent's bearer token. Shown this once; only its hash is kept.
    pub token: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AgentView {
    pub id: i64,
    pub name: String,
    pub host_name: Option<String>,
    pub version: Option<String>,
    pub last_seen: Option<i64>,
    pub online: bool,
    pub pollers: Vec<String>,
    /// The ETag of the configuration the agent last said it runs.
    pub config_etag: Option<String>,
    /// Why the agent could not apply its newest configuration in full.
    pub config_error: Option<String>,
    /// How each of its pollers does there (from its heartbeats).
    pub poller_states: Vec<PollerHealth>,
    /// The size of its journal on disk (bytes), as its last heartbeat said.
    pub journal_bytes: Option<i64>,
}

/// How one poller does on one agent, as its last heartbeat said.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PollerHealth {
    pub agent_id: i64,
    pub agent: String,
    pub poller_id: i64,
    pub poller: String,
    /// Failed transfers in a row.
    pub consecutive_errors: i64,
    /// The agent's breaker is open: the poller sends nothing.
    pub disabled: bool,
    /// Until when (ms since the epoch), when disabled.
    pub disabled_until: Option<i64>,
    /// Why it is failing or disabled.
    pub reason: Option<String>,
    /// What its plugin said is not ready there, and why (`item: reason`).
    pub not_ready: Vec<String>,
    pub plugin_version: Option<String>,
    /// Why its newest configuration is not running there.
    pub config_error: Option<String>,
    /// When the agent said so (ms since the epoch).
    pub updated_at: i64,
}

/// The states of pollers still assigned to their agent, by poller then
/// agent name; `agent_id` / `poller_id` narrow them down.
pub async fn poller_health(
    pool: &sqlx::SqlitePool,
    agent_id: Option<i64>,
    poller_id: Option<i64>,
) -> Result<Vec<PollerHealth>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT s.*, a.name AS agent, p.name AS poller FROM agent_poller_states s
         JOIN agents a ON a.id = s.agent_id JOIN pollers p ON p.id = s.poller_id
         JOIN poller_agents pa ON pa.agent_id = s.agent_id AND pa.poller_id = s.poller_id
         WHERE ($1 IS NULL OR s.agent_id = $1) AND ($2 IS NULL OR s.poller_id = $2)
         ORDER BY p.name, a.name",
    )
    .bind(agent_id)
    .bind(poller_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| PollerHealth {
            agent_id: r.get("agent_id"),
            agent: r.get("agent"),
            poller_id: r.get("poller_id"),
            poller: r.get("poller"),
            consecutive_errors: r.get("consecutive_errors"),
            disabled: r.get("disabled"),
            disabled_until: r.get("disabled_until"),
            reason: r.get("reason"),
            not_ready: r
                .get::<Option<String>, _>("not_ready")
                .and_then(|j| serde_json::from_str(&j).ok())
                .unwrap_or_default(),
            plugin_version: r.get("plugin_version"),
            config_error: r.get("config_error"),
            updated_at: r.get("updated_at"),
        })
        .collect())
}

/// An agent heard from within this long is online.
pub const ONLINE_WITHIN_MS: i64 = 120_000;

pub fn valid_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && name.len() <= 64
}

/// Register an agent; the response holds its token, shown once.
#[utoipa::path(post, path = "/api/v1/agents", tag = "agents", operation_id = "create_agent", request_body = NewAgent,
    responses((status = 201, body = CreatedAgent), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)), security(("session" = [])))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    _user: User,
    body: Result<Json<NewAgent>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<CreatedAgent>)> {
    let Json(new) = body?;
    if !valid_name(&new.name) {
        return Err(ApiError::bad(
            "name",
            "lowercase letters, digits, `_` or `-`, starting with a letter (64 at most)",
        ));
    }
    let token = auth::new_token("dsp_");
    let id = sqlx::query_scalar(
        "INSERT INTO agents (name, token_hash, created_at) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(&new.name)
    .bind(auth::sha256_hex(&token))
    .bind(crate::now_ms())
    .fetch_one(&state.pool)
    .await
    .map_err(crate::error::unique(
        "name",
        format!("an agent named `{}` exists", new.name),
    ))?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedAgent {
            id,
            name: new.name,
            token,
        }),
    ))
}

/// Every agent, with when it was last seen and how its pollers do.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents", operation_id = "list_agents", responses((status = 200, body = [AgentView])), security(("session" = [])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _user: User,
) -> ApiResult<Json<Vec<AgentView>>> {
    let rows = sqlx::query("SELECT * FROM agents ORDER BY name")
        .fetch_all(&state.pool)
        .await?;
    let now = crate::now_ms();
    let mut out = Vec::new();
    for r in rows {
        let id: i64 = r.get("id");
        let pollers = sqlx::query_scalar("SELECT p.name FROM pollers p JOIN poller_agents pa ON pa.poller_id = p.id WHERE pa.agent_id = $1 ORDER BY p.name")
            .bind(id)
            .fetch_all(&state.pool)
            .await?;
        let last_seen: Option<i64> = r.get("last_seen");
        out.push(AgentView {
            id,
            name: r.get("name"),
            host_name: r.get("host_name"),
            version: r.get("version"),
            last_seen,
            online: last_seen.is_some_and(|t| now - t < ONLINE_WITHIN_MS),
            pollers,
            config_etag: r.get("config_etag"),
            config_error: r.get("config_error"),
            poller_states: poller_health(&state.pool, Some(id), None).await?,
            journal_bytes: r.get("journal_bytes"),
        });
    }
    Ok(Json(out))
}

/// Remove an agent (its token stops working).
#[utoipa::path(delete, path = "/api/v1/agents/{id}", tag = "agents", operation_id = "delete_agent", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)), security(("session" = [])))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    _user: User,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let mut tx = crate::begin_write(&state.pool).await?;
    let n = sqlx::query("DELETE FROM agents WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(ApiError::not_found(&format!("agent {id}")));
    }
    state.commit_config_change(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
