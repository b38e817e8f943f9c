//! The JSON API under `/api/v1`, its OpenAPI document at
//! `/api/openapi.json`, and `/metrics`.

pub mod agent;
pub mod agents;
pub mod plugins;
pub mod pollers;
pub mod session;
pub mod settings;
pub mod targets;
pub mod transfers;
pub mod users;
pub mod wit;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::on_db;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use std::sync::Arc;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Dispatch", description = "Dispatch control plane: pollers, plugins, agents, transfer log."),
    paths(
        session::login, session::logout, session::me, session::health,
        users::change_password, users::logout_everywhere, users::list, users::create, users::update, users::delete,
        plugins::upload, plugins::list, plugin_or_module, plugins::delete_version, wit::show,
        agents::create, agents::list, agents::delete, settings::show, settings::update,
        targets::create, targets::list, targets::show, targets::update, targets::delete,
        pollers::create, pollers::list, pollers::show, pollers::update, pollers::enable, pollers::disable, pollers::delete,
        transfers::search, transfers::csv, transfers::stats,
        agent::config, agent::events, agent::heartbeat,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Security, &CommonErrors),
    tags(
        (name = "session", description = "Log in (session cookie + X-CSRF-Token on changes)"),
        (name = "plugins", description = "Poller modules and their versions"),
        (name = "pollers", description = "Pollers"),
        (name = "targets", description = "Targets: where pollers send"),
        (name = "agents", description = "Agents"),
        (name = "users", description = "People and their roles (admins only)"),
        (name = "transfers", description = "The transfer log and statistics"),
        (name = "agent", description = "Called by agents with their bearer token"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "agent_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::auth::SESSION_COOKIE,
            ))),
        );
    }
}

/// The errors every operation of a kind can answer, documented in one
/// place rather than at each handler: the extractors answer them before
/// the handler runs (`error::json_errors` makes each the error object).
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{HttpMethod, ParameterIn};
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, op) in [
                (HttpMethod::Get, item.get.as_mut()),
                (HttpMethod::Put, item.put.as_mut()),
                (HttpMethod::Post, item.post.as_mut()),
                (HttpMethod::Delete, item.delete.as_mut()),
            ] {
                let Some(op) = op else { continue };
                let schemes = serde_json::to_string(&op.security).unwrap_or_default();
                let params = op.parameters.as_deref().unwrap_or_default();
                let integer_in_path = params.iter().any(|p| {
                    p.parameter_in == ParameterIn::Path
                        && serde_json::to_string(&p.schema).is_ok_and(|s| s.contains("integer"))
                });
                let query = params.iter().any(|p| p.parameter_in == ParameterIn::Query);
                let body = op.request_body.is_some();
                let mut add = |status: &str, why: &str| {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error_response(why));
                };
                if schemes.contains("\"session\"") {
                    add("401", "Not logged in, or the session expired");
                    let http = match method {
                        HttpMethod::Get => axum::http::Method::GET,
                        HttpMethod::Put => axum::http::Method::PUT,
                        HttpMethod::Delete => axum::http::Method::DELETE,
                        _ => axum::http::Method::POST,
                    };
                    let role = crate::roles::needed(&http, Some(path));
                    let by_role = format!("The person's role is below `{}`", role.as_str());
                    match (method != HttpMethod::Get, role > crate::roles::Role::Viewer) {
                        (true, true) => add(
                            "403",
                            &format!("Missing or wrong `X-CSRF-Token`, or: {by_role}"),
                        ),
                        (true, false) => add("403", "Missing or wrong `X-CSRF-Token`"),
                        (false, true) => add("403", &by_role),
                        (false, false) => {}
                    }
                }
                if schemes.contains("\"agent_token\"") {
                    add("401", "Missing or unknown agent token");
                }
                if integer_in_path {
                    add("400", "A path parameter is not a number (an integer id)");
                }
                if query {
                    add("400", "A query parameter is unknown or not of its type");
                }
                if body {
                    add("400", "The body is not well-formed (JSON or multipart)");
                    add("413", "The body is over the size limit");
                    add("415", "The body's Content-Type is not the one documented");
                    add(
                        "422",
                        "A field is missing, unknown, of the wrong type or refused",
                    );
                }
            }
        }
    }
}

fn error_response(why: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(why)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// A module's bytes, as the document describes them.
struct WasmBytes;

impl utoipa::PartialSchema for WasmBytes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .content_media_type("application/wasm")
            .into()
    }
}

impl utoipa::ToSchema for WasmBytes {}

/// A plugin's version history, or a module's bytes. The key is a plugin
/// name, or a module's sha256 (64 hex digits), which agents fetch with
/// their token: the URL is the hash, so the bytes never change.
#[utoipa::path(get, path = "/api/v1/plugins/{key}", tag = "plugins", operation_id = "show_plugin_or_module",
    params(("key" = String, Path, description = "a plugin name, or a module's sha256 (64 hex digits)")),
    responses(
        (status = 200, description = "A plugin name: its versions, newest first. A sha256: the module (`application/wasm`).",
         content((plugins::PluginView = "application/json"), (WasmBytes = "application/wasm"))),
        (status = 404, description = "No such plugin or module", body = ErrorBody)),
    security(("session" = []), ("agent_token" = [])))]
async fn plugin_or_module(
    state: State<Arc<AppState>>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    if key.len() == 64 && key.chars().all(|c| c.is_ascii_hexdigit()) {
        return plugins::module(state, headers, Path(key))
            .await
            .into_response();
    }
    let mut req = axum::http::Request::new(());
    *req.headers_mut() = headers;
    let (mut parts, ()) = req.into_parts();
    use axum::extract::FromRequestParts;
    match crate::auth::User::from_request_parts(&mut parts, &state.0).await {
        Ok(user) => plugins::show(state, user, Path(key)).await.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let db = &state.db;
    // Kept by triggers: counting the log's rows, or summing the hourly
    // rollups, would read a table that grows at every scrape.
    let by_status: Vec<(String, i64)> = on_db!(db, pool => {
        sqlx::query_as(
            "SELECT status, CAST(transfers AS BIGINT) FROM transfer_totals ORDER BY status",
        )
        .fetch_all(pool)
        .await
    })?;
    let online: i64 = on_db!(db, pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM agents WHERE last_seen > $1")
            .bind(crate::now_ms() - agents::ONLINE_WITHIN_MS)
            .fetch_one(pool)
            .await
    })?;
    let total: i64 = on_db!(db, pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM agents")
            .fetch_one(pool)
            .await
    })?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&by_status, online, total),
    )
        .into_response())
}

async fn count(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    state.metrics.count_response(res.status().as_u16());
    res
}

async fn not_found() -> ApiError {
    ApiError::not_found("this path")
}

pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.upload_limit;
    let api = Router::new()
        .route("/login", post(session::login))
        .route("/logout", post(session::logout))
        .route("/me", get(session::me))
        .route("/me/password", post(users::change_password))
        .route("/logout/everywhere", post(users::logout_everywhere))
        .route("/users", get(users::list).post(users::create))
        .route(
            "/users/{id}",
            axum::routing::put(users::update).delete(users::delete),
        )
        .route("/health", get(session::health))
        .route(
            "/plugins",
            get(plugins::list)
                .post(plugins::upload)
                .layer(DefaultBodyLimit::max(
                    limit.saturating_mul(4).saturating_add(1 << 20),
                )),
        )
        .route("/plugins/{key}", get(plugin_or_module))
        .route(
            "/plugins/{name}/versions/{version}",
            delete(plugins::delete_version),
        )
        .route("/wit/{version}", get(wit::show))
        .route("/agents", get(agents::list).post(agents::create))
        .route("/agents/{id}", delete(agents::delete))
        .route(
            "/agents/{id}/settings",
            get(settings::show).put(settings::update),
        )
        .route("/targets", get(targets::list).post(targets::create))
        .route(
            "/targets/{id}",
            get(targets::show)
                .put(targets::update)
                .delete(targets::delete),
        )
        .route("/pollers", get(pollers::list).post(pollers::create))
        .route(
            "/pollers/{id}",
            get(pollers::show)
                .put(pollers::update)
                .delete(pollers::delete),
        )
        .route("/pollers/{id}/enable", post(pollers::enable))
        .route("/pollers/{id}/disable", post(pollers::disable))
        .route("/transfers", get(transfers::search))
        .route("/transfers.csv", get(transfers::csv))
        .route("/stats", get(transfers::stats))
        .route("/agent/config", get(agent::config))
        .route(
            "/agent/events",
            post(agent::events).layer(DefaultBodyLimit::max(16 << 20)),
        )
        .route("/agent/heartbeat", post(agent::heartbeat))
        .fallback(not_found);
    Router::new()
        .nest("/api/v1", api)
        .route("/api/openapi.json", get(openapi_json))
        // Anything else under /api is an API path too: a JSON 404, never
        // the pages' HTML one.
        .route("/api", any(not_found))
        .route("/api/{*rest}", any(not_found))
        .layer(middleware::from_fn(crate::error::json_errors))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}
