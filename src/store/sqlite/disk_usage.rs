//! The store's files and the free space beside them.

use std::path::Path;

use crate::store::DiskUsage;

/// Sizes of `database` and its WAL, the files in `media`, and the space
/// free to this process on their filesystem. A file that is not there
/// counts 0 (the WAL between a clean stop and the next start, the media
/// directory before the first file).
pub fn measure(database: &Path, media: &Path) -> DiskUsage {
    let size = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
    let (media_files, media_bytes) = directory_files(media);
    DiskUsage {
        database_bytes: size(database),
        wal_bytes: size(&super::beside(database, "-wal")),
        media_files,
        media_bytes,
        free_bytes: free_bytes(database.parent().unwrap_or(Path::new("."))),
    }
}

/// How many regular files `dir` holds, and their bytes; (0, 0) if it
/// cannot be read. A file removed while it is read is not counted.
fn directory_files(dir: &Path) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    entries
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .filter(|meta| meta.is_file())
        .fold((0, 0), |(files, bytes), meta| {
            (files + 1, bytes + meta.len())
        })
}

/// Blocks available to an unprivileged writer (`f_bavail`, not `f_bfree`:
/// the root reserve is not the daemon's to use).
fn free_bytes(dir: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_the_files_and_a_missing_wal_is_zero() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("db.sqlite3");
        std::fs::write(&database, vec![0u8; 8192]).unwrap();
        let media = dir.path().join("media");
        let usage = measure(&database, &media);
        assert_eq!((usage.database_bytes, usage.wal_bytes), (8192, 0));
        assert_eq!((usage.media_files, usage.media_bytes), (0, 0));
        std::fs::write(dir.path().join("db.sqlite3-wal"), vec![0u8; 100]).unwrap();
        assert_eq!(measure(&database, &media).wal_bytes, 100);
        assert!(usage.free_bytes.is_some_and(|free| free > 0));
    }

    #[test]
    fn media_counts_the_files_of_its_directory_and_not_its_subdirectories() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("db.sqlite3");
        let media = dir.path().join("media");
        std::fs::create_dir_all(media.join("not-a-file")).unwrap();
        std::fs::write(media.join("a"), vec![0u8; 300]).unwrap();
        std::fs::write(media.join("b"), vec![0u8; 1000]).unwrap();
        let usage = measure(&database, &media);
        assert_eq!((usage.media_files, usage.media_bytes), (2, 1300));
    }
}
