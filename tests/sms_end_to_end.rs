//! The daemon binary with two modems, each a simulator in its own process
//! on its own pseudo-terminal: sends route by phone_id, delivery reports
//! turn `sent` into `delivered`, replies come in, and a modem unplugged
//! mid-queue loses nothing while the other keeps working; however long a
//! modem stays unplugged or off the network, its network congested or its
//! memory full, its queue waits without spending attempts; and
//! a part sent after a restart does not take an earlier part's id; and
//! two identical messages from one sender in the same second are two.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::process::*;

struct Bridge {
    http: reqwest::blocking::Client,
    base: String,
    key: String,
}

impl Bridge {
    fn send(&self, phone_id: &str, to: &str, text: &str) -> String {
        let response = self
            .http
            .post(format!("{}/api/v1/messages", self.base))
            .bearer_auth(&self.key)
            .json(&json!({"phone_id": phone_id, "channel": "sms", "to": to, "text": text}))
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
        let body: Value = response.json().unwrap();
        body["id"].as_str().unwrap().to_string()
    }

    fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    fn wait_status(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let message = self.get(&format!("/api/v1/messages/{id}"));
            if message["status"] == status {
                return message;
            }
            assert!(Instant::now() < deadline, "never {status}: {message}");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Three sends on `m1` ("{what} 0".."{what} 2", to +1555123000{first}
    /// and the two numbers after it) while it cannot send; 3 s later, long
    /// past every retry the outage would have spent, each still waits with
    /// no attempt made.
    fn send_three_that_wait(&self, what: &str, first: u32) -> Vec<String> {
        let ids: Vec<String> = (0..3)
            .map(|i| {
                let to = format!("+1555123{:04}", first + i);
                self.send("m1", &to, &format!("{what} {i}"))
            })
            .collect();
        std::thread::sleep(Duration::from_secs(3));
        for id in &ids {
            let message = self.get(&format!("/api/v1/messages/{id}"));
            assert_eq!(message["status"], "queued", "{message}");
            assert_eq!(message["attempts"], 0, "{message}");
        }
        ids
    }

    fn wait_delivered_at_first_attempt(&self, ids: &[String]) {
        for id in ids {
            let message = self.wait_status(id, "delivered");
            assert_eq!(message["attempts"], 1, "{message}");
        }
    }

    /// How many entries of `ids`' status histories carry error `code`.
    fn history_entries_with_code(&self, ids: &[String], code: &str) -> usize {
        ids.iter()
            .flat_map(|id| {
                let message = self.get(&format!("/api/v1/messages/{id}"));
                message["history"].as_array().unwrap().clone()
            })
            .filter(|h| h["code"] == code)
            .count()
    }

    fn wait_inbound(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let page = self.get("/api/v1/inbound?limit=100");
            let messages = page["messages"].as_array().unwrap().clone();
            if messages.len() >= count {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "only {} inbound: {page}",
                messages.len()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

#[test]
fn two_modems_route_report_receive_and_survive_an_unplug() {
    let dir = tempfile::tempdir().unwrap();
    let sim1 = ModemSimProcess::start(&dir.path().join("modem1"), &[]);
    let sim2 = ModemSimProcess::start(&dir.path().join("modem2"), &["--network-delay-ms", "20"]);
    let port = free_port();
    let config = daemon_config(
        dir.path(),
        port,
        "",
        &format!(
            "[outbox]\nretry_initial_ms = 100\nretry_max_ms = 500\n\
             [outbox.limits.sms]\nconcurrency = 1\nper_second = 1000.0\nburst = 1000\nper_recipient_per_minute = 0\n\
             [[channels.sms.modems]]\nphone_id = \"m1\"\ndevice = \"{}\"\nreconnect_max_backoff_seconds = 1\n\
             [[channels.sms.modems]]\nphone_id = \"m2\"\ndevice = \"{}\"\nsweep_interval_seconds = 1\nreconnect_max_backoff_seconds = 1\n",
            sim1.link.display(),
            sim2.link.display()
        ),
    );
    let key = create_key_cli(&config);
    let daemon = DaemonProcess::start(&config, port);
    let bridge = Bridge {
        http: reqwest::blocking::Client::new(),
        base: daemon.base.clone(),
        key,
    };

    // Routing by phone_id, with an emoji message long enough for two parts.
    // Modem one keeps the default sweep interval (minutes): its delivery
    // report must come through the +CDSI indication alone.
    let long = format!("{} 😀 end", "é".repeat(70));
    let a = bridge.send("m1", "+15551230001", "to modem one");
    let b = bridge.send("m2", "+15551230002", &long);
    let delivered = bridge.wait_status(&a, "delivered");
    assert_eq!(delivered["external_ids"].as_array().unwrap().len(), 1);
    let delivered = bridge.wait_status(&b, "delivered");
    assert_eq!(
        delivered["external_ids"].as_array().unwrap().len(),
        2,
        "two parts, two reports"
    );
    assert_eq!(sim1.sent_texts(), ["to modem one"]);
    assert_eq!(sim2.sent_texts(), std::slice::from_ref(&long));

    // A reply on modem two comes in once, with its phone_id.
    let answer = sim2.control("inject +15551230002 thanks, got it 👍");
    assert!(answer.last().unwrap().starts_with("ok"), "{answer:?}");
    let inbound = bridge.wait_inbound(1);
    assert_eq!(inbound[0]["phone_id"], "m2");
    assert_eq!(inbound[0]["from"], "+15551230002");
    assert_eq!(inbound[0]["text"], "thanks, got it 👍");
    // The sweep runs every second: after a few, still exactly one.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        bridge.wait_inbound(1).len(),
        1,
        "the sweep must not duplicate"
    );
    // Deleted from the SIM after the commit, on the driver's own time.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stored = sim2.control("stored");
        if stored.last().unwrap().contains("messages=0") {
            break;
        }
        assert!(Instant::now() < deadline, "never deleted: {stored:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Unplug modem one with a queue; modem two keeps sending meanwhile.
    assert!(sim1.control("unplug").last().unwrap().starts_with("ok"));
    let queued: Vec<String> = (0..5)
        .map(|i| bridge.send("m1", "+15551230001", &format!("during unplug {i}")))
        .collect();
    let other = bridge.send("m2", "+15551230002", "modem two still works");
    bridge.wait_status(&other, "delivered");
    let status = bridge.get("/api/v1/status");
    let m1 = status["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["phone_id"] == "m1")
        .unwrap()
        .clone();
    assert_ne!(
        m1["state"], "up",
        "an unplugged modem is not reported up: {m1}"
    );
    assert!(sim1.control("replug").last().unwrap().starts_with("ok"));
    for id in &queued {
        bridge.wait_status(id, "delivered");
    }
    let texts = sim1.sent_texts();
    for i in 0..5 {
        let text = format!("during unplug {i}");
        assert_eq!(
            texts.iter().filter(|t| **t == text).count(),
            1,
            "{text}: {texts:?}"
        );
    }
    let metrics = bridge
        .http
        .get(format!("{}/metrics", bridge.base))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains(
            "phonerelay_endpoint_detail{channel=\"sms\",phone_id=\"m2\",name=\"signal_dbm\"} -"
        ),
        "signal strength exported: {metrics}"
    );
    assert!(
        !metrics.contains("name=\"smsc\""),
        "the SMSC's number is no gauge: {metrics}"
    );
    // The fill level of its message storage, before it fills up (the
    // simulator's default capacity).
    assert!(
        metrics.contains(
            "phonerelay_endpoint_detail{channel=\"sms\",phone_id=\"m2\",name=\"message_storage_total\"} 50"
        ),
        "message storage exported: {metrics}"
    );
    assert_eq!(daemon.terminate().code(), Some(0));
}

/// A daemon on modem `m1` (the simulator `sim`, with `modem_extra` keys)
/// that fails a message after two attempts 100-200 ms apart: a refusal
/// that spent attempts would fail a message within half a second. No
/// rate limit slows the sends.
fn start_with_two_quick_attempts(
    dir: &std::path::Path,
    sim: &ModemSimProcess,
    modem_extra: &str,
) -> (DaemonProcess, Bridge) {
    let port = free_port();
    let config = daemon_config(
        dir,
        port,
        "",
        &format!(
            "[outbox]\nmax_attempts = 2\nretry_initial_ms = 100\nretry_max_ms = 200\n\
             [outbox.limits.sms]\nper_second = 1000.0\nburst = 1000\nper_recipient_per_minute = 0\n\
             [[channels.sms.modems]]\nphone_id = \"m1\"\ndevice = \"{}\"\n{modem_extra}",
            sim.link.display()
        ),
    );
    let key = create_key_cli(&config);
    let daemon = DaemonProcess::start(&config, port);
    let bridge = Bridge {
        http: reqwest::blocking::Client::new(),
        base: daemon.base.clone(),
        key,
    };
    (daemon, bridge)
}

#[test]
fn a_modem_unplugged_off_the_network_or_congested_for_longer_than_all_retries_fails_no_message() {
    let dir = tempfile::tempdir().unwrap();
    let sim = ModemSimProcess::start(&dir.path().join("modem"), &[]);
    let (daemon, bridge) = start_with_two_quick_attempts(
        dir.path(),
        &sim,
        "reconnect_max_backoff_seconds = 1\nhealth_interval_seconds = 1\n",
    );
    let before = bridge.send("m1", "+15551230001", "before the outage");
    bridge.wait_status(&before, "delivered");

    assert!(sim.control("unplug").last().unwrap().starts_with("ok"));
    // A send in the instant before the driver notices goes to the port and
    // counts; once the endpoint reads down, nothing more does.
    let deadline = Instant::now() + Duration::from_secs(10);
    while bridge.get("/api/v1/status")["endpoints"][0]["state"] == "up" {
        assert!(Instant::now() < deadline, "the unplug was never noticed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let queued = bridge.send_three_that_wait("outage", 0);
    assert!(sim.control("replug").last().unwrap().starts_with("ok"));
    bridge.wait_delivered_at_first_attempt(&queued);

    // Plugged in but out of the network's reach: the first send learns it
    // (+CMS ERROR: 331, nothing sent) and the rest wait with it.
    assert!(
        sim.control("coverage off")
            .last()
            .unwrap()
            .starts_with("ok")
    );
    let offline = bridge.send_three_that_wait("no coverage", 10);
    let status = bridge.get("/api/v1/status");
    let endpoint = &status["endpoints"][0];
    assert_eq!(endpoint["state"], "degraded", "{status}");
    assert_eq!(endpoint["can_send"], false, "{status}");
    assert!(sim.control("coverage on").last().unwrap().starts_with("ok"));
    bridge.wait_delivered_at_first_attempt(&offline);

    // A congested network (+CMS ERROR: 42) refuses four sends in a row,
    // more than `max_attempts`: the endpoint pauses after each refusal,
    // and no message spends an attempt on one.
    assert!(sim.control("fail 42 4").last().unwrap().starts_with("ok"));
    let congested: Vec<String> = (0..3)
        .map(|i| {
            bridge.send(
                "m1",
                &format!("+155512302{i:02}"),
                &format!("congestion {i}"),
            )
        })
        .collect();
    bridge.wait_delivered_at_first_attempt(&congested);
    let refusals = bridge.history_entries_with_code(&congested, "cms_42");
    assert_eq!(
        refusals, 4,
        "each refusal is in a history, as not an attempt"
    );

    let texts = sim.sent_texts();
    let sent_once = ["outage", "no coverage", "congestion"];
    for text in (0..3).flat_map(|i| sent_once.map(|what| format!("{what} {i}"))) {
        assert_eq!(
            texts.iter().filter(|t| **t == text).count(),
            1,
            "{text}: {texts:?}"
        );
    }
    assert_eq!(daemon.terminate().code(), Some(0));
}

/// A full modem memory (+CMS ERROR: 322, nothing sent) refuses four
/// sends in a row, more than `max_attempts`: the endpoint pauses after
/// each refusal, no message spends an attempt on one or fails, and each
/// goes out once the modem takes sends again.
#[test]
fn a_full_modem_memory_refusing_more_sends_than_max_attempts_fails_no_message() {
    let dir = tempfile::tempdir().unwrap();
    let sim = ModemSimProcess::start(&dir.path().join("modem"), &[]);
    let (daemon, bridge) = start_with_two_quick_attempts(dir.path(), &sim, "");
    let before = bridge.send("m1", "+15551230001", "before the memory fills");
    bridge.wait_status(&before, "delivered");

    assert!(sim.control("fail 322 4").last().unwrap().starts_with("ok"));
    let held: Vec<String> = (0..3)
        .map(|i| bridge.send("m1", &format!("+155512303{i:02}"), &format!("full {i}")))
        .collect();
    bridge.wait_delivered_at_first_attempt(&held);
    let refusals = bridge.history_entries_with_code(&held, "cms_322");
    assert_eq!(
        refusals, 4,
        "each refusal is in a history, as not an attempt"
    );
    let texts = sim.sent_texts();
    for text in (0..3).map(|i| format!("full {i}")) {
        assert_eq!(
            texts.iter().filter(|t| **t == text).count(),
            1,
            "{text}: {texts:?}"
        );
    }
    assert_eq!(daemon.terminate().code(), Some(0));
}

/// The modem's TP-MR counter comes round to a value a part to the same
/// recipient had earlier that day, across a daemon restart: the new part
/// gets an id of its own, and each message keeps its own delivery report.
#[test]
fn after_a_restart_a_part_with_an_earlier_parts_tp_mr_gets_an_id_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let sim = ModemSimProcess::start(&dir.path().join("modem"), &[]);
    let port = free_port();
    let config = modem_config(dir.path(), port, &sim.link, "");
    let key = create_key_cli(&config);
    let http = reqwest::blocking::Client::new();
    let external_id = |daemon: &DaemonProcess, id: &str| {
        wait_for_message(&http, daemon, &key, id, 30, |m| m["status"] == "delivered");
        get_message(&http, daemon, &key, id)["external_ids"][0]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(sim.control("next-mr 42").last().unwrap().starts_with("ok"));
    let daemon = DaemonProcess::start(&config, port);
    let first = post_sms(&http, &daemon.base, &key, "before the restart", None).unwrap();
    let first: serde_json::Value = first.json().unwrap();
    let first = first["id"].as_str().unwrap().to_string();
    let first_id = external_id(&daemon, &first);
    assert!(first_id.starts_with("mr:42:15551230001:"), "{first_id}");
    assert_eq!(daemon.terminate().code(), Some(0));

    assert!(sim.control("next-mr 42").last().unwrap().starts_with("ok"));
    let daemon = DaemonProcess::start(&config, port);
    let second = post_sms(&http, &daemon.base, &key, "after the restart", None).unwrap();
    let second: serde_json::Value = second.json().unwrap();
    let second = second["id"].as_str().unwrap().to_string();
    assert_eq!(external_id(&daemon, &second), format!("{first_id}:2"));
    assert_eq!(
        get_message(&http, &daemon, &key, &first)["external_ids"][0],
        first_id.as_str(),
        "the first message keeps its id"
    );
    assert_eq!(daemon.terminate().code(), Some(0));
}

/// A modem whose device is not there when the daemon starts (a USB modem
/// still switching modes after boot): `check` names it, but `serve` starts
/// and waits for it as for a modem unplugged while running, and the queue
/// goes out once it appears.
#[test]
fn a_modem_missing_at_start_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("modem");
    let port = free_port();
    let config = modem_config(
        dir.path(),
        port,
        &link,
        "reconnect_max_backoff_seconds = 1\n",
    );
    let checked = run(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(checked.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&checked.stderr)
            .contains("channels.sms.modems[0].device: no such file")
    );

    let key = create_key_cli(&config);
    let mut daemon = DaemonProcess::start(&config, port);
    let http = reqwest::blocking::Client::new();
    let accepted: Value = post_sms(&http, &daemon.base, &key, "waits for its modem", None)
        .unwrap()
        .json()
        .unwrap();
    let id = accepted["id"].as_str().unwrap().to_string();
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "the daemon exited without its modem"
    );

    let sim = ModemSimProcess::start(&link, &[]);
    wait_for_message(&http, &daemon, &key, &id, 30, |m| {
        ["sent", "delivered"].contains(&m["status"].as_str().unwrap_or(""))
    });
    assert_eq!(sim.sent_texts(), ["waits for its modem"]);
}

/// An automated sender sends "1" twice in the same second: stored in two
/// slots, or handed over directly twice, each is an inbound message of
/// its own in the store (before, the second had the first's id and was
/// dropped as a duplicate, then freed from the SIM: lost), and the sweeps
/// every second add no third.
#[test]
fn identical_messages_of_one_second_are_each_received() {
    let dir = tempfile::tempdir().unwrap();
    let sim = ModemSimProcess::start(&dir.path().join("modem1"), &[]);
    let (_daemon, bridge) =
        start_with_two_quick_attempts(dir.path(), &sim, "sweep_interval_seconds = 1\n");
    let (pdu, _) =
        phonerelay_sms::codec::encode_deliver("+15551230077", "1", 1_700_000_000, 0).remove(0);
    let inject = |command: &str| {
        let answer = sim.control(&format!("{command} {pdu}"));
        assert!(answer.last().unwrap().starts_with("ok"), "{answer:?}");
    };
    inject("inject-pdu");
    inject("inject-pdu");
    bridge.wait_inbound(2);
    inject("inject-cmt");
    inject("inject-cmt");
    bridge.wait_inbound(4);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sim.control("stored").last().unwrap().contains("messages=0") {
        assert!(Instant::now() < deadline, "never freed from the SIM");
        std::thread::sleep(Duration::from_millis(25));
    }
    let inbound = bridge.wait_inbound(4);
    assert_eq!(inbound.len(), 4, "{inbound:?}");
    assert!(inbound.iter().all(|m| m["text"] == "1"), "{inbound:?}");
}
