//! `dispatch-agent`: run pollers (sandboxed WebAssembly components).

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use dispatch_host::{Limits, Runtime, RuntimeConfig, actions, builtin};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "dispatch-agent",
    version,
    about = "Dispatch agent: runs pollers and sends what is ready"
)]
struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
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
    /// Load the built-in plugins and list them; with --poll-root, poll each
    /// once there (a start-up check).
    Plugins {
        #[command(flatten)]
        runtime: RuntimeArgs,
        /// Poll each plugin once on this directory.
        #[arg(long)]
        poll_root: Option<PathBuf>,
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
    /// Where compiled components are cached.
    #[arg(long, env = "DISPATCH_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile every time instead of using the cache.
    #[arg(long)]
    no_cache: bool,
}

impl RuntimeArgs {
    fn runtime(&self) -> anyhow::Result<Runtime> {
        let cache_dir = if self.no_cache {
            None
        } else {
            self.cache_dir
                .clone()
                .or_else(|| dirs::cache_dir().map(|d| d.join("dispatch").join("components")))
        };
        Runtime::new(RuntimeConfig {
            limits: Limits {
                memory_bytes: self.memory_limit.saturating_mul(1 << 20),
                timeout: Duration::from_millis(self.timeout_ms),
            },
            cache_dir,
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
    let default = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            let msg: Vec<String> = e.chain().map(ToString::to_string).collect();
            eprintln!("error: {}", msg.join(": "));
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Poll {
            plugin,
            root,
            params,
            json,
        } => {
            let runtime = plugin.runtime.runtime()?;
            let loaded = runtime.load_file(&builtin::resolve(&plugin.plugin)?)?;
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
            let loaded = runtime.load_file(&builtin::resolve(&plugin.plugin)?)?;
            let info = loaded.info();
            if json {
                let mut v = serde_json::to_value(info)?;
                v["wit_version"] = loaded.wit_version().into();
                v["sha256"] = loaded.sha256().into();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{} {}", info.name, info.version);
                println!("{}", info.description);
                println!("contract: dispatch:poller@{}", loaded.wit_version());
                println!("sha256:   {}", loaded.sha256());
                if info.params.is_empty() {
                    println!("parameters: none");
                } else {
                    println!("parameters:");
                    for p in &info.params {
                        let default = p
                            .default
                            .as_deref()
                            .map_or("required".to_string(), |d| format!("default `{d}`"));
                        println!("  {} ({}, {default}): {}", p.name, p.kind.as_str(), p.help);
                    }
                }
            }
        }
        Command::Plugins { runtime, poll_root } => {
            let started = Instant::now();
            let runtime = runtime.runtime()?;
            for name in builtin::BUILTIN {
                let path = builtin::resolve(name)?;
                let plugin = runtime
                    .load_file(&path)
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
    }
    Ok(())
}
