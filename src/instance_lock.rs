//! One daemon per state dir. Two `phonerelay serve` on one store (the
//! service, and a copy started by hand) would both dispatch its outbox,
//! both talk to the relay and fight over the modem; the second one to
//! start refuses instead, naming the first, as PostgreSQL does with
//! `postmaster.pid`. The lock is `flock` on a file in the state dir, so
//! the kernel drops it when the holder exits, however it exits: no stale
//! lock after a crash.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use crate::exit::ExitError;

pub const LOCK_FILE: &str = "phonerelay.lock";

/// Held while the daemon runs; released when dropped (or the process ends).
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

/// Take the state dir's lock and write this process's id into it; an
/// error naming the holder if another process has it.
pub fn acquire(state_dir: &Path) -> Result<InstanceLock, ExitError> {
    match take(state_dir)? {
        Ok(lock) => Ok(lock),
        Err(mut file) => Err(held_by_another(&mut file, state_dir)),
    }
}

/// As [`acquire`], but `None` if another process holds the lock (a daemon
/// serving the store, or a restore): for a command that must not act
/// under a running daemon and says so in its own words.
pub fn try_acquire(state_dir: &Path) -> Result<Option<InstanceLock>, ExitError> {
    Ok(take(state_dir)?.ok())
}

/// The lock, or the lock file another process holds it on.
fn take(state_dir: &Path) -> Result<Result<InstanceLock, File>, ExitError> {
    let path = lock_path(state_dir);
    let cannot =
        |e: std::io::Error| ExitError::Runtime(format!("cannot lock {}: {e}", path.display()));
    crate::private_files::create_dir(state_dir).map_err(cannot)?;
    let mut file = crate::private_files::open_or_create(&path).map_err(cannot)?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => return Ok(Err(file)),
        Err(e) => return Err(cannot(e.into())),
    }
    file.set_len(0).map_err(cannot)?;
    file.rewind().map_err(cannot)?;
    writeln!(file, "{}", std::process::id()).map_err(cannot)?;
    Ok(Ok(InstanceLock { _file: file }))
}

fn held_by_another(file: &mut File, state_dir: &Path) -> ExitError {
    let mut pid = String::new();
    let _ = file.read_to_string(&mut pid);
    let holder = match pid.trim() {
        "" => "another phonerelay".to_string(),
        pid => format!("another phonerelay (pid {pid})"),
    };
    ExitError::Runtime(format!(
        "{holder} is serving the store in {}; stop it first (a second daemon \
         would need a storage.state_dir of its own)",
        state_dir.display()
    ))
}

/// Where the lock of `state_dir` lives.
pub fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join(LOCK_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = acquire(&state).unwrap();
        let refused = acquire(&state).unwrap_err().to_string();
        let pid = std::process::id();
        assert!(
            refused.contains(&format!(
                "another phonerelay (pid {pid}) is serving the store"
            )),
            "{refused}"
        );
        drop(first);
        let again = acquire(&state).unwrap();
        assert_eq!(
            std::fs::read_to_string(lock_path(&state)).unwrap(),
            format!("{pid}\n")
        );
        drop(again);
    }
}
