//! `dispatch-web`'s settings: flags, environment variables, and an
//! optional TOML file (flags and environment win).

use clap::Parser;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "dispatch-web", version, about = "Dispatch control plane")]
pub struct Cli {
    /// A TOML file with any of the settings below (snake_case keys).
    #[arg(long, env = "DISPATCH_WEB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "DISPATCH_LISTEN")]
    pub listen: Option<String>,
    /// Data directory (database, modules, key file) [default: ./data].
    #[arg(long, env = "DISPATCH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL [default: sqlite://<data-dir>/dispatch.sqlite].
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Upload limit for plugin modules, in MiB [default: 50].
    #[arg(long, env = "DISPATCH_UPLOAD_LIMIT_MIB")]
    pub upload_limit_mib: Option<usize>,
    /// Register every `.wasm` of this directory as plugins at start (the
    /// built-in pollers).
    #[arg(long, env = "DISPATCH_REGISTER_PLUGINS")]
    pub register_plugins: Option<PathBuf>,
    /// Send session cookies without `Secure` (plain HTTP away from localhost).
    #[arg(long)]
    pub insecure_cookies: bool,
    /// An agent on this machine: created at start if missing, its token
    /// written (0600) to `--local-agent-token-file` for its `[report]`.
    #[arg(
        long,
        env = "DISPATCH_LOCAL_AGENT",
        requires = "local_agent_token_file"
    )]
    pub local_agent: Option<String>,
    #[arg(
        long,
        env = "DISPATCH_LOCAL_AGENT_TOKEN_FILE",
        requires = "local_agent"
    )]
    pub local_agent_token_file: Option<PathBuf>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub upload_limit_mib: Option<usize>,
    pub register_plugins: Option<PathBuf>,
    pub insecure_cookies: Option<bool>,
}

/// The settings in effect.
#[derive(Debug)]
pub struct WebConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub upload_limit: usize,
    pub register_plugins: Option<PathBuf>,
    pub secure_cookies: bool,
    /// (agent name, token file).
    pub local_agent: Option<(String, PathBuf)>,
}

impl WebConfig {
    pub fn resolve(cli: Cli) -> anyhow::Result<Self> {
        let file: FileConfig = match &cli.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
                toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {}", p.display(), e.message()))?
            }
            None => FileConfig::default(),
        };
        Ok(Self {
            listen: cli
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:8080".into()),
            data_dir: cli
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("data")),
            database_url: cli.database_url.or(file.database_url),
            upload_limit: cli.upload_limit_mib.or(file.upload_limit_mib).unwrap_or(50) << 20,
            register_plugins: cli.register_plugins.or(file.register_plugins),
            secure_cookies: !(cli.insecure_cookies || file.insecure_cookies.unwrap_or(false)),
            local_agent: cli.local_agent.zip(cli.local_agent_token_file),
        })
    }
}
