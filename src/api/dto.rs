//! Request and response bodies of the API, with their OpenAPI schemas.

use phonerelay_channel::Attachment;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::store::{InboundRecord, OutboundDetail, OutboundRecord, OutboundStatus, StatusEvent};

/// The pChat send body (`phone_id`, `channel`, `to`, `text`) and its options.
///
/// The example is the README's first send, to the quickstart's simulated
/// modem `sim-1`; it is also what an OpenAPI tester sends first, and so
/// how its stateful phase comes by real message ids (scripts/api-fuzz).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "phone_id": "sim-1",
    "channel": "sms",
    "to": "+15551230001",
    "text": "Your verification code is 123456"
}))]
pub struct SendRequest {
    /// Which bridge endpoint sends it (a modem, a WhatsApp number, a bot).
    #[schema(min_length = 1)]
    pub phone_id: String,
    /// One of `sms`, `wa`, `tg`, `email`, `notify`.
    #[schema(schema_with = super::openapi::channel_name)]
    pub channel: String,
    /// E.164 for sms/wa, chat id or @username for tg, an address for email,
    /// a topic for notify.
    #[schema(min_length = 1)]
    pub to: String,
    /// The message text; may be empty (or white space only) only when
    /// attachments or options are given. No control characters but tab,
    /// line feed and carriage return.
    #[serde(default)]
    pub text: String,
    /// The pChat address of the sender; replies are routed back to it.
    #[schema(schema_with = super::openapi::source_address)]
    pub source: Option<String>,
    /// E-mail subject, one line; ignored by other channels.
    // The limits here are the checks of `send_validation` (a test holds
    // them together); utoipa takes only literals.
    #[schema(max_length = 998, pattern = r"^[^\r\n]*$")]
    pub subject: Option<String>,
    #[serde(default)]
    #[schema(max_items = 10)]
    pub attachments: Vec<AttachmentBody>,
    /// The id of an inbound message this answers (quoted where the channel
    /// can).
    pub reply_to: Option<String>,
    /// Give up if not sent within this many seconds (at most
    /// `outbox.max_ttl_seconds`).
    #[schema(minimum = 1)]
    pub ttl_seconds: Option<u64>,
    pub priority: Option<Priority>,
    /// The relay's id for this message. Status changes are reported to the
    /// relay under it, and a repeat of the id returns the first message
    /// instead of sending twice. 1 to 255 printable ASCII characters.
    #[schema(min_length = 1, max_length = 255, pattern = "^[!-~]+$")]
    pub relay_message_id: Option<String>,
    /// What only the chosen channel knows how to send (a WhatsApp template,
    /// an e-mail's HTML body...), as that channel documents it; a channel
    /// that takes none refuses any. A JSON object of at most 16 KiB.
    #[schema(value_type = Option<Object>)]
    pub options: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentBody {
    /// Where the file can be fetched (the relay's upload URL): http(s).
    #[schema(max_length = 2048, pattern = "^https?://")]
    pub url: String,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: Option<u64>,
}

impl From<AttachmentBody> for Attachment {
    fn from(a: AttachmentBody) -> Self {
        Attachment {
            url: a.url,
            content_type: a.content_type,
            filename: a.filename,
            size: a.size,
        }
    }
}

impl From<&Attachment> for AttachmentBody {
    fn from(a: &Attachment) -> Self {
        AttachmentBody {
            url: a.url.clone(),
            content_type: a.content_type.clone(),
            filename: a.filename.clone(),
            size: a.size,
        }
    }
}

/// A file that came with an inbound message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InboundAttachment {
    /// Where to fetch it: for a file the bridge keeps, its path on this
    /// API, `/api/v1/media/{id}` (GET it with a `read` key).
    #[schema(max_length = 2048)]
    pub url: String,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: Option<u64>,
}

impl From<&Attachment> for InboundAttachment {
    fn from(a: &Attachment) -> Self {
        InboundAttachment {
            url: a.url.clone(),
            content_type: a.content_type.clone(),
            filename: a.filename.clone(),
            size: a.size,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Normal,
    High,
}

impl Priority {
    pub fn rank(self) -> i64 {
        match self {
            Priority::Low => 0,
            Priority::Normal => 1,
            Priority::High => 2,
        }
    }

    pub fn from_rank(rank: i64) -> Self {
        match rank {
            i64::MIN..=0 => Priority::Low,
            1 => Priority::Normal,
            _ => Priority::High,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    pub id: String,
    /// The status the message was committed with: `queued`, or `sending`
    /// when it was handed straight to an idle endpoint (its first attempt
    /// is under way, and it can no longer be cancelled). A repeat
    /// (`Idempotent-Replayed: true`) says what the first answer said,
    /// whatever the message's status is now: read the message for that.
    /// (A message accepted by a version that did not keep this answer is
    /// repeated as `queued`.)
    pub status: OutboundStatus,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntry {
    pub status: OutboundStatus,
    /// RFC 3339.
    pub at: String,
    pub code: Option<String>,
    pub reason: Option<String>,
}

impl From<&StatusEvent> for HistoryEntry {
    fn from(e: &StatusEvent) -> Self {
        HistoryEntry {
            status: e.status,
            at: rfc3339(e.at_ms),
            code: e.code.clone(),
            reason: e.reason.clone(),
        }
    }
}

/// What a cancel answers: the whole message to a key that may read it,
/// else only its id and status (a key that may only send learns nothing
/// of a message's content through a cancel).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum CancelAnswer {
    /// To a key with the `read` scope.
    Full(Box<MessageView>),
    /// To a key without it.
    Brief(CancelledBrief),
}

/// Only the id and status: its schema takes nothing more
/// (`additionalProperties: false`), or a whole message, which has both,
/// would match it as well as [`MessageView`], and `oneOf` would refuse it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelledBrief {
    pub id: String,
    pub status: OutboundStatus,
}

impl CancelAnswer {
    /// `detail` as a key sees it: whole if it `may_read`.
    pub fn for_key(detail: &OutboundDetail, may_read: bool) -> Self {
        if may_read {
            CancelAnswer::Full(Box::new(MessageView::from(detail)))
        } else {
            CancelAnswer::Brief(CancelledBrief {
                id: detail.record.id.clone(),
                status: detail.record.status,
            })
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    pub id: String,
    pub phone_id: String,
    pub channel: String,
    pub to: String,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub attachments: Vec<AttachmentBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// The channel-specific options the message was sent with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub options: Option<serde_json::Value>,
    pub priority: Priority,
    pub status: OutboundStatus,
    /// Sends the channel tried; a message put back by a rate limit, its
    /// recipient's order, a shutdown or its endpoint being down spends none.
    pub attempts: u32,
    pub created_at: String,
    pub updated_at: String,
    pub expires_at: String,
    /// Ids the channel gave the message (one per SMS part).
    pub external_ids: Vec<String>,
    /// The last error, for failed, expired or retrying messages.
    pub error: Option<ErrorInfo>,
    /// Present on single-message reads: every status change in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<HistoryEntry>>,
}

impl From<&OutboundRecord> for MessageView {
    fn from(r: &OutboundRecord) -> Self {
        MessageView {
            id: r.id.clone(),
            phone_id: r.phone_id.clone(),
            channel: r.channel.to_string(),
            to: r.to.clone(),
            text: r.text.clone(),
            subject: r.subject.clone(),
            source: r.source.clone(),
            attachments: r.attachments.iter().map(AttachmentBody::from).collect(),
            reply_to: r.reply_to.clone(),
            options: r.options.clone(),
            priority: Priority::from_rank(r.priority),
            status: r.status,
            attempts: r.attempts,
            created_at: rfc3339(r.created_at_ms),
            updated_at: rfc3339(r.updated_at_ms),
            expires_at: rfc3339(r.expires_at_ms),
            external_ids: r.external_ids.clone(),
            error: r.error_code.as_ref().map(|code| ErrorInfo {
                code: code.clone(),
                message: r.error_message.clone().unwrap_or_default(),
            }),
            history: None,
        }
    }
}

impl From<&OutboundDetail> for MessageView {
    fn from(d: &OutboundDetail) -> Self {
        MessageView {
            history: Some(d.history.iter().map(HistoryEntry::from).collect()),
            ..MessageView::from(&d.record)
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessagePage {
    pub messages: Vec<MessageView>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InboundView {
    pub id: String,
    pub channel: String,
    pub phone_id: String,
    pub from: String,
    pub text: String,
    pub subject: Option<String>,
    pub attachments: Vec<InboundAttachment>,
    pub external_id: String,
    pub reply_to: Vec<String>,
    pub received_at: String,
    pub committed_at: String,
    /// What the channel knows of the sender and the chat beyond `from`:
    /// `sender_name`, `sender_id` (who spoke in a group chat), `chat_title`.
    /// Absent when none.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub meta: std::collections::BTreeMap<String, String>,
}

impl From<&InboundRecord> for InboundView {
    fn from(r: &InboundRecord) -> Self {
        InboundView {
            id: r.id.clone(),
            channel: r.channel.to_string(),
            phone_id: r.phone_id.clone(),
            from: r.from.clone(),
            text: r.text.clone(),
            subject: r.subject.clone(),
            attachments: r.attachments.iter().map(InboundAttachment::from).collect(),
            external_id: r.external_id.clone(),
            reply_to: r.reply_to.clone(),
            received_at: rfc3339(r.received_at_ms),
            committed_at: rfc3339(r.committed_at_ms),
            meta: r.meta.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InboundPage {
    pub messages: Vec<InboundView>,
    pub next_cursor: Option<String>,
}
