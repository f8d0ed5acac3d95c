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

/// The copy at `incoming` put in place of the store at `db`, the replaced
/// store's files kept under `suffix`: [`keep_aside`], then
/// [`put_in_place`]; the names it kept them under. If either step fails,
/// what the first one did is undone ([`undo`]): the store is at its path
/// with its log and shared memory beside it, as it was, and the error
/// says so, or says what could not be put back.
pub(super) fn swap(incoming: &Path, db: &Path, suffix: &str) -> Result<Vec<PathBuf>, String> {
    let mut kept = Vec::new();
    let done = keep_aside(db, suffix, &mut kept).and_then(|()| put_in_place(incoming, db));
    match done {
        Ok(()) => Ok(kept.into_iter().map(|k| k.aside).collect()),
        Err(e) => Err(match undo(&kept) {
            Ok(()) => format!("{e}; the replaced store's files are back in place"),
            Err(left) => format!("{e}; {left}"),
        }),
    }
}

/// One of the replaced store's files and the name it was kept under:
/// a second name (the database), or a new one (its log, its shared
/// memory: `moved`).
#[derive(Debug)]
struct Kept {
    file: PathBuf,
    aside: PathBuf,
    moved: bool,
}

/// Step one: the replaced store's files, under `suffix`, each added to
/// `kept` once made. The database is linked, not moved: until step two
/// it is still at `db`, whole. Its log and shared memory are moved,
/// before the copy comes: left beside it, a log would be replayed into
/// the copy. The restore's own connections to the store (the last ones:
/// the daemon and the other commands are kept out by the locks the
/// caller holds) fold the log into the database and remove both files on
/// close, so they are here only beside a store SQLite could not open, and
/// go with it as they were.
fn keep_aside(db: &Path, suffix: &str, kept: &mut Vec<Kept>) -> Result<(), String> {
    for ending in ENDINGS {
        let file = beside(db, ending);
        if !file.exists() {
            continue;
        }
        let aside = beside(db, &format!("{ending}{suffix}"));
        let moved = !ending.is_empty();
        let made = if moved {
            std::fs::rename(&file, &aside)
        } else {
            link_or_copy(&file, &aside)
        };
        made.map_err(|e| format!("cannot keep {} as {}: {e}", file.display(), aside.display()))?;
        kept.push(Kept { file, aside, moved });
    }
    Ok(())
}

/// The swap failed and the store is still at its path (a rename that
/// fails changes nothing): its log and shared memory moved back beside
/// it, never over a file that appeared there meanwhile, and only then the
/// database's second name removed. A log that cannot go back stays with
/// that second name, the two together the store as it was, and the error
/// names them.
fn undo(kept: &[Kept]) -> Result<(), String> {
    let mut left = Vec::new();
    for Kept { file, aside, .. } in kept.iter().rev().filter(|k| k.moved) {
        if let Err(e) = durable::rename_new(aside, file) {
            left.push(format!(
                "{} could not be moved back to {}: {e}",
                aside.display(),
                file.display()
            ));
        }
    }
    for Kept { aside, .. } in kept.iter().filter(|k| !k.moved) {
        if !left.is_empty() {
            left.push(format!(
                "{} is kept: with the files above it is the store as it was",
                aside.display()
            ));
        } else if let Err(e) = std::fs::remove_file(aside) {
            left.push(format!("cannot remove {}: {e}", aside.display()));
        }
    }
    match left.is_empty() {
        true => Ok(()),
        false => Err(format!(
            "{}; put them back by hand before the daemon starts",
            left.join("; ")
        )),
    }
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
fn put_in_place(incoming: &Path, db: &Path) -> Result<(), String> {
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
        let mut kept = Vec::new();
        keep_aside(&db, ".x", &mut kept).unwrap();
        let kept: Vec<PathBuf> = kept.into_iter().map(|k| k.aside).collect();
        assert_eq!(kept, [beside(&db, ".x")]);
        assert_eq!(outbound_rows(&db), 1, "no store at its path");
        let incoming = incoming(dir.path());
        put_in_place(&incoming, &db).unwrap();
        assert_eq!(outbound_rows(&db), 0);
        assert_eq!(outbound_rows(&kept[0]), 1);
    }

    /// A copy to put in place, in `dir`.
    fn incoming(dir: &Path) -> PathBuf {
        let incoming = dir.join("incoming");
        Connection::open(&incoming)
            .unwrap()
            .execute_batch("CREATE TABLE outbound (id TEXT)")
            .unwrap();
        incoming
    }

    /// A store with a log and a shared memory file beside it, as they are
    /// beside one SQLite could not open; never opened here, which would
    /// fold or drop them.
    fn store_with_log(dir: &Path) -> PathBuf {
        let db = super::super::tests::store(dir);
        std::fs::write(beside(&db, "-wal"), "log").unwrap();
        std::fs::write(beside(&db, "-shm"), "shared memory").unwrap();
        db
    }

    /// A hash of `bytes`, to compare files by without printing them.
    fn hash(bytes: &[u8]) -> u64 {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut hasher = DefaultHasher::new();
        bytes.hash(&mut hasher);
        hasher.finish()
    }

    /// Every file in `dir` with a hash of its contents, by name.
    fn files(dir: &Path) -> Vec<(String, u64)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| {
                let name = e.file_name().into_string().unwrap();
                (name, hash(&std::fs::read(e.path()).unwrap()))
            })
            .collect();
        files.sort();
        files
    }

    /// A copy that cannot be renamed into place (missing here; an I/O
    /// error or a full disk in earnest) leaves the replaced store as it
    /// was: its log and shared memory beside it again, not under the kept
    /// names, and no second name of it left.
    #[test]
    fn a_swap_that_fails_puts_the_replaced_store_s_files_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = store_with_log(dir.path());
        let before = files(dir.path());
        let e = swap(&dir.path().join("missing"), &db, ".x").unwrap_err();
        assert!(
            e.contains("cannot rename") && e.contains("back in place"),
            "{e}"
        );
        assert_eq!(files(dir.path()), before);
    }

    /// A file that cannot be kept aside (its kept name is taken, here by
    /// a folder) stops the swap before the copy moves, and those kept
    /// aside before it go back.
    #[test]
    fn a_swap_that_cannot_keep_a_file_aside_puts_back_those_it_did() {
        let dir = tempfile::tempdir().unwrap();
        let db = store_with_log(dir.path());
        let incoming = incoming(dir.path());
        std::fs::create_dir(beside(&db, "-shm.x")).unwrap();
        let before = files(dir.path());
        let e = swap(&incoming, &db, ".x").unwrap_err();
        assert!(
            e.contains("cannot keep") && e.contains("back in place"),
            "{e}"
        );
        assert_eq!(files(dir.path()), before);
    }

    /// A log that cannot go back (a file took its place meanwhile) is not
    /// written over that file: it stays with the database's second name,
    /// the two the store as it was, and the error names them.
    #[test]
    fn a_log_that_cannot_go_back_stays_with_the_kept_store() {
        let dir = tempfile::tempdir().unwrap();
        let db = store_with_log(dir.path());
        let mut kept = Vec::new();
        keep_aside(&db, ".x", &mut kept).unwrap();
        std::fs::write(beside(&db, "-wal"), "someone else's").unwrap();
        let e = undo(&kept).unwrap_err();
        assert!(
            e.contains("sqlite3-wal.x could not be moved back")
                && e.contains("sqlite3.x is kept")
                && e.contains("by hand"),
            "{e}"
        );
        assert_eq!(
            std::fs::read(beside(&db, "-wal")).unwrap(),
            b"someone else's"
        );
        assert_eq!(std::fs::read(beside(&db, "-wal.x")).unwrap(), b"log");
        assert_eq!(
            std::fs::read(beside(&db, ".x")).unwrap(),
            std::fs::read(&db).unwrap()
        );
        assert_eq!(
            std::fs::read(beside(&db, "-shm")).unwrap(),
            b"shared memory"
        );
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
