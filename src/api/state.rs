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
