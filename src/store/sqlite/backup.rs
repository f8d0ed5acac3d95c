//! A consistent copy of the store while the daemon runs. Copying the file
//! with `cp` is not one: in WAL mode the newest commits live in the `-wal`
//! file until a checkpoint, and a copy taken mid-write can be torn.
//! `VACUUM INTO` reads one snapshot in a read transaction (the daemon's
//! writer goes on beside it) and writes it compacted to a new file. The
//! way back is `restore`.

mod durable;
mod fates;
mod media_aside;
mod replaced;
mod restore;
mod swap;

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

pub use media_aside::MediaKept;
pub use replaced::{Carried, EventsFrom, FatesCarried, KeysCarried, LeftBehind, PairingFrom};
pub use restore::{Restored, restore};

use crate::store::StoreError;

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub outbound: i64,
    pub inbound: i64,
    pub bytes: u64,
    pub schema_version: i64,
}

/// A backup made: what it holds, and what went wrong without spoiling it
/// (its folder could not be synced).
#[derive(Debug)]
pub struct BackedUp {
    pub summary: BackupSummary,
    pub warnings: Vec<String>,
}

/// Copy the database at `db` to `out`, a file that must not exist yet. The
/// copy is made readable by its owner only (it holds messages and key
/// hashes), checked with `integrity_check` and summed up. It is written
/// under a `.partial` name, synced (`VACUUM INTO` does not sync what it
/// writes) and only then given the name `out`: a file of that name is
/// always a whole, durable copy, whatever stopped the backup. On a failure
/// the partial copy is removed, and the error says what failed.
pub fn backup(db: &Path, out: &Path) -> Result<BackedUp, String> {
    // A store that cannot be looked for (its folder not for this user)
    // is no missing store: said as what it is.
    match db.try_exists() {
        Ok(true) => {}
        Ok(false) => return Err(format!("no store at {}", db.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(format!("no store at {}", db.display()));
        }
        Err(e) => return Err(format!("cannot look for the store {}: {e}", db.display())),
    }
    if out.exists() {
        return Err(format!("cannot create {}: it exists", out.display()));
    }
    let partial = super::beside(out, ".partial");
    // Created here, empty and private, so the copy is never readable by
    // others, not even for a moment; VACUUM INTO accepts an empty file.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|e| match e.kind() {
            // Never taken over: it may be another backup's, under way.
            std::io::ErrorKind::AlreadyExists => format!(
                "cannot create {}: it exists; a backup to {} was stopped before it \
                 ended, or one runs now: remove it if none runs",
                partial.display(),
                out.display()
            ),
            _ => format!("cannot create {}: {e}", partial.display()),
        })?;
    let made = copy_and_check(db, &partial)
        .map_err(|e| e.to_string())
        .and_then(|summary| {
            durable::sync_file(&partial)?;
            // Never a plain rename, which would replace a file that
            // appeared at `out` meanwhile.
            durable::publish(&partial, out)
                .map_err(|e| format!("cannot name the copy {}: {e}", out.display()))?;
            let warnings = durable::sync_dir_of(out).err().into_iter().collect();
            Ok(BackedUp { summary, warnings })
        });
    // Gone already if it was renamed.
    let _ = std::fs::remove_file(&partial);
    made
}

fn copy_and_check(db: &Path, out: &Path) -> Result<BackupSummary, StoreError> {
    let source = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    source.busy_timeout(std::time::Duration::from_secs(10))?;
    let target = out
        .to_str()
        .ok_or_else(|| StoreError::Database(format!("{} is not UTF-8", out.display())))?;
    source.execute("VACUUM INTO ?1", [target])?;
    drop(source);
    check(out)
}

/// A copy's integrity and contents; an error if it fails
/// `integrity_check`.
fn check(copy_path: &Path) -> Result<BackupSummary, StoreError> {
    let copy = Connection::open_with_flags(copy_path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let integrity: String = copy.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if integrity != "ok" {
        return Err(StoreError::Database(format!(
            "the copy fails its integrity check: {integrity}"
        )));
    }
    let count = |table: &str| -> Result<i64, StoreError> {
        Ok(copy.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?)
    };
    Ok(BackupSummary {
        outbound: count("outbound")?,
        inbound: count("inbound")?,
        bytes: std::fs::metadata(copy_path).map(|m| m.len()).unwrap_or(0),
        schema_version: copy.query_row("PRAGMA user_version", [], |r| r.get(0))?,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::store::sqlite::schema;

    pub(super) fn queue_message(conn: &Connection, id: &str) {
        conn.execute(
            "INSERT INTO outbound (id, request_hash, phone_id, channel, recipient, body,
                 priority, status, created_at, updated_at, expires_at, next_attempt_at)
             VALUES (?1, '', 'p', 'sms', '+1555', 'hi', 0, 'queued', 1, 1, 2, 1)",
            [id],
        )
        .unwrap();
    }

    /// A store in `dir` with one queued message, `a`.
    pub(super) fn store(dir: &Path) -> std::path::PathBuf {
        let path = empty_store(dir);
        queue_message(&Connection::open(&path).unwrap(), "a");
        path
    }

    /// A store in `dir` with nothing in it.
    pub(super) fn empty_store(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("phonerelay.sqlite3");
        let mut conn = Connection::open(&path).unwrap();
        schema::configure(&conn).unwrap();
        schema::migrate(&mut conn).unwrap();
        path
    }

    #[test]
    fn a_backup_is_a_private_checked_copy_with_the_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(dir.path());
        let out = dir.path().join("copy.sqlite3");
        let summary = backup(&db, &out).unwrap().summary;
        assert_eq!(summary.outbound, 1);
        assert_eq!(summary.inbound, 0);
        assert_eq!(summary.schema_version, schema::MIGRATIONS.len() as i64);
        assert!(summary.bytes > 0);
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn an_existing_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(dir.path());
        let out = dir.path().join("copy.sqlite3");
        std::fs::write(&out, "precious").unwrap();
        let e = backup(&db, &out).unwrap_err();
        assert!(e.to_string().contains("cannot create"), "{e}");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious");
    }

    /// A backup that fails leaves nothing under its name, nor its partial
    /// copy; one that succeeds leaves no partial copy either.
    #[test]
    fn a_backup_is_named_only_once_whole() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.sqlite3");
        std::fs::write(&junk, vec![7u8; 8192]).unwrap();
        let out = dir.path().join("copy.sqlite3");
        assert!(backup(&junk, &out).is_err());
        assert!(!out.exists());
        assert!(!dir.path().join("copy.sqlite3.partial").exists());
        let db = store(dir.path());
        backup(&db, &out).unwrap();
        assert!(out.exists() && !dir.path().join("copy.sqlite3.partial").exists());
    }

    #[test]
    fn no_store_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("copy.sqlite3");
        let e = backup(&dir.path().join("missing.sqlite3"), &out).unwrap_err();
        assert!(e.to_string().contains("no store at"), "{e}");
        assert!(!out.exists());
    }

    /// A store that cannot be looked for (here a name too long, as a
    /// folder this user may not enter is for one not root: the tests may
    /// run as root) is not said to be missing: the operator would look for
    /// a store that is there. One under a file is missing.
    #[test]
    fn a_store_that_cannot_be_looked_for_is_not_said_to_be_missing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("copy.sqlite3");
        let e = backup(&dir.path().join("n".repeat(300)), &out).unwrap_err();
        assert!(e.contains("cannot look for the store"), "{e}");
        assert!(!out.exists());
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let e = backup(&file.join("phonerelay.sqlite3"), &out).unwrap_err();
        assert!(e.contains("no store at"), "{e}");
    }

    /// The partial copy of a backup stopped before it ended (or of one
    /// running now) is left as it is, and the error says what it may be
    /// and what to do.
    #[test]
    fn a_partial_copy_left_behind_is_named_for_what_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(dir.path());
        let out = dir.path().join("copy.sqlite3");
        let partial = dir.path().join("copy.sqlite3.partial");
        std::fs::write(&partial, "another backup's").unwrap();
        let e = backup(&db, &out).unwrap_err();
        assert!(
            e.contains("was stopped before it ended, or one runs now"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(&partial).unwrap(),
            "another backup's"
        );
        assert!(!out.exists());
    }
}
