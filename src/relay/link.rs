//! When the relay was last reached and the last error, kept in memory and
//! in the store (so `phonerelay pair --status` and the status API see it).

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::client::RelayError;
use super::settings::{LINK, SCOPE};
use crate::clock::now_ms;
use crate::store::{Store, StoreResult};

/// Store the "last reached" time at most this often.
const PERSIST_EVERY_MS: i64 = 5_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkState {
    pub last_reached_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
    /// The relay answered 401/403: the key must be renewed (`pair`).
    #[serde(default)]
    pub key_rejected: bool,
}

/// The link's last known state; the default (never reached, no error)
/// if none was saved or it cannot be parsed, an error if the store cannot
/// be read.
pub async fn load(store: &dyn Store) -> StoreResult<LinkState> {
    let saved = store.load_cursor(SCOPE, LINK).await?;
    Ok(saved
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default())
}

pub struct Link {
    store: Arc<dyn Store>,
    state: Mutex<(LinkState, i64)>,
}

impl Link {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            state: Mutex::new((LinkState::default(), 0)),
        }
    }

    pub async fn reached(&self) {
        let now = now_ms();
        let snapshot = {
            let mut guard = self.state.lock().expect("link lock");
            let was_failing = guard.0.last_error.is_some();
            guard.0.last_reached_ms = Some(now);
            guard.0.key_rejected = false;
            if was_failing {
                tracing::info!("the relay is reachable again");
                guard.0.last_error = None;
                guard.0.last_error_at_ms = None;
            }
            if !was_failing && now - guard.1 < PERSIST_EVERY_MS {
                return;
            }
            guard.1 = now;
            guard.0.clone()
        };
        self.persist(&snapshot).await;
    }

    pub async fn failed(&self, error: &RelayError) {
        let message = error.to_string();
        let snapshot = {
            let mut guard = self.state.lock().expect("link lock");
            if guard.0.last_error.as_deref() == Some(message.as_str()) {
                return;
            }
            if error.is_key_rejected() {
                tracing::error!(
                    "the relay rejected the bridge's key ({message}); run `phonerelay pair` again"
                );
            } else {
                tracing::warn!("relay request failed: {message}");
            }
            guard.0.last_error = Some(message);
            guard.0.last_error_at_ms = Some(now_ms());
            guard.0.key_rejected = error.is_key_rejected();
            guard.0.clone()
        };
        self.persist(&snapshot).await;
    }

    async fn persist(&self, state: &LinkState) {
        if let Ok(text) = serde_json::to_string(state)
            && let Err(e) = self.store.save_cursor(SCOPE, LINK, &text).await
        {
            tracing::warn!(error = %e, "cannot record the relay link state");
        }
    }
}
