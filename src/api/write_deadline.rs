//! A connection whose answer makes no progress for the request timeout is
//! closed. hyper times out the reading of a request's headers, never the
//! writing of an answer: a client that sends requests and never reads the
//! answers (its receive window shut, which TCP keeps alive for as long as
//! the client acknowledges) held its connection slot for good, and with
//! `server.max_connections` such clients the whole port.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `inner`, whose writes, flushes and shutdown fail with `TimedOut` once
/// they have been pending, without a byte going out, for `limit`.
pub struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    /// Since the first write that found the socket full; `None` while
    /// writes go through. Boxed only then, so the common path allocates
    /// nothing.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// A write came back `ready`: the clock stops; or it is pending, and
    /// the clock runs, failing it once `limit` is up.
    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        ready: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if ready.is_ready() {
            self.stalled = None;
            return ready;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client has read nothing of its answer for the request timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let ready = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progress(cx, ready)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let ready = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progress(cx, ready)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let ready = Pin::new(&mut this.inner).poll_flush(cx);
        this.progress(cx, ready)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let ready = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progress(cx, ready)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// A pipe the other end never reads: writes fill it, then stall, and
    /// fail once the limit is up; a pipe read slowly, each read well
    /// within the limit but all of them longer than it, does not.
    #[tokio::test]
    async fn a_write_pending_for_the_limit_fails_and_one_that_goes_through_does_not() {
        let limit = Duration::from_secs(1);
        let (near, _far) = tokio::io::duplex(64);
        let mut stream = WriteDeadline::new(near, limit);
        let stalled = stream.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(stalled.kind(), io::ErrorKind::TimedOut);

        let (near, mut far) = tokio::io::duplex(64);
        let mut stream = WriteDeadline::new(near, limit);
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut chunk = [0u8; 64];
            while got < 1024 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                got += tokio::io::AsyncReadExt::read(&mut far, &mut chunk)
                    .await
                    .unwrap();
            }
        });
        stream.write_all(&[0u8; 1024]).await.unwrap();
        reader.await.unwrap();
    }
}
