//! Reply routing end to end, on the real daemon against the emulated relay:
//! conversations expire after `relay.routing.conversation_ttl_days`,
//! `default_to` takes what belongs to no conversation, e-mail style
//! thread keys from a send's receipt pick the pChat user, and a reply
//! waits for a send to its sender that may be what it answers.

mod common;
mod relay_support;

use std::path::Path;
use std::time::Duration;

use common::test_channel::Step;
use common::{TestChannel, TestDaemon, create_key};
use phonerelay::clock::now_ms;
use phonerelay::store::{RelayMove, Scope, Store};
use phonerelay_channel::{ChannelEvent, ChannelKind, InboundMessage, SendError};
use relay_support::{EmulatedRelay, PHONE_ID, RELAY_KEY};
use serde_json::{Value, json};

const DAY_MS: i64 = 24 * 3600 * 1000;

fn inbound(
    channel: ChannelKind,
    from: &str,
    external_id: &str,
    text: &str,
    reply_to: &[&str],
) -> ChannelEvent {
    ChannelEvent::Inbound(InboundMessage {
        channel,
        phone_id: PHONE_ID.into(),
        from: from.into(),
        text: text.into(),
        subject: (channel == ChannelKind::Email).then(|| "Re: dinner".to_string()),
        attachments: Vec::new(),
        external_id: external_id.into(),
        reply_to: reply_to.iter().map(|k| k.to_string()).collect(),
        received_at_ms: now_ms(),
        meta: Default::default(),
    })
}

/// A send pushed by the relay for pChat user `source`, waited until sent
/// (the conversation is recorded in the same transaction).
async fn send_from_pchat(
    bridge: &TestDaemon,
    key: &str,
    channel: &str,
    to: &str,
    source: &str,
    relay_id: &str,
) -> String {
    let body = json!({"phone_id": PHONE_ID, "channel": channel, "to": to,
        "text": format!("hello from {source}"), "source": source,
        "relay_message_id": relay_id});
    let (code, accepted) = bridge.post("/api/v1/messages", key, &body).await;
    assert_eq!(code, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_string();
    bridge.wait_status(&id, "sent").await;
    id
}

/// The relay's copy of the forwarded message with this text.
async fn forwarded(relay: &EmulatedRelay, text: &str) -> Value {
    relay
        .wait_for(text, |s| s.messages.iter().any(|m| m.body["text"] == text))
        .await;
    relay
        .messages()
        .into_iter()
        .find(|m| m.body["text"] == text)
        .unwrap()
        .body
}

/// Make every recorded conversation and reply key `days` older, as if
/// the clock had moved on: the store has no clock to inject.
fn age_conversations(db: &Path, days: i64) -> (usize, usize) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let by = days * DAY_MS;
    let conversations = conn
        .execute("UPDATE conversations SET last_at = last_at - ?1", [by])
        .unwrap();
    let keys = conn
        .execute(
            "UPDATE conversation_keys SET created_at = created_at - ?1",
            [by],
        )
        .unwrap();
    (conversations, keys)
}

fn stored_conversations(db: &Path) -> (i64, i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let count = |table: &str| -> i64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    (count("conversations"), count("conversation_keys"))
}

/// Dead letters listed by the API, once there are `n`.
async fn wait_dead(bridge: &TestDaemon, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, page) = bridge
            .get("/api/v1/relay/inbound?state=dead", &bridge.admin_key)
            .await;
        assert_eq!(code, 200, "{page}");
        let dead = page["messages"].as_array().unwrap().clone();
        if dead.len() >= n {
            return dead;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} dead letters: {page}",
            dead.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_conversation_older_than_the_ttl_no_longer_routes_replies_to_its_pchat_user() {
    let relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    let key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;
    send_from_pchat(&bridge, &key, "wa", "+15551230001", "alice", "r-1").await;
    // The adapter is told who wrote (an e-mail's From name, say).
    assert_eq!(wa.sent()[0].source.as_deref(), Some("alice"));
    let quoted = TestChannel::external_id(&wa.sent()[0]);

    // 29 days old, inside the 30-day TTL: a quoting reply and a plain one
    // still reach alice.
    // One conversation; two keys: the send's external id and its own id.
    assert_eq!(age_conversations(&bridge.db_path(), 29), (1, 2));
    wa.inject(inbound(
        ChannelKind::Wa,
        "+15551230001",
        "w-1",
        "day 29 quoting",
        &[&quoted],
    ))
    .await
    .unwrap();
    let reply = forwarded(&relay, "day 29 quoting").await;
    assert_eq!(
        (reply["to"].clone(), reply["origin"]["route"].clone()),
        (json!("alice"), json!("reply"))
    );
    wa.inject(inbound(
        ChannelKind::Wa,
        "+15551230001",
        "w-2",
        "day 29 plain",
        &[],
    ))
    .await
    .unwrap();
    let reply = forwarded(&relay, "day 29 plain").await;
    assert_eq!(
        (reply["to"].clone(), reply["origin"]["route"].clone()),
        (json!("alice"), json!("recent"))
    );

    // Two more days: past the TTL, neither the reply key nor the sender
    // finds alice any more; the operator's inbox gets them.
    age_conversations(&bridge.db_path(), 2);
    wa.inject(inbound(
        ChannelKind::Wa,
        "+15551230001",
        "w-3",
        "day 31 quoting",
        &[&quoted],
    ))
    .await
    .unwrap();
    wa.inject(inbound(
        ChannelKind::Wa,
        "+15551230001",
        "w-4",
        "day 31 plain",
        &[],
    ))
    .await
    .unwrap();
    for text in ["day 31 quoting", "day 31 plain"] {
        let reply = forwarded(&relay, text).await;
        assert_eq!(reply["to"], "ops", "{reply}");
        assert_eq!(reply["origin"]["route"], "default", "{reply}");
    }

    // A fresh conversation with the same number routes again.
    send_from_pchat(&bridge, &key, "wa", "+15551230001", "bob", "r-2").await;
    wa.inject(inbound(
        ChannelKind::Wa,
        "+15551230001",
        "w-5",
        "to bob now",
        &[],
    ))
    .await
    .unwrap();
    let reply = forwarded(&relay, "to bob now").await;
    assert_eq!(
        (reply["to"].clone(), reply["origin"]["route"].clone()),
        (json!("bob"), json!("recent"))
    );
}

#[tokio::test]
async fn an_expired_conversation_without_default_to_is_a_no_route_dead_letter_and_is_pruned() {
    let relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge = common::start_bridge(&relay.bridge_config("push", None), RELAY_KEY, &wa).await;
    let key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;
    send_from_pchat(&bridge, &key, "wa", "+15551230001", "alice", "r-1").await;
    let quoted = TestChannel::external_id(&wa.sent()[0]);
    // Control: while fresh it routes.
    wa.inject(inbound(
        ChannelKind::Wa,
        "+15551230001",
        "w-0",
        "fresh",
        &[&quoted],
    ))
    .await
    .unwrap();
    assert_eq!(forwarded(&relay, "fresh").await["to"], "alice");

    assert_eq!(age_conversations(&bridge.db_path(), 31), (1, 2));
    wa.inject(inbound(
        ChannelKind::Wa,
        "+15551230001",
        "w-1",
        "too late",
        &[&quoted],
    ))
    .await
    .unwrap();
    let dead = wait_dead(&bridge, 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["message"]["text"], "too late");
    assert_eq!(dead[0]["error"]["code"], "no_route", "{}", dead[0]);
    assert!(
        !relay
            .messages()
            .iter()
            .any(|m| m.body["text"] == "too late"),
        "an expired conversation was still routed"
    );

    // The prune runs with the retention sweep's first round after a
    // start: the expired rows go.
    assert_eq!(stored_conversations(&bridge.db_path()), (1, 2));
    let bridge = bridge.restart(vec![wa.clone()]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stored_conversations(&bridge.db_path()) != (0, 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expired conversations were never pruned: {:?}",
            stored_conversations(&bridge.db_path())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn default_to_receives_a_reply_that_belongs_to_no_conversation() {
    let relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    let key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;
    send_from_pchat(&bridge, &key, "wa", "+15551230001", "alice", "r-1").await;

    // A stranger, quoting a message id the bridge never sent.
    wa.inject(inbound(
        ChannelKind::Wa,
        "+15559990000",
        "w-1",
        "who is this?",
        &["wamid-unknown"],
    ))
    .await
    .unwrap();
    let reply = forwarded(&relay, "who is this?").await;
    assert_eq!(reply["to"], "ops");
    assert_eq!(reply["origin"]["route"], "default");
    assert_eq!(reply["source"], "wa:+15559990000");
    assert_eq!(reply["origin"]["reply_to"], json!(["wamid-unknown"]));
    // Meanwhile alice's conversation still routes to her.
    wa.inject(inbound(
        ChannelKind::Wa,
        "+15551230001",
        "w-2",
        "for alice",
        &[],
    ))
    .await
    .unwrap();
    assert_eq!(forwarded(&relay, "for alice").await["to"], "alice");
}

#[tokio::test]
async fn an_email_thread_key_from_the_send_receipt_routes_to_its_pchat_user_when_two_wrote() {
    let relay = EmulatedRelay::start().await;
    let email = TestChannel::new(ChannelKind::Email, PHONE_ID);
    // The Message-IDs the e-mail channel reports for the next two sends.
    email.thread_keys(vec![
        vec!["<a1@bridge.test>".into()],
        vec!["<b1@bridge.test>".into()],
    ]);
    let bridge = common::start_bridge(&relay.bridge_config("push", None), RELAY_KEY, &email).await;
    let key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;
    // Alice then Bob write to the same address; Bob is the most recent.
    send_from_pchat(&bridge, &key, "email", "ann@example.com", "alice", "e-1").await;
    send_from_pchat(&bridge, &key, "email", "ann@example.com", "bob", "e-2").await;

    let ann = "Ann <Ann@Example.com>";
    let cases: [(&str, &[&str], &str, &str); 4] = [
        // In-Reply-To names alice's message.
        ("re alice", &["<a1@bridge.test>"], "alice", "reply"),
        // In-Reply-To unknown, References carries alice's.
        (
            "re alice via references",
            &["<elsewhere@mail.test>", "<a1@bridge.test>"],
            "alice",
            "reply",
        ),
        // The first key the bridge knows wins.
        (
            "re bob",
            &["<b1@bridge.test>", "<a1@bridge.test>"],
            "bob",
            "reply",
        ),
        // No reply keys: the most recent conversation.
        ("no thread", &[], "bob", "recent"),
    ];
    for (i, (text, reply_to, _, _)) in cases.iter().enumerate() {
        email
            .inject(inbound(
                ChannelKind::Email,
                ann,
                &format!("<in{i}@mail.test>"),
                text,
                reply_to,
            ))
            .await
            .unwrap();
    }
    for (text, reply_to, to, route) in cases {
        let got = forwarded(&relay, text).await;
        assert_eq!(got["to"], to, "{text}: {got}");
        assert_eq!(got["origin"]["route"], route, "{text}: {got}");
        assert_eq!(got["origin"]["reply_to"], json!(reply_to));
        assert_eq!(got["origin"]["subject"], "Re: dinner");
    }
}

/// A reply from the recipient of a send under way waits for that send's
/// outcome (the send may have gone out before the reply came, and would
/// then be what it answers), whichever way the send spelled the address:
/// alice's send to `Ann@Example.com` holds a reply from
/// `ann@example.com`. Here her send goes out only after the reply came,
/// so once it has, the reply goes to bob, who wrote before.
#[tokio::test]
async fn a_reply_waits_for_a_send_under_way_to_its_sender_however_the_send_spelled_it() {
    let relay = EmulatedRelay::start().await;
    let email = TestChannel::new(ChannelKind::Email, PHONE_ID);
    let bridge = common::start_bridge(&relay.bridge_config("push", None), RELAY_KEY, &email).await;
    let key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;
    send_from_pchat(&bridge, &key, "email", "ann@example.com", "bob", "e-1").await;
    send_from_pchat(&bridge, &key, "email", "cy@example.com", "carol", "e-c").await;

    email.script(vec![common::test_channel::Step::Hang]);
    let body = json!({"phone_id": PHONE_ID, "channel": "email",
        "to": "Ann@Example.com", "text": "hello from alice", "source": "alice",
        "relay_message_id": "e-2"});
    let (code, accepted) = bridge.post("/api/v1/messages", &key, &body).await;
    assert_eq!(code, 202, "{accepted}");
    let alice = accepted["id"].as_str().unwrap().to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while email.calls() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice's send never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (from, id, text) in [
        ("ann@example.com", "<r1@mail.test>", "yes"),
        // Forwarded once the reply was looked at: inbound goes in commit
        // order, a held conversation passed over.
        ("cy@example.com", "<c1@mail.test>", "marker"),
    ] {
        email
            .inject(inbound(ChannelKind::Email, from, id, text, &[]))
            .await
            .unwrap();
    }
    forwarded(&relay, "marker").await;
    assert!(
        !relay.messages().iter().any(|m| m.body["text"] == "yes"),
        "the reply went before the send it may answer had an outcome"
    );
    // Released until it goes: a release before the send waits is lost.
    while email.sent().len() < 3 {
        email.release();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bridge.wait_status(&alice, "sent").await;
    let reply = forwarded(&relay, "yes").await;
    assert_eq!(reply["to"], "bob", "{reply}");
    assert_eq!(reply["origin"]["route"], "recent", "{reply}");
}

/// Alice's send, pushed by the relay, whose first attempt fails after part
/// of it went out (an SMS whose first part the network took before the
/// modem lost it: `+CMS ERROR: 331`, transient), retried `retry_after`
/// later; waited until it is back in the queue. Its id.
async fn send_that_goes_out_in_part(
    bridge: &TestDaemon,
    sms: &TestChannel,
    key: &str,
    retry_after: Duration,
) -> String {
    let mut no_network = SendError::transient("cms_331", "no network service (+CMS ERROR: 331)");
    no_network.retry_after = Some(retry_after);
    sms.script(vec![Step::Fail(no_network)]);
    let body = json!({"phone_id": PHONE_ID, "channel": "sms", "to": "+15551230001",
        "text": "hello from alice, in two parts", "source": "alice",
        "relay_message_id": "r-2"});
    let (code, accepted) = bridge.post("/api/v1/messages", key, &body).await;
    assert_eq!(code, 202, "{accepted}");
    let alice = accepted["id"].as_str().unwrap().to_string();
    bridge
        .wait_message(&alice, |m| m["status"] == "queued" && m["attempts"] == 1)
        .await;
    alice
}

async fn status_of(bridge: &TestDaemon, id: &str) -> Value {
    let (code, message) = bridge
        .get(&format!("/api/v1/messages/{id}"), &bridge.admin_key)
        .await;
    assert_eq!(code, 200, "{message}");
    message["status"].clone()
}

/// Bob wrote to the number yesterday. Alice's SMS to it went out in part
/// and waits for its retry, and the number answers in between: the reply
/// is alice's. It waits for her send's outcome, and is routed by her
/// conversation dated from her first attempt, not from the retry that got
/// the rest out. (It went at once to bob, whose conversation was the
/// latest while alice's send was queued; and held, it would have gone to
/// bob still, her send dating from after the reply.)
#[tokio::test]
async fn a_reply_between_the_attempts_of_a_send_that_went_out_in_part_is_its_senders() {
    let relay = EmulatedRelay::start().await;
    let sms = TestChannel::new(ChannelKind::Sms, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &sms).await;
    let key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;
    send_from_pchat(&bridge, &key, "sms", "+15551230001", "bob", "r-1").await;

    let alice = send_that_goes_out_in_part(&bridge, &sms, &key, Duration::from_secs(3)).await;
    for (from, id, text) in [
        ("+15551230001", "sms:r1", "half a message?"),
        // Forwarded once the reply was looked at (commit order, a held
        // conversation passed over).
        ("+15559990000", "sms:m1", "marker"),
    ] {
        sms.inject(inbound(ChannelKind::Sms, from, id, text, &[]))
            .await
            .unwrap();
    }
    // Committed between the attempts, or this shows nothing.
    assert_eq!(status_of(&bridge, &alice).await, "queued");
    forwarded(&relay, "marker").await;
    let forwarded_early = relay
        .messages()
        .into_iter()
        .find(|m| m.body["text"] == "half a message?");
    // Read after the relay's messages: queued now, it was then too.
    if status_of(&bridge, &alice).await == "queued" {
        assert!(
            forwarded_early.is_none(),
            "the reply went before the send it may answer had an outcome: {:?}",
            forwarded_early.map(|m| m.body)
        );
    }

    bridge.wait_status(&alice, "sent").await;
    let reply = forwarded(&relay, "half a message?").await;
    assert_eq!(
        (reply["to"].clone(), reply["origin"]["route"].clone()),
        (json!("alice"), json!("recent")),
        "{reply}"
    );
}

/// A send that waits for a long retry after part of it went out holds its
/// recipient's replies only `relay.routing.unsettled_wait_seconds`: then
/// whom a reply answers is still unknown, and it goes to `default_to`,
/// never to bob, who wrote before.
#[tokio::test]
async fn a_reply_waits_so_long_for_a_send_that_went_out_in_part_then_goes_to_default() {
    let relay = EmulatedRelay::start().await;
    let sms = TestChannel::new(ChannelKind::Sms, PHONE_ID);
    let config = format!(
        "{}unsettled_wait_seconds = 1\n",
        relay.bridge_config("push", Some("ops"))
    );
    let bridge = common::start_bridge(&config, RELAY_KEY, &sms).await;
    let key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;
    send_from_pchat(&bridge, &key, "sms", "+15551230001", "bob", "r-1").await;

    let alice = send_that_goes_out_in_part(&bridge, &sms, &key, Duration::from_secs(3600)).await;
    sms.inject(inbound(
        ChannelKind::Sms,
        "+15551230001",
        "sms:r1",
        "are you there?",
        &[],
    ))
    .await
    .unwrap();
    let reply = forwarded(&relay, "are you there?").await;
    assert_eq!(
        (reply["to"].clone(), reply["origin"]["route"].clone()),
        (json!("ops"), json!("default")),
        "{reply}"
    );
    assert_eq!(status_of(&bridge, &alice).await, "queued", "no outcome yet");
}

/// A reply routed to `default_to` after `unsettled_wait_seconds`, whose
/// POST was cut short by a stop: after the restart, alice's send has its
/// outcome and routing would now pick alice, but the repeat, under the
/// same Idempotency-Key, carries the body of the first POST (a relay that
/// replays the first answer, or refuses a changed body, would otherwise
/// leave the bridge believing it went to alice).
#[tokio::test]
async fn a_post_cut_short_by_a_stop_is_repeated_with_the_same_body_though_routing_changed() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.black_hole_messages = true);
    let sms = TestChannel::new(ChannelKind::Sms, PHONE_ID);
    // A POST held long enough for the test to stop the bridge under it.
    let config = format!(
        "{}unsettled_wait_seconds = 1\n",
        relay.bridge_config("push", Some("ops")).replace(
            "request_timeout_seconds = 3",
            "request_timeout_seconds = 60"
        )
    );
    let bridge = common::start_bridge(&config, RELAY_KEY, &sms).await;
    let key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;
    send_from_pchat(&bridge, &key, "sms", "+15551230001", "bob", "r-1").await;
    // Alice's retry comes 8 s later: the reply's 1 s wait and its POST end
    // well before it on a loaded machine, and the wait for her outcome
    // below (10 s at most) still sees it.
    let alice = send_that_goes_out_in_part(&bridge, &sms, &key, Duration::from_secs(8)).await;
    sms.inject(inbound(
        ChannelKind::Sms,
        "+15551230001",
        "sms:r1",
        "whose is this?",
        &[],
    ))
    .await
    .unwrap();
    relay
        .wait_for("the reply's POST", |s| s.message_attempts >= 1)
        .await;
    let first = relay.with(|s| s.message_attempt_bodies[0].clone());
    assert_eq!(
        (first["to"].clone(), first["origin"]["route"].clone()),
        (json!("ops"), json!("default")),
        "routed before alice's send had its outcome: {first}"
    );
    // Alice's send gets its outcome while the POST hangs: routing now
    // gives the reply to her.
    bridge.wait_status(&alice, "sent").await;

    // The hung POST stays hung; the next one is answered.
    relay.with(|s| s.black_hole_messages = false);
    let bridge = bridge.restart(vec![sms.clone()]).await;
    relay
        .wait_for("the repeat", |s| s.messages.len() == 1)
        .await;
    let bodies = relay.with(|s| s.message_attempt_bodies.clone());
    assert!(bodies.len() >= 2, "{bodies:?}");
    for body in &bodies[1..] {
        assert_eq!(body, &first, "a repeat carried another body");
    }
    let link = bridge
        .wait_link("nothing pending", |l| l["inbound_pending"] == 0)
        .await;
    assert_eq!(link["inbound_dead"], 0, "{link}");
}

/// The bridge's config part once moved to `relay` (`relay.url` changed).
fn moved_to(relay: &EmulatedRelay) -> String {
    format!(
        "{}{}",
        common::FAST_OUTBOX,
        relay.bridge_config("push", Some("ops"))
    )
}

/// The pending inbound with `text`, once it was routed and tried (its
/// route recorded with the failed attempt).
async fn wait_routed_pending(bridge: &TestDaemon, text: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, page) = bridge
            .get("/api/v1/relay/inbound?state=pending", &bridge.admin_key)
            .await;
        assert_eq!(code, 200, "{page}");
        let routed = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["message"]["text"] == text && !m["to"].is_null())
            .cloned();
        if let Some(routed) = routed {
            return routed;
        }
        assert!(tokio::time::Instant::now() < deadline, "not routed: {page}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The bridge moved to another relay (`relay.url` changed): the pChat
/// users who wrote before are the old relay's, and the same names on the
/// new relay are other people. A reply from a number one of them wrote
/// to goes by default, as does one routed to them that waited (the old
/// relay down) at the move; a send from the new relay's user routes as
/// ever.
#[tokio::test]
async fn after_a_move_to_another_relay_replies_are_not_routed_to_the_old_relays_users() {
    let mut old = EmulatedRelay::start().await;
    let new = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&old.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    let key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;
    send_from_pchat(&bridge, &key, "wa", "+15551230001", "alice", "r-1").await;
    let reply = |id: &str, text: &str| inbound(ChannelKind::Wa, "+15551230001", id, text, &[]);
    wa.inject(reply("w-1", "before the move")).await.unwrap();
    assert_eq!(forwarded(&old, "before the move").await["to"], "alice");

    // The old relay goes away with a reply routed to alice waiting.
    old.down().await;
    wa.inject(reply("w-2", "waiting at the move"))
        .await
        .unwrap();
    let waiting = wait_routed_pending(&bridge, "waiting at the move").await;
    assert_eq!(waiting["to"], "alice", "{waiting}");

    let moved = moved_to(&new);
    let bridge = bridge.restart_with(&moved, vec![wa.clone()]).await;
    let waited = forwarded(&new, "waiting at the move").await;
    assert_eq!(waited["to"], "ops", "{waited}");
    assert_eq!(waited["origin"]["route"], "default", "{waited}");
    wa.inject(reply("w-3", "after the move")).await.unwrap();
    let after = forwarded(&new, "after the move").await;
    assert_eq!(after["to"], "ops", "{after}");
    assert_eq!(after["origin"]["route"], "default", "{after}");

    // The new relay's own user writes: the next reply is theirs.
    send_from_pchat(&bridge, &key, "wa", "+15551230001", "bob", "r-2").await;
    wa.inject(reply("w-4", "for bob")).await.unwrap();
    assert_eq!(forwarded(&new, "for bob").await["to"], "bob");
    assert!(
        !new.messages().iter().any(|m| m.body["to"] == "alice"),
        "{:?}",
        new.message_texts()
    );
}

/// A link still running for the old relay after `pair` moved the bridge
/// wrote, after the move had forgotten the routes of what waits, a route
/// to the old relay's user again (the POST to the old relay failed, and
/// the retry was recorded with its route). The new link does not reuse a
/// route kept with a body made for another relay: it routes afresh.
#[tokio::test]
async fn a_route_written_for_the_old_relay_after_the_move_is_not_reused() {
    let mut old = EmulatedRelay::start().await;
    let new = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let mut bridge =
        common::start_bridge(&old.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    let key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;
    send_from_pchat(&bridge, &key, "wa", "+15551230001", "alice", "r-1").await;
    old.down().await;
    wa.inject(inbound(
        ChannelKind::Wa,
        "+15551230001",
        "w-1",
        "caught in the move",
        &[],
    ))
    .await
    .unwrap();
    let waiting = wait_routed_pending(&bridge, "caught in the move").await;
    assert_eq!(waiting["to"], "alice", "{waiting}");
    let id = waiting["message"]["id"].as_str().unwrap().to_string();
    bridge.stop().await;

    // `pair` records the move (and forgets the route); the old link then
    // records its failed POST's retry with alice's route again.
    let db = bridge.db_path();
    let store = common::open_store(&db);
    let moved = RelayMove {
        cursor: phonerelay::relay::reported_relay::CURSOR.into(),
        url: new.url(),
    };
    store
        .record_relay_move(phonerelay::relay::settings::SCOPE, moved)
        .await
        .unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rewritten = conn
        .execute(
            "UPDATE inbound SET relay_to = 'alice', relay_route = 'recent' WHERE id = ?1",
            [&id],
        )
        .unwrap();
    assert_eq!(rewritten, 1);
    drop(conn);

    let moved = moved_to(&new);
    let _bridge = bridge.restart_with(&moved, vec![wa.clone()]).await;
    let sent = forwarded(&new, "caught in the move").await;
    assert_eq!(sent["to"], "ops", "{sent}");
    assert_eq!(sent["origin"]["route"], "default", "{sent}");
}
