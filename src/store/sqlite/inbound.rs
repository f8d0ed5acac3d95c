//! Received messages, deduplicated on (channel, phone_id, external_id).

use phonerelay_channel::{ChannelKind, InboundMessage};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::rows::{Kind, from_json, to_json};
use crate::store::*;

pub(super) const COLUMNS: &str = "seq, id, channel, phone_id, external_id, sender, body, subject, \
     attachments, reply_to, received_at, committed_at, meta";

/// How many columns [`COLUMNS`] names: a query that selects them first
/// reads its own from this index on.
pub(super) const COLUMN_COUNT: usize = 13;

pub fn commit(conn: &Connection, m: &InboundMessage, now_ms: i64) -> StoreResult<InboundCommit> {
    let existing: Option<String> = conn
        .prepare_cached(
            "SELECT id FROM inbound WHERE channel = ?1 AND phone_id = ?2 AND external_id = ?3",
        )?
        .query_row(
            params![m.channel.as_str(), m.phone_id, m.external_id],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(id) = existing {
        return Ok(InboundCommit {
            id,
            duplicate: true,
        });
    }
    let id = uuid::Uuid::now_v7().to_string();
    conn.prepare_cached(
        "INSERT INTO inbound (id, channel, phone_id, external_id, sender, body, subject,
            attachments, reply_to, received_at, committed_at, meta)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        id,
        m.channel.as_str(),
        m.phone_id,
        m.external_id,
        m.from,
        m.text,
        m.subject,
        to_json(&m.attachments)?,
        to_json(&m.reply_to)?,
        m.received_at_ms,
        now_ms,
        (!m.meta.is_empty()).then(|| to_json(&m.meta)).transpose()?,
    ])?;
    super::media::claim_for(conn, &id, m.channel.as_str(), &m.phone_id, &m.attachments)?;
    Ok(InboundCommit {
        id,
        duplicate: false,
    })
}

/// Reads the first [`COLUMN_COUNT`] columns, in [`COLUMNS`] order; the
/// relay's queries select these first and their own after.
pub(super) fn from_row(row: &Row<'_>) -> rusqlite::Result<InboundRecord> {
    let attachments: String = row.get(8)?;
    let reply_to: String = row.get(9)?;
    let meta: Option<String> = row.get(12)?;
    Ok(InboundRecord {
        seq: row.get(0)?,
        id: row.get(1)?,
        channel: row.get::<_, Kind>(2)?.0,
        phone_id: row.get(3)?,
        external_id: row.get(4)?,
        from: row.get(5)?,
        text: row.get(6)?,
        subject: row.get(7)?,
        attachments: from_json(&attachments)?,
        reply_to: from_json(&reply_to)?,
        received_at_ms: row.get(10)?,
        committed_at_ms: row.get(11)?,
        meta: meta
            .as_deref()
            .map(from_json)
            .transpose()?
            .unwrap_or_default(),
    })
}

pub fn get(conn: &Connection, id: &str) -> StoreResult<Option<InboundRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM inbound WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], from_row).optional()?)
}

pub fn list(conn: &Connection, f: &InboundFilter) -> StoreResult<Vec<InboundRecord>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM inbound
         WHERE (?1 IS NULL OR channel = ?1) AND (?2 IS NULL OR phone_id = ?2)
           AND (?3 IS NULL OR committed_at >= ?3) AND (?4 IS NULL OR seq < ?4)
         ORDER BY seq DESC LIMIT ?5"
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(
            params![
                f.channel.map(ChannelKind::as_str),
                f.phone_id,
                f.since_ms,
                f.before_seq,
                f.limit
            ],
            from_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
