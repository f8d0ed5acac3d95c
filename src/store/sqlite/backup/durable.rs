//! A file and its name made to survive a power cut, and a file given a
//! name without replacing one that may have appeared there.

use std::path::Path;

pub(super) fn sync_file(path: &Path) -> Result<(), String> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", path.display()))
}

/// The folder holding `path`. A bare file name (`b.sqlite3`, relative to
/// the working directory) has the empty path as its parent, which cannot
/// be opened: its folder is `.`.
pub(super) fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Make a new or renamed directory entry durable, as its file is. The
/// entry is made by then: an error only says it may not survive a power
/// cut, which the caller passes on as a warning.
pub(super) fn sync_dir_of(path: &Path) -> Result<(), String> {
    sync_dir(dir_of(path))
}

/// Make the entries just made in `dir` durable; see [`sync_dir_of`].
pub(super) fn sync_dir(dir: &Path) -> Result<(), String> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| {
            format!(
                "cannot sync the folder {}: {e}; what was just named in it may not survive a power cut",
                dir.display()
            )
        })
}

/// Whether a failed hard link means the filesystem has none: Linux
/// answers EPERM on vfat and exFAT (USB sticks), some FUSE filesystems
/// EOPNOTSUPP or ENOSYS.
pub(super) fn links_unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPERM | libc::EOPNOTSUPP | libc::ENOSYS)
    )
}

/// Give the file at `from` the name `to`, which must not exist: a file
/// that appeared at `to` meanwhile is never replaced. A hard link where
/// the filesystem has them (`from` stays, for the caller to remove);
/// elsewhere a rename that refuses to replace (`RENAME_NOREPLACE`, which
/// vfat and exFAT take), as atomic.
pub(super) fn publish(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(from, to) {
        Err(e) if links_unsupported(&e) => rename_new(from, to),
        linked => linked,
    }
}

/// Rename `from` to `to` unless `to` exists. Where the filesystem takes
/// no `RENAME_NOREPLACE` either (a FUSE one may not), the check and the
/// rename are two steps: a file made at `to` between them, by something
/// other than PhoneRelay, would be replaced.
pub(super) fn rename_new(from: &Path, to: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            if std::fs::symlink_metadata(to).is_ok() {
                return Err(std::io::Error::from(rustix::io::Errno::EXIST));
            }
            std::fs::rename(from, to)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `phonerelay backup b.sqlite3`: the folder synced is the working
    /// directory, not the empty path, which cannot be opened.
    #[test]
    fn a_bare_file_name_is_in_the_working_directory() {
        assert_eq!(dir_of(Path::new("b.sqlite3")), Path::new("."));
        assert_eq!(dir_of(Path::new("out/b.sqlite3")), Path::new("out"));
        sync_dir_of(Path::new("b.sqlite3")).unwrap();
    }

    #[test]
    fn a_folder_that_cannot_be_synced_is_said() {
        let e = sync_dir_of(Path::new("/nonexistent-folder/b.sqlite3")).unwrap_err();
        assert!(e.contains("may not survive a power cut"), "{e}");
    }

    /// Where hard links are not had, the rename that takes their place
    /// names the file, and never replaces one already at the name.
    #[test]
    fn the_rename_in_place_of_a_link_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("a.partial"), dir.path().join("a"));
        std::fs::write(&from, "copy").unwrap();
        std::fs::write(&to, "precious").unwrap();
        let e = rename_new(&from, &to).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "precious");
        std::fs::remove_file(&to).unwrap();
        rename_new(&from, &to).unwrap();
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "copy");
        assert!(!from.exists());
    }

    #[test]
    fn vfat_s_answer_to_a_link_means_none_are_had() {
        let eperm = std::io::Error::from_raw_os_error(libc::EPERM);
        assert!(links_unsupported(&eperm));
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(!links_unsupported(&full));
    }
}
