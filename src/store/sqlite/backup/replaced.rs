//! What a restored store takes over from the store it replaces. A backup
//! is older than that store, which went on after it: it gave out status
//! event ids the relay now has (and the relay drops an event whose id it
//! already has: docs/relay-protocol.md), its API keys may have been
//! revoked or made since, and it may have been paired again. All are the
//! current state, not the backup's.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

pub use super::fates::FatesCarried;
use crate::relay::settings::{LINK, PAIRING, SCOPE};

/// What the restored store took from the one it replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carried {
    pub events: EventsFrom,
    /// The replaced store's key changes since the backup; `None` if it
    /// could not be read, and the keys are as the backup has them.
    pub keys: Option<KeysCarried>,
    pub pairing: PairingFrom,
    /// What the replaced store holds that the restored one does not;
    /// `None` if it could not be read.
    pub left_behind: Option<LeftBehind>,
    /// The messages both hold, taken as the replaced store has them where
    /// it went further; `None` if no replaced store could be read, or
    /// the fates not taken from it.
    pub fates: Option<FatesCarried>,
}

/// Messages only the replaced store holds (committed after the backup):
/// the restored store does not have them, and nothing takes them over.
/// Said by the restore, so that none goes without a word; they stay in
/// the kept store's file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeftBehind {
    /// Received messages (replies), however far they got.
    pub inbound: u64,
    /// Of those, the ones the relay never took (pending or dead letters).
    pub inbound_not_forwarded: u64,
    /// Received messages that could not be decoded, kept as they came.
    pub unreadable: u64,
    /// Sends accepted but not yet sent (queued or sending).
    pub outbound_unsent: u64,
}

/// Where the restored store's relay pairing and link state come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairingFrom {
    /// The replaced store's, in place of the backup's; `paired`: whether
    /// it had a pairing (if not, the restored store has none either).
    Replaced { paired: bool },
    /// The backup's: the replaced store could not be read. It may name
    /// another relay than the relay key file beside the store is for.
    Backup,
    /// The backup's, kept over a replaced store that did not go on from
    /// the backup and had no pairing (a new box's empty store): the box
    /// the backup was made on was paired, this one never was.
    BackupOverNew,
}

/// Where the restored store's status event ids go on from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventsFrom {
    /// After the replaced store's last.
    Replaced,
    /// After `floor`, from the clock: the replaced store's last could not
    /// be known, for `why`.
    Clock { floor: i64, why: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysCarried {
    /// Keys made after the backup, carried over.
    pub added: usize,
    /// Keys the backup has active that were revoked after it.
    pub revoked: usize,
}

/// The first status event id after a restore that cannot read the
/// replaced store's last: the wall clock in microseconds.
///
/// Event ids are a plain count from 1 (`outbound_events`' AUTOINCREMENT),
/// and the replaced store may have counted past the backup's by any
/// number. This floor is past any count a store ever reaches (it stands
/// at 1.7e15), and past the ids of a store that was itself given such a
/// floor by an earlier restore, as long as it gave fewer than 1,000
/// events a millisecond since, which the bridge's sends are far from.
/// It never lowers the sequence (the larger of the two is kept). It fits
/// SQLite's INTEGER (i64) and stays below 2^53, which a relay reading the
/// JSON number as a double still holds exactly, until the year 2255. A
/// clock set back by more than the time since that earlier restore would
/// defeat it: the restore's output names the floor, so it can be checked.
pub fn event_floor(now_ms: i64) -> i64 {
    now_ms.max(0).saturating_mul(1000)
}

/// Carry the state of the store at `from` (if there is one) into the copy
/// at `to`, then close and sync the copy.
pub(super) fn carry_over(from: &Path, to: &Path, now_ms: i64) -> Result<Carried, String> {
    let fail = |e: rusqlite::Error| format!("cannot update {}: {e}", to.display());
    let mut copy = Connection::open(to).map_err(fail)?;
    let read = if from.exists() {
        take_from(&mut copy, from)
    } else {
        Err("there is no store".to_string())
    };
    let (keys, pairing, went_on, left_behind, fates) = match read {
        Ok(taken) => {
            let went_on = if taken.went_on {
                Ok(())
            } else {
                Err(
                    "it does not hold the backup's last status event: a new store, one whose \
                     retention has deleted that event, or a backup with none"
                        .to_string(),
                )
            };
            (
                Some(taken.keys),
                taken.pairing,
                went_on,
                taken.left,
                taken.fates,
            )
        }
        Err(why) => (None, PairingFrom::Backup, Err(why), None, None),
    };
    let events = match went_on {
        Ok(()) => EventsFrom::Replaced,
        Err(why) => {
            let floor = event_floor(now_ms);
            number_events_after(&copy, floor).map_err(fail)?;
            EventsFrom::Clock { floor, why }
        }
    };
    let carried = Carried {
        events,
        keys,
        pairing,
        left_behind,
        fates,
    };
    // Closed before the file is synced and renamed: nothing of it may be
    // left in a journal beside the copy.
    copy.close().map_err(|(_, e)| fail(e))?;
    super::durable::sync_file(to)?;
    Ok(carried)
}

/// In one transaction: the copy's event ids moved past the replaced
/// store's, its key changes and its relay pairing taken over (but over a
/// new box's store, never paired, the backup's pairing stands); with
/// where the pairing came from, and whether it went on from the backup
/// ([`continues_backup`]). Only hashes move, from table to table; no key
/// passes through here. The store is attached read-write,
/// as the daemon opens it, so that detaching it, the last connection,
/// folds its log into it and removes the log and the shared memory file.
/// What [`take_from`] took over, and whether the replaced store went on
/// from the backup.
struct Taken {
    keys: KeysCarried,
    pairing: PairingFrom,
    went_on: bool,
    left: Option<LeftBehind>,
    fates: Option<FatesCarried>,
}

fn take_from(copy: &mut Connection, from: &Path) -> Result<Taken, String> {
    let path = from
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", from.display()))?;
    let sql = |e: rusqlite::Error| e.to_string();
    copy.execute("ATTACH DATABASE ?1 AS replaced", [path])
        .map_err(sql)?;
    let taken = (|| -> Result<Taken, String> {
        let mut tx = copy.transaction().map_err(sql)?;
        let went_on = continues_backup(&tx).map_err(sql)?;
        // Not to be had from a store of an older schema (a restore by a
        // new binary before its daemon ever ran): unknown then, and said
        // so, but the rest is taken over all the same.
        let left = left_behind(&tx).ok();
        // Before the keys are taken over, which would make every key of
        // the replaced store one the copy shares.
        let same_store = went_on || shares_history(&tx).map_err(sql)?;
        let last = last_event_id(&tx, "replaced").map_err(sql)?;
        number_events_after(&tx, last).map_err(sql)?;
        let keys = take_keys(&tx).map_err(sql)?;
        // A store that went on from the backup and has no pairing was
        // unpaired since; one that shares nothing with it (a new box's,
        // whose local key is its own) and has none never was, and the
        // backup's pairing stands.
        let pairing = if same_store || has_pairing(&tx, "replaced").map_err(sql)? {
            PairingFrom::Replaced {
                paired: take_pairing(&tx).map_err(sql)?,
            }
        } else {
            PairingFrom::BackupOverNew
        };
        // All or none of them (a savepoint: a statement that fails undoes
        // only itself): a backup of a schema these statements do not fit
        // is restored as it is, as before fates were taken.
        let fates = {
            let point = tx.savepoint().map_err(sql)?;
            match super::fates::take_fates(&point, went_on) {
                Ok(fates) => {
                    point.commit().map_err(sql)?;
                    Some(fates)
                }
                Err(_) => None,
            }
        };
        tx.commit().map_err(sql)?;
        Ok(Taken {
            keys,
            pairing,
            went_on,
            left,
            fates,
        })
    })();
    let detached = copy.execute_batch("DETACH DATABASE replaced").map_err(sql);
    let keys = taken?;
    detached?;
    Ok(keys)
}

/// What only the replaced store holds ([`LeftBehind`]). A received
/// message is the same one in both stores by its channel, phone and
/// external id (its id may differ: a message received again after the
/// backup), a send by its id.
fn left_behind(tx: &Connection) -> rusqlite::Result<LeftBehind> {
    let (inbound, inbound_not_forwarded) = tx.query_row(
        "SELECT COUNT(*), COALESCE(SUM(r.relay_state IN ('pending', 'dead')), 0)
         FROM replaced.inbound r
         WHERE NOT EXISTS (SELECT 1 FROM main.inbound m WHERE m.channel = r.channel
               AND m.phone_id = r.phone_id AND m.external_id = r.external_id)",
        [],
        |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
    )?;
    let unreadable: i64 = tx.query_row(
        "SELECT COUNT(*) FROM replaced.inbound_unreadable r
         WHERE NOT EXISTS (SELECT 1 FROM main.inbound_unreadable m WHERE m.channel = r.channel
               AND m.phone_id = r.phone_id AND m.raw_sha256 = r.raw_sha256)",
        [],
        |row| row.get(0),
    )?;
    let outbound_unsent: i64 = tx.query_row(
        "SELECT COUNT(*) FROM replaced.outbound r
         WHERE r.status IN ('queued', 'sending')
           AND NOT EXISTS (SELECT 1 FROM main.outbound m WHERE m.id = r.id)",
        [],
        |row| row.get(0),
    )?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(LeftBehind {
        inbound: count(inbound),
        inbound_not_forwarded: count(inbound_not_forwarded),
        unreadable: count(unreadable),
        outbound_unsent: count(outbound_unsent),
    })
}

/// Whether the replaced store went on from the backup: it holds the
/// backup's last status event, the same one. A fresh store started on a
/// new box does not, however many events it has counted; then what the
/// store the backup came from gave after it is not known, and the ids go
/// on from the clock. So they do when retention has since deleted that
/// event, or the backup has none: a needless jump, never a repeat.
fn continues_backup(tx: &Connection) -> rusqlite::Result<bool> {
    tx.query_row(
        "SELECT EXISTS (
             SELECT 1 FROM main.outbound_events m
             JOIN replaced.outbound_events r ON r.event_id = m.event_id
             WHERE m.event_id = (SELECT MAX(event_id) FROM main.outbound_events)
               AND r.message_id = m.message_id AND r.status = m.status AND r.at = m.at)",
        [],
        |row| row.get(0),
    )
}

fn last_event_id(conn: &Connection, schema: &str) -> rusqlite::Result<i64> {
    let sql = format!("SELECT seq FROM {schema}.sqlite_sequence WHERE name = 'outbound_events'");
    Ok(conn
        .query_row(&sql, [], |row| row.get::<_, i64>(0))
        .optional()?
        .unwrap_or(0))
}

/// Raise the copy's event id sequence to at least `last`: its next event
/// gets a larger id.
fn number_events_after(copy: &Connection, last: i64) -> rusqlite::Result<()> {
    let raised = copy.execute(
        "UPDATE main.sqlite_sequence SET seq = max(seq, ?1) WHERE name = 'outbound_events'",
        [last],
    )?;
    if raised == 0 {
        copy.execute(
            "INSERT INTO main.sqlite_sequence (name, seq) VALUES ('outbound_events', ?1)",
            [last],
        )?;
    }
    Ok(())
}

/// Keys are never deleted, only revoked: one the copy lacks was made after
/// the backup, one revoked in the replaced store stays revoked. A key the
/// copy has revoked stays so either way.
fn take_keys(tx: &Connection) -> rusqlite::Result<KeysCarried> {
    let added = tx.execute(
        "INSERT INTO main.api_keys
             (key_id, name, secret_hash, scopes, phone_id, created_at, revoked_at)
         SELECT key_id, name, secret_hash, scopes, phone_id, created_at, revoked_at
         FROM replaced.api_keys
         WHERE key_id NOT IN (SELECT key_id FROM main.api_keys)",
        [],
    )?;
    let revoked = tx.execute(
        "UPDATE main.api_keys
         SET revoked_at = (SELECT r.revoked_at FROM replaced.api_keys r
                           WHERE r.key_id = api_keys.key_id)
         WHERE revoked_at IS NULL
           AND key_id IN (SELECT key_id FROM replaced.api_keys WHERE revoked_at IS NOT NULL)",
        [],
    )?;
    Ok(KeysCarried { added, revoked })
}

/// The relay pairing and the link's state are the replaced store's, the
/// backup's dropped; whether it had a pairing. They go with the relay key
/// file beside the store, which a restore leaves as it is (`pair` writes
/// the key and records its fingerprint in the pairing): with the backup's
/// pairing, a bridge paired again after the backup would have its link
/// off, the key and the pairing disagreeing, or, with a pairing from
/// before fingerprints, send the new relay's key to the old relay. None
/// in the replaced store (unpaired since, or never paired) is none in
/// the restored one: `unpair` removes the key file with it.
fn take_pairing(tx: &Connection) -> rusqlite::Result<bool> {
    tx.execute(
        "DELETE FROM main.cursors WHERE scope = ?1 AND name IN (?2, ?3)",
        params![SCOPE, PAIRING, LINK],
    )?;
    tx.execute(
        "INSERT INTO main.cursors (scope, name, value)
         SELECT scope, name, value FROM replaced.cursors
         WHERE scope = ?1 AND name IN (?2, ?3)",
        params![SCOPE, PAIRING, LINK],
    )?;
    has_pairing(tx, "main")
}

/// Whether the replaced store holds any message or key the backup does:
/// the same store gone on since, not a new box's (whose ids are all its
/// own). For a backup with no status event, which [`continues_backup`]
/// cannot tell by.
fn shares_history(tx: &Connection) -> rusqlite::Result<bool> {
    tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM main.outbound m JOIN replaced.outbound r ON r.id = m.id)
             OR EXISTS (SELECT 1 FROM main.inbound m JOIN replaced.inbound r ON r.id = m.id)
             OR EXISTS (SELECT 1 FROM main.api_keys m
                        JOIN replaced.api_keys r ON r.key_id = m.key_id)",
        [],
        |row| row.get(0),
    )
}

/// Whether database `schema` (`main`, `replaced`) holds a relay pairing.
fn has_pairing(tx: &Connection, schema: &str) -> rusqlite::Result<bool> {
    tx.query_row(
        &format!(
            "SELECT EXISTS (SELECT 1 FROM {schema}.cursors
                            WHERE scope = ?1 AND name = ?2 AND value <> '')"
        ),
        params![SCOPE, PAIRING],
        |row| row.get(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_floor_grows_and_fits_a_json_number() {
        let now = crate::clock::now_ms();
        assert!(event_floor(now) < 1 << 53);
        assert!(event_floor(now + 1) > event_floor(now));
        assert_eq!(event_floor(-5), 0);
    }
}
