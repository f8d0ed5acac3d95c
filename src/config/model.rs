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
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub channels: ChannelsConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP API listens on.
    pub listen: String,
    /// Largest request body accepted; larger gets 413.
    pub max_body_bytes: usize,
    pub request_timeout_seconds: u64,
    pub shutdown_grace_seconds: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.into(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout_seconds: DEFAULT_REQUEST_TIMEOUT_SECONDS,
            shutdown_grace_seconds: DEFAULT_SHUTDOWN_GRACE_SECONDS,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory for the SQLite database and pairing state; relative to the
    /// config file.
    pub state_dir: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            state_dir: DEFAULT_STATE_DIR.into(),
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
    pub lease_seconds: u64,
    pub send_timeout_seconds: u64,
    pub expiry_sweep_seconds: u64,
    /// Keyed by channel name (`sms`) or by phone_id; a phone_id entry wins.
    pub limits: BTreeMap<String, LimitConfig>,
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
    /// Sends in flight at once on one endpoint.
    pub concurrency: u32,
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
            concurrency: DEFAULT_CONCURRENCY,
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
pub struct ChannelsConfig {}
