//! `phonerelay pair` and `unpair` take effect in a running daemon: the
//! real binary, started unpaired, links to the emulated relay once paired
//! (by its own poll) and stops the link once unpaired (at once on SIGHUP),
//! with no restart; a pairing that cannot be read (the store fails) leaves
//! a running link alone.

mod relay_support;
mod support;

use std::path::Path;
use std::process::Command;

use relay_support::{EmulatedRelay, PHONE_ID, RELAY_KEY};
use support::process::*;

fn cli(config: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    run_with_stdin(&all, stdin)
}

/// `phonerelay pair` with `relay` and its key, which must succeed; what
/// it said on stderr.
fn pair(config: &Path, relay: &EmulatedRelay) -> String {
    let paired = cli(
        config,
        &["pair", "--relay", &relay.url(), "--phone-id", PHONE_ID],
        RELAY_KEY,
    );
    let stderr = String::from_utf8_lossy(&paired.stderr).into_owned();
    assert_eq!(paired.status.code(), Some(0), "{stderr}");
    stderr
}

fn heartbeats(relay: &EmulatedRelay) -> Vec<serde_json::Value> {
    relay.with(|s| s.heartbeats.clone())
}

/// A daemon with a simulated modem under the relay's `PHONE_ID`, the
/// endpoint `pair` asks for.
fn write_config(config: &Path, port: u16, settings_poll_seconds: u64) {
    std::fs::write(
        config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace_seconds = 1\n\
             [storage]\nstate_dir = \"state\"\n\
             [[channels.sms.modems]]\nphone_id = \"{PHONE_ID}\"\ndevice = \"sim\"\n\
             [relay]\nsettings_poll_seconds = {settings_poll_seconds}\n"
        ),
    )
    .unwrap();
}

fn stopping_heartbeats(relay: &EmulatedRelay) -> usize {
    relay.with(|s| {
        s.heartbeats
            .iter()
            .filter(|h| h["stopping"] == true)
            .count()
    })
}

/// An emulated relay, and a config path and port for the daemon.
struct Setup {
    runtime: tokio::runtime::Runtime,
    relay: EmulatedRelay,
    dir: tempfile::TempDir,
    port: u16,
    config: std::path::PathBuf,
}

fn setup() -> Setup {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let relay = runtime.block_on(EmulatedRelay::start());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("phonerelay.toml");
    Setup {
        runtime,
        relay,
        dir,
        port: free_port(),
        config,
    }
}

#[test]
fn a_pairing_made_while_the_daemon_runs_starts_the_link_and_unpair_stops_it() {
    let Setup {
        runtime,
        relay,
        dir: _dir,
        port,
        config,
    } = setup();

    // The daemon's own poll (every second here) finds a new pairing.
    write_config(&config, port, 1);
    let daemon = DaemonProcess::start(&config, port);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(heartbeats(&relay).is_empty(), "unpaired: no link");
    let stderr = pair(&config, &relay);
    assert!(stderr.contains("a running daemon starts using"), "{stderr}");
    runtime.block_on(relay.wait_for("a heartbeat after pairing", |s| !s.heartbeats.is_empty()));
    assert_eq!(heartbeats(&relay)[0]["stopping"], false);
    assert!(daemon.terminate().success());

    // With an hour between polls, only SIGHUP can make it see `unpair`.
    write_config(&config, port, 3600);
    let daemon = DaemonProcess::start(&config, port);
    runtime.block_on(relay.wait_for("a heartbeat from the paired daemon", |s| {
        s.heartbeats
            .iter()
            .filter(|h| h["stopping"] == false)
            .count()
            >= 2
    }));
    let stopped_before = stopping_heartbeats(&relay);
    let unpaired = cli(&config, &["unpair"], "");
    assert_eq!(
        unpaired.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&unpaired.stderr)
    );
    let hup = Command::new("kill")
        .args(["-HUP", &daemon.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    runtime.block_on(relay.wait_for("the stopping heartbeat after unpair", |s| {
        s.heartbeats
            .iter()
            .filter(|h| h["stopping"] == true)
            .count()
            > stopped_before
    }));
    // The daemon itself runs on, and stops cleanly.
    assert!(daemon.terminate().success());
}

/// `pair` again with the same relay, phone and key while the daemon runs:
/// a new link (a stopping heartbeat from the old one), whose refusals in a
/// row start from zero as the store's were cleared. Kept, the old link
/// wrote its count back over them.
#[test]
fn pairing_again_with_the_same_key_starts_a_new_link() {
    let Setup {
        runtime,
        relay,
        dir: _dir,
        port,
        config,
    } = setup();
    write_config(&config, port, 1);
    let daemon = DaemonProcess::start(&config, port);
    pair(&config, &relay);
    runtime.block_on(relay.wait_for("a heartbeat after pairing", |s| !s.heartbeats.is_empty()));
    let stopped_before = stopping_heartbeats(&relay);
    pair(&config, &relay);
    runtime.block_on(relay.wait_for("the old link's stopping heartbeat", |s| {
        s.heartbeats
            .iter()
            .filter(|h| h["stopping"] == true)
            .count()
            > stopped_before
    }));
    assert!(daemon.terminate().success());
}

/// Hide (rename) or restore the `cursors` table, where the pairing is
/// kept, from a connection of the test's own: the daemon's next read of
/// the pairing fails with "no such table".
fn set_cursors_hidden(db: &Path, hidden: bool) {
    support::store_tables::set_table_hidden(db, "cursors", hidden);
}

#[test]
fn a_pairing_that_cannot_be_read_leaves_the_running_link_alone() {
    let Setup {
        runtime,
        relay,
        dir,
        port,
        config,
    } = setup();
    write_config(&config, port, 1);
    let paired = cli(
        &config,
        &["pair", "--relay", &relay.url(), "--phone-id", PHONE_ID],
        RELAY_KEY,
    );
    assert_eq!(
        paired.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&paired.stderr)
    );
    let key = create_key_cli(&config);
    let daemon = DaemonProcess::start(&config, port);
    runtime.block_on(relay.wait_for("a heartbeat from the paired daemon", |s| {
        !s.heartbeats.is_empty()
    }));
    let http = reqwest::blocking::Client::new();
    let relay_up = format!("phonerelay_relay_up{{phone_id=\"{PHONE_ID}\"}}");
    let metrics = || {
        http.get(format!("{}/metrics", daemon.base))
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    assert!(metrics().contains(&relay_up), "{}", metrics());

    // Three of the daemon's one-second polls fail to read the pairing; a
    // supervisor that took that for "unpaired" would stop the link, and
    // a stopped link says so in a last heartbeat.
    let db = dir.path().join("state").join("phonerelay.sqlite3");
    set_cursors_hidden(&db, true);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(stopping_heartbeats(&relay), 0, "the link ran on");
    // Meanwhile the link is not "none": its gauges keep their values and
    // its view is unavailable, not missing.
    assert!(metrics().contains(&relay_up), "{}", metrics());
    let view = http
        .get(format!("{}/api/v1/relay", daemon.base))
        .bearer_auth(&key)
        .send()
        .unwrap();
    assert_eq!(view.status().as_u16(), 503);

    // Readable again and unchanged: still the same link, no restart.
    set_cursors_hidden(&db, false);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(stopping_heartbeats(&relay), 0, "the link was not restarted");
    let hellos = relay.with(|s| s.hellos.len());
    assert_eq!(hellos, 1, "one hello: the link never started again");
    assert!(daemon.terminate().success());
}
