//! Echo off on the terminal while a secret is typed or pasted into it, so
//! it stays out of scrollback, screen shares and session recordings.

use std::os::fd::AsFd;

use rustix::termios::{LocalModes, OptionalActions, Termios, tcgetattr, tcsetattr};

/// The terminal's settings as they were, put back on drop (an error
/// return, a panic), so the shell after the command still echoes.
pub struct EchoOff<Fd: AsFd> {
    fd: Fd,
    saved: Option<Termios>,
}

impl<Fd: AsFd> EchoOff<Fd> {
    /// Echo off on `fd`'s terminal; a terminal that will not have it is
    /// left as it is (the key then shows, as it did before).
    pub fn on(fd: Fd) -> Self {
        let saved = tcgetattr(&fd).ok();
        if let Some(saved) = &saved {
            let mut quiet = saved.clone();
            quiet.local_modes.remove(LocalModes::ECHO);
            if tcsetattr(&fd, OptionalActions::Now, &quiet).is_err() {
                return Self { fd, saved: None };
            }
        }
        Self { fd, saved }
    }
}

impl<Fd: AsFd> EchoOff<Fd> {
    /// Whether echo is off: a terminal that would not have it shows the
    /// key, and the prompt must not say otherwise.
    pub fn is_quiet(&self) -> bool {
        self.saved.is_some()
    }
}

impl<Fd: AsFd> Drop for EchoOff<Fd> {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(&self.fd, OptionalActions::Now, saved);
        }
    }
}
