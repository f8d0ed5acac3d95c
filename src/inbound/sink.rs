use std::sync::Arc;

use async_trait::async_trait;
use phonerelay_channel::{ChannelEvent, ChannelKind, EventSink, SinkError};
use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::metrics::{Metrics, labels};
use crate::store::Store;

/// The [`EventSink`] of one endpoint: commits inbound messages (duplicates
/// dropped by the store), applies delivery reports, keeps cursors.
pub struct StoreSink {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    channel: ChannelKind,
    phone_id: String,
    /// Rung after each new inbound commit, for whoever forwards inbound.
    inbound_bell: Option<Arc<Notify>>,
}

impl StoreSink {
    pub fn new(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        channel: ChannelKind,
        phone_id: String,
    ) -> Self {
        Self {
            store,
            metrics,
            channel,
            phone_id,
            inbound_bell: None,
        }
    }

    pub fn with_inbound_bell(mut self, bell: Arc<Notify>) -> Self {
        self.inbound_bell = Some(bell);
        self
    }

    fn cursor_scope(&self) -> String {
        format!("{}/{}", self.channel, self.phone_id)
    }
}

fn sink_error(e: crate::store::StoreError) -> SinkError {
    SinkError(e.to_string())
}

#[async_trait]
impl EventSink for StoreSink {
    async fn deliver(&self, event: ChannelEvent) -> Result<(), SinkError> {
        match event {
            ChannelEvent::Inbound(message) => {
                let channel = message.channel;
                let commit = self
                    .store
                    .commit_inbound(message, now_ms())
                    .await
                    .map_err(sink_error)?;
                if commit.duplicate {
                    tracing::debug!(id = %commit.id, "inbound message seen before; not stored again");
                } else {
                    self.metrics
                        .inbound
                        .get_or_create(&labels(&[("channel", channel.as_str())]))
                        .inc();
                    if let Some(bell) = &self.inbound_bell {
                        bell.notify_one();
                    }
                }
            }
            ChannelEvent::Status(update) => {
                let external_id = update.external_id.clone();
                let matched = self.store.apply_status(update).await.map_err(sink_error)?;
                if matched.is_none() {
                    tracing::info!(%external_id, channel = %self.channel, "status report for no known message");
                }
            }
        }
        Ok(())
    }

    async fn save_cursor(&self, name: &str, value: &str) -> Result<(), SinkError> {
        self.store
            .save_cursor(&self.cursor_scope(), name, value)
            .await
            .map_err(sink_error)
    }

    async fn load_cursor(&self, name: &str) -> Result<Option<String>, SinkError> {
        self.store
            .load_cursor(&self.cursor_scope(), name)
            .await
            .map_err(sink_error)
    }

    async fn sent_ids(&self, base: &str) -> Result<Vec<(String, i64)>, SinkError> {
        self.store
            .sent_ids(self.channel, &self.phone_id, base)
            .await
            .map_err(sink_error)
    }
}
