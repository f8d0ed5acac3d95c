//! The restored copy put in the store's place so that there is a whole
//! store at the store's path at every instant: the replaced store first
//! gets a second name (a hard link), then the copy is renamed over it in
//! one atomic step. A crash in between leaves the replaced store where
//! the daemon looks, not an empty path, on which the next start would
//! silently create a fresh, empty store.

use std::path::{Path, PathBuf};

use super::super::beside;
use super::durable;

/// The store's files: the database, its write-ahead log, its shared
/// memory.
const ENDINGS: [&str; 3] = ["", "-wal", "-shm"];

/// `suffix`, or `suffix.N` if that is taken, so that no file of an
/// earlier restore is overwritten (a rename replaces what is at its
/// target): none of the store's names with it, nor `also` with it (the
/// folder of kept media files), exists yet.
pub(super) fn free_suffix(db: &Path, also: &Path, suffix: &str) -> String {
    (0..)
        .map(|n| match n {
            0 => suffix.to_string(),
            n => format!("{suffix}.{n}"),
        })
        .find(|s| {
            ENDINGS
                .iter()
                .all(|e| !beside(db, &format!("{e}{s}")).exists())
                && !beside(also, s).exists()
        })
        .expect("some suffix is free")
}

/// Step one: the replaced store's files, under `suffix`; what it made.
/// The database is linked, not moved: until step two it is still at
/// `db`, whole. Its log and shared memory are moved, before the copy
/// comes: left beside it, a log would be replayed into the copy. The
/// restore's own connections to the store (the last ones; the daemon is
/// stopped) fold the log into the database and remove both files on
/// close, so they are here only beside a store SQLite could not open,
/// and go with it as they were.
pub(super) fn keep_aside(db: &Path, suffix: &str) -> Result<Vec<PathBuf>, String> {
    let mut kept = Vec::new();
    for ending in ENDINGS {
        let file = beside(db, ending);
        if !file.exists() {
            continue;
        }
        let aside = beside(db, &format!("{ending}{suffix}"));
        let made = if ending.is_empty() {
            link_or_copy(&file, &aside)
        } else {
            std::fs::rename(&file, &aside)
        };
        made.map_err(|e| {
            format!(
                "cannot keep {} as {}: {e}; kept so far: {kept:?}",
                file.display(),
                aside.display()
            )
        })?;
        kept.push(aside);
    }
    Ok(kept)
}

/// A second name for `file`; a synced copy where the filesystem has no
/// hard links, so the store stays at its path all the same.
fn link_or_copy(file: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(file, to) {
        Err(e) if durable::links_unsupported(&e) => {
            std::fs::copy(file, to)?;
            std::fs::File::open(to)?.sync_all()
        }
        linked => linked,
    }
}

/// Step two: the copy at `incoming` renamed over the store at `db`, which
/// holds either the one or the other at every instant.
pub(super) fn put_in_place(incoming: &Path, db: &Path) -> Result<(), String> {
    std::fs::rename(incoming, db).map_err(|e| {
        format!(
            "cannot rename {} to {}: {e}",
            incoming.display(),
            db.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;

    fn outbound_rows(db: &Path) -> i64 {
        Connection::open(db)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM outbound", [], |r| r.get(0))
            .unwrap()
    }

    /// A crash after the first step leaves the store where the daemon
    /// opens it, with what it had; the second step replaces it.
    #[test]
    fn the_store_is_at_its_path_until_the_copy_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::tests::store(dir.path());
        let kept = keep_aside(&db, ".x").unwrap();
        assert_eq!(kept, [beside(&db, ".x")]);
        assert_eq!(outbound_rows(&db), 1, "no store at its path");
        let incoming = dir.path().join("incoming");
        Connection::open(&incoming)
            .unwrap()
            .execute_batch("CREATE TABLE outbound (id TEXT)")
            .unwrap();
        put_in_place(&incoming, &db).unwrap();
        assert_eq!(outbound_rows(&db), 0);
        assert_eq!(outbound_rows(&kept[0]), 1);
    }

    #[test]
    fn a_suffix_an_earlier_restore_took_is_not_taken_again() {
        let dir = tempfile::tempdir().unwrap();
        let (db, media) = (dir.path().join("s.sqlite3"), dir.path().join("media"));
        assert_eq!(free_suffix(&db, &media, ".r"), ".r");
        std::fs::write(dir.path().join("s.sqlite3-wal.r"), "").unwrap();
        assert_eq!(free_suffix(&db, &media, ".r"), ".r.1");
        std::fs::create_dir(dir.path().join("media.r.1")).unwrap();
        assert_eq!(free_suffix(&db, &media, ".r"), ".r.2");
    }
}
