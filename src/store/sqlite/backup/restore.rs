//! `phonerelay restore`: a backup put in place as the store, with the
//! daemon stopped.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::super::{beside, media_files};
use super::media_aside::{self, MediaKept};
use super::replaced::{self, Carried};
use super::{BackupSummary, check, durable, swap};

/// What a restore did: the copy it put in place, where the store it
/// replaced went, and what the restored store took from it.
#[derive(Debug)]
pub struct Restored {
    pub summary: BackupSummary,
    /// The replaced store's files, under their kept names (none if there
    /// was no store).
    pub kept: Vec<PathBuf>,
    pub carried: Carried,
    /// The replaced store's files the restored one has no row for.
    pub media: Option<MediaKept>,
    /// What went wrong without undoing the restore.
    pub warnings: Vec<String>,
}

/// Put the backup at `copy` in place as the store at `db`, with the daemon
/// stopped (the caller holds the instance lock, so none can start, and
/// the store lock exclusive, so no `keys`, `pair`, `unpair` or `inbound`
/// writes to the store it replaces: `store_lock.rs`). The
/// copy is checked first, and one made by a newer PhoneRelay (a schema
/// this binary does not know) is refused. It is then written beside the
/// store under a `.restoring` name (what an unfinished restore left under
/// that name removed first: [`remove_incoming`]) through SQLite, as it
/// was checked ([`write_through_sqlite`]), given what it must take over
/// from the replaced store (`replaced`), synced and checked again
/// ([`check_incoming`]), and only then does the current
/// store move: a failure before that (a full disk) leaves the store as it
/// was. The current store is not deleted: it is kept under `suffix` (with
/// a `-wal` and `-shm` if it has them), its received files that the copy
/// has no row for in `media<suffix>` (`media_aside`), and the copy then
/// takes its place in one atomic step (`swap`; a swap that fails puts the
/// replaced store's files back as they were).
pub fn restore(copy: &Path, db: &Path, suffix: &str) -> Result<Restored, String> {
    let checked = check(copy).map_err(|e| format!("{}: {e}", copy.display()))?;
    let known = super::super::schema::MIGRATIONS.len() as i64;
    if checked.schema_version > known {
        return Err(format!(
            "{} has schema version {}, newer than this phonerelay's {known}; restore it with the version that made it",
            copy.display(),
            checked.schema_version
        ));
    }
    if db.exists() {
        ensure_unused(db)?;
    }
    let incoming = beside(db, ".restoring");
    let prepared = remove_incoming(&incoming)
        .and_then(|()| write_through_sqlite(copy, &incoming))
        .and_then(|()| replaced::carry_over(db, &incoming, crate::clock::now_ms()))
        .and_then(|carried| Ok((check_incoming(&incoming)?, carried)))
        .and_then(|(summary, carried)| {
            let suffix = swap::free_suffix(db, &media_files::dir_beside(db), suffix);
            let media = media_aside::keep_unreferenced(db, &incoming, &suffix)?;
            Ok((summary, carried, suffix, media))
        });
    let (summary, carried, suffix, media) = prepared.map_err(|e| {
        let _ = remove_incoming(&incoming);
        format!("{e}; the store was left as it was")
    })?;
    let kept = match swap::swap(&incoming, db, &suffix) {
        Ok(kept) => kept,
        Err(e) => {
            if let Some(media) = media {
                media.undo();
            }
            return Err(format!(
                "{e}; the store is still at {}, the backup at {}",
                db.display(),
                incoming.display()
            ));
        }
    };
    let mut warnings: Vec<String> = durable::sync_dir_of(db).err().into_iter().collect();
    if let Some(media) = &media {
        media.finish(&mut warnings);
    }
    Ok(Restored {
        summary,
        kept,
        carried,
        media,
        warnings,
    })
}

/// What a restore that did not finish left under the copy's name: the
/// copy, and a rollback journal, log or shared memory beside it (a crash
/// during the carry-over leaves a hot journal). None is in use (the
/// caller holds the instance and store locks), and all must go before a
/// new copy is written there: SQLite plays a journal or a log it finds
/// beside a database back into it when it opens it, and these hold
/// another copy's pages. One that cannot be removed stops the restore.
fn remove_incoming(incoming: &Path) -> Result<(), String> {
    for ending in ["-journal", "-wal", "-shm", ""] {
        let file = beside(incoming, ending);
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "cannot remove {}, left by a restore that did not finish: {e}",
                    file.display()
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The copy as it will be put in place, carry-over done, checked again
/// with `integrity_check` and summed up: what the restore reports is what
/// it installs, and a copy spoiled on its way (a write that went wrong)
/// is refused before it replaces anything.
fn check_incoming(incoming: &Path) -> Result<BackupSummary, String> {
    check(incoming).map_err(|e| {
        format!(
            "{}, the copy to put in place, fails its check: {e}",
            incoming.display()
        )
    })
}

/// Refuse a store that another process has open (the daemon is kept out
/// by the instance lock the caller holds, `phonerelay keys` and the like
/// by the store lock, but a `sqlite3` shell may have it open): in WAL mode an exclusive lock cannot
/// be had while any other connection is open, even an idle one. Closing
/// this last connection also folds a log a crash left into the store, so
/// what is kept aside is whole. A store that is not a database any more
/// (a damaged header) is what a restore is for: it is kept aside as it is.
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
            // Not the daemon, kept out by the instance lock the caller
            // holds: a `phonerelay backup` running (from cron, say), or a
            // sqlite3 shell, which take neither lock.
            Err(format!(
                "{} is in use ({e}) by another process, not the daemon (a `phonerelay backup` \
                 still running, a sqlite3 shell): wait for it to end, or end it",
                db.display()
            ))
        }
        Err(_) => Ok(()),
    }
}

/// Run as root (not as the service user, as the docs say), a restore
/// would leave a store only root can open, and the daemon would not start:
/// what it makes goes to the owner of the state dir instead.
pub(super) fn give_to_state_dir_owner(file: &Path) -> Result<(), String> {
    crate::private_files::give_to_folder_owner(file).map_err(|e| {
        format!(
            "cannot give {} to the state dir's owner: {e}",
            file.display()
        )
    })
}

/// `copy` written to `to` (a new file, private, given to the state dir's
/// owner) through SQLite, by `VACUUM INTO`, not byte for byte: the copy
/// was checked and summed up through SQLite, which reads a `-wal` beside
/// it (a file-level copy, rsync or a snapshot, of a store whose newest
/// commits were still in its log), and what is installed must be what was
/// checked. Copying the file alone would drop the log's rows the restore
/// has just reported. Taking them is safer than refusing such a copy: the
/// log is part of the database as SQLite reads it (its frames are
/// checksummed, and a torn tail is left out as at any crash), and an
/// operator who has no other copy would otherwise have to fold it in by
/// hand. `to` is synced once the carry-over is done (`replaced`).
fn write_through_sqlite(copy: &Path, to: &Path) -> Result<(), String> {
    // Created here, empty and private, as a backup's is: VACUUM INTO
    // accepts an empty file, and keeps its mode.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    give_to_state_dir_owner(to)?;
    let target = to
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", to.display()))?;
    Connection::open_with_flags(copy, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|source| source.execute("VACUUM INTO ?1", [target]))
        .map(|_| ())
        .map_err(|e| format!("cannot write {} from {}: {e}", to.display(), copy.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::super::backup;
    use super::super::tests::{empty_store, queue_message, store};
    use super::*;
    use crate::store::sqlite::schema;

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

    /// A received message `external_id`, in relay state `relay_state`.
    fn receive(conn: &Connection, external_id: &str, relay_state: &str) {
        conn.execute(
            "INSERT INTO inbound (id, channel, phone_id, external_id, sender, body,
                 received_at, committed_at, relay_state)
             VALUES (?1, 'sms', 'p', ?1, '+1555', 'hi', 1, 1, ?2)",
            [external_id, relay_state],
        )
        .unwrap();
    }

    /// What was committed after the backup and is not in it (replies the
    /// SIM no longer has, sends answered 202) is not taken over: counted
    /// and named, so that the restore says what only the kept store
    /// holds. What both hold, and sends already sent, are not counted.
    #[test]
    fn a_restore_counts_the_messages_only_the_replaced_store_holds() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(dir.path());
        let conn = Connection::open(&db).unwrap();
        receive(&conn, "in-before", "pending");
        let copy = dir.path().join("copy.sqlite3");
        backup(&db, &copy).unwrap();
        receive(&conn, "in-forwarded", "delivered");
        receive(&conn, "in-pending", "pending");
        receive(&conn, "in-dead", "dead");
        queue_message(&conn, "out-queued");
        queue_message(&conn, "out-sent");
        conn.execute(
            "UPDATE outbound SET status = 'sent' WHERE id = 'out-sent'",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO inbound_unreadable (id, channel, phone_id, raw_sha256, raw, origin,
                 reason, received_at, committed_at)
             VALUES ('u', 'sms', 'p', x'01', x'00', 'pdu', 'undecodable', 1, 1)",
            [],
        )
        .unwrap();
        drop(conn);
        let restored = restore(&copy, &db, ".before-restore").unwrap();
        assert_eq!(
            restored.carried.left_behind,
            Some(replaced::LeftBehind {
                inbound: 3,
                inbound_not_forwarded: 2,
                unreadable: 1,
                outbound_unsent: 1,
            })
        );

        // Restored again from the same copy: the store it replaces now is
        // the copy itself, and nothing is left behind.
        let restored = restore(&copy, &db, ".before-restore").unwrap();
        assert_eq!(
            restored.carried.left_behind,
            Some(replaced::LeftBehind::default())
        );
    }

    /// The first column of every row `sql` reads, as text.
    fn texts(conn: &Connection, sql: &str) -> Vec<String> {
        conn.prepare(sql)
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// A store in `dir` holding `out-<send>-since` and `out-still-queued`
    /// queued, `in-<reply>-since` and `in-still-pending` waiting for the
    /// relay; its path and a connection to it.
    fn two_sends_and_two_replies(dir: &Path, send: &str, reply: &str) -> (PathBuf, Connection) {
        let db = empty_store(dir);
        let conn = Connection::open(&db).unwrap();
        for id in [format!("out-{send}-since"), "out-still-queued".into()] {
            queue_message(&conn, &id);
        }
        for id in [format!("in-{reply}-since"), "in-still-pending".into()] {
            receive(&conn, &id, "pending");
        }
        (db, conn)
    }

    /// What a message both stores hold became in the replaced store after
    /// the backup is taken over where it went further: a send it sent is
    /// sent in the restored store (with its part's id and its history),
    /// not queued to go out a second time; a reply the relay took is
    /// forwarded, not sent to the relay again; a conversation recorded
    /// since is kept. What went no further there stays as the backup has
    /// it.
    #[test]
    fn a_restore_takes_the_fates_the_replaced_store_gave_shared_messages() {
        let dir = tempfile::tempdir().unwrap();
        let (db, conn) = two_sends_and_two_replies(dir.path(), "sent", "taken");
        let copy = dir.path().join("copy.sqlite3");
        backup(&db, &copy).unwrap();
        conn.execute_batch(
            "UPDATE outbound SET status = 'sent', attempts = 1, updated_at = 5
                 WHERE id = 'out-sent-since';
             INSERT INTO outbound_parts (channel, phone_id, external_id, message_id, part)
                 VALUES ('sms', 'p', 'mr:7', 'out-sent-since', 0);
             INSERT INTO outbound_events (message_id, status, at)
                 VALUES ('out-sent-since', 'sent', 5);
             UPDATE inbound SET relay_state = 'delivered' WHERE id = 'in-taken-since';
             INSERT INTO conversations (channel, phone_id, external, pchat_to, message_id, last_at)
                 VALUES ('sms', 'p', '+1555', 'alice', 'out-sent-since', 5);",
        )
        .unwrap();
        drop(conn);

        let restored = restore(&copy, &db, ".before-restore").unwrap();
        assert_eq!(
            restored.carried.fates,
            Some(replaced::FatesCarried {
                sends_ended: 1,
                replies_forwarded: 1,
                ..Default::default()
            })
        );
        let conn = Connection::open(&db).unwrap();
        let text = |sql: &str| texts(&conn, sql);
        assert_eq!(
            text("SELECT id || ' ' || status || ' ' || attempts FROM outbound ORDER BY id"),
            ["out-sent-since sent 1", "out-still-queued queued 0"]
        );
        assert_eq!(
            text("SELECT message_id || ' ' || external_id FROM outbound_parts"),
            ["out-sent-since mr:7"]
        );
        assert_eq!(
            text("SELECT message_id || ' ' || status FROM outbound_events"),
            ["out-sent-since sent"]
        );
        assert_eq!(
            text("SELECT id || ' ' || relay_state FROM inbound ORDER BY id"),
            ["in-still-pending pending", "in-taken-since delivered"]
        );
        assert_eq!(text("SELECT pchat_to FROM conversations"), ["alice"]);
    }

    /// A send the backup has queued and a reply it has waiting for the
    /// relay, which the replaced store (gone on from the backup: it holds
    /// the backup's last status event) ended and then deleted with age,
    /// are deleted from the restored store too, not sent or forwarded a
    /// second time. Over a store that did not go on from the backup (one
    /// that never had them), they stay.
    #[test]
    fn what_the_replaced_store_ended_and_deleted_since_is_not_restored_live() {
        for went_on in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let (db, conn) = two_sends_and_two_replies(dir.path(), "pruned", "pruned");
            add_event(&conn);
            let copy = dir.path().join("copy.sqlite3");
            backup(&db, &copy).unwrap();
            // Sent, taken by the relay, and past retention since.
            conn.execute_batch(
                "DELETE FROM outbound WHERE id = 'out-pruned-since';
                 DELETE FROM inbound WHERE id = 'in-pruned-since';",
            )
            .unwrap();
            if !went_on {
                conn.execute_batch("DELETE FROM outbound_events").unwrap();
            }
            drop(conn);

            let restored = restore(&copy, &db, ".before-restore").unwrap();
            let fates = restored.carried.fates.unwrap();
            let conn = Connection::open(&db).unwrap();
            let ids = |sql: &str| texts(&conn, sql);
            let (outbound, inbound) = (
                ids("SELECT id FROM outbound ORDER BY id"),
                ids("SELECT id FROM inbound ORDER BY id"),
            );
            if went_on {
                assert_eq!((fates.sends_pruned, fates.replies_pruned), (1, 1));
                assert_eq!(outbound, ["out-still-queued"]);
                assert_eq!(inbound, ["in-still-pending"]);
            } else {
                assert_eq!((fates.sends_pruned, fates.replies_pruned), (0, 0));
                assert_eq!(outbound, ["out-pruned-since", "out-still-queued"]);
                assert_eq!(inbound, ["in-pruned-since", "in-still-pending"]);
            }
        }
    }

    /// A status event of a message of its own: no two stores' are alike.
    fn add_event(conn: &Connection) -> i64 {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        conn.execute(
            "INSERT INTO outbound_events (message_id, status, at) VALUES (?1, 'sent', 1)",
            [format!("m{n}")],
        )
        .unwrap();
        conn.last_insert_rowid()
    }

    /// A store lost with its log (the reason to restore): the events it
    /// gave out after the backup are unknown, yet the relay has them.
    #[test]
    fn a_restore_onto_a_lost_store_numbers_events_past_any_it_gave() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(dir.path());
        let conn = Connection::open(&db).unwrap();
        add_event(&conn);
        let copy = dir.path().join("copy.sqlite3");
        backup(&db, &copy).unwrap();
        let seen = (0..5).map(|_| add_event(&conn)).last().unwrap();
        drop(conn);
        for ending in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(beside(&db, ending));
        }
        let restored = restore(&copy, &db, ".before-restore").unwrap();
        let next = add_event(&Connection::open(&db).unwrap());
        assert!(next > seen, "event id {next} again after {seen}");
        assert!(matches!(
            restored.carried.events,
            replaced::EventsFrom::Clock { floor, .. } if floor == next - 1
        ));
        assert_eq!(restored.carried.keys, None);
        assert_eq!(restored.carried.pairing, replaced::PairingFrom::Backup);
    }

    /// A store that did not go on from the backup (a fresh one on a new
    /// box, which has run long enough to count more events than the
    /// backup) tells nothing of what the old box gave.
    #[test]
    fn a_restore_onto_a_fresh_store_numbers_events_from_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(dir.path());
        let conn = Connection::open(&db).unwrap();
        for _ in 0..3 {
            add_event(&conn);
        }
        let copy = dir.path().join("copy.sqlite3");
        backup(&db, &copy).unwrap();
        drop(conn);
        std::fs::remove_file(&db).unwrap();
        let fresh = store(dir.path());
        let fresh_conn = Connection::open(&fresh).unwrap();
        for _ in 0..10 {
            add_event(&fresh_conn);
        }
        drop(fresh_conn);
        let restored = restore(&copy, &db, ".before-restore").unwrap();
        let why = match restored.carried.events {
            replaced::EventsFrom::Clock { why, .. } => why,
            other => panic!("{other:?}"),
        };
        assert!(
            why.contains("does not hold the backup's last status event"),
            "{why}"
        );
        assert!(add_event(&Connection::open(&db).unwrap()) > 1 << 40);
        assert!(
            restored.carried.keys.is_some(),
            "its keys are still the newer ones"
        );
    }

    /// Keys revoked after the backup stay revoked, keys made after it
    /// still work: the replaced store's keys are the current ones.
    #[test]
    fn a_restore_keeps_the_key_changes_made_after_the_backup() {
        use crate::store::sqlite::keys;
        let dir = tempfile::tempdir().unwrap();
        let db = store(dir.path());
        let issue = |name: &str| crate::keys::issue(name, vec![crate::store::Scope::Send], None, 1);
        let (old, new) = (issue("old"), issue("new"));
        let conn = Connection::open(&db).unwrap();
        keys::create(&conn, &old.record).unwrap();
        let copy = dir.path().join("copy.sqlite3");
        backup(&db, &copy).unwrap();
        assert!(keys::revoke(&conn, &old.record.key_id, 2).unwrap());
        keys::create(&conn, &new.record).unwrap();
        drop(conn);
        restore(&copy, &db, ".before-restore").unwrap();
        let conn = Connection::open(&db).unwrap();
        let works = |issued: &crate::keys::IssuedKey| {
            let (key_id, secret) = crate::keys::parse(&issued.clear).unwrap();
            keys::find(&conn, key_id)
                .unwrap()
                .is_some_and(|record| crate::keys::verify(&record, secret))
        };
        assert!(!works(&old), "a key revoked after the backup works again");
        assert!(works(&new), "a key made after the backup is lost");
    }

    /// The relay pairing as `pair` records it: which relay, and the
    /// fingerprint of the key it wrote to the key file; and the link state.
    fn pair(conn: &Connection, url: &str, key: &str) {
        use crate::relay::settings::{self, LINK, PAIRING, Pairing, SCOPE};
        let pairing = Pairing {
            url: url.into(),
            phone_id: "ph_1".into(),
            bridge_key_id: "k".into(),
            paired_at_ms: 1,
            key_sha256: Some(settings::key_fingerprint(key)),
        };
        let link = format!(r#"{{"last_error":"{url} is down"}}"#);
        for (name, value) in [
            (PAIRING, serde_json::to_string(&pairing).unwrap()),
            (LINK, link),
        ] {
            conn.execute(
                "INSERT INTO cursors (scope, name, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (scope, name) DO UPDATE SET value = excluded.value",
                [SCOPE, name, &value],
            )
            .unwrap();
        }
    }

    /// The relay pairing's and link state's rows, as the store at `db` has them.
    fn relay_rows(db: &Path) -> Vec<(String, String)> {
        Connection::open(db)
            .unwrap()
            .prepare("SELECT name, value FROM cursors WHERE scope = 'relay' ORDER BY name")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// A store in `dir` paired with `url` and `key`, backed up to
    /// `copy.sqlite3` beside it: the store, its connection (open for what
    /// happens after the backup) and the copy.
    fn paired_and_backed_up(
        dir: &Path,
        url: &str,
        key: &str,
    ) -> (std::path::PathBuf, Connection, std::path::PathBuf) {
        let db = store(dir);
        let conn = Connection::open(&db).unwrap();
        pair(&conn, url, key);
        let copy = dir.join("copy.sqlite3");
        backup(&db, &copy).unwrap();
        (db, conn, copy)
    }

    /// A bridge paired with another relay after the backup: the restored
    /// store has the pairing the relay key file beside it was written
    /// with (a restore does not touch that file), not the backup's.
    #[test]
    fn a_restore_keeps_the_relay_pairing_made_after_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let (db, conn, copy) =
            paired_and_backed_up(dir.path(), "https://old-relay.invalid", "old-key");
        pair(&conn, "https://new-relay.example", "new-key");
        drop(conn);
        let live = relay_rows(&db);
        let restored = restore(&copy, &db, ".before-restore").unwrap();
        assert_eq!(
            restored.carried.pairing,
            replaced::PairingFrom::Replaced { paired: true }
        );
        assert_eq!(relay_rows(&db), live);
    }

    fn add_key(conn: &Connection, key_id: &str) {
        conn.execute(
            "INSERT INTO api_keys (key_id, name, secret_hash, scopes, created_at)
             VALUES (?1, 'local-cli', 'h', 'send,read,admin', 1)",
            [key_id],
        )
        .unwrap();
    }

    /// Restored onto a new box, whose store was made empty (the service
    /// started once) and never paired, with the old box's relay key file
    /// copied in: the backup's pairing stands, not the empty store's none.
    #[test]
    fn a_restore_over_a_new_box_s_unpaired_store_keeps_the_backup_s_pairing() {
        let old_box = tempfile::tempdir().unwrap();
        let (db, conn, copy) =
            paired_and_backed_up(old_box.path(), "https://relay.example", "the-key");
        drop(conn);
        let paired = relay_rows(&db);

        // A store of its own: none of the old box's ids.
        let new_box = tempfile::tempdir().unwrap();
        let fresh = empty_store(new_box.path());
        let conn = Connection::open(&fresh).unwrap();
        queue_message(&conn, "made on the new box");
        // As the daemon makes at its first start: the CLI's local key.
        add_key(&conn, "new-box-local");
        drop(conn);
        let restored = restore(&copy, &fresh, ".before-restore").unwrap();
        assert_eq!(
            restored.carried.pairing,
            replaced::PairingFrom::BackupOverNew
        );
        assert_eq!(relay_rows(&fresh), paired);
    }

    /// Unpaired after the backup (`unpair` removed the key file too): the
    /// restored store is not paired either.
    #[test]
    fn a_restore_after_unpairing_has_no_pairing() {
        let dir = tempfile::tempdir().unwrap();
        let (db, conn, copy) =
            paired_and_backed_up(dir.path(), "https://old-relay.invalid", "old-key");
        conn.execute("DELETE FROM cursors WHERE scope = 'relay'", [])
            .unwrap();
        drop(conn);
        let restored = restore(&copy, &db, ".before-restore").unwrap();
        assert_eq!(
            restored.carried.pairing,
            replaced::PairingFrom::Replaced { paired: false }
        );
        assert_eq!(relay_rows(&db), []);
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
        assert_eq!(outbound_ids(&conn), ["a"]);
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

    /// The ids of the messages in the store `conn` has open.
    fn outbound_ids(conn: &Connection) -> Vec<String> {
        conn.prepare("SELECT id FROM outbound")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// A hot rollback journal of another database, as a restore that
    /// crashed while it changed its copy leaves one: the pages it would
    /// write back are that database's.
    fn crashed_journal(dir: &Path) -> Vec<u8> {
        let other = dir.join("other.sqlite3");
        let conn = Connection::open(&other).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = DELETE; PRAGMA synchronous = OFF;
             CREATE TABLE t (x); INSERT INTO t VALUES (1);
             BEGIN; DELETE FROM t; CREATE TABLE u (y); INSERT INTO u VALUES (2);",
        )
        .unwrap();
        let journal = std::fs::read(beside(&other, "-journal")).unwrap();
        conn.execute_batch("ROLLBACK").unwrap();
        journal
    }

    /// What a restore that crashed left beside the store under the
    /// copy's name is never played back into the next copy.
    #[test]
    fn a_crashed_restore_s_journal_is_not_played_into_the_next_copy() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(dir.path());
        let copy = dir.path().join("copy.sqlite3");
        backup(&db, &copy).unwrap();
        let journal = crashed_journal(dir.path());
        std::fs::write(beside(&db, ".restoring-journal"), journal).unwrap();
        let restored = restore(&copy, &db, ".x").unwrap();
        assert_eq!(restored.summary.outbound, 1);
        let conn = Connection::open(&db).unwrap();
        let integrity: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(integrity, "ok");
        assert_eq!(outbound_ids(&conn), ["a"]);
        assert!(!beside(&db, ".restoring-journal").exists());
    }

    /// A copy spoiled on its way is refused before it replaces anything.
    #[test]
    fn a_copy_to_put_in_place_that_fails_its_check_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let incoming = dir.path().join("phonerelay.sqlite3.restoring");
        std::fs::write(&incoming, vec![7u8; 8192]).unwrap();
        let e = check_incoming(&incoming).unwrap_err();
        assert!(
            e.contains("the copy to put in place, fails its check"),
            "{e}"
        );
    }

    /// A file-level copy (rsync, a snapshot) of a store whose newest rows
    /// are still in its log, with the log beside it: what restore
    /// reports, having read it through SQLite, is what it installs.
    #[test]
    fn a_copy_with_its_log_beside_it_is_restored_as_it_was_checked() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(dir.path());
        let live_dir = dir.path().join("live");
        std::fs::create_dir(&live_dir).unwrap();
        let live = store(&live_dir);
        let conn = Connection::open(&live).unwrap();
        schema::configure(&conn).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA wal_autocheckpoint = 0")
            .unwrap();
        queue_message(&conn, "b");
        queue_message(&conn, "c");
        // Copied while the store is open: rows b and c are in the log only.
        let copy = dir.path().join("copy.sqlite3");
        std::fs::copy(&live, &copy).unwrap();
        std::fs::copy(beside(&live, "-wal"), beside(&copy, "-wal")).unwrap();
        drop(conn);
        let restored = restore(&copy, &db, ".x").unwrap();
        let installed: i64 = Connection::open(&db)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM outbound", [], |r| r.get(0))
            .unwrap();
        assert_eq!(restored.summary.outbound, 3);
        assert_eq!(installed, restored.summary.outbound);
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
        // The daemon is kept out by the instance lock the restore holds:
        // not named as what holds the store.
        assert!(
            e.contains("is in use") && e.contains("not the daemon"),
            "{e}"
        );
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
}
