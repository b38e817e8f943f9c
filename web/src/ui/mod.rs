//! The web pages: server-rendered (askama) over the same services as the
//! JSON API. Every page needs a login; every form carries the session's
//! CSRF token; live parts refresh themselves from fragment URLs
//! (`static/app.js`), so nothing comes from a CDN.

mod agent_settings;
mod agents;
mod assets;
mod chart;
mod dashboard;
mod fields;
mod fmt;
mod people;
mod plugins;
mod pollers;
mod session;
mod stats;
mod targets;
mod transfers;

use crate::AppState;
use crate::auth::User;
use crate::error::ApiError;
use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use std::sync::Arc;

pub fn router(upload_limit: usize) -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/live/dashboard", get(dashboard::live))
        .route("/login", get(session::form).post(session::submit))
        .route("/logout", post(session::logout))
        .route("/pollers", get(pollers::list))
        .route("/pollers/new", get(pollers::new_form).post(pollers::create))
        .route("/pollers/{id}", get(pollers::detail))
        .route(
            "/pollers/{id}/edit",
            get(pollers::edit_form).post(pollers::update),
        )
        .route("/pollers/{id}/enable", post(pollers::enable))
        .route("/pollers/{id}/disable", post(pollers::disable))
        .route("/pollers/{id}/delete", post(pollers::delete))
        .route(
            "/agents/{id}/settings",
            get(agent_settings::form).post(agent_settings::save),
        )
        .route("/targets", get(targets::list))
        .route("/targets/new", get(targets::new_form).post(targets::create))
        .route(
            "/targets/{id}/edit",
            get(targets::edit_form).post(targets::update),
        )
        .route("/targets/{id}/delete", post(targets::delete))
        .route(
            "/plugins",
            get(plugins::list)
                .post(plugins::upload)
                .layer(DefaultBodyLimit::max(
                    upload_limit.saturating_mul(2).saturating_add(1 << 20),
                )),
        )
        .route("/plugins/{name}", get(plugins::detail))
        .route("/plugins/{name}/move", post(plugins::move_poller))
        .route("/agents", get(agents::list).post(agents::create))
        .route("/agents/{id}", get(agents::detail))
        .route("/transfers", get(transfers::page))
        .route("/live/transfers", get(transfers::live))
        .route("/transfers/{id}/retry", post(transfers::retry))
        .route("/stats", get(stats::page))
        .route("/account", get(people::account))
        .route("/account/password", post(people::change_password))
        .route(
            "/account/logout-everywhere",
            post(people::logout_everywhere),
        )
        .route("/users", get(people::list).post(people::create))
        .route("/users/{id}/role", post(people::set_role))
        .route("/users/{id}/delete", post(people::delete))
        .route("/static/{file}", get(assets::serve))
        .layer(axum::middleware::from_fn(security_headers))
}

/// Pages load nothing from elsewhere, run no inline script and are never
/// framed (no clickjacking of the forms).
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    res
}

/// What every page's frame shows: who is logged in, the logout form's
/// CSRF token, and which menu entry is current.
pub struct Chrome {
    pub username: String,
    pub csrf: String,
    pub active: &'static str,
    /// Admins see the People page in the menu.
    pub is_admin: bool,
}

/// A logged-in person on a page. Without a session, GET pages redirect to
/// the login page (and back afterwards); form posts get the error page.
pub struct PageUser(pub User);

impl PageUser {
    pub fn chrome(&self, active: &'static str) -> Chrome {
        Chrome {
            username: self.0.username.clone(),
            csrf: self.0.csrf.clone(),
            active,
            is_admin: self.0.role == crate::roles::Role::Admin,
        }
    }
}

impl FromRequestParts<Arc<AppState>> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        match User::from_session(parts, state).await {
            Ok(user) => Ok(PageUser(user)),
            Err(e) if e.status == StatusCode::UNAUTHORIZED => {
                let here = OriginalUri::from_request_parts(parts, state)
                    .await
                    .map(|u| u.0.to_string())
                    .unwrap_or_else(|_| "/".into());
                let next = serde_urlencoded::to_string([("next", here)]).unwrap_or_default();
                Err(Redirect::to(&format!("/login?{next}")).into_response())
            }
            Err(e) => Err(PageError::from(e).into_response()),
        }
    }
}

/// An error shown as a page (status, one line saying what is wrong).
pub struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        let message = match e.field {
            Some(f) => format!("{f}: {}", e.message),
            None => e.message,
        };
        Self::new(e.status, message)
    }
}

impl From<sqlx::Error> for PageError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::from(e).into()
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render the page: {e}"),
        )
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!("{}", self.message);
        }
        let page = ErrorPage {
            status: self.status.as_u16(),
            reason: self.status.canonical_reason().unwrap_or("Error"),
            message: &self.message,
        };
        match page.render() {
            Ok(body) => (self.status, Html(body)).into_response(),
            Err(_) => (self.status, self.message).into_response(),
        }
    }
}

pub type PageResult = Result<Response, PageError>;

/// Renders a template as a 200 page.
pub fn html(t: &impl Template) -> PageResult {
    Ok(Html(t.render()?).into_response())
}

/// Renders a template with another status (a form with its errors: 422).
pub fn html_status(status: StatusCode, t: &impl Template) -> PageResult {
    Ok((status, Html(t.render()?)).into_response())
}

/// After a successful post: back to a page (303, so reload does not post again).
pub fn see_other(to: &str) -> PageResult {
    Ok(Redirect::to(to).into_response())
}

/// The 404 page for every path that is not a page, an asset or the API.
pub async fn not_found(uri: OriginalUri) -> Response {
    PageError::new(
        StatusCode::NOT_FOUND,
        format!("there is no page at {}", uri.0.path()),
    )
    .into_response()
}

/// Fragments polled by `app.js` must not be cached.
pub fn fragment(t: &impl Template) -> PageResult {
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(t.render()?)).into_response())
}
