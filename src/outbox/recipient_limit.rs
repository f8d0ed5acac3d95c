//! The per-recipient rate limit (`per_recipient_per_minute`): one bucket
//! per recipient, as governor's `Quota::per_minute(n)` (a burst of `n`, one
//! more every minute / `n`), kept as GCRA's next-free time per recipient.
//!
//! Our own and not governor's because a send takes its token before it
//! starts, and one that then went nowhere (the hard stop, a pause, its TTL
//! running out, the endpoint turning it away, the remote refusing it
//! unsent) must give it back: otherwise one turn-away of a modem cost the
//! recipient the rest of its minute, and an outage, which costs a message
//! none of its attempts, cost it its place. governor cannot give a cell
//! back.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct RecipientLimit {
    /// The time one token takes to come back.
    interval: Duration,
    /// How far ahead of now a recipient's next-free time may be and a send
    /// still go: the burst less one token.
    burst_span: Duration,
    state: Mutex<State>,
}

struct State {
    /// Per recipient, when its bucket would be full again were nothing more
    /// sent (GCRA's theoretical arrival time); none once it is.
    next_free: HashMap<String, Instant>,
    /// When [`RecipientLimit::retain_recent`] next walks `next_free`.
    next_sweep: Instant,
}

impl RecipientLimit {
    pub fn per_minute(sends: NonZeroU32) -> Self {
        let interval = Duration::from_secs(60) / sends.get();
        Self {
            interval,
            burst_span: interval * (sends.get() - 1),
            state: Mutex::new(State {
                next_free: HashMap::new(),
                next_sweep: Instant::now(),
            }),
        }
    }

    /// Take a token for a send to `recipient`, or say how long until one
    /// is free.
    pub fn take(&self, recipient: &str) -> Result<(), Duration> {
        self.take_at(recipient, Instant::now())
    }

    fn take_at(&self, recipient: &str, now: Instant) -> Result<(), Duration> {
        let next_free = &mut self.lock().next_free;
        let from = next_free
            .get(recipient)
            .copied()
            .filter(|at| *at > now)
            .unwrap_or(now);
        let ahead = from - now;
        if ahead > self.burst_span {
            return Err(ahead - self.burst_span);
        }
        next_free.insert(recipient.to_string(), from + self.interval);
        Ok(())
    }

    /// The send that took a token for `recipient` went nowhere: its token
    /// is free again.
    pub fn give_back(&self, recipient: &str) {
        let next_free = &mut self.lock().next_free;
        if let Some(at) = next_free.get_mut(recipient) {
            match at.checked_sub(self.interval) {
                Some(earlier) => *at = earlier,
                None => {
                    next_free.remove(recipient);
                }
            }
        }
    }

    /// Forget the recipients whose bucket is full again. It walks every
    /// recipient, and the dispatcher asks at every turn: at most once in
    /// the time one token takes to come back (a recipient forgotten that
    /// much later costs only its entry meanwhile).
    pub fn retain_recent(&self) {
        let now = Instant::now();
        let mut state = self.lock();
        if now < state.next_sweep {
            return;
        }
        state.next_sweep = now + self.interval;
        state.next_free.retain(|_, at| *at > now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many recipients it keeps.
    #[cfg(test)]
    pub(super) fn recipients(&self) -> usize {
        self.lock().next_free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_minute(sends: u32) -> RecipientLimit {
        RecipientLimit::per_minute(NonZeroU32::new(sends).unwrap())
    }

    #[test]
    fn a_burst_goes_then_one_more_each_interval() {
        let limit = per_minute(3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limit.take_at("+1", start), Ok(()));
        }
        assert_eq!(
            limit.take_at("+1", start),
            Err(Duration::from_secs(20)),
            "the burst is spent"
        );
        assert_eq!(limit.take_at("+2", start), Ok(()), "another recipient");
        let later = start + Duration::from_secs(20);
        assert_eq!(limit.take_at("+1", later), Ok(()));
        assert_eq!(limit.take_at("+1", later), Err(Duration::from_secs(20)));
    }

    #[test]
    fn a_token_given_back_can_be_taken_again_at_once() {
        let limit = per_minute(1);
        let start = Instant::now();
        assert_eq!(limit.take_at("+1", start), Ok(()));
        assert_eq!(limit.take_at("+1", start), Err(Duration::from_secs(60)));
        limit.give_back("+1");
        assert_eq!(limit.take_at("+1", start), Ok(()));
        assert!(limit.take_at("+1", start).is_err(), "taken again");
        // Giving back what was never taken frees nothing.
        limit.give_back("+2");
        assert_eq!(limit.take_at("+2", start), Ok(()));
        assert!(limit.take_at("+2", start).is_err());
    }

    #[test]
    fn recipients_with_a_full_bucket_are_forgotten() {
        let limit = per_minute(1);
        assert_eq!(limit.take("+1"), Ok(()));
        assert_eq!(limit.take("+2"), Ok(()));
        limit.give_back("+2");
        limit.retain_recent();
        assert_eq!(limit.recipients(), 1, "+2 is full again");
    }
}
