use std::process::ExitCode;

use clap::Parser;
use phonerelay::cli::{Cli, run};

/// mimalloc instead of glibc's allocator: under load the HTTP path and the
/// store spent a fifth of their time in glibc `malloc`/`free`
/// (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Past a file size limit (systemd's `LimitFSIZE=`) the kernel sends
    // SIGXFSZ, which ends the process. Ignored, the write fails with EFBIG
    // instead and the store handles it as a full disk: sends are refused
    // with 503, outcomes wait, and writes resume once the limit is raised.
    // PostgreSQL does the same.
    // SAFETY: no other thread runs yet, and SIG_IGN installs no handler.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("phonerelay: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("phonerelay: {e}");
            e.exit_code()
        }
    }
}
