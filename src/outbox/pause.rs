//! An endpoint-wide pause: after the remote refused a send for now (a rate
//! limit, congestion: `ErrorClass::RateLimited`) or the endpoint turned one
//! away (`ErrorClass::Unavailable`), its dispatcher starts no send until
//! the pause is over. A limit is usually the account's or the network's,
//! not one message's: the sends behind the refused one would only be
//! refused too, and some remotes lengthen their limit for every request
//! that ignores it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use phonerelay_channel::SendError;

use super::backoff::retry_delay_ms;
use crate::clock::CLOCK_STEP;

/// The wait the remote asked for with a refusal, if it named one. A
/// `Retry-After: 0` names none: taken at its word, the refused send went
/// back due at once, with no pause and no backoff, and was claimed, sent,
/// refused and put back in a loop as fast as the remote answered.
pub(super) fn asked_wait(error: &SendError) -> Option<Duration> {
    error.retry_after.filter(|wait| !wait.is_zero())
}

#[derive(Debug, Default)]
pub struct Pause {
    /// Unix ms before which no send starts (0: never paused).
    until_ms: AtomicI64,
    /// The same end on the monotonic clock: a wall clock stepped back
    /// would otherwise stretch the pause by the step, and the endpoint
    /// would send nothing for as long (see [`Pause::remaining`]).
    ends: Mutex<Option<Instant>>,
    /// The refusals since a send last went out. Changed only under its
    /// lock, so a refusal and a send that end together leave it whole;
    /// `refused_since_sent` spares every send the lock.
    refusals: Mutex<Refusals>,
    refused_since_sent: AtomicBool,
}

#[derive(Debug, Default)]
struct Refusals {
    /// Each met while no pause was on: what the wait grows with when the
    /// remote does not say how long.
    in_a_row: u32,
    /// For the status to say why the queue stands.
    last: Option<Refusal>,
    /// Unix ms when the pause the refusals began ends (0: none). The
    /// pause as a whole may be on for another reason (the endpoint turned
    /// a send away, `TURNED_AWAY_PAUSE`): a refusal then is no echo of an
    /// earlier one, and begins its own wait.
    until_ms: i64,
}

/// What the remote said when it last refused a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: String,
    pub message: String,
}

/// A pause as it is kept across a restart (in the store's cursors), so a
/// daemon restarted while a remote's limit runs does not hammer it again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedPause {
    pub until_ms: i64,
    /// Refusals in a row: the next unsaid wait grows from here.
    pub in_a_row: u32,
    pub code: String,
    pub message: String,
}

/// When the pause a refusal met or began ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PauseEnd {
    pub until_ms: i64,
    /// A pause was on already: this refusal was one of a burst.
    pub was_on: bool,
}

/// How a refused send's wait is worked out: the outbox's retry backoff.
#[derive(Debug, Clone, Copy)]
pub struct RefusalBackoff {
    pub initial_ms: u64,
    pub max_ms: u64,
}

impl Pause {
    /// How long the pause still runs at `now_ms`, if it does: by the wall
    /// clock, unless the monotonic clock says it ends more than
    /// [`CLOCK_STEP`](crate::clock::CLOCK_STEP) sooner, which only a wall clock stepped back since
    /// the pause began does. A step forward ends it early, as it does
    /// every due time the queue keeps.
    pub fn remaining(&self, now_ms: i64) -> Option<Duration> {
        let until = self.until_ms.load(Ordering::SeqCst);
        if until <= now_ms {
            return None;
        }
        let by_wall = Duration::from_millis((until - now_ms) as u64);
        let ends = *self.ends.lock().unwrap_or_else(|e| e.into_inner());
        let by_monotonic = ends.map(|end| end.saturating_duration_since(Instant::now()));
        match by_monotonic {
            Some(left) if left + CLOCK_STEP < by_wall => (!left.is_zero()).then_some(left),
            _ => Some(by_wall),
        }
    }

    /// Pause until `until_ms` at least (a longer pause already on stays);
    /// `now_ms` is the wall clock's time now.
    pub fn extend_to(&self, now_ms: i64, until_ms: i64) {
        self.until_ms.fetch_max(until_ms, Ordering::SeqCst);
        let wait = Duration::from_millis(u64::try_from(until_ms - now_ms).unwrap_or(0));
        let end = Instant::now() + wait;
        let mut ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        *ends = Some(ends.map_or(end, |e| e.max(end)));
    }

    /// The remote refused a send at `now_ms` with `error`, asking for its
    /// `retry_after` if it said: pause, and say when the pause ends.
    /// Refusals that come back while a pause is already on (sends that
    /// were in flight when the first refusal came) do not lengthen the
    /// wait, so a burst of them counts as one.
    pub fn refused(&self, now_ms: i64, error: &SendError, backoff: RefusalBackoff) -> PauseEnd {
        let mut refusals = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        refusals.last = Some(Refusal {
            code: error.code.clone(),
            message: error.message.clone(),
        });
        self.refused_since_sent.store(true, Ordering::SeqCst);
        let was_on = refusals.until_ms > now_ms && self.remaining(now_ms).is_some();
        let wait_ms = match asked_wait(error) {
            // Capped before it is made a number: a huge one cut to 64
            // bits could come out as no wait at all.
            Some(asked) => asked.min(Duration::from_millis(backoff.max_ms)).as_millis() as u64,
            None if was_on => 0,
            None => {
                refusals.in_a_row += 1;
                retry_delay_ms(refusals.in_a_row, backoff.initial_ms, backoff.max_ms)
            }
        };
        let until_ms = now_ms.saturating_add(wait_ms as i64);
        refusals.until_ms = refusals.until_ms.max(until_ms);
        self.extend_to(now_ms, until_ms);
        PauseEnd {
            until_ms: self.until_ms.load(Ordering::SeqCst),
            was_on,
        }
    }

    /// While a pause a refusal began is on: how long the pause still runs,
    /// and what the remote said. Not in a pause begun otherwise (a send
    /// turned away) after the refusal's had ended: the status would name a
    /// refusal that no longer holds anything.
    pub fn refusal(&self, now_ms: i64) -> Option<(Duration, Refusal)> {
        let left = self.remaining(now_ms)?;
        let refusals = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        if refusals.until_ms <= now_ms {
            return None;
        }
        Some((left, refusals.last.clone()?))
    }

    /// The pause a refusal began, to be kept across a restart; `None`
    /// while no refusal's pause runs at `now_ms`.
    pub fn saved(&self, now_ms: i64) -> Option<SavedPause> {
        let (_, refusal) = self.refusal(now_ms)?;
        let in_a_row = self
            .refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .in_a_row;
        Some(SavedPause {
            until_ms: self.until_ms.load(Ordering::SeqCst),
            in_a_row,
            code: refusal.code,
            message: refusal.message,
        })
    }

    /// Take up a pause the last run kept, if it still runs at `now_ms`,
    /// for at most `longest_ms` from now; returns whether it did. No pause
    /// is longer than that (`retry_max_ms` caps every wait), but its end
    /// is a wall-clock time: a clock stepped back across the restart
    /// stretched it by the step, and the endpoint sent nothing for hours.
    pub fn restore(&self, saved: SavedPause, now_ms: i64, longest_ms: u64) -> bool {
        if saved.until_ms <= now_ms {
            return false;
        }
        let longest = i64::try_from(longest_ms).unwrap_or(i64::MAX);
        let until_ms = saved.until_ms.min(now_ms.saturating_add(longest));
        let mut refusals = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        refusals.in_a_row = saved.in_a_row;
        refusals.until_ms = until_ms;
        refusals.last = Some(Refusal {
            code: saved.code,
            message: saved.message,
        });
        self.refused_since_sent.store(true, Ordering::SeqCst);
        self.extend_to(now_ms, until_ms);
        true
    }

    /// A send went out: the next refusal starts the wait afresh.
    pub fn sent(&self) {
        if self.refused_since_sent.load(Ordering::SeqCst) {
            let mut refusals = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
            self.refused_since_sent.store(false, Ordering::SeqCst);
            *refusals = Refusals::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: RefusalBackoff = RefusalBackoff {
        initial_ms: 1_000,
        max_ms: 60_000,
    };

    fn said(retry_after: Option<Duration>) -> SendError {
        SendError::rate_limited("http_429", "too many requests", retry_after)
    }

    /// A refusal that comes while the endpoint's short pause after turning
    /// a send away is on is the remote's own, not an echo of an earlier
    /// refusal: it begins its backoff (and is kept across a restart), and
    /// the status names it only while its own pause runs.
    #[test]
    fn a_refusal_during_a_turn_away_pause_begins_its_own_wait() {
        let pause = Pause::default();
        pause.extend_to(10_000, 10_250);
        let end = pause.refused(10_010, &said(None), BACKOFF);
        assert!(!end.was_on, "taken for one of a burst");
        assert!((10_510..=11_010).contains(&end.until_ms), "{end:?}");
        assert!(pause.refusal(10_100).is_some());
        // A later turn-away, the refusal's wait over: no refusal named.
        pause.extend_to(20_000, 20_250);
        assert_eq!(pause.refusal(20_100), None);
    }

    #[test]
    fn a_fresh_pause_holds_nothing() {
        assert_eq!(Pause::default().remaining(1_000), None);
    }

    #[test]
    fn the_remote_s_retry_after_is_kept_up_to_the_cap() {
        let pause = Pause::default();
        let until = pause
            .refused(10_000, &said(Some(Duration::from_secs(3))), BACKOFF)
            .until_ms;
        assert_eq!(until, 13_000);
        assert_eq!(pause.remaining(12_000), Some(Duration::from_secs(1)));
        assert_eq!(pause.remaining(13_000), None);
        let capped = pause
            .refused(20_000, &said(Some(Duration::from_secs(3_600))), BACKOFF)
            .until_ms;
        assert_eq!(capped, 80_000, "a retry_after is capped at max_ms");
    }

    /// A wait of zero is no wait named: the usual backoff, growing.
    #[test]
    fn a_retry_after_of_zero_pauses_for_the_backoff() {
        let pause = Pause::default();
        let first = pause
            .refused(0, &said(Some(Duration::ZERO)), BACKOFF)
            .until_ms;
        assert!((500..=1_000).contains(&first), "{first}");
        let second = pause
            .refused(first, &said(Some(Duration::ZERO)), BACKOFF)
            .until_ms
            - first;
        assert!((1_000..=2_000).contains(&second), "{second}");
    }

    #[test]
    fn unsaid_waits_double_with_each_refusal_in_a_row_and_restart_after_a_send() {
        let pause = Pause::default();
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..3 {
            let until = pause.refused(now, &said(None), BACKOFF).until_ms;
            waits.push(until - now);
            now = until;
        }
        // Equal jitter: each wait in the upper half of 1 s, 2 s, 4 s.
        assert!((500..=1_000).contains(&waits[0]), "{waits:?}");
        assert!((1_000..=2_000).contains(&waits[1]), "{waits:?}");
        assert!((2_000..=4_000).contains(&waits[2]), "{waits:?}");
        pause.sent();
        let after_send = pause.refused(now, &said(None), BACKOFF).until_ms - now;
        assert!((500..=1_000).contains(&after_send), "{after_send}");
    }

    #[test]
    fn refusals_during_a_pause_do_not_lengthen_it() {
        let pause = Pause::default();
        let first = pause.refused(0, &said(None), BACKOFF);
        assert!(!first.was_on);
        let until = first.until_ms;
        for at in [1, 2, 3] {
            let burst = pause.refused(at, &said(None), BACKOFF);
            assert_eq!((burst.until_ms, burst.was_on), (until, true));
        }
        // The next refusal after the pause is the second in a row.
        let second = pause.refused(until, &said(None), BACKOFF).until_ms - until;
        assert!((1_000..=2_000).contains(&second), "{second}");
    }

    #[test]
    fn a_saved_pause_is_taken_up_while_it_runs_and_counts_on() {
        let pause = Pause::default();
        assert_eq!(pause.saved(0), None);
        pause.refused(0, &said(None), BACKOFF);
        let first = pause.refused(pause.saved(0).unwrap().until_ms, &said(None), BACKOFF);
        let saved = pause
            .saved(first.until_ms - 1)
            .expect("a refusal's pause runs");
        assert_eq!((saved.in_a_row, saved.code.as_str()), (2, "http_429"));

        let restarted = Pause::default();
        let longest = BACKOFF.max_ms;
        assert!(
            !restarted.restore(saved.clone(), saved.until_ms, longest),
            "over"
        );
        assert_eq!(restarted.remaining(0), None);
        assert!(restarted.restore(saved.clone(), saved.until_ms - 10, longest));
        assert_eq!(
            restarted.remaining(saved.until_ms - 10),
            Some(Duration::from_millis(10))
        );
        assert_eq!(
            restarted.refusal(saved.until_ms - 10).unwrap().1.code,
            "http_429"
        );
        // The next refusal is the third in a row: 2–4 s.
        let third = restarted
            .refused(saved.until_ms, &said(None), BACKOFF)
            .until_ms;
        assert!(
            (2_000..=4_000).contains(&(third - saved.until_ms)),
            "{third}"
        );
    }

    /// The wall clock stepped back an hour across a restart: the kept
    /// pause's end is an hour further off than it was, but no pause is
    /// longer than the longest wait (`retry_max_ms`).
    #[test]
    fn a_restored_pause_is_no_longer_than_the_longest_wait() {
        let pause = Pause::default();
        let saved = SavedPause {
            until_ms: 10_000_000,
            in_a_row: 1,
            code: "http_429".into(),
            message: "too many requests".into(),
        };
        let now = saved.until_ms - 60_000 - 3_600_000;
        assert!(pause.restore(saved, now, BACKOFF.max_ms));
        let left = pause.remaining(now).expect("still paused");
        assert!(left <= Duration::from_millis(BACKOFF.max_ms), "{left:?}");
    }

    #[test]
    fn the_status_hears_the_last_refusal_while_its_pause_runs() {
        let pause = Pause::default();
        pause.extend_to(0, 500);
        assert_eq!(pause.refusal(0), None, "a turned-away pause has no refusal");
        pause.refused(1_000, &said(Some(Duration::from_secs(2))), BACKOFF);
        let (left, refusal) = pause.refusal(1_500).expect("paused");
        assert_eq!(left, Duration::from_millis(1_500));
        assert_eq!(refusal.code, "http_429");
        assert_eq!(refusal.message, "too many requests");
        assert_eq!(pause.refusal(3_000), None, "over");
        pause.refused(4_000, &said(Some(Duration::from_secs(2))), BACKOFF);
        pause.sent();
        pause.extend_to(0, 10_000);
        assert_eq!(pause.refusal(5_000), None, "a send went out since");
    }

    #[test]
    fn a_shorter_pause_does_not_cut_a_longer_one() {
        let pause = Pause::default();
        pause.extend_to(0, 5_000);
        pause.extend_to(0, 1_000);
        assert_eq!(pause.remaining(0), Some(Duration::from_secs(5)));
    }

    /// The wall clock stepped back an hour after a refusal asked for two
    /// seconds: the pause still ends two seconds after it began, not an
    /// hour later (the whole endpoint sent nothing for that hour).
    #[test]
    fn a_clock_stepped_back_does_not_stretch_the_pause() {
        let pause = Pause::default();
        let at = 10_000_000;
        pause.refused(at, &said(Some(Duration::from_secs(2))), BACKOFF);
        let left = pause.remaining(at - 3_600_000).expect("still paused");
        assert!(left <= Duration::from_secs(2), "{left:?}");
        // A step forward ends it.
        assert_eq!(pause.remaining(at + 2_000), None);
    }
}
