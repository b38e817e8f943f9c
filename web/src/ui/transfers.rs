//! Transfers: the active ones (live), search over the log with pages and a
//! CSV export of the same search, and "retry now" for a failed transfer.

use super::session::CsrfForm;
use super::{Chrome, PageError, PageResult, PageUser, fmt, fragment, html, see_other};
use crate::AppState;
use crate::api::transfers::{COLUMNS, Search, TransferView, search_page};
use crate::db::Db;
use crate::error::ApiError;
use crate::{on_db, on_tx, rollups};
use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A transfer as a table row shows it.
pub struct TransferRow {
    pub id: i64,
    pub file_name: String,
    pub path: String,
    pub poller: String,
    pub agent: String,
    pub status: String,
    pub size: String,
    pub done: String,
    /// 0 to 100.
    pub percent: u8,
    pub rate: String,
    pub eta: String,
    pub when: String,
    pub attempts: i64,
    pub error: String,
    pub retryable: bool,
    pub retry_requested: bool,
}

impl TransferRow {
    pub fn new(v: &TransferView) -> Self {
        let size = v.size.unwrap_or(0);
        let percent = if size > 0 {
            (v.bytes_done.saturating_mul(100) / size).clamp(0, 100) as u8
        } else if v.status == "Complete" {
            100
        } else {
            0
        };
        // Average rate since the transfer started, from the agent's reports.
        let elapsed = v.started_at.map(|s| v.updated_at - s).unwrap_or(0);
        let rate = (elapsed > 0 && v.bytes_done > 0).then(|| v.bytes_done * 1000 / elapsed);
        let eta = match rate {
            Some(r) if r > 0 && size > v.bytes_done => fmt::span((size - v.bytes_done) * 1000 / r),
            _ => String::new(),
        };
        TransferRow {
            id: v.id,
            file_name: v.file_name.clone(),
            path: v.path.clone(),
            poller: v.poller.clone(),
            agent: v.agent.clone(),
            status: v.status.clone(),
            size: v.size.map(fmt::bytes).unwrap_or_default(),
            done: fmt::bytes(v.bytes_done),
            percent,
            rate: rate
                .map(|r| format!("{}/s", fmt::bytes(r)))
                .unwrap_or_default(),
            eta,
            when: fmt::time(v.ended_at.unwrap_or(v.updated_at)),
            attempts: v.attempts,
            error: v.error.clone().unwrap_or_default(),
            retryable: v.status == "Error" && v.retry_requested_at.is_none(),
            retry_requested: v.retry_requested_at.is_some() && v.status == "Error",
        }
    }
}

/// Transfers queued or under way, newest first.
pub async fn active(db: &Db) -> Result<Vec<TransferRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM transfers t WHERE t.status IN ('Queued', 'Transferring')
         ORDER BY t.updated_at DESC LIMIT 100"
    );
    let rows = on_db!(db, pool => {
        sqlx::query_as::<_, TransferView>(sqlx::AssertSqlSafe(sql.as_str()))
            .fetch_all(pool)
            .await
    })?;
    Ok(rows.iter().map(TransferRow::new).collect())
}

#[derive(Template)]
#[template(path = "_active.html")]
pub struct ActiveFragment {
    pub active: Vec<TransferRow>,
}

/// The search form as the page sends it: times from `datetime-local`.
#[derive(Deserialize, Serialize, Default, Clone)]
pub struct SearchForm {
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    poller: String,
    #[serde(default)]
    agent: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    page: Option<i64>,
}

fn some(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.trim().to_string())
}

impl SearchForm {
    fn search(&self) -> Result<Search, PageError> {
        let time = |field: &str, v: &str| -> Result<Option<i64>, PageError> {
            match some(v) {
                None => Ok(None),
                Some(t) => fmt::parse_local(&t).map(Some).ok_or_else(|| {
                    PageError::from(ApiError::bad(
                        field,
                        format!("`{t}` is not a date and time"),
                    ))
                }),
            }
        };
        Ok(Search {
            q: some(&self.q),
            status: some(&self.status),
            poller: some(&self.poller),
            agent: some(&self.agent),
            from: time("from", &self.from)?,
            to: time("to", &self.to)?,
            page: self.page,
            per_page: Some(50),
        })
    }

    /// This search's query string, on another page.
    fn query(&self, page: Option<i64>) -> String {
        serde_urlencoded::to_string(SearchForm {
            page,
            ..self.clone()
        })
        .unwrap_or_default()
    }
}

#[derive(Template)]
#[template(path = "transfers.html")]
struct TransfersPage {
    chrome: Chrome,
    form: SearchForm,
    statuses: &'static [&'static str],
    pollers: Vec<String>,
    agents: Vec<String>,
    active_html: String,
    results: Vec<TransferRow>,
    page: i64,
    prev: Option<String>,
    next: Option<String>,
    csv: String,
}

pub async fn page(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Query(form): Query<SearchForm>,
) -> PageResult {
    let search = form.search()?;
    let db = &state.db;
    let found = search_page(db, &search).await?;
    // The CSV link carries the same filters in the API's own terms.
    let csv_query = serde_urlencoded::to_string(Search {
        page: None,
        per_page: None,
        ..search
    })
    .unwrap_or_default();
    // The names the log holds, from the rollups' indexes.
    let pollers = rollups::names(db, rollups::Name::Poller).await?;
    let agents = rollups::names(db, rollups::Name::Agent).await?;
    let active_html = ActiveFragment {
        active: active(db).await?,
    }
    .render()?;
    let page = found.page;
    html(&TransfersPage {
        chrome: user.chrome("transfers"),
        statuses: &["Queued", "Transferring", "Complete", "Error", "Cancelled"],
        pollers,
        agents,
        active_html,
        results: found.items.iter().map(TransferRow::new).collect(),
        page,
        prev: (page > 1).then(|| form.query(Some(page - 1))),
        next: found.has_more.then(|| form.query(Some(page + 1))),
        csv: format!("/api/v1/transfers.csv?{csv_query}"),
        form,
    })
}

pub async fn live(State(state): State<Arc<AppState>>, _user: PageUser) -> PageResult {
    fragment(&ActiveFragment {
        active: active(&state.db).await?,
    })
}

/// Asks for another try of a failed transfer now (a `retry` command for
/// its agent); the log shows "retry requested" until the agent reports.
pub async fn retry(
    State(state): State<Arc<AppState>>,
    PageUser(user): PageUser,
    Path(id): Path<i64>,
    Form(f): Form<CsrfForm>,
) -> PageResult {
    user.check_csrf(&f.csrf)?;
    let mut tx = state.db.begin_write().await?;
    let status: Option<String> = on_tx!(&mut tx, conn => {
        sqlx::query_scalar("SELECT status FROM transfers WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await
    })?;
    match status.as_deref() {
        None => return Err(ApiError::not_found(&format!("transfer {id}")).into()),
        Some("Error") => {}
        Some(other) => {
            return Err(PageError::new(
                StatusCode::CONFLICT,
                format!("transfer {id} is {other}: only a failed transfer can be retried"),
            ));
        }
    }
    on_tx!(&mut tx, conn => {
        sqlx::query("UPDATE transfers SET retry_requested_at = $1 WHERE id = $2")
            .bind(crate::now_ms())
            .bind(id)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    // The agent hears of it in its next heartbeat's answer, not through
    // its configuration (which stays what people configured).
    crate::api::agent::retry_command(&mut tx, id).await?;
    tx.commit().await?;
    see_other(&format!("/transfers?status=Error&page=1#t{id}"))
}
