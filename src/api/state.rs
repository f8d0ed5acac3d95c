use std::ops::Deref;
use std::sync::Arc;

use crate::config::LoadedConfig;
use crate::endpoints::Endpoints;
use crate::metrics::Metrics;
use crate::store::Store;

/// What every handler can reach. One `Arc`, because axum clones the state
/// for every request and drops it after: with one pointer that is one
/// atomic increment and one decrement per request, not one per part.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The parts behind [`AppState`].
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub endpoints: Arc<Endpoints>,
    pub config: Arc<LoadedConfig>,
    pub metrics: Arc<Metrics>,
    /// Rung on each inbound commit (a channel's or a webhook's); the
    /// relay forwarder waits on it.
    pub inbound_bell: Arc<tokio::sync::Notify>,
    /// The room webhook bodies may take at once (`webhook_budget.rs`).
    pub webhook_bodies: super::webhook_budget::WebhookBodies,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

#[cfg(test)]
impl AppState {
    /// The API's state over `store`, with no endpoints and the default
    /// settings: for calling handlers without a daemon around them.
    pub fn over(store: Arc<dyn Store>) -> Self {
        Self::over_endpoints(store, Vec::new())
    }

    /// [`Self::over`] with an endpoint for each of `channels`, none of
    /// them dispatching (their messages stay queued).
    pub fn over_endpoints(
        store: Arc<dyn Store>,
        channels: Vec<Arc<dyn phonerelay_channel::Channel>>,
    ) -> Self {
        use crate::config::Config;
        Self::new(Shared {
            store,
            endpoints: Arc::new(Endpoints::new(channels).expect("endpoints")),
            config: Arc::new(LoadedConfig {
                config: Config::default(),
                path: "test.toml".into(),
                base_dir: ".".into(),
                digest: crate::config::ConfigDigest::of(b""),
            }),
            metrics: Arc::new(Metrics::default()),
            inbound_bell: Arc::new(tokio::sync::Notify::new()),
            webhook_bodies: super::webhook_budget::WebhookBodies::new(
                crate::config::DEFAULT_MAX_WEBHOOK_BODY_BYTES,
            ),
        })
    }
}
