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
pub async fn ensure(store: &dyn Store, state_dir: &Path) -> Result<(), String> {
    let file = path(state_dir);
    if let Ok(text) = std::fs::read_to_string(&file)
        && let Some((key_id, secret)) = keys::parse(text.trim())
        && let Ok(Some(record)) = store.find_key(key_id).await
        && keys::verify(&record, secret)
    {
        return Ok(());
    }
    let issued = keys::issue(LOCAL_KEY_NAME, vec![Scope::Admin], None, now_ms());
    store
        .create_key(issued.record)
        .await
        .map_err(|e| format!("cannot store the local CLI key: {e}"))?;
    crate::private_files::write(&file, &issued.clear)
        .map_err(|e| format!("cannot write {}: {e}", file.display()))
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
