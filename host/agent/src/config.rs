//! The standalone agent's TOML file, read into the protocol's types (the
//! same settings, pollers and targets the web app hands a connected agent),
//! plus what only this machine knows (journal, cache, host name, where to
//! report). Errors name the poller and the field.

use dispatch_protocol::{AgentConfig, AgentSettings, FieldError, PollerSpec, Secret};
use serde::{Deserialize, Serialize};
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

    fn field(file: &Path, poller: Option<&str>, e: FieldError) -> Self {
        Self::new(file, poller, &e.field, e.message)
    }
}

/// The whole file.
#[derive(Debug, Serialize, Deserialize)]
pub struct AgentFile {
    #[serde(default)]
    pub agent: LocalSettings,
    #[serde(default, rename = "poller")]
    pub pollers: Vec<PollerSpec>,
    /// `[report]`: send the journal and heartbeats to the web app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportConfig>,
}

/// `[agent]`: the protocol's agent settings, and this machine's own.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LocalSettings {
    /// The name transfers are logged under (default: the machine's host name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
    /// The transfer journal (SQLite); default `dispatch-journal.sqlite` beside
    /// the config file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<PathBuf>,
    /// Where compiled plugins are cached (default: the user's cache dir).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    #[serde(flatten)]
    pub settings: AgentSettings,
}

/// Where the agent reports its transfers (the web app's agent API).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportConfig {
    /// The web app, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// The agent's token as the web app showed it, inline or in a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// How often events (and progress) are sent.
    #[serde(default = "report_interval", with = "dispatch_protocol::duration")]
    pub interval: Duration,
    #[serde(default = "heartbeat_interval", with = "dispatch_protocol::duration")]
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
            (None, Some(f)) => read_token(f),
            _ => Err("give exactly one of `token` and `token_file`".into()),
        }
    }
}

/// An agent token from a file (surrounding white space trimmed).
pub fn read_token(file: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("{} is empty", file.display()));
    }
    Ok(Secret::new(token))
}

/// The report URL must be `https`, unless it is a loopback address (the
/// token and the secrets of targets travel over it).
pub fn check_report_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("`{url}` is not an http:// or https:// URL"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(a)) => a.is_loopback(),
                Some(url::Host::Ipv6(a)) => a.is_loopback(),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err(format!(
                    "`{url}` is plain http to another machine: the agent's token and the \
                     targets' secrets would cross the network readable; use https://"
                ))
            }
        }
        _ => Err(format!("`{url}` is not an http:// or https:// URL")),
    }
}

impl AgentFile {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, None, "", format!("cannot read: {e}")))?;
        Self::parse(&text, path)
    }

    /// Parses and checks TOML text; `path` names the file in errors and
    /// anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let syntax = |e: toml::de::Error| {
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
        };
        let raw: toml::Table = toml::from_str(text).map_err(syntax)?;
        let mut config: AgentFile = toml::from_str(text).map_err(syntax)?;
        config.unknown_keys(&raw, path)?;
        // Relative paths are relative to the config file's directory.
        let base = std::path::absolute(
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )
        .map_err(|e| {
            ConfigError::new(path, None, "", format!("cannot resolve its directory: {e}"))
        })?;
        let agent = &mut config.agent;
        for p in [&mut agent.journal, &mut agent.cache_dir]
            .into_iter()
            .flatten()
        {
            *p = base.join(&*p);
        }
        if let Some(r) = &mut config.report {
            if let Some(f) = &r.token_file {
                r.token_file = Some(base.join(f));
            }
            let bad = |field: &str, m: String| ConfigError::new(path, None, field, m);
            check_report_url(&r.url).map_err(|m| bad("report.url", m))?;
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
            for t in p.target.paths_mut() {
                *t = base.join(&*t);
            }
            // Standalone pollers are known by their names.
            if p.id.is_empty() {
                p.id.clone_from(&p.name);
            }
        }
        config.validate(path)?;
        Ok(config)
    }

    /// Refuses keys no setting reads (a misspelt `pasword` must not pass
    /// silently): every key of the file must come back when the parsed
    /// configuration is written out again. The protocol's types accept
    /// unknown fields, so that a newer web app does not break an older agent.
    fn unknown_keys(&self, raw: &toml::Table, file: &Path) -> Result<(), ConfigError> {
        let known = toml::Table::try_from(self)
            .map_err(|e| ConfigError::new(file, None, "", format!("cannot check its keys: {e}")))?;
        match first_unknown(raw, &known, "") {
            None => Ok(()),
            Some(field) => {
                // Name the poller, as other errors do.
                let poller = field
                    .strip_prefix("poller[")
                    .and_then(|r| r.split_once(']'))
                    .and_then(|(i, _)| i.parse::<usize>().ok())
                    .and_then(|i| self.pollers.get(i));
                let (who, field) = match poller {
                    Some(p) => (
                        Some(p.name.as_str()),
                        field
                            .split_once("].")
                            .map_or(field.clone(), |(_, f)| f.to_string()),
                    ),
                    None => (None, field),
                };
                let key = field.rsplit('.').next().unwrap_or(&field).to_string();
                Err(ConfigError::new(
                    file,
                    who,
                    &field,
                    format!("unknown field `{key}` (misspelt, or not a setting of this kind?)"),
                ))
            }
        }
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

    /// The desired state this file describes, as the engine applies it.
    pub fn desired(&self) -> AgentConfig {
        AgentConfig {
            protocol: dispatch_protocol::PROTOCOL_VERSION,
            agent: self.agent.host_name.clone().unwrap_or_default(),
            settings: self.agent.settings.clone(),
            pollers: self.pollers.clone(),
        }
    }

    fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        self.agent
            .settings
            .validate()
            .map_err(|e| ConfigError::field(file, None, e.within("agent")))?;
        let mut seen = std::collections::HashSet::new();
        for p in &self.pollers {
            let name = Some(p.name.as_str());
            p.validate(false)
                .map_err(|e| ConfigError::field(file, name, e))?;
            if !seen.insert(p.name.as_str()) {
                return Err(ConfigError::new(
                    file,
                    name,
                    "name",
                    "is used by another poller",
                ));
            }
        }
        let mut ids = std::collections::HashSet::new();
        for p in &self.pollers {
            if !ids.insert(p.id.as_str()) {
                return Err(ConfigError::new(
                    file,
                    Some(&p.name),
                    "id",
                    format!("`{}` is the id of another poller", p.id),
                ));
            }
        }
        no_overlaps(&self.pollers).map_err(|(name, e)| ConfigError::field(file, Some(&name), e))
    }
}

/// The first key of `raw` that `known` lacks, as a dotted path.
fn first_unknown(raw: &toml::Table, known: &toml::Table, at: &str) -> Option<String> {
    let join = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    for (key, value) in raw {
        let Some(twin) = known.get(key) else {
            return Some(join(key));
        };
        let found = match (value, twin) {
            (toml::Value::Table(a), toml::Value::Table(b)) => first_unknown(a, b, &join(key)),
            (toml::Value::Array(a), toml::Value::Array(b)) => {
                a.iter()
                    .zip(b)
                    .enumerate()
                    .find_map(|(i, pair)| match pair {
                        (toml::Value::Table(a), toml::Value::Table(b)) => {
                            first_unknown(a, b, &format!("{}[{i}]", join(key)))
                        }
                        _ => None,
                    })
            }
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// Refuses enabled pollers that would trip over each other, with symlinks
/// followed on this machine (see [`dispatch_protocol::overlap`]).
pub fn no_overlaps(pollers: &[PollerSpec]) -> Result<(), (String, FieldError)> {
    dispatch_protocol::overlap::no_overlaps(pollers, &real)
}

/// The enabled pollers an agent does not start because they overlap an
/// earlier one, by id, with why.
pub fn refused(pollers: &[PollerSpec]) -> Vec<(String, String)> {
    dispatch_protocol::overlap::refused(pollers, &real)
        .into_iter()
        .map(|(p, e)| (p.id.clone(), e.to_string()))
        .collect()
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
        Some(dispatch_protocol::overlap::lexical(&found))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dispatch_protocol::target::Target;

    fn parse(text: &str) -> Result<AgentFile, String> {
        AgentFile::parse(text, Path::new("agent.toml")).map_err(|e| e.to_string())
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
        assert_eq!(p.params["markers"].as_param(), "ADI.XML,ADI.DTD");
        assert_eq!(c.agent.settings.rescan_interval, Duration::from_secs(60));
        assert_eq!(c.agent.settings.failures_before_disable, 5);
        assert_eq!(
            c.agent.settings.disable_cooldown,
            Duration::from_secs(4 * 3600)
        );
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
    fn the_web_app_is_reached_over_https_unless_on_this_machine() {
        for ok in [
            "https://dispatch.example.net",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "http://localhost:8080/",
        ] {
            assert_eq!(check_report_url(ok), Ok(()), "{ok}");
        }
        let e = check_report_url("http://dispatch.example.net").unwrap_err();
        assert!(e.contains("use https://"), "{e}");
        assert!(check_report_url("http://10.0.0.5:8080").is_err());
        assert!(
            check_report_url("ftp://h")
                .unwrap_err()
                .contains("not an http")
        );
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
            "[report]\nurl = \"http://127.0.0.1\"\ntoken = \"t\"\ntoken_file = \"f\"\n{LOCAL}"
        ))
        .unwrap_err();
        assert!(e.contains("field `report.token`: give exactly one"), "{e}");
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/agent.toml");
        let c = AgentFile::load(&path).unwrap();
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
        let Target::Sftp(t) = &c.pollers[0].target else {
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
        let Target::S3(s3) = &c.pollers[0].target else {
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
        let Target::Ftp(f) = &c.pollers[0].target else {
            panic!("not ftp");
        };
        assert_eq!((f.port, f.tls.as_str()), (21, "explicit"));
        let e = parse(&format!("{base}tls = \"implicit\"\n")).unwrap_err();
        assert!(e.contains("poller `to_ftp`, field `target.tls`"), "{e}");
        let c = parse(&format!("{base}ca_file = \"ca.pem\"\n")).unwrap();
        let Target::Ftp(f) = &c.pollers[0].target else {
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
