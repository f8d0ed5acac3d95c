//! The outbox table: accept, claim with a lease, record outcomes, history.

use phonerelay_channel::{ChannelKind, DeliveryStatus, StatusUpdate};
use rusqlite::{Connection, OptionalExtension, params};

use super::routing::{self, SentTo};
use super::rows::{
    Kind, OUTBOUND_COLUMNS, Status, before_v9, ended, live, outbound_columns, outbound_from_row,
    to_json,
};
use super::seq_clock::SeqClock;
use crate::store::message_id;
use crate::store::*;

/// A new message (see `accept`). Due at once (`next_attempt_at` 0), not
/// at its accept time: after the clock steps back, a message accepted
/// before the step would wait until the clock came back to that time,
/// and the recipient's later messages would go first.
pub(super) const ACCEPT: &str = "INSERT INTO outbound (seq, id, api_key_id, idempotency_key,
        request_hash, phone_id, channel, recipient, body, subject, source, attachments,
        reply_to, reply_to_external_id, priority, status, created_at, updated_at, expires_at,
        next_attempt_at, attempts, lease_until, attempt_at, options, accepted_status)
     VALUES (?18, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,
        CASE WHEN ?17 IS NULL THEN 'queued' ELSE 'sending' END,
        ?15, ?15, ?16, 0,
        ?17 IS NOT NULL, ?17, CASE WHEN ?17 IS NULL THEN NULL ELSE ?15 END, ?19,
        CASE WHEN ?17 IS NULL THEN 'queued' ELSE 'sending' END)";

/// The status a message's accept answered (migration 21); `queued` for a
/// message accepted before it was kept, the answer its repeats had then.
pub(super) const ACCEPTED_STATUS: &str = "COALESCE(accepted_status, 'queued')";

/// The one way from an id to its row: `read` is given a candidate `seq`
/// and must check the row's id itself (`WHERE seq = ?1 AND id = ?2`), so
/// an id with a real seq and other random bits finds nothing. First the
/// seq a new id names; then, for a message accepted before migration 9,
/// the seq the index of those ids gives. One statement for a new id.
pub(super) fn by_id<T>(
    conn: &Connection,
    id: &str,
    read: impl Fn(i64) -> StoreResult<Option<T>>,
) -> StoreResult<Option<T>> {
    if let Some(found) = message_id::seq_of(id).map(&read).transpose()?.flatten() {
        return Ok(Some(found));
    }
    let legacy: Option<i64> = conn
        .prepare_cached(LEGACY_ID)?
        .query_row([id], |row| row.get(0))
        .optional()?;
    Ok(legacy.map(read).transpose()?.flatten())
}

/// Message `id`'s row (see [`by_id`]).
pub(super) fn locate(conn: &Connection, id: &str) -> StoreResult<Option<i64>> {
    by_id(conn, id, |seq| {
        let found = conn
            .prepare_cached("SELECT 1 FROM outbound WHERE seq = ?1 AND id = ?2")?
            .exists(params![seq, id])?;
        Ok(found.then_some(seq))
    })
}

/// As [`locate`], for a message that must exist: an unknown id is an error.
fn require(conn: &Connection, id: &str) -> StoreResult<i64> {
    locate(conn, id)?.ok_or_else(|| rusqlite::Error::QueryReturnedNoRows.into())
}

/// The row of a message accepted before migration 9, by its id.
pub(super) const LEGACY_ID: &str =
    concat!("SELECT seq FROM outbound WHERE id = ?1 AND ", before_v9!());

/// The message an API key's idempotency key already made, as its accept
/// answered, and the hash of the request that made it.
pub fn find_idempotent(
    conn: &Connection,
    api_key_id: Option<&str>,
    idempotency_key: &str,
) -> StoreResult<Option<(FirstAnswer, String)>> {
    let sql = format!(
        "SELECT id, {ACCEPTED_STATUS}, request_hash FROM outbound
         WHERE api_key_id IS ?1 AND idempotency_key = ?2"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![api_key_id, idempotency_key], |row| {
            Ok((first_answer(row)?, row.get(2)?))
        })
        .optional()?)
}

/// A message's id and accepted status, the first two columns of `row`.
pub(super) fn first_answer(row: &rusqlite::Row<'_>) -> rusqlite::Result<FirstAnswer> {
    Ok(FirstAnswer {
        id: row.get(0)?,
        status: row.get::<_, Status>(1)?.0,
    })
}

/// Commit a new message under the next `seq` of `seqs` and an id that
/// names it, unless its idempotency key already made one. Runs on the
/// writer thread, so seqs follow commit order.
pub fn accept(conn: &Connection, m: &NewOutbound, seqs: &SeqClock) -> StoreResult<AcceptOutcome> {
    if let Some(answer) = idempotent_answer(conn, m)? {
        return Ok(answer);
    }
    let id = insert(conn, m, seqs)?;
    Ok(AcceptOutcome::Created { id })
}

/// What an earlier message under `m`'s idempotency key makes of `m`: a
/// repeat of it for the same body, a reused key for another; `None`
/// when `m` has no key or the key made nothing yet. Asked inside the
/// write, as two requests with one key may both have found it free.
pub(super) fn idempotent_answer(
    conn: &Connection,
    m: &NewOutbound,
) -> StoreResult<Option<AcceptOutcome>> {
    let Some(key) = &m.idempotency_key else {
        return Ok(None);
    };
    let existing = find_idempotent(conn, m.api_key_id.as_deref(), key)?;
    Ok(existing.map(|(first, hash)| {
        if m.repeats(&hash) {
            AcceptOutcome::Replayed {
                id: first.id,
                status: first.status,
            }
        } else {
            AcceptOutcome::KeyReused { id: first.id }
        }
    }))
}

/// Commit `m` as a new message, its idempotency key already found free;
/// the id it was given.
pub(super) fn insert(conn: &Connection, m: &NewOutbound, seqs: &SeqClock) -> StoreResult<String> {
    let seq = seqs.next(m.created_at_ms);
    let id = message_id::id_for(seq, rand::random());
    // A message committed claimed (see `NewOutbound::claimed_until_ms`)
    // starts as `sending`, its first attempt begun at `created_at`
    // (`NewOutbound::committed_status`, which the 202 answers).
    conn.prepare_cached(ACCEPT)?.execute(params![
        id,
        m.api_key_id,
        m.idempotency_key,
        m.request_hash,
        m.phone_id,
        m.channel.as_str(),
        m.to,
        m.text,
        m.subject,
        m.source,
        to_json(&m.attachments)?,
        m.reply_to,
        m.reply_to_external_id,
        m.priority,
        m.created_at_ms,
        m.expires_at_ms,
        m.claimed_until_ms,
        seq,
        m.options.as_ref().map(to_json).transpose()?,
    ])?;
    // No `queued` event row: every message starts queued at `created_at`,
    // so `get` puts that first entry in the history. One write fewer per
    // accept, on the thread every write shares (docs/performance.md).
    Ok(id)
}

pub fn get(conn: &Connection, id: &str) -> StoreResult<Option<OutboundDetail>> {
    let sql =
        format!("SELECT {OUTBOUND_COLUMNS}, attempt_at FROM outbound WHERE seq = ?1 AND id = ?2");
    let Some((mut record, attempt_at)) = by_id(conn, id, |seq| {
        Ok(conn
            .query_row(&sql, params![seq, id], |row| {
                Ok((
                    outbound_from_row(row)?,
                    row.get::<_, Option<i64>>(super::rows::OUTBOUND_COLUMN_COUNT)?,
                ))
            })
            .optional()?)
    })?
    else {
        return Ok(None);
    };
    record.external_ids = external_ids(conn, id)?;
    let mut stmt = conn.prepare_cached(
        "SELECT status, at, code, reason, attempt_at FROM outbound_events
         WHERE message_id = ?1 ORDER BY event_id",
    )?;
    let sending = |at_ms| StatusEvent {
        status: OutboundStatus::Sending,
        at_ms,
        code: None,
        reason: None,
    };
    // Every message starts queued at `created_at`; each event that ended a
    // send attempt is preceded by that attempt's start; an attempt still
    // under way ends the history.
    let mut history = vec![StatusEvent {
        status: OutboundStatus::Queued,
        at_ms: record.created_at_ms,
        code: None,
        reason: None,
    }];
    let stored = stmt.query_map([id], |row| {
        Ok((
            StatusEvent {
                status: row.get::<_, Status>(0)?.0,
                at_ms: row.get(1)?,
                code: row.get(2)?,
                reason: row.get(3)?,
            },
            row.get::<_, Option<i64>>(4)?,
        ))
    })?;
    for row in stored {
        let (event, attempt_at) = row?;
        history.extend(attempt_at.map(sending));
        history.push(event);
    }
    if record.status == OutboundStatus::Sending {
        history.extend(attempt_at.map(sending));
    }
    Ok(Some(OutboundDetail { record, history }))
}

fn external_ids(conn: &Connection, id: &str) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT external_id FROM outbound_parts WHERE message_id = ?1 ORDER BY part",
    )?;
    let ids = stmt
        .query_map([id], |row| row.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

pub fn list(conn: &Connection, f: &OutboundFilter) -> StoreResult<Vec<OutboundRecord>> {
    let sql = format!(
        "SELECT {OUTBOUND_COLUMNS} FROM outbound
         WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR channel = ?2)
           AND (?3 IS NULL OR phone_id = ?3) AND (?4 IS NULL OR created_at >= ?4)
           AND (?5 IS NULL OR seq < ?5)
         ORDER BY seq DESC LIMIT ?6"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(
            params![
                f.status.map(OutboundStatus::as_str),
                f.channel.map(ChannelKind::as_str),
                f.phone_id,
                f.since_ms,
                f.before_seq,
                f.limit,
            ],
            outbound_from_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let mut records = rows;
    for record in &mut records {
        record.external_ids = external_ids(conn, &record.id)?;
    }
    Ok(records)
}

pub fn cancel(conn: &Connection, id: &str, now_ms: i64) -> StoreResult<CancelOutcome> {
    let status: Option<Status> = by_id(conn, id, |seq| {
        Ok(conn
            .query_row(
                "SELECT status FROM outbound WHERE seq = ?1 AND id = ?2",
                params![seq, id],
                |row| row.get(0),
            )
            .optional()?)
    })?;
    match status.map(|s| s.0) {
        None => Ok(CancelOutcome::NotFound),
        Some(OutboundStatus::Queued) => {
            set_status(conn, id, OutboundStatus::Cancelled, now_ms, None, None)?;
            let cancelled = get(conn, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            Ok(CancelOutcome::Cancelled(Box::new(cancelled)))
        }
        Some(OutboundStatus::Cancelled) => {
            let cancelled = get(conn, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            Ok(CancelOutcome::AlreadyCancelled(Box::new(cancelled)))
        }
        Some(other) => Ok(CancelOutcome::NotCancellable(other)),
    }
}

/// Where message ?2, in row ?1, went, when the attempt that its next
/// event ends began (see `set_status`), and, while it is live, when it
/// may first have reached its recipient (`routing::SentTo::went_out_at`).
pub(super) const CURRENT: &str = "SELECT channel, phone_id, recipient, source,
        CASE WHEN status = 'sending' THEN attempt_at END,
        CASE WHEN status IN ('queued', 'sending') THEN went_out_at END
     FROM outbound WHERE seq = ?1 AND id = ?2";

/// Message `id` as [`CURRENT`] reads it, and its row: one statement for a
/// new id, not a [`locate`] and then the read, for this runs for every
/// outcome, on the writer thread.
fn current(conn: &Connection, id: &str) -> StoreResult<Option<(i64, SentTo, Option<i64>)>> {
    by_id(conn, id, |seq| {
        Ok(conn
            .prepare_cached(CURRENT)?
            .query_row(params![seq, id], |row| {
                let sent_to = SentTo {
                    channel: row.get(0)?,
                    phone_id: row.get(1)?,
                    recipient: row.get(2)?,
                    source: row.get(3)?,
                    went_out_at: row.get(5)?,
                };
                Ok((seq, sent_to, row.get::<_, Option<i64>>(4)?))
            })
            .optional()?)
    })
}

/// One status event, a single row.
pub(super) const EVENT: &str = "INSERT INTO outbound_events
        (message_id, status, at, code, reason, attempt_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// A status change to log in a message's history.
struct Event<'a> {
    status: OutboundStatus,
    at_ms: i64,
    code: Option<&'a str>,
    reason: Option<&'a str>,
}

impl Event<'_> {
    /// Log it for message `id`; `attempt_at` is when the send attempt this
    /// event ends began (the message was `sending`), which the history
    /// shows as that attempt's `sending` entry, so a claim needs no event
    /// row of its own (migration 6).
    fn log(&self, conn: &Connection, id: &str, attempt_at: Option<i64>) -> StoreResult<()> {
        conn.prepare_cached(EVENT)?.execute(params![
            id,
            self.status.as_str(),
            self.at_ms,
            self.code,
            self.reason,
            attempt_at
        ])?;
        Ok(())
    }

    /// As `log`, reading the attempt from the row, which has not changed
    /// yet; its seq, or nothing if there is no such message.
    fn log_before_change(&self, conn: &Connection, id: &str) -> StoreResult<Option<i64>> {
        let Some((seq, _, attempt_at)) = current(conn, id)? else {
            return Ok(None);
        };
        self.log(conn, id, attempt_at)?;
        Ok(Some(seq))
    }
}

/// A message's new status (see `set_status`).
///
/// OR FAIL: with the default (ABORT) SQLite may keep a statement journal
/// for a statement that can fail after it has written, copying each page
/// before the statement changes it, so that it can undo just that
/// statement. This one cannot break a constraint (nothing unique changes,
/// no NULL goes into a NOT NULL column), and if it fails otherwise the
/// writer undoes its whole group and redoes it with a savepoint per write,
/// or fails it whole (`writer.rs`), so the journal would buy nothing.
pub(super) const SET_STATUS: &str = "UPDATE OR FAIL outbound SET status = ?2, updated_at = ?3,
        lease_until = NULL, error_code = ?4, error_message = ?5
     WHERE seq = ?1";

/// Move message `id` to `status` and log it; returns where the message
/// went, which a sent outcome needs. An unknown id is an error. A live
/// message that ends unsent after an attempt that may have put some of it
/// out leaves its pChat user's conversation (`routing::record_ended_unsent`).
///
/// The row is read once, *before* it changes: an event that ends a send
/// attempt (the message was `sending`) carries the time that attempt
/// began, which the history shows as its `sending` entry, so a claim needs
/// no event row of its own (migration 6). Three plain statements, none of
/// which builds a temporary table: an `INSERT … SELECT` and an
/// `UPDATE … RETURNING` did the same with a statement journal and a
/// temporary B-tree (docs/performance.md, fifth pass).
fn set_status(
    conn: &Connection,
    id: &str,
    status: OutboundStatus,
    now_ms: i64,
    code: Option<&str>,
    reason: Option<&str>,
) -> StoreResult<SentTo> {
    let (seq, sent_to, attempt_at) =
        current(conn, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    let event = Event {
        status,
        at_ms: now_ms,
        code,
        reason,
    };
    event.log(conn, id, attempt_at)?;
    conn.prepare_cached(SET_STATUS)?.execute(params![
        seq,
        status.as_str(),
        now_ms,
        code,
        reason
    ])?;
    if matches!(
        status,
        OutboundStatus::Failed | OutboundStatus::Expired | OutboundStatus::Cancelled
    ) {
        routing::record_ended_unsent(conn, id, &sent_to)?;
    }
    Ok(sent_to)
}

// The statements that read the queue by status are consts, so `plans.rs`
// can check that each one reaches its partial index.

/// The next `limit` queued messages of an endpoint that are past their ttl.
pub(super) const EXPIRE_ENDPOINT: &str = concat!(
    "SELECT id FROM (
                SELECT id, expires_at FROM outbound
                WHERE channel = ?1 AND phone_id = ?2 AND status = 'queued' AND ",
    live!(),
    "
                ORDER BY priority DESC, seq LIMIT (?4 + 0))
             WHERE expires_at <= ?3"
);

/// Queued messages past their ttl, at most ?2.
pub(super) const EXPIRE_DUE: &str = concat!(
    "SELECT id FROM outbound WHERE status = 'queued' AND ",
    live!(),
    " AND expires_at <= ?1 LIMIT ?2"
);

/// Every claimed message.
pub(super) const ABANDONED: &str = concat!(
    "SELECT id, attempts FROM outbound WHERE status = 'sending' AND ",
    live!()
);

/// The next-due statement, with `$also` among its terms.
macro_rules! next_due {
    ($also:expr) => {
        concat!(
            "SELECT MIN(next_attempt_at) FROM outbound
             WHERE channel = ?1 AND phone_id = ?2 AND status = 'queued' AND ",
            live!(),
            " AND expires_at > ?3",
            $also
        )
    };
}

/// When the next queued message of an endpoint that the claim would take
/// is due. Not one past its ttl: the claim skips it (the expiry sweep ends
/// it), so a dispatcher told it was due claimed again at once, in a loop
/// until the sweep came.
pub(super) const NEXT_DUE: &str = next_due!("");

/// The term that leaves alone the messages of a held recipient from its
/// held message on: `$held` is the JSON array of `[recipient, priority,
/// seq]` that [`held_json`] makes. Queue order is `priority DESC, seq`, so
/// a row comes at or after the held one when its priority is lower, or
/// the same with a seq not smaller.
macro_rules! not_held {
    ($held:literal) => {
        concat!(
            " AND NOT EXISTS (SELECT 1 FROM json_each(",
            $held,
            ") AS held WHERE held.value ->> 0 = recipient
               AND (priority < held.value ->> 1
                    OR (priority = held.value ->> 1 AND seq >= held.value ->> 2)))"
        )
    };
}

/// As [`NEXT_DUE`], leaving alone the held recipients' messages of ?4.
pub(super) const NEXT_DUE_SKIPPING: &str = next_due!(not_held!("?4"));

/// Live counts and the window's outcomes per endpoint. The ended half
/// names each ended status: with `ended!()` alone (a NOT IN) the planner
/// has no status to seek and walks every ended message kept on every
/// `/ready`, `/metrics` and heartbeat; with them it reads each status's
/// range of the window. A message that went out counts in the window of
/// the attempt that sent it, not of its last report: a delivery report
/// for yesterday's send is no send this hour (those attempts start
/// before they end, so the `updated_at` range holds them all).
pub(super) const STATS: &str = concat!(
    "SELECT channel, phone_id, status, COUNT(*), MIN(seq) FROM outbound WHERE ",
    live!(),
    " GROUP BY channel, phone_id, status
         UNION ALL
         SELECT channel, phone_id, status, COUNT(*), NULL FROM outbound WHERE ",
    ended!(),
    " AND status IN ('sent', 'delivered', 'read', 'failed', 'expired', 'cancelled')
         AND updated_at >= ?1
         AND (status NOT IN ('sent', 'delivered', 'read') OR COALESCE(attempt_at, updated_at) >= ?1)
         GROUP BY channel, phone_id, status"
);

/// The claim's statement, with `$also` among its terms.
macro_rules! claim_due {
    ($also:expr) => {
        concat!(
            "SELECT ",
            outbound_columns!(),
            " FROM outbound
     WHERE channel = ?1 AND phone_id = ?2 AND status = 'queued' AND ",
            live!(),
            "
       AND next_attempt_at <= ?3 AND expires_at > ?3",
            $also,
            "
     ORDER BY priority DESC, seq LIMIT (?4 + 0)"
        )
    };
}

/// The claim: the next `limit` due queued messages of an
/// endpoint, in queue order, not past their ttl.
pub(super) const CLAIM_DUE: &str = claim_due!("");

/// As [`CLAIM_DUE`], leaving alone the held recipients' messages of ?5
/// (`ClaimRequest::skip_recipients`). Their rows are still walked, but
/// neither claimed nor written.
pub(super) const CLAIM_DUE_SKIPPING: &str = claim_due!(not_held!("?5"));

/// The held recipients as the skipping statements take them.
fn held_json(held: &[HeldRecipient]) -> String {
    serde_json::Value::Array(
        held.iter()
            .map(|h| serde_json::json!([h.recipient, h.priority, h.seq]))
            .collect(),
    )
    .to_string()
}

/// Claim the message in row ?1 until ?2 (at ?3). OR FAIL, as
/// [`SET_STATUS`]: nothing unique changes, so no statement journal.
pub(super) const CLAIM_ONE: &str = "UPDATE OR FAIL outbound SET status = 'sending',
        attempts = attempts + 1, lease_until = ?2, updated_at = ?3, attempt_at = ?3
     WHERE seq = ?1";

pub fn claim(conn: &Connection, c: &ClaimRequest) -> StoreResult<Vec<OutboundRecord>> {
    expire_endpoint(conn, c.channel, &c.phone_id, c.now_ms, c.limit)?;
    // Due queued messages only. A message in `sending` is never taken
    // back while the daemon runs, however old its lease: its dispatcher
    // holds it (waiting its turn behind its recipient's earlier sends or
    // for the rate limit, sending, or recording the outcome while the
    // store is out) and ends it with an outcome; taking it again sent it
    // twice. Claims a dead process left are requeued at start
    // (`requeue_abandoned`, under the instance lock). The read walks the
    // claim index in order and stops at `limit`, so a claim costs the same
    // with a backlog of a hundred thousand as with none; each chosen row
    // is claimed by rowid. One `UPDATE … WHERE seq IN (…) RETURNING` did
    // the same with four temporary B-trees a run and cost about twice as
    // much per claimed message (docs/performance.md, ninth pass). A queued
    // message past its ttl is not claimed. `LIMIT (?4 + 0)`, not
    // `LIMIT ?4`: SQLite reads a bare bound LIMIT while planning, and then
    // prepares the statement again on every run.
    let args = params![c.channel.as_str(), c.phone_id, c.now_ms, c.limit];
    let mut records = if c.skip_recipients.is_empty() {
        conn.prepare_cached(CLAIM_DUE)?
            .query_map(args, outbound_from_row)?
            .collect::<Result<Vec<_>, _>>()?
    } else {
        let skip = held_json(&c.skip_recipients);
        let args = params![c.channel.as_str(), c.phone_id, c.now_ms, c.limit, skip];
        conn.prepare_cached(CLAIM_DUE_SKIPPING)?
            .query_map(args, outbound_from_row)?
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut claim_one = conn.prepare_cached(CLAIM_ONE)?;
    for record in &mut records {
        claim_one.execute(params![record.seq, c.now_ms + c.lease_ms, c.now_ms])?;
        record.status = OutboundStatus::Sending;
        record.attempts += 1;
        record.updated_at_ms = c.now_ms;
    }
    // No `sending` event row: the event that ends this attempt carries
    // `attempt_at` (see `event`), one insert fewer per send.
    Ok(records)
}

/// Mark expired the messages past their ttl among the `limit` next in the
/// endpoint's queue: what the claim would have reached. Not the whole
/// queue (`expires_at` is not indexed, so that is a scan of the backlog on
/// every claim); the expiry sweeper marks the rest.
fn expire_endpoint(
    conn: &Connection,
    channel: ChannelKind,
    phone_id: &str,
    now_ms: i64,
    limit: u32,
) -> StoreResult<usize> {
    let ids = conn
        .prepare_cached(EXPIRE_ENDPOINT)?
        .query_map(params![channel.as_str(), phone_id, now_ms, limit], |row| {
            row.get(0)
        })?
        .collect::<Result<Vec<String>, _>>()?;
    mark_expired(conn, &ids, now_ms)
}

fn mark_expired(conn: &Connection, ids: &[String], now_ms: i64) -> StoreResult<usize> {
    for id in ids {
        set_status(
            conn,
            id,
            OutboundStatus::Expired,
            now_ms,
            Some("ttl_expired"),
            Some("not sent before ttl_seconds ran out"),
        )?;
    }
    Ok(ids.len())
}

pub fn expire_due(conn: &Connection, now_ms: i64, limit: u32) -> StoreResult<usize> {
    let ids = conn
        .prepare_cached(EXPIRE_DUE)?
        .query_map(params![now_ms, limit], |row| row.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    mark_expired(conn, &ids, now_ms)
}

pub fn requeue_abandoned(
    conn: &Connection,
    now_ms: i64,
    max_attempts: u32,
) -> StoreResult<Abandoned> {
    let claims = conn
        .prepare_cached(ABANDONED)?
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, u32>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    // A claim counts as an attempt when it is made, before any send
    // starts (a claimed message may wait for the rate limit, or be cut
    // short at the hard stop): a message claimed exactly `max_attempts`
    // times may never have gone out, and gets its last try. Only one
    // claimed more often than that (which only a daemon dying each time
    // makes) is failed.
    let (spent, ids): (Vec<_>, Vec<_>) = claims
        .into_iter()
        .map(|(id, attempts)| (id, stopped_past_max_attempts(attempts, max_attempts)))
        .partition(|(_, failed)| failed.is_some());
    for (id, reason) in &spent {
        let reason = reason.as_deref().unwrap_or_default();
        set_status(
            conn,
            id,
            OutboundStatus::Failed,
            now_ms,
            Some("retries_exhausted"),
            Some(reason),
        )?;
    }
    let event = Event {
        status: OutboundStatus::Queued,
        at_ms: now_ms,
        code: Some("requeued"),
        reason: Some("the daemon stopped while sending; sending again"),
    };
    // The claim may have gone out, in part, before the process died: from
    // now at the latest (an event time, as a retry's end is), a reply from
    // its recipient may answer it (`went_out_at`, see `requeue`). One time
    // for them all: this runs as the daemon starts, before any channel
    // could commit a reply.
    let went_out_at = crate::clock::event_ms();
    for (id, _) in &ids {
        let Some(seq) = event.log_before_change(conn, id)? else {
            continue;
        };
        // Due at once (0), as every message put back to go at once is:
        // due at the start's time, a clock stepped back after the start
        // (a wrong RTC that NTP puts right) would hold it, and its
        // recipient's later messages behind it, for as long as the step.
        conn.prepare_cached(
            "UPDATE outbound SET status = 'queued', next_attempt_at = ?4, updated_at = ?2,
                lease_until = NULL, went_out_at = COALESCE(went_out_at, ?3) WHERE seq = ?1",
        )?
        .execute(params![seq, now_ms, went_out_at, DUE_AT_ONCE_MS])?;
    }
    Ok(Abandoned {
        requeued: ids.len(),
        failed: spent.len(),
    })
}

/// Record the outcomes of several sends in the one transaction.
pub fn record_outcomes(conn: &Connection, outcomes: &[(String, SendOutcome)]) -> StoreResult<()> {
    // Reports that beat their send's outcome are rare; when none waits,
    // skip looking for one per external id.
    let early_waiting: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM outbound_early_status)")?
        .query_row([], |row| row.get(0))?;
    // Likewise, state an adapter keeps while it sends (a long SMS's
    // accepted parts) is looked for only when some is kept.
    let prefix = phonerelay_channel::MESSAGE_CURSOR_PREFIX;
    let message_state: bool = conn
        .prepare_cached(MESSAGE_STATE_KEPT)?
        .query_row([prefix, &past(prefix)], |row| row.get(0))?;
    for (id, outcome) in outcomes {
        record_outcome(conn, id, outcome, early_waiting)?;
        let ended = matches!(
            outcome,
            SendOutcome::Sent { .. } | SendOutcome::Failed { .. } | SendOutcome::Expired { .. }
        );
        if message_state && ended {
            forget_message_state(conn, id)?;
        }
    }
    Ok(())
}

/// Whether any adapter keeps per-message state (`message/<id>/<topic>`
/// cursors, the channel crate's `message_cursor`): a name from ?1 up to ?2.
const MESSAGE_STATE_KEPT: &str =
    "SELECT EXISTS (SELECT 1 FROM cursors WHERE name >= ?1 AND name < ?2)";

/// The first name past every one that starts with `prefix`, which ends in
/// `/` (the next character after it is `0`).
fn past(prefix: &str) -> String {
    format!("{}0", prefix.trim_end_matches('/'))
}

/// Drop the state an adapter kept for message `id` while it sent it, in
/// the transaction that records the message's end: dropped by the adapter
/// when its send returned, it was gone before the outbox had the outcome,
/// and a restart in between sent every part of a long message again.
fn forget_message_state(conn: &Connection, id: &str) -> StoreResult<()> {
    // Every topic of the message: names starting `message/<id>/`.
    let from = phonerelay_channel::message_cursor(id, "");
    conn.prepare_cached("DELETE FROM cursors WHERE name >= ?1 AND name < ?2")?
        .execute(params![from, past(&from)])?;
    Ok(())
}

fn record_outcome(
    conn: &Connection,
    id: &str,
    outcome: &SendOutcome,
    early_waiting: bool,
) -> StoreResult<()> {
    match outcome {
        SendOutcome::Sent { receipt, now_ms } => {
            let sent = set_status(conn, id, OutboundStatus::Sent, *now_ms, None, None)?;
            let (channel, phone_id) = (&sent.channel, &sent.phone_id);
            let mut held = Vec::with_capacity(receipt.external_ids.len());
            let mut held_elsewhere = 0;
            for (part, external_id) in receipt.external_ids.iter().enumerate() {
                let inserted = conn.prepare_cached(ADD_PART)?.execute(params![
                    channel,
                    phone_id,
                    external_id,
                    id,
                    part as i64
                ])?;
                if inserted == 1 {
                    held.push(external_id.clone());
                } else if let Some(holder) = other_holder(conn, &sent, external_id, id)? {
                    tracing::warn!(message_id = %id, %external_id, held_by = %holder,
                        "the channel gave a part an id another message's part already has; \
                         it stays with that message, and this one is not marked delivered");
                    held_elsewhere += 1;
                }
            }
            if held_elsewhere > 0 {
                conn.prepare_cached(
                    "UPDATE outbound SET parts_held_elsewhere = ?2 WHERE seq = ?1",
                )?
                .execute(params![require(conn, id)?, held_elsewhere])?;
            }
            routing::record_sent(conn, id, &sent, receipt, *now_ms)?;
            if early_waiting {
                apply_early(conn, id, channel, phone_id, &held)?;
            }
            Ok(())
        }
        other => record_outcome_plainly(conn, id, other),
    }
}

/// See `Store::record_outcome_plainly`: as [`record_outcome`] without a
/// sent message's parts, conversation and early reports.
pub fn record_outcome_plainly(
    conn: &Connection,
    id: &str,
    outcome: &SendOutcome,
) -> StoreResult<()> {
    match outcome {
        SendOutcome::Sent { now_ms, .. } => {
            let sent_to = current(conn, id)?.map(|(_, sent_to, _)| sent_to);
            set_status(conn, id, OutboundStatus::Sent, *now_ms, None, None)?;
            // Its conversation is not recorded (the whole outcome would not
            // go in), so whoever wrote to the recipient before still had
            // it, and a reply to this send went to them: a reply after it
            // goes by default instead.
            // In a savepoint of its own, a failure let go: this record is
            // the fallback for an outcome the store refused whole, maybe in
            // these very rows, and failing too it left the message
            // `sending`, sent again at the next start.
            let Some(sent_to) = sent_to else {
                return Ok(());
            };
            conn.execute_batch("SAVEPOINT plain_conversation")?;
            match routing::end_for_an_unknown_writer(conn, id, &sent_to, *now_ms) {
                Ok(()) => conn.execute_batch("RELEASE plain_conversation")?,
                Err(e) => {
                    tracing::warn!(message_id = %id, error = %e,
                        "cannot end the recipient's conversation; a reply after this send may go to whoever wrote before");
                    conn.execute_batch(
                        "ROLLBACK TO plain_conversation; RELEASE plain_conversation",
                    )?;
                }
            }
            Ok(())
        }
        SendOutcome::Retry {
            next_attempt_at_ms,
            code,
            reason,
            now_ms,
            may_have_gone_out,
        } => requeue(
            conn,
            id,
            *next_attempt_at_ms,
            *now_ms,
            Attempt::Counted {
                may_have_gone_out: *may_have_gone_out,
            },
            code,
            reason,
        ),
        SendOutcome::Release {
            next_attempt_at_ms,
            now_ms,
            code,
            reason,
        } => requeue(
            conn,
            id,
            *next_attempt_at_ms,
            *now_ms,
            Attempt::GivenBack,
            code,
            reason,
        ),
        SendOutcome::Failed {
            code,
            reason,
            now_ms,
        } => set_status(
            conn,
            id,
            OutboundStatus::Failed,
            *now_ms,
            Some(code),
            Some(reason),
        )
        .map(drop),
        SendOutcome::Expired { now_ms } => {
            give_back_claimed_attempt(conn, id)?;
            mark_expired(conn, &[id.to_string()], *now_ms).map(drop)
        }
    }
}

/// A claimed message found past its ttl before its send began: the claim
/// counted an attempt that never was, which it gives back, as a release
/// does (`Attempt::GivenBack`); kept, the API showed an attempt for a
/// message never tried. Its start goes too, before the expiry is logged:
/// logged with it, the history showed that attempt as `sending`.
fn give_back_claimed_attempt(conn: &Connection, id: &str) -> StoreResult<()> {
    let Some((seq, _, _)) = current(conn, id)? else {
        return Ok(());
    };
    conn.prepare_cached(
        "UPDATE OR FAIL outbound SET attempts = MAX(attempts - 1, 0), attempt_at = NULL
         WHERE seq = ?1",
    )?
    .execute([seq])?;
    Ok(())
}

/// A sent part of message ?4. A part whose id another message's part
/// already has (an adapter gave the id again: it lost track of it, or its
/// ids wrap) is not taken from that message: a report for the id may be
/// about either part, and taking it left that message without the part,
/// its external ids no longer showing it, and reports for its other parts
/// marked it delivered though that part was never confirmed. Unless that
/// part is settled (its final report recorded): a report for the id then
/// can only be about the new part, which takes the id over; kept, the
/// new message waited for good for a report that went to the other.
const ADD_PART: &str =
    "INSERT INTO outbound_parts (channel, phone_id, external_id, message_id, part)
     VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (channel, phone_id, external_id) DO UPDATE
        SET message_id = excluded.message_id, part = excluded.part, status = 'sent'
        WHERE outbound_parts.status <> 'sent'";

/// The message other than `id` whose part has `external_id` on the
/// endpoint `sent` went through; `None` if it is `id`'s own (an id the
/// receipt names twice).
fn other_holder(
    conn: &Connection,
    sent: &SentTo,
    external_id: &str,
    id: &str,
) -> StoreResult<Option<String>> {
    let holder: String = conn
        .prepare_cached(
            "SELECT message_id FROM outbound_parts
             WHERE channel = ?1 AND phone_id = ?2 AND external_id = ?3",
        )?
        .query_row(params![sent.channel, sent.phone_id, external_id], |row| {
            row.get(0)
        })?;
    Ok((holder != id).then_some(holder))
}

/// How a claimed message goes back to the queue.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// It was tried (`SendOutcome::Retry`), and some of it may have gone
    /// out unless the adapter said nothing did.
    Counted { may_have_gone_out: bool },
    /// It was not (`SendOutcome::Release`): the attempt is given back.
    GivenBack,
}

/// Put claimed message `id` back in the queue. After its first attempt
/// that counted and may have put something out, `went_out_at` takes
/// `now_ms`, that attempt's end (an event time: `SendOutcome::Retry`),
/// and keeps it through later ones. An attempt that put nothing out
/// leaves it alone: dated from it, the sender's conversation took the
/// replies meant for whoever wrote to the recipient before.
fn requeue(
    conn: &Connection,
    id: &str,
    next_attempt_at_ms: i64,
    now_ms: i64,
    attempt: Attempt,
    code: &str,
    reason: &str,
) -> StoreResult<()> {
    let event = Event {
        status: OutboundStatus::Queued,
        at_ms: now_ms,
        code: Some(code),
        reason: Some(reason),
    };
    let Some(seq) = event.log_before_change(conn, id)? else {
        return Ok(());
    };
    let (counted, may_have_gone_out) = match attempt {
        Attempt::Counted { may_have_gone_out } => (true, may_have_gone_out),
        Attempt::GivenBack => (false, false),
    };
    conn.prepare_cached(
        "UPDATE outbound SET status = 'queued', next_attempt_at = ?2, updated_at = ?3,
            lease_until = NULL, attempts = MAX(attempts - (NOT ?4), 0),
            error_code = ?5, error_message = ?6,
            went_out_at = CASE WHEN ?7 THEN COALESCE(went_out_at, ?3) ELSE went_out_at END
         WHERE seq = ?1",
    )?
    .execute(params![
        seq,
        next_attempt_at_ms,
        now_ms,
        counted,
        code,
        reason,
        may_have_gone_out
    ])?;
    Ok(())
}

/// The queued messages of an endpoint that are not due yet (waiting for a
/// retry or a rate limit) nor past their ttl. Read once as a dispatcher
/// starts, to rebuild what its memory kept before a restart
/// (`outbox::back_in_queue`); it walks the endpoint's queue once.
pub(super) const QUEUED_FOR_LATER: &str = concat!(
    "SELECT recipient, priority, seq, next_attempt_at, expires_at FROM outbound
     WHERE channel = ?1 AND phone_id = ?2 AND status = 'queued' AND ",
    live!(),
    " AND next_attempt_at > ?3 AND expires_at > ?3"
);

pub fn queued_for_later(
    conn: &Connection,
    channel: ChannelKind,
    phone_id: &str,
    now_ms: i64,
) -> StoreResult<Vec<QueuedForLater>> {
    Ok(conn
        .prepare_cached(QUEUED_FOR_LATER)?
        .query_map(params![channel.as_str(), phone_id, now_ms], |row| {
            Ok(QueuedForLater {
                recipient: row.get(0)?,
                priority: row.get(1)?,
                seq: row.get(2)?,
                due_ms: row.get(3)?,
                expires_at_ms: row.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?)
}

/// See `Store::next_due`.
pub fn next_due(
    conn: &Connection,
    channel: ChannelKind,
    phone_id: &str,
    now_ms: i64,
    skip_recipients: &[HeldRecipient],
) -> StoreResult<Option<i64>> {
    if skip_recipients.is_empty() {
        return Ok(conn
            .prepare_cached(NEXT_DUE)?
            .query_row(params![channel.as_str(), phone_id, now_ms], |row| {
                row.get(0)
            })?);
    }
    let skip = held_json(skip_recipients);
    Ok(conn
        .prepare_cached(NEXT_DUE_SKIPPING)?
        .query_row(params![channel.as_str(), phone_id, now_ms, skip], |row| {
            row.get(0)
        })?)
}

/// Apply `u`, received at `now_ms` (this bridge's clock).
pub fn apply_status(
    conn: &Connection,
    u: &StatusUpdate,
    now_ms: i64,
) -> StoreResult<Option<String>> {
    let part_status = match u.status {
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Read => "read",
        DeliveryStatus::Failed => "failed",
    };
    let part: Option<(String, String)> = conn
        .prepare_cached(
            "SELECT message_id, status FROM outbound_parts
             WHERE channel = ?1 AND phone_id = ?2 AND external_id = ?3",
        )?
        .query_row(
            params![u.channel.as_str(), u.phone_id, u.external_id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let Some((id, part_was)) = part else {
        keep_early(conn, u, now_ms)?;
        return Ok(None);
    };
    if part_moves_forward(&part_was, part_status) {
        conn.prepare_cached(
            "UPDATE outbound_parts SET status = ?4
             WHERE channel = ?1 AND phone_id = ?2 AND external_id = ?3",
        )?
        .execute(params![
            u.channel.as_str(),
            u.phone_id,
            u.external_id,
            part_status
        ])?;
    } else if part_was != part_status {
        // A delivered report after read came late; a failed one after
        // delivered (or the other way round) contradicts the part's first
        // final report. Logged, not recorded: an event would tell the
        // relay the message failed after it was told it was delivered.
        if part_was == "failed" || part_status == "failed" {
            tracing::warn!(message_id = %id, external_id = %u.external_id,
                part_was = %part_was, reported = part_status, code = ?u.code,
                reason = ?u.reason,
                "a report contradicting the part's first final report is ignored");
        }
        return Ok(Some(id));
    }
    let seq = require(conn, &id)?;
    let (current, updated_at, parts_held_elsewhere): (Status, i64, i64) = conn.query_row(
        "SELECT status, updated_at, parts_held_elsewhere FROM outbound WHERE seq = ?1",
        [seq],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    let part_states = conn
        .prepare_cached("SELECT status FROM outbound_parts WHERE message_id = ?1")?
        .query_map([&id], |row| row.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    let next = match u.status {
        DeliveryStatus::Failed => Some(OutboundStatus::Failed),
        // `part_states` are the parts the message has rows for; one held by
        // another message ([`ADD_PART`]) is never confirmed for this one.
        DeliveryStatus::Delivered | DeliveryStatus::Read if parts_held_elsewhere > 0 => None,
        DeliveryStatus::Delivered | DeliveryStatus::Read => delivered_or_read(&part_states),
    };
    let Some(next) = next else {
        return Ok(Some(id));
    };
    if moves_forward(current.0, next) {
        // The report's own time can be before the send was recorded (an
        // SMSC stamps whole seconds, a handset's clock is its own): a
        // history that goes back in time, and an `updated_at` before
        // `created_at`, help no one, so it is never earlier than the last
        // change. Nor later than now by this bridge's clock: an SMSC
        // whose clock is ahead, or a year it encodes wrongly (2080), put
        // the change hours or decades ahead, counted in the last hour's
        // sends all that while and never old enough for retention.
        set_status(
            conn,
            &id,
            next,
            u.at_ms.min(now_ms).max(updated_at),
            u.code.as_deref(),
            u.reason.as_deref(),
        )?;
    }
    Ok(Some(id))
}

/// Whether a part reported `was` may become `reported`: from sent to
/// delivered, read or failed, and from delivered to read. Reports come
/// late, twice or out of order, and a delivered and a failed one for the
/// same part contradict each other (both are final: an SMSC reports the
/// outcome once; two mean an id that came round again, or a faulty
/// upstream), so the first final report of a part stands.
fn part_moves_forward(was: &str, reported: &str) -> bool {
    matches!((was, reported), ("sent", _) | ("delivered", "read"))
}

/// What a message is once its parts stand at `part_states`, after a
/// delivered or read report: delivered once every part is (a
/// half-delivered long SMS is not delivered), read once every part is
/// delivered or read and one was read (one part read of a long message
/// whose other parts are not confirmed says nothing of those). `None`
/// leaves the message where it is.
fn delivered_or_read(part_states: &[String]) -> Option<OutboundStatus> {
    let confirmed = |s: &String| s == "delivered" || s == "read";
    if !part_states.iter().all(confirmed) {
        return None;
    }
    Some(if part_states.iter().any(|s| s == "read") {
        OutboundStatus::Read
    } else {
        OutboundStatus::Delivered
    })
}

/// Reports can arrive late or twice; never go back (a read message is not
/// "delivered" again, a delivered one does not fail: see
/// [`part_moves_forward`]) and never resurrect an ended one.
fn moves_forward(current: OutboundStatus, next: OutboundStatus) -> bool {
    use OutboundStatus::*;
    matches!(
        (current, next),
        (Sending | Sent, Delivered | Read | Failed) | (Delivered, Read)
    )
}

/// Live counts and the last window's outcomes per endpoint. The first half
/// reads only the (partial) claim index, the second range-scans the ended
/// index, so the cost follows the live queue and the window, not the
/// months of history in the table: `/ready` and `/metrics` are polled often.
pub fn stats(conn: &Connection, since_ms: i64) -> StoreResult<Vec<EndpointStats>> {
    let mut stmt = conn.prepare_cached(STATS)?;
    let rows = stmt
        .query_map([since_ms], |row| {
            Ok((
                row.get::<_, Kind>(0)?.0,
                row.get::<_, String>(1)?,
                row.get::<_, Status>(2)?.0,
                row.get::<_, u64>(3)?,
                row.get::<_, Option<i64>>(4)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut stats: Vec<EndpointStats> = Vec::new();
    for (channel, phone_id, status, count, min_seq) in rows {
        let index = match stats
            .iter()
            .position(|s| s.channel == channel && s.phone_id == phone_id)
        {
            Some(index) => index,
            None => {
                stats.push(EndpointStats {
                    channel,
                    phone_id,
                    queued: 0,
                    oldest_queued_at_ms: None,
                    sending: 0,
                    failed_recently: 0,
                    sent_recently: 0,
                });
                stats.len() - 1
            }
        };
        let entry = &mut stats[index];
        match status {
            OutboundStatus::Queued => {
                entry.queued += count;
                // Its accept time as the wall clock read it, from its
                // row: the time in its seq runs ahead of the clock after
                // a step back (seqs only grow), and an age read from it
                // stayed 0 for as long as the step; a seq from before
                // migration 9 has none.
                entry.oldest_queued_at_ms = match min_seq {
                    Some(seq) => conn
                        .prepare_cached("SELECT created_at FROM outbound WHERE seq = ?1")?
                        .query_row([seq], |row| row.get(0))
                        .optional()?,
                    None => None,
                };
            }
            OutboundStatus::Sending => entry.sending += count,
            OutboundStatus::Failed | OutboundStatus::Expired => entry.failed_recently += count,
            OutboundStatus::Sent | OutboundStatus::Delivered | OutboundStatus::Read => {
                entry.sent_recently += count
            }
            OutboundStatus::Cancelled => {}
        }
    }
    stats.sort_by(|a, b| (a.channel, &a.phone_id).cmp(&(b.channel, &b.phone_id)));
    Ok(stats)
}

/// Early reports kept longer than this are for sends that never got
/// recorded (another bridge's, or lost): forgotten, unless a message they
/// may be about can still be sent (see [`FORGET_EARLY`]).
const EARLY_STATUS_KEEP_MS: i64 = 24 * 3600 * 1000;

/// A report for an id no recorded send has yet: keep it for the outcome.
/// How long is counted from `now_ms`, when it came, by this bridge's
/// clock: the time the report carries is the upstream's, days old after
/// an outage or ahead, and must not decide what the others are kept for.
fn keep_early(conn: &Connection, u: &StatusUpdate, now_ms: i64) -> StoreResult<()> {
    let status = match u.status {
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Read => "read",
        DeliveryStatus::Failed => "failed",
    };
    conn.prepare_cached(
        "INSERT INTO outbound_early_status
            (channel, phone_id, external_id, status, code, reason, at, kept_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        u.channel.as_str(),
        u.phone_id,
        u.external_id,
        status,
        u.code,
        u.reason,
        u.at_ms,
        now_ms
    ])?;
    Ok(())
}

/// The endpoints with early reports kept before ?1.
const EARLY_ENDPOINTS: &str =
    "SELECT DISTINCT channel, phone_id FROM outbound_early_status WHERE kept_at < ?1";

/// When the oldest live (queued or sending) message of endpoint ?1/?2 was
/// accepted. The term is `live!()` word for word so the endpoint's live
/// rows are read through the claim index.
pub(super) const OLDEST_LIVE: &str = concat!(
    "SELECT MIN(created_at) FROM outbound WHERE channel = ?1 AND phone_id = ?2 AND ",
    live!()
);

/// The early reports of endpoint ?1/?2 kept before ?3.
const FORGET_EARLY_BEFORE: &str = "DELETE FROM outbound_early_status
     WHERE channel = ?1 AND phone_id = ?2 AND kept_at < ?3";

/// How far before a message's accept an early report may have been kept
/// and still be about it: both times are this bridge's wall clock, which
/// an NTP correction may step back between the accept and the report.
/// Short against the time an SMS id takes to come round (a TP-MR reused
/// for the same number, after a restart).
const EARLY_CLOCK_SLACK_MS: i64 = 600_000;

/// Forget the early reports kept longer than [`EARLY_STATUS_KEEP_MS`]
/// before `now_ms` that no message can still take: none of their endpoint
/// is live (queued or sending) that was accepted by the time the report
/// was kept (with the clock's slack), which is every message it can be
/// about ([`TAKE_EARLY`]); an ended one records no outcome again. A day
/// alone was too short: a long SMS whose first part was accepted and
/// reported may send its other parts days later (retries, a modem off the
/// network, up to its ttl), and its first part's report, forgotten by
/// then, left it `sent` for good.
///
/// Run by the hourly sweep (whatever the retention), not at each report:
/// finding an endpoint's oldest live message walks its live rows, once an
/// endpoint here, where a test per report walked them for every report
/// and held up the writer on a long queue.
pub fn forget_early(conn: &Connection, now_ms: i64) -> StoreResult<usize> {
    let cut_off = now_ms.saturating_sub(EARLY_STATUS_KEEP_MS);
    let endpoints = conn
        .prepare_cached(EARLY_ENDPOINTS)?
        .query_map([cut_off], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut forgotten = 0;
    for (channel, phone_id) in endpoints {
        let oldest_live: Option<i64> = conn
            .prepare_cached(OLDEST_LIVE)?
            .query_row(params![channel, phone_id], |row| row.get(0))?;
        let before = match oldest_live {
            Some(accepted_at) => cut_off.min(accepted_at.saturating_sub(EARLY_CLOCK_SLACK_MS)),
            None => cut_off,
        };
        forgotten += conn
            .prepare_cached(FORGET_EARLY_BEFORE)?
            .execute(params![channel, phone_id, before])?;
    }
    Ok(forgotten)
}

/// The early reports for one external id that can be about a part of a
/// message accepted at the time ?4 names, less the clock's slack
/// ([`EARLY_CLOCK_SLACK_MS`]), taken from the table to be applied: those
/// kept (by this bridge's clock) at or after it. One kept before is
/// another send's whose id came round again: an SMS id is its TP-MR, which
/// wraps, and an adapter that restarted relearns only the ids that reached
/// `outbound_parts`, not those of accepted parts of a message that then
/// failed. It stays, for a message it may be about (`forget_early`).
pub(super) const TAKE_EARLY: &str = "DELETE FROM outbound_early_status
     WHERE channel = ?1 AND phone_id = ?2 AND external_id = ?3 AND kept_at >= ?4
     RETURNING status, code, reason, at, kept_at";

/// Apply, in arrival order, the reports that came before the outcome of
/// message `id` and can be about it (see [`TAKE_EARLY`]).
fn apply_early(
    conn: &Connection,
    id: &str,
    channel: &str,
    phone_id: &str,
    external_ids: &[String],
) -> StoreResult<()> {
    let Ok(kind) = channel.parse::<ChannelKind>() else {
        return Ok(());
    };
    let seq = require(conn, id)?;
    let accepted_at: i64 = conn
        .prepare_cached("SELECT created_at FROM outbound WHERE seq = ?1")?
        .query_row([seq], |row| row.get(0))?;
    let kept_since = accepted_at.saturating_sub(EARLY_CLOCK_SLACK_MS);
    for external_id in external_ids {
        let early = conn
            .prepare_cached(TAKE_EARLY)?
            .query_map(params![channel, phone_id, external_id, kept_since], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut early = early;
        early.sort_by_key(|(_, _, _, at, kept_at)| (*kept_at, *at));
        for (status, code, reason, at_ms, kept_at) in early {
            let status = match status.as_str() {
                "read" => DeliveryStatus::Read,
                "failed" => DeliveryStatus::Failed,
                _ => DeliveryStatus::Delivered,
            };
            apply_status(
                conn,
                &StatusUpdate {
                    channel: kind,
                    phone_id: phone_id.to_string(),
                    external_id: external_id.clone(),
                    status,
                    code,
                    reason,
                    at_ms,
                },
                kept_at,
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use phonerelay_channel::SendReceipt;

    use super::*;
    use crate::store::sqlite::schema::{MIGRATIONS, at_version, migrate};
    use crate::store::testing::queued_sms;

    fn claim_at(conn: &Connection, now_ms: i64) -> Vec<OutboundRecord> {
        claim(
            conn,
            &ClaimRequest {
                channel: ChannelKind::Sms,
                phone_id: "m1".into(),
                limit: 10,
                now_ms,
                lease_ms: 60_000,
                skip_recipients: Vec::new(),
            },
        )
        .unwrap()
    }

    fn history(conn: &Connection, id: &str) -> Vec<(OutboundStatus, i64, Option<String>)> {
        get(conn, id)
            .unwrap()
            .unwrap()
            .history
            .into_iter()
            .map(|e| (e.status, e.at_ms, e.code))
            .collect()
    }

    fn sent(now_ms: i64) -> SendOutcome {
        SendOutcome::Sent {
            receipt: SendReceipt::single("ext-1".to_string()),
            now_ms,
        }
    }

    /// A message, accepted at 1, claimed at 10, its attempt ended by
    /// `outcome` (at 20) and due again at 30; and its id.
    fn first_attempt_ended_by(outcome: impl Fn(i64, i64) -> SendOutcome) -> (Connection, String) {
        let conn = at_version(MIGRATIONS.len());
        let seqs = SeqClock::load(&conn).unwrap();
        let AcceptOutcome::Created { id } = accept(&conn, &queued_sms("a", 1), &seqs).unwrap()
        else {
            panic!("not created")
        };
        assert_eq!(claim_at(&conn, 10).len(), 1);
        record_outcomes(&conn, &[(id.clone(), outcome(30, 20))]).unwrap();
        (conn, id)
    }

    /// A claim a dead process left is due at once when the next start puts
    /// it back: a clock stepped back after that start (a wrong RTC put
    /// right by NTP) does not hold it, as it held it for the step when it
    /// was due at the start's time.
    #[test]
    fn a_dead_process_s_claim_is_due_at_once_whatever_the_clock_does_after() {
        let conn = at_version(MIGRATIONS.len());
        let seqs = SeqClock::load(&conn).unwrap();
        let t0 = 1_800_000_000_000;
        let id = accept_new(&conn, &seqs, "text", t0);
        assert_eq!(claim_at(&conn, t0 + 10).len(), 1);
        let started_ahead = t0 + 3_600_000;
        let abandoned = requeue_abandoned(&conn, started_ahead, 12).unwrap();
        assert_eq!(abandoned.requeued, 1);
        let stepped_back = t0 + 20;
        let claimed = claim_at(&conn, stepped_back);
        assert_eq!(claimed.iter().map(|r| &r.id).collect::<Vec<_>>(), [&id]);
    }

    /// Two requests with one idempotency key that both passed the API's
    /// check before either committed: the second is a repeat if its value
    /// hash or its exact bytes' hash (a key kept before values were
    /// hashed) is the one kept, and a reused key otherwise.
    #[test]
    fn a_racing_repeat_is_matched_by_either_of_its_hashes() {
        let conn = at_version(MIGRATIONS.len());
        let seqs = SeqClock::load(&conn).unwrap();
        let keyed = |value: &str, exact: &str| {
            let mut m = queued_sms("a", 1);
            m.idempotency_key = Some("k-1".into());
            m.request_hash = value.into();
            m.exact_request_hash = exact.into();
            m
        };
        let AcceptOutcome::Created { id } = accept(&conn, &keyed("bytes", "bytes"), &seqs).unwrap()
        else {
            panic!("not created")
        };
        for (value, exact) in [("bytes", "other"), ("other", "bytes")] {
            let again = accept(&conn, &keyed(value, exact), &seqs).unwrap();
            let status = OutboundStatus::Queued;
            assert_eq!(
                again,
                AcceptOutcome::Replayed {
                    id: id.clone(),
                    status
                }
            );
        }
        let reused = accept(&conn, &keyed("other", "other"), &seqs).unwrap();
        assert_eq!(reused, AcceptOutcome::KeyReused { id });
    }

    /// The queue's age is its oldest queued message's accept time (the
    /// first by seq in the claim index, its row's `created_at`); a
    /// message being sent does not count.
    #[test]
    fn the_stats_name_when_the_oldest_queued_message_was_accepted() {
        let conn = at_version(MIGRATIONS.len());
        let seqs = SeqClock::load(&conn).unwrap();
        let t0 = 1_800_000_000_000; // 2027-01-15
        let oldest_queued = |conn: &Connection| stats(conn, 0).unwrap()[0].oldest_queued_at_ms;
        for (text, at) in [("first", t0), ("second", t0 + 5_000), ("third", t0 + 9_000)] {
            accept(&conn, &queued_sms(text, at), &seqs).unwrap();
        }
        assert_eq!(oldest_queued(&conn), Some(t0));
        // All three claimed: nothing waits, whatever is being sent.
        assert_eq!(claim_at(&conn, t0 + 10_000).len(), 3);
        assert_eq!(oldest_queued(&conn), None, "all three are sending");
        accept(&conn, &queued_sms("fourth", t0 + 20_000), &seqs).unwrap();
        assert_eq!(oldest_queued(&conn), Some(t0 + 20_000));
    }

    /// After the clock steps back, a new message's seq still follows the
    /// last (seqs only grow), so the time in it runs ahead: the queue's
    /// age is read from the row's accept time, as the clock read it, not
    /// from the seq, which made it 0 for as long as the step.
    #[test]
    fn the_queue_s_age_after_a_clock_step_back_is_the_clock_s() {
        let conn = at_version(MIGRATIONS.len());
        let seqs = SeqClock::load(&conn).unwrap();
        let t0 = 1_800_000_000_000;
        let hour = 3_600_000;
        accept(&conn, &queued_sms("while ahead", t0 + hour), &seqs).unwrap();
        assert_eq!(claim_at(&conn, t0 + hour).len(), 1);
        let AcceptOutcome::Created { id } =
            accept(&conn, &queued_sms("after the step", t0), &seqs).unwrap()
        else {
            panic!("not created")
        };
        let seq = get(&conn, &id).unwrap().unwrap().record.seq;
        assert!(message_id::accepted_at_ms(seq).unwrap() > t0 + hour / 2);
        assert_eq!(stats(&conn, 0).unwrap()[0].oldest_queued_at_ms, Some(t0));
    }

    #[test]
    fn each_attempt_shows_as_sending_once_though_a_claim_writes_no_event() {
        use OutboundStatus::*;
        let (conn, a) = first_attempt_ended_by(|next_attempt_at_ms, now_ms| SendOutcome::Retry {
            next_attempt_at_ms,
            code: "busy".into(),
            reason: "try later".into(),
            now_ms,
            may_have_gone_out: true,
        });
        assert_eq!(claim_at(&conn, 30).len(), 1);
        // The second attempt is under way: the history ends with it.
        let mut expected = vec![
            (Queued, 1, None),
            (Sending, 10, None),
            (Queued, 20, Some("busy".into())),
            (Sending, 30, None),
        ];
        assert_eq!(history(&conn, &a), expected);
        record_outcomes(&conn, &[(a.clone(), sent(40))]).unwrap();
        expected.push((Sent, 40, None));
        assert_eq!(history(&conn, &a), expected);
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM outbound_events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 2, "one row per attempt's end, none per claim");
    }

    /// A held recipient's messages from its held one on wait; one of a
    /// higher priority goes first, as the queue's order says. (All of
    /// them waited, so a high-priority message queued behind a low one's
    /// retry waited for it: docs/relay-protocol.md, "Order of sends".)
    #[test]
    fn a_held_recipient_s_message_of_higher_priority_is_still_claimed() {
        let (conn, waiting) =
            first_attempt_ended_by(|next_attempt_at_ms, now_ms| SendOutcome::Retry {
                next_attempt_at_ms,
                code: "busy".into(),
                reason: "try later".into(),
                now_ms,
                may_have_gone_out: true,
            });
        let waiting = get(&conn, &waiting).unwrap().unwrap().record;
        let seqs = SeqClock::load(&conn).unwrap();
        let urgent = NewOutbound {
            priority: waiting.priority + 1,
            ..queued_sms("urgent", 21)
        };
        accept(&conn, &urgent, &seqs).unwrap();
        accept(&conn, &queued_sms("after it", 22), &seqs).unwrap();
        let held = [HeldRecipient {
            recipient: waiting.to.clone(),
            priority: waiting.priority,
            seq: waiting.seq,
        }];
        assert_eq!(
            next_due(&conn, ChannelKind::Sms, "m1", 25, &held).unwrap(),
            Some(0),
            "the urgent one is due"
        );
        let claimed = claim(
            &conn,
            &ClaimRequest {
                channel: ChannelKind::Sms,
                phone_id: "m1".into(),
                limit: 10,
                now_ms: 25,
                lease_ms: 60_000,
                skip_recipients: held.to_vec(),
            },
        )
        .unwrap();
        let texts: Vec<&str> = claimed.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(texts, ["urgent"]);
        assert_eq!(
            next_due(&conn, ChannelKind::Sms, "m1", 25, &held).unwrap(),
            None,
            "what is left waits for the held one"
        );
    }

    /// A message past its ttl behind one waiting for a retry: the claim
    /// skips it, so the next due time must not be its own (a dispatcher
    /// told "due now" claimed again at once, in a loop until the sweep).
    #[test]
    fn the_next_due_time_skips_a_message_past_its_ttl() {
        let (conn, _) = first_attempt_ended_by(|next_attempt_at_ms, now_ms| SendOutcome::Retry {
            next_attempt_at_ms,
            code: "busy".into(),
            reason: "try later".into(),
            now_ms,
            may_have_gone_out: true,
        });
        let seqs = SeqClock::load(&conn).unwrap();
        let stale = NewOutbound {
            expires_at_ms: 22,
            ..queued_sms("b", 2)
        };
        accept(&conn, &stale, &seqs).unwrap();
        // Due at once (a new message's next attempt is 0) while in its ttl.
        assert_eq!(
            next_due(&conn, ChannelKind::Sms, "m1", 21, &[]).unwrap(),
            Some(0)
        );
        assert_eq!(
            next_due(&conn, ChannelKind::Sms, "m1", 25, &[]).unwrap(),
            Some(30)
        );
    }

    #[test]
    fn a_queued_message_that_is_cancelled_ends_no_attempt() {
        use OutboundStatus::*;
        let (conn, a) = first_attempt_ended_by(|next_attempt_at_ms, now_ms| SendOutcome::Release {
            next_attempt_at_ms,
            now_ms,
            code: "deferred".into(),
            reason: "held back by the per-recipient rate limit".into(),
        });
        // Queued again; cancelling it now ends no attempt, though the row
        // still holds the first attempt's start.
        let CancelOutcome::Cancelled(cancelled) = cancel(&conn, &a, 25).unwrap() else {
            panic!("not cancelled");
        };
        // The cancel answers the message as it left it.
        assert_eq!(*cancelled, get(&conn, &a).unwrap().unwrap());
        assert_eq!(
            history(&conn, &a),
            [
                (Queued, 1, None),
                (Sending, 10, None),
                (Queued, 20, Some("deferred".into())),
                (Cancelled, 25, None),
            ]
        );
    }

    #[test]
    fn a_message_claimed_before_migration_6_shows_its_sending_row_once() {
        use OutboundStatus::*;
        let mut conn = at_version(5);
        // A message as an accept and then a claim left it before migration
        // 6: the row, `sending`, and the claim's event.
        conn.execute_batch(
            "INSERT INTO outbound (id, request_hash, phone_id, channel, recipient, body,
                priority, status, attempts, created_at, updated_at, expires_at,
                next_attempt_at, lease_until)
             VALUES ('a', 'h', 'm1', 'sms', '+15551230001', 'a', 1, 'sending', 1, 1, 10,
                3600001, 1, 60010);
             INSERT INTO outbound_events (message_id, status, at) VALUES ('a', 'sending', 10);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(
            history(&conn, "a"),
            [(Queued, 1, None), (Sending, 10, None)]
        );
        record_outcomes(&conn, &[("a".into(), sent(40))]).unwrap();
        assert_eq!(
            history(&conn, "a"),
            [(Queued, 1, None), (Sending, 10, None), (Sent, 40, None)]
        );
    }

    fn accept_new(conn: &Connection, seqs: &SeqClock, text: &str, now_ms: i64) -> String {
        match accept(conn, &queued_sms(text, now_ms), seqs).unwrap() {
            AcceptOutcome::Created { id } => id,
            other => panic!("not created: {other:?}"),
        }
    }

    /// A new message is due at once whatever the clock does next: after
    /// the clock steps back (NTP), one accepted before the step is not
    /// held until the clock reaches its accept time again, and the
    /// recipient's next message does not overtake it.
    #[test]
    fn a_message_accepted_before_the_clock_stepped_back_is_still_due() {
        let conn = at_version(MIGRATIONS.len());
        let seqs = SeqClock::load(&conn).unwrap();
        let now = 1_764_000_000_000;
        let first = accept_new(&conn, &seqs, "first", now);
        let second = accept_new(&conn, &seqs, "second", now - 100_000);
        let claimed: Vec<String> = claim_at(&conn, now - 50_000)
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(claimed, [first, second]);
    }

    #[test]
    fn a_new_message_is_its_row_by_the_seq_its_id_names_and_no_index_on_ids_grows() {
        let conn = at_version(MIGRATIONS.len());
        let seqs = SeqClock::load(&conn).unwrap();
        let now = 1_764_000_000_000;
        let first = accept_new(&conn, &seqs, "one", now);
        let second = accept_new(&conn, &seqs, "two", now);
        let (seq_1, seq_2) = (
            locate(&conn, &first).unwrap(),
            locate(&conn, &second).unwrap(),
        );
        assert_eq!(seq_1, message_id::seq_of(&first));
        assert_eq!(
            seq_2,
            Some(seq_1.unwrap() + 1),
            "same millisecond: the counter"
        );
        assert_eq!(get(&conn, &second).unwrap().unwrap().record.text, "two");
        let in_legacy_index: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM outbound INDEXED BY outbound_id_before_v9
                 WHERE seq < 4294967296",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(in_legacy_index, 0);
        let sequences: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_sequence WHERE name = 'outbound'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(sequences, 0, "no AUTOINCREMENT row rewritten per accept");
    }

    #[test]
    fn an_id_with_a_real_seq_but_other_random_bits_finds_nothing() {
        let conn = at_version(MIGRATIONS.len());
        let seqs = SeqClock::load(&conn).unwrap();
        let id = accept_new(&conn, &seqs, "one", 1_764_000_000_000);
        let seq = message_id::seq_of(&id).unwrap();
        let forged = message_id::id_for(seq, 12345);
        assert_ne!(forged, id);
        assert_eq!(locate(&conn, &forged).unwrap(), None);
        assert!(get(&conn, &forged).unwrap().is_none());
        assert_eq!(cancel(&conn, &forged, 2).unwrap(), CancelOutcome::NotFound);
        assert!(record_outcomes(&conn, &[(forged, sent(40))]).is_err());
        assert_eq!(locate(&conn, &id.to_uppercase()).unwrap(), None);
        let record = get(&conn, &id).unwrap().unwrap().record;
        assert_eq!(record.status, OutboundStatus::Queued, "untouched");
    }

    #[test]
    fn messages_from_before_migration_9_keep_their_ids_and_new_ones_sort_after_them() {
        let mut conn = at_version(8);
        // Two messages as an accept before migration 9 left them: seqs 1
        // and 2 from AUTOINCREMENT, random UUIDv7 ids.
        let legacy = [
            "0194f0c2-7a4e-7000-8000-000000000001",
            "0194f0c2-7a4e-7000-8000-000000000002",
        ];
        for id in legacy {
            conn.execute(
                "INSERT INTO outbound (id, request_hash, phone_id, channel, recipient, body,
                    priority, status, created_at, updated_at, expires_at, next_attempt_at,
                    relay_message_id)
                 VALUES (?1, 'h', 'm1', 'sms', '+15551230001', ?1, 1, 'queued', 1, 1,
                    9999999999999, 1, 'relay-' || ?1)",
                [id],
            )
            .unwrap();
        }
        migrate(&mut conn).unwrap();
        assert_eq!(locate(&conn, legacy[0]).unwrap(), Some(1));
        assert_eq!(locate(&conn, legacy[1]).unwrap(), Some(2));
        // Every column came across.
        let detail = get(&conn, legacy[1]).unwrap().unwrap();
        assert_eq!(detail.record.text, legacy[1]);
        let relay: String = conn
            .query_row(
                "SELECT relay_message_id FROM outbound WHERE seq = 2",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(relay, format!("relay-{}", legacy[1]));
        // The partial index still refuses a second row with an old id.
        assert!(
            conn.execute(
                "INSERT INTO outbound (seq, id, request_hash, phone_id, channel, recipient,
                    body, priority, status, created_at, updated_at, expires_at,
                    next_attempt_at)
                 VALUES (3, ?1, 'h', 'm1', 'sms', '+1', 'x', 1, 'queued', 1, 1, 2, 1)",
                [legacy[0]],
            )
            .is_err()
        );

        let seqs = SeqClock::load(&conn).unwrap();
        let new = accept_new(&conn, &seqs, "new", 1_764_000_000_000);
        assert!(locate(&conn, &new).unwrap().unwrap() >= message_id::LEGACY_SEQ_LIMIT);
        let claimed: Vec<String> = claim_at(&conn, 1_764_000_000_000)
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(
            claimed,
            [legacy[0], legacy[1], new.as_str()],
            "oldest first"
        );
        record_outcomes(
            &conn,
            &[(legacy[0].into(), sent(40)), (new.clone(), sent(41))],
        )
        .unwrap();
        assert_eq!(
            get(&conn, legacy[0]).unwrap().unwrap().record.status,
            OutboundStatus::Sent
        );
        assert_eq!(
            get(&conn, &new).unwrap().unwrap().record.status,
            OutboundStatus::Sent
        );
    }

    /// A report for part `external_id` of a send on "m1".
    fn report(external_id: &str, status: DeliveryStatus, at_ms: i64) -> StatusUpdate {
        StatusUpdate {
            channel: ChannelKind::Sms,
            phone_id: "m1".into(),
            external_id: external_id.into(),
            status,
            code: None,
            reason: None,
            at_ms,
        }
    }

    /// A send whose parts took `external_ids`, recorded at `now_ms`.
    fn sent_as(external_ids: &[&str], now_ms: i64) -> SendOutcome {
        SendOutcome::Sent {
            receipt: SendReceipt {
                external_ids: external_ids.iter().map(|id| id.to_string()).collect(),
                thread_keys: Vec::new(),
            },
            now_ms,
        }
    }

    fn status_of(conn: &Connection, id: &str) -> OutboundStatus {
        get(conn, id).unwrap().unwrap().record.status
    }

    /// The first message's part took id "x" and its report came before
    /// the outcome; that message then failed for good, so "x" never
    /// reached the parts table, and after a restart the adapter gave "x"
    /// to a part of a message accepted later. The old report is not about
    /// that part.
    #[test]
    fn an_early_report_kept_before_a_message_was_accepted_is_not_applied_to_it() {
        let conn = at_version(MIGRATIONS.len());
        let seqs = SeqClock::load(&conn).unwrap();
        let t0 = 1_800_000_000_000;
        let failed = accept_new(&conn, &seqs, "failed", t0);
        assert_eq!(claim_at(&conn, t0 + 1_000).len(), 1);
        let early = report("x", DeliveryStatus::Delivered, t0 + 5_000);
        assert_eq!(apply_status(&conn, &early, t0 + 5_000).unwrap(), None);
        let gave_up = SendOutcome::Failed {
            code: "cms_38".into(),
            reason: "network out of order".into(),
            now_ms: t0 + 10_000,
        };
        record_outcomes(&conn, &[(failed.clone(), gave_up)]).unwrap();

        let later = accept_new(&conn, &seqs, "later", t0 + 3_600_000);
        assert_eq!(claim_at(&conn, t0 + 3_601_000).len(), 1);
        record_outcomes(&conn, &[(later.clone(), sent_as(&["x"], t0 + 3_602_000))]).unwrap();
        assert_eq!(status_of(&conn, &later), OutboundStatus::Sent);
        assert_eq!(status_of(&conn, &failed), OutboundStatus::Failed);
    }

    /// The clock stepped back five seconds between a hand-over's accept
    /// and its part's report: kept "before" the accept by the clock, the
    /// report is still this message's.
    #[test]
    fn an_early_report_kept_just_before_the_accept_by_a_clock_stepped_back_is_applied() {
        let conn = at_version(MIGRATIONS.len());
        let seqs = SeqClock::load(&conn).unwrap();
        let t0 = 1_800_000_000_000;
        let id = accept_new(&conn, &seqs, "stepped", t0);
        assert_eq!(claim_at(&conn, t0).len(), 1);
        let early = report("y", DeliveryStatus::Delivered, t0 - 5_000);
        assert_eq!(apply_status(&conn, &early, t0 - 5_000).unwrap(), None);
        record_outcomes(&conn, &[(id.clone(), sent_as(&["y"], t0 - 4_000))]).unwrap();
        assert_eq!(status_of(&conn, &id), OutboundStatus::Delivered);
    }

    const HOUR_MS: i64 = 3_600_000;

    /// A two-part SMS with a ttl of three days: its first part is accepted
    /// and reported delivered before the outcome, the second cannot go out
    /// for 30 hours. The first part's report outlives the sweeps of that
    /// time, so once both are delivered the message is.
    #[test]
    fn an_early_report_is_kept_while_the_message_it_may_be_about_can_still_be_sent() {
        let conn = at_version(MIGRATIONS.len());
        let seqs = SeqClock::load(&conn).unwrap();
        let t0 = 1_800_000_000_000;
        let long = NewOutbound {
            expires_at_ms: t0 + 72 * HOUR_MS,
            ..queued_sms("two parts", t0)
        };
        let AcceptOutcome::Created { id } = accept(&conn, &long, &seqs).unwrap() else {
            panic!("not created")
        };
        assert_eq!(claim_at(&conn, t0 + 1_000).len(), 1);
        let first_part = report("p0", DeliveryStatus::Delivered, t0 + 5_000);
        assert_eq!(apply_status(&conn, &first_part, t0 + 5_000).unwrap(), None);
        let off_network = SendOutcome::Retry {
            next_attempt_at_ms: t0 + 30 * HOUR_MS,
            code: "no_network".into(),
            reason: "modem not registered".into(),
            now_ms: t0 + 10_000,
            may_have_gone_out: true,
        };
        record_outcomes(&conn, &[(id.clone(), off_network)]).unwrap();
        // The hourly sweep, a day and an hour after the report came.
        forget_early(&conn, t0 + 25 * HOUR_MS).unwrap();

        assert_eq!(claim_at(&conn, t0 + 30 * HOUR_MS).len(), 1);
        let both = sent_as(&["p0", "p1"], t0 + 30 * HOUR_MS + 1_000);
        record_outcomes(&conn, &[(id.clone(), both)]).unwrap();
        let second_part = report("p1", DeliveryStatus::Delivered, t0 + 30 * HOUR_MS + 5_000);
        let applied = apply_status(&conn, &second_part, t0 + 30 * HOUR_MS + 5_000).unwrap();
        assert_eq!(applied.as_deref(), Some(id.as_str()));
        assert_eq!(status_of(&conn, &id), OutboundStatus::Delivered);
    }

    /// Once no message accepted before it can still be sent, a report kept
    /// more than a day is forgotten: it is another bridge's send, or one
    /// that ended without its outcome naming the id.
    #[test]
    fn an_early_report_no_live_message_can_take_is_forgotten_after_a_day() {
        let conn = at_version(MIGRATIONS.len());
        let seqs = SeqClock::load(&conn).unwrap();
        let t0 = 1_800_000_000_000;
        let ended = accept_new(&conn, &seqs, "ended", t0);
        assert_eq!(claim_at(&conn, t0 + 1_000).len(), 1);
        let early = report("p0", DeliveryStatus::Delivered, t0 + 5_000);
        assert_eq!(apply_status(&conn, &early, t0 + 5_000).unwrap(), None);
        // A message accepted after the report came cannot be about it.
        accept_new(&conn, &seqs, "later", t0 + HOUR_MS);
        assert_eq!(forget_early(&conn, t0 + 23 * HOUR_MS).unwrap(), 0);
        assert_eq!(
            forget_early(&conn, t0 + 25 * HOUR_MS).unwrap(),
            0,
            "sending"
        );
        let gave_up = SendOutcome::Failed {
            code: "cms_38".into(),
            reason: "network out of order".into(),
            now_ms: t0 + 25 * HOUR_MS,
        };
        record_outcomes(&conn, &[(ended, gave_up)]).unwrap();
        assert_eq!(forget_early(&conn, t0 + 25 * HOUR_MS).unwrap(), 1);
    }

    /// A message accepted and claimed on "m1" and recorded sent with
    /// `external_ids`; its id.
    fn sent_message(conn: &Connection, external_ids: &[&str], now_ms: i64) -> String {
        let seqs = SeqClock::load(conn).unwrap();
        let id = accept_new(conn, &seqs, "text", now_ms);
        assert_eq!(claim_at(conn, now_ms + 1).len(), 1);
        record_outcomes(conn, &[(id.clone(), sent_as(external_ids, now_ms + 2))]).unwrap();
        id
    }

    fn part_status(conn: &Connection, external_id: &str) -> String {
        conn.query_row(
            "SELECT status FROM outbound_parts WHERE external_id = ?1",
            [external_id],
            |row| row.get(0),
        )
        .unwrap()
    }

    fn statuses(conn: &Connection, id: &str) -> Vec<OutboundStatus> {
        history(conn, id).into_iter().map(|(s, _, _)| s).collect()
    }

    /// Both reports of a part are final; the first stands. A failed one
    /// after delivered neither fails a message still waiting for its other
    /// part nor turns a delivered message back to failed (the relay would
    /// hear failed after delivered).
    #[test]
    fn a_failed_report_after_the_part_was_delivered_is_ignored() {
        use OutboundStatus::*;
        let conn = at_version(MIGRATIONS.len());
        let t0 = 1_800_000_000_000;
        let id = sent_message(&conn, &["a", "b"], t0);
        let found = |external_id, status, at| {
            apply_status(&conn, &report(external_id, status, at), at).unwrap()
        };
        assert_eq!(
            found("a", DeliveryStatus::Delivered, t0 + 10).as_deref(),
            Some(id.as_str())
        );
        assert_eq!(
            found("a", DeliveryStatus::Failed, t0 + 20).as_deref(),
            Some(id.as_str())
        );
        assert_eq!(part_status(&conn, "a"), "delivered");
        assert_eq!(status_of(&conn, &id), Sent, "b is not confirmed yet");
        found("b", DeliveryStatus::Delivered, t0 + 30);
        assert_eq!(status_of(&conn, &id), Delivered);
        found("b", DeliveryStatus::Failed, t0 + 40);
        assert_eq!(part_status(&conn, "b"), "delivered");
        assert_eq!(
            statuses(&conn, &id),
            [Queued, Sending, Sent, Delivered],
            "no failed after delivered"
        );
    }

    /// A report dated ahead of this bridge's clock (an SMSC's clock
    /// ahead, or a year encoded wrongly) changes the message as of when
    /// it came, not decades ahead, where retention would never reach it;
    /// one dated before the last change, as of that change.
    #[test]
    fn a_report_dated_ahead_changes_the_message_as_of_now() {
        let conn = at_version(MIGRATIONS.len());
        let t0 = 1_800_000_000_000;
        let id = sent_message(&conn, &["a"], t0);
        let decades_ahead = t0 + 60 * 365 * 24 * HOUR_MS;
        let now = t0 + 5_000;
        apply_status(
            &conn,
            &report("a", DeliveryStatus::Delivered, decades_ahead),
            now,
        )
        .unwrap();
        let record = get(&conn, &id).unwrap().unwrap().record;
        assert_eq!(record.status, OutboundStatus::Delivered);
        assert_eq!(record.updated_at_ms, now);

        let late = sent_message(&conn, &["b"], t0 + 10_000);
        apply_status(
            &conn,
            &report("b", DeliveryStatus::Delivered, t0),
            now + 10_000,
        )
        .unwrap();
        let record = get(&conn, &late).unwrap().unwrap().record;
        assert_eq!(
            record.updated_at_ms,
            t0 + 10_002,
            "not before the send was recorded"
        );
    }

    /// The window's sends are the messages whose sending attempt was in
    /// it: a delivery report this hour for a message sent hours ago is
    /// no send this hour (the status read healthy while nothing went out);
    /// a message that failed this hour counts whenever it was sent.
    #[test]
    fn a_late_delivery_report_is_no_send_in_the_window_it_comes_in() {
        let conn = at_version(MIGRATIONS.len());
        let t0 = 1_800_000_000_000;
        let yesterday = sent_message(&conn, &["a"], t0);
        let failed_late = sent_message(&conn, &["b"], t0 + 10);
        let now = t0 + 20 * HOUR_MS;
        let this_hour = sent_message(&conn, &["c"], now - 10 * 60_000);
        for (part, status) in [
            ("a", DeliveryStatus::Delivered),
            ("b", DeliveryStatus::Failed),
            ("c", DeliveryStatus::Delivered),
        ] {
            apply_status(&conn, &report(part, status, now), now).unwrap();
        }
        assert_eq!(status_of(&conn, &yesterday), OutboundStatus::Delivered);
        assert_eq!(status_of(&conn, &failed_late), OutboundStatus::Failed);
        assert_eq!(status_of(&conn, &this_hour), OutboundStatus::Delivered);
        let window = &stats(&conn, now - HOUR_MS).unwrap()[0];
        assert_eq!(window.sent_recently, 1, "only the message sent this hour");
        assert_eq!(window.failed_recently, 1, "failed this hour");
    }

    /// A long message is read once each part is delivered or read and one
    /// was read, whatever order the reports come in; a part read and then
    /// reported delivered (late) stays read.
    #[test]
    fn one_read_part_makes_a_long_message_read_only_once_its_other_parts_are_delivered() {
        use OutboundStatus::*;
        let conn = at_version(MIGRATIONS.len());
        let t0 = 1_800_000_000_000;
        let id = sent_message(&conn, &["a", "b"], t0);
        let at = |ms| t0 + ms;
        apply_status(&conn, &report("a", DeliveryStatus::Read, at(10)), at(10)).unwrap();
        assert_eq!(status_of(&conn, &id), Sent, "b is not confirmed yet");
        apply_status(
            &conn,
            &report("a", DeliveryStatus::Delivered, at(20)),
            at(20),
        )
        .unwrap();
        assert_eq!(part_status(&conn, "a"), "read");
        apply_status(
            &conn,
            &report("b", DeliveryStatus::Delivered, at(30)),
            at(30),
        )
        .unwrap();
        assert_eq!(statuses(&conn, &id), [Queued, Sending, Sent, Read]);
    }

    fn external_ids_of(conn: &Connection, id: &str) -> Vec<String> {
        get(conn, id).unwrap().unwrap().record.external_ids
    }

    /// The channel gave "b", a part of the first message, again to a part
    /// of a second. The part stays the first message's: it still shows
    /// both ids, and a report for its other part does not mark it
    /// delivered, for "b" is not confirmed.
    #[test]
    fn a_part_id_given_again_stays_with_the_message_that_had_it() {
        let conn = at_version(MIGRATIONS.len());
        let t0 = 1_800_000_000_000;
        let first = sent_message(&conn, &["a", "b"], t0);
        let second = sent_message(&conn, &["b"], t0 + 1_000);
        let a = report("a", DeliveryStatus::Delivered, t0 + 2_000);
        let found = apply_status(&conn, &a, t0 + 2_000).unwrap();
        assert_eq!(found.as_deref(), Some(first.as_str()));
        assert_eq!(status_of(&conn, &first), OutboundStatus::Sent);
        assert_eq!(external_ids_of(&conn, &first), ["a", "b"]);
        assert_eq!(status_of(&conn, &second), OutboundStatus::Sent);
    }

    /// The id comes round again once the first message's part was
    /// reported delivered: a report for it now can only be about the new
    /// part, which takes the id over and is delivered by it.
    #[test]
    fn a_part_id_given_again_after_its_part_was_settled_goes_to_the_new_message() {
        let conn = at_version(MIGRATIONS.len());
        let t0 = 1_800_000_000_000;
        let first = sent_message(&conn, &["x"], t0);
        let x = report("x", DeliveryStatus::Delivered, t0 + 2_000);
        assert_eq!(
            apply_status(&conn, &x, t0 + 2_000).unwrap().as_deref(),
            Some(first.as_str())
        );
        let second = sent_message(&conn, &["x"], t0 + HOUR_MS);
        let x_again = report("x", DeliveryStatus::Delivered, t0 + HOUR_MS + 2_000);
        let found = apply_status(&conn, &x_again, t0 + HOUR_MS + 2_000).unwrap();
        assert_eq!(found.as_deref(), Some(second.as_str()));
        assert_eq!(status_of(&conn, &second), OutboundStatus::Delivered);
        assert_eq!(status_of(&conn, &first), OutboundStatus::Delivered);
    }

    /// A message whose part "b" another message holds has no part to
    /// confirm "b" by: its other part's report does not deliver it.
    #[test]
    fn a_message_lacking_a_part_another_holds_is_not_delivered_by_its_other_parts() {
        let conn = at_version(MIGRATIONS.len());
        let t0 = 1_800_000_000_000;
        sent_message(&conn, &["a", "b"], t0);
        let second = sent_message(&conn, &["c", "b"], t0 + 1_000);
        let c = report("c", DeliveryStatus::Delivered, t0 + 2_000);
        let found = apply_status(&conn, &c, t0 + 2_000).unwrap();
        assert_eq!(found.as_deref(), Some(second.as_str()));
        assert_eq!(status_of(&conn, &second), OutboundStatus::Sent);
        assert_eq!(external_ids_of(&conn, &second), ["c"]);
    }

    #[test]
    fn an_outcome_for_an_unknown_message_is_an_error() {
        let conn = at_version(MIGRATIONS.len());
        assert!(record_outcomes(&conn, &[("nope".into(), sent(40))]).is_err());
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM outbound_events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0);
    }
}
