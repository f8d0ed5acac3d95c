//! A link whose phone_id is none of the bridge's endpoints (a typo in
//! `relay.phone_id`): its status events wait, and so do pull mode's jobs,
//! left with the relay; both go once the config is put right.

mod common;
mod relay_support;

use std::time::Duration;

use common::{FAST_OUTBOX, TestChannel, create_key};
use phonerelay::relay::REPORTED_RELAY_CURSOR;
use phonerelay::relay::settings::{SCOPE, STATUS_CURSOR};
use phonerelay::store::Scope;
use phonerelay_channel::ChannelKind;
use relay_support::{EmulatedRelay, PHONE_ID, RELAY_KEY};
use serde_json::{Value, json};

/// An operator's typo in `relay.phone_id`, run for a while, then fixed:
/// the sent event of a relay message of the real phone is neither passed
/// over nor lost, and arrives once the link carries that phone.
#[tokio::test]
async fn a_link_phone_id_no_endpoint_has_moves_no_status_cursor() {
    let relay = EmulatedRelay::start().await;
    let good = relay.bridge_config("push", None);
    let typo = good.replace(
        &format!("phone_id = \"{PHONE_ID}\""),
        "phone_id = \"ph1-typo\"",
    );
    assert_ne!(typo, good, "the config names the link's phone_id");
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge = common::start_bridge(&typo, RELAY_KEY, &wa).await;
    let key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;
    let (code, body) = bridge
        .post(
            "/api/v1/messages",
            &key,
            &json!({"phone_id": PHONE_ID, "channel": "wa", "to": "+15551230001",
                    "text": "hi", "source": "alice", "relay_message_id": "r-1"}),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    bridge
        .wait_status(body["id"].as_str().unwrap(), "sent")
        .await;
    // Dozens of the reporter's rounds (every 30 ms) with the event in the
    // log: a cursor that moves past it does so in the first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cursor = bridge
        .store()
        .load_cursor(SCOPE, STATUS_CURSOR)
        .await
        .unwrap();
    assert_eq!(cursor, None, "the status cursor moved");
    assert!(relay.status_events().is_empty());

    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let _bridge = bridge
        .restart_with(&format!("{FAST_OUTBOX}{good}"), vec![wa])
        .await;
    relay
        .wait_for("r-1's sent event", |s| {
            s.status_events
                .iter()
                .any(|e| e["relay_message_id"] == "r-1" && e["status"] == "sent")
        })
        .await;
}

/// Pull mode with a link phone_id no endpoint has: nothing is polled, so
/// no job is rejected to the relay as `unknown_phone_id` (for good, the
/// relay told to stop delivering it) for a mistake of the link's. Once an
/// endpoint carries that phone_id, the job waiting at the relay is
/// committed, sent and acknowledged as accepted.
#[tokio::test]
async fn pull_mode_polls_no_job_for_a_link_phone_id_no_endpoint_has() {
    let relay = EmulatedRelay::start().await;
    let typo = "ph1-typo";
    let config = relay.bridge_config("pull", None).replace(
        &format!("phone_id = \"{PHONE_ID}\""),
        &format!("phone_id = \"{typo}\""),
    );
    relay.with(|s| {
        s.poll_phone_id = Some(typo.into());
        s.jobs
            .push_back(json!({"relay_message_id": "j-1", "phone_id": typo,
            "channel": "wa", "to": "+15551230001", "text": "hi"}));
    });
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge = common::start_bridge(&config, RELAY_KEY, &wa).await;
    // The link beats at its start, then every second: by the second beat
    // it has run for dozens of polls' time (a poll with a job waiting is
    // answered at once).
    relay
        .wait_for("two heartbeats", |s| s.heartbeats.len() >= 2)
        .await;
    relay.with(|s| {
        assert_eq!(s.polls, 0, "polled");
        assert!(s.acks.is_empty(), "acknowledged: {:?}", s.acks);
        assert_eq!(s.jobs.len(), 1);
    });

    // The endpoint renamed to the link's phone_id.
    let renamed = TestChannel::new(ChannelKind::Wa, typo);
    let _bridge = bridge.restart(vec![renamed.clone()]).await;
    relay
        .wait_for("j-1 acknowledged", |s| s.jobs.is_empty())
        .await;
    relay.with(|s| {
        let acks: Vec<_> = s
            .acks
            .iter()
            .flat_map(|a| a["acks"].as_array().unwrap().clone())
            .collect();
        assert_eq!(acks.len(), 1, "{acks:?}");
        assert_eq!(acks[0]["relay_message_id"], "j-1");
        assert_eq!(acks[0]["result"], "accepted", "{acks:?}");
    });
    renamed.wait_sent(1).await;
}

/// A bridge moved to another relay (`relay.url` changed here; a `pair`
/// with another relay alike): the status event of a message the first
/// relay sent, still unreported at the move, is not told to the second,
/// which never knew the message; that of a message accepted after the
/// move is.
#[tokio::test]
async fn after_a_move_to_another_relay_the_old_relay_s_events_are_not_reported() {
    let first = EmulatedRelay::start().await;
    first.with(|s| s.fail_status_times = u32::MAX);
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge = common::start_bridge(&first.bridge_config("push", None), RELAY_KEY, &wa).await;
    let key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;
    let send = |relay_id: &'static str| {
        json!({"phone_id": PHONE_ID, "channel": "wa", "to": "+15551230001",
               "text": "hi", "source": "alice", "relay_message_id": relay_id})
    };
    let (code, body) = bridge.post("/api/v1/messages", &key, &send("r-old")).await;
    assert_eq!(code, 202, "{body}");
    bridge
        .wait_status(body["id"].as_str().unwrap(), "sent")
        .await;
    first
        .wait_for("a status report refused", |s| {
            s.status_events.is_empty() && s.fail_status_times < u32::MAX
        })
        .await;

    let second = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let config = format!("{FAST_OUTBOX}{}", second.bridge_config("push", None));
    let bridge = bridge.restart_with(&config, vec![wa]).await;
    let (code, body) = bridge.post("/api/v1/messages", &key, &send("r-new")).await;
    assert_eq!(code, 202, "{body}");
    bridge
        .wait_status(body["id"].as_str().unwrap(), "sent")
        .await;
    second
        .wait_for("r-new's sent event", |s| {
            s.status_events
                .iter()
                .any(|e| e["relay_message_id"] == "r-new" && e["status"] == "sent")
        })
        .await;
    let told: Vec<Value> = second
        .status_events()
        .into_iter()
        .filter(|e| e["relay_message_id"] == "r-old")
        .collect();
    assert!(
        told.is_empty(),
        "the old relay's event reached the new one: {told:?}"
    );
}

/// `pair` with another relay while the daemon runs: until the daemon reads
/// the new pairing, the old link runs on, and the status events of what
/// the new relay sends (with its bridge key, usable at once) are not told
/// to the old relay; they wait for the link they belong to. (The record
/// `pair` writes is made here by hand, the link being the config's.)
#[tokio::test]
async fn once_paired_elsewhere_the_old_link_tells_its_relay_no_more_events() {
    let relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge = common::start_bridge(&relay.bridge_config("push", None), RELAY_KEY, &wa).await;
    let key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;
    let send = |relay_id: &'static str| {
        json!({"phone_id": PHONE_ID, "channel": "wa", "to": "+15551230001",
               "text": "hi", "relay_message_id": relay_id})
    };
    let told = |relay_id: &'static str| {
        move |s: &relay_support::Recorded| {
            s.status_events
                .iter()
                .any(|e| e["relay_message_id"] == relay_id && e["status"] == "sent")
        }
    };
    let (code, body) = bridge.post("/api/v1/messages", &key, &send("r-1")).await;
    assert_eq!(code, 202, "{body}");
    relay.wait_for("r-1's sent event", told("r-1")).await;

    let store = bridge.store();
    let moved = json!({"url": "http://other-relay.invalid",
                       "after_seq": store.last_outbound_seq().await.unwrap()});
    store
        .save_cursor(SCOPE, REPORTED_RELAY_CURSOR, &moved.to_string())
        .await
        .unwrap();
    let (code, body) = bridge.post("/api/v1/messages", &key, &send("r-2")).await;
    assert_eq!(code, 202, "{body}");
    bridge
        .wait_status(body["id"].as_str().unwrap(), "sent")
        .await;
    // Thirty of the link's status rounds.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let leaked: Vec<Value> = relay
        .status_events()
        .into_iter()
        .filter(|e| e["relay_message_id"] == "r-2")
        .collect();
    assert!(leaked.is_empty(), "told to the old relay: {leaked:?}");

    // Back with this relay: the event was kept, not passed over.
    let back = json!({"url": relay.url(), "after_seq": 0});
    store
        .save_cursor(SCOPE, REPORTED_RELAY_CURSOR, &back.to_string())
        .await
        .unwrap();
    relay.wait_for("r-2's sent event", told("r-2")).await;
}

/// A `relay.url` changed while the daemon was stopped is a move made at
/// the daemon's start: it is recorded before the API takes a send, so a
/// send the new relay pushed before its link started is its own, not
/// taken for the old relay's (its status events passed over).
#[tokio::test]
async fn a_move_of_relay_url_is_recorded_before_the_api_takes_a_send() {
    let first = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge = common::start_bridge(&first.bridge_config("push", None), RELAY_KEY, &wa).await;
    let key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;
    let body = json!({"phone_id": PHONE_ID, "channel": "wa", "to": "+15551230001",
                      "text": "hi", "relay_message_id": "r-old"});
    let (code, accepted) = bridge.post("/api/v1/messages", &key, &body).await;
    assert_eq!(code, 202, "{accepted}");
    first
        .wait_for("the first relay's record", |s| !s.heartbeats.is_empty())
        .await;

    let second = EmulatedRelay::start().await;
    let config = format!("{FAST_OUTBOX}{}", second.bridge_config("push", None));
    let bridge = bridge.restart_with(&config, vec![wa]).await;
    // Read as soon as the daemon is up, before its link may have started.
    let record = bridge
        .store()
        .load_cursor(SCOPE, REPORTED_RELAY_CURSOR)
        .await
        .unwrap()
        .expect("a record");
    let record: Value = serde_json::from_str(&record).unwrap();
    assert_eq!(record["url"], second.url(), "{record}");
}
