use std::process::ExitCode;

use clap::Parser;
use phonerelay::cli::{Cli, run};

/// mimalloc instead of glibc's allocator: under load the HTTP path and the
/// store spent a fifth of their time in glibc `malloc`/`free`
/// (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
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
