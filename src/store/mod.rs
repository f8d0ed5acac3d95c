//! Durable state behind a narrow interface: the outbox, inbound messages,
//! API keys and adapter cursors. [`SqliteStore`] is the one implementation;
//! the trait is what a PostgreSQL store for several daemons would implement.

mod media;
pub mod message_id;
mod model;
pub mod sqlite;
#[cfg(test)]
pub mod testing;

use async_trait::async_trait;
use phonerelay_channel::{
    ChannelKind, CursorWrite, InboundMessage, SendReceipt, StatusUpdate, UnreadableInbound,
};

pub use media::*;
pub use model::*;
pub use sqlite::{MANUAL_ROUTE, MediaRoom, SqliteStore};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database refused this operation (a constraint, an unknown row,
    /// a bug): the same operation will fail again.
    #[error("database error: {0}")]
    Database(String),
    /// The database could not be written or read just now: a full disk,
    /// an I/O error, a lock held past the busy timeout, no memory. The
    /// same operation may succeed once that passes.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("the store is closed")]
    Closed,
    /// A commit failed after it may have become durable (an I/O error
    /// once its WAL frames were written: the fsync, say). Whether the
    /// write was kept is known only once the store is opened again, and
    /// its WAL recovered; until then the store writes nothing more
    /// (`Store::broken`).
    #[error("the store failed while committing; the write may have been kept: {0}")]
    OutcomeUnknown(String),
    /// This binary cannot use the store at all (one a newer PhoneRelay
    /// wrote): no retry or restart will change that.
    #[error("{0}")]
    Incompatible(String),
}

impl StoreError {
    /// Worth trying the same operation again later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::OutcomeUnknown(_)
        )
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::*;
        match e.sqlite_error_code() {
            // A read-only remount, a file replaced or damaged under the
            // daemon: no write works until an operator acts, which the
            // health must show (`Unavailable` marks the writer failing).
            Some(
                DiskFull | SystemIoFailure | DatabaseBusy | DatabaseLocked | CannotOpen
                | OutOfMemory | ReadOnly | DatabaseCorrupt | NotADatabase,
            ) => StoreError::Unavailable(e.to_string()),
            // Races and interruptions SQLite documents as worth a retry (a
            // WAL lock race, a schema changed under a prepared statement,
            // a statement aborted by another's rollback), and a file whose
            // permissions an operator must mend: none is this write's own
            // fault, so none may be answered as a refusal for good.
            Some(
                FileLockingProtocolFailed
                | SchemaChanged
                | OperationAborted
                | OperationInterrupted
                | PermissionDenied,
            ) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Database(e.to_string()),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Is the database reachable and writable?
    async fn ping(&self) -> StoreResult<()>;

    /// Resolves, with why, once the store has stopped writing for good
    /// ([`StoreError::OutcomeUnknown`]): the daemon then stops, so that a
    /// restart's recovery settles what the failed commit kept. Never, for
    /// a store that cannot break so.
    async fn broken(&self) -> String {
        std::future::pending().await
    }

    /// As [`Self::broken`], at once: why, if the store has stopped writing.
    fn is_broken(&self) -> Option<String> {
        None
    }

    /// The store's files (the database, its WAL) and the free space
    /// beside them; `None` for a store that keeps no local files. Cheap:
    /// the health checks ask it. The kept files are [`Self::media_usage`].
    async fn disk_usage(&self) -> Option<DiskUsage> {
        None
    }

    // --- outbox -----------------------------------------------------------
    /// Commit a new message, or find the one an idempotency key already made.
    async fn accept_outbound(&self, message: NewOutbound) -> StoreResult<AcceptOutcome>;
    /// The message an API key's `Idempotency-Key` already made, as its
    /// accept answered, and the hash of the request that made it.
    async fn find_idempotent_outbound(
        &self,
        api_key_id: Option<String>,
        idempotency_key: String,
    ) -> StoreResult<Option<(FirstAnswer, String)>>;
    async fn get_outbound(&self, id: &str) -> StoreResult<Option<OutboundDetail>>;
    async fn list_outbound(&self, filter: OutboundFilter) -> StoreResult<Vec<OutboundRecord>>;
    async fn cancel_outbound(&self, id: &str, now_ms: i64) -> StoreResult<CancelOutcome>;
    /// Claim up to `limit` due queued messages of one endpoint, leasing
    /// them for `lease_ms`. A running daemon never claims a message again
    /// while it is `sending`: its dispatcher ends every claim with an
    /// outcome. The lease is for the next start (`requeue_abandoned`), and
    /// for a store shared by several daemons, which would take back a dead
    /// one's claims by it.
    async fn claim_outbound(&self, claim: ClaimRequest) -> StoreResult<Vec<OutboundRecord>>;
    /// Record what became of claimed messages, all in one transaction: if
    /// one cannot be recorded, none is (record them one by one then).
    async fn record_outcomes(&self, outcomes: Vec<(String, SendOutcome)>) -> StoreResult<()>;
    async fn record_outcome(&self, id: &str, outcome: SendOutcome) -> StoreResult<()> {
        self.record_outcomes(vec![(id.to_string(), outcome)]).await
    }
    /// What a claimed message's status becomes, and its history row, and
    /// nothing else: a sent message's parts, conversation and early
    /// reports are left out, and so is the state an adapter kept while it
    /// sent. For an outcome [`Self::record_outcomes`] refuses for good (a
    /// bug met by that message alone): left `sending`, the message was
    /// sent again at the next start, and replies from its recipient were
    /// held until then. An unknown id is met as `record_outcomes` meets it.
    async fn record_outcome_plainly(&self, id: &str, outcome: SendOutcome) -> StoreResult<()>;
    /// The earliest `next_attempt_at` of a queued message on the endpoint
    /// that is not past its ttl at `now_ms`: one that is will never be
    /// claimed, only expired, and waiting for it would wait for nothing.
    /// Messages to `skip_recipients` do not count (see
    /// `ClaimRequest::skip_recipients`).
    async fn next_due(
        &self,
        channel: ChannelKind,
        phone_id: &str,
        now_ms: i64,
        skip_recipients: Vec<HeldRecipient>,
    ) -> StoreResult<Option<i64>>;
    /// The endpoint's queued messages not due until after `now_ms` (a
    /// retry, a rate limit) and not past their ttl: what the dispatcher
    /// holds each recipient's later messages back behind after a restart.
    async fn queued_for_later(
        &self,
        channel: ChannelKind,
        phone_id: &str,
        now_ms: i64,
    ) -> StoreResult<Vec<QueuedForLater>>;
    /// Mark queued messages past their TTL expired, at most `limit` (one
    /// writer job: the caller asks again while a job comes back full);
    /// returns how many.
    async fn expire_due(&self, now_ms: i64, limit: u32) -> StoreResult<usize>;
    /// Delete up to `batch` ended outbound messages (with their history and
    /// parts), unreadable inbound items, and forwarded inbound messages last changed before
    /// `before_ms`, and inbound not yet forwarded too if `unforwarded`
    /// says so; returns how many rows went. Live and dead-lettered
    /// messages are kept, and so is a message from the relay with a status
    /// event after `status_reported_to` (the relay's status cursor, while
    /// a relay is named): its status has not reached the relay yet.
    async fn prune(
        &self,
        before_ms: i64,
        batch: u32,
        unforwarded: UnforwardedInbound,
        status_reported_to: Option<i64>,
    ) -> StoreResult<usize>;
    /// Delete every `message_cursor` (see the channel crate) whose message
    /// has ended or is gone; returns how many went.
    async fn prune_message_cursors(&self) -> StoreResult<usize>;
    /// Forget the delivery reports kept for a send not recorded (yet) that
    /// came more than a day before `now_ms` and that no message can still
    /// take (none of their endpoint accepted before they came is queued or
    /// sending): that send is another bridge's, or lost.
    async fn forget_early_reports(&self, now_ms: i64) -> StoreResult<usize>;
    /// Measure again from `now_ms` the waits of every queued or sending
    /// message last written after `now_ms`, by a clock since stepped back:
    /// due at most its wait when written from `now_ms`, ending at most its
    /// whole ttl from `now_ms`, never later than before. Returns how many
    /// there were.
    async fn rebase_written_ahead(&self, now_ms: i64) -> StoreResult<usize>;
    /// Return claims left by a process that died to the queue, but fail
    /// those claimed more than `max_attempts` times: a message whose
    /// sending kills the daemon each time would otherwise be tried for
    /// ever, and hold its endpoint's queue at every start.
    async fn requeue_abandoned(&self, now_ms: i64, max_attempts: u32) -> StoreResult<Abandoned>;
    /// Apply a delivery report or read receipt; `None` if no message matches.
    async fn apply_status(&self, update: StatusUpdate) -> StoreResult<Option<String>>;
    async fn queue_stats(&self, since_ms: i64) -> StoreResult<Vec<EndpointStats>>;

    // --- inbound ----------------------------------------------------------
    /// Commit a received message; a repeat of (channel, phone_id,
    /// external_id) is recognised and not stored twice.
    async fn commit_inbound(
        &self,
        message: InboundMessage,
        now_ms: i64,
    ) -> StoreResult<InboundCommit>;
    /// As [`Self::commit_inbound`], and `cursors` written under `scope`
    /// (each as [`Self::save_cursor`] writes it) in the same transaction:
    /// all of it commits, or none. A repeat's cursors are written too.
    async fn commit_inbound_with_cursors(
        &self,
        message: InboundMessage,
        now_ms: i64,
        scope: &str,
        cursors: Vec<CursorWrite>,
    ) -> StoreResult<InboundCommit>;
    async fn get_inbound(&self, id: &str) -> StoreResult<Option<InboundRecord>>;
    async fn list_inbound(&self, filter: InboundFilter) -> StoreResult<Vec<InboundRecord>>;
    /// Keep something received that its adapter could not read; the same
    /// bytes on the same endpoint again are recognised (`duplicate`) and
    /// not stored twice. Kept as long as inbound messages ([`Self::prune`]).
    async fn commit_unreadable(
        &self,
        item: UnreadableInbound,
        now_ms: i64,
    ) -> StoreResult<InboundCommit>;
    /// Newest first, filtered and paged as [`Self::list_inbound`].
    async fn list_unreadable(&self, filter: InboundFilter) -> StoreResult<Vec<UnreadableRecord>>;
    /// How many unreadable items are kept, per endpoint that has any.
    async fn unreadable_counts(&self) -> StoreResult<Vec<(ChannelKind, String, u64)>>;

    // --- API keys ---------------------------------------------------------
    async fn create_key(&self, key: NewApiKey) -> StoreResult<()>;
    /// Create `key` and revoke every other active key with its name, in
    /// one commit; how many were revoked. For a key that stands alone
    /// under its name (the local CLI key): the one it replaces, or whose
    /// file was lost, stops working with it.
    async fn replace_named_key(&self, key: NewApiKey, now_ms: i64) -> StoreResult<u64>;
    async fn find_key(&self, key_id: &str) -> StoreResult<Option<ApiKeyRecord>>;
    async fn list_keys(&self) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Returns false if no such active key.
    async fn revoke_key(&self, key_id_or_name: &str, now_ms: i64) -> StoreResult<bool>;
    /// Revoke the previous pairing's bridge key, create the new one (if
    /// any) and write the pairing's cursors, all or nothing: `pair` never
    /// leaves the old key revoked without the new one, or a key without
    /// its pairing; `unpair` never leaves the pairing standing with its
    /// key revoked, or the key active without its pairing. True if the
    /// previous key was active and is now revoked.
    async fn replace_relay_pairing(&self, change: PairingChange) -> StoreResult<bool>;

    // --- relay link -------------------------------------------------------
    /// Like [`Store::accept_outbound`], keyed by the relay's message id: a
    /// repeat of the id returns the first message (`Replayed`).
    async fn accept_relay_outbound(
        &self,
        message: NewOutbound,
        relay_message_id: String,
    ) -> StoreResult<AcceptOutcome>;
    /// Pending inbound messages in commit order (due or not).
    /// The message a `relay_message_id` already made, if any, as its
    /// accept answered, and its phone_id.
    async fn find_relay_outbound(
        &self,
        relay_message_id: &str,
    ) -> StoreResult<Option<(FirstAnswer, String)>>;
    /// Up to `limit` inbound waiting for the relay, in commit order, after
    /// `after_seq` (0 from the start).
    async fn pending_relay_inbound(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<RelayInbound>>;
    async fn get_relay_inbound(&self, id: &str) -> StoreResult<Option<RelayInbound>>;
    /// Newest first.
    async fn list_relay_inbound(
        &self,
        state: RelayInboundState,
        phone_id: Option<String>,
        before_seq: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<RelayInbound>>;
    async fn record_relay_inbound(&self, id: &str, outcome: RelayInboundOutcome)
    -> StoreResult<()>;
    /// Fix the body of a pending inbound's POST, with its route, before
    /// the first POST: a repeat sends the same body (`RelayBody`).
    async fn fix_relay_inbound_body(&self, id: &str, body: RelayBody) -> StoreResult<()>;
    /// Put a dead letter back in the queue, due now; with `to`, addressed
    /// to that pChat address (`origin.route` `manual`), its body made
    /// afresh.
    async fn retry_relay_inbound(
        &self,
        id: &str,
        now_ms: i64,
        to: Option<&str>,
    ) -> StoreResult<ManualRetry>;
    /// Put every dead letter `filter` matches back in the queue, in one
    /// transaction, each as [`Self::retry_relay_inbound`] without `to`
    /// puts one; the ids requeued, in commit order. Only dead letters:
    /// one set aside for another phone is sent on by its id.
    async fn retry_dead_relay_inbound(
        &self,
        filter: DeadLetterFilter,
        now_ms: i64,
    ) -> StoreResult<Vec<String>>;
    async fn relay_inbound_counts(&self) -> StoreResult<RelayInboundCounts>;
    /// Up to `limit` reportable status changes after `after_event_id` of
    /// the relay's messages for `phone_id` (the link's: another phone's
    /// belong to a relay no longer linked, and are passed over) accepted
    /// after outbound seq `after_seq` (those before were another relay's:
    /// `relay::reported_relay`).
    async fn relay_status_events(
        &self,
        after_event_id: i64,
        limit: u32,
        phone_id: &str,
        after_seq: i64,
    ) -> StoreResult<RelayStatusBatch>;
    /// The newest outbound message's seq (0 when there is none): every
    /// message accepted from now on has a higher one.
    async fn last_outbound_seq(&self) -> StoreResult<i64>;
    /// In one transaction: the messages accepted from now on are relay
    /// `moved.url`'s ([`ReportedRelay`] in cursor `moved.cursor` under
    /// `scope`), and the routes given to inbound messages not yet taken
    /// (pending, dead letters) are forgotten, except an operator's own:
    /// they name the old relay's users. Returns the record's `after_seq`.
    async fn record_relay_move(&self, scope: &str, moved: RelayMove) -> StoreResult<i64>;
    /// The conversation an inbound message replies to, if any is known.
    async fn route_reply(&self, query: RouteQuery) -> StoreResult<Option<RouteMatch>>;
    /// Whether a send from a pChat user (one with a `source`) to the
    /// sender of `query`, accepted by `query.as_of_ms`, has no outcome
    /// recorded yet (`sending`): it may have gone out before the reply
    /// came, and its conversation is recorded only with its outcome, so
    /// the reply cannot be routed yet.
    async fn send_unsettled(&self, query: RouteQuery) -> StoreResult<bool>;
    /// Forget conversations last used before `before_ms`, at most `limit`
    /// rows; returns how many. With `pending_ttl_ms` (a relay is named),
    /// keep those an inbound still waiting to be forwarded may be routed
    /// by: the ttl before the oldest one's arrival.
    async fn prune_conversations(
        &self,
        before_ms: i64,
        pending_ttl_ms: Option<i64>,
        limit: u32,
    ) -> StoreResult<usize>;

    // --- received files ---------------------------------------------------
    /// Keep a received file: written and synced before its row commits, so
    /// a committed row always has its file. Over the size limit nothing is
    /// written (`TooLarge`), nor when the kept files' total cap or the
    /// disk's free-space floor leaves no room for it (`NoRoom`).
    async fn save_media(&self, media: NewMedia, now_ms: i64) -> StoreResult<MediaSaved>;
    async fn get_media(&self, id: &str) -> StoreResult<Option<MediaRecord>>;
    /// How many received files are kept, and their bytes, by their rows.
    async fn media_usage(&self) -> StoreResult<(u64, u64)>;
    /// The row and a reader of its bytes.
    async fn open_media(&self, id: &str) -> StoreResult<MediaContent>;
    /// Where the relay at `relay_base` keeps its copy of the file
    /// (`POST {media}`).
    async fn record_media_relay_url(
        &self,
        id: &str,
        relay_url: &str,
        relay_base: &str,
    ) -> StoreResult<()>;
    /// One more failed upload (a timeout, a 5xx) of file `id` to the relay
    /// at `relay_base`, `code` its error; returns the file's failed uploads
    /// to that relay so far.
    async fn record_media_upload_failure(
        &self,
        id: &str,
        relay_base: &str,
        code: &str,
    ) -> StoreResult<u32>;
    /// Delete up to `batch` kept files (row, then file) whose inbound
    /// message is gone, and those no inbound message took that were saved
    /// before `unclaimed_before_ms`; returns how many went.
    async fn prune_media(&self, unclaimed_before_ms: i64, batch: u32) -> StoreResult<usize>;
    /// Remove files that have no row (a crash between the file and its
    /// row) and count rows without a file. Only while no file is being
    /// saved: at the daemon's start, under its instance lock.
    async fn sweep_media_files(&self) -> StoreResult<MediaSweep>;

    // --- adapter cursors --------------------------------------------------
    /// An empty `value` removes the cursor (`load_cursor` then finds none).
    async fn save_cursor(&self, scope: &str, name: &str, value: &str) -> StoreResult<()>;
    async fn load_cursor(&self, scope: &str, name: &str) -> StoreResult<Option<String>>;
    /// The endpoint's sent external ids that are `base` or `base:<suffix>`,
    /// each with when its sending attempt began (ms): see
    /// `EventSink::sent_ids`.
    async fn sent_ids(
        &self,
        channel: ChannelKind,
        phone_id: &str,
        base: &str,
    ) -> StoreResult<Vec<(String, i64)>>;
    /// The endpoint's inbound external ids that are `base` or
    /// `base#<suffix>`: see `EventSink::inbound_ids`.
    async fn inbound_ids(
        &self,
        channel: ChannelKind,
        phone_id: &str,
        base: &str,
    ) -> StoreResult<Vec<String>>;
}

/// Used by adapters that return a receipt.
pub fn sent(receipt: SendReceipt, now_ms: i64) -> SendOutcome {
    SendOutcome::Sent { receipt, now_ms }
}

/// What [`Store::requeue_abandoned`] did with the claims it found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Abandoned {
    pub requeued: usize,
    /// Failed as `retries_exhausted`: their last attempt was the one the
    /// process died in.
    pub failed: usize,
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::StoreError;

    #[test]
    fn a_full_database_is_transient_and_a_broken_constraint_is_not() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (x INTEGER UNIQUE, pad BLOB);
             INSERT INTO t VALUES (1, NULL);",
        )
        .unwrap();
        let duplicate: StoreError = conn
            .execute("INSERT INTO t VALUES (1, NULL)", [])
            .unwrap_err()
            .into();
        assert!(matches!(duplicate, StoreError::Database(_)), "{duplicate}");
        assert!(!duplicate.is_transient());
        // No page may be added: SQLite answers SQLITE_FULL, as it does
        // when the disk has no space left.
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |row| row.get(0))
            .unwrap();
        conn.pragma_update(None, "max_page_count", pages).unwrap();
        let full: StoreError = conn
            .execute("INSERT INTO t VALUES (2, zeroblob(100000))", [])
            .unwrap_err()
            .into();
        assert!(matches!(full, StoreError::Unavailable(_)), "{full}");
        assert!(full.is_transient());
    }

    /// An interrupted statement is not the write's own fault: it may be
    /// tried again, and must not be answered as a refusal for good.
    #[test]
    fn an_interrupted_statement_is_transient() {
        let conn = Connection::open_in_memory().unwrap();
        conn.progress_handler(1, Some(|| true));
        let interrupted: StoreError = conn
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap_err()
            .into();
        assert!(
            matches!(interrupted, StoreError::Unavailable(_)),
            "{interrupted}"
        );
    }
}
