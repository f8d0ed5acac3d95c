use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::defaults::*;

/// The whole config file. Every table rejects unknown keys.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// Fetching outbound attachments' URLs (`src/fetch`).
    #[serde(default)]
    pub attachments: AttachmentsConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub channels: ChannelsConfig,
    /// The link to the pChat relay; see `docs/relay-protocol.md`.
    #[serde(default)]
    pub relay: RelayConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP API listens on.
    pub listen: String,
    /// Largest request body accepted; larger gets 413.
    pub max_body_bytes: usize,
    /// Largest body a channel's webhook (`/webhooks/...`) takes: upstreams
    /// batch their events and send more than any API request needs.
    pub max_webhook_body_bytes: usize,
    /// How long a client may take to send a request's headers (slower:
    /// the connection is closed, `api::serve`; so is a kept-alive one left
    /// idle this long) and then its body (slower:
    /// 408, `api::body`). It does not cut a request short once its body is
    /// in.
    pub request_timeout_seconds: u64,
    /// HTTP connections served at once; a connection beyond waits in the
    /// kernel's listen backlog until one closes (`api::serve`). The local
    /// socket the CLI uses has a limit of its own (`local_socket`).
    pub max_connections: u64,
    /// On SIGTERM: how long in-flight sends and HTTP requests get to
    /// finish; then sends are released to the queue and connections closed.
    pub shutdown_grace_seconds: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.into(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_webhook_body_bytes: DEFAULT_MAX_WEBHOOK_BODY_BYTES,
            request_timeout_seconds: DEFAULT_REQUEST_TIMEOUT_SECONDS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace_seconds: DEFAULT_SHUTDOWN_GRACE_SECONDS,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory for the SQLite database and pairing state; relative to the
    /// config file's folder, `~` not expanded (refused, as an empty path is).
    pub state_dir: PathBuf,
    /// Days an ended outbound message (and its history) or a forwarded
    /// inbound message is kept; 0 keeps everything. Queued, sending and
    /// dead-lettered messages are never deleted.
    pub retention_days: u64,
    /// Milliseconds a group of fewer than 16 writes waits for more before
    /// it commits (each commit writes every page it touched and fsyncs);
    /// 0 commits at once. A write after a quiet spell at least this long
    /// commits at once: no one is coming to share its commit. At most 50.
    pub commit_delay_ms: u64,
    /// The largest file (a photo, an e-mail attachment) a channel may hand
    /// the bridge to keep under `media/` in the state dir; a larger one is
    /// refused and nothing of it is written. 0 keeps no files at all.
    pub max_media_bytes: u64,
    /// The most all kept files may take together; a file that would pass
    /// it is refused as a file over `max_media_bytes` is, until retention
    /// deletes older ones. 0: no total cap. Otherwise at least
    /// `max_media_bytes`.
    pub max_media_total_bytes: u64,
    /// Free space on the state dir's filesystem that kept files never
    /// take: a file that would leave less free is refused, so the store
    /// can still commit messages. 0 lets files fill the disk.
    pub media_min_free_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            state_dir: DEFAULT_STATE_DIR.into(),
            retention_days: DEFAULT_RETENTION_DAYS,
            commit_delay_ms: DEFAULT_COMMIT_DELAY_MS,
            max_media_bytes: DEFAULT_MAX_MEDIA_BYTES,
            max_media_total_bytes: DEFAULT_MAX_MEDIA_TOTAL_BYTES,
            media_min_free_bytes: DEFAULT_MEDIA_MIN_FREE_BYTES,
        }
    }
}

/// How the bridge fetches the files an outbound message names by URL,
/// when its channel must send the bytes (e-mail always).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttachmentsConfig {
    /// The largest file fetched; a larger one is refused (and its send
    /// fails) without more of it being read.
    pub max_bytes: u64,
    /// How long one fetch may take, redirects and body included.
    pub timeout_seconds: u64,
    /// Fetch from any unicast address: loopback, the LAN, link-local
    /// (the cloud metadata service too). Off, only public addresses.
    pub allow_private_hosts: bool,
}

impl Default for AttachmentsConfig {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_ATTACHMENT_MAX_BYTES,
            timeout_seconds: DEFAULT_ATTACHMENT_TIMEOUT_SECONDS,
            allow_private_hosts: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    pub default_ttl_seconds: u64,
    pub max_ttl_seconds: u64,
    pub max_attempts: u32,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// How long a claim is leased in the store. A running daemon never
    /// takes back a claim of its own, and the next start requeues what a
    /// stopped one left; the lease is for a store several daemons share.
    pub lease_seconds: u64,
    pub send_timeout_seconds: u64,
    pub expiry_sweep_seconds: u64,
    /// Keyed by channel name (`sms`) or by phone_id; a phone_id entry wins.
    pub limits: BTreeMap<String, LimitConfig>,
}

impl OutboxConfig {
    /// How long a claim holds a message, in milliseconds.
    pub fn lease_ms(&self) -> i64 {
        (self.lease_seconds * 1000) as i64
    }
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            default_ttl_seconds: DEFAULT_TTL_SECONDS,
            max_ttl_seconds: DEFAULT_MAX_TTL_SECONDS,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retry_initial_ms: DEFAULT_RETRY_INITIAL_MS,
            retry_max_ms: DEFAULT_RETRY_MAX_MS,
            lease_seconds: DEFAULT_LEASE_SECONDS,
            send_timeout_seconds: DEFAULT_SEND_TIMEOUT_SECONDS,
            expiry_sweep_seconds: DEFAULT_EXPIRY_SWEEP_SECONDS,
            limits: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitConfig {
    /// Sends in flight at once on one endpoint. Absent: what the endpoint's
    /// adapter asks for (`Channel::default_concurrency`: 1 for an SMS
    /// modem), else [`DEFAULT_CONCURRENCY`], also when the entry sets other
    /// limits only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Sustained sends per second on one endpoint (token bucket rate).
    pub per_second: f64,
    /// Sends allowed back to back before `per_second` applies.
    pub burst: u32,
    /// Sends to one recipient per minute; 0 disables the check.
    pub per_recipient_per_minute: u32,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            concurrency: None,
            per_second: DEFAULT_PER_SECOND,
            burst: DEFAULT_BURST,
            per_recipient_per_minute: DEFAULT_PER_RECIPIENT_PER_MINUTE,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter (`info`, `phonerelay=debug,info`); `RUST_LOG` wins.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: DEFAULT_LOG_LEVEL.into(),
            format: LogFormat::default(),
        }
    }
}

/// One optional table per channel adapter; each adapter crate owns its
/// table's shape and its `validate()`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelsConfig {
    /// `[channels.sms]`: GSM/LTE modems (see the `phonerelay-sms` crate).
    pub sms: Option<phonerelay_sms::SmsConfig>,
}

/// How sends reach the bridge from the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayMode {
    /// The relay POSTs sends to this daemon's `/api/v1/messages`.
    #[default]
    Push,
    /// The bridge long-polls the relay for sends (for boxes behind NAT).
    Pull,
}

/// `[relay]`: the link to the pChat relay. `url` and `phone_id` may be left
/// out when `phonerelay pair` recorded them; the link runs once the relay
/// key file exists.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Base URL of the relay, `https://relay.example.com` (a path prefix is
    /// kept). Overrides the URL recorded by `phonerelay pair`.
    pub url: Option<String>,
    /// The relay's id for this bridge; overrides the paired phone_id.
    pub phone_id: Option<String>,
    /// `push` (the relay calls us) or `pull` (we long-poll the relay).
    pub mode: RelayMode,
    /// File holding the relay-issued bearer key; relative to the config
    /// file. Default: `relay.key` in the state dir, written by `pair`.
    /// A key typed here by mistake is not quoted by a type error.
    #[serde(
        deserialize_with = "phonerelay_channel::deserialize_secret_file",
        serialize_with = "phonerelay_channel::serialize_secret_file"
    )]
    pub key_file: Option<PathBuf>,
    /// Paths on the relay side.
    pub paths: RelayPaths,
    /// Longest wait of one long poll at the relay (pull mode).
    pub poll_timeout_seconds: u64,
    /// Most jobs taken per poll (pull mode).
    pub poll_max_jobs: u32,
    /// Timeout of every other request to the relay.
    pub request_timeout_seconds: u64,
    /// How often the bridge tells the relay it and its endpoints are alive.
    pub heartbeat_seconds: u64,
    /// How often the daemon reads `phonerelay pair`'s pairing and the key
    /// file again (SIGHUP: at once); a change restarts the link.
    pub settings_poll_seconds: u64,
    /// How often new status changes are looked for and reported.
    pub status_interval_ms: u64,
    /// First wait after a failed relay request; doubles per failure.
    pub retry_initial_ms: u64,
    /// Cap of that wait.
    pub retry_max_ms: u64,
    /// Failed uploads of one file (a timeout, a 5xx) after which its
    /// message goes without it, the file named as not uploaded.
    pub upload_give_up_after: u32,
    /// Where replies from external senders go in pChat.
    pub routing: RoutingConfig,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            url: None,
            phone_id: None,
            mode: RelayMode::default(),
            key_file: None,
            paths: RelayPaths::default(),
            poll_timeout_seconds: DEFAULT_RELAY_POLL_TIMEOUT_SECONDS,
            poll_max_jobs: DEFAULT_RELAY_POLL_MAX_JOBS,
            request_timeout_seconds: DEFAULT_RELAY_REQUEST_TIMEOUT_SECONDS,
            heartbeat_seconds: DEFAULT_RELAY_HEARTBEAT_SECONDS,
            settings_poll_seconds: DEFAULT_RELAY_SETTINGS_POLL_SECONDS,
            status_interval_ms: DEFAULT_RELAY_STATUS_INTERVAL_MS,
            retry_initial_ms: DEFAULT_RELAY_RETRY_INITIAL_MS,
            retry_max_ms: DEFAULT_RELAY_RETRY_MAX_MS,
            upload_give_up_after: DEFAULT_RELAY_UPLOAD_GIVE_UP_AFTER,
            routing: RoutingConfig::default(),
        }
    }
}

/// `[relay.paths]`: every request path on the relay side, each starting
/// with `/`, appended to `relay.url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayPaths {
    /// Inbound messages are POSTed here as pChat messages.
    pub messages: String,
    /// Authenticated check used by `phonerelay pair`.
    pub hello: String,
    /// Long poll for pending sends (pull mode).
    pub poll: String,
    /// Acknowledge polled sends (pull mode).
    pub ack: String,
    /// Status changes of sends that carried a `relay_message_id`.
    pub status: String,
    /// Liveness of the bridge and its endpoints.
    pub heartbeat: String,
    /// Files received with inbound messages, uploaded before the message.
    pub media: String,
}

impl Default for RelayPaths {
    fn default() -> Self {
        Self {
            messages: DEFAULT_RELAY_MESSAGES_PATH.into(),
            hello: DEFAULT_RELAY_HELLO_PATH.into(),
            poll: DEFAULT_RELAY_POLL_PATH.into(),
            ack: DEFAULT_RELAY_ACK_PATH.into(),
            status: DEFAULT_RELAY_STATUS_PATH.into(),
            heartbeat: DEFAULT_RELAY_HEARTBEAT_PATH.into(),
            media: DEFAULT_RELAY_MEDIA_PATH.into(),
        }
    }
}

/// `[relay.routing]`: which pChat address an inbound message goes to.
/// In order: the conversation of the outbound message it replies to (by
/// the channel's reply key), the sender's most recent conversation, then
/// `default_to`; with none of these it is dead-lettered as `no_route`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// pChat address (the operator's inbox) for messages no conversation
    /// claims.
    pub default_to: Option<String>,
    /// A conversation older than this no longer routes replies.
    pub conversation_ttl_days: u64,
    /// How long a reply waits for a pChat user's send to its sender that
    /// has no outcome yet (it may be what the reply answers) before it
    /// goes to `default_to` rather than to whoever wrote before.
    pub unsettled_wait_seconds: u64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            default_to: None,
            conversation_ttl_days: DEFAULT_CONVERSATION_TTL_DAYS,
            unsettled_wait_seconds: DEFAULT_UNSETTLED_WAIT_SECONDS,
        }
    }
}
