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

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use std::sync::Arc;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Dispatch", description = "Dispatch control plane: pollers, plugins, agents, transfer log."),
    paths(
        session::login, session::logout, session::me, session::health,
        plugins::upload, plugins::list, plugins::show, plugins::delete_version, plugins::module,
        agents::create, agents::list, agents::delete, settings::show, settings::update,
        targets::create, targets::list, targets::show, targets::update, targets::delete,
        pollers::create, pollers::list, pollers::show, pollers::update, pollers::enable, pollers::disable, pollers::delete,
        transfers::search, transfers::csv, transfers::stats,
        agent::config, agent::events, agent::heartbeat,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Security),
    tags(
        (name = "session", description = "Log in (session cookie + X-CSRF-Token on changes)"),
        (name = "plugins", description = "Poller modules and their versions"),
        (name = "pollers", description = "Pollers"),
        (name = "targets", description = "Targets: where pollers send"),
        (name = "agents", description = "Agents"),
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

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// `/api/v1/plugins/{x}`: a 64-hex `x` is a module (by sha256), anything
/// else a plugin name.
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
    use sqlx::Row;
    let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM transfers GROUP BY status")
        .fetch_all(&state.pool)
        .await?;
    let by_status: Vec<(String, i64)> =
        rows.iter().map(|r| (r.get("status"), r.get("n"))).collect();
    let online: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agents WHERE last_seen > ?")
        .bind(crate::now_ms() - agents::ONLINE_WITHIN_MS)
        .fetch_one(&state.pool)
        .await?;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agents")
        .fetch_one(&state.pool)
        .await?;
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
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}
