//! A [`TestChannel`] whose receive loop is given by the test: one that
//! ends at once, panics when told, or panics on its way out, for the
//! tests of how the daemon watches its tasks.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use phonerelay_channel::{
    Channel, ChannelContext, ChannelHealth, ChannelKind, OutboundMessage, SendError, SendReceipt,
};

use super::TestChannel;

type Loop = dyn Fn(ChannelContext) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

/// `inner` in all but its receive loop, which is `run`'s.
pub struct RunAs {
    pub inner: Arc<TestChannel>,
    run: Box<Loop>,
}

impl RunAs {
    pub fn new<F, Fut>(inner: Arc<TestChannel>, run: F) -> Arc<Self>
    where
        F: Fn(ChannelContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Arc::new(RunAs {
            inner,
            run: Box::new(move |ctx| Box::pin(run(ctx))),
        })
    }
}

#[async_trait]
impl Channel for RunAs {
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
        (self.run)(ctx).await
    }
    fn health(&self) -> ChannelHealth {
        self.inner.health()
    }
}
