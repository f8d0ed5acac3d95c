use serde::{Deserialize, Serialize};

use crate::ChannelKind;

/// A file carried with a message. The relay hosts uploads, so a message refers
/// to them by URL; adapters that must upload bytes (email) fetch the URL.
/// A received file is kept by the bridge ([`crate::EventSink::save_media`]):
/// an inbound message refers to it by the bridge's path
/// `/api/v1/media/{id}`, which the relay link replaces with the relay's URL
/// once it has uploaded the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// A file an adapter received, handed to [`crate::EventSink::save_media`]
/// so the bridge keeps it and passes it on to the relay itself: its
/// upstream's URL may carry a secret (a Telegram bot token), need one to
/// be fetched (WhatsApp media), or not exist at all (an e-mail part).
#[derive(Clone, PartialEq, Eq)]
pub struct MediaUpload {
    /// The MIME type the upstream gave, if any (`image/jpeg`).
    pub content_type: Option<String>,
    /// The file's name as the sender gave it, if any.
    pub filename: Option<String>,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for MediaUpload {
    // Megabytes of file content in a log line help no one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaUpload")
            .field("content_type", &self.content_type)
            .field("filename", &self.filename)
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .finish()
    }
}

/// One message the outbox asks an adapter to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    /// The daemon's id for the message; stable across retries, so an adapter
    /// whose upstream accepts a client reference can use it to suppress
    /// duplicates.
    pub id: String,
    pub channel: ChannelKind,
    pub phone_id: String,
    /// Channel address: E.164 for sms/wa, chat id for tg, e-mail address, topic.
    pub to: String,
    pub text: String,
    pub subject: Option<String>,
    /// The pChat address of the sender (`alice`), when the relay gave one:
    /// for what the channel shows of them (an e-mail's From name, a
    /// "alice:" prefix). Replies find their way back through the core's
    /// reply routing, not through this.
    pub source: Option<String>,
    pub attachments: Vec<Attachment>,
    /// External message id this one answers (quote/thread on the channel).
    pub reply_to_external_id: Option<String>,
    /// What only this channel knows how to send, from the request's
    /// `options` (a JSON object): a WhatsApp template, an e-mail's HTML
    /// body, an ntfy priority. The channel checked it at accept
    /// ([`crate::Channel::check_options`]); `None` when none was given.
    pub options: Option<serde_json::Value>,
    /// 1 on the first try.
    pub attempt: u32,
}

/// What an adapter returns when the upstream accepted the message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SendReceipt {
    /// Ids the upstream gave the message, one per part (an SMS split in three
    /// parts has three message references). Status updates name these.
    pub external_ids: Vec<String>,
    /// Thread keys a reply may carry (e-mail Message-ID...). Reply routing
    /// records them next to the external ids.
    pub thread_keys: Vec<String>,
}

impl SendReceipt {
    pub fn single(external_id: impl Into<String>) -> Self {
        Self {
            external_ids: vec![external_id.into()],
            thread_keys: Vec::new(),
        }
    }
}

/// A message received on a channel, to be committed and routed to pChat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMessage {
    pub channel: ChannelKind,
    pub phone_id: String,
    /// The external sender (E.164, chat id, e-mail address).
    pub from: String,
    pub text: String,
    pub subject: Option<String>,
    pub attachments: Vec<Attachment>,
    /// The upstream's id for this message. With `channel` and `phone_id` it is
    /// the deduplication key: the same id committed twice is stored once
    /// while the first is kept (`storage.retention_days`). So
    /// it must be unique within the endpoint for good (a WhatsApp message
    /// id; for Telegram the chat and the message id, which alone is unique
    /// per chat only; for IMAP the UIDVALIDITY and the UID, or the
    /// Message-ID), and never empty: the sink refuses a message without.
    pub external_id: String,
    /// Keys that tie this message to an earlier outbound one, most exact first:
    /// WhatsApp `context.message_id`, Telegram `reply_to_message`, e-mail
    /// `In-Reply-To` then `References`.
    pub reply_to: Vec<String>,
    /// When the upstream says it was sent/received, in Unix milliseconds.
    pub received_at_ms: i64,
    /// What the channel knows of the sender and the chat beyond `from`,
    /// under these names: `sender_name` (the name the person shows: a
    /// WhatsApp profile, an e-mail's display name), `sender_id` (who spoke
    /// in a group chat, where `from` is the chat, the reply's target) and
    /// `chat_title`. Kept with the message and passed to the relay as
    /// `origin.meta`. Names are lower-case `[a-z0-9_]` of at most 64
    /// characters, at most [`MAX_META_ENTRIES`] of them, values at most [`MAX_META_VALUE_CHARS`]
    /// characters: the sink drops what breaks that, never the message.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub meta: std::collections::BTreeMap<String, String>,
}

/// Most entries in an [`InboundMessage::meta`].
pub const MAX_META_ENTRIES: usize = 16;
/// Longest value in an [`InboundMessage::meta`], in characters.
pub const MAX_META_VALUE_CHARS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Delivered,
    Read,
    Failed,
}

/// A delivery report or read receipt for something we sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub channel: ChannelKind,
    pub phone_id: String,
    /// One of the ids returned in [`SendReceipt::external_ids`].
    pub external_id: String,
    pub status: DeliveryStatus,
    /// Machine code and human reason, for failures.
    pub code: Option<String>,
    pub reason: Option<String>,
    pub at_ms: i64,
}

/// Something received that the adapter cannot read (an SMS PDU its codec
/// cannot decode, an e-mail it cannot parse): kept by the bridge as it
/// came, for a human to look at, since dropping it would lose whatever it
/// was. Committed like a message, before the upstream is acknowledged (the
/// SIM slot freed, the IMAP message flagged). The store keeps one row per
/// endpoint and `raw`: the same bytes offered again (read again after a
/// crash before the acknowledgement) are not stored twice.
#[derive(Clone, PartialEq, Eq)]
pub struct UnreadableInbound {
    pub channel: ChannelKind,
    pub phone_id: String,
    /// What was received, as received: an SMS PDU's octets (SMSC part
    /// first), an e-mail's source.
    pub raw: Vec<u8>,
    /// Where it came from upstream, for the human: a SIM slot (`SM:3`), a
    /// direct delivery (`+CMT`), a mailbox and UID.
    pub origin: String,
    /// Why the adapter could not read it.
    pub reason: String,
    /// When it was received, in Unix milliseconds.
    pub received_at_ms: i64,
}

impl std::fmt::Debug for UnreadableInbound {
    // Its content is a private message, maybe readable after all by a
    // human: never in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnreadableInbound")
            .field("channel", &self.channel)
            .field("phone_id", &self.phone_id)
            .field("raw", &format_args!("<{} bytes>", self.raw.len()))
            .field("origin", &self.origin)
            .field("reason", &self.reason)
            .field("received_at_ms", &self.received_at_ms)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEvent {
    Inbound(InboundMessage),
    Status(StatusUpdate),
    /// See [`UnreadableInbound`].
    Unreadable(UnreadableInbound),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_inbound_shows_its_size_not_its_bytes() {
        let unreadable = UnreadableInbound {
            channel: ChannelKind::Sms,
            phone_id: "m1".into(),
            raw: b"SECRET".to_vec(),
            origin: "SM:3".into(),
            reason: "not an SMS-DELIVER".into(),
            received_at_ms: 1,
        };
        let shown = format!("{unreadable:?}");
        assert!(shown.contains("<6 bytes>"), "{shown}");
        assert!(shown.contains("SM:3"), "{shown}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(!shown.contains("83, 69"), "{shown}");
    }

    #[test]
    fn a_media_upload_shows_its_size_not_its_bytes() {
        let media = MediaUpload {
            content_type: Some("image/png".into()),
            filename: Some("cat.png".into()),
            bytes: b"SECRET-PIXELS".to_vec(),
        };
        let shown = format!("{media:?}");
        assert!(shown.contains("<13 bytes>"), "{shown}");
        assert!(shown.contains("cat.png"), "{shown}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(!shown.contains("83, 69"), "{shown}");
    }
}
