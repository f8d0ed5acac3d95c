//! Conversations for reply routing: who in pChat wrote to which external
//! address, and the keys (external message ids, thread ids) a reply may
//! carry. Recorded in the transaction that records the send.

use phonerelay_channel::{ChannelKind, SendReceipt};
use rusqlite::{Connection, OptionalExtension, params};

use super::rows::live;
use crate::store::*;
use phonerelay_channel::normalize_address as normalize;

/// Where a sent message went and who in pChat sent it, as the outcome
/// reads it from the message's row.
pub struct SentTo {
    pub channel: String,
    pub phone_id: String,
    pub recipient: String,
    pub source: Option<String>,
    /// When the message may first have reached its recipient, if an
    /// attempt before the one ending now counted (`went_out_at`, an event
    /// time); read only while the message is live.
    pub went_out_at: Option<i64>,
}

/// The latest event time (`clock::event_ms`) the store holds: when a
/// send to a person last went out (or first may have, for one that waits
/// for its retry), or a message was last committed. Each read walks one
/// end of an index (the last through the few rows of `outbound_went_out`),
/// or the table, by `seq`.
pub fn latest_event_ms(conn: &Connection) -> StoreResult<Option<i64>> {
    Ok(conn.query_row(LATEST_EVENT, [], |row| row.get(0))?)
}

/// See [`latest_event_ms`]. The aggregate skips a table with no rows (a
/// NULL), as the many-argument MAX() would not.
pub(crate) const LATEST_EVENT: &str = concat!(
    "SELECT MAX(at) FROM (
        SELECT MAX(last_at) AS at FROM conversations
        UNION ALL SELECT MAX(created_at) FROM conversation_keys
        UNION ALL SELECT * FROM
            (SELECT committed_at FROM inbound ORDER BY seq DESC LIMIT 1)
        UNION ALL SELECT MAX(went_out_at) FROM outbound WHERE ",
    live!(),
    " AND went_out_at IS NOT NULL)"
);

/// After a send succeeded: if a pChat user (`source`) sent it, remember
/// the conversation and every key a reply could name, as of when the
/// message may first have reached its recipient. That is the end of its
/// first attempt that counted (`SentTo::went_out_at`), not of the one that
/// succeeded: the parts of an SMS an earlier attempt got out before it
/// failed are read before the rest go, and a reply that came between the
/// attempts is this send's. Sent at the first try, `sent_at_ms`.
pub fn record_sent(
    conn: &Connection,
    message_id: &str,
    sent: &SentTo,
    receipt: &SendReceipt,
    sent_at_ms: i64,
) -> StoreResult<()> {
    // The message's own id stands as a key too, as for one that ended
    // unsent: a channel whose receipt names none (the contract does not
    // ask for one) left the walk-back in `route` nothing of this send, and
    // a reply that waited while someone else wrote went to whoever wrote
    // before it.
    let keys = receipt
        .external_ids
        .iter()
        .chain(&receipt.thread_keys)
        .map(String::as_str)
        .chain(std::iter::once(message_id));
    let at_ms = sent.went_out_at.unwrap_or(sent_at_ms);
    record_conversation(conn, message_id, sent, keys, at_ms)
}

/// A message that ends unsent (failed, expired, cancelled) after an
/// attempt that may have put some of it out (`SentTo::went_out_at`): a
/// reply may answer what went out, and it goes to the pChat user who sent
/// that, not to whoever wrote to the recipient before. No reply key is
/// known (no receipt), so the message's own id stands as one: the
/// walk-back in `route` (a reply that waited while someone else wrote)
/// finds this send by its keys.
pub fn record_ended_unsent(conn: &Connection, message_id: &str, sent: &SentTo) -> StoreResult<()> {
    let Some(at_ms) = sent.went_out_at else {
        return Ok(());
    };
    record_conversation(conn, message_id, sent, std::iter::once(message_id), at_ms)
}

fn record_conversation<'k>(
    conn: &Connection,
    message_id: &str,
    sent: &SentTo,
    keys: impl Iterator<Item = &'k str>,
    at_ms: i64,
) -> StoreResult<()> {
    let Ok(channel) = sent.channel.parse::<ChannelKind>() else {
        return Ok(());
    };
    let (phone_id, recipient) = (&sent.phone_id, &sent.recipient);
    let external = normalize(channel, recipient);
    let Some(source) = &sent.source else {
        return end_conversation(conn, channel, phone_id, &external, message_id, at_ms);
    };
    // Outcomes of concurrent sends can be recorded out of the order they
    // went out in (the times come from `clock::event_ms`, which only goes
    // forward): an older send recorded later leaves the newer one's
    // conversation and reply keys as they are.
    conn.prepare_cached(
        "INSERT INTO conversations (channel, phone_id, external, pchat_to, message_id, last_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (channel, phone_id, external) DO UPDATE SET
            pchat_to = excluded.pchat_to, message_id = excluded.message_id,
            last_at = excluded.last_at
         WHERE excluded.last_at >= conversations.last_at",
    )?
    .execute(params![
        channel.as_str(),
        phone_id,
        external,
        source,
        message_id,
        at_ms
    ])?;
    for key in keys {
        conn.prepare_cached(
            "INSERT INTO conversation_keys
                (channel, phone_id, thread_key, external, pchat_to, message_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (channel, phone_id, thread_key) DO UPDATE SET
                external = excluded.external, pchat_to = excluded.pchat_to,
                message_id = excluded.message_id, created_at = excluded.created_at
             WHERE excluded.created_at >= conversation_keys.created_at",
        )?
        .execute(params![
            channel.as_str(),
            phone_id,
            key.trim(),
            external,
            source,
            message_id,
            at_ms
        ])?;
    }
    Ok(())
}

/// A send without a pChat user (`source`: the operator's own, through the
/// API or `phonerelay send`) to a recipient a pChat user wrote to before:
/// the conversation is no longer that user's, and a reply after it goes by
/// default (`NO_USER`), not to someone who did not write what it answers.
/// Only an existing conversation is changed: a recipient no pChat user
/// wrote to costs no write (every send of a bridge without a relay). The
/// send's id stands as its key, so that the walk-back in [`route`] (a
/// reply that waited while a pChat user wrote after it) finds this send,
/// not the pChat user's before it.
fn end_conversation(
    conn: &Connection,
    channel: ChannelKind,
    phone_id: &str,
    external: &str,
    message_id: &str,
    at_ms: i64,
) -> StoreResult<()> {
    let ended = conn
        .prepare_cached(
            "UPDATE conversations SET pchat_to = ?4, message_id = ?5, last_at = ?6
             WHERE channel = ?1 AND phone_id = ?2 AND external = ?3 AND last_at <= ?6",
        )?
        .execute(params![
            channel.as_str(),
            phone_id,
            external,
            NO_USER,
            message_id,
            at_ms
        ])?;
    if ended > 0 {
        conn.prepare_cached(
            "INSERT INTO conversation_keys
                (channel, phone_id, thread_key, external, pchat_to, message_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?3, ?6)
             ON CONFLICT (channel, phone_id, thread_key) DO NOTHING",
        )?
        .execute(params![
            channel.as_str(),
            phone_id,
            message_id,
            external,
            NO_USER,
            at_ms
        ])?;
    }
    Ok(())
}

/// A send went out whose pChat user the store cannot record (its outcome
/// recorded plainly, `record_outcome_plainly`): as for one with none, the
/// recipient's conversation is ended, so a reply after it goes by
/// default, not to the pChat user who wrote before.
pub fn end_for_an_unknown_writer(
    conn: &Connection,
    message_id: &str,
    sent: &SentTo,
    sent_at_ms: i64,
) -> StoreResult<()> {
    let Ok(channel) = sent.channel.parse::<ChannelKind>() else {
        return Ok(());
    };
    let external = normalize(channel, &sent.recipient);
    let at_ms = sent.went_out_at.unwrap_or(sent_at_ms);
    end_conversation(conn, channel, &sent.phone_id, &external, message_id, at_ms)
}

/// A conversation's `pchat_to` when its last send had no pChat user.
const NO_USER: &str = "";

/// The recipients of an endpoint's sends from pChat users that have no
/// outcome yet and may be what a reply that arrived at ?3 answers:
/// - those under way (`sending`) whose attempt began before it: the
///   attempt may put the message out before it ends, and its time is
///   known only then (one that began after the reply came is dated after
///   it, whatever it does, and cannot be what it answers: waited for, it
///   sent the reply to `default` on a slow modem);
/// - those whose first attempt that counted ended before it (`went_out_at`),
///   whatever their status (`queued` for their retry, or in it): part of
///   the message may be out, and its conversation will be timed from then
///   (`record_sent`).
///
/// Each half reads a partial index, so neither walks the queue: the
/// `live!()` term lets SQLite take the claim index (it does not infer it
/// from `status = 'sending'`), which gives the endpoint's `sending` rows
/// only, at most its concurrency; `outbound_went_out` holds only live
/// messages with an attempt behind them, and is read up to ?3.
pub(crate) const SEND_UNSETTLED: &str = concat!(
    "SELECT recipient FROM outbound WHERE channel = ?1 AND phone_id = ?2
     AND status = 'sending' AND ",
    live!(),
    " AND source IS NOT NULL AND COALESCE(attempt_at, created_at) <= ?3
     UNION ALL
     SELECT recipient FROM outbound WHERE channel = ?1 AND phone_id = ?2 AND ",
    live!(),
    " AND went_out_at IS NOT NULL AND went_out_at <= ?3 AND source IS NOT NULL"
);

/// See `Store::send_unsettled`. The recipient is compared as routing
/// spells it, so a send to `Ann@Example.com` holds a reply from
/// `ann@example.com`, as its conversation will take it.
pub fn send_unsettled(conn: &Connection, q: &RouteQuery) -> StoreResult<bool> {
    let sender = normalize(q.channel, &q.from);
    let mut stmt = conn.prepare_cached(SEND_UNSETTLED)?;
    let mut rows = stmt.query(params![q.channel.as_str(), q.phone_id, q.as_of_ms])?;
    while let Some(row) = rows.next()? {
        let recipient: String = row.get(0)?;
        if normalize(q.channel, &recipient) == sender {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The most exact match: a reply key, then the sender's latest
/// conversation on this endpoint, both as they stood when the reply
/// arrived (`as_of_ms`).
pub fn route(conn: &Connection, q: &RouteQuery) -> StoreResult<Option<RouteMatch>> {
    // Each match's pChat user counts only if its send was this relay's.
    let this_relays = |(to, message_id): (String, String)| {
        this_relays_send(&message_id, q.relay_messages_after).then_some(to)
    };
    for key in &q.reply_to {
        // A key recorded (or taken over by another send) after the reply
        // arrived is not what it answers.
        let found: Option<(String, String)> = conn
            .prepare_cached(
                "SELECT pchat_to, message_id FROM conversation_keys
                 WHERE channel = ?1 AND phone_id = ?2 AND thread_key = ?3
                   AND created_at >= ?4 AND created_at <= ?5",
            )?
            .query_row(
                params![
                    q.channel.as_str(),
                    q.phone_id,
                    key.trim(),
                    q.since_ms,
                    q.as_of_ms
                ],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        // A key of a send no pChat user wrote, or of another relay's
        // user: it goes by default.
        if let Some(found) = found {
            let to = this_relays(found).filter(|to| to != NO_USER);
            return Ok(to.map(|to| RouteMatch { to, route: "reply" }));
        }
    }
    let external = normalize(q.channel, &q.from);
    let latest: Option<(String, String, i64)> = conn
        .prepare_cached(
            "SELECT pchat_to, message_id, last_at FROM conversations
             WHERE channel = ?1 AND phone_id = ?2 AND external = ?3 AND last_at >= ?4",
        )?
        .query_row(
            params![q.channel.as_str(), q.phone_id, external, q.since_ms],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    let to = match latest {
        Some((to, message_id, last_at)) if last_at <= q.as_of_ms => this_relays((to, message_id)),
        // Someone wrote to the sender after the reply arrived: the one who
        // wrote last before it, from the keys each send left. Found by
        // walking back from the reply's arrival; rare (the reply waited
        // while someone else wrote), so no index of its own. None found:
        // no recent route, rather than the wrong user.
        Some(_) => conn
            .prepare_cached(
                "SELECT pchat_to, message_id FROM conversation_keys
                 WHERE channel = ?1 AND phone_id = ?2 AND external = ?3
                   AND created_at >= ?4 AND created_at <= ?5
                 ORDER BY created_at DESC LIMIT 1",
            )?
            .query_row(
                params![
                    q.channel.as_str(),
                    q.phone_id,
                    external,
                    q.since_ms,
                    q.as_of_ms
                ],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?
            .and_then(this_relays),
        None => None,
    };
    // The last to write was no pChat user: no recent route.
    Ok(to.filter(|to| to != NO_USER).map(|to| RouteMatch {
        to,
        route: "recent",
    }))
}

/// Whether the send `message_id` was accepted after `relay_messages_after`
/// (an outbound seq; 0: every send counts), so its pChat user is this
/// relay's. The seq is read from the id itself. An id from before ids
/// carried their seq (migration 9) reads as its accept time, which is
/// before any move recorded since, as the seqs from then on are from the
/// clock too.
fn this_relays_send(message_id: &str, relay_messages_after: i64) -> bool {
    relay_messages_after == 0
        || crate::store::message_id::seq_of(message_id)
            .is_some_and(|seq| seq > relay_messages_after)
}

/// When the inbound waiting longest to be forwarded was committed: the
/// first of the `(relay_state, committed_at)` index's pending rows
/// (migration 15), one row read however many wait. By commit time, not by
/// seq: a row committed while the clock ran ahead (then stepped back) is
/// first by seq but not oldest, and the conversations the rows after it
/// need were pruned.
pub(crate) const OLDEST_PENDING: &str =
    "SELECT MIN(committed_at) FROM inbound WHERE relay_state = 'pending'";

/// Forget conversations last used before `before_ms`, at most `limit`
/// rows (keys first): the sweep after a long relay outage, which kept
/// every conversation meanwhile, is many writer jobs, not one holding
/// sends and accepts up. With `pending_ttl_ms`, keep those an inbound
/// still waiting to be forwarded may be routed by: it is routed as of its
/// arrival (`route`), over the ttl before it, however long the relay has
/// been away.
pub fn prune(
    conn: &Connection,
    before_ms: i64,
    pending_ttl_ms: Option<i64>,
    limit: u32,
) -> StoreResult<usize> {
    let before_ms = match pending_ttl_ms {
        None => before_ms,
        Some(ttl_ms) => {
            let oldest: Option<i64> = conn
                .prepare_cached(OLDEST_PENDING)?
                .query_row([], |row| row.get(0))?;
            oldest.map_or(before_ms, |arrived| before_ms.min(arrived - ttl_ms))
        }
    };
    let keys = conn
        .prepare_cached(
            "DELETE FROM conversation_keys WHERE rowid IN
                (SELECT rowid FROM conversation_keys WHERE created_at < ?1 LIMIT ?2)",
        )?
        .execute(params![before_ms, limit])?;
    let left = (limit as usize).saturating_sub(keys);
    if left == 0 {
        return Ok(keys);
    }
    let conversations = conn
        .prepare_cached(
            "DELETE FROM conversations WHERE rowid IN
                (SELECT rowid FROM conversations WHERE last_at < ?1 LIMIT ?2)",
        )?
        .execute(params![before_ms, left as i64])?;
    Ok(keys + conversations)
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::outbound;
    use super::super::schema::{MIGRATIONS, at_version};
    use super::super::seq_clock::SeqClock;
    use crate::store::testing::queued_sms;

    /// A send on "m1" to +15551230001 from `source` (none: the operator's).
    fn to_the_number(source: Option<&str>) -> SentTo {
        SentTo {
            channel: "sms".into(),
            phone_id: "m1".into(),
            recipient: "+15551230001".into(),
            source: source.map(str::to_string),
            went_out_at: None,
        }
    }

    fn sent_by(conn: &Connection, source: &str, external_id: &str, at_ms: i64) {
        let sent = to_the_number(Some(source));
        let receipt = SendReceipt::single(external_id.to_string());
        record_sent(conn, &format!("msg-{external_id}"), &sent, &receipt, at_ms).unwrap();
    }

    fn reply_arrived_at(as_of_ms: i64) -> RouteQuery {
        RouteQuery {
            channel: ChannelKind::Sms,
            phone_id: "m1".into(),
            from: "+15551230001".into(),
            reply_to: Vec::new(),
            since_ms: 0,
            as_of_ms,
            relay_messages_after: 0,
        }
    }

    /// Alice wrote, the reply arrived, and Bob wrote to the same number
    /// before the reply was forwarded (the relay was down): it is Alice's.
    #[test]
    fn a_reply_goes_to_who_wrote_before_it_arrived_not_after() {
        let conn = at_version(MIGRATIONS.len());
        sent_by(&conn, "alice", "sms:1", 100);
        sent_by(&conn, "bob", "sms:2", 300);
        let before_bob = route(&conn, &reply_arrived_at(200)).unwrap().unwrap();
        assert_eq!(
            (before_bob.to.as_str(), before_bob.route),
            ("alice", "recent")
        );
        let after_bob = route(&conn, &reply_arrived_at(300)).unwrap().unwrap();
        assert_eq!(after_bob.to, "bob");
        assert_eq!(
            route(&conn, &reply_arrived_at(50)).unwrap(),
            None,
            "before anyone wrote"
        );
        // A reply key Bob's send took over later is not what it answers.
        let keyed = RouteQuery {
            reply_to: vec!["sms:2".into()],
            ..reply_arrived_at(200)
        };
        assert_eq!(route(&conn, &keyed).unwrap().unwrap().to, "alice");
    }

    /// Two sends to one address whose outcomes are recorded out of their
    /// order (concurrent sends, the later one's outcome committed first):
    /// the later send still owns the conversation and its reply keys.
    #[test]
    fn an_older_send_recorded_later_does_not_take_the_conversation_back() {
        let conn = at_version(MIGRATIONS.len());
        sent_by(&conn, "bob", "sms:2", 300);
        sent_by(&conn, "alice", "sms:1", 100);
        assert_eq!(
            route(&conn, &reply_arrived_at(400)).unwrap().unwrap().to,
            "bob"
        );
        let keyed = RouteQuery {
            reply_to: vec!["sms:2".into()],
            ..reply_arrived_at(400)
        };
        assert_eq!(route(&conn, &keyed).unwrap().unwrap().to, "bob");
        // The same reply key given again by an older send stays the newer's.
        let sent = to_the_number(Some("carol"));
        let receipt = SendReceipt::single("sms:2".to_string());
        record_sent(&conn, "msg-old", &sent, &receipt, 200).unwrap();
        assert_eq!(route(&conn, &keyed).unwrap().unwrap().to, "bob");
    }

    fn pending_inbound_at(conn: &Connection, committed_at: i64) {
        conn.execute(
            "INSERT INTO inbound (id, channel, phone_id, external_id, sender, body,
                                  received_at, committed_at)
             VALUES ('in-1', 'sms', 'm1', 'sms:in-1', '+15551230001', 'hi', ?1, ?1)",
            [committed_at],
        )
        .unwrap();
    }

    /// Alice wrote on day 0, the reply came on day 29 while the relay was
    /// away, and the sweep runs on day 31 with a 30-day ttl: the reply
    /// still needs Alice's conversation, so it stays until the reply is
    /// forwarded.
    #[test]
    fn a_conversation_a_waiting_reply_needs_is_kept_until_it_is_forwarded() {
        const DAY: i64 = 24 * 3600 * 1000;
        let ttl = 30 * DAY;
        let conn = at_version(MIGRATIONS.len());
        sent_by(&conn, "alice", "sms:1", 0);
        pending_inbound_at(&conn, 29 * DAY);
        let now = 31 * DAY;
        assert_eq!(prune(&conn, now - ttl, Some(ttl), u32::MAX).unwrap(), 0);
        let waiting = route(&conn, &reply_arrived_at(29 * DAY)).unwrap();
        assert_eq!(waiting.unwrap().to, "alice");

        conn.execute("UPDATE inbound SET relay_state = 'delivered'", [])
            .unwrap();
        assert!(
            prune(&conn, now - ttl, Some(ttl), u32::MAX).unwrap() > 0,
            "forwarded: forgotten"
        );
        assert_eq!(route(&conn, &reply_arrived_at(29 * DAY)).unwrap(), None);
    }

    /// The first waiting inbound by seq was committed while the clock ran
    /// a day ahead; the one after it, by the clock as it is, on day 29
    /// still needs Alice's conversation of day 0.
    #[test]
    fn a_waiting_reply_s_conversation_is_kept_behind_one_dated_ahead() {
        const DAY: i64 = 24 * 3600 * 1000;
        let ttl = 30 * DAY;
        let conn = at_version(MIGRATIONS.len());
        sent_by(&conn, "alice", "sms:1", 0);
        pending_inbound_at(&conn, 32 * DAY);
        conn.execute(
            "INSERT INTO inbound (id, channel, phone_id, external_id, sender, body,
                                  received_at, committed_at)
             VALUES ('in-2', 'sms', 'm1', 'sms:in-2', '+15551230001', 'hi', ?1, ?1)",
            [29 * DAY],
        )
        .unwrap();
        assert_eq!(
            prune(&conn, 31 * DAY - ttl, Some(ttl), u32::MAX).unwrap(),
            0
        );
        let waiting = route(&conn, &reply_arrived_at(29 * DAY)).unwrap();
        assert_eq!(waiting.unwrap().to, "alice");
    }

    #[test]
    fn without_a_relay_waiting_inbound_keeps_no_conversation() {
        const DAY: i64 = 24 * 3600 * 1000;
        let conn = at_version(MIGRATIONS.len());
        sent_by(&conn, "alice", "sms:1", 0);
        pending_inbound_at(&conn, 29 * DAY);
        assert!(prune(&conn, DAY, None, u32::MAX).unwrap() > 0);
    }

    /// Conversations go `limit` rows at a time, keys first, so that the
    /// sweep after a long relay outage is many short writer jobs.
    #[test]
    fn conversations_are_forgotten_a_batch_at_a_time() {
        let conn = at_version(MIGRATIONS.len());
        for i in 0..3 {
            sent_by(&conn, "alice", &format!("sms:{i}"), 0);
        }
        let rows = |conn: &Connection| -> usize {
            conn.query_row(
                "SELECT (SELECT COUNT(*) FROM conversation_keys)
                      + (SELECT COUNT(*) FROM conversations)",
                [],
                |row| row.get(0),
            )
            .unwrap()
        };
        let total = rows(&conn);
        assert!(total > 4, "{total}");
        assert_eq!(prune(&conn, 1, None, 4).unwrap(), 4);
        assert_eq!(rows(&conn), total - 4);
        let mut pruned = 4;
        loop {
            let batch = prune(&conn, 1, None, 4).unwrap();
            pruned += batch;
            if batch < 4 {
                break;
            }
        }
        assert_eq!((pruned, rows(&conn)), (total, 0));
    }

    /// Alice's SMS to the number Bob wrote to, accepted at 200; its id.
    fn alice_writes(conn: &Connection) -> String {
        let seqs = SeqClock::load(conn).unwrap();
        let mut message = queued_sms("from alice", 200);
        message.source = Some("alice".into());
        match outbound::accept(conn, &message, &seqs).unwrap() {
            AcceptOutcome::Created { id } => id,
            other => panic!("not created: {other:?}"),
        }
    }

    fn claim_at(conn: &Connection, now_ms: i64) {
        let claim = ClaimRequest {
            channel: ChannelKind::Sms,
            phone_id: "m1".into(),
            limit: 10,
            now_ms,
            lease_ms: 60_000,
            skip_recipients: Vec::new(),
        };
        assert_eq!(outbound::claim(conn, &claim).unwrap().len(), 1);
    }

    fn ended(conn: &Connection, id: &str, outcome: SendOutcome) {
        outbound::record_outcomes(conn, &[(id.to_string(), outcome)]).unwrap();
    }

    /// Attempt ended at `now_ms` with a transient failure after part of
    /// the message went out (`+CMS ERROR: 331` after the first part).
    fn no_network(now_ms: i64) -> SendOutcome {
        SendOutcome::Retry {
            next_attempt_at_ms: now_ms + 100,
            code: "cms_331".into(),
            reason: "no network service".into(),
            now_ms,
            may_have_gone_out: true,
        }
    }

    /// Bob wrote to the number at 100; Alice's send to it went out at 400,
    /// but its outcome could be recorded only plainly (the whole outcome,
    /// conversation and all, was refused): a reply at 500 goes by default,
    /// not to Bob, who did not write what it answers.
    #[test]
    fn a_send_recorded_plainly_ends_the_conversation_before_it() {
        let conn = at_version(MIGRATIONS.len());
        sent_by(&conn, "bob", "sms:1", 100);
        let alice = alice_writes(&conn);
        claim_at(&conn, 300);
        outbound::record_outcome_plainly(&conn, &alice, &sent_as("sms:2", 400)).unwrap();
        assert!(!send_unsettled(&conn, &reply_arrived_at(500)).unwrap());
        assert_eq!(route(&conn, &reply_arrived_at(500)).unwrap(), None);
        assert_eq!(
            route(&conn, &reply_arrived_at(200)).unwrap().unwrap().to,
            "bob",
            "a reply from before it is still Bob's"
        );
    }

    /// The plain record is the fallback for an outcome the store refused
    /// whole, maybe in the conversation's rows: ending the conversation
    /// fails there too (a trigger refuses it here), and the send is still
    /// recorded sent, not left `sending` to go again at the next start.
    #[test]
    fn a_plain_record_is_made_though_the_conversation_cannot_be_ended() {
        let conn = at_version(MIGRATIONS.len());
        sent_by(&conn, "bob", "sms:1", 100);
        conn.execute_batch(
            "CREATE TRIGGER refused BEFORE UPDATE ON conversations
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
        let alice = alice_writes(&conn);
        claim_at(&conn, 300);
        outbound::record_outcome_plainly(&conn, &alice, &sent_as("sms:2", 400)).unwrap();
        let status: String = conn
            .query_row(
                "SELECT status FROM outbound WHERE id = ?1",
                [&alice],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(status, "sent");
    }

    /// Bob wrote to the number at 100. Alice's send to it was tried at
    /// 300, failed after its first part went out (400), and waits for its
    /// retry: a reply from the number at 500 may answer her half message.
    /// It waits for her send's outcome, and then it is hers, for her send
    /// dates from 400, not from the retry that sent the rest (700).
    #[test]
    fn a_reply_between_the_attempts_of_a_send_waits_for_it_and_is_its_senders() {
        let conn = at_version(MIGRATIONS.len());
        sent_by(&conn, "bob", "sms:1", 100);
        let alice = alice_writes(&conn);
        claim_at(&conn, 300);
        ended(&conn, &alice, no_network(400));

        assert!(send_unsettled(&conn, &reply_arrived_at(500)).unwrap());
        // One that came before her first attempt ended is not hers.
        assert!(!send_unsettled(&conn, &reply_arrived_at(350)).unwrap());

        claim_at(&conn, 600);
        assert!(send_unsettled(&conn, &reply_arrived_at(500)).unwrap());
        ended(&conn, &alice, sent_as("sms:2", 700));
        assert!(!send_unsettled(&conn, &reply_arrived_at(500)).unwrap());
        assert_eq!(
            route(&conn, &reply_arrived_at(500)).unwrap().unwrap().to,
            "alice"
        );
        earlier_is_bob_s_and_carol_after_the_reply_does_not_take_it(&conn);
    }

    /// After alice's send that went out in part (bob wrote before it): a
    /// reply from before her first attempt ended is bob's; once carol
    /// writes after the reply came (it waited), the walk back still finds
    /// alice for it.
    fn earlier_is_bob_s_and_carol_after_the_reply_does_not_take_it(conn: &Connection) {
        assert_eq!(
            route(conn, &reply_arrived_at(350)).unwrap().unwrap().to,
            "bob"
        );
        sent_by(conn, "carol", "sms:3", 800);
        assert_eq!(
            route(conn, &reply_arrived_at(500)).unwrap().unwrap().to,
            "alice"
        );
    }

    fn sent_as(external_id: &str, now_ms: i64) -> SendOutcome {
        SendOutcome::Sent {
            receipt: SendReceipt::single(external_id.to_string()),
            now_ms,
        }
    }

    /// A claim a dead process left may have gone out: requeued at the
    /// start, it holds a reply from its recipient that came after.
    #[test]
    fn a_claim_requeued_after_a_crash_holds_a_later_reply() {
        let conn = at_version(MIGRATIONS.len());
        sent_by(&conn, "bob", "sms:1", 100);
        alice_writes(&conn);
        claim_at(&conn, 300);
        outbound::requeue_abandoned(&conn, 400, 12).unwrap();
        // Dated by the event clock, at the start.
        let later = crate::clock::event_ms();
        assert!(send_unsettled(&conn, &reply_arrived_at(later)).unwrap());
    }

    /// A claim given back unsent (a rate limit) put nothing out: a reply
    /// does not wait for its retry, and is bob's.
    #[test]
    fn a_claim_given_back_unsent_holds_no_reply() {
        let conn = at_version(MIGRATIONS.len());
        sent_by(&conn, "bob", "sms:1", 100);
        let alice = alice_writes(&conn);
        claim_at(&conn, 300);
        let release = SendOutcome::Release {
            next_attempt_at_ms: 3_600_000,
            now_ms: 400,
            code: "deferred".into(),
            reason: "held back by the per-recipient rate limit".into(),
        };
        ended(&conn, &alice, release);
        assert!(!send_unsettled(&conn, &reply_arrived_at(500)).unwrap());
        assert_eq!(
            route(&conn, &reply_arrived_at(500)).unwrap().unwrap().to,
            "bob"
        );
    }

    /// Alice's attempt failed before anything of it went out (the modem
    /// refused its only part, `+CMS ERROR: 500`; the adapter says nothing
    /// was sent): a reply that came before her retry is bob's, not hers,
    /// and does not wait for her send; nor does one after her send ends
    /// unsent, for good, with nothing of it ever out.
    #[test]
    fn an_attempt_that_put_nothing_out_takes_no_reply() {
        let nothing_out = |now_ms| SendOutcome::Retry {
            next_attempt_at_ms: now_ms + 100,
            code: "cms_500".into(),
            reason: "unknown error".into(),
            now_ms,
            may_have_gone_out: false,
        };
        let conn = at_version(MIGRATIONS.len());
        sent_by(&conn, "bob", "sms:1", 100);
        let alice = alice_writes(&conn);
        claim_at(&conn, 300);
        ended(&conn, &alice, nothing_out(400));
        assert!(!send_unsettled(&conn, &reply_arrived_at(500)).unwrap());
        claim_at(&conn, 600);
        ended(&conn, &alice, sent_as("sms:2", 700));
        assert_eq!(
            route(&conn, &reply_arrived_at(500)).unwrap().unwrap().to,
            "bob"
        );
        assert_eq!(
            route(&conn, &reply_arrived_at(800)).unwrap().unwrap().to,
            "alice"
        );

        for end in [Unsent::Failed, Unsent::Expired, Unsent::Cancelled] {
            let conn = at_version(MIGRATIONS.len());
            sent_by(&conn, "bob", "sms:1", 100);
            let alice = alice_writes(&conn);
            claim_at(&conn, 300);
            ended(&conn, &alice, nothing_out(400));
            end.end(&conn, &alice);
            assert_eq!(
                route(&conn, &reply_arrived_at(5_000_000))
                    .unwrap()
                    .unwrap()
                    .to,
                "bob"
            );
        }
    }

    /// Alice's send left no reply key (a channel whose receipt names
    /// none), and Carol wrote after the reply came: the walk-back still
    /// finds Alice's send, by its own id, not Bob's before it.
    #[test]
    fn a_send_whose_receipt_names_no_key_is_found_by_the_walk_back() {
        let conn = at_version(MIGRATIONS.len());
        sent_by(&conn, "bob", "sms:1", 100);
        let alice = to_the_number(Some("alice"));
        record_sent(&conn, "msg-alice", &alice, &SendReceipt::default(), 200).unwrap();
        sent_by(&conn, "carol", "sms:3", 400);
        assert_eq!(
            route(&conn, &reply_arrived_at(250)).unwrap().unwrap().to,
            "alice"
        );
    }

    /// Alice's send was accepted before the reply came, but its attempt
    /// began after (it waited in the queue): it cannot be what the reply
    /// answers, and the reply does not wait for it.
    #[test]
    fn a_reply_does_not_wait_for_a_send_whose_attempt_began_after_it() {
        let conn = at_version(MIGRATIONS.len());
        sent_by(&conn, "bob", "sms:1", 100);
        alice_writes(&conn);
        claim_at(&conn, 400);
        assert!(!send_unsettled(&conn, &reply_arrived_at(300)).unwrap());
        assert_eq!(
            route(&conn, &reply_arrived_at(300)).unwrap().unwrap().to,
            "bob"
        );
        assert!(send_unsettled(&conn, &reply_arrived_at(500)).unwrap());
    }

    /// A send of the operator's own (no `source`: the API, `phonerelay
    /// send`) to a number Alice wrote to: a reply after it goes by default,
    /// not to Alice, who did not write what it answers; also when Carol
    /// writes after the reply came (the walk-back finds the operator's
    /// send). A reply from before the operator's send is still Alice's.
    /// A number no pChat user wrote to gets no conversation at all.
    #[test]
    fn a_send_without_a_pchat_user_ends_the_conversation_before_it() {
        let conn = at_version(MIGRATIONS.len());
        sent_by(&conn, "alice", "sms:1", 100);
        let operator = to_the_number(None);
        let receipt = SendReceipt::single("sms:2".to_string());
        record_sent(&conn, "msg-operator", &operator, &receipt, 200).unwrap();

        assert_eq!(route(&conn, &reply_arrived_at(300)).unwrap(), None);
        assert_eq!(
            route(&conn, &reply_arrived_at(150)).unwrap().unwrap().to,
            "alice"
        );
        sent_by(&conn, "carol", "sms:3", 400);
        assert_eq!(route(&conn, &reply_arrived_at(300)).unwrap(), None);
        assert_eq!(
            route(&conn, &reply_arrived_at(500)).unwrap().unwrap().to,
            "carol"
        );

        let elsewhere = SentTo {
            recipient: "+15551239999".into(),
            ..operator
        };
        record_sent(&conn, "msg-other", &elsewhere, &receipt, 600).unwrap();
        let conversations: i64 = conn
            .query_row("SELECT COUNT(*) FROM conversations", [], |row| row.get(0))
            .unwrap();
        assert_eq!(conversations, 1);
    }

    /// How a send waiting for its retry ends without being sent.
    #[derive(Clone, Copy)]
    enum Unsent {
        /// Its retry (at 600) fails for good.
        Failed,
        /// Its ttl (an hour after its accept) runs out.
        Expired,
        Cancelled,
    }

    impl Unsent {
        fn end(self, conn: &Connection, id: &str) {
            match self {
                Self::Failed => {
                    claim_at(conn, 600);
                    let failed = SendOutcome::Failed {
                        code: "retries_exhausted".into(),
                        reason: "gave up".into(),
                        now_ms: 700,
                    };
                    ended(conn, id, failed);
                }
                Self::Expired => assert_eq!(outbound::expire_due(conn, 3_600_200, 100).unwrap(), 1),
                Self::Cancelled => {
                    let cancelled = outbound::cancel(conn, id, 700).unwrap();
                    assert!(matches!(cancelled, CancelOutcome::Cancelled(_)));
                }
            }
        }
    }

    /// Alice's send put its first part out (400), then failed for good:
    /// a reply that came after is hers (she is the last who wrote), not
    /// bob's, though no receipt named a reply key; the same for a send
    /// that expired or was cancelled waiting for its retry.
    #[test]
    fn a_reply_after_a_send_that_ended_unsent_in_part_is_its_senders() {
        for end in [Unsent::Failed, Unsent::Expired, Unsent::Cancelled] {
            let conn = at_version(MIGRATIONS.len());
            sent_by(&conn, "bob", "sms:1", 100);
            let alice = alice_writes(&conn);
            claim_at(&conn, 300);
            ended(&conn, &alice, no_network(400));
            end.end(&conn, &alice);

            assert!(!send_unsettled(&conn, &reply_arrived_at(500)).unwrap());
            let routed = route(&conn, &reply_arrived_at(500)).unwrap().unwrap();
            assert_eq!((routed.to.as_str(), routed.route), ("alice", "recent"));
            earlier_is_bob_s_and_carol_after_the_reply_does_not_take_it(&conn);
        }
    }

    #[test]
    fn email_addresses_compare_bare_and_lowercase() {
        assert_eq!(
            normalize(ChannelKind::Email, "Ann <Ann@Example.COM>"),
            "ann@example.com"
        );
        assert_eq!(normalize(ChannelKind::Wa, " +15551230001 "), "+15551230001");
    }
}
