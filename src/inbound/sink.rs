use std::sync::Arc;

use async_trait::async_trait;
use std::collections::BTreeMap;

use phonerelay_channel::{
    Attachment, ChannelEvent, ChannelKind, CursorWrite, EventSink, InboundMessage,
    MAX_META_ENTRIES, MAX_META_VALUE_CHARS, MediaUpload, SinkError, UnreadableInbound,
};
use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::media::{clean_content_type, clean_filename, media_path};
use crate::metrics::{Metrics, labels};
use crate::store::{MediaRefusal, MediaSaved, NewMedia, Store};

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

/// `meta` as the contract allows it (`InboundMessage::meta`): names of
/// `[a-z0-9_]`, at most 64 long, the first `MAX_META_ENTRIES` of them,
/// values cut to `MAX_META_VALUE_CHARS`. What breaks that is dropped, never
/// the message: an adapter's slip costs a detail, not a reply.
fn tidy_meta(meta: BTreeMap<String, String>) -> BTreeMap<String, String> {
    let given = meta.len();
    let kept: BTreeMap<String, String> = meta
        .into_iter()
        .filter(|(name, _)| {
            (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
        .take(MAX_META_ENTRIES)
        .map(|(name, value)| (name, value.chars().take(MAX_META_VALUE_CHARS).collect()))
        .collect();
    if kept.len() < given {
        tracing::debug!(
            dropped = given - kept.len(),
            "inbound meta entries with a bad name, or past the limit, dropped"
        );
    }
    kept
}

/// Any store failure: the event may commit later (a read-only remount, an
/// I/O error the store calls permanent may pass, a repaired disk), and an
/// adapter that moves past a `Rejected` event loses it. Only the sink's own
/// checks of what the adapter hands it reject (an event that breaks the
/// contract, a status for another endpoint, a file over the size limit).
fn sink_error(e: crate::store::StoreError) -> SinkError {
    SinkError::unavailable(e.to_string())
}

impl StoreSink {
    /// An inbound message this sink can commit: its endpoint's own, with an
    /// id. One without an id would be taken for a repeat of the next one
    /// without; one naming another endpoint would be routed as that one's.
    fn check(&self, message: &InboundMessage) -> Result<(), SinkError> {
        if message.external_id.trim().is_empty() {
            return Err(SinkError::rejected(
                "an inbound message needs an external_id (the adapter sent none)",
            ));
        }
        if message.channel != self.channel || message.phone_id != self.phone_id {
            return Err(SinkError::rejected(format!(
                "an inbound message of {}/{} handed to the sink of {}/{}",
                message.channel, message.phone_id, self.channel, self.phone_id
            )));
        }
        // The contract: an attachment is a file the bridge keeps
        // (`save_media`'s path). An upstream's URL may carry a secret (a
        // Telegram bot token), which would be stored, listed by the API and
        // sent to the relay in clear. Not echoed, for that reason.
        if let Some(i) = message
            .attachments
            .iter()
            .position(|a| crate::media::media_id_of(&a.url).is_none())
        {
            return Err(SinkError::rejected(format!(
                "inbound attachment {i} is not a file the bridge keeps (the path save_media \
                 gives): an upstream's URL is never stored"
            )));
        }
        Ok(())
    }
}

impl StoreSink {
    /// Commit `message` with `cursors`, in one store transaction; a repeat
    /// is not stored again, but its cursors are written.
    async fn commit(
        &self,
        mut message: InboundMessage,
        cursors: &[CursorWrite],
    ) -> Result<(), SinkError> {
        self.check(&message)?;
        message.meta = tidy_meta(std::mem::take(&mut message.meta));
        let channel = message.channel;
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let bell = self.inbound_bell.clone();
        let scope = self.cursor_scope();
        let cursors = cursors.to_vec();
        // Finished on a task of its own if the caller goes away once the
        // write is queued (a webhook's upstream hung up): the message is
        // committed all the same, and then it is counted and the forwarder
        // rung too. Run inline otherwise, as a send's commit is.
        let committed = crate::finish_on_drop::finish_on_drop(async move {
            let commit = store
                .commit_inbound_with_cursors(
                    message,
                    // An event time: reply routing compares it with sends'.
                    crate::clock::event_ms(),
                    &scope,
                    cursors,
                )
                .await
                .map_err(sink_error)?;
            if commit.duplicate {
                tracing::debug!(id = %commit.id, "inbound message seen before; not stored again");
            } else {
                metrics
                    .inbound
                    .get_or_create(&labels(&[("channel", channel.as_str())]))
                    .inc();
                if let Some(bell) = &bell {
                    bell.notify_one();
                }
            }
            Ok(())
        });
        committed.await.map_err(|panic| {
            SinkError::unavailable(format!("the inbound commit panicked: {panic}"))
        })?
    }
}

impl StoreSink {
    /// Keep what the adapter could not read; the same bytes again are not
    /// kept twice. Another endpoint's would be listed as that one's.
    async fn commit_unreadable(&self, item: UnreadableInbound) -> Result<(), SinkError> {
        if item.channel != self.channel || item.phone_id != self.phone_id {
            return Err(SinkError::rejected(format!(
                "an unreadable inbound item of {}/{} handed to the sink of {}/{}",
                item.channel, item.phone_id, self.channel, self.phone_id
            )));
        }
        let commit = self
            .store
            .commit_unreadable(item, now_ms())
            .await
            .map_err(sink_error)?;
        if commit.duplicate {
            tracing::debug!(id = %commit.id, "unreadable inbound item kept before; not kept again");
        }
        Ok(())
    }
}

#[async_trait]
impl EventSink for StoreSink {
    async fn deliver(&self, event: ChannelEvent) -> Result<(), SinkError> {
        match event {
            ChannelEvent::Inbound(message) => self.commit(message, &[]).await?,
            ChannelEvent::Unreadable(item) => self.commit_unreadable(item).await?,
            ChannelEvent::Status(update) => {
                // Another endpoint's report would be filed under its
                // ids: applied to that endpoint's message of the same id,
                // or kept early for one that never comes.
                if update.channel != self.channel || update.phone_id != self.phone_id {
                    return Err(SinkError::rejected(format!(
                        "a status report of {}/{} handed to the sink of {}/{}",
                        update.channel, update.phone_id, self.channel, self.phone_id
                    )));
                }
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

    async fn deliver_inbound_with_cursors(
        &self,
        message: InboundMessage,
        cursors: &[CursorWrite],
    ) -> Result<(), SinkError> {
        self.commit(message, cursors).await
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

    async fn inbound_ids(&self, base: &str) -> Result<Vec<String>, SinkError> {
        self.store
            .inbound_ids(self.channel, &self.phone_id, base)
            .await
            .map_err(sink_error)
    }

    async fn save_media(&self, media: MediaUpload) -> Result<Attachment, SinkError> {
        let new = NewMedia {
            channel: self.channel,
            phone_id: self.phone_id.clone(),
            // What the upstream said, made safe to serve as headers.
            content_type: clean_content_type(media.content_type),
            filename: clean_filename(media.filename),
            bytes: media.bytes,
        };
        let saved = self
            .store
            .save_media(new, now_ms())
            .await
            .map_err(sink_error)?;
        let (reason, why) = match saved {
            MediaSaved::Saved(record) => {
                return Ok(Attachment {
                    url: media_path(&record.id),
                    content_type: record.content_type,
                    filename: record.filename,
                    size: Some(record.size),
                });
            }
            MediaSaved::TooLarge { limit: 0, .. } => (
                TOO_LARGE,
                "this bridge keeps no files (storage.max_media_bytes = 0)".to_string(),
            ),
            MediaSaved::TooLarge { size, limit } => (
                TOO_LARGE,
                format!("the file is {size} bytes, over storage.max_media_bytes ({limit})"),
            ),
            MediaSaved::NoRoom { size, reason } => (reason.as_str(), no_room(size, reason)),
        };
        self.metrics
            .media_refused
            .get_or_create(&labels(&[("reason", reason)]))
            .inc();
        log_refusal(self.channel, &self.phone_id, reason, &why);
        Err(SinkError::rejected(why))
    }
}

/// The `reason` of `phonerelay_media_refused` for a file over
/// `storage.max_media_bytes`.
const TOO_LARGE: &str = "too_large";

/// How often a refused file is logged at most: a chat that sends a photo
/// a second while the disk is low makes one line per period, not one per
/// photo (the metric counts each).
const MEDIA_REFUSED_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

fn no_room(size: u64, reason: MediaRefusal) -> String {
    match reason {
        MediaRefusal::TotalCap => format!(
            "no room for the file ({size} bytes): the kept files would pass \
             storage.max_media_total_bytes"
        ),
        MediaRefusal::LowDisk => format!(
            "no room for the file ({size} bytes): it would leave less than \
             storage.media_min_free_bytes free for the store"
        ),
    }
}

/// One line per [`MEDIA_REFUSED_LOG_EVERY`], with how many were refused
/// meanwhile. One process is one daemon, so the throttle is the
/// process's.
fn log_refusal(channel: ChannelKind, phone_id: &str, reason: &str, why: &str) {
    static THROTTLE: crate::logging::SharedThrottle =
        crate::logging::SharedThrottle::new(MEDIA_REFUSED_LOG_EVERY);
    if let Some(unlogged) = THROTTLE.allow() {
        tracing::warn!(%channel, phone_id, reason, refused_since_last_logged = unlogged,
            "a received file is not kept; its message goes on without it: {why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn inbound(phone_id: &str, external_id: &str, text: &str) -> ChannelEvent {
        ChannelEvent::Inbound(InboundMessage {
            channel: ChannelKind::Sms,
            phone_id: phone_id.into(),
            from: "+15551230001".into(),
            text: text.into(),
            subject: None,
            attachments: Vec::new(),
            external_id: external_id.into(),
            reply_to: Vec::new(),
            received_at_ms: 1,
            meta: Default::default(),
        })
    }

    /// The daemon's sink of endpoint `sms/m1` over a new store file: the
    /// directory (kept while the test runs), the file, the store, the sink.
    fn sink_of_m1() -> (
        tempfile::TempDir,
        std::path::PathBuf,
        Arc<dyn Store>,
        StoreSink,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
        let sink = StoreSink::new(
            store.clone(),
            Arc::new(Metrics::default()),
            ChannelKind::Sms,
            "m1".into(),
        );
        (dir, path, store, sink)
    }

    /// A message without an id would be stored once and every later one
    /// without an id taken for its repeat; one of another endpoint would be
    /// routed as that one's, and a status report of another endpoint filed
    /// under its ids. All are refused for good, nothing stored.
    #[tokio::test]
    async fn the_sink_refuses_a_message_without_an_id_or_of_another_endpoint() {
        let (_dir, _path, store, sink) = sink_of_m1();
        for refused in [inbound("m1", "", "no id"), inbound("m2", "x-1", "not ours")] {
            let e = sink.deliver(refused).await.unwrap_err();
            assert!(!e.is_transient(), "{e}");
        }
        sink.deliver(inbound("m1", "x-2", "fine")).await.unwrap();
        let report = |phone_id: &str| {
            ChannelEvent::Status(phonerelay_channel::StatusUpdate {
                channel: ChannelKind::Sms,
                phone_id: phone_id.into(),
                external_id: "mr-1".into(),
                status: phonerelay_channel::DeliveryStatus::Delivered,
                code: None,
                reason: None,
                at_ms: 1,
            })
        };
        let e = sink.deliver(report("m2")).await.unwrap_err();
        assert!(!e.is_transient(), "{e}");
        sink.deliver(report("m1")).await.unwrap();
        let all = crate::store::InboundFilter {
            limit: 10,
            ..Default::default()
        };
        let stored = store.list_inbound(all).await.unwrap();
        let texts: Vec<&str> = stored.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["fine"]);
    }

    /// An attachment that is not a file the bridge keeps (an upstream's
    /// URL, which may carry a token) is refused for good, nothing stored.
    #[tokio::test]
    async fn the_sink_refuses_an_attachment_that_is_not_a_kept_file() {
        let (_dir, _path, store, sink) = sink_of_m1();
        let with = |url: &str| {
            let ChannelEvent::Inbound(mut message) = inbound("m1", "x-1", "see attached") else {
                unreachable!()
            };
            message.attachments.push(phonerelay_channel::Attachment {
                url: url.into(),
                content_type: None,
                filename: None,
                size: None,
            });
            ChannelEvent::Inbound(message)
        };
        let e = sink
            .deliver(with(
                "https://api.telegram.org/file/bot123:S3CRET/photo.jpg",
            ))
            .await
            .unwrap_err();
        assert!(!e.is_transient(), "{e}");
        assert!(!e.to_string().contains("S3CRET"), "{e}");
        let all = crate::store::InboundFilter {
            limit: 10,
            ..Default::default()
        };
        assert!(store.list_inbound(all).await.unwrap().is_empty());
    }

    /// A caller that goes away once the commit is under way (a webhook's
    /// upstream hung up) still has the message committed, counted and the
    /// forwarder rung.
    #[tokio::test]
    async fn a_commit_whose_caller_went_away_is_counted_and_rung() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap());
        let metrics = Arc::new(Metrics::default());
        let bell = Arc::new(Notify::new());
        let sink = StoreSink::new(
            store.clone(),
            metrics.clone(),
            ChannelKind::Sms,
            "m1".into(),
        )
        .with_inbound_bell(bell.clone());
        let mut delivery = Box::pin(sink.deliver(inbound("m1", "x-1", "hung up")));
        let waker = futures_util::task::noop_waker();
        let mut context = std::task::Context::from_waker(&waker);
        assert!(delivery.as_mut().poll(&mut context).is_pending());
        drop(delivery);
        tokio::time::timeout(std::time::Duration::from_secs(10), bell.notified())
            .await
            .expect("the forwarder was not rung");
        let all = crate::store::InboundFilter {
            limit: 10,
            ..Default::default()
        };
        assert_eq!(store.list_inbound(all).await.unwrap().len(), 1);
        let counted = metrics.render();
        assert!(
            counted.contains("phonerelay_inbound_total{channel=\"sms\"} 1"),
            "{counted}"
        );
    }

    /// The daemon's sink writes a message and its cursors in one store
    /// transaction, the cursors under its endpoint: a cursor the store
    /// refuses takes the message with it, and once it can be written, both
    /// are there.
    #[tokio::test]
    async fn the_sink_commits_a_message_and_its_cursors_together() {
        let (_dir, path, store, sink) = sink_of_m1();
        let refuse = "CREATE TRIGGER refuse BEFORE INSERT ON cursors
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;";
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(refuse).unwrap();
        let ChannelEvent::Inbound(message) = inbound("m1", "x-1", "long") else {
            unreachable!()
        };
        let parts = [CursorWrite::new("sms-committed-parts:x", "a,b")];
        let e = sink
            .deliver_inbound_with_cursors(message.clone(), &parts)
            .await
            .unwrap_err();
        assert!(e.is_transient(), "{e}");
        let all = || crate::store::InboundFilter {
            limit: 10,
            ..Default::default()
        };
        assert!(store.list_inbound(all()).await.unwrap().is_empty());

        conn.execute_batch("DROP TRIGGER refuse").unwrap();
        sink.deliver_inbound_with_cursors(message, &parts)
            .await
            .unwrap();
        assert_eq!(store.list_inbound(all()).await.unwrap().len(), 1);
        let kept = store
            .load_cursor("sms/m1", "sms-committed-parts:x")
            .await
            .unwrap();
        assert_eq!(kept.as_deref(), Some("a,b"));
    }

    /// An unreadable item is kept under its endpoint, once however often
    /// it is offered; another endpoint's is refused for good, and a store
    /// that cannot take it says so as a failure that may pass, so that
    /// the adapter keeps its upstream copy.
    #[tokio::test]
    async fn the_sink_keeps_an_unreadable_item_once_and_refuses_another_endpoints() {
        let (_dir, path, store, sink) = sink_of_m1();
        let item = |phone_id: &str| {
            ChannelEvent::Unreadable(UnreadableInbound {
                channel: ChannelKind::Sms,
                phone_id: phone_id.into(),
                raw: vec![0, 4],
                origin: "+CMT".into(),
                reason: "cut short".into(),
                received_at_ms: 1,
            })
        };
        let e = sink.deliver(item("m2")).await.unwrap_err();
        assert!(!e.is_transient(), "{e}");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON inbound_unreadable
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
        )
        .unwrap();
        let e = sink.deliver(item("m1")).await.unwrap_err();
        assert!(e.is_transient(), "{e}");
        conn.execute_batch("DROP TRIGGER refuse").unwrap();
        sink.deliver(item("m1")).await.unwrap();
        sink.deliver(item("m1")).await.unwrap();
        let all = crate::store::InboundFilter {
            limit: 10,
            ..Default::default()
        };
        let kept = store.list_unreadable(all).await.unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            (kept[0].phone_id.as_str(), kept[0].raw.as_slice()),
            ("m1", &[0u8, 4][..])
        );
    }
}
