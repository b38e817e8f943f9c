//! Targets (where pollers send), as records pollers reference. The body's
//! `target` is a `dispatch_protocol::Target`, checked by its own
//! validation. Secrets are write-only: a response says only whether each
//! is set; on update, a secret left out or `""` keeps its stored value and
//! `null` clears it.

use crate::AppState;
use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use crate::target_store::{self, SECRET_NAMES, StoredTarget};
use crate::{on_db, on_tx};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dispatch_protocol::target::{
    AsperaTarget, FtpTarget, KINDS, LocalTarget, S3Target, SftpTarget, WebdavTarget,
};
use dispatch_protocol::{FieldError, Target};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A target as created or replaced.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetInput {
    /// Lowercase letters, digits, `_` or `-`, starting with a letter (64 at most).
    #[schema(pattern = "^[a-z][a-z0-9_-]{0,63}$")]
    pub name: String,
    /// The kind and its settings. Secrets: left out or `""` keeps the
    /// stored value (on update), `null` clears it.
    #[schema(value_type = dispatch_protocol::Target)]
    pub target: Value,
}

/// A target as shown: never a secret, only whether each is set.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TargetView {
    pub id: i64,
    pub name: String,
    pub kind: String,
    /// One line, without credentials.
    pub summary: String,
    /// The settings without the secret fields.
    #[schema(value_type = Object)]
    pub target: Value,
    /// Each secret field of the kind: set or not.
    pub secrets: BTreeMap<String, bool>,
    /// The pollers sending to it.
    pub pollers: Vec<String>,
    pub updated_at: i64,
}

/// `v` as a `T`; the error names the field at fault (under `prefix`).
pub fn from_json<T: DeserializeOwned>(v: Value, prefix: &str) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let mut field = if path == "." { String::new() } else { path };
        // serde names a missing field in its message, not in the path.
        if let Some(missing) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
        {
            field = if field.is_empty() {
                missing.to_string()
            } else {
                format!("{field}.{missing}")
            };
        }
        let error = FieldError::new(field, message);
        if prefix.is_empty() {
            error
        } else {
            error.within(prefix)
        }
    })
}

/// The settings of `kind`, deserialized as that kind's struct so that an
/// error names its field (an internally tagged enum loses the path).
fn target_of_kind(v: Value) -> Result<Target, FieldError> {
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default();
    let at = "target";
    Ok(match kind {
        "local" => Target::Local(from_json::<LocalTarget>(v, at)?),
        "aspera" => Target::Aspera(from_json::<AsperaTarget>(v, at)?),
        "sftp" => Target::Sftp(from_json::<SftpTarget>(v, at)?),
        "ftp" => Target::Ftp(from_json::<FtpTarget>(v, at)?),
        "webdav" => Target::Webdav(from_json::<WebdavTarget>(v, at)?),
        "s3" => Target::S3(from_json::<S3Target>(v, at)?),
        other => {
            return Err(FieldError::new(
                "target.kind",
                format!("`{other}` is not one of {}", KINDS.join(", ")),
            ));
        }
    })
}

/// What the body says of one secret.
#[derive(PartialEq)]
enum Change {
    Keep,
    Clear,
    Set,
}

/// The target the body describes, secrets kept from `stored` (same kind
/// only) where the body leaves them out; then validated.
pub fn parse_target(v: Value, stored: Option<&Target>) -> ApiResult<Target> {
    let bad = |e: FieldError| ApiError::bad(&e.field, e.message);
    let Some(obj) = v.as_object() else {
        return Err(ApiError::bad("target", "must be an object with a `kind`"));
    };
    let changes: BTreeMap<&str, Change> = SECRET_NAMES
        .iter()
        .map(|&name| {
            let change = match obj.get(name) {
                None => Change::Keep,
                Some(Value::Null) => Change::Clear,
                Some(Value::String(s)) if s.is_empty() => Change::Keep,
                Some(_) => Change::Set,
            };
            (name, change)
        })
        .collect();
    let mut target = target_of_kind(target_store::with_placeholders(v)).map_err(bad)?;
    target_store::clear_empty_secrets(&mut target);
    if let Some(old) = stored.filter(|o| o.kind() == target.kind()) {
        for (field, value) in old.secrets() {
            if changes.get(field) == Some(&Change::Keep) && value.is_some() {
                target.set_secret(field, value.cloned());
            }
        }
    }
    target.validate(true).map_err(|e| bad(e.within("target")))?;
    Ok(target)
}

fn check_name(name: &str) -> ApiResult<()> {
    if !super::agents::valid_name(name) {
        return Err(ApiError::bad(
            "name",
            "lowercase letters, digits, `_` or `-`, starting with a letter (64 at most)",
        ));
    }
    Ok(())
}

fn taken(name: &str) -> impl FnOnce(sqlx::Error) -> ApiError {
    crate::error::unique("name", format!("a target named `{name}` exists"))
}

/// Create a target.
#[utoipa::path(post, path = "/api/v1/targets", tag = "targets", operation_id = "create_target", request_body = TargetInput,
    responses((status = 201, body = TargetView), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)), security(("session" = [])))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    _user: User,
    body: Result<Json<TargetInput>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<TargetView>)> {
    let Json(input) = body?;
    check_name(&input.name)?;
    let target = parse_target(input.target, None)?;
    let now = crate::now_ms();
    let (json, sealed) = (
        target_store::public_json(&target).to_string(),
        target_store::seal_secrets(&state.crypto, &target),
    );
    let mut tx = state.db.begin_write().await?;
    let id: i64 = on_tx!(&mut tx, conn => {
        sqlx::query_scalar(
            "INSERT INTO targets (name, kind, settings_json, secrets_enc, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&input.name)
        .bind(target.kind())
        .bind(&json)
        .bind(&sealed)
        .bind(now)
        .bind(now)
        .fetch_one(conn)
        .await
    })
    .map_err(taken(&input.name))?;
    state.commit_config_change(tx).await?;
    Ok((StatusCode::CREATED, Json(view(&state, id).await?)))
}

/// Replace a target's settings (secrets: see `TargetInput`).
#[utoipa::path(put, path = "/api/v1/targets/{id}", tag = "targets", operation_id = "update_target", request_body = TargetInput, params(("id" = i64, Path)),
    responses((status = 200, body = TargetView), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)), security(("session" = [])))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    _user: User,
    Path(id): Path<i64>,
    body: Result<Json<TargetInput>, JsonRejection>,
) -> ApiResult<Json<TargetView>> {
    let Json(input) = body?;
    let stored = target_store::load(&state, id).await?;
    check_name(&input.name)?;
    let target = parse_target(input.target, Some(&stored.target))?;
    let (json, sealed) = (
        target_store::public_json(&target).to_string(),
        target_store::seal_secrets(&state.crypto, &target),
    );
    let mut tx = state.db.begin_write().await?;
    on_tx!(&mut tx, conn => {
        sqlx::query(
            "UPDATE targets SET name = $1, kind = $2, settings_json = $3, secrets_enc = $4, updated_at = $5 WHERE id = $6",
        )
        .bind(&input.name)
        .bind(target.kind())
        .bind(&json)
        .bind(&sealed)
        .bind(crate::now_ms())
        .bind(id)
        .execute(conn)
        .await
        .map(|_| ())
    })
    .map_err(taken(&input.name))?;
    state.commit_config_change(tx).await?;
    Ok(Json(view(&state, id).await?))
}

/// Every target.
#[utoipa::path(get, path = "/api/v1/targets", tag = "targets", operation_id = "list_targets", responses((status = 200, body = [TargetView])), security(("session" = [])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _user: User,
) -> ApiResult<Json<Vec<TargetView>>> {
    let ids: Vec<i64> = on_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT id FROM targets ORDER BY name")
            .fetch_all(pool)
            .await
    })?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(view(&state, id).await?);
    }
    Ok(Json(out))
}

/// One target.
#[utoipa::path(get, path = "/api/v1/targets/{id}", tag = "targets", operation_id = "show_target", params(("id" = i64, Path)),
    responses((status = 200, body = TargetView), (status = 404, body = crate::error::ErrorBody)), security(("session" = [])))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    _user: User,
    Path(id): Path<i64>,
) -> ApiResult<Json<TargetView>> {
    Ok(Json(view(&state, id).await?))
}

/// Delete a target; refused while a poller sends to it.
#[utoipa::path(delete, path = "/api/v1/targets/{id}", tag = "targets", operation_id = "delete_target", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)), security(("session" = [])))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    _user: User,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin_write().await?;
    let name: String = on_tx!(&mut tx, conn => {
        sqlx::query_scalar("SELECT name FROM targets WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await
    })?
    .ok_or_else(|| ApiError::not_found(&format!("target {id}")))?;
    let users: Vec<String> = on_tx!(&mut tx, conn => {
        sqlx::query_scalar("SELECT name FROM pollers WHERE target_id = $1 ORDER BY name")
            .bind(id)
            .fetch_all(conn)
            .await
    })?;
    if !users.is_empty() {
        return Err(ApiError::conflict(
            None,
            format!(
                "target `{name}` is used by poller {}; give them another target first",
                users.join(", ")
            ),
        ));
    }
    on_tx!(&mut tx, conn => {
        sqlx::query("DELETE FROM targets WHERE id = $1")
            .bind(id)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    state.commit_config_change(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The target `id` as shown.
pub async fn view(state: &AppState, id: i64) -> ApiResult<TargetView> {
    let StoredTarget { id, name, target } = target_store::load(state, id).await?;
    let updated_at: i64 = on_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT updated_at FROM targets WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
    })?;
    let pollers = on_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT name FROM pollers WHERE target_id = $1 ORDER BY name")
            .bind(id)
            .fetch_all(pool)
            .await
    })?;
    Ok(TargetView {
        id,
        name,
        kind: target.kind().to_string(),
        summary: target.summary(),
        target: target_store::public_json(&target),
        secrets: target_store::secrets_set(&target),
        pollers,
        updated_at,
    })
}
