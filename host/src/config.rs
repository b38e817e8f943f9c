//! The standalone agent's TOML configuration, validated at start with errors
//! that name the poller and the field.

use crate::secret::Secret;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration problem: where (poller, field) and what.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {place}{message}")]
pub struct ConfigError {
    file: String,
    place: String,
    message: String,
}

impl ConfigError {
    fn new(file: &Path, poller: Option<&str>, field: &str, message: impl Into<String>) -> Self {
        let place = match (poller, field) {
            (Some(p), "") => format!("poller `{p}`: "),
            (Some(p), f) => format!("poller `{p}`, field `{f}`: "),
            (None, "") => String::new(),
            (None, f) => format!("field `{f}`: "),
        };
        Self {
            file: file.display().to_string(),
            place,
            message: message.into(),
        }
    }
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    #[serde(default)]
    pub agent: AgentSettings,
    #[serde(default, rename = "poller")]
    pub pollers: Vec<PollerConfig>,
    /// `[report]`: send the journal and heartbeats to the web app.
    #[serde(default)]
    pub report: Option<ReportConfig>,
}

/// Where the agent reports its transfers (the web app's agent API).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// The web app, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// The agent's token as the web app showed it, inline or in a file.
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    /// How often events (and progress) are sent.
    #[serde(default = "report_interval", deserialize_with = "duration")]
    pub interval: Duration,
    #[serde(default = "heartbeat_interval", deserialize_with = "duration")]
    pub heartbeat: Duration,
}

fn report_interval() -> Duration {
    Duration::from_secs(1)
}

fn heartbeat_interval() -> Duration {
    Duration::from_secs(15)
}

impl ReportConfig {
    /// The token: inline, else read from `token_file`.
    pub fn token(&self) -> Result<Secret, String> {
        match (&self.token, &self.token_file) {
            (Some(t), None) => Ok(t.clone()),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map(|t| Secret::new(t.trim()))
                .map_err(|e| format!("cannot read {}: {e}", f.display())),
            _ => Err("give exactly one of `token` and `token_file`".into()),
        }
    }
}

/// `[agent]`: settings of the whole agent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSettings {
    /// The name transfers are logged under (default: the machine's host name).
    pub host_name: Option<String>,
    /// The transfer journal (SQLite); default `dispatch-journal.sqlite` beside
    /// the config file.
    pub journal: Option<PathBuf>,
    /// Where compiled plugins are cached (default: the user's cache dir).
    pub cache_dir: Option<PathBuf>,
    /// At most this many transfers in flight over all pollers (default: no cap).
    pub max_transfers: Option<usize>,
    /// Full rescan of every poller, the safety net for file systems without
    /// events (NFS).
    #[serde(deserialize_with = "duration")]
    pub rescan_interval: Duration,
    /// On SIGTERM/SIGINT, how long in-flight transfers may finish before they
    /// are cancelled.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// Sandbox limits of a poll.
    pub poll_memory_mib: usize,
    #[serde(deserialize_with = "duration")]
    pub poll_timeout: Duration,
    pub retry: RetrySettings,
    /// Consecutive failed transfers that disable a poller.
    pub failures_before_disable: u32,
    /// How long a poller disabled by failures stays disabled.
    #[serde(deserialize_with = "duration")]
    pub disable_cooldown: Duration,
    pub alerts: AlertSettings,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            host_name: None,
            journal: None,
            cache_dir: None,
            max_transfers: None,
            rescan_interval: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(60),
            poll_memory_mib: 64,
            poll_timeout: Duration::from_secs(5),
            retry: RetrySettings::default(),
            failures_before_disable: 5,
            disable_cooldown: Duration::from_secs(4 * 3600),
            alerts: AlertSettings::default(),
        }
    }
}

/// Retries of a failed transfer: exponential backoff with jitter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    #[serde(deserialize_with = "duration")]
    pub initial: Duration,
    #[serde(deserialize_with = "duration")]
    pub max: Duration,
    /// Each wait is multiplied by a random factor in [1 - jitter, 1 + jitter].
    pub jitter: f64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(300),
            jitter: 0.2,
        }
    }
}

/// Where alerts go when a poller is disabled; nothing by default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// POSTed a JSON object.
    pub webhook: Option<String>,
    pub smtp: Option<SmtpSettings>,
}

/// An e-mail through an SMTP relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// `none`, `starttls` or `tls`.
    #[serde(default = "default_smtp_security")]
    pub security: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
    pub to: Vec<String>,
}

fn default_smtp_port() -> u16 {
    25
}

fn default_smtp_security() -> String {
    "none".into()
}

/// `[[poller]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollerConfig {
    /// Lowercase letters, digits and underscores.
    pub name: String,
    /// The watched directory (the root).
    pub path: PathBuf,
    /// A built-in name or a path to a `.wasm` component.
    pub plugin: String,
    /// The plugin's parameters (strings, booleans, numbers or lists).
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    pub target: TargetConfig,
    #[serde(default = "default_max_transfers")]
    pub max_transfers: usize,
    /// How long an item must stay unchanged before it is sent.
    #[serde(default = "default_stability", deserialize_with = "duration")]
    pub stability: Duration,
    /// Glob patterns of file names never sent (e.g. `*.tmp`, `Thumbs.db`).
    #[serde(default)]
    pub excludes: Vec<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn default_max_transfers() -> usize {
    3
}

fn default_stability() -> Duration {
    Duration::from_secs(10)
}

fn yes() -> bool {
    true
}

/// Where a poller sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum TargetConfig {
    /// Copy into a directory of this machine (or a mounted share).
    Local {
        destination: PathBuf,
        /// Also compare sha256 of source and copy (size is always checked).
        #[serde(default)]
        verify_sha256: bool,
        /// Megabits per second; none means as fast as the disks go.
        rate_limit_mbps: Option<f64>,
        /// fsync each copy before it is renamed into place and the source is
        /// removed (default). Off trades power-loss safety for speed.
        #[serde(default = "yes")]
        fsync: bool,
    },
    /// IBM Aspera through the `ascp` program.
    Aspera(AsperaConfig),
    /// A WebDAV server (HTTP or HTTPS, Basic auth).
    Webdav(WebdavConfig),
    /// An SFTP server (SSH, password or key).
    Sftp(SftpConfig),
    /// An S3-compatible object store.
    S3(S3Config),
    /// An FTP server, plain or with explicit TLS (FTPS).
    Ftp(FtpConfig),
}

/// An SFTP target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftpConfig {
    pub host: String,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    pub username: String,
    /// Exactly one of `password`, `private_key` (the key's PEM text) or
    /// `private_key_file`.
    pub password: Option<Secret>,
    pub private_key: Option<Secret>,
    pub private_key_file: Option<PathBuf>,
    /// Decrypts an encrypted private key.
    pub passphrase: Option<Secret>,
    /// Exactly one of `known_hosts` (an OpenSSH known_hosts file),
    /// `host_key_fingerprint` (`SHA256:...` as `ssh-keygen -lf` prints it)
    /// or `insecure_skip_host_key_check = true`.
    pub known_hosts: Option<PathBuf>,
    pub host_key_fingerprint: Option<String>,
    #[serde(default)]
    pub insecure_skip_host_key_check: bool,
    /// Folder on the server (relative to the login folder unless it starts
    /// with `/`); every item keeps its path under it.
    #[serde(default)]
    pub destination: String,
    pub rate_limit_mbps: Option<f64>,
    /// Ask the server to flush each file to its disk (`fsync@openssh.com`,
    /// where offered) before it gets its final name and the source is
    /// removed (default). Off trades the server's power-loss safety for
    /// speed.
    #[serde(default = "yes")]
    pub fsync: bool,
}

/// An S3-compatible target (AWS, MinIO, Ceph, `rclone serve s3`...).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The service's base URL, e.g. `https://s3.eu-west-1.amazonaws.com`.
    pub endpoint: String,
    #[serde(default = "default_region")]
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: Secret,
    /// `https://endpoint/bucket/key` (default) or `https://bucket.endpoint/key`.
    #[serde(default = "yes")]
    pub path_style: bool,
    /// Files larger than this go up as a multipart upload (resumable, parts
    /// in parallel); smaller ones in one PUT, which is faster on a short,
    /// fast path. 200 MiB as rclone's `upload_cutoff`; at most 5120 (5 GiB,
    /// S3's limit for one PUT).
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold_mb: u64,
    /// Part size of multipart uploads (S3's minimum is 5 MiB).
    #[serde(default = "default_part_size")]
    pub part_size_mb: u64,
    /// Key prefix; every item keeps its path under it.
    #[serde(default)]
    pub destination: String,
    pub rate_limit_mbps: Option<f64>,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_part_size() -> u64 {
    16
}

fn default_multipart_threshold() -> u64 {
    200
}

/// An FTP or FTPS target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FtpConfig {
    pub host: String,
    #[serde(default = "default_ftp_port")]
    pub port: u16,
    pub username: String,
    pub password: Secret,
    /// `explicit` (AUTH TLS on the plain port, FTPS) or `none` (plain FTP).
    #[serde(default = "default_ftp_tls")]
    pub tls: String,
    /// PEM certificates trusted for the server besides the system's roots
    /// (e.g. a private CA or a self-signed server certificate).
    pub ca_file: Option<PathBuf>,
    /// Folder on the server; every item keeps its path under it.
    #[serde(default)]
    pub destination: String,
    pub rate_limit_mbps: Option<f64>,
}

fn default_ftp_port() -> u16 {
    21
}

fn default_ftp_tls() -> String {
    "explicit".into()
}

/// A WebDAV target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebdavConfig {
    /// The server's base URL, e.g. `https://dav.example.net/remote.php/dav`.
    pub url: String,
    #[serde(default)]
    pub username: String,
    pub password: Option<Secret>,
    /// Folder under the URL; every item keeps its path under it.
    #[serde(default)]
    pub destination: String,
    pub rate_limit_mbps: Option<f64>,
}

/// The original agent's Aspera settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsperaConfig {
    pub host: String,
    pub user: String,
    /// Exactly one of `password`, `ssh_key` (the key's text) or
    /// `ssh_key_file`.
    pub password: Option<Secret>,
    pub ssh_key: Option<Secret>,
    pub ssh_key_file: Option<PathBuf>,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// Folder on the remote; every item keeps its path under it.
    #[serde(default)]
    pub destination: String,
    #[serde(default = "default_rate")]
    pub rate_limit_mbps: f64,
    /// Encryption at rest (`--file-crypt=encrypt`); needs `passphrase`.
    #[serde(default)]
    pub encrypt: bool,
    pub passphrase: Option<Secret>,
    /// The program to run.
    #[serde(default = "default_ascp")]
    pub ascp: PathBuf,
    /// Extra flags, passed as they are.
    #[serde(default = "default_ascp_flags")]
    pub flags: Vec<String>,
}

fn default_ssh_port() -> u16 {
    22
}

fn default_rate() -> f64 {
    150.0
}

fn default_ascp() -> PathBuf {
    PathBuf::from("ascp")
}

fn default_ascp_flags() -> Vec<String> {
    vec!["-T".into(), "-Q".into()]
}

/// `10s`, `500ms`, `4h`, or a number of seconds.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Float(f64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Float(f) if f >= 0.0 && f.is_finite() => Ok(Duration::from_secs_f64(f)),
        Raw::Float(f) => Err(serde::de::Error::custom(format!("`{f}` is not a duration"))),
        Raw::Text(t) => humantime::parse_duration(&t).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{t}` is not a duration ({e}); write e.g. `10s`, `500ms`, `4h`"
            ))
        }),
    }
}

impl AgentConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, None, "", format!("cannot read: {e}")))?;
        Self::parse(&text, path)
    }

    /// Parses and checks TOML text; `path` names the file in errors and
    /// anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut config: AgentConfig = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            let message = e.message().replace('\n', " ");
            ConfigError::new(
                path,
                None,
                "",
                match line {
                    Some(l) => format!("line {l}: {message}"),
                    None => message,
                },
            )
        })?;
        // Relative paths are relative to the config file's directory.
        let base = std::path::absolute(
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )
        .map_err(|e| {
            ConfigError::new(path, None, "", format!("cannot resolve its directory: {e}"))
        })?;
        if let Some(j) = &config.agent.journal {
            config.agent.journal = Some(base.join(j));
        }
        if let Some(c) = &config.agent.cache_dir {
            config.agent.cache_dir = Some(base.join(c));
        }
        if let Some(r) = &mut config.report {
            if let Some(f) = &r.token_file {
                r.token_file = Some(base.join(f));
            }
            let bad = |field: &str, m: String| ConfigError::new(path, None, field, m);
            if !(r.url.starts_with("http://") || r.url.starts_with("https://")) {
                return Err(bad(
                    "report.url",
                    format!("`{}` is not an http:// or https:// URL", r.url),
                ));
            }
            // The file is read when the agent starts (the web app may write
            // it after this config is written).
            if r.token.is_some() == r.token_file.is_some() {
                return Err(bad(
                    "report.token",
                    "give exactly one of `token` and `token_file`".into(),
                ));
            }
        }
        for p in &mut config.pollers {
            p.path = base.join(&p.path);
            match &mut p.target {
                TargetConfig::Local { destination, .. } => *destination = base.join(&*destination),
                TargetConfig::Webdav(_) | TargetConfig::S3(_) => {}
                TargetConfig::Sftp(sftp) => {
                    if let Some(k) = &sftp.private_key_file {
                        sftp.private_key_file = Some(base.join(k));
                    }
                    if let Some(k) = &sftp.known_hosts {
                        sftp.known_hosts = Some(base.join(k));
                    }
                }
                TargetConfig::Ftp(f) => {
                    if let Some(ca) = &f.ca_file {
                        f.ca_file = Some(base.join(ca));
                    }
                }
                TargetConfig::Aspera(a) => {
                    if let Some(k) = &a.ssh_key_file {
                        a.ssh_key_file = Some(base.join(k));
                    }
                }
            }
        }
        config.validate(path)?;
        Ok(config)
    }

    /// The journal's path: configured, else beside the config file.
    pub fn journal_path(&self, config_path: &Path) -> PathBuf {
        self.agent.journal.clone().unwrap_or_else(|| {
            let dir = config_path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            std::path::absolute(dir)
                .unwrap_or_else(|_| dir.to_path_buf())
                .join("dispatch-journal.sqlite")
        })
    }

    fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let err = |poller: Option<&str>, field: &str, msg: String| {
            Err(ConfigError::new(file, poller, field, msg))
        };
        let a = &self.agent;
        if a.max_transfers == Some(0) {
            return err(None, "agent.max_transfers", "must be at least 1".into());
        }
        if a.rescan_interval.is_zero() {
            return err(None, "agent.rescan_interval", "must be more than 0".into());
        }
        if a.failures_before_disable == 0 {
            return err(
                None,
                "agent.failures_before_disable",
                "must be at least 1".into(),
            );
        }
        if !(0.0..1.0).contains(&a.retry.jitter) {
            return err(
                None,
                "agent.retry.jitter",
                "must be at least 0 and below 1".into(),
            );
        }
        if a.retry.initial.is_zero() || a.retry.max < a.retry.initial {
            return err(
                None,
                "agent.retry",
                "`initial` must be more than 0 and at most `max`".into(),
            );
        }
        if let Some(smtp) = &a.alerts.smtp {
            if !matches!(smtp.security.as_str(), "none" | "starttls" | "tls") {
                return err(
                    None,
                    "agent.alerts.smtp.security",
                    format!("`{}` is not one of none, starttls, tls", smtp.security),
                );
            }
            if smtp.to.is_empty() {
                return err(
                    None,
                    "agent.alerts.smtp.to",
                    "needs at least one address".into(),
                );
            }
        }
        let mut seen = std::collections::HashSet::new();
        for p in &self.pollers {
            let name = Some(p.name.as_str());
            let valid_name = valid_poller_name(&p.name);
            if !valid_name {
                return err(
                    name,
                    "name",
                    "must be lowercase letters, digits and underscores, starting with a letter"
                        .into(),
                );
            }
            if !seen.insert(p.name.as_str()) {
                return err(name, "name", "is used by another poller".into());
            }
            if p.path.as_os_str().is_empty() {
                return err(name, "path", "is empty".into());
            }
            if p.max_transfers == 0 {
                return err(name, "max_transfers", "must be at least 1".into());
            }
            for (i, pattern) in p.excludes.iter().enumerate() {
                if let Err(e) = globset::Glob::new(pattern) {
                    return err(
                        name,
                        &format!("excludes[{i}]"),
                        format!("`{pattern}` is not a glob pattern: {e}"),
                    );
                }
            }
            for (key, value) in &p.params {
                if let Err(m) = param_value(value) {
                    return err(name, &format!("params.{key}"), m);
                }
            }
            match &p.target {
                TargetConfig::Local {
                    destination,
                    rate_limit_mbps,
                    ..
                } => {
                    if destination.as_os_str().is_empty() {
                        return err(name, "target.destination", "is empty".into());
                    }
                    if rate_limit_mbps.is_some_and(|r| r <= 0.0 || !r.is_finite()) {
                        return err(name, "target.rate_limit_mbps", "must be more than 0".into());
                    }
                }
                TargetConfig::Webdav(dav) => {
                    if !(dav.url.starts_with("http://") || dav.url.starts_with("https://")) {
                        return err(
                            name,
                            "target.url",
                            format!("`{}` is not an http:// or https:// URL", dav.url),
                        );
                    }
                    if dav.password.is_some() && dav.username.is_empty() {
                        return err(
                            name,
                            "target.username",
                            "is required with a password".into(),
                        );
                    }
                    if dav
                        .rate_limit_mbps
                        .is_some_and(|r| r <= 0.0 || !r.is_finite())
                    {
                        return err(name, "target.rate_limit_mbps", "must be more than 0".into());
                    }
                }
                TargetConfig::Sftp(sftp) => {
                    if sftp.host.trim().is_empty() {
                        return err(name, "target.host", "is empty".into());
                    }
                    if sftp.port == 0 {
                        return err(name, "target.port", "must be 1 to 65535".into());
                    }
                    if sftp.username.is_empty() {
                        return err(name, "target.username", "is empty".into());
                    }
                    let creds = [
                        sftp.password.is_some(),
                        sftp.private_key.is_some(),
                        sftp.private_key_file.is_some(),
                    ];
                    if creds.iter().filter(|c| **c).count() != 1 {
                        return err(
                            name,
                            "target.password",
                            "give exactly one of `password`, `private_key` or `private_key_file`"
                                .into(),
                        );
                    }
                    if sftp.passphrase.is_some() && sftp.password.is_some() {
                        return err(
                            name,
                            "target.passphrase",
                            "is for a private key, not a password".into(),
                        );
                    }
                    let checks = [
                        sftp.known_hosts.is_some(),
                        sftp.host_key_fingerprint.is_some(),
                        sftp.insecure_skip_host_key_check,
                    ];
                    if checks.iter().filter(|c| **c).count() != 1 {
                        return err(
                            name,
                            "target.known_hosts",
                            "give exactly one of `known_hosts`, `host_key_fingerprint` or \
                             `insecure_skip_host_key_check = true`"
                                .into(),
                        );
                    }
                    if let Some(fp) = &sftp.host_key_fingerprint
                        && !fp.starts_with("SHA256:")
                    {
                        return err(
                            name,
                            "target.host_key_fingerprint",
                            format!("`{fp}` is not `SHA256:...` (as `ssh-keygen -lf` prints it)"),
                        );
                    }
                    if sftp
                        .rate_limit_mbps
                        .is_some_and(|r| r <= 0.0 || !r.is_finite())
                    {
                        return err(name, "target.rate_limit_mbps", "must be more than 0".into());
                    }
                }
                TargetConfig::S3(s3) => {
                    if !(s3.endpoint.starts_with("http://") || s3.endpoint.starts_with("https://"))
                    {
                        return err(
                            name,
                            "target.endpoint",
                            format!("`{}` is not an http:// or https:// URL", s3.endpoint),
                        );
                    }
                    if s3.bucket.trim().is_empty() {
                        return err(name, "target.bucket", "is empty".into());
                    }
                    if s3.access_key.trim().is_empty() {
                        return err(name, "target.access_key", "is empty".into());
                    }
                    if s3.secret_key.expose().is_empty() {
                        return err(name, "target.secret_key", "is empty".into());
                    }
                    if !(5..=5120).contains(&s3.part_size_mb) {
                        return err(
                            name,
                            "target.part_size_mb",
                            "must be from 5 to 5120 (S3's part size limits)".into(),
                        );
                    }
                    if s3.multipart_threshold_mb > 5120 {
                        return err(
                            name,
                            "target.multipart_threshold_mb",
                            "must be at most 5120 (S3 takes at most 5 GiB in one PUT)".into(),
                        );
                    }
                    if s3
                        .rate_limit_mbps
                        .is_some_and(|r| r <= 0.0 || !r.is_finite())
                    {
                        return err(name, "target.rate_limit_mbps", "must be more than 0".into());
                    }
                }
                TargetConfig::Ftp(ftp) => {
                    if ftp.host.trim().is_empty() {
                        return err(name, "target.host", "is empty".into());
                    }
                    if ftp.username.trim().is_empty() {
                        return err(name, "target.username", "is empty".into());
                    }
                    if !matches!(ftp.tls.as_str(), "explicit" | "none") {
                        return err(
                            name,
                            "target.tls",
                            format!("`{}` is not one of explicit, none", ftp.tls),
                        );
                    }
                    if ftp.tls == "none" && ftp.ca_file.is_some() {
                        return err(
                            name,
                            "target.tls",
                            "is `none`, so `ca_file` does nothing".into(),
                        );
                    }
                    if ftp
                        .rate_limit_mbps
                        .is_some_and(|r| r <= 0.0 || !r.is_finite())
                    {
                        return err(name, "target.rate_limit_mbps", "must be more than 0".into());
                    }
                }
                TargetConfig::Aspera(asp) => {
                    let creds = [
                        asp.password.is_some(),
                        asp.ssh_key.is_some(),
                        asp.ssh_key_file.is_some(),
                    ];
                    if creds.iter().filter(|c| **c).count() != 1 {
                        return err(
                            name,
                            "target.password",
                            "give exactly one of `password`, `ssh_key` or `ssh_key_file`".into(),
                        );
                    }
                    if asp.encrypt
                        && asp
                            .passphrase
                            .as_ref()
                            .is_none_or(|s| s.expose().is_empty())
                    {
                        return err(
                            name,
                            "target.passphrase",
                            "is required when `encrypt` is true".into(),
                        );
                    }
                    if asp.host.trim().is_empty() {
                        return err(name, "target.host", "is empty".into());
                    }
                    if asp.user.trim().is_empty() {
                        return err(name, "target.user", "is empty".into());
                    }
                    if asp.rate_limit_mbps <= 0.0 || !asp.rate_limit_mbps.is_finite() {
                        return err(name, "target.rate_limit_mbps", "must be more than 0".into());
                    }
                }
            }
        }
        no_overlaps(&self.pollers, file)
    }
}

/// Refuses enabled pollers that would trip over each other: overlapping
/// roots (one file seen, sent and removed by both) and overlapping
/// destinations (two items of the same name written to one place at once).
/// The error is on the later poller and names the earlier one.
fn no_overlaps(pollers: &[PollerConfig], file: &Path) -> Result<(), ConfigError> {
    let enabled: Vec<(&PollerConfig, Dir, Option<Place>)> = pollers
        .iter()
        .filter(|p| p.enabled)
        .map(|p| (p, Dir::new(&p.path), place(&p.target)))
        .collect();
    for (i, (p, root, dest)) in enabled.iter().enumerate() {
        let err = |field: &str, msg: String| Err(ConfigError::new(file, Some(&p.name), field, msg));
        let earlier = &enabled[..i];
        if let Some((q, theirs, _)) = earlier.iter().find(|(_, r, _)| root.overlaps(r)) {
            return err(
                "path",
                format!(
                    "overlaps the root of poller `{}` ({}): one file would be seen by both",
                    q.name,
                    theirs.describe()
                ),
            );
        }
        let Some(dest) = dest else { continue };
        let clash = earlier
            .iter()
            .find_map(|(q, _, t)| t.as_ref().filter(|t| collides(dest, t)).map(|t| (q, t)));
        if let Some((q, theirs)) = clash {
            let (mine, theirs) = (dest.describe(), theirs.describe());
            let what = if mine == theirs {
                format!(
                    "delivers into the same place as poller `{}` ({theirs})",
                    q.name
                )
            } else {
                format!(
                    "delivers into {mine}, which overlaps the destination of poller `{}` ({theirs})",
                    q.name
                )
            };
            return err(
                "target",
                format!(
                    "{what}: two items of the same name would collide; give each poller its own \
                     destination folder"
                ),
            );
        }
    }
    Ok(())
}

/// A directory of this machine, as named (absolute, `.` and `..` resolved
/// by name, as the config resolves relative paths) and as it really is
/// (symlinks followed through the part that exists; `None` when not even `/`
/// resolves).
#[derive(Debug)]
struct Dir {
    named: PathBuf,
    real: Option<PathBuf>,
}

impl Dir {
    fn new(path: &Path) -> Self {
        Self {
            named: lexical(path),
            real: real(path),
        }
    }

    /// The same directory, or one inside the other, by name or for real.
    fn overlaps(&self, other: &Dir) -> bool {
        let nested = |a: &Path, b: &Path| a.starts_with(b) || b.starts_with(a);
        nested(&self.named, &other.named)
            || matches!((&self.real, &other.real), (Some(a), Some(b)) if nested(a, b))
    }

    fn describe(&self) -> String {
        match &self.real {
            Some(r) if *r != self.named => {
                format!("{}, really {}", self.named.display(), r.display())
            }
            _ => self.named.display().to_string(),
        }
    }
}

/// `path` made absolute, with `.` and `..` resolved by name.
fn lexical(path: &Path) -> PathBuf {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// `path` with symlinks followed: its longest existing leading part
/// canonicalized, the rest added by name.
fn real(path: &Path) -> Option<PathBuf> {
    let path = std::path::absolute(path).ok()?;
    let parts: Vec<_> = path.components().collect();
    (1..=parts.len()).rev().find_map(|n| {
        let head: PathBuf = parts[..n].iter().collect();
        let mut found = std::fs::canonicalize(head).ok()?;
        found.extend(&parts[n..]);
        Some(lexical(&found))
    })
}

/// Where a target delivers, without credentials.
#[derive(Debug)]
enum Place {
    /// A directory of this machine.
    Local(Dir),
    /// A folder on a server.
    Remote {
        kind: &'static str,
        /// `host:port`, a URL's origin, or an S3 endpoint and bucket.
        server: String,
        /// `/` for a path from the top the target sees (for FTP that is
        /// the login folder, as servers show it); empty for an SFTP folder
        /// under the login folder and for an S3 prefix. Places with
        /// different anchors are never compared: we cannot tell where a
        /// login folder is.
        anchor: &'static str,
        folder: Vec<String>,
    },
}

impl Place {
    fn describe(&self) -> String {
        match self {
            Place::Local(dir) => dir.describe(),
            Place::Remote {
                kind,
                server,
                anchor,
                folder,
            } => {
                let what = match (*kind, *anchor) {
                    ("s3", _) => "prefix",
                    (_, "") => "folder under the login folder",
                    _ => "folder",
                };
                format!("{kind} {server}, {what} `{anchor}{}`", folder.join("/"))
            }
        }
    }
}

/// Where `target` delivers; `None` when that cannot be told (a URL that
/// does not parse: such a target fails when it is made).
fn place(target: &TargetConfig) -> Option<Place> {
    let host_port = |host: &str, port: u16| format!("{}:{port}", host_name(host));
    let remote = |kind, server, anchor, folder| {
        Some(Place::Remote {
            kind,
            server,
            anchor,
            folder,
        })
    };
    match target {
        TargetConfig::Local { destination, .. } => Some(Place::Local(Dir::new(destination))),
        TargetConfig::Webdav(dav) => {
            // As the WebDAV target builds its URLs: the URL's path, then the
            // destination's segments (where `url` drops `.` and `..`).
            let mut url = reqwest::Url::parse(dav.url.trim_end_matches('/')).ok()?;
            url.path_segments_mut()
                .ok()?
                .pop_if_empty()
                .extend(dav.destination.split('/').filter(|s| !s.is_empty()));
            let folder = url
                .path_segments()
                .into_iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            remote("webdav", origin(&url), "/", folder)
        }
        TargetConfig::Sftp(sftp) => {
            // As the SFTP target: absolute when it starts with `/`, else
            // under the login folder.
            let anchor = if sftp.destination.starts_with('/') {
                "/"
            } else {
                ""
            };
            remote(
                "sftp",
                host_port(&sftp.host, sftp.port),
                anchor,
                folder(&sftp.destination, anchor),
            )
        }
        // The FTP target always goes from the login folder, shown as `/`.
        TargetConfig::Ftp(ftp) => remote(
            "ftp",
            host_port(&ftp.host, ftp.port),
            "/",
            folder(&ftp.destination, "/"),
        ),
        // Keys are the prefix's segments and the item's, joined by `/`; an
        // S3 key's `..` is just a name.
        TargetConfig::S3(s3) => {
            let url = reqwest::Url::parse(&s3.endpoint).ok()?;
            let path = url.path().trim_end_matches('/');
            remote(
                "s3",
                format!("{}{path}, bucket `{}`", origin(&url), s3.bucket.trim()),
                "",
                s3.destination
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            )
        }
        // `ascp` is given `user@host:/destination/`.
        TargetConfig::Aspera(asp) => remote(
            "aspera",
            host_name(&asp.host),
            "/",
            folder(&asp.destination, "/"),
        ),
    }
}

/// Two places that are the same or one inside the other.
fn collides(a: &Place, b: &Place) -> bool {
    match (a, b) {
        (Place::Local(a), Place::Local(b)) => a.overlaps(b),
        (
            Place::Remote {
                kind,
                server,
                anchor,
                folder,
            },
            Place::Remote {
                kind: kind_b,
                server: server_b,
                anchor: anchor_b,
                folder: folder_b,
            },
        ) => {
            kind == kind_b
                && server == server_b
                && anchor == anchor_b
                && (folder.starts_with(folder_b) || folder_b.starts_with(folder))
        }
        _ => false,
    }
}

/// A host name as compared: trimmed, lowercase, an IPv6 address unbracketed.
fn host_name(host: &str) -> String {
    host.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// `scheme://host[:port]` of a URL: never its user or password.
fn origin(url: &reqwest::Url) -> String {
    let port = url.port().map_or(String::new(), |p| format!(":{p}"));
    format!("{}://{}{port}", url.scheme(), url.host_str().unwrap_or(""))
}

/// A remote folder's segments with `.` and `..` resolved by name (a `..`
/// above the start stays when `anchor` is empty: we cannot tell where it
/// leads).
fn folder(path: &str, anchor: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in path.split('/').filter(|s| !s.is_empty() && *s != ".") {
        if s != ".." {
            out.push(s.to_string());
        } else if out.last().is_some_and(|l| l != "..") {
            out.pop();
        } else if anchor.is_empty() {
            out.push(s.to_string());
        }
    }
    out
}

/// The rule for poller names (the original form's): lowercase letters,
/// digits and underscores, starting with a letter.
pub fn valid_poller_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A TOML parameter value as the string a plugin gets: lists become
/// comma-separated.
pub fn param_value(v: &toml::Value) -> Result<String, String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                toml::Value::String(s) => Ok(s.clone()),
                other => Err(format!("list items must be strings, not `{other}`")),
            })
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        other => {
            return Err(format!(
                "`{other}` is not a string, number, boolean or list"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentConfig, String> {
        AgentConfig::parse(text, Path::new("agent.toml")).map_err(|e| e.to_string())
    }

    const LOCAL: &str = r#"
[[poller]]
name = "google_out"
path = "/srv/google"
plugin = "google"
params = { markers = ["ADI.XML", "ADI.DTD"], include_hidden = false }
target = { kind = "local", destination = "/srv/remote" }
"#;

    #[test]
    fn defaults_apply() {
        let c = parse(LOCAL).unwrap();
        let p = &c.pollers[0];
        assert_eq!(p.max_transfers, 3);
        assert_eq!(p.stability, Duration::from_secs(10));
        assert!(p.enabled);
        assert_eq!(
            param_value(&p.params["markers"]).unwrap(),
            "ADI.XML,ADI.DTD"
        );
        assert_eq!(c.agent.rescan_interval, Duration::from_secs(60));
        assert_eq!(c.agent.failures_before_disable, 5);
        assert_eq!(c.agent.disable_cooldown, Duration::from_secs(4 * 3600));
    }

    #[test]
    fn errors_name_the_poller_and_field() {
        let e = parse(&LOCAL.replace("google_out", "Google Out")).unwrap_err();
        assert_eq!(
            e,
            "agent.toml: poller `Google Out`, field `name`: must be lowercase letters, digits and underscores, starting with a letter"
        );
        let e = parse(&format!("{LOCAL}{}", LOCAL)).unwrap_err();
        assert!(
            e.contains("poller `google_out`, field `name`: is used by another poller"),
            "{e}"
        );
        let e = parse(&LOCAL.replace(
            "plugin = \"google\"",
            "plugin = \"google\"\nstability = \"soon\"",
        ))
        .unwrap_err();
        assert!(
            e.contains("line") && e.contains("`soon` is not a duration"),
            "{e}"
        );
        let e = parse(&LOCAL.replace(
            "plugin = \"google\"",
            "plugin = \"google\"\nexcludes = [\"[\"]",
        ))
        .unwrap_err();
        assert!(
            e.contains("poller `google_out`, field `excludes[0]`"),
            "{e}"
        );
        let e = parse(&LOCAL.replace("plugin = \"google\"", "plugin = \"google\"\ncolour = 1"))
            .unwrap_err();
        assert!(e.contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn report_needs_a_url_and_one_token() {
        let ok = parse(&format!(
            "[report]\nurl = \"http://127.0.0.1:8080\"\ntoken = \"dsp_secret\"\n{LOCAL}"
        ))
        .unwrap();
        let r = ok.report.unwrap();
        assert_eq!(r.interval, Duration::from_secs(1));
        assert!(!format!("{r:?}").contains("dsp_secret"));
        let e = parse(&format!(
            "[report]\nurl = \"127.0.0.1:8080\"\ntoken = \"t\"\n{LOCAL}"
        ))
        .unwrap_err();
        assert!(
            e.contains("field `report.url`: `127.0.0.1:8080` is not an http"),
            "{e}"
        );
        let e = parse(&format!(
            "[report]\nurl = \"http://h\"\ntoken = \"t\"\ntoken_file = \"f\"\n{LOCAL}"
        ))
        .unwrap_err();
        assert!(e.contains("field `report.token`: give exactly one"), "{e}");
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/agent.toml");
        let c = AgentConfig::load(&path).unwrap();
        assert_eq!(c.pollers.len(), 2);
        assert!(c.pollers[0].path.ends_with("outgoing/dir"));
    }

    #[test]
    fn aspera_needs_exactly_one_credential_and_a_passphrase_to_encrypt() {
        let base = r#"
[[poller]]
name = "a"
path = "/srv/a"
plugin = "file"
[poller.target]
kind = "aspera"
host = "h"
user = "u"
"#;
        let e = parse(base).unwrap_err();
        assert!(
            e.contains("exactly one of `password`, `ssh_key` or `ssh_key_file`"),
            "{e}"
        );
        let e = parse(&format!("{base}password = \"p\"\nssh_key = \"k\"\n")).unwrap_err();
        assert!(e.contains("exactly one"), "{e}");
        let e = parse(&format!("{base}password = \"p\"\nencrypt = true\n")).unwrap_err();
        assert!(
            e.contains("field `target.passphrase`: is required when `encrypt` is true"),
            "{e}"
        );
        assert!(
            parse(&format!(
                "{base}password = \"p\"\nencrypt = true\npassphrase = \"x\"\n"
            ))
            .is_ok()
        );
    }

    #[test]
    fn sftp_needs_one_credential_and_one_host_key_check() {
        let base = r#"
[[poller]]
name = "s"
path = "/srv/s"
plugin = "file"
[poller.target]
kind = "sftp"
host = "h"
username = "u"
"#;
        let e = parse(&format!("{base}host_key_fingerprint = \"SHA256:x\"\n")).unwrap_err();
        assert!(
            e.contains("poller `s`, field `target.password`: give exactly one of `password`, `private_key` or `private_key_file`"),
            "{e}"
        );
        let e = parse(&format!("{base}password = \"p\"\n")).unwrap_err();
        assert!(
            e.contains("poller `s`, field `target.known_hosts`: give exactly one of"),
            "{e}"
        );
        let e = parse(&format!(
            "{base}password = \"p\"\nknown_hosts = \"kh\"\ninsecure_skip_host_key_check = true\n"
        ))
        .unwrap_err();
        assert!(e.contains("field `target.known_hosts`"), "{e}");
        let e = parse(&format!(
            "{base}password = \"p\"\nhost_key_fingerprint = \"ab:cd\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("field `target.host_key_fingerprint`"), "{e}");
        let c = parse(&format!(
            "{base}private_key_file = \"id\"\nknown_hosts = \"kh\"\n"
        ))
        .unwrap();
        let TargetConfig::Sftp(t) = &c.pollers[0].target else {
            panic!("not sftp")
        };
        assert_eq!(t.port, 22);
        assert!(t.known_hosts.as_ref().unwrap().is_absolute());
        assert!(
            parse(&format!(
                "{base}password = \"p\"\ninsecure_skip_host_key_check = true\n"
            ))
            .is_ok()
        );
    }

    const S3: &str = r#"
[[poller]]
name = "to_s3"
path = "/srv/a"
plugin = "file"
[poller.target]
kind = "s3"
endpoint = "http://127.0.0.1:9000"
bucket = "media"
access_key = "AK"
secret_key = "very-secret"
"#;

    #[test]
    fn s3_defaults_and_checks() {
        let c = parse(S3).unwrap();
        let TargetConfig::S3(s3) = &c.pollers[0].target else {
            panic!("not s3");
        };
        assert_eq!(
            (
                s3.region.as_str(),
                s3.path_style,
                s3.part_size_mb,
                s3.multipart_threshold_mb
            ),
            ("us-east-1", true, 16, 200)
        );
        let e = parse(&format!("{S3}multipart_threshold_mb = 6000\n")).unwrap_err();
        assert!(
            e.contains("field `target.multipart_threshold_mb`") && e.contains("5 GiB"),
            "{e}"
        );
        let e = parse(&format!("{S3}part_size_mb = 4\n")).unwrap_err();
        assert!(
            e.contains("poller `to_s3`, field `target.part_size_mb`"),
            "{e}"
        );
        let e = parse(&S3.replace("http://127.0.0.1:9000", "127.0.0.1:9000")).unwrap_err();
        assert!(e.contains("field `target.endpoint`"), "{e}");
        assert!(!format!("{c:?}").contains("very-secret"));
    }

    #[test]
    fn ftp_defaults_and_checks() {
        let base = r#"
[[poller]]
name = "to_ftp"
path = "/srv/a"
plugin = "file"
[poller.target]
kind = "ftp"
host = "ftp.example.net"
username = "u"
password = "p"
"#;
        let c = parse(base).unwrap();
        let TargetConfig::Ftp(f) = &c.pollers[0].target else {
            panic!("not ftp");
        };
        assert_eq!((f.port, f.tls.as_str()), (21, "explicit"));
        let e = parse(&format!("{base}tls = \"implicit\"\n")).unwrap_err();
        assert!(e.contains("poller `to_ftp`, field `target.tls`"), "{e}");
        let c = parse(&format!("{base}ca_file = \"ca.pem\"\n")).unwrap();
        let TargetConfig::Ftp(f) = &c.pollers[0].target else {
            panic!("not ftp");
        };
        assert!(f.ca_file.as_ref().unwrap().is_absolute());
    }

    /// A `file` poller of `path` copying into `destination`.
    fn local(name: &str, path: &str, destination: &str) -> String {
        format!(
            "[[poller]]\nname = \"{name}\"\npath = {path:?}\nplugin = \"file\"\n\
             target = {{ kind = \"local\", destination = {destination:?} }}\n\n"
        )
    }

    /// A `file` poller of `path` with `target` lines.
    fn remote(name: &str, path: &str, target: &str) -> String {
        format!(
            "[[poller]]\nname = \"{name}\"\npath = {path:?}\nplugin = \"file\"\n\
             [poller.target]\n{target}\n\n"
        )
    }

    #[test]
    fn roots_must_not_overlap() {
        let e = parse(&format!(
            "{}{}",
            local("a", "/srv/a", "/out/a"),
            local("b", "/srv/a/", "/out/b")
        ))
        .unwrap_err();
        assert_eq!(
            e,
            "agent.toml: poller `b`, field `path`: overlaps the root of poller `a` (/srv/a): one file would be seen by both"
        );
        for (a, b) in [
            ("/srv/a", "/srv/a/news"),
            ("/srv/a/news", "/srv/a"),
            ("/srv/a", "/srv/x/../a/news"),
            ("/srv/./a", "/srv/a"),
            ("in", "./in/sub"),
        ] {
            let e = parse(&format!(
                "{}{}",
                local("a", a, "/out/a"),
                local("b", b, "/out/b")
            ))
            .unwrap_err();
            assert!(
                e.contains("poller `b`, field `path`: overlaps the root of poller `a`"),
                "{a} {b}: {e}"
            );
        }
        // Siblings whose names share a beginning are fine.
        for (a, b) in [("/srv/a", "/srv/ab"), ("/srv/ab", "/srv/a"), ("in", "in2")] {
            assert!(
                parse(&format!(
                    "{}{}",
                    local("a", a, "/out/a"),
                    local("b", b, "/out/b")
                ))
                .is_ok(),
                "{a} {b}"
            );
        }
    }

    #[test]
    fn a_symlinked_root_or_destination_is_seen_through() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir_all(real.join("news")).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let at = |p: &str| dir.path().join(p).display().to_string();
        let e = parse(&format!(
            "{}{}",
            local("a", &at("real/news"), "/out/a"),
            local("b", &at("link"), "/out/b")
        ))
        .unwrap_err();
        assert!(
            e.contains("poller `b`, field `path`: overlaps the root of poller `a`"),
            "{e}"
        );
        // Not there yet: resolved through the part that exists.
        let e = parse(&format!(
            "{}{}",
            local("a", "/srv/a", &at("real/out")),
            local("b", "/srv/b", &at("link/out/b"))
        ))
        .unwrap_err();
        assert!(
            e.contains("poller `b`, field `target`: delivers into") && e.contains("really"),
            "{e}"
        );
    }

    #[test]
    fn local_destinations_must_not_overlap() {
        let e = parse(&format!(
            "{}{}",
            local("a", "/srv/a", "/out"),
            local("b", "/srv/b", "/out/")
        ))
        .unwrap_err();
        assert_eq!(
            e,
            "agent.toml: poller `b`, field `target`: delivers into the same place as poller `a` (/out): two items of the same name would collide; give each poller its own destination folder"
        );
        let e = parse(&format!(
            "{}{}",
            local("a", "/srv/a", "/out/a"),
            local("b", "/srv/b", "/out")
        ))
        .unwrap_err();
        assert!(
            e.contains(
                "poller `b`, field `target`: delivers into /out, which overlaps the destination of poller `a` (/out/a)"
            ),
            "{e}"
        );
        assert!(
            parse(&format!(
                "{}{}",
                local("a", "/srv/a", "/out/a"),
                local("b", "/srv/b", "/out/ab")
            ))
            .is_ok()
        );
    }

    #[test]
    fn disabled_pollers_are_not_compared() {
        let off = local("b", "/srv/a", "/out")
            .replace("plugin = \"file\"", "plugin = \"file\"\nenabled = false");
        assert!(parse(&format!("{}{off}", local("a", "/srv/a", "/out"))).is_ok());
        assert!(parse(&format!("{off}{}", local("a", "/srv/a", "/out"))).is_ok());
    }

    const SFTP: &str = "kind = \"sftp\"\nhost = \"sftp.example.net\"\nusername = \"u\"\n\
                        password = \"hunter2\"\ninsecure_skip_host_key_check = true";

    #[test]
    fn sftp_destinations_collide_on_one_server_only() {
        let two = |a: &str, b: &str| {
            parse(&format!(
                "{}{}",
                remote("a", "/srv/a", &format!("{SFTP}\n{a}")),
                remote("b", "/srv/b", &format!("{SFTP}\n{b}"))
            ))
        };
        // Same server, different folders: fine.
        assert!(two("destination = \"/in/a\"", "destination = \"/in/b\"").is_ok());
        // Another port, or another server.
        assert!(
            two(
                "destination = \"/in\"",
                "destination = \"/in\"\nport = 2222"
            )
            .is_ok()
        );
        let elsewhere = remote("b", "/srv/b", &format!("{SFTP}\ndestination = \"/in\""))
            .replace("sftp.example.net", "other.example.net");
        assert!(
            parse(&format!(
                "{}{elsewhere}",
                remote("a", "/srv/a", &format!("{SFTP}\ndestination = \"/in\""))
            ))
            .is_ok()
        );
        // Relative (under the login folder) and absolute are not compared.
        assert!(two("destination = \"in\"", "destination = \"/in\"").is_ok());
        let e = two("destination = \"/in\"", "destination = \"/in/news/\"").unwrap_err();
        assert!(
            e.contains(
                "poller `b`, field `target`: delivers into sftp sftp.example.net:22, folder `/in/news`, which overlaps the destination of poller `a` (sftp sftp.example.net:22, folder `/in`)"
            ),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        // Two folders under the login folder.
        let e = two("destination = \"in\"", "destination = \"./in\"").unwrap_err();
        assert!(e.contains("folder under the login folder `in`"), "{e}");
        // The user does not matter; the host's case neither.
        let other_user = remote("b", "/srv/b", &format!("{SFTP}\ndestination = \"/in\""))
            .replace("username = \"u\"\n", "username = \"v\"\n")
            .replace("sftp.example.net", "SFTP.Example.NET");
        let e = parse(&format!(
            "{}{other_user}",
            remote("a", "/srv/a", &format!("{SFTP}\ndestination = \"/in\""))
        ))
        .unwrap_err();
        assert!(
            e.contains("delivers into the same place as poller `a`"),
            "{e}"
        );
    }

    #[test]
    fn s3_prefixes_must_not_overlap_in_one_bucket() {
        let with = |name: &str, extra: &str| {
            S3.replace("name = \"to_s3\"", &format!("name = \"{name}\""))
                .replace("path = \"/srv/a\"", &format!("path = \"/srv/{name}\""))
                + extra
                + "\n"
        };
        let e = parse(&format!(
            "{}{}",
            with("a", "destination = \"incoming\""),
            with("b", "destination = \"/incoming/news/\"")
        ))
        .unwrap_err();
        assert!(
            e.contains(
                "poller `b`, field `target`: delivers into s3 http://127.0.0.1:9000, bucket `media`, prefix `incoming/news`, which overlaps the destination of poller `a` (s3 http://127.0.0.1:9000, bucket `media`, prefix `incoming`)"
            ),
            "{e}"
        );
        assert!(!e.contains("very-secret"), "{e}");
        // No prefix: the whole bucket.
        assert!(
            parse(&format!(
                "{}{}",
                with("a", ""),
                with("b", "destination = \"x\"")
            ))
            .is_err()
        );
        // Disjoint prefixes, another bucket, another endpoint: fine.
        assert!(
            parse(&format!(
                "{}{}",
                with("a", "destination = \"incoming/a\""),
                with("b", "destination = \"incoming/ab\"")
            ))
            .is_ok()
        );
        assert!(
            parse(&format!(
                "{}{}",
                with("a", ""),
                with("b", "").replace("bucket = \"media\"", "bucket = \"other\"")
            ))
            .is_ok()
        );
        assert!(
            parse(&format!(
                "{}{}",
                with("a", ""),
                with("b", "").replace("127.0.0.1:9000", "127.0.0.1:9001")
            ))
            .is_ok()
        );
        // A trailing slash on the endpoint is the same endpoint.
        assert!(
            parse(&format!(
                "{}{}",
                with("a", ""),
                with("b", "").replace("127.0.0.1:9000", "127.0.0.1:9000/")
            ))
            .is_err()
        );
    }

    #[test]
    fn webdav_ftp_and_aspera_destinations_must_not_overlap() {
        let dav = |url: &str, dest: &str| {
            format!(
                "kind = \"webdav\"\nurl = \"{url}\"\nusername = \"u\"\npassword = \"hunter2\"\ndestination = \"{dest}\""
            )
        };
        let e = parse(&format!(
            "{}{}",
            remote("a", "/srv/a", &dav("https://dav.example.net/dav", "in")),
            remote(
                "b",
                "/srv/b",
                &dav("https://u:hunter2@DAV.example.net/dav/in/", "")
            )
        ))
        .unwrap_err();
        assert!(
            e.contains(
                "delivers into the same place as poller `a` (webdav https://dav.example.net, folder `/dav/in`)"
            ),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        assert!(
            parse(&format!(
                "{}{}",
                remote("a", "/srv/a", &dav("https://dav.example.net/dav", "in")),
                remote("b", "/srv/b", &dav("https://dav.example.net/dav/", "out"))
            ))
            .is_ok()
        );
        let ftp = |dest: &str| {
            format!(
                "kind = \"ftp\"\nhost = \"ftp.example.net\"\nusername = \"u\"\npassword = \"p\"\ndestination = \"{dest}\""
            )
        };
        let e = parse(&format!(
            "{}{}",
            remote("a", "/srv/a", &ftp("/in")),
            remote("b", "/srv/b", &ftp("in/x/.."))
        ))
        .unwrap_err();
        assert!(e.contains("poller `b`, field `target`: delivers into the same place as poller `a` (ftp ftp.example.net:21, folder `/in`)"), "{e}");
        let asp = |dest: &str, port: u16| {
            format!(
                "kind = \"aspera\"\nhost = \"aspera.example.net\"\nuser = \"u\"\npassword = \"p\"\nport = {port}\ndestination = \"{dest}\""
            )
        };
        let e = parse(&format!(
            "{}{}",
            remote("a", "/srv/a", &asp("/incoming", 22)),
            remote("b", "/srv/b", &asp("incoming/news", 33001))
        ))
        .unwrap_err();
        assert!(e.contains("poller `b`, field `target`: delivers into aspera aspera.example.net, folder `/incoming/news`"), "{e}");
        assert!(
            parse(&format!(
                "{}{}",
                remote("a", "/srv/a", &asp("/incoming/a", 22)),
                remote("b", "/srv/b", &asp("/incoming/b", 22))
            ))
            .is_ok()
        );
        // Different kinds are not compared.
        assert!(
            parse(&format!(
                "{}{}",
                remote("a", "/srv/a", &ftp("/in")),
                remote("b", "/srv/b", &asp("/in", 21))
            ))
            .is_ok()
        );
    }
}
