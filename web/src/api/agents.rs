//! Agents as people manage them: create (the token is shown once), list
//! (with how their pollers do there), delete.

use crate::AppState;
use crate::auth::{self, User};
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::{on_db, on_tx};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
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
    db: &Db,
    agent_id: Option<i64>,
    poller_id: Option<i64>,
) -> Result<Vec<PollerHealth>, sqlx::Error> {
    let rows = on_db!(db, pool => {
        sqlx::query_as::<_, HealthRow>(
            "SELECT s.agent_id, a.name AS agent, s.poller_id, p.name AS poller, s.consecutive_errors,
                s.disabled, s.disabled_until, s.reason, s.not_ready, s.plugin_version,
                s.config_error, s.updated_at
             FROM agent_poller_states s
             JOIN agents a ON a.id = s.agent_id JOIN pollers p ON p.id = s.poller_id
             JOIN poller_agents pa ON pa.agent_id = s.agent_id AND pa.poller_id = s.poller_id
             WHERE ($1 IS NULL OR s.agent_id = $1) AND ($2 IS NULL OR s.poller_id = $2)
             ORDER BY p.name, a.name",
        )
        .bind(agent_id)
        .bind(poller_id)
        .fetch_all(pool)
        .await
    })?;
    Ok(rows
        .into_iter()
        .map(|r| PollerHealth {
            agent_id: r.agent_id,
            agent: r.agent,
            poller_id: r.poller_id,
            poller: r.poller,
            consecutive_errors: r.consecutive_errors,
            disabled: r.disabled,
            disabled_until: r.disabled_until,
            reason: r.reason,
            not_ready: r
                .not_ready
                .and_then(|j| serde_json::from_str(&j).ok())
                .unwrap_or_default(),
            plugin_version: r.plugin_version,
            config_error: r.config_error,
            updated_at: r.updated_at,
        })
        .collect())
}

/// A poller's state on an agent as stored.
#[derive(sqlx::FromRow)]
struct HealthRow {
    agent_id: i64,
    agent: String,
    poller_id: i64,
    poller: String,
    consecutive_errors: i64,
    disabled: bool,
    disabled_until: Option<i64>,
    reason: Option<String>,
    not_ready: Option<String>,
    plugin_version: Option<String>,
    config_error: Option<String>,
    updated_at: i64,
}

/// An agent as stored.
#[derive(sqlx::FromRow)]
struct AgentRow {
    id: i64,
    name: String,
    host_name: Option<String>,
    version: Option<String>,
    last_seen: Option<i64>,
    config_etag: Option<String>,
    config_error: Option<String>,
    journal_bytes: Option<i64>,
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
    let id = on_db!(&state.db, pool => {
        sqlx::query_scalar(
            "INSERT INTO agents (name, token_hash, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(&new.name)
        .bind(auth::sha256_hex(&token))
        .bind(crate::now_ms())
        .fetch_one(pool)
        .await
    })
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
    let db = &state.db;
    let rows = on_db!(db, pool => {
        sqlx::query_as::<_, AgentRow>(
            "SELECT id, name, host_name, version, last_seen, config_etag, config_error, journal_bytes
             FROM agents ORDER BY name",
        )
        .fetch_all(pool)
        .await
    })?;
    let now = crate::now_ms();
    let mut out = Vec::new();
    for r in rows {
        let pollers = on_db!(db, pool => {
            sqlx::query_scalar("SELECT p.name FROM pollers p JOIN poller_agents pa ON pa.poller_id = p.id WHERE pa.agent_id = $1 ORDER BY p.name")
                .bind(r.id)
                .fetch_all(pool)
                .await
        })?;
        out.push(AgentView {
            id: r.id,
            name: r.name,
            host_name: r.host_name,
            version: r.version,
            last_seen: r.last_seen,
            online: r.last_seen.is_some_and(|t| now - t < ONLINE_WITHIN_MS),
            pollers,
            config_etag: r.config_etag,
            config_error: r.config_error,
            poller_states: poller_health(db, Some(r.id), None).await?,
            journal_bytes: r.journal_bytes,
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
    let mut tx = state.db.begin_write().await?;
    let n = on_tx!(&mut tx, conn => {
        sqlx::query("DELETE FROM agents WHERE id = $1")
            .bind(id)
            .execute(conn)
            .await
            .map(|r| r.rows_affected())
    })?;
    if n == 0 {
        return Err(ApiError::not_found(&format!("agent {id}")));
    }
    state.commit_config_change(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
