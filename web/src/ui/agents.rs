//! Agents: who is online, what they run; creating one shows its token once.

use super::{Chrome, PageError, PageResult, PageUser, fmt, html, html_status};
use crate::AppState;
use crate::api::agents as api;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Form, Json};
use serde::Deserialize;
use std::sync::Arc;

pub struct AgentRow {
    pub name: String,
    pub online: bool,
    pub seen: String,
    pub version: String,
    pub host: String,
    pub pollers: String,
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
            online: a.online,
            seen: a
                .last_seen
                .map_or_else(|| "never".into(), |t| fmt::ago(t, now)),
            version: a.version.unwrap_or_default(),
            host: a.host_name.unwrap_or_default(),
            pollers: a.pollers.join(", "),
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

use axum::response::IntoResponse;
