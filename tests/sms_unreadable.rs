//! The daemon binary with a simulated modem in its own process: a PDU the
//! codec cannot decode is committed as it came, then freed from the SIM,
//! and shown to the operator (the API's listing, the status count, the
//! CLI); a direct one (`+CMT`) is committed too; while the store will not
//! take it, it stays on the SIM until it will; and a crash between the
//! commit and the delete leaves one row, not two.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::process::*;

/// Cut short in its sender's address: no DELIVER can be read from it.
const UNDECODABLE: &str = "0004";

struct Bridge {
    daemon: DaemonProcess,
    http: reqwest::blocking::Client,
    key: String,
}

impl Bridge {
    /// A daemon on modem `m1` (the simulator `sim`), swept every second.
    fn start(dir: &Path, sim: &ModemSimProcess) -> Bridge {
        let port = free_port();
        let config = daemon_config(
            dir,
            port,
            "",
            &format!(
                "[[channels.sms.modems]]\nphone_id = \"m1\"\ndevice = \"{}\"\n\
                 sweep_interval_seconds = 1\nreconnect_max_backoff_seconds = 1\n",
                sim.link.display()
            ),
        );
        let key_file = dir.join("key");
        let key = match std::fs::read_to_string(&key_file) {
            Ok(key) => key,
            Err(_) => {
                let key = create_key_cli(&config);
                std::fs::write(&key_file, &key).unwrap();
                key
            }
        };
        Bridge {
            daemon: DaemonProcess::start(&config, port),
            http: reqwest::blocking::Client::new(),
            key,
        }
    }

    fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.daemon.base))
            .bearer_auth(&self.key)
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    fn unreadable(&self) -> Vec<Value> {
        let page = self.get("/api/v1/inbound/unreadable?limit=100");
        page["items"].as_array().unwrap().clone()
    }

    fn endpoint(&self) -> Value {
        let status = self.get("/api/v1/status");
        status["endpoints"][0].clone()
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn messages_on_sim(sim: &ModemSimProcess) -> String {
    sim.control("stored").last().unwrap().clone()
}

#[test]
fn an_undecodable_pdu_is_committed_then_freed_and_shown_to_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let sim = ModemSimProcess::start(&dir.path().join("modem"), &[]);
    let bridge = Bridge::start(dir.path(), &sim);
    wait_until("the modem up", || bridge.endpoint()["state"] == "up");

    assert!(sim.control(&format!("inject-pdu {UNDECODABLE}"))[0].starts_with("ok 1"));
    wait_until("the stored PDU kept", || bridge.unreadable().len() == 1);
    wait_until("the SIM emptied", || {
        messages_on_sim(&sim).contains("messages=0")
    });
    // Handed over directly: no copy on the modem, committed all the same.
    assert!(sim.control("inject-cmt 0005")[0].starts_with("ok"));
    wait_until("the direct PDU kept", || bridge.unreadable().len() == 2);

    let kept = bridge.unreadable();
    let seen: Vec<(&str, &str, &str)> = kept
        .iter()
        .map(|u| {
            (
                u["phone_id"].as_str().unwrap(),
                u["origin"].as_str().unwrap(),
                u["raw_hex"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, [("m1", "+CMT", "0005"), ("m1", "SM:1", "0004")]);
    assert!(!kept[1]["reason"].as_str().unwrap().is_empty());
    let endpoint = bridge.endpoint();
    assert_eq!(endpoint["unreadable_inbound"], 2, "{endpoint}");
    assert!(endpoint["details"].get("undecodable_stored").is_none());

    let config = bridge.daemon.config.to_str().unwrap().to_string();
    let listed = run(&["inbound", "unreadable", "--config", &config]);
    assert!(listed.status.success());
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("sms/m1  SM:1"), "{listed}");
    assert!(listed.contains("  0004\n"), "{listed}");
    assert!(listed.contains("sms/m1  +CMT"), "{listed}");
    let status = run(&["status", "--config", &config]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("2 unreadable inbound kept"), "{status}");
    assert_eq!(bridge.daemon.terminate().code(), Some(0));
}

#[test]
fn while_the_store_refuses_it_an_undecodable_pdu_stays_on_the_sim_until_it_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let sim = ModemSimProcess::start(&dir.path().join("modem"), &[]);
    let bridge = Bridge::start(dir.path(), &sim);
    wait_until("the modem up", || bridge.endpoint()["state"] == "up");
    let db = dir.path().join("state").join("phonerelay.sqlite3");
    support::store_tables::set_table_hidden(&db, "inbound_unreadable", true);

    assert!(sim.control(&format!("inject-pdu {UNDECODABLE}"))[0].starts_with("ok 1"));
    wait_until("named as waiting on the SIM", || {
        bridge.endpoint()["details"]["undecodable_stored"] == "SM:1"
    });
    // Named so, its commit failed: it is still there.
    assert!(messages_on_sim(&sim).contains("messages=1"));

    support::store_tables::set_table_hidden(&db, "inbound_unreadable", false);
    wait_until("the SIM emptied", || {
        messages_on_sim(&sim).contains("messages=0")
    });
    assert_eq!(bridge.unreadable().len(), 1);
    wait_until("no longer named", || {
        bridge.endpoint()["details"]
            .get("undecodable_stored")
            .is_none()
    });
    assert_eq!(bridge.daemon.terminate().code(), Some(0));
}

#[test]
fn a_crash_between_the_commit_and_the_delete_leaves_one_row() {
    let dir = tempfile::tempdir().unwrap();
    let sim = ModemSimProcess::start(&dir.path().join("modem"), &[]);
    let bridge = Bridge::start(dir.path(), &sim);
    wait_until("the modem up", || bridge.endpoint()["state"] == "up");
    // The deletes answered OK but nothing removed: as after a crash
    // between the commit and the delete.
    assert!(sim.control("deletes keep")[0].starts_with("ok"));
    assert!(sim.control(&format!("inject-pdu {UNDECODABLE}"))[0].starts_with("ok 1"));
    wait_until("kept", || bridge.unreadable().len() == 1);
    bridge.daemon.crash();

    assert!(sim.control("deletes apply")[0].starts_with("ok"));
    let bridge = Bridge::start(dir.path(), &sim);
    wait_until("the SIM emptied", || {
        messages_on_sim(&sim).contains("messages=0")
    });
    let kept = bridge.unreadable();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["raw_hex"], UNDECODABLE);
    assert_eq!(bridge.daemon.terminate().code(), Some(0));
}
