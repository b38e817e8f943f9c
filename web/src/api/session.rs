//! Logging in and out; health.

use crate::AppState;
use crate::auth::{self, User};
use crate::error::{ApiError, ApiResult};
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub username: String,
    pub password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    pub username: String,
    /// What this person may do.
    pub role: crate::roles::Role,
    /// Send it as `X-CSRF-Token` with every request that changes something.
    pub csrf_token: String,
}

/// Log in: sets the session cookie and returns the CSRF token.
#[utoipa::path(post, path = "/api/v1/login", request_body = Login, tag = "session", operation_id = "login",
    responses((status = 200, body = Me), (status = 401, body = crate::error::ErrorBody),
        (status = 429, description = "too many failed logins lately (per account or client address): wait, whatever the password", body = crate::error::ErrorBody)))]
pub async fn login(
    State(state): State<Arc<AppState>>,
    from: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Result<Json<Login>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(login) = body?;
    let from = from.map(|Extension(ConnectInfo(a))| a.ip());
    let user_id = match auth::authenticate(&state, from, &login.username, &login.password).await? {
        auth::Checked::User(id) => id,
        auth::Checked::Wrong => return Err(ApiError::unauthorized("wrong username or password")),
        auth::Checked::Wait(left) => {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many failed logins: try again in {} s",
                    left.as_secs().max(1)
                ),
            ));
        }
    };
    let (token, csrf) = auth::create_session(&state.db, user_id).await?;
    let role: String = crate::on_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(pool)
            .await
    })?;
    Ok((
        [(
            header::SET_COOKIE,
            auth::session_cookie(&token, state.secure_cookies),
        )],
        Json(Me {
            username: login.username,
            role: crate::roles::Role::parse(&role),
            csrf_token: csrf,
        }),
    )
        .into_response())
}

/// Log out: ends the session.
#[utoipa::path(post, path = "/api/v1/logout", tag = "session", operation_id = "logout", responses((status = 204)), security(("session" = [])))]
pub async fn logout(State(state): State<Arc<AppState>>, user: User) -> ApiResult<Response> {
    auth::end_session(&state.db, &user.session_hash).await?;
    Ok((
        axum::http::StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, auth::cleared_session_cookie())],
    )
        .into_response())
}

/// Who is logged in.
#[utoipa::path(get, path = "/api/v1/me", tag = "session", operation_id = "me", responses((status = 200, body = Me)), security(("session" = [])))]
pub async fn me(user: User) -> Json<Me> {
    Json(Me {
        username: user.username,
        role: user.role,
        csrf_token: user.csrf,
    })
}

/// What a load balancer, a container's health check or an operator asks.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` when the database answered.
    pub status: String,
    /// Which database: `sqlite`.
    pub database: String,
    /// The newest migration applied to it.
    pub schema_version: i64,
    /// Agents heard from in the last two minutes.
    pub agents_online: i64,
    /// This web app's version and the commit it was built from.
    pub version: String,
    pub commit: String,
}

/// Liveness and database check (no login).
#[utoipa::path(get, path = "/api/v1/health", tag = "session", operation_id = "health", responses((status = 200, body = Health)))]
pub async fn health(State(state): State<Arc<AppState>>) -> ApiResult<Json<Health>> {
    let schema_version: i64 = crate::on_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await
    })?;
    let since = crate::now_ms() - super::agents::ONLINE_WITHIN_MS;
    let agents_online: i64 = crate::on_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM agents WHERE last_seen > $1")
            .bind(since)
            .fetch_one(pool)
            .await
    })?;
    Ok(Json(Health {
        status: "ok".into(),
        database: state.db.backend().into(),
        schema_version,
        agents_online,
        version: env!("CARGO_PKG_VERSION").into(),
        commit: dispatch_service::COMMIT.into(),
    }))
}
