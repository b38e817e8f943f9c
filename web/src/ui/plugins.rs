//! Plugins: the list, uploading a version (validated in the sandbox, the
//! reason shown when refused), each version's history and schema, who uses
//! it, and moving a poller to another version.

use super::{Chrome, PageError, PageResult, PageUser, fmt, html, html_status, see_other};
use crate::AppState;
use crate::api::plugins::{self as api, VersionView};
use crate::error::ApiError;
use askama::Template;
use axum::Form;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use dispatch_runtime::params::ParamSpec;
use serde::Deserialize;
use std::sync::Arc;

pub struct PluginRow {
    pub name: String,
    pub latest: String,
    pub versions: i64,
    pub pollers: i64,
}

#[derive(Template)]
#[template(path = "plugins.html")]
struct ListPage {
    chrome: Chrome,
    plugins: Vec<PluginRow>,
    stored: Option<String>,
    error: Option<String>,
    limit: String,
}

async fn list_page(
    state: &Arc<AppState>,
    user: &PageUser,
    stored: Option<String>,
    error: Option<String>,
) -> Result<ListPage, PageError> {
    let summaries = api::list(State(state.clone()), user.0.clone()).await?.0;
    let mut plugins = Vec::new();
    for s in summaries {
        let pollers: i64 = crate::on_db!(&state.db, pool => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM pollers p JOIN plugins pl ON pl.id = p.plugin_id WHERE pl.name = $1",
            )
            .bind(&s.name)
            .fetch_one(pool)
            .await
        })?;
        plugins.push(PluginRow {
            latest: s.latest_version.unwrap_or_default(),
            versions: s.versions,
            pollers,
            name: s.name,
        });
    }
    Ok(ListPage {
        chrome: user.chrome("plugins"),
        plugins,
        stored,
        error,
        limit: fmt::bytes(state.upload_limit as i64),
    })
}

pub async fn list(State(state): State<Arc<AppState>>, user: PageUser) -> PageResult {
    html(&list_page(&state, &user, None, None).await?)
}

/// The upload form: `csrf` then `file`. A refused upload comes back as the
/// list page with the reason beside the file field (422).
pub async fn upload(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    mut form: Multipart,
) -> PageResult {
    let mut csrf = String::new();
    let mut bytes: Option<Vec<u8>> = None;
    let mut too_big = false;
    let bad = |e: axum::extract::multipart::MultipartError| {
        PageError::new(e.status(), format!("bad upload: {}", e.body_text()))
    };
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        match field.name() {
            Some("csrf") => csrf = field.text().await.map_err(bad)?,
            Some("file") => {
                let mut data = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    if data.len() + chunk.len() > state.upload_limit {
                        too_big = true;
                        data.clear();
                    } else if !too_big {
                        data.extend_from_slice(&chunk);
                    }
                }
                bytes = Some(data);
            }
            _ => {}
        }
    }
    user.0.check_csrf(&csrf)?;
    let result = match bytes {
        _ if too_big => Err(ApiError::bad(
            "file",
            format!(
                "the file is over the upload limit of {}",
                fmt::bytes(state.upload_limit as i64)
            ),
        )),
        None => Err(ApiError::bad("file", "choose a .wasm file to upload")),
        Some(b) if b.is_empty() => Err(ApiError::bad(
            "file",
            "choose a .wasm file to upload (the file sent is empty)",
        )),
        Some(b) => crate::registry::store(&state, b, &user.0.username).await,
    };
    match result {
        Ok(s) => {
            let what = if s.created {
                format!("Stored {} {} (sha256 {}).", s.plugin, s.version, s.sha256)
            } else {
                format!(
                    "{} {} was already stored with these exact bytes.",
                    s.plugin, s.version
                )
            };
            html(&list_page(&state, &user, Some(what), None).await?)
        }
        Err(e) if e.status.is_client_error() => {
            let page = list_page(&state, &user, None, Some(e.message)).await?;
            html_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(e) => Err(e.into()),
    }
}

pub struct VersionRow {
    pub version: String,
    pub sha256: String,
    pub size: String,
    pub wit_version: String,
    pub description: String,
    pub params: Vec<ParamSpec>,
    pub uploaded_at: String,
    pub uploaded_by: String,
    pub used_by: String,
    pub latest: bool,
}

#[derive(Template)]
#[template(path = "plugin.html")]
struct DetailPage {
    chrome: Chrome,
    name: String,
    versions: Vec<VersionRow>,
    pollers: Vec<String>,
    notice: Option<String>,
    error: Option<String>,
}

fn version_row(v: VersionView, latest: bool) -> VersionRow {
    VersionRow {
        params: serde_json::from_value(v.params).unwrap_or_default(),
        size: fmt::bytes(v.size),
        uploaded_at: fmt::time(v.uploaded_at),
        used_by: v.used_by.join(", "),
        version: v.version,
        sha256: v.sha256,
        wit_version: v.wit_version,
        description: v.description,
        uploaded_by: v.uploaded_by,
        latest,
    }
}

async fn detail_page(
    state: &Arc<AppState>,
    user: &PageUser,
    name: String,
    notice: Option<String>,
    error: Option<String>,
) -> Result<DetailPage, PageError> {
    let view = api::show(State(state.clone()), user.0.clone(), Path(name.clone()))
        .await?
        .0;
    let pollers = crate::on_db!(&state.db, pool => {
        sqlx::query_scalar(
            "SELECT p.name FROM pollers p JOIN plugins pl ON pl.id = p.plugin_id WHERE pl.name = $1 ORDER BY p.name",
        )
        .bind(&name)
        .fetch_all(pool)
        .await
    })?;
    Ok(DetailPage {
        chrome: user.chrome("plugins"),
        versions: view
            .versions
            .into_iter()
            .enumerate()
            .map(|(i, v)| version_row(v, i == 0))
            .collect(),
        name,
        pollers,
        notice,
        error,
    })
}

#[derive(Deserialize)]
pub struct Notice {
    moved: Option<String>,
}

pub async fn detail(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Path(name): Path<String>,
    Query(n): Query<Notice>,
) -> PageResult {
    let notice = n.moved.map(|p| format!("{p} moved."));
    html(&detail_page(&state, &user, name, notice, None).await?)
}

#[derive(Deserialize)]
pub struct MoveForm {
    csrf: String,
    poller: String,
    version: String,
}

pub async fn move_poller(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Path(name): Path<String>,
    Form(f): Form<MoveForm>,
) -> PageResult {
    user.0.check_csrf(&f.csrf)?;
    match crate::api::pollers::move_to_version(&state, &f.poller, &name, &f.version).await {
        Ok(()) => {
            let q = serde_urlencoded::to_string([("moved", &f.poller)]).unwrap_or_default();
            see_other(&format!("/plugins/{name}?{q}"))
        }
        Err(e) if e.status.is_client_error() => {
            let page = detail_page(&state, &user, name, None, Some(e.message)).await?;
            html_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(e) => Err(e.into()),
    }
}
