//! The contract between the PhoneRelay daemon and its channel adapters.
//!
//! An adapter crate (SMS, WhatsApp, Telegram, email, notify) implements [`Channel`]
//! for one *endpoint*: one modem, one WhatsApp number, one bot, one mailbox. The
//! daemon owns the outbox and the store; an adapter only turns an
//! [`OutboundMessage`] into a network send and turns what it receives into
//! [`ChannelEvent`]s handed to an [`EventSink`].
//!
//! This crate has no I/O dependencies: it must build for every adapter and for
//! tests without pulling in a runtime, HTTP stack or serial library.

mod address;
mod channel;
mod config_issue;
mod config_path;
mod cursor;
mod error;
mod fetch;
mod health;
mod kind;
mod limits;
mod message;
mod secret;
mod webhook;

pub use address::{AddressError, address_pattern, normalize_address, validate_address};
pub use channel::{
    Channel, ChannelContext, EventSink, MESSAGE_CURSOR_PREFIX, SinkError, SinkErrorKind,
    message_cursor, message_of_cursor,
};
pub use config_issue::ConfigIssue;
pub use config_path::config_path_issue;
pub use cursor::CursorWrite;
pub use error::{ErrorClass, SendError};
pub use fetch::{
    ATTACHMENT_REFUSED, ATTACHMENT_UNAVAILABLE, AttachmentFetcher, FetchError, FetchErrorClass,
    NoFetcher,
};
pub use health::{ChannelHealth, HealthState};
pub use kind::{ChannelKind, UnknownChannel};
pub use limits::SendLimits;
pub use message::{
    Attachment, ChannelEvent, DeliveryStatus, InboundMessage, MAX_META_ENTRIES,
    MAX_META_VALUE_CHARS, MediaUpload, OutboundMessage, SendReceipt, StatusUpdate,
    UnreadableInbound,
};
pub use secret::{
    CREDENTIALS_DIRECTORY, Secret, SecretError, SecretSource, credentials_dir,
    deserialize_secret_file, secret_file_path, serialize_secret_file, shown_secret_path,
};
pub use tokio_util::sync::CancellationToken;
pub use webhook::{SharedWebhookAnswer, WebhookRequest, WebhookResponse};
