//! The local CLI key: `phonerelay send/status/messages` on the daemon's own
//! box authenticate with an admin key kept in the state dir, readable only
//! by the daemon's user (mode 0600), as a Unix socket's permissions would.

use std::path::{Path, PathBuf};

use crate::clock::now_ms;
use crate::keys;
use crate::store::{Scope, Store};

pub const LOCAL_KEY_FILE: &str = "cli.key";
pub const LOCAL_KEY_NAME: &str = "local-cli";

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(LOCAL_KEY_FILE)
}

/// Make sure the key file holds a valid, unrevoked key; issue one if not.
/// A new key revokes every earlier one (an admin key): an operator who
/// deletes a `cli.key` that leaked, and restarts, has the leaked key stop
/// working, rather than a second admin key beside it. The new key's file
/// is written (aside) before its record is committed, and put in place
/// after: a file that cannot be written stops the start before any key is
/// made, so restarts in a loop do not pile up keys nobody holds. A record
/// that cannot be read stops it too: issuing a key then would revoke one
/// that may be good.
pub async fn ensure(store: &dyn Store, state_dir: &Path) -> Result<(), String> {
    let file = path(state_dir);
    let loose = others_may_read(&file);
    if let Some(why) = &loose {
        // Whoever could read it may hold an admin key: a new one, and the
        // old one revoked, not a file made private again over a leak.
        tracing::warn!(
            "{} {why}; a new local CLI key is issued and the old one revoked",
            file.display()
        );
    }
    if loose.is_none()
        && let Ok(text) = std::fs::read_to_string(&file)
        && let Some((key_id, secret)) = keys::parse(text.trim())
    {
        let record = store
            .find_key(key_id)
            .await
            .map_err(|e| format!("cannot read the local CLI key's record: {e}"))?;
        if record.is_some_and(|record| keys::verify(&record, secret)) {
            return Ok(());
        }
    }
    let issued = keys::issue(LOCAL_KEY_NAME, vec![Scope::Admin], None, now_ms());
    let staged = crate::private_files::stage(&file, &issued.clear)
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    let revoked = store
        .replace_named_key(issued.record, now_ms())
        .await
        .map_err(|e| format!("cannot store the local CLI key: {e}"))?;
    staged
        .install()
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    if revoked > 0 {
        tracing::info!(
            revoked,
            "the local CLI key was issued again ({} held none that works); the earlier one is revoked",
            file.display()
        );
    }
    Ok(())
}

/// Why a key file may have been read by others than the daemon's user: a
/// mode that lets the group or anyone read it (a `cp`, a restore tool,
/// `install -m 644`). `None` if it is private, or not there. Its owner is
/// not asked: a daemon run as root on a service user's state dir hands
/// the file to that user (`private_files::give_to_folder_owner`).
fn others_may_read(file: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mode = std::fs::metadata(file).ok()?.mode() & 0o777;
    (mode & 0o044 != 0).then(|| format!("could be read by others (mode {mode:o})"))
}

pub fn read(state_dir: &Path) -> Result<String, ReadError> {
    let file = path(state_dir);
    std::fs::read_to_string(&file)
        .map(|s| s.trim().to_string())
        .map_err(|e| ReadError {
            missing: e.kind() == std::io::ErrorKind::NotFound,
            message: format!(
                "cannot read the local CLI key {}: {e} (is the daemon running, and are you its user?)",
                file.display()
            ),
        })
}

/// Why the local key could not be read.
#[derive(Debug)]
pub struct ReadError {
    /// No key file: no daemon has started on this state dir yet, which
    /// starting one puts right (unlike a file the caller may not read).
    pub missing: bool,
    pub message: String,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn active_local_keys(keys: &[crate::store::ApiKeyRecord]) -> Vec<String> {
        keys.iter()
            .filter(|k| k.name == LOCAL_KEY_NAME && k.revoked_at_ms.is_none())
            .map(|k| k.key_id.clone())
            .collect()
    }

    /// A key file others could read is issued again, whatever it holds:
    /// the key in it may have been read, and is revoked.
    #[tokio::test]
    async fn a_local_key_others_could_read_is_issued_again() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        ensure(&store, dir.path()).await.unwrap();
        let first = read(dir.path()).unwrap();
        let file = path(dir.path());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        ensure(&store, dir.path()).await.unwrap();
        let second = read(dir.path()).unwrap();
        assert_ne!(second, first, "a key others could read was kept");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (first_id, first_secret) = keys::parse(&first).unwrap();
        let record = store.find_key(first_id).await.unwrap().unwrap();
        assert!(
            !keys::verify(&record, first_secret),
            "the old key still works"
        );
    }

    /// A key file that still works is kept; one deleted (it leaked, say)
    /// is issued again at the next start, and the key it held stops
    /// working: one active local key, never two.
    #[tokio::test]
    async fn a_local_key_issued_again_revokes_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        ensure(&store, dir.path()).await.unwrap();
        let first = read(dir.path()).unwrap();
        ensure(&store, dir.path()).await.unwrap();
        assert_eq!(read(dir.path()).unwrap(), first, "a working key is kept");

        std::fs::remove_file(path(dir.path())).unwrap();
        ensure(&store, dir.path()).await.unwrap();
        let second = read(dir.path()).unwrap();
        assert_ne!(second, first);
        let (first_id, first_secret) = keys::parse(&first).unwrap();
        let record = store.find_key(first_id).await.unwrap().unwrap();
        assert!(
            !keys::verify(&record, first_secret),
            "the leaked key still works"
        );
        let (second_id, _) = keys::parse(&second).unwrap();
        assert_eq!(
            active_local_keys(&store.list_keys().await.unwrap()),
            [second_id.to_string()]
        );
    }
}
