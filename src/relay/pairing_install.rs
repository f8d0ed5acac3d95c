//! What `phonerelay pair` writes once the relay took the key: the
//! previous pairing is replaced whole, or left as it was.
//!
//! The relay key is staged beside its file first; then the store's part
//! (the previous bridge key revoked, the new one created, the pairing and
//! the link's state recorded) is committed in one transaction; the key
//! is renamed into place last. A failure before the rename changes
//! nothing that works: the previous pairing, its bridge key and its key
//! file stay as they were. A crash, or a failed rename, between the
//! commit and the rename leaves the new pairing with the previous relay's
//! key in the file: the pairing's fingerprint (`Pairing::key_sha256`)
//! does not match it, so the daemon keeps the link off and says that the
//! key file is not the one the pairing recorded (`settings::resolve`),
//! never sending that key to the new relay; running `phonerelay pair`
//! again puts it right. (A `[relay]` that names both the URL and the
//! phone_id does not go by the pairing, so the fingerprint is not asked:
//! the configured relay then gets the previous key, and refuses it if it
//! was changed, which `key_rejected` shows.)

use std::path::PathBuf;

use phonerelay_channel::CursorWrite;

use super::link::LinkState;
use super::pairing::BRIDGE_KEY_NAME;
use super::settings::{self, LINK, PAIRING, Pairing, SCOPE};
use crate::config::LoadedConfig;
use crate::exit::ExitError;
use crate::keys;
use crate::private_files;
use crate::store::{PairingChange, Scope, Store, StoreError};

/// A pairing in place.
pub struct Installed {
    /// The bridge-side key, clear text: print once, then forget.
    pub bridge_key: String,
    pub bridge_key_id: String,
    pub key_file: PathBuf,
}

/// Replace the pairing with one to the relay at `url` as `phone_id`,
/// whose key is `key` (checked with the relay already).
pub async fn install(
    loaded: &LoadedConfig,
    store: &dyn Store,
    url: &str,
    phone_id: &str,
    key: &str,
    now_ms: i64,
) -> Result<Installed, ExitError> {
    // Read as an error, not as no pairing: its bridge key would stay
    // active beside the new one.
    let previous = settings::read_pairing(store)
        .await
        .map_err(|e| ExitError::Runtime(format!("cannot read the current pairing: {e}")))?;
    let key_file = settings::key_file(loaded);
    let staged = private_files::stage(&key_file, key).map_err(|e| {
        ExitError::Runtime(format!(
            "cannot write {}: {e}",
            phonerelay_channel::shown_secret_path(&key_file)
        ))
    })?;
    let issued = keys::issue(
        BRIDGE_KEY_NAME,
        vec![Scope::Send, Scope::Read],
        Some(phone_id.to_string()),
        now_ms,
    );
    let bridge_key_id = issued.record.key_id.clone();
    let pairing = Pairing {
        url: url.to_string(),
        phone_id: phone_id.to_string(),
        bridge_key_id: bridge_key_id.clone(),
        paired_at_ms: now_ms,
        key_sha256: Some(settings::key_fingerprint(key)),
    };
    let relay_move = super::reported_relay::move_for_pairing(store, previous.as_ref(), url)
        .await
        .map_err(|e| {
            ExitError::Runtime(format!(
                "cannot read which relay the status events go to: {e}; the previous pairing is unchanged"
            ))
        })?;
    let change = PairingChange {
        revoke_key_id: previous.map(|p| p.bridge_key_id),
        bridge_key: Some(issued.record),
        now_ms,
        scope: SCOPE.to_string(),
        cursors: pairing_cursors(&pairing, now_ms)?,
        relay_move,
    };
    // Dropped on a failure, the staged key is removed: the key file in
    // place still matches the pairing that still stands.
    store
        .replace_relay_pairing(change)
        .await
        .map_err(not_recorded)?;
    staged.install().map_err(|e| {
        ExitError::Runtime(format!(
            "the pairing is recorded, but the relay key could not be put in {}: {e}; \
             the link stays off until `phonerelay pair` is run again",
            phonerelay_channel::shown_secret_path(&key_file)
        ))
    })?;
    Ok(Installed {
        bridge_key: issued.clear,
        bridge_key_id,
        key_file,
    })
}

/// The cursors recorded with the keys: the pairing, the link's state as
/// just reached (by the hello that checked the key), and no refusals in a
/// row: those of an earlier pairing with the same relay (another key,
/// another phone_id) say nothing of this one.
fn pairing_cursors(pairing: &Pairing, now_ms: i64) -> Result<Vec<CursorWrite>, ExitError> {
    let pairing_text = settings::pairing_text(Some(pairing)).map_err(ExitError::Runtime)?;
    let reached = LinkState {
        last_reached_ms: Some(now_ms),
        ..LinkState::default()
    };
    let link_text = serde_json::to_string(&reached)
        .map_err(|e| ExitError::Runtime(format!("cannot record the link's state: {e}")))?;
    Ok(vec![
        CursorWrite::new(PAIRING, pairing_text),
        CursorWrite::new(LINK, link_text),
        CursorWrite::new(super::refusals::CURSOR, ""),
    ])
}

/// The store did not record the pairing; the key file was left as it is.
fn not_recorded(e: StoreError) -> ExitError {
    let what_stands = match e {
        // The commit may have been kept: the key file then no longer
        // matches the pairing, and the link stays off until a new `pair`.
        StoreError::OutcomeUnknown(_) => {
            "it may have been recorded without its relay key; run `phonerelay pair` again"
        }
        _ => "the previous pairing is unchanged",
    };
    ExitError::Runtime(format!("cannot record the pairing: {e}; {what_stands}"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::store::SqliteStore;
    use crate::store::testing::PairingRefused;

    const OLD_URL: &str = "http://old-relay.invalid";
    const NEW_URL: &str = "http://new-relay.invalid";

    /// A config with its state dir under `dir`, and a store there that
    /// refuses to replace the pairing when told to.
    fn config_and_store(dir: &std::path::Path) -> (LoadedConfig, PairingRefused) {
        let loaded = crate::config::in_dir_with_state(dir, "");
        let store = SqliteStore::open(&loaded.database_path()).unwrap();
        (loaded, PairingRefused::new(store))
    }

    /// Whether the bridge key `key_id` is there and active.
    async fn active(store: &dyn Store, key_id: &str) -> bool {
        let found = store.find_key(key_id).await.unwrap();
        found.is_some_and(|k| k.revoked_at_ms.is_none())
    }

    /// The state dir's names but the store's files.
    fn names_in(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with("phonerelay.sqlite3"))
            .collect();
        names.sort();
        names
    }

    /// The key file's text and mode.
    fn key_file_of(loaded: &LoadedConfig) -> (String, u32) {
        let file = settings::key_file(loaded);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        (std::fs::read_to_string(&file).unwrap(), mode)
    }

    /// A re-pair whose store write fails leaves the previous pairing
    /// working: the pairing, its bridge key active and alone, the key
    /// file with the previous key (mode 600, nothing staged left beside
    /// it), so the daemon's link still builds. `pair` overwrote the key
    /// file first and wrote the store in steps: the key file then held
    /// the new relay's key under the old pairing (no link), and a failure
    /// after the revocation left no bridge key at all.
    #[tokio::test]
    async fn a_re_pair_the_store_refuses_leaves_the_previous_pairing_working() {
        let dir = tempfile::tempdir().unwrap();
        let (loaded, store) = config_and_store(dir.path());
        let first = install(&loaded, &store, OLD_URL, "ph_1", "old-key", 1)
            .await
            .unwrap();

        store.faults.refuse();
        let refused = install(&loaded, &store, NEW_URL, "ph_2", "new-key", 2).await;
        let Err(ExitError::Runtime(why)) = refused else {
            panic!("not refused as a runtime error")
        };
        assert!(why.contains("the previous pairing is unchanged"), "{why}");

        let pairing = settings::load_pairing(&store).await.unwrap();
        assert_eq!(pairing.url, OLD_URL);
        assert_eq!(pairing.bridge_key_id, first.bridge_key_id);
        assert!(active(&store, &first.bridge_key_id).await, "revoked");
        let keys = store.list_keys().await.unwrap();
        assert_eq!(keys.len(), 1, "another key was made: {keys:?}");
        assert_eq!(key_file_of(&loaded), ("old-key\n".into(), 0o600));
        assert_eq!(names_in(&loaded.state_dir()), ["relay.key"]);
        let link = settings::resolve(&loaded, &store).await.unwrap().unwrap();
        assert_eq!(link.url, OLD_URL);
    }

    /// A re-pair that goes through revokes the previous bridge key and
    /// puts the new pairing in place whole: its bridge key, its key file
    /// (mode 600, nothing staged left beside it) and a link to the new
    /// relay.
    #[tokio::test]
    async fn a_re_pair_revokes_the_old_bridge_key_and_installs_the_new_pairing() {
        let dir = tempfile::tempdir().unwrap();
        let (loaded, store) = config_and_store(dir.path());
        let first = install(&loaded, &store, OLD_URL, "ph_1", "old-key", 1)
            .await
            .unwrap();
        let second = install(&loaded, &store, NEW_URL, "ph_2", "new-key", 2)
            .await
            .unwrap();

        assert!(!active(&store, &first.bridge_key_id).await, "not revoked");
        assert!(active(&store, &second.bridge_key_id).await);
        let (_, secret) = keys::parse(&second.bridge_key).unwrap();
        let record = store.find_key(&second.bridge_key_id).await.unwrap();
        assert!(keys::verify(&record.unwrap(), secret));
        let pairing = settings::load_pairing(&store).await.unwrap();
        assert_eq!(
            (pairing.url.as_str(), pairing.phone_id.as_str()),
            (NEW_URL, "ph_2")
        );
        assert_eq!(pairing.bridge_key_id, second.bridge_key_id);
        assert_eq!(key_file_of(&loaded), ("new-key\n".into(), 0o600));
        assert_eq!(names_in(&loaded.state_dir()), ["relay.key"]);
        let link = settings::resolve(&loaded, &store).await.unwrap().unwrap();
        assert_eq!(
            (link.url.as_str(), link.phone_id.as_str()),
            (NEW_URL, "ph_2")
        );
        let state = super::super::link::load(&store).await.unwrap();
        assert_eq!(state.last_reached_ms, Some(2));
    }

    /// The newest outbound message's seq, after accepting one more from
    /// the relay as `relay_id`.
    async fn accept_from_relay(store: &dyn Store, relay_id: &str) -> i64 {
        let message = crate::store::testing::queued_sms(relay_id, 1);
        store
            .accept_relay_outbound(message, relay_id.into())
            .await
            .unwrap();
        store.last_outbound_seq().await.unwrap()
    }

    /// What the store records as the relay the status events go to.
    async fn reported_to(store: &dyn Store) -> Option<(String, i64)> {
        let text = store
            .load_cursor(SCOPE, super::super::reported_relay::CURSOR)
            .await
            .unwrap()?;
        let record: crate::store::ReportedRelay = serde_json::from_str(&text).unwrap();
        Some((record.url, record.after_seq))
    }

    /// A pair with another relay records the move with its bridge key:
    /// the messages accepted before it are the old relay's, those after
    /// it the new one's, whether or not the daemon's link to the new
    /// relay has started. Recorded when that link started, the new
    /// relay's messages accepted meanwhile (its key file unreadable by
    /// the service user, say) were taken for the old one's, and their
    /// status events never reached it. A pair again with the same relay
    /// (a new key), however its URL is spelled, moves nothing.
    #[tokio::test]
    async fn a_pair_with_another_relay_records_the_move_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let (loaded, store) = config_and_store(dir.path());
        install(&loaded, &store, OLD_URL, "ph_1", "old-key", 1)
            .await
            .unwrap();
        assert_eq!(reported_to(&store).await, None, "the first relay");
        let old_relay_s = accept_from_relay(&store, "r-old").await;

        install(&loaded, &store, NEW_URL, "ph_1", "new-key", 2)
            .await
            .unwrap();
        assert_eq!(
            reported_to(&store).await,
            Some((NEW_URL.to_string(), old_relay_s))
        );
        let new_relay_s = accept_from_relay(&store, "r-new").await;
        assert!(new_relay_s > old_relay_s);

        // The same relay, its URL spelled otherwise.
        let spelled_otherwise = "HTTP://New-Relay.invalid:80/";
        install(&loaded, &store, spelled_otherwise, "ph_1", "newer-key", 3)
            .await
            .unwrap();
        assert_eq!(
            reported_to(&store).await,
            Some((NEW_URL.to_string(), old_relay_s)),
            "the same relay: no move"
        );
    }

    /// A pairing made again with the same relay starts its refusals in a
    /// row from none: an earlier pairing's three would have the first
    /// refusal of one bad message hold the whole queue.
    #[tokio::test]
    async fn a_re_pair_with_the_same_relay_counts_its_refusals_from_none() {
        use super::super::refusals::Refusals;

        let dir = tempfile::tempdir().unwrap();
        let (loaded, store) = config_and_store(dir.path());
        install(&loaded, &store, OLD_URL, "ph_1", "old-key", 1)
            .await
            .unwrap();
        let mut refusals = Refusals::load(&store, OLD_URL).await;
        for _ in 0..3 {
            assert!(!refusals.next_holds());
            refusals.one_more();
        }
        refusals.keep(&store, OLD_URL).await;
        assert!(Refusals::load(&store, OLD_URL).await.next_holds(), "kept");

        install(&loaded, &store, OLD_URL, "ph_2", "new-key", 2)
            .await
            .unwrap();
        let after = Refusals::load(&store, OLD_URL).await;
        assert!(
            !after.next_holds(),
            "the first refusal is the first in a row"
        );
    }

    /// A crash between the store's commit and the key file's rename
    /// leaves the new pairing with the previous relay's key in the file:
    /// the daemon builds no link, so that key never goes to the new
    /// relay, and says the file is not the pairing's; a `pair` run again
    /// puts it right.
    #[tokio::test]
    async fn a_pair_cut_short_before_its_key_file_is_said_and_mended_by_a_new_pair() {
        let dir = tempfile::tempdir().unwrap();
        let (loaded, store) = config_and_store(dir.path());
        let first = install(&loaded, &store, OLD_URL, "ph_1", "old-key", 1)
            .await
            .unwrap();
        // What the crash leaves: the store's part of a re-pair, committed.
        let issued = keys::issue(BRIDGE_KEY_NAME, vec![Scope::Send], None, 2);
        let pairing = Pairing {
            url: NEW_URL.into(),
            phone_id: "ph_2".into(),
            bridge_key_id: issued.record.key_id.clone(),
            paired_at_ms: 2,
            key_sha256: Some(settings::key_fingerprint("new-key")),
        };
        let change = PairingChange {
            revoke_key_id: Some(first.bridge_key_id),
            bridge_key: Some(issued.record),
            now_ms: 2,
            scope: SCOPE.into(),
            cursors: pairing_cursors(&pairing, 2).unwrap(),
            relay_move: None,
        };
        store.replace_relay_pairing(change).await.unwrap();
        match settings::resolve(&loaded, &store).await {
            Err(settings::Unresolved::Incomplete(why)) => {
                assert!(why.contains("is not the one the pairing recorded"), "{why}");
                assert!(why.contains("run `phonerelay pair` again"), "{why}");
            }
            other => panic!("a link was built: {other:?}"),
        }

        install(&loaded, &store, NEW_URL, "ph_2", "new-key", 3)
            .await
            .unwrap();
        let link = settings::resolve(&loaded, &store).await.unwrap().unwrap();
        assert_eq!(link.url, NEW_URL);
    }
}
