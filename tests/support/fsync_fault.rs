//! An fsync that fails on demand in a daemon child process: the
//! LD_PRELOAD shim of `fsync_fault.c` (beside this file), built here with
//! the system C compiler, and the trigger file that switches it on.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The shim's source, read by the compiler from the checkout.
const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/fsync_fault.c");

/// The variable the shim reads its trigger file's path from.
const TRIGGER_VARIABLE: &str = "FSYNC_FAULT_TRIGGER";

/// The variable that makes a faulted sync hang instead of failing.
const HANG_VARIABLE: &str = "FSYNC_FAULT_HANG";

/// The line the shim writes to standard error for each sync it fails.
pub const INJECTED: &str = "fsync_fault: ";

/// A built shim and its trigger; the fault is off until [`Self::on`].
pub struct FsyncFault {
    shim: PathBuf,
    trigger: PathBuf,
    hang: bool,
}

impl FsyncFault {
    /// Build the shim into `dir` (one per test: tests of a file run side
    /// by side, and a shared output file could be read half written).
    /// Panics if there is no C compiler: the test is not skipped, since a
    /// skipped fault test would pass CI while proving nothing (and `cc` is
    /// there wherever this crate builds: rustc links with it, and
    /// libsqlite3-sys compiles SQLite with it).
    pub fn build(dir: &Path) -> FsyncFault {
        let shim = dir.join("fsync_fault.so");
        let built = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
            .arg(&shim)
            .arg(SOURCE)
            .arg("-ldl")
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run the C compiler `cc` to build the fsync fault shim ({e}); \
                     this test needs one (Debian: apt-get install gcc)"
                )
            });
        assert!(
            built.status.success(),
            "building the fsync fault shim failed: {}",
            String::from_utf8_lossy(&built.stderr)
        );
        FsyncFault {
            shim,
            trigger: dir.join("fsync-fault-on"),
            hang: false,
        }
    }

    /// As [`Self::build`], but a faulted sync never returns while the
    /// fault is on (a disk that stopped answering), instead of failing.
    pub fn build_hanging(dir: &Path) -> FsyncFault {
        FsyncFault {
            hang: true,
            ..FsyncFault::build(dir)
        }
    }

    /// The environment that runs a process under the shim.
    pub fn env(&self) -> Vec<(&'static str, &str)> {
        let mut env = vec![
            ("LD_PRELOAD", self.shim.to_str().unwrap()),
            (TRIGGER_VARIABLE, self.trigger.to_str().unwrap()),
        ];
        if self.hang {
            env.push((HANG_VARIABLE, "1"));
        }
        env
    }

    /// From now on every fsync of a write-ahead log fails with EIO (or hangs).
    pub fn on(&self) {
        std::fs::write(&self.trigger, b"").unwrap();
    }

    /// Syncs work again.
    pub fn off(&self) {
        std::fs::remove_file(&self.trigger).unwrap();
    }
}
