//! `dispatch-agent`: run pollers (sandboxed WebAssembly components).

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use dispatch_agent::author::{self, Credentials, Lang};
use dispatch_agent::config::{AgentFile, read_token};
use dispatch_agent::conformance;
use dispatch_agent::run::{RunOptions, host_name as host_name_of, run_standalone};
use dispatch_agent::sync::{Connected, run_connected};
use dispatch_runtime::{Limits, Runtime, RuntimeConfig, actions, builtin};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "dispatch-agent",
    version = dispatch_service::version(),
    about = "Dispatch agent: runs pollers and sends what is ready"
)]
struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// How log lines are written on stderr: `json` for a log collector.
    #[arg(
        long,
        global = true,
        env = "DISPATCH_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    log_format: dispatch_service::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one poll and print the actions.
    Poll {
        #[command(flatten)]
        plugin: PluginArgs,
        /// The poller's root directory.
        #[arg(long)]
        root: PathBuf,
        /// A parameter, `key=value` (repeatable).
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a plugin's name, version, description and parameters.
    Describe {
        #[command(flatten)]
        plugin: PluginArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the agent until SIGTERM/SIGINT: from a TOML file (standalone,
    /// `--config`) or from the web app (connected, `--server`).
    Run {
        /// The agent's configuration file (standalone mode).
        #[arg(long, conflicts_with_all = ["server", "token_file"], required_unless_present = "server")]
        config: Option<PathBuf>,
        /// The web app to take the configuration from, e.g.
        /// `https://dispatch.example.net` (connected mode).
        #[arg(long, env = "DISPATCH_SERVER", requires = "token_file")]
        server: Option<String>,
        /// A file holding this agent's token, as the web app showed it.
        #[arg(long, env = "DISPATCH_TOKEN_FILE")]
        token_file: Option<PathBuf>,
        /// Where a connected agent keeps its journal, modules and last
        /// configuration (default: the user's state directory).
        #[arg(long, env = "DISPATCH_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// The name transfers are logged under (default: the host name).
        #[arg(long, env = "DISPATCH_HOST_NAME")]
        host_name: Option<String>,
        /// Exit once no poller has anything queued, in flight or waiting to
        /// become stable.
        #[arg(long)]
        until_idle: bool,
    },
    /// List the transfer journal, newest first.
    Transfers {
        /// Read the journal named by this agent configuration.
        #[arg(long, conflicts_with = "journal")]
        config: Option<PathBuf>,
        /// The journal file itself.
        #[arg(long)]
        journal: Option<PathBuf>,
        /// How many transfers.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Load the built-in plugins and list them; with --poll-root, poll each
    /// once there (a start-up check).
    Plugins {
        #[command(flatten)]
        runtime: RuntimeArgs,
        /// Poll each plugin once on this directory.
        #[arg(long)]
        poll_root: Option<PathBuf>,
    },
    /// Write, check and publish a plugin of your own.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Load a component as the agent does and print its describe(); with
    /// --root, poll once there (the plugin's log lines on stderr).
    Check {
        /// The component (.wasm).
        file: PathBuf,
        /// Poll once on this directory.
        #[arg(long)]
        root: Option<PathBuf>,
        /// A parameter, `key=value` (repeatable).
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param, requires = "root")]
        params: Vec<(String, String)>,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Run the conformance cases of a poller kind (sdk/conformance) on a
    /// component, under the default limits; exit 0 only if all pass.
    Test {
        /// The component (.wasm).
        file: PathBuf,
        /// The kind whose cases to run (default: the name its describe() gives).
        #[arg(long)]
        kind: Option<String>,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Upload a component to the web app as a new version of its plugin.
    Push {
        /// The component (.wasm).
        file: PathBuf,
        /// The web app, e.g. `https://dispatch.example.net`.
        #[arg(long, env = "DISPATCH_SERVER")]
        server: String,
        /// The web app user to upload as.
        #[arg(long, env = "DISPATCH_USER", default_value = "admin")]
        user: String,
        /// A file holding the user's password (else $DISPATCH_PASSWORD).
        #[arg(long, env = "DISPATCH_PASSWORD_FILE")]
        password_file: Option<PathBuf>,
    },
    /// Write a new plugin project NAME from the SDK's template.
    New {
        /// The language.
        #[arg(long, value_enum)]
        lang: Lang,
        /// The plugin's name: lowercase letters, digits, `-`, `_`.
        name: String,
        /// Where the project's directory goes.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The Rust SDK (`sdk` of a Dispatch source tree; default: the tree
        /// this binary was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

#[derive(Args)]
struct PluginArgs {
    /// A built-in name (file, dir, subdir, telus, pa, google, dirtar) or a path to a .wasm component.
    #[arg(long)]
    plugin: String,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Args)]
struct RuntimeArgs {
    /// Memory a plugin may use per poll, in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    memory_limit: usize,
    /// Time a poll may take, in milliseconds.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    timeout_ms: u64,
    #[command(flatten)]
    cache: CacheArgs,
}

#[derive(Args)]
struct CacheArgs {
    /// Where compiled components are cached.
    #[arg(long, env = "DISPATCH_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile every time instead of using the cache.
    #[arg(long)]
    no_cache: bool,
}

impl CacheArgs {
    fn runtime(&self, limits: Limits) -> anyhow::Result<Runtime> {
        let cache_dir = if self.no_cache {
            None
        } else {
            self.cache_dir
                .clone()
                .or_else(|| dirs::cache_dir().map(|d| d.join("dispatch").join("components")))
        };
        Runtime::new(RuntimeConfig {
            limits,
            cache_dir,
            ..RuntimeConfig::default()
        })
    }
}

impl RuntimeArgs {
    fn runtime(&self) -> anyhow::Result<Runtime> {
        self.cache.runtime(Limits {
            memory_bytes: self.memory_limit.saturating_mul(1 << 20),
            timeout: Duration::from_millis(self.timeout_ms),
        })
    }
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    if k.trim().is_empty() {
        return Err(format!("`{s}` has an empty key"));
    }
    Ok((k.trim().to_string(), v.to_string()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The agent reports its work; one-shot commands only their problems.
    let quiet = if matches!(cli.command, Command::Run { .. }) {
        1
    } else {
        0
    };
    let mut default = match cli.verbose + quiet {
        0 => "warn",
        1 => "warn,dispatch_agent=info,dispatch_transfer=info,dispatch_runtime=info,plugin=info",
        _ => {
            "warn,dispatch_agent=debug,dispatch_transfer=debug,dispatch_runtime=debug,plugin=debug"
        }
    }
    .to_string();
    // `plugin check` is for seeing what the plugin says, at any verbosity.
    if matches!(
        cli.command,
        Command::Plugin {
            command: PluginCommand::Check { .. }
        }
    ) {
        default.push_str(",plugin=debug");
    }
    dispatch_service::init_logs(cli.log_format, &default);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, each said once (an error
            // that quotes its cause is not followed by it again).
            let mut msg = String::new();
            for cause in e.chain().map(ToString::to_string) {
                if !msg.contains(&cause) {
                    if !msg.is_empty() {
                        msg.push_str(": ");
                    }
                    msg.push_str(&cause);
                }
            }
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run {
            config,
            server,
            token_file,
            state_dir,
            host_name,
            until_idle,
        } => {
            let options = RunOptions { until_idle };
            let rt = tokio::runtime::Runtime::new()?;
            match (config, server, token_file) {
                (Some(path), _, _) => {
                    let file = AgentFile::load(&path)?;
                    rt.block_on(run_standalone(file, &path, options))?;
                }
                (None, Some(server), Some(token_file)) => {
                    let token = read_token(&token_file)
                        .map_err(|e| anyhow::anyhow!("--token-file: {e}"))?;
                    let state_dir = state_dir
                        .or_else(|| dirs::state_dir().map(|d| d.join("dispatch-agent")))
                        .or_else(|| dirs::data_local_dir().map(|d| d.join("dispatch-agent")))
                        .ok_or_else(|| {
                            anyhow::anyhow!("give --state-dir: this system has no state directory")
                        })?;
                    let connected = Connected {
                        server,
                        token,
                        state_dir: std::path::absolute(&state_dir)?,
                        host: host_name_of(host_name.as_deref()),
                    };
                    rt.block_on(run_connected(connected, options))?;
                }
                _ => anyhow::bail!("give --config FILE, or --server URL with --token-file FILE"),
            }
        }
        Command::Transfers {
            config,
            journal,
            limit,
            json,
        } => {
            let path = match (config, journal) {
                (_, Some(j)) => j,
                (Some(c), None) => AgentFile::load(&c)?.journal_path(&c),
                (None, None) => anyhow::bail!("give --config or --journal"),
            };
            if !path.exists() {
                anyhow::bail!("no transfer journal at {}", path.display());
            }
            let rt = tokio::runtime::Runtime::new()?;
            let rows = rt.block_on(async {
                let j = dispatch_agent::journal::Journal::open(&path, "").await?;
                anyhow::Ok(j.list(limit).await?)
            })?;
            print_transfers(&rows, json)?;
        }
        Command::Poll {
            plugin,
            root,
            params,
            json,
        } => {
            let runtime = plugin.runtime.runtime()?;
            let loaded = runtime.load(&builtin::resolve(&plugin.plugin)?)?;
            let found = loaded.poll(&root, &params)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&actions::to_json(&found))?
                );
            } else {
                print!("{}", actions::to_table(&found));
            }
        }
        Command::Describe { plugin, json } => {
            let runtime = plugin.runtime.runtime()?;
            let loaded = runtime.load(&builtin::resolve(&plugin.plugin)?)?;
            let info = loaded.info();
            if json {
                let mut v = serde_json::to_value(info)?;
                v["wit_version"] = loaded.wit_version().into();
                v["sha256"] = loaded.sha256().into();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", author::describe_text(&loaded));
            }
        }
        Command::Plugins { runtime, poll_root } => {
            let started = Instant::now();
            let runtime = runtime.runtime()?;
            for name in builtin::BUILTIN {
                let plugin = runtime
                    .load(&builtin::resolve(name)?)
                    .with_context(|| format!("built-in plugin `{name}`"))?;
                let polled = match &poll_root {
                    Some(root) => format!("  {} actions", plugin.poll(root, &[])?.len()),
                    None => String::new(),
                };
                println!(
                    "{:8} {:8} {}{polled}",
                    plugin.info().name,
                    plugin.info().version,
                    plugin.wit_version()
                );
            }
            println!(
                "{} compiled, {} from cache, {:.1} ms",
                runtime.compiled_count(),
                runtime.cache_hit_count(),
                started.elapsed().as_secs_f64() * 1000.0
            );
        }
        Command::Plugin { command } => plugin(command)?,
    }
    Ok(())
}

fn plugin(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::Check {
            file,
            root,
            params,
            runtime,
        } => author::check(&runtime.runtime()?, &file, root.as_deref(), &params),
        PluginCommand::Test { file, kind, cache } => author::test(
            &cache.runtime(conformance::limits())?,
            &file,
            kind.as_deref(),
        ),
        PluginCommand::Push {
            file,
            server,
            user,
            password_file,
        } => {
            let credentials = Credentials::new(user, password_file.as_deref())?;
            let rt = tokio::runtime::Runtime::new()?;
            println!(
                "{}",
                rt.block_on(author::push(&file, &server, &credentials))?
            );
            Ok(())
        }
        PluginCommand::New {
            lang,
            name,
            dir,
            sdk,
        } => {
            let made = author::new_project(lang, &name, &dir, sdk.as_deref())?;
            println!("wrote {}: see its README.md", made.display());
            Ok(())
        }
    }
}

fn print_transfers(
    rows: &[dispatch_agent::journal::TransferRow],
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id, "poller": r.poller, "path": r.path, "kind": r.item_kind,
                    "status": r.status, "size": r.size, "bytes_done": r.bytes_done,
                    "attempts": r.attempts, "error": r.error, "host": r.host,
                    "queued_at": r.queued_at, "started_at": r.started_at, "ended_at": r.ended_at,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no transfers");
        return Ok(());
    }
    println!(
        "{:<19}  {:<12}  {:<16}  {:>12}  {:>3}  PATH",
        "STARTED", "STATUS", "POLLER", "BYTES", "TRY"
    );
    for r in rows {
        let when = r
            .started_at
            .or(r.queued_at)
            .map_or("-".to_string(), format_ms);
        println!(
            "{:<19}  {:<12}  {:<16}  {:>12}  {:>3}  {}{}",
            when,
            r.status,
            r.poller,
            r.size.unwrap_or(0),
            r.attempts,
            r.path,
            r.error
                .as_deref()
                .map_or(String::new(), |e| format!("  ({e})"))
        );
    }
    Ok(())
}

/// `2026-11-27 21:30:05` (UTC) for milliseconds since the epoch.
fn format_ms(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
}
