//! `webdav`: streamed PUT (with Content-Length, Basic auth) to a temporary
//! name (`.<name>.<transfer id>.dispatch-part`, see `super::part_name`),
//! size check (PROPFIND, else HEAD), then MOVE to the final name; MKCOL
//! creates missing folders. WebDAV has no standard partial PUT, so a failed
//! upload starts again from zero; the final name never holds a partial
//! file, and a failed attempt deletes its temporary file (best effort) so
//! it does not hold space at the destination.

use super::{Backend, Job, Progress, RateLimiter, Sent, TransferError};
use dispatch_protocol::Secret;
use dispatch_protocol::target::WebdavTarget as WebdavConfig;
use dispatch_runtime::actions::ItemKind;
use reqwest::{Method, StatusCode, Url};
use std::path::Path;
use std::sync::Arc;

pub struct WebdavBackend {
    client: reqwest::Client,
    base: Url,
    username: String,
    password: Option<Secret>,
    destination: Vec<String>,
    rate: Option<Arc<RateLimiter>>,
}

impl WebdavBackend {
    pub fn new(cfg: &WebdavConfig, rate: Option<Arc<RateLimiter>>) -> Result<Self, String> {
        let base = Url::parse(cfg.url.trim_end_matches('/'))
            .map_err(|e| format!("`{}` is not a URL: {e}", cfg.url))?;
        if base.cannot_be_a_base() {
            return Err(format!("`{}` cannot have paths under it", cfg.url));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        Ok(Self {
            client,
            base,
            username: cfg.username.clone(),
            password: cfg.password.clone(),
            destination: segments(&cfg.destination),
            rate,
        })
    }

    /// The server, for error texts (never with credentials).
    fn server(&self) -> String {
        format!(
            "{}://{}",
            self.base.scheme(),
            self.base.host_str().unwrap_or("?")
        ) + &self.base.port().map_or(String::new(), |p| format!(":{p}"))
    }

    /// The URL of `segments` under the destination folder.
    fn url(&self, segments: &[String]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(self.destination.iter().chain(segments));
        }
        url
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let req = self.client.request(method, url);
        match &self.password {
            Some(p) => req.basic_auth(&self.username, Some(p.expose())),
            None => req,
        }
    }

    fn failed(&self, what: &str, status: StatusCode) -> TransferError {
        let message = format!("WebDAV {what} on {} failed: {status}", self.server());
        if status == StatusCode::URI_TOO_LONG {
            // The item's path is too long for this server: only this item.
            TransferError::item_only(message)
        } else if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
            || (status.is_client_error() && status != StatusCode::REQUEST_TIMEOUT)
        {
            TransferError::permanent(message)
        } else {
            TransferError::transient(message)
        }
    }

    fn network(&self, what: &str, e: &reqwest::Error) -> TransferError {
        // reqwest's text names the URL, which holds no credentials here.
        TransferError::transient(format!(
            "WebDAV {what} on {}: {}",
            self.server(),
            error_chain(e)
        ))
    }

    /// MKCOL every folder of `dirs` from the top (existing ones answer 405).
    async fn make_collections(&self, dirs: &[String]) -> Result<(), TransferError> {
        let mut all: Vec<String> = Vec::new();
        for d in self.destination.iter().chain(dirs) {
            all.push(d.clone());
            let mut url = self.base.clone();
            if let Ok(mut path) = url.path_segments_mut() {
                path.pop_if_empty();
                path.extend(&all);
                path.push("");
            }
            let method = Method::from_bytes(b"MKCOL")
                .map_err(|e| TransferError::permanent(e.to_string()))?;
            let res = self
                .request(method, url)
                .send()
                .await
                .map_err(|e| self.network("MKCOL", &e))?;
            match res.status() {
                s if s.is_success() => {}
                StatusCode::METHOD_NOT_ALLOWED => {} // exists
                s => return Err(self.failed("MKCOL", s)),
            }
        }
        Ok(())
    }

    /// The size of `url` on the server: PROPFIND (Depth 0) first, since
    /// some servers (rclone serve webdav) hold a HEAD right after a PUT
    /// until they have finished writing the file (0.55 s per GiB here),
    /// while PROPFIND answers at once; HEAD when PROPFIND gives no size.
    async fn remote_size(&self, url: &Url) -> Result<Option<u64>, TransferError> {
        let method =
            Method::from_bytes(b"PROPFIND").map_err(|e| TransferError::permanent(e.to_string()))?;
        let res = self
            .request(method, url.clone())
            .header("Depth", "0")
            .header(reqwest::header::CONTENT_TYPE, "application/xml")
            .body(PROPFIND_SIZE)
            .send()
            .await
            .map_err(|e| self.network("PROPFIND", &e))?;
        if res.status().is_success() {
            let text = res.text().await.map_err(|e| self.network("PROPFIND", &e))?;
            if let Some(n) = content_length_of(&text) {
                return Ok(Some(n));
            }
        } else if matches!(
            res.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Err(self.failed("PROPFIND", res.status()));
        }
        let head = self
            .request(Method::HEAD, url.clone())
            .send()
            .await
            .map_err(|e| self.network("HEAD", &e))?;
        if !head.status().is_success() {
            return Err(self.failed("HEAD", head.status()));
        }
        Ok(head
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok()))
    }

    /// Uploads one file to `remote` (segments), through its temporary name
    /// (made from the transfer id). A failed attempt (not a cancelled one)
    /// deletes the temporary file: it would never be resumed.
    async fn put_file(
        &self,
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
        let mut tmp = dirs.to_vec();
        tmp.push(super::part_name(name, id));
        let tmp_url = self.url(&tmp);
        let result = self
            .put_and_move(file, len, &tmp_url, remote, progress)
            .await;
        if let Err(e) = &result
            && !e.cancelled
        {
            self.delete_part(&tmp_url, progress).await;
        }
        result
    }

    /// PUT of the file to `tmp_url`, size check, MOVE to `remote`.
    async fn put_and_move(
        &self,
        file: std::fs::File,
        len: u64,
        tmp_url: &Url,
        remote: &[String],
        progress: &Arc<Progress>,
    ) -> Result<u64, TransferError> {
        let body = reqwest::Body::wrap_stream(super::read_ahead::range_stream(
            Arc::new(file),
            0,
            len,
            self.rate.clone(),
            progress.clone(),
        ));
        let res = self
            .request(Method::PUT, tmp_url.clone())
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if progress.is_cancelled() {
                    TransferError::cancelled()
                } else {
                    self.network("PUT", &e)
                }
            })?;
        if !res.status().is_success() {
            return Err(self.failed("PUT", res.status()));
        }
        // The size the server has, before the name becomes final.
        let remote_len = self.remote_size(tmp_url).await?;
        if remote_len != Some(len) {
            return Err(TransferError::transient(format!(
                "size check failed on {}: sent {len} bytes, the server has {remote_len:?}",
                self.server()
            )));
        }
        let method =
            Method::from_bytes(b"MOVE").map_err(|e| TransferError::permanent(e.to_string()))?;
        let res = self
            .request(method, tmp_url.clone())
            .header("Destination", self.url(remote).as_str())
            .header("Overwrite", "T")
            .send()
            .await
            .map_err(|e| self.network("MOVE", &e))?;
        if !res.status().is_success() {
            return Err(self.failed("MOVE", res.status()));
        }
        Ok(len)
    }

    /// DELETE of a temporary file after a failed attempt, best effort (the
    /// server may be the reason the attempt failed, so an unreachable one
    /// is only a debug line). A server still finishing the broken PUT holds
    /// its lock on the name (423 Locked, as rclone does) for a moment: asked
    /// again a few times, for at most a few seconds, unless cancelled.
    async fn delete_part(&self, url: &Url, progress: &Progress) {
        let mut pause = std::time::Duration::from_millis(250);
        for tried in 1..=PART_DELETE_TRIES {
            let sent = self
                .request(Method::DELETE, url.clone())
                .timeout(PART_DELETE_TIMEOUT)
                .send()
                .await;
            match sent {
                Ok(res) if res.status().is_success() || res.status() == StatusCode::NOT_FOUND => {
                    return;
                }
                Ok(res) if res.status() == StatusCode::LOCKED && tried < PART_DELETE_TRIES => {
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = progress.cancel.cancelled() => return,
                    }
                    pause *= 2;
                }
                Ok(res) => {
                    tracing::warn!(
                        server = %self.server(),
                        status = %res.status(),
                        "could not delete a temporary file after a failed attempt"
                    );
                    return;
                }
                Err(e) => {
                    tracing::debug!(
                        server = %self.server(),
                        "could not delete a temporary file after a failed attempt: {}",
                        error_chain(&e)
                    );
                    return;
                }
            }
        }
    }
}

/// How long one DELETE of a failed attempt's temporary file may take, and
/// how many are sent while the server answers that the name is locked
/// (pauses of 0.25, 0.5, 1 and 2 s between them).
const PART_DELETE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const PART_DELETE_TRIES: usize = 5;

const PROPFIND_SIZE: &str = r#"<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:getcontentlength/></D:prop></D:propfind>"#;

/// `getcontentlength` of a one-resource PROPFIND answer, whatever prefix
/// the server gives the DAV: namespace.
fn content_length_of(xml: &str) -> Option<u64> {
    let at = xml.find("getcontentlength")?;
    let rest = &xml[at..];
    let value = &rest[rest.find('>')? + 1..];
    value[..value.find('<')?].trim().parse().ok()
}

pub(super) fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = c.source();
    }
    parts.join(": ")
}

#[async_trait::async_trait]
impl Backend for WebdavBackend {
    async fn send(&self, job: &Job, progress: Arc<Progress>) -> Result<Sent, TransferError> {
        let item = segments(&job.path);
        match job.kind {
            ItemKind::File => {
                self.make_collections(&item[..item.len().saturating_sub(1)])
                    .await?;
                let bytes = self.put_file(&job.source(), &item, job, &progress).await?;
                Ok(Sent::of(bytes))
            }
            ItemKind::Dir => {
                // The tree: every folder, then every file (each through its
                // own temporary name).
                let (dirs, files) = super::tree::walk(job)?;
                self.make_collections(&item).await?;
                for d in &dirs {
                    let mut full = item.clone();
                    full.extend(d.iter().cloned());
                    self.make_collections(&full).await?;
                }
                let mut bytes = 0;
                for (rel, local) in files {
                    let mut full = item.clone();
                    full.extend(rel);
                    bytes += self.put_file(&local, &full, job, &progress).await?;
                }
                Ok(Sent::of(bytes))
            }
        }
    }

    fn describe(&self) -> String {
        format!("webdav:{}/{}", self.server(), self.destination.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::content_length_of;

    #[test]
    fn the_size_is_read_from_a_propfind_answer_with_any_prefix() {
        let rclone = r#"<?xml version="1.0" encoding="UTF-8"?><D:multistatus xmlns:D="DAV:"><D:response><D:href>/a</D:href><D:propstat><D:prop><D:getcontentlength>1073741824</D:getcontentlength></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>"#;
        assert_eq!(content_length_of(rclone), Some(1_073_741_824));
        let apache = "<lp1:getcontentlength>42</lp1:getcontentlength>";
        assert_eq!(content_length_of(apache), Some(42));
        // Not given (a 404 propstat): the caller falls back to HEAD.
        assert_eq!(
            content_length_of("<D:prop><D:getcontentlength/></D:prop>"),
            None
        );
        assert_eq!(content_length_of("<D:multistatus/>"), None);
    }
}
