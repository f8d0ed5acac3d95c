//! The relay link end to end: the real daemon (SQLite, HTTP, dispatcher)
//! with a test channel, against an emulated relay in this process.

mod common;
mod relay_support;
mod support;

use std::time::Duration;

use common::{TestChannel, TestDaemon, create_key};
use phonerelay::clock::now_ms;
use phonerelay::store::Scope;
use phonerelay_channel::{ChannelEvent, ChannelKind, DeliveryStatus, SendError, StatusUpdate};
use relay_support::{EmulatedRelay, PHONE_ID, RELAY_KEY, wa_inbound};
use serde_json::{Value, json};

/// The relay's push: the seed's body plus `source` and `relay_message_id`.
fn push_body(to: &str, text: &str, source: &str, relay_id: &str) -> Value {
    json!({"phone_id": PHONE_ID, "channel": "wa", "to": to, "text": text,
           "source": source, "relay_message_id": relay_id})
}

fn statuses_of(relay: &EmulatedRelay, relay_id: &str) -> Vec<String> {
    relay
        .status_events()
        .iter()
        .filter(|e| e["relay_message_id"] == relay_id)
        .map(|e| e["status"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn push_send_then_reply_reaches_the_right_pchat_user() {
    let relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge = common::start_bridge(&relay.bridge_config("push", None), RELAY_KEY, &wa).await;
    let bridge_key = create_key(
        &*bridge.store(),
        vec![Scope::Send, Scope::Read],
        Some(PHONE_ID),
    )
    .await;

    let (code, first) = bridge
        .post(
            "/api/v1/messages",
            &bridge_key,
            &push_body("+15551230001", "hi Ann", "alice", "r-1"),
        )
        .await;
    assert_eq!(code, 202, "{first}");
    let (code, _) = bridge
        .post(
            "/api/v1/messages",
            &bridge_key,
            &push_body("+15551230002", "hi Bo", "bob", "r-2"),
        )
        .await;
    assert_eq!(code, 202);
    // The relay retries its push: same relay id, same message, nothing new.
    let (code, again) = bridge
        .post(
            "/api/v1/messages",
            &bridge_key,
            &push_body("+15551230001", "hi Ann", "alice", "r-1"),
        )
        .await;
    assert_eq!(code, 202);
    assert_eq!(again["id"], first["id"]);
    // Whatever the repeat's body says now, even what would be refused
    // as a new message: it is the first message.
    let mut changed = push_body("not a number", "", "alice", "r-1");
    changed["channel"] = json!("fax");
    let (code, replayed) = bridge.post("/api/v1/messages", &bridge_key, &changed).await;
    assert_eq!(code, 202, "{replayed}");
    assert_eq!(replayed["id"], first["id"]);

    let sent = wa.wait_sent(2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(wa.sent().len(), 2, "a repeated relay id was sent twice");
    // The link is the paired phone's: a key bound to another sees none.
    let (code, _) = bridge.get("/api/v1/relay", &bridge_key).await;
    assert_eq!(code, 200);
    let elsewhere = create_key(&*bridge.store(), vec![Scope::Read], Some("other-phone")).await;
    let (code, _) = bridge.get("/api/v1/relay", &elsewhere).await;
    assert_eq!(code, 404);
    let to_ann = sent.iter().find(|m| m.to == "+15551230001").unwrap();

    // Ann replies quoting our message (WhatsApp context.message_id), Bo
    // writes without quoting: both go to the pChat user who wrote to them.
    wa.inject(wa_inbound(
        "+15551230001",
        "wamid-a1",
        "hello alice",
        &[TestChannel::external_id(to_ann)],
    ))
    .await
    .unwrap();
    wa.inject(wa_inbound("+15551230002", "wamid-b1", "hello bob", &[]))
        .await
        .unwrap();
    relay
        .wait_for("both replies", |s| s.messages.len() == 2)
        .await;
    let got = relay.messages();
    let ann = got
        .iter()
        .find(|m| m.body["text"] == "hello alice")
        .unwrap();
    assert_eq!(ann.body["channel"], "pchat");
    assert_eq!(ann.body["phone_id"], PHONE_ID);
    assert_eq!(ann.body["to"], "alice");
    assert_eq!(ann.body["source"], "wa:+15551230001");
    assert_eq!(ann.body["origin"]["channel"], "wa");
    assert_eq!(ann.body["origin"]["external_id"], "wamid-a1");
    assert_eq!(ann.body["origin"]["route"], "reply");
    assert!(
        ann.idempotency_key
            .as_deref()
            .is_some_and(|k| !k.is_empty())
    );
    let bo = got.iter().find(|m| m.body["text"] == "hello bob").unwrap();
    assert_eq!(bo.body["to"], "bob");
    assert_eq!(bo.body["origin"]["route"], "recent");

    // Status back, keyed by the relay's id, in order.
    relay
        .wait_for("sent for r-1 and r-2", |s| {
            ["r-1", "r-2"].iter().all(|id| {
                s.status_events
                    .iter()
                    .any(|e| e["relay_message_id"] == *id && e["status"] == "sent")
            })
        })
        .await;
    let ext = TestChannel::external_id(to_ann);
    wa.inject(ChannelEvent::Status(StatusUpdate {
        channel: ChannelKind::Wa,
        phone_id: PHONE_ID.into(),
        external_id: ext.clone(),
        status: DeliveryStatus::Delivered,
        code: None,
        reason: None,
        at_ms: now_ms(),
    }))
    .await
    .unwrap();
    wa.inject(ChannelEvent::Status(StatusUpdate {
        channel: ChannelKind::Wa,
        phone_id: PHONE_ID.into(),
        external_id: ext,
        status: DeliveryStatus::Read,
        code: None,
        reason: None,
        at_ms: now_ms(),
    }))
    .await
    .unwrap();
    relay
        .wait_for("read for r-1", |s| {
            s.status_events
                .iter()
                .any(|e| e["relay_message_id"] == "r-1" && e["status"] == "read")
        })
        .await;
    assert_eq!(statuses_of(&relay, "r-1"), ["sent", "delivered", "read"]);
    let sent_event = relay
        .status_events()
        .into_iter()
        .find(|e| e["relay_message_id"] == "r-1")
        .unwrap();
    assert_eq!(sent_event["message_id"], first["id"]);
    assert_eq!(
        sent_event["external_ids"][0],
        TestChannel::external_id(to_ann)
    );

    // And the bridge tells the relay it is alive, per endpoint.
    relay
        .wait_for("a heartbeat", |s| !s.heartbeats.is_empty())
        .await;
    let beat = relay.with(|s| s.heartbeats[0].clone());
    assert_eq!(beat["phone_id"], PHONE_ID);
    assert_eq!(beat["endpoints"][0]["channel"], "wa");
    assert_eq!(beat["endpoints"][0]["state"], "up");
}

/// A bridge in push mode on `relay` that reads its status log every
/// `status_interval_ms`, and a send key of its phone.
async fn push_bridge(relay: &EmulatedRelay, status_interval_ms: u64) -> (TestDaemon, String) {
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let config = relay.bridge_config("push", Some("ops")).replace(
        "status_interval_ms = 30",
        &format!("status_interval_ms = {status_interval_ms}"),
    );
    let bridge = common::start_bridge(&config, RELAY_KEY, &wa).await;
    let key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;
    (bridge, key)
}

/// Send one push message per `(to, relay id)` through `bridge`, all
/// accepted first, then each waited for until sent; their ids.
async fn send_pushes(bridge: &TestDaemon, key: &str, sends: &[(String, String)]) -> Vec<String> {
    let mut ids = Vec::new();
    for (to, relay_id) in sends {
        let (code, body) = bridge
            .post(
                "/api/v1/messages",
                key,
                &push_body(to, "x", "alice", relay_id),
            )
            .await;
        assert_eq!(code, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        bridge.wait_status(id, "sent").await;
    }
    ids
}

/// `(to, relay id)` pairs for `relay_ids`, each to a number of its own.
fn pushes(relay_ids: &[String]) -> Vec<(String, String)> {
    relay_ids
        .iter()
        .enumerate()
        .map(|(n, id)| (format!("+1555123{n:04}"), id.clone()))
        .collect()
}

/// Until the relay has the `sent` event of `relay_id`.
async fn wait_for_sent(relay: &EmulatedRelay, relay_id: &str) {
    relay
        .wait_for(&format!("{relay_id}'s sent"), |s| {
            s.status_events
                .iter()
                .any(|e| e["relay_message_id"] == relay_id && e["status"] == "sent")
        })
        .await;
}

/// The bridge's metrics once they have every line of `lines` (a metric
/// set when the relay's answer is read, a moment after it arrives), or
/// after 20 s; the test then asserts them.
async fn metrics_with(bridge: &TestDaemon, lines: &[String]) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = bridge.metrics_text().await;
        let all = lines.iter().all(|line| metrics.lines().any(|l| l == line));
        if all || std::time::Instant::now() >= deadline {
            return metrics;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `name{phone_id=…} value`, a relay metric's line.
fn relay_metric(name: &str, value: u64) -> String {
    format!("{name}{{phone_id=\"{PHONE_ID}\"}} {value}")
}

fn assert_lines(metrics: &str, lines: &[String]) {
    for line in lines {
        assert!(metrics.lines().any(|l| l == line), "no {line} in {metrics}");
    }
}

/// The relay refuses a status batch for one event it does not know (its
/// message deleted on its side): only that event is skipped; the others
/// that shared its batch still arrive.
#[tokio::test]
async fn a_status_event_the_relay_refuses_does_not_take_its_batch_with_it() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.refuse_status_for = Some("s-bad".into()));
    // Reads far apart, so both messages' events share one batch.
    let (bridge, bridge_key) = push_bridge(&relay, 1500).await;
    send_pushes(
        &bridge,
        &bridge_key,
        &pushes(&["s-bad".into(), "s-good".into()]),
    )
    .await;
    wait_for_sent(&relay, "s-good").await;
    relay.with(|s| {
        assert!(
            s.status_events
                .iter()
                .all(|e| e["relay_message_id"] != "s-bad"),
            "{:?}",
            s.status_events
        )
    });
}

/// A relay that refuses every status event for a while (a 422 for each,
/// down to single events) refuses them all, not each on its own: none is
/// skipped, and once the relay takes events again every one arrives.
#[tokio::test]
async fn status_events_a_relay_refuses_all_of_are_kept_until_it_takes_them() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.refuse_all_status = true);
    let (bridge, bridge_key) = push_bridge(&relay, 30).await;
    let relay_ids = ["r-1".to_string(), "r-2".to_string()];
    send_pushes(&bridge, &bridge_key, &pushes(&relay_ids)).await;
    // Refused whole, in halves and one by one, more than once.
    relay
        .wait_for("status batches refused again and again", |s| {
            s.status_refusals >= 8
        })
        .await;
    let held = [relay_metric("phonerelay_relay_status_held", 1)];
    assert_lines(&metrics_with(&bridge, &held).await, &held);

    relay.with(|s| s.refuse_all_status = false);
    for relay_id in &relay_ids {
        wait_for_sent(&relay, relay_id).await;
    }
    let moved_on = [
        relay_metric("phonerelay_relay_status_held", 0),
        relay_metric("phonerelay_relay_status_skipped_total", 0),
    ];
    assert_lines(&metrics_with(&bridge, &moved_on).await, &moved_on);
}

/// A relay that refuses each status event, round after round, with no
/// later event to show it takes any: after a dozen rounds of backoff the
/// events are taken as refused on their own and skipped, so the stream is
/// not held back for good. The held gauge stays at 1 while the relay
/// takes none (the next batch is kept one round only), and falls back to
/// 0 once it takes one.
#[tokio::test]
async fn events_refused_round_after_round_are_skipped_in_the_end() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.refuse_all_status = true);
    let (bridge, bridge_key) = push_bridge(&relay, 30).await;
    send_pushes(&bridge, &bridge_key, &pushes(&["r-1".into()])).await;
    let skipped = [
        relay_metric("phonerelay_relay_status_skipped_total", 1),
        relay_metric("phonerelay_relay_status_held", 1),
    ];
    assert_lines(&metrics_with(&bridge, &skipped).await, &skipped);
    // One round: the whole batch, then the one event alone is the batch.
    assert!(relay.with(|s| s.status_refusals) >= 12);
    // A send of the operator's own (no relay id): its events are none of
    // the relay's, and reading them shows nothing of whether it takes any.
    let (code, own) = bridge
        .post(
            "/api/v1/messages",
            &bridge_key,
            &json!({"phone_id": PHONE_ID, "channel": "wa", "to": "+15559870003", "text": "own"}),
        )
        .await;
    assert_eq!(code, 202, "{own}");
    bridge
        .wait_status(own["id"].as_str().unwrap(), "sent")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still_held = [relay_metric("phonerelay_relay_status_held", 1)];
    assert_lines(&bridge.metrics_text().await, &still_held);

    relay.with(|s| s.refuse_all_status = false);
    send_pushes(
        &bridge,
        &bridge_key,
        &[("+15559870002".into(), "r-2".into())],
    )
    .await;
    wait_for_sent(&relay, "r-2").await;
    let moved_on = [
        relay_metric("phonerelay_relay_status_skipped_total", 1),
        relay_metric("phonerelay_relay_status_held", 0),
    ];
    assert_lines(&metrics_with(&bridge, &moved_on).await, &moved_on);
}

/// A relay that refuses every status event is sent a batch in halves
/// down to every single event at the first round of the hold and before
/// the batch is skipped, not at every round between (twice as many
/// requests as events, back to back, each time): at those, once a few
/// events were refused each alone with none taken, the round ends.
#[tokio::test]
async fn a_relay_refusing_every_status_event_is_not_asked_once_per_event_every_round() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.refuse_all_status = true);
    // The reporter looks every 3 s while idle, so the twenty events are
    // one batch at its next look.
    let config = relay
        .bridge_config("push", Some("ops"))
        .replace("status_interval_ms = 30", "status_interval_ms = 3000");
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge = common::start_bridge(&config, RELAY_KEY, &wa).await;
    let key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;
    let relay_ids: Vec<String> = (1..=20).map(|n| format!("r-{n}")).collect();
    send_pushes(&bridge, &key, &pushes(&relay_ids)).await;
    let skipped = [relay_metric("phonerelay_relay_status_skipped_total", 20)];
    assert_lines(&metrics_with(&bridge, &skipped).await, &skipped);
    let batch = relay.with(|s| s.largest_refused_status_batch);
    assert_eq!(batch, 20, "the rounds' batch held every event");
    // Twelve rounds: halved to the end at the first and before the skip
    // (39 requests each), a dozen or so at each of the ten between;
    // halved to the end at every round, 468.
    let asked = relay.with(|s| s.status_refusals);
    assert!(
        asked <= 250,
        "{asked} requests for twelve rounds of 20 events"
    );
}

/// The relay refuses a kept batch that holds a message's `sent` and is
/// back when the events past it go as a probe, one of them that
/// message's `delivered`: the probe leaves it out, so the relay never
/// gets the `delivered` before the `sent`, and it ends at `delivered`.
#[tokio::test]
async fn a_probe_past_a_kept_batch_does_not_send_a_message_s_later_status_first() {
    let relay = EmulatedRelay::start().await;
    // Unavailable while the events pile up behind the first, held in one
    // batch with nothing else.
    relay.with(|s| s.fail_status_times = u32::MAX);
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    let key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;
    let x = send_pushes(&bridge, &key, &pushes(&["x".into()])).await[0].clone();
    relay
        .wait_for("x's sent tried", |s| s.fail_status_times < u32::MAX)
        .await;
    wa.inject(ChannelEvent::Status(StatusUpdate {
        channel: ChannelKind::Wa,
        phone_id: PHONE_ID.into(),
        external_id: format!("ext-{x}"),
        status: DeliveryStatus::Delivered,
        code: None,
        reason: None,
        at_ms: now_ms(),
    }))
    .await
    .unwrap();
    bridge.wait_status(&x, "delivered").await;
    send_pushes(&bridge, &key, &[("+15559870001".into(), "y".into())]).await;

    relay.with(|s| {
        s.fail_status_times = 0;
        s.refuse_status_until_probe = true;
    });
    relay
        .wait_for("every event", |s| s.status_events.len() == 3)
        .await;
    assert_eq!(statuses_of(&relay, "x"), ["sent", "delivered"]);
    assert_eq!(statuses_of(&relay, "y"), ["sent"]);
}

/// A relay that forgot more messages than a batch holds (a database
/// restored on its side) refuses each of their events on its own: a full
/// batch of them is refused whole, and only the events past it, sent as a
/// probe, show the relay takes others. Those are skipped, and the stream
/// goes on; without the probe it stopped at the full batch for good.
#[tokio::test]
async fn a_full_batch_the_relay_refuses_event_by_event_does_not_stop_the_stream() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.refuse_status_prefix = Some("gone-".into()));
    // Reads far apart, so that all the messages' events are there at the
    // first read that finds any, and the forgotten ones fill a batch.
    let (bridge, bridge_key) = push_bridge(&relay, 6000).await;
    let mut relay_ids: Vec<String> = (0..104).map(|n| format!("gone-{n}")).collect();
    relay_ids.push("kept".into());
    send_pushes(&bridge, &bridge_key, &pushes(&relay_ids)).await;
    wait_for_sent(&relay, "kept").await;
    // Each forgotten message's event, skipped and counted.
    let skipped = [relay_metric("phonerelay_relay_status_skipped_total", 104)];
    assert_lines(&metrics_with(&bridge, &skipped).await, &skipped);
    // Told by the probe in the first round (the batch, halved down to
    // single events, twice: about 400 refusals), not by waiting out the
    // rounds of backoff (12 times that).
    let refusals = relay.with(|s| s.status_refusals_of_forgotten);
    assert!(refusals < 1000, "{refusals} refusals");
}

/// The first events of a batch are of messages the relay forgot, the
/// rest of ones it knows, and nothing comes past the batch to probe with:
/// the split given up after the first few refused alone keeps the batch
/// round after round, and before it is skipped each event goes alone
/// once, so the relay gets those it takes and only the forgotten ones are
/// skipped.
#[tokio::test]
async fn a_batch_kept_round_after_round_goes_event_by_event_before_any_is_skipped() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.refuse_status_prefix = Some("gone-".into()));
    // Reads far apart: every event is there at the first read.
    let (bridge, bridge_key) = push_bridge(&relay, 6000).await;
    let gone: Vec<String> = (0..6).map(|n| format!("gone-{n}")).collect();
    send_pushes(&bridge, &bridge_key, &pushes(&gone)).await;
    let kept: Vec<(String, String)> = (0..4)
        .map(|n| (format!("+1555987{n:04}"), format!("kept-{n}")))
        .collect();
    send_pushes(&bridge, &bridge_key, &kept).await;
    for (_, relay_id) in &kept {
        wait_for_sent(&relay, relay_id).await;
    }
    let skipped = [relay_metric("phonerelay_relay_status_skipped_total", 6)];
    assert_lines(&metrics_with(&bridge, &skipped).await, &skipped);
}

/// The first events of a batch are of messages the relay forgot, the
/// rest of ones it knows, and the backoff is a production one (a minute
/// and more between rounds): the first round sends each event alone, so
/// the ones it takes go at once, not after a dozen rounds of backoff.
#[tokio::test]
async fn events_the_relay_takes_behind_forgotten_ones_go_at_the_first_round() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.refuse_status_prefix = Some("gone-".into()));
    let config = relay
        .bridge_config("push", Some("ops"))
        .replace("status_interval_ms = 30", "status_interval_ms = 6000")
        .replace("retry_initial_ms = 40", "retry_initial_ms = 60000")
        .replace("retry_max_ms = 250", "retry_max_ms = 300000");
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge = common::start_bridge(&config, RELAY_KEY, &wa).await;
    let key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;
    let gone: Vec<String> = (0..6).map(|n| format!("gone-{n}")).collect();
    send_pushes(&bridge, &key, &pushes(&gone)).await;
    let kept: Vec<(String, String)> = (0..4)
        .map(|n| (format!("+1555987{n:04}"), format!("kept-{n}")))
        .collect();
    send_pushes(&bridge, &key, &kept).await;
    for (_, relay_id) in &kept {
        wait_for_sent(&relay, relay_id).await;
    }
}

#[tokio::test]
async fn status_callbacks_arrive_in_order_through_relay_failures() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.fail_status_times = 4);
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    wa.script(vec![
        common::test_channel::Step::Ok,
        common::test_channel::Step::Fail(SendError::permanent("wa_131026", "not a WhatsApp user")),
    ]);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    let bridge_key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;
    for (i, to) in ["+15551230001", "+15551230002", "+15551230003"]
        .iter()
        .enumerate()
    {
        let (code, body) = bridge
            .post(
                "/api/v1/messages",
                &bridge_key,
                &push_body(to, "x", "alice", &format!("s-{i}")),
            )
            .await;
        assert_eq!(code, 202, "{body}");
        // One at a time, so the script's answers go to known messages.
        let id = body["id"].as_str().unwrap().to_string();
        bridge
            .wait_message(&id, |m| m["status"] != "queued" && m["status"] != "sending")
            .await;
    }
    relay
        .wait_for("three outcomes", |s| s.status_events.len() >= 3)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = relay.status_events();
    let ids: Vec<i64> = events
        .iter()
        .map(|e| e["event_id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order: {ids:?}");
    let order: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["relay_message_id"].as_str().unwrap().into(),
                e["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("s-0".into(), "sent".into()),
            ("s-1".into(), "failed".into()),
            ("s-2".into(), "sent".into())
        ]
    );
    let failed = &events[1];
    assert_eq!(failed["code"], "wa_131026");
    assert_eq!(failed["reason"], "not a WhatsApp user");
}

#[tokio::test]
async fn pull_mode_sends_a_redelivered_job_once_and_rejects_bad_jobs_with_their_code() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| {
        s.lose_ack_times = 1;
        s.jobs.push_back(
            json!({"relay_message_id": "p-1", "phone_id": PHONE_ID, "channel": "wa",
            "to": "+15551230001", "text": "from the relay", "source": "alice"}),
        );
        s.jobs.push_back(
            json!({"relay_message_id": "p-2", "phone_id": PHONE_ID, "channel": "wa",
            "to": "12345", "text": "bad number"}),
        );
        s.jobs.push_back(
            json!({"relay_message_id": "p-3", "phone_id": PHONE_ID, "channel": "fax",
            "to": "+15551230001", "text": "bad channel"}),
        );
    });
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge = common::start_bridge(&relay.bridge_config("pull", None), RELAY_KEY, &wa).await;

    // The first ack is lost; the relay serves the jobs again; the bridge
    // recognises p-1 and acknowledges it again without a second send.
    relay
        .wait_for("every job acknowledged", |s| {
            s.jobs.is_empty() && s.acks.len() >= 2
        })
        .await;
    wa.wait_sent(1).await;
    relay
        .wait_for("sent status for p-1", |s| {
            s.status_events
                .iter()
                .any(|e| e["relay_message_id"] == "p-1")
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(wa.sent().len(), 1, "the redelivered job was sent twice");
    assert_eq!(wa.sent()[0].text, "from the relay");

    let acks = relay.with(|s| s.acks.clone());
    let find = |n: usize, id: &str| -> Value {
        acks[n]["acks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["relay_message_id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(find(0, "p-1")["result"], "accepted");
    let message_id = find(0, "p-1")["message_id"].clone();
    assert_eq!(find(1, "p-1")["message_id"], message_id);
    assert_eq!(find(1, "p-1")["duplicate"], true);
    let bad_to = find(0, "p-2");
    assert_eq!(bad_to["result"], "rejected");
    assert_eq!(bad_to["error"]["code"], "invalid_field");
    assert_eq!(bad_to["error"]["field"], "to");
    assert_eq!(find(0, "p-3")["error"]["code"], "unknown_channel");

    let (code, message) = bridge
        .get(
            &format!("/api/v1/messages/{}", message_id.as_str().unwrap()),
            &bridge.admin_key,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(message["source"], "alice");
    assert_eq!(statuses_of(&relay, "p-1"), ["sent"]);
}

#[tokio::test]
async fn inbound_waits_while_the_relay_is_down_then_arrives_in_order_once() {
    let mut relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    relay.down().await;

    let senders = ["+15551230001", "+15551230002"];
    for i in 0..6 {
        let from = senders[i % 2];
        wa.inject(wa_inbound(
            from,
            &format!("w-{i}"),
            &format!("msg {i}"),
            &[],
        ))
        .await
        .unwrap();
    }
    // A repeat of a message the channel already handed over changes nothing.
    wa.inject(wa_inbound(senders[0], "w-0", "msg 0", &[]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (code, link) = bridge.get("/api/v1/relay", &bridge.admin_key).await;
    assert_eq!(code, 200, "{link}");
    assert_eq!(link["inbound_pending"], 6);
    assert!(
        link["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot reach")),
        "{link}"
    );
    let metrics = bridge.metrics_text().await;
    for series in [
        format!("phonerelay_relay_up{{phone_id=\"{PHONE_ID}\"}} 0"),
        format!("phonerelay_relay_inbound_pending{{phone_id=\"{PHONE_ID}\"}} 6"),
        format!("phonerelay_relay_inbound_dead{{phone_id=\"{PHONE_ID}\"}} 0"),
    ] {
        assert!(metrics.lines().any(|l| l == series), "{series}: {metrics}");
    }

    relay.up().await;
    relay.wait_for("all six", |s| s.messages.len() == 6).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = relay.messages();
    assert_eq!(got.len(), 6);
    let texts: Vec<String> = got
        .iter()
        .map(|m| m.body["text"].as_str().unwrap().into())
        .collect();
    assert_eq!(
        texts,
        (0..6).map(|i| format!("msg {i}")).collect::<Vec<_>>()
    );
    assert!(
        got.iter()
            .all(|m| m.body["to"] == "ops" && m.body["origin"]["route"] == "default")
    );
    let mut keys: Vec<_> = got
        .iter()
        .map(|m| m.idempotency_key.clone().unwrap())
        .collect();
    keys.dedup();
    assert_eq!(keys.len(), 6);
    let (_, link) = bridge.get("/api/v1/relay", &bridge.admin_key).await;
    assert_eq!(link["inbound_pending"], 0);
    let metrics = bridge.metrics_text().await;
    for series in [
        format!("phonerelay_relay_up{{phone_id=\"{PHONE_ID}\"}} 1"),
        format!("phonerelay_relay_inbound_pending{{phone_id=\"{PHONE_ID}\"}} 0"),
    ] {
        assert!(metrics.lines().any(|l| l == series), "{series}: {metrics}");
    }
}

#[tokio::test]
async fn slow_or_failing_relay_is_retried_with_the_same_idempotency_key() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.fail_all = Some(503));
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let _bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    wa.inject(wa_inbound("+15551230001", "w-1", "first", &[]))
        .await
        .unwrap();
    relay
        .wait_for("a few refused attempts", |s| s.message_attempts >= 3)
        .await;
    // Then slow: the relay keeps the message but answers after the
    // bridge's request timeout (3 s), so the bridge tries again.
    relay.with(|s| {
        s.fail_all = None;
        s.answer_delay_ms = 3_500;
    });
    relay
        .wait_for("the slow answer's repeat", |s| s.message_posts_taken >= 2)
        .await;
    relay.with(|s| s.answer_delay_ms = 0);
    wa.inject(wa_inbound("+15551230001", "w-2", "second", &[]))
        .await
        .unwrap();
    relay.wait_for("both", |s| s.messages.len() == 2).await;
    let got = relay.messages();
    let texts: Vec<&Value> = got.iter().map(|m| &m.body["text"]).collect();
    assert_eq!(texts, ["first", "second"], "the repeat was kept once");
    // Every attempt at the first, refused or slow, under its one key.
    let first_key = got[0].body["origin"]["inbound_id"].as_str().unwrap();
    relay.with(|s| {
        let attempts: Vec<_> = s
            .message_attempt_bodies
            .iter()
            .zip(&s.message_attempt_keys)
            .filter(|(body, _)| body["text"] == "first")
            .map(|(_, key)| key.as_deref())
            .collect();
        assert!(attempts.len() >= 4, "{attempts:?}");
        assert!(
            attempts.iter().all(|k| *k == Some(first_key)),
            "{attempts:?}"
        );
    });
}

#[tokio::test]
async fn refused_and_unroutable_inbound_is_dead_lettered_and_retried_by_hand() {
    let relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge = common::start_bridge(&relay.bridge_config("push", None), RELAY_KEY, &wa).await;
    let bridge_key = create_key(
        &*bridge.store(),
        vec![Scope::Send, Scope::Read],
        Some(PHONE_ID),
    )
    .await;

    // No conversation with this sender and no default_to: no route.
    wa.inject(wa_inbound("+15559990000", "w-x", "who is this", &[]))
        .await
        .unwrap();
    // Someone pChat wrote to replies with text the relay refuses (422).
    let (code, _) = bridge
        .post(
            "/api/v1/messages",
            &bridge_key,
            &push_body("+15551230001", "hi", "alice", "d-1"),
        )
        .await;
    assert_eq!(code, 202);
    wa.wait_sent(1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    wa.inject(wa_inbound("+15551230001", "w-r", "REJECT me", &[]))
        .await
        .unwrap();
    wa.inject(wa_inbound("+15551230001", "w-ok", "fine", &[]))
        .await
        .unwrap();
    relay
        .wait_for("the good one", |s| s.messages.len() == 1)
        .await;

    let (code, status) = bridge.get("/api/v1/status", &bridge.admin_key).await;
    assert_eq!(code, 200);
    assert_eq!(status["relay"]["inbound_dead"], 2, "{status}");
    let (code, dead) = bridge
        .get("/api/v1/relay/inbound?state=dead", &bridge.admin_key)
        .await;
    assert_eq!(code, 200);
    let dead = dead["messages"].as_array().unwrap().clone();
    assert_eq!(dead.len(), 2);
    let refused = dead
        .iter()
        .find(|d| d["message"]["text"] == "REJECT me")
        .unwrap();
    assert_eq!(refused["error"]["code"], "relay_http_422");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no such pChat user")
    );
    let unroutable = dead
        .iter()
        .find(|d| d["message"]["text"] == "who is this")
        .unwrap();
    assert_eq!(unroutable["error"]["code"], "no_route");

    // The relay is fixed; retry by hand. A second retry is refused: it is
    // no longer dead.
    relay.with(|s| s.reject_marked = false);
    let id = refused["message"]["id"].as_str().unwrap();
    // A JSON null is no body, as the document's optional body allows.
    let (code, body) = bridge
        .post(
            &format!("/api/v1/inbound/{id}/retry"),
            &bridge.admin_key,
            &json!(null),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["state"], "pending");
    relay
        .wait_for("the retried one", |s| s.messages.len() == 2)
        .await;
    let retried = relay.messages()[1].clone();
    assert_eq!(retried.body["text"], "REJECT me");
    assert_eq!(retried.body["to"], "alice");
    let key = format!("{id}:retry1");
    assert_eq!(retried.idempotency_key.as_deref(), Some(key.as_str()));
    let (code, body) = bridge
        .post(
            &format!("/api/v1/inbound/{id}/retry"),
            &bridge.admin_key,
            &json!({}),
        )
        .await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["error"]["code"], "not_dead");
    let (code, _) = bridge
        .post("/api/v1/inbound/nope/retry", &bridge.admin_key, &json!({}))
        .await;
    assert_eq!(code, 404);
    let (_, status) = bridge.get("/api/v1/status", &bridge.admin_key).await;
    assert_eq!(status["relay"]["inbound_dead"], 1);
}

#[tokio::test]
async fn a_key_rejected_at_run_time_drops_nothing_and_everything_arrives_once_when_accepted_again()
{
    let relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    let bridge_key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;
    relay
        .wait_for("a first heartbeat", |s| !s.heartbeats.is_empty())
        .await;
    bridge
        .wait_link("the relay reached", |l| {
            l["last_reached"].is_string() && l["key_rejected"] == false
        })
        .await;

    // The relay revokes the key: every request gets 401.
    relay.with(|s| s.fail_all = Some(401));
    let beats_before = relay.with(|s| s.heartbeats.len());
    let (code, body) = bridge
        .post(
            "/api/v1/messages",
            &bridge_key,
            &push_body("+15551230001", "hi", "alice", "k-1"),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    bridge
        .wait_status(body["id"].as_str().unwrap(), "sent")
        .await;
    let senders = ["+15551230001", "+15551230002"];
    for i in 0..4 {
        wa.inject(wa_inbound(
            senders[i % 2],
            &format!("k-w{i}"),
            &format!("held {i}"),
            &[],
        ))
        .await
        .unwrap();
    }
    // Inbound, status and heartbeat are all refused, and retried.
    relay
        .wait_for("messages, status and heartbeats refused, again", |s| {
            ["messages", "status", "heartbeat"]
                .iter()
                .all(|r| s.refused.iter().filter(|x| *x == r).count() >= 2)
        })
        .await;
    let link = bridge
        .wait_link("key_rejected", |l| l["key_rejected"] == true)
        .await;
    assert_eq!(link["inbound_pending"], 4, "{link}");
    assert_eq!(link["inbound_dead"], 0, "{link}");
    assert!(
        link["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("401")),
        "{link}"
    );
    let (code, status) = bridge.get("/api/v1/status", &bridge.admin_key).await;
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["relay"]["key_rejected"], true, "{status}");
    assert_eq!(status["relay"]["inbound_pending"], 4, "{status}");
    assert_eq!(status["relay"]["inbound_dead"], 0, "{status}");
    relay.with(|s| {
        assert!(s.messages.is_empty());
        assert_eq!(s.message_posts_taken, 0);
        assert!(s.status_events.is_empty());
        assert_eq!(s.heartbeats.len(), beats_before);
    });

    // Accepted again (the key renewed on the relay's side).
    relay.with(|s| s.fail_all = None);
    relay
        .wait_for("the held messages, the status and a heartbeat", |s| {
            s.messages.len() == 4
                && s.status_events
                    .iter()
                    .any(|e| e["relay_message_id"] == "k-1")
                && s.heartbeats.len() > beats_before
        })
        .await;
    let link = bridge
        .wait_link("the key accepted again", |l| {
            l["key_rejected"] == false && l["inbound_pending"] == 0
        })
        .await;
    assert!(link["last_error"].is_null(), "{link}");
    // A marker behind them: the forwarder goes in commit order, so once it
    // arrives nothing held back can still be on its way.
    wa.inject(wa_inbound(senders[0], "k-w4", "after", &[]))
        .await
        .unwrap();
    relay
        .wait_for("the marker", |s| s.messages.len() == 5)
        .await;

    let got = relay.messages();
    assert_eq!(
        relay.with(|s| s.message_posts_taken),
        5,
        "a held message was delivered twice"
    );
    for sender in senders {
        let texts: Vec<&str> = got
            .iter()
            .filter(|m| m.body["origin"]["from"] == sender)
            .map(|m| m.body["text"].as_str().unwrap())
            .collect();
        let expected: Vec<String> = (0..4)
            .filter(|i| senders[i % 2] == sender)
            .map(|i| format!("held {i}"))
            .chain((sender == senders[0]).then(|| "after".to_string()))
            .collect();
        assert_eq!(texts, expected, "{sender}: out of order");
    }
    // Alice wrote to the first sender; the other has only default_to.
    for m in &got {
        let to = if m.body["origin"]["from"] == senders[0] {
            "alice"
        } else {
            "ops"
        };
        assert_eq!(m.body["to"], to, "{}", m.body);
    }
    assert_eq!(statuses_of(&relay, "k-1"), ["sent"]);
    let (_, status) = bridge.get("/api/v1/status", &bridge.admin_key).await;
    assert_eq!(status["relay"]["key_rejected"], false, "{status}");
}

#[tokio::test]
async fn a_graceful_stop_sends_a_last_heartbeat_with_stopping_true() {
    let relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let mut bridge = common::start_bridge(&relay.bridge_config("push", None), RELAY_KEY, &wa).await;
    relay
        .wait_for("a running heartbeat", |s| !s.heartbeats.is_empty())
        .await;
    assert!(
        relay.with(|s| s.heartbeats.iter().all(|b| b["stopping"] == false)),
        "stopping before the stop"
    );

    // stop() returns once every task ended: the last beat has been taken.
    bridge.stop().await;
    let beats = relay.with(|s| s.heartbeats.clone());
    let last = beats.last().unwrap();
    assert_eq!(last["stopping"], true, "{beats:?}");
    assert_eq!(
        beats.iter().filter(|b| b["stopping"] == true).count(),
        1,
        "{beats:?}"
    );
    assert_eq!(last["phone_id"], PHONE_ID);
    assert_eq!(last["mode"], "push");
    assert_eq!(last["started_at"], beats[0]["started_at"]);
    assert!(last["at"].as_str().unwrap() >= beats[0]["at"].as_str().unwrap());
    assert_eq!(last["endpoints"][0]["channel"], "wa");
    assert_eq!(last["inbound_pending"], 0);
}

/// A count the store cannot read reaches the relay as unknown (`null`),
/// never as 0: a relay must not show an empty queue it was not told of.
#[tokio::test]
async fn a_heartbeat_says_unknown_for_counts_the_store_cannot_read() {
    let relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge = common::start_bridge(&relay.bridge_config("push", None), RELAY_KEY, &wa).await;
    relay
        .wait_for("a heartbeat with counts", |s| {
            s.heartbeats.last().is_some_and(|b| b["queue_depth"] == 0)
        })
        .await;

    for table in ["outbound", "inbound"] {
        support::store_tables::set_table_hidden(&bridge.db_path(), table, true);
    }
    let seen = relay.with(|s| s.heartbeats.len());
    // A beat built before the tables went may still arrive: look past it.
    let unknown = |s: &relay_support::Recorded| {
        s.heartbeats[seen..]
            .iter()
            .find(|b| b["queue_depth"].is_null())
            .cloned()
    };
    relay
        .wait_for("a heartbeat while hidden", |s| unknown(s).is_some())
        .await;
    for table in ["outbound", "inbound"] {
        support::store_tables::set_table_hidden(&bridge.db_path(), table, false);
    }
    let beat = relay.with(|s| unknown(s)).unwrap();
    for count in ["queue_depth", "inbound_pending", "inbound_dead"] {
        assert!(beat[count].is_null(), "{count}: {beat}");
    }
    assert!(beat["endpoints"][0]["queued"].is_null(), "{beat}");
    assert!(beat["endpoints"][0]["sending"].is_null(), "{beat}");

    relay
        .wait_for("counts again", |s| {
            s.heartbeats.last().is_some_and(|b| {
                b["queue_depth"] == 0
                    && b["inbound_pending"] == 0
                    && b["endpoints"][0]["queued"] == 0
            })
        })
        .await;
}

#[tokio::test]
async fn pull_mode_pauses_between_polls_while_a_job_cannot_be_acknowledged() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| {
        // No relay_message_id: an ack has no way to name it, so the relay
        // hands it to every poll, at once.
        s.jobs
            .push_back(json!({"phone_id": PHONE_ID, "channel": "wa",
            "to": "+15551230001", "text": "no relay id"}));
        s.jobs.push_back(
            json!({"relay_message_id": "n-1", "phone_id": PHONE_ID, "channel": "wa",
            "to": "+15551230001", "text": "fine"}),
        );
    });
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let _bridge = common::start_bridge(&relay.bridge_config("pull", None), RELAY_KEY, &wa).await;

    // The job beside it is taken, acknowledged and sent.
    relay
        .wait_for("n-1 acknowledged", |s| {
            s.jobs.len() == 1 && s.jobs[0]["relay_message_id"].is_null()
        })
        .await;
    wa.wait_sent(1).await;

    // The bridge waits between polls (retry_initial_ms = 40, so 20 to 40
    // ms) rather than polling again at once; but briefly, so that new jobs
    // are not held up. Counted over 3 s, with a floor a loaded machine's
    // slow polls (each answered, its job's ack committed) still reach.
    let before = relay.with(|s| s.polls);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let polls = relay.with(|s| s.polls) - before;
    assert!((4..=180).contains(&polls), "{polls} polls in 3 s");
    assert_eq!(wa.sent().len(), 1);
    assert_eq!(wa.sent()[0].text, "fine");
}

/// The relay refuses the ack of a job (withdrawn on its side) and hands the
/// job out at every poll: the bridge takes it once, and backs off between
/// polls instead of asking, finding it again and being refused in a loop.
#[tokio::test]
async fn pull_mode_backs_off_while_the_relay_refuses_its_acknowledgements() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| {
        s.refuse_acks = Some(409);
        s.jobs.push_back(
            json!({"relay_message_id": "w-1", "phone_id": PHONE_ID, "channel": "wa",
            "to": "+15551230001", "text": "withdrawn"}),
        );
    });
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let _bridge = common::start_bridge(&relay.bridge_config("pull", None), RELAY_KEY, &wa).await;
    wa.wait_sent(1).await;
    relay.wait_for("refused acks", |s| s.acks.len() >= 3).await;
    // Backing off 40 ms doubling to 250 ms: a handful of polls a second.
    let before = relay.with(|s| s.polls);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let polls = relay.with(|s| s.polls) - before;
    assert!((1..=12).contains(&polls), "{polls} polls in a second");
    assert_eq!(wa.sent().len(), 1, "taken once");
}

/// A relay that answers a poll with no jobs at once, instead of holding
/// it open, is not asked again in a tight loop.
#[tokio::test]
async fn pull_mode_does_not_spin_on_a_relay_that_does_not_hold_polls_open() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.short_polls = true);
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let _bridge = common::start_bridge(&relay.bridge_config("pull", None), RELAY_KEY, &wa).await;
    relay.wait_for("a first poll", |s| s.polls > 0).await;
    let before = relay.with(|s| s.polls);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let polls = relay.with(|s| s.polls) - before;
    // At most one every retry_initial_ms (40); at least a few, however
    // loaded the machine.
    assert!((4..=78).contains(&polls), "{polls} polls in 3 s");
}

/// A connection to `bridge`'s store with a trigger of the test's own
/// that refuses to commit relay job `id` (a refusal for good); dropping
/// the trigger through it lets the job commit.
fn store_refusing_job(bridge: &TestDaemon, id: &str) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(bridge.db_path()).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let name = id.replace('-', "");
    db.execute_batch(&format!(
        "CREATE TRIGGER refuse_{name} BEFORE UPDATE OF relay_message_id ON outbound
         WHEN NEW.relay_message_id = '{id}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
    ))
    .unwrap();
    db
}

/// A pull-mode bridge on `config` whose store refuses to commit job o-1
/// (a trigger of the test's own, dropped through the connection returned),
/// and the relay holding o-1 ("first") and o-2 ("second") to one number,
/// then o-3 ("elsewhere") to another.
async fn pull_bridge_refusing_o1(
    relay: &EmulatedRelay,
    wa: &std::sync::Arc<TestChannel>,
    config: &str,
) -> (TestDaemon, rusqlite::Connection) {
    let bridge = common::start_bridge(config, RELAY_KEY, wa).await;
    let db = store_refusing_job(&bridge, "o-1");
    relay.with(|s| {
        for (id, to, text) in [
            ("o-1", "+15551230001", "first"),
            ("o-2", "+15551230001", "second"),
            ("o-3", "+15551230002", "elsewhere"),
        ] {
            s.jobs
                .push_back(json!({"relay_message_id": id, "phone_id": PHONE_ID,
                "channel": "wa", "to": to, "text": text, "source": "alice"}));
        }
    });
    (bridge, db)
}

/// A polled job the store cannot commit (here a trigger of the test's own
/// makes its commit fail) holds back the later jobs to its recipient in
/// the same poll: taken and sent first, one would overtake it. Another
/// recipient's job is taken: one job the store refuses for good must not
/// hold every send back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polled_job_the_store_cannot_commit_holds_back_only_its_recipient_s_later_jobs() {
    let relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let (_bridge, db) =
        pull_bridge_refusing_o1(&relay, &wa, &relay.bridge_config("pull", None)).await;
    // o-3 goes; o-1 cannot be committed, and o-2 waits behind it.
    relay
        .wait_for("o-3 acknowledged and two polls since", |s| {
            s.jobs.len() == 2 && s.polls >= 3
        })
        .await;
    let sent: Vec<String> = wa.sent().into_iter().map(|m| m.text).collect();
    assert_eq!(sent, ["elsewhere"]);
    relay.with(|s| {
        let acked: Vec<&Value> = s
            .acks
            .iter()
            .flat_map(|a| a["acks"].as_array().unwrap())
            .map(|a| &a["relay_message_id"])
            .collect();
        assert!(acked.iter().all(|id| *id == "o-3"), "{acked:?}");
    });

    db.execute_batch("DROP TRIGGER refuse_o1").unwrap();
    relay
        .wait_for("every job acknowledged", |s| s.jobs.is_empty())
        .await;
    let sent: Vec<String> = wa.wait_sent(3).await.into_iter().map(|m| m.text).collect();
    assert_eq!(sent, ["elsewhere", "first", "second"]);
}

/// A job the store refuses for good (the trigger is never dropped), with
/// later jobs to its recipient filling each poll (`poll_max_jobs = 2`):
/// after a few passes it no longer holds its recipient back, so the poll
/// moves on and another recipient's job is taken. The store commits the
/// others, so the refusal is the job's own: it is rejected to the relay
/// with the code the API answers, and the relay stops handing it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polled_job_the_store_refuses_for_good_does_not_hold_every_send_back() {
    let relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let config = relay.bridge_config("pull", None).replace(
        "poll_timeout_seconds = 1\n",
        "poll_timeout_seconds = 1\npoll_max_jobs = 2\n",
    );
    let (_bridge, _db) = pull_bridge_refusing_o1(&relay, &wa, &config).await;
    relay
        .wait_for("every job acknowledged", |s| s.jobs.is_empty())
        .await;
    let mut sent: Vec<String> = wa.wait_sent(2).await.into_iter().map(|m| m.text).collect();
    sent.sort();
    assert_eq!(sent, ["elsewhere", "second"]);
    relay.with(|s| {
        let o1: Vec<&Value> = s
            .acks
            .iter()
            .flat_map(|a| a["acks"].as_array().unwrap())
            .filter(|a| a["relay_message_id"] == "o-1")
            .collect();
        assert_eq!(o1.len(), 1, "{o1:?}");
        assert_eq!(o1[0]["result"], "rejected");
        assert_eq!(o1[0]["error"]["code"], "store_refused");
    });
    assert_eq!(wa.sent().len(), 2, "o-1 is not sent");
}

/// A store that refuses every job (here a trigger refusing all of them)
/// is the store's trouble, not the jobs': however many passes go by, none
/// is rejected to the relay, which keeps them until the store is mended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polled_jobs_a_store_refuses_all_alike_are_never_rejected() {
    let relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge = common::start_bridge(&relay.bridge_config("pull", None), RELAY_KEY, &wa).await;
    let db = rusqlite::Connection::open(bridge.db_path()).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute_batch(
        "CREATE TRIGGER refuse_all BEFORE UPDATE OF relay_message_id ON outbound
         WHEN NEW.relay_message_id IS NOT NULL BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    .unwrap();
    relay.with(|s| {
        s.jobs
            .push_back(json!({"relay_message_id": "o-1", "phone_id": PHONE_ID,
            "channel": "wa", "to": "+15551230001", "text": "first", "source": "alice"}));
    });
    // Well past the ten passes after which a job refused while others
    // commit is rejected.
    relay.wait_for("25 polls", |s| s.polls >= 25).await;
    relay.with(|s| {
        assert!(s.acks.is_empty(), "{:?}", s.acks);
        assert_eq!(s.jobs.len(), 1);
    });
    db.execute_batch("DROP TRIGGER refuse_all").unwrap();
    relay.wait_for("o-1 taken", |s| s.jobs.is_empty()).await;
    let sent: Vec<String> = wa.wait_sent(1).await.into_iter().map(|m| m.text).collect();
    assert_eq!(sent, ["first"]);
}

/// A job committed earlier in the pass that first refused another is not
/// a commit "since" that refusal: o-1 commits, then o-2 (another
/// recipient) is refused, and from then on nothing else comes to commit.
/// However many passes go by, o-2 is not rejected: the store has not
/// shown that it commits others while refusing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_earlier_in_the_pass_of_a_job_s_first_refusal_does_not_make_it_refused_for_good() {
    let relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge = common::start_bridge(&relay.bridge_config("pull", None), RELAY_KEY, &wa).await;
    let db = store_refusing_job(&bridge, "o-2");
    // Both in one poll, o-1 first.
    relay.with(|s| {
        for (id, to, text) in [
            ("o-1", "+15551230001", "first"),
            ("o-2", "+15551230002", "second"),
        ] {
            s.jobs
                .push_back(json!({"relay_message_id": id, "phone_id": PHONE_ID,
                "channel": "wa", "to": to, "text": text, "source": "alice"}));
        }
    });
    // Well past the ten passes after which a job refused while others
    // commit is rejected.
    relay.wait_for("25 polls", |s| s.polls >= 25).await;
    relay.with(|s| {
        let acked: Vec<&Value> = s
            .acks
            .iter()
            .flat_map(|a| a["acks"].as_array().unwrap())
            .collect();
        assert_eq!(acked.len(), 1, "only o-1 is acknowledged: {acked:?}");
        assert_eq!(acked[0]["relay_message_id"], "o-1");
        assert_eq!(acked[0]["result"], "accepted");
        assert_eq!(s.jobs.len(), 1, "o-2 stays with the relay");
    });
    db.execute_batch("DROP TRIGGER refuse_o2").unwrap();
    relay.wait_for("o-2 taken", |s| s.jobs.is_empty()).await;
    let mut sent: Vec<String> = wa.wait_sent(2).await.into_iter().map(|m| m.text).collect();
    sent.sort();
    assert_eq!(sent, ["first", "second"]);
}

/// A relay that answers every ack 200 but goes on handing the same job
/// out (a wrong ack path behind a proxy that answers 200, say): each pass
/// finds only a repeat, and the bridge must not poll again at once.
#[tokio::test]
async fn pull_mode_does_not_spin_on_a_relay_that_hands_back_jobs_it_took() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| {
        s.lose_ack_times = u32::MAX;
        s.jobs
            .push_back(json!({"relay_message_id": "o-1", "phone_id": PHONE_ID,
            "channel": "wa", "to": "+15551230001", "text": "once", "source": "alice"}));
    });
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    // A pass through the test relay takes tens of milliseconds by itself:
    // a floor well above that shows.
    let config = relay
        .bridge_config("pull", None)
        .replace("retry_initial_ms = 40\n", "retry_initial_ms = 400\n")
        .replace("retry_max_ms = 250\n", "retry_max_ms = 1000\n");
    let _bridge = common::start_bridge(&config, RELAY_KEY, &wa).await;
    relay.wait_for("a first ack", |s| !s.acks.is_empty()).await;
    let before = relay.with(|s| s.polls);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let polls = relay.with(|s| s.polls) - before;
    // At most one every retry_initial_ms (400), and one under way.
    assert!((1..=6).contains(&polls), "{polls} polls in two seconds");
    relay.with(|s| {
        let repeats = s
            .acks
            .iter()
            .skip(1)
            .all(|a| a["acks"][0]["duplicate"] == true);
        assert!(repeats, "{:?}", s.acks);
    });
    assert_eq!(wa.wait_sent(1).await.len(), 1, "sent once");
}

#[tokio::test]
async fn a_relay_answering_200_with_a_plain_text_body_has_taken_the_request() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.plain_ok = true);
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    let bridge_key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;

    let (code, body) = bridge
        .post(
            "/api/v1/messages",
            &bridge_key,
            &push_body("+15551230001", "hi", "alice", "t-1"),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    wa.inject(wa_inbound("+15551230002", "t-w1", "plain", &[]))
        .await
        .unwrap();
    relay
        .wait_for("the inbound, the status and a heartbeat", |s| {
            !s.messages.is_empty() && !s.status_events.is_empty() && !s.heartbeats.is_empty()
        })
        .await;
    let link = bridge
        .wait_link("the relay reached, nothing pending", |l| {
            l["last_reached"].is_string() && l["inbound_pending"] == 0
        })
        .await;
    assert!(link["last_error"].is_null(), "{link}");
    // Taken the first time: not POSTed again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.with(|s| assert_eq!(s.message_posts_taken, 1));
    assert_eq!(statuses_of(&relay, "t-1"), ["sent"]);
    let (_, link) = bridge.get("/api/v1/relay", &bridge.admin_key).await;
    assert!(link["last_error"].is_null(), "{link}");
}

#[tokio::test]
async fn a_poll_answered_without_a_jobs_list_is_a_failed_poll() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.plain_ok = true);
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge = common::start_bridge(&relay.bridge_config("pull", None), RELAY_KEY, &wa).await;

    // `200 OK` to a poll says nothing about jobs: the link shows the
    // error and the bridge backs off (retry_initial_ms = 40 doubling to
    // retry_max_ms = 250) rather than polling again at once.
    let link = bridge
        .wait_link("the bad answer", |l| l["last_error"].is_string())
        .await;
    assert!(
        link["last_error"].as_str().unwrap().contains("jobs"),
        "{link}"
    );
    let before = relay.with(|s| s.polls);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let polls = relay.with(|s| s.polls) - before;
    assert!((1..=20).contains(&polls), "{polls} polls in a second");
}

/// A relay (or a proxy before it) that repeats the refused key in its
/// error, and asks for an absurd wait: the key shows nowhere the bridge
/// reports the error (the link's last error), the wait does not overflow
/// (a panic in the link's task), and once the relay takes requests again
/// the held message arrives.
#[tokio::test]
async fn a_refusal_that_echoes_the_key_or_asks_an_absurd_wait_is_met_safely() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| {
        s.fail_all = Some(401);
        s.echo_key = true;
        s.fail_retry_after = Some("18446744073709552".into());
    });
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    wa.inject(wa_inbound("+15551230001", "e-1", "held", &[]))
        .await
        .unwrap();
    let link = bridge
        .wait_link("the key refused", |l| {
            l["key_rejected"] == true && l["last_error"].is_string()
        })
        .await;
    let last_error = link["last_error"].as_str().unwrap();
    assert!(!last_error.contains(RELAY_KEY), "{last_error}");
    assert!(last_error.contains("<hidden>"), "{last_error}");
    relay.with(|s| s.fail_all = None);
    relay
        .wait_for("the held message", |s| s.messages.len() == 1)
        .await;
    let link = bridge
        .wait_link("the link up", |l| l["key_rejected"] == false)
        .await;
    assert_eq!(link["state"], "running", "{link}");
}

/// After an outage, inbound reaches the relay in commit order, also when
/// the bridge restarted during the outage: the restarted forwarder tries
/// the waiting messages in commit order at once, rather than send the
/// conversations never tried ahead of the one in backoff.
#[tokio::test]
async fn a_restart_during_an_outage_keeps_commit_order_once_the_relay_is_back() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.fail_all = Some(503));
    let config = relay
        .bridge_config("push", Some("ops"))
        .replace("retry_initial_ms = 40", "retry_initial_ms = 10000")
        .replace("retry_max_ms = 250", "retry_max_ms = 10000");
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge = common::start_bridge(&config, RELAY_KEY, &wa).await;
    let senders = ["+15551230001", "+15551230002"];
    for i in 0..4 {
        wa.inject(wa_inbound(
            senders[i % 2],
            &format!("o-{i}"),
            &format!("held {i}"),
            &[],
        ))
        .await
        .unwrap();
    }
    // The first is tried and put off for 10 s; the link waits as long.
    relay
        .wait_for("the first refused", |s| s.refused.contains(&"messages"))
        .await;
    relay.with(|s| s.fail_all = None);
    let bridge = bridge.restart(vec![wa.clone()]).await;
    relay.wait_for("all four", |s| s.messages.len() == 4).await;
    let texts: Vec<String> = relay
        .messages()
        .iter()
        .map(|m| m.body["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["held 0", "held 1", "held 2", "held 3"]);
    drop(bridge);
}

/// The counts of inbound messages for the relay cannot be read for a
/// while (here a column is renamed from under the daemon): the link is
/// `unknown` with the reason, no count is given, and the gauges keep
/// their last values instead of falling to 0, which would clear a
/// backlog's alert just then.
#[tokio::test]
async fn counts_that_cannot_be_read_are_unknown_not_zero() {
    let mut relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    relay.down().await;
    for i in 0..2 {
        wa.inject(wa_inbound("+15551230001", &format!("w-{i}"), "hi", &[]))
            .await
            .unwrap();
    }
    let pending = format!("phonerelay_relay_inbound_pending{{phone_id=\"{PHONE_ID}\"}} 2");
    let dead = format!("phonerelay_relay_inbound_dead{{phone_id=\"{PHONE_ID}\"}} 0");
    let metrics = bridge.metrics_text().await;
    for series in [&pending, &dead] {
        assert!(metrics.lines().any(|l| l == series), "{series}: {metrics}");
    }

    let db = bridge.dir.path().join("state").join("phonerelay.sqlite3");
    let rename = |from: &str, to: &str| {
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch(&format!("ALTER TABLE inbound RENAME COLUMN {from} TO {to}"))
            .unwrap()
    };
    rename("relay_state", "relay_state_away");
    let (code, link) = bridge.get("/api/v1/relay", &bridge.admin_key).await;
    assert_eq!(code, 200, "{link}");
    assert_eq!(link["state"], "unknown", "{link}");
    assert!(
        link["reason"]
            .as_str()
            .is_some_and(|r| r.contains("cannot count")),
        "{link}"
    );
    assert!(link.get("inbound_pending").is_none(), "{link}");
    let metrics = bridge.metrics_text().await;
    for series in [&pending, &dead] {
        assert!(metrics.lines().any(|l| l == series), "{series}: {metrics}");
    }
    let (_, status) = bridge.get("/api/v1/status", &bridge.admin_key).await;
    assert_eq!(status["relay"]["state"], "unknown", "{status}");
    assert!(status["relay"].get("inbound_dead").is_none(), "{status}");

    rename("relay_state_away", "relay_state");
    let (_, link) = bridge.get("/api/v1/relay", &bridge.admin_key).await;
    assert_eq!(link["inbound_pending"], 2, "{link}");
    relay.up().await;
}

/// A bridge paired with one relay whose config names another
/// (`relay.url`, with the phone_id too): the link stays off and says why,
/// naming both, and the relay the config names gets nothing, the paired
/// relay's key least of all.
#[tokio::test]
async fn a_config_naming_another_relay_than_the_pairing_s_sends_it_nothing() {
    use phonerelay::relay::settings::{Pairing, key_fingerprint, save_pairing};
    let other = EmulatedRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("relay.key"), RELAY_KEY).unwrap();
    let text = common::config_text(
        &dir,
        &format!(
            "{}{}",
            common::FAST_OUTBOX,
            other.bridge_config("push", None)
        ),
    );
    let state_dir = dir.path().join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    let store = common::open_store(&state_dir.join("phonerelay.sqlite3"));
    let paired = Pairing {
        url: "http://127.0.0.1:9".into(),
        phone_id: PHONE_ID.into(),
        bridge_key_id: "k".into(),
        paired_at_ms: 1,
        key_sha256: Some(key_fingerprint(RELAY_KEY)),
    };
    save_pairing(&store, Some(&paired)).await.unwrap();
    drop(store);
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge = TestDaemon::start_in(dir, text, vec![wa.clone()]).await;
    let link = bridge
        .wait_link("the link off", |l| l["state"] == "not_running")
        .await;
    let reason = link["reason"].as_str().unwrap();
    assert!(reason.contains(&other.url()), "{reason}");
    assert!(reason.contains("http://127.0.0.1:9"), "{reason}");
    // An inbound message waits for the relay, and the one the config
    // names has heard nothing by the time it is committed.
    wa.inject(wa_inbound("+15551230001", "w-1", "hi", &[]))
        .await
        .unwrap();
    bridge
        .wait_link("the message pending", |l| l["inbound_pending"] == 1)
        .await;
    other.with(|s| {
        assert!(s.heartbeats.is_empty() && s.message_attempts == 0 && s.refused.is_empty());
    });
}

/// A relay that answers a beat with 429 and `Retry-After: 3` gets no
/// other beat before those three seconds are over, though the beat comes
/// every second.
#[tokio::test]
async fn a_heartbeat_refused_with_a_wait_is_not_sent_again_before_it() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| {
        s.fail_all = Some(429);
        s.fail_retry_after = Some("3".into());
    });
    let config = relay
        .bridge_config("push", Some("ops"))
        .replace("retry_max_ms = 250", "retry_max_ms = 10000");
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let _bridge = common::start_bridge(&config, RELAY_KEY, &wa).await;
    let beats = || relay.with(|s| s.refused.iter().filter(|r| **r == "heartbeat").count());
    relay
        .wait_for("a beat refused", |s| s.refused.contains(&"heartbeat"))
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(beats(), 1, "beaten again within the wait asked for");
    relay
        .wait_for("the beat after the wait", |s| {
            s.refused.iter().filter(|r| **r == "heartbeat").count() >= 2
        })
        .await;
}
