//! One daemon per state dir. Two `phonerelay serve` on one store (the
//! service, and a copy started by hand) would both dispatch its outbox,
//! both talk to the relay and fight over the modem; the second one to
//! start refuses instead, naming the first, as PostgreSQL does with
//! `postmaster.pid`. The lock is `flock` on a file in the state dir, so
//! the kernel drops it when the holder exits, however it exits: no stale
//! lock after a crash.
//!
//! A command that must keep the daemon out for a while (`restore`, or a
//! CLI command migrating the store) takes the same lock, and marks it as
//! a command's ([`COMMAND_MARK`] after the pid): the CLI asks
//! [`daemon_running`] before it sends the local key over TCP, and a
//! restore is no daemon to send it to.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use crate::exit::ExitError;

pub const LOCK_FILE: &str = "phonerelay.lock";

/// The lock file's second line when a command, not a daemon, holds it.
/// A daemon writes its pid only, as every daemon before this mark did.
pub const COMMAND_MARK: &str = "command";

/// Who takes the lock: what goes into the lock file after the pid.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Holder {
    Daemon,
    Command,
}

/// Held while the daemon runs; released when dropped (or the process ends).
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

/// Take the state dir's lock and write this process's id into it; an
/// error naming the holder if another process has it.
pub fn acquire(state_dir: &Path) -> Result<InstanceLock, ExitError> {
    acquire_as(state_dir, Holder::Daemon)
}

/// As [`acquire`], for a command that keeps the daemon out while it works
/// on the store (`restore`).
pub fn acquire_for_command(state_dir: &Path) -> Result<InstanceLock, ExitError> {
    acquire_as(state_dir, Holder::Command)
}

fn acquire_as(state_dir: &Path, holder: Holder) -> Result<InstanceLock, ExitError> {
    match take(state_dir, holder)? {
        Ok(lock) => Ok(lock),
        Err(mut file) => Err(held_by_another(&mut file, state_dir)),
    }
}

/// As [`acquire`], but `None` if another process holds the lock (a daemon
/// serving the store, or a restore): for a command that must not act
/// under a running daemon and says so in its own words.
pub fn try_acquire(state_dir: &Path) -> Result<Option<InstanceLock>, ExitError> {
    Ok(take(state_dir, Holder::Command)?.ok())
}

/// Whether a daemon serves `state_dir` now: its lock is held, and not by
/// a command. Makes nothing (a mistyped state dir stays absent) and keeps
/// nothing: the lock is tried shared, so that two probes do not refuse
/// each other, and let go at once. A daemon starting in that instant is
/// refused as if another held the lock; its service manager starts it
/// again.
pub fn daemon_running(state_dir: &Path) -> std::io::Result<bool> {
    let mut file = match File::open(lock_path(state_dir)) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match flock(&file, FlockOperation::NonBlockingLockShared) {
        // Nobody holds it; dropping the file lets go of ours.
        Ok(()) => Ok(false),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
            let mut text = String::new();
            file.read_to_string(&mut text)?;
            Ok(!held_by_command(&text))
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether the lock file's `text` is a command's (see [`COMMAND_MARK`]).
fn held_by_command(text: &str) -> bool {
    text.lines().nth(1).map(str::trim) == Some(COMMAND_MARK)
}

/// The lock, or the lock file another process holds it on.
fn take(state_dir: &Path, holder: Holder) -> Result<Result<InstanceLock, File>, ExitError> {
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
    if holder == Holder::Command {
        writeln!(file, "{COMMAND_MARK}").map_err(cannot)?;
    }
    Ok(Ok(InstanceLock { _file: file }))
}

fn held_by_another(file: &mut File, state_dir: &Path) -> ExitError {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let pid = text.lines().next().unwrap_or("").trim();
    if held_by_command(&text) {
        return ExitError::Runtime(format!(
            "another phonerelay command (pid {pid}: a restore, or a store upgrade) is \
             working on the store in {}; try again when it has finished",
            state_dir.display()
        ));
    }
    let holder = match pid {
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

    /// The CLI's probe: a daemon only while one holds the lock, not a
    /// command (a restore); and it makes no state dir of its own.
    #[test]
    fn only_a_daemon_holding_the_lock_counts_as_running() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert!(!daemon_running(&state).unwrap());
        assert!(!state.exists(), "the probe made the state dir");

        let daemon = acquire(&state).unwrap();
        assert!(daemon_running(&state).unwrap());
        drop(daemon);
        assert!(!daemon_running(&state).unwrap());

        let restore = acquire_for_command(&state).unwrap();
        assert!(!daemon_running(&state).unwrap());
        let refused = acquire(&state).unwrap_err().to_string();
        assert!(
            refused.contains("another phonerelay command (pid ") && refused.contains("restore"),
            "{refused}"
        );
        drop(restore);
        // The daemon's pid alone again: a later daemon is not a command.
        let daemon = acquire(&state).unwrap();
        assert!(daemon_running(&state).unwrap());
        drop(daemon);
        // A probe leaves the lock free for a daemon.
        assert!(!daemon_running(&state).unwrap());
        drop(acquire(&state).unwrap());
    }
}
