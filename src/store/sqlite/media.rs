//! The `media` table (migration 11): one row per kept file, tied to the
//! inbound message that carries it once that commits.

use std::collections::HashSet;

use phonerelay_channel::Attachment;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::rows::Kind;
use crate::media::media_id_of;
use crate::store::{MediaRecord, StoreResult, UploadFailures};

const COLUMNS: &str = "id, channel, phone_id, content_type, filename, size, sha256, created_at, \
     relay_url, inbound_id, relay_base, upload_failures, upload_failed_base, upload_error";

fn from_row(row: &Row<'_>) -> rusqlite::Result<MediaRecord> {
    Ok(MediaRecord {
        id: row.get(0)?,
        channel: row.get::<_, Kind>(1)?.0,
        phone_id: row.get(2)?,
        content_type: row.get(3)?,
        filename: row.get(4)?,
        size: row.get::<_, i64>(5)? as u64,
        sha256: row.get(6)?,
        created_at_ms: row.get(7)?,
        relay_url: row.get(8)?,
        inbound_id: row.get(9)?,
        relay_base: row.get(10)?,
        upload_failures: upload_failures(row)?,
    })
}

fn upload_failures(row: &Row<'_>) -> rusqlite::Result<Option<UploadFailures>> {
    let count: u32 = row.get(11)?;
    let relay_base: Option<String> = row.get(12)?;
    let last_code: Option<String> = row.get(13)?;
    Ok(match (count, relay_base, last_code) {
        (1.., Some(relay_base), Some(last_code)) => Some(UploadFailures {
            relay_base,
            count,
            last_code,
        }),
        _ => None,
    })
}

pub fn insert(conn: &Connection, m: &MediaRecord) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO media (id, channel, phone_id, content_type, filename, size, sha256,
            created_at, relay_url, inbound_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, NULL)",
    )?
    .execute(params![
        m.id,
        m.channel.as_str(),
        m.phone_id,
        m.content_type,
        m.filename,
        m.size as i64,
        m.sha256,
        m.created_at_ms,
    ])?;
    Ok(())
}

pub fn get(conn: &Connection, id: &str) -> StoreResult<Option<MediaRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM media WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], from_row)
        .optional()?)
}

/// How many files are kept, and their bytes (see `Store::media_usage`).
/// A row whose file the start-up sweep did not find keeps no file.
pub fn usage(conn: &Connection) -> StoreResult<(u64, u64)> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM media WHERE file_gone = 0")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?)
}

pub fn set_relay_url(
    conn: &Connection,
    id: &str,
    relay_url: &str,
    relay_base: &str,
) -> StoreResult<()> {
    conn.prepare_cached("UPDATE media SET relay_url = ?2, relay_base = ?3 WHERE id = ?1")?
        .execute([id, relay_url, relay_base])?;
    Ok(())
}

/// One more failed upload of file `id` to the relay at `relay_base`, with
/// error `code`; the file's failed uploads to that relay so far (0 if the
/// row is gone). A failure at another relay than the last starts the
/// count again: that relay never had the file to fail on.
pub fn add_upload_failure(
    conn: &Connection,
    id: &str,
    relay_base: &str,
    code: &str,
) -> StoreResult<u32> {
    Ok(conn
        .prepare_cached(
            "UPDATE media SET upload_failures = CASE WHEN upload_failed_base IS ?2
                THEN upload_failures + 1 ELSE 1 END,
                upload_failed_base = ?2, upload_error = ?3
             WHERE id = ?1 RETURNING upload_failures",
        )?
        .query_row([id, relay_base, code], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Tie the files `attachments` names to the inbound message `inbound_id`
/// just committed, so they go when it is pruned. Only files of the same
/// endpoint that no message took yet: an adapter cannot lend another
/// endpoint's file, or take one back from the message that has it.
pub fn claim_for(
    conn: &Connection,
    inbound_id: &str,
    channel: &str,
    phone_id: &str,
    attachments: &[Attachment],
) -> StoreResult<()> {
    for id in attachments.iter().filter_map(|a| media_id_of(&a.url)) {
        conn.prepare_cached(
            "UPDATE media SET inbound_id = ?1
             WHERE id = ?2 AND channel = ?3 AND phone_id = ?4 AND inbound_id IS NULL",
        )?
        .execute([inbound_id, id, channel, phone_id])?;
    }
    Ok(())
}

/// Up to ?2 files whose inbound message is gone (pruned), and those no
/// message took that were saved before ?1 (an adapter saved one and then
/// could not deliver its message). The media table holds one row per file
/// kept, so reading it through is cheap next to the files themselves.
/// A row whose file is gone frees no room: its bytes were given back when
/// the sweep marked it.
const PRUNABLE: &str = "SELECT id, CASE WHEN file_gone = 0 THEN size ELSE 0 END FROM media
    WHERE (inbound_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM inbound WHERE inbound.id = media.inbound_id))
       OR (inbound_id IS NULL AND created_at < ?1)
    LIMIT ?2";

/// Delete the rows of up to `batch` prunable files; returns their ids, whose
/// files the caller removes once this has committed, and their bytes.
pub fn prune(
    conn: &Connection,
    unclaimed_before_ms: i64,
    batch: u32,
) -> StoreResult<(Vec<String>, u64)> {
    let found = conn
        .prepare_cached(PRUNABLE)?
        .query_map(params![unclaimed_before_ms, batch], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (id, _) in &found {
        conn.prepare_cached("DELETE FROM media WHERE id = ?1")?
            .execute([id])?;
    }
    let bytes = found.iter().map(|(_, size)| size).sum();
    Ok((found.into_iter().map(|(id, _)| id).collect(), bytes))
}

pub fn all_ids(conn: &Connection) -> StoreResult<HashSet<String>> {
    Ok(conn
        .prepare_cached("SELECT id FROM media")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<HashSet<String>, _>>()?)
}

/// Mark the rows of `missing` as having lost their file, and those of
/// `found` so marked as having it again (put back by hand); returns the
/// bytes the first no longer count against the total cap and those the
/// second count again. A row already so marked counts once.
pub fn mark_files(
    conn: &Connection,
    missing: &[String],
    found: &[String],
) -> StoreResult<(u64, u64)> {
    Ok((
        set_file_gone(conn, missing, true)?,
        set_file_gone(conn, found, false)?,
    ))
}

/// The bytes of the rows of `ids` whose `file_gone` changed to `gone`.
fn set_file_gone(conn: &Connection, ids: &[String], gone: bool) -> StoreResult<u64> {
    let mut statement = conn.prepare_cached(
        "UPDATE media SET file_gone = ?2 WHERE id = ?1 AND file_gone <> ?2 RETURNING size",
    )?;
    let mut bytes = 0u64;
    for id in ids {
        let size: Option<i64> = statement
            .query_row(params![id, gone], |row| row.get(0))
            .optional()?;
        bytes = bytes.saturating_add(size.unwrap_or(0) as u64);
    }
    Ok(bytes)
}
