//! Pollers: every setting of the original form, plus plugin and version,
//! parameters, stability, excludes and agents. Secrets are write-only.

use crate::AppState;
use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dispatch_host::params::{ParamSpec, PluginInfo};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::BTreeMap;
use std::sync::Arc;

fn default_port() -> i64 {
    22
}
fn default_speed() -> f64 {
    150.0
}
fn default_max() -> i64 {
    3
}
fn default_stability() -> f64 {
    10.0
}
fn default_kind() -> String {
    "aspera".into()
}

/// A poller as created or replaced. Secrets (`password`, `ssh_key`,
/// `passphrase`) are write-only: on update, leave one out to keep it, send
/// `""` to clear it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PollerInput {
    /// Lowercase letters, digits and underscores.
    pub name: String,
    /// The watched directory on the agent's machine.
    pub path: String,
    /// A plugin name.
    pub plugin: String,
    /// A version of the plugin, or `latest` (default) to follow new uploads.
    #[serde(default)]
    pub plugin_version: Option<String>,
    /// The plugin's parameters, checked against its schema.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// `aspera` (default) or `local`.
    #[serde(default = "default_kind")]
    pub transfer: String,
    /// Transfer host.
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub username: String,
    pub password: Option<String>,
    pub ssh_key: Option<String>,
    #[serde(default = "default_port")]
    pub port: i64,
    /// Folder on the remote (for `local`: the destination directory).
    #[serde(default)]
    pub destination: String,
    #[serde(default = "default_speed")]
    pub speed_mbps: f64,
    /// File names never sent, comma-separated (globs allowed).
    #[serde(default)]
    pub excludes: String,
    /// Encryption at rest; needs `passphrase`.
    #[serde(default)]
    pub encrypt: bool,
    pub passphrase: Option<String>,
    #[serde(default = "default_max")]
    pub max_transfers: i64,
    #[serde(default = "default_stability")]
    pub stability_secs: f64,
    /// Names of the agents that run it.
    #[serde(default)]
    pub agents: Vec<String>,
    #[serde(default)]
    pub enabled: bool,
}

/// A poller as shown: no secret, only whether each is set.
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
    pub transfer: String,
    pub host: String,
    pub username: String,
    pub has_password: bool,
    pub has_ssh_key: bool,
    pub has_passphrase: bool,
    pub port: i64,
    pub destination: String,
    pub speed_mbps: f64,
    pub excludes: String,
    pub encrypt: bool,
    pub max_transfers: i64,
    pub stability_secs: f64,
    pub agents: Vec<String>,
    pub enabled: bool,
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

/// Checks the input; returns (plugin id, pinned version id).
async fn validate(
    pool: &sqlx::SqlitePool,
    p: &PollerInput,
    has: Secrets,
) -> ApiResult<(i64, Option<i64>)> {
    let name_ok = dispatch_host::config::valid_poller_name(&p.name);
    if !name_ok {
        return Err(ApiError::bad(
            "name",
            "lowercase letters, digits and underscores, starting with a letter",
        ));
    }
    if p.path.trim().is_empty() {
        return Err(ApiError::bad("path", "is required"));
    }
    if !matches!(p.transfer.as_str(), "aspera" | "local") {
        return Err(ApiError::bad(
            "transfer",
            format!("`{}` is not one of aspera, local", p.transfer),
        ));
    }
    if p.transfer == "aspera" {
        if p.host.trim().is_empty() {
            return Err(ApiError::bad("host", "is required for aspera"));
        }
        if p.username.trim().is_empty() {
            return Err(ApiError::bad("username", "is required for aspera"));
        }
        if has.password == has.ssh_key {
            return Err(ApiError::bad(
                "password",
                "give a password or an SSH key, exactly one of the two",
            ));
        }
    } else if p.destination.trim().is_empty() {
        return Err(ApiError::bad("destination", "is required for local"));
    }
    if p.encrypt && !has.passphrase {
        return Err(ApiError::bad(
            "passphrase",
            "is required when encryption is on",
        ));
    }
    if !(1..=65535).contains(&p.port) {
        return Err(ApiError::bad("port", "must be 1 to 65535"));
    }
    if !(p.speed_mbps > 0.0 && p.speed_mbps.is_finite()) {
        return Err(ApiError::bad("speed_mbps", "must be more than 0"));
    }
    if !(1..=100).contains(&p.max_transfers) {
        return Err(ApiError::bad("max_transfers", "must be 1 to 100"));
    }
    if !(p.stability_secs >= 0.0 && p.stability_secs.is_finite()) {
        return Err(ApiError::bad("stability_secs", "must be 0 or more"));
    }
    let plugin_id: i64 = sqlx::query_scalar("SELECT id FROM plugins WHERE name = ?")
        .bind(&p.plugin)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ApiError::bad("plugin", format!("no plugin named `{}`", p.plugin)))?;
    let wanted = p.plugin_version.as_deref();
    let (version_id, params_json) = super::plugins::version_schema(pool, plugin_id, wanted)
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
    for a in &p.agents {
        let known: Option<i64> = sqlx::query_scalar("SELECT id FROM agents WHERE name = ?")
            .bind(a)
            .fetch_optional(pool)
            .await?;
        if known.is_none() {
            return Err(ApiError::bad("agents", format!("no agent named `{a}`")));
        }
    }
    Ok((plugin_id, version_id))
}

fn param_name(e: &dispatch_host::params::ParamError) -> String {
    use dispatch_host::params::ParamError as E;
    match e {
        E::Unknown { name, .. } | E::Missing { name, .. } | E::BadValue { name, .. } => {
            name.clone()
        }
    }
}

/// Which secrets the poller will have after the change.
#[derive(Clone, Copy, Default)]
struct Secrets {
    password: bool,
    ssh_key: bool,
    passphrase: bool,
}

/// A secret's new stored value: `None` keeps the old one.
fn secret_update(state: &AppState, field: &str, given: &Option<String>) -> Option<Option<Vec<u8>>> {
    given
        .as_ref()
        .map(|v| (!v.is_empty()).then(|| state.crypto.encrypt(field, v)))
}

/// Create a poller (disabled unless `enabled` is true).
#[utoipa::path(post, path = "/api/v1/pollers", tag = "pollers", request_body = PollerInput,
    responses((status = 201, body = PollerView), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    _user: User,
    body: Result<Json<PollerInput>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<PollerView>)> {
    let Json(p) = body?;
    let has = Secrets {
        password: p.password.as_deref().is_some_and(|s| !s.is_empty()),
        ssh_key: p.ssh_key.as_deref().is_some_and(|s| !s.is_empty()),
        passphrase: p.passphrase.as_deref().is_some_and(|s| !s.is_empty()),
    };
    let (plugin_id, version_id) = validate(&state.pool, &p, has).await?;
    let mut tx = state.pool.begin().await?;
    let now = crate::now_ms();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO pollers (name, path, plugin_id, plugin_version_id, params_json, transfer_kind, host, username,
            password_enc, ssh_key_enc, passphrase_enc, port, destination, speed_mbps, excludes, encrypt, max_transfers,
            stability_secs, enabled, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&p.name)
    .bind(&p.path)
    .bind(plugin_id)
    .bind(version_id)
    .bind(serde_json::to_string(&p.params).unwrap_or_default())
    .bind(&p.transfer)
    .bind(&p.host)
    .bind(&p.username)
    .bind(secret_update(&state, "password", &p.password).flatten())
    .bind(secret_update(&state, "ssh_key", &p.ssh_key).flatten())
    .bind(secret_update(&state, "passphrase", &p.passphrase).flatten())
    .bind(p.port)
    .bind(&p.destination)
    .bind(p.speed_mbps)
    .bind(&p.excludes)
    .bind(p.encrypt)
    .bind(p.max_transfers)
    .bind(p.stability_secs)
    .bind(p.enabled)
    .bind(now)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(crate::error::unique("name", format!("a poller named `{}` exists", p.name)))?;
    set_agents(&mut tx, id, &p.agents).await?;
    state.commit_config_change(tx).await?;
    Ok((StatusCode::CREATED, Json(view(&state.pool, id).await?)))
}

async fn set_agents(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    poller: i64,
    agents: &[String],
) -> ApiResult<()> {
    sqlx::query("DELETE FROM poller_agents WHERE poller_id = ?")
        .bind(poller)
        .execute(&mut **tx)
        .await?;
    for a in agents {
        sqlx::query("INSERT OR IGNORE INTO poller_agents (poller_id, agent_id) SELECT ?, id FROM agents WHERE name = ?")
            .bind(poller)
            .bind(a)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Replace a poller's settings (secrets: see `PollerInput`).
#[utoipa::path(put, path = "/api/v1/pollers/{id}", tag = "pollers", request_body = PollerInput, params(("id" = i64, Path)),
    responses((status = 200, body = PollerView), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    _user: User,
    Path(id): Path<i64>,
    body: Result<Json<PollerInput>, JsonRejection>,
) -> ApiResult<Json<PollerView>> {
    let Json(p) = body?;
    let row = sqlx::query("SELECT password_enc IS NOT NULL AS pw, ssh_key_enc IS NOT NULL AS key, passphrase_enc IS NOT NULL AS pp FROM pollers WHERE id = ?")
        .bind(id)
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("poller {id}")))?;
    let after = |given: &Option<String>, had: bool| given.as_ref().map_or(had, |v| !v.is_empty());
    let has = Secrets {
        password: after(&p.password, row.get("pw")),
        ssh_key: after(&p.ssh_key, row.get("key")),
        passphrase: after(&p.passphrase, row.get("pp")),
    };
    let (plugin_id, version_id) = validate(&state.pool, &p, has).await?;
    let mut tx = state.pool.begin().await?;
    sqlx::query(
        "UPDATE pollers SET name = ?, path = ?, plugin_id = ?, plugin_version_id = ?, params_json = ?, transfer_kind = ?, host = ?,
            username = ?, port = ?, destination = ?, speed_mbps = ?, excludes = ?, encrypt = ?, max_transfers = ?,
            stability_secs = ?, enabled = ?, updated_at = ? WHERE id = ?",
    )
    .bind(&p.name)
    .bind(&p.path)
    .bind(plugin_id)
    .bind(version_id)
    .bind(serde_json::to_string(&p.params).unwrap_or_default())
    .bind(&p.transfer)
    .bind(&p.host)
    .bind(&p.username)
    .bind(p.port)
    .bind(&p.destination)
    .bind(p.speed_mbps)
    .bind(&p.excludes)
    .bind(p.encrypt)
    .bind(p.max_transfers)
    .bind(p.stability_secs)
    .bind(p.enabled)
    .bind(crate::now_ms())
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(crate::error::unique("name", format!("a poller named `{}` exists", p.name)))?;
    for (field, given) in [
        ("password", &p.password),
        ("ssh_key", &p.ssh_key),
        ("passphrase", &p.passphrase),
    ] {
        if let Some(value) = secret_update(&state, field, given) {
            // `field` is one of three fixed names.
            let sql = format!("UPDATE pollers SET {field}_enc = ? WHERE id = ?");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(value)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
    }
    set_agents(&mut tx, id, &p.agents).await?;
    state.commit_config_change(tx).await?;
    Ok(Json(view(&state.pool, id).await?))
}

/// Every poller.
#[utoipa::path(get, path = "/api/v1/pollers", tag = "pollers", responses((status = 200, body = [PollerView])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _user: User,
) -> ApiResult<Json<Vec<PollerView>>> {
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM pollers ORDER BY name")
        .fetch_all(&state.pool)
        .await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(view(&state.pool, id).await?);
    }
    Ok(Json(out))
}

/// One poller.
#[utoipa::path(get, path = "/api/v1/pollers/{id}", tag = "pollers", params(("id" = i64, Path)),
    responses((status = 200, body = PollerView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    _user: User,
    Path(id): Path<i64>,
) -> ApiResult<Json<PollerView>> {
    Ok(Json(view(&state.pool, id).await?))
}

/// Enable a poller.
#[utoipa::path(post, path = "/api/v1/pollers/{id}/enable", tag = "pollers", params(("id" = i64, Path)),
    responses((status = 200, body = PollerView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn enable(
    State(state): State<Arc<AppState>>,
    _user: User,
    Path(id): Path<i64>,
) -> ApiResult<Json<PollerView>> {
    set_enabled(&state, id, true, None).await
}

/// Disable a poller, with an optional reason.
#[utoipa::path(post, path = "/api/v1/pollers/{id}/disable", tag = "pollers", params(("id" = i64, Path)), request_body = DisableInput,
    responses((status = 200, body = PollerView), (status = 404, body = crate::error::ErrorBody)))]
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
    let mut tx = state.pool.begin().await?;
    let n = sqlx::query("UPDATE pollers SET enabled = ?, disabled_reason = ?, consecutive_errors = CASE WHEN ? THEN 0 ELSE consecutive_errors END, updated_at = ? WHERE id = ?")
        .bind(enabled)
        .bind(reason)
        .bind(enabled)
        .bind(crate::now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(ApiError::not_found(&format!("poller {id}")));
    }
    state.commit_config_change(tx).await?;
    Ok(Json(view(&state.pool, id).await?))
}

/// Delete a poller; it must be disabled first.
#[utoipa::path(delete, path = "/api/v1/pollers/{id}", tag = "pollers", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    _user: User,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let mut tx = state.pool.begin().await?;
    let enabled: bool = sqlx::query_scalar("SELECT enabled FROM pollers WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("poller {id}")))?;
    if enabled {
        return Err(ApiError::conflict(
            Some("enabled"),
            "disable the poller before deleting it",
        ));
    }
    sqlx::query("DELETE FROM pollers WHERE id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    state.commit_config_change(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn view(pool: &sqlx::SqlitePool, id: i64) -> ApiResult<PollerView> {
    let r = sqlx::query(
        "SELECT p.*, pl.name AS plugin_name, v.version AS pinned FROM pollers p JOIN plugins pl ON pl.id = p.plugin_id
         LEFT JOIN plugin_versions v ON v.id = p.plugin_version_id WHERE p.id = ?",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| ApiError::not_found(&format!("poller {id}")))?;
    let pinned: Option<String> = r.get("pinned");
    let resolved = match &pinned {
        Some(v) => Some(v.clone()),
        None => super::plugins::latest_version(pool, r.get("plugin_id"))
            .await?
            .map(|(_, v, _)| v),
    };
    let agents = sqlx::query_scalar("SELECT a.name FROM agents a JOIN poller_agents pa ON pa.agent_id = a.id WHERE pa.poller_id = ? ORDER BY a.name")
        .bind(id)
        .fetch_all(pool)
        .await?;
    let blob = |c: &str| r.get::<Option<Vec<u8>>, _>(c).is_some();
    Ok(PollerView {
        id,
        name: r.get("name"),
        path: r.get("path"),
        plugin: r.get("plugin_name"),
        plugin_version: pinned.unwrap_or_else(|| "latest".into()),
        resolved_version: resolved,
        params: serde_json::from_str(r.get("params_json")).unwrap_or_default(),
        transfer: r.get("transfer_kind"),
        host: r.get("host"),
        username: r.get("username"),
        has_password: blob("password_enc"),
        has_ssh_key: blob("ssh_key_enc"),
        has_passphrase: blob("passphrase_enc"),
        port: r.get("port"),
        destination: r.get("destination"),
        speed_mbps: r.get("speed_mbps"),
        excludes: r.get("excludes"),
        encrypt: r.get("encrypt"),
        max_transfers: r.get("max_transfers"),
        stability_secs: r.get("stability_secs"),
        agents,
        enabled: r.get("enabled"),
        disabled_reason: r.get("disabled_reason"),
        consecutive_errors: r.get("consecutive_errors"),
        disabled_at: r.get("disabled_at"),
        disabled_by_agent: r.get("disabled_by_agent"),
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
    let row = sqlx::query(
        "SELECT p.id, p.params_json, p.plugin_id FROM pollers p JOIN plugins pl ON pl.id = p.plugin_id WHERE p.name = ? AND pl.name = ?",
    )
    .bind(poller)
    .bind(plugin)
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| ApiError::bad("poller", format!("`{poller}` is not a poller of plugin `{plugin}`")))?;
    let id: i64 = row.get("id");
    let params: BTreeMap<String, String> =
        serde_json::from_str(row.get("params_json")).unwrap_or_default();
    let plugin_id: i64 = row.get("plugin_id");
    let (version_id, schema_json) =
        super::plugins::version_schema(&state.pool, plugin_id, Some(version))
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
    let mut tx = state.pool.begin().await?;
    sqlx::query("UPDATE pollers SET plugin_version_id = ?, updated_at = ? WHERE id = ?")
        .bind(version_id)
        .bind(crate::now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    state.commit_config_change(tx).await?;
    Ok(())
}
