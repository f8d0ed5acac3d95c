//! The store's files and the free space beside them.

use std::path::Path;

use crate::store::DiskUsage;

/// Sizes of `database` and its WAL, and the space free to this process on
/// their filesystem. A file that is not there counts 0 (the WAL between
/// a clean stop and the next start).
pub fn measure(database: &Path) -> DiskUsage {
    let size = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
    DiskUsage {
        database_bytes: size(database),
        wal_bytes: size(&super::beside(database, "-wal")),
        // Counted from the store's rows when asked for
        // (`Store::media_usage`): reading the folder would cost a stat per
        // file on every health check.
        media_files: 0,
        media_bytes: 0,
        free_bytes: free_bytes(database.parent().unwrap_or(Path::new("."))),
        // The media budget's, which the store adds.
        ..DiskUsage::default()
    }
}

/// Blocks available to an unprivileged writer (`f_bavail`, not `f_bfree`:
/// the root reserve is not the daemon's to use).
pub fn free_bytes(dir: &Path) -> Option<u64> {
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
        let usage = measure(&database);
        assert_eq!((usage.database_bytes, usage.wal_bytes), (8192, 0));
        std::fs::write(dir.path().join("db.sqlite3-wal"), vec![0u8; 100]).unwrap();
        assert_eq!(measure(&database).wal_bytes, 100);
        assert!(usage.free_bytes.is_some_and(|free| free > 0));
    }
}
