//! An agent's desired state: its settings and the pollers it runs. The web
//! app serves it (`GET /api/v1/agent/config`, ETag + long poll); the
//! standalone agent reads the same types from `agent.toml`.

use crate::error::{FieldError, bad};
use crate::secret::Secret;
use crate::target::Target;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

/// Everything an agent runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentConfig {
    /// The protocol version the web app speaks ([`crate::PROTOCOL_VERSION`]).
    #[serde(default = "crate::version")]
    pub protocol: u32,
    /// The agent's name in the web app.
    #[serde(default)]
    pub agent: String,
    #[serde(default)]
    pub settings: AgentSettings,
    #[serde(default)]
    pub pollers: Vec<PollerSpec>,
}

/// Settings of the whole agent; the defaults are the standalone file's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct AgentSettings {
    /// At most this many transfers in flight over all pollers (none: no cap).
    pub max_transfers: Option<usize>,
    /// Full rescan of every poller, the safety net for file systems without
    /// events (NFS).
    #[serde(with = "crate::duration")]
    #[schema(schema_with = crate::duration::schema)]
    pub rescan_interval: Duration,
    /// On shutdown, how long in-flight transfers may finish before they are
    /// cancelled.
    #[serde(with = "crate::duration")]
    #[schema(schema_with = crate::duration::schema)]
    pub shutdown_grace: Duration,
    /// Memory a poll may use (MiB).
    pub poll_memory_mib: usize,
    /// Time a poll may take.
    #[serde(with = "crate::duration")]
    #[schema(schema_with = crate::duration::schema)]
    pub poll_timeout: Duration,
    pub retry: RetrySettings,
    /// Consecutive failed transfers that disable a poller (its breaker).
    pub failures_before_disable: u32,
    /// How long a poller disabled by failures stays disabled.
    #[serde(with = "crate::duration")]
    #[schema(schema_with = crate::duration::schema)]
    pub disable_cooldown: Duration,
    pub alerts: AlertSettings,
    /// How long the agent's journal keeps finished transfers (the web app
    /// keeps the central log; events it acknowledged go at once).
    #[serde(with = "crate::duration")]
    #[schema(schema_with = crate::duration::schema)]
    pub journal_retention: Duration,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            max_transfers: None,
            rescan_interval: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(60),
            poll_memory_mib: 64,
            poll_timeout: Duration::from_secs(5),
            retry: RetrySettings::default(),
            failures_before_disable: 5,
            disable_cooldown: Duration::from_secs(4 * 3600),
            alerts: AlertSettings::default(),
            journal_retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Retries of a failed transfer: exponential backoff with jitter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct RetrySettings {
    #[serde(with = "crate::duration")]
    #[schema(schema_with = crate::duration::schema)]
    pub initial: Duration,
    #[serde(with = "crate::duration")]
    #[schema(schema_with = crate::duration::schema)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct AlertSettings {
    /// POSTed a JSON object.
    pub webhook: Option<String>,
    pub smtp: Option<SmtpSettings>,
}

/// An e-mail through an SMTP relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// One poller: a plugin watching a directory, sending to a target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PollerSpec {
    /// Stable across renames; the agent's journal keys its transfers by it.
    /// The standalone file may leave it out: the name is used.
    #[serde(default)]
    pub id: String,
    /// Lowercase letters, digits and underscores, starting with a letter.
    pub name: String,
    /// The watched directory (the root).
    #[schema(value_type = String)]
    pub path: PathBuf,
    /// A built-in plugin's name or a path to a `.wasm` component; with
    /// `module`, the plugin's name.
    pub plugin: String,
    /// The module to run, fetched by sha256 (connected agents).
    #[serde(default)]
    pub module: Option<ModuleRef>,
    /// The plugin's parameters.
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
    pub target: Target,
    #[serde(default = "default_max_transfers")]
    pub max_transfers: usize,
    /// How long an item must stay unchanged before it is sent.
    #[serde(default = "default_stability", with = "crate::duration")]
    #[schema(schema_with = crate::duration::schema)]
    pub stability: Duration,
    /// Glob patterns of file names never sent (e.g. `*.tmp`).
    #[serde(default)]
    pub excludes: Vec<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Changes when a person re-enables the poller: the agent resets its
    /// breaker.
    #[serde(default)]
    pub enabled_at: Option<i64>,
}

/// A plugin version in the web app's registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModuleRef {
    /// The version `describe()` gave.
    pub version: String,
    /// Hex sha256 of the component's bytes: fetched from
    /// `/api/v1/plugins/{sha256}` and checked against it.
    pub sha256: String,
    /// Its size in bytes.
    #[serde(default)]
    pub size: u64,
}

/// A parameter value: text, a number, a boolean or a list of texts. A
/// plugin receives it as text (a list comma-separated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ParamValue {
    Text(String),
    Bool(bool),
    Int(i64),
    Float(f64),
    List(Vec<String>),
}

impl ParamValue {
    /// What the plugin gets.
    pub fn as_param(&self) -> String {
        match self {
            ParamValue::Text(s) => s.clone(),
            ParamValue::Bool(b) => b.to_string(),
            ParamValue::Int(i) => i.to_string(),
            ParamValue::Float(f) => f.to_string(),
            ParamValue::List(items) => items.join(","),
        }
    }
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

/// The rule for poller names (the original form's): lowercase letters,
/// digits and underscores, starting with a letter.
pub fn valid_poller_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl AgentSettings {
    /// Checks every setting; the error names the field.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.max_transfers == Some(0) {
            return bad("max_transfers", "must be at least 1");
        }
        if self.rescan_interval.is_zero() {
            return bad("rescan_interval", "must be more than 0");
        }
        if self.poll_memory_mib == 0 {
            return bad("poll_memory_mib", "must be at least 1");
        }
        if self.poll_timeout.is_zero() {
            return bad("poll_timeout", "must be more than 0");
        }
        if self.failures_before_disable == 0 {
            return bad("failures_before_disable", "must be at least 1");
        }
        if self.journal_retention < Duration::from_secs(3600) {
            return bad("journal_retention", "must be at least 1h");
        }
        if !(0.0..1.0).contains(&self.retry.jitter) {
            return bad("retry.jitter", "must be at least 0 and below 1");
        }
        if self.retry.initial.is_zero() || self.retry.max < self.retry.initial {
            return bad("retry", "`initial` must be more than 0 and at most `max`");
        }
        if let Some(hook) = &self.alerts.webhook
            && !(hook.starts_with("http://") || hook.starts_with("https://"))
        {
            return bad(
                "alerts.webhook",
                format!("`{hook}` is not an http:// or https:// URL"),
            );
        }
        if let Some(smtp) = &self.alerts.smtp {
            if !matches!(smtp.security.as_str(), "none" | "starttls" | "tls") {
                return bad(
                    "alerts.smtp.security",
                    format!("`{}` is not one of none, starttls, tls", smtp.security),
                );
            }
            if smtp.to.is_empty() {
                return bad("alerts.smtp.to", "needs at least one address");
            }
        }
        Ok(())
    }
}

impl PollerSpec {
    /// Checks the poller's own settings (not its plugin's parameters, which
    /// need the plugin). `absolute_paths` as in [`Target::validate`].
    pub fn validate(&self, absolute_paths: bool) -> Result<(), FieldError> {
        if !valid_poller_name(&self.name) {
            return bad(
                "name",
                "must be lowercase letters, digits and underscores, starting with a letter",
            );
        }
        if self.path.as_os_str().is_empty() {
            return bad("path", "is empty");
        }
        if absolute_paths && !self.path.is_absolute() {
            return bad(
                "path",
                format!("`{}` is not an absolute path", self.path.display()),
            );
        }
        if self.plugin.trim().is_empty() {
            return bad("plugin", "is empty");
        }
        if let Some(m) = &self.module
            && !(m.sha256.len() == 64 && m.sha256.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return bad(
                "module.sha256",
                format!("`{}` is not a hex sha256", m.sha256),
            );
        }
        if self.max_transfers == 0 {
            return bad("max_transfers", "must be at least 1");
        }
        for (i, pattern) in self.excludes.iter().enumerate() {
            if let Err(e) = globset::Glob::new(pattern) {
                return bad(
                    &format!("excludes[{i}]"),
                    format!("`{pattern}` is not a glob pattern: {e}"),
                );
            }
        }
        self.target
            .validate(absolute_paths)
            .map_err(|e| e.within("target"))
    }
}

impl AgentConfig {
    /// Checks the settings and every poller, and that names and ids are
    /// unique. The error names the poller (`pollers[name].field`).
    pub fn validate(&self, absolute_paths: bool) -> Result<(), FieldError> {
        self.settings.validate().map_err(|e| e.within("settings"))?;
        let (mut names, mut ids) = (HashSet::new(), HashSet::new());
        for p in &self.pollers {
            let at = format!("pollers[{}]", p.name);
            p.validate(absolute_paths).map_err(|e| e.within(&at))?;
            if !names.insert(p.name.as_str()) {
                return bad(&format!("{at}.name"), "is used by another poller");
            }
            if !ids.insert(p.id.as_str()) {
                return bad(
                    &format!("{at}.id"),
                    format!("`{}` is the id of another poller", p.id),
                );
            }
        }
        Ok(())
    }
}
