//! Pollers: a plugin watching a directory on agents, sending to a target
//! (a record of its own, see `targets`). Every value is checked by the
//! protocol's own `PollerSpec::validate`, so the web app accepts nothing an
//! agent would refuse.

use crate::AppState;
use crate::auth::User;
use crate::db::{Db, Tx};
use crate::error::{ApiError, ApiResult};
use crate::{on_db, on_tx};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dispatch_protocol::{ParamValue, PollerSpec};
use dispatch_runtime::params::{ParamSpec, PluginInfo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The longest stability window, as the OpenAPI document states it.
const MAX_STABILITY_SECS: u64 = 31_536_000;

fn default_max() -> i64 {
    3
}
fn default_stability() -> f64 {
    10.0
}

/// A poller as created or replaced.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PollerInput {
    /// Lowercase letters, digits and underscores, starting with a letter.
    #[schema(pattern = "^[a-z][a-z0-9_]*$")]
    pub name: String,
    /// The watched directory on the agent's machine (absolute).
    #[schema(pattern = "^/")]
    pub path: String,
    /// A plugin name.
    #[schema(min_length = 1)]
    pub plugin: String,
    /// A version of the plugin, or `latest` (default) to follow new uploads.
    #[serde(default)]
    pub plugin_version: Option<String>,
    /// The plugin's parameters, checked against its schema.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Where it sends: a target's name (or give `target_id`).
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub target_id: Option<i64>,
    /// File names never sent, comma-separated (globs allowed).
    #[serde(default)]
    pub excludes: String,
    /// Transfers at a time on each agent.
    #[serde(default = "default_max")]
    #[schema(minimum = 1, maximum = 100, default = 3)]
    pub max_transfers: i64,
    /// How long an item must stay unchanged before it is sent (seconds,
    /// a year at most).
    #[serde(default = "default_stability")]
    #[schema(minimum = 0, maximum = 31536000, default = 10.0)]
    pub stability_secs: f64,
    /// Names of the agents that run it.
    #[serde(default)]
    pub agents: Vec<String>,
    #[serde(default)]
    pub enabled: bool,
}

/// A poller as shown.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PollerView {
    pub id: i64,
    pub name: String,
    pub path: String,
    pub plugin: String,
    /// `latest` or the pinned version.
    pub plugin_version: String,
    /// The version in effect now.
    pub resolved_version: Option<String>,
    pub params: BTreeMap<String, String>,
    /// The target's id and name (none only for a poller whose old inline
    /// target could not be moved into a record).
    pub target_id: Option<i64>,
    pub target: Option<String>,
    /// The target in one line, without credentials.
    pub target_summary: Option<String>,
    pub excludes: String,
    pub max_transfers: i64,
    pub stability_secs: f64,
    pub agents: Vec<String>,
    pub enabled: bool,
    /// When a person last enabled it (ms since the epoch).
    pub enabled_at: Option<i64>,
    pub disabled_reason: Option<String>,
    pub consecutive_errors: i64,
    pub disabled_at: Option<i64>,
    pub disabled_by_agent: Option<String>,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableInput {
    /// Shown with the poller.
    pub reason: Option<String>,
}

/// What a valid input refers to.
struct Resolved {
    plugin_id: i64,
    /// None: follow the latest.
    version_id: Option<i64>,
    target_id: i64,
}

/// The target the input names, with its secrets (to validate it whole).
async fn resolve_target(
    state: &AppState,
    p: &PollerInput,
) -> ApiResult<crate::target_store::StoredTarget> {
    let id: Option<i64> = match (&p.target_id, &p.target) {
        (Some(id), _) => on_db!(&state.db, pool => {
            sqlx::query_scalar("SELECT id FROM targets WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
        })?,
        (None, Some(name)) if !name.is_empty() => on_db!(&state.db, pool => {
            sqlx::query_scalar("SELECT id FROM targets WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await
        })?,
        _ => return Err(ApiError::bad("target", "is required: a target's name")),
    };
    let id = id.ok_or_else(|| {
        let which = p.target_id.map_or_else(
            || format!("`{}`", p.target.as_deref().unwrap_or_default()),
            |id| id.to_string(),
        );
        ApiError::bad("target", format!("there is no target {which}"))
    })?;
    crate::target_store::load(state, id).await
}

/// The poller as an agent will get it, checked by the protocol's rules.
fn check_spec(p: &PollerInput, target: &crate::target_store::StoredTarget) -> ApiResult<()> {
    if !(1..=100).contains(&p.max_transfers) {
        return Err(ApiError::bad("max_transfers", "must be 1 to 100"));
    }
    let stability = std::time::Duration::try_from_secs_f64(p.stability_secs)
        .ok()
        .filter(|d| d.as_secs() <= MAX_STABILITY_SECS)
        .ok_or_else(|| {
            ApiError::bad(
                "stability_secs",
                format!("must be 0 to {MAX_STABILITY_SECS} (a year)"),
            )
        })?;
    let spec = PollerSpec {
        id: String::new(),
        name: p.name.clone(),
        path: p.path.clone().into(),
        plugin: p.plugin.clone(),
        module: None,
        params: p
            .params
            .iter()
            .map(|(k, v)| (k.clone(), ParamValue::Text(v.clone())))
            .collect(),
        target: target.target.clone(),
        max_transfers: usize::try_from(p.max_transfers).unwrap_or(1),
        stability,
        excludes: crate::agent_config::split_excludes(&p.excludes),
        enabled: p.enabled,
        enabled_at: None,
    };
    spec.validate(true).map_err(|e| {
        if e.field == "target" || e.field.starts_with("target.") {
            // Checked when the target was saved; its rules may have changed.
            ApiError::bad("target", format!("target `{}`: {e}", target.name))
        } else {
            ApiError::bad(&e.field, e.message)
        }
    })
}

/// Checks the input: the poller's own settings, its plugin's parameters,
/// its target and agents.
async fn validate(state: &AppState, p: &PollerInput) -> ApiResult<Resolved> {
    let target = resolve_target(state, p).await?;
    check_spec(p, &target)?;
    let db = &state.db;
    let plugin_id: i64 = on_db!(db, pool => {
        sqlx::query_scalar("SELECT id FROM plugins WHERE name = $1")
            .bind(&p.plugin)
            .fetch_optional(pool)
            .await
    })?
    .ok_or_else(|| ApiError::bad("plugin", format!("no plugin named `{}`", p.plugin)))?;
    let wanted = p.plugin_version.as_deref();
    let (version_id, params_json) = super::plugins::version_schema(db, plugin_id, wanted)
        .await?
        .ok_or_else(|| match super::plugins::pinned(wanted) {
            Some(v) => ApiError::bad(
                "plugin_version",
                format!("plugin `{}` has no version {v}", p.plugin),
            ),
            _ => ApiError::bad("plugin", format!("plugin `{}` has no version", p.plugin)),
        })?;
    let schema: Vec<ParamSpec> = serde_json::from_str(&params_json).unwrap_or_default();
    let info = PluginInfo {
        name: p.plugin.clone(),
        version: String::new(),
        description: String::new(),
        params: schema,
    };
    let given: Vec<(String, String)> = p
        .params
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    info.resolve_params(&given)
        .map_err(|e| ApiError::bad(&format!("params.{}", param_name(&e)), e.to_string()))?;
    // One statement for all the names: a query per name made the save of
    // a poller run by 2,000 agents take a second on PostgreSQL.
    let names = serde_json::Value::from(p.agents.as_slice()).to_string();
    let known: Vec<String> = match db {
        Db::Sqlite(pool) => {
            sqlx::query_scalar(
                "SELECT name FROM agents WHERE name IN (SELECT value FROM json_each($1))",
            )
            .bind(&names)
            .fetch_all(pool)
            .await
        }
        Db::Postgres(pool) => sqlx::query_scalar(
            "SELECT name FROM agents WHERE name IN (SELECT jsonb_array_elements_text($1::jsonb))",
        )
        .bind(&names)
        .fetch_all(pool)
        .await,
    }?;
    let known: std::collections::HashSet<String> = known.into_iter().collect();
    if let Some(a) = p.agents.iter().find(|a| !known.contains(*a)) {
        return Err(ApiError::bad("agents", format!("no agent named `{a}`")));
    }
    Ok(Resolved {
        plugin_id,
        version_id,
        target_id: target.id,
    })
}

fn param_name(e: &dispatch_runtime::params::ParamError) -> String {
    use dispatch_runtime::params::ParamError as E;
    match e {
        E::Unknown { name, .. } | E::Missing { name, .. } | E::BadValue { name, .. } => {
            name.clone()
        }
    }
}

fn name_taken(name: &str) -> impl FnOnce(sqlx::Error) -> ApiError {
    crate::error::unique("name", format!("a poller named `{name}` exists"))
}

/// Create a poller (disabled unless `enabled` is true).
#[utoipa::path(post, path = "/api/v1/pollers", tag = "pollers", operation_id = "create_poller", request_body = PollerInput,
    responses((status = 201, body = PollerView), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)), security(("session" = [])))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    _user: User,
    body: Result<Json<PollerInput>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<PollerView>)> {
    let Json(p) = body?;
    let r = validate(&state, &p).await?;
    let mut tx = state.db.begin_write().await?;
    let now = crate::now_ms();
    let id: i64 = on_tx!(&mut tx, conn => sqlx::query_scalar(
        "INSERT INTO pollers (name, path, plugin_id, plugin_version_id, params_json, target_id, excludes,
            max_transfers, stability_secs, enabled, enabled_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
    )
    .bind(&p.name)
    .bind(&p.path)
    .bind(r.plugin_id)
    .bind(r.version_id)
    .bind(serde_json::to_string(&p.params).unwrap_or_default())
    .bind(r.target_id)
    .bind(&p.excludes)
    .bind(p.max_transfers)
    .bind(p.stability_secs)
    .bind(p.enabled)
    .bind(p.enabled.then_some(now))
    .bind(now)
    .bind(now)
    .fetch_one(conn)
    .await)
    .map_err(name_taken(&p.name))?;
    set_agents(&mut tx, id, &p.agents).await?;
    state.commit_config_change(tx).await?;
    Ok((StatusCode::CREATED, Json(view(&state.db, id).await?)))
}

async fn set_agents(tx: &mut Tx, poller: i64, agents: &[String]) -> ApiResult<()> {
    // One statement for all the names (a JSON array), not a round trip
    // per agent.
    let names = serde_json::Value::from(agents).to_string();
    let insert = match tx {
        Tx::Sqlite(_) => {
            "INSERT INTO poller_agents (poller_id, agent_id) SELECT $1, id FROM agents WHERE name IN (SELECT value FROM json_each($2)) ON CONFLICT DO NOTHING"
        }
        Tx::Postgres(_) => {
            "INSERT INTO poller_agents (poller_id, agent_id) SELECT $1, id FROM agents WHERE name IN (SELECT jsonb_array_elements_text($2::jsonb)) ON CONFLICT DO NOTHING"
        }
    };
    on_tx!(tx, conn => {
        sqlx::query("DELETE FROM poller_agents WHERE poller_id = $1")
            .bind(poller)
            .execute(&mut *conn)
            .await?;
        sqlx::query(insert)
            .bind(poller)
            .bind(&names)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}

/// Replace a poller's settings.
#[utoipa::path(put, path = "/api/v1/pollers/{id}", tag = "pollers", operation_id = "update_poller", request_body = PollerInput, params(("id" = i64, Path)),
    responses((status = 200, body = PollerView), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)), security(("session" = [])))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    _user: User,
    Path(id): Path<i64>,
    body: Result<Json<PollerInput>, JsonRejection>,
) -> ApiResult<Json<PollerView>> {
    let Json(p) = body?;
    let exists: Option<i64> = on_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT id FROM pollers WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await
    })?;
    if exists.is_none() {
        return Err(ApiError::not_found(&format!("poller {id}")));
    }
    let r = validate(&state, &p).await?;
    let mut tx = state.db.begin_write().await?;
    let now = crate::now_ms();
    // `enabled` on the right of SET is the old value: enabling stamps the time.
    on_tx!(&mut tx, conn => sqlx::query(
        "UPDATE pollers SET name = $1, path = $2, plugin_id = $3, plugin_version_id = $4, params_json = $5, target_id = $6,
            excludes = $7, max_transfers = $8, stability_secs = $9, enabled = $10,
            enabled_at = CASE WHEN $11 AND NOT enabled THEN $12 ELSE enabled_at END, updated_at = $13 WHERE id = $14",
    )
    .bind(&p.name)
    .bind(&p.path)
    .bind(r.plugin_id)
    .bind(r.version_id)
    .bind(serde_json::to_string(&p.params).unwrap_or_default())
    .bind(r.target_id)
    .bind(&p.excludes)
    .bind(p.max_transfers)
    .bind(p.stability_secs)
    .bind(p.enabled)
    .bind(p.enabled)
    .bind(now)
    .bind(now)
    .bind(id)
    .execute(conn)
    .await
    .map(|_| ()))
    .map_err(name_taken(&p.name))?;
    set_agents(&mut tx, id, &p.agents).await?;
    state.commit_config_change(tx).await?;
    Ok(Json(view(&state.db, id).await?))
}

/// Every poller.
#[utoipa::path(get, path = "/api/v1/pollers", tag = "pollers", operation_id = "list_pollers", responses((status = 200, body = [PollerView])), security(("session" = [])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _user: User,
) -> ApiResult<Json<Vec<PollerView>>> {
    let ids: Vec<i64> = on_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT id FROM pollers ORDER BY name")
            .fetch_all(pool)
            .await
    })?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(view(&state.db, id).await?);
    }
    Ok(Json(out))
}

/// One poller.
#[utoipa::path(get, path = "/api/v1/pollers/{id}", tag = "pollers", operation_id = "show_poller", params(("id" = i64, Path)),
    responses((status = 200, body = PollerView), (status = 404, body = crate::error::ErrorBody)), security(("session" = [])))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    _user: User,
    Path(id): Path<i64>,
) -> ApiResult<Json<PollerView>> {
    Ok(Json(view(&state.db, id).await?))
}

/// Enable a poller.
#[utoipa::path(post, path = "/api/v1/pollers/{id}/enable", tag = "pollers", operation_id = "enable_poller", params(("id" = i64, Path)),
    responses((status = 200, body = PollerView), (status = 404, body = crate::error::ErrorBody)), security(("session" = [])))]
pub async fn enable(
    State(state): State<Arc<AppState>>,
    _user: User,
    Path(id): Path<i64>,
) -> ApiResult<Json<PollerView>> {
    set_enabled(&state, id, true, None).await
}

/// Disable a poller, with an optional reason.
#[utoipa::path(post, path = "/api/v1/pollers/{id}/disable", tag = "pollers", operation_id = "disable_poller", params(("id" = i64, Path)), request_body(content = DisableInput, description = "optional: with no body (no Content-Type), the reason is \"disabled by a user\""),
    responses((status = 200, body = PollerView), (status = 404, body = crate::error::ErrorBody)), security(("session" = [])))]
pub async fn disable(
    State(state): State<Arc<AppState>>,
    _user: User,
    Path(id): Path<i64>,
    body: Option<Json<DisableInput>>,
) -> ApiResult<Json<PollerView>> {
    let reason = body
        .and_then(|Json(b)| b.reason)
        .unwrap_or_else(|| "disabled by a user".into());
    set_enabled(&state, id, false, Some(reason)).await
}

async fn set_enabled(
    state: &AppState,
    id: i64,
    enabled: bool,
    reason: Option<String>,
) -> ApiResult<Json<PollerView>> {
    let mut tx = state.db.begin_write().await?;
    let now = crate::now_ms();
    let was: Option<bool> = on_tx!(&mut tx, conn => {
        sqlx::query_scalar("SELECT enabled FROM pollers WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await
    })?;
    let Some(was) = was else {
        return Err(ApiError::not_found(&format!("poller {id}")));
    };
    // Turned on: a configuration change (the agents start it, with a fresh
    // breaker). Already on (its agents' breakers may have tripped): a
    // command, so the agents do not download their configuration for it.
    let turned_on = enabled && !was;
    on_tx!(&mut tx, conn => {
        sqlx::query("UPDATE pollers SET enabled = $1, disabled_reason = $2, consecutive_errors = CASE WHEN $3 THEN 0 ELSE consecutive_errors END,
                enabled_at = CASE WHEN $4 THEN $5 ELSE enabled_at END, updated_at = $6 WHERE id = $7")
            .bind(enabled)
            .bind(&reason)
            .bind(enabled)
            .bind(turned_on)
            .bind(now)
            .bind(now)
            .bind(id)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    if enabled && was {
        super::agent::enable_command(&mut tx, id).await?;
        tx.commit().await?;
        return Ok(Json(view(&state.db, id).await?));
    }
    state.commit_config_change(tx).await?;
    Ok(Json(view(&state.db, id).await?))
}

/// Delete a poller; it must be disabled first.
#[utoipa::path(delete, path = "/api/v1/pollers/{id}", tag = "pollers", operation_id = "delete_poller", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)), security(("session" = [])))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    _user: User,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin_write().await?;
    let enabled: bool = on_tx!(&mut tx, conn => {
        sqlx::query_scalar("SELECT enabled FROM pollers WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await
    })?
    .ok_or_else(|| ApiError::not_found(&format!("poller {id}")))?;
    if enabled {
        return Err(ApiError::conflict(
            Some("enabled"),
            "disable the poller before deleting it",
        ));
    }
    on_tx!(&mut tx, conn => {
        sqlx::query("DELETE FROM pollers WHERE id = $1")
            .bind(id)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    state.commit_config_change(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A poller as stored, with the names it refers to.
#[derive(sqlx::FromRow)]
struct PollerRow {
    name: String,
    path: String,
    plugin_id: i64,
    plugin_name: String,
    pinned: Option<String>,
    params_json: String,
    target_id: Option<i64>,
    target_name: Option<String>,
    target_json: Option<String>,
    excludes: String,
    max_transfers: i64,
    stability_secs: f64,
    enabled: bool,
    enabled_at: Option<i64>,
    disabled_reason: Option<String>,
    consecutive_errors: i64,
    disabled_at: Option<i64>,
    disabled_by_agent: Option<String>,
}

pub async fn view(db: &Db, id: i64) -> ApiResult<PollerView> {
    let r = on_db!(db, pool => {
        sqlx::query_as::<_, PollerRow>(
            "SELECT p.name, p.path, p.plugin_id, pl.name AS plugin_name, v.version AS pinned, p.params_json,
                p.target_id, t.name AS target_name, t.settings_json AS target_json, p.excludes,
                p.max_transfers, p.stability_secs, p.enabled, p.enabled_at, p.disabled_reason,
                p.consecutive_errors, p.disabled_at, p.disabled_by_agent
             FROM pollers p JOIN plugins pl ON pl.id = p.plugin_id
             LEFT JOIN plugin_versions v ON v.id = p.plugin_version_id LEFT JOIN targets t ON t.id = p.target_id WHERE p.id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await
    })?
    .ok_or_else(|| ApiError::not_found(&format!("poller {id}")))?;
    let resolved = match &r.pinned {
        Some(v) => Some(v.clone()),
        None => super::plugins::latest_version(db, r.plugin_id)
            .await?
            .map(|(_, v, _)| v),
    };
    let agents = on_db!(db, pool => {
        sqlx::query_scalar("SELECT a.name FROM agents a JOIN poller_agents pa ON pa.agent_id = a.id WHERE pa.poller_id = $1 ORDER BY a.name")
            .bind(id)
            .fetch_all(pool)
            .await
    })?;
    let summary = r
        .target_json
        .and_then(|json| crate::target_store::parse_public(&json).ok())
        .map(|t| t.summary());
    Ok(PollerView {
        id,
        name: r.name,
        path: r.path,
        plugin: r.plugin_name,
        plugin_version: r.pinned.unwrap_or_else(|| "latest".into()),
        resolved_version: resolved,
        params: serde_json::from_str(&r.params_json).unwrap_or_default(),
        target_id: r.target_id,
        target: r.target_name,
        target_summary: summary,
        excludes: r.excludes,
        max_transfers: r.max_transfers,
        stability_secs: r.stability_secs,
        agents,
        enabled: r.enabled,
        enabled_at: r.enabled_at,
        disabled_reason: r.disabled_reason,
        consecutive_errors: r.consecutive_errors,
        disabled_at: r.disabled_at,
        disabled_by_agent: r.disabled_by_agent,
    })
}

/// Moves a poller of `plugin` to another of its versions (`latest` to
/// follow new uploads); its parameters must fit that version's schema.
pub async fn move_to_version(
    state: &AppState,
    poller: &str,
    plugin: &str,
    version: &str,
) -> ApiResult<()> {
    let (id, params_json, plugin_id) = on_db!(&state.db, pool => {
        sqlx::query_as::<_, (i64, String, i64)>(
            "SELECT p.id, p.params_json, p.plugin_id FROM pollers p JOIN plugins pl ON pl.id = p.plugin_id WHERE p.name = $1 AND pl.name = $2",
        )
        .bind(poller)
        .bind(plugin)
        .fetch_optional(pool)
        .await
    })?
    .ok_or_else(|| ApiError::bad("poller", format!("`{poller}` is not a poller of plugin `{plugin}`")))?;
    let params: BTreeMap<String, String> = serde_json::from_str(&params_json).unwrap_or_default();
    let (version_id, schema_json) =
        super::plugins::version_schema(&state.db, plugin_id, Some(version))
            .await?
            .ok_or_else(|| {
                ApiError::bad(
                    "version",
                    format!("plugin `{plugin}` has no version {version}"),
                )
            })?;
    let info = PluginInfo {
        name: plugin.to_string(),
        version: version.to_string(),
        description: String::new(),
        params: serde_json::from_str(&schema_json).unwrap_or_default(),
    };
    let given: Vec<(String, String)> = params.into_iter().collect();
    info.resolve_params(&given).map_err(|e| {
        ApiError::bad(
            "version",
            format!("{poller}'s settings do not fit version {version}: {e}"),
        )
    })?;
    let mut tx = state.db.begin_write().await?;
    on_tx!(&mut tx, conn => {
        sqlx::query("UPDATE pollers SET plugin_version_id = $1, updated_at = $2 WHERE id = $3")
            .bind(version_id)
            .bind(crate::now_ms())
            .bind(id)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    state.commit_config_change(tx).await?;
    Ok(())
}
