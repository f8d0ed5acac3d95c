//! The shipped systemd unit agrees with the daemon: it gives a stop the
//! time the default grace needs, and every serial device group it
//! opens to the daemon has its driver loaded at boot; and with the
//! install steps, which install every document it names.

use phonerelay::config::{
    DEFAULT_SHUTDOWN_GRACE_SECONDS, LAST_COMMITS_SECONDS, SHIPPED_UNIT_TIMEOUT_STOP_SECONDS,
};

fn unit() -> String {
    std::fs::read_to_string("systemd/phonerelay.service").unwrap()
}

/// The values of `key=` lines, comments left out.
fn values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_unit_waits_for_the_default_grace_and_the_release_after_it() {
    let timeout = values(&unit(), "TimeoutStopSec");
    assert_eq!(timeout.len(), 1, "{timeout:?}");
    let seconds: u64 = timeout[0].parse().unwrap();
    // What `check` compares a grace with.
    assert_eq!(seconds, SHIPPED_UNIT_TIMEOUT_STOP_SECONDS);
    // After the grace, the tasks get at most `STOP_BOUND` to end, and the
    // store's last commits a few seconds more.
    assert!(
        seconds
            >= DEFAULT_SHUTDOWN_GRACE_SECONDS
                + phonerelay::daemon::STOP_BOUND.as_secs()
                + LAST_COMMITS_SECONDS,
        "TimeoutStopSec={seconds} against a grace of {DEFAULT_SHUTDOWN_GRACE_SECONDS} s"
    );
}

/// `check` on a config with `shutdown_grace_seconds = grace`.
fn check_with_grace(grace: u64) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("phonerelay.toml");
    std::fs::write(
        &config,
        format!("[server]\nshutdown_grace_seconds = {grace}\n[storage]\nstate_dir = \"state\"\n"),
    )
    .unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_phonerelay"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap()
}

/// A grace whose stop may outlast the shipped unit's `TimeoutStopSec` is
/// valid (the unit may have been given more), but `check` says so, with
/// the number to raise it to; the longest grace that fits gets no note.
#[test]
fn check_notes_a_grace_the_shipped_unit_would_cut_short() {
    let fits = SHIPPED_UNIT_TIMEOUT_STOP_SECONDS
        - phonerelay::daemon::STOP_BOUND.as_secs()
        - LAST_COMMITS_SECONDS;
    let quiet = check_with_grace(fits);
    assert!(quiet.status.success());
    let said = String::from_utf8_lossy(&quiet.stderr);
    assert!(!said.contains("TimeoutStopSec"), "{said}");

    let over = check_with_grace(fits + 1);
    let said = String::from_utf8_lossy(&over.stderr);
    assert!(over.status.success(), "a note, not an error: {said}");
    assert!(
        said.contains(&format!(
            "note: server.shutdown_grace_seconds = {}",
            fits + 1
        )) && said.contains(&format!(
            "TimeoutStopSec={SHIPPED_UNIT_TIMEOUT_STOP_SECONDS}"
        )) && said.contains(&format!(
            "TimeoutStopSec={} or more",
            SHIPPED_UNIT_TIMEOUT_STOP_SECONDS + 1
        )),
        "{said}"
    );
}

#[test]
fn every_usb_serial_group_the_unit_allows_has_its_driver_loaded_at_boot() {
    let modules = std::fs::read_to_string("systemd/phonerelay-modules.conf").unwrap();
    let loaded: Vec<&str> = modules
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    // The module that registers each hot-plugged group in /proc/devices.
    let registers = [("char-ttyUSB", "usbserial"), ("char-ttyACM", "cdc_acm")];
    let allowed = values(&unit(), "DeviceAllow");
    for (group, module) in registers {
        assert!(
            allowed.iter().any(|a| a.starts_with(group)),
            "{group} not allowed: {allowed:?}"
        );
        assert!(loaded.contains(&module), "{module} not loaded: {loaded:?}");
    }
    assert!(
        values(&unit(), "After")
            .iter()
            .any(|a| a == "systemd-modules-load.service"),
        "the unit must start after the modules are loaded"
    );
}

/// Every file the unit's `Documentation=` names (`systemctl help`) is one
/// the install steps in systemd/README.md put there: it named a README
/// they never installed.
#[test]
fn every_document_the_unit_names_is_installed_by_the_install_steps() {
    let readme = std::fs::read_to_string("systemd/README.md").unwrap();
    let installed: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("install "))
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    let documents = values(&unit(), "Documentation");
    assert!(!documents.is_empty());
    for document in documents {
        let path = document
            .strip_prefix("file://")
            .unwrap_or_else(|| panic!("not a file: {document}"));
        assert!(
            installed.contains(&path),
            "{path} is not installed by systemd/README.md: {installed:?}"
        );
    }
}
