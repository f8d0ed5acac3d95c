//! The store's file guarded against replacement while a command has it
//! open. `phonerelay restore` reads the API keys of the store it replaces,
//! carries them into the copy and then swaps the files; `keys`, `pair`,
//! `unpair` and `inbound` open the store directly, beside the daemon. A
//! `keys revoke` committed to the replaced store after that read, or to
//! its file after the swap, would be lost without a word, and a revoked
//! key would work again. So those commands hold this lock shared for as
//! long as they have the store open, and a restore holds it exclusive
//! from before it reads the replaced store until the copy is in place.
//!
//! The daemon does not take it: a restore already keeps the daemon out
//! with the instance lock (`instance_lock.rs`), and a restore never runs
//! while a daemon does. `backup` does not either: it only reads, and a
//! copy of the store a restore is about to replace is still a whole one.
//!
//! As with the instance lock, this is `flock` on a file in the state dir
//! (a file of its own: that one is exclusive and holds the daemon's pid),
//! dropped by the kernel when the holder exits, however it exits.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, flock};

use crate::exit::ExitError;

pub const LOCK_FILE: &str = "store.lock";

/// How long a restore waits for the commands that have the store open to
/// finish: `keys` and `inbound` take milliseconds, `pair` one round trip
/// to the relay. Past it the restore refuses rather than hang.
pub const RESTORE_WAIT: Duration = Duration::from_secs(5);

/// How often a waiting restore tries again.
const RETRY_EVERY: Duration = Duration::from_millis(50);

/// Held while a command has the store open (shared) or a restore replaces
/// it (exclusive); released when dropped (or the process ends).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// For a command that opens the store beside the daemon. Refused at once
/// while a restore holds the lock: a restore takes as long as its copy,
/// and the command is better run again on the restored store than left
/// waiting with no end it can tell.
pub fn shared(state_dir: &Path) -> Result<StoreLock, ExitError> {
    let file = open(state_dir)?;
    match try_lock(&file, FlockOperation::NonBlockingLockShared, state_dir)? {
        true => Ok(StoreLock { _file: file }),
        false => Err(ExitError::Runtime(format!(
            "a restore (phonerelay restore) is replacing the store in {}; try again \
             when it has finished",
            state_dir.display()
        ))),
    }
}

/// For `phonerelay restore`, which also holds the instance lock: waits up
/// to [`RESTORE_WAIT`] for the commands that have the store open.
pub fn exclusive(state_dir: &Path) -> Result<StoreLock, ExitError> {
    exclusive_within(state_dir, RESTORE_WAIT)
}

/// [`exclusive`], waiting at most `wait`.
pub fn exclusive_within(state_dir: &Path, wait: Duration) -> Result<StoreLock, ExitError> {
    let file = open(state_dir)?;
    let deadline = Instant::now() + wait;
    loop {
        // Non-blocking, tried again: a blocking flock would wait for good
        // behind a command that hangs (a relay that never answers `pair`).
        if try_lock(&file, FlockOperation::NonBlockingLockExclusive, state_dir)? {
            return Ok(StoreLock { _file: file });
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(ExitError::Runtime(format!(
                "another phonerelay command (keys, pair, unpair or inbound) has the store \
                 in {} open, still after {} s; try again when it has finished",
                state_dir.display(),
                wait.as_secs_f64()
            )));
        }
        std::thread::sleep(RETRY_EVERY.min(deadline - now));
    }
}

/// The lock file, made private in a state dir made if need be (a first
/// `keys create` comes before the daemon ever ran).
fn open(state_dir: &Path) -> Result<File, ExitError> {
    let path = lock_path(state_dir);
    let cannot =
        |e: std::io::Error| ExitError::Runtime(format!("cannot lock {}: {e}", path.display()));
    crate::private_files::create_dir(state_dir).map_err(cannot)?;
    // Made by root in another user's state dir, it is given to that user
    // (`private_files::give_to_folder_owner`), so a command run by hand
    // as root does not shut the service's user out.
    crate::private_files::open_or_create(&path).map_err(cannot)
}

/// Whether the lock was had; `false` if another holder keeps it from us.
fn try_lock(file: &File, how: FlockOperation, state_dir: &Path) -> Result<bool, ExitError> {
    match flock(file, how) {
        Ok(()) => Ok(true),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(false),
        Err(e) => Err(ExitError::Runtime(format!(
            "cannot lock {}: {}",
            lock_path(state_dir).display(),
            std::io::Error::from(e)
        ))),
    }
}

/// Where the store lock of `state_dir` lives.
pub fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join(LOCK_FILE)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const SHORT: Duration = Duration::from_millis(200);

    #[test]
    fn commands_share_the_store_and_a_restore_waits_its_time_then_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let keys = shared(&state).unwrap();
        let pair = shared(&state).unwrap();
        let started = Instant::now();
        let refused = exclusive_within(&state, SHORT).unwrap_err();
        assert!(started.elapsed() >= SHORT, "did not wait");
        assert!(started.elapsed() < SHORT * 10, "waited too long");
        assert_eq!(refused.code(), 1);
        let said = refused.to_string();
        assert!(
            said.contains("another phonerelay command (keys, pair, unpair or inbound)")
                && said.contains("try again"),
            "{said}"
        );
        drop(keys);
        assert!(exclusive_within(&state, SHORT).is_err(), "one still has it");
        drop(pair);
        exclusive_within(&state, SHORT).unwrap();
    }

    #[test]
    fn a_command_is_refused_at_once_while_a_restore_replaces_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let restore = exclusive(&state).unwrap();
        let started = Instant::now();
        let refused = shared(&state).unwrap_err();
        assert!(started.elapsed() < SHORT, "waited");
        assert_eq!(refused.code(), 1);
        let said = refused.to_string();
        assert!(
            said.contains("a restore (phonerelay restore) is replacing the store")
                && said.contains("try again when it has finished"),
            "{said}"
        );
        assert!(exclusive_within(&state, Duration::ZERO).is_err());
        drop(restore);
        shared(&state).unwrap();
    }

    /// A command that finishes while the restore waits lets it in.
    #[test]
    fn a_restore_gets_the_store_once_the_command_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let keys = shared(&state).unwrap();
        let started = Instant::now();
        let letting_go = std::thread::spawn(move || {
            std::thread::sleep(SHORT);
            drop(keys);
        });
        exclusive_within(&state, Duration::from_secs(30)).unwrap();
        assert!(started.elapsed() >= SHORT);
        letting_go.join().unwrap();
    }

    #[test]
    fn the_lock_file_is_private_in_a_private_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let _held = shared(&state).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&lock_path(&state)), 0o600);
        assert_eq!(mode(&state), 0o700);
    }
}
