//! The replaced store's received files, kept from the start-up sweep. The
//! daemon's start removes every file in `media/` that its store has no
//! row for (`media_files::sweep`): after a restore, that is every file
//! received after the backup, which only the replaced store, kept aside,
//! knows. The restore moves them into a folder beside it
//! (`media<suffix>`, the kept store's suffix), so that putting that store
//! back can bring them back.

use std::collections::HashSet;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::super::{beside, media_files};
use super::durable;

/// The files kept aside.
#[derive(Debug)]
pub struct MediaKept {
    pub dir: PathBuf,
    pub files: usize,
    media: PathBuf,
    /// Each kept file's name in `media/`: linked, not moved, so the
    /// replaced store has its files until the copy replaces it.
    linked: Vec<PathBuf>,
    /// Moved instead (no hard links where the state dir is): moved back if
    /// the restore fails.
    moved: Vec<(PathBuf, PathBuf)>,
}

/// Step one, before the copy replaces the store: every file of the media
/// folder of `db` that the copy at `incoming` has no row for, linked (or
/// moved) into `media<suffix>`, a new folder. `None` if there is none. A
/// failure undoes what it did.
pub(super) fn keep_unreferenced(
    db: &Path,
    incoming: &Path,
    suffix: &str,
) -> Result<Option<MediaKept>, String> {
    let media = media_files::dir_beside(db);
    let files = unreferenced(&media, incoming)?;
    if files.is_empty() {
        return Ok(None);
    }
    let dir = beside(&media, suffix);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut kept = MediaKept {
        dir,
        files: files.len(),
        media,
        linked: Vec::new(),
        moved: Vec::new(),
    };
    match kept.take(&files) {
        Ok(()) => Ok(Some(kept)),
        Err(e) => {
            kept.undo();
            Err(e)
        }
    }
}

/// The files in `media` the copy at `incoming` has no row for: those the
/// sweep would remove. Temporary files (`.partial-…`) are a crash's
/// leftovers, never a row's, and folders are not the store's: the sweep
/// leaves them, and so does this.
fn unreferenced(media: &Path, incoming: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = match std::fs::read_dir(media) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot list {}: {e}", media.display())),
    };
    let rows = ids_in(incoming).map_err(|e| format!("{}: {e}", incoming.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", media.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && !name.starts_with('.') && !rows.contains(&name) {
            files.push(entry.path());
        }
    }
    Ok(files)
}

/// The media ids the copy has rows for; none in a copy made before its
/// schema had files (migration 11).
fn ids_in(copy: &Path) -> rusqlite::Result<HashSet<String>> {
    let conn = Connection::open_with_flags(copy, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let has_media: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'media')",
        [],
        |row| row.get(0),
    )?;
    if !has_media {
        return Ok(HashSet::new());
    }
    conn.prepare("SELECT id FROM media")?
        .query_map([], |row| row.get(0))?
        .collect()
}

impl MediaKept {
    fn take(&mut self, files: &[PathBuf]) -> Result<(), String> {
        super::restore::give_to_state_dir_owner(&self.dir)?;
        for file in files {
            let to = self
                .dir
                .join(file.file_name().expect("a listed file has a name"));
            let fail = |e: std::io::Error| format!("cannot keep {}: {e}", file.display());
            match std::fs::hard_link(file, &to) {
                Ok(()) => self.linked.push(file.clone()),
                Err(e) if durable::links_unsupported(&e) => {
                    std::fs::rename(file, &to).map_err(fail)?;
                    self.moved.push((file.clone(), to));
                }
                Err(e) => return Err(fail(e)),
            }
        }
        // Durable before the names in `media/` go.
        durable::sync_dir(&self.dir)?;
        durable::sync_dir_of(&self.dir)
    }

    /// The restore failed: the media folder as it was, the kept folder
    /// (made by this restore) gone.
    pub(super) fn undo(self) {
        for (from, to) in &self.moved {
            let _ = std::fs::rename(to, from);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Step two, once the copy is in place: the linked files' names in
    /// `media/` removed. One that cannot be is a warning only: the
    /// restored store has no row for it, so the daemon's start removes
    /// it, and the kept folder has it.
    pub(super) fn finish(&self, warnings: &mut Vec<String>) {
        for file in &self.linked {
            if let Err(e) = std::fs::remove_file(file) {
                warnings.push(format!("cannot remove {}: {e}", file.display()));
            }
        }
        if let Err(e) = durable::sync_dir(&self.media) {
            warnings.push(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEPT: &str = "0194f0c2-7a4e-7000-8000-000000000001";
    const LATER: &str = "0194f0c2-7a4e-7000-8000-000000000002";

    /// A copy whose `media` table has `ids`.
    fn copy_with(path: &Path, ids: &[&str]) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch("CREATE TABLE media (id TEXT PRIMARY KEY)")
            .unwrap();
        for id in ids {
            conn.execute("INSERT INTO media (id) VALUES (?1)", [id])
                .unwrap();
        }
    }

    /// Only what the sweep would remove is kept aside: files the copy has
    /// no row for, not its own, nor a crash's temporary files or folders;
    /// undone, the media folder is as it was.
    #[test]
    fn only_the_files_the_copy_has_no_row_for_are_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (db, copy) = (dir.path().join("s.sqlite3"), dir.path().join("copy"));
        let media = dir.path().join("media");
        std::fs::create_dir_all(media.join("folder")).unwrap();
        for name in [KEPT, LATER, ".partial-x"] {
            std::fs::write(media.join(name), name).unwrap();
        }
        copy_with(&copy, &[KEPT]);
        let kept = keep_unreferenced(&db, &copy, ".r").unwrap().unwrap();
        assert_eq!(
            (kept.files, kept.dir.clone()),
            (1, dir.path().join("media.r"))
        );
        assert_eq!(
            std::fs::read_to_string(kept.dir.join(LATER)).unwrap(),
            LATER
        );
        assert!(
            media.join(LATER).exists(),
            "gone before the copy is in place"
        );
        kept.undo();
        assert!(!dir.path().join("media.r").exists());
        assert!(media.join(LATER).exists());

        let kept = keep_unreferenced(&db, &copy, ".r").unwrap().unwrap();
        let mut warnings = Vec::new();
        kept.finish(&mut warnings);
        assert!(warnings.is_empty(), "{warnings:?}");
        let mut left: Vec<_> = std::fs::read_dir(&media)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [".partial-x", KEPT, "folder"]);
    }

    #[test]
    fn a_copy_from_before_files_were_kept_has_no_row_for_any() {
        let dir = tempfile::tempdir().unwrap();
        let (db, copy) = (dir.path().join("s.sqlite3"), dir.path().join("copy"));
        std::fs::create_dir(dir.path().join("media")).unwrap();
        std::fs::write(dir.path().join("media").join(KEPT), "x").unwrap();
        Connection::open(&copy)
            .unwrap()
            .execute_batch("CREATE TABLE outbound (id TEXT)")
            .unwrap();
        let kept = keep_unreferenced(&db, &copy, ".r").unwrap().unwrap();
        assert!(kept.dir.join(KEPT).exists());
    }
}
