//! The fates of the messages both the backup and the store it replaces
//! hold, taken from that store where it went further. A send the backup
//! has queued (or being sent) that the replaced store sent, or that ended
//! there otherwise, is taken as it ended: left queued, it went out a
//! second time. A reply the relay took from the replaced store is taken as
//! forwarded: left pending, it went to the relay again (under the same
//! Idempotency-Key only if its id was the same, and with a body made
//! afresh). The conversations the replaced store recorded after the backup
//! are taken too, so a reply to one of those sends is routed to the pChat
//! user who wrote it. What the replaced store, gone on from the backup,
//! ended and deleted since is deleted too (`drop_pruned`).
//!
//! Columns are those both stores have: the backup may be of an older
//! schema (migrated when the daemon next starts), and a column only the
//! replaced store has is filled in by that migration.

use rusqlite::Connection;

/// What the restored store took over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FatesCarried {
    /// Sends the backup has queued or being sent that had ended in the
    /// replaced store (sent, delivered, read, failed, expired, cancelled).
    pub sends_ended: usize,
    /// Replies the backup has waiting for the relay (or as dead letters)
    /// that the relay took from the replaced store.
    pub replies_forwarded: usize,
    /// Sends the backup has queued or being sent that the replaced store,
    /// gone on from the backup, no longer holds: ended there, and deleted
    /// by retention since. Deleted from the restored store too.
    pub sends_pruned: usize,
    /// Replies the backup has waiting (or as dead letters) that the
    /// replaced store, gone on from the backup, no longer holds: taken by
    /// the relay (or, with no relay named, let go with age) and deleted by
    /// retention since. Deleted from the restored store too.
    pub replies_pruned: usize,
}

/// The sends to take over: both stores hold them, live in the backup and
/// ended in the replaced store.
const ENDED_SINCE: &str = "CREATE TEMP TABLE ended_since AS
     SELECT r.id AS id FROM replaced.outbound r JOIN main.outbound m ON m.id = r.id
     WHERE m.status IN ('queued', 'sending') AND r.status NOT IN ('queued', 'sending')";

/// The fates of shared messages, and with `went_on` (the replaced store
/// went on from the backup: `replaced::continues_backup`), those of the
/// messages it deleted since ([`drop_pruned`]).
pub(super) fn take_fates(tx: &Connection, went_on: bool) -> rusqlite::Result<FatesCarried> {
    tx.execute_batch(&format!(
        "DROP TABLE IF EXISTS temp.ended_since; {ENDED_SINCE};"
    ))?;
    let sends_ended = take_sends(tx)?;
    tx.execute_batch("DROP TABLE temp.ended_since")?;
    let replies_forwarded = take_replies(tx)?;
    take_conversations(tx)?;
    let (sends_pruned, replies_pruned) = if went_on { drop_pruned(tx)? } else { (0, 0) };
    Ok(FatesCarried {
        sends_ended,
        replies_forwarded,
        sends_pruned,
        replies_pruned,
    })
}

/// The sends the backup holds live, and the replies it holds waiting for
/// the relay, that the replaced store, gone on from the backup, no longer
/// holds: retention deletes no live send and (while a relay is named) no
/// reply the relay has not taken, so they ended there and were deleted
/// with age since. Left in the restored store, each went out (or to the
/// relay) a second time, long after. Deleted as the replaced store
/// deleted them, with their history and parts; the files of such replies
/// go at the next media sweep. Only for a store that went on from the
/// backup: one that never had these messages (a restore of an older
/// backup in between) says nothing of them, and they stay.
fn drop_pruned(tx: &Connection) -> rusqlite::Result<(usize, usize)> {
    // By `seq`, the row's name in both stores, then its id.
    tx.execute_batch(
        "DROP TABLE IF EXISTS temp.pruned_since;
         CREATE TEMP TABLE pruned_since AS
             SELECT m.id AS id FROM main.outbound m
             WHERE m.status IN ('queued', 'sending')
               AND NOT EXISTS (SELECT 1 FROM replaced.outbound r
                               WHERE r.seq = m.seq AND r.id = m.id);
         DELETE FROM main.outbound_events WHERE message_id IN (SELECT id FROM temp.pruned_since);
         DELETE FROM main.outbound_parts WHERE message_id IN (SELECT id FROM temp.pruned_since);",
    )?;
    let sends = tx.execute(
        "DELETE FROM main.outbound WHERE id IN (SELECT id FROM temp.pruned_since)",
        [],
    )?;
    tx.execute_batch("DROP TABLE temp.pruned_since")?;
    let replies = tx.execute(
        "DELETE FROM main.inbound
         WHERE relay_state IN ('pending', 'dead')
           AND NOT EXISTS (SELECT 1 FROM replaced.inbound r
                           WHERE r.channel = inbound.channel AND r.phone_id = inbound.phone_id
                             AND r.external_id = inbound.external_id)",
        [],
    )?;
    Ok((sends, replies))
}

/// The ended sends' rows, parts (the ids their delivery reports name) and
/// history.
fn take_sends(tx: &Connection) -> rusqlite::Result<usize> {
    // `seq` and `id` are the row's name, the same in both.
    let columns = shared_columns(tx, "outbound", |name| name != "seq" && name != "id")?;
    let taken = tx.execute(
        &format!(
            "UPDATE main.outbound SET ({columns}) =
                 (SELECT {columns} FROM replaced.outbound r WHERE r.id = outbound.id)
             WHERE id IN (SELECT id FROM temp.ended_since)"
        ),
        [],
    )?;
    tx.execute(
        "DELETE FROM main.outbound_parts WHERE message_id IN (SELECT id FROM temp.ended_since)",
        [],
    )?;
    // An id another message's part has in the backup stays that one's.
    take_rows_of_ended(tx, "outbound_parts")?;
    // Events the backup has are the same ones (the same ids, given
    // before the backup); those after it are the replaced store's alone.
    take_rows_of_ended(tx, "outbound_events")?;
    Ok(taken)
}

/// The replaced store's rows of `table` (keyed by `message_id`) for the
/// ended sends taken over, but those whose key the backup already has.
fn take_rows_of_ended(tx: &Connection, table: &str) -> rusqlite::Result<usize> {
    let columns = shared_columns(tx, table, |_| true)?;
    tx.execute(
        &format!(
            "INSERT OR IGNORE INTO main.{table} ({columns})
             SELECT {columns} FROM replaced.{table}
             WHERE message_id IN (SELECT id FROM temp.ended_since)"
        ),
        [],
    )
}

/// Replies the relay took: the same message in both by its channel, phone
/// and external id (a message received again after the backup has
/// another id), with the relay's state as the replaced store has it.
fn take_replies(tx: &Connection) -> rusqlite::Result<usize> {
    let relay = shared_columns(tx, "inbound", |name| name.starts_with("relay_"))?;
    if relay.is_empty() {
        return Ok(0);
    }
    let same = "r.channel = inbound.channel AND r.phone_id = inbound.phone_id
                AND r.external_id = inbound.external_id";
    tx.execute(
        &format!(
            "UPDATE main.inbound SET ({relay}) =
                 (SELECT {relay} FROM replaced.inbound r WHERE {same})
             WHERE relay_state IN ('pending', 'dead')
               AND EXISTS (SELECT 1 FROM replaced.inbound r
                           WHERE {same} AND r.relay_state = 'delivered')"
        ),
        [],
    )
}

/// Conversations recorded after the backup: a newer one replaces the
/// backup's for its recipient, and every reply key is kept.
fn take_conversations(tx: &Connection) -> rusqlite::Result<()> {
    let conversations = shared_columns(tx, "conversations", |_| true)?;
    // A backup from before conversations were kept has none to take.
    if conversations.is_empty() {
        return Ok(());
    }
    tx.execute(
        &format!(
            "INSERT OR REPLACE INTO main.conversations ({conversations})
             SELECT {conversations} FROM replaced.conversations r
             WHERE NOT EXISTS (SELECT 1 FROM main.conversations m
                               WHERE m.channel = r.channel AND m.phone_id = r.phone_id
                                 AND m.external = r.external AND m.last_at >= r.last_at)"
        ),
        [],
    )?;
    let keys = shared_columns(tx, "conversation_keys", |_| true)?;
    tx.execute(
        &format!(
            "INSERT OR IGNORE INTO main.conversation_keys ({keys})
             SELECT {keys} FROM replaced.conversation_keys"
        ),
        [],
    )?;
    Ok(())
}

/// The columns of `table` both stores have that `wanted` keeps, as a
/// list for SQL (names from the schemas, not from input).
fn shared_columns(
    tx: &Connection,
    table: &str,
    wanted: impl Fn(&str) -> bool,
) -> rusqlite::Result<String> {
    let names = |schema: &str| -> rusqlite::Result<Vec<String>> {
        tx.prepare("SELECT name FROM pragma_table_info(?1, ?2) ORDER BY cid")?
            .query_map([table, schema], |row| row.get(0))?
            .collect()
    };
    let theirs = names("replaced")?;
    let shared: Vec<String> = names("main")?
        .into_iter()
        .filter(|name| wanted(name) && theirs.contains(name))
        .map(|name| format!("\"{name}\""))
        .collect();
    Ok(shared.join(", "))
}
