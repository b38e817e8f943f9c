//! The wasmtime runtime: one `Engine`, components compiled once (and cached
//! on disk), an `InstancePre` per plugin, and a fresh `Store` per poll with a
//! memory cap and an epoch deadline. A plugin that loops, panics, traps,
//! eats memory or returns paths outside its root fails that poll only.

pub mod actions;
mod bindings;
pub mod builtin;
pub mod cache;
mod capture;
mod clock;
pub mod confine;
mod crash;
pub mod inspect;
pub mod params;
mod root_fs;
mod sandbox;

pub use actions::Action;
pub use params::PluginInfo;

use crate::actions::{FollowUp, ItemKind, Transfer};
use crate::confine::{PathError, Root, RootError};
use crate::params::{ParamError, ParamSpec, ParamType};
use bindings::{PollerPre, types as wit};
use cache::{CacheError, CacheStats, CompileCache, sha256_hex};
use inspect::{BinaryKind, SUPPORTED_WIT_VERSIONS, Target};
use sandbox::PollState;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store, Trap};

/// How often the epoch advances; deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Per-poll limits of the sandbox.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Linear memory a plugin may grow to, in bytes (default 64 MiB).
    pub memory_bytes: usize,
    /// Wall-clock time one call may take (default 5 s).
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(5),
        }
    }
}

/// How a [`Runtime`] is set up.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    pub limits: Limits,
    /// Where compiled components are kept; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Compile on the calling thread only (a server whose other cores must
    /// stay free for requests), not on every core.
    pub serial_compilation: bool,
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read plugin {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("plugin {0} is not a WebAssembly file (no `\\0asm` header)")]
    NotWasm(String),
    #[error(
        "plugin {0} is a core WebAssembly module, not a component: build it for wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule(String),
    #[error("plugin {path} is not a valid component: {reason}")]
    Invalid { path: String, reason: String },
    #[error(
        "plugin {path} is not a Dispatch poller: it does not export `dispatch:poller/plugin` (its exports: {exports})"
    )]
    OtherWorld { path: String, exports: String },
    #[error(
        "plugin {path} was built for dispatch:poller@{found}; this agent supports dispatch:poller@{}",
        SUPPORTED_WIT_VERSIONS.join(", @")
    )]
    IncompatibleVersion { path: String, found: String },
    #[error("plugin {path} cannot be linked: {reason}")]
    Link { path: String, reason: String },
    #[error("plugin {path}: describe() failed: {source}")]
    Describe { path: String, source: PollError },
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Why one poll failed. The agent and other plugins are unaffected.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Root(#[from] RootError),
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error("plugin `{plugin}` ran longer than its limit of {limit:?} and was stopped")]
    Timeout { plugin: String, limit: Duration },
    #[error(
        "plugin `{plugin}` tried to grow its memory to {wanted} bytes, over its limit of {limit} bytes"
    )]
    Memory {
        plugin: String,
        wanted: usize,
        limit: usize,
    },
    #[error("plugin `{plugin}` crashed: {reason}")]
    Trap { plugin: String, reason: String },
    #[error("plugin `{plugin}` reported an error: {message}")]
    Plugin { plugin: String, message: String },
    #[error("plugin `{plugin}` returned a bad action: {source}")]
    BadAction { plugin: String, source: PathError },
    #[error("plugin `{plugin}` returned a bad describe(): {reason}")]
    BadInfo { plugin: String, reason: String },
}

/// One wasmtime engine and what it needs to load and run plugins.
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<PollState>>,
    /// Given to each plugin loaded from now on.
    limits: std::sync::RwLock<Limits>,
    cache: Option<CompileCache>,
    stats: Arc<CacheStats>,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let mut wasm = Config::new();
        wasm.epoch_interruption(true);
        wasm.parallel_compilation(!config.serial_compilation);
        let engine = Engine::new(&wasm)?;
        let mut linker = Linker::new(&engine);
        // Every WASI interface, granting nothing: components built by other
        // toolchains import clocks, random, filesystem and sockets at start.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        clock::add_to_linker(&mut linker)?;
        bindings::add_to_linker(&mut linker)?;
        let cache = match &config.cache_dir {
            Some(dir) => Some(CompileCache::open(dir, &engine)?),
            None => None,
        };
        spawn_epoch_ticker(&engine);
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            limits: std::sync::RwLock::new(config.limits),
            cache,
            stats: Arc::default(),
        })
    }

    /// The limits of plugins loaded from now on (those loaded keep theirs).
    pub fn set_limits(&self, limits: Limits) {
        *self
            .limits
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = limits;
    }

    /// How many components were compiled and how many loaded from the cache.
    pub fn compiled_count(&self) -> u64 {
        self.stats.compiled.load(Ordering::Relaxed)
    }

    /// See [`Runtime::compiled_count`].
    pub fn cache_hit_count(&self) -> u64 {
        self.stats.loaded_from_cache.load(Ordering::Relaxed)
    }

    /// Drops the compiled artifact of `sha256` from the cache (a component
    /// that will not run, e.g. a refused upload).
    pub fn forget_compiled(&self, sha256: &str) {
        if let Some(cache) = &self.cache {
            cache.forget(sha256);
        }
    }

    /// Drops every compiled artifact but those of `keep` (sha256s): the
    /// versions no configuration runs any more. Returns (files, bytes).
    pub fn keep_compiled(&self, keep: &std::collections::HashSet<String>) -> (usize, u64) {
        self.cache.as_ref().map_or((0, 0), |c| c.retain(keep))
    }

    /// Loads a plugin from a `.wasm` file.
    pub fn load_file(&self, path: &Path) -> Result<Plugin, LoadError> {
        let label = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: label.clone(),
            source,
        })?;
        self.load_bytes(&bytes, &label)
    }

    /// Loads a plugin from a file or from the built-ins compiled in.
    pub fn load(&self, source: &builtin::Source) -> Result<Plugin, LoadError> {
        let label = source.label();
        let bytes = source.bytes().map_err(|source| LoadError::Read {
            path: label.clone(),
            source,
        })?;
        self.load_bytes(&bytes, &label)
    }

    /// Loads a plugin from its bytes; `label` names it in errors.
    pub fn load_bytes(&self, bytes: &[u8], label: &str) -> Result<Plugin, LoadError> {
        let path = label.to_string();
        match inspect::binary_kind(bytes) {
            BinaryKind::NotWasm => return Err(LoadError::NotWasm(path)),
            BinaryKind::CoreModule => return Err(LoadError::CoreModule(path)),
            BinaryKind::Component => {}
        }
        let sha256 = sha256_hex(bytes);
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            path: path.clone(),
            reason: one_line(&e),
        };
        let component = match &self.cache {
            Some(cache) => cache
                .load(&self.engine, bytes, &sha256, &self.stats)
                .map_err(invalid)?,
            None => {
                let c = Component::new(&self.engine, bytes).map_err(invalid)?;
                self.stats.compiled.fetch_add(1, Ordering::Relaxed);
                c
            }
        };
        let ty = component.component_type();
        let wit_version = match inspect::target_of(ty.exports(&self.engine).map(|(n, _)| n)) {
            Target::Poller { version } if SUPPORTED_WIT_VERSIONS.contains(&version.as_str()) => {
                version
            }
            Target::Poller { version } => {
                return Err(LoadError::IncompatibleVersion {
                    path,
                    found: version,
                });
            }
            Target::Other { exports } => {
                return Err(LoadError::OtherWorld {
                    path,
                    exports: if exports.is_empty() {
                        "none".into()
                    } else {
                        exports.join(", ")
                    },
                });
            }
        };
        let link = |e: wasmtime::Error| LoadError::Link {
            path: path.clone(),
            reason: one_line(&e),
        };
        let pre = self.linker.instantiate_pre(&component).map_err(link)?;
        let pre = PollerPre::new(pre, &wit_version).map_err(link)?;
        let mut plugin = Plugin {
            engine: self.engine.clone(),
            pre,
            limits: *self
                .limits
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            info: PluginInfo {
                name: label.to_string(),
                version: String::new(),
                description: String::new(),
                params: Vec::new(),
            },
            sha256,
            wit_version,
        };
        plugin.info = plugin
            .describe()
            .map_err(|source| LoadError::Describe { path, source })?;
        Ok(plugin)
    }
}

/// Now plus `timeout`, or as far as an `Instant` goes.
fn deadline_after(timeout: Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 86_400))
}

/// Advances the engine's epoch every tick for as long as the engine lives.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
        .unwrap_or_else(|e| {
            tracing::error!("cannot start the epoch thread, plugins have no deadline: {e}")
        });
}

/// A loaded plugin, ready to poll any number of times (also concurrently).
pub struct Plugin {
    engine: Engine,
    pre: PollerPre,
    limits: Limits,
    info: PluginInfo,
    sha256: String,
    wit_version: String,
}

/// What one poll gave.
#[derive(Debug)]
pub struct Polled {
    pub actions: Vec<Action>,
    /// Names left out of the plugin's listings because they are not UTF-8
    /// (`dir/name`, bad bytes replaced): such entries cannot be sent.
    pub unreadable: Vec<String>,
    /// Items the plugin said are not ready, with why (the first
    /// [`MAX_NOT_READY`]), and how many more it said.
    pub not_ready: Vec<NotReady>,
    pub not_ready_more: usize,
    /// The plugin's linear memory at the end of the poll, in bytes, summed
    /// over its memories (as created at instantiation, then grown); memory
    /// never shrinks, so this is the poll's peak. What the memory limit
    /// bounds (per memory), without the host's own allocations.
    pub memory_peak: usize,
    /// What the plugin's listings saw (`lstat`) of the files its transfers
    /// name, by path: their stamps as of the poll, with no second `stat`.
    /// Paths it did not list are not here.
    pub listed: HashMap<String, std::fs::Metadata>,
}

/// How a plugin says an item is not ready and why, in any language: a log
/// line (any level) `not ready: <item>: <reason>` (the SDK's
/// `Context::not_ready`). The contract has no field for it, and a log line
/// needs no new contract version.
pub const NOT_READY_PREFIX: &str = "not ready: ";
/// Not-ready lines kept per poll; a plugin may log without bound.
pub const MAX_NOT_READY: usize = 100;

/// An item the plugin is waiting on, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    pub item: String,
    pub reason: String,
}

impl NotReady {
    /// `not ready: A1: missing ADI.DTD` -> (`A1`, `missing ADI.DTD`); a
    /// line without a reason (`not ready: A1`) gets none. Other lines:
    /// `None`.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix(NOT_READY_PREFIX)?;
        let (item, reason) = rest.split_once(": ").unwrap_or((rest, ""));
        // One line each, bounded: this text is shown on a web page.
        let clean = |s: &str| -> String {
            s.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(300)
                .collect()
        };
        let item = clean(item);
        (!item.is_empty()).then(|| Self {
            item,
            reason: clean(reason),
        })
    }
}

impl Plugin {
    /// What `describe()` returned when the plugin was loaded.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// sha256 (hex) of the component's bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The `dispatch:poller` version the plugin was built for.
    pub fn wit_version(&self) -> &str {
        &self.wit_version
    }

    /// Polls `root` once with `params` (checked against the schema, defaults
    /// filled in) and returns the actions, every path checked to be inside
    /// the root.
    pub fn poll(&self, root: &Path, params: &[(String, String)]) -> Result<Vec<Action>, PollError> {
        self.poll_full(root, params).map(|p| p.actions)
    }

    /// [`Plugin::poll`], with the names the plugin could not be shown.
    pub fn poll_full(&self, root: &Path, params: &[(String, String)]) -> Result<Polled, PollError> {
        let params = self.info.resolve_params(params)?;
        let root = Root::open(root)?;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let request = wit::PollRequest {
            params: params
                .into_iter()
                .map(|(name, value)| wit::Param { name, value })
                .collect(),
            now_ms,
        };
        let mut store = self.store(Some(root));
        let result = self.pre.poll(&mut store, &request);
        let stderr = store.data_mut().take_output();
        let actions = match result {
            Ok(Ok(actions)) => actions,
            Ok(Err(message)) => {
                store.data_mut().log_stderr(&stderr);
                return Err(PollError::Plugin {
                    plugin: self.info.name.clone(),
                    message,
                });
            }
            Err(e) => return Err(self.failure(&mut store, &e, &stderr)),
        };
        store.data_mut().log_stderr(&stderr);
        let actions = actions.into_iter().map(action_from_wit).collect();
        let root = store
            .data_mut()
            .root
            .as_mut()
            .ok_or_else(|| PollError::Trap {
                plugin: self.info.name.clone(),
                reason: "the poll lost its root".into(),
            })?;
        let actions = actions::confine(root, actions).map_err(|source| PollError::BadAction {
            plugin: self.info.name.clone(),
            source,
        })?;
        let listed = actions
            .iter()
            .flat_map(Action::transfers)
            .filter_map(|t| root.take_listed(&t.path))
            .collect();
        let data = store.data_mut();
        Ok(Polled {
            listed,
            actions,
            unreadable: std::mem::take(&mut data.unreadable),
            not_ready: std::mem::take(&mut data.not_ready),
            not_ready_more: data.not_ready_more,
            memory_peak: data.memory.held,
        })
    }

    fn describe(&self) -> Result<PluginInfo, PollError> {
        let mut store = self.store(None);
        let result = self.pre.describe(&mut store);
        let stderr = store.data_mut().take_output();
        let info = result.map_err(|e| self.failure(&mut store, &e, &stderr))?;
        store.data_mut().log_stderr(&stderr);
        info_from_wit(info).map_err(|reason| PollError::BadInfo {
            plugin: self.info.name.clone(),
            reason,
        })
    }

    fn store(&self, root: Option<Root>) -> Store<PollState> {
        let mut store = Store::new(
            &self.engine,
            PollState::new(
                &self.info.name,
                root,
                self.limits.memory_bytes,
                deadline_after(self.limits.timeout),
            ),
        );
        store.limiter(|s| &mut s.memory);
        let ticks = self
            .limits
            .timeout
            .as_millis()
            .div_ceil(EPOCH_TICK.as_millis())
            .max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();
        store
    }

    /// Turns a wasmtime error into a reason a person can act on. A crash
    /// quotes the guest's stderr (a Rust panic prints its message there);
    /// otherwise stderr goes to the log.
    fn failure(
        &self,
        store: &mut Store<PollState>,
        e: &wasmtime::Error,
        stderr: &str,
    ) -> PollError {
        let plugin = self.info.name.clone();
        if let Some(wanted) = store.data().memory.exceeded {
            store.data_mut().log_stderr(stderr);
            return PollError::Memory {
                plugin,
                wanted,
                limit: self.limits.memory_bytes,
            };
        }
        let trap = e.downcast_ref::<Trap>();
        if matches!(trap, Some(Trap::Interrupt)) {
            store.data_mut().log_stderr(stderr);
            return PollError::Timeout {
                plugin,
                limit: self.limits.timeout,
            };
        }
        // wasmtime's own text already starts "wasm trap: ".
        let trap_text = match trap {
            Some(t) => t.to_string(),
            None => one_line(e),
        };
        let reason = crash::reason(stderr).unwrap_or(trap_text);
        PollError::Trap { plugin, reason }
    }
}

/// The first line of an error and its causes, joined: errors stay one line.
fn one_line(e: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.ends_with("backtrace:"))
            .unwrap_or("")
            .to_string();
        if !first.is_empty() && !parts.iter().any(|p| p.contains(&first)) {
            parts.push(first);
        }
    }
    parts.join(": ")
}

fn info_from_wit(info: wit::Info) -> Result<PluginInfo, String> {
    if info.name.trim().is_empty() {
        return Err("the plugin's name is empty".into());
    }
    let params = info
        .params
        .into_iter()
        .map(|p| ParamSpec {
            name: p.name,
            kind: match p.type_ {
                wit::ParamType::Text => ParamType::Text,
                wit::ParamType::Boolean => ParamType::Boolean,
                wit::ParamType::Integer => ParamType::Integer,
                wit::ParamType::TextList => ParamType::TextList,
            },
            default: p.default,
            help: p.help,
        })
        .collect();
    Ok(PluginInfo {
        name: info.name,
        version: info.version,
        description: info.description,
        params,
    })
}

fn transfer_from_wit(t: wit::Transfer) -> Transfer {
    Transfer {
        path: t.path,
        kind: match t.kind {
            wit::ItemKind::File => ItemKind::File,
            wit::ItemKind::Dir => ItemKind::Dir,
        },
    }
}

fn action_from_wit(a: wit::Action) -> Action {
    match a {
        wit::Action::Transfer(t) => Action::Transfer(transfer_from_wit(t)),
        wit::Action::Touch(p) => Action::Touch(p),
        wit::Action::RemoveDir(p) => Action::RemoveDir(p),
        wit::Action::Group(g) => Action::Group {
            transfers: g.transfers.into_iter().map(transfer_from_wit).collect(),
            then: g
                .then
                .into_iter()
                .map(|f| match f {
                    wit::FollowUp::Touch(p) => FollowUp::Touch(p),
                    wit::FollowUp::RemoveDir(p) => FollowUp::RemoveDir(p),
                })
                .collect(),
        },
    }
}
