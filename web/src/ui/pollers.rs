//! Pollers: list, detail, the new and edit forms (the plugin's fields drawn
//! from its describe() schema, errors beside their field), enable, disable
//! and delete. Every change goes through the API's own handlers, so the
//! rules are the same for pages and scripts.

use super::session::CsrfForm;
use super::transfers::TransferRow;
use super::{Chrome, PageError, PageResult, PageUser, fmt, html, html_status, see_other};
use crate::AppState;
use crate::api::pollers::{self as api, PollerInput, PollerView};
use crate::api::transfers::{COLUMNS, TransferView};
use crate::auth::User;
use crate::db::Db;
use crate::error::ApiError;
use crate::on_db;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Form, Json};
use dispatch_runtime::params::{ParamSpec, ParamType};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct PollerRow {
    pub id: i64,
    pub name: String,
    pub state: &'static str,
    /// The state as a CSS class (no spaces).
    pub state_class: String,
    pub reason: String,
    pub plugin: String,
    pub version: String,
    pub agents: String,
    pub last_transfer: String,
}

fn state_of(v: &PollerView) -> &'static str {
    if !v.enabled {
        "Disabled"
    } else if v.disabled_by_agent.is_some() {
        "Disabled by agent"
    } else if v.consecutive_errors > 0 {
        "Failing"
    } else {
        "Enabled"
    }
}

/// Every poller, via the API's handler.
async fn all(state: &Arc<AppState>, user: &User) -> Result<Vec<PollerView>, PageError> {
    Ok(api::list(State(state.clone()), user.clone()).await?.0)
}

#[derive(Template)]
#[template(path = "pollers.html")]
struct ListPage {
    chrome: Chrome,
    pollers: Vec<PollerRow>,
}

pub async fn list(State(state): State<Arc<AppState>>, user: PageUser) -> PageResult {
    let now = crate::now_ms();
    let mut rows = Vec::new();
    for v in all(&state, &user.0).await? {
        let last: Option<i64> = on_db!(&state.db, pool => {
            sqlx::query_scalar("SELECT MAX(updated_at) FROM transfers WHERE poller = $1")
                .bind(&v.name)
                .fetch_one(pool)
                .await
        })?;
        rows.push(PollerRow {
            id: v.id,
            state: state_of(&v),
            state_class: state_of(&v).replace(' ', ""),
            reason: v.disabled_reason.clone().unwrap_or_default(),
            plugin: v.plugin.clone(),
            version: match &v.resolved_version {
                Some(r) if v.plugin_version == "latest" => format!("latest ({r})"),
                _ => v.plugin_version.clone(),
            },
            agents: v.agents.join(", "),
            last_transfer: last.map_or_else(|| "never".into(), |t| fmt::ago(t, now)),
            name: v.name,
        });
    }
    html(&ListPage {
        chrome: user.chrome("pollers"),
        pollers: rows,
    })
}

#[derive(Template)]
#[template(path = "poller.html")]
struct DetailPage {
    chrome: Chrome,
    p: PollerView,
    state: &'static str,
    params: Vec<(String, String)>,
    transfers: Vec<TransferRow>,
    /// How it does on each of its agents.
    health: Vec<super::agents::HealthRow>,
    error: Option<String>,
    notice: Option<String>,
}

#[derive(Deserialize)]
pub struct Notice {
    done: Option<String>,
}

async fn detail_page(
    state: &Arc<AppState>,
    user: &PageUser,
    id: i64,
    error: Option<String>,
    notice: Option<String>,
) -> Result<DetailPage, PageError> {
    let p = api::view(&state.db, id).await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM transfers t WHERE t.poller = $1 ORDER BY t.updated_at DESC, t.id DESC LIMIT 10"
    );
    let transfers = on_db!(&state.db, pool => {
        sqlx::query_as::<_, TransferView>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(&p.name)
            .fetch_all(pool)
            .await
    })?
    .iter()
    .map(TransferRow::new)
    .collect();
    let health = super::agents::poller_health_rows(&state.db, Some(id)).await?;
    Ok(DetailPage {
        chrome: user.chrome("pollers"),
        state: state_of(&p),
        params: p
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        p,
        transfers,
        health,
        error,
        notice,
    })
}

pub async fn detail(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Path(id): Path<i64>,
    Query(n): Query<Notice>,
) -> PageResult {
    let notice = match n.done.as_deref() {
        Some("created") => Some("Poller created."),
        Some("saved") => Some("Changes saved."),
        Some("enabled") => Some("Poller enabled."),
        Some("disabled") => Some("Poller disabled."),
        _ => None,
    };
    html(&detail_page(&state, &user, id, None, notice.map(str::to_string)).await?)
}

#[derive(Deserialize)]
pub struct DisableForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

pub async fn enable(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Path(id): Path<i64>,
    Form(f): Form<CsrfForm>,
) -> PageResult {
    user.0.check_csrf(&f.csrf)?;
    let _view = api::enable(State(state), user.0, Path(id)).await?;
    see_other(&format!("/pollers/{id}?done=enabled"))
}

pub async fn disable(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Path(id): Path<i64>,
    Form(f): Form<DisableForm>,
) -> PageResult {
    user.0.check_csrf(&f.csrf)?;
    let reason = (!f.reason.trim().is_empty()).then(|| f.reason.trim().to_string());
    let _view = api::disable(
        State(state),
        user.0,
        Path(id),
        Some(Json(api::DisableInput { reason })),
    )
    .await?;
    see_other(&format!("/pollers/{id}?done=disabled"))
}

/// Deleting an enabled poller is refused (as in the original): the detail
/// page comes back with the reason.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Path(id): Path<i64>,
    Form(f): Form<CsrfForm>,
) -> PageResult {
    user.0.check_csrf(&f.csrf)?;
    match api::delete(State(state.clone()), user.0.clone(), Path(id)).await {
        Ok(_) => see_other("/pollers"),
        Err(e) if e.status == StatusCode::CONFLICT => {
            let page = detail_page(
                &state,
                &user,
                id,
                Some(format!("Cannot delete: {}.", e.message)),
                None,
            )
            .await?;
            html_status(StatusCode::CONFLICT, &page)
        }
        Err(e) => Err(e.into()),
    }
}

/// One plugin parameter as the form draws it.
pub struct ParamField {
    pub name: String,
    pub kind: &'static str,
    pub help: String,
    pub value: String,
    pub checked: bool,
}

/// The form's values (as typed, to show them back with the errors).
#[derive(Default)]
struct Values {
    name: String,
    path: String,
    plugin: String,
    plugin_version: String,
    target: String,
    excludes: String,
    max_transfers: String,
    stability_secs: String,
    agents: Vec<String>,
    enabled: bool,
    params: BTreeMap<String, String>,
}

impl Values {
    fn from_view(v: &PollerView) -> Self {
        Values {
            name: v.name.clone(),
            path: v.path.clone(),
            plugin: v.plugin.clone(),
            plugin_version: v.plugin_version.clone(),
            target: v.target.clone().unwrap_or_default(),
            excludes: v.excludes.clone(),
            max_transfers: v.max_transfers.to_string(),
            stability_secs: v.stability_secs.to_string(),
            agents: v.agents.clone(),
            enabled: v.enabled,
            params: v.params.clone(),
        }
    }

    fn defaults(plugin: String) -> Self {
        Values {
            plugin,
            plugin_version: "latest".into(),
            max_transfers: "3".into(),
            stability_secs: "10".into(),
            ..Values::default()
        }
    }

    fn from_form(pairs: &[(String, String)]) -> Self {
        let mut v = Values::default();
        for (k, val) in pairs {
            let val = val.clone();
            match k.as_str() {
                "name" => v.name = val.trim().into(),
                "path" => v.path = val,
                "plugin" => v.plugin = val,
                "plugin_version" => v.plugin_version = val,
                "target" => v.target = val,
                "excludes" => v.excludes = val,
                "max_transfers" => v.max_transfers = val,
                "stability_secs" => v.stability_secs = val,
                "agents" => v.agents.push(val),
                "enabled" => v.enabled = true,
                other => {
                    if let Some(p) = other.strip_prefix("param.") {
                        v.params.insert(p.to_string(), val);
                    }
                }
            }
        }
        v
    }

    /// The API input: numbers parsed (a bad one names its field).
    fn input(&self, schema: &[ParamSpec]) -> Result<PollerInput, ApiError> {
        fn num<T: std::str::FromStr>(field: &str, s: &str) -> Result<T, ApiError> {
            s.trim()
                .parse()
                .map_err(|_| ApiError::bad(field, format!("`{s}` is not a number")))
        }
        let mut params = self.params.clone();
        // An unticked checkbox sends nothing: it means false.
        for s in schema {
            if s.kind == ParamType::Boolean {
                params
                    .entry(s.name.clone())
                    .and_modify(|v| *v = "true".into())
                    .or_insert_with(|| "false".into());
            }
        }
        Ok(PollerInput {
            name: self.name.clone(),
            path: self.path.clone(),
            plugin: self.plugin.clone(),
            plugin_version: Some(self.plugin_version.clone()),
            params,
            target: Some(self.target.clone()),
            target_id: None,
            excludes: self.excludes.clone(),
            max_transfers: num("max_transfers", &self.max_transfers)?,
            stability_secs: num("stability_secs", &self.stability_secs)?,
            agents: self.agents.clone(),
            enabled: self.enabled,
        })
    }
}

#[derive(Template)]
#[template(path = "poller_form.html")]
struct FormPage {
    chrome: Chrome,
    /// None: a new poller.
    id: Option<i64>,
    v: Values,
    plugins: Vec<String>,
    versions: Vec<String>,
    params: Vec<ParamField>,
    all_agents: Vec<String>,
    /// Every target: (name, summary).
    targets: Vec<(String, String)>,
    error: Option<(String, String)>,
}

impl FormPage {
    /// The error to show beside `field`, if it is the one at fault.
    fn err(&self, field: &str) -> &str {
        match &self.error {
            // `excludes[2]`: the one text field holds every pattern.
            Some((f, m))
                if f == field || f.strip_prefix(field).is_some_and(|r| r.starts_with('[')) =>
            {
                m
            }
            _ => "",
        }
    }

    fn param_err(&self, name: &str) -> &str {
        match &self.error {
            Some((f, m)) if f.strip_prefix("params.") == Some(name) => m,
            _ => "",
        }
    }

    fn other_error(&self) -> &str {
        const FIELDS: &[&str] = &[
            "name",
            "path",
            "plugin",
            "plugin_version",
            "target",
            "excludes",
            "max_transfers",
            "stability_secs",
            "agents",
        ];
        match &self.error {
            Some((f, m))
                if !FIELDS.contains(&f.as_str())
                    && !f.starts_with("params.")
                    && !f.starts_with("excludes[") =>
            {
                m
            }
            _ => "",
        }
    }
}

/// A plugin version's schema: the pinned one, else the latest.
async fn schema_of(
    db: &Db,
    plugin: &str,
    version: &str,
) -> Result<(Vec<String>, Vec<ParamSpec>), PageError> {
    let mut all: Vec<(String, String)> = on_db!(db, pool => {
        sqlx::query_as(
            "SELECT v.version, v.params_json FROM plugin_versions v JOIN plugins p ON p.id = v.plugin_id WHERE p.name = $1",
        )
        .bind(plugin)
        .fetch_all(pool)
        .await
    })?;
    all.sort_by_key(|(v, _)| std::cmp::Reverse(crate::api::plugins::semver_key(v)));
    let chosen = all
        .iter()
        .find(|(v, _)| v == version)
        .or_else(|| all.first())
        .map(|(_, json)| serde_json::from_str(json).unwrap_or_default())
        .unwrap_or_default();
    Ok((all.into_iter().map(|(v, _)| v).collect(), chosen))
}

async fn form_page(
    state: &AppState,
    user: &PageUser,
    id: Option<i64>,
    v: Values,
    error: Option<(String, String)>,
) -> Result<FormPage, PageError> {
    let db = &state.db;
    let plugins: Vec<String> = on_db!(db, pool => {
        sqlx::query_scalar("SELECT name FROM plugins ORDER BY name")
            .fetch_all(pool)
            .await
    })?;
    let (versions, schema) = schema_of(db, &v.plugin, &v.plugin_version).await?;
    let params = schema
        .iter()
        .map(|s| {
            let value = v
                .params
                .get(&s.name)
                .cloned()
                .or_else(|| s.default.clone())
                .unwrap_or_default();
            ParamField {
                name: s.name.clone(),
                kind: s.kind.as_str(),
                help: s.help.clone(),
                checked: value == "true",
                value,
            }
        })
        .collect();
    let all_agents = on_db!(db, pool => {
        sqlx::query_scalar("SELECT name FROM agents ORDER BY name")
            .fetch_all(pool)
            .await
    })?;
    Ok(FormPage {
        chrome: user.chrome("pollers"),
        id,
        plugins,
        versions,
        params,
        all_agents,
        targets: target_choices(db).await?,
        error,
        v,
    })
}

/// Every target as the select shows it: (name, summary).
async fn target_choices(db: &Db) -> Result<Vec<(String, String)>, PageError> {
    let rows: Vec<(String, String)> = on_db!(db, pool => {
        sqlx::query_as("SELECT name, settings_json FROM targets ORDER BY name")
            .fetch_all(pool)
            .await
    })?;
    Ok(rows
        .into_iter()
        .map(|(name, json)| {
            let summary = crate::target_store::parse_public(&json)
                .map_or_else(|e| e.to_string(), |t| t.summary());
            (name, summary)
        })
        .collect())
}

#[derive(Deserialize)]
pub struct NewQuery {
    plugin: Option<String>,
}

pub async fn new_form(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Query(q): Query<NewQuery>,
) -> PageResult {
    let plugin = match q.plugin {
        Some(p) => p,
        None => on_db!(&state.db, pool => {
            sqlx::query_scalar("SELECT name FROM plugins ORDER BY name LIMIT 1")
                .fetch_optional(pool)
                .await
        })?
        .unwrap_or_default(),
    };
    html(&form_page(&state, &user, None, Values::defaults(plugin), None).await?)
}

pub async fn edit_form(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Path(id): Path<i64>,
) -> PageResult {
    let stored = api::view(&state.db, id).await?;
    let v = Values::from_view(&stored);
    html(&form_page(&state, &user, Some(id), v, None).await?)
}

/// The form posted: `reload` only redraws it for another plugin or
/// version; otherwise the API handler checks and saves it.
async fn submit(
    state: Arc<AppState>,
    user: PageUser,
    id: Option<i64>,
    pairs: Vec<(String, String)>,
) -> PageResult {
    let csrf = pairs
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    user.0.check_csrf(csrf)?;
    let v = Values::from_form(&pairs);
    if pairs.iter().any(|(k, _)| k == "reload") {
        return html(&form_page(&state, &user, id, v, None).await?);
    }
    let (_, schema) = schema_of(&state.db, &v.plugin, &v.plugin_version).await?;
    let result = match v.input(&schema) {
        Err(e) => Err(e),
        Ok(input) => match id {
            None => api::create(State(state.clone()), user.0.clone(), Ok(Json(input)))
                .await
                .map(|(_, Json(p))| p.id),
            Some(id) => api::update(
                State(state.clone()),
                user.0.clone(),
                Path(id),
                Ok(Json(input)),
            )
            .await
            .map(|Json(p)| p.id),
        },
    };
    match result {
        Ok(saved) => see_other(&format!(
            "/pollers/{saved}?done={}",
            if id.is_some() { "saved" } else { "created" }
        )),
        Err(e) if e.status.is_client_error() && e.status != StatusCode::FORBIDDEN => {
            let field = e.field.clone().unwrap_or_default();
            let page = form_page(&state, &user, id, v, Some((field, e.message))).await?;
            html_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Form(pairs): Form<Vec<(String, String)>>,
) -> PageResult {
    submit(state, user, None, pairs).await
}

pub async fn update(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Path(id): Path<i64>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> PageResult {
    submit(state, user, Some(id), pairs).await
}
