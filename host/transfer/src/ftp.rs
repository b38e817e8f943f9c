//! `ftp`: FTP or FTPS (explicit TLS, `AUTH TLS` on the plain port) with
//! suppaftp over tokio, passive mode, binary type.
//!
//! Each file goes to `.<name>.<transfer id>.dispatch-part` (see
//! `super::part_name`) beside its final name, is checked with SIZE, then
//! renamed (RNFR/RNTO; an existing file under the final name is deleted
//! first when the server refuses to overwrite it), so the final name never
//! holds a partial file. The part left by an interrupted upload is resumed
//! from its size by the next attempt of the same transfer (same id, same
//! name; REST + STOR); a server refusing REST gets the whole file again. A
//! permanent failure, which no retry soon continues, deletes the part (best
//! effort). MKD makes missing folders.

use super::read_ahead::range_stream;
use super::tree::walk;
use super::webdav::segments;
use super::{Backend, Job, Progress, RateLimiter, Sent, TransferError};
use dispatch_protocol::Secret;
use dispatch_protocol::target::FtpTarget as FtpConfig;
use dispatch_runtime::actions::ItemKind;
use futures_util::StreamExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use suppaftp::FtpError;
use suppaftp::tokio::{AsyncRustlsConnector, AsyncRustlsFtpStream};
use suppaftp::types::FileType;
use tokio::io::AsyncWriteExt as _;

/// A control connection; plain until `into_secure`.
type Ftp = AsyncRustlsFtpStream;

/// How long a connection or a command's answer may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// How long the DELE of a failed upload's part may take.
const PART_DELETE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct FtpBackend {
    host: String,
    port: u16,
    username: String,
    password: Secret,
    /// One client config for every connection, so TLS sessions resume
    /// (servers may require the data connection to reuse the control
    /// connection's session).
    tls: Option<Arc<rustls::ClientConfig>>,
    destination: Vec<String>,
    rate: Option<Arc<RateLimiter>>,
}

impl FtpBackend {
    pub fn new(cfg: &FtpConfig, rate: Option<Arc<RateLimiter>>) -> Result<Self, String> {
        let tls = match cfg.tls.as_str() {
            "none" => None,
            _ => {
                let mut roots = rustls::RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                if let Some(ca) = &cfg.ca_file {
                    use rustls::pki_types::pem::PemObject as _;
                    let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca)
                        .map_err(|e| format!("cannot read `{}`: {e}", ca.display()))?;
                    let mut added = 0;
                    for c in certs {
                        let c = c.map_err(|e| format!("`{}`: {e}", ca.display()))?;
                        roots
                            .add(c)
                            .map_err(|e| format!("`{}`: {e}", ca.display()))?;
                        added += 1;
                    }
                    if added == 0 {
                        return Err(format!("`{}` holds no PEM certificate", ca.display()));
                    }
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("TLS setup: {e}"))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(Arc::new(config))
            }
        };
        Ok(Self {
            host: cfg.host.clone(),
            port: cfg.port,
            username: cfg.username.clone(),
            password: cfg.password.clone(),
            tls,
            destination: segments(&cfg.destination),
            rate,
        })
    }

    fn server(&self) -> String {
        let scheme = if self.tls.is_some() { "ftps" } else { "ftp" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }

    /// An FTP failure: login and permission refusals are permanent.
    fn failed(&self, what: &str, e: &FtpError) -> TransferError {
        let message = format!(
            "FTP {what} on {} failed: {}",
            self.server(),
            e.to_string().trim()
        );
        match e {
            FtpError::UnexpectedResponse(r) => match r.status.code() {
                // 4xx: try again later (421 closing, 425/426 data
                // connection, 450/451/452 busy, local error, no space now).
                400..=499 => TransferError::transient(message),
                // "550 File name too long." (ENAMETOOLONG on the server),
                // "500 Command too long.": this item's path alone.
                _ if String::from_utf8_lossy(&r.body)
                    .to_ascii_lowercase()
                    .contains("too long") =>
                {
                    TransferError::item_only(message)
                }
                // 530 not logged in, 532, 550 permission / not found, 553
                // name not allowed, 500-504 not understood.
                _ => TransferError::permanent(message),
            },
            // A certificate the server cannot prove is a setup problem.
            FtpError::SecureError(s) if s.contains("certificate") || s.contains("Certificate") => {
                TransferError::permanent(message)
            }
            _ => TransferError::transient(message),
        }
    }

    async fn timed<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, FtpError>>,
    ) -> Result<T, TransferError> {
        match tokio::time::timeout(TIMEOUT, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.failed(what, &e)),
            Err(_) => Err(TransferError::transient(format!(
                "FTP {what} on {}: no answer in {}s",
                self.server(),
                TIMEOUT.as_secs()
            ))),
        }
    }

    /// A logged-in control connection in binary, passive mode.
    async fn connect(&self) -> Result<Ftp, TransferError> {
        let addr = format!("{}:{}", self.host, self.port);
        let mut ftp = self.timed("connect", Ftp::connect(addr)).await?;
        if let Some(config) = &self.tls {
            let connector =
                AsyncRustlsConnector::from(tokio_rustls::TlsConnector::from(config.clone()));
            ftp = self
                .timed("AUTH TLS", ftp.into_secure(connector, &self.host))
                .await?;
        }
        self.timed(
            "login",
            ftp.login(self.username.as_str(), self.password.expose()),
        )
        .await?;
        // Connections start in ASCII, which would rewrite line ends.
        self.timed("TYPE I", ftp.transfer_type(FileType::Binary))
            .await?;
        ftp.set_mode(suppaftp::Mode::Passive);
        Ok(ftp)
    }

    /// MKD every folder of `dirs` from the top; existing ones are refused
    /// with 550, which is ignored (a real refusal surfaces at STOR).
    async fn make_dirs(&self, ftp: &mut Ftp, dirs: &[String]) -> Result<(), TransferError> {
        let mut path = String::new();
        for d in self.destination.iter().chain(dirs) {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(d);
            match tokio::time::timeout(TIMEOUT, ftp.mkdir(&path)).await {
                Ok(Ok(())) => {}
                Ok(Err(FtpError::UnexpectedResponse(_))) => {}
                Ok(Err(e)) => return Err(self.failed("MKD", &e)),
                Err(_) => return Err(TransferError::transient("FTP MKD: no answer")),
            }
        }
        Ok(())
    }

    /// Uploads one file to `remote` (segments under the destination)
    /// through its temporary name (made from the transfer id `id`).
    async fn put_file(
        &self,
        ftp: &mut Ftp,
        local: &Path,
        remote: &[String],
        job: &Job,
        progress: &Arc<Progress>,
    ) -> Result<u64, TransferError> {
        let id = job.id.as_str();
        let (name, dirs) = remote
            .split_last()
            .ok_or_else(|| TransferError::permanent("empty remote path"))?;
        let file = job.open_source(local)?;
        let len = file
            .metadata()
            .map_err(|e| TransferError::io(&format!("cannot stat {}", local.display()), &e))?
            .len();
        let dir: Vec<&str> = self
            .destination
            .iter()
            .chain(dirs)
            .map(String::as_str)
            .collect();
        let join = |leaf: &str| {
            let mut p = dir.join("/");
            if !p.is_empty() {
                p.push('/');
            }
            p + leaf
        };
        let tmp = join(&super::part_name(name, id));
        let fin = join(name);
        let result = self.upload(ftp, &file, len, &tmp, &fin, progress).await;
        if let Err(e) = &result
            && e.permanent
            && !e.cancelled
        {
            // No retry continues it soon (or ever, for this item): it would
            // only hold space. A transient failure keeps it to resume.
            self.delete_part(ftp, &tmp).await;
        }
        result
    }

    /// The part `tmp` made whole (resumed from what the server has), its
    /// size checked, then renamed to `fin`.
    async fn upload(
        &self,
        ftp: &mut Ftp,
        file: &std::fs::File,
        len: u64,
        tmp: &str,
        fin: &str,
        progress: &Arc<Progress>,
    ) -> Result<u64, TransferError> {
        // What an earlier, interrupted attempt left under the temporary name.
        let offset = match tokio::time::timeout(TIMEOUT, ftp.size(tmp)).await {
            Ok(Ok(n)) => u64::try_from(n).unwrap_or(0),
            _ => 0,
        };
        let offset = if offset <= len { offset } else { 0 };
        if offset < len || len == 0 {
            let sent = self.store(ftp, file, tmp, offset, len, progress).await;
            match sent {
                Err(e) if offset > 0 && e.permanent => {
                    // The server refused REST: send it all again.
                    tracing::info!(path = %tmp, "resume refused, sending the whole file");
                    self.store(ftp, file, tmp, 0, len, progress).await?;
                }
                other => other?,
            }
        } else {
            progress.add(len);
        }
        let remote_len = self.timed("SIZE", ftp.size(tmp)).await?;
        if u64::try_from(remote_len).ok() != Some(len) {
            return Err(TransferError::transient(format!(
                "size check of `{tmp}` failed on {}: sent {len} bytes, the server has {remote_len}",
                self.server()
            )));
        }
        if let Err(first) = self.timed("RNFR/RNTO", ftp.rename(tmp, fin)).await {
            // Some servers refuse to rename over an existing file.
            if self.timed("DELE", ftp.rm(fin)).await.is_err() {
                return Err(first);
            }
            self.timed("RNFR/RNTO", ftp.rename(tmp, fin)).await?;
        }
        Ok(len)
    }

    /// DELE of a part after a permanent failure, best effort: the outcome
    /// is only logged.
    async fn delete_part(&self, ftp: &mut Ftp, tmp: &str) {
        match tokio::time::timeout(PART_DELETE_TIMEOUT, ftp.rm(tmp)).await {
            Ok(Ok(())) => tracing::debug!(path = %tmp, "deleted the part of a failed upload"),
            Ok(Err(e)) => tracing::debug!(
                path = %tmp,
                "could not delete the part of a failed upload: {}",
                e.to_string().trim()
            ),
            Err(_) => tracing::debug!(path = %tmp, "no answer to the DELE of a part"),
        }
    }

    /// STOR (after REST `offset` when resuming) of the file from `offset`.
    async fn store(
        &self,
        ftp: &mut Ftp,
        file: &std::fs::File,
        tmp: &str,
        offset: u64,
        len: u64,
        progress: &Arc<Progress>,
    ) -> Result<(), TransferError> {
        if offset > 0 {
            let at = usize::try_from(offset).map_err(|_| TransferError::permanent("offset"))?;
            self.timed("REST", ftp.resume_transfer(at)).await?;
            tracing::info!(path = %tmp, offset, "resuming an upload");
        }
        let mut data = self.timed("STOR", ftp.put_with_stream(tmp)).await?;
        progress.add(offset);
        let file = Arc::new(
            file.try_clone()
                .map_err(|e| TransferError::io("cannot reopen the source", &e))?,
        );
        let mut chunks = std::pin::pin!(range_stream(
            file,
            offset,
            len - offset,
            self.rate.clone(),
            progress.clone(),
        ));
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| {
                if progress.is_cancelled() {
                    TransferError::cancelled()
                } else {
                    TransferError::io("cannot read the source", &e)
                }
            })?;
            match tokio::time::timeout(TIMEOUT, data.write_all(&chunk)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(TransferError::transient(format!(
                        "FTP upload to {} broke off: {e}",
                        self.server()
                    )));
                }
                Err(_) => {
                    return Err(TransferError::transient(format!(
                        "FTP upload to {} stalled",
                        self.server()
                    )));
                }
            }
        }
        self.timed("STOR (226)", data.finish()).await
    }
}

#[async_trait::async_trait]
impl Backend for FtpBackend {
    async fn send(&self, job: &Job, progress: Arc<Progress>) -> Result<Sent, TransferError> {
        let item = segments(&job.path);
        let mut ftp = self.connect().await?;
        let result = match job.kind {
            ItemKind::File => {
                let sent = async {
                    self.make_dirs(&mut ftp, &item[..item.len().saturating_sub(1)])
                        .await?;
                    self.put_file(&mut ftp, &job.source(), &item, job, &progress)
                        .await
                }
                .await;
                sent.map(Sent::of)
            }
            ItemKind::Dir => {
                let sent = async {
                    let (dirs, files) = walk(job)?;
                    self.make_dirs(&mut ftp, &item).await?;
                    for d in &dirs {
                        let mut full = item.clone();
                        full.extend(d.iter().cloned());
                        self.make_dirs(&mut ftp, &full).await?;
                    }
                    let mut bytes = 0;
                    for (rel, local) in files {
                        let mut full = item.clone();
                        full.extend(rel);
                        bytes += self
                            .put_file(&mut ftp, &local, &full, job, &progress)
                            .await?;
                    }
                    Ok(bytes)
                }
                .await;
                sent.map(Sent::of)
            }
        };
        // A polite goodbye; the result does not depend on it.
        let _ = tokio::time::timeout(Duration::from_secs(2), ftp.quit()).await;
        result
    }

    fn describe(&self) -> String {
        format!("{}/{}", self.server(), self.destination.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use suppaftp::Status;

    fn backend() -> FtpBackend {
        FtpBackend::new(
            &FtpConfig {
                host: "ftp.example.net".into(),
                port: 21,
                username: "u".into(),
                password: Secret::new("pw-secret"),
                tls: "none".into(),
                ca_file: None,
                destination: "in".into(),
                rate_limit_mbps: None,
            },
            None,
        )
        .unwrap()
    }

    #[test]
    fn refusals_are_classified_and_name_the_server() {
        let b = backend();
        let refused = |code: u32| {
            FtpError::UnexpectedResponse(suppaftp::types::Response::new(
                Status::from(code),
                format!("{code} nope").into_bytes(),
            ))
        };
        let login = b.failed("login", &refused(530));
        assert!(login.permanent && login.message.contains("ftp://ftp.example.net:21"));
        assert!(b.failed("STOR", &refused(550)).permanent);
        assert!(!b.failed("STOR", &refused(421)).permanent);
        let long = FtpError::UnexpectedResponse(suppaftp::types::Response::new(
            Status::from(550),
            b"550 File name too long.".to_vec(),
        ));
        assert!(b.failed("STOR", &long).item_only);
        assert!(!b.failed("STOR", &refused(550)).item_only);
        assert!(!login.message.contains("pw-secret"));
    }
}
