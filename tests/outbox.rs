//! The dispatcher: retries, permanent failures, TTL, priority, rate limits,
//! cancel, idempotency, hand-over at accept, crash recovery and graceful
//! shutdown.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::test_channel::Step;
use common::*;
use phonerelay::clock::now_ms;
use phonerelay::store::{OutboundStatus, SendOutcome, Store};
use phonerelay_channel::{ChannelKind, SendError};
use serde_json::json;

#[tokio::test]
async fn transient_errors_are_retried_until_success() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    ch.script(vec![
        Step::Fail(SendError::transient("cms_500", "modem busy")),
        Step::Fail(SendError::rate_limited(
            "http_429",
            "slow down",
            Some(Duration::from_millis(50)),
        )),
    ]);
    let d = TestDaemon::start(FAST_OUTBOX, vec![ch.clone()]).await;
    let id = d.queue_sms("+15551230001", "hi").await;
    let message = d.wait_status(&id, "sent").await;
    assert_eq!(
        message["attempts"], 2,
        "the refusal is no attempt: {message}"
    );
    assert_eq!(ch.calls(), 3);
    assert_eq!(ch.sent().len(), 1);
    assert!(
        message["error"].is_null(),
        "a sent message carries no error: {message}"
    );
    let history: Vec<(String, String)> = message["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["status"].as_str().unwrap().into(),
                h["code"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("queued", ""),
        ("sending", ""),
        ("queued", "cms_500"),
        ("sending", ""),
        ("queued", "http_429"),
        ("sending", ""),
        ("sent", ""),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(history, expected);
}

/// A refusal for one recipient alone (WhatsApp's pair rate limit) costs
/// no attempt and does not pause the endpoint: a message to another
/// recipient goes at once, the refused one after the wait the remote asked.
#[tokio::test]
async fn a_refusal_for_one_recipient_costs_no_attempt_and_holds_no_other() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    ch.script(vec![Step::Fail(SendError::recipient_limited(
        "wa_131056",
        "pair rate limit hit",
        Some(Duration::from_secs(3)),
    ))]);
    // The recipient's wait is far longer than the other message's way
    // through a loaded machine (accept, send, two commits), so which went
    // first says whether the endpoint paused, not how fast the disk was.
    let outbox = FAST_OUTBOX.replace("retry_max_ms = 200", "retry_max_ms = 5000");
    let d = TestDaemon::start(&outbox, vec![ch.clone()]).await;
    let refused = d.queue_sms("+15551230001", "first").await;
    ch.wait_calls(1).await;
    let other = d.queue_sms("+15551230002", "to someone else").await;
    let sent_other = d.wait_status(&other, "sent").await;
    let message = d
        .get(&format!("/api/v1/messages/{refused}"), &d.admin_key)
        .await
        .1;
    assert_eq!(message["status"], "queued", "{message}");
    assert_eq!(message["error"]["code"], "wa_131056", "{message}");
    assert_eq!(message["attempts"], 0, "no attempt spent: {message}");
    let message = d.wait_status(&refused, "sent").await;
    assert_eq!(message["attempts"], 1, "{message}");
    let at = |m: &serde_json::Value, status: &str| {
        m["history"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|h| h["status"] == status)
            .map(|h| phonerelay::clock::parse_rfc3339(h["at"].as_str().unwrap()).unwrap())
            .unwrap()
    };
    assert!(
        at(&sent_other, "sent") < at(&message, "sent"),
        "the other recipient went first"
    );
    let requeued = at(&message, "queued");
    // Not held by a pause of the endpoint: sent while the refused one waited.
    assert!(
        at(&sent_other, "sent") < requeued + 1_500,
        "the other recipient waited: {sent_other}"
    );
    // The remote asked for 3 s.
    assert!(
        at(&message, "sent") - requeued >= 2_900,
        "sent before the wait: {message}"
    );
    let metrics = d.metrics_text().await;
    assert!(
        metrics.contains("reason=\"recipient_refused\""),
        "{metrics}"
    );
}

#[tokio::test]
async fn permanent_errors_fail_at_once_with_the_reason() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    ch.script(vec![Step::Fail(SendError::permanent(
        "cms_1",
        "unassigned number",
    ))]);
    let d = TestDaemon::start(FAST_OUTBOX, vec![ch.clone()]).await;
    let id = d.queue_sms("+15551230001", "hi").await;
    let message = d.wait_status(&id, "failed").await;
    assert_eq!(
        message["error"],
        json!({"code": "cms_1", "message": "unassigned number"})
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ch.calls(), 1, "a permanent failure is not retried");
    // ...and it shows in the at-a-glance status, beside a sent one.
    let ok = d.queue_sms("+15551230002", "fine").await;
    d.wait_status(&ok, "sent").await;
    let (code, status) = d.get("/api/v1/status", &d.admin_key).await;
    assert_eq!(code, 200);
    let endpoint = &status["endpoints"][0];
    assert_eq!(
        (
            endpoint["queued"].as_u64(),
            endpoint["sent_last_hour"].as_u64(),
            endpoint["failed_last_hour"].as_u64()
        ),
        (Some(0), Some(1), Some(1)),
        "{status}"
    );
    // The store's files as the disk has them, and the space left.
    let storage = &status["storage"];
    // Whole SQLite pages, and no more than the file holds now (a
    // checkpoint since may only have grown it).
    let reported = storage["database_bytes"].as_u64().unwrap_or(0);
    let database = d.dir.path().join("state").join("phonerelay.sqlite3");
    let now = std::fs::metadata(database).unwrap().len();
    assert!(
        reported > 0 && reported % 4096 == 0 && reported <= now,
        "{status}"
    );
    assert!(
        storage["wal_bytes"].as_u64().is_some_and(|b| b > 0),
        "{status}"
    );
    assert!(
        storage["free_bytes"].as_u64().is_some_and(|b| b > 0),
        "{status}"
    );
    let metrics = d.metrics_text().await;
    for series in [
        "phonerelay_store_bytes{file=\"database\"} ",
        "phonerelay_store_bytes{file=\"wal\"} ",
        "phonerelay_store_free_bytes ",
    ] {
        assert!(metrics.contains(series), "{series} missing: {metrics}");
    }
    assert!(
        !metrics.contains("phonerelay_relay_up{"),
        "no relay here, so no relay series: {metrics}"
    );
    // Not for the unauthenticated readiness probe.
    let (_, ready) = d.get("/ready", &d.admin_key).await;
    assert!(ready.get("storage").is_none(), "{ready}");
}

#[tokio::test]
async fn retries_stop_at_max_attempts() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    ch.script(
        (0..10)
            .map(|_| Step::Fail(SendError::transient("timeout", "no answer")))
            .collect(),
    );
    let d = TestDaemon::start(
        &format!("{FAST_OUTBOX}max_attempts = 3\n"),
        vec![ch.clone()],
    )
    .await;
    let id = d.queue_sms("+15551230001", "hi").await;
    let message = d.wait_status(&id, "failed").await;
    assert_eq!(message["error"]["code"], "retries_exhausted");
    assert_eq!(ch.calls(), 3);
    // The last attempt failed the message: counted as such, not as a
    // retry, so an alert on failed sends sees retries running out.
    assert_eq!(retries(&d).await, 2);
    let failed = "phonerelay_sends_total{channel=\"sms\",outcome=\"failed\"}";
    assert_eq!(counter(&d, failed).await, 1);
}

#[tokio::test]
async fn messages_past_their_ttl_expire() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    ch.script(
        (0..100)
            .map(|_| Step::Fail(SendError::transient("no_network", "not registered")))
            .collect(),
    );
    let d = TestDaemon::start(FAST_OUTBOX, vec![ch.clone()]).await;
    let mut body = send_body("m1", "sms", "+15551230001", "hi");
    body["ttl_seconds"] = json!(1);
    let id = d.queue(&body).await;
    let message = d.wait_status(&id, "expired").await;
    assert_eq!(message["error"]["code"], "ttl_expired");
    let calls = ch.calls();
    assert!(calls >= 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ch.calls(), calls, "an expired message is not sent again");
}

/// A retry due after the message's TTL does not hold the recipient's next
/// message past that TTL: A fails once and would retry in 10 s, but
/// expires after 1 s; B, to the same number and queued behind A, goes as
/// soon as A has expired, long before its own 4 s TTL.
#[tokio::test]
async fn a_message_behind_one_that_expires_before_its_retry_goes_once_that_one_has_expired() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    ch.script(vec![Step::Fail(SendError::transient(
        "no_network",
        "not registered",
    ))]);
    let d = TestDaemon::start(
        "[outbox]\nretry_initial_ms = 10000\nretry_max_ms = 10000\nexpiry_sweep_seconds = 1\n",
        vec![ch.clone()],
    )
    .await;
    let mut a = send_body("m1", "sms", "+15551230001", "first");
    a["ttl_seconds"] = json!(1);
    let a = d.queue(&a).await;
    d.wait_message(&a, |m| m["attempts"] == 1 && m["status"] == "queued")
        .await;
    let mut b = send_body("m1", "sms", "+15551230001", "second");
    b["ttl_seconds"] = json!(4);
    let b = d.queue(&b).await;
    let message = d.wait_status(&a, "expired").await;
    assert_eq!(message["error"]["code"], "ttl_expired");
    let message = d.wait_status(&b, "sent").await;
    assert_eq!(message["attempts"], 1, "{message}");
    // A's one failed try, then B: A is not tried again.
    assert_eq!(ch.calls(), 2);
    let texts: Vec<String> = ch.sent().iter().map(|m| m.text.clone()).collect();
    assert_eq!(texts, ["second"]);
}

/// A key that may send but not read cancels and hears only the message's
/// id and status: the cancel showed it the text, recipient and history.
/// A key that may read hears the whole message.
#[tokio::test]
async fn a_cancel_shows_the_message_only_to_a_key_that_may_read_it() {
    use phonerelay::store::Scope;
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    ch.set_can_send(false);
    let d = TestDaemon::start(FAST_OUTBOX, vec![ch.clone()]).await;
    let send_only = create_key(&*d.store(), vec![Scope::Send], None).await;
    let send_read = create_key(&*d.store(), vec![Scope::Send, Scope::Read], None).await;
    for (key, full) in [(&send_only, false), (&send_read, true)] {
        let id = d.queue_sms("+15551230001", "private words").await;
        let path = format!("/api/v1/messages/{id}/cancel");
        let (code, answer) = d.post(&path, key, &json!({})).await;
        assert_eq!(code, 200, "{answer}");
        assert_eq!(
            (&answer["id"], &answer["status"]),
            (&json!(id), &json!("cancelled"))
        );
        let shown = ["text", "to", "history"].map(|field| answer.get(field).is_some());
        assert_eq!(shown, [full; 3], "read scope {full}: {answer}");
    }
}

/// An Idempotency-Key reused with another body is refused though the
/// request carries the relay message id of the key's message: the relay
/// id's repeat answered first, and the changed body was taken for a
/// repeat. Without a key, a changed body under the same relay id is
/// still the relay's redelivery, answered as the first.
#[tokio::test]
async fn a_reused_idempotency_key_is_refused_whatever_relay_id_it_carries() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    let d = TestDaemon::start(FAST_OUTBOX, vec![ch.clone()]).await;
    let post = |key: Option<&'static str>, text: &'static str| {
        let mut body = send_body("m1", "sms", "+15551230001", text);
        body["relay_message_id"] = json!("r-1");
        let mut request = d
            .http
            .post(format!("{}/api/v1/messages", d.base))
            .bearer_auth(&d.admin_key)
            .json(&body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        async move { into_parts(request.send().await.unwrap()).await }
    };
    let (code, first) = post(Some("k-1"), "first").await;
    assert_eq!(code, 202, "{first}");
    let (code, err) = post(Some("k-1"), "changed").await;
    assert_eq!(
        (code, err["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{err}"
    );
    let (code, again) = post(Some("k-1"), "first").await;
    assert_eq!((code, &again["id"]), (202, &first["id"]), "{again}");
    let (code, redelivered) = post(None, "changed").await;
    assert_eq!(
        (code, &redelivered["id"]),
        (202, &first["id"]),
        "{redelivered}"
    );
}

/// A cancel takes a queued message; a repeated one (its first answer
/// lost) is answered as the first was, and records nothing more; a
/// message already sent is refused with 409.
#[tokio::test]
async fn cancel_works_only_while_queued() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    ch.script(vec![Step::Fail(SendError::rate_limited(
        "busy",
        "later",
        Some(Duration::from_secs(60)),
    ))]);
    let other = TestChannel::new(ChannelKind::Sms, "m2");
    let d = TestDaemon::start(FAST_OUTBOX, vec![ch.clone(), other.clone()]).await;
    let id = d.queue_sms("+15551230001", "hi").await;
    d.wait_message(&id, |m| {
        m["status"] == "queued" && m["error"]["code"] == "busy"
    })
    .await;
    let (code, message) = d
        .post(
            &format!("/api/v1/messages/{id}/cancel"),
            &d.admin_key,
            &json!({}),
        )
        .await;
    assert_eq!(code, 200, "{message}");
    assert_eq!(message["status"], "cancelled");
    let (code, again) = d
        .post(
            &format!("/api/v1/messages/{id}/cancel"),
            &d.admin_key,
            &json!({}),
        )
        .await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(
        again, message,
        "a repeat is answered as the first cancel was"
    );
    let cancels = again["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["status"] == "cancelled")
        .count();
    assert_eq!(cancels, 1, "{again}");

    let sent = d
        .queue(&send_body("m2", "sms", "+15551230002", "gone"))
        .await;
    d.wait_status(&sent, "sent").await;
    let (code, err) = d
        .post(
            &format!("/api/v1/messages/{sent}/cancel"),
            &d.admin_key,
            &json!({}),
        )
        .await;
    assert_eq!(
        (code, err["error"]["code"].as_str()),
        (409, Some("not_cancellable")),
        "{err}"
    );
    let (code, _) = d
        .post("/api/v1/messages/nope/cancel", &d.admin_key, &json!({}))
        .await;
    assert_eq!(code, 404);
    assert!(ch.sent().is_empty());
}

#[tokio::test]
async fn higher_priority_goes_first() {
    let limits = "[outbox.limits.sms]\nconcurrency = 1\n";
    let (d, ch, _blocker) = first_send_hangs(&format!("{FAST_OUTBOX}{limits}"), "blocker").await;
    let mut low = send_body("m1", "sms", "+15551230002", "low");
    low["priority"] = json!("low");
    let mut high = send_body("m1", "sms", "+15551230003", "high");
    high["priority"] = json!("high");
    d.queue(&low).await;
    d.queue_sms("+15551230004", "normal").await;
    d.queue(&high).await;
    ch.release();
    let sent = ch.wait_sent(4).await;
    let order: Vec<&str> = sent.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(order, ["blocker", "high", "normal", "low"]);
}

#[tokio::test]
async fn an_endpoint_that_is_down_is_handed_nothing_and_its_queue_spends_no_attempts() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    ch.set_health(phonerelay_channel::ChannelHealth::down("modem unplugged"));
    // Two attempts would be spent within a second if the outage counted.
    let d = TestDaemon::start(
        &format!("{FAST_OUTBOX}max_attempts = 2\n"),
        vec![ch.clone()],
    )
    .await;
    let ids = [
        d.queue_sms("+15551230001", "one").await,
        d.queue_sms("+15551230002", "two").await,
        d.queue_sms("+15551230001", "three").await,
    ];
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ch.calls(), 0, "nothing handed to an endpoint that is down");
    let (_, status) = d.get("/api/v1/status", &d.admin_key).await;
    assert_eq!(status["endpoints"][0]["can_send"], false, "{status}");
    let held = "phonerelay_endpoint_can_send{channel=\"sms\",phone_id=\"m1\"}";
    assert_eq!(counter(&d, held).await, 0);
    for id in &ids {
        let (_, message) = d.get(&format!("/api/v1/messages/{id}"), &d.admin_key).await;
        assert_eq!(message["status"], "queued", "{message}");
        assert_eq!(message["attempts"], 0, "{message}");
    }
    ch.set_health(phonerelay_channel::ChannelHealth::up("back"));
    for id in &ids {
        let message = d.wait_status(id, "sent").await;
        assert_eq!(message["attempts"], 1, "{message}");
    }
    let texts: Vec<String> = ch.sent().iter().map(|m| m.text.clone()).collect();
    assert_eq!(sent_to(&ch, "+15551230001"), ["one", "three"], "{texts:?}");
    assert_eq!(ch.calls(), 3);
    let (_, status) = d.get("/api/v1/status", &d.admin_key).await;
    assert_eq!(status["endpoints"][0]["can_send"], true, "{status}");
    assert_eq!(counter(&d, held).await, 1);
}

/// An adapter that turns sends away while its `can_send` says yes has its
/// queue claimed a few times a second, not in a tight loop.
#[tokio::test]
async fn an_endpoint_that_turns_every_send_away_is_not_claimed_in_a_tight_loop() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    ch.script(
        (0..100_000)
            .map(|_| Step::Fail(SendError::unavailable("modem_down", "modem not connected")))
            .collect(),
    );
    // No rate limit to slow the loop down instead.
    let limits = "[outbox.limits.m1]\nper_second = 1000000.0\nburst = 1000000\nper_recipient_per_minute = 0\n";
    let d = TestDaemon::start(&format!("{FAST_OUTBOX}{limits}"), vec![ch.clone()]).await;
    let id = d.queue_sms("+15551230001", "hi").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // One claim per 250 ms pause at most: about 8 in 2 s.
    let calls = ch.calls();
    assert!((1..=12).contains(&calls), "{calls} sends in 2 s");
    let (_, message) = d.get(&format!("/api/v1/messages/{id}"), &d.admin_key).await;
    assert_eq!(message["attempts"], 0, "{message}");
}

/// A held queue is still a queue: its messages expire at their TTL and
/// can be cancelled, though the endpoint never comes back.
#[tokio::test]
async fn a_message_held_by_a_down_endpoint_still_expires_and_can_be_cancelled() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    ch.set_health(phonerelay_channel::ChannelHealth::down("modem unplugged"));
    let d = TestDaemon::start(FAST_OUTBOX, vec![ch.clone()]).await;
    let mut short = send_body("m1", "sms", "+15551230001", "short-lived");
    short["ttl_seconds"] = json!(1);
    let short = d.queue(&short).await;
    let held = d.queue_sms("+15551230002", "held").await;
    let message = d.wait_status(&short, "expired").await;
    assert_eq!(message["error"]["code"], "ttl_expired");
    let (code, body) = d
        .post(
            &format!("/api/v1/messages/{held}/cancel"),
            &d.admin_key,
            &json!({}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    d.wait_status(&held, "cancelled").await;
    assert_eq!(ch.calls(), 0);
}

#[tokio::test]
async fn a_send_the_endpoint_turns_away_unattempted_goes_back_without_spending_an_attempt() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    // More refusals than attempts allowed: none of them may count.
    ch.script(
        (0..4)
            .map(|_| Step::Fail(SendError::unavailable("modem_down", "modem not connected")))
            .collect(),
    );
    let d = TestDaemon::start(
        &format!("{FAST_OUTBOX}max_attempts = 2\n"),
        vec![ch.clone()],
    )
    .await;
    let id = d.queue_sms("+15551230001", "hi").await;
    let message = d.wait_status(&id, "sent").await;
    assert_eq!(message["attempts"], 1, "{message}");
    assert_eq!(ch.calls(), 5);
    let deferrals = history_statuses(&message)
        .iter()
        .filter(|s| *s == "queued")
        .count();
    assert_eq!(deferrals, 5, "accepted, then back four times: {message}");
    assert_eq!(deferred(&d, "endpoint_down").await, 4);
    assert_eq!(retries(&d).await, 0, "a refusal is no send attempt");
}

/// A remote that refuses sends for now (`http_429`, three times with
/// `retry_after`, or once without and a `retry_initial_ms` of six seconds)
/// against `max_attempts = 2`: while the endpoint pauses, a message to
/// another recipient is not tried either; then both go, none of the
/// refusals spent an attempt, and the refused message's history says why.
async fn refusals_pause_the_endpoint(refusals: Vec<Step>, outbox: &str) {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    let refused = refusals.len() as u64;
    ch.script(refusals);
    let d = TestDaemon::start(&format!("{outbox}max_attempts = 2\n"), vec![ch.clone()]).await;
    let first = d.queue_sms("+15551230001", "first").await;
    ch.wait_calls(1).await;
    // The status says the endpoint pauses, and why (from the moment the
    // refusal is back from the channel).
    let status = wait_paused(&d).await;
    let paused = &status["endpoints"][0]["paused"];
    assert_eq!(paused["code"], "http_429", "{status}");
    assert_eq!(paused["message"], "too many requests", "{status}");
    assert!(paused["seconds_left"].as_u64().unwrap() >= 1, "{status}");
    let gauge = "phonerelay_endpoint_paused_seconds{channel=\"sms\",phone_id=\"m1\"}";
    assert!(counter(&d, gauge).await >= 1);
    let other = d.queue_sms("+15551230002", "other").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ch.calls(), 1, "nothing is tried while the endpoint pauses");
    let first = d.wait_status(&first, "sent").await;
    let other = d.wait_status(&other, "sent").await;
    assert_eq!(
        (first["attempts"].clone(), other["attempts"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(ch.calls() as u64, refused + 2);
    assert_eq!(deferred(&d, "refused").await, refused);
    let (_, status) = d.get("/api/v1/status", &d.admin_key).await;
    assert!(status["endpoints"][0]["paused"].is_null(), "{status}");
    assert_eq!(counter(&d, gauge).await, 0);
    let refusal = first["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["code"] == "http_429")
        .unwrap_or_else(|| panic!("the refusal is in the history: {first}"));
    assert_eq!(refusal["status"], "queued");
    let reason = refusal["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("too many requests") && reason.ends_with("not counted as an attempt"),
        "{reason}"
    );
    assert_eq!(retries(&d).await, 0, "a refusal is no send attempt");
}

/// The status once it shows the (one) endpoint paused.
async fn wait_paused(d: &TestDaemon) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, status) = d.get("/api/v1/status", &d.admin_key).await;
        if !status["endpoints"][0]["paused"].is_null() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never paused: {status}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A daemon restarted while a remote's limit runs waits out the rest of
/// it: the status still names the refusal, and no send starts until the
/// pause the remote asked for is over.
#[tokio::test]
async fn a_pause_outlives_a_restart() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    // Far longer than a restart and the checks after it take on a loaded
    // machine, so they run while the pause does.
    ch.script(vec![too_many_requests(Some(Duration::from_secs(6)))]);
    let outbox = FAST_OUTBOX.replace("retry_max_ms = 200", "retry_max_ms = 10000");
    let d = TestDaemon::start(&outbox, vec![ch.clone()]).await;
    let first = d.queue_sms("+15551230001", "first").await;
    wait_paused(&d).await;

    let again = TestChannel::new(ChannelKind::Sms, "m1");
    let d = d.restart(vec![again.clone()]).await;
    let status = wait_paused(&d).await;
    let paused = &status["endpoints"][0]["paused"];
    assert_eq!(paused["code"], "http_429", "{status}");
    assert_eq!(paused["message"], "too many requests", "{status}");
    let other = d.queue_sms("+15551230002", "other").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(again.calls(), 0, "nothing is tried while the pause runs");
    let first = d.wait_status(&first, "sent").await;
    d.wait_status(&other, "sent").await;
    // Measured from the refusal as recorded, not from when the test saw
    // it, which a slow status read could make late.
    let at = |status: &str| {
        first["history"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["status"] == status && (status == "sent" || h["code"] == "http_429"))
            .map(|h| phonerelay::clock::parse_rfc3339(h["at"].as_str().unwrap()).unwrap())
            .unwrap_or_else(|| panic!("no {status} in the history: {first}"))
    };
    let waited = at("sent") - at("queued");
    assert!(
        waited >= 5_800,
        "sent {waited} ms after the refusal, before the remote's wait was over: {first}"
    );
}

fn too_many_requests(retry_after: Option<Duration>) -> Step {
    Step::Fail(SendError::rate_limited(
        "http_429",
        "too many requests",
        retry_after,
    ))
}

#[tokio::test]
async fn a_remote_s_refusals_pause_the_endpoint_for_its_retry_after_and_spend_no_attempt() {
    // The first pause is what the checks run inside: far longer than they
    // take on a loaded machine (each status read and POST waits behind a
    // commit's fsync). The later ones only have to be refusals.
    let refusals = [4_000, 500, 500]
        .into_iter()
        .map(|ms| too_many_requests(Some(Duration::from_millis(ms))))
        .collect();
    // `retry_max_ms` caps a `retry_after` too.
    let outbox = FAST_OUTBOX.replace("retry_max_ms = 200", "retry_max_ms = 5000");
    refusals_pause_the_endpoint(refusals, &outbox).await;
}

#[tokio::test]
async fn a_refusal_that_names_no_wait_pauses_the_endpoint_for_the_retry_backoff() {
    // The first refusal in a row waits 3-6 s: the upper half of
    // `retry_initial_ms`, far longer than the checks made during it.
    let outbox = FAST_OUTBOX.replace("retry_initial_ms = 40", "retry_initial_ms = 6000");
    let outbox = outbox.replace("retry_max_ms = 200", "retry_max_ms = 6000");
    refusals_pause_the_endpoint(vec![too_many_requests(None)], &outbox).await;
}

#[tokio::test]
async fn per_recipient_limit_defers_without_dropping() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    let limits = "[outbox.limits.m1]\nper_recipient_per_minute = 1\n";
    let d = TestDaemon::start(&format!("{FAST_OUTBOX}{limits}"), vec![ch.clone()]).await;
    let first = d.queue_sms("+15551230001", "one").await;
    d.wait_status(&first, "sent").await;
    let second = d.queue_sms("+15551230001", "two").await;
    let other = d.queue_sms("+15551239999", "other").await;
    d.wait_status(&other, "sent").await;
    let held = d
        .wait_message(&second, |m| m["error"]["code"] == "deferred")
        .await;
    assert_eq!(held["status"], "queued");
    assert_eq!(held["attempts"], 0, "a deferral is not an attempt");
    assert_eq!(ch.sent().len(), 2);
    assert!(deferred(&d, "rate_limited").await >= 1);
    assert_eq!(deferred(&d, "recipient_waiting").await, 0);
    // Not dropped, nor put off for longer than the limit asks: due when
    // the recipient's token is back, within a minute of the first send.
    let record = d
        .store()
        .get_outbound(&second)
        .await
        .unwrap()
        .unwrap()
        .record;
    let due_in = record.next_attempt_at_ms - now_ms();
    assert!((1..=60_000).contains(&due_in), "due in {due_in} ms");
}

/// A send the endpoint turned away went nowhere, so it spends none of its
/// recipient's rate limit: with one send a minute allowed, the message
/// goes as soon as the endpoint takes it, not a minute later.
#[tokio::test]
async fn a_send_turned_away_spends_none_of_its_recipients_rate_limit() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    ch.script(vec![
        Step::Fail(SendError::unavailable("modem_down", "modem not connected")),
        Step::Ok,
    ]);
    let limits = "[outbox.limits.m1]\nper_recipient_per_minute = 1\n";
    let d = TestDaemon::start(&format!("{FAST_OUTBOX}{limits}"), vec![ch.clone()]).await;
    let id = d.queue_sms("+15551230001", "hi").await;
    let message = d.wait_status(&id, "sent").await;
    assert_eq!(message["attempts"], 1, "{message}");
    assert_eq!(ch.calls(), 2);
    assert_eq!(deferred(&d, "rate_limited").await, 0);
}

/// A backlog to one recipient held back by its rate limit stays in the
/// queue while it waits: claimed, each of its messages would only go back
/// to wait, a history row each time, and the claims walked the whole
/// backlog that way before reaching anyone else's message, again at every
/// turn of the limit.
#[tokio::test]
async fn a_backlog_to_a_recipient_held_by_its_rate_limit_is_left_in_the_queue() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    // Down while the backlog is accepted, so it waits in the queue (a
    // message handed over at accept is started, and goes back, once).
    ch.set_health(phonerelay_channel::ChannelHealth::down("modem unplugged"));
    let limits = "[outbox.limits.m1]\nper_recipient_per_minute = 1\n";
    let d = TestDaemon::start(&format!("{FAST_OUTBOX}{limits}"), vec![ch.clone()]).await;
    let mut backlog = Vec::new();
    for n in 0..60 {
        backlog.push(d.queue_sms("+15551230001", &format!("to one {n}")).await);
    }
    let other = d.queue_sms("+15551239999", "other").await;
    ch.set_health(phonerelay_channel::ChannelHealth::up("back"));
    d.wait_status(&backlog[0], "sent").await;
    d.wait_status(&other, "sent").await;
    d.wait_message(&backlog[1], |m| m["error"]["code"] == "deferred")
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The sends that had started to wait when the limit was met went back,
    // not the backlog behind them.
    let churned = deferred(&d, "recipient_waiting").await;
    assert!(churned < 10, "{churned} messages claimed only to go back");
    let last = d.wait_message(backlog.last().unwrap(), |_| true).await;
    assert_eq!(last["history"].as_array().unwrap().len(), 1, "{last}");
    assert_eq!(ch.sent().len(), 2);
}

#[tokio::test]
async fn idempotency_key_returns_the_first_result_and_sends_once() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    let d = TestDaemon::start(FAST_OUTBOX, vec![ch.clone()]).await;
    let body = send_body("m1", "sms", "+15551230001", "once");
    let post = |key: &'static str, body: serde_json::Value| {
        let request = d
            .http
            .post(format!("{}/api/v1/messages", d.base))
            .bearer_auth(&d.admin_key)
            .header("idempotency-key", key)
            .json(&body);
        async move {
            let r = request.send().await.unwrap();
            let replayed = r.headers().contains_key("idempotent-replayed");
            let (c, b) = into_parts(r).await;
            (c, b, replayed)
        }
    };
    let (c1, first, replayed1) = post("k-1", body.clone()).await;
    let (c2, second, replayed2) = post("k-1", body.clone()).await;
    assert_eq!((c1, c2), (202, 202));
    assert_eq!(first["id"], second["id"]);
    assert!(!replayed1 && replayed2);
    let (c3, err, _) = post("k-1", send_body("m1", "sms", "+15551230001", "different")).await;
    assert_eq!(
        (c3, err["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    assert_eq!(err["error"]["field"], "Idempotency-Key");
    d.wait_status(first["id"].as_str().unwrap(), "sent").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ch.sent().len(), 1);
    // Another key's idempotency space is its own.
    let other = create_key(&*d.store(), vec![phonerelay::store::Scope::Send], None).await;
    let r = d
        .http
        .post(format!("{}/api/v1/messages", d.base))
        .bearer_auth(&other)
        .header("idempotency-key", "k-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    let (c4, third) = into_parts(r).await;
    assert_eq!(c4, 202);
    assert_ne!(third["id"], first["id"]);
}

/// A repeat is the same request whatever its spacing or the order of its
/// keys (a client that builds its map again): answered as the first, sent
/// once. A key committed before repeats were compared by value was kept
/// under its body's exact bytes: a repeat of those bytes is still a
/// repeat.
#[tokio::test]
async fn an_idempotent_repeat_is_matched_by_its_json_not_its_bytes() {
    use sha2::Digest;
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    let d = TestDaemon::start(FAST_OUTBOX, vec![ch.clone()]).await;
    let post = |key: &'static str, raw: &'static str| {
        let request = d
            .http
            .post(format!("{}/api/v1/messages", d.base))
            .bearer_auth(&d.admin_key)
            .header("idempotency-key", key)
            .header("content-type", "application/json")
            .body(raw);
        async move { into_parts(request.send().await.unwrap()).await }
    };
    let first_raw = r#"{"phone_id":"m1","channel":"sms","to":"+15551230001","text":"once"}"#;
    let reordered = r#"{ "text": "once",
        "to": "+15551230001", "channel": "sms", "phone_id": "m1" }"#;
    let (c1, first) = post("k-1", first_raw).await;
    let (c2, again) = post("k-1", reordered).await;
    assert_eq!((c1, c2), (202, 202), "{again}");
    assert_eq!(first["id"], again["id"]);

    // As a key committed earlier was kept: under the exact bytes' hash.
    let id = first["id"].as_str().unwrap();
    let exact = hex::encode(sha2::Sha256::digest(first_raw.as_bytes()));
    let db = rusqlite::Connection::open(d.db_path()).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute(
        "UPDATE outbound SET request_hash = ?1 WHERE id = ?2",
        rusqlite::params![exact, id],
    )
    .unwrap();
    let (c3, kept) = post("k-1", first_raw).await;
    assert_eq!((c3, kept["id"].as_str()), (202, Some(id)), "{kept}");
    let (c4, refused) = post("k-1", reordered).await;
    assert_eq!(
        (c4, refused["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused")),
        "the kept bytes are all such a key can be matched by: {refused}"
    );
    d.wait_status(id, "sent").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ch.sent().len(), 1);
}

#[tokio::test]
async fn a_claim_left_by_a_crash_is_sent_after_restart() {
    // Leave the database exactly as a process killed mid-send leaves it: a
    // committed message, claimed ('sending', leased), never recorded.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state").join("phonerelay.sqlite3");
    let crashed = {
        let store = open_store(&db);
        let now = now_ms();
        let id = accept_new(&store, new_outbound("survives", now)).await;
        let claimed = claim_all(&store, now, 3_600_000).await;
        assert_eq!(claimed.len(), 1);
        // Dropped here without recording an outcome.
        id
    };
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    let text = config_text(&dir, FAST_OUTBOX);
    let d = TestDaemon::start_in(dir, text, vec![ch.clone()]).await;
    let message = d.wait_status(&crashed, "sent").await;
    assert_eq!(ch.sent().len(), 1);
    assert_eq!(ch.sent()[0].attempt, 2, "the lost attempt counts");
    // A resumed send may need the sink (an SMS's accepted parts): it was
    // there before the dispatcher's first send (`Channel::attach`).
    assert_eq!(ch.sends_before_attach(), 0);
    let codes: Vec<&str> = message["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["code"].as_str())
        .collect();
    assert_eq!(codes, ["requeued"]);
}

/// The last run's clock was an hour fast when it put a message back two
/// seconds on, and is right at this start (NTP stepped it back): the
/// message goes about two seconds after the start, not an hour later.
#[tokio::test]
async fn a_retry_set_by_a_clock_since_stepped_back_is_due_when_meant_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state").join("phonerelay.sqlite3");
    let fast = now_ms() + 3_600_000;
    let waiting = {
        let store = open_store(&db);
        let id = accept_new(&store, new_outbound("after the step", fast)).await;
        assert_eq!(claim_all(&store, fast, 60_000).await.len(), 1);
        // A release, not a retry: a retry's time is also an event time,
        // which would raise the event clock of every test in this process
        // an hour ahead (`clock::raise_event_floor` at the daemon's start).
        let released = SendOutcome::Release {
            next_attempt_at_ms: fast + 2_000,
            now_ms: fast,
            code: "rate_limited".into(),
            reason: "held back".into(),
        };
        store.record_outcome(&id, released).await.unwrap();
        id
    };
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    let text = config_text(&dir, FAST_OUTBOX);
    let d = TestDaemon::start_in(dir, text, vec![ch.clone()]).await;
    d.wait_status(&waiting, "sent").await;
    assert_eq!(ch.sent().len(), 1);
}

/// A message whose every attempt ended with the process (a send that
/// kills the daemon, one the watchdog ends): its claims come back at each
/// start, and once its attempts are used up it fails rather than being
/// tried, and holding its endpoint, for ever.
#[tokio::test]
async fn a_claim_left_by_a_crash_with_no_attempts_left_fails_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state").join("phonerelay.sqlite3");
    let crashed = {
        let store = open_store(&db);
        let now = now_ms();
        let id = accept_new(&store, new_outbound("kills the daemon", now)).await;
        // Three runs died sending it: claimed, requeued at the next start,
        // claimed again... Claimed as often as it may be (2), it is given
        // its last try; claimed once more, it is not.
        for _ in 0..2 {
            assert_eq!(claim_all(&store, now, 3_600_000).await.len(), 1);
            let again = store.requeue_abandoned(now, 2).await.unwrap();
            assert_eq!((again.requeued, again.failed), (1, 0));
        }
        assert_eq!(claim_all(&store, now, 3_600_000).await.len(), 1);
        id
    };
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    let text = config_text(&dir, &format!("{FAST_OUTBOX}max_attempts = 2\n"));
    let d = TestDaemon::start_in(dir, text, vec![ch.clone()]).await;
    let message = d.wait_status(&crashed, "failed").await;
    assert_eq!(message["error"]["code"], "retries_exhausted", "{message:#}");
    assert_eq!(message["attempts"], 3, "{message:#}");
    // And the queue behind it moves.
    let next = d.queue_sms("+15551230001", "behind it").await;
    d.wait_status(&next, "sent").await;
    let texts: Vec<String> = ch.sent().into_iter().map(|m| m.text).collect();
    assert_eq!(texts, ["behind it"]);
}

/// A message can wait its turn at the endpoint's rate limit past its
/// ttl: it expires then, and is not sent late.
#[tokio::test]
async fn a_message_whose_ttl_runs_out_while_it_waits_for_the_rate_limit_is_not_sent() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    // One send every 4 s: the second waits about 4 s, past its 2 s ttl.
    let config = "[outbox]\nsend_timeout_seconds = 1\n\
         [outbox.limits.m1]\nconcurrency = 2\nper_second = 0.25\nburst = 1\n\
         per_recipient_per_minute = 0\n";
    let d = TestDaemon::start(config, vec![ch.clone()]).await;
    let first = d.queue_sms("+15551230001", "first").await;
    d.wait_status(&first, "sent").await;
    let late = d
        .queue(&serde_json::json!({"phone_id": "m1", "channel": "sms",
            "to": "+15551230002", "text": "late", "ttl_seconds": 2}))
        .await;
    let message = d.wait_status(&late, "expired").await;
    assert_eq!(
        message["attempts"], 0,
        "claimed, never tried: the claim's attempt is given back: {message:#}"
    );
    let history: Vec<&str> = message["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        history,
        ["queued", "expired"],
        "no attempt shown for it either: {message:#}"
    );
    assert_eq!(ch.sent().len(), 1, "only the first went out");
}

#[tokio::test]
async fn graceful_shutdown_releases_a_hanging_send_and_restart_sends_it() {
    let (d, ch, id) = first_send_hangs(FAST_OUTBOX, "in flight").await;
    let db = d.db_path();
    let admin = d.admin_key.clone();
    let ch2 = TestChannel::new(ChannelKind::Sms, "m1");
    let d = d.restart(vec![ch2.clone()]).await; // stop(): grace 1 s, then release
    assert_eq!(d.admin_key, admin);
    d.wait_status(&id, "sent").await;
    assert!(ch.sent().is_empty());
    assert_eq!(ch2.sent().len(), 1);
    // It may have gone out: an attempt, and the retry is told so.
    assert_eq!(ch2.sent()[0].attempt, 2);
    let store = open_store(&db);
    let detail = store.get_outbound(&id).await.unwrap().unwrap();
    let codes: Vec<Option<String>> = detail.history.iter().map(|h| h.code.clone()).collect();
    assert!(
        codes.contains(&Some("shutdown_in_flight".into())),
        "released on shutdown while in flight: {codes:?}"
    );
}

/// A daemon stopped again and again while the same send hangs: each stop
/// is an attempt, the last one given one more chance, and then the
/// message fails instead of going round for ever.
#[tokio::test]
async fn a_send_stopped_in_flight_at_every_attempt_fails_after_max_attempts() {
    let config = format!("{FAST_OUTBOX}max_attempts = 1\n");
    let (mut d, _, id) = first_send_hangs(&config, "hangs every time").await;
    for attempt in 2..=3 {
        let ch = TestChannel::new(ChannelKind::Sms, "m1");
        ch.script(vec![Step::Hang]);
        d = d.restart(vec![ch.clone()]).await;
        if attempt == 2 {
            d.wait_message(&id, |m| m["status"] == "sending" && m["attempts"] == 2)
                .await;
        }
    }
    let message = d.wait_status(&id, "failed").await;
    assert_eq!(message["error"]["code"], "retries_exhausted", "{message:#}");
    assert_eq!(message["attempts"], 2, "{message:#}");
}

#[tokio::test]
async fn accepted_messages_survive_a_restart_while_the_channel_is_down() {
    let ch = TestChannel::new(ChannelKind::Wa, "w1");
    ch.script(
        (0..1000)
            .map(|_| Step::Fail(SendError::transient("http_503", "unavailable")))
            .collect(),
    );
    let d = TestDaemon::start(FAST_OUTBOX, vec![ch.clone()]).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            d.queue(&send_body("w1", "wa", "+15551230001", &format!("m{i}")))
                .await,
        );
    }
    let ch2 = TestChannel::new(ChannelKind::Wa, "w1");
    let d = d.restart(vec![ch2.clone()]).await;
    for id in &ids {
        d.wait_status(id, "sent").await;
    }
    let mut texts: Vec<String> = ch2.sent().iter().map(|m| m.text.clone()).collect();
    texts.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    expected.sort();
    assert_eq!(texts, expected, "every message exactly once");
}

#[tokio::test]
async fn a_group_of_send_outcomes_is_recorded_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("phonerelay.sqlite3"));
    let now = now_ms();
    let a = accept_new(&store, new_outbound("a", now)).await;
    let b = accept_new(&store, new_outbound("b", now)).await;
    assert_eq!(claim_all(&store, now, 60_000).await.len(), 2);
    let sent = |id: &str| SendOutcome::Sent {
        receipt: phonerelay_channel::SendReceipt::single(format!("ext-{id}")),
        now_ms: now,
    };
    let group = vec![
        (a.clone(), sent("a")),
        ("no-such-message".to_string(), sent("x")),
        (b.clone(), sent("b")),
    ];
    assert!(store.record_outcomes(group).await.is_err());
    for id in [&a, &b] {
        let detail = store.get_outbound(id).await.unwrap().unwrap();
        assert_eq!(detail.record.status, OutboundStatus::Sending, "{id}");
    }
}

/// The value of one counter series from `/metrics`, 0 while it is absent.
async fn counter(d: &TestDaemon, series: &str) -> u64 {
    d.metrics_text()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |n| n.parse().unwrap())
}

/// SMS send attempts that ended in a retry.
async fn retries(d: &TestDaemon) -> u64 {
    counter(
        d,
        "phonerelay_sends_total{channel=\"sms\",outcome=\"retry\"}",
    )
    .await
}

/// `phonerelay_handed_over_total` for SMS.
async fn handed_over(d: &TestDaemon) -> u64 {
    counter(d, "phonerelay_handed_over_total{channel=\"sms\"}").await
}

/// `phonerelay_deferred_total` for SMS with `reason`.
async fn deferred(d: &TestDaemon, reason: &str) -> u64 {
    counter(
        d,
        &format!("phonerelay_deferred_total{{channel=\"sms\",reason=\"{reason}\"}}"),
    )
    .await
}

#[tokio::test]
async fn a_message_for_an_idle_endpoint_is_handed_over_and_waits_for_no_claim() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    let limits = "[outbox.limits.sms]\nconcurrency = 1\n";
    let d = TestDaemon::start(&format!("{FAST_OUTBOX}{limits}"), vec![ch.clone()]).await;
    // The dispatcher's first claim finds the queue empty; from then on an
    // accept that finds the slot free commits the message claimed.
    let first = d.queue_sms("+15551230001", "one").await;
    d.wait_status(&first, "sent").await;
    let before = handed_over(&d).await;
    ch.script(vec![Step::Hang]);
    let id = d.queue_sms("+15551230001", "two").await;
    let message = d.wait_status(&id, "sending").await;
    assert_eq!(handed_over(&d).await, before + 1, "handed over");
    // Its attempt began as it was committed: no claim came between.
    let history = message["history"].as_array().unwrap();
    assert_eq!(history_statuses(&message), ["queued", "sending"]);
    assert_eq!(history[0]["at"], history[1]["at"]);
    assert_eq!(message["attempts"], 1);
    // While it holds the only slot, the next one queues, and is claimed
    // once the slot is free.
    let third = d.queue_sms("+15551230001", "three").await;
    let queued = d.wait_status(&third, "queued").await;
    assert_eq!(history_statuses(&queued), ["queued"]);
    ch.release();
    d.wait_status(&id, "sent").await;
    d.wait_status(&third, "sent").await;
    assert_eq!(handed_over(&d).await, before + 1, "the third was claimed");
    let order: Vec<String> = ch.sent().into_iter().map(|m| m.text).collect();
    assert_eq!(order, ["one", "two", "three"]);
}

/// The 202 says the status the message was committed with, which a read
/// at once finds: `sending` for one handed straight to the idle endpoint
/// (it said `queued`, and a cancel then met a 409), `queued` for one that
/// waits behind it.
#[tokio::test]
async fn the_answer_to_a_send_names_the_status_it_was_committed_with() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    let limits = "[outbox.limits.sms]\nconcurrency = 1\n";
    let d = TestDaemon::start(&format!("{FAST_OUTBOX}{limits}"), vec![ch.clone()]).await;
    // As above: once the first claim found the queue empty, an accept
    // that finds the slot free hands its message over.
    let first = d.queue_sms("+15551230001", "one").await;
    d.wait_status(&first, "sent").await;
    ch.script(vec![Step::Hang]);
    let before = handed_over(&d).await;
    let answered_then_stored = |text: &'static str| {
        let d = &d;
        async move {
            let body = send_body("m1", "sms", "+15551230001", text);
            let (code, accepted) = d.post("/api/v1/messages", &d.admin_key, &body).await;
            assert_eq!(code, 202, "{accepted}");
            let id = accepted["id"].as_str().unwrap();
            let (code, stored) = d.get(&format!("/api/v1/messages/{id}"), &d.admin_key).await;
            assert_eq!(code, 200, "{stored}");
            (accepted["status"].clone(), stored["status"].clone())
        }
    };
    let (answered, stored) = answered_then_stored("two").await;
    assert_eq!(handed_over(&d).await, before + 1, "handed over");
    assert_eq!(
        (answered.as_str(), stored.as_str()),
        (Some("sending"), Some("sending"))
    );
    // The slot is held by the hanging send: the next message waits.
    let (answered, stored) = answered_then_stored("three").await;
    assert_eq!(
        (answered.as_str(), stored.as_str()),
        (Some("queued"), Some("queued"))
    );
    ch.release();
}

/// A repeat of an Idempotency-Key answers what the first answer said,
/// whatever the message's status is now: `sending` for one handed
/// straight to the idle endpoint, `queued` for one that waited, though
/// both are sent by then. Every repeat said `queued`.
#[tokio::test]
async fn an_idempotent_repeat_answers_the_status_the_first_answer_gave() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    let limits = "[outbox.limits.sms]\nconcurrency = 1\n";
    let d = TestDaemon::start(&format!("{FAST_OUTBOX}{limits}"), vec![ch.clone()]).await;
    // As above: once the first claim found the queue empty, an accept
    // that finds the slot free hands its message over.
    let first = d.queue_sms("+15551230001", "one").await;
    d.wait_status(&first, "sent").await;
    ch.script(vec![Step::Hang]);
    let post = |key: &'static str, text: &'static str| {
        let request = d
            .http
            .post(format!("{}/api/v1/messages", d.base))
            .bearer_auth(&d.admin_key)
            .header("idempotency-key", key)
            .json(&send_body("m1", "sms", "+15551230001", text));
        async move {
            let r = request.send().await.unwrap();
            let replayed = r.headers().get("idempotent-replayed").cloned();
            let (code, body) = into_parts(r).await;
            assert_eq!(code, 202, "{body}");
            (body["id"].clone(), body["status"].clone(), replayed)
        }
    };
    let (handed, status, replayed) = post("k-handed", "two").await;
    assert_eq!((status.as_str(), replayed), (Some("sending"), None));
    let (waited, status, _) = post("k-waited", "three").await;
    assert_eq!(status, "queued");
    for (key, text, id, first_status) in [
        ("k-handed", "two", &handed, "sending"),
        ("k-waited", "three", &waited, "queued"),
    ] {
        let (again, status, replayed) = post(key, text).await;
        assert_eq!(&again, id);
        assert_eq!(status, first_status, "{key} while the first still hangs");
        assert_eq!(replayed.as_ref().map(|v| v.as_bytes()), Some(&b"true"[..]));
    }
    ch.release();
    for (key, text, id, first_status) in [
        ("k-handed", "two", &handed, "sending"),
        ("k-waited", "three", &waited, "queued"),
    ] {
        d.wait_status(id.as_str().unwrap(), "sent").await;
        let (again, status, _) = post(key, text).await;
        assert_eq!(&again, id);
        assert_eq!(status, first_status, "{key} once sent");
    }
    assert_eq!(ch.sent().len(), 3, "each sent once");
}

#[tokio::test]
async fn a_message_committed_claimed_and_left_by_a_crash_is_sent_after_restart() {
    // A process killed between committing a handed-over message and its
    // send leaves it `sending` with a lease and no event.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state").join("phonerelay.sqlite3");
    let handed = {
        let store = open_store(&db);
        let now = now_ms();
        let mut message = new_outbound("survives", now);
        message.claimed_until_ms = Some(now + 3_600_000);
        accept_new(&store, message).await
    };
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    let text = config_text(&dir, FAST_OUTBOX);
    let d = TestDaemon::start_in(dir, text, vec![ch.clone()]).await;
    let message = d.wait_status(&handed, "sent").await;
    assert_eq!(ch.sent().len(), 1);
    assert_eq!(ch.sent()[0].attempt, 2, "the lost attempt counts");
    assert_eq!(
        history_statuses(&message),
        ["queued", "sending", "queued", "sending", "sent"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_accepts_on_a_narrow_endpoint_are_all_sent_once() {
    // Hand-overs and claims compete for two slots while 400 requests come
    // in 16 at a time: every message is sent once, and the daemon still
    // stops. (A claimed message waiting for a slot must keep starting
    // hand-overs, whose slots are the ones that come back; that race was
    // seen once in the bench and this load did not reproduce it, so this
    // test guards the outcome, not the race.)
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    let limits = "[outbox.limits.sms]\nconcurrency = 2\nper_second = 100000.0\nburst = 100000\nper_recipient_per_minute = 0\n";
    let mut d = TestDaemon::start(&format!("{FAST_OUTBOX}{limits}"), vec![ch.clone()]).await;
    let total = 400;
    for wave in 0..total / 16 {
        let mut posts = tokio::task::JoinSet::new();
        for i in 0..16 {
            let (http, base, key) = (d.http.clone(), d.base.clone(), d.admin_key.clone());
            let body = send_body("m1", "sms", "+15551230001", &format!("m{}", wave * 16 + i));
            posts.spawn(async move {
                let response = http
                    .post(format!("{base}/api/v1/messages"))
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status().as_u16(), 202);
            });
        }
        while let Some(done) = posts.join_next().await {
            done.unwrap();
        }
    }
    let sent = ch.wait_sent(total).await;
    let mut texts: Vec<String> = sent.into_iter().map(|m| m.text).collect();
    texts.sort();
    texts.dedup();
    assert_eq!(texts.len(), total, "each message sent once");
    tokio::time::timeout(Duration::from_secs(20), d.stop())
        .await
        .expect("the daemon stops");
}

/// Texts sent to `to`, in the order the channel took them.
fn sent_to(ch: &TestChannel, to: &str) -> Vec<String> {
    ch.sent()
        .into_iter()
        .filter(|m| m.to == to)
        .map(|m| m.text)
        .collect()
}

#[tokio::test]
async fn a_recipients_next_message_waits_while_the_one_before_is_in_flight() {
    // The default concurrency (4): room to send both at once.
    let (d, ch, _first) = first_send_hangs(FAST_OUTBOX, "first").await;
    let second = d.queue_sms("+15551230001", "second").await;
    let other = d.queue_sms("+15551230009", "other").await;
    d.wait_status(&other, "sent").await;
    d.wait_status(&second, "sending").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ch.calls(), 2, "the second went while the first hung");
    ch.release();
    d.wait_status(&second, "sent").await;
    assert_eq!(sent_to(&ch, "+15551230001"), ["first", "second"]);
}

#[tokio::test]
async fn status_and_metrics_say_how_long_the_oldest_queued_message_has_waited() {
    let limits = "[outbox.limits.sms]\nconcurrency = 1\n";
    let (d, ch, _first) = first_send_hangs(&format!("{FAST_OUTBOX}{limits}"), "first").await;
    let waiting = d.queue_sms("+15551230002", "waits").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let age = counter(
        &d,
        "phonerelay_queue_oldest_seconds{channel=\"sms\",phone_id=\"m1\"}",
    );
    assert!(
        (1..60).contains(&age.await),
        "the one queued behind the hung send"
    );
    let (_, status) = d.get("/api/v1/status", &d.admin_key).await;
    let endpoint = &status["endpoints"][0];
    assert_eq!(endpoint["queued"], 1, "{status}");
    assert!(
        endpoint["oldest_queued_seconds"]
            .as_u64()
            .is_some_and(|s| (1..60).contains(&s)),
        "{status}"
    );
    ch.release();
    d.wait_status(&waiting, "sent").await;
    let (_, status) = d.get("/api/v1/status", &d.admin_key).await;
    assert!(
        status["endpoints"][0]
            .get("oldest_queued_seconds")
            .is_none(),
        "nothing waits: {status}"
    );
    let age = counter(
        &d,
        "phonerelay_queue_oldest_seconds{channel=\"sms\",phone_id=\"m1\"}",
    );
    assert_eq!(age.await, 0);
}

/// A daemon on `config` whose first send hangs (until the channel's
/// `release`): when this returns, `text` (to +15551230001) is in flight.
async fn first_send_hangs(config: &str, text: &str) -> (TestDaemon, Arc<TestChannel>, String) {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    ch.script(vec![Step::Hang]);
    let d = TestDaemon::start(config, vec![ch.clone()]).await;
    let id = d.queue_sms("+15551230001", text).await;
    d.wait_status(&id, "sending").await;
    (d, ch, id)
}

/// A daemon whose first send fails for a while: when this returns,
/// `first` (to +15551230001) waits `retry_ms` for its retry.
async fn first_waits_for_a_retry(retry_ms: u64) -> (TestDaemon, Arc<TestChannel>, String) {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    ch.script(vec![Step::Fail(SendError::transient(
        "cms_500",
        "modem busy",
    ))]);
    let outbox = format!(
        "[outbox]\nretry_initial_ms = {retry_ms}\nretry_max_ms = {retry_ms}\n\
         lease_seconds = 30\nsend_timeout_seconds = 10\n"
    );
    let d = TestDaemon::start(&outbox, vec![ch.clone()]).await;
    let first = d.queue_sms("+15551230001", "first").await;
    d.wait_message(&first, |m| m["error"]["code"] == "cms_500")
        .await;
    (d, ch, first)
}

/// Queue `second` to the recipient of [`first_waits_for_a_retry`] and
/// `other` to another, and wait until `other`, which waits for nothing, is
/// sent while `second` is still queued behind `first` (left in the queue by
/// the claims, or taken and put back `held_back`); `second`'s id.
async fn second_is_held_back(d: &TestDaemon) -> String {
    let second = d.queue_sms("+15551230001", "second").await;
    let other = d.queue_sms("+15551230009", "other").await;
    d.wait_status(&other, "sent").await;
    let held = d.wait_message(&second, |_| true).await;
    assert_eq!(held["status"], "queued", "{held}");
    assert_eq!(held["attempts"], 0, "waiting its turn is not an attempt");
    assert!(
        held["error"].is_null() || held["error"]["code"] == "held_back",
        "{held}"
    );
    second
}

/// The chains are in memory; a restart rebuilds the hold from the queue,
/// so a message accepted after it does not overtake one waiting to retry.
#[tokio::test]
async fn a_recipients_order_holds_across_a_restart() {
    // Long enough that the retry is still waiting after the restart.
    let (d, ch, _) = first_waits_for_a_retry(4000).await;
    let d = d.restart(vec![ch.clone()]).await;
    let second = second_is_held_back(&d).await;
    d.wait_status(&second, "sent").await;
    assert_eq!(sent_to(&ch, "+15551230001"), ["first", "second"]);
}

#[tokio::test]
async fn a_recipients_next_message_waits_for_the_retry_of_the_one_before() {
    let (d, ch, _) = first_waits_for_a_retry(1500).await;
    let second = second_is_held_back(&d).await;
    assert_eq!(deferred(&d, "rate_limited").await, 0);
    let second = d.wait_status(&second, "sent").await;
    assert_eq!(second["attempts"], 1);
    assert_eq!(sent_to(&ch, "+15551230001"), ["first", "second"]);
    let order: Vec<String> = ch.sent().into_iter().map(|m| m.text).collect();
    assert_eq!(
        order[0], "other",
        "another recipient does not wait: {order:?}"
    );
}

/// A message that goes back to the queue due soon (the remote asked for no
/// wait, which takes the usual backoff, 40 ms here) still goes before the
/// next one to its recipient, claimed in the same batch: that one waits
/// until the first has been taken again, not merely until the first's
/// retry time, which soon comes.
#[tokio::test]
async fn a_recipients_next_message_does_not_overtake_one_back_in_the_queue_due_at_once() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    // Down while both are accepted, so one claim takes them together.
    ch.set_health(phonerelay_channel::ChannelHealth::down("modem unplugged"));
    ch.script(vec![
        Step::Fail(SendError::recipient_limited(
            "pair_limit",
            "too many to this number",
            Some(Duration::ZERO),
        )),
        Step::Ok,
        Step::Ok,
    ]);
    let d = TestDaemon::start(FAST_OUTBOX, vec![ch.clone()]).await;
    let first = d.queue_sms("+15551230001", "first").await;
    let second = d.queue_sms("+15551230001", "second").await;
    ch.set_health(phonerelay_channel::ChannelHealth::up("back"));
    d.wait_status(&first, "sent").await;
    d.wait_status(&second, "sent").await;
    assert_eq!(sent_to(&ch, "+15551230001"), ["first", "second"]);
}

/// A message of a higher priority to a recipient whose lower one waits a
/// long time for its retry goes first, also when it was turned away once
/// itself (back in the queue, due at once): it does not wait behind the
/// lower one's retry, as an OTP behind an unrelated notice would expire.
#[tokio::test]
async fn a_higher_priority_turned_away_does_not_wait_behind_a_lower_ones_retry() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    ch.script(vec![
        Step::Fail(SendError::transient("cms_500", "modem busy")),
        Step::Fail(SendError::unavailable("modem_down", "modem not connected")),
    ]);
    // A minute's wait for the retry, far longer than the test waits.
    let config = "[outbox]\nretry_initial_ms = 60000\nretry_max_ms = 60000\n\
         lease_seconds = 30\nsend_timeout_seconds = 10\n\
         [outbox.limits.m1]\nconcurrency = 1\n";
    let d = TestDaemon::start(config, vec![ch.clone()]).await;
    let low = d.queue_sms("+15551230001", "low").await;
    d.wait_message(&low, |m| m["error"]["code"] == "cms_500")
        .await;
    let mut high = send_body("m1", "sms", "+15551230001", "high");
    high["priority"] = json!("high");
    let high = d.queue(&high).await;
    let sent = d.wait_status(&high, "sent").await;
    assert_eq!(sent["attempts"], 1, "{sent}");
    assert_eq!(ch.calls(), 3, "low, high turned away, high");
    assert_eq!(sent_to(&ch, "+15551230001"), ["high"]);
    let (_, low) = d
        .get(&format!("/api/v1/messages/{low}"), &d.admin_key)
        .await;
    assert_eq!(low["status"], "queued", "still waits for its retry: {low}");
}

/// Cancelling the message a recipient's next one waits behind lets that
/// one go at once, not when the cancelled one's retry would have come.
#[tokio::test]
async fn cancelling_the_message_a_recipients_next_one_waits_behind_lets_that_one_go() {
    // A minute's wait for the retry, far longer than the test waits.
    let (d, ch, first) = first_waits_for_a_retry(60_000).await;
    let second = d.queue_sms("+15551230001", "second").await;
    let (code, body) = d
        .post(
            &format!("/api/v1/messages/{first}/cancel"),
            &d.admin_key,
            &json!({}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    d.wait_status(&second, "sent").await;
    assert_eq!(sent_to(&ch, "+15551230001"), ["second"]);
}

/// A claimed message can wait longer than its lease before its send
/// starts (here for the endpoint's rate limit, as behind its recipient's
/// earlier sends): the dispatcher still holds it, so it is sent once, not
/// claimed again and sent a second time when the lease has run out.
#[tokio::test]
async fn a_message_waiting_past_its_lease_is_sent_once() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    // One send every 2 s, four at once: the fourth waits 6 s, three leases.
    let config = "[outbox]\nlease_seconds = 2\nsend_timeout_seconds = 1\n\
         [outbox.limits.m1]\nconcurrency = 4\nper_second = 0.5\nburst = 1\n\
         per_recipient_per_minute = 0\n";
    let d = TestDaemon::start(config, vec![ch.clone()]).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(
            d.queue_sms(&format!("+1555123000{n}"), &format!("m{n}"))
                .await,
        );
    }
    for id in &ids {
        d.wait_status(id, "sent").await;
    }
    // Two more leases' time for a second claim to show.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut texts: Vec<String> = ch.sent().into_iter().map(|m| m.text).collect();
    texts.sort();
    assert_eq!(texts, ["m0", "m1", "m2", "m3"], "each sent once");
    for id in &ids {
        let (_, message) = d.get(&format!("/api/v1/messages/{id}"), &d.admin_key).await;
        assert_eq!(message["attempts"], 1, "{message:#}");
        assert_eq!(history_statuses(&message), ["queued", "sending", "sent"]);
    }
}

/// A channel adapter that panics mid-send does not leave its message in
/// `sending` until the next start: the panic is a failed attempt, retried.
#[tokio::test]
async fn a_send_that_panics_is_a_failed_attempt_and_retried() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    ch.script(vec![Step::Panic, Step::Ok]);
    let d = TestDaemon::start(FAST_OUTBOX, vec![ch.clone()]).await;
    let id = d.queue_sms("+15551230001", "after a panic").await;
    let sent = d.wait_status(&id, "sent").await;
    assert_eq!(sent["attempts"], 2, "{sent:#}");
    assert!(
        sent["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["code"] == "send_panicked"),
        "{sent:#}"
    );
    assert_eq!(ch.calls(), 2);
}

/// A repeat of an Idempotency-Key is answered as the first request was,
/// even when the config has changed since so that the body would now be
/// refused (here a lower `max_ttl_seconds`): the message was committed.
#[tokio::test]
async fn an_idempotent_repeat_after_a_config_change_is_the_first_message() {
    let ch = TestChannel::new(ChannelKind::Sms, "m1");
    let d = TestDaemon::start("[outbox]\nmax_ttl_seconds = 700000\n", vec![ch.clone()]).await;
    let mut body = send_body("m1", "sms", "+15551230001", "long-lived");
    body["ttl_seconds"] = json!(600000);
    let post = |d: &TestDaemon| {
        d.http
            .post(format!("{}/api/v1/messages", d.base))
            .bearer_auth(&d.admin_key)
            .header("idempotency-key", "k-ttl")
            .json(&body)
            .send()
    };
    let (code, first) = into_parts(post(&d).await.unwrap()).await;
    assert_eq!(code, 202, "{first}");
    let d = d
        .restart_with(
            "[outbox]\ndefault_ttl_seconds = 600\nmax_ttl_seconds = 1000\n",
            vec![ch.clone()],
        )
        .await;
    let (code, again) = into_parts(post(&d).await.unwrap()).await;
    assert_eq!(code, 202, "{again}");
    assert_eq!(again["id"], first["id"]);
}

/// A relay id names one message of one phone_id: reused for another
/// phone_id it is refused, and the answer does not name the first message.
#[tokio::test]
async fn a_relay_id_of_another_phone_is_refused_without_naming_its_message() {
    let (a, b) = (
        TestChannel::new(ChannelKind::Sms, "m1"),
        TestChannel::new(ChannelKind::Sms, "m2"),
    );
    let d = TestDaemon::start(FAST_OUTBOX, vec![a.clone(), b.clone()]).await;
    let mut body = send_body("m1", "sms", "+15551230001", "for m1");
    body["relay_message_id"] = json!("r-shared");
    let (code, first) = d.post("/api/v1/messages", &d.admin_key, &body).await;
    assert_eq!(code, 202, "{first}");
    body["phone_id"] = json!("m2");
    let (code, refused) = d.post("/api/v1/messages", &d.admin_key, &body).await;
    assert_eq!(code, 422, "{refused}");
    assert_eq!(refused["error"]["field"], "relay_message_id");
    assert!(!refused.to_string().contains(first["id"].as_str().unwrap()));
}

/// State an adapter keeps while it sends a message (a long SMS's accepted
/// parts) is dropped with the record of the message's end, in the same
/// transaction, and not before: dropped by the adapter when its send
/// returned, it was gone before the outbox had the outcome, and a restart
/// in between sent every part again. A retry keeps it.
#[tokio::test]
async fn a_message_s_adapter_state_goes_with_the_record_of_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("db.sqlite3"));
    let now = now_ms();
    let ids = [
        accept_new(&store, new_outbound("ends", now)).await,
        accept_new(&store, new_outbound("retries", now)).await,
    ];
    assert_eq!(claim_all(&store, now, 60_000).await.len(), 2);
    let scope = "channel.sms.m1";
    for id in &ids {
        let name = phonerelay_channel::message_cursor(id, "sms-parts");
        store
            .save_cursor(scope, &name, "0 17 mr:17:1:1\n")
            .await
            .unwrap();
    }
    let sent = SendOutcome::Sent {
        receipt: phonerelay_channel::SendReceipt::single("mr:17:1:1".to_string()),
        now_ms: now,
    };
    let retry = SendOutcome::Retry {
        next_attempt_at_ms: now + 1_000,
        code: "busy".into(),
        reason: "later".into(),
        now_ms: now,
        may_have_gone_out: true,
    };
    store
        .record_outcomes(vec![(ids[0].clone(), sent), (ids[1].clone(), retry)])
        .await
        .unwrap();
    let kept = |id: &str| {
        let name = phonerelay_channel::message_cursor(id, "sms-parts");
        let store = &store;
        async move { store.load_cursor(scope, &name).await.unwrap() }
    };
    assert_eq!(kept(&ids[0]).await, None, "the ended message's state went");
    assert!(kept(&ids[1]).await.is_some(), "the retried message's stays");
}
