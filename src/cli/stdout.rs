//! Standard output for the CLI's reports. `println!` panics when a write
//! fails (exit 101): `messages list | head` did so once `head` had its
//! lines. Here a failed write never ends the command half-way (a restore
//! that printed a step goes on to the next): a reader that went away
//! leaves the rest of the report unwritten, and any other failure (a full
//! disk) does too and makes the command end with exit 1 once it is done
//! (`failure`). SIGPIPE stays ignored (Rust's default), so that a
//! connection the daemon closed is an error the CLI reports, not a silent
//! death. A secret shown once has its own writer (`shown_once.rs`), which
//! takes the secret back on failure.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// The reader went away: nothing more is written.
static READER_GONE: AtomicBool = AtomicBool::new(false);
/// The first failure that was not the reader going away.
static FAILED: OnceLock<String> = OnceLock::new();

/// Write `text` to standard output and flush it, unless an earlier write
/// failed.
pub fn write(text: std::fmt::Arguments<'_>) {
    if READER_GONE.load(Ordering::Relaxed) || FAILED.get().is_some() {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(text).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            READER_GONE.store(true, Ordering::Relaxed);
        } else {
            let _ = FAILED.set(format!(
                "cannot write to standard output: {e}; the report is incomplete"
            ));
        }
    }
}

/// Why the report could not be written, if it could not (not when its
/// reader went away, which is the reader's choice).
pub fn failure() -> Option<&'static str> {
    FAILED.get().map(String::as_str)
}

/// `print!` through [`write`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::stdout::write(format_args!($($arg)*))
    };
}

/// `println!` through [`write`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::stdout::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
