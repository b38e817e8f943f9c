//! What `dispatch-agent` and `dispatch-web` share as installed services:
//! the `--version` line an operator or a package script reads, and the log
//! output, as text for a terminal or as one JSON object per line for a log
//! collector (`--log-format json`).

use std::sync::OnceLock;

/// The allocator of the static builds (`cargo xtask dist`): with musl's
/// own the agent sent many small files 1.22x slower than the glibc build;
/// with this one (huge pages off: clearing a 2 MiB page per thread's heap
/// cost more than musl's allocator) 1.04x (BENCHMARKS.md). Here because
/// both binaries link this crate.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The commit the binary was built from (`unknown` outside a git checkout
/// unless `DISPATCH_GIT_COMMIT` was set at build time).
pub const COMMIT: &str = env!("DISPATCH_GIT_COMMIT");

/// `--version`'s text after the program name: the version, the commit and
/// the versions of the poller contract this build runs, e.g.
/// `0.1.0 (commit 22e3990abcde; WIT dispatch:poller@0.1.0, @0.2.0)`.
pub fn version() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        format!(
            "{} (commit {COMMIT}; WIT dispatch:poller@{})",
            env!("CARGO_PKG_VERSION"),
            dispatch_runtime::inspect::SUPPORTED_WIT_VERSIONS.join(", @")
        )
    })
}

/// How log lines are written (on stderr).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`.
    Json,
}

/// Starts logging to stderr. `RUST_LOG` overrides `default_filter`.
pub fn init_logs(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // A line that cannot be written is dropped: by default the subscriber
    // reports that with `eprintln!`, which panics when stderr is the
    // broken pipe of a reader that went away, and takes the agent down.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
}
