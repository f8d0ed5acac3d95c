//! `phonerelay pair`, `pair --status` and `unpair`: check the relay key
//! with an authenticated call, keep it in a 0600 file, and issue the
//! bridge-side key the relay pushes with. The keys are never printed in
//! errors or logs; only the new bridge key is printed, once.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::client::{RelayClient, RelayError, RelayKey};
use super::link;
use super::pairing_install::install;
use super::settings;
use crate::clock::{now_ms, rfc3339};
use crate::config::LoadedConfig;
use crate::exit::ExitError;
use crate::store::Store;

/// Name of the bridge-side key in `phonerelay keys list`.
pub const BRIDGE_KEY_NAME: &str = "relay";

pub struct PairOutcome {
    /// The bridge-side key, clear text: print once, then forget.
    pub bridge_key: String,
    pub bridge_key_id: String,
    pub key_file: PathBuf,
    pub relay_answer: Value,
}

/// The error code a relay answers hello with (404) for a phone_id it
/// does not know (docs/relay-protocol.md).
const UNKNOWN_PHONE_ID: &str = "unknown_phone_id";

/// Check the key with the relay's hello call; each failure an admin can
/// meet becomes one line and its own exit code.
pub async fn check(
    loaded: &LoadedConfig,
    url: &str,
    phone_id: &str,
    key: &str,
) -> Result<Value, ExitError> {
    let relay = &loaded.config.relay;
    let client = RelayClient::with(
        url,
        RelayKey::new(key.to_string()),
        Duration::from_secs(relay.request_timeout_seconds),
    )
    .map_err(|e| ExitError::Runtime(e.to_string()))?;
    let body = json!({
        "phone_id": phone_id,
        "bridge_version": env!("CARGO_PKG_VERSION"),
        "mode": relay.mode,
    });
    let answer = client
        .post(&relay.paths.hello, &body, None, None)
        .await
        .map_err(|e| explain(&e, url, phone_id))?;
    // A pChat relay answers hello with a JSON object; any web server
    // answers 200 with a page, so that is no proof of a relay.
    if !answer.is_object() {
        let not_a_relay = RelayError::BadAnswer {
            path: relay.paths.hello.clone(),
            reason: "not a JSON object".into(),
        };
        return Err(explain(&not_a_relay, url, phone_id));
    }
    Ok(answer)
}

pub fn explain(error: &RelayError, url: &str, phone_id: &str) -> ExitError {
    match error {
        RelayError::Unreachable { reason, .. } => ExitError::Runtime(format!(
            "cannot reach the relay at {url}: {reason} (check the URL and that the relay is up)"
        )),
        RelayError::Tls { reason, .. } => ExitError::Config(format!(
            "TLS with the relay at {url} failed: {reason} (an https:// URL to a plain-HTTP port, or a certificate this host does not trust?)"
        )),
        RelayError::Timeout { .. } => ExitError::Runtime(format!(
            "the relay at {url} did not answer in time (relay.request_timeout_seconds)"
        )),
        RelayError::Http {
            status: status @ (401 | 403),
            ..
        } => ExitError::Rejected(format!(
            "the relay rejected the key (HTTP {status}): use the key the relay issued for phone_id {phone_id:?}"
        )),
        RelayError::Http {
            status: 404, code, ..
        } if code == UNKNOWN_PHONE_ID => ExitError::Rejected(format!(
            "the relay does not know phone_id {phone_id:?} (HTTP 404): check --phone-id against the relay"
        )),
        // Any server answers 404 for a path it does not have: a wrong URL
        // or path prefix, a proxy in front, a relay without the bridge API.
        // Fixed in the command line or the config, like a TLS mismatch.
        RelayError::Http {
            status: 404, path, ..
        } => ExitError::Config(format!(
            "no bridge API at {url}{path} (404): check --relay and relay.paths.hello"
        )),
        RelayError::Http {
            status,
            code,
            message,
            ..
        } => ExitError::Runtime(format!(
            "the relay answered HTTP {status} ({code}: {message})"
        )),
        RelayError::BadAnswer { reason, .. } => ExitError::Runtime(format!(
            "the relay at {url} sent an unreadable answer ({reason}); is this a pChat relay?"
        )),
        e @ RelayError::TooLarge { .. } => {
            ExitError::Runtime(format!("{e}; is this a pChat relay?"))
        }
    }
}

pub fn validate_inputs(url: &str, phone_id: &str, key: &str) -> Result<(), ExitError> {
    if !crate::config::is_relay_url(url) {
        return Err(ExitError::Config(
            "--relay must be an http:// or https:// URL with a host and no user, password, query or fragment".into(),
        ));
    }
    if phone_id.trim().is_empty() || phone_id.len() > 128 {
        return Err(ExitError::Config(
            "--phone-id must be 1 to 128 characters".into(),
        ));
    }
    if key.is_empty() {
        return Err(ExitError::Config(
            "no relay key given: pipe it on stdin or use --key-file".into(),
        ));
    }
    if key.contains(char::is_whitespace) || key.len() > 4096 {
        return Err(ExitError::Config(
            "the relay key must be one token without spaces".into(),
        ));
    }
    Ok(())
}

/// Check the key with the relay, then replace the pairing, whole or not
/// at all (`pairing_install.rs`): the relay key, the bridge key and the
/// pairing.
pub async fn pair(
    loaded: &LoadedConfig,
    store: &dyn Store,
    url: &str,
    phone_id: &str,
    key: &str,
) -> Result<PairOutcome, ExitError> {
    validate_inputs(url, phone_id, key)?;
    let url = &super::relay_url::canonical(url);
    let relay_answer = check(loaded, url, phone_id, key).await?;
    let installed = install(loaded, store, url, phone_id, key, now_ms()).await?;
    Ok(PairOutcome {
        bridge_key: installed.bridge_key,
        bridge_key_id: installed.bridge_key_id,
        key_file: installed.key_file,
        relay_answer,
    })
}

/// What `pair --status` prints; `Err` when not paired.
pub async fn status(loaded: &LoadedConfig, store: &dyn Store) -> Result<String, ExitError> {
    let pairing = settings::load_pairing(store).await;
    let relay = &loaded.config.relay;
    let (url, phone_id) = settings::link_target(relay, pairing.as_ref());
    let key_file = settings::key_file(loaded);
    let (Some(url), Some(phone_id)) = (url, phone_id) else {
        return Err(ExitError::Config(
            "not paired: run `phonerelay pair --relay URL --phone-id ID` with the relay key on stdin"
                .into(),
        ));
    };
    let mode = match relay.mode {
        crate::config::RelayMode::Push => "push",
        crate::config::RelayMode::Pull => "pull",
    };
    let mut out = format!(
        "relay:       {}\nphone_id:    {phone_id}\nmode:        {mode}\n",
        super::shown_url(&url)
    );
    let key_state = match std::fs::metadata(&key_file) {
        Ok(meta) => {
            use std::os::unix::fs::PermissionsExt;
            format!("present, mode {:o}", meta.permissions().mode() & 0o777)
        }
        Err(_) => "MISSING".into(),
    };
    out.push_str(&format!(
        "key file:    {} ({key_state})\n",
        phonerelay_channel::shown_secret_path(&key_file)
    ));
    match &pairing {
        Some(p) => {
            // A read that failed is not a revoked key: that would send
            // the operator to pair again for nothing.
            let key_state = match store.find_key(&p.bridge_key_id).await {
                Ok(Some(k)) if k.revoked_at_ms.is_none() => "active".to_string(),
                Ok(_) => "revoked".to_string(),
                Err(e) => format!("unknown: cannot read the store: {e}"),
            };
            out.push_str(&format!(
                "paired at:   {}\nbridge key:  {} ({key_state})\n",
                rfc3339(p.paired_at_ms),
                p.bridge_key_id,
            ));
        }
        None => out.push_str("paired at:   (from [relay] in the config, not by `pair`)\n"),
    }
    let link = link::load(store)
        .await
        .map_err(|e| ExitError::Runtime(format!("cannot read the relay link's state: {e}")))?;
    out.push_str(&format!(
        "last reached: {}\n",
        link.last_reached_ms
            .map(rfc3339)
            .unwrap_or_else(|| "never".into())
    ));
    if let Some(error) = &link.last_error {
        out.push_str(&format!(
            "last error:  {} ({})\n",
            // The relay's words: one line, no escape reaches the terminal.
            crate::cli::terminal::one_line(error),
            link.last_error_at_ms.map(rfc3339).unwrap_or_default()
        ));
    }
    if let Ok(counts) = store.relay_inbound_counts().await {
        out.push_str(&format!(
            "inbound:     {} pending, {} dead letters\n",
            counts.pending, counts.dead
        ));
    }
    Ok(out)
}

/// Revoke the bridge key and remove the pairing in one store write, then
/// the relay key file (`pairing_remove.rs`).
pub async fn unpair(loaded: &LoadedConfig, store: &dyn Store) -> Result<String, ExitError> {
    super::pairing_remove::remove(loaded, store, now_ms()).await
}
