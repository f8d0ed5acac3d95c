//! Kill -9 the daemon while clients are sending to it: every send that was
//! answered 202 before the kill is there after the restart, and a send
//! whose answer was lost, repeated with its `Idempotency-Key`, is stored
//! once whether or not the first try had been committed. A 202 means
//! committed; this is the test of that promise at the process boundary.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::process::*;

/// Clients sending at once, back to back.
const CLIENTS: usize = 8;
/// Kill-and-restart rounds.
const ROUNDS: usize = 3;
/// Sends answered in a round before its kill.
const ANSWERED_BEFORE_KILL: usize = 150;

/// What the clients saw of one round: the id of each send answered 202,
/// and the sends that got no answer (the kill cut them off).
#[derive(Default)]
struct Round {
    answered: HashMap<String, String>,
    unanswered: Vec<String>,
}

/// `CLIENTS` clients send back to back until the daemon is killed, which
/// happens once `ANSWERED_BEFORE_KILL` sends were answered.
fn load_and_kill(daemon: DaemonProcess, key: &str, round: usize) -> Round {
    let answered_count = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (base, key) = (daemon.base.clone(), key.to_string());
            let (answered_count, killed) = (answered_count.clone(), killed.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let mut seen = Round::default();
                for n in 0.. {
                    let idempotency_key = format!("r{round}-c{client}-{n}");
                    match post_sms(
                        &http,
                        &base,
                        &key,
                        &format!("send {idempotency_key}"),
                        Some(&idempotency_key),
                    ) {
                        Ok(response) => {
                            assert_eq!(response.status().as_u16(), 202);
                            let body: serde_json::Value = response.json().unwrap();
                            let id = body["id"].as_str().unwrap().to_string();
                            seen.answered.insert(idempotency_key, id);
                            answered_count.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => {
                            assert!(
                                killed.load(Ordering::SeqCst),
                                "a send failed before the kill"
                            );
                            seen.unanswered.push(idempotency_key);
                            return seen;
                        }
                    }
                }
                unreachable!()
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered_count.load(Ordering::SeqCst) < ANSWERED_BEFORE_KILL {
        assert!(Instant::now() < deadline, "the sends are too slow");
        std::thread::sleep(Duration::from_millis(1));
    }
    killed.store(true, Ordering::SeqCst);
    daemon.crash();
    let mut round = Round::default();
    for client in clients {
        let seen = client.join().unwrap();
        round.answered.extend(seen.answered);
        round.unanswered.extend(seen.unanswered);
    }
    round
}

/// Every message id the daemon lists, page by page.
#[test]
fn a_send_answered_before_a_kill_survives_it_and_a_repeat_is_stored_once() {
    let Simulated {
        dir: _dir,
        port,
        config,
    } = Simulated::new();
    let key = create_key_cli(&config);
    let http = reqwest::blocking::Client::new();
    let mut daemon = DaemonProcess::start(&config, port);
    // Every send's idempotency key and the id it is stored under.
    let mut stored: HashMap<String, String> = HashMap::new();
    for round in 0..ROUNDS {
        let seen = load_and_kill(daemon, &key, round);
        assert!(!seen.unanswered.is_empty(), "the kill cut off no send");
        daemon = DaemonProcess::start(&config, port);
        for (idempotency_key, id) in &seen.answered {
            let status = http
                .get(format!("{}/api/v1/messages/{id}", daemon.base))
                .bearer_auth(&key)
                .send()
                .unwrap()
                .status();
            assert_eq!(
                status.as_u16(),
                200,
                "round {round}: {idempotency_key} was answered 202 as {id}, then lost"
            );
        }
        stored.extend(seen.answered);
        // The senders whose answer was cut off try again, as a relay would.
        for idempotency_key in &seen.unanswered {
            let response = post_sms(
                &http,
                &daemon.base,
                &key,
                &format!("send {idempotency_key}"),
                Some(idempotency_key),
            )
            .unwrap();
            assert_eq!(response.status().as_u16(), 202);
            let body: serde_json::Value = response.json().unwrap();
            stored.insert(
                idempotency_key.clone(),
                body["id"].as_str().unwrap().to_string(),
            );
        }
    }
    let listed = all_pages(&http, &daemon.base, &key, "/api/v1/messages")
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    let unique: HashSet<&String> = listed.iter().collect();
    assert_eq!(unique.len(), listed.len(), "an id listed twice");
    let expected: HashSet<&String> = stored.values().collect();
    assert_eq!(
        unique, expected,
        "the store holds exactly one message per send, none lost, none repeated"
    );
    assert_eq!(daemon.terminate().code(), Some(0));
}
