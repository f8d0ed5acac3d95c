//! Received messages, deduplicated on (channel, phone_id, external_id).

use phonerelay_channel::{ChannelKind, CursorWrite, InboundMessage};
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

/// [`commit`] `m`, and write `cursors` under `scope`, seen before or not:
/// the cursors say it was committed, so a repeat writes them too. Run as
/// one write, all or nothing.
pub fn commit_with_cursors(
    conn: &Connection,
    m: &InboundMessage,
    now_ms: i64,
    scope: &str,
    cursors: &[CursorWrite],
) -> StoreResult<InboundCommit> {
    let commit = commit(conn, m, now_ms)?;
    for cursor in cursors {
        super::cursors::write(conn, scope, &cursor.name, &cursor.value)?;
    }
    Ok(commit)
}

/// `base` itself and every `base#<suffix>`, through the unique index on
/// (channel, phone_id, external_id) (`#` sorts just before `$`): one
/// range of it, from `base` to `base$`, then the ids in it that are
/// `base` or start with `base#`.
const FAMILY: &str = "SELECT external_id FROM inbound
     WHERE channel = ?1 AND phone_id = ?2
       AND external_id >= ?3 AND external_id < ?3 || '$'
       AND (external_id = ?3 OR external_id >= ?3 || '#')";

/// The endpoint's inbound ids of `base`'s family (`EventSink::inbound_ids`).
pub fn family(
    conn: &Connection,
    channel: &str,
    phone_id: &str,
    base: &str,
) -> StoreResult<Vec<String>> {
    let ids = conn
        .prepare_cached(FAMILY)?
        .query_map(params![channel, phone_id, base], |row| row.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
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
    list_newest_first(conn, "inbound", COLUMNS, f, from_row)
}

/// A page of `table` (`inbound` or a table shaped like it: `seq`,
/// `channel`, `phone_id`, `committed_at`), newest first, as `f` asks.
pub(super) fn list_newest_first<T>(
    conn: &Connection,
    table: &str,
    columns: &str,
    f: &InboundFilter,
    from_row: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Vec<T>> {
    let sql = format!(
        "SELECT {columns} FROM {table}
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::SqliteStore;
    use crate::store::testing::received_sms;
    use crate::store::*;
    use phonerelay_channel::CursorWrite;

    const SCOPE: &str = "sms/m1";

    /// A store whose database refuses, as a full disk or a failing write
    /// would, any row of `table` that trips `when` (an SQL condition on
    /// `NEW`): a trigger another connection adds, the store none the wiser.
    fn refusing(path: &Path, table: &str, when: &str) -> SqliteStore {
        let store = SqliteStore::open(path).unwrap();
        rusqlite::Connection::open(path)
            .unwrap()
            .execute_batch(&format!(
                "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table}
                 WHEN {when} BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
            ))
            .unwrap();
        store
    }

    async fn inbound_ids(store: &SqliteStore) -> Vec<String> {
        let all = InboundFilter {
            limit: 10,
            ..Default::default()
        };
        let stored = store.list_inbound(all).await.unwrap();
        stored.into_iter().map(|m| m.external_id).collect()
    }

    fn cursors(writes: &[(&str, &str)]) -> Vec<CursorWrite> {
        writes
            .iter()
            .map(|(name, value)| CursorWrite::new(*name, *value))
            .collect()
    }

    /// A cursor that cannot be written takes the message with it, and the
    /// other cursors: nothing is left that says the message was committed
    /// without the state that goes with it, or the other way round.
    #[tokio::test]
    async fn a_message_and_its_cursors_commit_together_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let store = refusing(&path, "cursors", "NEW.name = 'refused'");
        let writes = cursors(&[("parts", "a,b"), ("refused", "x")]);
        let failed = store
            .commit_inbound_with_cursors(received_sms("x-1", 1), 1, SCOPE, writes)
            .await
            .unwrap_err();
        assert!(
            failed.to_string().contains("refused by the test"),
            "{failed}"
        );
        assert!(inbound_ids(&store).await.is_empty(), "no message alone");
        assert_eq!(store.load_cursor(SCOPE, "parts").await.unwrap(), None);

        let writes = cursors(&[("parts", "a,b")]);
        let commit = store
            .commit_inbound_with_cursors(received_sms("x-1", 1), 1, SCOPE, writes)
            .await
            .unwrap();
        assert!(!commit.duplicate);
        assert_eq!(inbound_ids(&store).await, ["x-1"]);
        let parts = store.load_cursor(SCOPE, "parts").await.unwrap();
        assert_eq!(parts.as_deref(), Some("a,b"));
    }

    /// The same the other way: a message the store refuses writes none of
    /// its cursors.
    #[tokio::test]
    async fn a_refused_message_writes_none_of_its_cursors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let store = refusing(&path, "inbound", "NEW.external_id = 'x-2'");
        let writes = cursors(&[("parts", "a,b")]);
        store
            .commit_inbound_with_cursors(received_sms("x-2", 1), 1, SCOPE, writes)
            .await
            .unwrap_err();
        assert_eq!(store.load_cursor(SCOPE, "parts").await.unwrap(), None);
        assert!(inbound_ids(&store).await.is_empty());
    }

    /// A message committed before: not stored again, but its cursors are
    /// written (and an empty value removes one), for offering it again is
    /// how an adapter retries the state a failed write did not keep.
    #[tokio::test]
    async fn a_repeat_is_not_stored_again_but_its_cursors_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        store
            .commit_inbound(received_sms("x-3", 1), 1)
            .await
            .unwrap();
        store.save_cursor(SCOPE, "old", "7").await.unwrap();
        let writes = cursors(&[("parts", "a,b"), ("old", "")]);
        let commit = store
            .commit_inbound_with_cursors(received_sms("x-3", 1), 2, SCOPE, writes)
            .await
            .unwrap();
        assert!(commit.duplicate);
        assert_eq!(inbound_ids(&store).await, ["x-3"]);
        let parts = store.load_cursor(SCOPE, "parts").await.unwrap();
        assert_eq!(parts.as_deref(), Some("a,b"));
        assert_eq!(store.load_cursor(SCOPE, "old").await.unwrap(), None);
    }

    /// An inbound id's family is the id and its numbered ones, on the
    /// endpoint asked about; neighbours in the key order are not of it.
    #[tokio::test]
    async fn inbound_ids_are_a_base_and_its_numbered_ids() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        for id in [
            "sms:ab", "sms:ab#2", "sms:ab#3", "sms:abc", "sms:a", "sms:ab$", "sms:ab!",
        ] {
            store.commit_inbound(received_sms(id, 1), 1).await.unwrap();
        }
        let mut other = received_sms("sms:ab#4", 1);
        other.phone_id = "m2".into();
        store.commit_inbound(other, 1).await.unwrap();
        let mut family = store
            .inbound_ids(ChannelKind::Sms, "m1", "sms:ab")
            .await
            .unwrap();
        family.sort();
        assert_eq!(family, ["sms:ab", "sms:ab#2", "sms:ab#3"]);
    }
}
