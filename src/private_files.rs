//! Files and folders only the daemon's user may read: the store holds
//! phone numbers and message texts, the key files hold secrets. Modes are
//! set at creation, whatever the process umask (the systemd unit sets
//! `UMask=0077`, but the quickstart, a container or another supervisor may
//! not).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Create `dir` and any missing parents, each new one mode 0700. A folder
/// that already exists keeps its mode: it is the operator's.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    let existed = dir.is_dir();
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    if !existed {
        give_to_folder_owner(dir)?;
    }
    Ok(())
}

/// Open `file` to read and write, creating it private (mode 0600) and
/// the folder owner's ([`give_to_folder_owner`]) if it is not there.
pub fn open_or_create(file: &Path) -> std::io::Result<File> {
    let made = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file);
    match made {
        Ok(made) => {
            give_to_folder_owner(file)?;
            Ok(made)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            OpenOptions::new().read(true).write(true).open(file)
        }
        Err(e) => Err(e),
    }
}

/// A file or folder made by root in a folder of another user's (the
/// service's state dir, when an operator runs `phonerelay keys create` or
/// `restore` as root rather than as the service's user) is given to that
/// folder's owner, as SQLite gives a database's WAL to the database's
/// owner. Left root's, it would shut the service out of its own state:
/// the daemon could not open its lock, its store or its key, and would
/// not start. Anyone but root makes files that are theirs already.
pub fn give_to_folder_owner(path: &Path) -> std::io::Result<()> {
    let owner = std::fs::metadata(folder_of(path))?;
    let euid = rustix::process::geteuid().as_raw();
    match new_owner(euid, owner.uid(), owner.gid()) {
        Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid)),
        None => Ok(()),
    }
}

/// The folder holding `path`; a bare file name's (whose parent is the
/// empty path, which cannot be opened) is `.`.
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Whom a file made by `euid` in a folder of `folder_uid`/`folder_gid`
/// should belong to, if not its maker.
fn new_owner(euid: u32, folder_uid: u32, folder_gid: u32) -> Option<(u32, u32)> {
    (euid == 0 && folder_uid != 0).then_some((folder_uid, folder_gid))
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
        Err(e) => Err(e),
        Ok(_) => give_to_folder_owner(file),
    }
}

/// Write a file only its owner can read, replacing it atomically, and
/// durably: [`stage`], then [`Staged::install`].
pub fn write(file: &Path, contents: &str) -> std::io::Result<()> {
    stage(file, contents)?.install()
}

/// Write what is to replace `file` beside it (mode 0600), synced, and
/// leave `file` as it is until [`Staged::install`]: `pair` stages the
/// relay key before it records the pairing, so a key that cannot be
/// written (a full disk, a folder in its place) fails before anything
/// changed, and installs it once the pairing is committed.
pub fn stage(file: &Path, contents: &str) -> std::io::Result<Staged> {
    if let Some(dir) = file.parent() {
        create_dir(dir)?;
    }
    // A rename onto a folder fails; said now, before anything is
    // committed that would wait for the file.
    if file.is_dir() {
        return Err(std::io::Error::from_raw_os_error(libc::EISDIR));
    }
    // The file's whole name and `.tmp`: with the extension replaced, a key
    // file named `x.tmp` was staged onto itself, truncated before the
    // pairing was committed and removed if it then failed.
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".tmp");
    let staged = Staged {
        tmp: PathBuf::from(tmp),
        file: file.to_path_buf(),
        installed: false,
    };
    // Made anew, so 0600 holds: one left there (by a run that failed, an
    // operator's copy) kept its own mode and owner when opened, and the
    // key renamed from it could be readable by all.
    match std::fs::remove_file(&staged.tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&staged.tmp)?;
    out.write_all(contents.as_bytes())?;
    out.write_all(b"\n")?;
    out.sync_all()?;
    give_to_folder_owner(&staged.tmp)?;
    Ok(staged)
}

/// A file written and synced beside its place ([`stage`]). Dropped
/// without [`Staged::install`], it is removed, and the file in place is
/// untouched.
#[derive(Debug)]
pub struct Staged {
    tmp: PathBuf,
    file: PathBuf,
    installed: bool,
}

impl Staged {
    /// Rename the staged file into place, then sync its folder
    /// ([`sync_folder_of`]): `pair` installs the relay key after the
    /// store's commit, which is synced, and a rename left unsynced could
    /// be undone by a power cut, leaving the pairing without its key.
    pub fn install(mut self) -> std::io::Result<()> {
        std::fs::rename(&self.tmp, &self.file)?;
        self.installed = true;
        sync_folder_of(&self.file)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.installed {
            // Best effort: a leftover is private and replaced by the next
            // stage of the same file.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Write a file only its owner can read, unless it exists: `Ok(false)`
/// then, and the file is left as it is. The contents appear whole or not
/// at all (a temporary file, synced, is linked in under the name), so two
/// processes making it at once agree on one, and one that reads it never
/// sees it half written. For a key made once and kept, which
/// [`write`]'s replacement would change under whoever read it first.
pub fn create_once(file: &Path, contents: &str) -> std::io::Result<bool> {
    if let Some(dir) = file.parent() {
        create_dir(dir)?;
    }
    let tmp = file.with_extension(format!("tmp.{}", std::process::id()));
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    let linked = out
        .write_all(contents.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.sync_all())
        .and_then(|()| give_to_folder_owner(&tmp))
        .and_then(|()| std::fs::hard_link(&tmp, file));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => sync_folder_of(file).map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Make the names just given in the folder holding `file` survive a
/// power cut, as its contents do once synced: a rename lives in the
/// folder, not in the file. The error names the folder.
fn sync_folder_of(file: &Path) -> std::io::Result<()> {
    let folder = folder_of(file);
    File::open(folder)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot sync the folder {}: {e}", folder.display()),
            )
        })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A leftover beside the file, readable by all, does not lend the key
    /// its mode; a file named `*.tmp` is not staged onto itself.
    #[test]
    fn a_staged_file_is_private_whatever_was_left_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("relay.key");
        let leftover = dir.path().join("relay.key.tmp");
        std::fs::write(&leftover, "old").unwrap();
        std::fs::set_permissions(&leftover, std::fs::Permissions::from_mode(0o644)).unwrap();
        stage(&key, "secret").unwrap().install().unwrap();
        assert_eq!(mode(&key), 0o600);
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "secret\n");

        let odd = dir.path().join("relay.tmp");
        write(&odd, "first").unwrap();
        let staged = stage(&odd, "second").unwrap();
        assert_eq!(std::fs::read_to_string(&odd).unwrap(), "first\n");
        drop(staged);
        assert_eq!(
            std::fs::read_to_string(&odd).unwrap(),
            "first\n",
            "a stage given up leaves the file in place"
        );
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn root_gives_what_it_makes_to_the_folder_s_owner_and_no_one_else_does() {
        assert_eq!(new_owner(0, 998, 997), Some((998, 997)));
        assert_eq!(new_owner(0, 0, 0), None);
        assert_eq!(new_owner(998, 998, 997), None, "the service user keeps it");
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

    /// A file written in place of another is whole and private, and
    /// nothing of the write is left beside it. (That its new name
    /// survives a power cut, which the folder's sync is for, cannot be
    /// seen from here.)
    #[test]
    fn a_rewritten_file_is_whole_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("relay.key");
        write(&key, "old-key").unwrap();
        write(&key, "new-key").unwrap();
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "new-key\n");
        assert_eq!(mode(&key), 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["relay.key"]);
    }

    /// A staged file not installed is removed and leaves the file in
    /// place as it was; one onto a folder is refused before anything is
    /// written.
    #[test]
    fn a_staged_file_changes_nothing_until_installed() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("relay.key");
        write(&key, "old-key").unwrap();
        drop(stage(&key, "new-key").unwrap());
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "old-key\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["relay.key"]);

        let folder = dir.path().join("folder.key");
        std::fs::create_dir(&folder).unwrap();
        let refused = stage(&folder, "new-key").unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::EISDIR));
        assert!(!dir.path().join("folder.tmp").exists());
    }

    #[test]
    fn a_file_created_once_is_private_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("sms-pin.key");
        assert!(create_once(&key, "first").unwrap());
        assert!(!create_once(&key, "second").unwrap());
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "first\n");
        assert_eq!(mode(&key), 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["sms-pin.key"], "no temporary file is left");
    }

    #[test]
    fn a_folder_that_cannot_be_synced_is_named() {
        let e = sync_folder_of(Path::new("/nonexistent-folder/relay.key")).unwrap_err();
        assert!(
            e.to_string()
                .contains("cannot sync the folder /nonexistent-folder"),
            "{e}"
        );
        assert_eq!(folder_of(Path::new("relay.key")), Path::new("."));
    }
}
