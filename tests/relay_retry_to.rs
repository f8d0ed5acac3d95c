//! A dead letter sent by hand to a pChat address the operator chooses
//! (`POST /api/v1/inbound/{id}/retry` with `{"to"}`, as `phonerelay
//! inbound retry ID --to ADDRESS`), against the emulated relay.

mod common;
mod relay_support;

use common::TestChannel;
use phonerelay_channel::ChannelKind;
use relay_support::{EmulatedRelay, PHONE_ID, RELAY_KEY, wa_inbound};
use serde_json::{Value, json};

/// The dead letters the bridge lists.
async fn dead_letters(bridge: &common::TestDaemon) -> Vec<Value> {
    let (code, dead) = bridge
        .get("/api/v1/relay/inbound?state=dead", &bridge.admin_key)
        .await;
    assert_eq!(code, 200, "{dead}");
    dead["messages"].as_array().unwrap().clone()
}

/// A bad address is refused with the usual error and changes nothing; a
/// retry without one goes to the address the letter had, as before; one
/// with an address goes there, as `origin.route` `manual`, under an
/// Idempotency-Key of its own (the second retry's).
#[tokio::test]
async fn a_dead_letter_retried_with_an_address_goes_there_and_a_bad_one_changes_nothing() {
    let relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    wa.inject(wa_inbound("+15551230001", "w-1", "REJECT me", &[]))
        .await
        .unwrap();
    bridge
        .wait_link("a dead letter", |l| l["inbound_dead"] == 1)
        .await;
    let before = dead_letters(&bridge).await;
    let id = before[0]["message"]["id"].as_str().unwrap().to_string();
    let retry = format!("/api/v1/inbound/{id}/retry");

    for bad in ["not an address!", "", "a/b"] {
        let (code, body) = bridge
            .post(&retry, &bridge.admin_key, &json!({ "to": bad }))
            .await;
        assert_eq!(code, 422, "{bad:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_field", "{body}");
        assert_eq!(body["error"]["field"], "to", "{body}");
    }
    assert_eq!(
        dead_letters(&bridge).await,
        before,
        "a refused retry changed it"
    );
    assert_eq!(relay.with(|s| s.message_attempts), 1, "nothing was sent");

    // No body at all, as clients before `to` send: its address kept.
    let answer = bridge
        .http
        .post(format!("{}{retry}", bridge.base))
        .bearer_auth(&bridge.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    relay
        .wait_for("the plain retry refused again", |s| s.message_attempts == 2)
        .await;
    relay.with(|s| assert_eq!(s.message_attempt_bodies[1]["to"], "ops"));
    bridge
        .wait_link("dead again", |l| l["inbound_dead"] == 1)
        .await;

    relay.with(|s| s.reject_marked = false);
    let (code, body) = bridge
        .post(&retry, &bridge.admin_key, &json!({ "to": "alice" }))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["state"], "pending", "{body}");
    assert_eq!(body["to"], "alice", "{body}");
    assert_eq!(body["route"], "manual", "{body}");
    relay
        .wait_for("the letter at its new address", |s| s.messages.len() == 1)
        .await;
    let delivered = relay.messages()[0].clone();
    assert_eq!(delivered.body["text"], "REJECT me");
    assert_eq!(delivered.body["to"], "alice");
    assert_eq!(delivered.body["origin"]["route"], "manual");
    let key = format!("{id}:retry2");
    assert_eq!(delivered.idempotency_key.as_deref(), Some(key.as_str()));
}

/// The OpenAPI document says the retry takes an optional body whose `to`
/// is a pChat address.
#[tokio::test]
async fn the_openapi_document_describes_the_retry_s_address() {
    let bridge = common::TestDaemon::start("", Vec::new()).await;
    let (code, doc) = bridge.get("/api/v1/openapi.json", "").await;
    assert_eq!(code, 200);
    let post = &doc["paths"]["/api/v1/inbound/{id}/retry"]["post"];
    // Absent is false: the body may be left out.
    assert_ne!(post["requestBody"]["required"], true, "{post}");
    assert!(post["requestBody"].is_object(), "{post}");
    assert!(post["responses"]["422"].is_object(), "{post}");
    let to = &doc["components"]["schemas"]["RetryRequest"]["properties"]["to"];
    assert_eq!(
        to["pattern"],
        phonerelay_channel::address_pattern(ChannelKind::Pchat),
        "{to}"
    );
}

/// A relay that answers a repeat of an Idempotency-Key as it answered
/// the first time: the dead letter it refused, retried by hand once the
/// relay would take it, goes under a key of its own and is delivered,
/// where under its first key the relay refused it again.
#[tokio::test]
async fn a_retried_dead_letter_goes_under_a_key_the_relay_did_not_refuse() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.repeat_refusals = true);
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    wa.inject(wa_inbound("+15551230001", "w-1", "REJECT me", &[]))
        .await
        .unwrap();
    bridge
        .wait_link("a dead letter", |l| l["inbound_dead"] == 1)
        .await;
    let id = dead_letters(&bridge).await[0]["message"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    relay.with(|s| s.reject_marked = false);
    let (code, body) = bridge
        .post(
            &format!("/api/v1/inbound/{id}/retry"),
            &bridge.admin_key,
            &json!({}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    relay
        .wait_for("the retried letter", |s| s.messages.len() == 1)
        .await;
    let delivered = relay.messages()[0].clone();
    assert_eq!(delivered.body["text"], "REJECT me");
    assert_eq!(
        delivered.idempotency_key,
        Some(format!("{id}:retry1")),
        "{delivered:?}"
    );
    bridge
        .wait_link("no dead letter", |l| {
            l["inbound_dead"] == 0 && l["inbound_pending"] == 0
        })
        .await;
}

/// A message that came on another phone than the link's is set aside;
/// sent by hand to an address of the operator's choice, it goes there,
/// through the link, rather than being set aside again at once.
#[tokio::test]
async fn a_message_of_another_phone_retried_with_an_address_goes_there() {
    let relay = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let second = TestChannel::new(ChannelKind::Wa, "ph2");
    let bridge = common::start_bridge_with(
        &relay.bridge_config("push", Some("ops")),
        RELAY_KEY,
        vec![wa.clone(), second.clone()],
    )
    .await;
    let mut event = wa_inbound("+15551230001", "w-2", "to the second phone", &[]);
    if let phonerelay_channel::ChannelEvent::Inbound(m) = &mut event {
        m.phone_id = "ph2".into();
    }
    second.inject(event).await.unwrap();
    let set_aside = "/api/v1/relay/inbound?state=other_phone";
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let id = loop {
        let (code, listed) = bridge.get(set_aside, &bridge.admin_key).await;
        assert_eq!(code, 200, "{listed}");
        if let Some(id) = listed["messages"][0]["message"]["id"].as_str() {
            break id.to_string();
        }
        assert!(tokio::time::Instant::now() < deadline, "never set aside");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };

    let (code, body) = bridge
        .post(
            &format!("/api/v1/inbound/{id}/retry"),
            &bridge.admin_key,
            &json!({ "to": "alice" }),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    relay
        .wait_for("the message at alice", |s| s.messages.len() == 1)
        .await;
    let delivered = relay.messages()[0].clone();
    assert_eq!(delivered.body["to"], "alice");
    assert_eq!(delivered.body["phone_id"], PHONE_ID);
    assert_eq!(delivered.body["origin"]["phone_id"], "ph2");
    assert_eq!(delivered.body["origin"]["route"], "manual");
    let (_, listed) = bridge.get(set_aside, &bridge.admin_key).await;
    assert_eq!(listed["messages"], json!([]), "{listed}");
}
