//! Kill -9 the daemon in the middle of a queue of SMS on a simulated modem
//! living in another process: after a restart every message is sent, none
//! is lost, and only a send that was in flight at the kill may repeat; a
//! long SMS that stopped halfway sends only its remaining parts after one.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::process::*;

/// A config for one modem at `link` with fast retries (starting at
/// `retry_initial_ms`), and a send key for it.
fn setup(dir: &Path, link: &Path, port: u16, retry_initial_ms: u64) -> (PathBuf, String) {
    let config = dir.join("phonerelay.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\nstate_dir = \"state\"\n\
             [outbox]\nretry_initial_ms = {retry_initial_ms}\nretry_max_ms = 5000\n\
             [outbox.limits.sms]\nconcurrency = 1\nper_second = 1000.0\nburst = 1000\nper_recipient_per_minute = 0\n\
             [[channels.sms.modems]]\nphone_id = \"m1\"\ndevice = \"{}\"\nreconnect_max_backoff_seconds = 1\n",
            link.display()
        ),
    )
    .unwrap();
    let key = create_key_cli(&config);
    (config, key)
}

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
    let (config, key) = setup(dir.path(), &link, port, 50);
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
            let message = get_message(&http, &daemon, &key, id);
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

#[test]
fn a_long_sms_stopped_halfway_resumes_after_a_kill_without_repeating_a_part() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("modem");
    let sim = ModemSimProcess::start(&link, &["--no-delivery-reports"]);
    // Part 1 is accepted, part 2 meets a transient network error.
    let armed = sim.control("fail 38 1 1");
    assert!(
        armed[0].starts_with("ok 1 send(s) after the next 1"),
        "{armed:?}"
    );
    let port = free_port();
    // The retry waits 2 s: time to kill the daemon before it.
    let (config, key) = setup(dir.path(), &link, port, 2000);
    let daemon = DaemonProcess::start(&config, port);
    let http = reqwest::blocking::Client::new();
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(8);
    let response = http
        .post(format!("{}/api/v1/messages", daemon.base))
        .bearer_auth(&key)
        .json(&serde_json::json!({"phone_id": "m1", "channel": "sms", "to": "+15551230001", "text": text}))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let id = response.json::<serde_json::Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The first attempt ended with part 2's error: back in the queue.
    wait_for_message(&http, &daemon, &key, &id, 20, |m| {
        m["status"] == "queued"
            && m["history"]
                .as_array()
                .and_then(|h| h.last())
                .is_some_and(|e| e["code"] == "cms_38")
    });
    daemon.crash();
    let parts_before = sim.control("parts");
    assert_eq!(
        parts_before.len(),
        2,
        "one part out, then ok: {parts_before:?}"
    );

    let daemon = DaemonProcess::start(&config, port);
    wait_for_message(&http, &daemon, &key, &id, 30, |m| m["status"] == "sent");
    let parts: Vec<String> = sim
        .control("parts")
        .into_iter()
        .filter(|l| !l.starts_with("ok"))
        .collect();
    let mut seqs: Vec<&str> = parts
        .iter()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("seq=")))
        .collect();
    seqs.sort();
    assert_eq!(
        seqs,
        ["seq=1/3", "seq=2/3", "seq=3/3"],
        "each part once: {parts:?}"
    );
    assert_eq!(sim.sent_texts(), [text]);
    assert_eq!(daemon.terminate().code(), Some(0));
}
