//! The relay link's tables: relay message ids on the outbox, the
//! forwarding state of inbound messages, and the status log read by the
//! status reporter.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::rows::Status;
use super::seq_clock::SeqClock;
use super::{inbound, outbound};
use crate::store::*;

/// The message `relay_message_id` made, if any, as its accept answered,
/// and its phone_id (through the relay id's unique index).
pub fn find_outbound(
    conn: &Connection,
    relay_message_id: &str,
) -> StoreResult<Option<(FirstAnswer, String)>> {
    let sql = format!(
        "SELECT id, {}, phone_id FROM outbound WHERE relay_message_id = ?1",
        outbound::ACCEPTED_STATUS
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([relay_message_id], |row| {
            Ok((outbound::first_answer(row)?, row.get(2)?))
        })
        .optional()?)
}

/// Accept a message keyed by the relay's id; a repeat for the same
/// phone_id returns the first, one for another phone_id is refused.
/// An idempotency key is judged first, in the API's order
/// (`api::messages::commit_send`): a key reused with another body is
/// refused whatever relay id comes with it.
pub fn accept(
    conn: &Connection,
    message: &NewOutbound,
    relay_message_id: &str,
    seqs: &SeqClock,
) -> StoreResult<AcceptOutcome> {
    // Both looked up again inside the write: two pushes may both have
    // found them free, and the answer must not depend on which of them
    // the race let the store judge.
    if let Some(answer) = outbound::idempotent_answer(conn, message)? {
        return Ok(answer);
    }
    // A repeat is the first message only for the same phone_id; handing
    // another phone's message id out would tell the sender of it, and
    // report its status to the wrong phone.
    match find_outbound(conn, relay_message_id)? {
        Some((first, phone_id)) if phone_id == message.phone_id => {
            return Ok(AcceptOutcome::Replayed {
                id: first.id,
                status: first.status,
            });
        }
        Some(_) => return Ok(AcceptOutcome::RelayIdTaken),
        None => {}
    }
    let id = outbound::insert(conn, message, seqs)?;
    // The id was made from its seq a moment ago: no lookup needed.
    let seq = crate::store::message_id::seq_of(&id);
    conn.prepare_cached("UPDATE outbound SET relay_message_id = ?2 WHERE seq = ?1")?
        .execute(params![seq, relay_message_id])?;
    Ok(AcceptOutcome::Created { id })
}

const RELAY_COLUMNS: &str = "relay_state, relay_attempts, \
     relay_next_at, relay_to, relay_route, relay_error_code, relay_error, relay_updated_at, \
     relay_body, relay_body_url, relay_manual_retries";

fn from_row(row: &Row<'_>) -> rusqlite::Result<RelayInbound> {
    // The relay's own columns come after the inbound message's.
    let at = |n: usize| inbound::COLUMN_COUNT + n;
    let state: String = row.get(at(0))?;
    let to: Option<String> = row.get(at(3))?;
    let route: Option<String> = row.get(at(4))?;
    let json: Option<String> = row.get(at(8))?;
    let relay_url: Option<String> = row.get(at(9))?;
    let body = match (&to, &route, json, relay_url) {
        (Some(to), Some(route), Some(json), Some(relay_url)) => Some(RelayBody {
            to: to.clone(),
            route: route.clone(),
            json,
            relay_url,
        }),
        _ => None,
    };
    Ok(RelayInbound {
        inbound: inbound::from_row(row)?,
        state: state.parse().map_err(|e: String| {
            rusqlite::Error::FromSqlConversionFailure(
                at(0),
                rusqlite::types::Type::Text,
                Box::new(std::io::Error::other(e)),
            )
        })?,
        attempts: row.get(at(1))?,
        next_attempt_at_ms: row.get(at(2))?,
        to,
        route,
        error_code: row.get(at(5))?,
        error: row.get(at(6))?,
        updated_at_ms: row.get(at(7))?,
        body,
        manual_retries: row.get(at(10))?,
    })
}

pub fn pending(conn: &Connection, after_seq: i64, limit: u32) -> StoreResult<Vec<RelayInbound>> {
    let sql = format!(
        "SELECT {}, {RELAY_COLUMNS} FROM inbound WHERE relay_state = 'pending' AND seq > ?1
         ORDER BY seq LIMIT ?2",
        inbound::COLUMNS
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(params![after_seq, limit], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn get(conn: &Connection, id: &str) -> StoreResult<Option<RelayInbound>> {
    let sql = format!(
        "SELECT {}, {RELAY_COLUMNS} FROM inbound WHERE id = ?1",
        inbound::COLUMNS
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], from_row)
        .optional()?)
}

pub fn list(
    conn: &Connection,
    state: RelayInboundState,
    phone_id: Option<&str>,
    before_seq: Option<i64>,
    limit: u32,
) -> StoreResult<Vec<RelayInbound>> {
    let sql = format!(
        "SELECT {}, {RELAY_COLUMNS} FROM inbound
         WHERE relay_state = ?1 AND (?2 IS NULL OR phone_id = ?2) AND (?3 IS NULL OR seq < ?3)
         ORDER BY seq DESC LIMIT ?4",
        inbound::COLUMNS
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(
            params![state.as_str(), phone_id, before_seq, limit],
            from_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn record(conn: &Connection, id: &str, outcome: &RelayInboundOutcome) -> StoreResult<()> {
    match outcome {
        RelayInboundOutcome::Delivered { to, route, now_ms } => {
            conn.prepare_cached(
                "UPDATE inbound SET relay_state = 'delivered', relay_attempts = relay_attempts + 1,
                    relay_to = ?2, relay_route = ?3, relay_error_code = NULL, relay_error = NULL,
                    relay_updated_at = ?4, relay_body = NULL, relay_body_url = NULL
                 WHERE id = ?1",
            )?
            .execute(params![id, to, route, now_ms])?;
        }
        RelayInboundOutcome::Retry {
            to,
            route,
            code,
            reason,
            next_attempt_at_ms,
            now_ms,
        } => {
            conn.prepare_cached(
                "UPDATE inbound SET relay_attempts = relay_attempts + 1, relay_next_at = ?6,
                    relay_to = COALESCE(?2, relay_to), relay_route = COALESCE(?3, relay_route),
                    relay_error_code = ?4, relay_error = ?5, relay_updated_at = ?7
                 WHERE id = ?1 AND relay_state = 'pending'",
            )?
            .execute(params![
                id,
                to,
                route,
                code,
                reason,
                next_attempt_at_ms,
                now_ms
            ])?;
        }
        RelayInboundOutcome::Dead {
            to,
            route,
            code,
            reason,
            now_ms,
        } => {
            conn.prepare_cached(
                "UPDATE inbound SET relay_state = 'dead', relay_attempts = relay_attempts + 1,
                    relay_to = COALESCE(?2, relay_to), relay_route = COALESCE(?3, relay_route),
                    relay_error_code = ?4, relay_error = ?5, relay_updated_at = ?6
                 WHERE id = ?1",
            )?
            .execute(params![id, to, route, code, reason, now_ms])?;
        }
        RelayInboundOutcome::OtherPhone {
            phone_id,
            linked_phone_id,
            now_ms,
        } => {
            let reason =
                format!("arrived on {phone_id}; the relay link carries {linked_phone_id} only");
            conn.prepare_cached(
                "UPDATE inbound SET relay_state = 'other_phone', relay_error_code = 'other_phone',
                    relay_error = ?2, relay_updated_at = ?3
                 WHERE id = ?1 AND relay_state = 'pending'",
            )?
            .execute(params![id, reason, now_ms])?;
        }
    }
    Ok(())
}

/// Fix the body of pending inbound `id`'s POST with its route, in one
/// write: the route is never recorded without the body that carries it.
/// A message no longer pending (pruned meanwhile) is left as it is.
pub fn fix_body(conn: &Connection, id: &str, body: &RelayBody) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE inbound SET relay_to = ?2, relay_route = ?3, relay_body = ?4, relay_body_url = ?5
         WHERE id = ?1 AND relay_state = 'pending'",
    )?
    .execute(params![id, body.to, body.route, body.json, body.relay_url])?;
    Ok(())
}

/// The `origin.route` of a message an operator sent to an address of
/// their choice (`phonerelay inbound retry --to`).
pub const MANUAL_ROUTE: &str = "manual";

/// A dead letter goes back to pending, due now, its attempts counted
/// afresh: the backoff grows with them, and one failure of the retried
/// message would otherwise hold the link for minutes. With `to`, an address the
/// operator chose (checked by the caller), it goes there, its body made
/// afresh for it. Without, one that died for want of a route is routed
/// afresh (a `default_to` may have been set since); one the relay refused
/// keeps its address, as routing it again would find the same
/// conversation, or none once retention pruned it.
pub fn retry(
    conn: &Connection,
    id: &str,
    now_ms: i64,
    to: Option<&str>,
) -> StoreResult<ManualRetry> {
    let state: Option<String> = conn
        .query_row(
            "SELECT relay_state FROM inbound WHERE id = ?1",
            [id],
            |row| row.get(0),
        )
        .optional()?;
    let Some(state) = state else {
        return Ok(ManualRetry::NotFound);
    };
    let state: RelayInboundState = state.parse().map_err(StoreError::Database)?;
    // A message set aside for another phone can be sent on by hand too
    // (the link was switched to its phone just after it came, say).
    if !matches!(
        state,
        RelayInboundState::Dead | RelayInboundState::OtherPhone
    ) {
        return Ok(ManualRetry::NotDead(state));
    }
    conn.prepare_cached(
        "UPDATE inbound SET relay_state = 'pending', relay_next_at = ?2, relay_updated_at = ?2,
            relay_manual_retries = relay_manual_retries + 1, relay_attempts = 0,
            relay_to = CASE WHEN relay_error_code = 'no_route' THEN NULL ELSE relay_to END,
            relay_route = CASE WHEN relay_error_code = 'no_route' THEN NULL ELSE relay_route END,
            relay_body = CASE WHEN relay_error_code = 'no_route' THEN NULL ELSE relay_body END
         WHERE id = ?1",
    )?
    .execute(params![id, now_ms])?;
    if let Some(to) = to {
        conn.prepare_cached(
            "UPDATE inbound SET relay_to = ?2, relay_route = ?3, relay_body = NULL,
                relay_body_url = NULL
             WHERE id = ?1",
        )?
        .execute(params![id, to, MANUAL_ROUTE])?;
    }
    let requeued = get(conn, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    Ok(ManualRetry::Requeued(Box::new(requeued)))
}

/// Every dead letter `filter` matches back in the queue, each by
/// [`retry`] (its own next `<id>:retry<n>` key, its attempts counted
/// afresh), inside the caller's one transaction: all of them or none.
/// The ids requeued, in commit order.
pub fn retry_dead(
    conn: &Connection,
    filter: &DeadLetterFilter,
    now_ms: i64,
) -> StoreResult<Vec<String>> {
    let mut requeued = Vec::new();
    for id in dead_matching(conn, filter)? {
        // Read in this transaction, so each is still dead: `NotDead`
        // cannot come, and would be nothing to count if it did.
        if let ManualRetry::Requeued(_) = retry(conn, &id, now_ms, None)? {
            requeued.push(id);
        }
    }
    Ok(requeued)
}

/// The ids of the dead letters `filter` matches, in commit order (a
/// range of the state index).
fn dead_matching(conn: &Connection, filter: &DeadLetterFilter) -> StoreResult<Vec<String>> {
    let ids = conn
        .prepare_cached(
            "SELECT id FROM inbound
             WHERE relay_state = 'dead' AND (?1 IS NULL OR relay_error_code = ?1)
               AND (?2 IS NULL OR relay_updated_at >= ?2) AND (?3 IS NULL OR channel = ?3)
               AND (?4 IS NULL OR phone_id = ?4)
             ORDER BY seq",
        )?
        .query_map(
            params![
                filter.code,
                filter.since_ms,
                filter.channel.map(|c| c.as_str()),
                filter.phone_id
            ],
            |row| row.get(0),
        )?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

/// Pending and dead inbound: a range of the state index, not a walk over
/// every message ever forwarded (those are the bulk of the table).
pub(super) const COUNTS: &str = "SELECT relay_state, COUNT(*) FROM inbound
     WHERE relay_state IN ('pending', 'dead') GROUP BY relay_state";

pub fn counts(conn: &Connection) -> StoreResult<RelayInboundCounts> {
    let mut counts = RelayInboundCounts::default();
    let mut stmt = conn.prepare_cached(COUNTS)?;
    let rows = stmt.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?))
    })?;
    for row in rows {
        let (state, n) = row?;
        match state.as_str() {
            "pending" => counts.pending = n,
            "dead" => counts.dead = n,
            _ => {}
        }
    }
    if counts.pending > 0 {
        counts.oldest_pending_at_ms = conn
            .prepare_cached(super::routing::OLDEST_PENDING)?
            .query_row([], |row| row.get(0))?;
    }
    Ok(counts)
}

/// The statuses the relay hears about (not `queued`/`sending`).
fn reportable(status: OutboundStatus) -> bool {
    use OutboundStatus::*;
    matches!(
        status,
        Sent | Delivered | Read | Failed | Expired | Cancelled
    )
}

/// The relay's id for message `id`, if the relay sent it for `phone_id`
/// after outbound seq `after_seq` (and it is still stored).
fn relay_message_id(
    conn: &Connection,
    id: &str,
    phone_id: &str,
    after_seq: i64,
) -> StoreResult<Option<String>> {
    let relay_id: Option<Option<String>> = outbound::by_id(conn, id, |seq| {
        if seq <= after_seq {
            return Ok(None);
        }
        Ok(conn
            .prepare_cached(
                "SELECT relay_message_id FROM outbound WHERE seq = ?1 AND id = ?2 AND phone_id = ?3",
            )?
            .query_row(params![seq, id, phone_id], |row| row.get(0))
            .optional()?)
    })?;
    Ok(relay_id.flatten())
}

/// See [`crate::store::Store::last_outbound_seq`].
/// See `Store::record_relay_move`, inside the caller's one transaction.
pub fn record_relay_move(conn: &Connection, scope: &str, moved: &RelayMove) -> StoreResult<i64> {
    let after_seq = last_outbound_seq(conn)?;
    let record = ReportedRelay {
        url: moved.url.clone(),
        after_seq,
    };
    let text = serde_json::to_string(&record).expect("a plain record serialises");
    super::cursors::write(conn, scope, &moved.cursor, &text)?;
    // The pChat users the waiting messages (and the dead letters a retry
    // sends again) were routed to are the old relay's: on the new one
    // those names are whoever holds them there. Routed afresh when next
    // tried, by the new relay's conversations only. An operator's own
    // choice (`inbound retry --to`) stays theirs.
    conn.prepare_cached(
        "UPDATE inbound SET relay_to = NULL, relay_route = NULL
         WHERE relay_state IN ('pending', 'dead') AND relay_to IS NOT NULL
           AND relay_route IS NOT ?1",
    )?
    .execute([MANUAL_ROUTE])?;
    Ok(after_seq)
}

pub fn last_outbound_seq(conn: &Connection) -> StoreResult<i64> {
    Ok(
        conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM outbound", [], |row| {
            row.get(0)
        })?,
    )
}

pub fn status_events(
    conn: &Connection,
    after_event_id: i64,
    limit: u32,
    phone_id: &str,
    after_seq: i64,
) -> StoreResult<RelayStatusBatch> {
    let rows = conn
        .prepare_cached(
            "SELECT event_id, message_id, status, at, code, reason
             FROM outbound_events WHERE event_id > ?1 ORDER BY event_id LIMIT ?2",
        )?
        .query_map(params![after_event_id, limit], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Status>(2)?.0,
                row.get::<_, i64>(3)?,
                row.get::<_, Option<String>>(4)?,
                row.get::<_, Option<String>>(5)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut batch = RelayStatusBatch {
        events: Vec::new(),
        scanned_to: after_event_id,
    };
    for (event_id, message_id, status, at_ms, code, reason) in rows {
        batch.scanned_to = event_id;
        if !reportable(status) {
            continue;
        }
        let Some(relay_message_id) = relay_message_id(conn, &message_id, phone_id, after_seq)?
        else {
            continue;
        };
        let external_ids = if status == OutboundStatus::Sent {
            conn.prepare_cached(
                "SELECT external_id FROM outbound_parts WHERE message_id = ?1 ORDER BY part",
            )?
            .query_map([&message_id], |row| row.get(0))?
            .collect::<Result<Vec<String>, _>>()?
        } else {
            Vec::new()
        };
        batch.events.push(RelayStatusEvent {
            event_id,
            message_id,
            relay_message_id,
            status,
            at_ms,
            code,
            reason,
            external_ids,
        });
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::schema::{MIGRATIONS, at_version};
    use crate::store::testing::{queued_sms, received_sms};

    /// Status events go to the relay of the link's phone_id only: another
    /// phone's relay message (left from a link since re-paired to another
    /// phone) is passed over, not reported to a relay that never sent it.
    #[test]
    fn status_events_are_those_of_the_link_s_phone_id() {
        let conn = at_version(MIGRATIONS.len());
        let seqs = SeqClock::load(&conn).unwrap();
        let mut other = queued_sms("b", 2);
        other.phone_id = "m2".into();
        for (message, relay_id) in [(queued_sms("a", 1), "r-a"), (other, "r-b")] {
            let AcceptOutcome::Created { id } = accept(&conn, &message, relay_id, &seqs).unwrap()
            else {
                panic!("not created")
            };
            conn.execute(
                "UPDATE outbound SET status = 'cancelled' WHERE id = ?1",
                [&id],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO outbound_events (message_id, status, at) VALUES (?1, 'cancelled', 3)",
                [&id],
            )
            .unwrap();
        }
        let batch = status_events(&conn, 0, 100, "m1", 0).unwrap();
        let ids: Vec<&str> = batch
            .events
            .iter()
            .map(|e| e.relay_message_id.as_str())
            .collect();
        assert_eq!(ids, ["r-a"]);
        let last: i64 = conn
            .query_row("SELECT MAX(event_id) FROM outbound_events", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(batch.scanned_to, last, "the other phone's is passed over");
    }

    /// After a move to another relay, the messages accepted before it
    /// (up to the seq then newest) were the first relay's: their events
    /// are passed over, those of later messages reported.
    #[test]
    fn status_events_of_messages_before_a_relay_move_are_passed_over() {
        let conn = at_version(MIGRATIONS.len());
        let seqs = SeqClock::load(&conn).unwrap();
        assert_eq!(last_outbound_seq(&conn).unwrap(), 0);
        let mut moved_at = 0;
        for (n, relay_id) in [(1, "r-old"), (2, "r-new")] {
            let AcceptOutcome::Created { id } =
                accept(&conn, &queued_sms(relay_id, n), relay_id, &seqs).unwrap()
            else {
                panic!("not created")
            };
            if n == 1 {
                moved_at = last_outbound_seq(&conn).unwrap();
                assert!(moved_at > 0);
            }
            conn.execute(
                "INSERT INTO outbound_events (message_id, status, at) VALUES (?1, 'cancelled', 3)",
                [&id],
            )
            .unwrap();
        }
        let relay_ids = |after_seq| -> Vec<String> {
            status_events(&conn, 0, 100, "m1", after_seq)
                .unwrap()
                .events
                .into_iter()
                .map(|e| e.relay_message_id)
                .collect()
        };
        assert_eq!(relay_ids(0), ["r-old", "r-new"]);
        assert_eq!(relay_ids(moved_at), ["r-new"]);
        let batch = status_events(&conn, 0, 100, "m1", moved_at).unwrap();
        let last: i64 = conn
            .query_row("SELECT MAX(event_id) FROM outbound_events", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(batch.scanned_to, last, "the old relay's is passed over");
    }

    /// Two pushes of one relay id that both found it free before either
    /// committed: the second is a repeat only for the same phone_id; for
    /// another it is refused and learns nothing of the first message.
    #[test]
    fn a_relay_id_is_a_repeat_only_for_its_own_phone_id() {
        let conn = at_version(MIGRATIONS.len());
        let seqs = SeqClock::load(&conn).unwrap();
        let AcceptOutcome::Created { id } =
            accept(&conn, &queued_sms("a", 1), "r-1", &seqs).unwrap()
        else {
            panic!("not created")
        };
        let again = accept(&conn, &queued_sms("a", 2), "r-1", &seqs).unwrap();
        let status = OutboundStatus::Queued;
        assert_eq!(
            again,
            AcceptOutcome::Replayed {
                id: id.clone(),
                status
            }
        );
        let mut other = queued_sms("b", 3);
        other.phone_id = "m2".into();
        let refused = accept(&conn, &other, "r-1", &seqs).unwrap();
        assert_eq!(refused, AcceptOutcome::RelayIdTaken);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM outbound", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 1, "the refused push stored nothing");
    }

    /// Two pushes with one Idempotency-Key and one relay id that both
    /// found them free before either committed: the store judges the key
    /// first, as the API does when it finds the first message, so a body
    /// changed under the key is refused and the same body is a repeat.
    /// The relay id's repeat answered first, and took the changed body
    /// for a repeat. Without a key, a changed body is still the relay's
    /// redelivery.
    #[test]
    fn a_racing_push_with_a_reused_key_is_refused_whatever_its_relay_id() {
        let conn = at_version(MIGRATIONS.len());
        let seqs = SeqClock::load(&conn).unwrap();
        let push = |text: &str, key: Option<&str>, hash: &str| {
            let mut m = queued_sms(text, 1);
            m.idempotency_key = key.map(str::to_string);
            m.request_hash = hash.into();
            m.exact_request_hash = hash.into();
            m
        };
        let first = push("first", Some("k-1"), "h-first");
        let AcceptOutcome::Created { id } = accept(&conn, &first, "r-1", &seqs).unwrap() else {
            panic!("not created")
        };
        let changed = push("changed", Some("k-1"), "h-changed");
        let refused = accept(&conn, &changed, "r-1", &seqs).unwrap();
        assert_eq!(refused, AcceptOutcome::KeyReused { id: id.clone() });
        let replayed = AcceptOutcome::Replayed {
            id: id.clone(),
            status: OutboundStatus::Queued,
        };
        assert_eq!(accept(&conn, &first, "r-1", &seqs).unwrap(), replayed);
        let redelivered = push("changed", None, "");
        assert_eq!(accept(&conn, &redelivered, "r-1", &seqs).unwrap(), replayed);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM outbound", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 1, "nothing but the first was stored");
    }

    /// A manual retry of a dead letter the relay refused sends it to the
    /// pChat address it had: the refusal was about the message or that
    /// user, and routing it again would find the same conversation, or,
    /// once retention pruned it, none. Only one that had no route is
    /// routed again, so a `default_to` set since can take it.
    #[tokio::test]
    async fn a_retried_dead_letter_keeps_its_address_unless_it_had_no_route() {
        use crate::store::testing::received_sms;
        use crate::store::{SqliteStore, Store};

        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        let retried = |external_id: &'static str, to: Option<&str>, code: &str| {
            let store = &store;
            let dead = RelayInboundOutcome::Dead {
                to: to.map(str::to_string),
                route: to.map(|_| "reply".to_string()),
                code: code.into(),
                reason: "refused".into(),
                now_ms: 2,
            };
            async move {
                let committed = store
                    .commit_inbound(received_sms(external_id, 1), 1)
                    .await
                    .unwrap();
                store
                    .record_relay_inbound(&committed.id, dead)
                    .await
                    .unwrap();
                match store
                    .retry_relay_inbound(&committed.id, 3, None)
                    .await
                    .unwrap()
                {
                    ManualRetry::Requeued(requeued) => (requeued.to, requeued.route),
                    other => panic!("not requeued: {other:?}"),
                }
            }
        };
        assert_eq!(
            retried("refused", Some("alice"), "relay_http_422").await,
            (Some("alice".into()), Some("reply".into()))
        );
        assert_eq!(retried("no-route", None, "no_route").await, (None, None));
    }

    /// A move to another relay forgets the routes of what waits (pending
    /// or dead): they name the old relay's users. An operator's own
    /// choice stays, and so does a delivered message's record; the move
    /// is recorded as of the newest outbound message, in the same write.
    #[test]
    fn a_relay_move_forgets_the_routes_of_what_waits_but_an_operators_own() {
        let conn = at_version(MIGRATIONS.len());
        let seqs = SeqClock::load(&conn).unwrap();
        accept(&conn, &queued_sms("r-old", 1), "r-old", &seqs).unwrap();
        let newest = last_outbound_seq(&conn).unwrap();
        let commit = |external_id| {
            inbound::commit(&conn, &received_sms(external_id, 1), 1)
                .unwrap()
                .id
        };
        let routed = |to: &str| RelayInboundOutcome::Retry {
            to: Some(to.into()),
            route: Some("recent".into()),
            code: "relay_unreachable".into(),
            reason: "down".into(),
            next_attempt_at_ms: 5,
            now_ms: 4,
        };
        let pending = commit("p-1");
        record(&conn, &pending, &routed("alice")).unwrap();
        let dead = dead_letter(&conn, "d-1", "sms", "relay_http_422", 4);
        let manual = dead_letter(&conn, "m-1", "sms", "relay_http_422", 4);
        assert!(matches!(
            retry(&conn, &manual, 5, Some("carol")).unwrap(),
            ManualRetry::Requeued(_)
        ));
        let delivered = commit("x-1");
        let taken = RelayInboundOutcome::Delivered {
            to: "bob".into(),
            route: "recent".into(),
            now_ms: 4,
        };
        record(&conn, &delivered, &taken).unwrap();

        let moved = RelayMove {
            cursor: "status_relay".into(),
            url: "https://new.example".into(),
        };
        assert_eq!(record_relay_move(&conn, "relay", &moved).unwrap(), newest);
        let to = |id: &str| {
            let item = get(&conn, id).unwrap().unwrap();
            (item.to, item.route)
        };
        assert_eq!(to(&pending), (None, None));
        assert_eq!(to(&dead), (None, None));
        assert_eq!(
            to(&manual),
            (Some("carol".into()), Some(MANUAL_ROUTE.into()))
        );
        assert_eq!(to(&delivered), (Some("bob".into()), Some("recent".into())));
        let record: ReportedRelay = serde_json::from_str(
            &super::super::cursors::read(&conn, "relay", "status_relay")
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            record,
            ReportedRelay {
                url: "https://new.example".into(),
                after_seq: newest
            }
        );
    }

    /// A manual retry counts the message's attempts afresh, so its first
    /// failure backs off from the start rather than for minutes.
    #[test]
    fn a_manual_retry_counts_attempts_afresh() {
        let conn = at_version(MIGRATIONS.len());
        let id = inbound::commit(&conn, &received_sms("ext-1", 1), 1)
            .unwrap()
            .id;
        for now_ms in 2..8 {
            let retry = RelayInboundOutcome::Retry {
                to: Some("ops".into()),
                route: Some("default".into()),
                code: "relay_timeout".into(),
                reason: "slow".into(),
                next_attempt_at_ms: now_ms + 1,
                now_ms,
            };
            record(&conn, &id, &retry).unwrap();
        }
        let dead = RelayInboundOutcome::Dead {
            to: None,
            route: None,
            code: "relay_http_422".into(),
            reason: "refused".into(),
            now_ms: 9,
        };
        record(&conn, &id, &dead).unwrap();
        assert_eq!(get(&conn, &id).unwrap().unwrap().attempts, 7);
        let ManualRetry::Requeued(requeued) = retry(&conn, &id, 10, None).unwrap() else {
            panic!("not requeued")
        };
        assert_eq!(requeued.attempts, 0);
        assert_eq!(requeued.state, RelayInboundState::Pending);
    }

    /// A dead letter of `channel`, refused with `code` at `dead_at`; its id.
    fn dead_letter(
        conn: &Connection,
        external_id: &str,
        channel: &str,
        code: &str,
        dead_at: i64,
    ) -> String {
        let mut m = received_sms(external_id, 1);
        m.channel = channel.parse().unwrap();
        let id = inbound::commit(conn, &m, 1).unwrap().id;
        let dead = RelayInboundOutcome::Dead {
            to: Some("ops".into()),
            route: Some("default".into()),
            code: code.into(),
            reason: "refused".into(),
            now_ms: dead_at,
        };
        record(conn, &id, &dead).unwrap();
        id
    }

    /// A bulk retry takes exactly the dead letters its filters match,
    /// each as a retry by its id would (its own next key, attempts
    /// afresh); run again, it finds none, as they are no longer dead.
    #[test]
    fn a_bulk_retry_requeues_the_dead_letters_its_filters_match() {
        let conn = at_version(MIGRATIONS.len());
        let x1 = dead_letter(&conn, "x-1", "sms", "relay_http_422", 10);
        let other = dead_letter(&conn, "o-1", "sms", "relay_http_400", 10);
        let x2 = dead_letter(&conn, "x-2", "sms", "relay_http_422", 20);
        let wa = dead_letter(&conn, "w-1", "wa", "relay_http_422", 30);
        let before = dead_letter(&conn, "b-1", "sms", "relay_http_422", 3);
        let retried_once = dead_letter(&conn, "r-1", "sms", "relay_http_422", 5);
        retry(&conn, &retried_once, 6, None).unwrap();
        record(
            &conn,
            &retried_once,
            &RelayInboundOutcome::Dead {
                to: None,
                route: None,
                code: "relay_http_422".into(),
                reason: "refused again".into(),
                now_ms: 7,
            },
        )
        .unwrap();

        let on_sms_since_7 = DeadLetterFilter {
            code: Some("relay_http_422".into()),
            since_ms: Some(7),
            channel: Some(phonerelay_channel::ChannelKind::Sms),
            phone_id: None,
        };
        let requeued = retry_dead(&conn, &on_sms_since_7, 40).unwrap();
        assert_eq!(requeued, [x1.clone(), x2.clone(), retried_once.clone()]);
        let keys: Vec<String> = requeued
            .iter()
            .map(|id| {
                let r = get(&conn, id).unwrap().unwrap();
                assert_eq!(r.state, RelayInboundState::Pending, "{id}");
                assert_eq!((r.attempts, r.next_attempt_at_ms), (0, 40), "{id}");
                r.idempotency_key()
            })
            .collect();
        assert_eq!(
            keys,
            [
                format!("{x1}:retry1"),
                format!("{x2}:retry1"),
                format!("{retried_once}:retry2")
            ]
        );
        for left in [&other, &wa, &before] {
            let r = get(&conn, left).unwrap().unwrap();
            assert_eq!(r.state, RelayInboundState::Dead, "{left}");
            assert_eq!(r.manual_retries, 0, "{left}");
        }
        assert!(retry_dead(&conn, &on_sms_since_7, 50).unwrap().is_empty());
        let everything = retry_dead(&conn, &DeadLetterFilter::default(), 60).unwrap();
        assert_eq!(everything, [other, wa, before]);
    }

    /// A bulk retry for one phone_id (an API key bound to it) leaves
    /// another phone's dead letters dead.
    #[test]
    fn a_bulk_retry_for_one_phone_takes_only_its_letters() {
        let conn = at_version(MIGRATIONS.len());
        let mine = dead_letter(&conn, "m-1", "sms", "relay_http_422", 10);
        let theirs = dead_letter(&conn, "t-1", "sms", "relay_http_422", 10);
        conn.execute(
            "UPDATE inbound SET phone_id = 'sim-2' WHERE id = ?1",
            [&theirs],
        )
        .unwrap();
        let phone = get(&conn, &mine).unwrap().unwrap().inbound.phone_id;
        assert_ne!(phone, "sim-2");
        let for_mine = DeadLetterFilter {
            phone_id: Some(phone),
            ..Default::default()
        };
        assert_eq!(retry_dead(&conn, &for_mine, 20).unwrap(), [mine]);
        let left = get(&conn, &theirs).unwrap().unwrap();
        assert_eq!(left.state, RelayInboundState::Dead);
    }

    /// A bulk retry is one transaction: a letter whose requeue fails (a
    /// trigger refuses it here; a full disk would, in life) leaves every
    /// letter dead, none half the batch requeued, so running it again
    /// gives each the same next key.
    #[tokio::test]
    async fn a_bulk_retry_that_fails_on_one_letter_requeues_none() {
        use crate::store::{SqliteStore, Store};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let store = SqliteStore::open(&path).unwrap();
        let mut ids = Vec::new();
        for external_id in ["a", "b", "c"] {
            let committed = store
                .commit_inbound(received_sms(external_id, 1), 1)
                .await
                .unwrap();
            let dead = RelayInboundOutcome::Dead {
                to: Some("ops".into()),
                route: Some("default".into()),
                code: "relay_http_422".into(),
                reason: "refused".into(),
                now_ms: 2,
            };
            store
                .record_relay_inbound(&committed.id, dead)
                .await
                .unwrap();
            ids.push(committed.id);
        }
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TRIGGER refuse_c BEFORE UPDATE OF relay_state ON inbound
                 WHEN OLD.external_id = 'c' BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .unwrap();

        let all = DeadLetterFilter::default();
        assert!(store.retry_dead_relay_inbound(all, 3).await.is_err());
        for id in &ids {
            let r = store.get_relay_inbound(id).await.unwrap().unwrap();
            assert_eq!(
                (r.state, r.manual_retries),
                (RelayInboundState::Dead, 0),
                "{id}"
            );
        }
    }

    /// A body fixed before the first POST stays through retries, so every
    /// repeat sends it, and goes once the message is delivered.
    #[test]
    fn a_fixed_body_stays_until_delivered() {
        let conn = at_version(MIGRATIONS.len());
        let id = inbound::commit(&conn, &received_sms("ext-1", 1), 1)
            .unwrap()
            .id;
        let body = RelayBody {
            to: "ops".into(),
            route: "default".into(),
            json: r#"{"to":"ops"}"#.into(),
            relay_url: "https://relay.test".into(),
        };
        fix_body(&conn, &id, &body).unwrap();
        let retry = RelayInboundOutcome::Retry {
            to: Some("ops".into()),
            route: Some("default".into()),
            code: "relay_timeout".into(),
            reason: "slow".into(),
            next_attempt_at_ms: 5,
            now_ms: 2,
        };
        record(&conn, &id, &retry).unwrap();
        assert_eq!(get(&conn, &id).unwrap().unwrap().body, Some(body));
        let delivered = RelayInboundOutcome::Delivered {
            to: "ops".into(),
            route: "default".into(),
            now_ms: 6,
        };
        record(&conn, &id, &delivered).unwrap();
        let stored = get(&conn, &id).unwrap().unwrap();
        assert_eq!(stored.body, None);
        assert_eq!(stored.to.as_deref(), Some("ops"));
    }
}
