//! Kill -9 the daemon in the middle of a queue of SMS on a simulated modem
//! living in another process: after a restart every message is sent, none
//! is lost, and only a send that was in flight at the kill may repeat.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::process::*;

#[test]
fn a_killed_daemon_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("modem");
    // 40 ms per message on the simulated network: the queue takes a while.
    let sim = ModemSimProcess::start(
        &link,
        &["--network-delay-ms", "40", "--no-delivery-reports"],
    );
    let port = free_port();
    let config = dir.path().join("phonerelay.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\nstate_dir = \"state\"\n\
             [outbox]\nretry_initial_ms = 50\nretry_max_ms = 500\n\
             [outbox.limits.sms]\nconcurrency = 1\nper_second = 1000.0\nburst = 1000\nper_recipient_per_minute = 0\n\
             [[channels.sms.modems]]\nphone_id = \"m1\"\ndevice = \"{}\"\nreconnect_max_backoff_seconds = 1\n",
            link.display()
        ),
    )
    .unwrap();
    let key = {
        let out = run(&[
            "keys",
            "create",
            "--config",
            config.to_str().unwrap(),
            "--name",
            "t",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let daemon = DaemonProcess::start(&config, port);
    let http = reqwest::blocking::Client::new();
    let total = 40;
    let mut ids = Vec::new();
    for i in 0..total {
        let response = http
            .post(format!("{}/api/v1/messages", daemon.base))
            .bearer_auth(&key)
            .json(&serde_json::json!({"phone_id": "m1", "channel": "sms", "to": "+15551230001", "text": format!("msg {i}")}))
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
        let body: serde_json::Value = response.json().unwrap();
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    // Kill it once a few went out and most are still queued.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sim.sent_texts().len() < 5 {
        assert!(Instant::now() < deadline, "nothing was sent");
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon.crash();
    let sent_before = sim.sent_texts().len();
    assert!(
        sent_before < total,
        "the kill came too late to test anything"
    );

    let daemon = DaemonProcess::start(&config, port);
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &ids {
        loop {
            let message: serde_json::Value = http
                .get(format!("{}/api/v1/messages/{id}", daemon.base))
                .bearer_auth(&key)
                .send()
                .unwrap()
                .json()
                .unwrap();
            if message["status"] == "sent" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not sent after restart: {message}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for text in sim.sent_texts() {
        *counts.entry(text).or_default() += 1;
    }
    for i in 0..total {
        assert!(counts.contains_key(&format!("msg {i}")), "msg {i} was lost");
    }
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.len() <= 1 && repeated.iter().all(|(_, n)| **n == 2),
        "only the send in flight at the kill may repeat: {repeated:?}"
    );
    assert_eq!(daemon.terminate().code(), Some(0));
}
