//! The rows of the conformance suite: one fixture per backend that starts
//! its server once, writes the target's TOML, says where things land on
//! this machine, stops and restarts the server, finds the bytes of an
//! upload in progress, and says explicitly which scenarios do not apply.

use crate::common::servers::{self, Certs, Relay, Server};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Which backend a row sends with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Local,
    /// SFTP as [`servers::SSH_USER`] (not root, so permissions bind).
    Sftp {
        password: bool,
    },
    Ftp {
        tls: bool,
    },
    WebDav,
    S3 {
        virtual_host: bool,
    },
    /// The recording stand-in for `ascp` (testing/ascp-standin).
    Aspera,
}

/// Which credentials a target carries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Creds {
    Right,
    Wrong,
}

/// How a scenario that does not apply to a row is reported: the reason,
/// printed in the test's output.
pub type NotApplicable = &'static str;

/// How a row's destination is made unwritable.
pub enum Denial {
    /// Done on the server's side; send as usual.
    Done,
    /// Run the agent in a mount namespace after this script.
    Namespace(String),
    /// Send with these target lines instead.
    Target(String),
}

const ASPERA_PASSWORD: &str = "aspera-Pa55-secret";
const WRONG_SECRET: &str = "wrong-Secret-Pa55word-42";
const KEY_PASSPHRASE: &str = "key-Pa55phrase";

pub struct Row {
    pub name: &'static str,
    pub kind: Kind,
    /// The server's files (root, keys, logs), apart from any agent's site.
    pub home: tempfile::TempDir,
    server: Option<Box<dyn Server>>,
    /// In front of the S3 server: counts the bytes that reached it.
    relay: Option<Relay>,
    certs: Option<Certs>,
    /// SFTP: the host key's fingerprint; the key rows' client key.
    fingerprint: String,
    client_key: PathBuf,
}

impl Row {
    pub fn new(name: &'static str, kind: Kind) -> Self {
        let home = tempfile::tempdir().unwrap();
        let root = home.path().join("server");
        std::fs::create_dir_all(&root).unwrap();
        let mut row = Row {
            name,
            kind,
            server: None,
            relay: None,
            certs: None,
            fingerprint: String::new(),
            client_key: PathBuf::new(),
            home,
        };
        match kind {
            Kind::Local | Kind::Aspera => {}
            Kind::Sftp { .. } => {
                servers::ssh_user();
                // The SFTP user reaches the server's folder and writes in it.
                std::fs::set_permissions(row.home.path(), PermissionsExt::from_mode(0o755))
                    .unwrap();
                std::fs::set_permissions(&root, PermissionsExt::from_mode(0o777)).unwrap();
                let sshd = servers::Sshd::start(&row.home.path().join("sshd"));
                row.fingerprint = sshd.fingerprint();
                row.client_key = sshd.client_key();
                row.server = Some(Box::new(sshd));
            }
            Kind::Ftp { tls } => {
                row.certs = tls.then(|| servers::certs(&row.home.path().join("certs")));
                row.server = Some(Box::new(servers::ftpd(&root, row.certs.as_ref())));
            }
            Kind::WebDav => row.server = Some(Box::new(servers::webdav(&root))),
            Kind::S3 { virtual_host } => {
                if virtual_host {
                    servers::assert_bucket_host_resolves();
                }
                let s3 = servers::s3(&root, virtual_host);
                row.relay = Some(Relay::start(s3.port));
                row.server = Some(Box::new(s3));
            }
        }
        row
    }

    fn port(&self) -> u16 {
        self.server.as_ref().map_or(0, |s| s.port())
    }

    fn root(&self) -> PathBuf {
        self.home.path().join("server")
    }

    /// The `[poller.target]` lines sending into `dest` (a folder path).
    pub fn target(&self, dest: &str, creds: Creds) -> String {
        let secret = |right: &str| match creds {
            Creds::Right => right.to_string(),
            Creds::Wrong => WRONG_SECRET.to_string(),
        };
        let port = self.port();
        match self.kind {
            Kind::Local => format!(
                "kind = \"local\"\ndestination = {:?}\n",
                self.landed(dest).display().to_string()
            ),
            Kind::Sftp { password } => {
                let auth = match (password, creds) {
                    (true, _) => format!("password = \"{}\"", secret(servers::SSH_PASSWORD)),
                    (false, Creds::Right) => format!(
                        "private_key_file = {:?}",
                        self.client_key.display().to_string()
                    ),
                    (false, Creds::Wrong) => format!(
                        "private_key_file = {:?}\npassphrase = \"{KEY_PASSPHRASE}\"",
                        self.unknown_key().display().to_string()
                    ),
                };
                format!(
                    "kind = \"sftp\"\nhost = \"127.0.0.1\"\nport = {port}\nusername = \"{}\"\n\
                     destination = {:?}\nhost_key_fingerprint = \"{}\"\n{auth}\n",
                    servers::SSH_USER,
                    self.landed(dest).display().to_string(),
                    self.fingerprint
                )
            }
            Kind::Ftp { tls } => {
                let tls = match &self.certs {
                    Some(c) if tls => format!(
                        "tls = \"explicit\"\nca_file = {:?}",
                        c.ca.display().to_string()
                    ),
                    _ => "tls = \"none\"".to_string(),
                };
                format!(
                    "kind = \"ftp\"\nhost = \"127.0.0.1\"\nport = {port}\nusername = \"{}\"\n\
                     password = \"{}\"\ndestination = \"{dest}\"\n{tls}\n",
                    servers::FTP_USER,
                    secret(servers::FTP_PASS)
                )
            }
            Kind::WebDav => format!(
                "kind = \"webdav\"\nurl = \"http://127.0.0.1:{port}\"\nusername = \"{}\"\n\
                 password = \"{}\"\ndestination = \"{dest}\"\n",
                servers::DAV_USER,
                secret(servers::DAV_PASS)
            ),
            Kind::S3 { virtual_host } => {
                let relay = self.relay.as_ref().map_or(0, |r| r.port);
                let (host, style) = if virtual_host {
                    ("localhost", "path_style = false\n")
                } else {
                    ("127.0.0.1", "")
                };
                format!(
                    "kind = \"s3\"\nendpoint = \"http://{host}:{relay}\"\nbucket = \"{}\"\n\
                     access_key = \"{}\"\nsecret_key = \"{}\"\ndestination = \"{dest}\"\n{style}",
                    servers::BUCKET,
                    servers::S3_KEY,
                    secret(servers::S3_SECRET)
                )
            }
            Kind::Aspera => format!(
                "kind = \"aspera\"\nhost = \"aspera.example.net\"\nuser = \"affiliate\"\n\
                 ascp = {:?}\npassword = \"{}\"\ndestination = \"/{dest}/\"\n",
                ascp_standin().display().to_string(),
                secret(ASPERA_PASSWORD)
            ),
        }
    }

    /// Where what is sent into `dest` lands on this machine.
    pub fn landed(&self, dest: &str) -> PathBuf {
        match self.kind {
            Kind::S3 { .. } => self.root().join(servers::BUCKET).join(dest),
            _ => self.root().join(dest),
        }
    }

    /// The agent's environment for this row (the stand-in's settings).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self.kind {
            Kind::Aspera => vec![
                (
                    "ASCP_STANDIN_RECORD",
                    self.home.path().join("ascp.record").display().to_string(),
                ),
                ("ASCP_STANDIN_ROOT", self.root().display().to_string()),
                ("ASCP_STANDIN_PASSWORD", ASPERA_PASSWORD.to_string()),
            ],
            _ => Vec::new(),
        }
    }

    /// The secrets of the row's right and wrong targets: never in a log
    /// or the journal.
    pub fn secrets(&self) -> Vec<&'static str> {
        let right = match self.kind {
            Kind::Local => None,
            Kind::Sftp { password: true } => Some(servers::SSH_PASSWORD),
            Kind::Sftp { password: false } => Some(KEY_PASSPHRASE),
            Kind::Ftp { .. } => Some(servers::FTP_PASS),
            Kind::WebDav => Some(servers::DAV_PASS),
            Kind::S3 { .. } => Some(servers::S3_SECRET),
            Kind::Aspera => Some(ASPERA_PASSWORD),
        };
        right.into_iter().chain([WRONG_SECRET]).collect()
    }

    /// What the error of a refused login says: the server's address and
    /// the refusal.
    pub fn login_refused(&self) -> Result<Vec<String>, NotApplicable> {
        let port = self.port();
        Ok(match self.kind {
            Kind::Local => return Err("a local folder has no credentials"),
            Kind::Sftp { password } => vec![
                format!("127.0.0.1:{port}"),
                if password {
                    "authentication refused".into()
                } else {
                    "authentication refused (wrong private key?)".into()
                },
                servers::SSH_USER.into(),
            ],
            Kind::Ftp { tls } => vec![
                format!("{}://127.0.0.1:{port}", if tls { "ftps" } else { "ftp" }),
                "530".into(),
            ],
            Kind::WebDav => vec![format!("http://127.0.0.1:{port}"), "401".into()],
            Kind::S3 { virtual_host } => vec![
                format!(
                    "http://{}:{}",
                    if virtual_host {
                        "localhost"
                    } else {
                        "127.0.0.1"
                    },
                    self.relay.as_ref().map_or(0, |r| r.port)
                ),
                servers::BUCKET.into(),
                "403".into(),
            ],
            // ascp's error is its stderr, which does not name the host, and
            // the backend does not add it (host/transfer/src/aspera.rs).
            Kind::Aspera => vec!["authentication failed".into()],
        })
    }

    /// An encrypted key the SFTP server never saw (made once).
    fn unknown_key(&self) -> PathBuf {
        let key = self.home.path().join("unknown_ed25519");
        if !key.exists() {
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", KEY_PASSPHRASE, "-f"])
                .arg(&key)
                .status()
                .unwrap()
                .success();
            assert!(ok, "ssh-keygen failed");
        }
        key
    }

    /// Stops the server as a crash would.
    pub fn stop(&mut self) -> Result<(), NotApplicable> {
        match self.server.as_mut() {
            Some(s) => {
                s.stop();
                Ok(())
            }
            None if self.kind == Kind::Local => Err("a local folder has no server to stop"),
            None => Err("the ascp stand-in is a program per transfer, not a server to stop"),
        }
    }

    pub fn restart(&mut self) {
        if let Some(s) = self.server.as_mut() {
            s.restart();
        }
    }

    /// Bytes of the upload in progress into `dest` that reached the
    /// server: its part file's size, or, for S3 (no temporary name; the
    /// server holds the body until it is whole), what the relay forwarded.
    pub fn arrived(&self, dest: &str) -> u64 {
        match self.kind {
            Kind::S3 { .. } => self.relay.as_ref().map_or(0, Relay::forwarded),
            _ => crate::common::part_files(&self.landed(dest))
                .iter()
                .filter_map(|p| std::fs::metadata(p).ok())
                .map(|m| m.len())
                .sum(),
        }
    }

    /// Where the retry after a restarted server continued, from the
    /// agent's log (the journal records attempts, not offsets); an error
    /// when the backend or server cannot resume.
    pub fn resumed_at(&self, log: &str) -> Result<u64, NotApplicable> {
        let after = |marker: &str, key: &str| -> Option<u64> {
            let line = log.lines().find(|l| l.contains(marker))?;
            line.split(key)
                .nth(1)?
                .trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        let found = match self.kind {
            Kind::Sftp { .. } => after("resuming the upload of", " at byte "),
            Kind::Ftp { .. } => after("resuming an upload", "offset="),
            Kind::WebDav => return Err("WebDAV has no standard partial PUT: sent again whole"),
            Kind::S3 { .. } => {
                return Err(
                    "rclone serve s3 forgets unfinished uploads when it restarts: sent again \
                     (an agent restart resumes, in s3.rs)",
                );
            }
            Kind::Local | Kind::Aspera => return Err("no server"),
        };
        Ok(found.unwrap_or_else(|| panic!("{}: no resume in the log:\n{log}", self.name)))
    }

    /// Makes `dest` refuse writes, as the server sees it.
    pub fn deny_writes(&self, dest: &str) -> Result<Denial, NotApplicable> {
        let at = self.landed(dest);
        match self.kind {
            // Root ignores permissions: a read-only mount does not.
            Kind::Local => {
                std::fs::create_dir_all(&at).unwrap();
                let at = at.display();
                Ok(Denial::Namespace(format!(
                    "mount --bind {at} {at} && mount -o remount,bind,ro {at}"
                )))
            }
            // The SFTP user meets a folder only root may write in.
            Kind::Sftp { .. } => {
                std::fs::create_dir_all(&at).unwrap();
                std::fs::set_permissions(&at, PermissionsExt::from_mode(0o555)).unwrap();
                Ok(Denial::Done)
            }
            // pyftpdlib and rclone run as root and grant every write: a
            // file stands where the folder should be.
            Kind::Ftp { .. } | Kind::WebDav => {
                std::fs::create_dir_all(at.parent().unwrap()).unwrap();
                std::fs::write(&at, b"not a folder").unwrap();
                Ok(Denial::Done)
            }
            Kind::S3 { virtual_host: true } => Err(
                "no other bucket has a host name here (only media.localhost resolves): \
                 the path-style row covers it",
            ),
            // rclone serve s3 has no access policies: a bucket the key
            // cannot write in is one it does not have.
            Kind::S3 { .. } => Ok(Denial::Target(
                self.target(dest, Creds::Right)
                    .replace("bucket = \"media\"", "bucket = \"sealed\""),
            )),
            Kind::Aspera => Err("the ascp stand-in copies as root and refuses nothing"),
        }
    }

    /// What the refusal of an unwritable destination says.
    pub fn denied_error(&self) -> Vec<String> {
        let port = self.port();
        match self.kind {
            Kind::Local => vec!["Read-only file system".into()],
            Kind::Sftp { .. } => vec![format!("127.0.0.1:{port}"), "ermission denied".into()],
            Kind::Ftp { .. } => vec![format!("127.0.0.1:{port}"), "550".into()],
            Kind::WebDav => vec![format!("http://127.0.0.1:{port}")],
            Kind::S3 { .. } => vec!["sealed".into(), "NoSuchBucket".into()],
            Kind::Aspera => Vec::new(),
        }
    }

    /// The record of every `ascp` run of the stand-in.
    pub fn ascp_record(&self) -> String {
        std::fs::read_to_string(self.home.path().join("ascp.record")).unwrap_or_default()
    }
}

pub fn ascp_standin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testing/ascp-standin/ascp")
}
