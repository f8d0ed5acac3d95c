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
    let read_only = create_key(&*store, vec![Scope::Read], None).await;
    let (code, err) = d.post("/api/v1/messages", &read_only, &body).await;
    assert_eq!(
        (code, err["error"]["code"].as_str()),
        (403, Some("forbidden"))
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
    let (code, _) = d.get("/api/v1/messages", &send_only).await;
    assert_eq!(code, 403);
    let (code, _) = d.get("/api/v1/status", &send_only).await;
    assert_eq!(code, 403);

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
