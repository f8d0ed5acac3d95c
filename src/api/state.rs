use std::sync::Arc;

use crate::config::LoadedConfig;
use crate::endpoints::Endpoints;
use crate::metrics::Metrics;
use crate::store::Store;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub endpoints: Arc<Endpoints>,
    pub config: Arc<LoadedConfig>,
    pub metrics: Arc<Metrics>,
}
