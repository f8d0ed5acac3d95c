//! `phonerelay status --json` on a daemon that is not ready.

mod support;

use std::time::{Duration, Instant};

use support::process::*;

#[test]
fn status_json_while_not_ready_points_at_the_json_not_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // The simulated SIM demands a PIN the modem is not given: it never
    // registers, so the daemon stays not ready.
    let config = simulated_modem_config_with(dir.path(), port, "pin = \"1234\"\n");
    let _daemon = DaemonProcess::start(&config, port);
    let config = config.to_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = run(&["status", "--json", "--config", config]);
        if !out.stdout.is_empty() {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "no status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "not_ready", "{report}");
    assert_eq!(out.status.code(), Some(1));
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(!errors.contains("table"), "{errors}");
    assert!(
        errors.contains("not ready: see \"endpoints\" in the JSON above"),
        "{errors}"
    );
}
