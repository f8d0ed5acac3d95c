//! An endpoint's failed attempts in the last hour, and the last one's
//! reason. A message fails for good only after its last attempt (twelve,
//! about 37 minutes with the default backoff), so while every send fails
//! for now (an SMS centre refusing each one, the modem still registered)
//! the count of failed messages reads 0, and `phonerelay status` looked
//! fine while nothing went out. Counted in memory, by the minute: a
//! restart starts it again. Pure: times are passed in.

use std::collections::VecDeque;
use std::sync::Mutex;

const MINUTE_MS: i64 = 60_000;

/// How far back the count goes.
const WINDOW_MS: i64 = 3_600_000;

/// The last failed attempt: its error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastFailure {
    pub code: String,
    pub message: String,
    pub at_ms: i64,
}

#[derive(Default)]
pub struct RecentFailures {
    inner: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    /// (minute, failed attempts in it), oldest first.
    minutes: VecDeque<(i64, u64)>,
    last: Option<LastFailure>,
}

impl Window {
    fn forget_before(&mut self, now_ms: i64) {
        let first_kept = (now_ms - WINDOW_MS).div_euclid(MINUTE_MS);
        while self.minutes.front().is_some_and(|(m, _)| *m <= first_kept) {
            self.minutes.pop_front();
        }
    }
}

impl RecentFailures {
    /// An attempt failed at `at_ms` with `code`: `message`.
    pub fn note(&self, code: &str, message: &str, at_ms: i64) {
        let mut window = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let minute = at_ms.div_euclid(MINUTE_MS);
        match window.minutes.back_mut() {
            Some((last, count)) if *last == minute => *count += 1,
            // A clock stepped back lands in the last minute counted: the
            // queue stays in order, and nothing is lost from the count.
            Some((last, count)) if *last > minute => *count += 1,
            _ => window.minutes.push_back((minute, 1)),
        }
        window.forget_before(at_ms);
        window.last = Some(LastFailure {
            code: code.to_string(),
            message: message.to_string(),
            at_ms,
        });
    }

    /// Failed attempts within the hour before `now_ms` (to the minute).
    pub fn in_last_hour(&self, now_ms: i64) -> u64 {
        let mut window = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        window.forget_before(now_ms);
        window.minutes.iter().map(|(_, n)| n).sum()
    }

    /// The last failed attempt, if it was within the hour before `now_ms`.
    pub fn last_within_the_hour(&self, now_ms: i64) -> Option<LastFailure> {
        let window = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        window
            .last
            .clone()
            .filter(|last| now_ms.saturating_sub(last.at_ms) < WINDOW_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_counted_for_an_hour_and_the_last_is_kept() {
        let failures = RecentFailures::default();
        let t0 = 1_800_000_000_000;
        assert_eq!(failures.in_last_hour(t0), 0);
        assert_eq!(failures.last_within_the_hour(t0), None);
        failures.note("cms_500", "unknown error", t0);
        failures.note("cms_500", "unknown error", t0 + 1_000);
        failures.note("cms_27", "destination out of service", t0 + 30 * MINUTE_MS);
        assert_eq!(failures.in_last_hour(t0 + 30 * MINUTE_MS), 3);
        let last = failures.last_within_the_hour(t0 + 30 * MINUTE_MS).unwrap();
        assert_eq!(
            (last.code.as_str(), last.at_ms),
            ("cms_27", t0 + 30 * MINUTE_MS)
        );
        // The first two are an hour old at t0 + 61 min; the third is not.
        assert_eq!(failures.in_last_hour(t0 + 61 * MINUTE_MS), 1);
        assert_eq!(failures.in_last_hour(t0 + 91 * MINUTE_MS), 0);
        assert_eq!(failures.last_within_the_hour(t0 + 91 * MINUTE_MS), None);
        // A clock stepped back counts in the last minute kept.
        failures.note("cms_500", "unknown error", t0 + 100 * MINUTE_MS);
        failures.note("cms_500", "unknown error", t0 + 90 * MINUTE_MS);
        assert_eq!(failures.in_last_hour(t0 + 100 * MINUTE_MS), 2);
    }
}
