//! Retention: old ended messages go, so a box left alone for months does
//! not fill its disk. Live (queued, sending) and dead-lettered messages are
//! never deleted. Batched, so one sweep never holds the writer for long.

use rusqlite::{Connection, params};

use phonerelay_channel::message_of_cursor;

use super::outbound;
use super::rows::{ended, live};
use crate::store::{OutboundStatus, StoreResult, UnforwardedInbound};

/// Messages in the ended status ?3 last changed before ?1, up to ?2, through
/// the partial ended index: one status at a time, so the read is a range
/// of `(status, updated_at)` that stops at the cut-off. With `status NOT IN
/// (…)` alone it walked every ended message kept, in every batch. A message
/// from the relay with an event after ?4 (the relay's status cursor) is
/// not one: its status has not been reported yet.
pub(super) const PRUNE_ENDED: &str = concat!(
    "SELECT seq, id FROM outbound WHERE ",
    ended!(),
    " AND status = ?3 AND updated_at < ?1",
    " AND NOT (relay_message_id IS NOT NULL AND EXISTS (SELECT 1 FROM outbound_events e",
    " WHERE e.message_id = outbound.id AND e.event_id > ?4))",
    " LIMIT ?2"
);

/// Inbound in relay state ?3 committed before ?1, up to ?2 rows: a range
/// of the `(relay_state, committed_at)` index (migration 15) that stops at
/// the cut-off, so it reads only rows that go, and every sweep's last
/// batch no row more. It took the state's oldest ?2 by seq and deleted
/// those old enough: rows committed while the clock ran ahead (then
/// stepped back) are oldest by seq but not due, and while ?2 of them
/// stayed, nothing else in their state was ever deleted.
pub(super) const PRUNE_INBOUND: &str = "DELETE FROM inbound WHERE seq IN (
    SELECT seq FROM inbound WHERE relay_state = ?3 AND committed_at < ?1 LIMIT ?2)";

/// Is the message in row ?1 still queued or being sent?
const IS_LIVE: &str = concat!("SELECT 1 FROM outbound WHERE seq = ?1 AND ", live!());

/// Cursors that belong to a message which has ended or is gone: an adapter
/// keeps such state while it sends (a long SMS's accepted parts), and the
/// outbox drops it when it records the send's end, but a message can also
/// expire or be cancelled while it waits for a retry, which records no
/// send. The cursors table holds a handful of rows, so reading all of its
/// names is cheap.
pub fn prune_message_cursors(conn: &Connection) -> StoreResult<usize> {
    let names = conn
        .prepare_cached("SELECT scope, name FROM cursors")?
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut removed = 0;
    for (scope, name) in &names {
        let Some(message_id) = message_of_cursor(name) else {
            continue;
        };
        let live = match outbound::locate(conn, message_id)? {
            Some(seq) => conn.prepare_cached(IS_LIVE)?.exists([seq])?,
            None => false,
        };
        if !live {
            removed += conn
                .prepare_cached("DELETE FROM cursors WHERE scope = ?1 AND name = ?2")?
                .execute([scope, name])?;
        }
    }
    Ok(removed)
}

pub fn prune(
    conn: &Connection,
    before_ms: i64,
    batch: u32,
    unforwarded: UnforwardedInbound,
    status_reported_to: Option<i64>,
) -> StoreResult<usize> {
    let reported_to = status_reported_to.unwrap_or(i64::MAX);
    // Ended outbound messages, a status at a time, up to the batch.
    let mut rows: Vec<(i64, String)> = Vec::new();
    for status in OutboundStatus::ALL.into_iter().filter(|s| !s.is_live()) {
        let room = batch as usize - rows.len();
        if room == 0 {
            break;
        }
        let found = conn
            .prepare_cached(PRUNE_ENDED)?
            .query_map(
                params![before_ms, room as i64, status.as_str(), reported_to],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
            )?
            .collect::<Result<Vec<_>, _>>()?;
        rows.extend(found);
    }
    let mut removed = 0;
    for (seq, id) in &rows {
        conn.prepare_cached("DELETE FROM outbound_events WHERE message_id = ?1")?
            .execute([id])?;
        conn.prepare_cached("DELETE FROM outbound_parts WHERE message_id = ?1")?
            .execute([id])?;
        removed += conn
            .prepare_cached("DELETE FROM outbound WHERE seq = ?1")?
            .execute([seq])?;
    }
    // Inbound messages the relay has taken, and, with no relay to take
    // them, those waiting for one: a state at a time, so each walks its
    // part of the state index in seq order and stops at the batch.
    let states: &[&str] = match unforwarded {
        UnforwardedInbound::Keep => &["delivered", "other_phone"],
        UnforwardedInbound::Prune => &["delivered", "other_phone", "pending"],
    };
    // The batch bounds the whole job, not each kind of row: given to each
    // afresh, one job deleted several times the batch (and every accept
    // committed with it waited for all of it).
    let room = |removed: usize| batch as usize - removed.min(batch as usize);
    for state in states {
        if room(removed) == 0 {
            return Ok(removed);
        }
        removed += conn.prepare_cached(PRUNE_INBOUND)?.execute(params![
            before_ms,
            room(removed) as i64,
            state
        ])?;
    }
    if room(removed) == 0 {
        return Ok(removed);
    }
    // What could not be read goes nowhere: kept as long as what could.
    removed += conn
        .prepare_cached(super::unreadable::PRUNE_UNREADABLE)?
        .execute(params![before_ms, room(removed) as i64])?;
    Ok(removed)
}
