//! A clean stop (SIGTERM) closes the store: its writer finishes, the WAL is
//! checkpointed into the database and removed, so what is left on disk is
//! one self-contained file an operator may copy once the service is down.

mod support;

use support::process::*;

#[test]
fn a_clean_stop_leaves_the_store_in_one_file() {
    let Simulated { dir, port, config } = Simulated::new();
    let key = create_key_cli(&config);
    let daemon = DaemonProcess::start(&config, port);
    let http = reqwest::blocking::Client::new();
    let accepted: serde_json::Value = post_sms(&http, &daemon.base, &key, "kept", None)
        .unwrap()
        .json()
        .unwrap();
    let id = accepted["id"].as_str().unwrap().to_string();
    let state = dir.path().join("state");
    let wal = state.join("phonerelay.sqlite3-wal");
    // Sent, and so written through the WAL, which is there while running.
    wait_for_message(&http, &daemon, &key, &id, 20, |m| {
        ["sent", "delivered"].contains(&m["status"].as_str().unwrap_or(""))
    });
    assert!(wal.exists(), "a running store writes through its WAL");

    assert_eq!(daemon.terminate().code(), Some(0));
    assert!(!wal.exists(), "the WAL is checkpointed and removed at stop");
    // The database file alone has the message: opened read-only, so
    // SQLite cannot recover anything from a WAL that is not there.
    let db = rusqlite::Connection::open_with_flags(
        state.join("phonerelay.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let body: String = db
        .query_row("SELECT body FROM outbound WHERE id = ?1", [&id], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(body, "kept");
}

/// SIGTERM while sends wait their turn at the modem (one on the wire, the
/// rest queued for the serial port): the modem keeps running through the
/// grace period, so every claimed send goes out before the daemon exits,
/// and none is sent again after the restart.
#[test]
fn claimed_sends_go_out_in_the_grace_period_at_a_clean_stop() {
    const SENDS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("modem");
    let sim = ModemSimProcess::start(&link, &["--network-delay-ms", "300"]);
    let port = free_port();
    let config = daemon_config(
        dir.path(),
        port,
        "shutdown_grace_seconds = 20\n",
        &format!(
            "[outbox.limits.sms]\nconcurrency = {SENDS}\nper_second = 1000.0\nburst = 1000\n\
             [[channels.sms.modems]]\nphone_id = \"sim-1\"\ndevice = \"{}\"\n",
            link.display()
        ),
    );
    let key = create_key_cli(&config);
    let daemon = DaemonProcess::start(&config, port);
    let http = reqwest::blocking::Client::new();
    let texts: Vec<String> = (0..SENDS).map(|n| format!("in the grace {n}")).collect();
    for (n, text) in texts.iter().enumerate() {
        let to = format!("+155512300{n:02}");
        let body =
            serde_json::json!({"phone_id": "sim-1", "channel": "sms", "to": to, "text": text});
        let response = http
            .post(format!("{}/api/v1/messages", daemon.base))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
    }
    // Stop while the first is on the wire and the others wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while sim.sent_texts().is_empty() {
        assert!(std::time::Instant::now() < deadline, "nothing went out");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(sim.sent_texts().len() < SENDS, "all sent before the stop");
    assert_eq!(daemon.terminate().code(), Some(0));
    let mut sent = sim.sent_texts();
    sent.sort();
    assert_eq!(
        sent, texts,
        "every claimed send went out, once, before the exit"
    );

    let daemon = DaemonProcess::start(&config, port);
    let listed = all_pages(&http, &daemon.base, &key, "/api/v1/messages");
    assert_eq!(listed.len(), SENDS);
    assert!(
        listed
            .iter()
            .all(|m| m["status"] == "sent" || m["status"] == "delivered"),
        "{listed:?}"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(sim.sent_texts().len(), SENDS, "nothing sent again");
}

/// A second SIGTERM while the stop waits for slow sends cuts the grace
/// short: the send on the wire finishes (the modem is not cut off in the
/// middle of a command, so its part is recorded), the ones waiting for
/// the modem go back to the queue, and the daemon exits 0 long before the
/// grace would have let it. After the restart each message is sent, and
/// none twice.
#[test]
fn a_second_sigterm_cuts_the_grace_short_and_sends_nothing_twice() {
    use std::time::{Duration, Instant};
    const SENDS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("modem");
    // Each send takes 10 s at the modem, one at a time: a full grace stop
    // would wait some 40 s; the grace allows 120.
    let sim = ModemSimProcess::start(&link, &["--network-delay-ms", "10000"]);
    let port = free_port();
    let config = daemon_config(
        dir.path(),
        port,
        "shutdown_grace_seconds = 120\n",
        &format!(
            "[outbox.limits.sms]\nconcurrency = {SENDS}\nper_second = 1000.0\nburst = 1000\n\
             [[channels.sms.modems]]\nphone_id = \"sim-1\"\ndevice = \"{}\"\n",
            link.display()
        ),
    );
    let key = create_key_cli(&config);
    let mut daemon = DaemonProcess::start(&config, port);
    let http = reqwest::blocking::Client::new();
    let texts: Vec<String> = (0..SENDS).map(|n| format!("cut short {n}")).collect();
    let mut ids = Vec::new();
    for (n, text) in texts.iter().enumerate() {
        let to = format!("+155512300{n:02}");
        let body =
            serde_json::json!({"phone_id": "sim-1", "channel": "sms", "to": to, "text": text});
        let response = http
            .post(format!("{}/api/v1/messages", daemon.base))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
        let accepted: serde_json::Value = response.json().unwrap();
        ids.push(accepted["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        wait_for_message(&http, &daemon, &key, id, 20, |m| m["status"] == "sending");
    }
    daemon.signal_term();
    // The first SIGTERM has been acted on once the API stops listening.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "still listening after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon.signal_term();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running 20 s after the second SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    assert!(
        sim.sent_texts().len() < SENDS,
        "every send finished before the exit: nothing was cut short"
    );

    sim.control("delay 0");
    let daemon = DaemonProcess::start(&config, port);
    for id in &ids {
        wait_for_message(&http, &daemon, &key, id, 30, |m| {
            m["status"] == "sent" || m["status"] == "delivered"
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut sent = sim.sent_texts();
    sent.sort();
    assert_eq!(sent, texts, "each message went out once");
}

/// The `parts` lines of a `ModemSimProcess`: one per part the simulated
/// network accepted ("<to> mr=<n> ref=<r> seq=<s>/<total>").
fn accepted_parts(sim: &ModemSimProcess) -> Vec<String> {
    sim.control("parts")
        .into_iter()
        .filter(|l| !l.starts_with("ok"))
        .collect()
}

/// A stop cut short while a long message goes out part by part: the part
/// on the wire is finished, no further one starts, and after the restart
/// the rest go out, each part once.
#[test]
fn a_long_message_stops_between_parts_when_the_stop_is_cut_short() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("modem");
    let sim = ModemSimProcess::start(&link, &["--network-delay-ms", "1500"]);
    let port = free_port();
    let config = daemon_config(
        dir.path(),
        port,
        "shutdown_grace_seconds = 120\n",
        &format!(
            "[[channels.sms.modems]]\nphone_id = \"sim-1\"\ndevice = \"{}\"\n",
            link.display()
        ),
    );
    let key = create_key_cli(&config);
    let mut daemon = DaemonProcess::start(&config, port);
    let http = reqwest::blocking::Client::new();
    // Six parts of 153 characters.
    let text = "0123456789".repeat(85);
    let body = serde_json::json!({"phone_id": "sim-1", "channel": "sms", "to": "+15551230001", "text": text});
    let response = http
        .post(format!("{}/api/v1/messages", daemon.base))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let id = response.json::<serde_json::Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while accepted_parts(&sim).is_empty() {
        assert!(Instant::now() < deadline, "no part went out");
        std::thread::sleep(Duration::from_millis(10));
    }
    daemon.signal_term();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "still listening after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon.signal_term();
    let at_cut = accepted_parts(&sim).len();
    assert_eq!(daemon.child.wait().unwrap().code(), Some(0));
    let at_exit = accepted_parts(&sim).len();
    assert!(
        at_exit <= at_cut + 1,
        "parts started after the stop was cut short: {at_cut} then {at_exit}"
    );
    assert!(at_exit < 6, "the whole message went out before the exit");

    sim.control("delay 0");
    let daemon = DaemonProcess::start(&config, port);
    wait_for_message(&http, &daemon, &key, &id, 30, |m| {
        m["status"] == "sent" || m["status"] == "delivered"
    });
    let mut seqs: Vec<String> = accepted_parts(&sim)
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
        .collect();
    seqs.sort();
    assert_eq!(
        seqs,
        [
            "seq=1/6", "seq=2/6", "seq=3/6", "seq=4/6", "seq=5/6", "seq=6/6"
        ],
        "each part once"
    );
}
