//! Retention: old ended messages go, so a box left alone for months does
//! not fill its disk. Live (queued, sending) and dead-lettered messages are
//! never deleted. Batched, so one sweep never holds the writer for long.

use rusqlite::{Connection, params};

use crate::store::StoreResult;

pub fn prune(conn: &Connection, before_ms: i64, batch: u32) -> StoreResult<usize> {
    // Ended outbound messages, oldest first, through the status index.
    let ids = conn
        .prepare_cached(
            "SELECT id FROM outbound
             WHERE status IN ('sent', 'delivered', 'read', 'failed', 'expired', 'cancelled')
               AND updated_at < ?1
             LIMIT ?2",
        )?
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
