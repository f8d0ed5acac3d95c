//! Bearer keys: no key 401, bad or revoked key 401, wrong scope or phone 403.

mod common;

use common::*;
use phonerelay::clock::now_ms;
use phonerelay::store::Scope;
use phonerelay_channel::ChannelKind;

#[tokio::test]
async fn keys_are_checked_for_presence_validity_scope_and_phone() {
    let a = TestChannel::new(ChannelKind::Sms, "phone-a");
    let b = TestChannel::new(ChannelKind::Sms, "phone-b");
    let d = TestDaemon::start(FAST_OUTBOX, vec![a.clone(), b.clone()]).await;
    let store = d.store();
    let body = send_body("phone-a", "sms", "+15551230001", "hi");

    // No key at all.
    let response = d
        .http
        .post(format!("{}/api/v1/messages", d.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let (code, err) = into_parts(response).await;
    assert_eq!(
        (code, err["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(err["error"]["field"], "Authorization");

    // Malformed and forged keys.
    let real = create_key(&*store, vec![Scope::Send], None).await;
    let forged = format!(
        "{}{}",
        &real[..real.len() - 1],
        if real.ends_with('0') { '1' } else { '0' }
    );
    for key in ["garbage", "prk_0000000000000000_00", forged.as_str()] {
        let (code, err) = d.post("/api/v1/messages", key, &body).await;
        assert_eq!(
            (code, err["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{key}"
        );
    }

    // The real key works; after revoking it, it does not.
    let (code, _) = d.post("/api/v1/messages", &real, &body).await;
    assert_eq!(code, 202);
    let key_id = real.split('_').nth(1).unwrap();
    assert!(store.revoke_key(key_id, now_ms()).await.unwrap());
    let (code, _) = d.post("/api/v1/messages", &real, &body).await;
    assert_eq!(code, 401);

    // Scopes.
    // A missing scope names the header that carried the key, as the 401
    // does: the key must change, not the body.
    let read_only = create_key(&*store, vec![Scope::Read], None).await;
    let (code, err) = d.post("/api/v1/messages", &read_only, &body).await;
    assert_eq!(
        (
            code,
            err["error"]["code"].as_str(),
            err["error"]["field"].as_str()
        ),
        (403, Some("forbidden"), Some("Authorization"))
    );
    // 403 whatever the body: it is not read for a key that cannot send.
    let unread = d
        .http
        .post(format!("{}/api/v1/messages", d.base))
        .bearer_auth(&read_only)
        .header("content-type", "text/plain")
        .body("{\"phone_id\":")
        .send()
        .await
        .unwrap();
    assert_eq!(unread.status().as_u16(), 403);
    let (code, _) = d.get("/api/v1/messages", &read_only).await;
    assert_eq!(code, 200);
    let send_only = create_key(&*store, vec![Scope::Send], None).await;
    for path in ["/api/v1/messages", "/api/v1/status"] {
        let (code, err) = d.get(path, &send_only).await;
        assert_eq!(
            (code, err["error"]["field"].as_str()),
            (403, Some("Authorization")),
            "{path}: {err}"
        );
    }

    // A key bound to phone-b cannot send from phone-a, nor see its messages.
    let bound = create_key(&*store, vec![Scope::Send, Scope::Read], Some("phone-b")).await;
    let (code, err) = d.post("/api/v1/messages", &bound, &body).await;
    assert_eq!(
        (code, err["error"]["field"].as_str()),
        (403, Some("phone_id"))
    );
    let (code, accepted) = d.post("/api/v1/messages", &d.admin_key, &body).await;
    assert_eq!(code, 202);
    let id = accepted["id"].as_str().unwrap();
    let (code, _) = d.get(&format!("/api/v1/messages/{id}"), &bound).await;
    assert_eq!(
        code, 404,
        "a phone-bound key must not see other phones' messages"
    );
    let (_, page) = d.get("/api/v1/messages", &bound).await;
    assert!(page["messages"].as_array().unwrap().is_empty());
    // Asking for the other phone's page by name is refused naming the
    // query parameter.
    let (code, err) = d.get("/api/v1/messages?phone_id=phone-a", &bound).await;
    assert_eq!(
        (code, err["error"]["field"].as_str()),
        (403, Some("phone_id")),
        "{err}"
    );
    // Nor the other phone's endpoints in the status.
    let (code, status) = d.get("/api/v1/status", &bound).await;
    assert_eq!(code, 200, "{status}");
    let phones: Vec<&str> = status["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["phone_id"].as_str().unwrap())
        .collect();
    assert_eq!(phones, ["phone-b"]);
    // Nor the store's size, which every phone's messages make up.
    assert_eq!(status.get("storage"), None, "{status}");
    let (_, whole) = d.get("/api/v1/status", &d.admin_key).await;
    assert!(whole["storage"].is_object(), "{whole}");
    let (code, _) = d
        .post(
            "/api/v1/messages",
            &bound,
            &send_body("phone-b", "sms", "+15551230001", "ok"),
        )
        .await;
    assert_eq!(code, 202);
}

#[tokio::test]
async fn the_database_holds_no_clear_key() {
    let d = TestDaemon::start(FAST_OUTBOX, vec![]).await;
    let key = create_key(&*d.store(), vec![Scope::Send], None).await;
    let secret = key.rsplit('_').next().unwrap();
    // Make sure it has reached the file (WAL included).
    d.store().ping().await.unwrap();
    let mut bytes = std::fs::read(d.db_path()).unwrap();
    if let Ok(wal) = std::fs::read(d.db_path().with_extension("sqlite3-wal")) {
        bytes.extend(wal);
    }
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        !text.contains(secret),
        "the clear secret is in the database"
    );
    assert!(!text.contains(&d.admin_key.rsplit('_').next().unwrap().to_string()));
}

/// The error of a refused send, as one comparable value: what a caller
/// learns from it.
async fn refusal(d: &TestDaemon, key: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let (code, answer) = d.post("/api/v1/messages", key, body).await;
    assert_ne!(code, 202, "accepted: {body}");
    (code, answer["error"].clone())
}

/// A key bound to phone-b learns nothing of phone-a's messages through a
/// send: a relay id phone-a used is refused without naming who used it
/// (and only once the body is valid, so a faulty body is answered alike
/// whether the id is taken or free), and a reply_to naming phone-a's
/// inbound is answered as one naming nothing.
#[tokio::test]
async fn a_phone_bound_key_learns_nothing_of_another_phone_through_a_send() {
    let a = TestChannel::new(ChannelKind::Sms, "phone-a");
    let b = TestChannel::new(ChannelKind::Sms, "phone-b");
    let d = TestDaemon::start(FAST_OUTBOX, vec![a.clone(), b.clone()]).await;
    let bound = create_key(&*d.store(), vec![Scope::Send, Scope::Read], Some("phone-b")).await;
    let with = |phone: &str, to: &str, extra: serde_json::Value| {
        let mut body = send_body(phone, "sms", to, "hi");
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };

    d.queue(&with(
        "phone-a",
        "+15551230001",
        serde_json::json!({"relay_message_id": "r-a"}),
    ))
    .await;
    // A faulty body: the same answer for the taken id as for a free one.
    let taken_bad = refusal(
        &d,
        &bound,
        &with(
            "phone-b",
            "12345",
            serde_json::json!({"relay_message_id": "r-a"}),
        ),
    )
    .await;
    let free_bad = refusal(
        &d,
        &bound,
        &with(
            "phone-b",
            "12345",
            serde_json::json!({"relay_message_id": "r-free"}),
        ),
    )
    .await;
    assert_eq!(taken_bad, free_bad);
    assert_eq!(taken_bad.1["field"], "to", "{taken_bad:?}");
    // A valid body: refused, naming the field but not the other phone.
    let (code, error) = refusal(
        &d,
        &bound,
        &with(
            "phone-b",
            "+15551230001",
            serde_json::json!({"relay_message_id": "r-a"}),
        ),
    )
    .await;
    assert_eq!(
        (code, error["field"].as_str()),
        (422, Some("relay_message_id"))
    );
    let said = error["message"].as_str().unwrap();
    assert!(
        !said.contains("phone") && said.contains("already used"),
        "{said}"
    );

    // phone-a's inbound, named as reply_to by phone-b's key.
    a.inject(phonerelay_channel::ChannelEvent::Inbound(
        phonerelay_channel::InboundMessage {
            channel: ChannelKind::Sms,
            phone_id: "phone-a".into(),
            from: "+15551230009".into(),
            text: "to phone-a".into(),
            subject: None,
            attachments: vec![],
            external_id: "sms-a-1".into(),
            reply_to: vec![],
            received_at_ms: now_ms(),
            meta: Default::default(),
        },
    ))
    .await
    .unwrap();
    let (_, inbound) = d.get("/api/v1/inbound", &d.admin_key).await;
    let a_inbound = inbound["messages"][0]["id"].as_str().unwrap();
    let other_phone = refusal(
        &d,
        &bound,
        &with(
            "phone-b",
            "+15551230001",
            serde_json::json!({"reply_to": a_inbound}),
        ),
    )
    .await;
    let nothing = refusal(
        &d,
        &bound,
        &with(
            "phone-b",
            "+15551230001",
            serde_json::json!({"reply_to": "no-such-inbound"}),
        ),
    )
    .await;
    assert_eq!(other_phone, nothing);
    assert_eq!(nothing.1["field"], "reply_to");
    assert_eq!(
        b.calls() + a.calls(),
        1,
        "only phone-a's first send went out"
    );
}

/// RFC 9110 §11.1: the scheme of `Authorization` is case-insensitive.
#[tokio::test]
async fn the_bearer_scheme_is_taken_in_any_case() {
    let d = TestDaemon::start(FAST_OUTBOX, vec![]).await;
    let status = |authorization: String| {
        d.http
            .get(format!("{}/api/v1/status", d.base))
            .header("authorization", authorization)
            .send()
    };
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let response = status(format!("{scheme} {}", d.admin_key)).await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{scheme}");
    }
    for refused in [
        format!("Basic {}", d.admin_key),
        format!("Bearer{}", d.admin_key),
    ] {
        let response = status(refused.clone()).await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{refused}");
    }
}

/// Rename `cursors`, where the pairing is kept, to `cursors_hidden` or
/// back, from a connection of the test's own: the daemon's next read of
/// the pairing fails with "no such table".
fn hide_cursors(db: &std::path::Path, hidden: bool) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    let (from, to) = if hidden {
        ("cursors", "cursors_hidden")
    } else {
        ("cursors_hidden", "cursors")
    };
    conn.execute_batch(&format!("ALTER TABLE {from} RENAME TO {to}"))
        .unwrap();
}

/// While the pairing cannot be read, `/api/v1/relay` answers 503 with the
/// `Retry-After` every `store_unavailable` carries; a key bound to a
/// phone other than the one the config names hears 404, as it does while
/// the store is fine, not of the outage.
#[tokio::test]
async fn the_relay_view_while_the_pairing_cannot_be_read() {
    let d = TestDaemon::start(
        &format!("{FAST_OUTBOX}\n[relay]\nphone_id = \"phone-a\"\n"),
        vec![],
    )
    .await;
    let store = d.store();
    let other = create_key(&*store, vec![Scope::Read], Some("phone-b")).await;
    let own = create_key(&*store, vec![Scope::Read], Some("phone-a")).await;
    let (code, body) = d.get("/api/v1/relay", &other).await;
    assert_eq!(code, 404, "{body}");

    hide_cursors(&d.db_path(), true);
    let (code, body) = d.get("/api/v1/relay", &other).await;
    assert_eq!(code, 404, "another phone's key learns nothing: {body}");
    for key in [&d.admin_key, &own] {
        let response = d
            .http
            .get(format!("{}/api/v1/relay", d.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let retry_after = response.headers().get("retry-after").cloned();
        let (code, body) = into_parts(response).await;
        assert_eq!(
            (code, body["error"]["code"].as_str()),
            (503, Some("store_unavailable")),
            "{body}"
        );
        assert_eq!(retry_after.as_ref().map(|v| v.to_str().unwrap()), Some("5"));
    }
    hide_cursors(&d.db_path(), false);
}
