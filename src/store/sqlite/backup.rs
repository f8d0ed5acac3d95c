//! A consistent copy of the store while the daemon runs. Copying the file
//! with `cp` is not one: in WAL mode the newest commits live in the `-wal`
//! file until a checkpoint, and a copy taken mid-write can be torn.
//! `VACUUM INTO` reads one snapshot in a read transaction (the daemon's
//! writer goes on beside it) and writes it compacted to a new file.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::store::StoreError;

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub outbound: i64,
    pub inbound: i64,
    pub bytes: u64,
    pub schema_version: i64,
}

/// Copy the database at `db` to `out`, a file that must not exist yet. The
/// copy is made readable by its owner only (it holds messages and key
/// hashes), checked with `integrity_check` and summed up. It is written
/// under a `.partial` name, synced (`VACUUM INTO` does not sync what it
/// writes) and only then given the name `out`: a file of that name is
/// always a whole, durable copy, whatever stopped the backup. On a failure
/// the partial copy is removed, and the error says what failed.
pub fn backup(db: &Path, out: &Path) -> Result<BackupSummary, String> {
    if !db.exists() {
        return Err(format!("no store at {}", db.display()));
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
        .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    let made = copy_and_check(db, &partial)
        .map_err(|e| e.to_string())
        .and_then(|summary| {
            sync_file(&partial)?;
            // A hard link, not a rename: it fails rather than replace a file
            // that appeared at `out` meanwhile.
            std::fs::hard_link(&partial, out)
                .map_err(|e| format!("cannot name the copy {}: {e}", out.display()))?;
            sync_dir_of(out);
            Ok(summary)
        });
    let _ = std::fs::remove_file(&partial);
    made
}

fn sync_file(path: &Path) -> Result<(), String> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", path.display()))
}

/// Make a new or renamed directory entry durable, as its file is.
fn sync_dir_of(path: &Path) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
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

/// Refuse a store that another process has open (the daemon is kept out
/// by the instance lock the caller holds, but `phonerelay keys` or a
/// `sqlite3` shell may have it open): in WAL mode an exclusive lock cannot
/// be had while any other connection is open, even an idle one. Closing
/// this last connection also folds a log a crash left into the store, so
/// what is moved aside is whole. A store that is not a database any more
/// (a damaged header) is what a restore is for: it is moved aside as it is.
fn ensure_unused(db: &Path) -> Result<(), String> {
    let exclusive = || -> rusqlite::Result<()> {
        let conn = Connection::open(db)?;
        conn.busy_timeout(std::time::Duration::from_millis(200))?;
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        conn.execute_batch("BEGIN EXCLUSIVE; COMMIT")?;
        conn.close().map_err(|(_, e)| e)
    };
    match exclusive() {
        Ok(()) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            Err(format!(
                "{} is in use ({e}): stop the daemon first (systemctl stop phonerelay)",
                db.display()
            ))
        }
        Err(_) => Ok(()),
    }
}

/// Run as root (not as the service user, as the docs say), a restore
/// would leave a store only root can open, and the daemon would not start:
/// the file goes to the owner of the state dir instead.
fn give_to_state_dir_owner(db: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let Some(dir) = db.parent().and_then(|d| std::fs::metadata(d).ok()) else {
        return Ok(());
    };
    // SAFETY: geteuid cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    match new_owner(euid, dir.uid(), dir.gid()) {
        Some((uid, gid)) => std::os::unix::fs::chown(db, Some(uid), Some(gid))
            .map_err(|e| format!("cannot give {} to uid {uid}: {e}", db.display())),
        None => Ok(()),
    }
}

/// Whom a restored store should belong to: the state dir's owner, when
/// root restores into a dir someone else owns.
fn new_owner(euid: u32, dir_uid: u32, dir_gid: u32) -> Option<(u32, u32)> {
    (euid == 0 && dir_uid != 0).then_some((dir_uid, dir_gid))
}

/// What a restore did: the copy it put in place and where the store it
/// replaced went.
#[derive(Debug)]
pub struct Restored {
    pub summary: BackupSummary,
    /// The replaced store's files, renamed (none if there was no store).
    pub kept: Vec<std::path::PathBuf>,
}

/// Put the backup at `copy` in place as the store at `db`, with the daemon
/// stopped (the caller holds the instance lock, so none can start). The
/// copy is checked first, and one made by a newer PhoneRelay (a schema
/// this binary does not know) is refused. It is then written beside the
/// store under a `.restoring` name and synced, and only then does the
/// current store move: a failure before that (a full disk) leaves the
/// store as it was. The current store is not deleted: it and its `-wal`
/// and `-shm` files are renamed with `suffix`, all three, since a
/// write-ahead log left beside a restored database would be replayed into
/// it.
pub fn restore(copy: &Path, db: &Path, suffix: &str) -> Result<Restored, String> {
    let summary = check(copy).map_err(|e| format!("{}: {e}", copy.display()))?;
    let known = super::schema::MIGRATIONS.len() as i64;
    if summary.schema_version > known {
        return Err(format!(
            "{} has schema version {}, newer than this phonerelay's {known}; restore it with the version that made it",
            copy.display(),
            summary.schema_version
        ));
    }
    if db.exists() {
        ensure_unused(db)?;
    }
    let incoming = super::beside(db, ".restoring");
    // Left by a restore that failed before its rename: never in use.
    let _ = std::fs::remove_file(&incoming);
    let written = write_synced(copy, &incoming).and_then(|()| {
        if db.exists() {
            number_events_on(db, &incoming)?;
        }
        Ok(())
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&incoming);
        return Err(format!("{e}; the store was left as it was"));
    }
    const ENDINGS: [&str; 3] = ["", "-wal", "-shm"];
    let named = |ending: &str, suffix: &str| super::beside(db, &format!("{ending}{suffix}"));
    // `rename` replaces what is at its target: a suffix nothing has yet,
    // so an earlier restore's kept store is never overwritten.
    let suffix = (0..)
        .map(|n| match n {
            0 => suffix.to_string(),
            n => format!("{suffix}.{n}"),
        })
        .find(|s| ENDINGS.iter().all(|e| !named(e, s).exists()))
        .expect("some suffix is free");
    let mut kept = Vec::new();
    for ending in ENDINGS {
        let file = named(ending, "");
        if file.exists() {
            let aside = named(ending, &suffix);
            std::fs::rename(&file, &aside).map_err(|e| {
                format!(
                    "cannot move {} aside: {e}; moved so far: {kept:?}; the backup is at {}",
                    file.display(),
                    incoming.display()
                )
            })?;
            kept.push(aside);
        }
    }
    std::fs::rename(&incoming, db).map_err(|e| {
        format!(
            "cannot rename {} to {}: {e}; the replaced store is kept as {kept:?}",
            incoming.display(),
            db.display()
        )
    })?;
    sync_dir_of(db);
    Ok(Restored { summary, kept })
}

/// Number the status events of the copy at `to` on from the last one the
/// store at `from` gave out. A backup is older than the store it replaces,
/// and the relay has seen that store's event ids: it drops an event whose
/// id it already has (docs/relay-protocol.md), so ids handed out again
/// after the restore would lose those statuses. A store that cannot be
/// read (the reason for restoring, perhaps) leaves the copy as it is.
fn number_events_on(from: &Path, to: &Path) -> Result<(), String> {
    // Read-write, as the daemon opens it, so that closing it checkpoints
    // its log and removes it and the shared memory file as the daemon's
    // own close would (a read-only connection leaves both behind).
    let last = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .and_then(|live| {
            let last = live.query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'outbound_events'",
                [],
                |row| row.get::<_, i64>(0),
            );
            live.close().map_err(|(_, e)| e)?;
            last
        })
        .ok();
    let Some(last) = last else {
        return Ok(());
    };
    let fail = |e: rusqlite::Error| format!("cannot renumber {}: {e}", to.display());
    let copy = Connection::open(to).map_err(fail)?;
    let raised = copy
        .execute(
            "UPDATE sqlite_sequence SET seq = max(seq, ?1) WHERE name = 'outbound_events'",
            [last],
        )
        .map_err(fail)?;
    if raised == 0 {
        copy.execute(
            "INSERT INTO sqlite_sequence (name, seq) VALUES ('outbound_events', ?1)",
            [last],
        )
        .map_err(fail)?;
    }
    // Closed before the file is synced and renamed: nothing of it may be
    // left in a journal beside the copy.
    copy.close().map_err(|(_, e)| fail(e))?;
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", to.display()))
}

/// `copy` written to `to` (a new file, private, given to the state dir's
/// owner) and synced.
fn write_synced(copy: &Path, to: &Path) -> Result<(), String> {
    let mut target = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    give_to_state_dir_owner(to)?;
    let mut source = std::fs::File::open(copy).map_err(|e| format!("{}: {e}", copy.display()))?;
    std::io::copy(&mut source, &mut target)
        .and_then(|_| target.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", to.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::store::sqlite::schema;

    fn queue_message(conn: &Connection, id: &str) {
        conn.execute(
            "INSERT INTO outbound (id, request_hash, phone_id, channel, recipient, body,
                 priority, status, created_at, updated_at, expires_at, next_attempt_at)
             VALUES (?1, '', 'p', 'sms', '+1555', 'hi', 0, 'queued', 1, 1, 2, 1)",
            [id],
        )
        .unwrap();
    }

    fn store(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("phonerelay.sqlite3");
        let mut conn = Connection::open(&path).unwrap();
        schema::configure(&conn).unwrap();
        schema::migrate(&mut conn).unwrap();
        queue_message(&conn, "a");
        path
    }

    #[test]
    fn a_backup_is_a_private_checked_copy_with_the_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(dir.path());
        let out = dir.path().join("copy.sqlite3");
        let summary = backup(&db, &out).unwrap();
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

    /// The relay has seen the replaced store's event ids; the restored
    /// store numbers its next events after them, not after the backup's.
    #[test]
    fn a_restored_store_numbers_status_events_on_from_the_replaced_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(dir.path());
        let event = |conn: &Connection| {
            conn.execute(
                "INSERT INTO outbound_events (message_id, status, at) VALUES ('a', 'sent', 1)",
                [],
            )
            .unwrap();
            conn.last_insert_rowid()
        };
        let conn = Connection::open(&db).unwrap();
        event(&conn);
        let copy = dir.path().join("copy.sqlite3");
        backup(&db, &copy).unwrap();
        // After the backup, events the relay was told of.
        let seen = (0..5).map(|_| event(&conn)).last().unwrap();
        drop(conn);
        restore(&copy, &db, ".before-restore").unwrap();
        let conn = Connection::open(&db).unwrap();
        assert_eq!(event(&conn), seen + 1);
        assert!(
            !dir.path()
                .join("phonerelay.sqlite3.restoring-journal")
                .exists()
        );
    }

    #[test]
    fn a_restore_keeps_the_replaced_store_and_its_log_aside() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(dir.path());
        let copy = dir.path().join("copy.sqlite3");
        backup(&db, &copy).unwrap();
        // After the backup: one more message, and a log beside the store.
        let conn = Connection::open(&db).unwrap();
        queue_message(&conn, "b");
        drop(conn);
        // As a crash leaves it: a log beside the store.
        std::fs::write(dir.path().join("phonerelay.sqlite3-wal"), "stale").unwrap();
        let restored = restore(&copy, &db, ".before-restore").unwrap();
        assert_eq!(restored.summary.outbound, 1);
        assert_eq!(
            restored.kept,
            [dir.path().join("phonerelay.sqlite3.before-restore")]
        );
        assert!(!dir.path().join("phonerelay.sqlite3-wal").exists());
        let conn = Connection::open(&db).unwrap();
        let ids: Vec<String> = conn
            .prepare("SELECT id FROM outbound")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(ids, ["a"]);
        let mode = std::fs::metadata(&db).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let old = Connection::open(dir.path().join("phonerelay.sqlite3.before-restore")).unwrap();
        let count: i64 = old
            .query_row("SELECT COUNT(*) FROM outbound", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 2, "the replaced store is kept whole");
        drop(old);
        // A second restore with the same suffix keeps both replaced stores.
        let again = restore(&copy, &db, ".before-restore").unwrap();
        assert_eq!(
            again.kept,
            [dir.path().join("phonerelay.sqlite3.before-restore.1")]
        );
        assert!(
            dir.path()
                .join("phonerelay.sqlite3.before-restore")
                .exists()
        );
    }

    #[test]
    fn a_store_in_use_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(dir.path());
        let copy = dir.path().join("copy.sqlite3");
        backup(&db, &copy).unwrap();
        let daemon = Connection::open(&db).unwrap();
        schema::configure(&daemon).unwrap();
        daemon
            .query_row("SELECT COUNT(*) FROM outbound", [], |r| r.get::<_, i64>(0))
            .unwrap();
        let e = restore(&copy, &db, ".x").unwrap_err();
        assert!(e.contains("stop the daemon first"), "{e}");
        assert!(!dir.path().join("phonerelay.sqlite3.x").exists());
        drop(daemon);
        restore(&copy, &db, ".x").unwrap();
    }

    #[test]
    fn a_copy_that_is_not_a_sound_store_is_not_restored() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(dir.path());
        let junk = dir.path().join("junk.sqlite3");
        std::fs::write(&junk, vec![7u8; 8192]).unwrap();
        assert!(restore(&junk, &db, ".x").is_err());
        let newer = dir.path().join("newer.sqlite3");
        backup(&db, &newer).unwrap();
        Connection::open(&newer)
            .unwrap()
            .pragma_update(None, "user_version", 999)
            .unwrap();
        let e = restore(&newer, &db, ".x").unwrap_err();
        assert!(e.contains("newer than this phonerelay"), "{e}");
        assert!(db.exists() && !dir.path().join("phonerelay.sqlite3.x").exists());
    }

    /// A store whose header is damaged is what a restore is for: it is
    /// replaced (and kept aside), not refused as "in use".
    #[test]
    fn a_damaged_store_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(dir.path());
        let copy = dir.path().join("copy.sqlite3");
        backup(&db, &copy).unwrap();
        std::fs::write(&db, vec![0x55u8; 8192]).unwrap();
        let restored = restore(&copy, &db, ".damaged").unwrap();
        assert_eq!(restored.summary.outbound, 1);
        assert_eq!(
            restored.kept[0],
            dir.path().join("phonerelay.sqlite3.damaged")
        );
        let integrity: String = Connection::open(&db)
            .unwrap()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(integrity, "ok");
    }

    /// A restore that cannot write the copy (a full disk; here its
    /// `.restoring` name is taken by a directory) leaves the store where
    /// and as it was.
    #[test]
    fn a_restore_that_cannot_write_leaves_the_store_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(dir.path());
        let copy = dir.path().join("copy.sqlite3");
        backup(&db, &copy).unwrap();
        let before = std::fs::read(&db).unwrap();
        std::fs::create_dir(dir.path().join("phonerelay.sqlite3.restoring")).unwrap();
        let e = restore(&copy, &db, ".x").unwrap_err();
        assert!(e.contains("the store was left as it was"), "{e}");
        assert_eq!(std::fs::read(&db).unwrap(), before);
        assert!(!dir.path().join("phonerelay.sqlite3.x").exists());
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
    fn root_gives_the_restored_store_to_the_state_dir_owner() {
        assert_eq!(new_owner(0, 998, 997), Some((998, 997)));
        assert_eq!(new_owner(0, 0, 0), None);
        assert_eq!(new_owner(998, 998, 997), None, "the service user keeps it");
    }

    #[test]
    fn no_store_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("copy.sqlite3");
        let e = backup(&dir.path().join("missing.sqlite3"), &out).unwrap_err();
        assert!(e.to_string().contains("no store at"), "{e}");
        assert!(!out.exists());
    }
}
