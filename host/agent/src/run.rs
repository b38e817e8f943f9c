//! Running the agent: standalone (from `agent.toml`, applied again on
//! SIGHUP or when the file changes) and the end of a run, shared with
//! connected mode (`sync`).

use crate::config::{AgentFile, ReportConfig};
use crate::engine::{Engine, Local};
use crate::journal::Journal;
use crate::sync::Client;
use crate::sync::report::{ConfigStatus, Reporter};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// How a run ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Exit once no poller has anything queued, in flight or waiting to
    /// become stable.
    pub until_idle: bool,
}

/// The machine's host name, unless one is given.
pub fn host_name(given: Option<&str>) -> String {
    given.map_or_else(
        || gethostname::gethostname().to_string_lossy().into_owned(),
        str::to_string,
    )
}

/// Runs the agent of the file at `path` until a signal (or idleness).
pub async fn run_standalone(
    file: AgentFile,
    path: &Path,
    options: RunOptions,
) -> anyhow::Result<()> {
    let host = host_name(file.agent.host_name.as_deref());
    let journal_path = file.journal_path(path);
    let journal = Journal::open(&journal_path, &host).await?;
    let local = Local {
        host: host.clone(),
        cache_dir: file
            .agent
            .cache_dir
            .clone()
            .or_else(|| dirs::cache_dir().map(|d| d.join("dispatch").join("components"))),
        // Transfer state that outlives a process, beside the journal.
        state_dir: journal_path.with_extension("state"),
        module_dir: None,
    };
    let engine = Engine::new(local, journal)?;
    let applied = engine.apply(&file.desired(), BTreeMap::new()).await;
    engine.keep_journal_pruned(file.report.is_some());
    if let Some(e) = applied.errors.values().next() {
        // At start, a poller that cannot run is an error of the file.
        let name = applied
            .errors
            .keys()
            .next()
            .map(|id| engine.name_of(id))
            .unwrap_or_default();
        engine.shutdown().await;
        let sep = if e.starts_with("field `") { ", " } else { ": " };
        anyhow::bail!("{}: poller `{name}`{sep}{e}", path.display());
    }
    tracing::info!(pollers = file.pollers.iter().filter(|p| p.enabled).count(), %host, journal = %journal_path.display(), "agent started");
    let stop_reporter = CancellationToken::new();
    let reporter = match &file.report {
        Some(cfg) => Some(spawn_reporter(cfg, &engine, &stop_reporter, path)?),
        None => None,
    };
    let reload = tokio::spawn(reload_on_change(engine.clone(), path.to_path_buf()));
    let reason = wait_for_end(&engine, options).await;
    tracing::info!("{reason}: stopping");
    reload.abort();
    engine.shutdown().await;
    // The reporter goes last, so the final events reach the web app.
    stop_reporter.cancel();
    if let Some(r) = reporter {
        let _ = tokio::time::timeout(Duration::from_secs(10), r).await;
    }
    Ok(())
}

fn spawn_reporter(
    cfg: &ReportConfig,
    engine: &Arc<Engine>,
    stop: &CancellationToken,
    path: &Path,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let token = cfg
        .token()
        .map_err(|e| anyhow::anyhow!("{}: field `report.token`: {e}", path.display()))?;
    let client = Client::new(&cfg.url, token)?;
    let status = Arc::new(Mutex::new(ConfigStatus::default()));
    let r = Reporter::new(client, engine.clone(), status, cfg.interval, cfg.heartbeat);
    tracing::info!(to = %cfg.url, "reporting transfers to the web app");
    Ok(tokio::spawn(r.run(stop.clone())))
}

/// Applies the file again on SIGHUP, or when it changed (checked every 2 s).
/// A file that does not parse changes nothing and is reported.
async fn reload_on_change(engine: Arc<Engine>, path: PathBuf) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).ok();
    let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen: Option<SystemTime> = stamp(&path);
    loop {
        let asked = tokio::select! {
            _ = async { match hup.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => true,
            () = tokio::time::sleep(Duration::from_secs(2)) => false,
        };
        let now = stamp(&path);
        if !asked && now == seen {
            continue;
        }
        seen = now;
        match AgentFile::load(&path) {
            Ok(file) => {
                let applied = engine.apply(&file.desired(), BTreeMap::new()).await;
                tracing::info!(
                    errors = applied.errors.len(),
                    "configuration applied again from {}",
                    path.display()
                );
            }
            Err(e) => {
                tracing::error!("configuration not applied, the previous one keeps running: {e}")
            }
        }
    }
}

/// Between two idle checks of `--until-idle`: short, since a run that has
/// sent everything waits two of them before it exits.
const IDLE_CHECK: Duration = Duration::from_millis(3);

/// The next idle check, or never (without `--until-idle`).
async fn idle_tick(until_idle: bool) {
    if until_idle {
        tokio::time::sleep(IDLE_CHECK).await;
    } else {
        std::future::pending::<()>().await;
    }
}

/// Waits for a signal, or for idleness with `until_idle`.
pub(crate) async fn wait_for_end(engine: &Engine, options: RunOptions) -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut idle_checks = 0u32;
    loop {
        tokio::select! {
            _ = async { match term.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => return "SIGTERM",
            _ = async { match int.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => return "SIGINT",
            () = idle_tick(options.until_idle) => {
                // Idle twice in a row: a poll a file-system event asks
                // for may be on its way.
                if engine.is_idle() {
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
