use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Sending and receiving work.
    Up,
    /// Working, but something is off (weak signal, rate limited, retrying).
    Degraded,
    /// Not working now (port gone, auth rejected, not yet started).
    Down,
}

/// A snapshot an adapter reports about one endpoint, shown in `/ready`,
/// `phonerelay status` and metrics. `details` carries channel specifics
/// (signal, operator, SIM state...) as display strings; `measures` the
/// ones that are quantities, which `/metrics` exports as gauges. (A
/// detail that only looks like a number, an SMSC's phone number say, is
/// not a quantity: graphing it means nothing.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelHealth {
    pub state: HealthState,
    pub summary: String,
    pub details: BTreeMap<String, String>,
    /// Quantities, by a name that ends in their unit (`signal_dbm`); each
    /// is in `details` too.
    pub measures: BTreeMap<String, i64>,
}

impl ChannelHealth {
    pub fn up(summary: impl Into<String>) -> Self {
        Self::with_state(HealthState::Up, summary)
    }

    pub fn degraded(summary: impl Into<String>) -> Self {
        Self::with_state(HealthState::Degraded, summary)
    }

    pub fn down(summary: impl Into<String>) -> Self {
        Self::with_state(HealthState::Down, summary)
    }

    pub fn with_detail(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }

    /// A quantity: shown in `details` and exported as a gauge.
    pub fn with_measure(mut self, key: impl Into<String>, value: i64) -> Self {
        let key = key.into();
        self.details.insert(key.clone(), value.to_string());
        self.measures.insert(key, value);
        self
    }

    fn with_state(state: HealthState, summary: impl Into<String>) -> Self {
        Self {
            state,
            summary: summary.into(),
            details: BTreeMap::new(),
            measures: BTreeMap::new(),
        }
    }
}
