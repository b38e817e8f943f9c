//! The configuration an agent runs, built from the database: its settings
//! and every poller assigned to it, with their targets and modules, secrets
//! decrypted (it goes to that agent only).

use crate::AppState;
use crate::auth::Agent;
use crate::db::Db;
use crate::error::ApiResult;
use crate::on_db;
use dispatch_protocol::{AgentConfig, ModuleRef, ParamValue, PollerSpec};
use std::collections::BTreeMap;
use std::time::Duration;

/// A poller row as the agent's configuration needs it.
#[derive(sqlx::FromRow)]
struct PollerRow {
    id: i64,
    name: String,
    path: String,
    plugin_id: i64,
    plugin_name: String,
    plugin_version_id: Option<i64>,
    params_json: String,
    target_id: i64,
    excludes: String,
    max_transfers: i64,
    stability_secs: f64,
    enabled: bool,
    enabled_at: Option<i64>,
}

/// `agent`'s configuration. Pollers without a target or without any
/// plugin version are left out (the agent could not run them).
pub async fn build(state: &AppState, agent: &Agent) -> ApiResult<AgentConfig> {
    let rows = on_db!(&state.db, pool => {
        sqlx::query_as::<_, PollerRow>(
            "SELECT p.id, p.name, p.path, p.plugin_id, pl.name AS plugin_name, p.plugin_version_id,
                p.params_json, p.target_id, p.excludes, p.max_transfers, p.stability_secs,
                p.enabled, p.enabled_at
             FROM pollers p JOIN poller_agents pa ON pa.poller_id = p.id
             JOIN plugins pl ON pl.id = p.plugin_id WHERE pa.agent_id = $1 AND p.target_id IS NOT NULL
             ORDER BY p.name",
        )
        .bind(agent.id)
        .fetch_all(pool)
        .await
    })?;
    let mut pollers = Vec::with_capacity(rows.len());
    for r in rows {
        let Some(module) = module_of(&state.db, &r).await? else {
            continue;
        };
        let target = crate::target_store::load(state, r.target_id).await?;
        pollers.push(spec(r, module, target.target));
    }
    Ok(AgentConfig {
        protocol: dispatch_protocol::PROTOCOL_VERSION,
        agent: agent.name.clone(),
        settings: crate::api::settings::load(state, agent.id).await?,
        pollers,
    })
}

/// The pinned version, else the latest (None: the plugin has no version).
async fn module_of(db: &Db, r: &PollerRow) -> Result<Option<ModuleRef>, sqlx::Error> {
    let version_id: Option<i64> = match r.plugin_version_id {
        Some(id) => Some(id),
        None => crate::api::plugins::latest_version(db, r.plugin_id)
            .await?
            .map(|(id, _, _)| id),
    };
    let Some(id) = version_id else {
        return Ok(None);
    };
    let (version, sha256, size): (String, String, i64) = on_db!(db, pool => {
        sqlx::query_as("SELECT version, sha256, size FROM plugin_versions WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
    })?;
    Ok(Some(ModuleRef {
        version,
        sha256,
        size: u64::try_from(size).unwrap_or(0),
    }))
}

/// A poller row as the agent sees it.
fn spec(r: PollerRow, module: ModuleRef, target: dispatch_protocol::Target) -> PollerSpec {
    let params: BTreeMap<String, String> = serde_json::from_str(&r.params_json).unwrap_or_default();
    PollerSpec {
        id: r.id.to_string(),
        name: r.name,
        path: r.path.into(),
        plugin: r.plugin_name,
        module: Some(module),
        params: params
            .into_iter()
            .map(|(k, v)| (k, ParamValue::Text(v)))
            .collect(),
        target,
        max_transfers: usize::try_from(r.max_transfers).unwrap_or(1),
        stability: stability(r.stability_secs),
        excludes: split_excludes(&r.excludes),
        enabled: r.enabled,
        enabled_at: r.enabled_at,
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
