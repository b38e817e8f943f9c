//! Targets as the database keeps them: the settings as JSON without their
//! secrets, the secrets apart as one AEAD ciphertext of `{field: value}`.
//! Also moves the pollers' old inline target columns into targets, once.

use crate::AppState;
use crate::crypto::Crypto;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::on_db;
use axum::http::StatusCode;
use dispatch_protocol::{Secret, Target};
use serde_json::Value;
use sqlx::Row;
use std::collections::BTreeMap;

/// The associated data of a target's secrets (a ciphertext cannot be
/// moved to another column).
const SECRETS_AAD: &str = "targets.secrets_enc";

/// Every name a secret setting has in some kind (checked against
/// `Target::secrets` in the tests): a form or a body may leave them out.
pub const SECRET_NAMES: [&str; 5] = [
    "password",
    "ssh_key",
    "private_key",
    "passphrase",
    "secret_key",
];

/// A stored target, its secrets decrypted.
pub struct StoredTarget {
    pub id: i64,
    pub name: String,
    pub target: Target,
}

/// The settings without secrets, as a JSON object: secret fields removed
/// (never a value, not even an empty one).
pub fn public_json(target: &Target) -> Value {
    let mut t = target.clone();
    for (field, _) in target.secrets() {
        t.set_secret(field, None);
    }
    let mut v = serde_json::to_value(&t).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        for (field, _) in target.secrets() {
            obj.remove(field);
        }
    }
    v
}

/// Which secret fields are set, by name.
pub fn secrets_set(target: &Target) -> BTreeMap<String, bool> {
    target
        .secrets()
        .into_iter()
        .map(|(f, v)| (f.to_string(), v.is_some_and(|s| !s.expose().is_empty())))
        .collect()
}

/// The secrets that are set, encrypted as one blob (None: no secret).
pub fn seal_secrets(crypto: &Crypto, target: &Target) -> Option<Vec<u8>> {
    let map: BTreeMap<&str, &str> = target
        .secrets()
        .into_iter()
        .filter_map(|(f, v)| v.map(|s| (f, s.expose())))
        .filter(|(_, s)| !s.is_empty())
        .collect();
    if map.is_empty() {
        return None;
    }
    let json = serde_json::to_string(&map).unwrap_or_default();
    Some(crypto.encrypt(SECRETS_AAD, &json))
}

/// A target from its stored columns, secrets put back.
pub fn open(
    crypto: &Crypto,
    settings_json: &str,
    secrets_enc: Option<&[u8]>,
) -> anyhow::Result<Target> {
    let mut target = parse_public(settings_json)?;
    if let Some(blob) = secrets_enc {
        let map: BTreeMap<String, String> =
            serde_json::from_str(&crypto.decrypt(SECRETS_AAD, blob)?)
                .map_err(|e| anyhow::anyhow!("stored secrets are damaged: {e}"))?;
        for (field, value) in map {
            target.set_secret(&field, Some(Secret::new(value)));
        }
    }
    Ok(target)
}

/// A target from its stored settings alone (no secret: for summaries).
pub fn parse_public(settings_json: &str) -> anyhow::Result<Target> {
    let json = serde_json::from_str(settings_json)
        .map_err(|e| anyhow::anyhow!("stored settings are not JSON: {e}"))?;
    let mut target: Target = serde_json::from_value(with_placeholders(json))
        .map_err(|e| anyhow::anyhow!("stored settings do not fit a target: {e}"))?;
    clear_empty_secrets(&mut target);
    Ok(target)
}

/// Secret fields missing from `v` (an object) set to `""`, so a required
/// one deserializes; [`clear_empty_secrets`] then makes the optional ones
/// `None` again.
pub fn with_placeholders(mut v: Value) -> Value {
    if let Some(obj) = v.as_object_mut() {
        for name in SECRET_NAMES {
            if obj.get(name).is_none_or(Value::is_null) {
                obj.insert(name.into(), Value::String(String::new()));
            }
        }
    }
    v
}

/// An empty secret is no secret.
pub fn clear_empty_secrets(target: &mut Target) {
    let empty: Vec<&'static str> = target
        .secrets()
        .into_iter()
        .filter(|(_, v)| v.is_some_and(|s| s.expose().is_empty()))
        .map(|(f, _)| f)
        .collect();
    for field in empty {
        target.set_secret(field, None);
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// One target by id, secrets decrypted.
pub async fn load(state: &AppState, id: i64) -> ApiResult<StoredTarget> {
    let (name, settings, secrets) = on_db!(&state.db, pool => {
        sqlx::query_as::<_, (String, String, Option<Vec<u8>>)>(
            "SELECT name, settings_json, secrets_enc FROM targets WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await
    })?
    .ok_or_else(|| ApiError::not_found(&format!("target {id}")))?;
    let target = open(&state.crypto, &settings, secrets.as_deref())
        .map_err(|e| internal(format!("target `{name}`: {e}")))?;
    Ok(StoredTarget { id, name, target })
}

/// The old inline columns of pollers without a target become a target of
/// their own, named after the poller. A poller whose secrets cannot be
/// decrypted (another key) is left for the next start, with a warning.
/// SQLite only: those columns predate PostgreSQL support, so no PostgreSQL
/// database has a poller without a target.
pub async fn move_inline_targets(db: &Db, crypto: &Crypto) -> anyhow::Result<()> {
    let Db::Sqlite(pool) = db else {
        return Ok(());
    };
    let rows = sqlx::query("SELECT * FROM pollers WHERE target_id IS NULL")
        .fetch_all(pool)
        .await?;
    for r in rows {
        let poller: String = r.get("name");
        let target = match inline_target(crypto, &r) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(
                    poller,
                    "cannot move the poller's target into a record: {e:#}"
                );
                continue;
            }
        };
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let name = free_name(&mut tx, &poller).await?;
        let now = crate::now_ms();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO targets (name, kind, settings_json, secrets_enc, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&name)
        .bind(target.kind())
        .bind(public_json(&target).to_string())
        .bind(seal_secrets(crypto, &target))
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("UPDATE pollers SET target_id = $1 WHERE id = $2")
            .bind(id)
            .bind(r.get::<i64, _>("id"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(
            poller,
            target = name,
            "moved the poller's target into a record"
        );
    }
    Ok(())
}

/// `base`, or `base_2`, `base_3`... whichever no target has.
async fn free_name(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    base: &str,
) -> Result<String, sqlx::Error> {
    let mut name = base.to_string();
    for n in 2.. {
        let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM targets WHERE name = $1")
            .bind(&name)
            .fetch_optional(&mut **tx)
            .await?;
        if taken.is_none() {
            break;
        }
        name = format!("{base}_{n}");
    }
    Ok(name)
}

/// The target the old columns described (`aspera` or `local`); the old
/// columns encrypted each secret with its field name as associated data.
fn inline_target(crypto: &Crypto, r: &sqlx::sqlite::SqliteRow) -> anyhow::Result<Target> {
    let kind: String = r.get("transfer_kind");
    let speed: f64 = r.get("speed_mbps");
    let destination: String = r.get("destination");
    let json = match kind.as_str() {
        "local" => serde_json::json!({
            "kind": "local", "destination": destination, "rate_limit_mbps": speed,
        }),
        "aspera" => serde_json::json!({
            "kind": "aspera", "host": r.get::<String, _>("host"),
            "user": r.get::<String, _>("username"), "port": r.get::<i64, _>("port"),
            "destination": destination, "rate_limit_mbps": speed,
            "encrypt": r.get::<bool, _>("encrypt"),
        }),
        other => anyhow::bail!("unknown transfer kind `{other}`"),
    };
    let mut target: Target = serde_json::from_value(with_placeholders(json))?;
    clear_empty_secrets(&mut target);
    for (column, field) in [
        ("password_enc", "password"),
        ("ssh_key_enc", "ssh_key"),
        ("passphrase_enc", "passphrase"),
    ] {
        if let Some(blob) = r.get::<Option<Vec<u8>>, _>(column) {
            let value = crypto.decrypt(field, &blob)?;
            target.set_secret(field, Some(Secret::new(value)));
        }
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kind: &str) -> Target {
        let json = serde_json::json!({"kind": kind, "destination": "/out", "url": "http://x",
            "host": "h", "user": "u", "username": "u", "endpoint": "http://e", "bucket": "b",
            "access_key": "a"});
        serde_json::from_value(with_placeholders(json)).expect("a target")
    }

    #[test]
    fn every_secret_name_is_known() {
        for kind in dispatch_protocol::target::KINDS {
            for (field, _) in sample(kind).secrets() {
                assert!(SECRET_NAMES.contains(&field), "{kind}.{field}");
            }
        }
    }

    #[test]
    fn secrets_never_reach_the_public_json() {
        let mut t = sample("sftp");
        t.set_secret("password", Some(Secret::new("hunter2")));
        let v = public_json(&t);
        assert!(!v.to_string().contains("hunter2"));
        assert!(v.get("password").is_none());
        assert!(secrets_set(&t)["password"]);
        assert!(!secrets_set(&t)["private_key"]);
    }

    #[test]
    fn sealed_secrets_open_again() {
        let dir = tempfile::tempdir().expect("tmp");
        let crypto = Crypto::load(None, &dir.path().join("key")).expect("key");
        let mut t = sample("s3");
        t.set_secret("secret_key", Some(Secret::new("s3cr3t")));
        let blob = seal_secrets(&crypto, &t);
        let back = open(&crypto, &public_json(&t).to_string(), blob.as_deref()).expect("opens");
        assert_eq!(back, t);
    }
}
