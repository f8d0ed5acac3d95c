//! The key a rejected SIM PIN's record is made under
//! (`phonerelay_sms::PinRecordKey`): 32 random bytes in
//! `state_dir/sms-pin.key`, mode 0600, made the first time the daemon
//! starts with a modem whose PIN is configured. It is kept out of the
//! store, so that the store alone (a backup, a copy sent with a bug
//! report) cannot be searched for the PIN: the record is an HMAC of it.
//!
//! Lost, the key leaves the records unreadable: a PIN rejected before is
//! then sent once more.

use std::path::{Path, PathBuf};

use phonerelay_sms::PinRecordKey;

pub const PIN_RECORD_KEY_FILE: &str = "sms-pin.key";

/// The key's length in bytes.
const KEY_BYTES: usize = 32;

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(PIN_RECORD_KEY_FILE)
}

/// Why the key could not be had. The two ask different things of the
/// service manager: a file that holds no key stays so however often the
/// daemon restarts (a config error, exit 2, not restarted), while a full
/// disk or a failing read may pass (exit 1, restarted).
#[derive(Debug, PartialEq, Eq)]
pub enum PinKeyError {
    /// Making or reading the file failed.
    Io(String),
    /// The file is there but holds no key.
    NotAKey(String),
}

impl std::fmt::Display for PinKeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinKeyError::Io(why) | PinKeyError::NotAKey(why) => f.write_str(why),
        }
    }
}

/// The key in `state_dir`, made there if it is not yet.
pub fn load_or_create(state_dir: &Path) -> Result<PinRecordKey, PinKeyError> {
    let file = path(state_dir);
    let fresh: [u8; KEY_BYTES] = rand::random();
    crate::private_files::create_once(&file, &hex::encode(fresh))
        .map_err(|e| PinKeyError::Io(format!("cannot create {}: {e}", file.display())))?;
    let text = std::fs::read_to_string(&file)
        .map_err(|e| PinKeyError::Io(format!("cannot read {}: {e}", file.display())))?;
    parse(text.trim()).ok_or_else(|| PinKeyError::NotAKey(not_a_key_said(&file)))
}

/// What `check` says of the key, without making it: what
/// [`load_or_create`] fails with for a file there that holds no key (a
/// state dir restored by hand, a truncated file), so that `check` fails
/// on what `serve` would. A file not there (made at the first start), or
/// not readable by `check`'s user, is not said.
pub fn not_a_key(state_dir: &Path) -> Option<String> {
    let file = path(state_dir);
    let text = std::fs::read_to_string(&file).ok()?;
    parse(text.trim()).is_none().then(|| not_a_key_said(&file))
}

fn not_a_key_said(file: &Path) -> String {
    format!(
        "{} does not hold a key ({} hex digits); remove it to have a new one made \
         (a SIM PIN rejected before is then sent once more)",
        file.display(),
        KEY_BYTES * 2
    )
}

fn parse(text: &str) -> Option<PinRecordKey> {
    let bytes: [u8; KEY_BYTES] = hex::decode(text).ok()?.try_into().ok()?;
    Some(PinRecordKey::new(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_and_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        load_or_create(&state_dir).unwrap();
        let first = std::fs::read_to_string(path(&state_dir)).unwrap();
        load_or_create(&state_dir).unwrap();
        assert_eq!(std::fs::read_to_string(path(&state_dir)).unwrap(), first);
        assert_eq!(first.trim().len(), KEY_BYTES * 2);
    }

    #[test]
    fn a_file_that_holds_no_key_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path()), "not a key\n").unwrap();
        let e = load_or_create(dir.path()).unwrap_err();
        assert!(
            matches!(&e, PinKeyError::NotAKey(why) if why.contains("does not hold a key")),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(path(dir.path())).unwrap(),
            "not a key\n"
        );
    }

    #[test]
    fn a_state_dir_that_cannot_be_made_is_an_io_failure_not_a_bad_key() {
        // A full disk or a failing read may pass, so it must not read as a
        // config error (which the service manager does not restart).
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, "a file, not a folder").unwrap();
        let e = load_or_create(&blocker.join("state")).unwrap_err();
        assert!(
            matches!(&e, PinKeyError::Io(why) if why.contains("cannot create")),
            "{e}"
        );
    }
}
