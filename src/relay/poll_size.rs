//! How many jobs a poll asks for. A relay hands out up to that many,
//! oldest first; an answer larger than the bridge reads (jobs larger than
//! the API takes, or a relay that ignores `max`) was taken for an empty
//! one, the poll counted as failed, and the same jobs came back at every
//! poll: nothing was taken again, for good. Now such an answer halves the
//! ask, down to one job, and the jobs come in smaller answers; once the
//! relay hands out fewer than asked for (its backlog gone), the ask is
//! whole again. Only a single job larger than the bridge reads is left
//! with the relay, and said so.

/// The jobs asked for per poll, between 1 and the configured most.
#[derive(Debug)]
pub struct PollSize {
    most: u32,
    now: u32,
}

impl PollSize {
    pub fn new(most: u32) -> Self {
        let most = most.max(1);
        Self { most, now: most }
    }

    /// The `max` of the next poll.
    pub fn jobs(&self) -> u32 {
        self.now
    }

    /// The answer was too large: ask for half as many. False when the ask
    /// is one job already.
    pub fn halve(&mut self) -> bool {
        if self.now <= 1 {
            return false;
        }
        self.now = (self.now / 2).max(1);
        true
    }

    /// An answer with `count` jobs was read. Fewer than asked for: the
    /// relay had no more, so the next poll asks for the most again.
    pub fn answered(&mut self, count: usize) {
        if count < self.now as usize {
            self.now = self.most;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ask_halves_to_one_and_is_whole_again_once_the_relay_runs_short() {
        let mut size = PollSize::new(50);
        assert_eq!(size.jobs(), 50);
        let mut asks = Vec::new();
        while size.halve() {
            asks.push(size.jobs());
        }
        assert_eq!(asks, [25, 12, 6, 3, 1]);
        assert!(!size.halve(), "one job is the least");
        size.answered(1);
        assert_eq!(size.jobs(), 1, "a full answer keeps the ask");
        size.answered(0);
        assert_eq!(size.jobs(), 50);
        assert_eq!(PollSize::new(0).jobs(), 1);
    }
}
