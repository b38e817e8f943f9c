//! The configuration an agent runs, built from the database: its settings
//! and every poller assigned to it, with their targets and modules, secrets
//! decrypted (it goes to that agent only).

use crate::AppState;
use crate::auth::Agent;
use crate::error::ApiResult;
use dispatch_protocol::{AgentConfig, ModuleRef, ParamValue, PollerSpec};
use sqlx::Row;
use std::collections::BTreeMap;
use std::time::Duration;

/// `agent`'s configuration. Pollers without a target or without any
/// plugin version are left out (the agent could not run them).
pub async fn build(state: &AppState, agent: &Agent) -> ApiResult<AgentConfig> {
    let rows = sqlx::query(
        "SELECT p.*, pl.name AS plugin_name FROM pollers p JOIN poller_agents pa ON pa.poller_id = p.id
         JOIN plugins pl ON pl.id = p.plugin_id WHERE pa.agent_id = $1 AND p.target_id IS NOT NULL
         ORDER BY p.name",
    )
    .bind(agent.id)
    .fetch_all(&state.pool)
    .await?;
    let mut pollers = Vec::with_capacity(rows.len());
    for r in rows {
        let Some(module) = module_of(&state.pool, &r).await? else {
            continue;
        };
        let target = crate::target_store::load(state, r.get("target_id")).await?;
        pollers.push(spec(&r, module, target.target));
    }
    Ok(AgentConfig {
        protocol: dispatch_protocol::PROTOCOL_VERSION,
        agent: agent.name.clone(),
        settings: crate::api::settings::load(state, agent.id).await?,
        pollers,
    })
}

/// The pinned version, else the latest (None: the plugin has no version).
async fn module_of(
    pool: &sqlx::SqlitePool,
    r: &sqlx::sqlite::SqliteRow,
) -> Result<Option<ModuleRef>, sqlx::Error> {
    let version_id: Option<i64> = match r.get::<Option<i64>, _>("plugin_version_id") {
        Some(id) => Some(id),
        None => crate::api::plugins::latest_version(pool, r.get("plugin_id"))
            .await?
            .map(|(id, _, _)| id),
    };
    let Some(id) = version_id else {
        return Ok(None);
    };
    let v = sqlx::query("SELECT version, sha256, size FROM plugin_versions WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await?;
    Ok(Some(ModuleRef {
        version: v.get("version"),
        sha256: v.get("sha256"),
        size: u64::try_from(v.get::<i64, _>("size")).unwrap_or(0),
    }))
}

/// A poller row as the agent sees it.
fn spec(
    r: &sqlx::sqlite::SqliteRow,
    module: ModuleRef,
    target: dispatch_protocol::Target,
) -> PollerSpec {
    let params: BTreeMap<String, String> =
        serde_json::from_str(r.get("params_json")).unwrap_or_default();
    PollerSpec {
        id: r.get::<i64, _>("id").to_string(),
        name: r.get("name"),
        path: r.get::<String, _>("path").into(),
        plugin: r.get("plugin_name"),
        module: Some(module),
        params: params
            .into_iter()
            .map(|(k, v)| (k, ParamValue::Text(v)))
            .collect(),
        target,
        max_transfers: usize::try_from(r.get::<i64, _>("max_transfers")).unwrap_or(1),
        stability: stability(r.get("stability_secs")),
        excludes: split_excludes(r.get("excludes")),
        enabled: r.get("enabled"),
        enabled_at: r.get("enabled_at"),
    }
}

/// Seconds as stored; a value no duration holds (never accepted by the
/// API) falls back to the default 10 s.
pub fn stability(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::from_secs(10))
}

/// The stored comma-separated patterns.
pub fn split_excludes(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}
