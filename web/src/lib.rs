//! `dispatch-web`: the control plane. It holds the configuration (pollers,
//! agents, users), stores and versions poller modules, hands agents their
//! config and modules, and keeps the central transfer log.

mod agent_config;
pub mod api;
mod auth;
pub mod backup;
pub mod config;
mod crypto;
pub mod database;
pub mod db;
pub mod demo;
mod error;
mod metrics;
mod modules;
mod registry;
pub mod retention;
pub mod roles;
pub mod rollups;
mod target_store;
mod throttle;
mod ui;

use dispatch_runtime::{Runtime, RuntimeConfig};
use std::path::PathBuf;
use std::sync::Arc;

pub use auth::{CSRF_HEADER, SESSION_COOKIE, ensure_admin, ensure_local_agent};
pub use registry::register;

/// Everything a handler needs.
pub struct AppState {
    /// The database, of either backend.
    pub db: db::Db,
    pub data_dir: PathBuf,
    crypto: crypto::Crypto,
    /// Validates uploads: they run `describe()` in the same sandbox as agents.
    runtime: Arc<Runtime>,
    upload_limit: usize,
    upload_check: std::time::Duration,
    secure_cookies: bool,
    /// The config version; agents long-polling `/agent/config` wait on it.
    config_version: tokio::sync::watch::Sender<i64>,
    metrics: metrics::Metrics,
    /// Failed logins, for the backoff (per process).
    logins: throttle::Throttle,
    /// Configuration long-polls open, per agent (per process).
    long_polls: api::agent::LongPolls,
    /// Keeps `restore` from replacing the database under this process.
    _in_use: Option<std::fs::File>,
}

/// How the app is set up (see `config::WebConfig` for the CLI side).
pub struct Settings {
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; default:
    /// `<data_dir>/dispatch.sqlite`.
    pub database_url: Option<String>,
    /// Base64 secret key; default: the key file.
    pub secret_key: Option<String>,
    /// The key file; default: `secret.key` in the data dir.
    pub secret_key_file: Option<PathBuf>,
    pub upload_limit: usize,
    /// How long checking an upload (compiling it, `describe()`) may take.
    pub upload_check: std::time::Duration,
    pub secure_cookies: bool,
}

/// Milliseconds since the epoch (how the database keeps times).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl AppState {
    /// Opens (creating) the data dir and database, applies migrations.
    pub async fn open(s: Settings) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(s.data_dir.join("modules"))?;
        let url = database::url(&s.data_dir, s.database_url.as_deref());
        let (db, in_use) = database::open(&url).await?;
        let key_file = s
            .secret_key_file
            .clone()
            .unwrap_or_else(|| s.data_dir.join("secret.key"));
        let crypto = crypto::Crypto::load(s.secret_key.as_deref(), &key_file)?;
        crypto.check_against(&db).await?;
        modules::adopt_cached(&db, &s.data_dir).await?;
        target_store::move_inline_targets(&db, &crypto)
            .await
            .map_err(|e| anyhow::anyhow!("moving the pollers' targets into records: {e:#}"))?;
        let runtime = Arc::new(Runtime::new(RuntimeConfig {
            cache_dir: Some(s.data_dir.join("compiled")),
            serial_compilation: true,
            ..RuntimeConfig::default()
        })?);
        let version = config_version(&db).await?;
        let state = Arc::new(Self {
            db,
            data_dir: s.data_dir,
            crypto,
            runtime,
            upload_limit: s.upload_limit,
            upload_check: s.upload_check,
            secure_cookies: s.secure_cookies,
            config_version: tokio::sync::watch::channel(version).0,
            metrics: metrics::Metrics::default(),
            logins: throttle::Throttle::default(),
            long_polls: api::agent::LongPolls::default(),
            _in_use: in_use,
        });
        tokio::spawn(follow_config_version(Arc::downgrade(&state)));
        auth::warm_up();
        Ok(state)
    }

    /// Commits a change that agents' configuration depends on: bumps the
    /// config version in the same transaction, then wakes long polls.
    async fn commit_config_change(&self, mut tx: db::Tx) -> Result<(), sqlx::Error> {
        let version: i64 = on_tx!(&mut tx, conn => {
            sqlx::query_scalar(
                "UPDATE config_version SET version = version + 1 WHERE id = 1 RETURNING version",
            )
            .fetch_one(conn)
            .await
        })?;
        if let db::Tx::Postgres(tx) = &mut tx {
            // Delivered to every replica's listener when this commits.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CONFIG_CHANNEL)
                .bind(version.to_string())
                .execute(&mut **tx)
                .await?;
        }
        tx.commit().await?;
        self.saw_config_version(version);
        Ok(())
    }

    /// Wakes the long-polls for `version` unless a newer one was seen (this
    /// replica's commits and other replicas' arrive in any order).
    fn saw_config_version(&self, version: i64) {
        self.config_version.send_if_modified(|seen| {
            let newer = version > *seen;
            if newer {
                *seen = version;
            }
            newer
        });
    }
}

/// How often a replica reads the config version another replica may have
/// bumped: an agent long-polling this one hears of the change within this.
/// On SQLite this is how replicas hear of changes; on PostgreSQL they are
/// told at once (`LISTEN`), and the reading only catches a notification
/// lost while the listener reconnected.
fn config_recheck(db: &db::Db) -> std::time::Duration {
    match db {
        db::Db::Sqlite(_) => std::time::Duration::from_millis(400),
        db::Db::Postgres(_) => std::time::Duration::from_secs(5),
    }
}

/// The PostgreSQL channel a committed configuration change is announced
/// on, with the new version as payload.
const CONFIG_CHANNEL: &str = "dispatch_config";

/// Wakes this replica's long-polls when another process sharing the
/// database committed a configuration change. Ends with the state.
async fn follow_config_version(state: std::sync::Weak<AppState>) {
    let (period, mut listener) = match state.upgrade() {
        Some(s) => (config_recheck(&s.db), listen(&s.db).await),
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let told = async {
            match listener.as_mut() {
                Some(l) => match l.recv().await {
                    Ok(n) => n.payload().parse().ok(),
                    Err(e) => {
                        // It reconnects at the next call: not in a loop.
                        tracing::warn!("listening for configuration changes: {e}");
                        tokio::time::sleep(period).await;
                        None
                    }
                },
                None => std::future::pending().await,
            }
        };
        let version = tokio::select! {
            v = told => v,
            _ = tick.tick() => None,
        };
        let Some(state) = state.upgrade() else { return };
        let version = match version {
            Some(v) => Ok(v),
            None => config_version(&state.db).await,
        };
        match version {
            Ok(v) => state.saw_config_version(v),
            Err(e) => tracing::warn!("cannot read the config version: {e}"),
        }
    }
}

/// A listener on the configuration channel (PostgreSQL only). Without one
/// (it could not connect) the periodic reading still wakes long-polls.
async fn listen(db: &db::Db) -> Option<sqlx::postgres::PgListener> {
    let db::Db::Postgres(pool) = db else {
        return None;
    };
    let mut listener = match sqlx::postgres::PgListener::connect_with(pool).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("cannot listen for configuration changes: {e}");
            return None;
        }
    };
    match listener.listen(CONFIG_CHANNEL).await {
        Ok(()) => Some(listener),
        Err(e) => {
            tracing::warn!("cannot listen for configuration changes: {e}");
            None
        }
    }
}

async fn config_version(db: &db::Db) -> Result<i64, sqlx::Error> {
    on_db!(db, pool => {
        sqlx::query_scalar("SELECT version FROM config_version WHERE id = 1")
            .fetch_one(pool)
            .await
    })
}

/// The whole HTTP app.
pub fn router(state: Arc<AppState>) -> axum::Router {
    let pages = ui::router(state.upload_limit).with_state(state.clone());
    api::router(state).merge(pages).fallback(ui::not_found)
}
