//! A daemon task that ends while the daemon runs is noticed: `serve` stops
//! the daemon with exit code 1 on it, so the service manager starts a whole
//! one again rather than leave, say, a queue without its dispatcher.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use phonerelay_channel::{
    Channel, ChannelContext, ChannelHealth, ChannelKind, OutboundMessage, SendError, SendReceipt,
};
use tokio::sync::Notify;

/// A test channel whose receive loop panics when told to.
struct BreaksWhenTold {
    inner: Arc<TestChannel>,
    breaks: Notify,
}

#[async_trait]
impl Channel for BreaksWhenTold {
    fn kind(&self) -> ChannelKind {
        self.inner.kind()
    }
    fn phone_id(&self) -> &str {
        self.inner.phone_id()
    }
    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, SendError> {
        self.inner.send(message).await
    }
    async fn run(&self, ctx: ChannelContext) {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => {}
            _ = self.breaks.notified() => panic!("the receive loop broke"),
        }
    }
    fn health(&self) -> ChannelHealth {
        self.inner.health()
    }
}

#[tokio::test]
async fn a_task_that_panics_while_the_daemon_runs_is_reported_by_name() {
    let channel = Arc::new(BreaksWhenTold {
        inner: TestChannel::new(ChannelKind::Sms, "m1"),
        breaks: Notify::new(),
    });
    let mut d = TestDaemon::start(FAST_OUTBOX, vec![channel.clone()]).await;
    let daemon = d.daemon.as_mut().unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(300), daemon.task_ended()).await;
    assert!(quiet.is_err(), "a task ended on its own: {quiet:?}");

    channel.breaks.notify_one();
    let ended = tokio::time::timeout(Duration::from_secs(5), daemon.task_ended())
        .await
        .expect("the panic is noticed");
    assert_eq!(
        ended.to_string(),
        "the sms/m1 channel panicked: the receive loop broke"
    );
    // The rest still stops cleanly.
    tokio::time::timeout(Duration::from_secs(10), d.stop())
        .await
        .expect("the daemon stops");
}

/// A test channel whose receive loop panics on its way out.
struct BreaksWhenStopped {
    inner: Arc<TestChannel>,
}

#[async_trait]
impl Channel for BreaksWhenStopped {
    fn kind(&self) -> ChannelKind {
        self.inner.kind()
    }
    fn phone_id(&self) -> &str {
        self.inner.phone_id()
    }
    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, SendError> {
        self.inner.send(message).await
    }
    async fn run(&self, ctx: ChannelContext) {
        ctx.shutdown.cancelled().await;
        panic!("the receive loop broke");
    }
    fn health(&self) -> ChannelHealth {
        self.inner.health()
    }
}

/// A panic during the stop is no clean stop either: the stop fails with
/// exit code 1, naming the task, as `serve` then exits.
#[tokio::test]
async fn a_task_that_panics_while_the_daemon_stops_fails_the_stop() {
    let channel = Arc::new(BreaksWhenStopped {
        inner: TestChannel::new(ChannelKind::Sms, "m1"),
    });
    let mut d = TestDaemon::start(FAST_OUTBOX, vec![channel]).await;
    let stopped = tokio::time::timeout(Duration::from_secs(10), d.try_stop())
        .await
        .expect("the daemon stops");
    let error = stopped.expect_err("the panic fails the stop");
    assert_eq!(error.code(), 1);
    assert_eq!(
        error.to_string(),
        "the sms/m1 channel panicked: the receive loop broke while the daemon stopped"
    );
}
