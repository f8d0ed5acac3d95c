//! The external ids an endpoint's sent messages carry, by family: what an
//! adapter that derives its ids from the wire relearns after a restart
//! (`EventSink::sent_ids`; the SMS adapter's TP-MR ids wrap).

use rusqlite::{Connection, params};

use super::outbound;
use crate::store::StoreResult;

/// `base` itself and every `base:<suffix>`, through the parts table's
/// primary key (`:` sorts just before `;`): one range of the key, from
/// `base` to `base;`, then the ids in it that are `base` or start with
/// `base:`. (With the two as an OR, the planner sought only the
/// endpoint, and walked every part it ever sent.)
pub(super) const FAMILY: &str = "SELECT external_id, message_id FROM outbound_parts
     WHERE channel = ?1 AND phone_id = ?2
       AND external_id >= ?3 AND external_id < ?3 || ';'
       AND (external_id = ?3 OR external_id >= ?3 || ':')";

/// When the attempt that sent the message in row ?1 began.
const ATTEMPT_AT: &str = "SELECT COALESCE(attempt_at, updated_at) FROM outbound WHERE seq = ?1";

/// Each id of `base`'s family on the endpoint, with when its message's
/// sending attempt began (ms). A part whose message is gone (retention)
/// is gone with it.
pub fn family(
    conn: &Connection,
    channel: &str,
    phone_id: &str,
    base: &str,
) -> StoreResult<Vec<(String, i64)>> {
    let parts = conn
        .prepare_cached(FAMILY)?
        .query_map(params![channel, phone_id, base], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut ids = Vec::with_capacity(parts.len());
    for (external_id, message_id) in parts {
        let Some(seq) = outbound::locate(conn, &message_id)? else {
            continue;
        };
        let at: i64 = conn
            .prepare_cached(ATTEMPT_AT)?
            .query_row([seq], |row| row.get(0))?;
        ids.push((external_id, at));
    }
    Ok(ids)
}
