//! Your account (password, sessions) and, for admins, the people who can
//! log in and their roles. Both call the JSON API's functions.

use super::session::CsrfForm;
use super::{PageError, PageResult, PageUser, html, html_status, see_other};
use crate::AppState;
use crate::api::users::{self as api, NewUser, UserChange, UserView};
use crate::roles::Role;
use askama::Template;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::{Extension, Form, Json};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    chrome: super::Chrome,
    role: &'static str,
    message: Option<String>,
    error: Option<String>,
}

fn account_page(user: &PageUser, message: Option<String>, error: Option<String>) -> AccountPage {
    AccountPage {
        chrome: user.chrome("account"),
        role: user.0.role.as_str(),
        message,
        error,
    }
}

pub async fn account(user: PageUser) -> PageResult {
    html(&account_page(&user, None, None))
}

#[derive(Deserialize)]
pub struct PasswordForm {
    csrf: String,
    current: String,
    new: String,
}

pub async fn change_password(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    from: Option<Extension<ConnectInfo<SocketAddr>>>,
    Form(f): Form<PasswordForm>,
) -> PageResult {
    user.0.check_csrf(&f.csrf)?;
    let from = from.map(|Extension(ConnectInfo(a))| a.ip());
    match api::set_own_password(&state, &user.0, from, &f.current, f.new).await {
        Ok(()) => html(&account_page(
            &user,
            Some("Password changed; your other sessions have ended.".into()),
            None,
        )),
        Err(e) => html_status(e.status, &account_page(&user, None, Some(e.message))),
    }
}

pub async fn logout_everywhere(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Form(f): Form<CsrfForm>,
) -> PageResult {
    user.0.check_csrf(&f.csrf)?;
    api::end_all_sessions(&state, &user.0).await?;
    Ok((
        [(header::SET_COOKIE, crate::auth::cleared_session_cookie())],
        Redirect::to("/login"),
    )
        .into_response())
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    chrome: super::Chrome,
    users: Vec<UserView>,
    roles: [&'static str; 3],
    username: String,
    error: Option<String>,
}

async fn users_page(
    state: &Arc<AppState>,
    user: &PageUser,
    username: String,
    error: Option<String>,
) -> Result<UsersPage, PageError> {
    let users = api::list(State(state.clone()), user.0.clone()).await?.0;
    Ok(UsersPage {
        chrome: user.chrome("users"),
        users,
        roles: Role::ALL.map(Role::as_str),
        username,
        error,
    })
}

pub async fn list(State(state): State<Arc<AppState>>, user: PageUser) -> PageResult {
    html(&users_page(&state, &user, String::new(), None).await?)
}

#[derive(Deserialize)]
pub struct NewUserForm {
    csrf: String,
    username: String,
    password: String,
    role: String,
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Form(f): Form<NewUserForm>,
) -> PageResult {
    user.0.check_csrf(&f.csrf)?;
    let input = NewUser {
        username: f.username.trim().to_string(),
        password: f.password,
        role: Role::parse(&f.role),
    };
    match api::create(State(state.clone()), user.0.clone(), Ok(Json(input))).await {
        Ok(_) => see_other("/users"),
        Err(e) if e.field.is_some() => html_status(
            e.status,
            &users_page(&state, &user, f.username, Some(e.message)).await?,
        ),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct RoleForm {
    csrf: String,
    role: String,
}

pub async fn set_role(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Path(id): Path<i64>,
    Form(f): Form<RoleForm>,
) -> PageResult {
    user.0.check_csrf(&f.csrf)?;
    let change = UserChange {
        role: Some(Role::parse(&f.role)),
        password: None,
    };
    let _changed = api::update(State(state), user.0.clone(), Path(id), Ok(Json(change))).await?;
    see_other("/users")
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Path(id): Path<i64>,
    Form(f): Form<CsrfForm>,
) -> PageResult {
    user.0.check_csrf(&f.csrf)?;
    api::delete(State(state), user.0.clone(), Path(id)).await?;
    see_other("/users")
}
