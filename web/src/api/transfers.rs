//! The central transfer log: search (newest first, paginated), CSV export,
//! statistics.

use crate::AppState;
use crate::auth::User;
use crate::db::{Db, Sql};
use crate::error::{ApiError, ApiResult};
use crate::on_db;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const STATUSES: &[&str] = &["Queued", "Transferring", "Complete", "Error", "Cancelled"];

#[derive(Deserialize, Serialize, utoipa::IntoParams, Default)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Search {
    /// A substring of the file name.
    pub q: Option<String>,
    /// Queued, Transferring, Complete, Error or Cancelled.
    #[param(pattern = "^(Queued|Transferring|Complete|Error|Cancelled)$")]
    pub status: Option<String>,
    pub poller: Option<String>,
    pub agent: Option<String>,
    /// From this time (ms since the epoch, inclusive).
    pub from: Option<i64>,
    /// Until this time (ms since the epoch, exclusive).
    pub to: Option<i64>,
    /// 1-based.
    #[param(minimum = 1)]
    pub page: Option<i64>,
    /// 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub per_page: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct TransferView {
    pub id: i64,
    pub agent: String,
    pub poller: String,
    pub path: String,
    pub file_name: String,
    pub size: Option<i64>,
    pub bytes_done: i64,
    pub status: String,
    pub attempts: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub updated_at: i64,
    pub error: Option<String>,
    pub host: Option<String>,
    /// A person asked for another try now (a `retry` command for its agent).
    pub retry_requested_at: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Page {
    pub items: Vec<TransferView>,
    pub page: i64,
    pub per_page: i64,
    /// Another page follows.
    pub has_more: bool,
}

/// The columns of a [`TransferView`].
pub const COLUMNS: &str = "t.id, t.agent, t.poller, t.path, t.file_name, t.size, t.bytes_done, \
    t.status, t.attempts, t.started_at, t.ended_at, t.updated_at, t.error, t.host, \
    t.retry_requested_at";

/// How the file-name substring is matched.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Text {
    /// By the backend's trigram index (SQLite's FTS5 for 3+ characters, a
    /// scan for fewer; on PostgreSQL `ILIKE`, answered with the other
    /// filters by one GIN index).
    Index,
    /// Not at all (the other filters only).
    Ignore,
}

fn push_filters(sql: &mut Sql, db: &Db, s: &Search, text: Text) -> ApiResult<()> {
    sql.push(" WHERE 1 = 1");
    if let Some(q) =
        s.q.as_deref()
            .filter(|q| !q.is_empty() && text != Text::Ignore)
    {
        match db {
            Db::Sqlite(_) if q.chars().count() >= 3 => {
                // The trigram index answers substrings of 3+ characters.
                sql.push(
                    " AND t.id IN (SELECT rowid FROM transfers_fts WHERE transfers_fts MATCH ",
                )
                .bind(fts_phrase(q))
                .push(")");
            }
            Db::Sqlite(_) => {
                sql.push(" AND t.file_name LIKE ")
                    .bind(like_pattern(q))
                    .push(" ESCAPE '\\'");
            }
            Db::Postgres(_) => {
                sql.push(" AND t.file_name ILIKE ")
                    .bind(like_pattern(q))
                    .push(" ESCAPE '\\'");
            }
        }
    }
    if let Some(st) = &s.status {
        if !STATUSES.contains(&st.as_str()) {
            return Err(ApiError::bad(
                "status",
                format!("`{st}` is not one of {}", STATUSES.join(", ")),
            ));
        }
        sql.push(" AND t.status = ").bind(st.as_str());
    }
    if let Some(p) = &s.poller {
        sql.push(" AND t.poller = ").bind(p.as_str());
    }
    if let Some(a) = &s.agent {
        sql.push(" AND t.agent = ").bind(a.as_str());
    }
    if let Some(f) = s.from {
        sql.push(" AND t.updated_at >= ").bind(f);
    }
    if let Some(t) = s.to {
        sql.push(" AND t.updated_at < ").bind(t);
    }
    Ok(())
}

/// The page and page size asked for (1 and 50 by default), checked: the
/// CSV export refuses what the search refuses, as the document says.
fn paging(s: &Search) -> ApiResult<(i64, i64)> {
    let per_page = s.per_page.unwrap_or(50);
    if !(1..=500).contains(&per_page) {
        return Err(ApiError::bad("per_page", "must be 1 to 500"));
    }
    let page = s.page.unwrap_or(1);
    if page < 1 {
        return Err(ApiError::bad("page", "must be 1 or more"));
    }
    Ok((page, per_page))
}

/// Search the log, newest first.
pub async fn search_page(db: &Db, s: &Search) -> ApiResult<Page> {
    let (page, per_page) = paging(s)?;
    // A page far past the end is empty, not an overflow.
    let offset = (page - 1).saturating_mul(per_page);
    let mut rows = match newest_first(db, s, per_page, offset).await? {
        Some(rows) => rows,
        None => {
            let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM transfers t"));
            push_filters(&mut sql, db, s, Text::Index)?;
            sql.push(" ORDER BY t.updated_at DESC, t.id DESC LIMIT ")
                .bind(per_page + 1)
                .push(" OFFSET ")
                .bind(offset);
            sql.fetch_all(db).await?
        }
    };
    let has_more = rows.len() as i64 > per_page;
    rows.truncate(usize::try_from(per_page).unwrap_or(0));
    Ok(Page {
        items: rows,
        page,
        per_page,
        has_more,
    })
}

/// A substring with at least this many matches in the trigram index is
/// "common", and the newest rows the other filters keep (at most this many)
/// are read in order instead.
const WALK: i64 = 20_000;

/// A substring found in many names (`.mxf`, a show's name) makes the
/// trigram index hand over every match, to be sorted: seconds on a large
/// log. Such a page is answered by reading the newest rows the other
/// filters keep, in time order, until it is full; reading stops at the
/// `WALK`-th newest row, and a page not full by then is left to the index
/// (`None`), as is a substring with fewer matches (counting them stops at
/// `WALK`: a few ms). Exact either way: every row past the walked ones is
/// older than all of them. SQLite only: PostgreSQL's planner walks the
/// time index itself when its statistics say a substring is common.
async fn newest_first(
    db: &Db,
    s: &Search,
    per_page: i64,
    offset: i64,
) -> ApiResult<Option<Vec<TransferView>>> {
    let Db::Sqlite(pool) = db else {
        return Ok(None);
    };
    // `LIKE` folds ASCII case only, as the index does for ASCII text.
    let Some(q) =
        s.q.as_deref()
            .filter(|q| q.chars().count() >= 3 && q.is_ascii())
    else {
        return Ok(None);
    };
    if offset.saturating_add(per_page) >= WALK {
        return Ok(None);
    }
    let matches: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT rowid FROM transfers_fts WHERE transfers_fts MATCH $1 LIMIT $2) AS m",
    )
    .bind(fts_phrase(q))
    .bind(WALK)
    .fetch_one(pool)
    .await?;
    if matches < WALK {
        return Ok(None);
    }
    // The inner query yields the newest rows in order and the outer one
    // takes them as they come (a co-routine: no sort, it stops once the
    // page is full). The search test compares this with a full scan.
    let mut sql = Sql::new(&format!("SELECT * FROM (SELECT {COLUMNS} FROM transfers t"));
    push_filters(&mut sql, db, s, Text::Ignore)?;
    sql.push(" ORDER BY t.updated_at DESC, t.id DESC LIMIT ")
        .bind(WALK)
        .push(") AS t WHERE t.file_name LIKE ")
        .bind(like_pattern(q))
        .push(" ESCAPE '\\' LIMIT ")
        .bind(per_page + 1)
        .push(" OFFSET ")
        .bind(offset);
    let rows = sql.fetch_all(db).await?;
    Ok((rows.len() as i64 > per_page).then_some(rows))
}

fn fts_phrase(q: &str) -> String {
    format!("\"{}\"", q.replace('"', "\"\""))
}

fn like_pattern(q: &str) -> String {
    let escaped = q
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Search the transfer log (file-name substring, status, poller, agent, time range).
#[utoipa::path(get, path = "/api/v1/transfers", tag = "transfers", operation_id = "search_transfers", params(Search),
    responses((status = 200, body = Page), (status = 422, body = crate::error::ErrorBody)), security(("session" = [])))]
pub async fn search(
    State(state): State<Arc<AppState>>,
    _user: User,
    q: Result<Query<Search>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Page>> {
    let Query(s) =
        q.map_err(|e| ApiError::new(axum::http::StatusCode::BAD_REQUEST, e.body_text()))?;
    Ok(Json(search_page(&state.db, &s).await?))
}

/// The same search as CSV (every match, up to 100,000 rows).
#[utoipa::path(get, path = "/api/v1/transfers.csv", tag = "transfers", operation_id = "export_transfers_csv", params(Search),
    responses((status = 200, content_type = "text/csv", body = String), (status = 422, body = crate::error::ErrorBody)), security(("session" = [])))]
pub async fn csv(
    State(state): State<Arc<AppState>>,
    _user: User,
    q: Result<Query<Search>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(s) =
        q.map_err(|e| ApiError::new(axum::http::StatusCode::BAD_REQUEST, e.body_text()))?;
    paging(&s)?;
    let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM transfers t"));
    push_filters(&mut sql, &state.db, &s, Text::Index)?;
    sql.push(" ORDER BY t.updated_at DESC, t.id DESC LIMIT 100000");
    let rows: Vec<TransferView> = sql.fetch_all(&state.db).await?;
    let mut out = String::from(
        "id,agent,poller,path,status,size,bytes_done,attempts,started_at,ended_at,error,host\n",
    );
    for r in rows {
        let fields = [
            r.id.to_string(),
            r.agent,
            r.poller,
            r.path,
            r.status,
            r.size.map(|v| v.to_string()).unwrap_or_default(),
            r.bytes_done.to_string(),
            r.attempts.to_string(),
            r.started_at.map(|v| v.to_string()).unwrap_or_default(),
            r.ended_at.map(|v| v.to_string()).unwrap_or_default(),
            r.error.unwrap_or_default(),
            r.host.unwrap_or_default(),
        ];
        out.push_str(
            &fields
                .iter()
                .map(|f| csv_field(f))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push('\n');
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"transfers.csv\"",
            ),
        ],
        out,
    )
        .into_response())
}

/// Quotes a field when it holds a comma, quote or newline; neutralizes
/// spreadsheet formulas.
fn csv_field(f: &str) -> String {
    let f = if f.starts_with(['=', '+', '-', '@']) {
        format!("'{f}")
    } else {
        f.to_string()
    };
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PollerStats {
    pub poller: String,
    pub transfers: i64,
    pub complete: i64,
    pub errors: i64,
    pub bytes_sent: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub transfers: i64,
    pub complete: i64,
    pub errors: i64,
    pub bytes_sent: i64,
    pub pollers_enabled: i64,
    pub pollers_disabled: i64,
    pub per_poller: Vec<PollerStats>,
}

/// Totals, bytes sent, successes and errors, overall and per poller, of
/// the transfers last changed in the range (from the hourly rollups).
#[utoipa::path(get, path = "/api/v1/stats", tag = "transfers", operation_id = "transfer_stats", params(Range), responses((status = 200, body = Stats)), security(("session" = [])))]
pub async fn stats(
    State(state): State<Arc<AppState>>,
    _user: User,
    Query(r): Query<Range>,
) -> ApiResult<Json<Stats>> {
    let span = crate::rollups::Span {
        from: r.from,
        to: r.to,
    };
    let per_poller: Vec<PollerStats> = crate::rollups::per_poller(&state.db, span)
        .await?
        .into_iter()
        .map(|(poller, s)| PollerStats {
            poller,
            transfers: s.transfers,
            complete: s.complete,
            errors: s.errors,
            bytes_sent: s.bytes,
        })
        .collect();
    let (enabled, all): (i64, i64) = on_db!(&state.db, pool => {
        sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(CASE WHEN enabled THEN 1 ELSE 0 END), 0) AS BIGINT), COUNT(*) FROM pollers",
        )
        .fetch_one(pool)
        .await
    })?;
    Ok(Json(Stats {
        transfers: per_poller.iter().map(|p| p.transfers).sum(),
        complete: per_poller.iter().map(|p| p.complete).sum(),
        errors: per_poller.iter().map(|p| p.errors).sum(),
        bytes_sent: per_poller.iter().map(|p| p.bytes_sent).sum(),
        pollers_enabled: enabled,
        pollers_disabled: all - enabled,
        per_poller,
    }))
}
