//! A store that fails where a test says ([`Faults`]) and is otherwise
//! the [`SqliteStore`] inside it.

use std::sync::Arc;

use async_trait::async_trait;
use phonerelay_channel::{
    ChannelKind, CursorWrite, InboundMessage, StatusUpdate, UnreadableInbound,
};

use crate::store::*;

/// Where a [`Faulty`] store fails: each hook runs as the store's call
/// does, and an error it returns is the call's, the inner store untouched.
pub trait Faults: Send + Sync + 'static {
    /// Before a read of one message (`get_outbound`, `get_relay_inbound`).
    fn read_one(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Before a read that routes a reply (`route_reply`,
    /// `send_unsettled`).
    fn route(&self) -> StoreResult<()> {
        Ok(())
    }

    /// After a cancel or a manual retry has committed.
    fn committed(&self) {}

    /// Before a claim (`claim_outbound`).
    fn claim(&self) {}

    /// Before `outcomes` are recorded.
    fn record_outcomes(&self, _outcomes: &[(String, SendOutcome)]) -> StoreResult<()> {
        Ok(())
    }

    /// Before the outcome of message `id` is recorded plainly.
    fn record_outcome_plainly(&self, _id: &str) -> StoreResult<()> {
        Ok(())
    }

    /// Before the relay forwarding outcome of inbound message `id` is
    /// recorded (`record_relay_inbound`).
    fn record_relay_inbound(&self, _id: &str) -> StoreResult<()> {
        Ok(())
    }

    /// Cursor `name` was just read (something else may change now).
    fn cursor_loaded(&self, _name: &str) {}

    /// Before the cursor `name` is saved.
    fn save_cursor(&self, _name: &str) -> StoreResult<()> {
        Ok(())
    }

    /// Before the relay pairing is replaced (`replace_relay_pairing`).
    fn replace_relay_pairing(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Once a new outbound message is to be committed (`accept_outbound`,
    /// `accept_relay_outbound`): resolves when the commit may go ahead.
    fn accept_goes_ahead(&self) -> impl Future<Output = ()> + Send + 'static {
        std::future::ready(())
    }
}

pub struct Faulty<F> {
    inner: Arc<SqliteStore>,
    pub faults: F,
}

impl<F: Faults> Faulty<F> {
    pub fn with(inner: SqliteStore, faults: F) -> Self {
        Self {
            inner: Arc::new(inner),
            faults,
        }
    }

    /// The store behind, which never fails for the test.
    pub fn inner(&self) -> &SqliteStore {
        &self.inner
    }

    /// Run the inner store's `accept` once the faults let it go ahead.
    /// As the store's writer does, the commit goes ahead whatever becomes
    /// of the caller meanwhile: a caller gone when it lands is not told.
    async fn held_accept(
        &self,
        accept: impl Future<Output = StoreResult<AcceptOutcome>> + Send + 'static,
    ) -> StoreResult<AcceptOutcome> {
        let goes_ahead = self.faults.accept_goes_ahead();
        let committing = tokio::spawn(async move {
            goes_ahead.await;
            accept.await
        });
        committing
            .await
            .map_err(|e| StoreError::Database(format!("the commit's task failed: {e}")))?
    }
}

#[async_trait]
impl<F: Faults> Store for Faulty<F> {
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    async fn disk_usage(&self) -> Option<DiskUsage> {
        self.inner.disk_usage().await
    }

    async fn accept_outbound(&self, message: NewOutbound) -> StoreResult<AcceptOutcome> {
        let inner = self.inner.clone();
        self.held_accept(async move { inner.accept_outbound(message).await })
            .await
    }

    async fn find_idempotent_outbound(
        &self,
        api_key_id: Option<String>,
        idempotency_key: String,
    ) -> StoreResult<Option<(FirstAnswer, String)>> {
        self.inner
            .find_idempotent_outbound(api_key_id, idempotency_key)
            .await
    }

    async fn get_outbound(&self, id: &str) -> StoreResult<Option<OutboundDetail>> {
        self.faults.read_one()?;
        self.inner.get_outbound(id).await
    }

    async fn list_outbound(&self, filter: OutboundFilter) -> StoreResult<Vec<OutboundRecord>> {
        self.inner.list_outbound(filter).await
    }

    async fn cancel_outbound(&self, id: &str, now_ms: i64) -> StoreResult<CancelOutcome> {
        let outcome = self.inner.cancel_outbound(id, now_ms).await?;
        self.faults.committed();
        Ok(outcome)
    }

    async fn claim_outbound(&self, claim: ClaimRequest) -> StoreResult<Vec<OutboundRecord>> {
        self.faults.claim();
        self.inner.claim_outbound(claim).await
    }

    async fn record_outcomes(&self, outcomes: Vec<(String, SendOutcome)>) -> StoreResult<()> {
        self.faults.record_outcomes(&outcomes)?;
        self.inner.record_outcomes(outcomes).await
    }

    async fn record_outcome(&self, id: &str, outcome: SendOutcome) -> StoreResult<()> {
        self.inner.record_outcome(id, outcome).await
    }

    async fn record_outcome_plainly(&self, id: &str, outcome: SendOutcome) -> StoreResult<()> {
        self.faults.record_outcome_plainly(id)?;
        self.inner.record_outcome_plainly(id, outcome).await
    }

    async fn next_due(
        &self,
        channel: ChannelKind,
        phone_id: &str,
        now_ms: i64,
        skip_recipients: Vec<HeldRecipient>,
    ) -> StoreResult<Option<i64>> {
        self.inner
            .next_due(channel, phone_id, now_ms, skip_recipients)
            .await
    }

    async fn queued_for_later(
        &self,
        channel: ChannelKind,
        phone_id: &str,
        now_ms: i64,
    ) -> StoreResult<Vec<crate::store::QueuedForLater>> {
        self.inner.queued_for_later(channel, phone_id, now_ms).await
    }

    async fn expire_due(&self, now_ms: i64, limit: u32) -> StoreResult<usize> {
        self.inner.expire_due(now_ms, limit).await
    }

    async fn prune(
        &self,
        before_ms: i64,
        batch: u32,
        unforwarded: UnforwardedInbound,
        status_reported_to: Option<i64>,
    ) -> StoreResult<usize> {
        self.inner
            .prune(before_ms, batch, unforwarded, status_reported_to)
            .await
    }

    async fn prune_message_cursors(&self) -> StoreResult<usize> {
        self.inner.prune_message_cursors().await
    }

    async fn forget_early_reports(&self, now_ms: i64) -> StoreResult<usize> {
        self.inner.forget_early_reports(now_ms).await
    }

    async fn rebase_written_ahead(&self, now_ms: i64) -> StoreResult<usize> {
        self.inner.rebase_written_ahead(now_ms).await
    }

    async fn requeue_abandoned(&self, now_ms: i64, max_attempts: u32) -> StoreResult<Abandoned> {
        self.inner.requeue_abandoned(now_ms, max_attempts).await
    }

    async fn apply_status(&self, update: StatusUpdate) -> StoreResult<Option<String>> {
        self.inner.apply_status(update).await
    }

    async fn queue_stats(&self, since_ms: i64) -> StoreResult<Vec<EndpointStats>> {
        self.inner.queue_stats(since_ms).await
    }

    async fn commit_inbound(
        &self,
        message: InboundMessage,
        now_ms: i64,
    ) -> StoreResult<InboundCommit> {
        self.inner.commit_inbound(message, now_ms).await
    }

    async fn commit_inbound_with_cursors(
        &self,
        message: InboundMessage,
        now_ms: i64,
        scope: &str,
        cursors: Vec<CursorWrite>,
    ) -> StoreResult<InboundCommit> {
        self.inner
            .commit_inbound_with_cursors(message, now_ms, scope, cursors)
            .await
    }

    async fn get_inbound(&self, id: &str) -> StoreResult<Option<InboundRecord>> {
        self.inner.get_inbound(id).await
    }

    async fn list_inbound(&self, filter: InboundFilter) -> StoreResult<Vec<InboundRecord>> {
        self.inner.list_inbound(filter).await
    }

    async fn commit_unreadable(
        &self,
        item: UnreadableInbound,
        now_ms: i64,
    ) -> StoreResult<InboundCommit> {
        self.inner.commit_unreadable(item, now_ms).await
    }

    async fn list_unreadable(&self, filter: InboundFilter) -> StoreResult<Vec<UnreadableRecord>> {
        self.inner.list_unreadable(filter).await
    }

    async fn unreadable_counts(&self) -> StoreResult<Vec<(ChannelKind, String, u64)>> {
        self.inner.unreadable_counts().await
    }

    async fn create_key(&self, key: NewApiKey) -> StoreResult<()> {
        self.inner.create_key(key).await
    }

    async fn replace_named_key(&self, key: NewApiKey, now_ms: i64) -> StoreResult<u64> {
        self.inner.replace_named_key(key, now_ms).await
    }

    async fn find_key(&self, key_id: &str) -> StoreResult<Option<ApiKeyRecord>> {
        self.inner.find_key(key_id).await
    }

    async fn list_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        self.inner.list_keys().await
    }

    async fn revoke_key(&self, key_id_or_name: &str, now_ms: i64) -> StoreResult<bool> {
        self.inner.revoke_key(key_id_or_name, now_ms).await
    }

    async fn replace_relay_pairing(&self, change: PairingChange) -> StoreResult<bool> {
        self.faults.replace_relay_pairing()?;
        self.inner.replace_relay_pairing(change).await
    }

    async fn accept_relay_outbound(
        &self,
        message: NewOutbound,
        relay_message_id: String,
    ) -> StoreResult<AcceptOutcome> {
        let inner = self.inner.clone();
        self.held_accept(
            async move { inner.accept_relay_outbound(message, relay_message_id).await },
        )
        .await
    }

    async fn find_relay_outbound(
        &self,
        relay_message_id: &str,
    ) -> StoreResult<Option<(FirstAnswer, String)>> {
        self.inner.find_relay_outbound(relay_message_id).await
    }

    async fn pending_relay_inbound(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<RelayInbound>> {
        self.inner.pending_relay_inbound(after_seq, limit).await
    }

    async fn get_relay_inbound(&self, id: &str) -> StoreResult<Option<RelayInbound>> {
        self.faults.read_one()?;
        self.inner.get_relay_inbound(id).await
    }

    async fn list_relay_inbound(
        &self,
        state: RelayInboundState,
        phone_id: Option<String>,
        before_seq: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<RelayInbound>> {
        self.inner
            .list_relay_inbound(state, phone_id, before_seq, limit)
            .await
    }

    async fn record_relay_inbound(
        &self,
        id: &str,
        outcome: RelayInboundOutcome,
    ) -> StoreResult<()> {
        self.faults.record_relay_inbound(id)?;
        self.inner.record_relay_inbound(id, outcome).await
    }

    async fn fix_relay_inbound_body(&self, id: &str, body: RelayBody) -> StoreResult<()> {
        self.inner.fix_relay_inbound_body(id, body).await
    }

    async fn retry_relay_inbound(
        &self,
        id: &str,
        now_ms: i64,
        to: Option<&str>,
    ) -> StoreResult<ManualRetry> {
        let outcome = self.inner.retry_relay_inbound(id, now_ms, to).await?;
        self.faults.committed();
        Ok(outcome)
    }

    async fn retry_dead_relay_inbound(
        &self,
        filter: DeadLetterFilter,
        now_ms: i64,
    ) -> StoreResult<Vec<String>> {
        let requeued = self.inner.retry_dead_relay_inbound(filter, now_ms).await?;
        self.faults.committed();
        Ok(requeued)
    }

    async fn relay_inbound_counts(&self) -> StoreResult<RelayInboundCounts> {
        self.inner.relay_inbound_counts().await
    }

    async fn relay_status_events(
        &self,
        after_event_id: i64,
        limit: u32,
        phone_id: &str,
        after_seq: i64,
    ) -> StoreResult<RelayStatusBatch> {
        self.inner
            .relay_status_events(after_event_id, limit, phone_id, after_seq)
            .await
    }

    async fn last_outbound_seq(&self) -> StoreResult<i64> {
        self.inner.last_outbound_seq().await
    }

    async fn record_relay_move(&self, scope: &str, moved: RelayMove) -> StoreResult<i64> {
        self.faults.save_cursor(&moved.cursor)?;
        self.inner.record_relay_move(scope, moved).await
    }

    async fn route_reply(&self, query: RouteQuery) -> StoreResult<Option<RouteMatch>> {
        self.faults.route()?;
        self.inner.route_reply(query).await
    }

    async fn send_unsettled(&self, query: RouteQuery) -> StoreResult<bool> {
        self.faults.route()?;
        self.inner.send_unsettled(query).await
    }

    async fn prune_conversations(
        &self,
        before_ms: i64,
        pending_ttl_ms: Option<i64>,
        limit: u32,
    ) -> StoreResult<usize> {
        self.inner
            .prune_conversations(before_ms, pending_ttl_ms, limit)
            .await
    }

    async fn save_media(&self, media: NewMedia, now_ms: i64) -> StoreResult<MediaSaved> {
        self.inner.save_media(media, now_ms).await
    }

    async fn get_media(&self, id: &str) -> StoreResult<Option<MediaRecord>> {
        self.inner.get_media(id).await
    }

    async fn media_usage(&self) -> StoreResult<(u64, u64)> {
        self.inner.media_usage().await
    }

    async fn open_media(&self, id: &str) -> StoreResult<MediaContent> {
        self.inner.open_media(id).await
    }

    async fn record_media_relay_url(
        &self,
        id: &str,
        relay_url: &str,
        relay_base: &str,
    ) -> StoreResult<()> {
        self.inner
            .record_media_relay_url(id, relay_url, relay_base)
            .await
    }

    async fn record_media_upload_failure(
        &self,
        id: &str,
        relay_base: &str,
        code: &str,
    ) -> StoreResult<u32> {
        self.inner
            .record_media_upload_failure(id, relay_base, code)
            .await
    }

    async fn prune_media(&self, unclaimed_before_ms: i64, batch: u32) -> StoreResult<usize> {
        self.inner.prune_media(unclaimed_before_ms, batch).await
    }

    async fn sweep_media_files(&self) -> StoreResult<MediaSweep> {
        self.inner.sweep_media_files().await
    }

    async fn save_cursor(&self, scope: &str, name: &str, value: &str) -> StoreResult<()> {
        self.faults.save_cursor(name)?;
        self.inner.save_cursor(scope, name, value).await
    }

    async fn load_cursor(&self, scope: &str, name: &str) -> StoreResult<Option<String>> {
        let loaded = self.inner.load_cursor(scope, name).await;
        self.faults.cursor_loaded(name);
        loaded
    }

    async fn sent_ids(
        &self,
        channel: ChannelKind,
        phone_id: &str,
        base: &str,
    ) -> StoreResult<Vec<(String, i64)>> {
        self.inner.sent_ids(channel, phone_id, base).await
    }

    async fn inbound_ids(
        &self,
        channel: ChannelKind,
        phone_id: &str,
        base: &str,
    ) -> StoreResult<Vec<String>> {
        self.inner.inbound_ids(channel, phone_id, base).await
    }
}
