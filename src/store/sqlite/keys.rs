//! API keys: only the SHA-256 of the secret part is stored.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::store::*;

const COLUMNS: &str = "key_id, name, secret_hash, scopes, phone_id, created_at, revoked_at";

pub fn create(conn: &Connection, key: &NewApiKey) -> StoreResult<()> {
    let scopes: Vec<String> = key.scopes.iter().map(Scope::to_string).collect();
    conn.execute(
        "INSERT INTO api_keys (key_id, name, secret_hash, scopes, phone_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            key.key_id,
            key.name,
            key.secret_hash,
            scopes.join(","),
            key.phone_id,
            key.created_at_ms
        ],
    )?;
    Ok(())
}

/// Revoke every active key named as `key` is, then create `key`; how many
/// were revoked. Inside the caller's one transaction.
pub fn replace_named(conn: &Connection, key: &NewApiKey, now_ms: i64) -> StoreResult<u64> {
    let revoked = conn.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
        params![key.name, now_ms],
    )?;
    create(conn, key)?;
    Ok(revoked as u64)
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    let scopes: String = row.get(3)?;
    Ok(ApiKeyRecord {
        key_id: row.get(0)?,
        name: row.get(1)?,
        secret_hash: row.get(2)?,
        scopes: scopes.split(',').filter_map(|s| s.parse().ok()).collect(),
        phone_id: row.get(4)?,
        created_at_ms: row.get(5)?,
        revoked_at_ms: row.get(6)?,
    })
}

pub fn find(conn: &Connection, key_id: &str) -> StoreResult<Option<ApiKeyRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE key_id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([key_id], from_row)
        .optional()?)
}

pub fn list(conn: &Connection) -> StoreResult<Vec<ApiKeyRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys ORDER BY created_at");
    let rows = conn
        .prepare(&sql)?
        .query_map([], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Revoke by id, or by name when exactly one active key has it.
pub fn revoke(conn: &Connection, key: &str, now_ms: i64) -> StoreResult<bool> {
    if revoke_id(conn, key, now_ms)? {
        return Ok(true);
    }
    let named: i64 = conn.query_row(
        "SELECT COUNT(*) FROM api_keys WHERE name = ?1 AND revoked_at IS NULL",
        [key],
        |row| row.get(0),
    )?;
    if named != 1 {
        return Ok(false);
    }
    conn.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
        params![key, now_ms],
    )?;
    Ok(true)
}

/// Revoke the active key `key_id`; false if there is none.
fn revoke_id(conn: &Connection, key_id: &str, now_ms: i64) -> StoreResult<bool> {
    let revoked = conn.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE key_id = ?1 AND revoked_at IS NULL",
        params![key_id, now_ms],
    )?;
    Ok(revoked > 0)
}

/// Apply `change` on `conn`, inside the caller's one transaction; true if
/// the previous key was active and is now revoked. It is revoked by its
/// id only: a name, as `revoke` also takes, could name another key.
pub fn replace_pairing(conn: &Connection, change: &PairingChange) -> StoreResult<bool> {
    let revoked = match &change.revoke_key_id {
        Some(previous) => revoke_id(conn, previous, change.now_ms)?,
        None => false,
    };
    if let Some(key) = &change.bridge_key {
        create(conn, key)?;
    }
    for cursor in &change.cursors {
        super::cursors::write(conn, &change.scope, &cursor.name, &cursor.value)?;
    }
    if let Some(moved) = &change.relay_move {
        super::relay::record_relay_move(conn, &change.scope, moved)?;
    }
    Ok(revoked)
}

/// How long a key record read from the database is trusted without reading
/// it again. A revocation through this store clears the cache at once; one
/// made by another process on the same file (`phonerelay keys revoke`,
/// `phonerelay pair`) takes effect within this time.
pub const KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Most records kept; past it the cache starts over (keys are few).
const KEY_CACHE_MAX: usize = 1024;

/// Key records by key id, so the bearer check of every request need not
/// read the database. Only found records are kept: an unknown key id is
/// looked up each time, so a key created by another process works at once.
#[derive(Default)]
pub struct KeyCache {
    inner: std::sync::Mutex<KeyCacheInner>,
}

#[derive(Default)]
struct KeyCacheInner {
    /// Bumped by every clear, so a read that raced a revocation cannot put
    /// the record it read before the revocation back.
    generation: u64,
    entries: std::collections::HashMap<String, (ApiKeyRecord, std::time::Instant)>,
}

impl KeyCache {
    /// A fresh record, or `Err(generation)` to pass to [`KeyCache::put`].
    pub fn get(&self, key_id: &str) -> Result<ApiKeyRecord, u64> {
        let inner = self.inner.lock().expect("key cache lock");
        match inner.entries.get(key_id) {
            Some((record, at)) if at.elapsed() < KEY_CACHE_TTL => Ok(record.clone()),
            _ => Err(inner.generation),
        }
    }

    /// Keep `record`, read after [`KeyCache::get`] returned `generation`.
    pub fn put(&self, generation: u64, record: &ApiKeyRecord) {
        let mut inner = self.inner.lock().expect("key cache lock");
        if inner.generation != generation {
            return;
        }
        if inner.entries.len() >= KEY_CACHE_MAX {
            inner.entries.clear();
        }
        inner.entries.insert(
            record.key_id.clone(),
            (record.clone(), std::time::Instant::now()),
        );
    }

    /// Forget everything; call after a key change has committed.
    pub fn clear(&self) {
        let mut inner = self.inner.lock().expect("key cache lock");
        inner.generation += 1;
        inner.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key_id: &str) -> ApiKeyRecord {
        ApiKeyRecord {
            key_id: key_id.into(),
            name: "k".into(),
            secret_hash: vec![1, 2, 3],
            scopes: vec![Scope::Send],
            phone_id: None,
            created_at_ms: 0,
            revoked_at_ms: None,
        }
    }

    /// A pairing's replacement that fails part-way (here its new key's
    /// id is taken) is undone whole: the previous bridge key stays
    /// active and the pairing's cursors keep their values. One that goes
    /// through revokes the previous key and writes them.
    #[tokio::test]
    async fn a_pairing_replaced_part_way_is_undone_whole() {
        use phonerelay_channel::CursorWrite;

        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        let new_key = |key_id: &str| NewApiKey {
            key_id: key_id.into(),
            name: "relay".into(),
            secret_hash: vec![1],
            scopes: vec![Scope::Send],
            phone_id: None,
            created_at_ms: 1,
        };
        store.create_key(new_key("old")).await.unwrap();
        store.save_cursor("relay", "pairing", "old").await.unwrap();
        let change = |key_id: &str| PairingChange {
            revoke_key_id: Some("old".into()),
            bridge_key: Some(new_key(key_id)),
            now_ms: 2,
            scope: "relay".into(),
            cursors: vec![CursorWrite::new("pairing", "new")],
            relay_move: None,
        };
        let active = async |key_id: &str| {
            let key = store.find_key(key_id).await.unwrap();
            key.is_some_and(|k| k.revoked_at_ms.is_none())
        };

        assert!(store.replace_relay_pairing(change("old")).await.is_err());
        assert!(active("old").await, "the old key was revoked");
        let pairing = store.load_cursor("relay", "pairing").await.unwrap();
        assert_eq!(pairing.as_deref(), Some("old"));

        store.replace_relay_pairing(change("new")).await.unwrap();
        assert!(!active("old").await && active("new").await);
        let pairing = store.load_cursor("relay", "pairing").await.unwrap();
        assert_eq!(pairing.as_deref(), Some("new"));
    }

    #[test]
    fn a_read_that_raced_a_clear_is_not_cached() {
        let cache = KeyCache::default();
        let generation = cache.get("a").unwrap_err();
        cache.clear(); // a revocation committed while the read ran
        cache.put(generation, &record("a"));
        assert!(cache.get("a").is_err());

        let generation = cache.get("a").unwrap_err();
        cache.put(generation, &record("a"));
        assert_eq!(cache.get("a").unwrap().key_id, "a");
        cache.clear();
        assert!(cache.get("a").is_err(), "clear forgets every record");
    }
}
