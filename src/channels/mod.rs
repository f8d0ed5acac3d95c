//! The list of channel adapters the daemon knows. Adding a channel is one
//! adapter crate plus its lines here and a field in `ChannelsConfig`.

use std::sync::Arc;

use phonerelay_channel::{Channel, ConfigIssue};

use crate::config::LoadedConfig;

/// Run every configured adapter's checks (its pure `validate()`, then those
/// of what it names on this host); keys come back prefixed
/// with `channels.<name>`.
pub fn validate(loaded: &LoadedConfig) -> Vec<ConfigIssue> {
    let channels = &loaded.config.channels;
    let mut issues = Vec::new();
    if let Some(sms) = &channels.sms {
        issues.extend(
            sms.check(&loaded.base_dir)
                .into_iter()
                .map(|issue| issue.under("channels.sms")),
        );
    }
    issues
}

/// The phone_ids the config declares, across all channels.
pub fn configured_phone_ids(loaded: &LoadedConfig) -> Vec<String> {
    let channels = &loaded.config.channels;
    let mut ids = Vec::new();
    if let Some(sms) = &channels.sms {
        ids.extend(sms.modems.iter().map(|m| m.phone_id.clone()));
    }
    ids
}

/// Why the endpoints could not be built.
#[derive(Debug)]
pub enum BuildError {
    /// The config, or a file it leads to, is wrong: a restart meets the
    /// same, so the operator has to act (exit 2).
    Config(Vec<ConfigIssue>),
    /// The state dir failed under a file an endpoint needs (a full disk, a
    /// failing read): it may pass, so the service manager may restart
    /// (exit 1).
    Io(String),
}

/// Build one endpoint per configured modem, number, bot, mailbox...
pub fn build(loaded: &LoadedConfig) -> Result<Vec<Arc<dyn Channel>>, BuildError> {
    let channels = &loaded.config.channels;
    let mut endpoints = Vec::new();
    let mut issues = Vec::new();
    if let Some(sms) = &channels.sms {
        let key = sms_pin_record_key(sms, loaded)?;
        match phonerelay_sms::build(sms, &loaded.base_dir, key.as_ref()) {
            Ok(built) => endpoints.extend(built),
            Err(found) => issues.extend(found.into_iter().map(|i| i.under("channels.sms"))),
        }
    }
    if issues.is_empty() {
        Ok(endpoints)
    } else {
        Err(BuildError::Config(issues))
    }
}

/// For `check`: a PIN record key file that `serve` would refuse (exit 2),
/// when a modem has a PIN configured; read only.
pub fn pin_record_key_issue(loaded: &LoadedConfig) -> Option<ConfigIssue> {
    let sms = loaded.config.channels.sms.as_ref()?;
    if !has_pin(sms) {
        return None;
    }
    crate::pin_record_key::not_a_key(&loaded.state_dir())
        .map(|why| ConfigIssue::new("storage.state_dir", why))
}

fn has_pin(sms: &phonerelay_sms::SmsConfig) -> bool {
    sms.modems
        .iter()
        .any(|m| m.pin.is_some() || m.pin_file.is_some())
}

/// The key a rejected SIM PIN's record is made under, made on first need:
/// only a modem with a PIN configured ever sends one.
fn sms_pin_record_key(
    sms: &phonerelay_sms::SmsConfig,
    loaded: &LoadedConfig,
) -> Result<Option<phonerelay_sms::PinRecordKey>, BuildError> {
    if !has_pin(sms) {
        return Ok(None);
    }
    use crate::pin_record_key::PinKeyError;
    crate::pin_record_key::load_or_create(&loaded.state_dir())
        .map(Some)
        .map_err(|e| match e {
            PinKeyError::NotAKey(why) => {
                BuildError::Config(vec![ConfigIssue::new("storage.state_dir", why)])
            }
            PinKeyError::Io(why) => BuildError::Io(format!("storage.state_dir: {why}")),
        })
}
