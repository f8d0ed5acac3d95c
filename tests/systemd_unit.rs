//! The shipped systemd unit agrees with the daemon: it gives a stop the
//! time the default grace needs, and every serial device group it
//! opens to the daemon has its driver loaded at boot.

use phonerelay::config::DEFAULT_SHUTDOWN_GRACE_SECONDS;

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
    // After the grace, the tasks get at most `STOP_BOUND` to end, and the
    // store's last commits a few seconds more, 10 allowed.
    assert!(
        seconds >= DEFAULT_SHUTDOWN_GRACE_SECONDS + phonerelay::daemon::STOP_BOUND.as_secs() + 10,
        "TimeoutStopSec={seconds} against a grace of {DEFAULT_SHUTDOWN_GRACE_SECONDS} s"
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
