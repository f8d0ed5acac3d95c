//! A secret the CLI shows once (a new API key, a bridge key), written so
//! that a write that fails is known: `println!` panics on a full disk or
//! a reader that went away, after the key was committed, and the key
//! would be active with nobody holding it.

use std::io::Write;

/// `secret` and a line end on standard output, flushed.
pub fn print_secret(secret: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{secret}")?;
    out.flush()
}
