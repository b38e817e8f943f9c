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

/// Log records a plugin may write per call (its log calls and its
/// stdout/stderr lines together), and bytes per record: a plugin cannot
/// fill the agent's disk through its log.
pub const MAX_LOG_RECORDS: usize = 1000;
pub const MAX_LOG_RECORD: usize = 4096;

/// `message` as one log record: control characters escaped (a newline
/// cannot start a forged record, nor an escape sequence repaint the
/// terminal), at most `MAX_LOG_RECORD` bytes.
pub fn printable(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_LOG_RECORD));
    for (i, c) in message.char_indices() {
        if out.len() >= MAX_LOG_RECORD {
            out.push_str(&format!("… ({} more bytes)", message.len() - i));
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Caps a Store's memory and remembers when a plugin asked for more, so the
/// failure can say so instead of showing the guest's abort. The cap is on
/// the sum over every memory and table of the call: a component may hold
/// many core modules, each with memories of its own.
pub struct MemoryCap {
    limit: usize,
    pub exceeded: Option<usize>,
    /// Bytes of linear memory the Store's instances hold, summed over their
    /// memories (each counted from its creation). Linear memory never
    /// shrinks, so this is also the poll's peak.
    pub held: usize,
    /// Table elements held, summed over the tables.
    table_elements: usize,
}

/// Bytes a table element is counted as (a function reference).
const TABLE_ELEMENT: usize = 16;
/// Instances, memories and tables one call may create: far above what real
/// components need (a Python or JavaScript one has a few of each), far
/// below what would cost the host per instance overhead.
const MAX_INSTANCES: usize = 200;
const MAX_MEMORIES: usize = 32;
const MAX_TABLES: usize = 200;

impl MemoryCap {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            exceeded: None,
            held: 0,
            table_elements: 0,
        }
    }

    /// Whether `more` bytes fit beside what memories and tables hold.
    fn admit(&mut self, more: usize) -> bool {
        let total = self
            .held
            .saturating_add(self.table_elements.saturating_mul(TABLE_ELEMENT))
            .saturating_add(more);
        if total > self.limit {
            self.exceeded = Some(total);
            return false;
        }
        true
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let more = desired.saturating_sub(current);
        if !self.admit(more) {
            return Ok(false);
        }
        self.held += more;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let more = desired.saturating_sub(current);
        if !self.admit(more.saturating_mul(TABLE_ELEMENT)) {
            return Ok(false);
        }
        self.table_elements += more;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
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
    /// Log records written in this call, and those dropped past the limit.
    log_records: usize,
    log_dropped: usize,
    wasi: WasiCtx,
    /// The guest's monotonic clock, and when its waits must end.
    pub clock: crate::clock::GuestClock,
    pub deadline: std::time::Instant,
    /// WASI's resources and the poll's open listings.
    pub table: ResourceTable,
}

impl PollState {
    /// The state of one call that may run until `deadline`.
    pub fn new(
        plugin: &str,
        root: Option<Root>,
        memory_limit: usize,
        deadline: std::time::Instant,
    ) -> Self {
        let clock = crate::clock::GuestClock::new();
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
            .monotonic_clock(clock)
            .build();
        Self {
            plugin: plugin.to_string(),
            root,
            memory: MemoryCap::new(memory_limit),
            stdout,
            stderr,
            unreadable: Vec::new(),
            not_ready: Vec::new(),
            not_ready_more: 0,
            read_bytes: 0,
            open_listings: 0,
            log_records: 0,
            log_dropped: 0,
            wasi,
            clock,
            deadline,
            table: ResourceTable::new(),
        }
    }

    /// Takes what the guest printed: stdout goes to the agent's log now;
    /// stderr is returned, for the caller to log or to quote in an error.
    /// Says how many log records were dropped past the limit.
    pub fn take_output(&mut self) -> String {
        let (out, _) = self.stdout.take();
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            if self.count_record() {
                let line = printable(line);
                tracing::info!(target: "plugin", plugin = %self.plugin, stream = "stdout", "{line}");
            }
        }
        let (err, dropped) = self.stderr.take();
        if dropped > 0 {
            tracing::warn!(target: "plugin", plugin = %self.plugin, "{dropped} more bytes of stderr dropped");
        }
        err
    }

    /// Puts the guest's stderr into the agent's log, line by line.
    pub fn log_stderr(&mut self, stderr: &str) {
        for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
            if self.count_record() {
                let line = printable(line);
                tracing::warn!(target: "plugin", plugin = %self.plugin, stream = "stderr", "{line}");
            }
        }
        if self.log_dropped > 0 {
            tracing::warn!(target: "plugin", plugin = %self.plugin, "{} more log records dropped (at most {MAX_LOG_RECORDS} per call)", self.log_dropped);
            self.log_dropped = 0;
        }
    }

    /// Whether one more record may be written in this call.
    fn count_record(&mut self) -> bool {
        if self.log_records < MAX_LOG_RECORDS {
            self.log_records += 1;
            true
        } else {
            self.log_dropped += 1;
            false
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
        if !self.count_record() {
            return;
        }
        let message = printable(&message);
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

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn the_memory_cap_is_on_the_sum_of_every_memory_and_table() {
        let mut cap = MemoryCap::new(64 * MIB);
        // 64 memories of 60 MiB each: the second is refused.
        assert!(cap.memory_growing(0, 60 * MIB, None).unwrap());
        assert!(!cap.memory_growing(0, 60 * MIB, None).unwrap());
        assert_eq!(cap.exceeded, Some(120 * MIB));
        // What fits beside the first still grows.
        assert!(cap.memory_growing(0, 3 * MIB, None).unwrap());
        // Tables count too: 1 MiB left is 65,536 elements.
        assert!(!cap.table_growing(0, 70_000, None).unwrap());
        assert!(cap.table_growing(0, 60_000, None).unwrap());
        assert!(!cap.memory_growing(3 * MIB, 4 * MIB, None).unwrap());
    }

    /// A core module declaring `n` memories of `pages` (64 KiB) each, built
    /// byte by byte (no text format in this build).
    fn module_with_memories(n: u32, pages: u32) -> Vec<u8> {
        fn leb(mut v: u32, out: &mut Vec<u8>) {
            loop {
                let byte = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    out.push(byte);
                    return;
                }
                out.push(byte | 0x80);
            }
        }
        let mut section = Vec::new();
        leb(n, &mut section);
        for _ in 0..n {
            section.push(0x00); // limits: a minimum only
            leb(pages, &mut section);
        }
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        module.push(5); // the memory section
        leb(u32::try_from(section.len()).unwrap(), &mut module);
        module.extend(section);
        module
    }

    #[test]
    fn many_memories_are_refused_by_the_store_the_plugin_runs_in() {
        // The engine as the runtime makes it (multi-memory is on), and the
        // Store limiter every core instance of a component shares.
        let engine =
            wasmtime::Engine::new(wasmtime::Config::new().epoch_interruption(true)).unwrap();
        let instantiate = |n, pages| {
            let module = wasmtime::Module::new(&engine, module_with_memories(n, pages)).unwrap();
            let mut store = wasmtime::Store::new(&engine, MemoryCap::new(64 * MIB));
            store.limiter(|cap| cap);
            wasmtime::Instance::new(&mut store, &module, &[]).map(drop)
        };
        // 64 memories of 60 MiB: refused (by their count before their sum).
        assert!(instantiate(64, 960).is_err());
        // 16 of 60 MiB: a count that is allowed, a sum that is not.
        assert!(instantiate(16, 960).is_err());
        // 33 tiny ones: more memories than a poll may have.
        assert!(instantiate(33, 1).is_err());
        // What fits under both: allowed.
        assert!(instantiate(16, 16).is_ok());
    }
}
