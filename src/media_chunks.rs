//! A kept file read in chunks as it goes out (to an API client, or up to
//! the relay), so no file is held whole in memory however large it is.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use tokio::io::AsyncReadExt;

use crate::store::MediaReader;

/// Bytes read from the file per chunk.
const CHUNK_BYTES: usize = 64 * 1024;

/// The read error that ended a [`chunks`] stream, if one did: whoever sent
/// the stream can then tell a file that cannot be read from a connection
/// that broke, which both show up as a failed transfer.
#[derive(Clone, Default)]
pub struct ReadFailure(Arc<Mutex<Option<String>>>);

impl ReadFailure {
    pub fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn set(&self, why: String) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }
}

/// `reader`'s bytes in chunks, as they are read. A read error ends the
/// stream with that error (the receiver sees the transfer end short of
/// its Content-Length) and is kept in `failed`.
pub fn chunks(
    reader: MediaReader,
    failed: ReadFailure,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::unfold(Some(reader), move |reader| {
        let failed = failed.clone();
        async move {
            let mut reader = reader?;
            let mut chunk = vec![0u8; CHUNK_BYTES];
            match reader.read(&mut chunk).await {
                Ok(0) => None,
                Ok(n) => {
                    chunk.truncate(n);
                    Some((Ok(Bytes::from(chunk)), Some(reader)))
                }
                Err(e) => {
                    // A bad sector fails every request for the file: at
                    // most once a minute, with the count held back.
                    static LOG: crate::logging::SharedThrottle =
                        crate::logging::SharedThrottle::new(
                            crate::logging::REPEATED_FAILURE_LOG_EVERY,
                        );
                    if let Some(unlogged) = LOG.allow() {
                        tracing::warn!(error = %e, failures_since_last_logged = unlogged,
                            "reading a media file failed while sending it");
                    }
                    failed.set(e.to_string());
                    Some((Err(e), None))
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    /// A reader that gives `good` bytes, then fails.
    struct Breaks {
        good: Vec<u8>,
    }

    impl tokio::io::AsyncRead for Breaks {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.good.is_empty() {
                return std::task::Poll::Ready(Err(std::io::Error::other("bad sector")));
            }
            let good = std::mem::take(&mut self.good);
            buf.put_slice(&good);
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_file_comes_in_chunks_of_at_most_64_kib_and_whole() {
        let file: Vec<u8> = (0..150_000u32).map(|i| i as u8).collect();
        let failed = ReadFailure::default();
        let parts: Vec<Bytes> =
            chunks(Box::new(std::io::Cursor::new(file.clone())), failed.clone())
                .map(|chunk| chunk.unwrap())
                .collect()
                .await;
        assert!(
            parts.iter().all(|p| p.len() <= CHUNK_BYTES),
            "{:?}",
            parts.iter().map(Bytes::len).collect::<Vec<_>>()
        );
        assert_eq!(parts.concat(), file);
        assert_eq!(failed.take(), None);
    }

    #[tokio::test]
    async fn a_read_error_ends_the_stream_and_is_kept() {
        let failed = ReadFailure::default();
        let items: Vec<_> = chunks(
            Box::new(Breaks {
                good: b"abc".to_vec(),
            }),
            failed.clone(),
        )
        .collect()
        .await;
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].as_ref().unwrap().as_ref(), b"abc");
        assert!(items[1].is_err());
        assert_eq!(failed.take().as_deref(), Some("bad sector"));
    }
}
