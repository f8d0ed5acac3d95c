//! What `check` says about the pairing `phonerelay pair` recorded in the
//! store. The relay knows the bridge by the pairing's phone_id, and the
//! bridge key it pushes with is bound to it, so a phone_id no endpoint has
//! leaves every send refused, as a `relay.phone_id` no endpoint has would
//! (`check_relay::relay_phone_id_without_endpoint`).
//!
//! The store is only looked at ([`ReadOnlyStore`]): `check` changes
//! nothing, and a store at another schema version is left to `serve`.

use std::path::Path;

use phonerelay_channel::ConfigIssue;

use super::check_relay::quoted_list;
use crate::config::LoadedConfig;
use crate::relay::settings::{PAIRING, Pairing, SCOPE, parse_pairing};
use crate::store::StoreError;
use crate::store::sqlite::{ReadOnlyStore, SCHEMA_VERSION};

/// What the look at the stored pairing found worth saying.
#[derive(Debug)]
pub enum PairingFinding {
    /// The pairing could not be checked; not a problem of the config.
    Note(String),
    /// The pairing's phone_id is no endpoint's.
    Issue(ConfigIssue),
}

/// A `relay.url` that is not the paired relay's (the link would stay off,
/// as `serve` says only in its log), or a pairing whose phone_id no
/// endpoint has; nothing without a store or a pairing, a note when the
/// store cannot be read as it is.
pub fn stored_pairing_finding(loaded: &LoadedConfig) -> Option<PairingFinding> {
    let pairing = match stored_pairing(&loaded.database_path()) {
        Ok(pairing) => pairing?,
        Err(note) => return Some(PairingFinding::Note(note)),
    };
    if let Some(url) = &loaded.config.relay.url {
        let phone_id = loaded
            .config
            .relay
            .phone_id
            .as_deref()
            .unwrap_or(&pairing.phone_id);
        if let Err(why) = crate::relay::settings::paired_with_this_relay(&pairing, url, phone_id) {
            return Some(PairingFinding::Issue(ConfigIssue::new("relay.url", why)));
        }
    }
    // The same phone_id in `relay.phone_id` is reported under that key.
    if loaded.config.relay.phone_id.as_ref() == Some(&pairing.phone_id) {
        return None;
    }
    let configured = crate::channels::configured_phone_ids(loaded);
    if configured.contains(&pairing.phone_id) {
        // Another one overrides the pairing's, as `pair` says when it pairs;
        // said here too, where a config's slips are looked for.
        if let Some(overriding) = &loaded.config.relay.phone_id {
            let paired = &pairing.phone_id;
            return Some(PairingFinding::Note(format!(
                "note: relay.phone_id in the config ({overriding:?}) overrides the phone_id \
                 {paired:?} `phonerelay pair` recorded: the link runs as {overriding:?} with the \
                 relay key issued for {paired:?}, and the relay pushes with a bridge key bound to \
                 {paired:?}; remove relay.phone_id, or pair again as {overriding:?}"
            )));
        }
        return None;
    }
    let phone_id = &pairing.phone_id;
    Some(PairingFinding::Issue(ConfigIssue::new(
        "relay.phone_id",
        format!(
            "the pairing `phonerelay pair` recorded has phone_id {phone_id:?}, which no \
             endpoint has (configured phone_ids: {}): the relay's sends for it would be \
             refused (422 unknown_phone_id); give a modem phone_id = {phone_id:?}, or pair \
             again with an endpoint's phone_id",
            quoted_list(&configured)
        ),
    )))
}

/// The pairing recorded in the store at `path`, if both are there; `Err`
/// is the note to print when it cannot be read.
fn stored_pairing(path: &Path) -> Result<Option<Pairing>, String> {
    let unreadable = |e: StoreError| {
        format!(
            "note: cannot read {} to check the pairing `phonerelay pair` recorded: {e}",
            path.display()
        )
    };
    let Some(store) = ReadOnlyStore::open(path).map_err(unreadable)? else {
        return Ok(None);
    };
    let found = store.schema_version().map_err(unreadable)?;
    if let Some(note) = other_schema(found) {
        return Err(note);
    }
    let text = store.load_cursor(SCOPE, PAIRING).map_err(unreadable)?;
    Ok(text.as_deref().and_then(parse_pairing))
}

/// A note for a store at `found` when it is not this build's schema: its
/// tables may be others, so the pairing is not read.
fn other_schema(found: usize) -> Option<String> {
    let hint = match found.cmp(&SCHEMA_VERSION) {
        std::cmp::Ordering::Equal => return None,
        std::cmp::Ordering::Less => "run serve once to migrate",
        std::cmp::Ordering::Greater => "run the version that wrote it",
    };
    Some(format!(
        "note: store schema {found}, this build expects {SCHEMA_VERSION}: {hint} (the \
         pairing it records is not checked)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_another_schema_is_noted_with_what_to_run() {
        assert_eq!(other_schema(SCHEMA_VERSION), None);
        let older = other_schema(SCHEMA_VERSION - 1).expect("a note");
        assert!(
            older.starts_with(&format!(
                "note: store schema {}, this build expects {SCHEMA_VERSION}: run serve once to \
                 migrate",
                SCHEMA_VERSION - 1
            )),
            "{older}"
        );
        let newer = other_schema(SCHEMA_VERSION + 1).expect("a note");
        assert!(newer.contains("run the version that wrote it"), "{newer}");
    }
}
