//! The HTTP server loop: accept connections and serve the router on each
//! with HTTP/1.1, until shutdown.
//!
//! Written here rather than `axum::serve` for two limits that function does
//! not set. A client gets `request_timeout` to send a request's headers
//! (hyper's header-read timer; `api::body` bounds the body the same way),
//! so a client that stops half-way cannot hold a connection for good (the
//! same timer closes a kept-alive connection left idle that long), and
//! its answer may stall that long before the connection is closed
//! (`write_deadline`: a client that never reads cannot hold a slot). And a
//! connection still open when the shutdown grace period ends is dropped, so
//! SIGTERM ends the daemon however its clients behave: before, one
//! half-sent request kept it running until the client went away. At most
//! `server.max_connections` are served at once: the loop accepts the next
//! only once one has closed, so a flood of idle connections waits in the
//! kernel's backlog instead of taking every file descriptor.
//!
//! The same loop serves the local socket (`local_socket`), with a limit of
//! its own, so the CLI still gets in while TCP is at its limit.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::write_deadline::WriteDeadline;

/// How long to wait before accepting again after an error that is not
/// about one connection (out of file descriptors, say), so the loop does
/// not spin while the cause lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(500);

/// When to stop: `graceful` stops accepting and lets each connection finish
/// the request it is in; `hard` (the end of the grace period) drops every
/// connection still open.
pub struct Stop {
    pub graceful: CancellationToken,
    pub hard: CancellationToken,
}

/// How the server treats its connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `server.request_timeout_seconds`.
    pub request_timeout: Duration,
    /// `server.max_connections` on TCP.
    pub max_connections: usize,
    /// What is served, for the log: `server.listen` or the local socket.
    pub serving: &'static str,
}

/// What the loop serves on: a TCP port or a Unix socket.
pub trait Listener: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    fn accept(&self) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
}

impl Listener for TcpListener {
    type Stream = TcpStream;

    async fn accept(&self) -> std::io::Result<TcpStream> {
        let (stream, _) = TcpListener::accept(self).await?;
        // Small answers go out at once rather than waiting on Nagle.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;

    async fn accept(&self) -> std::io::Result<UnixStream> {
        Ok(UnixListener::accept(self).await?.0)
    }
}

/// Serve `app` on `listener` until `stop`; returns once every connection
/// is closed.
pub async fn serve(listener: impl Listener, app: Router, limits: Limits, stop: Stop) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.request_timeout);
    let mut connections = JoinSet::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut at_limit = false;
    loop {
        // A slot first, then the connection: at the limit, the next one
        // stays in the backlog until a connection closes.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if !at_limit {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        on = limits.serving,
                        "connection limit reached; new connections wait until one closes"
                    );
                    at_limit = true;
                }
                tokio::select! {
                    _ = stop.graceful.cancelled() => break,
                    Some(_) = connections.join_next() => continue,
                }
            }
        };
        if at_limit && slots.available_permits() >= limits.max_connections / 10 {
            tracing::info!(on = limits.serving, "below the connection limit again");
            at_limit = false;
        }
        tokio::select! {
            _ = stop.graceful.cancelled() => break,
            // Reap finished connections, so the set holds only open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok(stream) => {
                    let stream = WriteDeadline::new(stream, limits.request_timeout);
                    let conn = serve_one(&builder, stream, app.clone(), stop.graceful.clone(), slot);
                    connections.spawn(conn);
                }
                Err(e) if is_about_one_connection(&e) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept connections; trying again shortly");
                    // The stop does not wait for the pause: out of file
                    // descriptors is when a stop is most likely asked for.
                    tokio::select! {
                        _ = stop.graceful.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                    }
                }
            },
        }
    }
    drop(listener);
    loop {
        tokio::select! {
            next = connections.join_next() => if next.is_none() { break },
            _ = stop.hard.cancelled() => {
                connections.abort_all();
                while connections.join_next().await.is_some() {}
                break;
            }
        }
    }
}

/// One connection: served until the client closes it, or until `graceful`
/// and the request in progress is answered.
fn serve_one(
    builder: &http1::Builder,
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    app: Router,
    graceful: CancellationToken,
    slot: OwnedSemaphorePermit,
) -> impl Future<Output = ()> + Send + 'static {
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    async move {
        // Held until the connection is over, however it ends.
        let _slot = slot;
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = graceful.cancelled() => conn.as_mut().graceful_shutdown(),
        }
        let _ = conn.await;
    }
}

/// Errors of `accept` that concern only the connection being accepted.
fn is_about_one_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A listener out of file descriptors: its first accept fails with
    /// EMFILE just as the stop begins; later ones wait for good.
    struct OutOfDescriptors {
        stop: CancellationToken,
        tried: AtomicBool,
    }

    impl Listener for OutOfDescriptors {
        type Stream = tokio::io::DuplexStream;

        async fn accept(&self) -> std::io::Result<tokio::io::DuplexStream> {
            if self.tried.swap(true, Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            self.stop.cancel();
            Err(std::io::Error::from_raw_os_error(libc::EMFILE))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_pause_after_an_accept_error_ends_at_the_stop() {
        let graceful = CancellationToken::new();
        let listener = OutOfDescriptors {
            stop: graceful.clone(),
            tried: AtomicBool::new(false),
        };
        let stop = Stop {
            graceful,
            hard: CancellationToken::new(),
        };
        let limits = Limits {
            request_timeout: Duration::from_secs(10),
            max_connections: 4,
            serving: "the test",
        };
        let started = tokio::time::Instant::now();
        serve(listener, Router::new(), limits, stop).await;
        let took = started.elapsed();
        assert!(took < ACCEPT_ERROR_PAUSE, "the stop waited {took:?}");
    }
}
