//! An agent's settings as a form (every `AgentSettings` field; the SMTP
//! password a password input never prefilled), saved through the API.

use super::fields::{FieldDef, Input, Raw, def};
use super::{Chrome, PageError, PageResult, PageUser, html, html_status, see_other};
use crate::AppState;
use crate::api::settings as api;
use crate::error::ApiError;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

const DURATION: &str = "e.g. 10s, 5m, 4h.";

const GENERAL: &[FieldDef] = &[
    def(
        "max_transfers",
        "Transfers at once, all pollers",
        Input::Number,
        "Empty: no cap.",
    ),
    def(
        "rescan_interval",
        "Full rescan every",
        Input::Text,
        "The safety net where file events are missing (NFS).",
    ),
    def(
        "shutdown_grace",
        "On shutdown, let transfers finish for",
        Input::Text,
        DURATION,
    ),
    def(
        "poll_memory_mib",
        "Memory a poll may use (MiB)",
        Input::Number,
        "",
    ),
    def(
        "poll_timeout",
        "Time a poll may take",
        Input::Text,
        DURATION,
    ),
    def("retry.initial", "First retry after", Input::Text, DURATION),
    def(
        "retry.max",
        "Longest wait between retries",
        Input::Text,
        DURATION,
    ),
    def(
        "retry.jitter",
        "Retry jitter",
        Input::Number,
        "0 to below 1: each wait varies by this fraction.",
    ),
    def(
        "failures_before_disable",
        "Failures in a row that disable a poller",
        Input::Number,
        "",
    ),
    def(
        "disable_cooldown",
        "A poller disabled by failures stays so for",
        Input::Text,
        DURATION,
    ),
    def(
        "journal_retention",
        "The agent's journal keeps finished transfers for",
        Input::Text,
        "At least 1h. The web app's log keeps them for good.",
    ),
    def(
        "alerts.webhook",
        "Alert webhook URL",
        Input::OptText,
        "POSTed a JSON object when a poller is disabled.",
    ),
];

const SMTP: &[FieldDef] = &[
    def("alerts.smtp.host", "SMTP host", Input::Text, ""),
    def("alerts.smtp.port", "SMTP port", Input::Number, ""),
    def(
        "alerts.smtp.security",
        "Security",
        Input::Choice(&["none", "starttls", "tls"]),
        "",
    ),
    def("alerts.smtp.username", "SMTP username", Input::OptText, ""),
    def("alerts.smtp.password", "SMTP password", Input::Secret, ""),
    def("alerts.smtp.from", "From", Input::Text, ""),
    def(
        "alerts.smtp.to",
        "To",
        Input::List,
        "Addresses separated by commas.",
    ),
];

#[derive(Template)]
#[template(path = "agent_settings.html")]
struct SettingsPage {
    chrome: Chrome,
    id: i64,
    agent: String,
    fields: Vec<super::fields::Field>,
    smtp_fields: Vec<super::fields::Field>,
    smtp_on: bool,
    error: Option<String>,
    notice: Option<String>,
}

#[derive(Deserialize)]
pub struct Notice {
    done: Option<String>,
}

async fn agent_name(state: &AppState, id: i64) -> Result<String, PageError> {
    crate::on_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT name FROM agents WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await
    })?
    .ok_or_else(|| ApiError::not_found(&format!("agent {id}")).into())
}

struct Drawn<'a> {
    raw: &'a Raw,
    smtp_on: bool,
    secrets: &'a BTreeMap<String, bool>,
    error: Option<(String, String)>,
}

fn page(
    user: &PageUser,
    id: i64,
    agent: String,
    d: Drawn<'_>,
    notice: Option<String>,
) -> SettingsPage {
    let shown = |defs: &[FieldDef]| d.raw.draw(defs, "", d.error.as_ref(), d.secrets);
    let (fields, smtp_fields) = (shown(GENERAL), shown(SMTP));
    let other = d.error.as_ref().filter(|(f, _)| {
        !super::fields::is_field_error(GENERAL, "", f)
            && !super::fields::is_field_error(SMTP, "", f)
    });
    SettingsPage {
        chrome: user.chrome("agents"),
        id,
        agent,
        fields,
        smtp_fields,
        smtp_on: d.smtp_on,
        error: other.map(|(f, m)| {
            if f.is_empty() {
                m.clone()
            } else {
                format!("{f}: {m}")
            }
        }),
        notice,
    }
}

pub async fn form(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Path(id): Path<i64>,
    Query(n): Query<Notice>,
) -> PageResult {
    let agent = agent_name(&state, id).await?;
    let view = api::show(State(state), user.0.clone(), Path(id)).await?.0;
    let json = view.settings;
    let smtp_on = json.pointer("/alerts/smtp").is_some_and(|v| !v.is_null());
    let all: Vec<FieldDef> = GENERAL.iter().chain(SMTP).map(copy).collect();
    let raw = Raw::from_json(&all, &json);
    let notice = (n.done.as_deref() == Some("saved")).then(|| "Settings saved.".to_string());
    let drawn = Drawn {
        raw: &raw,
        smtp_on,
        secrets: &view.secrets,
        error: None,
    };
    html(&page(&user, id, agent, drawn, notice))
}

fn copy(d: &FieldDef) -> FieldDef {
    def(d.path, d.label, d.input, d.help)
}

pub async fn save(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Path(id): Path<i64>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> PageResult {
    let csrf = pairs
        .iter()
        .find(|(k, _)| k == "csrf")
        .map_or("", |(_, v)| v.as_str());
    user.0.check_csrf(csrf)?;
    let agent = agent_name(&state, id).await?;
    let smtp_on = pairs.iter().any(|(k, _)| k == "smtp_on");
    let all: Vec<FieldDef> = GENERAL.iter().chain(SMTP).map(copy).collect();
    let raw = Raw::from_form(&all, &pairs);
    let body = raw.to_json(&all, "").map(|mut json| {
        if !smtp_on && let Some(alerts) = json.get_mut("alerts").and_then(Value::as_object_mut) {
            alerts.remove("smtp");
        }
        json
    });
    let result = match body {
        Err((field, message)) => Err(ApiError::bad(&field, message)),
        Ok(json) => api::update(
            State(state.clone()),
            user.0.clone(),
            Path(id),
            Ok(Json(json)),
        )
        .await
        .map(|_| ()),
    };
    match result {
        Ok(()) => see_other(&format!("/agents/{id}/settings?done=saved")),
        Err(e) if e.status.is_client_error() && e.status != StatusCode::FORBIDDEN => {
            let secrets = api::show(State(state), user.0.clone(), Path(id))
                .await?
                .0
                .secrets;
            let error = Some((e.field.unwrap_or_default(), e.message));
            let drawn = Drawn {
                raw: &raw,
                smtp_on,
                secrets: &secrets,
                error,
            };
            html_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                &page(&user, id, agent, drawn, None),
            )
        }
        Err(e) => Err(e.into()),
    }
}
