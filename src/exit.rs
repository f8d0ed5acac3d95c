//! Process exit codes, one per kind of failure, so systemd and scripts can
//! tell "fix your config" from "something broke at run time".

use std::fmt;
use std::process::ExitCode;

#[derive(Debug)]
pub enum ExitError {
    /// Something failed at run time (store, network, bind): exit 1.
    Runtime(String),
    /// The config or the command line is wrong; retrying won't help: exit 2.
    Config(String),
    /// A remote party refused us (relay rejected a key...): exit 3.
    Rejected(String),
    /// A signal ended the command where it waited on the user (the pair
    /// prompt), after it put the terminal back. The process then ends by
    /// that signal, not by an exit code: a shell running it in a loop or a
    /// script stops only when its child was killed by SIGINT.
    Interrupted { signal: i32, message: String },
}

impl ExitError {
    pub fn code(&self) -> u8 {
        match self {
            ExitError::Runtime(_) => 1,
            ExitError::Config(_) => 2,
            ExitError::Rejected(_) => 3,
            // What a shell reports for a child killed by the signal, if the
            // signal cannot end the process itself.
            ExitError::Interrupted { signal, .. } => (128 + signal).clamp(0, 255) as u8,
        }
    }

    /// The signal this error ends the process by, if any.
    pub fn signal(&self) -> Option<i32> {
        match self {
            ExitError::Interrupted { signal, .. } => Some(*signal),
            _ => None,
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }
}

impl fmt::Display for ExitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitError::Runtime(m)
            | ExitError::Config(m)
            | ExitError::Rejected(m)
            | ExitError::Interrupted { message: m, .. } => f.write_str(m),
        }
    }
}

impl std::error::Error for ExitError {}
