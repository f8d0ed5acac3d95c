//! Received items an adapter could not read (`UnreadableInbound`), kept as
//! they came for a human; one row per endpoint and content, so the same
//! bytes read again (after a crash before the upstream was acknowledged)
//! are not stored twice.

use phonerelay_channel::{ChannelKind, UnreadableInbound};
use rusqlite::{Connection, OptionalExtension, Row, params};
use sha2::{Digest, Sha256};

use super::rows::Kind;
use crate::store::*;

const COLUMNS: &str = "seq, id, channel, phone_id, raw, origin, reason, received_at, committed_at";

/// The most of an item's bytes kept: enough for a human to see what came
/// (an e-mail's headers and the start of its body), while a stream of
/// distinct malformed multi-megabyte items cannot fill the disk the store
/// shares with every send (received files have their own limits; these
/// are in the database).
pub const MAX_UNREADABLE_KEPT_BYTES: usize = 256 * 1024;

pub fn commit(
    conn: &Connection,
    item: &UnreadableInbound,
    now_ms: i64,
) -> StoreResult<InboundCommit> {
    // The content's digest, not the content, is the key: an e-mail's
    // source may be megabytes, and an index of it would be as large.
    let digest = Sha256::digest(&item.raw).to_vec();
    let existing: Option<String> = conn
        .prepare_cached(
            "SELECT id FROM inbound_unreadable
             WHERE channel = ?1 AND phone_id = ?2 AND raw_sha256 = ?3",
        )?
        .query_row(
            params![item.channel.as_str(), item.phone_id, digest],
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
    // The digest above is of all of it, so that two items alike in their
    // first bytes stay two.
    let kept = &item.raw[..item.raw.len().min(MAX_UNREADABLE_KEPT_BYTES)];
    let reason = if kept.len() < item.raw.len() {
        format!(
            "{} (the first {} of its {} bytes kept)",
            item.reason,
            kept.len(),
            item.raw.len()
        )
    } else {
        item.reason.clone()
    };
    conn.prepare_cached(
        "INSERT INTO inbound_unreadable (id, channel, phone_id, raw_sha256, raw, origin,
            reason, received_at, committed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        id,
        item.channel.as_str(),
        item.phone_id,
        digest,
        kept,
        item.origin,
        reason,
        item.received_at_ms,
        now_ms,
    ])?;
    Ok(InboundCommit {
        id,
        duplicate: false,
    })
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<UnreadableRecord> {
    Ok(UnreadableRecord {
        seq: row.get(0)?,
        id: row.get(1)?,
        channel: row.get::<_, Kind>(2)?.0,
        phone_id: row.get(3)?,
        raw: row.get(4)?,
        origin: row.get(5)?,
        reason: row.get(6)?,
        received_at_ms: row.get(7)?,
        committed_at_ms: row.get(8)?,
    })
}

/// Newest first, as the inbound list.
pub fn list(conn: &Connection, f: &InboundFilter) -> StoreResult<Vec<UnreadableRecord>> {
    super::inbound::list_newest_first(conn, "inbound_unreadable", COLUMNS, f, from_row)
}

/// How many are kept, per endpoint that has any.
pub fn counts(conn: &Connection) -> StoreResult<Vec<(ChannelKind, String, u64)>> {
    let rows = conn
        .prepare_cached(
            "SELECT channel, phone_id, COUNT(*) FROM inbound_unreadable
             GROUP BY channel, phone_id",
        )?
        .query_map([], |row| {
            Ok((row.get::<_, Kind>(0)?.0, row.get(1)?, row.get(2)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Rows committed before ?1, up to ?2: kept as long as inbound messages
/// are (`storage.retention_days`), through the `committed_at` index.
pub(super) const PRUNE_UNREADABLE: &str = "DELETE FROM inbound_unreadable WHERE seq IN (
    SELECT seq FROM inbound_unreadable WHERE committed_at < ?1 LIMIT ?2)";

#[cfg(test)]
mod tests {
    use super::super::SqliteStore;
    use crate::store::*;
    use phonerelay_channel::{ChannelKind, UnreadableInbound};

    pub fn unreadable(phone_id: &str, raw: &[u8]) -> UnreadableInbound {
        UnreadableInbound {
            channel: ChannelKind::Sms,
            phone_id: phone_id.into(),
            raw: raw.to_vec(),
            origin: "SM:3".into(),
            reason: "not an SMS-DELIVER".into(),
            received_at_ms: 5,
        }
    }

    fn all() -> InboundFilter {
        InboundFilter {
            limit: 10,
            ..Default::default()
        }
    }

    /// An item larger than the most kept keeps its first bytes and says
    /// how large it was; one alike in those bytes is still another row.
    #[tokio::test]
    async fn a_large_item_keeps_its_first_bytes_and_says_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        let mut raw = vec![b'x'; super::MAX_UNREADABLE_KEPT_BYTES * 4];
        store
            .commit_unreadable(unreadable("m1", &raw), 9)
            .await
            .unwrap();
        raw.push(b'!');
        let second = store
            .commit_unreadable(unreadable("m1", &raw), 9)
            .await
            .unwrap();
        assert!(
            !second.duplicate,
            "items alike in their first bytes were merged"
        );
        let kept = store.list_unreadable(all()).await.unwrap();
        assert_eq!(kept.len(), 2);
        for item in &kept {
            assert_eq!(item.raw.len(), super::MAX_UNREADABLE_KEPT_BYTES);
            assert!(
                item.reason.contains(&format!(
                    "(the first {} of its ",
                    super::MAX_UNREADABLE_KEPT_BYTES
                )),
                "{}",
                item.reason
            );
        }
    }

    /// The same bytes on the same endpoint are one row, however often
    /// they are offered (a crash between the commit and the SIM delete
    /// has the next sweep offer them again); on another endpoint, or
    /// other bytes, another row.
    #[tokio::test]
    async fn the_same_bytes_on_one_endpoint_are_kept_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        let first = store
            .commit_unreadable(unreadable("m1", &[0, 4]), 10)
            .await
            .unwrap();
        assert!(!first.duplicate);
        let again = store
            .commit_unreadable(unreadable("m1", &[0, 4]), 11)
            .await
            .unwrap();
        assert!(again.duplicate);
        assert_eq!(again.id, first.id);
        store
            .commit_unreadable(unreadable("m2", &[0, 4]), 12)
            .await
            .unwrap();
        store
            .commit_unreadable(unreadable("m1", &[0, 5]), 13)
            .await
            .unwrap();
        let rows = store.list_unreadable(all()).await.unwrap();
        let kept: Vec<(&str, &[u8], i64)> = rows
            .iter()
            .map(|r| (r.phone_id.as_str(), r.raw.as_slice(), r.committed_at_ms))
            .collect();
        assert_eq!(
            kept,
            [
                ("m1", &[0u8, 5][..], 13),
                ("m2", &[0, 4][..], 12),
                ("m1", &[0, 4][..], 10)
            ]
        );
        assert_eq!(rows[2].origin, "SM:3");
        assert_eq!(rows[2].reason, "not an SMS-DELIVER");
        assert_eq!(rows[2].received_at_ms, 5);
        let mut counts = store.unreadable_counts().await.unwrap();
        counts.sort();
        assert_eq!(
            counts,
            [
                (ChannelKind::Sms, "m1".to_string(), 2),
                (ChannelKind::Sms, "m2".to_string(), 1)
            ]
        );
    }

    /// Kept as long as inbound messages: retention takes those committed
    /// before its cut-off, and no other.
    #[tokio::test]
    async fn retention_takes_old_unreadable_rows_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        for (raw, at) in [(1u8, 100), (2, 200), (3, 300)] {
            store
                .commit_unreadable(unreadable("m1", &[raw]), at)
                .await
                .unwrap();
        }
        let removed = store
            .prune(250, 100, UnforwardedInbound::Keep, None)
            .await
            .unwrap();
        assert_eq!(removed, 2);
        let left = store.list_unreadable(all()).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].raw, [3]);
    }
}
