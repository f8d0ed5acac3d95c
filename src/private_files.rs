//! Files and folders only the daemon's user may read: the store holds
//! phone numbers and message texts, the key files hold secrets. Modes are
//! set at creation, whatever the process umask (the systemd unit sets
//! `UMask=0077`, but the quickstart, a container or another supervisor may
//! not).

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Create `dir` and any missing parents, each new one mode 0700. A folder
/// that already exists keeps its mode: it is the operator's.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Create `file` empty with mode 0600 unless it exists, so that what
/// opens it next (SQLite, which gives its WAL the database's mode) starts
/// from a private file.
pub fn create_file(file: &Path) -> std::io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other.map(drop),
    }
}

/// Write a file only its owner can read, replacing it atomically.
pub fn write(file: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        create_dir(dir)?;
    }
    let tmp = file.with_extension("tmp");
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    out.write_all(contents.as_bytes())?;
    out.write_all(b"\n")?;
    out.sync_all()?;
    std::fs::rename(&tmp, file)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_folders_and_files_are_private_and_existing_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        create_dir(&nested).unwrap();
        assert_eq!((mode(&dir.path().join("a")), mode(&nested)), (0o700, 0o700));
        let file = nested.join("f");
        create_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        std::fs::write(&file, "kept").unwrap();
        create_file(&file).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "kept");
        write(&nested.join("k"), "secret").unwrap();
        assert_eq!(mode(&nested.join("k")), 0o600);
    }
}
