//! Retention: old ended messages and forwarded inbound go; live messages
//! and anything not yet handed over stay, unless no relay is named to take
//! inbound at all.

mod common;

use common::{TestDaemon, accept_new, claim_all, config_text, new_outbound, open_store};
use phonerelay::clock::now_ms;
use phonerelay::relay::Pairing;
use phonerelay::relay::settings::save_pairing;
use phonerelay::store::*;
use phonerelay_channel::{ChannelKind, InboundMessage, SendReceipt, message_cursor};

fn inbound(external_id: &str, now: i64) -> InboundMessage {
    InboundMessage {
        channel: ChannelKind::Sms,
        phone_id: "m1".into(),
        from: "+15551230001".into(),
        text: external_id.into(),
        subject: None,
        attachments: vec![],
        external_id: external_id.into(),
        reply_to: vec![],
        received_at_ms: now,
        meta: Default::default(),
    }
}

/// Two inbound messages committed at `now`: one the relay has taken, then
/// one still waiting for it; their ids, in that order.
async fn forwarded_and_waiting(store: &SqliteStore, now: i64) -> (String, String) {
    let forwarded = forwarded(store, "in-1", now).await;
    let waiting = store
        .commit_inbound(inbound("in-2", now), now)
        .await
        .unwrap();
    (forwarded, waiting.id)
}

/// An inbound message `external_id` committed at `now` and taken by the
/// relay; its id.
async fn forwarded(store: &SqliteStore, external_id: &str, now: i64) -> String {
    let committed = store
        .commit_inbound(inbound(external_id, now), now)
        .await
        .unwrap();
    let delivered = RelayInboundOutcome::Delivered {
        to: "alice".into(),
        route: "default".into(),
        now_ms: now,
    };
    store
        .record_relay_inbound(&committed.id, delivered)
        .await
        .unwrap();
    committed.id
}

#[tokio::test]
async fn prune_deletes_only_old_ended_and_forwarded_messages() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("phonerelay.sqlite3");
    let store = open_store(&db);
    let now = now_ms();
    let mut ids = std::collections::HashMap::new();
    for name in ["sent-1", "sent-2", "live-1", "recent-1"] {
        ids.insert(name, accept_new(&store, new_outbound(name, now)).await);
    }
    let claimed = claim_all(&store, now, 60_000).await;
    assert_eq!(claimed.len(), 4);
    for name in ["sent-1", "sent-2", "recent-1"] {
        let receipt = SendReceipt::single(format!("ext-{name}"));
        store
            .record_outcome(&ids[name], sent(receipt, now))
            .await
            .unwrap();
    }
    store.requeue_abandoned(now, 12).await.unwrap(); // live-1 is queued again
    // One being sent: claimed, its outcome not in yet.
    let sending = accept_new(&store, new_outbound("sending-1", now)).await;
    assert_eq!(claim_all(&store, now, 60_000).await.len(), 2);
    let (forwarded, waiting) = forwarded_and_waiting(&store, now).await;
    let dead = dead_letter(&store, "in-dead", now).await;

    // Age everything but "recent-1" by 100 days, as time would.
    let old = now - 100 * 24 * 3600 * 1000;
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute(
            "UPDATE outbound SET updated_at = ?1 WHERE body != 'recent-1'",
            [old],
        )
        .unwrap();
        conn.execute("UPDATE inbound SET committed_at = ?1", [old])
            .unwrap();
    }
    let cutoff = now - 90 * 24 * 3600 * 1000;
    let removed = prune_all(&store, cutoff, UnforwardedInbound::Keep).await;
    assert_eq!(removed, 3, "sent-1, sent-2 and the forwarded inbound");
    assert!(store.get_outbound(&ids["sent-1"]).await.unwrap().is_none());
    assert!(store.get_outbound(&ids["sent-2"]).await.unwrap().is_none());
    assert!(
        store.get_outbound(&ids["live-1"]).await.unwrap().is_some(),
        "queued is never deleted"
    );
    assert!(
        store.get_outbound(&sending).await.unwrap().is_some(),
        "sending is never deleted"
    );
    assert!(
        store.get_inbound(&dead).await.unwrap().is_some(),
        "a dead letter is never deleted"
    );
    assert!(
        store
            .get_outbound(&ids["recent-1"])
            .await
            .unwrap()
            .is_some(),
        "younger than the cutoff"
    );
    assert!(store.get_inbound(&forwarded).await.unwrap().is_none());
    assert!(
        store.get_inbound(&waiting).await.unwrap().is_some(),
        "not yet forwarded"
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let orphans: i64 = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM outbound_events WHERE message_id IN (?1, ?2))
                  + (SELECT COUNT(*) FROM outbound_parts WHERE message_id IN (?1, ?2))",
            [&ids["sent-1"], &ids["sent-2"]],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0, "history and parts go with their message");

    // With no relay to take it, the inbound that waited goes too.
    let removed = prune_all(&store, cutoff, UnforwardedInbound::Prune).await;
    assert_eq!(removed, 1);
    assert!(store.get_inbound(&waiting).await.unwrap().is_none());
    assert!(store.get_outbound(&ids["live-1"]).await.unwrap().is_some());
    assert!(store.get_outbound(&sending).await.unwrap().is_some());
    assert!(
        store.get_inbound(&dead).await.unwrap().is_some(),
        "an operator decides about a dead letter, relay or not"
    );
}

/// An inbound message `external_id` committed at `now` that the relay
/// refused for good (a dead letter); its id.
async fn dead_letter(store: &SqliteStore, external_id: &str, now: i64) -> String {
    let committed = store
        .commit_inbound(inbound(external_id, now), now)
        .await
        .unwrap();
    let refused = RelayInboundOutcome::Dead {
        to: None,
        route: None,
        code: "relay_http_422".into(),
        reason: "refused".into(),
        now_ms: now,
    };
    store
        .record_relay_inbound(&committed.id, refused)
        .await
        .unwrap();
    committed.id
}

/// Inbound the relay took while the clock ran a day ahead, then stepped
/// back: its rows are the oldest by seq but not yet due. Retention must
/// prune the old rows after them, not stop at those (it looked only at each
/// state's oldest batch by seq, so while they stayed nothing in that state
/// went and the disk grew); the rows ahead go once they are due.
#[tokio::test]
async fn inbound_dated_ahead_by_a_clock_stepped_back_does_not_stall_retention() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("phonerelay.sqlite3");
    let store = open_store(&db);
    let now = now_ms();
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(forwarded(&store, &format!("in-{n}"), now).await);
    }
    let day = 24 * 3600 * 1000;
    let old = now - 100 * day;
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        // The first two (lowest seqs) dated a day ahead, the rest old.
        conn.execute(
            "UPDATE inbound SET committed_at = CASE WHEN id IN (?1, ?2) THEN ?3 ELSE ?4 END",
            rusqlite::params![ids[0], ids[1], now + day, old],
        )
        .unwrap();
    }
    let cutoff = now - 90 * day;
    let removed = prune_all(&store, cutoff, UnforwardedInbound::Keep).await;
    assert_eq!(removed, 2, "the two old rows behind the ones dated ahead");
    for id in &ids[..2] {
        assert!(
            store.get_inbound(id).await.unwrap().is_some(),
            "not yet due"
        );
    }
    for id in &ids[2..] {
        assert!(store.get_inbound(id).await.unwrap().is_none(), "old");
    }
    // Once the rows dated ahead are due, they go too.
    let removed = prune_all(&store, now + 2 * day, UnforwardedInbound::Keep).await;
    assert_eq!(removed, 2);
}

/// Prune in batches of one row per call until nothing is left to delete.
async fn prune_all(store: &SqliteStore, cutoff: i64, unforwarded: UnforwardedInbound) -> usize {
    let mut removed = 0;
    loop {
        let n = store.prune(cutoff, 1, unforwarded, None).await.unwrap();
        if n == 0 {
            return removed;
        }
        removed += n;
    }
}

/// Start a daemon with `relay` config (and `pairing` stored) on a store
/// holding two inbound messages 100 days old, one the relay took and one
/// not forwarded; once its first retention sweep (at start) has deleted
/// the first, say whether it kept the second.
async fn keeps_old_unforwarded_inbound(relay: &str, pairing: Option<Pairing>) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state").join("phonerelay.sqlite3");
    let (forwarded, waiting) = {
        let store = open_store(&db);
        let (forwarded, waiting) = forwarded_and_waiting(&store, now_ms()).await;
        save_pairing(&store, pairing.as_ref()).await.unwrap();
        (forwarded, waiting)
    };
    let old = now_ms() - 100 * 24 * 3600 * 1000;
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE inbound SET committed_at = ?1", [old])
        .unwrap();
    drop(conn);
    let text = config_text(&dir, &format!("retention_days = 90\n{relay}"));
    let mut d = TestDaemon::start_in(dir, text, vec![]).await;
    let store = d.store();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.get_inbound(&forwarded).await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "no retention sweep at start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let kept = store.get_inbound(&waiting).await.unwrap().is_some();
    d.stop().await;
    kept
}

#[tokio::test]
async fn a_bridge_with_no_relay_lets_old_inbound_go_with_age() {
    assert!(!keeps_old_unforwarded_inbound("", None).await);
}

#[tokio::test]
async fn a_bridge_with_a_relay_named_keeps_inbound_until_the_relay_takes_it() {
    // Named but with no key yet, so no link runs: the relay is on its way.
    let relay = "[relay]\nurl = \"http://127.0.0.1:9\"\nphone_id = \"ph_1\"\n";
    assert!(keeps_old_unforwarded_inbound(relay, None).await);
}

#[tokio::test]
async fn a_paired_bridge_keeps_inbound_until_the_relay_takes_it() {
    let pairing = Pairing {
        url: "http://127.0.0.1:9".into(),
        phone_id: "ph_1".into(),
        bridge_key_id: "k".into(),
        paired_at_ms: now_ms(),
        key_sha256: None,
    };
    assert!(keeps_old_unforwarded_inbound("", Some(pairing)).await);
}

#[tokio::test]
async fn the_sweep_deletes_the_adapter_state_of_ended_and_vanished_messages_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("phonerelay.sqlite3"));
    let now = now_ms();
    let mut ids = std::collections::HashMap::new();
    for name in ["live-1", "sent-1", "cancelled-1"] {
        ids.insert(name, accept_new(&store, new_outbound(name, now)).await);
    }
    let mut expiring = new_outbound("too late", now);
    expiring.expires_at_ms = now - 1;
    ids.insert("expired-1", accept_new(&store, expiring).await);
    ids.insert("never-was", "never-was".to_string());
    assert_eq!(store.expire_due(now, 100).await.unwrap(), 1);
    store
        .cancel_outbound(&ids["cancelled-1"], now)
        .await
        .unwrap();
    let claimed = claim_all(&store, now, 60_000).await;
    let claimed: Vec<&str> = claimed.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(claimed, [&ids["live-1"], &ids["sent-1"]]);
    let receipt = SendReceipt::single("ext-sent-1");
    store
        .record_outcome(&ids["sent-1"], sent(receipt, now))
        .await
        .unwrap();

    // A long SMS's accepted parts, say, for each; plus an ordinary cursor.
    let names = ["live-1", "sent-1", "cancelled-1", "expired-1", "never-was"];
    for name in names {
        let cursor = message_cursor(&ids[name], "sms-parts");
        store
            .save_cursor("sms:m1", &cursor, "0 17 x")
            .await
            .unwrap();
    }
    store.save_cursor("sms:m1", "offset", "42").await.unwrap();

    assert_eq!(store.prune_message_cursors().await.unwrap(), 4);
    for name in names {
        let kept = store
            .load_cursor("sms:m1", &message_cursor(&ids[name], "sms-parts"))
            .await
            .unwrap();
        assert_eq!(kept.is_some(), name == "live-1", "{name}");
    }
    assert_eq!(
        store
            .load_cursor("sms:m1", "offset")
            .await
            .unwrap()
            .as_deref(),
        Some("42")
    );
    assert_eq!(store.prune_message_cursors().await.unwrap(), 0);
}

#[tokio::test]
async fn with_retention_off_the_daemon_still_sweeps_the_state_of_ended_messages_and_stale_reports()
{
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state").join("phonerelay.sqlite3");
    let gone = message_cursor("gone-1", "sms-parts");
    let live = {
        let store = open_store(&db);
        let now = now_ms();
        let id = accept_new(&store, new_outbound("waits", now)).await;
        let live = message_cursor(&id, "sms-parts");
        store.save_cursor("sms:m1", &live, "0 17 x").await.unwrap();
        store.save_cursor("sms:m1", &gone, "0 18 y").await.unwrap();
        live
    };
    // Delivery reports for sends never recorded: one kept two days ago,
    // one just now.
    let now = now_ms();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO outbound_early_status
                (channel, phone_id, external_id, status, at, kept_at)
             VALUES ('sms', 'm1', 'mr-old', 'delivered', ?1, ?1),
                    ('sms', 'm1', 'mr-new', 'delivered', ?2, ?2)",
            [now - 2 * 86_400_000, now],
        )
        .unwrap();
    // No channel, so "live-1" stays queued; retention keeps everything
    // (the extra text follows `[storage]`, so the key lands there).
    let text = config_text(&dir, "retention_days = 0\n");
    let mut d = TestDaemon::start_in(dir, text, vec![]).await;
    let store = d.store();
    // The sweep's first round runs as the daemon starts.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.load_cursor("sms:m1", &gone).await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the cursor of a message that never was is still there"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        store.load_cursor("sms:m1", &live).await.unwrap().as_deref(),
        Some("0 17 x")
    );
    let early = |db: &std::path::Path| -> Vec<String> {
        rusqlite::Connection::open(db)
            .unwrap()
            .prepare("SELECT external_id FROM outbound_early_status")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    while early(&d.db_path()).len() > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the early report kept two days ago is still there"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(early(&d.db_path()), ["mr-new"]);
    d.stop().await;
}

/// A message from the relay whose status has not reached the relay yet
/// (its events lie past the relay's status cursor: the relay was away
/// longer than the retention) is kept until they have; one reported, and
/// one not from the relay, go with age as before.
#[tokio::test]
async fn a_relay_message_whose_status_is_not_yet_reported_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("phonerelay.sqlite3");
    let store = open_store(&db);
    let now = now_ms();
    let mut ids = Vec::new();
    for relay_id in ["r-1", "r-2"] {
        match store
            .accept_relay_outbound(new_outbound(relay_id, now), relay_id.into())
            .await
            .unwrap()
        {
            AcceptOutcome::Created { id } => ids.push(id),
            other => panic!("{other:?}"),
        }
    }
    let plain = accept_new(&store, new_outbound("plain", now)).await;
    assert_eq!(claim_all(&store, now, 60_000).await.len(), 3);
    for id in ids.iter().chain([&plain]) {
        let receipt = SendReceipt::single(format!("ext-{id}"));
        store.record_outcome(id, sent(receipt, now)).await.unwrap();
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    let last_event = |id: &str| -> i64 {
        conn.query_row(
            "SELECT MAX(event_id) FROM outbound_events WHERE message_id = ?1",
            [id],
            |row| row.get(0),
        )
        .unwrap()
    };
    // The reporter has got as far as r-1's last event, not r-2's.
    let cursor = last_event(&ids[0]);
    assert!(last_event(&ids[1]) > cursor);
    conn.execute(
        "UPDATE outbound SET updated_at = ?1",
        [now - 100 * 24 * 3600 * 1000],
    )
    .unwrap();
    let cutoff = now - 90 * 24 * 3600 * 1000;

    let mut removed = 0;
    while let n @ 1.. = store
        .prune(cutoff, 1, UnforwardedInbound::Keep, Some(cursor))
        .await
        .unwrap()
    {
        removed += n;
    }
    assert_eq!(removed, 2, "r-1 and the plain message");
    assert!(store.get_outbound(&ids[0]).await.unwrap().is_none());
    assert!(store.get_outbound(&plain).await.unwrap().is_none());
    assert!(
        store.get_outbound(&ids[1]).await.unwrap().is_some(),
        "not reported yet"
    );

    // Reported: it goes too.
    let reported = last_event(&ids[1]);
    let n = store
        .prune(cutoff, 10, UnforwardedInbound::Keep, Some(reported))
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(store.get_outbound(&ids[1]).await.unwrap().is_none());
}

/// The batch bounds one writer job as a whole, whatever kinds of rows it
/// deletes: given to each kind afresh (ended sends, each inbound state,
/// unreadable items), one job deleted several times the batch, and every
/// accept committed with it waited for all of it.
#[tokio::test]
async fn one_prune_deletes_no_more_than_its_batch_across_kinds_of_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("phonerelay.sqlite3"));
    let now = now_ms();
    let mut sends = Vec::new();
    for n in 0..3 {
        sends.push(accept_new(&store, new_outbound(&format!("sent-{n}"), now)).await);
    }
    assert_eq!(claim_all(&store, now, 60_000).await.len(), 3);
    for id in &sends {
        let receipt = SendReceipt::single(format!("ext-{id}"));
        store.record_outcome(id, sent(receipt, now)).await.unwrap();
    }
    for n in 0..3 {
        forwarded(&store, &format!("taken-{n}"), now).await;
        store
            .commit_inbound(inbound(&format!("waiting-{n}"), now), now)
            .await
            .unwrap();
    }
    let cutoff = now + 2 * 24 * 3600 * 1000;
    let mut jobs = Vec::new();
    loop {
        let n = store
            .prune(cutoff, 4, UnforwardedInbound::Prune, None)
            .await
            .unwrap();
        jobs.push(n);
        if n < 4 {
            break;
        }
    }
    assert_eq!(jobs, [4, 4, 1], "nine rows, at most four a job");
}

/// The expiry sweep ends at most its limit of messages past their ttl a
/// writer job, the rest at the next: a backlog ended in one job held every
/// accept behind it.
#[tokio::test]
async fn the_expiry_sweep_ends_at_most_its_limit_a_job() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("phonerelay.sqlite3"));
    let now = now_ms();
    for n in 0..3 {
        let mut expiring = new_outbound(&format!("too late {n}"), now);
        expiring.expires_at_ms = now - 1;
        accept_new(&store, expiring).await;
    }
    let jobs = [
        store.expire_due(now, 2).await.unwrap(),
        store.expire_due(now, 2).await.unwrap(),
        store.expire_due(now, 2).await.unwrap(),
    ];
    assert_eq!(jobs, [2, 1, 0]);
}
