//! The plugin registry: validate an uploaded component in the sandbox,
//! store it content-addressed, record it as a version of the plugin its
//! `describe()` names.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::on_tx;
use axum::http::StatusCode;
use dispatch_runtime::cache::sha256_hex;

/// What an upload became.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Stored {
    pub plugin: String,
    pub version: String,
    pub sha256: String,
    pub size: i64,
    pub wit_version: String,
    /// False when the same bytes were already stored (one version).
    pub created: bool,
}

fn semver_ok(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// One upload is checked at a time, however many people upload: compiling
/// is CPU work that agents' requests must not queue behind.
static CHECKING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Compiles `bytes` and runs `describe()` (which has the poll's deadline)
/// off the async threads, one upload at a time, within the upload check
/// limit. A compile cannot be interrupted: one past the limit is refused
/// at once but finishes on its thread, still holding the one slot (so the
/// CPU it takes stays bounded), and leaves no artifact behind.
async fn check(
    state: &AppState,
    bytes: std::sync::Arc<Vec<u8>>,
    sha256: &str,
) -> ApiResult<Result<dispatch_runtime::Plugin, dispatch_runtime::LoadError>> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let limit = state.upload_check;
    let busy = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "another upload is being checked: try again in a moment",
        )
    };
    let permit = tokio::time::timeout(limit, CHECKING.acquire())
        .await
        .map_err(|_| busy())?
        .map_err(|_| busy())?;
    let abandoned = std::sync::Arc::new(AtomicBool::new(false));
    let task = {
        let (runtime, abandoned, sha256) =
            (state.runtime.clone(), abandoned.clone(), sha256.to_string());
        tokio::task::spawn_blocking(move || {
            let _slot = permit;
            let loaded = runtime.load_bytes(&bytes, "upload");
            if abandoned.load(Ordering::SeqCst) {
                runtime.forget_compiled(&sha256);
            }
            loaded
        })
    };
    match tokio::time::timeout(limit, task).await {
        Ok(joined) => {
            joined.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
        }
        Err(_) => {
            abandoned.store(true, Ordering::SeqCst);
            state.runtime.forget_compiled(sha256);
            Err(ApiError::bad(
                "file",
                format!(
                    "checking the upload (compiling it, describe()) took longer than {} s: refused",
                    limit.as_secs()
                ),
            ))
        }
    }
}

/// Validates `bytes` and stores them as a plugin version.
pub async fn store(state: &AppState, bytes: Vec<u8>, uploaded_by: &str) -> ApiResult<Stored> {
    let sha256 = sha256_hex(&bytes);
    // A refused upload leaves no compiled artifact behind (35 MB for a
    // Python plugin). Bytes already stored are never refused (below), so
    // this never drops a stored version's artifact.
    let refused = |e: ApiError| {
        state.runtime.forget_compiled(&sha256);
        e
    };
    let bytes = std::sync::Arc::new(bytes);
    let plugin = check(state, bytes.clone(), &sha256).await?.map_err(|e| {
        refused(ApiError::bad(
            "file",
            e.to_string().replacen("plugin upload", "the upload", 1),
        ))
    })?;
    let info = plugin.info().clone();
    if !semver_ok(&info.version) {
        return Err(refused(ApiError::bad(
            "file",
            format!(
                "describe() gives version `{}`, which is not semver (e.g. 1.2.0)",
                info.version
            ),
        )));
    }
    if info.name.is_empty()
        || !info
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(refused(ApiError::bad(
            "file",
            format!(
                "describe() gives the name `{}`: use letters, digits, `_` or `-`",
                info.name
            ),
        )));
    }
    let mut tx = state.db.begin_write().await?;
    let known: Option<(String, String, i64, String)> = on_tx!(&mut tx, conn => {
        sqlx::query_as(
            "SELECT p.name, v.version, v.size, v.wit_version FROM plugin_versions v JOIN plugins p ON p.id = v.plugin_id WHERE v.sha256 = $1",
        )
        .bind(&sha256)
        .fetch_optional(conn)
        .await
    })?;
    if let Some((plugin, version, size, wit_version)) = known {
        return Ok(Stored {
            plugin,
            version,
            sha256,
            size,
            wit_version,
            created: false,
        });
    }
    let (plugin_id, taken): (i64, Option<String>) = on_tx!(&mut tx, conn => {
        sqlx::query(
            "INSERT INTO plugins (name, created_at) VALUES ($1, $2) ON CONFLICT(name) DO NOTHING",
        )
        .bind(&info.name)
        .bind(crate::now_ms())
        .execute(&mut *conn)
        .await?;
        let plugin_id: i64 = sqlx::query_scalar("SELECT id FROM plugins WHERE name = $1")
            .bind(&info.name)
            .fetch_one(&mut *conn)
            .await?;
        let taken = sqlx::query_scalar(
            "SELECT sha256 FROM plugin_versions WHERE plugin_id = $1 AND version = $2",
        )
        .bind(plugin_id)
        .bind(&info.version)
        .fetch_optional(&mut *conn)
        .await?;
        (plugin_id, taken)
    });
    if taken.is_some() {
        return Err(refused(ApiError::conflict(
            Some("file"),
            format!(
                "plugin `{}` already has a version {} with other content: raise the version in describe()",
                info.name, info.version
            ),
        )));
    }
    let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
    let params = serde_json::to_string(&info.params)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    on_tx!(&mut tx, conn => {
        sqlx::query(
            "INSERT INTO plugin_versions (plugin_id, version, sha256, size, wit_version, description, params_json, uploaded_at, uploaded_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(plugin_id)
        .bind(&info.version)
        .bind(&sha256)
        .bind(size)
        .bind(plugin.wit_version())
        .bind(&info.description)
        .bind(&params)
        .bind(crate::now_ms())
        .bind(uploaded_by)
        .execute(conn)
        .await
        .map(|_| ())
    })?;
    crate::modules::put(&mut tx, &sha256, &bytes).await?;
    state.commit_config_change(tx).await?;
    // Served from the database otherwise; the cache saves that read.
    let bytes = std::sync::Arc::try_unwrap(bytes).unwrap_or_else(|shared| (*shared).clone());
    // Written before the answer, as the uploader may fetch it at once.
    let _ =
        crate::modules::cache_in_background(state.data_dir.clone(), sha256.clone(), bytes).await;
    tracing::info!(plugin = %info.name, version = %info.version, %sha256, "plugin version stored");
    Ok(Stored {
        plugin: info.name,
        version: info.version,
        sha256,
        size,
        wit_version: plugin.wit_version().to_string(),
        created: true,
    })
}

/// Registers a `.wasm` file (the built-in pollers at start-up). A build
/// whose version is already registered with other bytes (the built-ins
/// rebuilt without a version bump, e.g. for a newer contract) is not an
/// error: the registered one stays, with a warning, so an existing
/// database still starts.
pub async fn register(
    state: &AppState,
    source: &dispatch_runtime::builtin::Source,
) -> anyhow::Result<String> {
    let label = source.label();
    let bytes = source
        .bytes()
        .map_err(|e| anyhow::anyhow!("{label}: {e}"))?
        .into_owned();
    match store(state, bytes, "dispatch").await {
        Ok(stored) => Ok(format!("{} {}", stored.plugin, stored.version)),
        Err(e) if e.status == StatusCode::CONFLICT => {
            tracing::warn!(
                "{label}: not registered, the registered build of this version stays: {}",
                e.message
            );
            Ok(format!("{label} (kept the registered build)"))
        }
        Err(e) => Err(anyhow::anyhow!("{label}: {}", e.message)),
    }
}
