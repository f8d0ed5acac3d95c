//! Inbound forwarding against relays that misbehave: one that redirects,
//! one behind a proxy answering 404 while it restarts, one that never
//! answers while the bridge stops, and one e-mail sender
//! written two ways. The real daemon against the emulated relay.

mod common;
mod relay_support;

use std::time::Duration;

use common::TestChannel;
use phonerelay::clock::now_ms;
use phonerelay::store::Store;
use phonerelay_channel::{ChannelEvent, ChannelKind, InboundMessage};
use relay_support::{EmulatedRelay, PHONE_ID, RELAY_KEY, wa_inbound};

#[tokio::test]
async fn an_inbound_answered_by_a_redirect_is_not_delivered_but_retried_until_the_relay_takes_it() {
    let relay = EmulatedRelay::start().await;
    // The messages path answers 302 to a page that answers 200: followed,
    // the POST would become a GET without body and look taken.
    relay.with(|s| s.redirect_messages = Some(302));
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    wa.inject(wa_inbound("+15551230001", "rd-1", "redirected", &[]))
        .await
        .unwrap();

    let link = bridge
        .wait_link("the redirect", |l| {
            l["last_error"].as_str().is_some_and(|e| e.contains("302"))
        })
        .await;
    let error = link["last_error"].as_str().unwrap();
    assert!(error.contains("/elsewhere"), "no Location: {link}");
    assert!(!error.contains(RELAY_KEY), "{link}");
    // Retried with backoff, never taken, never dead.
    relay
        .wait_for("redirected again", |s| s.message_attempts >= 3)
        .await;
    let (code, link) = bridge.get("/api/v1/relay", &bridge.admin_key).await;
    assert_eq!(code, 200, "{link}");
    assert_eq!(link["inbound_pending"], 1, "{link}");
    assert_eq!(link["inbound_dead"], 0, "{link}");
    // How long it has waited, said beside the count, and as a gauge.
    assert!(link["inbound_oldest_seconds"].is_u64(), "{link}");
    let metrics = bridge.metrics_text().await;
    assert!(
        metrics.contains("phonerelay_relay_inbound_oldest_seconds{phone_id=\"ph1\"}"),
        "{metrics}"
    );
    relay.with(|s| {
        assert!(s.messages.is_empty());
        assert_eq!(s.elsewhere_hits, 0, "the redirect was followed");
    });

    // The relay answers at its address again: delivered, once.
    relay.with(|s| s.redirect_messages = None);
    relay
        .wait_for("the inbound", |s| s.messages.len() == 1)
        .await;
    let link = bridge
        .wait_link("nothing pending, no error", |l| {
            l["inbound_pending"] == 0 && l["last_error"].is_null()
        })
        .await;
    assert!(link.get("inbound_oldest_seconds").is_none(), "{link}");
    assert!(
        bridge
            .metrics_text()
            .await
            .contains("phonerelay_relay_inbound_oldest_seconds{phone_id=\"ph1\"} 0")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.with(|s| {
        assert_eq!(s.message_posts_taken, 1);
        assert_eq!(s.messages[0].body["text"], "redirected");
    });
}

/// A push-mode bridge whose link is up (its first heartbeat taken), and
/// its relay then answering every request with `status`.
async fn linked_bridge_then_relay_failing(
    status: u16,
) -> (
    EmulatedRelay,
    std::sync::Arc<TestChannel>,
    common::TestDaemon,
) {
    linked_bridge_with_then_relay_failing(status, |config| config).await
}

/// As [`linked_bridge_then_relay_failing`], the bridge's config as `edit`
/// makes it.
async fn linked_bridge_with_then_relay_failing(
    status: u16,
    edit: impl FnOnce(String) -> String,
) -> (
    EmulatedRelay,
    std::sync::Arc<TestChannel>,
    common::TestDaemon,
) {
    let relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let config = edit(relay.bridge_config("push", Some("ops")));
    let bridge = common::start_bridge(&config, RELAY_KEY, &wa).await;
    relay
        .wait_for("a first heartbeat", |s| !s.heartbeats.is_empty())
        .await;
    relay.with(|s| s.fail_all = Some(status));
    (relay, wa, bridge)
}

/// A reverse proxy answers 404 while the relay behind it restarts: every
/// message sent meanwhile would get it, so none is made a dead letter.
#[tokio::test]
async fn a_relay_answering_404_while_it_restarts_holds_the_inbound_until_it_is_back() {
    let (relay, wa, bridge) = linked_bridge_then_relay_failing(404).await;
    for (id, text) in [("nf-1", "during the restart"), ("nf-2", "and another")] {
        wa.inject(wa_inbound("+15551230001", id, text, &[]))
            .await
            .unwrap();
    }
    relay
        .wait_for("refused twice", |s| {
            s.refused.iter().filter(|r| **r == "messages").count() >= 2
        })
        .await;
    let (code, link) = bridge.get("/api/v1/relay", &bridge.admin_key).await;
    assert_eq!(code, 200, "{link}");
    assert_eq!(link["inbound_dead"], 0, "{link}");
    assert_eq!(link["inbound_pending"], 2, "{link}");
    assert!(
        link["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("404")),
        "{link}"
    );

    relay.with(|s| s.fail_all = None);
    relay
        .wait_for("both inbound", |s| s.messages.len() == 2)
        .await;
    let texts = relay.message_texts();
    assert_eq!(texts, ["during the restart", "and another"]);
    bridge
        .wait_link("nothing pending or dead", |l| {
            l["inbound_pending"] == 0 && l["inbound_dead"] == 0
        })
        .await;
}

/// A message that failed while the relay was down waits its backoff, a
/// wall-clock due time; the clock then steps back an hour (NTP). Once the
/// relay is back the message is due at once, not an hour later, and the
/// messages committed after it do not overtake it.
#[tokio::test]
async fn a_clock_step_back_does_not_hold_a_message_in_backoff_behind_later_ones() {
    step_back_keeps_the_order(|config| config, 3_600_000).await;
}

/// As above, a step back of five seconds with `retry_max_ms` a minute: a
/// due time that far ahead may be a backoff's, so it was left waiting,
/// and the other sender's message went first once the relay was back.
/// The message that set the link's wait is due when the wait ends.
#[tokio::test]
async fn a_clock_step_back_within_the_longest_backoff_keeps_the_order() {
    let longer = |config: String| config.replace("retry_max_ms = 250", "retry_max_ms = 60000");
    step_back_keeps_the_order(longer, 5_000).await;
}

/// Two messages of two senders, the first refused (503) while the relay is
/// down, its due time then moved `step_ms` ahead as a clock stepped back
/// would; once the relay is back both arrive, in commit order.
async fn step_back_keeps_the_order(edit: impl FnOnce(String) -> String, step_ms: i64) {
    let (relay, wa, bridge) = linked_bridge_with_then_relay_failing(503, edit).await;
    wa.inject(wa_inbound("+15551230001", "step-1", "first", &[]))
        .await
        .unwrap();
    relay
        .wait_for("the first refused", |s| s.refused.contains(&"messages"))
        .await;
    wa.inject(wa_inbound("+15551230002", "step-2", "second", &[]))
        .await
        .unwrap();
    // The step back: the first message's due time is now `step_ms` ahead.
    let db = rusqlite::Connection::open(bridge.db_path()).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute(
        "UPDATE inbound SET relay_next_at = relay_next_at + ?1 WHERE external_id = 'step-1'",
        [step_ms],
    )
    .unwrap();

    relay.with(|s| s.fail_all = None);
    relay
        .wait_for("both inbound", |s| s.messages.len() == 2)
        .await;
    let texts = relay.message_texts();
    assert_eq!(texts, ["first", "second"]);
}

/// While one conversation waits a long backoff, the forwarder sleeps
/// until it is due rather than reading every pending message each second;
/// a dead letter retried by hand meanwhile wakes it, and goes at once.
#[tokio::test]
async fn a_manual_retry_goes_at_once_while_another_conversation_waits_its_backoff() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| {
        s.hold_marked = Some(408);
        s.reject_marked = true;
    });
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let config = relay
        .bridge_config("push", Some("ops"))
        .replace("retry_initial_ms = 40", "retry_initial_ms = 60000")
        .replace("retry_max_ms = 250", "retry_max_ms = 60000");
    let bridge = common::start_bridge(&config, RELAY_KEY, &wa).await;
    wa.inject(wa_inbound("+15551230001", "h-1", "HOLD this", &[]))
        .await
        .unwrap();
    wa.inject(wa_inbound("+15551230002", "r-1", "REJECT me", &[]))
        .await
        .unwrap();
    let link = bridge
        .wait_link("one held, one dead", |l| {
            l["inbound_dead"] == 1 && l["inbound_pending"] == 1
        })
        .await;
    assert_eq!(link["inbound_dead"], 1, "{link}");

    relay.with(|s| s.reject_marked = false);
    let (code, dead) = bridge
        .get("/api/v1/relay/inbound?state=dead", &bridge.admin_key)
        .await;
    assert_eq!(code, 200, "{dead}");
    let id = dead["messages"][0]["message"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, body) = bridge
        .post(
            &format!("/api/v1/inbound/{id}/retry"),
            &bridge.admin_key,
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    // Long before the held one is due (a minute).
    relay
        .wait_for("the retried one", |s| s.messages.len() == 1)
        .await;
    assert_eq!(relay.messages()[0].body["text"], "REJECT me");
}

#[tokio::test]
async fn a_graceful_stop_does_not_wait_for_a_relay_that_never_answers() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.black_hole_messages = true);
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    // A request timeout far longer than a stop may take.
    let config = relay.bridge_config("push", Some("ops")).replace(
        "request_timeout_seconds = 3",
        "request_timeout_seconds = 60",
    );
    assert!(config.contains("request_timeout_seconds = 60"));
    let mut bridge = common::start_bridge(&config, RELAY_KEY, &wa).await;
    wa.inject(wa_inbound("+15551230001", "bh-1", "unanswered", &[]))
        .await
        .unwrap();
    relay
        .wait_for("the POST in flight", |s| s.message_attempts >= 1)
        .await;

    tokio::time::timeout(Duration::from_secs(2), bridge.stop())
        .await
        .expect("the daemon waited for the relay's answer to stop");
    {
        let store = common::open_store(&bridge.db_path());
        let counts = store.relay_inbound_counts().await.unwrap();
        assert_eq!(
            (counts.pending, counts.dead),
            (1, 0),
            "not pending after the stop"
        );
    }
    relay.with(|s| {
        assert!(s.messages.is_empty());
        s.black_hole_messages = false;
    });

    // Started again with the relay answering: delivered, once.
    let bridge = bridge.restart(vec![wa.clone()]).await;
    relay
        .wait_for("the inbound", |s| s.messages.len() == 1)
        .await;
    bridge
        .wait_link("nothing pending", |l| l["inbound_pending"] == 0)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.with(|s| {
        assert_eq!(s.message_posts_taken, 1);
        assert_eq!(s.messages[0].body["text"], "unanswered");
    });
}

fn email_inbound(from: &str, external_id: &str, text: &str) -> ChannelEvent {
    ChannelEvent::Inbound(InboundMessage {
        channel: ChannelKind::Email,
        phone_id: PHONE_ID.into(),
        from: from.into(),
        text: text.into(),
        subject: Some("dinner".into()),
        attachments: Vec::new(),
        external_id: external_id.into(),
        reply_to: Vec::new(),
        received_at_ms: now_ms(),
        meta: Default::default(),
    })
}

#[tokio::test]
async fn one_email_sender_written_two_ways_is_one_conversation_with_a_bare_source() {
    let relay = EmulatedRelay::start().await;
    // A transient refusal of the first holds back its conversation.
    relay.with(|s| s.hold_marked = Some(408));
    let email = TestChannel::new(ChannelKind::Email, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &email).await;
    email
        .inject(email_inbound(
            "Ann <Ann@Example.COM>",
            "<in1@mail.test>",
            "HOLD first",
        ))
        .await
        .unwrap();
    relay
        .wait_for("the first refused", |s| s.message_attempts >= 1)
        .await;
    email
        .inject(email_inbound(
            "ann@example.com",
            "<in2@mail.test>",
            "second",
        ))
        .await
        .unwrap();
    // Rounds go by, the first retried in each: the second, the same
    // sender, waits behind it.
    let attempts = relay.with(|s| s.message_attempts);
    relay
        .wait_for("the first retried", |s| s.message_attempts >= attempts + 3)
        .await;
    relay.with(|s| assert!(s.messages.is_empty(), "the second jumped the first"));

    relay.with(|s| s.hold_marked = None);
    relay.wait_for("both", |s| s.messages.len() == 2).await;
    bridge
        .wait_link("nothing pending", |l| l["inbound_pending"] == 0)
        .await;
    let got = relay.messages();
    let texts: Vec<&str> = got
        .iter()
        .map(|m| m.body["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["HOLD first", "second"]);
    for m in &got {
        // A reply address, as the docs spell it; `origin.from` keeps what
        // the channel saw.
        assert_eq!(m.body["source"], "email:ann@example.com", "{}", m.body);
    }
    assert_eq!(got[0].body["origin"]["from"], "Ann <Ann@Example.COM>");
    assert_eq!(got[1].body["origin"]["from"], "ann@example.com");
}

/// A WhatsApp message from `from` to the number `phone_id`.
fn wa_inbound_on(phone_id: &str, from: &str, external_id: &str, text: &str) -> ChannelEvent {
    let ChannelEvent::Inbound(mut message) = wa_inbound(from, external_id, text, &[]) else {
        unreachable!("wa_inbound builds an inbound message")
    };
    message.phone_id = phone_id.into();
    ChannelEvent::Inbound(message)
}

/// A bridge with a second WhatsApp number beside the paired one: what
/// arrives on the second is not forwarded (the relay would take it for the
/// paired phone's, and the reply would leave from the wrong number); it is
/// listed under `other_phone`, not pending and not dead.
#[tokio::test]
async fn inbound_on_a_phone_the_link_does_not_carry_is_set_aside() {
    let relay = EmulatedRelay::start().await;
    let paired = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let second = TestChannel::new(ChannelKind::Wa, "ph2");
    let bridge = common::start_bridge_with(
        &relay.bridge_config("push", Some("ops")),
        RELAY_KEY,
        vec![paired.clone(), second.clone()],
    )
    .await;
    second
        .inject(wa_inbound_on(
            "ph2",
            "+15551230002",
            "op-1",
            "to the second number",
        ))
        .await
        .unwrap();
    paired
        .inject(wa_inbound(
            "+15551230001",
            "op-2",
            "to the paired number",
            &[],
        ))
        .await
        .unwrap();

    relay
        .wait_for("the paired phone's", |s| !s.messages.is_empty())
        .await;
    let link = bridge
        .wait_link("nothing pending", |l| l["inbound_pending"] == 0)
        .await;
    assert_eq!(link["inbound_dead"], 0, "{link}");
    let (code, page) = bridge
        .get("/api/v1/relay/inbound?state=other_phone", &bridge.admin_key)
        .await;
    assert_eq!(code, 200, "{page}");
    let aside = page["messages"].as_array().unwrap();
    assert_eq!(aside.len(), 1, "{page}");
    assert_eq!(
        aside[0]["message"]["text"], "to the second number",
        "{page}"
    );
    assert_eq!(aside[0]["message"]["phone_id"], "ph2", "{page}");
    assert_eq!(aside[0]["error"]["code"], "other_phone", "{page}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.with(|s| {
        let texts: Vec<_> = s.messages.iter().map(|m| m.body["text"].clone()).collect();
        assert_eq!(texts, ["to the paired number"], "forwarded");
    });

    // It can be sent on by hand (once the link carries its phone); while
    // the link still carries the first, it is set aside again.
    let id = aside[0]["message"]["id"].as_str().unwrap();
    let (code, retried) = bridge
        .post(
            &format!("/api/v1/inbound/{id}/retry"),
            &bridge.admin_key,
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(code, 200, "{retried}");
    let link = bridge
        .wait_link("set aside again", |l| l["inbound_pending"] == 0)
        .await;
    assert_eq!(link["inbound_dead"], 0, "{link}");
    relay.with(|s| assert_eq!(s.messages.len(), 1));
}

/// A link paired to a phone_id none of the bridge's endpoints has (a
/// pairing or config mistake): nothing is set aside, the inbound waits,
/// pending, for the mistake to be put right.
#[tokio::test]
async fn with_a_link_to_no_endpoint_of_the_bridge_inbound_waits_pending() {
    let relay = EmulatedRelay::start().await;
    let only = TestChannel::new(ChannelKind::Wa, "ph2");
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &only).await;
    only.inject(wa_inbound_on("ph2", "+15551230002", "np-1", "waits"))
        .await
        .unwrap();
    let link = bridge
        .wait_link("the message pending", |l| l["inbound_pending"] == 1)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, page) = bridge
        .get("/api/v1/relay/inbound?state=other_phone", &bridge.admin_key)
        .await;
    assert_eq!(code, 200, "{page}");
    assert_eq!(
        page["messages"].as_array().unwrap().len(),
        0,
        "{page} {link}"
    );
    relay.with(|s| assert!(s.messages.is_empty()));
}

/// One sender with more messages waiting than a page of the forwarder's
/// (500) while the relay refuses it for now: a message from someone else,
/// committed after all of them, still goes.
#[tokio::test]
async fn a_busy_sender_in_backoff_does_not_hold_back_the_others() {
    const HELD: usize = 501;
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.hold_marked = Some(408));
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    for n in 0..HELD {
        wa.inject(wa_inbound(
            "+15551230001",
            &format!("busy-{n}"),
            &format!("HOLD {n}"),
            &[],
        ))
        .await
        .unwrap();
    }
    wa.inject(wa_inbound(
        "+15551230002",
        "other-1",
        "from someone else",
        &[],
    ))
    .await
    .unwrap();
    relay
        .wait_for("the other sender's message", |s| !s.messages.is_empty())
        .await;
    relay.with(|s| {
        assert_eq!(s.messages.len(), 1);
        assert_eq!(s.messages[0].body["text"], "from someone else");
    });
    let (code, link) = bridge.get("/api/v1/relay", &bridge.admin_key).await;
    assert_eq!(code, 200, "{link}");
    assert_eq!(link["inbound_pending"], HELD, "{link}");
}

/// What the channel knows of the sender (a profile name, the chat) is kept
/// with the message, shown by the API and passed to the relay as
/// `origin.meta`; entries the contract does not allow are dropped, the
/// message is not.
#[tokio::test]
async fn the_sender_s_details_go_with_the_message_as_origin_meta() {
    let relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    let ChannelEvent::Inbound(mut message) = wa_inbound("+15551230001", "meta-1", "hi", &[]) else {
        unreachable!()
    };
    message.meta = [
        ("sender_name", "Ann Example".to_string()),
        ("chat_title", "é".repeat(2000)),
        ("Not A Name", "dropped".to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect();
    wa.inject(ChannelEvent::Inbound(message)).await.unwrap();
    relay
        .wait_for("the message", |s| s.messages.len() == 1)
        .await;
    let expected = serde_json::json!({
        "sender_name": "Ann Example",
        "chat_title": "é".repeat(1024),
    });
    relay.with(|s| assert_eq!(s.messages[0].body["origin"]["meta"], expected));
    let (code, page) = bridge.get("/api/v1/inbound", &bridge.admin_key).await;
    assert_eq!(code, 200, "{page}");
    assert_eq!(page["messages"][0]["meta"], expected, "{page}");
    // A message without any has no `meta` at all.
    wa.inject(wa_inbound("+15551230002", "meta-2", "plain", &[]))
        .await
        .unwrap();
    relay
        .wait_for("the second", |s| s.messages.len() == 2)
        .await;
    relay.with(|s| assert!(s.messages[1].body["origin"].get("meta").is_none()));
}

/// A relay (or a proxy before it) that refuses every message with a 400:
/// a few become dead letters, then the queue is held, the rest pending,
/// with the link's error saying why; once the relay takes messages again
/// the rest are delivered.
#[tokio::test]
async fn a_relay_refusing_every_message_holds_the_queue_instead_of_dead_lettering_it() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.hold_marked = Some(400));
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    for i in 0..20 {
        let from = format!("+155512300{i:02}");
        wa.inject(wa_inbound(&from, &format!("h-{i}"), "HOLD me", &[]))
            .await
            .unwrap();
    }
    let link = bridge
        .wait_link("the queue held", |l| {
            l["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("refuses every inbound message"))
        })
        .await;
    // The relay probed again, refused again: the hold lasts, however
    // often it is asked.
    let attempts = relay.with(|s| s.message_attempts);
    relay
        .wait_for("a probe", |s| s.message_attempts >= attempts + 2)
        .await;
    let (code, link_now) = bridge.get("/api/v1/relay", &bridge.admin_key).await;
    assert_eq!(code, 200, "{link_now}");
    let dead = link_now["inbound_dead"].as_u64().unwrap();
    // Three refused alone; the fourth holds the queue, and each round of
    // the hold tries one more, all left pending.
    assert_eq!(dead, 3, "{link_now}");
    assert_eq!(link_now["inbound_pending"], 20 - dead, "{link_now}");
    assert!(
        link["last_error"].as_str().unwrap().contains("400"),
        "{link}"
    );
    // What `phonerelay status` shows.
    let (code, status) = bridge.get("/api/v1/status", &bridge.admin_key).await;
    assert_eq!(code, 200, "{status}");
    let shown = status["relay"]["last_error"].as_str().unwrap_or_default();
    assert!(shown.contains("refuses every inbound message"), "{status}");

    relay.with(|s| s.hold_marked = None);
    relay
        .wait_for("the rest delivered", |s| {
            s.messages.len() as u64 == 20 - dead
        })
        .await;
    bridge
        .wait_link("nothing pending, no error", |l| {
            l["inbound_pending"] == 0 && l["last_error"].is_null()
        })
        .await;
}

/// Four replies to a pChat user the relay no longer knows, each refused
/// on its own (422): the fourth holds the queue, but the next round of the
/// hold tries another sender's message, which the relay takes. The hold
/// ends, and the held one, refused again on its own, is a dead letter.
/// Each round of the hold tried the refused message again, so the hold
/// never ended, and no sender's message reached pChat again.
#[tokio::test]
async fn a_hold_ends_when_the_relay_takes_another_sender_s_message() {
    let relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    for i in 0..4 {
        wa.inject(wa_inbound(
            "+15551230001",
            &format!("gone-{i}"),
            "REJECT me",
            &[],
        ))
        .await
        .unwrap();
    }
    wa.inject(wa_inbound("+15551230002", "fine-1", "fine", &[]))
        .await
        .unwrap();
    relay
        .wait_for("the other sender's message", |s| {
            s.messages.iter().any(|m| m.body["text"] == "fine")
        })
        .await;
    let link = bridge
        .wait_link("every refused one a dead letter, the hold over", |l| {
            l["inbound_dead"] == 4 && l["inbound_pending"] == 0 && l["last_error"].is_null()
        })
        .await;
    assert_eq!(relay.messages().len(), 1, "{link}");
}

/// The refusals in a row outlive a restart of the link (a relay outage
/// that ends in a restart, a SIGHUP, a package upgrade): a relay that
/// refuses every message has the queue held at the fourth refusal in a
/// row, not at the fourth after each restart, which would make three more
/// dead letters every time.
#[tokio::test]
async fn refusals_in_a_row_before_a_restart_count_toward_the_hold_after_it() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.hold_marked = Some(400));
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    let inject = |i: u32| {
        let wa = wa.clone();
        async move {
            let from = format!("+155512300{i:02}");
            wa.inject(wa_inbound(&from, &format!("rr-{i}"), "HOLD me", &[]))
                .await
                .unwrap();
        }
    };
    inject(0).await;
    inject(1).await;
    bridge
        .wait_link("two dead letters", |l| l["inbound_dead"] == 2)
        .await;

    let bridge = bridge.restart(vec![wa.clone()]).await;
    inject(2).await;
    inject(3).await;
    let link = bridge
        .wait_link("the queue held", |l| {
            l["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("refuses every inbound message"))
        })
        .await;
    assert_eq!(link["inbound_dead"], 3, "{link}");
    assert_eq!(link["inbound_pending"], 1, "{link}");
}

/// A hold outlives a restart in what the status shows, not only in the
/// count: the link's first answered request after the start (a
/// heartbeat) cleared the stored error, and until the next refusal the
/// status showed no hold while the queue still waited on the relay.
#[tokio::test]
async fn a_hold_from_before_a_restart_shows_at_once_after_it() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.hold_marked = Some(400));
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    for i in 0..4 {
        let from = format!("+155512300{i:02}");
        wa.inject(wa_inbound(&from, &format!("hr-{i}"), "HOLD me", &[]))
            .await
            .unwrap();
    }
    let holds = |l: &serde_json::Value| {
        l["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refuses every inbound message"))
    };
    bridge.wait_link("the queue held", holds).await;

    // After the restart the relay answers heartbeats but never a message:
    // no refusal comes to show the hold again.
    relay.with(|s| s.black_hole_messages = true);
    let bridge = bridge.restart(vec![wa.clone()]).await;
    let heartbeats = relay.with(|s| s.heartbeats.len());
    relay
        .wait_for("heartbeats answered after the restart", |s| {
            s.heartbeats.len() >= heartbeats + 2
        })
        .await;
    let (code, link) = bridge.get("/api/v1/relay", &bridge.admin_key).await;
    assert_eq!(code, 200, "{link}");
    assert!(holds(&link), "{link}");
    assert_eq!(link["inbound_pending"], 1, "{link}");
}

/// A message's tries through an earlier outage, kept across a restart, do
/// not set the wait when the relay fails once more: the link's wait
/// starts again from `retry_initial_ms`. With its 20 tries it was
/// `retry_max_ms` (ten minutes here) for every pending message.
#[tokio::test]
async fn an_earlier_outage_s_tries_do_not_set_the_link_s_wait_in_the_next() {
    let ten_minutes =
        |config: String| config.replace("retry_max_ms = 250", "retry_max_ms = 600000");
    let (relay, wa, bridge) = linked_bridge_with_then_relay_failing(503, ten_minutes).await;
    wa.inject(wa_inbound("+15551230001", "long-1", "through it all", &[]))
        .await
        .unwrap();
    relay
        .wait_for("the message refused", |s| s.refused.contains(&"messages"))
        .await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge = bridge.restart(vec![wa.clone()]).await;
    // Its tries as a long outage leaves them, due now.
    let db = rusqlite::Connection::open(bridge.db_path()).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute(
        "UPDATE inbound SET relay_attempts = 20, relay_next_at = 0 WHERE external_id = 'long-1'",
        [],
    )
    .unwrap();
    let refused_before = relay.with(|s| s.refused.len());
    relay
        .wait_for("one more refusal", |s| s.refused.len() > refused_before)
        .await;
    relay.with(|s| s.fail_all = None);
    relay
        .wait_for("the message, within the test's wait", |s| {
            s.messages.len() == 1
        })
        .await;
}

/// `pair` moved the bridge to another relay while the link to this one
/// runs (the daemon reads the new pairing only at its next settings
/// poll): what arrives meanwhile is the new relay's to forward, not
/// posted to this one. Nothing is lost: it waits, pending (here it goes
/// once the record names this relay again).
#[tokio::test]
async fn a_link_pair_moved_away_from_forwards_no_more_inbound() {
    let relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    wa.inject(wa_inbound("+15551230001", "mv-1", "before the move", &[]))
        .await
        .unwrap();
    relay
        .wait_for("the first message", |s| {
            s.messages
                .iter()
                .any(|m| m.body["text"] == "before the move")
        })
        .await;

    relay_support::record_relay(&*bridge.store(), "https://another-relay.example").await;
    wa.inject(wa_inbound("+15551230001", "mv-2", "after the move", &[]))
        .await
        .unwrap();
    // Past the forwarder's idle poll and the bell of the commit.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(relay.message_texts(), ["before the move"]);

    relay_support::record_relay(&*bridge.store(), &relay.url()).await;
    relay
        .wait_for("the message that waited", |s| {
            s.messages
                .iter()
                .any(|m| m.body["text"] == "after the move")
        })
        .await;
}
