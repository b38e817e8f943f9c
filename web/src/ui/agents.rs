//! Agents: who is online, what they run and how each poller does there;
//! creating one shows its token once.

use super::{Chrome, PageError, PageResult, PageUser, fmt, html, html_status};
use crate::AppState;
use crate::api::agents::{self as api, AgentView, PollerHealth};
use crate::db::Db;
use crate::on_db;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Form, Json};
use serde::Deserialize;
use std::sync::Arc;

pub struct AgentRow {
    pub id: i64,
    pub name: String,
    pub online: bool,
    pub seen: String,
    pub version: String,
    pub host: String,
    pub pollers: String,
    /// Pollers failing or disabled there.
    pub failing: usize,
    pub config_error: Option<String>,
}

/// One poller on one agent, as the pages show it (`_poller_health.html`).
pub struct HealthRow {
    pub agent_id: i64,
    pub agent: String,
    pub poller_id: i64,
    pub poller: String,
    /// `Healthy`, `Failing`, `Disabled by agent` or `No report yet`.
    pub state: &'static str,
    /// The state as a CSS class (no spaces).
    pub state_class: String,
    pub errors: i64,
    /// When the agent's breaker closes again, if it is open.
    pub until: String,
    pub reason: String,
    pub plugin_version: String,
    pub config_error: String,
    /// What the plugin said is not ready there, and why.
    pub not_ready: Vec<String>,
    pub reported: String,
}

impl HealthRow {
    pub fn new(h: &PollerHealth, now: i64) -> Self {
        let state = if h.disabled {
            "Disabled by agent"
        } else if h.consecutive_errors > 0 || h.config_error.is_some() {
            "Failing"
        } else {
            "Healthy"
        };
        let until = match h.disabled_until {
            Some(t) if t > now => format!("{} (in {})", fmt::time(t), fmt::span(t - now)),
            Some(t) => format!("{} (due)", fmt::time(t)),
            None if h.disabled => "until a person enables it".into(),
            None => String::new(),
        };
        Self {
            agent_id: h.agent_id,
            agent: h.agent.clone(),
            poller_id: h.poller_id,
            poller: h.poller.clone(),
            state,
            state_class: state.replace(' ', ""),
            errors: h.consecutive_errors,
            until,
            reason: h.reason.clone().unwrap_or_default(),
            plugin_version: h.plugin_version.clone().unwrap_or_default(),
            config_error: h.config_error.clone().unwrap_or_default(),
            not_ready: h.not_ready.clone(),
            reported: fmt::ago(h.updated_at, now),
        }
    }

    /// A poller assigned to the agent that no heartbeat mentioned yet.
    fn unreported(agent: &AgentView, poller_id: i64, poller: String) -> Self {
        Self {
            agent_id: agent.id,
            agent: agent.name.clone(),
            poller_id,
            poller,
            state: "No report yet",
            state_class: "Noreportyet".into(),
            errors: 0,
            until: String::new(),
            reason: String::new(),
            plugin_version: String::new(),
            config_error: String::new(),
            not_ready: Vec::new(),
            reported: "never".into(),
        }
    }

    pub fn needs_attention(&self) -> bool {
        matches!(self.state, "Failing" | "Disabled by agent")
    }
}

/// Each (agent, poller) state of poller `poller_id` (every poller when
/// `None`), for the poller's page (`_poller_health.html` shows them).
pub async fn poller_health_rows(
    db: &Db,
    poller_id: Option<i64>,
) -> Result<Vec<HealthRow>, sqlx::Error> {
    let now = crate::now_ms();
    Ok(api::poller_health(db, None, poller_id)
        .await?
        .iter()
        .map(|h| HealthRow::new(h, now))
        .collect())
}

/// Just created: the token, on this page only.
pub struct Created {
    pub name: String,
    pub token: String,
}

#[derive(Template)]
#[template(path = "agents.html")]
struct AgentsPage {
    chrome: Chrome,
    agents: Vec<AgentRow>,
    created: Option<Created>,
    name: String,
    error: Option<String>,
}

async fn agents_page(
    state: &Arc<AppState>,
    user: &PageUser,
    created: Option<Created>,
    name: String,
    error: Option<String>,
) -> Result<AgentsPage, PageError> {
    let now = crate::now_ms();
    let agents = api::list(State(state.clone()), user.0.clone())
        .await?
        .0
        .into_iter()
        .map(|a| AgentRow {
            id: a.id,
            online: a.online,
            seen: a
                .last_seen
                .map_or_else(|| "never".into(), |t| fmt::ago(t, now)),
            version: a.version.unwrap_or_default(),
            host: a.host_name.unwrap_or_default(),
            pollers: a.pollers.join(", "),
            failing: a
                .poller_states
                .iter()
                .filter(|h| HealthRow::new(h, now).needs_attention())
                .count(),
            config_error: a.config_error,
            name: a.name,
        })
        .collect();
    Ok(AgentsPage {
        chrome: user.chrome("agents"),
        agents,
        created,
        name,
        error,
    })
}

pub async fn list(State(state): State<Arc<AppState>>, user: PageUser) -> PageResult {
    html(&agents_page(&state, &user, None, String::new(), None).await?)
}

#[derive(Deserialize)]
pub struct NewAgentForm {
    csrf: String,
    name: String,
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Form(f): Form<NewAgentForm>,
) -> PageResult {
    user.0.check_csrf(&f.csrf)?;
    let name = f.name.trim().to_string();
    let input = api::NewAgent { name: name.clone() };
    match api::create(State(state.clone()), user.0.clone(), Ok(Json(input))).await {
        // Rendered, not redirected: the token must not sit in a URL or a
        // session, and this is the only time it is shown.
        Ok((_, Json(a))) => {
            let created = Created {
                name: a.name,
                token: a.token,
            };
            let page = agents_page(&state, &user, Some(created), String::new(), None).await?;
            Ok((
                StatusCode::CREATED,
                [(axum::http::header::CACHE_CONTROL, "no-store")],
                axum::response::Html(page.render()?),
            )
                .into_response())
        }
        Err(e) if e.status.is_client_error() => {
            let page = agents_page(&state, &user, None, name, Some(e.message)).await?;
            html_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(e) => Err(e.into()),
    }
}

/// A command not done yet, in words.
pub struct PendingCommand {
    pub what: String,
    pub since: String,
}

#[derive(Template)]
#[template(path = "agent.html")]
struct AgentPage {
    chrome: Chrome,
    a: AgentView,
    seen: String,
    /// The agent's journal on disk, as it last said.
    journal: String,
    /// `Some(true)`: runs the newest configuration; `None`: never said.
    current: Option<bool>,
    health: Vec<HealthRow>,
    commands: Vec<PendingCommand>,
}

/// One agent: its configuration's state, each poller's health there, and
/// the commands it has not done yet.
pub async fn detail(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Path(id): Path<i64>,
) -> PageResult {
    let now = crate::now_ms();
    let a = api::list(State(state.clone()), user.0.clone())
        .await?
        .0
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, format!("agent {id} not found")))?;
    let agent = crate::auth::Agent {
        id,
        name: a.name.clone(),
    };
    let etag = crate::api::agent::current_etag(&state, &agent).await?;
    let current = a.config_etag.as_ref().map(|e| *e == etag);
    html(&AgentPage {
        chrome: user.chrome("agents"),
        seen: a
            .last_seen
            .map_or_else(|| "never".into(), |t| fmt::ago(t, now)),
        journal: a
            .journal_bytes
            .map_or_else(|| "not reported".into(), fmt::bytes),
        current,
        health: health_of(&state.db, &a, now).await?,
        commands: pending(&state.db, id, now).await?,
        a,
    })
}

/// The agent's reported states, plus its pollers no heartbeat mentioned.
async fn health_of(db: &Db, a: &AgentView, now: i64) -> Result<Vec<HealthRow>, sqlx::Error> {
    let mut rows: Vec<HealthRow> = a
        .poller_states
        .iter()
        .map(|h| HealthRow::new(h, now))
        .collect();
    let assigned: Vec<(i64, String)> = on_db!(db, pool => {
        sqlx::query_as(
            "SELECT p.id, p.name FROM pollers p JOIN poller_agents pa ON pa.poller_id = p.id
             WHERE pa.agent_id = $1 ORDER BY p.name",
        )
        .bind(a.id)
        .fetch_all(pool)
        .await
    })?;
    for (id, name) in assigned {
        if !rows.iter().any(|h| h.poller_id == id) {
            rows.push(HealthRow::unreported(a, id, name));
        }
    }
    rows.sort_by(|x, y| x.poller.cmp(&y.poller));
    Ok(rows)
}

async fn pending(db: &Db, agent_id: i64, now: i64) -> Result<Vec<PendingCommand>, sqlx::Error> {
    let rows: Vec<(String, Option<String>, i64, Option<String>)> = on_db!(db, pool => {
        sqlx::query_as(
            "SELECT c.kind, c.transfer_id, c.created_at, p.name AS poller FROM agent_commands c
             LEFT JOIN pollers p ON p.id = c.poller_id
             WHERE c.agent_id = $1 AND c.done_at IS NULL ORDER BY c.id",
        )
        .bind(agent_id)
        .fetch_all(pool)
        .await
    })?;
    Ok(rows
        .into_iter()
        .map(|(kind, transfer_id, created_at, poller)| {
            let what = match kind.as_str() {
                "retry" => format!("retry transfer {}", transfer_id.unwrap_or_default()),
                "enable" => format!(
                    "reset the breaker of poller {}",
                    poller.unwrap_or_else(|| "(deleted)".into())
                ),
                other => other.to_string(),
            };
            PendingCommand {
                what,
                since: fmt::ago(created_at, now),
            }
        })
        .collect())
}
