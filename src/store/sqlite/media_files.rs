//! The files of kept media: `media/<id>` beside the database, in the state
//! dir. A file is written under a temporary name, synced, renamed and its
//! folder synced before its row is committed, so a committed row always
//! has its whole file; a crash in between leaves a file without a row,
//! which the start-up sweep removes.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A file being written; never served, removed at the next start if a
/// crash left it.
const TEMP_PREFIX: &str = ".partial-";

/// The media folder of the store at `database`.
pub fn dir_beside(database: &Path) -> PathBuf {
    database
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("media")
}

/// Whether `name` can be a media id (a hyphenated lower-case UUID): the
/// only names a file is given, so no id taken from a request can reach
/// outside the folder.
fn is_media_id(name: &str) -> bool {
    name.len() == 36
        && name
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'-'))
}

pub(super) fn path_of(dir: &Path, id: &str) -> std::io::Result<PathBuf> {
    if is_media_id(id) {
        Ok(dir.join(id))
    } else {
        Err(std::io::Error::other(format!("{id:?} is not a media id")))
    }
}

/// Write `bytes` as file `id`, durably: once this returns `Ok`, the file
/// survives a power cut under its name.
pub fn write_durably(dir: &Path, id: &str, bytes: &[u8]) -> std::io::Result<()> {
    let target = path_of(dir, id)?;
    if !dir.is_dir() {
        crate::private_files::create_dir(dir)?;
        sync_parent_of(dir)?;
    }
    let temp = dir.join(format!("{TEMP_PREFIX}{id}"));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, &target)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        // Whichever name the file had when it failed: after the rename, a
        // folder that did not sync leaves it under its own name, and the
        // caller, told it failed, gives it no row.
        let _ = std::fs::remove_file(&temp);
        let _ = std::fs::remove_file(&target);
    }
    written
}

fn sync_parent_of(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(parent) => std::fs::File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

/// File `id` opened for reading, if it is there and `size` bytes long; a
/// shorter or longer one is not the file its row describes.
pub async fn open(dir: &Path, id: &str, size: u64) -> std::io::Result<Option<tokio::fs::File>> {
    let file = match tokio::fs::File::open(path_of(dir, id)?).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let found = file.metadata().await?.len();
    if found != size {
        tracing::warn!(%id, expected = size, found, "a media file is not the size its row says; served as gone");
        return Ok(None);
    }
    Ok(Some(file))
}

/// Whether opening a file failed for a reason that passes by itself: the
/// process or the system out of file handles (EMFILE, ENFILE), memory
/// (ENOMEM), or an interrupted or would-block call. A file whose
/// permissions or sectors are bad (EACCES, EIO), or a name that is no
/// file's, is not.
pub fn open_failed_for_now(error: &std::io::Error) -> bool {
    error.raw_os_error().is_some_and(|code| {
        matches!(
            code,
            libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EAGAIN | libc::EINTR
        )
    })
}

/// Remove the files of `ids`; one that cannot be removed is logged (the
/// start-up sweep takes it, having no row).
pub fn remove(dir: &Path, ids: &[String]) {
    for id in ids {
        let removed = path_of(dir, id).and_then(std::fs::remove_file);
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(%id, error = %e, "cannot remove a media file"),
        }
    }
}

/// Remove every file in `dir` that is not one of `ids` (and every
/// temporary one); returns how many went, and those of `ids` that have a
/// file.
pub fn sweep(dir: &Path, ids: &HashSet<String>) -> std::io::Result<(usize, HashSet<String>)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, HashSet::new())),
        Err(e) => return Err(e),
    };
    let mut present = HashSet::new();
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if ids.contains(&name) && entry.file_type()?.is_file() {
            present.insert(name);
            continue;
        }
        if !entry.file_type()?.is_file() {
            // Not ours to remove: a folder someone made here.
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!(file = %entry.path().display(), error = %e,
                "cannot remove a media file without a row"),
        }
    }
    if removed > 0 {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok((removed, present))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0194f0c2-7a4e-7000-8000-000000000001";

    #[test]
    fn only_a_lack_of_handles_or_memory_fails_an_open_for_now() {
        use std::io::Error;
        for code in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOMEM,
            libc::EAGAIN,
            libc::EINTR,
        ] {
            assert!(
                open_failed_for_now(&Error::from_raw_os_error(code)),
                "{code}"
            );
        }
        for code in [libc::EACCES, libc::EIO, libc::EISDIR] {
            assert!(
                !open_failed_for_now(&Error::from_raw_os_error(code)),
                "{code}"
            );
        }
        assert!(!open_failed_for_now(
            &path_of(Path::new("/m"), "../x").unwrap_err()
        ));
    }

    #[test]
    fn a_file_is_written_whole_under_its_id_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("media");
        write_durably(&dir, ID, b"bytes").unwrap();
        assert_eq!(std::fs::read(dir.join(ID)).unwrap(), b"bytes");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(ID)), 0o600);
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
    }

    #[test]
    fn no_name_but_a_media_id_reaches_the_folder() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("media");
        for bad in [
            "../phonerelay.sqlite3",
            "",
            "0194F0C2-7A4E-7000-8000-000000000001",
            "x",
        ] {
            assert!(write_durably(&dir, bad, b"x").is_err(), "{bad:?}");
        }
        assert!(!state.path().join("phonerelay.sqlite3").exists());
    }

    #[test]
    fn the_sweep_removes_files_without_a_row_and_finds_the_rows_files() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("media");
        let other = "0194f0c2-7a4e-7000-8000-000000000002";
        write_durably(&dir, ID, b"kept").unwrap();
        write_durably(&dir, other, b"orphan").unwrap();
        std::fs::write(dir.join(format!("{TEMP_PREFIX}{ID}")), b"half").unwrap();
        let ids: HashSet<String> = [ID, "0194f0c2-7a4e-7000-8000-000000000003"]
            .map(String::from)
            .into();
        assert_eq!(sweep(&dir, &ids).unwrap(), (2, [ID.to_string()].into()));
        let left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, [ID]);
    }
}
