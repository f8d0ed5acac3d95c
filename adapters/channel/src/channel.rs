use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::{
    ChannelEvent, ChannelHealth, ChannelKind, CursorWrite, HealthState, InboundMessage,
    OutboundMessage, SendError, SendLimits, SendReceipt, SharedWebhookAnswer, WebhookRequest,
    WebhookResponse,
};

/// Where adapters hand what they receive.
///
/// `deliver` returns only once the event is committed to the store, so an
/// adapter acknowledges upstream (deletes from the SIM, flags in IMAP, moves
/// the Telegram offset, answers the webhook with 200) only after `Ok`. That
/// holds for what the adapter cannot read as well
/// ([`crate::ChannelEvent::Unreadable`]): committed as it came, then
/// acknowledged, neither left upstream for ever nor dropped.
#[async_trait]
pub trait EventSink: Send + Sync {
    async fn deliver(&self, event: ChannelEvent) -> Result<(), SinkError>;

    /// Store a cursor (Telegram offset, IMAP UID...) under this endpoint,
    /// durably once `Ok`. An empty `value` removes the cursor. State that
    /// belongs to one outbound message goes under a [`message_cursor`]
    /// name, which the daemon removes once that message has ended.
    async fn save_cursor(&self, name: &str, value: &str) -> Result<(), SinkError>;

    /// Commit `message` and write `cursors` (each as [`Self::save_cursor`]
    /// would) in one transaction: once `Ok`, all of it is durable; after
    /// an `Err`, none of it is, and the message may be offered again. For
    /// the state that says an inbound message was committed (the parts of
    /// a long SMS, so that a part delivered again is known and freed):
    /// written apart, a crash or a failed write between the two leaves the
    /// message committed and that state unsaid. A message seen before
    /// (the same external id) is not stored twice, but its cursors are
    /// written all the same: offering it again is how an adapter retries
    /// after a failed write, and the cursors are what it retries for.
    ///
    /// There is no default: a sink that wrote the two apart would lose
    /// the guarantee without a word. A sink with no transactions (a test's
    /// memory) holds one lock over the whole.
    async fn deliver_inbound_with_cursors(
        &self,
        message: InboundMessage,
        cursors: &[CursorWrite],
    ) -> Result<(), SinkError>;

    async fn load_cursor(&self, name: &str) -> Result<Option<String>, SinkError>;

    /// External ids this endpoint's sent messages carry (from their
    /// receipts) that are `base` itself or `base:` and a suffix, each with
    /// when the attempt that sent it began (ms since the epoch). An adapter
    /// that derives ids from the wire and numbers the ones that collide
    /// (an SMS part's TP-MR wraps every 256 parts) asks after a restart,
    /// when its memory of the ids it gave is gone.
    async fn sent_ids(&self, base: &str) -> Result<Vec<(String, i64)>, SinkError>;

    /// External ids of this endpoint's inbound messages that are `base`
    /// itself or `base#` and a suffix. An adapter whose ids are derived
    /// from content, which two messages can share (two identical SMS from
    /// one sender in the same second), numbers the second one `base#2`
    /// and asks which numbers are taken. The answer and the commit that
    /// follows are two steps: an adapter asks and commits from one task
    /// per endpoint (the SMS driver does), never from concurrent ones (a
    /// webhook's requests), or two identical messages could both take the
    /// same number and the second be kept as a repeat of the first.
    async fn inbound_ids(&self, base: &str) -> Result<Vec<String>, SinkError>;

    /// Keep a file this endpoint received, to go with an inbound message
    /// the adapter delivers next (WhatsApp media, a Telegram photo, an
    /// e-mail attachment). Once `Ok`, the bytes are durable, and the
    /// returned [`crate::Attachment`] names them: its `url` is the path
    /// `/api/v1/media/{id}` on the bridge's own API (never the upstream's
    /// URL, which may carry a secret), its `size` is filled, and its
    /// `content_type` and `filename` are those given, if they were usable.
    /// Put it in the [`crate::InboundMessage`]'s `attachments` and deliver
    /// that: the bridge uploads the file to the relay before it forwards
    /// the message. A file is tied to the first message of its own endpoint
    /// that names it, and goes when that message is pruned; a file no
    /// message took is deleted after a day.
    ///
    /// A file over the bridge's size limit (or any file, on a bridge that
    /// keeps none), or one it has no room for (its kept files are at
    /// their total cap, or the disk at the free space the bridge keeps for
    /// its store), is `Rejected`, and nothing is kept: the adapter may
    /// deliver the message without it, with a note in its text. Store
    /// trouble is `Unavailable`: offer the message again later.
    async fn save_media(&self, media: crate::MediaUpload) -> Result<crate::Attachment, SinkError> {
        let _ = media;
        Err(SinkError::rejected("this sink keeps no media"))
    }
}

/// Why the sink did not commit an event or a cursor. Either way nothing
/// upstream may be acknowledged for it (no SIM delete, no offset, no
/// webhook 200); the kind says whether to offer it again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not commit: {message}")]
pub struct SinkError {
    pub message: String,
    pub kind: SinkErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkErrorKind {
    /// The store cannot take it now (a full disk, an I/O error, the daemon
    /// stopping): the same event may commit later. Keep it upstream and
    /// offer it again.
    Unavailable,
    /// This event will never commit as it is (no external id, another
    /// endpoint's): an adapter that can only move past it (a Telegram
    /// update offset) logs it and does, rather than stall for ever.
    Rejected,
}

impl SinkError {
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: SinkErrorKind::Unavailable,
        }
    }

    pub fn rejected(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: SinkErrorKind::Rejected,
        }
    }

    /// Worth offering the same event again later.
    pub fn is_transient(&self) -> bool {
        self.kind == SinkErrorKind::Unavailable
    }
}

/// What every [`message_cursor`] name starts with.
pub const MESSAGE_CURSOR_PREFIX: &str = "message/";

/// The cursor name for `topic` state of outbound message `message_id`
/// while it is being sent (a long SMS's accepted parts). The daemon deletes
/// every such cursor once its message has ended or is gone, however that
/// happened: with the send's outcome, in the transaction that records it
/// (so a restart before that record still finds the state), or later for a
/// message that expired or was cancelled while it waited for a retry,
/// which no adapter sees. An adapter keeps its state until then.
pub fn message_cursor(message_id: &str, topic: &str) -> String {
    format!("{MESSAGE_CURSOR_PREFIX}{message_id}/{topic}")
}

/// The message a [`message_cursor`] name belongs to; `None` for any other
/// cursor.
pub fn message_of_cursor(name: &str) -> Option<&str> {
    let (id, _topic) = name.strip_prefix(MESSAGE_CURSOR_PREFIX)?.split_once('/')?;
    Some(id).filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that implements only what it must, as the SMS adapter's
    /// test sinks do.
    struct NoMediaSink;

    #[async_trait]
    impl EventSink for NoMediaSink {
        async fn deliver(&self, _event: ChannelEvent) -> Result<(), SinkError> {
            Ok(())
        }
        async fn save_cursor(&self, _name: &str, _value: &str) -> Result<(), SinkError> {
            Ok(())
        }
        async fn deliver_inbound_with_cursors(
            &self,
            _message: InboundMessage,
            _cursors: &[CursorWrite],
        ) -> Result<(), SinkError> {
            Ok(())
        }
        async fn load_cursor(&self, _name: &str) -> Result<Option<String>, SinkError> {
            Ok(None)
        }
        async fn sent_ids(&self, _base: &str) -> Result<Vec<(String, i64)>, SinkError> {
            Ok(Vec::new())
        }
        async fn inbound_ids(&self, _base: &str) -> Result<Vec<String>, SinkError> {
            Ok(Vec::new())
        }
    }

    /// Without a store for files, a sink refuses every one for good: the
    /// adapter delivers the message without it instead of waiting.
    #[test]
    fn a_sink_that_keeps_no_media_refuses_a_file_for_good() {
        let media = crate::MediaUpload {
            content_type: None,
            filename: None,
            bytes: vec![1, 2, 3],
        };
        let refused = ready_now(NoMediaSink.save_media(media)).unwrap_err();
        assert_eq!(refused.kind, SinkErrorKind::Rejected);
        assert!(!refused.is_transient());
    }

    /// Run a future that never waits (the default `save_media` does not)
    /// without a runtime: this crate has none.
    fn ready_now<F: std::future::Future>(future: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        let mut future = std::pin::pin!(future);
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => panic!("the default save_media waited"),
        }
    }

    #[test]
    fn a_message_cursor_names_its_message_and_no_other_cursor_does() {
        let name = message_cursor("0194f0c2-7a4e-7000-8000-000000000001", "sms-parts");
        assert_eq!(
            message_of_cursor(&name),
            Some("0194f0c2-7a4e-7000-8000-000000000001")
        );
        for other in [
            "offset",
            "uid:INBOX",
            "message/",
            "message//x",
            "sms-parts:abc",
        ] {
            assert_eq!(message_of_cursor(other), None, "{other}");
        }
    }
}

/// What the daemon gives an adapter's receive loop.
#[derive(Clone)]
pub struct ChannelContext {
    pub sink: Arc<dyn EventSink>,
    /// Fetches an outbound attachment's bytes (see
    /// [`crate::AttachmentFetcher`]). An adapter never fetches a URL it was
    /// given itself: it keeps this from `attach` and asks it, for it
    /// refuses addresses that are not public and caps size and time.
    pub fetcher: Arc<dyn crate::AttachmentFetcher>,
    /// Fires once on shutdown; every loop selects on it.
    pub shutdown: CancellationToken,
}

/// One endpoint of one channel: a modem, a WhatsApp number, a bot, a mailbox.
///
/// The daemon keeps one worker set per endpoint, keyed by
/// `(kind(), phone_id())`.
#[async_trait]
pub trait Channel: Send + Sync {
    fn kind(&self) -> ChannelKind;

    /// The `phone_id` that routes sends to this endpoint.
    fn phone_id(&self) -> &str;

    /// Called once, before the first `send` and before `run`, with the
    /// context `run` then gets. An adapter whose sends need the sink keeps
    /// it here: the parts of a message already sent (kept under a
    /// [`message_cursor`] so a retry sends only the rest), a WhatsApp
    /// window's state; one whose sends carry files keeps the
    /// [`ChannelContext::fetcher`]. The default keeps nothing.
    fn attach(&self, _ctx: &ChannelContext) {}

    /// Send one message. Called by the outbox dispatcher with a claimed
    /// message; may be called concurrently up to the configured concurrency.
    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, SendError>;

    /// Receive loop: connect, listen, hand events to `ctx.sink`, reconnect on
    /// failure. Returns when `ctx.shutdown` fires. Adapters with nothing to
    /// receive may return at once after the token fires.
    async fn run(&self, ctx: ChannelContext);

    /// The current health of the endpoint, cheap to call.
    fn health(&self) -> ChannelHealth;

    /// Whether the dispatcher may hand this endpoint sends now. While it is
    /// false the endpoint's queue waits: nothing is claimed, and no
    /// attempt is spent (see [`crate::ErrorClass::Unavailable`]). Called
    /// before every claim, so an adapter with a costly `health` overrides
    /// it with something cheaper that agrees with it.
    fn can_send(&self) -> bool {
        self.health().state != HealthState::Down
    }

    /// What one send may carry on this endpoint (text length, files),
    /// checked when the API accepts it: a send over a limit is refused
    /// there (422 naming `text` or `attachments`) and nothing is stored.
    /// Pure and cheap: it runs on every accept. The default is the
    /// channel kind's ([`SendLimits::of`]); an adapter whose upstream or
    /// config allows less returns its own.
    fn send_limits(&self) -> SendLimits {
        SendLimits::of(self.kind())
    }

    /// Whether this endpoint can send to `to`, beyond the channel kind's
    /// syntax ([`crate::validate_address`], checked first): `Err` says
    /// why not, and the API refuses the request (422, field `to`) before
    /// anything is stored. For what one service of a kind takes and
    /// another does not (an ntfy topic has no `.`, a Gotify server has no
    /// topics at all). Pure and cheap: it runs on every accept. The
    /// default takes every address of the kind's syntax.
    fn check_recipient(&self, _to: &str) -> Result<(), String> {
        Ok(())
    }

    /// Whether this endpoint can send `text` in one message, beyond its
    /// length limit ([`Self::send_limits`], checked first): `Err` says
    /// why not, and the API refuses the request (422, field `text`)
    /// before anything is stored. For what a length does not tell (the
    /// SMS parts a text takes depend on its alphabet). Pure and cheap: it
    /// runs on every accept. The default takes every text within the
    /// limit.
    fn check_text(&self, _text: &str) -> Result<(), String> {
        Ok(())
    }

    /// How many sends the outbox keeps in flight on this endpoint when the
    /// config's `[outbox.limits]` says nothing of it; `None`: the outbox's
    /// own default. An upstream that does one thing at a time (a modem on
    /// its serial port) says 1: more sends in flight would only wait in
    /// the adapter, their send timeouts running.
    fn default_concurrency(&self) -> Option<u32> {
        None
    }

    /// Whether this channel can send with `options` (a send request's
    /// channel-specific object, [`crate::OutboundMessage::options`]): `Err`
    /// says what is wrong, and the API refuses the request (422, field
    /// `options`) before anything is stored. Pure and cheap: it runs on
    /// every accept that carries options. A channel that takes none keeps
    /// this default.
    fn check_options(&self, _options: &serde_json::Value) -> Result<(), String> {
        Err(format!("the {} channel takes no options", self.kind()))
    }

    /// Webhook sub-paths this endpoint serves under
    /// `/webhooks/{channel}/{phone_id}/`. Empty for polling channels.
    fn webhook_paths(&self) -> Vec<String> {
        Vec::new()
    }

    /// Handle a webhook request (signature check, parse, commit through
    /// the sink, then answer). Called only for paths in `webhook_paths`.
    async fn handle_webhook(
        &self,
        _request: WebhookRequest,
        _sink: Arc<dyn EventSink>,
    ) -> WebhookResponse {
        WebhookResponse::text(404, "no webhook on this channel")
    }

    /// Whether this endpoint takes part in its channel's shared webhook,
    /// `/webhooks/{channel}`: one callback URL for several endpoints, as a
    /// WhatsApp app has one for all of its numbers, each event naming the
    /// number it is for.
    fn shares_channel_webhook(&self) -> bool {
        false
    }

    /// A request to the channel's shared webhook. The daemon asks every
    /// endpoint of the channel that shares it, in phone_id order, each with
    /// its own sink. An endpoint checks the request as its own webhook
    /// would (a signature it cannot verify is [`SharedWebhookAnswer::NotMine`],
    /// for another endpoint may hold that key), commits only the events
    /// that are its own and answers; one request may hold events for
    /// several endpoints. The upstream hears the first answer that is not
    /// a success if there is one (so it sends the request again: what was
    /// committed is kept once, by external id), else the first answer;
    /// 403 if no endpoint took the request.
    async fn handle_shared_webhook(
        &self,
        _request: WebhookRequest,
        _sink: Arc<dyn EventSink>,
    ) -> SharedWebhookAnswer {
        SharedWebhookAnswer::NotMine
    }
}
