//! `phonerelay unpair`: the pairing ended in one store write, then the
//! relay key file removed.
//!
//! The bridge key's revocation and the cursors that end the pairing (the
//! pairing itself, the link's state, the refusals in a row) are one
//! transaction (`Store::replace_relay_pairing` with no new key): written
//! one by one, a failure half-way left the pairing standing with its key
//! revoked, so the relay's sends were refused while the link still ran.
//! The key file goes only after the commit: a running daemon that looks
//! in between sees no relay (link off), not a relay without a key; and a
//! failed commit leaves the pairing whole, file included.

use phonerelay_channel::CursorWrite;

use super::settings::{self, LINK, PAIRING, SCOPE};
use crate::config::LoadedConfig;
use crate::exit::ExitError;
use crate::store::{PairingChange, Store, StoreError};

/// Revoke the pairing's bridge key and remove the pairing in one store
/// write, then remove the relay key file; what was done, one line each.
pub async fn remove(
    loaded: &LoadedConfig,
    store: &dyn Store,
    now_ms: i64,
) -> Result<String, ExitError> {
    let key_file = settings::key_file(loaded);
    // A pairing that cannot be read is not taken for none: removing the
    // key file alone would leave a pairing whose key is still active.
    let pairing = settings::read_pairing(store).await.map_err(|e| {
        ExitError::Runtime(format!("cannot read the pairing: {e}; nothing removed"))
    })?;
    let had_file = key_file.exists();
    if pairing.is_none() && !had_file {
        return Err(ExitError::Config("not paired; nothing to remove".into()));
    }
    let change = PairingChange {
        revoke_key_id: pairing.as_ref().map(|p| p.bridge_key_id.clone()),
        bridge_key: None,
        now_ms,
        scope: SCOPE.to_string(),
        cursors: ending_cursors(),
        relay_move: None,
    };
    let revoked = store
        .replace_relay_pairing(change)
        .await
        .map_err(not_removed)?;
    let mut out = String::new();
    if let Some(p) = &pairing {
        if revoked {
            out.push_str(&format!("revoked the bridge key {}\n", p.bridge_key_id));
        }
        out.push_str(&format!(
            "unpaired from {} (phone_id {})\n",
            p.url, p.phone_id
        ));
    }
    if had_file {
        std::fs::remove_file(&key_file).map_err(|e| {
            ExitError::Runtime(format!(
                "{out}the pairing is removed, but the relay key {} could not be: {e}",
                phonerelay_channel::shown_secret_path(&key_file)
            ))
        })?;
        out.push_str(&format!(
            "removed the relay key {}\n",
            phonerelay_channel::shown_secret_path(&key_file)
        ));
    }
    Ok(out)
}

/// The cursors that end a pairing, emptied (an empty value removes one):
/// the pairing, the link's state and the refusals in a row, which say
/// nothing of a later pairing.
fn ending_cursors() -> Vec<CursorWrite> {
    [PAIRING, LINK, super::refusals::CURSOR]
        .into_iter()
        .map(|name| CursorWrite::new(name, ""))
        .collect()
}

/// The store did not end the pairing; nothing was removed.
fn not_removed(e: StoreError) -> ExitError {
    let what_stands = match e {
        // The commit may have been kept: the key file is still there,
        // unused, and `unpair` again removes it.
        StoreError::OutcomeUnknown(_) => {
            "it may have been removed; run `phonerelay unpair` again to finish"
        }
        _ => "the pairing and its key file are unchanged",
    };
    ExitError::Runtime(format!("cannot remove the pairing: {e}; {what_stands}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::pairing_install::install;
    use crate::relay::refusals::Refusals;
    use crate::store::SqliteStore;
    use crate::store::testing::PairingRefused;

    const URL: &str = "http://relay.invalid";

    /// A config with its state dir under `dir`, paired with [`URL`], and a
    /// store there that refuses to replace the pairing when told to; the
    /// bridge key's id.
    async fn paired(dir: &std::path::Path) -> (LoadedConfig, PairingRefused, String) {
        let loaded = crate::config::in_dir_with_state(dir, "");
        let store = PairingRefused::new(SqliteStore::open(&loaded.database_path()).unwrap());
        let installed = install(&loaded, &store, URL, "ph_1", "relay-key", 1)
            .await
            .unwrap();
        // A refusal counted against this relay, which the unpair must end.
        let mut refusals = Refusals::load(&store, URL).await;
        refusals.one_more();
        refusals.keep(&store, URL).await;
        (loaded, store, installed.bridge_key_id)
    }

    async fn active(store: &dyn Store, key_id: &str) -> bool {
        let found = store.find_key(key_id).await.unwrap();
        found.is_some_and(|k| k.revoked_at_ms.is_none())
    }

    async fn cursor(store: &dyn Store, name: &str) -> Option<String> {
        store.load_cursor(SCOPE, name).await.unwrap()
    }

    #[tokio::test]
    async fn an_unpair_revokes_the_key_and_ends_the_pairing_then_removes_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let (loaded, store, key_id) = paired(dir.path()).await;

        let said = remove(&loaded, &store, 2).await.unwrap();
        assert!(
            said.contains(&format!("revoked the bridge key {key_id}")),
            "{said}"
        );
        assert!(
            said.contains("unpaired from http://relay.invalid (phone_id ph_1)"),
            "{said}"
        );
        assert!(said.contains("removed the relay key"), "{said}");
        assert!(
            !active(&store, &key_id).await,
            "the bridge key is still active"
        );
        for name in [PAIRING, LINK, crate::relay::refusals::CURSOR] {
            assert_eq!(cursor(&store, name).await, None, "{name} is left");
        }
        assert!(!settings::key_file(&loaded).exists());
        let again = remove(&loaded, &store, 3).await.unwrap_err();
        assert!(again.to_string().contains("not paired"), "{again}");
    }

    /// Written one by one, a store that failed half-way left the pairing
    /// standing with its bridge key revoked: the relay's sends refused
    /// while the link still ran.
    #[tokio::test]
    async fn an_unpair_the_store_refuses_leaves_the_pairing_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (loaded, store, key_id) = paired(dir.path()).await;
        let link_before = cursor(&store, LINK).await;
        store.faults.refuse();

        let e = remove(&loaded, &store, 2).await.unwrap_err();
        assert!(e.to_string().contains("unchanged"), "{e}");
        assert!(active(&store, &key_id).await, "the bridge key was revoked");
        let pairing = settings::load_pairing(&store).await.unwrap();
        assert_eq!((pairing.url.as_str(), pairing.bridge_key_id), (URL, key_id));
        assert_eq!(cursor(&store, LINK).await, link_before);
        assert_eq!(Refusals::load(&store, URL).await.in_a_row(), 1);
        assert!(settings::key_file(&loaded).exists(), "the key file went");
    }
}
