//! Kill -9 the daemon again and again while it carries traffic both ways:
//! sends from the relay going out over a simulated modem (another
//! process, which outlives each kill), and SMS arriving on that modem's SIM
//! on their way to the relay. In one round the SIM keeps what the daemon
//! deletes, so the next daemon reads committed SMS again. After the last restart every message has
//! gone where it was going exactly as often as the promises allow: each
//! send stored once and sent (a repeat only for the one in flight at a
//! kill), each SMS stored once, deleted from the SIM, and taken by the
//! relay once (its repeats carry the first delivery's idempotency key),
//! and every send's outcome reported to the relay.

#[allow(unused_imports)]
mod relay_support;
mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use relay_support::{EmulatedRelay, PHONE_ID, RELAY_KEY, relay_config};
use serde_json::{Value, json};
use support::process::*;

/// Kill-and-restart rounds.
const ROUNDS: usize = 4;
/// Sends accepted in each round.
const SENDS: usize = 12;
/// SMS put on the SIM in each round.
const ARRIVALS: usize = 8;
/// Where the arriving SMS come from: a number no send went to, so they
/// are routed to the relay's default pChat user.
const SENDER: &str = "+15551239999";

fn outbound_text(round: usize, n: usize) -> String {
    format!("out r{round} n{n}")
}

/// The first SMS of each round is long (three parts on the SIM), so a
/// kill can also land while a message is half assembled.
fn inbound_text(round: usize, n: usize) -> String {
    let text = format!("in r{round} n{n}");
    match n {
        0 => format!("{text} {}", "and more ".repeat(40))
            .trim_end()
            .to_string(),
        _ => text,
    }
}

/// One modem at `link` (the relay's phone id), one send at a time so a
/// kill catches at most one send in flight, the relay link pushing.
fn write_config(dir: &Path, link: &Path, port: u16, relay_url: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("relay.key"), RELAY_KEY).unwrap();
    daemon_config(
        dir,
        port,
        "",
        &format!(
            "[outbox]\nretry_initial_ms = 40\nretry_max_ms = 500\n\
             [outbox.limits.sms]\nconcurrency = 1\nper_second = 1000.0\nburst = 1000\nper_recipient_per_minute = 0\n\
             [[channels.sms.modems]]\nphone_id = \"{PHONE_ID}\"\ndevice = \"{}\"\nreconnect_max_backoff_seconds = 1\n\
             {}",
            link.display(),
            relay_config(relay_url, "push", Some("ops")),
        ),
    )
}

/// The relay's send of one message, as it pushes it to the bridge.
fn send(http: &reqwest::blocking::Client, base: &str, key: &str, round: usize, n: usize) -> String {
    let relay_id = format!("r{round}-{n}");
    let response = http
        .post(format!("{base}/api/v1/messages"))
        .bearer_auth(key)
        .header("Idempotency-Key", format!("key-{relay_id}"))
        .json(&json!({
            "phone_id": PHONE_ID, "channel": "sms", "to": format!("+1555123{n:04}"),
            "text": outbound_text(round, n), "source": "alice", "relay_message_id": relay_id,
        }))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let body: Value = response.json().unwrap();
    body["id"].as_str().unwrap().to_string()
}

/// How many of `texts` the relay has taken (its idempotency applied).
fn relay_took(relay: &EmulatedRelay) -> Vec<String> {
    relay
        .messages()
        .iter()
        .map(|m| m.body["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Wait up to `seconds` for `done`; false if it never held.
fn wait(seconds: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

#[test]
fn repeated_kills_lose_and_repeat_nothing_in_either_direction() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let relay = runtime.block_on(EmulatedRelay::start());
    // A relay that answers a forward a moment after taking it, so a kill
    // can land between the two: the relay has the SMS, the bridge does not
    // know.
    relay.with(|s| s.answer_delay_ms = 40);
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("modem");
    let sim = ModemSimProcess::start(&link, &["--network-delay-ms", "30"]);
    let port = free_port();
    let config = write_config(dir.path(), &link, port, &relay.url());
    let key = create_key_cli(&config);
    let http = reqwest::blocking::Client::new();

    let mut ids = HashMap::new();
    let (mut sends_cut_short, mut arrivals_cut_short) = (0, 0);
    for round in 0..ROUNDS {
        // In the second round the SIM keeps what the daemon deletes: the
        // next daemon finds that round's committed SMS on it again, as
        // after a kill between the commit and AT+CMGD.
        let deletes = if round == 1 { "keep" } else { "apply" };
        let answer = sim.control(&format!("deletes {deletes}"));
        assert_eq!(answer, [format!("ok deletes {deletes}")]);
        let daemon = DaemonProcess::start(&config, port);
        for n in 0..SENDS {
            ids.insert((round, n), send(&http, &daemon.base, &key, round, n));
        }
        for n in 0..ARRIVALS {
            let answer = sim.control(&format!("inject {SENDER} {}", inbound_text(round, n)));
            let parts = if n == 0 { 3 } else { 1 };
            assert_eq!(answer, [format!("ok {parts} part(s) stored")]);
        }
        // Kill once some of this round's work is done and some is not, at
        // a different point each round: early and halfway in the arrivals'
        // forwarding, early and halfway in the sends.
        let progress = || {
            let this_round = |texts: Vec<String>, word: &str| {
                let prefix = format!("{word} r{round} ");
                texts.iter().filter(|t| t.starts_with(&prefix)).count()
            };
            (
                this_round(sim.sent_texts(), "out"),
                this_round(relay_took(&relay), "in"),
            )
        };
        wait(10, || {
            let (sent, taken) = progress();
            match round % 4 {
                0 => taken >= 1,
                1 => taken >= ARRIVALS / 2,
                2 => sent >= 1,
                _ => sent >= SENDS / 2,
            }
        });
        daemon.crash();
        let (sent, taken) = progress();
        eprintln!("round {round}: at the kill {sent} sends out, {taken} arrivals at the relay");
        sends_cut_short += usize::from(sent < SENDS);
        arrivals_cut_short += usize::from(taken < ARRIVALS);
    }
    assert!(
        sends_cut_short > 0 && arrivals_cut_short > 0,
        "no kill came while the work was under way ({sends_cut_short} rounds with sends left, \
         {arrivals_cut_short} with arrivals left): nothing was tested"
    );

    let daemon = DaemonProcess::start(&config, port);
    let all_sent = wait(60, || {
        all_pages(&http, &daemon.base, &key, "/api/v1/messages")
            .iter()
            .all(|m| m["status"] == "sent" || m["status"] == "delivered")
    });
    let all_taken = wait(60, || relay_took(&relay).len() >= ROUNDS * ARRIVALS);
    assert!(
        all_sent && all_taken,
        "the work was not finished after the last restart"
    );

    // Sends: one stored message per send, each sent, a repeat only for
    // the send in flight at a kill.
    let listed = all_pages(&http, &daemon.base, &key, "/api/v1/messages");
    let listed_ids: HashSet<String> = listed
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed.len(), ROUNDS * SENDS, "one stored message per send");
    assert_eq!(listed_ids, ids.values().cloned().collect::<HashSet<_>>());
    let mut sent_counts: HashMap<String, usize> = HashMap::new();
    for text in sim.sent_texts() {
        *sent_counts.entry(text).or_default() += 1;
    }
    let mut repeats = 0;
    for round in 0..ROUNDS {
        for n in 0..SENDS {
            let count = sent_counts.get(&outbound_text(round, n)).copied();
            assert!(
                count.is_some(),
                "{} never went out",
                outbound_text(round, n)
            );
            repeats += count.unwrap() - 1;
        }
    }
    assert!(
        repeats <= ROUNDS,
        "{repeats} repeated sends after {ROUNDS} kills of a daemon sending one at a time"
    );

    // Arrivals: each stored once, gone from the SIM, taken by the relay
    // once, whatever delivery of it a kill cut short.
    let expected: HashSet<String> = (0..ROUNDS)
        .flat_map(|round| (0..ARRIVALS).map(move |n| inbound_text(round, n)))
        .collect();
    let stored: Vec<String> = all_pages(&http, &daemon.base, &key, "/api/v1/inbound")
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        stored.len(),
        expected.len(),
        "one stored inbound per SMS: {stored:?}"
    );
    assert_eq!(stored.into_iter().collect::<HashSet<_>>(), expected);
    let taken = relay_took(&relay);
    assert_eq!(
        taken.len(),
        expected.len(),
        "a repeat with a new key: {taken:?}"
    );
    assert_eq!(taken.into_iter().collect::<HashSet<_>>(), expected);
    assert!(
        wait(10, || sim.control("stored")[0]
            .starts_with("ok messages=0 ")),
        "SMS left on the SIM: {:?}",
        sim.control("stored")
    );

    // Outcomes: every send's `sent` reached the relay.
    let reported = wait(20, || {
        let events = relay.status_events();
        ids.keys().all(|(round, n)| {
            let relay_id = format!("r{round}-{n}");
            events
                .iter()
                .any(|e| e["relay_message_id"] == relay_id.as_str() && e["status"] == "sent")
        })
    });
    assert!(
        reported,
        "outcomes missing at the relay: {:?}",
        relay.status_events()
    );
    assert_eq!(daemon.terminate().code(), Some(0));
}
