//! The demo of the one-command start (`cargo xtask up`): two pollers
//! (`dir`, `google`) watching directories under the demo directory, each
//! with a local target of its own (an agent refuses two pollers delivering
//! into one folder), assigned to the agent running beside the web app. Made once
//! per database (table `seeds`): what a person changes or deletes
//! afterwards stays so, and records already named like the demo's are
//! left as they are.

use crate::AppState;
use anyhow::Context;
use dispatch_protocol::Target;
use dispatch_protocol::target::LocalTarget;
use std::path::{Path, PathBuf};

/// The demo pollers: (poller, target, built-in plugin); each watches
/// `<demo dir>/outgoing/<plugin>` and delivers to `<demo dir>/delivered/<plugin>`.
pub const POLLERS: [(&str, &str, &str); 2] = [
    ("demo_dir", "demo-dir", "dir"),
    ("demo_google", "demo-google", "google"),
];
/// The file that tells both demo pollers a folder is complete.
pub const MARKER: &str = "READY";

use crate::db::Tx;
use crate::{on_db, on_tx};

/// Seeds the demo for `agent` (which must exist) under `dir`, unless it was
/// seeded before. True when it was seeded now.
pub async fn seed(state: &AppState, agent: &str, dir: &Path) -> anyhow::Result<bool> {
    let done: Option<i64> = on_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT done_at FROM seeds WHERE name = 'demo'")
            .fetch_optional(pool)
            .await
    })
    .context("reading whether the demo was seeded")?;
    if done.is_some() {
        return Ok(false);
    }
    let root = directories(dir)?;
    let agent_id: i64 = on_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT id FROM agents WHERE name = $1")
            .bind(agent)
            .fetch_optional(pool)
            .await
    })?
    .with_context(|| format!("the demo's agent `{agent}` does not exist"))?;
    let mut tx = state.db.begin_write().await?;
    for (name, target_name, plugin) in POLLERS {
        let target_id = target(&mut tx, target_name, &root.join("delivered").join(plugin)).await?;
        let path = root.join("outgoing").join(plugin);
        poller(&mut tx, name, plugin, &path, target_id, agent_id).await?;
    }
    on_tx!(&mut tx, conn => {
        sqlx::query("INSERT INTO seeds (name, done_at) VALUES ('demo', $1)")
            .bind(crate::now_ms())
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    state
        .commit_config_change(tx)
        .await
        .context("saving the demo")?;
    tracing::info!(dir = %root.display(), agent, "demo target and pollers created");
    Ok(true)
}

/// Creates the demo's directories; returns the root as an absolute path
/// (an agent's configuration from the web app takes no relative path).
fn directories(dir: &Path) -> anyhow::Result<PathBuf> {
    for sub in [
        "delivered/dir",
        "delivered/google",
        "outgoing/dir",
        "outgoing/google",
    ] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d)
            .with_context(|| format!("--demo-dir: creating {}", d.display()))?;
    }
    std::fs::canonicalize(dir).with_context(|| format!("--demo-dir {}", dir.display()))
}

/// A local target of the demo (an existing one of that name is used as is).
async fn target(tx: &mut Tx, name: &str, destination: &Path) -> anyhow::Result<i64> {
    let t = Target::Local(LocalTarget {
        destination: destination.to_path_buf(),
        verify_sha256: false,
        rate_limit_mbps: None,
        fsync: true,
    });
    let now = crate::now_ms();
    let json = serde_json::to_string(&t).context("the demo target as JSON")?;
    // A local target has no secrets: its settings are all of it.
    Ok(on_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO targets (name, kind, settings_json, secrets_enc, created_at, updated_at)
             VALUES ($1, $2, $3, NULL, $4, $5) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(t.kind())
        .bind(&json)
        .bind(now)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        sqlx::query_scalar("SELECT id FROM targets WHERE name = $1")
            .bind(name)
            .fetch_one(conn)
            .await?
    }))
}

/// One enabled demo poller, assigned to the agent; one of that name
/// already there is left alone.
async fn poller(
    tx: &mut Tx,
    name: &str,
    plugin: &str,
    path: &Path,
    target_id: i64,
    agent_id: i64,
) -> anyhow::Result<()> {
    let plugin_id: i64 = on_tx!(&mut *tx, conn => {
        sqlx::query_scalar("SELECT id FROM plugins WHERE name = $1")
            .bind(plugin)
            .fetch_optional(conn)
            .await
    })?
    .with_context(|| {
        format!("the demo needs the built-in plugin `{plugin}`: register it (--register-plugins)")
    })?;
    let path = path
        .to_str()
        .with_context(|| format!("--demo-dir {}: not UTF-8", path.display()))?;
    let now = crate::now_ms();
    let params = serde_json::json!({ "markers": MARKER }).to_string();
    on_tx!(tx, conn => {
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO pollers (name, path, plugin_id, params_json, transfer_kind, excludes,
            max_transfers, stability_secs, enabled, enabled_at, target_id, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'local', '*.tmp', 3, 5, TRUE, $5, $6, $7, $8)
         ON CONFLICT (name) DO NOTHING RETURNING id",
    )
    .bind(name)
    .bind(path)
    .bind(plugin_id)
    .bind(&params)
    .bind(now)
    .bind(target_id)
    .bind(now)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = id {
        sqlx::query("INSERT INTO poller_agents (poller_id, agent_id) VALUES ($1, $2)")
            .bind(id)
            .bind(agent_id)
            .execute(conn)
            .await?;
    }
    });
    Ok(())
}
