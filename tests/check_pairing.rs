//! `check` looks at the pairing `phonerelay pair` recorded in the store:
//! one whose phone_id no endpoint has is a problem, as a `relay.phone_id`
//! no endpoint has is. It only looks: the store, its WAL and its shared
//! memory are left byte for byte as they were, or not there, also beside
//! a running writer.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use phonerelay::relay::settings::{Pairing, pairing_text};
use phonerelay::store::sqlite::{SCHEMA_VERSION, create_at_schema_version};
use rusqlite::Connection;
use support::process::*;

/// Every file in `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            let name = e.file_name().into_string().unwrap();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

fn names(files: &BTreeMap<String, Vec<u8>>) -> Vec<&String> {
    files.keys().collect()
}

/// Record a pairing as `phone_id` on `conn`.
fn record_pairing(conn: &Connection, phone_id: &str) {
    let pairing = Pairing {
        url: "https://relay.example.com".into(),
        phone_id: phone_id.into(),
        bridge_key_id: "k1".into(),
        paired_at_ms: 1,
        key_sha256: None,
    };
    conn.execute(
        "INSERT INTO cursors (scope, name, value) VALUES ('relay', 'pairing', ?1)",
        [pairing_text(Some(&pairing)).unwrap()],
    )
    .unwrap();
}

/// A current store under the config's state dir, paired as `phone_id`,
/// closed again; its path.
fn paired_store(dir: &Path, phone_id: &str) -> std::path::PathBuf {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let path = state.join("phonerelay.sqlite3");
    create_at_schema_version(&path, SCHEMA_VERSION).unwrap();
    record_pairing(&Connection::open(&path).unwrap(), phone_id);
    path
}

fn check(config: &Path) -> (Option<i32>, String) {
    let out = run(&["check", "--config", config.to_str().unwrap()]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const NO_ENDPOINT: &str = "relay.phone_id: the pairing `phonerelay pair` recorded has phone_id \
                           \"m9\", which no endpoint has (configured phone_ids: \"sim-1\")";

#[test]
fn a_stored_pairing_whose_phone_id_no_endpoint_has_is_a_problem_and_nothing_changes() {
    let sim = Simulated::new();
    paired_store(sim.dir.path(), "m9");
    let state = sim.dir.path().join("state");
    let before = files(&state);
    assert_eq!(names(&before), ["phonerelay.sqlite3"]);
    let (code, said) = check(&sim.config);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains(NO_ENDPOINT), "{said}");
    assert!(files(&state) == before, "check changed the state dir");
}

#[test]
fn a_stored_pairing_with_an_endpoint_s_phone_id_passes() {
    let sim = Simulated::new();
    paired_store(sim.dir.path(), "sim-1");
    let (code, said) = check(&sim.config);
    assert_eq!(code, Some(0), "{said}");
}

/// `relay.phone_id` in the config, another than the stored pairing's: a
/// note (the link runs as the config's phone_id, with the relay key the
/// relay issued for the pairing's), not an error.
#[test]
fn a_relay_phone_id_overriding_the_stored_pairing_s_is_noted() {
    let sim = Simulated::new();
    paired_store(sim.dir.path(), "sim-1");
    let mut text = std::fs::read_to_string(&sim.config).unwrap();
    text.push_str(
        "\n[[channels.sms.modems]]\nphone_id = \"sim-2\"\ndevice = \"sim\"\n\
         [relay]\nphone_id = \"sim-2\"\n",
    );
    std::fs::write(&sim.config, text).unwrap();
    let (code, said) = check(&sim.config);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(
            "note: relay.phone_id in the config (\"sim-2\") overrides the phone_id \"sim-1\""
        ),
        "{said}"
    );
}

/// A connection to the store at `path` that has replaced its pairing
/// with one for `phone_id`, committed in the WAL only (no checkpoint).
fn pairing_in_the_wal(path: &std::path::Path, phone_id: &str) -> Connection {
    let writer = Connection::open(path).unwrap();
    writer
        .execute_batch("PRAGMA wal_autocheckpoint = 0; DELETE FROM cursors;")
        .unwrap();
    record_pairing(&writer, phone_id);
    writer
}

/// As the daemon leaves it: the pairing committed in the WAL only, and a
/// write transaction open. `check` reads it and changes no byte.
#[test]
fn check_reads_the_pairing_beside_a_running_writer_and_changes_nothing() {
    let sim = Simulated::new();
    let path = paired_store(sim.dir.path(), "sim-1");
    let writer = pairing_in_the_wal(&path, "m9");
    writer
        .execute_batch("BEGIN IMMEDIATE; INSERT INTO cursors VALUES ('t', 'x', 'y');")
        .unwrap();
    let state = sim.dir.path().join("state");
    let before = files(&state);
    assert_eq!(
        names(&before),
        [
            "phonerelay.sqlite3",
            "phonerelay.sqlite3-shm",
            "phonerelay.sqlite3-wal"
        ]
    );
    let (code, said) = check(&sim.config);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains(NO_ENDPOINT), "{said}");
    assert!(files(&state) == before, "check changed the state dir");
    drop(writer);
}

/// A daemon that crashed left its WAL and shared memory with nobody to
/// keep them: read all the same, and left as they were.
#[test]
fn check_reads_a_crashed_daemon_s_wal_and_changes_nothing() {
    let sim = Simulated::new();
    let path = paired_store(sim.dir.path(), "sim-1");
    let writer = pairing_in_the_wal(&path, "m9");
    // A copy of the three files as the writer left them, which no
    // connection has open: what a crash leaves.
    let crashed = tempfile::tempdir().unwrap();
    let state = crashed.path().join("state");
    std::fs::create_dir(&state).unwrap();
    for (name, bytes) in files(&sim.dir.path().join("state")) {
        std::fs::write(state.join(name), bytes).unwrap();
    }
    drop(writer);
    let config = simulated_modem_config(crashed.path(), sim.port);
    let before = files(&state);
    assert_eq!(before.len(), 3);
    let (code, said) = check(&config);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains(NO_ENDPOINT), "{said}");
    assert!(files(&state) == before, "check changed the state dir");
}

#[test]
fn a_store_at_another_schema_is_noted_and_its_pairing_not_read() {
    for (found, hint) in [
        (SCHEMA_VERSION - 1, "run serve once to migrate"),
        (SCHEMA_VERSION + 1, "run the version that wrote it"),
    ] {
        let sim = Simulated::new();
        let path = paired_store(sim.dir.path(), "m9");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", found)
            .unwrap();
        let before = files(&sim.dir.path().join("state"));
        let (code, said) = check(&sim.config);
        assert_eq!(code, Some(0), "{said}");
        let note =
            format!("note: store schema {found}, this build expects {SCHEMA_VERSION}: {hint}");
        assert!(said.contains(&note), "{said}");
        assert!(!said.contains("m9"), "{said}");
        assert!(files(&sim.dir.path().join("state")) == before);
    }
}

#[test]
fn no_store_says_nothing_and_makes_none() {
    let sim = Simulated::new();
    let (code, said) = check(&sim.config);
    assert_eq!(code, Some(0), "{said}");
    assert!(!said.contains("store"), "{said}");
    assert!(!sim.dir.path().join("state").exists());
}

/// A `relay.url` that is not the relay the store's pairing names: `serve`
/// would keep the link off (the relay key goes to no relay that did not
/// issue it), so `check` says so, naming the key; the paired relay's own
/// URL, however spelled, is fine.
#[test]
fn a_relay_url_other_than_the_paired_relay_s_is_a_problem() {
    let sim = Simulated::new();
    paired_store(sim.dir.path(), "sim-1");
    let config = std::fs::read_to_string(&sim.config).unwrap();
    let with_url = |url: &str| {
        std::fs::write(&sim.config, format!("{config}\n[relay]\nurl = \"{url}\"\n")).unwrap();
        check(&sim.config)
    };
    let (code, said) = with_url("https://other-relay.example.com");
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("relay.url:") && said.contains("not the relay this bridge was paired with"),
        "{said}"
    );
    let (code, said) = with_url("HTTPS://Relay.Example.com:443/");
    assert_eq!(code, Some(0), "{said}");
}
