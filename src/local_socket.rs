//! The daemon's local socket, `<state dir>/phonerelay.sock`: the same API
//! as `server.listen`, for the CLI on the box. It has a connection limit
//! of its own ([`MAX_CONNECTIONS`]), so `phonerelay status` still gets in
//! while TCP is at `server.max_connections`, when an operator wants it
//! most. Only the daemon's user can connect (mode 0600, in the private
//! state dir); a request still needs a key, as on TCP.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

pub const FILE_NAME: &str = "phonerelay.sock";

/// Connections served at once on the local socket: a few CLI calls.
pub const MAX_CONNECTIONS: usize = 16;

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// Listen on the local socket, replacing one a killed daemon left behind
/// (the instance lock, held by now, says no other daemon is using it).
/// `None`, with a warning, when it cannot be had: the CLI then uses TCP.
pub fn bind(state_dir: &Path) -> Option<UnixListener> {
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
    Some(listener)
}

/// Remove the socket once the daemon no longer serves it, so the CLI does
/// not try a socket nobody listens on.
pub fn remove(state_dir: &Path) {
    let _ = std::fs::remove_file(path(state_dir));
}
