//! Targets (the original system's "servers"): where a poller sends. Each
//! kind owns its settings and their validation, which the standalone
//! agent's file, the web app's forms and the agent's loader all call.

use crate::error::{FieldError, bad};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where a poller sends, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Target {
    /// Copy into a directory of the agent's machine (or a mounted share).
    Local(LocalTarget),
    /// IBM Aspera through the `ascp` program.
    Aspera(AsperaTarget),
    /// A WebDAV server (HTTP or HTTPS, Basic auth).
    Webdav(WebdavTarget),
    /// An SFTP server (SSH, password or key).
    Sftp(SftpTarget),
    /// An S3-compatible object store.
    S3(S3Target),
    /// An FTP server, plain or with explicit TLS (FTPS).
    Ftp(FtpTarget),
}

/// Every kind, as `kind` names it.
pub const KINDS: [&str; 6] = ["local", "aspera", "sftp", "ftp", "webdav", "s3"];

/// A local directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LocalTarget {
    /// The directory items are copied into.
    #[schema(value_type = String)]
    pub destination: PathBuf,
    /// Also compare sha256 of source and copy (size is always checked).
    #[serde(default)]
    pub verify_sha256: bool,
    /// Megabits per second; none means as fast as the disks go.
    pub rate_limit_mbps: Option<f64>,
    /// fsync each copy before it is renamed into place and the source is
    /// removed (default). Off trades power-loss safety for speed.
    #[serde(default = "yes")]
    pub fsync: bool,
}

/// An SFTP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SftpTarget {
    /// Host name or address.
    pub host: String,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    pub username: String,
    /// Exactly one of `password`, `private_key` (the key's PEM text) or
    /// `private_key_file`.
    pub password: Option<Secret>,
    pub private_key: Option<Secret>,
    #[schema(value_type = Option<String>)]
    pub private_key_file: Option<PathBuf>,
    /// Decrypts an encrypted private key.
    pub passphrase: Option<Secret>,
    /// Exactly one of `known_hosts` (an OpenSSH known_hosts file),
    /// `host_key_fingerprint` (`SHA256:...` as `ssh-keygen -lf` prints it)
    /// or `insecure_skip_host_key_check = true`.
    #[schema(value_type = Option<String>)]
    pub known_hosts: Option<PathBuf>,
    pub host_key_fingerprint: Option<String>,
    #[serde(default)]
    pub insecure_skip_host_key_check: bool,
    /// Folder on the server (relative to the login folder unless it starts
    /// with `/`); every item keeps its path under it.
    #[serde(default)]
    pub destination: String,
    pub rate_limit_mbps: Option<f64>,
    /// Ask the server to flush each file (`fsync@openssh.com`, where
    /// offered) before it gets its final name and the source is removed.
    #[serde(default = "yes")]
    pub fsync: bool,
}

/// An S3-compatible object store (AWS, MinIO, Ceph, SeaweedFS...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct S3Target {
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
    /// Files larger than this (MiB) go up as a multipart upload; at most 5120.
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold_mb: u64,
    /// Part size of multipart uploads (MiB; S3's minimum is 5).
    #[serde(default = "default_part_size")]
    pub part_size_mb: u64,
    /// Key prefix; every item keeps its path under it.
    #[serde(default)]
    pub destination: String,
    pub rate_limit_mbps: Option<f64>,
}

/// An FTP or FTPS server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FtpTarget {
    pub host: String,
    #[serde(default = "default_ftp_port")]
    pub port: u16,
    pub username: String,
    pub password: Secret,
    /// `explicit` (AUTH TLS on the plain port, FTPS) or `none` (plain FTP).
    #[serde(default = "default_ftp_tls")]
    pub tls: String,
    /// PEM certificates trusted for the server besides the system's roots.
    #[schema(value_type = Option<String>)]
    pub ca_file: Option<PathBuf>,
    /// Folder on the server; every item keeps its path under it.
    #[serde(default)]
    pub destination: String,
    pub rate_limit_mbps: Option<f64>,
}

/// A WebDAV server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebdavTarget {
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

/// Aspera through `ascp`, with the original agent's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AsperaTarget {
    pub host: String,
    pub user: String,
    /// Exactly one of `password`, `ssh_key` (the key's text) or
    /// `ssh_key_file`.
    pub password: Option<Secret>,
    pub ssh_key: Option<Secret>,
    #[schema(value_type = Option<String>)]
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
    #[schema(value_type = String)]
    pub ascp: PathBuf,
    /// Extra flags, passed as they are.
    #[serde(default = "default_ascp_flags")]
    pub flags: Vec<String>,
}

fn yes() -> bool {
    true
}
fn default_ssh_port() -> u16 {
    22
}
fn default_ftp_port() -> u16 {
    21
}
fn default_ftp_tls() -> String {
    "explicit".into()
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
fn default_rate() -> f64 {
    150.0
}
fn default_ascp() -> PathBuf {
    PathBuf::from("ascp")
}
fn default_ascp_flags() -> Vec<String> {
    vec!["-T".into(), "-Q".into()]
}

fn opt<'a>(field: &'static str, p: &'a Option<PathBuf>) -> Option<(&'static str, &'a PathBuf)> {
    p.as_ref().map(|p| (field, p))
}

impl Target {
    /// `local`, `sftp`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Local(_) => "local",
            Target::Aspera(_) => "aspera",
            Target::Webdav(_) => "webdav",
            Target::Sftp(_) => "sftp",
            Target::S3(_) => "s3",
            Target::Ftp(_) => "ftp",
        }
    }

    /// Checks every setting; the error names the field (`host`, `port`...).
    /// `absolute_paths`: file paths must be absolute (a configuration from
    /// the web app, which has no directory to resolve them against).
    pub fn validate(&self, absolute_paths: bool) -> Result<(), FieldError> {
        for (field, path) in self.paths() {
            if path.as_os_str().is_empty() {
                return bad(field, "is empty");
            }
            if absolute_paths && !path.is_absolute() {
                return bad(
                    field,
                    format!("`{}` is not an absolute path", path.display()),
                );
            }
        }
        match self {
            Target::Local(t) => rate(t.rate_limit_mbps),
            Target::Webdav(t) => t.validate(),
            Target::Sftp(t) => t.validate(),
            Target::S3(t) => t.validate(),
            Target::Ftp(t) => t.validate(),
            Target::Aspera(t) => t.validate(),
        }
    }

    /// The file paths among the settings, with their field names (relative
    /// ones are resolved against the standalone agent's file).
    pub fn paths(&self) -> Vec<(&'static str, &PathBuf)> {
        match self {
            Target::Local(t) => vec![("destination", &t.destination)],
            Target::Sftp(t) => [
                opt("private_key_file", &t.private_key_file),
                opt("known_hosts", &t.known_hosts),
            ]
            .into_iter()
            .flatten()
            .collect(),
            Target::Ftp(t) => opt("ca_file", &t.ca_file).into_iter().collect(),
            Target::Aspera(t) => opt("ssh_key_file", &t.ssh_key_file).into_iter().collect(),
            Target::Webdav(_) | Target::S3(_) => Vec::new(),
        }
    }

    /// The same paths, to resolve them.
    pub fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        match self {
            Target::Local(t) => vec![&mut t.destination],
            Target::Sftp(t) => [&mut t.private_key_file, &mut t.known_hosts]
                .into_iter()
                .flatten()
                .collect(),
            Target::Ftp(t) => t.ca_file.iter_mut().collect(),
            Target::Aspera(t) => t.ssh_key_file.iter_mut().collect(),
            Target::Webdav(_) | Target::S3(_) => Vec::new(),
        }
    }

    /// The secret settings, by field name, each `Some` when set.
    pub fn secrets(&self) -> Vec<(&'static str, Option<&Secret>)> {
        match self {
            Target::Local(_) => vec![],
            Target::Aspera(t) => vec![
                ("password", t.password.as_ref()),
                ("ssh_key", t.ssh_key.as_ref()),
                ("passphrase", t.passphrase.as_ref()),
            ],
            Target::Webdav(t) => vec![("password", t.password.as_ref())],
            Target::Sftp(t) => vec![
                ("password", t.password.as_ref()),
                ("private_key", t.private_key.as_ref()),
                ("passphrase", t.passphrase.as_ref()),
            ],
            Target::S3(t) => vec![("secret_key", Some(&t.secret_key))],
            Target::Ftp(t) => vec![("password", Some(&t.password))],
        }
    }

    /// Sets the secret `field` (one of [`Target::secrets`]); `None` clears
    /// it (a required secret becomes empty). False for another field.
    pub fn set_secret(&mut self, field: &str, value: Option<Secret>) -> bool {
        let required = |v: Option<Secret>| v.unwrap_or_else(|| Secret::new(""));
        match (self, field) {
            (Target::Aspera(t), "password") => t.password = value,
            (Target::Aspera(t), "ssh_key") => t.ssh_key = value,
            (Target::Aspera(t), "passphrase") => t.passphrase = value,
            (Target::Webdav(t), "password") => t.password = value,
            (Target::Sftp(t), "password") => t.password = value,
            (Target::Sftp(t), "private_key") => t.private_key = value,
            (Target::Sftp(t), "passphrase") => t.passphrase = value,
            (Target::S3(t), "secret_key") => t.secret_key = required(value),
            (Target::Ftp(t), "password") => t.password = required(value),
            _ => return false,
        }
        true
    }

    /// A one-line summary without credentials, e.g. `sftp deliver@host:22/in`.
    pub fn summary(&self) -> String {
        match self {
            Target::Local(t) => format!("local {}", t.destination.display()),
            Target::Aspera(t) => format!("aspera {}@{}:{}", t.user, t.host, t.destination),
            Target::Webdav(t) => {
                format!("webdav {}/{}", t.url.trim_end_matches('/'), t.destination)
            }
            Target::Sftp(t) => {
                format!(
                    "sftp {}@{}:{}/{}",
                    t.username, t.host, t.port, t.destination
                )
            }
            Target::S3(t) => format!("s3 {} bucket {}/{}", t.endpoint, t.bucket, t.destination),
            Target::Ftp(t) => format!("ftp {}@{}:{}/{}", t.username, t.host, t.port, t.destination),
        }
    }
}

fn rate(r: Option<f64>) -> Result<(), FieldError> {
    if r.is_some_and(|r| r <= 0.0 || !r.is_finite()) {
        return bad("rate_limit_mbps", "must be more than 0");
    }
    Ok(())
}

fn http_url(field: &str, url: &str) -> Result<(), FieldError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return bad(field, format!("`{url}` is not an http:// or https:// URL"));
    }
    if let Err(e) = url::Url::parse(url) {
        return bad(field, format!("`{url}` is not a URL: {e}"));
    }
    Ok(())
}

fn one_of(field: &str, names: &str, set: &[bool]) -> Result<(), FieldError> {
    if set.iter().filter(|s| **s).count() != 1 {
        return bad(field, format!("give exactly one of {names}"));
    }
    Ok(())
}

impl WebdavTarget {
    fn validate(&self) -> Result<(), FieldError> {
        http_url("url", &self.url)?;
        if self.password.is_some() && self.username.is_empty() {
            return bad("username", "is required with a password");
        }
        rate(self.rate_limit_mbps)
    }
}

impl SftpTarget {
    fn validate(&self) -> Result<(), FieldError> {
        if self.host.trim().is_empty() {
            return bad("host", "is empty");
        }
        if self.port == 0 {
            return bad("port", "must be 1 to 65535");
        }
        if self.username.is_empty() {
            return bad("username", "is empty");
        }
        one_of(
            "password",
            "`password`, `private_key` or `private_key_file`",
            &[
                self.password.is_some(),
                self.private_key.is_some(),
                self.private_key_file.is_some(),
            ],
        )?;
        if self.passphrase.is_some() && self.password.is_some() {
            return bad("passphrase", "is for a private key, not a password");
        }
        one_of(
            "known_hosts",
            "`known_hosts`, `host_key_fingerprint` or `insecure_skip_host_key_check = true`",
            &[
                self.known_hosts.is_some(),
                self.host_key_fingerprint.is_some(),
                self.insecure_skip_host_key_check,
            ],
        )?;
        if let Some(fp) = &self.host_key_fingerprint
            && !fp.starts_with("SHA256:")
        {
            return bad(
                "host_key_fingerprint",
                format!("`{fp}` is not `SHA256:...` (as `ssh-keygen -lf` prints it)"),
            );
        }
        rate(self.rate_limit_mbps)
    }
}

impl S3Target {
    fn validate(&self) -> Result<(), FieldError> {
        http_url("endpoint", &self.endpoint)?;
        if self.bucket.trim().is_empty() {
            return bad("bucket", "is empty");
        }
        if self.access_key.trim().is_empty() {
            return bad("access_key", "is empty");
        }
        if self.secret_key.expose().is_empty() {
            return bad("secret_key", "is empty");
        }
        if !(5..=5120).contains(&self.part_size_mb) {
            return bad(
                "part_size_mb",
                "must be from 5 to 5120 (S3's part size limits)",
            );
        }
        if self.multipart_threshold_mb > 5120 {
            return bad(
                "multipart_threshold_mb",
                "must be at most 5120 (S3 takes at most 5 GiB in one PUT)",
            );
        }
        rate(self.rate_limit_mbps)
    }
}

impl FtpTarget {
    fn validate(&self) -> Result<(), FieldError> {
        if self.host.trim().is_empty() {
            return bad("host", "is empty");
        }
        if self.port == 0 {
            return bad("port", "must be 1 to 65535");
        }
        if self.username.trim().is_empty() {
            return bad("username", "is empty");
        }
        if !matches!(self.tls.as_str(), "explicit" | "none") {
            return bad(
                "tls",
                format!("`{}` is not one of explicit, none", self.tls),
            );
        }
        if self.tls == "none" && self.ca_file.is_some() {
            return bad("tls", "is `none`, so `ca_file` does nothing");
        }
        rate(self.rate_limit_mbps)
    }
}

impl AsperaTarget {
    fn validate(&self) -> Result<(), FieldError> {
        one_of(
            "password",
            "`password`, `ssh_key` or `ssh_key_file`",
            &[
                self.password.is_some(),
                self.ssh_key.is_some(),
                self.ssh_key_file.is_some(),
            ],
        )?;
        if self.encrypt
            && self
                .passphrase
                .as_ref()
                .is_none_or(|s| s.expose().is_empty())
        {
            return bad("passphrase", "is required when `encrypt` is true");
        }
        if self.host.trim().is_empty() {
            return bad("host", "is empty");
        }
        if self.user.trim().is_empty() {
            return bad("user", "is empty");
        }
        if self.rate_limit_mbps <= 0.0 || !self.rate_limit_mbps.is_finite() {
            return bad("rate_limit_mbps", "must be more than 0");
        }
        Ok(())
    }
}
