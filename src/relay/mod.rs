//! The link to the pChat relay (see `docs/relay-protocol.md`):
//!
//! - [`forwarder`]: inbound messages, committed locally, are POSTed to the
//!   relay as pChat messages, in order per conversation, with backoff;
//! - [`pull`]: in pull mode, sends are long-polled from the relay,
//!   committed through the API's validation, then acknowledged;
//! - [`status_reporter`]: status changes of relay sends, in log order;
//! - [`heartbeat`]: the bridge and its endpoints are alive;
//! - [`pairing`]: `phonerelay pair`, `pair --status`, `unpair`.
//!
//! Every loop selects on the daemon's shutdown token and stops with it.

pub mod client;
pub mod forwarder;
pub mod heartbeat;
pub mod link;
pub mod pairing;
pub mod pull;
pub mod routing;
pub mod settings;
pub mod status_reporter;

use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::config::RelayMode;

pub use client::{RelayClient, RelayError};
pub use link::Link;
pub use settings::{Pairing, RelaySettings};

/// Start the relay tasks if a relay is configured or paired. Returns
/// whether the link runs.
pub async fn spawn(
    tasks: &mut JoinSet<()>,
    state: AppState,
    inbound_bell: Arc<Notify>,
    shutdown: CancellationToken,
) -> bool {
    let settings = match settings::resolve(&state.config, &*state.store).await {
        Ok(Some(settings)) => Arc::new(settings),
        Ok(None) => return false,
        Err(reason) => {
            tracing::warn!("the relay link is off: {reason}");
            return false;
        }
    };
    let client = match RelayClient::new(&settings) {
        Ok(client) => Arc::new(client),
        Err(e) => {
            tracing::error!("the relay link is off: {e}");
            return false;
        }
    };
    let link = Arc::new(Link::new(state.store.clone()));
    tracing::info!(url = %settings.url, phone_id = %settings.phone_id,
        mode = ?settings.config.mode, "relay link starting");
    let deps = Deps {
        state,
        settings: settings.clone(),
        client,
        link,
        shutdown,
    };
    tasks.spawn(forwarder::run(deps.clone(), inbound_bell));
    tasks.spawn(status_reporter::run(deps.clone()));
    tasks.spawn(heartbeat::run(deps.clone()));
    if settings.config.mode == RelayMode::Pull {
        tasks.spawn(pull::run(deps));
    }
    true
}

/// What every relay task holds.
#[derive(Clone)]
pub struct Deps {
    pub state: AppState,
    pub settings: Arc<RelaySettings>,
    pub client: Arc<RelayClient>,
    pub link: Arc<Link>,
    pub shutdown: CancellationToken,
}

impl Deps {
    /// Wait `ms`, or less if shutting down; false when shut down.
    pub async fn sleep_ms(&self, ms: u64) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(std::time::Duration::from_millis(ms)) => true,
        }
    }

    /// Backoff after `failures` failed tries in a row, honouring a
    /// Retry-After the relay sent.
    /// POST `body` to `path` until the relay takes it (2xx) or refuses it
    /// for good (`Some(error)`, logged by the caller); `None` when shut
    /// down first. Transient failures are retried with backoff.
    pub async fn post_until_taken(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Option<Result<(), RelayError>> {
        let mut failures = 0u32;
        loop {
            let sent = tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                sent = self.client.post(path, body, None, None) => sent,
            };
            match sent {
                Ok(_) => {
                    self.link.reached().await;
                    return Some(Ok(()));
                }
                Err(e) if e.is_permanent() => return Some(Err(e)),
                Err(e) => {
                    self.link.failed(&e).await;
                    failures = failures.saturating_add(1);
                    if !self.sleep_ms(self.backoff_ms(failures, &e)).await {
                        return None;
                    }
                }
            }
        }
    }

    pub fn backoff_ms(&self, failures: u32, error: &RelayError) -> u64 {
        let config = &self.settings.config;
        let delay =
            crate::outbox::retry_delay_ms(failures, config.retry_initial_ms, config.retry_max_ms);
        let asked = error.retry_after().map_or(0, |d| d.as_millis() as u64);
        delay.max(asked.min(config.retry_max_ms))
    }
}
