//! Retention: old ended messages go, so a box left alone for months does
//! not fill its disk. Live (queued, sending) and dead-lettered messages are
//! never deleted. Batched, so one sweep never holds the writer for long.

use rusqlite::{Connection, params};

use super::rows::ended;
use crate::store::StoreResult;

/// Ended messages last changed before ?1, through the partial ended index.
pub(super) const PRUNE_ENDED: &str = concat!(
    "SELECT id FROM outbound WHERE ",
    ended!(),
    " AND updated_at < ?1 LIMIT ?2"
);

pub fn prune(conn: &Connection, before_ms: i64, batch: u32) -> StoreResult<usize> {
    // Ended outbound messages, through the (partial) ended index.
    let ids = conn
        .prepare_cached(PRUNE_ENDED)?
        .query_map(params![before_ms, batch], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut removed = 0;
    for id in &ids {
        conn.prepare_cached("DELETE FROM outbound_events WHERE message_id = ?1")?
            .execute([id])?;
        conn.prepare_cached("DELETE FROM outbound_parts WHERE message_id = ?1")?
            .execute([id])?;
        removed += conn
            .prepare_cached("DELETE FROM outbound WHERE id = ?1")?
            .execute([id])?;
    }
    // Inbound messages the relay has taken.
    removed += conn
        .prepare_cached(
            "DELETE FROM inbound WHERE seq IN (
                SELECT seq FROM inbound
                WHERE relay_state = 'delivered' AND committed_at < ?1
                ORDER BY seq LIMIT ?2)",
        )?
        .execute(params![before_ms, batch])?;
    Ok(removed)
}
