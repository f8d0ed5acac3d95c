//! Standard output for the CLI's reports. `println!` panics when a write
//! fails (exit 101): `messages list | head` did so once `head` had its
//! lines. Here a reader that went away ends the command quietly (exit 0:
//! what it did is done, only the rest of its report is not wanted), and
//! any other failure (a full disk) is said, exit 1. SIGPIPE stays ignored
//! (Rust's default), so that a connection the daemon closed is an error
//! the CLI reports, not a silent death. A secret shown once has its own
//! writer (`shown_once.rs`), which takes the secret back on failure.

use std::io::Write;

/// Write `text` to standard output and flush it, or end the process.
pub fn write(text: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(text).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        let why = format!("cannot write to standard output: {e}");
        eprintln!("{}", crate::logging::fatal_line(&why));
        std::process::exit(i32::from(crate::exit::ExitError::Runtime(why).code()));
    }
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
