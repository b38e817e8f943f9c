//! What one poll's `Store` holds, and the logging a plugin may call (reading
//! its root is `root_fs`). Nothing else of the machine is reachable: WASI is
//! linked with a context that grants nothing.

use super::bindings::latest::{log, types};
use super::capture::Capture;
use crate::confine::Root;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Bytes of stdout/stderr kept per poll.
const CAPTURE_CAP: usize = 64 * 1024;

/// Caps a Store's memory and remembers when a plugin asked for more, so the
/// failure can say so instead of showing the guest's abort.
pub struct MemoryCap {
    limit: usize,
    pub exceeded: Option<usize>,
    /// Bytes of linear memory the Store's instances hold, summed over their
    /// memories (each counted from its creation). Linear memory never
    /// shrinks, so this is also the poll's peak.
    pub held: usize,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = Some(desired);
            return Ok(false);
        }
        self.held += desired.saturating_sub(current);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The data of one poll's Store.
pub struct PollState {
    pub plugin: String,
    /// `None` while running `describe()`, which must not read anything.
    pub root: Option<Root>,
    pub memory: MemoryCap,
    pub stdout: Capture,
    pub stderr: Capture,
    /// Names the listings left out because they are not UTF-8 (the
    /// contract's strings cannot carry them), as `dir/name` with the bad
    /// bytes replaced, for the engine to report.
    pub unreadable: Vec<String>,
    /// What the plugin logged as not ready (`not ready: <item>: <reason>`),
    /// the first `MAX_NOT_READY`, and how many more there were.
    pub not_ready: Vec<crate::NotReady>,
    pub not_ready_more: usize,
    /// Bytes `read-file` gave in this poll (bounded per poll).
    pub read_bytes: u64,
    /// Listings the plugin holds open (bounded per poll).
    pub open_listings: usize,
    wasi: WasiCtx,
    /// WASI's resources and the poll's open listings.
    pub table: ResourceTable,
}

impl PollState {
    pub fn new(plugin: &str, root: Option<Root>, memory_limit: usize) -> Self {
        let stdout = Capture::new(CAPTURE_CAP);
        let stderr = Capture::new(CAPTURE_CAP);
        // No preopens, no environment, no arguments, no network: the builder's
        // defaults, with sockets turned off explicitly.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            plugin: plugin.to_string(),
            root,
            memory: MemoryCap {
                limit: memory_limit,
                exceeded: None,
                held: 0,
            },
            stdout,
            stderr,
            unreadable: Vec::new(),
            not_ready: Vec::new(),
            not_ready_more: 0,
            read_bytes: 0,
            open_listings: 0,
            wasi,
            table: ResourceTable::new(),
        }
    }

    /// Takes what the guest printed: stdout goes to the agent's log now;
    /// stderr is returned, for the caller to log or to quote in an error.
    pub fn take_output(&self) -> String {
        let (out, _) = self.stdout.take();
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            tracing::info!(target: "plugin", plugin = %self.plugin, stream = "stdout", "{line}");
        }
        let (err, dropped) = self.stderr.take();
        if dropped > 0 {
            tracing::warn!(target: "plugin", plugin = %self.plugin, "{dropped} more bytes of stderr dropped");
        }
        err
    }

    /// Puts the guest's stderr into the agent's log, line by line.
    pub fn log_stderr(&self, stderr: &str) {
        for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
            tracing::warn!(target: "plugin", plugin = %self.plugin, stream = "stderr", "{line}");
        }
    }

    pub fn root(&self) -> Result<&Root, String> {
        self.root
            .as_ref()
            .ok_or_else(|| "the file system cannot be read during describe()".to_string())
    }
}

impl WasiView for PollState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for PollState {}

impl log::Host for PollState {
    fn log(&mut self, level: log::Level, message: String) {
        if let Some(n) = crate::NotReady::parse(&message) {
            if self.not_ready.len() < crate::MAX_NOT_READY {
                self.not_ready.push(n);
            } else {
                self.not_ready_more += 1;
            }
        }
        let plugin = &self.plugin;
        match level {
            log::Level::Trace => tracing::trace!(target: "plugin", %plugin, "{message}"),
            log::Level::Debug => tracing::debug!(target: "plugin", %plugin, "{message}"),
            log::Level::Info => tracing::info!(target: "plugin", %plugin, "{message}"),
            log::Level::Warn => tracing::warn!(target: "plugin", %plugin, "{message}"),
            log::Level::Error => tracing::error!(target: "plugin", %plugin, "{message}"),
        }
    }
}
