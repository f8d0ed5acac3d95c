//! The daemon's local socket, `<state dir>/phonerelay.sock`: the same API
//! as `server.listen`, for the CLI on the box. It has a connection limit
//! of its own ([`MAX_CONNECTIONS`]), so `phonerelay status` still gets in
//! while TCP is at `server.max_connections`, when an operator wants it
//! most. Only the daemon's user can connect (mode 0600, in the private
//! state dir); a request still needs a key, as on TCP.
//!
//! The socket's file is there for as long as the daemon holds its instance
//! lock: bound right after the lock is taken, removed just before it is
//! let go ([`SocketFile`]). So a daemon that is starting or stopping is
//! met on the socket (waited for, or refused), and the CLI never takes
//! the absence of the socket beside a held lock for a daemon without one
//! and sends the local key to whoever holds the TCP port meanwhile
//! (`cli/client.rs`).

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

pub const FILE_NAME: &str = "phonerelay.sock";

/// Connections served at once on the local socket: a few CLI calls.
pub const MAX_CONNECTIONS: usize = 16;

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// The socket's file, removed when this is dropped. Kept by the daemon
/// beside its instance lock and dropped before it, whichever way the
/// daemon ends (a start that fails, or a stop); a killed daemon leaves
/// the file, which the next start replaces.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listen on the local socket, replacing one a killed daemon left behind
/// (the instance lock, held by now, says no other daemon is using it).
/// `None`, with a warning, when it cannot be had: the CLI then uses TCP.
pub fn bind(state_dir: &Path) -> Option<(UnixListener, SocketFile)> {
    let path = path(state_dir);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e,
                    "cannot remove the old local socket; the CLI will use TCP");
                return None;
            }
        }
        // Not ours to delete: an operator's file of that name.
        Ok(_) => {
            tracing::warn!(path = %path.display(),
                "a file that is not a socket is in the local socket's place; the CLI will use TCP");
            return None;
        }
        Err(_) => {}
    }
    let listener = match UnixListener::bind(&path) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e,
                "cannot listen on the local socket; the CLI will use TCP");
            return None;
        }
    };
    // Owner only, whatever the umask; the state dir is private as well.
    if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(path = %path.display(), error = %e,
            "cannot make the local socket private; the CLI will use TCP");
        let _ = std::fs::remove_file(&path);
        return None;
    }
    Some((listener, SocketFile { path }))
}
