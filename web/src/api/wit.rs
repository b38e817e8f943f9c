//! The poller contract's WIT text, by version: what a plugin author's
//! toolchain (or `dispatch-agent plugin new`) builds against.

use crate::error::{ApiError, ApiResult};
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Every `dispatch:poller` version this server's agents run, oldest first,
/// with its `poller.wit` (a released version is frozen, never edited).
pub const WIT: &[(&str, &str)] = &[
    (
        "0.1.0",
        include_str!("../../../wit/frozen/0.1.0/poller.wit"),
    ),
    ("0.2.0", include_str!("../../../wit/poller.wit")),
];

/// The `poller.wit` of one contract version, as plain text.
#[utoipa::path(get, path = "/api/v1/wit/{version}", tag = "plugins", operation_id = "show_wit",
    params(("version" = String, Path, description = "a `dispatch:poller` version, e.g. `0.2.0`")),
    responses(
        (status = 200, description = "The WIT package `dispatch:poller@{version}`", content_type = "text/plain", body = String),
        (status = 404, description = "Not a version this server knows (the error names those it knows)", body = crate::error::ErrorBody)))]
pub async fn show(Path(version): Path<String>) -> ApiResult<Response> {
    let Some((_, text)) = WIT.iter().find(|(v, _)| *v == version) else {
        let known: Vec<&str> = WIT.iter().map(|(v, _)| *v).collect();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no WIT version `{version}`: this server knows {}",
                known.join(", ")
            ),
        ));
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], *text).into_response())
}
