use std::process::ExitCode;

use clap::Parser;
use phonerelay::cli::{Cli, run};

/// mimalloc instead of glibc's allocator: under load the HTTP path and the
/// store spent a fifth of their time in glibc `malloc`/`free`
/// (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long a clean exit waits for blocking reads still under way.
const BLOCKING_READS_BOUND: std::time::Duration = std::time::Duration::from_secs(2);

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
            let why = format!("cannot start the async runtime: {e}");
            eprintln!("{}", phonerelay::logging::fatal_line(&why));
            return ExitCode::from(1);
        }
    };
    let ran = runtime.block_on(run(cli)).and_then(|()| {
        // Done, but its report is not all written (a full disk).
        match phonerelay::cli::report_failure() {
            Some(why) => Err(phonerelay::exit::ExitError::Runtime(why.to_string())),
            None => Ok(()),
        }
    });
    match ran {
        Ok(()) => {
            // Not the runtime's drop, which waits for every blocking read
            // to end: one left reading a file on a mount that stopped
            // answering (a reload's read of the config, cut short by the
            // stop) would hold the exit until the service manager's
            // SIGKILL. Everything the daemon writes was written by now.
            runtime.shutdown_timeout(BLOCKING_READS_BOUND);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", phonerelay::logging::fatal_line(&e));
            // Out at once, not through the runtime's drop: a stop that gave
            // up on tasks stuck behind a disk that stopped answering leaves
            // them holding the store, whose drop joins its writer thread
            // (hung in an fsync) and the runtime's drop waits for blocking
            // reads on that disk; the exit would then hang until the
            // service manager's SIGKILL. Whatever had to be written was
            // written or given up before `run` returned.
            if let Some(signal) = e.signal() {
                end_by_signal(signal);
            }
            std::process::exit(i32::from(e.code()))
        }
    }
}

/// Ends the process by `signal` with its default action, as a program that
/// caught it to clean up is expected to. SIGQUIT's default would also dump
/// core, which a prompt left by Ctrl-\ does not call for: that one returns
/// and the caller exits with 131 instead.
fn end_by_signal(signal: i32) {
    if signal == libc::SIGQUIT {
        return;
    }
    // SAFETY: SIG_DFL installs no handler; raise signals this thread only.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}
