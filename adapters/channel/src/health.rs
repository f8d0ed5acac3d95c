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
/// (signal, operator, SIM state...) as display strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelHealth {
    pub state: HealthState,
    pub summary: String,
    pub details: BTreeMap<String, String>,
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

    fn with_state(state: HealthState, summary: impl Into<String>) -> Self {
        Self {
            state,
            summary: summary.into(),
            details: BTreeMap::new(),
        }
    }
}
