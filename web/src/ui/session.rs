//! The login page and logging out.

use super::{PageError, PageResult, PageUser, html_status, see_other};
use crate::AppState;
use crate::auth::{self, User};
use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::{Extension, Form};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    next: String,
    username: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// Only a plain path of this site: an open redirect would help phishing.
/// Browsers drop tabs and newlines from a URL and read `\\` as `/`, so
/// `/\t/evil.example` or `/\\evil.example` would leave the site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n
                    .chars()
                    .any(|c| c == '\\' || c.is_control() || c.is_whitespace()) =>
        {
            n.into()
        }
        _ => "/".into(),
    }
}

pub async fn form(
    State(state): State<Arc<AppState>>,
    parts: Parts,
    Query(q): Query<Next>,
) -> PageResult {
    let next = safe_next(q.next.as_deref());
    if User::from_session(&parts, &state).await.is_ok() {
        return see_other(&next);
    }
    html_status(
        StatusCode::OK,
        &LoginPage {
            next,
            username: String::new(),
            error: None,
        },
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

/// Whether a form was posted from another site. A login posted from
/// elsewhere (login CSRF) would log the victim in as the attacker, and what
/// they then set up would land in the attacker's account. Browsers send
/// `Origin` (and `Sec-Fetch-Site`) with every POST; a client that sends
/// neither is no browser, and so no victim.
fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{0}"));
    if text("sec-fetch-site").is_some_and(|v| v != "same-origin" && v != "none") {
        return true;
    }
    let Some(origin) = text("origin") else {
        return false;
    };
    // Behind a proxy the host the browser used is the forwarded one.
    let host = text("x-forwarded-host").or_else(|| text("host"));
    match (origin.split_once("://"), host) {
        (Some((_, authority)), Some(host)) => !authority.eq_ignore_ascii_case(host),
        // `Origin: null` (a sandboxed frame, a redirect across sites).
        _ => true,
    }
}

pub async fn submit(
    State(state): State<Arc<AppState>>,
    from: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> PageResult {
    let next = safe_next(f.next.as_deref());
    if cross_site(&headers) {
        return html_status(
            StatusCode::FORBIDDEN,
            &LoginPage {
                next,
                username: String::new(),
                error: Some(
                    "This login was sent from another site, so it was refused: log in on this page."
                        .into(),
                ),
            },
        );
    }
    let from = from.map(|Extension(ConnectInfo(a))| a.ip());
    let refused = |status, error: String| {
        html_status(
            status,
            &LoginPage {
                next: next.clone(),
                username: f.username.clone(),
                error: Some(error),
            },
        )
    };
    let user_id = match auth::authenticate(&state, from, &f.username, &f.password).await? {
        auth::Checked::User(id) => id,
        auth::Checked::Wrong => {
            return refused(
                StatusCode::UNAUTHORIZED,
                "Wrong username or password.".into(),
            );
        }
        auth::Checked::Wait(left) => {
            return refused(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many failed logins: try again in {} s.",
                    left.as_secs().max(1)
                ),
            );
        }
    };
    let (token, _csrf) = auth::create_session(&state.db, user_id).await?;
    Ok((
        [(
            header::SET_COOKIE,
            auth::session_cookie(&token, state.secure_cookies),
        )],
        Redirect::to(&next),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
}

pub async fn logout(
    State(state): State<Arc<AppState>>,
    PageUser(user): PageUser,
    Form(f): Form<CsrfForm>,
) -> PageResult {
    user.check_csrf(&f.csrf).map_err(PageError::from)?;
    auth::end_session(&state.db, &user.session_hash).await?;
    Ok((
        [(header::SET_COOKIE, auth::cleared_session_cookie())],
        Redirect::to("/login"),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(super::safe_next(Some("/pollers?x=1")), "/pollers?x=1");
        assert_eq!(super::safe_next(Some("//evil.example")), "/");
        assert_eq!(super::safe_next(Some("https://evil.example")), "/");
        for bad in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/\\evil.example",
            "/\\/evil.example",
            "javascript:alert(1)",
            " /pollers",
            "/ /evil.example",
        ] {
            assert_eq!(super::safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(super::safe_next(None), "/");
    }
}
