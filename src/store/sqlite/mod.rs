//! The SQLite store: one file under the state dir, WAL, `synchronous=FULL`,
//! group-committed writes on one thread and pooled readers.

pub mod backup;
mod cursors;
mod disk_usage;
mod inbound;
mod keys;
mod media;
mod media_budget;
mod media_files;
mod outbound;
/// Write a media file durably, then commit its row; a file whose row does
/// not commit is removed again. Runs to the end once started.
async fn save_media_file(
    writer: Writer,
    dir: PathBuf,
    media: NewMedia,
    now_ms: i64,
    room: media_budget::Reservation,
) -> StoreResult<MediaSaved> {
    let size = media.bytes.len() as u64;
    let id = uuid::Uuid::now_v7().to_string();
    let (file_dir, file_id, bytes) = (dir.clone(), id.clone(), media.bytes);
    // Hashing up to `max_media_bytes` and writing them block: off the
    // runtime's threads, both.
    let sha256 = tokio::task::spawn_blocking(move || {
        media_files::write_durably(&file_dir, &file_id, &bytes)
            .map(|()| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)))
    })
    .await
    .map_err(|e| StoreError::Unavailable(format!("writing a media file failed: {e}")))?
    .map_err(|e| StoreError::Unavailable(format!("cannot write a media file: {e}")))?;
    let record = MediaRecord {
        id,
        channel: media.channel,
        phone_id: media.phone_id,
        content_type: media.content_type,
        filename: media.filename,
        size,
        sha256,
        created_at_ms: now_ms,
        relay_url: None,
        inbound_id: None,
        relay_base: None,
        upload_failures: None,
    };
    let row = record.clone();
    match writer.write(move |conn| media::insert(conn, &row)).await {
        Ok(()) => {
            room.keep();
            Ok(MediaSaved::Saved(Box::new(record)))
        }
        Err(e) => {
            // Not committed: the file has no row to serve it. Unless the
            // commit's outcome is unknown: its row may come back at the
            // next start, which removes the file if it does not. Its room
            // stays taken till then, which errs on the side of refusing.
            if matches!(e, StoreError::OutcomeUnknown(_)) {
                room.keep();
            } else {
                media_files::remove(&dir, &[record.id]);
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod plans;
mod pool;
mod read_only;
mod relay;
mod retention;
mod routing;
mod rows;
mod schema;
mod sent_ids;
mod seq_clock;
mod unreadable;
mod writer;
mod written_ahead;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use phonerelay_channel::{
    ChannelKind, CursorWrite, InboundMessage, StatusUpdate, UnreadableInbound,
};
use rusqlite::Connection;

pub use self::media_budget::MediaRoom;
use self::pool::ReadPool;
pub use self::read_only::ReadOnlyStore;
pub use self::relay::MANUAL_ROUTE;
use self::seq_clock::SeqClock;
use self::writer::Writer;
use super::*;

pub struct SqliteStore {
    path: PathBuf,
    writer: Writer,
    reader: ReadPool,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Key records for the bearer check; see [`keys::KEY_CACHE_TTL`].
    key_cache: keys::KeyCache,
    /// The next outbound message's `seq` (and so its id).
    seqs: SeqClock,
    /// Where kept files live: `media/` beside the database.
    media_dir: PathBuf,
    /// `storage.max_media_bytes`: the largest file kept; 0 keeps none.
    max_media_bytes: u64,
    /// The room all kept files may take (`storage.max_media_total_bytes`,
    /// `storage.media_min_free_bytes`).
    media_budget: std::sync::Arc<media_budget::MediaBudget>,
}

/// `database` with `ending` after its name: its WAL (`-wal`), its shared
/// memory (`-shm`), a copy kept aside.
pub(super) fn beside(database: &Path, ending: &str) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(ending);
    PathBuf::from(name)
}

/// The schema version this binary brings a store to (and runs on).
pub const SCHEMA_VERSION: usize = schema::MIGRATIONS.len();

/// The schema version of the store at `path` (0 if there is none yet),
/// read without changing anything: what opening it would migrate from.
pub fn schema_version_of(path: &Path) -> StoreResult<usize> {
    Ok(schema::version_of(path)?)
}

/// A new store at `path` as the first `version` migrations left it: an
/// older PhoneRelay's, for tests of an upgrade.
#[doc(hidden)]
pub fn create_at_schema_version(path: &Path, version: usize) -> StoreResult<()> {
    Ok(schema::create_at_version(path, version)?)
}

impl SqliteStore {
    /// Open (creating if needed) the database and bring its schema up to
    /// date, with the default commit delay.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let delay = std::time::Duration::from_millis(crate::config::DEFAULT_COMMIT_DELAY_MS);
        Self::open_with_commit_delay(path, delay)
    }

    /// As [`Self::open`]; a group of few writes waits up to `commit_delay`
    /// for more before it commits (`storage.commit_delay_ms`).
    pub fn open_with_commit_delay(
        path: &Path,
        commit_delay: std::time::Duration,
    ) -> StoreResult<Self> {
        if let Some(dir) = path.parent() {
            crate::private_files::create_dir(dir).map_err(|e| {
                StoreError::Database(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        // SQLite gives its WAL and shared-memory files the database's mode.
        crate::private_files::create_file(path)
            .map_err(|e| StoreError::Database(format!("cannot create {}: {e}", path.display())))?;
        let mut conn = Connection::open(path)?;
        schema::configure(&conn)?;
        schema::check_not_newer(&conn, path)?;
        schema::migrate(&mut conn)?;
        let seqs = SeqClock::load(&conn)?;
        let (_, media_bytes) = media::usage(&conn)?;
        // Replies are routed by comparing event times: later ones must stay
        // later than these, whatever the clock says now. One further ahead
        // than a clock left behind by a restart would be was written by a
        // clock that ran ahead for a while: taken up, it would date every
        // later event that far ahead, and retention would keep them as
        // long.
        if let Some(latest) = routing::latest_event_ms(&conn)? {
            if latest > crate::clock::now_ms() + crate::clock::MAX_EVENT_AHEAD_MS {
                tracing::warn!(
                    latest = %crate::clock::rfc3339(latest),
                    "the store holds an event dated more than a day ahead of the clock; \
                     not ordering new events after it"
                );
            } else {
                crate::clock::raise_event_floor(latest);
            }
        }
        let (writer, handle) = Writer::spawn(conn, commit_delay);
        Ok(Self {
            path: path.to_path_buf(),
            writer,
            reader: ReadPool::new(path.to_path_buf()),
            writer_thread: Mutex::new(Some(handle)),
            key_cache: keys::KeyCache::default(),
            seqs,
            media_dir: media_files::dir_beside(path),
            max_media_bytes: crate::config::DEFAULT_MAX_MEDIA_BYTES,
            media_budget: std::sync::Arc::new(media_budget::MediaBudget::new(
                MediaRoom::default(),
                media_bytes,
            )),
        })
    }

    /// The largest file [`Store::save_media`] keeps
    /// (`storage.max_media_bytes`); 0 keeps none.
    pub fn with_max_media_bytes(mut self, max: u64) -> Self {
        self.max_media_bytes = max;
        self
    }

    /// The room all kept files may take: `storage.max_media_total_bytes`
    /// (0: no total cap) and `storage.media_min_free_bytes`.
    pub fn with_media_room(mut self, room: MediaRoom) -> Self {
        self.media_budget = std::sync::Arc::new(self.media_budget.with_room(room));
        self
    }

    /// The total cap counts the files that are there: rows whose file the
    /// sweep did not find (a restored backup, files removed by hand) give
    /// their bytes back, else the cap would refuse new files until
    /// retention pruned those rows, and never with `retention_days = 0`.
    /// Marked so, their later prune gives nothing back twice.
    async fn count_only_files_there(
        &self,
        missing: Vec<String>,
        found: Vec<String>,
    ) -> StoreResult<()> {
        let (gone_bytes, found_again_bytes) = self
            .writer
            .write(move |conn| media::mark_files(conn, &missing, &found))
            .await?;
        self.media_budget.release(gone_bytes);
        self.media_budget.count_found_again(found_again_bytes);
        Ok(())
    }

    /// Free bytes on the store's filesystem, which the kept files must not
    /// take below `storage.media_min_free_bytes`.
    fn free_bytes(&self) -> Option<u64> {
        disk_usage::free_bytes(self.path.parent().unwrap_or(Path::new(".")))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // The writer thread ends once its channel closes; wait so the last
        // transaction and the WAL checkpoint finish before the process exits.
        let handle = self.writer_thread.lock().ok().and_then(|mut h| h.take());
        let (closed, _) = std::sync::mpsc::channel();
        self.writer = Writer::detached(closed);
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn broken(&self) -> String {
        self.writer.broken().await
    }

    fn is_broken(&self) -> Option<String> {
        self.writer.is_broken()
    }

    async fn ping(&self) -> StoreResult<()> {
        if self.writer.failing().is_none() {
            return self
                .writer
                .write(|conn| Ok(conn.execute_batch("SELECT 1")?))
                .await;
        }
        // The last write failed (a full disk, an I/O error). A transaction
        // that writes nothing would still succeed, so write a row: once
        // that commits, writes work again and the writer forgets the
        // failure.
        let now = crate::clock::now_ms().to_string();
        self.writer
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO cursors (scope, name, value) VALUES ('store', 'probe', ?1)
                     ON CONFLICT (scope, name) DO UPDATE SET value = excluded.value",
                    [&now],
                )?;
                Ok(())
            })
            .await
    }

    async fn disk_usage(&self) -> Option<DiskUsage> {
        let mut usage = disk_usage::measure(&self.path);
        let media = self.media_budget.state(usage.free_bytes);
        usage.media_max_total_bytes = media.room.max_total_bytes;
        usage.media_min_free_bytes = media.room.min_free_bytes;
        usage.media_refused = media.refusing;
        Some(usage)
    }

    async fn media_usage(&self) -> StoreResult<(u64, u64)> {
        self.reader.read(media::usage).await
    }

    async fn accept_outbound(&self, message: NewOutbound) -> StoreResult<AcceptOutcome> {
        let seqs = self.seqs.clone();
        self.writer
            .write(move |conn| outbound::accept(conn, &message, &seqs))
            .await
    }

    async fn get_outbound(&self, id: &str) -> StoreResult<Option<OutboundDetail>> {
        let id = id.to_string();
        self.reader.read(move |conn| outbound::get(conn, &id)).await
    }

    async fn list_outbound(&self, filter: OutboundFilter) -> StoreResult<Vec<OutboundRecord>> {
        self.reader
            .read(move |conn| outbound::list(conn, &filter))
            .await
    }

    async fn cancel_outbound(&self, id: &str, now_ms: i64) -> StoreResult<CancelOutcome> {
        let id = id.to_string();
        self.writer
            .write(move |conn| outbound::cancel(conn, &id, now_ms))
            .await
    }

    async fn claim_outbound(&self, claim: ClaimRequest) -> StoreResult<Vec<OutboundRecord>> {
        self.writer
            .write(move |conn| outbound::claim(conn, &claim))
            .await
    }

    async fn record_outcomes(&self, outcomes: Vec<(String, SendOutcome)>) -> StoreResult<()> {
        self.writer
            .write(move |conn| outbound::record_outcomes(conn, &outcomes))
            .await
    }

    async fn record_outcome_plainly(&self, id: &str, outcome: SendOutcome) -> StoreResult<()> {
        let id = id.to_string();
        self.writer
            .write(move |conn| outbound::record_outcome_plainly(conn, &id, &outcome))
            .await
    }

    async fn next_due(
        &self,
        channel: ChannelKind,
        phone_id: &str,
        now_ms: i64,
        skip_recipients: Vec<HeldRecipient>,
    ) -> StoreResult<Option<i64>> {
        let phone_id = phone_id.to_string();
        self.reader
            .read(move |conn| {
                outbound::next_due(conn, channel, &phone_id, now_ms, &skip_recipients)
            })
            .await
    }

    async fn queued_for_later(
        &self,
        channel: ChannelKind,
        phone_id: &str,
        now_ms: i64,
    ) -> StoreResult<Vec<QueuedForLater>> {
        let phone_id = phone_id.to_string();
        self.reader
            .read(move |conn| outbound::queued_for_later(conn, channel, &phone_id, now_ms))
            .await
    }

    async fn expire_due(&self, now_ms: i64, limit: u32) -> StoreResult<usize> {
        self.writer
            .write(move |conn| outbound::expire_due(conn, now_ms, limit))
            .await
    }

    async fn prune(
        &self,
        before_ms: i64,
        batch: u32,
        unforwarded: UnforwardedInbound,
        status_reported_to: Option<i64>,
    ) -> StoreResult<usize> {
        self.writer
            .write(move |conn| {
                retention::prune(conn, before_ms, batch, unforwarded, status_reported_to)
            })
            .await
    }

    async fn prune_message_cursors(&self) -> StoreResult<usize> {
        self.writer.write(retention::prune_message_cursors).await
    }

    async fn forget_early_reports(&self, now_ms: i64) -> StoreResult<usize> {
        self.writer
            .write(move |conn| outbound::forget_early(conn, now_ms))
            .await
    }

    async fn rebase_written_ahead(&self, now_ms: i64) -> StoreResult<usize> {
        self.writer
            .write(move |conn| written_ahead::rebase(conn, now_ms))
            .await
    }

    async fn requeue_abandoned(&self, now_ms: i64, max_attempts: u32) -> StoreResult<Abandoned> {
        self.writer
            .write(move |conn| outbound::requeue_abandoned(conn, now_ms, max_attempts))
            .await
    }

    async fn apply_status(&self, update: StatusUpdate) -> StoreResult<Option<String>> {
        self.writer
            .write(move |conn| outbound::apply_status(conn, &update, crate::clock::now_ms()))
            .await
    }

    async fn queue_stats(&self, since_ms: i64) -> StoreResult<Vec<EndpointStats>> {
        self.reader
            .read(move |conn| outbound::stats(conn, since_ms))
            .await
    }

    async fn commit_inbound(
        &self,
        message: InboundMessage,
        now_ms: i64,
    ) -> StoreResult<InboundCommit> {
        self.writer
            .write(move |conn| inbound::commit(conn, &message, now_ms))
            .await
    }

    async fn commit_inbound_with_cursors(
        &self,
        message: InboundMessage,
        now_ms: i64,
        scope: &str,
        cursors: Vec<CursorWrite>,
    ) -> StoreResult<InboundCommit> {
        let scope = scope.to_string();
        // One write: the writer runs it whole in the group transaction, or
        // in a savepoint of its own that undoes all of it if a part fails.
        self.writer
            .write(move |conn| {
                inbound::commit_with_cursors(conn, &message, now_ms, &scope, &cursors)
            })
            .await
    }

    async fn get_inbound(&self, id: &str) -> StoreResult<Option<InboundRecord>> {
        let id = id.to_string();
        self.reader.read(move |conn| inbound::get(conn, &id)).await
    }

    async fn list_inbound(&self, filter: InboundFilter) -> StoreResult<Vec<InboundRecord>> {
        self.reader
            .read(move |conn| inbound::list(conn, &filter))
            .await
    }

    async fn commit_unreadable(
        &self,
        item: UnreadableInbound,
        now_ms: i64,
    ) -> StoreResult<InboundCommit> {
        self.writer
            .write(move |conn| unreadable::commit(conn, &item, now_ms))
            .await
    }

    async fn list_unreadable(&self, filter: InboundFilter) -> StoreResult<Vec<UnreadableRecord>> {
        self.reader
            .read(move |conn| unreadable::list(conn, &filter))
            .await
    }

    async fn unreadable_counts(&self) -> StoreResult<Vec<(ChannelKind, String, u64)>> {
        self.reader.read(unreadable::counts).await
    }

    async fn create_key(&self, key: NewApiKey) -> StoreResult<()> {
        self.writer
            .write(move |conn| keys::create(conn, &key))
            .await
    }

    async fn replace_named_key(&self, key: NewApiKey, now_ms: i64) -> StoreResult<u64> {
        let revoked = self
            .writer
            .write(move |conn| keys::replace_named(conn, &key, now_ms))
            .await;
        // After the commit, as for `revoke_key`.
        self.key_cache.clear();
        revoked
    }

    async fn find_key(&self, key_id: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let generation = match self.key_cache.get(key_id) {
            Ok(record) => return Ok(Some(record)),
            Err(generation) => generation,
        };
        let key_id = key_id.to_string();
        let found = self
            .reader
            .read(move |conn| keys::find(conn, &key_id))
            .await?;
        if let Some(record) = &found {
            self.key_cache.put(generation, record);
        }
        Ok(found)
    }

    async fn list_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        self.reader.read(keys::list).await
    }

    async fn revoke_key(&self, key_id_or_name: &str, now_ms: i64) -> StoreResult<bool> {
        let key = key_id_or_name.to_string();
        let revoked = self
            .writer
            .write(move |conn| keys::revoke(conn, &key, now_ms))
            .await;
        // After the commit, so no read can cache the record from before it.
        self.key_cache.clear();
        revoked
    }

    async fn replace_relay_pairing(&self, change: PairingChange) -> StoreResult<bool> {
        // One write: the writer runs it whole, or none of it.
        let replaced = self
            .writer
            .write(move |conn| keys::replace_pairing(conn, &change))
            .await;
        // After the commit, as for `revoke_key`.
        self.key_cache.clear();
        replaced
    }

    async fn accept_relay_outbound(
        &self,
        message: NewOutbound,
        relay_message_id: String,
    ) -> StoreResult<AcceptOutcome> {
        let seqs = self.seqs.clone();
        self.writer
            .write(move |conn| relay::accept(conn, &message, &relay_message_id, &seqs))
            .await
    }

    async fn find_idempotent_outbound(
        &self,
        api_key_id: Option<String>,
        idempotency_key: String,
    ) -> StoreResult<Option<(FirstAnswer, String)>> {
        self.reader
            .read(move |conn| {
                outbound::find_idempotent(conn, api_key_id.as_deref(), &idempotency_key)
            })
            .await
    }

    async fn find_relay_outbound(
        &self,
        relay_message_id: &str,
    ) -> StoreResult<Option<(FirstAnswer, String)>> {
        let relay_message_id = relay_message_id.to_string();
        self.reader
            .read(move |conn| relay::find_outbound(conn, &relay_message_id))
            .await
    }

    async fn pending_relay_inbound(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<RelayInbound>> {
        self.reader
            .read(move |conn| relay::pending(conn, after_seq, limit))
            .await
    }

    async fn get_relay_inbound(&self, id: &str) -> StoreResult<Option<RelayInbound>> {
        let id = id.to_string();
        self.reader.read(move |conn| relay::get(conn, &id)).await
    }

    async fn list_relay_inbound(
        &self,
        state: RelayInboundState,
        phone_id: Option<String>,
        before_seq: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<RelayInbound>> {
        self.reader
            .read(move |conn| relay::list(conn, state, phone_id.as_deref(), before_seq, limit))
            .await
    }

    async fn record_relay_inbound(
        &self,
        id: &str,
        outcome: RelayInboundOutcome,
    ) -> StoreResult<()> {
        let id = id.to_string();
        self.writer
            .write(move |conn| relay::record(conn, &id, &outcome))
            .await
    }

    async fn fix_relay_inbound_body(&self, id: &str, body: RelayBody) -> StoreResult<()> {
        let id = id.to_string();
        self.writer
            .write(move |conn| relay::fix_body(conn, &id, &body))
            .await
    }

    async fn retry_relay_inbound(
        &self,
        id: &str,
        now_ms: i64,
        to: Option<&str>,
    ) -> StoreResult<ManualRetry> {
        let (id, to) = (id.to_string(), to.map(str::to_string));
        self.writer
            .write(move |conn| relay::retry(conn, &id, now_ms, to.as_deref()))
            .await
    }

    async fn retry_dead_relay_inbound(
        &self,
        filter: DeadLetterFilter,
        now_ms: i64,
    ) -> StoreResult<Vec<String>> {
        self.writer
            .write(move |conn| relay::retry_dead(conn, &filter, now_ms))
            .await
    }

    async fn relay_inbound_counts(&self) -> StoreResult<RelayInboundCounts> {
        self.reader.read(relay::counts).await
    }

    async fn relay_status_events(
        &self,
        after_event_id: i64,
        limit: u32,
        phone_id: &str,
        after_seq: i64,
    ) -> StoreResult<RelayStatusBatch> {
        let phone_id = phone_id.to_string();
        self.reader
            .read(move |conn| {
                relay::status_events(conn, after_event_id, limit, &phone_id, after_seq)
            })
            .await
    }

    async fn last_outbound_seq(&self) -> StoreResult<i64> {
        self.reader.read(relay::last_outbound_seq).await
    }

    async fn record_relay_move(&self, scope: &str, moved: RelayMove) -> StoreResult<i64> {
        let scope = scope.to_string();
        self.writer
            .write(move |conn| relay::record_relay_move(conn, &scope, &moved))
            .await
    }

    async fn route_reply(&self, query: RouteQuery) -> StoreResult<Option<RouteMatch>> {
        self.reader
            .read(move |conn| routing::route(conn, &query))
            .await
    }

    async fn send_unsettled(&self, query: RouteQuery) -> StoreResult<bool> {
        self.reader
            .read(move |conn| routing::send_unsettled(conn, &query))
            .await
    }

    async fn prune_conversations(
        &self,
        before_ms: i64,
        pending_ttl_ms: Option<i64>,
        limit: u32,
    ) -> StoreResult<usize> {
        self.writer
            .write(move |conn| routing::prune(conn, before_ms, pending_ttl_ms, limit))
            .await
    }

    async fn save_media(&self, media: NewMedia, now_ms: i64) -> StoreResult<MediaSaved> {
        let (size, limit) = (media.bytes.len() as u64, self.max_media_bytes);
        if limit == 0 || size > limit {
            return Ok(MediaSaved::TooLarge { size, limit });
        }
        let room = match self.media_budget.reserve(size, || self.free_bytes()) {
            Ok(room) => room,
            Err(reason) => return Ok(MediaSaved::NoRoom { size, reason }),
        };
        // In a task of its own: a caller dropped half-way (a webhook whose
        // client went away while a large file synced) would otherwise
        // leave the written file with no row, unseen by retention until
        // the next start.
        let (writer, dir) = (self.writer.clone(), self.media_dir.clone());
        tokio::spawn(save_media_file(writer, dir, media, now_ms, room))
            .await
            .map_err(|e| StoreError::Unavailable(format!("saving a media file failed: {e}")))?
    }

    async fn get_media(&self, id: &str) -> StoreResult<Option<MediaRecord>> {
        let id = id.to_string();
        self.reader.read(move |conn| media::get(conn, &id)).await
    }

    async fn open_media(&self, id: &str) -> StoreResult<MediaContent> {
        let Some(record) = self.get_media(id).await? else {
            return Ok(MediaContent::Missing);
        };
        match media_files::open(&self.media_dir, &record.id, record.size).await {
            Ok(Some(file)) => Ok(MediaContent::Found(record, Box::new(file))),
            Ok(None) => Ok(MediaContent::Gone(record)),
            // Out of file handles or memory for now: the file is fine, and
            // a retry (told when, 503) gets it; not an operator's to mend.
            Err(e) if media_files::open_failed_for_now(&e) => Err(StoreError::Unavailable(
                format!("cannot open media file {} for now: {e}", record.id),
            )),
            Err(e) => {
                let why = format!("cannot read media file {}: {e}", record.id);
                Ok(MediaContent::Unreadable(record, why))
            }
        }
    }

    async fn record_media_relay_url(
        &self,
        id: &str,
        relay_url: &str,
        relay_base: &str,
    ) -> StoreResult<()> {
        let (id, relay_url, relay_base) = (
            id.to_string(),
            relay_url.to_string(),
            relay_base.to_string(),
        );
        self.writer
            .write(move |conn| media::set_relay_url(conn, &id, &relay_url, &relay_base))
            .await
    }

    async fn record_media_upload_failure(
        &self,
        id: &str,
        relay_base: &str,
        code: &str,
    ) -> StoreResult<u32> {
        let (id, relay_base, code) = (id.to_string(), relay_base.to_string(), code.to_string());
        self.writer
            .write(move |conn| media::add_upload_failure(conn, &id, &relay_base, &code))
            .await
    }

    async fn prune_media(&self, unclaimed_before_ms: i64, batch: u32) -> StoreResult<usize> {
        let (ids, bytes) = self
            .writer
            .write(move |conn| media::prune(conn, unclaimed_before_ms, batch))
            .await?;
        self.media_budget.release(bytes);
        // After the commit: a file is never gone while its row is there.
        // One left by a crash here has no row, and the next start's sweep
        // removes it.
        let (dir, count) = (self.media_dir.clone(), ids.len());
        let _ = tokio::task::spawn_blocking(move || media_files::remove(&dir, &ids)).await;
        Ok(count)
    }

    async fn sweep_media_files(&self) -> StoreResult<MediaSweep> {
        let ids = self.reader.read(media::all_ids).await?;
        let (dir, rows) = (self.media_dir.clone(), ids.clone());
        let (orphans_removed, present) =
            tokio::task::spawn_blocking(move || media_files::sweep(&dir, &rows))
                .await
                .map_err(|e| StoreError::Unavailable(format!("the media sweep failed: {e}")))?
                .map_err(|e| {
                    StoreError::Unavailable(format!("cannot sweep the media folder: {e}"))
                })?;
        let (found, missing): (Vec<String>, Vec<String>) =
            ids.into_iter().partition(|id| present.contains(id));
        let rows_without_file = missing.len();
        self.count_only_files_there(missing, found).await?;
        Ok(MediaSweep {
            orphans_removed,
            rows_without_file,
        })
    }

    async fn save_cursor(&self, scope: &str, name: &str, value: &str) -> StoreResult<()> {
        let (scope, name, value) = (scope.to_string(), name.to_string(), value.to_string());
        self.writer
            .write(move |conn| cursors::write(conn, &scope, &name, &value))
            .await
    }

    async fn sent_ids(
        &self,
        channel: ChannelKind,
        phone_id: &str,
        base: &str,
    ) -> StoreResult<Vec<(String, i64)>> {
        let (phone_id, base) = (phone_id.to_string(), base.to_string());
        self.reader
            .read(move |conn| sent_ids::family(conn, channel.as_str(), &phone_id, &base))
            .await
    }

    async fn load_cursor(&self, scope: &str, name: &str) -> StoreResult<Option<String>> {
        let (scope, name) = (scope.to_string(), name.to_string());
        self.reader
            .read(move |conn| cursors::read(conn, &scope, &name))
            .await
    }

    async fn inbound_ids(
        &self,
        channel: ChannelKind,
        phone_id: &str,
        base: &str,
    ) -> StoreResult<Vec<String>> {
        let (phone_id, base) = (phone_id.to_string(), base.to_string());
        self.reader
            .read(move |conn| inbound::family(conn, channel.as_str(), &phone_id, &base))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Send one message of endpoint `m1` whose receipt names `ids`, its
    /// attempt beginning at `at_ms`.
    async fn sent_with_ids(store: &SqliteStore, text: &str, at_ms: i64, ids: &[&str]) {
        let new = crate::store::testing::queued_sms(text, at_ms);
        let AcceptOutcome::Created { id } = store.accept_outbound(new).await.unwrap() else {
            panic!("not created");
        };
        let claimed = store
            .claim_outbound(ClaimRequest {
                channel: ChannelKind::Sms,
                phone_id: "m1".into(),
                limit: 10,
                now_ms: at_ms,
                lease_ms: 60_000,
                skip_recipients: Vec::new(),
            })
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        let receipt = phonerelay_channel::SendReceipt {
            external_ids: ids.iter().map(|s| s.to_string()).collect(),
            thread_keys: Vec::new(),
        };
        store
            .record_outcome(&id, crate::store::sent(receipt, at_ms + 500))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn sent_ids_are_a_base_and_its_numbered_ids_with_their_attempts_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        let base = "mr:42:15551230001:20000";
        sent_with_ids(&store, "a", 1_000_000, &[base]).await;
        sent_with_ids(&store, "b", 2_000_000, &[&format!("{base}:2")]).await;
        // Neighbours in the key order that are not of the family.
        sent_with_ids(&store, "c", 3_000_000, &["mr:42:15551230001:200001"]).await;
        sent_with_ids(&store, "d", 4_000_000, &["mr:42:15551230001:2000"]).await;
        let mut family = store.sent_ids(ChannelKind::Sms, "m1", base).await.unwrap();
        family.sort();
        assert_eq!(
            family,
            [
                (base.to_string(), 1_000_000),
                (format!("{base}:2"), 2_000_000)
            ]
        );
        assert!(
            store
                .sent_ids(ChannelKind::Sms, "m2", base)
                .await
                .unwrap()
                .is_empty(),
            "another endpoint's ids are its own"
        );
    }

    /// A file that cannot be opened (a link that loops: root reads any
    /// file whatever its mode) is the file's failure, not the store's.
    #[tokio::test]
    async fn a_media_file_that_cannot_be_opened_is_unreadable_not_a_store_failure() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        let new = NewMedia {
            channel: ChannelKind::Wa,
            phone_id: "m1".into(),
            content_type: None,
            filename: None,
            bytes: b"picture".to_vec(),
        };
        let MediaSaved::Saved(record) = store.save_media(new, 1_000).await.unwrap() else {
            panic!("not saved");
        };
        let file = media_files::path_of(&store.media_dir, &record.id).unwrap();
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(&file, &file).unwrap();
        match store.open_media(&record.id).await {
            Ok(MediaContent::Unreadable(found, why)) => {
                assert_eq!(found.id, record.id);
                assert!(why.contains(&record.id), "{why}");
            }
            Ok(_) => panic!("opened"),
            Err(e) => panic!("a store failure: {e}"),
        }
    }

    #[tokio::test]
    async fn an_empty_cursor_value_removes_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let store = SqliteStore::open(&path).unwrap();
        store
            .save_cursor("sms:m1", "sms-parts:a", "0 17 x")
            .await
            .unwrap();
        store.save_cursor("sms:m1", "other", "7").await.unwrap();
        let load = |name: &'static str| store.load_cursor("sms:m1", name);
        assert_eq!(
            load("sms-parts:a").await.unwrap().as_deref(),
            Some("0 17 x")
        );
        store
            .save_cursor("sms:m1", "sms-parts:a", "")
            .await
            .unwrap();
        assert_eq!(load("sms-parts:a").await.unwrap(), None);
        assert_eq!(load("other").await.unwrap().as_deref(), Some("7"));
        let rows: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM cursors", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 1, "the row is gone, not left empty");
    }

    /// Phone numbers and message texts: the store's folder and every file
    /// SQLite keeps are the daemon user's alone, whatever the umask (this
    /// test process's is usually 022).
    #[tokio::test]
    async fn a_new_store_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let path = state.join("db.sqlite3");
        let store = SqliteStore::open(&path).unwrap();
        store
            .accept_outbound(crate::store::testing::queued_sms("private", 1))
            .await
            .unwrap();
        assert_eq!(mode(&state), 0o700);
        for file in ["db.sqlite3", "db.sqlite3-wal", "db.sqlite3-shm"] {
            assert_eq!(mode(&state.join(file)), 0o600, "{file}");
        }
    }

    /// A message's row, parts and events are read in one snapshot: a send's
    /// outcome committed by another connection while the read runs (here
    /// as its first statement runs) shows in none of them. Read as
    /// separate statements, the row said `sending`, the events `sent`,
    /// and the history went on to a second `sending` after the `sent`.
    #[tokio::test]
    async fn a_message_is_read_in_one_snapshot_though_its_send_ends_during_the_read() {
        use std::sync::{Arc, Mutex};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let store = SqliteStore::open(&path).unwrap();
        let new = crate::store::testing::queued_sms("a", 1);
        let AcceptOutcome::Created { id } = store.accept_outbound(new).await.unwrap() else {
            panic!("not created");
        };
        let claim = ClaimRequest {
            channel: ChannelKind::Sms,
            phone_id: "m1".into(),
            limit: 1,
            now_ms: 10,
            lease_ms: 60_000,
            skip_recipients: Vec::new(),
        };
        assert_eq!(store.claim_outbound(claim).await.unwrap().len(), 1);

        // The dispatcher's commit of the outcome, made once, from inside
        // the read; its result is kept to check after the read (a panic
        // in the handler would be lost in SQLite).
        let dispatcher = Connection::open(&path).unwrap();
        schema::configure(&dispatcher).unwrap();
        let outcome = vec![(
            id.clone(),
            SendOutcome::Sent {
                receipt: phonerelay_channel::SendReceipt::single("ext-1".to_string()),
                now_ms: 20,
            },
        )];
        let committed = Arc::new(Mutex::new(None));
        let mut commit_outcome = {
            let committed = committed.clone();
            Some(move || {
                let mut dispatcher = dispatcher;
                let result = dispatcher
                    .transaction()
                    .map_err(StoreError::from)
                    .and_then(|tx| {
                        outbound::record_outcomes(&tx, &outcome)?;
                        Ok(tx.commit()?)
                    });
                *committed.lock().unwrap() = Some(result);
            })
        };
        let message = id.clone();
        let read = store
            .reader
            .read(move |conn| {
                conn.progress_handler(
                    1,
                    Some(move || {
                        if let Some(commit) = commit_outcome.take() {
                            commit();
                        }
                        false
                    }),
                );
                let read = outbound::get(conn, &message);
                conn.progress_handler(0, None::<fn() -> bool>);
                read
            })
            .await
            .unwrap()
            .unwrap();
        let commit_result = committed.lock().unwrap().take();
        assert!(
            matches!(commit_result, Some(Ok(()))),
            "the outcome was committed during the read: {commit_result:?}"
        );

        let statuses = |detail: &OutboundDetail| -> Vec<(OutboundStatus, i64)> {
            detail.history.iter().map(|e| (e.status, e.at_ms)).collect()
        };
        use OutboundStatus::{Queued, Sending, Sent};
        assert_eq!(
            read.record.status, Sending,
            "the read began before the outcome"
        );
        assert_eq!(statuses(&read), [(Queued, 1), (Sending, 10)]);
        assert!(read.record.external_ids.is_empty());
        let after = store.get_outbound(&id).await.unwrap().unwrap();
        assert_eq!(after.record.status, Sent);
        assert_eq!(statuses(&after), [(Queued, 1), (Sending, 10), (Sent, 20)]);
    }

    /// A read that holds back checkpoints lets the WAL grow past the
    /// limit; once it ends, the next checkpoint and write cut the file
    /// back instead of keeping it at its largest.
    #[tokio::test]
    async fn the_wal_shrinks_back_after_a_long_read_let_it_grow() {
        use crate::store::testing::queued_sms;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let wal = dir.path().join("db.sqlite3-wal");
        let store = SqliteStore::open(&path).unwrap();
        store.accept_outbound(queued_sms("first", 1)).await.unwrap();
        let mut long_read = Connection::open(&path).unwrap();
        let snapshot = long_read.transaction().unwrap();
        let _: i64 = snapshot
            .query_row("SELECT COUNT(*) FROM outbound", [], |row| row.get(0))
            .unwrap();
        let big = "x".repeat(1024 * 1024);
        let limit = schema::WAL_SIZE_LIMIT_BYTES as u64;
        while std::fs::metadata(&wal).unwrap().len() <= limit + (4 << 20) {
            store.accept_outbound(queued_sms(&big, 2)).await.unwrap();
        }
        drop(snapshot);
        // Enough for an auto-checkpoint to run with no reader in its way,
        // and for a write after it to restart the WAL.
        for _ in 0..8 {
            store.accept_outbound(queued_sms(&big, 3)).await.unwrap();
        }
        let size = std::fs::metadata(&wal).unwrap().len();
        assert!(size <= limit, "WAL still {size} bytes, over {limit}");
    }
}
