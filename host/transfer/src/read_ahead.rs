//! The source as a body stream for the HTTP and FTP backends: a blocking
//! thread reads a few chunks ahead (so the disk and the socket work at the
//! same time), optionally hashing what it read, and the async side paces the
//! chunks by the rate limit, counts them in the progress and stops on
//! cancellation.

use super::{Progress, RateLimiter};
use bytes::Bytes;
use md5::{Digest as _, Md5};
use std::sync::Arc;

/// Bytes per read of the source: progress, cancellation and the rate limit
/// are checked between them.
pub(super) const CHUNK: usize = 1024 * 1024;

/// The MD5 of exactly the bytes a stream yielded, known once it has yielded
/// them all. Hashing on the reading thread costs no extra pass over the file.
pub(super) struct StreamMd5(tokio::sync::oneshot::Receiver<[u8; 16]>);

impl StreamMd5 {
    /// The digest, or `None` when the stream did not reach its end (it failed
    /// or its receiver was dropped early).
    pub(super) async fn get(self) -> Option<[u8; 16]> {
        self.0.await.ok()
    }
}

/// `len` bytes of `file` from `offset` as a stream of chunks.
pub(super) fn range_stream(
    file: Arc<std::fs::File>,
    offset: u64,
    len: u64,
    rate: Option<Arc<RateLimiter>>,
    progress: Arc<Progress>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    read_ahead(file, offset, len, rate, progress, None)
}

/// As [`range_stream`], with the MD5 of the bytes sent.
pub(super) fn hashed_range_stream(
    file: Arc<std::fs::File>,
    offset: u64,
    len: u64,
    rate: Option<Arc<RateLimiter>>,
    progress: Arc<Progress>,
) -> (
    impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    StreamMd5,
) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    (
        read_ahead(file, offset, len, rate, progress, Some(tx)),
        StreamMd5(rx),
    )
}

fn read_ahead(
    file: Arc<std::fs::File>,
    offset: u64,
    len: u64,
    rate: Option<Arc<RateLimiter>>,
    progress: Arc<Progress>,
    md5: Option<tokio::sync::oneshot::Sender<[u8; 16]>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    use std::os::unix::fs::FileExt as _;
    let chunk = rate.as_ref().map_or(CHUNK, |r| r.chunk(CHUNK));
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut hasher = md5.as_ref().map(|_| Md5::new());
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let want = usize::try_from(end - pos).unwrap_or(chunk).min(chunk);
            let mut buf = vec![0u8; want];
            let item = match file.read_at(&mut buf, pos) {
                Ok(0) => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file shrank while it was sent",
                )),
                Ok(n) => {
                    buf.truncate(n);
                    pos += n as u64;
                    if let Some(h) = hasher.as_mut() {
                        h.update(&buf);
                    }
                    Ok(Bytes::from(buf))
                }
                Err(e) => Err(e),
            };
            let stop = item.is_err();
            // The receiver is gone when the request ended early.
            if tx.blocking_send(item).is_err() || stop {
                return;
            }
        }
        if let (Some(h), Some(md5)) = (hasher, md5) {
            let _ = md5.send(h.finalize().into());
        }
    });
    futures_util::stream::unfold(
        (rx, rate, progress),
        |(mut rx, rate, progress)| async move {
            if progress.is_cancelled() {
                return Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::Interrupted,
                        "cancelled",
                    )),
                    (rx, rate, progress),
                ));
            }
            let item = rx.recv().await?;
            if let Ok(b) = &item {
                if let Some(r) = &rate {
                    tokio::time::sleep(r.reserve(b.len() as u64)).await;
                }
                progress.add(b.len() as u64);
            }
            Some((item, (rx, rate, progress)))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;
    use std::io::Write as _;

    #[tokio::test]
    async fn the_streamed_md5_is_that_of_the_range_sent() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let (stream, md5) = hashed_range_stream(
            Arc::new(f),
            5,
            (data.len() - 5) as u64,
            None,
            Arc::new(Progress::default()),
        );
        let sent: Vec<u8> = stream.map(|c| c.unwrap().to_vec()).concat().await;
        assert_eq!(sent, data[5..]);
        let want: [u8; 16] = Md5::digest(&data[5..]).into();
        assert_eq!(md5.get().await, Some(want));
    }

    #[tokio::test]
    async fn a_stream_that_stops_early_gives_no_md5() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[7u8; 1000]).unwrap();
        // Asked for more than the file holds: the stream ends with an error.
        let (stream, md5) =
            hashed_range_stream(Arc::new(f), 0, 2000, None, Arc::new(Progress::default()));
        let items: Vec<_> = stream.collect().await;
        assert!(items.last().unwrap().is_err());
        assert_eq!(md5.get().await, None);
    }
}
