//! An agent's settings (`dispatch_protocol::AgentSettings`): stored as JSON
//! without the SMTP password, which is encrypted apart and never shown.

use crate::AppState;
use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use crate::{on_db, on_tx};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dispatch_protocol::{AgentSettings, Secret};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

const SECRETS_AAD: &str = "agents.settings_secrets_enc";
/// The one secret among the settings, by its path.
pub const SMTP_PASSWORD: &str = "alerts.smtp.password";

/// The settings as shown: every setting but the SMTP password (left out,
/// so the view sent back keeps it), and whether that is set.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SettingsView {
    #[serde(flatten)]
    #[schema(value_type = AgentSettings)]
    pub settings: Value,
    /// `{"alerts.smtp.password": true}` when a password is stored.
    pub secrets: BTreeMap<String, bool>,
}

/// The agent's settings with the SMTP password decrypted (the defaults
/// when none were saved).
pub async fn load(state: &AppState, agent_id: i64) -> ApiResult<AgentSettings> {
    let (json, blob): (Option<String>, Option<Vec<u8>>) = on_db!(&state.db, pool => {
        sqlx::query_as("SELECT settings_json, settings_secrets_enc FROM agents WHERE id = $1")
            .bind(agent_id)
            .fetch_optional(pool)
            .await
    })?
    .ok_or_else(|| ApiError::not_found(&format!("agent {agent_id}")))?;
    let internal = |e: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e);
    let mut settings: AgentSettings = match json {
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| internal(format!("agent {agent_id}'s stored settings: {e}")))?,
        None => AgentSettings::default(),
    };
    if let (Some(blob), Some(smtp)) = (blob, settings.alerts.smtp.as_mut()) {
        let password = state
            .crypto
            .decrypt(SECRETS_AAD, &blob)
            .map_err(|e| internal(format!("agent {agent_id}'s SMTP password: {e}")))?;
        smtp.password = Some(Secret::new(password));
    }
    Ok(settings)
}

fn view(mut settings: AgentSettings) -> SettingsView {
    let set = settings
        .alerts
        .smtp
        .as_mut()
        .and_then(|s| s.password.take())
        .is_some();
    let mut settings = serde_json::to_value(&settings).unwrap_or(Value::Null);
    if let Some(smtp) = settings
        .pointer_mut("/alerts/smtp")
        .and_then(Value::as_object_mut)
    {
        smtp.remove("password");
    }
    SettingsView {
        settings,
        secrets: BTreeMap::from([(SMTP_PASSWORD.to_string(), set)]),
    }
}

/// An agent's settings (the SMTP password only as set or not).
#[utoipa::path(get, path = "/api/v1/agents/{id}/settings", tag = "agents", operation_id = "show_agent_settings", params(("id" = i64, Path)),
    responses((status = 200, body = SettingsView), (status = 404, body = crate::error::ErrorBody)), security(("session" = [])))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    _user: User,
    Path(id): Path<i64>,
) -> ApiResult<Json<SettingsView>> {
    Ok(Json(view(load(&state, id).await?)))
}

/// What the body says of the SMTP password.
enum PasswordChange {
    Keep,
    Clear,
    Set(String),
}

fn password_change(body: &Value) -> PasswordChange {
    match body.pointer("/alerts/smtp/password") {
        None => PasswordChange::Keep,
        Some(Value::Null) => PasswordChange::Clear,
        Some(Value::String(s)) if s.is_empty() => PasswordChange::Keep,
        Some(Value::String(s)) => PasswordChange::Set(s.clone()),
        // Not a string: deserializing says so, naming the field.
        Some(_) => PasswordChange::Keep,
    }
}

/// Replace an agent's settings. `alerts.smtp.password`: left out or `""`
/// keeps the stored one, `null` clears it.
#[utoipa::path(put, path = "/api/v1/agents/{id}/settings", tag = "agents", operation_id = "update_agent_settings", params(("id" = i64, Path)),
    request_body = AgentSettings,
    responses((status = 200, body = SettingsView), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)), security(("session" = [])))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    _user: User,
    Path(id): Path<i64>,
    body: Result<Json<Value>, JsonRejection>,
) -> ApiResult<Json<SettingsView>> {
    let Json(body) = body?;
    let stored = load(&state, id).await?;
    let change = password_change(&body);
    let mut settings: AgentSettings =
        super::targets::from_json(body, "").map_err(|e| ApiError::bad(&e.field, e.message))?;
    if let Some(smtp) = settings.alerts.smtp.as_mut() {
        smtp.password = match change {
            PasswordChange::Keep => stored.alerts.smtp.as_ref().and_then(|s| s.password.clone()),
            PasswordChange::Clear => None,
            PasswordChange::Set(s) => Some(Secret::new(s)),
        };
    }
    settings
        .validate()
        .map_err(|e| ApiError::bad(&e.field, e.message))?;
    save(&state, id, settings).await
}

async fn save(
    state: &AppState,
    id: i64,
    mut settings: AgentSettings,
) -> ApiResult<Json<SettingsView>> {
    let password = settings
        .alerts
        .smtp
        .as_mut()
        .and_then(|s| s.password.take());
    let sealed = password.map(|p| state.crypto.encrypt(SECRETS_AAD, p.expose()));
    let json = serde_json::to_string(&settings)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut tx = state.db.begin_write().await?;
    on_tx!(&mut tx, conn => {
        sqlx::query("UPDATE agents SET settings_json = $1, settings_secrets_enc = $2 WHERE id = $3")
            .bind(&json)
            .bind(&sealed)
            .bind(id)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    state.commit_config_change(tx).await?;
    Ok(Json(view(load(state, id).await?)))
}
