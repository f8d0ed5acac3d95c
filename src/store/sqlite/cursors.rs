//! Adapter cursors: a value under an endpoint's scope and a name.

use rusqlite::{Connection, OptionalExtension};

use crate::store::StoreResult;

/// Store `value` under (`scope`, `name`); an empty value removes the
/// cursor, so one-off cursors (a long SMS's accepted parts) do not pile up.
pub fn write(conn: &Connection, scope: &str, name: &str, value: &str) -> StoreResult<()> {
    if value.is_empty() {
        conn.prepare_cached("DELETE FROM cursors WHERE scope = ?1 AND name = ?2")?
            .execute((scope, name))?;
    } else {
        conn.prepare_cached(
            "INSERT INTO cursors (scope, name, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (scope, name) DO UPDATE SET value = excluded.value",
        )?
        .execute((scope, name, value))?;
    }
    Ok(())
}

pub fn read(conn: &Connection, scope: &str, name: &str) -> StoreResult<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT value FROM cursors WHERE scope = ?1 AND name = ?2",
            (scope, name),
            |row| row.get(0),
        )
        .optional()?)
}
