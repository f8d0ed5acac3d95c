//! Which relay, which phone_id, which key: `[relay]` first, then what
//! `phonerelay pair` recorded.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{DEFAULT_RELAY_KEY_FILE, LoadedConfig, RelayConfig};
use crate::store::Store;

/// Cursor scope of the relay link's small state.
pub const SCOPE: &str = "relay";
pub const PAIRING: &str = "pairing";
pub const LINK: &str = "link";
pub const STATUS_CURSOR: &str = "status_event_id";

/// What `phonerelay pair` recorded (in the store; the key is in its file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pairing {
    pub url: String,
    pub phone_id: String,
    /// The bridge-side key issued for the relay to push with.
    pub bridge_key_id: String,
    pub paired_at_ms: i64,
    /// SHA-256 (hex) of the relay key written with this pairing. `pair`
    /// records the pairing before it puts the key file in place
    /// (`pairing_install.rs`), so for a moment, or for good after a crash
    /// between the two, the store names the new relay and the file holds
    /// the old relay's key (and a pairing an older build made wrote them
    /// the other way round); a link started then would send a key to a
    /// relay that did not issue it. With this, it sees the two disagree
    /// and waits. None in pairings made before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_sha256: Option<String>,
}

/// What [`Pairing::key_sha256`] holds for `key`.
pub fn key_fingerprint(key: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(key.trim().as_bytes()))
}

/// The link as it runs.
#[derive(Clone)]
pub struct RelaySettings {
    /// Without a trailing slash.
    pub url: String,
    pub phone_id: String,
    pub key: crate::relay::client::RelayKey,
    pub config: RelayConfig,
    /// When the pairing these come from was made (none for a relay the
    /// config names alone): a `pair` again, even with the same relay and
    /// key, is a new link, whose refusals in a row start from zero as
    /// `pair` cleared them in the store.
    pub paired_at_ms: Option<i64>,
}

impl std::fmt::Debug for RelaySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelaySettings")
            .field("url", &self.url)
            .field("phone_id", &self.phone_id)
            .field("key", &"<hidden>")
            .finish()
    }
}

/// The relay key file: `relay.key_file`, or `relay.key` in the state dir.
pub fn key_file(loaded: &LoadedConfig) -> PathBuf {
    match &loaded.config.relay.key_file {
        Some(path) => loaded.resolve(path),
        None => loaded.state_dir().join(DEFAULT_RELAY_KEY_FILE),
    }
}

pub async fn load_pairing(store: &dyn Store) -> Option<Pairing> {
    read_pairing(store).await.ok().flatten()
}

/// The pairing, if one is recorded (`unpair` leaves an empty text, which
/// is none); `Err` when the store cannot be read.
pub(crate) async fn read_pairing(store: &dyn Store) -> Result<Option<Pairing>, String> {
    let text = store
        .load_cursor(SCOPE, PAIRING)
        .await
        .map_err(|e| e.to_string())?;
    Ok(text.as_deref().and_then(parse_pairing))
}

/// The pairing a cursor's text records; none for an empty or unreadable
/// text.
pub fn parse_pairing(text: &str) -> Option<Pairing> {
    serde_json::from_str(text).ok()
}

/// The cursor text that records `pairing` (empty for none, which
/// removes it).
pub fn pairing_text(pairing: Option<&Pairing>) -> Result<String, String> {
    match pairing {
        Some(p) => serde_json::to_string(p).map_err(|e| e.to_string()),
        None => Ok(String::new()),
    }
}

/// The pairing written alone, for tests: `pair` and `unpair` write it with
/// its bridge key in one transaction (`Store::replace_relay_pairing`).
pub async fn save_pairing(store: &dyn Store, pairing: Option<&Pairing>) -> Result<(), String> {
    let text = pairing_text(pairing)?;
    store
        .save_cursor(SCOPE, PAIRING, &text)
        .await
        .map_err(|e| e.to_string())
}

/// Whether a relay is named at all, by the config or by a pairing: what
/// decides whether inbound not yet forwarded waits for one
/// (`UnforwardedInbound`). A relay named but not yet complete counts: a
/// link is on its way. `None` when the pairing cannot be read.
pub async fn relay_named(loaded: &LoadedConfig, store: &dyn Store) -> Option<bool> {
    let relay = &loaded.config.relay;
    if relay.url.is_some() || relay.phone_id.is_some() {
        return Some(true);
    }
    read_pairing(store)
        .await
        .ok()
        .map(|pairing| pairing.is_some())
}

/// Why no link can be built from the settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unresolved {
    /// A relay is named but something is missing: the link stays off.
    #[error("{0}")]
    Incomplete(String),
    /// The pairing could not be read: whatever runs keeps running.
    #[error("cannot read the relay pairing: {0}")]
    Store(String),
    /// The relay key could not be read for now (an I/O error, too many
    /// open files), not for what its file is: whatever runs keeps running.
    #[error("{0}")]
    KeyUnreadable(String),
}

/// `Ok(None)`: no relay configured or paired (the link stays off).
/// The relay's URL and the link's phone_id: the config's where it names
/// them, else the pairing's.
pub fn link_target(
    relay: &RelayConfig,
    pairing: Option<&Pairing>,
) -> (Option<String>, Option<String>) {
    let url = relay.url.clone().or_else(|| pairing.map(|p| p.url.clone()));
    let phone_id = relay
        .phone_id
        .clone()
        .or_else(|| pairing.map(|p| p.phone_id.clone()));
    (url, phone_id)
}

pub async fn resolve(
    loaded: &LoadedConfig,
    store: &dyn Store,
) -> Result<Option<RelaySettings>, Unresolved> {
    let relay = &loaded.config.relay;
    let pairing = read_pairing(store).await.map_err(Unresolved::Store)?;
    let (url, phone_id) = match link_target(relay, pairing.as_ref()) {
        (None, None) => return Ok(None),
        (Some(url), Some(phone_id)) => (url, phone_id),
        (Some(_), None) => {
            return Err(Unresolved::Incomplete(
                "relay.url is set but no phone_id: set relay.phone_id or run `phonerelay pair`"
                    .into(),
            ));
        }
        (None, Some(_)) => {
            return Err(Unresolved::Incomplete(
                "relay.phone_id is set but no url: set relay.url or run `phonerelay pair`".into(),
            ));
        }
    };
    // A pairing an older build saved may name a URL this one refuses (a
    // user and password in it, which the link's log lines would print):
    // said without the URL.
    if !crate::config::is_relay_url(&url) {
        return Err(Unresolved::Incomplete(
            "the relay URL is not one this bridge takes (an http(s) URL with a host and no \
             user or password); run `phonerelay pair` again"
                .into(),
        ));
    }
    let file = key_file(loaded);
    // As errors show it: the key itself, typed as the file's name by
    // mistake, is not.
    let shown = phonerelay_channel::shown_secret_path(&file);
    let key = match std::fs::read_to_string(&file) {
        Ok(text) if !text.trim().is_empty() => text.trim().to_string(),
        // Too many open files (every connection streaming a file), an I/O
        // error: a reload or a settings poll met it, and turning a working
        // link off for it would cut its forwards and acks short.
        Err(e) if crate::config::read_failed_for_now(e.kind()) => {
            return Err(Unresolved::KeyUnreadable(format!(
                "cannot read the relay key {shown} for now: {e}"
            )));
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            // A key that is there but cannot be read (its mode, its owner, a
            // folder in its place) is no missing pairing: pairing again
            // would not help, and would replace the key.
            let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                "; is it readable by the service user?"
            } else {
                ""
            };
            return Err(Unresolved::Incomplete(format!(
                "cannot read the relay key {shown}: {e}{hint}"
            )));
        }
        Ok(_) | Err(_) => {
            return Err(Unresolved::Incomplete(format!(
                "no relay key in {shown}; run `phonerelay pair --relay {url} --phone-id {phone_id}`"
            )));
        }
    };
    // The pairing and the key are read apart: a `pair` that went in
    // between (the new pairing and key committed and put in place) leaves
    // the old pairing with the new key, which the check below cannot tell
    // from the right key when the old pairing, an older build's, recorded
    // no fingerprint; a link built then sent the new relay's key to the
    // old relay. Read the pairing again: changed, nothing is decided now,
    // and what runs keeps running until the next read.
    if read_pairing(store).await.map_err(Unresolved::Store)? != pairing {
        return Err(Unresolved::KeyUnreadable(
            "the relay pairing changed while it was read (a `phonerelay pair` just now); \
             read again at the next settings poll"
                .into(),
        ));
    }
    // Where the pairing names the relay (the config does not), never send
    // a key to a relay it was not paired with (and see
    // `paired_with_this_relay` for a config that names another).
    let relay_from_pairing = relay.url.is_none() || relay.phone_id.is_none();
    if let Some(paired) = pairing.as_ref().and_then(|p| p.key_sha256.as_ref())
        && relay_from_pairing
        && *paired != key_fingerprint(&key)
    {
        return Err(Unresolved::Incomplete(format!(
            "the relay key in {} is not the one the pairing recorded (a `phonerelay pair` \
             under way or cut short, or the file replaced by hand); run `phonerelay pair` again",
            file.display()
        )));
    }
    let url = super::relay_url::canonical(&url);
    if let Some(paired) = &pairing {
        paired_with_this_relay(paired, &url, &phone_id).map_err(Unresolved::Incomplete)?;
    }
    Ok(Some(RelaySettings {
        url,
        phone_id,
        key: crate::relay::client::RelayKey::new(key),
        config: relay.clone(),
        paired_at_ms: pairing.as_ref().map(|p| p.paired_at_ms),
    }))
}

/// The relay key in the key file is the pairing's (`pair` wrote it, or
/// one it replaced): sent to another relay than the paired one (a
/// `relay.url` in the config that differs), it would hand that relay a key
/// it did not issue. Refused, naming both URLs; a config-only setup (no
/// pairing recorded) is not concerned.
pub(crate) fn paired_with_this_relay(
    pairing: &Pairing,
    url: &str,
    phone_id: &str,
) -> Result<(), String> {
    if super::relay_url::same_relay(&pairing.url, url) {
        return Ok(());
    }
    Err(format!(
        "relay.url in the config ({}) is not the relay this bridge was paired with ({}), \
         and the relay key is never sent to a relay it was not paired with: run `phonerelay \
         pair --relay {} --phone-id {phone_id}` to pair with that relay, or remove relay.url \
         from the config to use the paired one",
        super::shown_url(url),
        super::shown_url(&pairing.url),
        super::shown_url(url),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    /// A config with its state dir under `dir`, and its store.
    fn config_and_store(dir: &std::path::Path) -> (LoadedConfig, SqliteStore) {
        configured_and_store(dir, "")
    }

    /// [`config_and_store`] with `relay` as the config's `[relay]` table.
    fn configured_and_store(dir: &std::path::Path, relay: &str) -> (LoadedConfig, SqliteStore) {
        let loaded = crate::config::in_dir_with_state(dir, &format!("[relay]\n{relay}"));
        let store = SqliteStore::open(&loaded.database_path()).unwrap();
        (loaded, store)
    }

    fn paired_with(key_sha256: Option<String>) -> Pairing {
        Pairing {
            url: "http://old-relay.invalid".into(),
            phone_id: "ph_1".into(),
            bridge_key_id: "k".into(),
            paired_at_ms: 1,
            key_sha256,
        }
    }

    /// The key file already holds a new relay's key while the store still
    /// names the old relay (`pair` under way): no link, so the new key is
    /// never sent to the old relay; once the pairing matches, the link is
    /// built. Pairings from before the fingerprint are used as they are.
    #[tokio::test]
    async fn a_key_file_the_pairing_did_not_record_is_not_sent() {
        let dir = tempfile::tempdir().unwrap();
        let (loaded, store) = config_and_store(dir.path());
        std::fs::write(key_file(&loaded), "new-relay-key\n").unwrap();

        let old = paired_with(Some(key_fingerprint("old-relay-key")));
        save_pairing(&store, Some(&old)).await.unwrap();
        match resolve(&loaded, &store).await {
            Err(Unresolved::Incomplete(why)) => {
                assert!(why.contains("not the one the pairing recorded"), "{why}");
                assert!(!why.contains("relay-key\n") && !why.contains("new-relay-key"));
            }
            other => panic!("a link was built: {other:?}"),
        }

        let new = paired_with(Some(key_fingerprint("new-relay-key")));
        save_pairing(&store, Some(&new)).await.unwrap();
        let settings = resolve(&loaded, &store).await.unwrap().unwrap();
        assert_eq!(settings.url, "http://old-relay.invalid");

        save_pairing(&store, Some(&paired_with(None)))
            .await
            .unwrap();
        assert!(resolve(&loaded, &store).await.unwrap().is_some());
    }

    /// Pairing with another relay in between the reads of the pairing and
    /// of the key: an old pairing without a fingerprint (an older build's)
    /// is not joined with the new relay's key, so that key never goes to
    /// the old relay; what runs keeps running until the next read.
    #[tokio::test]
    async fn a_pair_between_the_reads_of_the_pairing_and_the_key_builds_no_link() {
        struct PairInBetween {
            db: std::path::PathBuf,
            key_file: std::path::PathBuf,
            done: std::sync::atomic::AtomicBool,
        }
        impl crate::store::testing::Faults for PairInBetween {
            fn cursor_loaded(&self, name: &str) {
                if name != PAIRING || self.done.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let new = Pairing {
                    url: "http://new-relay.invalid".into(),
                    ..paired_with(Some(key_fingerprint("new-relay-key")))
                };
                let conn = rusqlite::Connection::open(&self.db).unwrap();
                conn.busy_timeout(std::time::Duration::from_secs(10))
                    .unwrap();
                conn.execute(
                    "INSERT OR REPLACE INTO cursors (scope, name, value) VALUES (?1, ?2, ?3)",
                    [SCOPE, PAIRING, &serde_json::to_string(&new).unwrap()],
                )
                .unwrap();
                std::fs::write(&self.key_file, "new-relay-key\n").unwrap();
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let (loaded, store) = config_and_store(dir.path());
        std::fs::write(key_file(&loaded), "old-relay-key\n").unwrap();
        save_pairing(&store, Some(&paired_with(None)))
            .await
            .unwrap();
        let racing = crate::store::testing::Faulty::with(
            store,
            PairInBetween {
                db: loaded.database_path(),
                key_file: key_file(&loaded),
                done: Default::default(),
            },
        );
        match resolve(&loaded, &racing).await {
            Err(Unresolved::KeyUnreadable(why)) => {
                assert!(why.contains("changed while it was read"), "{why}")
            }
            other => panic!("not left for the next read: {other:?}"),
        }
        // Read again, both are the new relay's.
        let settings = resolve(&loaded, &racing).await.unwrap().unwrap();
        assert_eq!(settings.url, "http://new-relay.invalid");
    }

    /// The relay's key typed as `relay.key_file` by mistake is not quoted
    /// by the error the link logs.
    #[tokio::test]
    async fn a_key_given_as_the_key_file_s_name_is_not_logged() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "rk_live_8f3a91c2d4e5b6a7";
        let (loaded, store) = configured_and_store(
            dir.path(),
            &format!(
                "url = \"http://relay.invalid\"\nphone_id = \"ph_1\"\nkey_file = \"{secret}\"\n"
            ),
        );
        match resolve(&loaded, &store).await {
            Err(Unresolved::Incomplete(why)) => {
                assert!(why.starts_with("no relay key in"), "{why}");
                assert!(!why.contains(secret), "{why}");
            }
            other => panic!("not refused: {other:?}"),
        }
    }

    /// A relay key file that is there but cannot be read is said as such,
    /// with the error, not as a missing pairing (whose advice, pairing
    /// again, would not help). Tests may run as root, which reads a file
    /// of mode 0000: a folder in the key's place fails for root as well.
    /// Mode 0000 is tried too when not root.
    #[tokio::test]
    async fn an_unreadable_key_file_is_said_with_its_error_not_as_no_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (loaded, store) = config_and_store(dir.path());
        save_pairing(&store, Some(&paired_with(None)))
            .await
            .unwrap();
        let file = key_file(&loaded);
        let why = |result: Result<Option<RelaySettings>, Unresolved>| match result {
            Err(Unresolved::Incomplete(why)) => why,
            other => panic!("not refused as incomplete: {other:?}"),
        };

        let missing = why(resolve(&loaded, &store).await);
        assert!(missing.starts_with("no relay key in"), "{missing}");

        std::fs::create_dir(&file).unwrap();
        let folder = why(resolve(&loaded, &store).await);
        assert!(
            folder.starts_with(&format!("cannot read the relay key {}: ", file.display()))
                && folder.contains(&std::io::Error::from_raw_os_error(libc::EISDIR).to_string()),
            "{folder}"
        );
        assert!(!folder.contains("run `phonerelay pair"), "{folder}");
        std::fs::remove_dir(&file).unwrap();

        std::fs::write(&file, "relay-key\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
        let closed = resolve(&loaded, &store).await;
        if rustix::process::geteuid().is_root() {
            assert!(closed.is_ok(), "root reads a file of mode 0000");
        } else {
            let closed = why(closed);
            assert!(
                closed.contains("Permission denied")
                    && closed.ends_with("is it readable by the service user?"),
                "{closed}"
            );
        }
    }

    /// A pairing an older build saved with a password in its URL builds
    /// no link, and the refusal does not show it.
    /// A key file that fails to read for now (an I/O error: reading
    /// `/proc/self/mem` from its start is one) is not a link to turn off:
    /// whatever runs keeps running, as when the pairing cannot be read.
    #[tokio::test]
    async fn a_key_read_that_failed_for_now_keeps_what_runs() {
        let dir = tempfile::tempdir().unwrap();
        let (loaded, store) = configured_and_store(
            dir.path(),
            "url = \"http://relay.invalid\"\nphone_id = \"ph_1\"\nkey_file = \"/proc/self/mem\"\n",
        );
        match resolve(&loaded, &store).await {
            Err(Unresolved::KeyUnreadable(why)) => {
                assert!(
                    why.contains("cannot read the relay key /proc/self/mem for now"),
                    "{why}"
                )
            }
            other => panic!("not a read that failed for now: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_paired_url_with_a_password_builds_no_link() {
        let dir = tempfile::tempdir().unwrap();
        let (loaded, store) = config_and_store(dir.path());
        std::fs::write(key_file(&loaded), "relay-key\n").unwrap();
        let pairing = Pairing {
            url: "https://bridge:s3cret@relay.invalid".into(),
            ..paired_with(None)
        };
        save_pairing(&store, Some(&pairing)).await.unwrap();
        match resolve(&loaded, &store).await {
            Err(Unresolved::Incomplete(why)) => {
                assert!(why.contains("pair` again"), "{why}");
                assert!(!why.contains("s3cret"), "{why}");
            }
            other => panic!("a link was built: {other:?}"),
        }
    }

    /// A config that names another relay than the pairing's (with the
    /// phone_id too, which once skipped every check): no link, so the
    /// paired relay's key never goes there; the refusal names both URLs
    /// and the ways out. Once paired with that relay (a trailing slash
    /// aside) the link is built, and a config-only setup, with no pairing
    /// at all, builds it as before.
    #[tokio::test]
    async fn a_config_url_other_than_the_paired_relay_s_gets_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let (loaded, store) = configured_and_store(
            dir.path(),
            "url = \"http://new-relay.invalid/\"\nphone_id = \"ph_1\"\n",
        );
        std::fs::write(key_file(&loaded), "relay-key\n").unwrap();
        let configured_only = resolve(&loaded, &store).await.unwrap().unwrap();
        assert_eq!(configured_only.url, "http://new-relay.invalid");

        let old = paired_with(Some(key_fingerprint("relay-key")));
        save_pairing(&store, Some(&old)).await.unwrap();
        match resolve(&loaded, &store).await {
            Err(Unresolved::Incomplete(why)) => {
                assert!(why.contains("(http://new-relay.invalid)"), "{why}");
                assert!(why.contains("(http://old-relay.invalid)"), "{why}");
                assert!(
                    why.contains("pair --relay http://new-relay.invalid --phone-id ph_1"),
                    "{why}"
                );
                assert!(why.contains("remove relay.url"), "{why}");
                assert!(!why.contains("relay-key"), "{why}");
            }
            other => panic!("a link was built: {other:?}"),
        }

        let new = Pairing {
            url: "http://new-relay.invalid".into(),
            ..old
        };
        save_pairing(&store, Some(&new)).await.unwrap();
        let settings = resolve(&loaded, &store).await.unwrap().unwrap();
        assert_eq!(settings.url, "http://new-relay.invalid");
    }
}
