//! Plugins and their versions: upload, list, history, delete, download.

use crate::AppState;
use crate::auth::{Agent, User};
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::registry::{self, Stored};
use crate::{on_db, on_tx};
use axum::Json;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::Arc;

#[derive(Serialize, utoipa::ToSchema)]
pub struct PluginSummary {
    pub name: String,
    pub latest_version: Option<String>,
    pub versions: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct VersionView {
    pub version: String,
    pub sha256: String,
    pub size: i64,
    pub wit_version: String,
    pub description: String,
    /// The parameter schema from describe(): one object per parameter.
    #[schema(value_type = Vec<Object>)]
    pub params: serde_json::Value,
    pub uploaded_at: i64,
    pub uploaded_by: String,
    /// Pollers pinned to this version, or following the latest when this is it.
    pub used_by: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PluginView {
    pub name: String,
    /// Newest first.
    pub versions: Vec<VersionView>,
}

/// The upload form: its `file` field is the component.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
// the document's schema of what `upload` reads
// Parts other than `file` are read past, but their names must be valid
// header text: the schema states the one part a client sends.
#[serde(deny_unknown_fields)]
pub struct UploadForm {
    #[schema(value_type = String, format = Binary, content_media_type = "application/wasm")]
    file: Vec<u8>,
}

/// Upload a `.wasm` component (multipart field `file`): validated in the
/// sandbox, then stored as a version of the plugin its describe() names.
#[utoipa::path(post, path = "/api/v1/plugins", tag = "plugins", operation_id = "upload_plugin",
    request_body(content = UploadForm, content_type = "multipart/form-data", description = "field `file`: the component"),
    responses((status = 201, body = Stored), (status = 200, body = Stored, description = "the same bytes were already stored"),
              (status = 422, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody, description = "another upload was being checked for the whole check limit: try again")),
    security(("session" = [])))]
pub async fn upload(
    State(state): State<Arc<AppState>>,
    user: User,
    mut form: Multipart,
) -> ApiResult<Response> {
    let mut bytes = None;
    while let Some(field) = form.next_field().await.map_err(|e| {
        ApiError::new(
            e.status(),
            format!("bad multipart upload: {}", e.body_text()),
        )
    })? {
        if field.name() == Some("file") {
            // Read to the end even past the limit (up to the transport cap),
            // so the client gets a clean 413 rather than a reset connection.
            let mut data = Vec::new();
            let mut over = false;
            let mut field = field;
            while let Some(chunk) = field.chunk().await.map_err(|e| {
                ApiError::new(
                    e.status(),
                    format!("bad multipart upload: {}", e.body_text()),
                )
            })? {
                if data.len() + chunk.len() > state.upload_limit {
                    over = true;
                    data.clear();
                } else if !over {
                    data.extend_from_slice(&chunk);
                }
            }
            if over {
                return Err(ApiError::field(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "file",
                    format!(
                        "the upload is over the limit of {} bytes",
                        state.upload_limit
                    ),
                ));
            }
            bytes = Some(data);
        }
    }
    let bytes =
        bytes.ok_or_else(|| ApiError::bad("file", "the multipart form has no `file` field"))?;
    if bytes.is_empty() {
        return Err(ApiError::bad("file", "the uploaded file is empty"));
    }
    let stored = registry::store(&state, bytes, &user.username).await?;
    let status = if stored.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(stored)).into_response())
}

/// Every plugin with its latest version.
#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins", operation_id = "list_plugins", responses((status = 200, body = [PluginSummary])), security(("session" = [])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _user: User,
) -> ApiResult<Json<Vec<PluginSummary>>> {
    let rows = on_db!(&state.db, pool => {
        sqlx::query_as::<_, (i64, String, i64)>("SELECT p.id, p.name, COUNT(v.id) AS n FROM plugins p LEFT JOIN plugin_versions v ON v.plugin_id = p.id GROUP BY p.id ORDER BY p.name")
            .fetch_all(pool)
            .await
    })?;
    let mut out = Vec::new();
    for (id, name, versions) in rows {
        let latest = latest_version(&state.db, id).await?.map(|(_, v, _)| v);
        out.push(PluginSummary {
            name,
            latest_version: latest,
            versions,
        });
    }
    Ok(Json(out))
}

/// The highest semver version of a plugin: (version id, version, sha256).
pub async fn latest_version(
    db: &Db,
    plugin_id: i64,
) -> Result<Option<(i64, String, String)>, sqlx::Error> {
    let rows: Vec<(i64, String, String)> = on_db!(db, pool => {
        sqlx::query_as("SELECT id, version, sha256 FROM plugin_versions WHERE plugin_id = $1")
            .bind(plugin_id)
            .fetch_all(pool)
            .await
    })?;
    Ok(rows.into_iter().max_by_key(|(_, v, _)| semver_key(v)))
}

/// The version of a plugin a poller runs, with its parameter schema (JSON):
/// `version` pinned, or the latest for `None`, `""` or `"latest"` (then the
/// id returned is `None`: the poller follows new uploads). `None` when the
/// plugin has no such version.
pub async fn version_schema(
    db: &Db,
    plugin_id: i64,
    version: Option<&str>,
) -> Result<Option<(Option<i64>, String)>, sqlx::Error> {
    let pinned = pinned(version);
    let id = match pinned {
        Some(v) => on_db!(db, pool => {
            sqlx::query_scalar(
                "SELECT id FROM plugin_versions WHERE plugin_id = $1 AND version = $2",
            )
            .bind(plugin_id)
            .bind(v)
            .fetch_optional(pool)
            .await
        })?,
        None => latest_version(db, plugin_id).await?.map(|(id, _, _)| id),
    };
    let Some(id) = id else {
        return Ok(None);
    };
    let schema = on_db!(db, pool => {
        sqlx::query_scalar("SELECT params_json FROM plugin_versions WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
    })?;
    Ok(Some((pinned.map(|_| id), schema)))
}

/// The version a poller is pinned to: none for `None`, `""` or `"latest"`.
pub fn pinned(version: Option<&str>) -> Option<&str> {
    version.filter(|v| !v.is_empty() && *v != "latest")
}

/// Orders `1.10.0` after `1.9.0`; a pre-release before its release.
pub fn semver_key(v: &str) -> (u64, u64, u64, bool, String) {
    let (core, pre) = v.split_once('-').map_or((v, ""), |(c, p)| (c, p));
    let mut n = core
        .split('+')
        .next()
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse::<u64>().unwrap_or(0));
    (
        n.next().unwrap_or(0),
        n.next().unwrap_or(0),
        n.next().unwrap_or(0),
        pre.is_empty(),
        pre.to_string(),
    )
}

/// A version as stored.
#[derive(sqlx::FromRow)]
struct VersionRow {
    id: i64,
    version: String,
    sha256: String,
    size: i64,
    wit_version: String,
    description: String,
    params_json: String,
    uploaded_at: i64,
    uploaded_by: String,
}

/// A plugin's version history, each with its schema and users (served by
/// `GET /api/v1/plugins/{key}`, see `api::plugin_or_module`).
pub async fn show(
    State(state): State<Arc<AppState>>,
    _user: User,
    Path(name): Path<String>,
) -> ApiResult<Json<PluginView>> {
    let db = &state.db;
    let plugin_id: i64 = on_db!(db, pool => {
        sqlx::query_scalar("SELECT id FROM plugins WHERE name = $1")
            .bind(&name)
            .fetch_optional(pool)
            .await
    })?
    .ok_or_else(|| ApiError::not_found(&format!("plugin `{name}`")))?;
    let latest = latest_version(db, plugin_id).await?.map(|(id, _, _)| id);
    let rows = on_db!(db, pool => {
        sqlx::query_as::<_, VersionRow>(
            "SELECT id, version, sha256, size, wit_version, description, params_json, uploaded_at, uploaded_by
             FROM plugin_versions WHERE plugin_id = $1",
        )
        .bind(plugin_id)
        .fetch_all(pool)
        .await
    })?;
    let mut versions = Vec::new();
    for r in rows {
        let used_by: Vec<String> = on_db!(db, pool => {
            sqlx::query_scalar(
                "SELECT name FROM pollers WHERE plugin_id = $1 AND (plugin_version_id = $2 OR (plugin_version_id IS NULL AND $3)) ORDER BY name",
            )
            .bind(plugin_id)
            .bind(r.id)
            .bind(latest == Some(r.id))
            .fetch_all(pool)
            .await
        })?;
        versions.push(VersionView {
            version: r.version,
            sha256: r.sha256,
            size: r.size,
            wit_version: r.wit_version,
            description: r.description,
            params: serde_json::from_str(&r.params_json).unwrap_or_default(),
            uploaded_at: r.uploaded_at,
            uploaded_by: r.uploaded_by,
            used_by,
        });
    }
    versions.sort_by_key(|v| std::cmp::Reverse(semver_key(&v.version)));
    Ok(Json(PluginView { name, versions }))
}

/// Delete a version nobody uses.
#[utoipa::path(delete, path = "/api/v1/plugins/{name}/versions/{version}", tag = "plugins", operation_id = "delete_plugin_version",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)),
    security(("session" = [])))]
pub async fn delete_version(
    State(state): State<Arc<AppState>>,
    _user: User,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin_write().await?;
    let (id, plugin_id, sha) = on_tx!(&mut tx, conn => {
        sqlx::query_as::<_, (i64, i64, String)>("SELECT v.id, v.plugin_id, v.sha256 FROM plugin_versions v JOIN plugins p ON p.id = v.plugin_id WHERE p.name = $1 AND v.version = $2")
            .bind(&name)
            .bind(&version)
            .fetch_optional(conn)
            .await
    })?
    .ok_or_else(|| ApiError::not_found(&format!("version {version} of plugin `{name}`")))?;
    let is_latest = latest_version(&state.db, plugin_id)
        .await?
        .map(|(i, _, _)| i)
        == Some(id);
    let users: Vec<String> = on_tx!(&mut tx, conn => {
        sqlx::query_scalar(
            "SELECT name FROM pollers WHERE plugin_id = $1 AND (plugin_version_id = $2 OR (plugin_version_id IS NULL AND $3)) ORDER BY name",
        )
        .bind(plugin_id)
        .bind(id)
        .bind(is_latest)
        .fetch_all(conn)
        .await
    })?;
    if !users.is_empty() {
        return Err(ApiError::conflict(
            None,
            format!(
                "version {version} of `{name}` is used by poller(s) {}",
                users.join(", ")
            ),
        ));
    }
    on_tx!(&mut tx, conn => {
        sqlx::query("DELETE FROM plugin_versions WHERE id = $1")
            .bind(id)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    state.commit_config_change(tx).await?;
    crate::modules::forget(&state.data_dir, &sha);
    Ok(StatusCode::NO_CONTENT)
}

/// A module's bytes, for agents (or people). Immutable: the URL is its hash
/// (served by `GET /api/v1/plugins/{key}`, see `api::plugin_or_module`).
pub async fn module(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(sha256): Path<String>,
) -> ApiResult<Response> {
    authorize_any(&state, &headers).await?;
    if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "sha256",
            "not a sha256 (64 hex digits)",
        ));
    }
    let sha256 = sha256.to_ascii_lowercase();
    let known: Option<i64> = on_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT id FROM plugin_versions WHERE sha256 = $1")
            .bind(&sha256)
            .fetch_optional(pool)
            .await
    })?;
    if known.is_none() {
        return Err(ApiError::not_found(&format!("module {sha256}")));
    }
    let bytes = crate::modules::get(&state, &sha256)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/wasm".to_string()),
            (
                header::CACHE_CONTROL,
                "public, max-age=31536000, immutable".to_string(),
            ),
            (header::ETAG, format!("\"{sha256}\"")),
        ],
        bytes,
    )
        .into_response())
}

/// Modules may be fetched by an agent (bearer token) or a logged-in person.
async fn authorize_any(state: &Arc<AppState>, headers: &HeaderMap) -> ApiResult<()> {
    let mut req = axum::http::Request::new(());
    *req.headers_mut() = headers.clone();
    let (mut parts, ()) = req.into_parts();
    use axum::extract::FromRequestParts;
    if headers.contains_key(header::AUTHORIZATION) {
        Agent::from_request_parts(&mut parts, state).await.map(drop)
    } else {
        User::from_request_parts(&mut parts, state).await.map(drop)
    }
}
