//! `/webhooks/{channel}`: one callback URL for the endpoints of a channel
//! that share it (a WhatsApp app's numbers), each taking its own events.

mod common;

use common::*;
use phonerelay_channel::ChannelKind;
use serde_json::{Value, json};

/// Two numbers of one app, and a third number of another app.
async fn start() -> (TestDaemon, [std::sync::Arc<TestChannel>; 3]) {
    let first = TestChannel::new(ChannelKind::Wa, "wa-1");
    let second = TestChannel::new(ChannelKind::Wa, "wa-2");
    let other_app = TestChannel::new(ChannelKind::Wa, "wa-3");
    first.share_webhook("app-a");
    second.share_webhook("app-a");
    other_app.share_webhook("app-b");
    let d = TestDaemon::start(
        FAST_OUTBOX,
        vec![first.clone(), second.clone(), other_app.clone()],
    )
    .await;
    (d, [first, second, other_app])
}

fn entry(phone_id: &str, id: &str) -> Value {
    json!({"phone_id": phone_id, "from": "+15551230001", "text": format!("reply {id}"), "id": id})
}

async fn post_hook(d: &TestDaemon, app: &str, body: &Value) -> (u16, String) {
    let response = d
        .http
        .post(format!("{}/webhooks/wa", d.base))
        .header("x-test-app", app)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// (phone_id, text) of the inbound messages `pairs` of (phone_id, entry
/// id) stand for, sorted as [`stored`] gives them.
fn expected(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(phone_id, id)| (phone_id.to_string(), format!("reply {id}")))
        .collect()
}

/// The inbound messages stored, as (phone_id, external id), sorted.
async fn stored(d: &TestDaemon) -> Vec<(String, String)> {
    let (code, page) = d.get("/api/v1/inbound", &d.admin_key).await;
    assert_eq!(code, 200, "{page}");
    let mut stored: Vec<_> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["phone_id"].as_str().unwrap().to_string(),
                m["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    stored.sort();
    stored
}

#[tokio::test]
async fn one_callback_carries_the_events_of_several_numbers_each_to_its_own_endpoint() {
    let (d, _) = start().await;
    let body = json!({"entries": [entry("wa-1", "m1"), entry("wa-2", "m2"), entry("wa-2", "m3")]});
    let (status, answer) = post_hook(&d, "app-a", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        stored(&d).await,
        expected(&[("wa-1", "m1"), ("wa-2", "m2"), ("wa-2", "m3")])
    );
    // The other app's number takes only its own app's requests.
    let (status, answer) = post_hook(&d, "app-b", &json!({"entries": [entry("wa-3", "m4")]})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(stored(&d).await.len(), 4);
}

#[tokio::test]
async fn a_request_no_endpoint_takes_is_refused_and_stores_nothing() {
    let (d, _) = start().await;
    // A signature none of the endpoints holds.
    let (status, answer) = post_hook(&d, "app-z", &json!({"entries": [entry("wa-1", "x")]})).await;
    assert_eq!(status, 403, "{answer}");
    let error: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(error["error"]["code"], "webhook_not_taken", "{answer}");
    // The right app, but events of a number no endpoint of it has.
    let (status, answer) = post_hook(&d, "app-a", &json!({"entries": [entry("wa-3", "y")]})).await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(stored(&d).await, []);
}

/// One endpoint failing to commit makes the upstream send the request
/// again; the events the others committed are kept once.
#[tokio::test]
async fn a_failed_part_is_answered_as_a_failure_and_the_repeat_stores_each_event_once() {
    let (d, [_, second, _]) = start().await;
    let body = json!({"entries": [entry("wa-1", "m1"), entry("wa-2", "m2")]});
    second.refuse_webhooks(true);
    let (status, answer) = post_hook(&d, "app-a", &body).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(stored(&d).await, expected(&[("wa-1", "m1")]));
    second.refuse_webhooks(false);
    let (status, answer) = post_hook(&d, "app-a", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        stored(&d).await,
        expected(&[("wa-1", "m1"), ("wa-2", "m2")])
    );
}

/// An endpoint that refuses does not keep the ones after it from taking
/// their events: the first number's refusal is answered, and the second
/// number's event is committed at once, not left to a repeat that the same
/// refusal could answer until the upstream gives up.
#[tokio::test]
async fn a_refusal_by_the_first_endpoint_still_lets_the_others_commit() {
    let (d, [first, _, _]) = start().await;
    let body = json!({"entries": [entry("wa-1", "m1"), entry("wa-2", "m2")]});
    first.refuse_webhooks(true);
    let (status, answer) = post_hook(&d, "app-a", &body).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(stored(&d).await, expected(&[("wa-2", "m2")]));
}

#[tokio::test]
async fn a_channel_without_a_shared_webhook_has_no_such_route() {
    let tg = TestChannel::new(ChannelKind::Tg, "bot-1");
    let d = TestDaemon::start(FAST_OUTBOX, vec![tg]).await;
    for path in ["/webhooks/tg", "/webhooks/wa", "/webhooks/fax"] {
        let response = d
            .http
            .post(format!("{}{path}", d.base))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 404, "{path}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "not_found", "{path}: {error}");
    }
}
