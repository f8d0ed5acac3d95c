use std::fmt;
use std::str::FromStr;

use phonerelay_channel::{Attachment, ChannelKind, CursorWrite, SendReceipt};
use serde::{Deserialize, Serialize};

use super::MediaRefusal;

/// The life of an outbound message. `queued` and `sending` are live; the
/// rest are where a message ends, except that `sent` may still become
/// `delivered` or `read`, and `delivered` may become `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutboundStatus {
    Queued,
    Sending,
    Sent,
    Delivered,
    Read,
    Failed,
    Expired,
    Cancelled,
}

impl OutboundStatus {
    pub const ALL: [OutboundStatus; 8] = [
        OutboundStatus::Queued,
        OutboundStatus::Sending,
        OutboundStatus::Sent,
        OutboundStatus::Delivered,
        OutboundStatus::Read,
        OutboundStatus::Failed,
        OutboundStatus::Expired,
        OutboundStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OutboundStatus::Queued => "queued",
            OutboundStatus::Sending => "sending",
            OutboundStatus::Sent => "sent",
            OutboundStatus::Delivered => "delivered",
            OutboundStatus::Read => "read",
            OutboundStatus::Failed => "failed",
            OutboundStatus::Expired => "expired",
            OutboundStatus::Cancelled => "cancelled",
        }
    }

    /// Queued or being sent: not ended (the `live!`/`ended!` split of the
    /// store's queries).
    pub fn is_live(self) -> bool {
        matches!(self, OutboundStatus::Queued | OutboundStatus::Sending)
    }
}

impl fmt::Display for OutboundStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OutboundStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OutboundStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown status {s:?}"))
    }
}

/// A message as the API accepted it, ready to commit.
#[derive(Debug, Clone)]
pub struct NewOutbound {
    pub api_key_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// Hash of the request body, to tell a true repeat from a reused key;
    /// empty when the request has no idempotency key. Taken over the
    /// body's JSON value, not its bytes (`api::messages::request_hashes`),
    /// so a repeat spaced or ordered otherwise is still a repeat.
    pub request_hash: String,
    /// Hash of the body's exact bytes, as keys committed before
    /// `request_hash` hashed the value were kept under: a repeat of one
    /// of those matches this.
    pub exact_request_hash: String,
    pub phone_id: String,
    pub channel: ChannelKind,
    pub to: String,
    pub text: String,
    pub subject: Option<String>,
    pub source: Option<String>,
    pub attachments: Vec<Attachment>,
    pub reply_to: Option<String>,
    pub reply_to_external_id: Option<String>,
    /// Channel-specific options, a JSON object the channel accepted.
    pub options: Option<serde_json::Value>,
    pub priority: i64,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    /// Set when a dispatcher slot was reserved for the message at accept
    /// (`outbox::handover`): it is committed already claimed, `sending`
    /// with its first attempt begun at `created_at` and leased until this
    /// time, and handed to the dispatcher after the commit.
    pub claimed_until_ms: Option<i64>,
}

impl NewOutbound {
    /// Whether a message kept with `stored_hash` under the same
    /// idempotency key was made by this same request.
    pub fn repeats(&self, stored_hash: &str) -> bool {
        stored_hash == self.request_hash || stored_hash == self.exact_request_hash
    }

    /// The status the message is committed with: `sending` when it is
    /// committed claimed (`claimed_until_ms`), else `queued`.
    pub fn committed_status(&self) -> OutboundStatus {
        match self.claimed_until_ms {
            Some(_) => OutboundStatus::Sending,
            None => OutboundStatus::Queued,
        }
    }

    /// The message as the dispatcher gets it when it was committed claimed
    /// (`claimed_until_ms`) under `id`, which the store chose.
    pub fn claimed_record(&self, id: String) -> OutboundRecord {
        OutboundRecord {
            seq: super::message_id::seq_of(&id).unwrap_or_default(),
            id,
            phone_id: self.phone_id.clone(),
            channel: self.channel,
            to: self.to.clone(),
            text: self.text.clone(),
            subject: self.subject.clone(),
            source: self.source.clone(),
            attachments: self.attachments.clone(),
            reply_to: self.reply_to.clone(),
            reply_to_external_id: self.reply_to_external_id.clone(),
            options: self.options.clone(),
            priority: self.priority,
            status: OutboundStatus::Sending,
            attempts: 1,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.created_at_ms,
            expires_at_ms: self.expires_at_ms,
            next_attempt_at_ms: self.created_at_ms,
            error_code: None,
            error_message: None,
            external_ids: Vec::new(),
        }
    }
}

/// A message an earlier request committed, as that request's 202 named
/// it: a repeat of the request answers the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstAnswer {
    pub id: String,
    /// The status the message was committed with (`sending` when handed
    /// straight to its dispatcher, else `queued`), not its status now.
    pub status: OutboundStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptOutcome {
    Created {
        id: String,
    },
    /// The idempotency key (or relay message id) was seen with the same
    /// body: the first message, and the status its accept answered.
    Replayed {
        id: String,
        status: OutboundStatus,
    },
    /// The idempotency key was seen with a different body.
    KeyReused {
        id: String,
    },
    /// The relay message id names a message of another phone_id (which is
    /// not named here: it is not the sender's to learn).
    RelayIdTaken,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboundRecord {
    pub id: String,
    pub seq: i64,
    pub phone_id: String,
    pub channel: ChannelKind,
    pub to: String,
    pub text: String,
    pub subject: Option<String>,
    pub source: Option<String>,
    pub attachments: Vec<Attachment>,
    pub reply_to: Option<String>,
    pub reply_to_external_id: Option<String>,
    pub options: Option<serde_json::Value>,
    pub priority: i64,
    pub status: OutboundStatus,
    pub attempts: u32,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub expires_at_ms: i64,
    pub next_attempt_at_ms: i64,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub external_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusEvent {
    pub status: OutboundStatus,
    pub at_ms: i64,
    pub code: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboundDetail {
    pub record: OutboundRecord,
    pub history: Vec<StatusEvent>,
}

#[derive(Debug, Clone, Default)]
pub struct OutboundFilter {
    pub status: Option<OutboundStatus>,
    pub channel: Option<ChannelKind>,
    pub phone_id: Option<String>,
    pub since_ms: Option<i64>,
    /// Return messages with `seq` below this (paging newest first).
    pub before_seq: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// The message as the cancel left it, read in the transaction that
    /// cancelled it: what the answer needs, with no read after the commit
    /// whose failure could be taken for a cancel that did not happen.
    Cancelled(Box<OutboundDetail>),
    /// Cancelled before, by this request's earlier try or another: what
    /// the caller asked for already holds, so a repeated cancel (its first
    /// answer lost) is answered as it would have been, not with a 409.
    AlreadyCancelled(Box<OutboundDetail>),
    NotFound,
    /// Too late: the message is already being sent or has ended.
    NotCancellable(OutboundStatus),
}

#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub channel: ChannelKind,
    pub phone_id: String,
    pub limit: u32,
    pub now_ms: i64,
    pub lease_ms: i64,
    /// Recipients the dispatcher holds back (a send to them waits for a
    /// retry or the rate limit): their messages from the held one on, in
    /// queue order, are left in the queue. Claimed, each would only go
    /// back to wait, and a large backlog to one of them was claimed and
    /// released over and over, a history row each time, ahead of every
    /// other recipient's messages.
    pub skip_recipients: Vec<HeldRecipient>,
}

/// A recipient held back, and where in the queue its first message back in
/// the queue stands. Its messages from there on wait; one of a higher
/// `priority` goes first, to this recipient too, as the queue's order says
/// (docs/relay-protocol.md, "Order of sends").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRecipient {
    pub recipient: String,
    pub priority: i64,
    pub seq: i64,
}

/// A queued message not due yet (`Store::queued_for_later`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedForLater {
    pub recipient: String,
    pub priority: i64,
    pub seq: i64,
    /// Its `next_attempt_at`.
    pub due_ms: i64,
    pub expires_at_ms: i64,
}

/// The due time of a message put back to go again at once (`next_attempt_at`):
/// not the time it went back, which a wall clock stepped back after it made
/// a time to come, holding the message, and every later one to its
/// recipient, for as long as the step. New messages are due so too.
pub const DUE_AT_ONCE_MS: i64 = 0;

/// What happened to a claimed message.
#[derive(Debug, Clone)]
pub enum SendOutcome {
    Sent {
        receipt: SendReceipt,
        now_ms: i64,
    },
    /// A failed attempt to try again at `next_attempt_at_ms`. Some of the
    /// message may have gone out (an SMS's first parts), so `now_ms` is an
    /// event time (`clock::event_ms`), as a sent outcome's is: the first
    /// retry of a message is when it may first have reached its recipient,
    /// which reply routing times its conversation from (`went_out_at`).
    Retry {
        next_attempt_at_ms: i64,
        code: String,
        reason: String,
        now_ms: i64,
        /// Something of the attempt may have gone out (the adapter could
        /// not say that nothing did: `SendError::nothing_sent`): the
        /// message's conversation is dated from this attempt's end if it
        /// is the first such.
        may_have_gone_out: bool,
    },
    /// Not an attempt (a rate limit, a shutdown, the endpoint down, the
    /// remote refusing it for now, or an earlier message to the same
    /// recipient waiting: `outbox::recipient_order`): back to the queue as
    /// it was, with `code` and `reason` saying why in its history.
    Release {
        next_attempt_at_ms: i64,
        now_ms: i64,
        code: String,
        reason: String,
    },
    Failed {
        code: String,
        reason: String,
        now_ms: i64,
    },
    Expired {
        now_ms: i64,
    },
}

/// What the store takes on disk and what the disk has left, for an
/// operator watching a small box fill up (`/api/v1/status`, `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DiskUsage {
    pub database_bytes: u64,
    /// The write-ahead log beside the database.
    pub wal_bytes: u64,
    /// The files received with inbound messages (`media/` beside the
    /// database), kept until retention deletes their messages: how many,
    /// and their bytes, by their rows (`Store::media_usage`); 0 where the
    /// report does not count them (`/ready`, the service's STATUS line).
    #[serde(default)]
    pub media_files: u64,
    #[serde(default)]
    pub media_bytes: u64,
    /// Free to the daemon on the store's filesystem; absent if it cannot
    /// be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_bytes: Option<u64>,
    /// The most the kept files may take together
    /// (`storage.max_media_total_bytes`); 0: no total cap.
    #[serde(default)]
    pub media_max_total_bytes: u64,
    /// Free space the kept files never take
    /// (`storage.media_min_free_bytes`).
    #[serde(default)]
    pub media_min_free_bytes: u64,
    /// Present while new received files are refused for want of room:
    /// the last one offered was, and one of its size would be again now.
    /// Their messages still arrive, without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_refused: Option<MediaRefusal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointStats {
    pub channel: ChannelKind,
    pub phone_id: String,
    pub queued: u64,
    /// When the oldest queued message was accepted (Unix ms): how long the
    /// queue has been waiting, the number to alert on.
    pub oldest_queued_at_ms: Option<i64>,
    pub sending: u64,
    pub failed_recently: u64,
    pub sent_recently: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundCommit {
    pub id: String,
    /// The message had been committed before; nothing new was stored.
    pub duplicate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRecord {
    pub id: String,
    pub seq: i64,
    pub channel: ChannelKind,
    pub phone_id: String,
    pub from: String,
    pub text: String,
    pub subject: Option<String>,
    pub attachments: Vec<Attachment>,
    pub external_id: String,
    pub reply_to: Vec<String>,
    pub received_at_ms: i64,
    pub committed_at_ms: i64,
    /// `InboundMessage::meta`: the sender's name, who spoke in a group...
    pub meta: std::collections::BTreeMap<String, String>,
}

/// A kept [`phonerelay_channel::UnreadableInbound`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableRecord {
    pub id: String,
    pub seq: i64,
    pub channel: ChannelKind,
    pub phone_id: String,
    pub raw: Vec<u8>,
    pub origin: String,
    pub reason: String,
    pub received_at_ms: i64,
    pub committed_at_ms: i64,
}

#[derive(Debug, Clone, Default)]
pub struct InboundFilter {
    pub channel: Option<ChannelKind>,
    pub phone_id: Option<String>,
    pub since_ms: Option<i64>,
    pub before_seq: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Send,
    Read,
    Admin,
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "send" => Ok(Scope::Send),
            "read" => Ok(Scope::Read),
            "admin" => Ok(Scope::Admin),
            other => Err(format!(
                "unknown scope {other:?}; expected send, read or admin"
            )),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Send => "send",
            Scope::Read => "read",
            Scope::Admin => "admin",
        })
    }
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub key_id: String,
    pub name: String,
    /// SHA-256 of the secret part; the secret itself is never stored.
    pub secret_hash: Vec<u8>,
    pub scopes: Vec<Scope>,
    pub phone_id: Option<String>,
    pub created_at_ms: i64,
}

/// What `phonerelay pair` or `unpair` changes in the store, written in
/// one transaction ([`crate::store::Store::replace_relay_pairing`]): a
/// failure leaves the previous pairing, its bridge key active, whole.
#[derive(Debug, Clone)]
pub struct PairingChange {
    /// The previous pairing's bridge key, revoked (if still active).
    pub revoke_key_id: Option<String>,
    /// The new pairing's bridge key; none for `unpair`, which only ends
    /// the previous one.
    pub bridge_key: Option<NewApiKey>,
    /// When the key is revoked.
    pub now_ms: i64,
    /// Cursors written with the keys (the pairing itself and the link's
    /// state), all under `scope`.
    pub scope: String,
    pub cursors: Vec<CursorWrite>,
    /// A pairing with another relay than the one the status events went
    /// to: recorded in the same transaction, as of the newest outbound
    /// message then, since the new bridge key works from the commit on.
    pub relay_move: Option<RelayMove>,
}

/// The record, cursor `cursor` under the change's scope, that the status
/// events go to relay `url` from the next outbound message on
/// ([`ReportedRelay`]).
#[derive(Debug, Clone)]
pub struct RelayMove {
    pub cursor: String,
    pub url: String,
}

/// Which relay the status events are for (`relay::reported_relay`): the
/// messages accepted up to outbound seq `after_seq` were another relay's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedRelay {
    pub url: String,
    /// Messages up to this outbound seq were another relay's (0: none).
    pub after_seq: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub key_id: String,
    pub name: String,
    pub secret_hash: Vec<u8>,
    pub scopes: Vec<Scope>,
    pub phone_id: Option<String>,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

impl ApiKeyRecord {
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }
}

/// Which old inbound messages retention deletes besides those the relay
/// has taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnforwardedInbound {
    /// A relay is configured or paired: one not yet forwarded stays until
    /// the relay takes it, however long that is.
    Keep,
    /// No relay is named, so nothing would ever take one: it goes with age
    /// like the rest (the API still lists it until then). A relay paired
    /// later gets what is younger than the retention.
    Prune,
}

/// Where an inbound message stands on its way to the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RelayInboundState {
    /// Waiting to be (re)delivered to the relay.
    Pending,
    /// The relay accepted it.
    Delivered,
    /// Refused for good (or no route); kept with the reason until retried.
    Dead,
    /// Arrived on a phone the relay link does not carry (the link is
    /// paired to another phone_id): never forwarded, as the relay would
    /// take it for the paired phone's and replies would leave from the
    /// wrong number. Pruned with age like a delivered one.
    #[serde(rename = "other_phone")]
    OtherPhone,
}

impl RelayInboundState {
    pub fn as_str(self) -> &'static str {
        match self {
            RelayInboundState::Pending => "pending",
            RelayInboundState::Delivered => "delivered",
            RelayInboundState::Dead => "dead",
            RelayInboundState::OtherPhone => "other_phone",
        }
    }
}

impl FromStr for RelayInboundState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(RelayInboundState::Pending),
            "delivered" => Ok(RelayInboundState::Delivered),
            "dead" => Ok(RelayInboundState::Dead),
            "other_phone" => Ok(RelayInboundState::OtherPhone),
            other => Err(format!(
                "unknown relay state {other:?}; expected pending, delivered, dead or other_phone"
            )),
        }
    }
}

/// An inbound message with its forwarding state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayInbound {
    pub inbound: InboundRecord,
    pub state: RelayInboundState,
    pub attempts: u32,
    pub next_attempt_at_ms: i64,
    /// The pChat address it was routed to, once routed.
    pub to: Option<String>,
    /// How: `reply`, `recent` or `default`.
    pub route: Option<String>,
    pub error_code: Option<String>,
    pub error: Option<String>,
    pub updated_at_ms: Option<i64>,
    /// The body of its POST, once fixed (`Store::fix_relay_inbound_body`);
    /// gone once it is delivered.
    pub body: Option<RelayBody>,
    /// How often an operator sent it on by hand (`Store::retry_relay_inbound`).
    pub manual_retries: u32,
}

impl RelayInbound {
    /// The Idempotency-Key of its POSTs: its id, and after a manual retry
    /// `<id>:retry<n>`. A relay answers a repeat of a key as it answered
    /// the first time, so a retry of a message it refused, under the same
    /// key, would be refused again; a new key is safe, as the relay took
    /// nothing under the old one.
    pub fn idempotency_key(&self) -> String {
        match self.manual_retries {
            0 => self.inbound.id.clone(),
            n => format!("{}:retry{n}", self.inbound.id),
        }
    }
}

/// The JSON body POSTed to the relay for an inbound message, fixed before
/// its first POST: every repeat of the POST, under the same
/// Idempotency-Key, sends it as it is, whatever routing or the files would
/// make of the message by then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayBody {
    /// Where it goes, as the body says: `to` and `origin.route`.
    pub to: String,
    pub route: String,
    pub json: String,
    /// The relay (its URL) it was made for: its attachments are that
    /// relay's copies, and another relay, which never saw the key, gets a
    /// body made afresh.
    pub relay_url: String,
}

/// What a forwarding attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayInboundOutcome {
    Delivered {
        to: String,
        route: String,
        now_ms: i64,
    },
    Retry {
        to: Option<String>,
        route: Option<String>,
        code: String,
        reason: String,
        next_attempt_at_ms: i64,
        now_ms: i64,
    },
    Dead {
        to: Option<String>,
        route: Option<String>,
        code: String,
        reason: String,
        now_ms: i64,
    },
    /// Not for this link: it arrived on `phone_id`, the link carries
    /// `linked_phone_id`.
    OtherPhone {
        phone_id: String,
        linked_phone_id: String,
        now_ms: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManualRetry {
    /// Back to pending, due now: the message as the retry left it, read
    /// in the transaction that requeued it (as `CancelOutcome::Cancelled`).
    Requeued(Box<RelayInbound>),
    NotFound,
    /// Only dead letters and messages set aside for another phone can be
    /// retried by hand.
    NotDead(RelayInboundState),
}

/// Which dead letters a bulk retry (`Store::retry_dead_relay_inbound`)
/// puts back in the queue: those every filter given matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    /// Only those with this error code (`relay_http_422`, `no_route`).
    pub code: Option<String>,
    /// Only those made dead letters at or after this time: a relay's bad
    /// spell is known by when it refused, not by when the messages came.
    pub since_ms: Option<i64>,
    /// Only those that came on this channel.
    pub channel: Option<ChannelKind>,
    /// Only those that came to this phone_id (an API key bound to one
    /// phone requeues its own only).
    pub phone_id: Option<String>,
}

impl DeadLetterFilter {
    /// Whether `code` is spelt as the forwarder records error codes:
    /// lower-case words joined by `_` (`relay_http_422`, `no_route`).
    /// Anything else matches no dead letter, so it is a typo.
    pub fn is_error_code(code: &str) -> bool {
        code.len() <= 64
            && code.starts_with(|c: char| c.is_ascii_lowercase())
            && code
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RelayInboundCounts {
    pub pending: u64,
    pub dead: u64,
    /// When the oldest pending one was committed: how long the relay has
    /// kept a reply waiting, which a count does not tell (one reply held
    /// for days reads "1 pending").
    pub oldest_pending_at_ms: Option<i64>,
}

/// A status change of a message that came with a `relay_message_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayStatusEvent {
    /// Position in the bridge's event log; increases, never repeats.
    pub event_id: i64,
    pub message_id: String,
    pub relay_message_id: String,
    pub status: OutboundStatus,
    pub at_ms: i64,
    pub code: Option<String>,
    pub reason: Option<String>,
    pub external_ids: Vec<String>,
}

/// Status events after a cursor, and how far the log was read (events of
/// messages without a relay id are read past, not reported).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RelayStatusBatch {
    pub events: Vec<RelayStatusEvent>,
    pub scanned_to: i64,
}

/// Find the pChat address a reply belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteQuery {
    pub channel: ChannelKind,
    pub phone_id: String,
    pub from: String,
    /// The channel's reply keys, most exact first.
    pub reply_to: Vec<String>,
    /// Conversations last used before this are too old to route.
    pub since_ms: i64,
    /// When the reply arrived (its commit). It goes to whoever wrote to
    /// its sender before then: a send made while it waited to be forwarded
    /// (the relay down, say) is not what it answers.
    pub as_of_ms: i64,
    /// Sends up to this outbound seq were another relay's
    /// ([`ReportedRelay::after_seq`]; 0: none): the pChat users they name
    /// are not this relay's, and a reply they would route goes by default.
    pub relay_messages_after: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    pub to: String,
    /// `reply` (by reply key) or `recent` (the sender's latest conversation).
    pub route: &'static str,
}

/// Why a message the daemon stopped during has failed, if it has: one
/// claimed exactly `max_attempts` times may never have gone out and gets
/// its last try; one claimed more often (which only a daemon stopping
/// during each of its last attempts makes) has failed. One rule for a
/// stop at start-up (`requeue_abandoned`) and one in flight (the
/// dispatcher).
pub fn stopped_past_max_attempts(attempts: u32, max_attempts: u32) -> Option<String> {
    (attempts > max_attempts).then(|| {
        format!(
            "gave up after {attempts} attempts; the daemon stopped during each of the last ones"
        )
    })
}
