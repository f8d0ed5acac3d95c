//! `GET /api/v1/inbound/unreadable`: what the channels could not read,
//! kept as it came; read scope, a key bound to a phone sees its own,
//! paged like `/api/v1/inbound`, and counted in the status and /metrics.

mod common;

use common::*;
use phonerelay::clock::now_ms;
use phonerelay::store::Scope;
use phonerelay_channel::{ChannelEvent, ChannelKind, UnreadableInbound};

fn unreadable(phone_id: &str, raw: &[u8]) -> ChannelEvent {
    ChannelEvent::Unreadable(UnreadableInbound {
        channel: ChannelKind::Sms,
        phone_id: phone_id.into(),
        raw: raw.to_vec(),
        origin: "SM:3".into(),
        reason: "cut short".into(),
        received_at_ms: now_ms(),
    })
}

#[tokio::test]
async fn unreadable_inbound_is_listed_to_read_keys_paged_and_counted() {
    let a = TestChannel::new(ChannelKind::Sms, "phone-a");
    let b = TestChannel::new(ChannelKind::Sms, "phone-b");
    let d = TestDaemon::start(FAST_OUTBOX, vec![a.clone(), b.clone()]).await;
    let store = d.store();
    a.inject(unreadable("phone-a", &[0x00, 0x04]))
        .await
        .unwrap();
    a.inject(unreadable("phone-a", &[0x00, 0x05]))
        .await
        .unwrap();
    // The same bytes again (read again after a crash): kept once.
    a.inject(unreadable("phone-a", &[0x00, 0x05]))
        .await
        .unwrap();
    b.inject(unreadable("phone-b", &[0xAB])).await.unwrap();

    let path = "/api/v1/inbound/unreadable";
    let (code, err) = d.get(path, "").await;
    assert_eq!(
        (code, err["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let send_only = create_key(&*store, vec![Scope::Send], None).await;
    let (code, err) = d.get(path, &send_only).await;
    assert_eq!(
        (code, err["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{err}"
    );

    let read = create_key(&*store, vec![Scope::Read], None).await;
    let (code, page) = d.get(&format!("{path}?limit=2"), &read).await;
    assert_eq!(code, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["phone_id"], "phone-b");
    assert_eq!(items[0]["raw_hex"], "AB");
    assert_eq!(items[1]["raw_hex"], "0005");
    assert_eq!(items[1]["origin"], "SM:3");
    assert_eq!(items[1]["reason"], "cut short");
    assert_eq!(items[1]["channel"], "sms");
    let cursor = page["next_cursor"].as_str().unwrap();
    let (code, page) = d
        .get(&format!("{path}?limit=2&cursor={cursor}"), &read)
        .await;
    assert_eq!(code, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["raw_hex"], "0004");
    assert!(page["next_cursor"].is_null(), "{page}");

    // A key bound to phone-b sees phone-b's only, and cannot ask for another's.
    let bound = create_key(&*store, vec![Scope::Read], Some("phone-b")).await;
    let (code, page) = d.get(path, &bound).await;
    assert_eq!(code, 200);
    let phones: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["phone_id"].as_str().unwrap())
        .collect();
    assert_eq!(phones, ["phone-b"]);
    let (code, _) = d.get(&format!("{path}?phone_id=phone-a"), &bound).await;
    assert_eq!(code, 403);
    let (code, err) = d.get(&format!("{path}?limit=0"), &read).await;
    assert_eq!(
        (code, err["error"]["field"].as_str()),
        (400, Some("limit")),
        "{err}"
    );

    // The status counts them per endpoint.
    let (code, status) = d.get("/api/v1/status", &read).await;
    assert_eq!(code, 200);
    let counts: Vec<(String, u64)> = status["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["phone_id"].as_str().unwrap().to_string(),
                e["unreadable_inbound"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [("phone-a".to_string(), 2), ("phone-b".to_string(), 1)]
    );
    // And /metrics, for alerting.
    let metrics = d.metrics_text().await;
    for line in [
        "phonerelay_inbound_unreadable{channel=\"sms\",phone_id=\"phone-a\"} 2",
        "phonerelay_inbound_unreadable{channel=\"sms\",phone_id=\"phone-b\"} 1",
    ] {
        assert!(metrics.contains(line), "{line}: {metrics}");
    }
}
