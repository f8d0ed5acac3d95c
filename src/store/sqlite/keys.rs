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
    let by_id = conn.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE key_id = ?1 AND revoked_at IS NULL",
        params![key, now_ms],
    )?;
    if by_id > 0 {
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
