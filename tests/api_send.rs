//! Accept → commit → dispatch → status, through the real HTTP API, the real
//! SQLite store and a channel living in the test code.

mod common;

use std::sync::Arc;

use common::*;
use phonerelay_channel::{ChannelEvent, ChannelKind, DeliveryStatus, StatusUpdate};
use serde_json::{Value, json};

/// A delivery report or read receipt as an adapter hands it over.
fn report(
    channel: ChannelKind,
    phone_id: &str,
    external_id: String,
    status: DeliveryStatus,
) -> ChannelEvent {
    ChannelEvent::Status(StatusUpdate {
        channel,
        phone_id: phone_id.into(),
        external_id,
        status,
        code: None,
        reason: None,
        // As an SMSC stamps it: whole seconds, so before the moment the
        // send was recorded, most of the time.
        at_ms: phonerelay::clock::now_ms() / 1000 * 1000 - 1000,
    })
}

#[tokio::test]
async fn accepted_message_is_committed_dispatched_and_tracked() {
    let wa = TestChannel::new(ChannelKind::Wa, "phone-1");
    let d = TestDaemon::start(FAST_OUTBOX, vec![wa.clone()]).await;

    // The seed's own curl shape.
    let (code, body) = d
        .post(
            "/api/v1/messages",
            &d.admin_key,
            &send_body(
                "phone-1",
                "wa",
                "+15551230001",
                "Hello from pChat via WhatsApp",
            ),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    // `sending` when the idle endpoint took it at once, which depends on
    // whether the dispatcher's first claim came before it.
    assert!(
        body["status"] == "queued" || body["status"] == "sending",
        "{body}"
    );
    let id = body["id"].as_str().unwrap().to_string();

    let sent = wa.wait_sent(1).await;
    assert_eq!(sent[0].id, id);
    assert_eq!(sent[0].to, "+15551230001");
    assert_eq!(sent[0].text, "Hello from pChat via WhatsApp");
    assert_eq!(sent[0].attempt, 1);

    let message = d.wait_status(&id, "sent").await;
    assert_eq!(message["external_ids"], json!([format!("ext-{id}")]));
    let history = history_statuses(&message);
    assert_eq!(history, ["queued", "sending", "sent"]);

    // A delivery report, then a read receipt, move it forward...
    for status in [DeliveryStatus::Delivered, DeliveryStatus::Read] {
        wa.inject(report(
            ChannelKind::Wa,
            "phone-1",
            format!("ext-{id}"),
            status,
        ))
        .await
        .unwrap();
    }
    d.wait_status(&id, "read").await;
    // The history goes forward in time, even for a report whose own time
    // (an SMSC stamps whole seconds) is before the send was recorded.
    let (_, message) = d.get(&format!("/api/v1/messages/{id}"), &d.admin_key).await;
    let times: Vec<i64> = message["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| phonerelay::clock::parse_rfc3339(h["at"].as_str().unwrap()).unwrap())
        .collect();
    assert!(times.is_sorted(), "{message}");
    // ...and a late "delivered" does not move it back.
    wa.inject(report(
        ChannelKind::Wa,
        "phone-1",
        format!("ext-{id}"),
        DeliveryStatus::Delivered,
    ))
    .await
    .unwrap();
    let (_, message) = d.get(&format!("/api/v1/messages/{id}"), &d.admin_key).await;
    assert_eq!(message["status"], "read");
    assert_eq!(wa.calls(), 1);
}

#[tokio::test]
async fn list_pages_and_filters() {
    let sms = TestChannel::new(ChannelKind::Sms, "modem-1");
    let d = TestDaemon::start(FAST_OUTBOX, vec![sms.clone()]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (code, body) = d
            .post(
                "/api/v1/messages",
                &d.admin_key,
                &send_body("modem-1", "sms", "+15551230001", &format!("n{i}")),
            )
            .await;
        assert_eq!(code, 202);
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    sms.wait_sent(5).await;
    for id in &ids {
        d.wait_status(id, "sent").await;
    }
    let (code, page) = d
        .get(
            "/api/v1/messages?limit=2&status=sent&channel=sms",
            &d.admin_key,
        )
        .await;
    assert_eq!(code, 200, "{page}");
    let got: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[4].as_str(), ids[3].as_str()], "newest first");
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page2) = d
        .get(
            &format!("/api/v1/messages?limit=2&cursor={cursor}"),
            &d.admin_key,
        )
        .await;
    let got2: Vec<&str> = page2["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(got2, [ids[2].as_str(), ids[1].as_str()]);
    let (_, none) = d.get("/api/v1/messages?status=failed", &d.admin_key).await;
    assert_eq!(none["messages"], json!([]));
    assert!(none["next_cursor"].is_null());
}

#[tokio::test]
async fn inbound_is_committed_once_and_listed() {
    let tg = TestChannel::new(ChannelKind::Tg, "bot-1");
    let d = TestDaemon::start(FAST_OUTBOX, vec![tg.clone()]).await;
    let message = phonerelay_channel::InboundMessage {
        channel: ChannelKind::Tg,
        phone_id: "bot-1".into(),
        from: "12345".into(),
        text: "a reply".into(),
        subject: None,
        attachments: vec![],
        external_id: "tg-1".into(),
        reply_to: vec![],
        received_at_ms: phonerelay::clock::now_ms(),
        meta: Default::default(),
    };
    tg.inject(ChannelEvent::Inbound(message.clone()))
        .await
        .unwrap();
    // The same upstream message again (re-read after a restart): not stored twice.
    tg.inject(ChannelEvent::Inbound(message)).await.unwrap();
    let (code, page) = d.get("/api/v1/inbound", &d.admin_key).await;
    assert_eq!(code, 200);
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{page}");
    assert_eq!(messages[0]["text"], "a reply");
    assert_eq!(messages[0]["from"], "12345");
    let id = messages[0]["id"].as_str().unwrap();

    // Replying to it carries the upstream id to the adapter.
    let mut body = send_body("bot-1", "tg", "12345", "answer");
    body["reply_to"] = json!(id);
    let (code, accepted) = d.post("/api/v1/messages", &d.admin_key, &body).await;
    assert_eq!(code, 202, "{accepted}");
    let sent = tg.wait_sent(1).await;
    assert_eq!(sent[0].reply_to_external_id.as_deref(), Some("tg-1"));
}

#[tokio::test]
async fn health_ready_metrics_and_openapi() {
    let wa = TestChannel::new(ChannelKind::Wa, "phone-1");
    let d = TestDaemon::start(FAST_OUTBOX, vec![wa.clone()]).await;
    let (code, health) = d.get("/health", "").await;
    assert_eq!((code, health["status"].as_str()), (200, Some("ok")));
    let (code, ready) = d.get("/ready", "").await;
    assert_eq!(code, 200, "{ready}");

    wa.set_health(phonerelay_channel::ChannelHealth::down("modem unplugged"));
    let (code, ready) = d.get("/ready", "").await;
    assert_eq!(code, 503);
    assert_eq!(ready["endpoints"][0]["state"], "down");
    assert_eq!(ready["endpoints"][0]["summary"], "modem unplugged");

    let (code, _) = d
        .post(
            "/api/v1/messages",
            &d.admin_key,
            &send_body("phone-1", "wa", "+15551230001", "m"),
        )
        .await;
    assert_eq!(code, 202);
    wa.wait_sent(1).await;
    let metrics = d.metrics_text().await;
    assert!(
        metrics.contains("phonerelay_accepted_total{channel=\"wa\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("phonerelay_endpoint_up{channel=\"wa\",phone_id=\"phone-1\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("phonerelay_accept_duration_seconds_count 1"),
        "{metrics}"
    );
    assert!(metrics.contains("phonerelay_store_up 1"), "{metrics}");

    let (code, doc) = d.get("/api/v1/openapi.json", "").await;
    assert_eq!(code, 200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/api/v1/messages",
        "/api/v1/messages/{id}",
        "/api/v1/messages/{id}/cancel",
        "/api/v1/inbound",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
    assert!(doc["components"]["schemas"]["SendRequest"]["properties"]["phone_id"].is_object());
}

/// A daemon on `sms` whose send hangs in the channel, with the send's
/// delivery report already in, before its outcome; the send's id.
async fn send_reported_before_its_outcome(sms: &Arc<TestChannel>) -> (TestDaemon, String) {
    sms.script(vec![common::test_channel::Step::Hang]);
    let d = TestDaemon::start(FAST_OUTBOX, vec![sms.clone()]).await;
    let id = d
        .queue(&send_body("modem-1", "sms", "+15551230001", "fast"))
        .await;
    d.wait_status(&id, "sending").await;
    sms.inject(report(
        ChannelKind::Sms,
        "modem-1",
        format!("ext-{id}"),
        DeliveryStatus::Delivered,
    ))
    .await
    .unwrap();
    (d, id)
}

#[tokio::test]
async fn a_delivery_report_that_beats_the_send_outcome_is_applied() {
    // A fast network can report delivery before the dispatcher has recorded
    // the send; the report must not be lost.
    let sms = TestChannel::new(ChannelKind::Sms, "modem-1");
    let (d, id) = send_reported_before_its_outcome(&sms).await;
    sms.release();
    let message = d.wait_status(&id, "delivered").await;
    let history = history_statuses(&message);
    assert_eq!(history, ["queued", "sending", "sent", "delivered"]);
}

/// An early report is kept by when it came, not by the time it carries:
/// a report for no known send stamped more than a day ahead (an SMSC with
/// a wrong clock) does not make the bridge forget another that waits for
/// its send's outcome.
#[tokio::test]
async fn an_early_report_is_not_forgotten_for_another_report_s_stray_time() {
    let sms = TestChannel::new(ChannelKind::Sms, "modem-1");
    let (d, id) = send_reported_before_its_outcome(&sms).await;
    let ChannelEvent::Status(mut ahead) = report(
        ChannelKind::Sms,
        "modem-1",
        "ext-unknown".into(),
        DeliveryStatus::Delivered,
    ) else {
        unreachable!()
    };
    ahead.at_ms += 25 * 3600 * 1000;
    sms.inject(ChannelEvent::Status(ahead)).await.unwrap();
    sms.release();
    let message = d.wait_status(&id, "delivered").await;
    assert_eq!(
        history_statuses(&message),
        ["queued", "sending", "sent", "delivered"]
    );
}

/// The OpenAPI document states what the handlers enforce: every operation
/// with a path parameter documents the 400 it answers for a segment it
/// cannot read, and the send body's limits are in its schema. Each limit
/// is read from the document and tried on the handler at its edge, so the
/// two cannot drift apart.
#[tokio::test]
async fn the_openapi_document_states_what_the_handlers_enforce() {
    let wa = TestChannel::new(ChannelKind::Wa, "phone-1");
    let d = TestDaemon::start(FAST_OUTBOX, vec![wa.clone()]).await;
    let (code, doc) = d.get("/api/v1/openapi.json", "").await;
    assert_eq!(code, 200);

    let mut with_path_parameter = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.contains('{') {
            continue;
        }
        for (method, operation) in item.as_object().unwrap() {
            with_path_parameter += 1;
            let documented =
                &operation["responses"]["400"]["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(
                documented, "#/components/schemas/ErrorBody",
                "{method} {path}"
            );
            let url = format!("{}{}", d.base, path.replace("{id}", "%FF"));
            let request = match method.as_str() {
                "get" => d.http.get(url),
                "post" => d.http.post(url),
                other => panic!("{other} {path}"),
            };
            let response = request.bearer_auth(&d.admin_key).send().await.unwrap();
            let (code, body) = into_parts(response).await;
            assert_eq!(
                (code, body["error"]["code"].as_str()),
                (400, Some("invalid_path")),
                "{method} {path}: {body}"
            );
        }
    }
    assert_eq!(
        with_path_parameter, 5,
        "messages/{{id}}, cancel, inbound/{{id}}, retry, media/{{id}}"
    );

    let schemas = &doc["components"]["schemas"];
    let send = &schemas["SendRequest"]["properties"];
    let number = |schema: &Value, key: &str| -> usize {
        schema[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no {key} in {schema}")) as usize
    };
    let pattern = |schema: &Value| -> String {
        let found = schema["pattern"].as_str();
        found
            .unwrap_or_else(|| panic!("no pattern in {schema}"))
            .to_string()
    };
    // (field, a value at the limit, one past it).
    let mut edges: Vec<(&str, Value, Value)> = Vec::new();

    let relay_id = &send["relay_message_id"];
    assert_eq!(number(relay_id, "minLength"), 1);
    let max = number(relay_id, "maxLength");
    assert_eq!(pattern(relay_id), "^[!-~]+$", "printable ASCII");
    edges.push((
        "relay_message_id",
        json!("r".repeat(max)),
        json!("r".repeat(max + 1)),
    ));
    edges.push(("relay_message_id", json!("r~1"), json!("r 1")));

    let subject = &send["subject"];
    let max = number(subject, "maxLength");
    assert_eq!(pattern(subject), r"^[^\r\n]*$", "one line");
    edges.push((
        "subject",
        json!("é".repeat(max)),
        json!("s".repeat(max + 1)),
    ));
    edges.push(("subject", json!("one line"), json!("two\nlines")));

    let max = number(&send["attachments"], "maxItems");
    let attachment = json!({"url": "https://x.test/a"});
    edges.push((
        "attachments",
        json!(vec![attachment.clone(); max]),
        json!(vec![attachment; max + 1]),
    ));

    let url = &schemas["AttachmentBody"]["properties"]["url"];
    let max = number(url, "maxLength");
    assert_eq!(pattern(url), "^https?://");
    let long = |n: usize| format!("https://x.test/{}", "é".repeat(n - "https://x.test/".len()));
    edges.push((
        "attachments[0].url",
        json!([{"url": long(max)}]),
        json!([{"url": long(max + 1)}]),
    ));

    assert_eq!(
        pattern(&send["source"]),
        phonerelay_channel::address_pattern(ChannelKind::Pchat)
    );
    edges.push(("source", json!("alice.b"), json!("not an address")));

    for (i, (field, good, bad)) in edges.into_iter().enumerate() {
        let name = field.split('[').next().unwrap();
        let mut body = send_body("phone-1", "wa", "+15551230001", "edge");
        body[name] = good;
        if name == "relay_message_id" {
            // Each accepted one needs an id of its own.
            body[name] = json!(format!("{i}{}", &body[name].as_str().unwrap()[1..]));
        }
        let (code, answer) = d.post("/api/v1/messages", &d.admin_key, &body).await;
        assert_eq!(code, 202, "{field} at its limit: {answer}");
        body[name] = bad;
        let (code, answer) = d.post("/api/v1/messages", &d.admin_key, &body).await;
        assert_eq!(
            (code, answer["error"]["field"].as_str()),
            (422, Some(field)),
            "{field} past its limit: {answer}"
        );
    }
}

/// A send's channel-specific options reach the channel as given, are kept
/// with the message (a retry after a restart has them too) and shown with
/// it.
#[tokio::test]
async fn options_the_channel_takes_reach_it_and_are_kept_with_the_message() {
    let wa = TestChannel::new(ChannelKind::Wa, "phone-1");
    let d = TestDaemon::start(FAST_OUTBOX, vec![wa.clone()]).await;
    let mut body = send_body("phone-1", "wa", "+15551230001", "hi");
    body["options"] = json!({"template": "welcome_v2"});
    let (code, accepted) = d.post("/api/v1/messages", &d.admin_key, &body).await;
    assert_eq!(code, 202, "{accepted}");
    let sent = wa.wait_sent(1).await;
    assert_eq!(sent[0].options, Some(json!({"template": "welcome_v2"})));
    let id = accepted["id"].as_str().unwrap();
    let message = d.wait_status(id, "sent").await;
    assert_eq!(
        message["options"],
        json!({"template": "welcome_v2"}),
        "{message}"
    );
    // Without options, none.
    let plain = d
        .queue(&send_body("phone-1", "wa", "+15551230002", "plain"))
        .await;
    let message = d.wait_status(&plain, "sent").await;
    assert!(message.get("options").is_none(), "{message}");
    assert_eq!(wa.sent()[1].options, None);
    // A template is its own text: options with no text are taken (the
    // channel judged them); with neither, the send is refused.
    let mut template_only = send_body("phone-1", "wa", "+15551230003", "");
    template_only["options"] = json!({"template": "welcome_v2"});
    let id = d.queue(&template_only).await;
    d.wait_status(&id, "sent").await;
    assert_eq!(wa.sent()[2].text, "");
    let (code, refused) = d
        .post(
            "/api/v1/messages",
            &d.admin_key,
            &send_body("phone-1", "wa", "+15551230003", ""),
        )
        .await;
    assert_eq!(
        (code, refused["error"]["field"].as_str()),
        (422, Some("text"))
    );
}

/// A send the store refuses outright (here a trigger of the test's own,
/// as a constraint or a bug would) is answered 500 `store_refused`, with no
/// `Retry-After`: unlike a store that is out for a while, repeating it
/// meets the same refusal. Nothing is kept, and the next send, once the
/// refusal is gone, is taken as usual.
#[tokio::test]
async fn a_send_the_store_refuses_outright_is_a_500_and_keeps_nothing() {
    let sms = TestChannel::new(ChannelKind::Sms, "m1");
    let d = TestDaemon::start(FAST_OUTBOX, vec![sms.clone()]).await;
    let db = rusqlite::Connection::open(d.db_path()).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    db.execute_batch(
        "CREATE TRIGGER refuse_sends BEFORE INSERT ON outbound
         BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    .unwrap();
    let response = d
        .http
        .post(format!("{}/api/v1/messages", d.base))
        .bearer_auth(&d.admin_key)
        .json(&send_body("m1", "sms", "+15551230001", "refused"))
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("retry-after").is_none());
    let (code, body) = into_parts(response).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (500, Some("store_refused")),
        "{body}"
    );
    let kept: i64 = db
        .query_row("SELECT count(*) FROM outbound", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kept, 0);

    db.execute_batch("DROP TRIGGER refuse_sends").unwrap();
    let id = d.queue_sms("+15551230001", "taken").await;
    d.wait_status(&id, "sent").await;
    let sent: Vec<String> = sms.sent().into_iter().map(|m| m.text).collect();
    assert_eq!(sent, ["taken"]);
}
