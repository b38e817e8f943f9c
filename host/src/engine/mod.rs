//! The agent engine: runs every poller of a configuration, reacting to
//! file-system events within a second and rescanning periodically, until
//! SIGTERM/SIGINT (or, with `until_idle`, until nothing is left to do).

mod alert;
mod groups;
mod poller;
mod recovery;
mod removal;
mod report;
pub mod stability;

use crate::builtin;
use crate::config::{AgentConfig, AlertSettings, RetrySettings, TargetConfig, param_value};
use crate::journal::Journal;
use crate::runtime::{Limits, Plugin, Runtime, RuntimeConfig};
use crate::transfer::{
    Backend, RateLimiter, aspera::AsperaBackend, ftp::FtpBackend, local::LocalBackend,
    s3::S3Backend, sftp::SftpBackend, webdav::WebdavBackend,
};
use anyhow::Context as _;
use poller::{Poller, Setup};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

/// What every poller of an agent shares.
pub(crate) struct Shared {
    journal: Journal,
    host: String,
    retry: RetrySettings,
    failures_before_disable: u32,
    disable_cooldown: Duration,
    rescan_interval: Duration,
    alerts: AlertSettings,
    /// The agent-wide cap on transfers in flight, if any.
    agent_slots: Option<Arc<Semaphore>>,
    /// Woken when an agent-wide slot frees up.
    slot_freed: Notify,
}

impl Shared {
    fn slot_freed(&self) {
        if self.agent_slots.is_some() {
            self.slot_freed.notify_waiters();
        }
    }
}

/// How `run` behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Exit once no poller has anything queued, in flight or waiting to
    /// become stable.
    pub until_idle: bool,
}

/// Runs the agent of `config` (read from `config_path`).
pub async fn run(
    config: AgentConfig,
    config_path: &Path,
    options: RunOptions,
) -> anyhow::Result<()> {
    // One TLS provider for the alert clients (webhook, SMTP).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let host = config
        .agent
        .host_name
        .clone()
        .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned());
    let agent = &config.agent;
    let runtime = Runtime::new(RuntimeConfig {
        limits: Limits {
            memory_bytes: agent.poll_memory_mib.saturating_mul(1 << 20),
            timeout: agent.poll_timeout,
        },
        cache_dir: agent
            .cache_dir
            .clone()
            .or_else(|| dirs::cache_dir().map(|d| d.join("dispatch").join("components"))),
    })?;

    // Plugins, loaded once per file and shared by the pollers using them.
    let mut plugins: HashMap<PathBuf, Arc<Plugin>> = HashMap::new();
    let file = config_path.display();
    let mut setups = Vec::new();
    // Transfer state that outlives a process (unfinished S3 uploads), kept
    // beside the journal.
    let journal_file = config.journal_path(config_path);
    let state_dir = journal_file.with_extension("state");
    for p in config.pollers.iter().filter(|p| p.enabled) {
        let path = builtin::resolve(&p.plugin)
            .map_err(|e| anyhow::anyhow!("{file}: poller `{}`, field `plugin`: {e}", p.name))?;
        let plugin = match plugins.get(&path) {
            Some(pl) => pl.clone(),
            None => {
                let loaded = Arc::new(runtime.load_file(&path).map_err(|e| {
                    anyhow::anyhow!("{file}: poller `{}`, field `plugin`: {e}", p.name)
                })?);
                plugins.insert(path, loaded.clone());
                loaded
            }
        };
        let given: Vec<(String, String)> = p
            .params
            .iter()
            .map(|(k, v)| Ok((k.clone(), param_value(v)?)))
            .collect::<Result<_, String>>()
            .map_err(|e| anyhow::anyhow!("{file}: poller `{}`, field `params`: {e}", p.name))?;
        let params = plugin
            .info()
            .resolve_params(&given)
            .map_err(|e| anyhow::anyhow!("{file}: poller `{}`, field `params`: {e}", p.name))?;
        let mut globs = globset::GlobSetBuilder::new();
        for pattern in &p.excludes {
            globs.add(globset::Glob::new(pattern)?);
        }
        let backend: Arc<dyn Backend> = match &p.target {
            TargetConfig::Local {
                destination,
                verify_sha256,
                rate_limit_mbps,
                fsync,
            } => Arc::new(LocalBackend::new(
                destination.clone(),
                *verify_sha256,
                *fsync,
                rate_limit_mbps.map(|r| Arc::new(RateLimiter::mbps(r))),
            )),
            TargetConfig::Aspera(a) => Arc::new(AsperaBackend::new(a.clone())),
            TargetConfig::Webdav(w) => Arc::new(
                WebdavBackend::new(w, w.rate_limit_mbps.map(|r| Arc::new(RateLimiter::mbps(r))))
                    .map_err(|e| {
                        anyhow::anyhow!("{file}: poller `{}`, field `target.url`: {e}", p.name)
                    })?,
            ),
            TargetConfig::Sftp(s) => Arc::new(
                SftpBackend::new(s, s.rate_limit_mbps.map(|r| Arc::new(RateLimiter::mbps(r))))
                    .map_err(|e| {
                        anyhow::anyhow!("{file}: poller `{}`, field `target`: {e}", p.name)
                    })?,
            ),
            TargetConfig::S3(s) => Arc::new(
                S3Backend::new(
                    s,
                    s.rate_limit_mbps.map(|r| Arc::new(RateLimiter::mbps(r))),
                    state_dir.join("s3-uploads").join(&p.name),
                )
                .map_err(|e| {
                    anyhow::anyhow!("{file}: poller `{}`, field `target.endpoint`: {e}", p.name)
                })?,
            ),
            TargetConfig::Ftp(f) => Arc::new(
                FtpBackend::new(f, f.rate_limit_mbps.map(|r| Arc::new(RateLimiter::mbps(r))))
                    .map_err(|e| {
                        anyhow::anyhow!("{file}: poller `{}`, field `target.ca_file`: {e}", p.name)
                    })?,
            ),
        };
        setups.push(Setup {
            name: p.name.clone(),
            root: p.path.clone(),
            plugin,
            params,
            backend,
            excludes: globs.build()?,
            max_transfers: p.max_transfers,
            stability: p.stability,
        });
    }
    drop(plugins);

    let journal_path = config.journal_path(config_path);
    let journal = Journal::open(&journal_path, &host).await?;
    let shared = Arc::new(Shared {
        journal: journal.clone(),
        host: host.clone(),
        retry: agent.retry.clone(),
        failures_before_disable: agent.failures_before_disable,
        disable_cooldown: agent.disable_cooldown,
        rescan_interval: agent.rescan_interval,
        alerts: agent.alerts.clone(),
        agent_slots: agent.max_transfers.map(|n| Arc::new(Semaphore::new(n))),
        slot_freed: Notify::new(),
    });
    let pollers: Vec<Arc<Poller>> = setups
        .into_iter()
        .map(|s| Poller::new(s, shared.clone()))
        .collect();
    tracing::info!(pollers = pollers.len(), %host, journal = %journal_path.display(), "agent started");

    recovery::recover(&journal, &pollers)
        .await
        .context("reading the journal")?;
    let _watcher = watch(&pollers);

    let stop_reporter = CancellationToken::new();
    let reporter = match &config.report {
        Some(cfg) => {
            let token = cfg
                .token()
                .map_err(|e| anyhow::anyhow!("{file}: field `report.token`: {e}"))?;
            let r =
                report::Reporter::new(cfg, token, journal.clone(), host.clone(), pollers.clone())?;
            tracing::info!(to = %cfg.url, "reporting transfers to the web app");
            Some(tokio::spawn(r.run(stop_reporter.child_token())))
        }
        None => None,
    };
    let stop_pollers = CancellationToken::new();
    let mut tasks = Vec::new();
    for p in &pollers {
        tasks.push(tokio::spawn(p.clone().run(stop_pollers.child_token())));
    }
    // A freed agent-wide slot lets every poller try again.
    if shared.agent_slots.is_some() {
        let (pollers, shared, stop_pollers) =
            (pollers.clone(), shared.clone(), stop_pollers.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shared.slot_freed.notified() => pollers.iter().for_each(|p| p.request_poll()),
                    () = stop_pollers.cancelled() => break,
                }
            }
        });
    }

    let reason = wait_for_end(&pollers, options).await;
    tracing::info!("{reason}: stopping");
    stop_pollers.cancel();
    for t in tasks {
        let _ = t.await;
    }
    drain(&pollers, agent.shutdown_grace).await;
    journal.flush().await;
    // The reporter goes last, so the final events reach the web app.
    stop_reporter.cancel();
    if let Some(r) = reporter {
        let _ = tokio::time::timeout(Duration::from_secs(10), r).await;
    }
    for p in &pollers {
        if let Some(why) = p.failing() {
            tracing::error!(poller = %p.name, "poller is failing: {why}");
        }
        for problem in p.problems() {
            tracing::warn!(poller = %p.name, "needs attention: {problem}");
        }
    }
    Ok(())
}

/// Waits for a signal, or for idleness with `until_idle`.
async fn wait_for_end(pollers: &[Arc<Poller>], options: RunOptions) -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut idle_checks = 0u32;
    loop {
        tokio::select! {
            _ = async { match term.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => return "SIGTERM",
            _ = async { match int.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => return "SIGINT",
            () = tokio::time::sleep(Duration::from_millis(50)) => {
                if options.until_idle {
                    // Idle twice in a row, so a poll about to start is not missed.
                    if pollers.iter().all(|p| p.is_idle()) {
                        idle_checks += 1;
                        if idle_checks >= 2 {
                            return "idle";
                        }
                    } else {
                        idle_checks = 0;
                    }
                }
            }
        }
    }
}

/// Lets in-flight transfers finish for up to `grace`, then cancels them and
/// waits until they have recorded it.
async fn drain(pollers: &[Arc<Poller>], grace: Duration) {
    let busy = || pollers.iter().map(|p| p.in_flight()).sum::<usize>();
    if busy() > 0 {
        tracing::info!(
            in_flight = busy(),
            "waiting up to {grace:?} for transfers in flight"
        );
    }
    let deadline = tokio::time::Instant::now() + grace;
    while busy() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if busy() > 0 {
        tracing::warn!(
            in_flight = busy(),
            "grace period over: cancelling transfers"
        );
        for p in pollers {
            p.cancel_all();
        }
        let hard = tokio::time::Instant::now() + Duration::from_secs(10);
        while busy() > 0 && tokio::time::Instant::now() < hard {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Watches every root (recursively) and asks the owning poller for a poll
/// on any event. Roots that cannot be watched rely on the rescan.
fn watch(pollers: &[Arc<Poller>]) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let targets: Vec<(PathBuf, Arc<Poller>)> = pollers
        .iter()
        .map(|p| {
            (
                p.root()
                    .canonicalize()
                    .unwrap_or_else(|_| p.root().to_path_buf()),
                p.clone(),
            )
        })
        .collect();
    let routes = targets.clone();
    let mut watcher =
        match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            // Our own polls open and read directories: access events are not news.
            if matches!(event.kind, notify::EventKind::Access(_)) {
                return;
            }
            for (root, p) in &routes {
                if event.paths.iter().any(|path| path.starts_with(root)) {
                    p.request_poll();
                }
            }
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("file-system events unavailable, relying on the rescan: {e}");
                return None;
            }
        };
    for (root, p) in &targets {
        if let Err(e) = watcher.watch(root, RecursiveMode::Recursive) {
            tracing::warn!(poller = %p.name, "cannot watch {}: {e}; relying on the rescan", root.display());
        }
    }
    Some(watcher)
}
