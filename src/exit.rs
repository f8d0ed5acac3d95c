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
}

impl ExitError {
    pub fn code(&self) -> u8 {
        match self {
            ExitError::Runtime(_) => 1,
            ExitError::Config(_) => 2,
            ExitError::Rejected(_) => 3,
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }
}

impl fmt::Display for ExitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitError::Runtime(m) | ExitError::Config(m) | ExitError::Rejected(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ExitError {}
