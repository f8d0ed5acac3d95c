//! Wall-clock time in Unix milliseconds, the unit the store keeps.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// How far the wall clock must have gone back to count as stepped back:
/// more than the wall and monotonic clocks drift apart over any wait the
/// daemon keeps (NTP slews a clock by at most half a millisecond a
/// second), and more than a time read a moment before its row is written.
pub const CLOCK_STEP: Duration = Duration::from_secs(1);

/// Read straight from the system clock: every accept and claim asks, and
/// going through a calendar date (`chrono::Utc::now`) cost a POST's worker
/// about 1% of its time for a value it turns straight back into a count.
pub fn now_ms() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        // A clock set before 1970: counted back from it, as before.
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// How far ahead of the clock event times may run and still order new
/// ones after them: the last event time given, or the latest one a store
/// holds when it opens. A box that comes back with its clock behind by up
/// to a day (its last saved time, before NTP answers) keeps the order;
/// further ahead, a clock ran ahead for a while (a bad GPS or NTP answer,
/// put right since), and taken up it would date every later event that
/// far ahead, for as long (reply routing's ttl counted from it, retention
/// keeping them).
pub const MAX_EVENT_AHEAD_MS: i64 = 24 * 3_600_000;

/// Event times for the whole process ([`event_ms`]).
static EVENTS: EventClock = EventClock::new();

/// The time of an event reply routing orders by: a send to a person went
/// out, a message from one was committed. Reply routing asks who wrote to
/// the sender last *before* the reply came, by comparing these times, so
/// they must follow the order the events happened in: each is later than
/// the one before in this process (the wall clock, or one millisecond on
/// from the last when the clock stands still or was stepped back), and
/// later than any the store holds ([`raise_event_floor`]). Stepped back
/// (NTP, a box without a real-time clock booting at its last saved time),
/// the wall clock made a reply look older than the send before it, and
/// routed it to whoever wrote before that. Forward steps are followed; a
/// step back of more than [`MAX_EVENT_AHEAD_MS`] is too, as the end of a
/// time the clock ran ahead.
pub fn event_ms() -> i64 {
    EVENTS.next(now_ms())
}

/// Make every later [`event_ms`] later than `ms`: the latest event time a
/// store holds, read when it opens, so the order holds across a restart
/// whose clock is behind.
pub fn raise_event_floor(ms: i64) {
    EVENTS.raise_floor(ms);
}

/// Strictly increasing times that follow the clock forward.
struct EventClock {
    /// The last time given, or the floor raised since.
    last: AtomicI64,
}

impl EventClock {
    const fn new() -> Self {
        Self {
            last: AtomicI64::new(i64::MIN),
        }
    }

    /// `now`, or one millisecond after the last time given if that is not
    /// before `now` (and not more than [`MAX_EVENT_AHEAD_MS`] ahead of it).
    fn next(&self, now: i64) -> i64 {
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let ran_ahead = last.saturating_sub(now) > MAX_EVENT_AHEAD_MS;
            let next = if ran_ahead {
                now
            } else {
                now.max(last.saturating_add(1))
            };
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    if ran_ahead {
                        tracing::warn!(
                            last = %rfc3339(last),
                            "the clock had run more than a day ahead and is back: \
                             new events are dated by it again"
                        );
                    }
                    return next;
                }
                Err(seen) => last = seen,
            }
        }
    }

    fn raise_floor(&self, ms: i64) {
        self.last.fetch_max(ms, Ordering::Relaxed);
    }
}

/// RFC 3339 with milliseconds, UTC, as the API shows every time.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn parse_rfc3339(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_ms_reads_the_same_clock_as_a_calendar_date() {
        let before = chrono::Utc::now().timestamp_millis();
        let now = now_ms();
        let after = chrono::Utc::now().timestamp_millis();
        assert!(
            before <= now && now <= after,
            "{before} <= {now} <= {after}"
        );
    }

    #[test]
    fn event_times_follow_the_clock_forward_and_never_go_back() {
        let clock = EventClock::new();
        assert_eq!(clock.next(1_000), 1_000);
        assert_eq!(clock.next(5_000), 5_000, "a step forward is followed");
        assert_eq!(clock.next(2_000), 5_001, "a step back is not");
        assert_eq!(clock.next(5_001), 5_002, "nor a clock standing still");
        clock.raise_floor(9_000);
        assert_eq!(clock.next(6_000), 9_001, "a floor ahead of the clock");
        clock.raise_floor(0);
        assert_eq!(clock.next(6_000), 9_002, "a lower floor changes nothing");
    }

    /// A clock that ran more than a day ahead for a while and was put
    /// right dates events by itself again; followed, every event after
    /// was dated as far ahead, for as long.
    #[test]
    fn event_times_come_back_from_a_clock_that_ran_far_ahead() {
        let clock = EventClock::new();
        let now = 1_800_000_000_000;
        assert_eq!(clock.next(now), now);
        let year = 365 * 24 * 3_600_000;
        assert_eq!(clock.next(now + year), now + year, "the glitch");
        assert_eq!(clock.next(now + 1_000), now + 1_000, "put right");
        assert_eq!(clock.next(now + 1_000), now + 1_001);
        // A day behind is still a step back, ordered after.
        let day = MAX_EVENT_AHEAD_MS;
        assert_eq!(clock.next(now + day), now + day);
        assert_eq!(clock.next(now + 2), now + day + 1);
    }
}
