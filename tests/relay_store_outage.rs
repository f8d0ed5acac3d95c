//! The relay link while the store takes no writes (a full disk): what the
//! relay hands over or takes cannot be recorded, so the link must back off
//! rather than ask or tell the relay again at once, and catch up once the
//! store is back.
//!
//! Alone in its test binary: it limits the size of every file the whole
//! process writes (`RLIMIT_FSIZE`), which would break any test running
//! beside it; the tests here take turns.

mod common;
mod relay_support;

use std::time::Duration;

use common::TestChannel;
use common::file_size::WritesRefused;
use phonerelay_channel::ChannelKind;
use relay_support::{EmulatedRelay, PHONE_ID, RELAY_KEY, wa_inbound};
use serde_json::{Value, json};

/// The file size limit is the process's: one test at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_mode_backs_off_while_the_store_cannot_commit_a_job_then_takes_it() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let _bridge = common::start_bridge(&relay.bridge_config("pull", None), RELAY_KEY, &wa).await;
    relay.wait_for("a first poll", |s| s.polls > 0).await;

    let refused = WritesRefused::now();
    relay.with(|s| {
        s.jobs.push_back(
            json!({"relay_message_id": "o-1", "phone_id": PHONE_ID, "channel": "wa",
            "to": "+15551230001", "text": "while the disk is full", "source": "alice"}),
        )
    });
    // The job cannot be committed, so it is left out of the ack and the
    // relay hands it to the next poll at once. The bridge backs off
    // between polls (retry_initial_ms = 40 doubling to retry_max_ms = 250)
    // rather than polling again at once.
    let before = relay.with(|s| s.polls);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let polls = relay.with(|s| s.polls) - before;
    assert!((1..=20).contains(&polls), "{polls} polls in a second");
    relay.with(|s| assert!(s.acks.is_empty(), "{:?}", s.acks));
    assert!(wa.sent().is_empty());

    drop(refused);
    relay
        .wait_for("the job acknowledged", |s| s.jobs.is_empty())
        .await;
    let ack = relay.with(|s| s.acks[0]["acks"][0].clone());
    assert_eq!(ack["relay_message_id"], "o-1");
    assert_eq!(ack["result"], "accepted", "{ack}");
    let sent = wa.wait_sent(1).await;
    assert_eq!(sent[0].text, "while the disk is full");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_the_relay_took_but_the_store_could_not_record_holds_the_others_back() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.fail_all = Some(503));
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    // Three senders: a hold of the first one's conversation alone would
    // let the other two go.
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        wa.inject(wa_inbound(
            &format!("+1555123000{i}"),
            &format!("o-w{i}"),
            text,
            &[],
        ))
        .await
        .unwrap();
    }
    bridge
        .wait_link("three pending", |l| l["inbound_pending"] == 3)
        .await;

    // The relay takes the first one; before it answers, the disk fills:
    // that it was forwarded cannot be recorded. The relay holds its answer
    // until the disk is full, however long that takes.
    relay.with(|s| {
        s.hold_answers = true;
        s.fail_all = None;
    });
    relay
        .wait_for("the first message", |s| s.message_posts_taken >= 1)
        .await;
    let refused = WritesRefused::now();
    relay.with(|s| s.hold_answers = false);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Not counted as forwarded, so it is POSTed again (with backoff) under
    // the same Idempotency-Key: the relay keeps one.
    relay
        .wait_for("the first tried again", |s| s.message_posts_taken >= 2)
        .await;
    relay.with(|s| {
        // The next messages, which could not be recorded either, wait.
        let texts: Vec<&Value> = s.messages.iter().map(|m| &m.body["text"]).collect();
        assert_eq!(texts, ["one"], "went on while nothing could be recorded");
    });

    drop(refused);
    relay.wait_for("all three", |s| s.messages.len() == 3).await;
    let link = bridge
        .wait_link("nothing pending", |l| l["inbound_pending"] == 0)
        .await;
    assert_eq!(link["inbound_dead"], 0, "{link}");
    let got = relay.messages();
    let texts: Vec<&Value> = got.iter().map(|m| &m.body["text"]).collect();
    assert_eq!(texts, ["one", "two", "three"]);
    for m in &got {
        assert_eq!(
            m.idempotency_key.as_deref(),
            m.body["origin"]["inbound_id"].as_str()
        );
    }
}

/// Bob wrote to +X before; alice's send to +X goes out, but the disk is
/// full, so its outcome (and with it her conversation) is not recorded
/// yet. +X's reply, committed as soon as the disk has room again, answers
/// alice, whose message came first: it waits for her send's outcome
/// rather than go to bob, whose conversation was the last recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_waits_for_the_outcome_of_a_send_to_its_sender_the_store_has_not_recorded() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    let key = common::create_key(
        &*bridge.store(),
        vec![phonerelay::store::Scope::Send],
        Some(PHONE_ID),
    )
    .await;
    let push = |to: &str, source: &str, relay_id: &str| {
        json!({"phone_id": PHONE_ID, "channel": "wa", "to": to,
            "text": format!("hello from {source}"), "source": source, "relay_message_id": relay_id})
    };
    let (code, bob) = bridge
        .post(
            "/api/v1/messages",
            &key,
            &push("+15551230001", "bob", "r-bob"),
        )
        .await;
    assert_eq!(code, 202, "{bob}");
    bridge
        .wait_status(bob["id"].as_str().unwrap(), "sent")
        .await;

    // Alice's send waits in the channel until the disk is full, then goes.
    wa.script(vec![common::test_channel::Step::Hang]);
    let (code, alice) = bridge
        .post(
            "/api/v1/messages",
            &key,
            &push("+15551230001", "alice", "r-alice"),
        )
        .await;
    assert_eq!(code, 202, "{alice}");
    while wa.calls() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let refused = WritesRefused::now();
    // Released until it goes: a release before the send waits is lost.
    while wa.sent().len() < 2 {
        wa.release();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The recorder cannot write its outcome, and backs off.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(refused);
    wa.inject(wa_inbound("+15551230001", "w-r", "yes please", &[]))
        .await
        .unwrap();
    relay
        .wait_for("the reply", |s| {
            s.messages.iter().any(|m| m.body["text"] == "yes please")
        })
        .await;
    let reply = relay.with(|s| {
        s.messages
            .iter()
            .find(|m| m.body["text"] == "yes please")
            .unwrap()
            .body
            .clone()
    });
    assert_eq!(reply["to"], "alice", "{reply}");
    bridge
        .wait_status(alice["id"].as_str().unwrap(), "sent")
        .await;
}
