//! Queue times written by a clock that was ahead. A message's due time
//! (`next_attempt_at`) and its end (`expires_at`) are wall-clock times: a
//! clock that ran fast in the last run (a real-time clock set ahead, put
//! right by NTP only after the daemon stopped, or a clock set back by hand
//! while the daemon was down) left every wait set then longer by the step, so a retry meant for ten minutes waited an hour more and a
//! ttl ran on as long.
//!
//! A live row last written (`updated_at`) later than now was written
//! before such a step. Its waits are measured again from now, and never
//! made longer: the due time at most its wait when it was written
//! (`next_attempt_at - updated_at`) from now, the end at most the whole
//! ttl (`expires_at - created_at`) from now. A retry's `updated_at` is an
//! event time (`clock::event_ms`), which may run ahead of the wall clock
//! after a start whose clock is behind the store's events: for such a row
//! the due time may come sooner than its backoff (one early attempt), but
//! the ttl's end, from the accept's wall-clock time, is never cut. Run at
//! the daemon's start, before the abandoned claims are requeued (which
//! writes them as of now); a step while the daemon runs is not seen here.

use rusqlite::{Connection, params};

use super::rows::live;
use crate::store::StoreResult;

/// How far ahead of now a row's last write must be before it counts as
/// written before a step back ([`crate::clock::CLOCK_STEP`]).
pub const AHEAD_MS: i64 = crate::clock::CLOCK_STEP.as_millis() as i64;

/// Live rows last written more than ?2 ms after ?1: due at most their wait
/// then after ?1, ending at most their whole ttl after ?1, and written at
/// ?1.
///
/// The accept time moves back as far as the end does, so that the two
/// still span the whole ttl: left ahead, the next rebase of the row (a
/// retry's event time ahead again at a later start) read a ttl cut by the
/// step, down to none, and ended the message at once.
const REBASE: &str = concat!(
    "UPDATE outbound SET
        next_attempt_at = MIN(next_attempt_at, ?1 + MAX(next_attempt_at - updated_at, 0)),
        expires_at = MIN(expires_at, ?1 + MAX(expires_at - created_at, 0)),
        created_at = created_at
            - (expires_at - MIN(expires_at, ?1 + MAX(expires_at - created_at, 0))),
        updated_at = ?1
     WHERE ",
    live!(),
    " AND updated_at > ?1 + ?2"
);

/// Measure the waits of every live message written after `now_ms` (by a
/// clock since stepped back) from `now_ms`; returns how many there were.
pub fn rebase(conn: &Connection, now_ms: i64) -> StoreResult<usize> {
    Ok(conn
        .prepare_cached(REBASE)?
        .execute(params![now_ms, AHEAD_MS])?)
}

#[cfg(test)]
mod tests {
    use phonerelay_channel::ChannelKind;

    use super::*;
    use crate::store::sqlite::outbound::{accept, claim, record_outcomes};
    use crate::store::sqlite::schema::{MIGRATIONS, at_version};
    use crate::store::sqlite::seq_clock::SeqClock;
    use crate::store::testing::queued_sms;
    use crate::store::{AcceptOutcome, ClaimRequest, SendOutcome};

    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 60 * MINUTE;
    const NOW: i64 = 1_800_000_000_000;

    /// A message accepted at `at` with an hour to live; its id.
    fn accepted(conn: &Connection, text: &str, at: i64) -> String {
        let seqs = SeqClock::load(conn).unwrap();
        let AcceptOutcome::Created { id } = accept(conn, &queued_sms(text, at), &seqs).unwrap()
        else {
            panic!("not created")
        };
        id
    }

    /// The attempt of the message claimed at `at` ends at `at` with
    /// `outcome(at)`.
    fn attempt_ended(conn: &Connection, id: &str, at: i64, outcome: impl Fn(i64) -> SendOutcome) {
        let request = ClaimRequest {
            channel: ChannelKind::Sms,
            phone_id: "m1".into(),
            limit: 1,
            now_ms: at,
            lease_ms: MINUTE,
            skip_recipients: Vec::new(),
        };
        let claimed = claim(conn, &request).unwrap();
        assert_eq!(
            claimed.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            [id]
        );
        record_outcomes(conn, &[(id.to_string(), outcome(at))]).unwrap();
    }

    fn retry_in_ten_minutes(at: i64) -> SendOutcome {
        SendOutcome::Retry {
            next_attempt_at_ms: at + 10 * MINUTE,
            code: "timeout".into(),
            reason: "no answer".into(),
            now_ms: at,
            may_have_gone_out: true,
        }
    }

    /// A message accepted at `at` and put back at `at` for a retry ten
    /// minutes on.
    fn waiting_for_retry(conn: &Connection, text: &str, at: i64) -> String {
        let id = accepted(conn, text, at);
        attempt_ended(conn, &id, at, retry_in_ten_minutes);
        id
    }

    fn times(conn: &Connection, id: &str) -> (i64, i64, i64) {
        conn.query_row(
            "SELECT next_attempt_at, expires_at, updated_at FROM outbound WHERE id = ?1",
            [id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap()
    }

    /// The clock stood an hour ahead when the retry was set, and is right
    /// now: the retry is ten minutes from now, not seventy, and the ttl's
    /// hour counts from now too.
    #[test]
    fn a_retry_set_by_a_clock_an_hour_ahead_is_due_when_it_was_meant_to_be() {
        let conn = at_version(MIGRATIONS.len());
        let id = waiting_for_retry(&conn, "ahead", NOW + HOUR);
        assert_eq!(rebase(&conn, NOW).unwrap(), 1);
        assert_eq!(times(&conn, &id), (NOW + 10 * MINUTE, NOW + HOUR, NOW));
        // Done once: a second look finds nothing written ahead.
        assert_eq!(rebase(&conn, NOW + 1).unwrap(), 0);
        assert_eq!(times(&conn, &id), (NOW + 10 * MINUTE, NOW + HOUR, NOW));
    }

    /// A message due at once when it was written stays due at once.
    #[test]
    fn a_message_due_at_once_stays_due() {
        let conn = at_version(MIGRATIONS.len());
        let id = accepted(&conn, "due", NOW + HOUR);
        assert_eq!(rebase(&conn, NOW).unwrap(), 1);
        let (due, expires, written) = times(&conn, &id);
        assert!(due <= NOW, "due at {due}, after now");
        assert_eq!((expires, written), (NOW + HOUR, NOW));
    }

    /// Rows written by the clock as it is now, and messages that ended,
    /// keep their times.
    #[test]
    fn rows_written_since_and_ended_messages_are_left_alone() {
        let conn = at_version(MIGRATIONS.len());
        let since = waiting_for_retry(&conn, "since", NOW - MINUTE);
        let ended = accepted(&conn, "ended", NOW + HOUR);
        attempt_ended(&conn, &ended, NOW + HOUR, |at| SendOutcome::Failed {
            code: "rejected".into(),
            reason: "no such number".into(),
            now_ms: at,
        });
        let (since_before, ended_before) = (times(&conn, &since), times(&conn, &ended));
        assert_eq!(rebase(&conn, NOW).unwrap(), 0);
        assert_eq!(times(&conn, &since), since_before);
        assert_eq!(times(&conn, &ended), ended_before);
    }

    /// Within [`AHEAD_MS`] of now is the clocks' own spread, not a step.
    #[test]
    fn a_row_a_moment_ahead_is_not_a_step() {
        let conn = at_version(MIGRATIONS.len());
        let id = waiting_for_retry(&conn, "moment", NOW + AHEAD_MS);
        let before = times(&conn, &id);
        assert_eq!(rebase(&conn, NOW).unwrap(), 0);
        assert_eq!(times(&conn, &id), before);
    }

    /// A retry recorded after a start whose clock was behind the store's
    /// events carries an event time ahead of the wall clock: at the next
    /// start its ttl, counted from its accept, is not cut.
    #[test]
    fn a_retry_dated_by_an_event_clock_ahead_keeps_its_ttl() {
        let conn = at_version(MIGRATIONS.len());
        let id = accepted(&conn, "event ahead", NOW);
        attempt_ended(&conn, &id, NOW, |_| SendOutcome::Retry {
            next_attempt_at_ms: NOW + 1_000,
            code: "timeout".into(),
            reason: "no answer".into(),
            now_ms: NOW + 50 * MINUTE,
            may_have_gone_out: true,
        });
        assert_eq!(rebase(&conn, NOW + 5 * MINUTE).unwrap(), 1);
        let (due, expires, _) = times(&conn, &id);
        assert_eq!((due, expires), (NOW + 1_000, NOW + HOUR));
    }

    /// A message accepted by a clock two hours ahead is rebased at a
    /// start; its retry is then dated by an event clock ahead again, and
    /// it is rebased at the next start too: its ttl is still the hour it
    /// was given at the first, not cut by the step (the accept time left
    /// ahead, it read as none, and the message ended at once).
    #[test]
    fn a_second_rebase_does_not_cut_the_ttl_the_first_one_gave() {
        let conn = at_version(MIGRATIONS.len());
        let id = accepted(&conn, "ahead twice", NOW + 2 * HOUR);
        assert_eq!(rebase(&conn, NOW).unwrap(), 1);
        assert_eq!(times(&conn, &id).1, NOW + HOUR);
        attempt_ended(&conn, &id, NOW + MINUTE, |at| SendOutcome::Retry {
            next_attempt_at_ms: at + MINUTE,
            code: "busy".into(),
            reason: "busy".into(),
            now_ms: NOW + 2 * HOUR + 1,
            may_have_gone_out: false,
        });
        assert_eq!(rebase(&conn, NOW + 5 * MINUTE).unwrap(), 1);
        assert_eq!(times(&conn, &id).1, NOW + HOUR, "the ttl's end moved");
    }
}
