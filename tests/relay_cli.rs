//! `phonerelay inbound dead` and `phonerelay inbound retry ID`, run as the
//! real binary beside a real daemon process (an SMS simulator in its own
//! process feeding it), against the emulated relay in this process.

mod relay_support;
mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use relay_support::{EmulatedRelay, PHONE_ID, RELAY_KEY, relay_config};
use support::process::*;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn inbound_cli(config: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--config", config.to_str().unwrap(), "inbound"];
    all.extend_from_slice(args);
    run(&all)
}

/// `inbound dead` until a line mentions `needle`; that line.
fn wait_dead_line(config: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = inbound_cli(config, &["dead"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        if let Some(line) = stdout.lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        assert!(Instant::now() < deadline, "never dead: {stdout}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A daemon process on an SMS simulator in `dir`, linked to `relay` with
/// `default_to = "ops"`; its config file.
fn daemon_on(dir: &Path, relay: &EmulatedRelay) -> (ModemSimProcess, PathBuf, DaemonProcess) {
    let sim = ModemSimProcess::start(&dir.join("modem"), &[]);
    std::fs::write(dir.join("relay.key"), RELAY_KEY).unwrap();
    let port = free_port();
    let config = daemon_config(
        dir,
        port,
        "shutdown_grace_seconds = 1\n",
        &format!(
            "[[channels.sms.modems]]\nphone_id = \"{PHONE_ID}\"\ndevice = \"{}\"\n\
             sweep_interval_seconds = 1\nreconnect_max_backoff_seconds = 1\n{}",
            sim.link.display(),
            relay_config(&relay.url(), "push", Some("ops"))
        ),
    );
    let daemon = DaemonProcess::start(&config, port);
    (sim, config, daemon)
}

#[test]
fn inbound_dead_lists_a_refused_message_and_inbound_retry_delivers_it_once() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let relay = runtime.block_on(EmulatedRelay::start());
    let dir = tempfile::tempdir().unwrap();
    let (sim, config, daemon) = daemon_on(dir.path(), &relay);

    let empty = inbound_cli(&config, &["dead"]);
    assert!(empty.status.success(), "{}", text(&empty.stderr));
    assert_eq!(text(&empty.stdout).trim(), "no dead letters");

    // The relay refuses this one for good (422): a dead letter.
    let answer = sim.control("inject +15551230001 REJECT this");
    assert!(answer.last().unwrap().starts_with("ok"), "{answer:?}");
    let line = wait_dead_line(&config, "sms:+15551230001");
    let id = line.split_whitespace().next().unwrap().to_string();
    for part in ["ops", "relay_http_422", "no such pChat user"] {
        assert!(line.contains(part), "{part:?} missing: {line}");
    }
    // When it came and when it died, each a time `--since` takes.
    let after = |label: &str| {
        let at = line
            .split(label)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next());
        at.unwrap_or_else(|| panic!("no {label:?} in {line}"))
            .to_string()
    };
    let (came, died) = (after("came "), after("died "));
    let since = inbound_cli(
        &config,
        &["retry", "--all", "--since", &died, "--code", "none_such"],
    );
    assert_eq!(
        since.status.code(),
        Some(0),
        "{died}: {}",
        text(&since.stderr)
    );
    assert!(came <= died, "came {came}, died {died}");
    assert!(relay.messages().is_empty());

    // The relay is fixed; the operator retries it by hand.
    relay.with(|s| s.reject_marked = false);
    let retry = inbound_cli(&config, &["retry", &id]);
    assert_eq!(retry.status.code(), Some(0), "{}", text(&retry.stderr));
    assert!(
        text(&retry.stdout).contains(&format!("{id} queued for the relay again")),
        "{}",
        text(&retry.stdout)
    );
    runtime.block_on(relay.wait_for("the retried message", |s| s.messages.len() == 1));
    let delivered = relay.messages()[0].clone();
    assert_eq!(delivered.body["text"], "REJECT this");
    assert_eq!(delivered.body["to"], "ops");
    assert_eq!(delivered.body["source"], "sms:+15551230001");
    let key = format!("{id}:retry1");
    assert_eq!(delivered.idempotency_key.as_deref(), Some(key.as_str()));
    let after = inbound_cli(&config, &["dead"]);
    assert_eq!(text(&after.stdout).trim(), "no dead letters");

    // No longer dead: refused, exit 2, nothing sent again.
    let again = inbound_cli(&config, &["retry", &id]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains("is delivered; only dead letters and messages set aside"),
        "{}",
        text(&again.stderr)
    );

    // An unknown id: one clear line, exit 2.
    let unknown = inbound_cli(&config, &["retry", "no-such-id"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown.stderr));
    let stderr = text(&unknown.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no inbound message no-such-id"), "{stderr}");
    assert!(text(&unknown.stdout).is_empty());

    assert_eq!(daemon.terminate().code(), Some(0));
    assert_eq!(
        relay.with(|s| s.message_posts_taken),
        2,
        "422 once, then once delivered"
    );
}

/// `inbound retry ID --to ADDRESS`: a bad address is refused as the API
/// refuses it (exit 2, naming the field), the letter left as it was; a
/// good one sends the letter there.
#[test]
fn inbound_retry_to_sends_a_dead_letter_to_the_address_given() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let relay = runtime.block_on(EmulatedRelay::start());
    let dir = tempfile::tempdir().unwrap();
    let (sim, config, daemon) = daemon_on(dir.path(), &relay);
    let answer = sim.control("inject +15551230001 REJECT this");
    assert!(answer.last().unwrap().starts_with("ok"), "{answer:?}");
    let line = wait_dead_line(&config, "sms:+15551230001");
    let id = line.split_whitespace().next().unwrap().to_string();
    relay.with(|s| s.reject_marked = false);

    let bad = inbound_cli(&config, &["retry", &id, "--to", "not an address!"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    let stderr = text(&bad.stderr);
    assert!(
        stderr.contains("invalid_field") && stderr.contains("(field to)"),
        "{stderr}"
    );
    assert_eq!(wait_dead_line(&config, &id), line, "the letter changed");

    let retry = inbound_cli(&config, &["retry", &id, "--to", "alice"]);
    assert_eq!(retry.status.code(), Some(0), "{}", text(&retry.stderr));
    assert!(
        text(&retry.stdout).contains(&format!("{id} queued for the relay again, to alice")),
        "{}",
        text(&retry.stdout)
    );
    runtime.block_on(relay.wait_for("the letter at alice", |s| s.messages.len() == 1));
    let delivered = relay.messages()[0].clone();
    assert_eq!(delivered.body["to"], "alice");
    assert_eq!(delivered.body["origin"]["route"], "manual");
    let key = format!("{id}:retry1");
    assert_eq!(delivered.idempotency_key.as_deref(), Some(key.as_str()));
    assert_eq!(
        relay.with(|s| s.message_posts_taken),
        2,
        "refused, then taken"
    );
    assert_eq!(daemon.terminate().code(), Some(0));
}
