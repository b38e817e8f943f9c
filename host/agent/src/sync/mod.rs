//! Connected mode: the agent takes its whole configuration from the web
//! app. It long-polls the configuration (ETag), fetches each module it
//! lacks into its module store, applies the configuration as a diff, and
//! keeps the last one (0600, secrets included) so a restart while the web
//! app is down runs the last known setup. Reports go out beside it.

pub mod modules;
pub(crate) mod report;

use crate::engine::{Engine, Local};
use crate::journal::Journal;
use crate::run::{self, RunOptions};
use anyhow::Context as _;
use dispatch_protocol::{AgentConfig, Secret};
use modules::ModuleStore;
use report::{ConfigStatus, Reporter};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long one configuration request waits for a change.
const LONG_POLL_SECS: u64 = 30;
/// Connected agents beat every second: commands ride on the answers.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// The web app's agent API, with this agent's token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    pub(crate) base: String,
    token: Secret,
}

impl Client {
    pub fn new(base: &str, token: Secret) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
        })
    }

    async fn check(path: &str, res: reqwest::Response) -> Result<reqwest::Response, String> {
        if res.status().is_success() || res.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(res);
        }
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        Err(format!(
            "{path}: {status}: {}",
            text.chars().take(300).collect::<String>()
        ))
    }

    pub(crate) async fn get(&self, path: &str) -> Result<reqwest::Response, String> {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(self.token.expose())
            .timeout(Duration::from_secs(300))
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        Self::check(path, res).await
    }

    /// POSTs `body` as JSON; the answer's bytes.
    pub(crate) async fn post<T: Serialize>(&self, path: &str, body: &T) -> Result<Vec<u8>, String> {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.token.expose())
            .timeout(Duration::from_secs(30))
            .json(body)
            .send()
            .await
            .map_err(|e| format!("POST {path}: {e}"))?;
        let res = Self::check(path, res).await?;
        let bytes = res.bytes().await.map_err(|e| format!("POST {path}: {e}"))?;
        Ok(bytes.to_vec())
    }

    /// The configuration if it is not `etag` (waiting up to `wait` s for a
    /// change); `None` when unchanged.
    async fn config(
        &self,
        etag: Option<&str>,
        wait: u64,
    ) -> Result<Option<(String, AgentConfig)>, String> {
        const PATH: &str = "/api/v1/agent/config";
        let mut req = self
            .http
            .get(format!("{}{PATH}?wait={wait}", self.base))
            .bearer_auth(self.token.expose())
            .timeout(Duration::from_secs(wait + 30));
        if let Some(tag) = etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, tag);
        }
        let res = req.send().await.map_err(|e| format!("GET {PATH}: {e}"))?;
        let res = Self::check(PATH, res).await?;
        if res.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let tag = res
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = res.bytes().await.map_err(|e| format!("GET {PATH}: {e}"))?;
        let cfg = serde_json::from_slice(&bytes)
            .map_err(|e| format!("GET {PATH}: not a configuration: {e}"))?;
        Ok(Some((tag, cfg)))
    }
}

/// How `dispatch-agent run --server` is set up.
#[derive(Debug, Clone)]
pub struct Connected {
    pub server: String,
    pub token: Secret,
    pub state_dir: PathBuf,
    pub host: String,
}

/// The last configuration, kept for a start while the web app is down.
#[derive(Serialize, Deserialize)]
struct Saved {
    etag: String,
    config: AgentConfig,
}

fn saved_path(state_dir: &Path) -> PathBuf {
    state_dir.join("config.json")
}

fn load_saved(state_dir: &Path) -> Option<Saved> {
    let text = std::fs::read(saved_path(state_dir)).ok()?;
    serde_json::from_slice(&text)
        .map_err(|e| tracing::warn!("ignoring the saved configuration: {e}"))
        .ok()
}

/// Written 0600: it holds the targets' secrets.
fn save(state_dir: &Path, saved: &Saved) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let mut tmp = tempfile::NamedTempFile::new_in(state_dir)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    tmp.write_all(&serde_json::to_vec(saved).map_err(std::io::Error::other)?)?;
    tmp.as_file().sync_all()?;
    tmp.persist(saved_path(state_dir)).map_err(|e| e.error)?;
    Ok(())
}

/// Runs the agent in connected mode until a signal (or idleness).
pub async fn run_connected(c: Connected, options: RunOptions) -> anyhow::Result<()> {
    crate::config::check_report_url(&c.server).map_err(|e| anyhow::anyhow!("--server: {e}"))?;
    create_private_dir(&c.state_dir)?;
    let journal = Journal::open(&c.state_dir.join("journal.sqlite"), &c.host).await?;
    let store = ModuleStore::open(&c.state_dir.join("modules"))?;
    let engine = Engine::new(
        Local {
            host: c.host.clone(),
            cache_dir: Some(c.state_dir.join("cache")),
            state_dir: c.state_dir.clone(),
            module_dir: Some(store.dir().to_path_buf()),
        },
        journal,
    )?;
    engine.keep_journal_pruned(true);
    let client = Client::new(&c.server, c.token.clone())?;
    let status = Arc::new(Mutex::new(ConfigStatus::default()));
    let mut etag = None;
    if let Some(saved) = load_saved(&c.state_dir) {
        tracing::info!("running the last configuration until the web app answers");
        let applied = engine.apply(&saved.config, BTreeMap::new()).await;
        note(&status, Some(saved.etag.clone()), &applied.errors);
        etag = Some(saved.etag);
    }
    tracing::info!(server = %c.server, host = %c.host, state = %c.state_dir.display(), "agent started (connected)");
    let stop_reporter = CancellationToken::new();
    let reporter = Reporter::new(
        client.clone(),
        engine.clone(),
        status.clone(),
        HEARTBEAT,
        HEARTBEAT,
    );
    let reporter = tokio::spawn(reporter.run(stop_reporter.clone()));
    let stop_sync = CancellationToken::new();
    let sync = Sync {
        client,
        engine: engine.clone(),
        store,
        state_dir: c.state_dir.clone(),
        status,
    };
    let sync = tokio::spawn(sync.run(etag, stop_sync.clone()));
    let reason = run::wait_for_end(&engine, options).await;
    tracing::info!("{reason}: stopping");
    stop_sync.cancel();
    let _ = sync.await;
    engine.shutdown().await;
    // The reporter goes last, so the final events reach the web app.
    stop_reporter.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), reporter).await;
    Ok(())
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the state directory {}", dir.display()))
}

fn note(status: &Mutex<ConfigStatus>, etag: Option<String>, errors: &BTreeMap<String, String>) {
    let mut s = status.lock().unwrap_or_else(PoisonError::into_inner);
    s.etag = etag;
    s.error = (!errors.is_empty()).then(|| errors.values().cloned().collect::<Vec<_>>().join("; "));
}

/// The configuration loop.
struct Sync {
    client: Client,
    engine: Arc<Engine>,
    store: ModuleStore,
    state_dir: PathBuf,
    status: Arc<Mutex<ConfigStatus>>,
}

impl Sync {
    async fn run(self, mut etag: Option<String>, stop: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        let mut last_error: Option<String> = None;
        loop {
            let got = tokio::select! {
                r = self.client.config(etag.as_deref(), LONG_POLL_SECS) => r,
                () = stop.cancelled() => return,
            };
            let wait = match got {
                Ok(None) => None,
                Ok(Some((tag, cfg))) => match self.apply(&tag, &cfg).await {
                    // A module to fetch again: the same ETag is asked again.
                    Err(e) => Some(e),
                    Ok(()) => {
                        etag = Some(tag);
                        None
                    }
                },
                Err(e) => Some(e),
            };
            match wait {
                None => {
                    if last_error.take().is_some() {
                        tracing::info!("configuration from the web app again");
                    }
                    backoff = Duration::from_secs(1);
                }
                Some(e) => {
                    if last_error.as_deref() != Some(e.as_str()) {
                        tracing::warn!("configuration: {e} (will retry)");
                    }
                    last_error = Some(e);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stop.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Fetches what is missing, applies, saves. Err when a module could not
    /// be had (its poller keeps its previous version; the rest is applied).
    async fn apply(&self, etag: &str, cfg: &AgentConfig) -> Result<(), String> {
        let mut refused = BTreeMap::new();
        for p in cfg.pollers.iter().filter(|p| p.enabled) {
            if let Some(m) = &p.module
                && let Err(e) = self.store.ensure(&self.client, &m.sha256).await
            {
                refused.insert(p.id.clone(), e.to_string());
            }
        }
        let applied = self.engine.apply(cfg, refused.clone()).await;
        note(&self.status, Some(etag.to_string()), &applied.errors);
        tracing::info!(
            pollers = cfg.pollers.len(),
            errors = applied.errors.len(),
            "configuration applied"
        );
        let saved = Saved {
            etag: etag.to_string(),
            config: cfg.clone(),
        };
        if let Err(e) = save(&self.state_dir, &saved) {
            tracing::warn!("cannot keep the configuration for a restart: {e}");
        }
        match refused.into_values().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
