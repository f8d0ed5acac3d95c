//! Reply routing asks who wrote to a number last before its reply came,
//! by comparing event times (`clock::event_ms`). A box whose clock comes
//! back behind after a restart (no real-time clock, NTP not yet synced)
//! gave the reply a time before the last send, and routed it to whoever
//! wrote before that. Its own process: it raises the event clock's floor,
//! which is process-wide.

mod common;

use std::sync::Arc;

use common::{accept_new, claim_all, new_outbound, open_store};
use phonerelay::inbound::StoreSink;
use phonerelay::metrics::Metrics;
use phonerelay::store::{InboundFilter, RouteQuery, SendOutcome, Store};
use phonerelay_channel::{ChannelEvent, ChannelKind, EventSink, InboundMessage, SendReceipt};

/// The store at `db` opened again, as at a restart, and the sink every
/// SMS adapter of endpoint `m1` commits through.
fn reopened(db: &std::path::Path) -> (Arc<dyn Store>, StoreSink) {
    let store: Arc<dyn Store> = Arc::new(open_store(db));
    let sink = StoreSink::new(
        store.clone(),
        Arc::new(Metrics::default()),
        ChannelKind::Sms,
        "m1".into(),
    );
    (store, sink)
}

/// An SMS from `from` to endpoint `m1`, received at `at_ms`.
fn text_from(from: &str, text: &str, external_id: &str, at_ms: i64) -> InboundMessage {
    InboundMessage {
        channel: ChannelKind::Sms,
        phone_id: "m1".into(),
        from: from.into(),
        text: text.into(),
        subject: None,
        attachments: Vec::new(),
        external_id: external_id.into(),
        reply_to: Vec::new(),
        received_at_ms: at_ms,
        meta: Default::default(),
    }
}

#[tokio::test]
async fn a_reply_after_a_restart_with_the_clock_behind_goes_to_who_wrote_last() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite3");
    let now = phonerelay::clock::now_ms();
    // Before the restart, Bob wrote an hour ago and Alice a minute ago, by
    // a clock ten minutes ahead of the one the box comes back with.
    {
        let store = open_store(&db);
        for (source, at) in [("bob", now - 3_600_000), ("alice", now + 600_000)] {
            let mut message = new_outbound(&format!("from {source}"), at);
            message.source = Some(source.into());
            let id = accept_new(&store, message).await;
            assert_eq!(claim_all(&store, at, 60_000).await.len(), 1);
            let sent = SendOutcome::Sent {
                receipt: SendReceipt::single(format!("ext-{source}")),
                now_ms: at,
            };
            store.record_outcomes(vec![(id, sent)]).await.unwrap();
        }
    }
    // After it, the number replies; committed as every adapter's is.
    let (store, sink) = reopened(&db);
    let reply = text_from("+15551230001", "yes", "sms:reply", now);
    sink.deliver(ChannelEvent::Inbound(reply)).await.unwrap();
    let all = InboundFilter {
        limit: 10,
        ..Default::default()
    };
    let reply = store.list_inbound(all).await.unwrap().remove(0);
    assert!(reply.committed_at_ms > now + 600_000, "after Alice's send");

    // As the forwarder asks (relay/routing.rs).
    let routed = store
        .route_reply(RouteQuery {
            channel: ChannelKind::Sms,
            phone_id: "m1".into(),
            from: reply.from.clone(),
            reply_to: reply.reply_to.clone(),
            since_ms: reply.committed_at_ms - 30 * 86_400_000,
            as_of_ms: reply.committed_at_ms,
            relay_messages_after: 0,
        })
        .await
        .unwrap()
        .expect("a route");
    assert_eq!(routed.to, "alice");
}

/// An event dated far ahead (a clock that ran a year fast for a while, or a
/// backup from such a box) is not taken as the floor: every later event
/// would be dated a year ahead, and retention would keep it as long.
#[tokio::test]
async fn an_event_dated_far_ahead_is_not_the_floor_of_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite3");
    let now = phonerelay::clock::now_ms();
    let reply = |n: u32| {
        text_from(
            "+15551230002",
            &format!("reply {n}"),
            &format!("sms:far-{n}"),
            now,
        )
    };
    {
        let store = open_store(&db);
        let year = 365 * 86_400_000;
        store.commit_inbound(reply(1), now + year).await.unwrap();
    }
    let (store, sink) = reopened(&db);
    sink.deliver(ChannelEvent::Inbound(reply(2))).await.unwrap();
    let all = InboundFilter {
        limit: 10,
        ..Default::default()
    };
    let committed = store.list_inbound(all).await.unwrap();
    let new = committed.iter().find(|m| m.text == "reply 2").unwrap();
    assert!(
        new.committed_at_ms < now + 86_400_000,
        "dated {} ms ahead",
        new.committed_at_ms - now
    );
}
