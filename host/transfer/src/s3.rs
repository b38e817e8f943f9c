//! `s3`: any S3-compatible object store, with requests presigned by
//! `rusty-s3` and bodies streamed from disk by reqwest.
//!
//! Files up to `multipart_threshold_mb` go up in a single PUT; larger ones
//! as a multipart upload of `part_size_mb` parts, a few in flight. Each body
//! is hashed (MD5) while it is read for sending, not in a pass before, and
//! the ETag the server answers must be that MD5: a part that arrived
//! different is sent again before the upload is completed; a single PUT
//! that arrived different is deleted and the transfer retried.
//! No temporary name is needed: S3 makes an object visible only when its PUT
//! or CompleteMultipartUpload succeeds, so the final key never holds a
//! partial file. The upload id of an unfinished multipart upload is kept in
//! a small file in the state directory; after a failure (or an agent
//! restart) ListParts says which parts the server already has, and only
//! parts whose ETag differs from the local part's MD5 are sent again.
//! Verification: a single PUT by its answer, whose ETag must be the MD5 of
//! the bytes read from the source (which pins the size too), or by HEAD
//! (size and ETag) when the server gives no ETag; a multipart object by
//! HEAD: size, and ETag equal to MD5-of-part-MD5s + `-N` (or the whole
//! file's MD5, on servers that store plain files).

use super::read_ahead::{CHUNK, StreamMd5, hashed_range_stream};
use super::tree::walk;
use super::webdav::{error_chain, segments};
use super::{Backend, Job, Progress, RateLimiter, Sent, TransferError};
use bytes::Bytes;
use dispatch_protocol::target::S3Target as S3Config;
use dispatch_runtime::actions::ItemKind;
use futures_util::{StreamExt as _, TryStreamExt as _};
use md5::{Digest as _, Md5};
use reqwest::{StatusCode, Url};
use rusty_s3::actions::{
    AbortMultipartUpload, CompleteMultipartUpload, CreateMultipartUpload, DeleteObject, HeadObject,
    ListParts, PutObject, S3Action, UploadPart,
};
use rusty_s3::{Bucket, Credentials, UrlStyle};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Parts in flight at once: one stream rarely fills a fast link because
/// each part waits for its MD5 and the server's reply.
const PARTS_IN_FLIGHT: usize = 4;
/// How long a presigned URL stays valid (each is signed just before use).
const SIGNED_FOR: Duration = Duration::from_secs(3600);
/// S3's limit on parts per upload.
const MAX_PARTS: u64 = 10_000;

pub struct S3Backend {
    client: reqwest::Client,
    bucket: Bucket,
    credentials: Credentials,
    /// `scheme://host[:port]` of the endpoint, for messages.
    server: String,
    prefix: Vec<String>,
    part_size: u64,
    /// Files larger than this go up as multipart uploads.
    multipart_threshold: u64,
    rate: Option<Arc<RateLimiter>>,
    /// Where upload ids of unfinished multipart uploads are kept.
    state_dir: PathBuf,
}

/// An unfinished multipart upload, saved so a retry can resume it.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Pending {
    bucket: String,
    key: String,
    upload_id: String,
    part_size: u64,
    size: u64,
    mtime_ms: u128,
}

impl S3Backend {
    pub fn new(
        cfg: &S3Config,
        rate: Option<Arc<RateLimiter>>,
        state_dir: PathBuf,
    ) -> Result<Self, String> {
        let url = Url::parse(&cfg.endpoint)
            .map_err(|e| format!("`{}` is not a URL: {e}", cfg.endpoint))?;
        let style = if cfg.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let server = format!("{}://{}", url.scheme(), url.host_str().unwrap_or("?"))
            + &url.port().map_or(String::new(), |p| format!(":{p}"));
        let bucket = Bucket::new(url, style, cfg.bucket.clone(), cfg.region.clone())
            .map_err(|e| format!("bucket `{}` on `{}`: {e}", cfg.bucket, cfg.endpoint))?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        Ok(Self {
            client,
            bucket,
            credentials: Credentials::new(cfg.access_key.clone(), cfg.secret_key.expose()),
            server,
            prefix: segments(&cfg.destination),
            part_size: cfg.part_size_mb.saturating_mul(1 << 20),
            multipart_threshold: cfg.multipart_threshold_mb.saturating_mul(1 << 20),
            rate,
            state_dir,
        })
    }

    fn place(&self) -> String {
        format!("{} (bucket `{}`)", self.server, self.bucket.name())
    }

    /// A failed response: S3's error code (from the XML body) decides.
    async fn failed(&self, what: &str, res: reqwest::Response) -> TransferError {
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        let code = xml_value(&body, "Code").unwrap_or_default();
        let message = format!(
            "S3 {what} on {} failed: {status}{}",
            self.place(),
            if code.is_empty() {
                String::new()
            } else {
                format!(" ({code})")
            }
        );
        let transient_code = matches!(
            code.as_str(),
            "RequestTimeout" | "SlowDown" | "InternalError" | "ServiceUnavailable"
        );
        if status.is_server_error()
            || matches!(
                status,
                StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS
            )
            || transient_code
        {
            TransferError::transient(message)
        } else {
            // 403 (SignatureDoesNotMatch, InvalidAccessKeyId, AccessDenied),
            // 404 NoSuchBucket, other 4xx: retrying the same request cannot help.
            TransferError::permanent(message)
        }
    }

    fn network(&self, what: &str, e: reqwest::Error, progress: &Progress) -> TransferError {
        if progress.is_cancelled() {
            return TransferError::cancelled();
        }
        // The presigned URL carries a signature: leave it out of the text.
        TransferError::transient(format!(
            "S3 {what} on {}: {}",
            self.place(),
            error_chain(&e.without_url())
        ))
    }

    fn key(&self, item: &[String]) -> String {
        self.prefix
            .iter()
            .chain(item)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Sends one file to `key`, verified.
    async fn put_file(
        &self,
        job: &Job,
        local: &Path,
        key: &str,
        progress: &Arc<Progress>,
    ) -> Result<u64, TransferError> {
        let file = job.open_source(local)?;
        let meta = file
            .metadata()
            .map_err(|e| TransferError::io(&format!("cannot stat {}", local.display()), &e))?;
        let file = Arc::new(file);
        let len = meta.len();
        if len <= self.multipart_threshold {
            let url = PutObject::new(&self.bucket, Some(&self.credentials), key).sign(SIGNED_FOR);
            let (body, md5) = self.stream(&file, 0, len, progress);
            let res = self
                .client
                .put(url)
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await
                .map_err(|e| self.network("PUT", e, progress))?;
            if !res.status().is_success() {
                return Err(self.failed(&format!("PUT of `{key}`"), res).await);
            }
            match self.sent_md5(md5, &res, &format!("PUT of `{key}`")).await {
                // The server's MD5 of what it stored is that of the source:
                // content and size are verified without asking again (a
                // HEAD makes servers that store plain files hash the whole
                // object once more: 1.3 s per GiB for rclone).
                Ok((_, true)) => {}
                Ok((md5, false)) => self.verify(key, len, &hex::encode(md5), None).await?,
                Err(e) => {
                    // What arrived is not what was read: take it away
                    // before anyone fetches it, then send it again.
                    self.delete(key).await;
                    return Err(e);
                }
            }
        } else {
            self.multipart(&file, &meta, key, progress).await?;
        }
        Ok(len)
    }

    /// The source range as a body stream, and the MD5 of what it sent.
    fn stream(
        &self,
        file: &Arc<std::fs::File>,
        offset: u64,
        len: u64,
        progress: &Arc<Progress>,
    ) -> (
        impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
        StreamMd5,
    ) {
        hashed_range_stream(
            file.clone(),
            offset,
            len,
            self.rate.clone(),
            progress.clone(),
        )
    }

    /// The MD5 of the body just sent, checked against the ETag the server
    /// answered (S3's ETag of a PUT or of a part is the MD5 of what it
    /// received), and whether the server gave one to check.
    async fn sent_md5(
        &self,
        md5: StreamMd5,
        res: &reqwest::Response,
        what: &str,
    ) -> Result<([u8; 16], bool), TransferError> {
        let md5 = md5.get().await.ok_or_else(|| {
            TransferError::transient(format!(
                "S3 {what} on {}: the server answered before the whole body was sent",
                self.place()
            ))
        })?;
        // An ETag that is no MD5 (SSE-KMS, SSE-C) says nothing here: the
        // HEAD after decides, and nothing is deleted on its word.
        let etag = res
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(clean_etag)
            .filter(|e| is_md5(e));
        if etag.as_ref().is_some_and(|e| *e != hex::encode(md5)) {
            return Err(TransferError::transient(format!(
                "S3 {what} on {}: the server received other bytes than were sent (ETag {etag:?}, sent MD5 {})",
                self.place(),
                hex::encode(md5)
            )));
        }
        Ok((md5, etag.is_some()))
    }

    /// Aborts a multipart upload, best effort: the server keeps (and
    /// bills) its parts until then.
    async fn abort(&self, key: &str, upload_id: &str) {
        let url = AbortMultipartUpload::new(&self.bucket, Some(&self.credentials), key, upload_id)
            .sign(SIGNED_FOR);
        if let Err(e) = self.client.delete(url).send().await {
            tracing::warn!(key, error = %error_chain(&e.without_url()), "cannot abort a multipart upload");
        }
    }

    /// Deletes `key`, best effort: used only to take away an object that
    /// arrived different from the source.
    async fn delete(&self, key: &str) {
        let url = DeleteObject::new(&self.bucket, Some(&self.credentials), key).sign(SIGNED_FOR);
        match self.client.delete(url).send().await {
            Ok(res) if res.status().is_success() => {}
            Ok(res) => tracing::warn!(key, status = %res.status(), "cannot delete a bad upload"),
            Err(e) => {
                tracing::warn!(key, error = %error_chain(&e.without_url()), "cannot delete a bad upload")
            }
        }
    }

    /// HEAD: the object's size and ETag must be what was sent. A multipart
    /// object's ETag is the MD5 of the part MD5s + `-N` on AWS; servers that
    /// store plain files (rclone, some NAS gateways) give the whole file's
    /// MD5 instead, which is then computed from `whole` to compare.
    async fn verify(
        &self,
        key: &str,
        len: u64,
        etag: &str,
        whole: Option<WholeMd5>,
    ) -> Result<(), TransferError> {
        let url = HeadObject::new(&self.bucket, Some(&self.credentials), key).sign(SIGNED_FOR);
        let res = self
            .client
            .head(url)
            .send()
            .await
            .map_err(|e| self.network("HEAD", e, &Progress::default()))?;
        if !res.status().is_success() {
            return Err(self.failed(&format!("HEAD of `{key}`"), res).await);
        }
        let remote_len = res
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let remote_etag = res
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(clean_etag);
        if remote_len != Some(len) {
            return Err(TransferError::transient(format!(
                "size check of `{key}` failed on {}: sent {len} bytes, the server has {remote_len:?}",
                self.place()
            )));
        }
        let expected = match (whole, &remote_etag) {
            (Some(md5), Some(e)) if e != etag && is_md5(e) => hex::encode(md5.get().await?),
            _ => etag.to_string(),
        };
        if remote_etag.as_deref() != Some(expected.as_str()) {
            return Err(TransferError::transient(format!(
                "checksum of `{key}` failed on {}: expected ETag {expected}, the server has {remote_etag:?}",
                self.place()
            )));
        }
        Ok(())
    }

    fn pending_path(&self, key: &str) -> PathBuf {
        let id = <sha2::Sha256 as sha2::Digest>::digest(format!(
            "{}\n{}\n{key}",
            self.server,
            self.bucket.name()
        ));
        self.state_dir
            .join(format!("{}.json", hex::encode(&id[..16])))
    }

    fn load_pending(&self, key: &str) -> Option<Pending> {
        let text = std::fs::read(self.pending_path(key)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    fn save_pending(&self, key: &str, p: &Pending) -> Result<(), TransferError> {
        std::fs::create_dir_all(&self.state_dir).map_err(|e| {
            TransferError::io(&format!("cannot create {}", self.state_dir.display()), &e)
        })?;
        let path = self.pending_path(key);
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_vec(p).map_err(|e| TransferError::permanent(e.to_string()))?;
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| TransferError::io(&format!("cannot write {}", path.display()), &e))
    }

    /// Parts the server already has for `upload_id` (number -> (size, ETag)),
    /// or `None` when it no longer knows the upload.
    async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
        progress: &Progress,
    ) -> Result<Option<std::collections::HashMap<u16, (u64, String)>>, TransferError> {
        let mut parts = std::collections::HashMap::new();
        let mut marker = None;
        loop {
            let mut action = ListParts::new(&self.bucket, Some(&self.credentials), key, upload_id);
            if let Some(m) = marker {
                action.set_part_number_marker(m);
            }
            let res = self
                .client
                .get(action.sign(SIGNED_FOR))
                .send()
                .await
                .map_err(|e| self.network("ListParts", e, progress))?;
            if res.status() == StatusCode::NOT_FOUND {
                return Ok(None); // NoSuchUpload: completed, aborted or expired
            }
            if !res.status().is_success() {
                return Err(self.failed(&format!("ListParts of `{key}`"), res).await);
            }
            let body = res
                .text()
                .await
                .map_err(|e| self.network("ListParts", e, progress))?;
            // Parsed by hand: servers differ in XML namespaces, which a
            // strict parser rejects (rclone's answers carry none).
            for part in body.split("<Part>").skip(1) {
                let number = xml_value(part, "PartNumber").and_then(|v| v.trim().parse().ok());
                let size = xml_value(part, "Size").and_then(|v| v.trim().parse().ok());
                if let (Some(number), Some(size), Some(etag)) =
                    (number, size, xml_value(part, "ETag"))
                {
                    parts.insert(number, (size, clean_etag(&etag)));
                }
            }
            let truncated = xml_value(&body, "IsTruncated").is_some_and(|v| v.trim() == "true");
            let next = xml_value(&body, "NextPartNumberMarker")
                .and_then(|v| v.trim().parse::<u16>().ok())
                .filter(|m| *m > 0);
            match next {
                Some(m) if truncated => marker = Some(m),
                _ => return Ok(Some(parts)),
            }
        }
    }

    async fn multipart(
        &self,
        file: &Arc<std::fs::File>,
        meta: &std::fs::Metadata,
        key: &str,
        progress: &Arc<Progress>,
    ) -> Result<(), TransferError> {
        let len = meta.len();
        let count = len.div_ceil(self.part_size);
        if count > MAX_PARTS {
            return Err(TransferError::permanent(format!(
                "`{key}` needs {count} parts of {} MiB, more than S3's {MAX_PARTS}: raise part_size_mb",
                self.part_size >> 20
            )));
        }
        let mtime_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis());
        let wanted = |upload_id: String| Pending {
            bucket: self.bucket.name().to_string(),
            key: key.to_string(),
            upload_id,
            part_size: self.part_size,
            size: len,
            mtime_ms,
        };
        // Resume the saved upload if it is for this very file.
        let mut have = std::collections::HashMap::new();
        let mut upload_id = None;
        if let Some(p) = self.load_pending(key) {
            if p == wanted(p.upload_id.clone()) {
                if let Some(parts) = self.list_parts(key, &p.upload_id, progress).await? {
                    tracing::info!(key, parts = parts.len(), "resuming a multipart upload");
                    have = parts;
                    upload_id = Some(p.upload_id);
                }
            } else {
                // The file changed since: its parts are useless, and the
                // server keeps (and bills) them until the upload is aborted.
                self.abort(key, &p.upload_id).await;
            }
        }
        let upload_id = match upload_id {
            Some(id) => id,
            None => {
                let url = CreateMultipartUpload::new(&self.bucket, Some(&self.credentials), key)
                    .sign(SIGNED_FOR);
                let res = self
                    .client
                    .post(url)
                    .send()
                    .await
                    .map_err(|e| self.network("CreateMultipartUpload", e, progress))?;
                if !res.status().is_success() {
                    return Err(self
                        .failed(&format!("CreateMultipartUpload of `{key}`"), res)
                        .await);
                }
                let body = res
                    .text()
                    .await
                    .map_err(|e| self.network("CreateMultipartUpload", e, progress))?;
                let id = xml_value(&body, "UploadId")
                    .filter(|id| !id.is_empty())
                    .ok_or_else(|| {
                        TransferError::transient(format!(
                            "S3 CreateMultipartUpload on {}: no UploadId in the answer",
                            self.place()
                        ))
                    })?;
                self.save_pending(key, &wanted(id.clone()))?;
                id
            }
        };
        let have = Arc::new(have);
        let skipped = std::sync::atomic::AtomicU64::new(0);
        let replace_refused = AtomicBool::new(false);
        let sent: Result<Vec<[u8; 16]>, TransferError> = futures_util::stream::iter(0..count)
            .map(|i| {
                let have = have.clone();
                let upload_id = upload_id.as_str();
                let skipped = &skipped;
                let replace_refused = &replace_refused;
                async move {
                    let offset = i * self.part_size;
                    let size = self.part_size.min(len - offset);
                    let number = u16::try_from(i + 1).map_err(|_| {
                        TransferError::permanent(format!("too many parts for `{key}`"))
                    })?;
                    // A part the server already has is read (for its MD5)
                    // but not sent again when it matches.
                    if let Some((have_size, have_etag)) = have.get(&number) {
                        let md5 = part_md5(file, offset, size).await?;
                        if *have_size == size && *have_etag == hex::encode(md5) {
                            skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            progress.add(size);
                            return Ok(md5);
                        }
                    }
                    let url = UploadPart::new(
                        &self.bucket,
                        Some(&self.credentials),
                        key,
                        number,
                        upload_id,
                    )
                    .sign(SIGNED_FOR);
                    let (body, md5) = self.stream(file, offset, size, progress);
                    let res = self
                        .client
                        .put(url)
                        .header(reqwest::header::CONTENT_LENGTH, size)
                        .body(reqwest::Body::wrap_stream(body))
                        .send()
                        .await
                        .map_err(|e| self.network("UploadPart", e, progress))?;
                    if !res.status().is_success() {
                        if have.contains_key(&number) {
                            replace_refused.store(true, Ordering::Relaxed);
                        }
                        return Err(self
                            .failed(&format!("UploadPart {number} of `{key}`"), res)
                            .await);
                    }
                    // A part that arrived different fails the transfer
                    // before completion; the retry sends it again, since
                    // its ETag on the server does not match.
                    // Without an ETag to check, the HEAD after completion
                    // still compares the whole object.
                    self.sent_md5(md5, &res, &format!("UploadPart {number} of `{key}`"))
                        .await
                        .map(|(md5, _)| md5)
                }
            })
            .buffered(PARTS_IN_FLIGHT)
            .try_collect()
            .await;
        let md5s = match sent {
            Ok(md5s) => md5s,
            // S3 replaces a part sent again, but some servers refuse to
            // (rclone streams parts into the file as they come): a damaged
            // part then dooms the upload, so the next try starts afresh.
            Err(e) if replace_refused.load(Ordering::Relaxed) => {
                self.abort(key, &upload_id).await;
                let _ = std::fs::remove_file(self.pending_path(key));
                return Err(TransferError::transient(format!(
                    "{e}; this server cannot replace a part, so the upload starts over"
                )));
            }
            Err(e) => return Err(e),
        };
        let whole = Some(WholeMd5::start(file, len));
        let etags: Vec<String> = md5s
            .iter()
            .map(|m| format!("\"{}\"", hex::encode(m)))
            .collect();
        let action = CompleteMultipartUpload::new(
            &self.bucket,
            Some(&self.credentials),
            key,
            &upload_id,
            etags.iter().map(String::as_str),
        );
        let url = action.sign(SIGNED_FOR);
        let res = self
            .client
            .post(url)
            .body(action.body())
            .send()
            .await
            .map_err(|e| self.network("CompleteMultipartUpload", e, progress))?;
        if !res.status().is_success() {
            return Err(self
                .failed(&format!("CompleteMultipartUpload of `{key}`"), res)
                .await);
        }
        // S3 may answer 200 and still report an error in the body.
        let body = res
            .text()
            .await
            .map_err(|e| self.network("CompleteMultipartUpload", e, progress))?;
        if body.contains("<Error>") {
            return Err(TransferError::transient(format!(
                "S3 CompleteMultipartUpload of `{key}` on {} failed: {}",
                self.place(),
                xml_value(&body, "Code").unwrap_or_default()
            )));
        }
        let _ = std::fs::remove_file(self.pending_path(key));
        tracing::info!(
            key,
            parts = count,
            skipped = skipped.load(std::sync::atomic::Ordering::Relaxed),
            "multipart upload finished"
        );
        let mut all = Md5::new();
        for m in &md5s {
            all.update(m);
        }
        let etag = format!("{}-{}", hex::encode(all.finalize()), md5s.len());
        self.verify(key, len, &etag, whole).await
    }
}

/// MD5 of a range of the file, read on a blocking thread.
async fn part_md5(
    file: &Arc<std::fs::File>,
    offset: u64,
    len: u64,
) -> Result<[u8; 16], TransferError> {
    let file = file.clone();
    tokio::task::spawn_blocking(move || md5_range(&file, offset, len, None))
        .await
        .map_err(|e| TransferError::transient(format!("checksum task failed: {e}")))?
        .map_err(|e| TransferError::io("cannot read the source", &e))
}

fn md5_range(
    file: &std::fs::File,
    offset: u64,
    len: u64,
    stop: Option<&AtomicBool>,
) -> std::io::Result<[u8; 16]> {
    let mut h = Md5::new();
    let mut buf = vec![0u8; CHUNK];
    let mut pos = offset;
    let end = offset + len;
    while pos < end {
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            return Err(std::io::Error::other("not needed"));
        }
        let want = usize::try_from(end - pos).unwrap_or(CHUNK).min(CHUNK);
        let n = file.read_at(&mut buf[..want], pos)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file shrank while it was sent",
            ));
        }
        h.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(h.finalize().into())
}

/// The whole file's MD5, computed on a blocking thread while the multipart
/// upload completes and the server answers HEAD (servers that store plain
/// files hash the object for that answer, which takes as long), and stopped
/// when the server's ETag turns out not to need it.
struct WholeMd5 {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<std::io::Result<[u8; 16]>>,
}

impl WholeMd5 {
    fn start(file: &Arc<std::fs::File>, len: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (file.clone(), stop.clone());
        let task = tokio::task::spawn_blocking(move || md5_range(&f, 0, len, Some(&s)));
        Self { stop, task }
    }

    async fn get(mut self) -> Result<[u8; 16], TransferError> {
        (&mut self.task)
            .await
            .map_err(|e| TransferError::transient(format!("checksum task failed: {e}")))?
            .map_err(|e| TransferError::io("cannot read the source", &e))
    }
}

impl Drop for WholeMd5 {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Whether an ETag has the shape of an MD5 (32 hex digits).
fn is_md5(etag: &str) -> bool {
    etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An ETag without quotes (plain or XML-escaped), lowercase.
fn clean_etag(etag: &str) -> String {
    etag.replace("&quot;", "")
        .replace("&#34;", "")
        .trim()
        .trim_matches('"')
        .to_ascii_lowercase()
}

/// The text of the first `<tag>` in an S3 XML answer.
fn xml_value(body: &str, tag: &str) -> Option<String> {
    let start = body.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(body[start..end].to_string())
}

#[async_trait::async_trait]
impl Backend for S3Backend {
    async fn send(&self, job: &Job, progress: Arc<Progress>) -> Result<Sent, TransferError> {
        let item = segments(&job.path);
        match job.kind {
            ItemKind::File => {
                let bytes = self
                    .put_file(job, &job.source(), &self.key(&item), &progress)
                    .await?;
                Ok(Sent::of(bytes))
            }
            ItemKind::Dir => {
                // Object stores have no folders: the tree is its keys.
                let (_, files) = walk(job)?;
                let mut bytes = 0;
                for (rel, local) in files {
                    let mut full = item.clone();
                    full.extend(rel);
                    bytes += self
                        .put_file(job, &local, &self.key(&full), &progress)
                        .await?;
                }
                Ok(Sent::of(bytes))
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "s3:{}/{}/{}",
            self.server,
            self.bucket.name(),
            self.prefix.join("/")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_read_from_s3_xml() {
        let body = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>x</Message></Error>";
        assert_eq!(
            xml_value(body, "Code").as_deref(),
            Some("SignatureDoesNotMatch")
        );
        assert_eq!(xml_value(body, "Key"), None);
    }
}
