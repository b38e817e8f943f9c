//! `dispatch-web`'s settings: flags, environment variables, and an
//! optional TOML file (flags and environment win).

use clap::Parser;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "dispatch-web",
    version = dispatch_service::version(),
    about = "Dispatch control plane"
)]
pub struct Cli {
    /// Without a command: serve the pages and the API.
    #[command(subcommand)]
    pub command: Option<WebCommand>,
    /// How log lines are written on stderr: `json` for a log collector.
    #[arg(
        long,
        global = true,
        env = "DISPATCH_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    pub log_format: dispatch_service::LogFormat,
    /// A TOML file with any of the settings below (snake_case keys).
    #[arg(long, global = true, env = "DISPATCH_WEB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, global = true, env = "DISPATCH_LISTEN")]
    pub listen: Option<String>,
    /// Data directory (database, modules, key file) [default: ./data].
    #[arg(long, global = true, env = "DISPATCH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL [default: sqlite://<data-dir>/dispatch.sqlite].
    #[arg(long, global = true, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// The secret key file (base64 of 32 bytes), created when missing;
    /// replicas sharing a database share it [default:
    /// <data-dir>/secret.key]. `DISPATCH_SECRET_KEY` (the key itself) wins.
    #[arg(long, global = true, env = "DISPATCH_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// Upload limit for plugin modules, in MiB [default: 50].
    #[arg(long, env = "DISPATCH_UPLOAD_LIMIT_MIB")]
    pub upload_limit_mib: Option<usize>,
    /// How long checking an uploaded module (compiling it, `describe()`)
    /// may take before it is refused, in seconds [default: 120].
    #[arg(long, env = "DISPATCH_UPLOAD_CHECK_SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub upload_check_secs: Option<u64>,
    /// Register every `.wasm` of this directory as plugins at start (the
    /// built-in pollers).
    #[arg(long, env = "DISPATCH_REGISTER_PLUGINS")]
    pub register_plugins: Option<PathBuf>,
    /// On the first start, write the admin's password to this file (0600)
    /// instead of printing it (a service's output goes to its journal).
    #[arg(long, env = "DISPATCH_FIRST_PASSWORD_FILE")]
    pub first_password_file: Option<PathBuf>,
    /// Send session cookies without `Secure` (plain HTTP away from localhost).
    #[arg(long, env = "DISPATCH_INSECURE_COOKIES")]
    pub insecure_cookies: bool,
    /// An agent on this machine: created at start if missing; when it is
    /// created or its token file is missing, a new token is written (0600)
    /// to `--local-agent-token-file` (for `dispatch-agent run --token-file`).
    #[arg(long, env = "DISPATCH_LOCAL_AGENT")]
    pub local_agent: Option<String>,
    #[arg(long, env = "DISPATCH_LOCAL_AGENT_TOKEN_FILE")]
    pub local_agent_token_file: Option<PathBuf>,
    /// With `--local-agent`: on the first start, a demo under this
    /// directory (a local target `<dir>/delivered`, pollers `dir` and
    /// `google` on `<dir>/outgoing/...`, enabled, on the local agent).
    /// Made once per database; later changes are never overwritten.
    #[arg(long, env = "DISPATCH_DEMO_DIR")]
    pub demo_dir: Option<PathBuf>,
    /// Keep finished transfers in the log this many days, then remove them
    /// (the statistics keep counting them) [default: kept forever].
    #[arg(long, env = "DISPATCH_KEEP_TRANSFERS_DAYS", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_transfers_days: Option<u32>,
}

/// What `dispatch-web` does besides serving.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum WebCommand {
    /// Copy the database to FILE while the web app runs (a consistent
    /// snapshot; SQLite only: on PostgreSQL use `pg_dump`).
    Backup {
        /// The backup file to write; it must not exist.
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// Replace the database with a backup, every web app on it stopped;
    /// the database replaced is kept beside it.
    Restore {
        /// The backup file to restore.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
    },
    /// Ask the web app serving on `--listen` (loopback when it listens on
    /// every address) for its health; exit 0 only if it answers healthy.
    /// For a container's health check, where there is no curl.
    Health {
        /// The web app's address instead, `http://HOST:PORT` (https: use curl).
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub secret_key_file: Option<PathBuf>,
    pub upload_limit_mib: Option<usize>,
    pub upload_check_secs: Option<u64>,
    pub register_plugins: Option<PathBuf>,
    pub first_password_file: Option<PathBuf>,
    pub insecure_cookies: Option<bool>,
    pub local_agent: Option<String>,
    pub local_agent_token_file: Option<PathBuf>,
    pub demo_dir: Option<PathBuf>,
    pub keep_transfers_days: Option<u32>,
}

/// The settings in effect.
#[derive(Debug)]
pub struct WebConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    /// `None`: `<data_dir>/secret.key`.
    pub secret_key_file: Option<PathBuf>,
    pub upload_limit: usize,
    pub upload_check: std::time::Duration,
    pub register_plugins: Option<PathBuf>,
    /// Where the first admin's password goes (`None`: printed).
    pub first_password_file: Option<PathBuf>,
    pub secure_cookies: bool,
    /// (agent name, token file).
    pub local_agent: Option<(String, PathBuf)>,
    /// The demo's directory (needs `local_agent`).
    pub demo_dir: Option<PathBuf>,
    /// How long finished transfers stay in the log (`None`: forever).
    pub keep_transfers: Option<std::time::Duration>,
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
        let local_agent = match (
            cli.local_agent.or(file.local_agent),
            cli.local_agent_token_file.or(file.local_agent_token_file),
        ) {
            (Some(name), Some(file)) => Some((name, file)),
            (None, None) => None,
            _ => anyhow::bail!("--local-agent and --local-agent-token-file go together"),
        };
        let demo_dir = cli.demo_dir.or(file.demo_dir);
        let keep_transfers = match cli.keep_transfers_days.or(file.keep_transfers_days) {
            Some(0) => anyhow::bail!("keep_transfers_days must be at least 1"),
            days => days.map(|d| std::time::Duration::from_secs(u64::from(d) * 86_400)),
        };
        if demo_dir.is_some() && local_agent.is_none() {
            anyhow::bail!("--demo-dir needs --local-agent (the agent that runs the demo)");
        }
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
            secret_key_file: cli.secret_key_file.or(file.secret_key_file),
            upload_limit: cli.upload_limit_mib.or(file.upload_limit_mib).unwrap_or(50) << 20,
            upload_check: std::time::Duration::from_secs(
                match cli.upload_check_secs.or(file.upload_check_secs) {
                    Some(0) => anyhow::bail!("upload_check_secs must be at least 1"),
                    secs => secs.unwrap_or(120),
                },
            ),
            register_plugins: cli.register_plugins.or(file.register_plugins),
            first_password_file: cli.first_password_file.or(file.first_password_file),
            secure_cookies: !(cli.insecure_cookies || file.insecure_cookies.unwrap_or(false)),
            local_agent,
            demo_dir,
            keep_transfers,
        })
    }
}
