//! A look into a store that changes nothing, for `phonerelay check`: no
//! migration, no checkpoint, no file created, and no byte of the
//! database, its WAL or its shared memory written.
//!
//! A read-only connection alone is not enough: SQLite creates the `-wal`
//! and `-shm` of a WAL database for any connection that finds them
//! missing, read-only ones too, and leaves them behind; and one that maps
//! a writable `-shm` writes its read marks there, or rebuilds the index
//! after a crash. So:
//!
//! - with a WAL beside the database (a daemon running, or one that
//!   crashed), the connection maps the `-shm` read-only (`readonly_shm`);
//!   SQLite then reads the WAL through the live writer's index, or, with
//!   no writer to keep it, rebuilds the index in its own memory;
//! - without one (every connection closed, and the last one checkpointed
//!   the WAL into the database and removed it), the database file holds
//!   every commit, and is read as it is (`immutable`), which opens
//!   nothing beside it. A daemon that starts meanwhile writes to a new
//!   WAL, not to the database, until its first checkpoint: a look that
//!   races with that may fail, which the caller reports as a look that
//!   could not be made.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::{beside, cursors, schema};
use crate::store::{StoreError, StoreResult};

/// A store opened read-only (see the module's doc).
pub struct ReadOnlyStore {
    conn: Connection,
}

impl ReadOnlyStore {
    /// The store at `path`, opened read-only; `None` if there is none.
    /// One that cannot be looked for (a state dir its caller may not
    /// enter: `check` run as another user than the daemon's) is an error,
    /// not "none": taken for none, `check` passed over the pairing it
    /// could not read and said the config was fine.
    pub fn open(path: &Path) -> StoreResult<Option<Self>> {
        match path.try_exists() {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => {
                return Err(StoreError::Unavailable(format!(
                    "cannot look for {}: {e}",
                    path.display()
                )));
            }
        }
        let wal = beside(path, "-wal");
        let shm = beside(path, "-shm");
        let query = if wal.exists() {
            // Without its `-shm`, a read-only map of it cannot be made,
            // and SQLite would create one read-write otherwise.
            if !shm.exists() {
                return Err(StoreError::Unavailable(format!(
                    "{} has a WAL but no shared-memory file beside it: it cannot be read \
                     without creating one",
                    path.display()
                )));
            }
            "readonly_shm=1"
        } else {
            "immutable=1"
        };
        let uri = format!("{}?{query}", file_uri(path));
        let conn = Connection::open_with_flags(
            uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // The daemon's writer may hold the WAL's write lock; a reader
        // waits only for a checkpoint or a recovery under way.
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(Some(Self { conn }))
    }

    /// The schema version the store is at: a store at another one than
    /// [`super::SCHEMA_VERSION`] has other tables, and is not read further.
    pub fn schema_version(&self) -> StoreResult<usize> {
        Ok(schema::user_version(&self.conn)?)
    }

    /// The cursor under (`scope`, `name`), if any.
    pub fn load_cursor(&self, scope: &str, name: &str) -> StoreResult<Option<String>> {
        cursors::read(&self.conn, scope, name)
    }
}

/// `path` as an SQLite URI (`file:`): `%`, `?` and `#` escaped, which
/// would otherwise end the path or start an escape; an absolute path
/// after an empty authority, so that one starting with `//` is no host.
fn file_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;

    let mut uri = String::from(if path.is_absolute() {
        "file://"
    } else {
        "file:"
    });
    for &byte in path.as_os_str().as_bytes() {
        match byte {
            b'%' | b'?' | b'#' => uri.push_str(&format!("%{byte:02X}")),
            // Bytes that are not UTF-8 alone, escaped too: SQLite decodes
            // them back to the same bytes.
            0x80.. => uri.push_str(&format!("%{byte:02X}")),
            _ => uri.push(byte as char),
        }
    }
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that cannot be looked for is not "no store" (a folder in
    /// its path that is a file here; a folder its caller may not enter,
    /// run as another user, alike).
    #[test]
    fn a_store_that_cannot_be_looked_for_is_an_error_not_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            ReadOnlyStore::open(&dir.path().join("phonerelay.sqlite3")),
            Ok(None)
        ));
        let not_a_folder = dir.path().join("state");
        std::fs::write(&not_a_folder, "").unwrap();
        let error = match ReadOnlyStore::open(&not_a_folder.join("phonerelay.sqlite3")) {
            Err(e) => e.to_string(),
            Ok(found) => panic!("taken for {:?}", found.is_some()),
        };
        assert!(error.contains("cannot look for"), "{error}");
    }

    #[test]
    fn a_path_becomes_a_uri_that_names_the_same_file() {
        assert_eq!(
            file_uri(Path::new("/var/lib/a b/x.sqlite3")),
            "file:///var/lib/a b/x.sqlite3"
        );
        assert_eq!(file_uri(Path::new("//host/x")), "file:////host/x");
        assert_eq!(file_uri(Path::new("st?a#t%e/x")), "file:st%3Fa%23t%25e/x");
        assert_eq!(file_uri(Path::new("/é")), "file:///%C3%A9");
    }

    /// Odd characters in the state dir's path open the store there, not
    /// another file.
    #[test]
    fn a_store_under_a_path_with_uri_characters_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("st?a#t%e é");
        std::fs::create_dir(&odd).unwrap();
        let path = odd.join("db.sqlite3");
        drop(crate::store::SqliteStore::open(&path).unwrap());
        let store = ReadOnlyStore::open(&path).unwrap().expect("a store");
        assert_eq!(
            store.schema_version().unwrap(),
            super::super::SCHEMA_VERSION
        );
    }

    #[test]
    fn no_store_is_none_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        assert!(ReadOnlyStore::open(&path).unwrap().is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
