//! `sftp`: SSH (russh) + SFTP v3 (russh-sftp). Each file is written to
//! `.<name>.<transfer id>.dispatch-part` (see `super::part_name`) with
//! several writes in flight, its size is checked with a stat after an
//! `fsync@openssh.com` (so the data is on the server's disk before the
//! source is removed), then it is renamed over the final name
//! (`posix-rename@openssh.com`, else remove + rename). A part file left by a
//! failed attempt is resumed from its size by the next attempt of the same
//! transfer (same id, same part name); a permanent failure, which no retry
//! soon continues, removes it (best effort). Logged-in connections are kept
//! for the next item for a while, so a burst of items costs one login.
//! OpenSSH's sftp-server offers no hash extension, so the check is the size
//! (plus, on resume, the part's last bytes compared with the source's).
//!
//! Round trips per file on a pooled connection: four (stat + open of the
//! part, the writes, fsync + close + stat, rename). Requests whose outcome
//! does not decide whether the next may be sent go together: the server
//! (OpenSSH's handles them in order) answers them in one round trip, and
//! the rename still waits for the fsync's and the size check's answers.

use super::{Backend, Job, Progress, RateLimiter, Sent, TransferError};
use dispatch_protocol::Secret;
use dispatch_protocol::target::SftpTarget as SftpConfig;
use dispatch_runtime::actions::ItemKind;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// The largest write we send; a server's `limits@openssh.com` can lower it.
/// OpenSSH allows 255 KiB of data per write.
const MAX_WRITE: u64 = 255 * 1024;
/// What every SFTP server must accept (the draft's minimum).
const MIN_WRITE: u64 = 32 * 1024;
/// Writes in flight at once: one round trip per write would cap throughput
/// (the slowness reported in AspectUnk/russh-sftp#70 is sequential writes).
const IN_FLIGHT: usize = 64;
/// Bytes of a part file compared with the source before resuming it.
const TAIL_CHECK: u64 = 64 * 1024;
/// Connect + key exchange + login.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// One SFTP request's answer.
const REQUEST_TIMEOUT_SECS: u64 = 30;
/// How long a logged-in connection waits for the next item before it is
/// closed, and how many wait: a burst of items costs one SSH login, not one
/// each (a login is several round trips and a key exchange).
const IDLE_FOR: Duration = Duration::from_secs(30);
const MAX_IDLE: usize = 4;
/// An idle connection must answer this fast to be used again.
const ALIVE_CHECK: Duration = Duration::from_secs(5);
/// A connection that finished an item this recently is used again without
/// that check (a round trip per item); if it died meanwhile, the item is
/// sent again on a new connection at once (see `send`).
const TRUSTED_FOR: Duration = Duration::from_secs(5);
/// How long the removal of a failed upload's part may take.
const PART_REMOVE_TIMEOUT: Duration = Duration::from_secs(10);

enum Auth {
    Password(Secret),
    Key(Arc<PrivateKey>),
}

#[derive(Clone)]
enum HostKeyCheck {
    KnownHosts(PathBuf),
    Fingerprint(String),
    Insecure,
}

pub struct SftpBackend {
    host: String,
    port: u16,
    username: String,
    auth: Auth,
    check: HostKeyCheck,
    /// `/` for an absolute destination, else empty (relative to the login
    /// folder).
    anchor: &'static str,
    destination: Vec<String>,
    rate: Option<Arc<RateLimiter>>,
    fsync: bool,
    /// Connections that finished an item cleanly, with when they did.
    idle: Mutex<Vec<(Connection, Instant)>>,
}

impl SftpBackend {
    /// Reads and decodes the private key now, so a bad key or passphrase is
    /// a configuration error at start, not a failure per transfer.
    pub fn new(cfg: &SftpConfig, rate: Option<Arc<RateLimiter>>) -> Result<Self, String> {
        let passphrase = cfg.passphrase.as_ref().map(Secret::expose);
        let hint = match passphrase {
            Some(_) => " (wrong passphrase?)",
            None => " (encrypted keys need `passphrase`)",
        };
        let auth = if let Some(p) = &cfg.password {
            Auth::Password(p.clone())
        } else if let Some(k) = &cfg.private_key {
            let key = russh::keys::decode_secret_key(k.expose(), passphrase)
                .map_err(|e| format!("the private key cannot be read: {e}{hint}"))?;
            Auth::Key(Arc::new(key))
        } else if let Some(path) = &cfg.private_key_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let key = russh::keys::decode_secret_key(&text, passphrase).map_err(|e| {
                format!(
                    "the private key in {} cannot be read: {e}{hint}",
                    path.display()
                )
            })?;
            Auth::Key(Arc::new(key))
        } else {
            return Err("no password or private key".into());
        };
        let check = if let Some(kh) = &cfg.known_hosts {
            HostKeyCheck::KnownHosts(kh.clone())
        } else if let Some(fp) = &cfg.host_key_fingerprint {
            HostKeyCheck::Fingerprint(fp.trim().trim_end_matches('=').to_string())
        } else if cfg.insecure_skip_host_key_check {
            HostKeyCheck::Insecure
        } else {
            return Err("no host key check".into());
        };
        Ok(Self {
            host: cfg.host.clone(),
            port: cfg.port,
            username: cfg.username.clone(),
            auth,
            check,
            anchor: if cfg.destination.starts_with('/') {
                "/"
            } else {
                ""
            },
            destination: segments(&cfg.destination),
            rate,
            fsync: cfg.fsync,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The server, for error texts.
    fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The remote path of `segments` under the destination folder.
    fn remote(&self, segments: &[String]) -> String {
        let all: Vec<&str> = self
            .destination
            .iter()
            .chain(segments)
            .map(String::as_str)
            .collect();
        format!("{}{}", self.anchor, all.join("/"))
    }

    /// Connects, checks the host key, logs in and starts the SFTP subsystem.
    async fn connect(&self) -> Result<Connection, TransferError> {
        let server = self.server();
        let rejected = Arc::new(Mutex::new(None));
        let handler = Client {
            check: self.check.clone(),
            host: self.host.clone(),
            port: self.port,
            server: server.clone(),
            rejected: rejected.clone(),
        };
        let mut preferred = russh::Preferred::default();
        // AES-GCM first: ring runs it on the CPU's AES instructions (and so
        // does sshd); russh's first choice, ChaCha20-Poly1305, is portable
        // Rust.
        let mut ciphers = vec![russh::cipher::AES_256_GCM, russh::cipher::AES_128_GCM];
        ciphers.extend(
            preferred
                .cipher
                .iter()
                .filter(|c| !ciphers.contains(c))
                .copied()
                .collect::<Vec<_>>(),
        );
        preferred.cipher = ciphers.into();
        let config = Arc::new(russh::client::Config {
            preferred,
            nodelay: true,
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 3,
            ..Default::default()
        });
        let login = async {
            let mut handle =
                russh::client::connect(config, (self.host.as_str(), self.port), handler)
                    .await
                    .map_err(|e| {
                        let reason = rejected.lock().ok().and_then(|mut r| r.take());
                        match reason {
                            Some(reason) => TransferError::permanent(reason),
                            None => self.ssh_failed("connecting to", &e),
                        }
                    })?;
            let result = match &self.auth {
                Auth::Password(p) => handle
                    .authenticate_password(self.username.clone(), p.expose())
                    .await
                    .map_err(|e| self.ssh_failed("logging in to", &e))?,
                Auth::Key(key) => {
                    let hash = handle
                        .best_supported_rsa_hash()
                        .await
                        .map_err(|e| self.ssh_failed("logging in to", &e))?
                        .flatten();
                    handle
                        .authenticate_publickey(
                            self.username.clone(),
                            PrivateKeyWithHashAlg::new(key.clone(), hash),
                        )
                        .await
                        .map_err(|e| self.ssh_failed("logging in to", &e))?
                }
            };
            if !result.success() {
                let what = match self.auth {
                    Auth::Password(_) => "password",
                    Auth::Key(_) => "private key",
                };
                return Err(TransferError::permanent(format!(
                    "SFTP login to {server} as `{}` failed: authentication refused (wrong {what}?)",
                    self.username
                )));
            }
            let mut channel = handle
                .channel_open_session()
                .await
                .map_err(|e| self.ssh_failed("opening a session on", &e))?;
            channel
                .request_subsystem(true, "sftp")
                .await
                .map_err(|e| self.ssh_failed("starting SFTP on", &e))?;
            // The server's answer: a server without SFTP says so here.
            loop {
                match channel.wait().await {
                    Some(russh::ChannelMsg::Success) => break,
                    Some(russh::ChannelMsg::Failure) => {
                        return Err(TransferError::permanent(format!(
                            "SFTP: {server} refused the sftp subsystem (is SFTP enabled?)"
                        )));
                    }
                    Some(russh::ChannelMsg::Close | russh::ChannelMsg::Eof) | None => {
                        return Err(TransferError::transient(format!(
                            "SFTP: {server} closed the session before SFTP started"
                        )));
                    }
                    Some(_) => {}
                }
            }
            let sftp_config = russh_sftp::client::Config {
                request_timeout_secs: REQUEST_TIMEOUT_SECS,
                ..Default::default()
            };
            let mut sftp = RawSftpSession::new_with_config(channel.into_stream(), sftp_config);
            let version = sftp
                .init()
                .await
                .map_err(|e| self.sftp_failed("starting SFTP", "", &e))?;
            let has = |ext: &str| version.extensions.contains_key(ext);
            let posix_rename = has(POSIX_RENAME);
            let fsync = self.fsync && has(russh_sftp::extensions::FSYNC);
            let mut write_len = MAX_WRITE;
            if has(russh_sftp::extensions::LIMITS) {
                if let Ok(limits) = sftp.limits().await {
                    if limits.max_write_len > 0 {
                        write_len = write_len.min(limits.max_write_len);
                    }
                    sftp.set_limits(limits.into());
                }
            } else {
                write_len = MIN_WRITE;
            }
            Ok(Connection {
                handle,
                sftp,
                posix_rename,
                fsync,
                write_len: write_len.max(1),
                made: HashSet::new(),
            })
        };
        tokio::time::timeout(CONNECT_TIMEOUT, login)
            .await
            .map_err(|_| {
                TransferError::transient(format!(
                    "SFTP: no answer from {server} within {}s",
                    CONNECT_TIMEOUT.as_secs()
                ))
            })?
    }

    /// Classifies an SSH error: what a retry cannot fix is permanent.
    fn ssh_failed(&self, what: &str, e: &russh::Error) -> TransferError {
        use russh::Error as E;
        let message = format!("SFTP: {what} {} failed: {e}", self.server());
        match e {
            E::NoCommonAlgo { .. }
            | E::UnknownKey
            | E::WrongServerSig
            | E::KeyChanged { .. }
            | E::NoAuthMethod
            | E::UnsupportedAuthMethod
            | E::Keys(_) => TransferError::permanent(message),
            _ => TransferError::transient(message),
        }
    }

    /// Classifies an SFTP error: permission problems are permanent.
    fn sftp_failed(&self, what: &str, path: &str, e: &SftpError) -> TransferError {
        let on = if path.is_empty() {
            String::new()
        } else {
            format!(" `{path}`")
        };
        let message = format!("SFTP {what}{on} on {} failed: {e}", self.server());
        match e {
            // A name or path too long for the server: only this item.
            // OpenSSH's sftp-server answers ENAMETOOLONG (and EINVAL) with
            // "bad message"; other servers say it in the text.
            SftpError::Status(s)
                if (s.status_code == StatusCode::BadMessage && !path.is_empty())
                    || s.error_message.to_ascii_lowercase().contains("too long") =>
            {
                TransferError::item_only(message)
            }
            SftpError::Status(s) if s.status_code == StatusCode::PermissionDenied => {
                TransferError::permanent(message)
            }
            SftpError::Status(s) if s.status_code == StatusCode::OpUnsupported => {
                TransferError::permanent(message)
            }
            _ => TransferError::transient(message),
        }
    }

    /// `mkdir -p` of `dirs` under the destination folder.
    async fn make_dirs(&self, conn: &mut Connection, dirs: &[String]) -> Result<(), TransferError> {
        let mut all: Vec<String> = Vec::new();
        let mut todo = Vec::new();
        for d in self.destination.iter().chain(dirs) {
            all.push(d.clone());
            let path = format!("{}{}", self.anchor, all.join("/"));
            if !conn.made.contains(&path) {
                todo.push(path);
            }
        }
        // The deepest one existing already is the common case (every file
        // after the first): one stat settles it.
        if let Some(last) = todo.last()
            && conn
                .sftp
                .stat(last.as_str())
                .await
                .is_ok_and(|a| a.attrs.is_dir())
        {
            conn.made.extend(todo);
            return Ok(());
        }
        for path in todo {
            match conn.sftp.stat(path.as_str()).await {
                Ok(a) if a.attrs.is_dir() => {}
                Ok(_) => {
                    return Err(TransferError::permanent(format!(
                        "SFTP: `{path}` on {} is a file, not a folder",
                        self.server()
                    )));
                }
                Err(_) => {
                    if let Err(e) = conn
                        .sftp
                        .mkdir(path.as_str(), FileAttributes::empty())
                        .await
                    {
                        // Made by someone else meanwhile?
                        if !conn
                            .sftp
                            .stat(path.as_str())
                            .await
                            .is_ok_and(|a| a.attrs.is_dir())
                        {
                            return Err(self.sftp_failed("mkdir", &path, &e));
                        }
                    }
                }
            }
            conn.made.insert(path);
        }
        Ok(())
    }

    /// Uploads one file to `remote` (segments) through its part name (made
    /// from the transfer id `id`), resuming a part an earlier attempt of the
    /// same transfer left.
    async fn put_file(
        &self,
        conn: &mut Connection,
        local: &Path,
        remote: &[String],
        job: &Job,
        progress: &Arc<Progress>,
    ) -> Result<u64, TransferError> {
        let id = job.id.as_str();
        let (name, dirs) = remote
            .split_last()
            .ok_or_else(|| TransferError::permanent("empty remote path"))?;
        let mut file = tokio::fs::File::from_std(job.open_source(local)?);
        let len = file
            .metadata()
            .await
            .map_err(|e| TransferError::io(&format!("cannot stat {}", local.display()), &e))?
            .len();
        let mut part_segs = dirs.to_vec();
        part_segs.push(super::part_name(name, id));
        let part = self.remote(&part_segs);
        let target = self.remote(remote);
        let result = self
            .upload(conn, &mut file, len, (&part, &target, dirs), progress)
            .await;
        if let Err(e) = &result
            && e.permanent
            && !e.cancelled
        {
            // No retry continues it soon (or ever, for this item): it would
            // only hold space. A transient failure keeps it to resume.
            self.remove_part(conn, &part).await;
        }
        result
    }

    /// The part made whole (resumed from what the server has), synced, its
    /// size checked, then renamed over `target`. `dirs`: its folders, made
    /// again if one known to exist was removed since.
    async fn upload(
        &self,
        conn: &mut Connection,
        file: &mut tokio::fs::File,
        len: u64,
        (part, target, dirs): (&str, &str, &[String]),
        progress: &Arc<Progress>,
    ) -> Result<u64, TransferError> {
        let opened = match self.open_part(conn, part, file, len).await {
            // The known folders are kept across items: one may have been
            // removed on the server since.
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {
                conn.made.clear();
                self.make_dirs(conn, dirs).await?;
                self.open_part(conn, part, file, len).await
            }
            other => other,
        };
        let (handle, offset) = opened.map_err(|e| self.sftp_failed("open", part, &e))?;
        if offset > 0 {
            tracing::info!(
                server = %self.server(),
                "resuming the upload of `{target}` at byte {offset} of {len}"
            );
        }
        // Bytes of a resumed part count as done.
        progress.add(offset);
        let written = self
            .write_all(conn, (&handle, part), file, (offset, len), progress)
            .await;
        if let Err(e) = written {
            let _ = conn.sftp.close(handle.as_str()).await;
            return Err(e);
        }
        // Sent together, in this order: the fsync puts the data on the
        // server's disk before the name is final and the source goes; the
        // stat gives the size the server has. Each answer is checked before
        // the rename is sent.
        let sync = async {
            if conn.fsync {
                conn.sftp.fsync(handle.as_str()).await.map(|_| ())
            } else {
                Ok(())
            }
        };
        let (synced, closed, stat) = futures_util::future::join3(
            sync,
            conn.sftp.close(handle.as_str()),
            conn.sftp.stat(part),
        )
        .await;
        synced.map_err(|e| self.sftp_failed("fsync", part, &e))?;
        closed.map_err(|e| self.sftp_failed("close", part, &e))?;
        let remote_len = stat
            .map_err(|e| self.sftp_failed("stat", part, &e))?
            .attrs
            .size;
        if remote_len != Some(len) {
            return Err(TransferError::transient(format!(
                "size check failed on {}: sent {len} bytes, the server has {remote_len:?}",
                self.server()
            )));
        }
        self.rename(conn, part, target).await?;
        Ok(len)
    }

    /// Opens the part for writing: its handle, and where the upload
    /// continues (0: from the start, the part empty). The stat and the open
    /// go together (one round trip); the open neither truncates nor writes,
    /// so the stat sees the part as an earlier attempt left it, whichever
    /// the server handles first.
    async fn open_part(
        &self,
        conn: &Connection,
        part: &str,
        file: &mut tokio::fs::File,
        len: u64,
    ) -> Result<(String, u64), SftpError> {
        let (stat, open) = futures_util::future::join(
            conn.sftp.stat(part),
            conn.sftp.open(
                part,
                OpenFlags::WRITE | OpenFlags::CREATE,
                FileAttributes::empty(),
            ),
        )
        .await;
        let handle = open?.handle;
        let size = match stat {
            Ok(a) => a.attrs.size,
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => Some(0),
            // Unknown: start over.
            Err(_) => None,
        };
        let offset = match size {
            Some(size) if size > 0 => self.resumable(conn, part, file, size, len).await,
            _ => 0,
        };
        if offset == 0 && size != Some(0) {
            // A part that cannot be continued: emptied, to start over.
            let _ = conn.sftp.close(handle.as_str()).await;
            let handle = conn
                .sftp
                .open(
                    part,
                    OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
                    FileAttributes::empty(),
                )
                .await?
                .handle;
            return Ok((handle, 0));
        }
        Ok((handle, offset))
    }

    /// Removes a part after a permanent failure, best effort: the outcome
    /// is only logged.
    async fn remove_part(&self, conn: &Connection, part: &str) {
        match tokio::time::timeout(PART_REMOVE_TIMEOUT, conn.sftp.remove(part)).await {
            Ok(Ok(_)) => tracing::debug!(
                server = %self.server(),
                "removed the part `{part}` of a failed upload"
            ),
            Ok(Err(SftpError::Status(s))) if s.status_code == StatusCode::NoSuchFile => {}
            Ok(Err(e)) => tracing::debug!(
                server = %self.server(),
                "could not remove the part `{part}` of a failed upload: {e}"
            ),
            Err(_) => tracing::debug!(
                server = %self.server(),
                "no answer to the removal of the part `{part}`"
            ),
        }
    }

    /// Where a part file of `size` bytes from an earlier attempt lets us
    /// continue: its size, when it is smaller than (or as big as) the source
    /// and its last bytes equal the source's there (so a source rewritten
    /// since starts over). OpenSSH's sftp-server handles requests in order,
    /// so a part is the source's first bytes without holes.
    async fn resumable(
        &self,
        conn: &Connection,
        part: &str,
        file: &mut tokio::fs::File,
        size: u64,
        len: u64,
    ) -> u64 {
        if size == 0 || size > len {
            return 0;
        }
        let from = size.saturating_sub(TAIL_CHECK);
        let want = (size - from) as usize;
        let Ok(h) = conn
            .sftp
            .open(part, OpenFlags::READ, FileAttributes::empty())
            .await
        else {
            return 0;
        };
        let mut theirs = Vec::with_capacity(want);
        while theirs.len() < want {
            let at = from + theirs.len() as u64;
            match conn
                .sftp
                .read(h.handle.as_str(), at, (want - theirs.len()) as u32)
                .await
            {
                Ok(d) if !d.data.is_empty() => theirs.extend_from_slice(&d.data),
                _ => break,
            }
        }
        let _ = conn.sftp.close(h.handle.as_str()).await;
        let mut ours = vec![0u8; want];
        let same = file.seek(std::io::SeekFrom::Start(from)).await.is_ok()
            && file.read_exact(&mut ours).await.is_ok()
            && theirs == ours;
        if same { size } else { 0 }
    }

    /// Writes the source from `offset` to `len`, `IN_FLIGHT` writes at a
    /// time, paced by the rate limit and counted in `progress`.
    async fn write_all(
        &self,
        conn: &Connection,
        (handle, part): (&str, &str),
        file: &mut tokio::fs::File,
        (offset, len): (u64, u64),
        progress: &Arc<Progress>,
    ) -> Result<(), TransferError> {
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| TransferError::io("cannot seek the source", &e))?;
        let sftp = &conn.sftp;
        let mut pos = offset;
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < IN_FLIGHT && pos < len {
                if progress.is_cancelled() {
                    return Err(TransferError::cancelled());
                }
                let want = (len - pos).min(conn.write_len) as usize;
                let want = self.rate.as_ref().map_or(want, |r| r.chunk(want));
                let mut buf = vec![0u8; want];
                let mut n = 0;
                while n < want {
                    match file.read(&mut buf[n..]).await {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) => return Err(TransferError::io("cannot read the source", &e)),
                    }
                }
                if n == 0 {
                    return Err(TransferError::transient(
                        "the source shrank during the transfer",
                    ));
                }
                buf.truncate(n);
                if let Some(r) = &self.rate {
                    let wait = r.reserve(n as u64);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = progress.cancel.cancelled() => return Err(TransferError::cancelled()),
                    }
                }
                let at = pos;
                in_flight.push(async move {
                    sftp.write(handle, at, buf)
                        .await
                        .map(|_| n as u64)
                        .map_err(|e| (at, e))
                });
                pos += n as u64;
            }
            let next = tokio::select! {
                next = in_flight.next() => next,
                () = progress.cancel.cancelled() => return Err(TransferError::cancelled()),
            };
            match next {
                None => return Ok(()),
                Some(Ok(n)) => progress.add(n),
                Some(Err((at, e))) => {
                    return Err(self.sftp_failed(&format!("write at byte {at} of"), part, &e));
                }
            }
        }
    }

    /// Renames `from` over `to`, replacing an existing file.
    async fn rename(&self, conn: &Connection, from: &str, to: &str) -> Result<(), TransferError> {
        if conn.posix_rename {
            // Two SSH strings: old path, new path.
            let mut data = Vec::with_capacity(8 + from.len() + to.len());
            for s in [from, to] {
                data.extend_from_slice(&(s.len() as u32).to_be_bytes());
                data.extend_from_slice(s.as_bytes());
            }
            return match conn.sftp.extended(POSIX_RENAME, data).await {
                Ok(Packet::Status(s)) if s.status_code == StatusCode::Ok => Ok(()),
                Ok(Packet::Status(s)) => Err(self.sftp_failed("rename", to, &SftpError::Status(s))),
                Ok(_) => Err(TransferError::transient(format!(
                    "SFTP rename `{to}` on {}: unexpected answer",
                    self.server()
                ))),
                Err(e) => Err(self.sftp_failed("rename", to, &e)),
            };
        }
        // Plain SFTP rename refuses an existing target.
        match conn.sftp.remove(to).await {
            Ok(_) => {}
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {}
            Err(e) => return Err(self.sftp_failed("remove", to, &e)),
        }
        conn.sftp
            .rename(from, to)
            .await
            .map(|_| ())
            .map_err(|e| self.sftp_failed("rename", to, &e))
    }
}

const POSIX_RENAME: &str = "posix-rename@openssh.com";

struct Connection {
    handle: russh::client::Handle<Client>,
    sftp: RawSftpSession,
    posix_rename: bool,
    /// The server offers `fsync@openssh.com` and the poller wants it.
    fsync: bool,
    write_len: u64,
    /// Folders known to exist, kept across items (a part's open that finds
    /// no folder makes them again).
    made: HashSet<String>,
}

impl Connection {
    /// Whether the server still answers, soon enough.
    async fn answers(&self) -> bool {
        !self.handle.is_closed()
            && matches!(
                tokio::time::timeout(ALIVE_CHECK, self.sftp.realpath(".")).await,
                Ok(Ok(_))
            )
    }

    async fn close(self) {
        let _ = self.sftp.close_session();
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// Checks the server's host key.
struct Client {
    check: HostKeyCheck,
    host: String,
    port: u16,
    server: String,
    /// Why the key was refused (russh only reports "unknown key").
    rejected: Arc<Mutex<Option<String>>>,
}

impl Client {
    fn refuse(&self, why: String) -> Result<bool, russh::Error> {
        if let Ok(mut r) = self.rejected.lock() {
            *r = Some(why);
        }
        Ok(false)
    }
}

impl russh::client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match (&self.check, key) {
            (HostKeyCheck::Insecure, _) => return Ok(true),
            (_, PublicKeyOrCertificate::PublicKey { key, .. }) => key,
            (_, PublicKeyOrCertificate::Certificate(_)) => {
                return self.refuse(format!(
                    "SFTP: host key check failed for {}: the server offered a certificate, \
                     which is not supported; pin its key instead",
                    self.server
                ));
            }
        };
        let seen = key.fingerprint(HashAlg::Sha256).to_string();
        match &self.check {
            HostKeyCheck::Insecure => Ok(true),
            HostKeyCheck::Fingerprint(pinned) => {
                if seen.trim_end_matches('=') == pinned {
                    Ok(true)
                } else {
                    self.refuse(format!(
                        "SFTP: host key mismatch for {}: the server's host key is {seen}, \
                         the pinned fingerprint is {pinned}",
                        self.server
                    ))
                }
            }
            HostKeyCheck::KnownHosts(path) => {
                if let Err(e) = std::fs::metadata(path) {
                    return self.refuse(format!(
                        "SFTP: host key check for {} failed: cannot read {}: {e}",
                        self.server,
                        path.display()
                    ));
                }
                match russh::keys::check_known_hosts_path(&self.host, self.port, key, path) {
                    Ok(true) => Ok(true),
                    Ok(false) => self.refuse(format!(
                        "SFTP: host key check failed for {}: its host key ({seen}) is not in {}",
                        self.server,
                        path.display()
                    )),
                    Err(russh::keys::Error::KeyChanged { line }) => self.refuse(format!(
                        "SFTP: host key mismatch for {}: its host key ({seen}) differs from \
                         line {line} of {}",
                        self.server,
                        path.display()
                    )),
                    Err(e) => self.refuse(format!(
                        "SFTP: host key check for {} failed: cannot use {}: {e}",
                        self.server,
                        path.display()
                    )),
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Backend for SftpBackend {
    async fn send(&self, job: &Job, progress: Arc<Progress>) -> Result<Sent, TransferError> {
        let item = segments(&job.path);
        let (mut conn, checked) = match self.reuse().await {
            Some(c) => c,
            None => (self.connect_unless_cancelled(&progress).await?, true),
        };
        let before = progress.bytes_done();
        let mut result = self.send_on(&mut conn, job, &item, &progress).await;
        if let Err(e) = &result
            && !checked
            && !e.permanent
            && !e.cancelled
            && progress.bytes_done() == before
            && !conn.answers().await
        {
            // The connection, used again without a check, had died since
            // its last item: this item goes on a new one, as it would have
            // after a failed check.
            tracing::debug!(
                server = %self.server(),
                "a pooled connection no longer answers ({e}): sending on a new one"
            );
            conn.close().await;
            conn = self.connect_unless_cancelled(&progress).await?;
            result = self.send_on(&mut conn, job, &item, &progress).await;
        }
        if result.is_ok() {
            self.keep(conn).await;
        } else {
            // After a failure the session's state is unknown: never reused.
            conn.close().await;
        }
        result
    }

    fn describe(&self) -> String {
        // sftp://user@host:port/abs/path, or /~/rel/path under the login folder.
        let home = if self.anchor.is_empty() { "/~/" } else { "" };
        format!(
            "sftp://{}@{}{home}{}",
            self.username,
            self.server(),
            self.remote(&[])
        )
    }
}

impl SftpBackend {
    async fn connect_unless_cancelled(
        &self,
        progress: &Progress,
    ) -> Result<Connection, TransferError> {
        tokio::select! {
            c = self.connect() => c,
            () = progress.cancel.cancelled() => Err(TransferError::cancelled()),
        }
    }

    /// A logged-in connection left by an earlier item, if one is fresh and
    /// still answers, and whether that was checked (not when it finished
    /// an item within `TRUSTED_FOR`).
    async fn reuse(&self) -> Option<(Connection, bool)> {
        loop {
            let (conn, since) = self.idle.lock().ok()?.pop()?;
            let idle = since.elapsed();
            if idle < TRUSTED_FOR && !conn.handle.is_closed() {
                return Some((conn, false));
            }
            if idle < IDLE_FOR && conn.answers().await {
                return Some((conn, true));
            }
            conn.close().await;
        }
    }

    /// Keeps a connection for the next item, and closes those idle too long.
    async fn keep(&self, conn: Connection) {
        let mut spare = Some(conn);
        let mut stale = Vec::new();
        if let Ok(mut idle) = self.idle.lock() {
            stale.extend(idle.extract_if(.., |(_, since)| since.elapsed() >= IDLE_FOR));
            if idle.len() < MAX_IDLE {
                idle.extend(spare.take().map(|c| (c, Instant::now())));
            }
        }
        for c in spare.into_iter().chain(stale.into_iter().map(|(c, _)| c)) {
            c.close().await;
        }
    }

    async fn send_on(
        &self,
        conn: &mut Connection,
        job: &Job,
        item: &[String],
        progress: &Arc<Progress>,
    ) -> Result<Sent, TransferError> {
        match job.kind {
            ItemKind::File => {
                self.make_dirs(conn, &item[..item.len().saturating_sub(1)])
                    .await?;
                let bytes = self
                    .put_file(conn, &job.source(), item, job, progress)
                    .await?;
                Ok(Sent::of(bytes))
            }
            ItemKind::Dir => {
                // The tree: every folder, then every file (each through its
                // own part name).
                let (dirs, files) = super::tree::walk(job)?;
                self.make_dirs(conn, item).await?;
                for d in &dirs {
                    let mut full = item.to_vec();
                    full.extend(d.iter().cloned());
                    self.make_dirs(conn, &full).await?;
                }
                let mut bytes = 0;
                for (rel, local) in files {
                    let mut full = item.to_vec();
                    full.extend(rel);
                    bytes += self.put_file(conn, &local, &full, job, progress).await?;
                }
                Ok(Sent::of(bytes))
            }
        }
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}
