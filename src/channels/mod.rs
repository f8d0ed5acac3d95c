//! The list of channel adapters the daemon knows. Adding a channel is one
//! adapter crate plus its lines here and a field in `ChannelsConfig`.

use std::sync::Arc;

use phonerelay_channel::{Channel, ConfigIssue};

use crate::config::LoadedConfig;

/// Run every configured adapter's pure `validate()`; keys come back prefixed
/// with `channels.<name>`.
pub fn validate(_loaded: &LoadedConfig) -> Vec<ConfigIssue> {
    Vec::new()
}

/// The phone_ids the config declares, across all channels.
pub fn configured_phone_ids(_loaded: &LoadedConfig) -> Vec<String> {
    Vec::new()
}

/// Build one endpoint per configured modem, number, bot, mailbox...
pub fn build(_loaded: &LoadedConfig) -> Result<Vec<Arc<dyn Channel>>, Vec<ConfigIssue>> {
    Ok(Vec::new())
}
