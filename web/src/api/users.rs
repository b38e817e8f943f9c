//! People: admins add, change and remove them; everyone changes their own
//! password and can end all their sessions.

use crate::AppState;
use crate::auth::{self, User};
use crate::db::Tx;
use crate::error::{ApiError, ApiResult};
use crate::roles::Role;
use crate::{on_db, on_tx};
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

/// Shortest password accepted.
pub const PASSWORD_MIN: usize = 10;

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: i64,
    pub username: String,
    pub role: Role,
    /// Milliseconds since the epoch.
    pub created_at: i64,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Letters, digits, `.`, `_`, `@` or `-` (64 at most).
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$")]
    pub username: String,
    /// At least 10 characters.
    #[schema(min_length = 10)]
    pub password: String,
    pub role: Role,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    pub role: Option<Role>,
    /// A new password (at least 10 characters); ends that person's sessions.
    #[schema(min_length = 10)]
    pub password: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current: String,
    /// At least 10 characters.
    #[schema(min_length = 10)]
    pub new: String,
}

fn valid_username(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'))
}

fn check_password(field: &str, password: &str) -> ApiResult<()> {
    if password.chars().count() < PASSWORD_MIN {
        return Err(ApiError::bad(
            field,
            format!("a password has at least {PASSWORD_MIN} characters"),
        ));
    }
    Ok(())
}

/// argon2 off the async threads.
async fn hash(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// A person as stored.
#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    username: String,
    role: String,
    created_at: i64,
}

impl From<UserRow> for UserView {
    fn from(row: UserRow) -> Self {
        UserView {
            id: row.id,
            username: row.username,
            role: Role::parse(&row.role),
            created_at: row.created_at,
        }
    }
}

/// Everyone who can log in (admins only).
#[utoipa::path(get, path = "/api/v1/users", tag = "users", operation_id = "list_users",
    responses((status = 200, body = [UserView])), security(("session" = [])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _user: User,
) -> ApiResult<Json<Vec<UserView>>> {
    let rows = on_db!(&state.db, pool => {
        sqlx::query_as::<_, UserRow>("SELECT id, username, role, created_at FROM users ORDER BY username")
            .fetch_all(pool)
            .await
    })?;
    Ok(Json(rows.into_iter().map(UserView::from).collect()))
}

/// Add a person (admins only).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", operation_id = "create_user", request_body = NewUser,
    responses((status = 201, body = UserView), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("session" = [])))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    _user: User,
    body: Result<Json<NewUser>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    let Json(new) = body?;
    if !valid_username(&new.username) {
        return Err(ApiError::bad(
            "username",
            "letters, digits, `.`, `_`, `@` or `-` (64 at most)",
        ));
    }
    check_password("password", &new.password)?;
    let password_hash = hash(new.password).await?;
    let row = on_db!(&state.db, pool => {
        sqlx::query_as::<_, UserRow>(
            "INSERT INTO users (username, password_hash, role, created_at) VALUES ($1, $2, $3, $4)
             RETURNING id, username, role, created_at",
        )
        .bind(&new.username)
        .bind(&password_hash)
        .bind(new.role.as_str())
        .bind(crate::now_ms())
        .fetch_one(pool)
        .await
    })
    .map_err(crate::error::unique(
        "username",
        format!("`{}` exists", new.username),
    ))?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// The admins left if `id` stopped being one: none is refused, so the site
/// always has someone who can manage it.
async fn other_admins(tx: &mut Tx, id: i64) -> ApiResult<i64> {
    Ok(on_tx!(tx, conn => {
        sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin' AND id != $1")
            .bind(id)
            .fetch_one(conn)
            .await
    })?)
}

fn last_admin() -> ApiError {
    ApiError::conflict(
        Some("role"),
        "this is the last admin: make someone else admin first",
    )
}

/// Change a person's role or set a new password, which ends their sessions
/// (admins only).
#[utoipa::path(put, path = "/api/v1/users/{id}", tag = "users", operation_id = "update_user", params(("id" = i64, Path)), request_body = UserChange,
    responses((status = 200, body = UserView), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)),
    security(("session" = [])))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    _user: User,
    Path(id): Path<i64>,
    body: Result<Json<UserChange>, JsonRejection>,
) -> ApiResult<Json<UserView>> {
    let Json(change) = body?;
    if let Some(p) = &change.password {
        check_password("password", p)?;
    }
    let password_hash = match change.password {
        Some(p) => Some(hash(p).await?),
        None => None,
    };
    let mut tx = state.db.begin_write().await?;
    let row = on_tx!(&mut tx, conn => {
        sqlx::query_as::<_, UserRow>("SELECT id, username, role, created_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await
    })?
    .ok_or_else(|| ApiError::not_found(&format!("user {id}")))?;
    if let Some(role) = change.role {
        if role != Role::Admin && other_admins(&mut tx, id).await? == 0 {
            return Err(last_admin());
        }
        on_tx!(&mut tx, conn => {
            sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
                .bind(role.as_str())
                .bind(id)
                .execute(conn)
                .await
                .map(|_| ())
        })?;
    }
    if let Some(h) = password_hash {
        on_tx!(&mut tx, conn => {
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                .bind(&h)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(id)
                .execute(conn)
                .await
                .map(|_| ())
        })?;
    }
    tx.commit().await?;
    let mut v = UserView::from(row);
    v.role = change.role.unwrap_or(v.role);
    Ok(Json(v))
}

/// Remove a person and their sessions (admins only; not the last admin).
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", operation_id = "delete_user", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)),
    security(("session" = [])))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    _user: User,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin_write().await?;
    let role: Option<String> = on_tx!(&mut tx, conn => {
        sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await
    })?;
    let role = role.ok_or_else(|| ApiError::not_found(&format!("user {id}")))?;
    if Role::parse(&role) == Role::Admin && other_admins(&mut tx, id).await? == 0 {
        return Err(last_admin());
    }
    // Sessions go with it (ON DELETE CASCADE).
    on_tx!(&mut tx, conn => {
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change your own password (the current one is checked, with the login
/// backoff); every other session of yours ends.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "session", operation_id = "change_password", request_body = PasswordChange,
    responses((status = 204), (status = 401, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody),
              (status = 429, body = crate::error::ErrorBody)),
    security(("session" = [])))]
pub async fn change_password(
    State(state): State<Arc<AppState>>,
    user: User,
    from: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Result<Json<PasswordChange>, JsonRejection>,
) -> ApiResult<StatusCode> {
    let Json(change) = body?;
    let from = from.map(|Extension(ConnectInfo(a))| a.ip());
    set_own_password(&state, &user, from, &change.current, change.new).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks `current`, sets `new`, ends the person's other sessions (the
/// page's form uses it too).
pub async fn set_own_password(
    state: &AppState,
    user: &User,
    from: Option<std::net::IpAddr>,
    current: &str,
    new: String,
) -> ApiResult<()> {
    check_password("new", &new)?;
    match auth::authenticate(state, from, &user.username, current).await? {
        auth::Checked::User(id) if id == user.id => {}
        auth::Checked::Wait(left) => {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many failed attempts: try again in {} s",
                    left.as_secs().max(1)
                ),
            ));
        }
        _ => {
            return Err(ApiError::field(
                StatusCode::UNAUTHORIZED,
                "current",
                "the current password is wrong",
            ));
        }
    }
    let new_hash = hash(new).await?;
    let mut tx = state.db.begin_write().await?;
    on_tx!(&mut tx, conn => {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(&new_hash)
            .bind(user.id)
            .execute(&mut *conn)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash != $2")
            .bind(user.id)
            .bind(&user.session_hash)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    tx.commit().await?;
    Ok(())
}

/// End every session of yours, this one included.
#[utoipa::path(post, path = "/api/v1/logout/everywhere", tag = "session", operation_id = "logout_everywhere",
    responses((status = 204)), security(("session" = [])))]
pub async fn logout_everywhere(
    State(state): State<Arc<AppState>>,
    user: User,
) -> ApiResult<Response> {
    end_all_sessions(&state, &user).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, auth::cleared_session_cookie())],
    )
        .into_response())
}

/// Every session of `user` ends.
pub async fn end_all_sessions(state: &AppState, user: &User) -> ApiResult<()> {
    on_db!(&state.db, pool => {
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user.id)
            .execute(pool)
            .await
            .map(|_| ())
    })?;
    Ok(())
}
