//! API errors: a status and a JSON body naming the field or the reason.

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// `{"error": "...", "field": "..."}` with a 4xx or 5xx status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub field: Option<String>,
    pub message: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What is wrong, in one line.
    pub error: String,
    /// The field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            field: None,
            message: message.into(),
        }
    }

    pub fn field(status: StatusCode, field: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    pub fn bad(field: &str, message: impl Into<String>) -> Self {
        Self::field(StatusCode::UNPROCESSABLE_ENTITY, field, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    pub fn conflict(field: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            field: field.map(str::to_string),
            message: message.into(),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!("{}", self.message);
        }
        let body = ErrorBody {
            error: self.message,
            field: self.field,
        };
        (self.status, axum::Json(body)).into_response()
    }
}

/// A database error, with a unique-constraint violation reported as a 409
/// on `field` saying `taken`.
pub fn unique(field: &'static str, taken: String) -> impl FnOnce(sqlx::Error) -> ApiError {
    move |e| match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            ApiError::conflict(Some(field), taken)
        }
        other => other.into(),
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("database error: {e}"),
        )
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        // serde's message names the field ("unknown field `x`", "missing field `y`").
        let text = r.body_text();
        let field = text
            .split('`')
            .nth(1)
            .filter(|_| text.contains("field `"))
            .map(str::to_string);
        Self {
            status: if matches!(r, JsonRejection::JsonSyntaxError(_)) {
                StatusCode::BAD_REQUEST
            } else {
                r.status()
            },
            field,
            message: text,
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Middleware for `/api`: an error answered by anything but an `ApiError`
/// (axum's path, query and body rejections, 405, 413 from the body limit)
/// becomes the same JSON error object, with axum's text as the message,
/// so a client never has to parse plain text. Headers such as `Allow` are
/// kept.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    let is_json = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    // axum's rejection texts are one line; a bigger body is not one of them.
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    } else {
        text
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let json = ApiError::new(status, message).into_response();
    let (json_parts, json_body) = json.into_parts();
    parts.headers.extend(json_parts.headers);
    Response::from_parts(parts, json_body)
}
