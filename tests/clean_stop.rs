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
