//! People (argon2 passwords, session cookies, CSRF tokens) and agents
//! (bearer tokens stored as sha256).

use crate::AppState;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::{on_db, on_tx};
use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub const SESSION_COOKIE: &str = "dispatch_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A random token: `prefix` + 64 hex characters.
pub fn new_token(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(crate::crypto::random_bytes(32)))
}

/// Creates the first admin when there is no user: with `password` when
/// given, else a random one, returned so the caller can print it once.
pub async fn ensure_admin(
    db: &Db,
    username: &str,
    password: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let users: i64 = on_db!(db, pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(pool).await
    })?;
    if users > 0 {
        return Ok(None);
    }
    let generated = password.is_none();
    let password =
        password.map_or_else(|| new_token("").chars().take(20).collect(), str::to_string);
    // Of replicas starting together on an empty database, one makes the
    // first user and the others none: the check and the insert in one
    // writing transaction (one statement alone would not do on
    // PostgreSQL, whose concurrent statements may all see no user).
    let hash = hash_password(&password)?;
    let mut tx = db.begin_write().await?;
    let made = on_tx!(&mut tx, conn => {
        sqlx::query(
            "INSERT INTO users (username, password_hash, created_at)
             SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM users)",
        )
        .bind(username)
        .bind(&hash)
        .bind(crate::now_ms())
        .execute(conn)
        .await
        .map(|r| r.rows_affected())
    })?;
    tx.commit().await?;
    Ok((generated && made == 1).then_some(password))
}

/// The agent running beside the web app (`cargo xtask up`): created if
/// missing; when its token file is missing, a new token is made and written
/// there (0600), the old one stops working.
pub async fn ensure_local_agent(
    db: &Db,
    name: &str,
    token_file: &std::path::Path,
) -> anyhow::Result<()> {
    let exists: Option<i64> = on_db!(db, pool => {
        sqlx::query_scalar("SELECT id FROM agents WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await
    })?;
    if exists.is_some() && token_file.exists() {
        return Ok(());
    }
    let token = new_token("dsp_");
    match exists {
        Some(id) => on_db!(db, pool => {
            sqlx::query("UPDATE agents SET token_hash = $1 WHERE id = $2")
                .bind(sha256_hex(&token))
                .bind(id)
                .execute(pool)
                .await
                .map(|_| ())
        })?,
        None => on_db!(db, pool => {
            sqlx::query("INSERT INTO agents (name, token_hash, created_at) VALUES ($1, $2, $3)")
                .bind(name)
                .bind(sha256_hex(&token))
                .bind(crate::now_ms())
                .execute(pool)
                .await
                .map(|_| ())
        })?,
    }
    write_token(token_file, &token)
        .map_err(|e| anyhow::anyhow!("--local-agent-token-file {}: {e}", token_file.display()))?;
    tracing::info!(agent = name, file = %token_file.display(), "local agent token written");
    Ok(())
}

/// Writes the token (0600) beside the file, then renames it into place: an
/// agent started as soon as the file appears never reads half of it.
fn write_token(path: &std::path::Path, token: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    let part = std::path::PathBuf::from(part);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&part)?;
    // Mode applies only to a new file: a leftover part keeps its own.
    std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o600))?;
    writeln!(f, "{token}")?;
    f.sync_all()?;
    std::fs::rename(&part, path)
}

/// What a login attempt comes to.
pub enum Checked {
    User(i64),
    Wrong,
    /// Too many failures lately: refused, whatever the password, for this long.
    Wait(std::time::Duration),
}

/// Password checks at once: argon2 is ~50 ms of CPU and memory-hard, so a
/// burst of logins must not take the cores the agents' API needs.
static CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Checks a login: off the async threads, one at a time, at the same cost
/// for a name that does not exist (so timing does not tell which do), and
/// throttled per account and client address after failures.
pub async fn authenticate(
    state: &crate::AppState,
    from: Option<std::net::IpAddr>,
    username: &str,
    password: &str,
) -> Result<Checked, ApiError> {
    use crate::throttle::Key;
    let mut keys = vec![Key::Account(username)];
    keys.extend(from.map(Key::Address));
    if let Some(left) = state.logins.wait_left(&keys) {
        return Ok(Checked::Wait(left));
    }
    let row: Option<(i64, String)> = on_db!(&state.db, pool => {
        sqlx::query_as("SELECT id, password_hash FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(pool)
            .await
    })?;
    let (id, hash) = row.unzip();
    let matches = {
        let _turn = CHECKS
            .acquire()
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        // Failures counted while this one queued count for it too.
        if let Some(left) = state.logins.wait_left(&keys) {
            return Ok(Checked::Wait(left));
        }
        let password = password.to_string();
        tokio::task::spawn_blocking(move || {
            let hash = match &hash {
                Some(h) => h.as_str(),
                None => dummy_hash(),
            };
            verify_password(&password, hash)
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    };
    match id {
        Some(id) if matches => {
            state.logins.succeeded(username);
            Ok(Checked::User(id))
        }
        _ => {
            state.logins.failed(&keys);
            Ok(Checked::Wrong)
        }
    }
}

/// A hash no password is checked against successfully in practice, made
/// once (at start, see `warm_up`): what an unknown name's password is
/// verified against.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        hash_password(&new_token("")).unwrap_or_else(|_| {
            // Never a valid PHC string: verification fails, without the cost.
            String::new()
        })
    })
}

/// Makes the dummy hash now, so the first unknown name costs no more than
/// the others.
pub fn warm_up() {
    tokio::task::spawn_blocking(dummy_hash);
}

/// A new session for `user_id`: (cookie value, csrf token).
pub async fn create_session(db: &Db, user_id: i64) -> ApiResult<(String, String)> {
    let token = new_token("");
    let csrf = new_token("");
    on_db!(db, pool => {
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(sha256_hex(&token))
        .bind(user_id)
        .bind(&csrf)
        .bind(crate::now_ms() + SESSION_TTL_MS)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok((token, csrf))
}

/// Ends the session whose token hashes to `token_hash` (logging out).
pub async fn end_session(db: &Db, token_hash: &str) -> ApiResult<()> {
    on_db!(db, pool => {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(pool)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

pub fn session_cookie(token: &str, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL_MS / 1000,
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that makes a browser forget its session.
pub fn cleared_session_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; Max-Age=0")
}

fn cookie_value<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A logged-in person. Requests other than GET/HEAD must carry the session's
/// CSRF token in `X-CSRF-Token`.
#[derive(Clone)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: crate::roles::Role,
    pub csrf: String,
    pub session_hash: String,
}

impl FromRequestParts<Arc<AppState>> for User {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let user = User::from_session(parts, state).await?;
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if sent != Some(user.csrf.as_str()) {
                return Err(ApiError::forbidden(
                    "missing or wrong CSRF token (X-CSRF-Token)",
                ));
            }
        }
        Ok(user)
    }
}

/// A live session and its person, as stored.
#[derive(sqlx::FromRow)]
struct SessionRow {
    user_id: i64,
    csrf: String,
    username: String,
    role: String,
}

impl User {
    /// The session's person, without the CSRF check (pages check the
    /// token their forms carry instead); refused when their role may not
    /// make this request (`roles::needed`).
    pub async fn from_session(parts: &Parts, state: &AppState) -> ApiResult<Self> {
        let token = cookie_value(parts, SESSION_COOKIE)
            .ok_or_else(|| ApiError::unauthorized("log in first"))?;
        let hash = sha256_hex(token);
        let row: SessionRow = on_db!(&state.db, pool => {
            sqlx::query_as(
                "SELECT s.user_id, s.csrf, u.username, u.role FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2",
            )
            .bind(&hash)
            .bind(crate::now_ms())
            .fetch_optional(pool)
            .await
        })?
        .ok_or_else(|| ApiError::unauthorized("the session expired or is unknown: log in again"))?;
        let role = crate::roles::Role::parse(&row.role);
        let route = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map(axum::extract::MatchedPath::as_str);
        let needed = crate::roles::needed(&parts.method, route);
        if role < needed {
            return Err(ApiError::forbidden(format!(
                "this needs the {} role; you are {}",
                needed.as_str(),
                role.as_str()
            )));
        }
        Ok(User {
            id: row.user_id,
            username: row.username,
            role,
            csrf: row.csrf,
            session_hash: hash,
        })
    }

    /// Checks a form's CSRF token (constant time: it is a secret).
    pub fn check_csrf(&self, sent: &str) -> ApiResult<()> {
        use subtle::ConstantTimeEq;
        if bool::from(sent.as_bytes().ct_eq(self.csrf.as_bytes())) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "this form is out of date (missing or wrong CSRF token): reload the page and try again",
            ))
        }
    }
}

/// An agent, from `Authorization: Bearer <token>`.
pub struct Agent {
    pub id: i64,
    pub name: String,
}

impl FromRequestParts<Arc<AppState>> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("an agent token is required (Authorization: Bearer ...)")
            })?;
        let (id, name): (i64, String) = on_db!(&state.db, pool => {
            sqlx::query_as("SELECT id, name FROM agents WHERE token_hash = $1")
                .bind(sha256_hex(token.trim()))
                .fetch_optional(pool)
                .await
        })?
        .ok_or_else(|| ApiError::unauthorized("unknown agent token"))?;
        Ok(Agent { id, name })
    }
}
