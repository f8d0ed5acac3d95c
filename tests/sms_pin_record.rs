//! A SIM PIN the SIM rejected, through the real daemon and store: the
//! status says it is held back after a restart, and neither the store nor
//! anything else in the state dir but the record key holds it in clear.
mod common;

use std::time::Duration;

use common::*;

/// A PIN the simulated SIM (whose PIN is 4321) rejects: eight digits, so
/// that its bytes are unlikely to turn up in the store by chance.
const WRONG_PIN: &str = "97531864";

fn modem() -> String {
    format!(
        "[[channels.sms.modems]]\nphone_id = \"m1\"\ndevice = \"sim\"\npin = \"{WRONG_PIN}\"\n\
         command_timeout_ms = 1000\nregistration_timeout_seconds = 5\n\
         reconnect_max_backoff_seconds = 1\n\n\
         [channels.sms.modems.sim]\npin = \"4321\"\n"
    )
}

/// Until `/api/v1/status` says `text`, or panic after 10 s.
async fn wait_status_says(d: &TestDaemon, text: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, status) = d.get("/api/v1/status", &d.admin_key).await;
        assert_eq!(code, 200, "{status}");
        if status.to_string().contains(text) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the status never said {text:?}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_rejected_pin_is_held_back_after_a_restart_and_kept_nowhere_in_clear() {
    let d = TestDaemon::start(&modem(), vec![]).await;
    wait_status_says(&d, "SIM PIN rejected (+CME ERROR: 16)").await;
    // A restart starts a new simulated SIM, which asks for its PIN again,
    // as a real one does after a power cut.
    let mut d = d.restart(vec![]).await;
    wait_status_says(&d, "not sent again until the configured PIN changes").await;
    d.stop().await;
    let state_dir = d.dir.path().join("state");
    for entry in std::fs::read_dir(&state_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.ends_with(phonerelay::pin_record_key::PIN_RECORD_KEY_FILE) || path.is_dir() {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes
                .windows(WRONG_PIN.len())
                .any(|w| w == WRONG_PIN.as_bytes()),
            "{} holds the PIN",
            path.display()
        );
    }
}
