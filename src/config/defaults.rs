//! Every default of the config file, named, so docs and code agree.

/// Production config path, after `--config` and `$PHONERELAY_CONFIG`.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/phonerelay/phonerelay.toml";
pub const CONFIG_ENV_VAR: &str = "PHONERELAY_CONFIG";

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8686";
/// Big enough for a long e-mail body with attachment metadata.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// WhatsApp's Cloud API sends webhook payloads of up to 3 MB (a batch of
/// messages and statuses); an upstream refused with 413 retries and then
/// gives up, and what it carried is lost.
pub const DEFAULT_MAX_WEBHOOK_BODY_BYTES: usize = 4 * 1024 * 1024;
pub const DEFAULT_REQUEST_TIMEOUT_SECONDS: u64 = 30;
/// HTTP connections served at once; more wait in the listen backlog. A
/// relay and a few operators need tens; the cap keeps a flood of idle
/// connections from taking every file descriptor the store, the modems and
/// the relay link need.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 1024;
/// Highest `server.max_connections` accepted.
pub const MAX_MAX_CONNECTIONS: u64 = 65_536;
/// Highest `outbox.limits.*.concurrency` accepted: far above what any
/// channel's remote takes at once, and below what a semaphore holds on a
/// 32-bit box (where a larger one made the dispatcher panic at start).
pub const MAX_CONCURRENCY: u32 = 10_000;
/// Time allowed for in-flight sends and requests to finish on SIGTERM.
pub const DEFAULT_SHUTDOWN_GRACE_SECONDS: u64 = 20;
/// Longest `server.shutdown_grace_seconds`: a stop that takes longer is a
/// hung one to whatever supervises the daemon. A stop takes at most the
/// grace, then `daemon::STOP_BOUND` (15 s) for the tasks to end, then
/// [`LAST_COMMITS_SECONDS`]: 25 s after the grace. The shipped unit kills
/// the daemon [`SHIPPED_UNIT_TIMEOUT_STOP_SECONDS`] (45) after SIGTERM, so
/// a grace above 45 - 25 = 20 s (the default) needs its `TimeoutStopSec`
/// raised too, or the stop ends in SIGKILL, claims unreleased; `check`
/// notes it.
pub const MAX_SHUTDOWN_GRACE_SECONDS: u64 = 300;
/// Allowed for the store's last commits once every task has ended, in a
/// stop's longest time.
pub const LAST_COMMITS_SECONDS: u64 = 10;
/// `TimeoutStopSec` in the shipped `systemd/phonerelay.service`
/// (`tests/systemd_unit.rs` holds the two equal).
pub const SHIPPED_UNIT_TIMEOUT_STOP_SECONDS: u64 = 45;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/phonerelay";
/// Ended messages (sent, failed, expired...) and forwarded inbound messages
/// are deleted after this many days, so months unattended do not fill the
/// disk; 0 keeps everything.
pub const DEFAULT_RETENTION_DAYS: u64 = 90;
/// The largest `storage.retention_days` (a century; 0 keeps everything):
/// far larger values overflowed the cut-off time in milliseconds, which
/// then lay in the future and deleted everything ended.
pub const MAX_RETENTION_DAYS: u64 = 36_500;
/// The longest request timeout or long poll: an hour. No request is meant
/// to wait longer, and the daemon adds these to clock readings, which a
/// far larger value would overflow.
pub const MAX_TIMEOUT_SECONDS: u64 = 3600;
/// The longest interval between two runs of a periodic task, or backoff
/// between two tries: a day.
pub const MAX_INTERVAL_SECONDS: u64 = 24 * 3600;
/// [`MAX_INTERVAL_SECONDS`] for the keys counted in milliseconds.
pub const MAX_INTERVAL_MS: u64 = MAX_INTERVAL_SECONDS * 1000;
/// How long a small group of store writes waits for more before it commits
/// (see `store/sqlite/writer.rs`); 0 commits at once.
pub const DEFAULT_COMMIT_DELAY_MS: u64 = 1;
/// Longest commit delay accepted: it adds to the latency of a request that
/// comes while others are being written.
pub const MAX_COMMIT_DELAY_MS: u64 = 50;
/// How often the retention sweep runs.
pub const RETENTION_SWEEP_SECONDS: u64 = 3600;
/// The largest file a channel may hand the bridge to keep (a photo, a
/// voice note, an e-mail attachment): WhatsApp's own limit for documents
/// is 100 MB, for images and audio 5 and 16 MB; e-mail rarely carries
/// more than 25 MB.
pub const DEFAULT_MAX_MEDIA_BYTES: u64 = 25 * 1024 * 1024;
/// The largest `storage.max_media_bytes`: a file is held in memory while
/// it is saved and again while it is uploaded to the relay.
pub const MAX_MAX_MEDIA_BYTES: u64 = 256 * 1024 * 1024;
/// All kept files together (`storage.max_media_total_bytes`): months of
/// photos and voice notes on a small box, without a card of 8 GB filling
/// up with optional files. 0: no total cap (the free-space floor still
/// holds).
pub const DEFAULT_MAX_MEDIA_TOTAL_BYTES: u64 = 1024 * 1024 * 1024;
/// Free space on the store's filesystem that kept files may never take
/// (`storage.media_min_free_bytes`): room for the database and its WAL
/// (cut back to 64 MiB) to go on committing messages, with the rest of a
/// small box's writes (logs) beside them.
pub const DEFAULT_MEDIA_MIN_FREE_BYTES: u64 = 256 * 1024 * 1024;
/// The largest `storage.media_min_free_bytes`: a petabyte. More is a
/// slip of the keyboard, and would refuse every file on any disk.
pub const MAX_MEDIA_MIN_FREE_BYTES: u64 = 1 << 50;

/// The largest outbound attachment the bridge fetches (`attachments.max_bytes`):
/// as `storage.max_media_bytes`, what e-mail commonly carries.
pub const DEFAULT_ATTACHMENT_MAX_BYTES: u64 = 25 * 1024 * 1024;
/// The largest `attachments.max_bytes`: a fetched file is held in memory
/// while it is sent.
pub const MAX_ATTACHMENT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// How long one attachment fetch may take, redirects and body included
/// (`attachments.timeout_seconds`): 25 MiB at about 3.5 Mbit/s. At most
/// [`MAX_TIMEOUT_SECONDS`].
pub const DEFAULT_ATTACHMENT_TIMEOUT_SECONDS: u64 = 60;

/// A message nobody could deliver in a day is usually no longer wanted.
pub const DEFAULT_TTL_SECONDS: u64 = 24 * 3600;
pub const DEFAULT_MAX_TTL_SECONDS: u64 = 7 * 24 * 3600;
/// The largest `outbox.max_ttl_seconds` the config takes: a year, far
/// beyond any message worth sending late, and far from the overflow of
/// the milliseconds an expiry time is kept in.
pub const MAX_TTL_LIMIT_SECONDS: u64 = 365 * 24 * 3600;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 12;
pub const DEFAULT_RETRY_INITIAL_MS: u64 = 2_000;
pub const DEFAULT_RETRY_MAX_MS: u64 = 10 * 60 * 1000;
/// A claim older than this is considered abandoned and is sent again.
pub const DEFAULT_LEASE_SECONDS: u64 = 300;
/// The largest `outbox.lease_seconds`: a day. A longer lease only delays
/// taking back a claim, and far larger values overflowed the milliseconds
/// the lease's end is kept in.
pub const MAX_LEASE_SECONDS: u64 = 24 * 3600;
pub const DEFAULT_SEND_TIMEOUT_SECONDS: u64 = 120;
/// How often queued messages past their TTL are marked expired.
pub const DEFAULT_EXPIRY_SWEEP_SECONDS: u64 = 30;

/// Per-endpoint concurrency and rates when `[outbox.limits]` says nothing.
pub const DEFAULT_CONCURRENCY: u32 = 4;
pub const DEFAULT_PER_SECOND: f64 = 20.0;
pub const DEFAULT_BURST: u32 = 20;
pub const DEFAULT_PER_RECIPIENT_PER_MINUTE: u32 = 30;
/// The range of `outbox.limits.*.per_second`. The rate limiter waits
/// `1 / per_second` between sends, and the dispatcher panicked when that
/// was no duration it can hold: zero (rounded, above about a billion per
/// second) or past `Duration`'s range (for tiny rates). A million per
/// second is more than any endpoint sends; one per million seconds (11.6
/// days) is as slow as a rate means anything.
pub const MIN_PER_SECOND: f64 = 1e-6;
pub const MAX_PER_SECOND: f64 = 1_000_000.0;
/// The largest `outbox.limits.*.burst`, and the longest time a whole
/// burst may take to refill at `per_second` (`(burst - 1) / per_second`,
/// about 31 years). The limiter holds that time in nanoseconds, a u64: at
/// the slowest rate (10^15 ns a send) a burst past about 18,000 wrapped
/// round (a burst that was not the one asked for) or, in a debug build,
/// panicked at start.
pub const MAX_BURST: u32 = 1_000_000;
pub const MAX_BURST_REFILL_SECONDS: f64 = 1e9;

pub const DEFAULT_LOG_LEVEL: &str = "info";

/// The relay link (`[relay]`): paths on the relay side, timings, routing.
pub const DEFAULT_RELAY_MESSAGES_PATH: &str = "/api/v1/messages";
pub const DEFAULT_RELAY_HELLO_PATH: &str = "/api/v1/bridge/hello";
pub const DEFAULT_RELAY_POLL_PATH: &str = "/api/v1/bridge/poll";
pub const DEFAULT_RELAY_ACK_PATH: &str = "/api/v1/bridge/ack";
pub const DEFAULT_RELAY_STATUS_PATH: &str = "/api/v1/bridge/status";
pub const DEFAULT_RELAY_HEARTBEAT_PATH: &str = "/api/v1/bridge/heartbeat";
pub const DEFAULT_RELAY_MEDIA_PATH: &str = "/api/v1/bridge/media";
/// The relay key written by `phonerelay pair`, inside the state dir.
pub const DEFAULT_RELAY_KEY_FILE: &str = "relay.key";
/// How long one long-poll may wait at the relay (below common proxy limits).
pub const DEFAULT_RELAY_POLL_TIMEOUT_SECONDS: u64 = 25;
/// Jobs asked for per poll.
pub const DEFAULT_RELAY_POLL_MAX_JOBS: u32 = 50;
/// The most jobs one poll may ask for: a poll's answer is read into
/// memory whole, up to a limit that grows with it (`relay::client`).
pub const MAX_RELAY_POLL_MAX_JOBS: u32 = 1000;
/// Timeout of every relay request other than the long poll.
pub const DEFAULT_RELAY_REQUEST_TIMEOUT_SECONDS: u64 = 15;
pub const DEFAULT_RELAY_HEARTBEAT_SECONDS: u64 = 30;
/// How often a running daemon reads the pairing and the relay key file
/// again, so `phonerelay pair` / `unpair` need no restart.
pub const DEFAULT_RELAY_SETTINGS_POLL_SECONDS: u64 = 5;
/// How often the status reporter looks for new status changes to report.
pub const DEFAULT_RELAY_STATUS_INTERVAL_MS: u64 = 500;
pub const DEFAULT_RELAY_RETRY_INITIAL_MS: u64 = 1_000;
pub const DEFAULT_RELAY_RETRY_MAX_MS: u64 = 5 * 60 * 1000;
/// Failed uploads of one file (timeouts, 5xx) after which its message goes
/// without it: about an hour with the default backoff, long enough for a
/// relay restart, short enough that a file the way to the relay cannot
/// carry does not hold its conversation back for good.
pub const DEFAULT_RELAY_UPLOAD_GIVE_UP_AFTER: u32 = 20;
/// The most `relay.upload_give_up_after` may be: past it, the backoff's
/// cap makes it months.
pub const MAX_RELAY_UPLOAD_GIVE_UP_AFTER: u32 = 100_000;
/// A reply more than this many days after our last message to that
/// address is not routed by conversation (it goes to `default_to`).
pub const DEFAULT_CONVERSATION_TTL_DAYS: u64 = 30;
/// How long a reply waits for a send to its sender that has no outcome
/// yet (under way, or waiting for its retry after part of it went out)
/// before it goes to `default_to` (`relay::routing::decide`).
pub const DEFAULT_UNSETTLED_WAIT_SECONDS: u64 = 300;
