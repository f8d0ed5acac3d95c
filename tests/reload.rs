//! `systemctl reload` (SIGHUP) reads the relay pairing and key again, not
//! the config file: an operator who edited the file and reloaded is told
//! to restart, and one who did not edit it hears nothing of it.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::process::*;

const CHANGED: &str = "the config file changed since start; restart to apply it \
                       (reload re-reads only the relay pairing and key)";
const RELOADED: &str = "SIGHUP: reading the relay settings again";

fn hang_up(daemon: &DaemonProcess) {
    let sent = Command::new("kill")
        .args(["-HUP", &daemon.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// The daemon's log once it has handled its `reloads`-th SIGHUP, which it
/// says after the check of the config file.
fn log_after_reloads(log: &Path, reloads: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap();
        if text.matches(RELOADED).count() >= reloads {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "reload {reloads} unseen:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_reload_warns_of_a_config_edited_since_start_and_of_nothing_else() {
    let Simulated { dir, port, config } = Simulated::new();
    let log = dir.path().join("daemon.log");
    let env = [("RUST_LOG", "warn,phonerelay::daemon=info")];
    let daemon = DaemonProcess::start_logged(&config, port, &env, &log);

    hang_up(&daemon);
    let text = log_after_reloads(&log, 1);
    assert!(!text.contains(CHANGED), "no edit, yet:\n{text}");

    let mut edited = std::fs::read_to_string(&config).unwrap();
    edited.push_str("# an edit after the start\n");
    std::fs::write(&config, edited).unwrap();
    hang_up(&daemon);
    let text = log_after_reloads(&log, 2);
    assert_eq!(text.matches(CHANGED).count(), 1, "{text}");
    // The link was rung all the same, and the daemon runs on.
    assert!(daemon.terminate().success());
}

/// An edit a restart would refuse (a key the config does not know) is
/// said at the reload, as an error naming the key: found by the next
/// restart instead (a watchdog's, a task's end), it exits 2 and stays
/// down.
#[test]
fn a_reload_says_an_edit_a_restart_would_refuse() {
    let Simulated { dir, port, config } = Simulated::new();
    let log = dir.path().join("daemon.log");
    let env = [("RUST_LOG", "warn,phonerelay::daemon=info")];
    let daemon = DaemonProcess::start_logged(&config, port, &env, &log);
    let mut edited = std::fs::read_to_string(&config).unwrap();
    edited.insert_str(0, "listen_twice = true\n");
    std::fs::write(&config, edited).unwrap();
    hang_up(&daemon);
    let text = log_after_reloads(&log, 1);
    assert!(
        text.contains("a restart would refuse it (exit 2, not restarted)"),
        "{text}"
    );
    assert!(text.contains("listen_twice"), "{text}");
    assert!(!text.contains(CHANGED), "{text}");
    assert!(daemon.terminate().success());
}

/// A config file gone since the start (moved away, a new one not yet
/// put in its place) is said at a reload as what a restart would refuse
/// (exit 2, not restarted), not as a file that could not be compared.
#[test]
fn a_reload_says_a_config_file_gone_would_be_refused() {
    let Simulated { dir, port, config } = Simulated::new();
    let log = dir.path().join("daemon.log");
    let env = [("RUST_LOG", "warn,phonerelay::daemon=info")];
    let daemon = DaemonProcess::start_logged(&config, port, &env, &log);
    std::fs::rename(&config, dir.path().join("moved.toml")).unwrap();
    hang_up(&daemon);
    let text = log_after_reloads(&log, 1);
    assert!(
        text.contains("cannot be read, and a restart would refuse it (exit 2, not restarted)"),
        "{text}"
    );
    assert!(daemon.terminate().success());
}

/// A reload stuck reading the config file (a mount that stopped
/// answering; here a FIFO whose writer sends nothing) does not hold a
/// stop: SIGTERM during the read stops the daemon cleanly, exit 0, and
/// the read left hanging does not hold the exit either.
#[test]
fn a_stop_during_a_reload_stuck_reading_the_config_is_not_held() {
    use std::os::unix::fs::OpenOptionsExt;
    let Simulated { dir, port, config } = Simulated::new();
    let log = dir.path().join("daemon.log");
    let daemon = DaemonProcess::start_logged(&config, port, &[], &log);
    std::fs::rename(&config, dir.path().join("moved.toml")).unwrap();
    let made = Command::new("mkfifo").arg(&config).status().unwrap();
    assert!(made.success());
    hang_up(&daemon);
    // Opened for writing only once the daemon reads it; held open and
    // silent, it keeps the daemon's read waiting.
    let deadline = Instant::now() + Duration::from_secs(20);
    let _writer = loop {
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&config);
        match opened {
            Ok(writer) => break writer,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                assert!(
                    Instant::now() < deadline,
                    "the reload never read the config"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("opening the FIFO: {e}"),
        }
    };
    let mut daemon = daemon;
    daemon.signal_term();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the stop is held by the reload:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
}
