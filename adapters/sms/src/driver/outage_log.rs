//! How a modem outage reads in the journal. The driver retries a lost port
//! every `reconnect_max_backoff_seconds` at most, and a warning per retry
//! would write over a thousand lines a day while a modem stays unplugged.
//! Instead: the first failure and each change of reason are warnings, then
//! one reminder every [`REMIND_EVERY`] says how long it has lasted, and the
//! recovery says how long it was. Pure: time is passed in.

use std::time::{Duration, Instant};

/// How often a lasting outage with an unchanged reason is reported again.
pub const REMIND_EVERY: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
pub struct OutageLog {
    current: Option<Outage>,
}

#[derive(Debug)]
struct Outage {
    since: Instant,
    reason: String,
    last_said: Instant,
}

/// What to do with one failed attempt to reach the modem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Say {
    /// Warn; `down_for` is how long the outage has lasted (none for the
    /// failure that began it).
    Warn { down_for: Option<Duration> },
    /// Already said: a debug line is enough.
    Quiet,
}

impl OutageLog {
    /// An attempt failed at `now` for `reason`.
    pub fn failed(&mut self, reason: &str, now: Instant) -> Say {
        let Some(outage) = &mut self.current else {
            self.current = Some(Outage {
                since: now,
                reason: reason.to_string(),
                last_said: now,
            });
            return Say::Warn { down_for: None };
        };
        let changed = outage.reason != reason;
        if changed || now.duration_since(outage.last_said) >= REMIND_EVERY {
            outage.reason = reason.to_string();
            outage.last_said = now;
            return Say::Warn {
                down_for: Some(now.duration_since(outage.since)),
            };
        }
        Say::Quiet
    }

    /// The modem is back at `now`: how long it was down, if it was.
    pub fn recovered(&mut self, now: Instant) -> Option<Duration> {
        self.current
            .take()
            .map(|outage| now.duration_since(outage.since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GONE: &str = "/dev/ttyUSB0 does not exist (unplugged?)";

    #[test]
    fn the_first_failure_warns_and_the_same_again_soon_is_quiet() {
        let start = Instant::now();
        let mut log = OutageLog::default();
        assert_eq!(log.failed(GONE, start), Say::Warn { down_for: None });
        for minute in 1..10 {
            let at = start + Duration::from_secs(60 * minute);
            assert_eq!(log.failed(GONE, at), Say::Quiet, "minute {minute}");
        }
    }

    #[test]
    fn a_lasting_outage_is_recalled_every_ten_minutes_with_its_length() {
        let start = Instant::now();
        let mut log = OutageLog::default();
        log.failed(GONE, start);
        let ten = start + REMIND_EVERY;
        assert_eq!(
            log.failed(GONE, ten),
            Say::Warn {
                down_for: Some(REMIND_EVERY)
            }
        );
        let soon_after = ten + Duration::from_secs(60);
        assert_eq!(log.failed(GONE, soon_after), Say::Quiet);
    }

    #[test]
    fn a_new_reason_warns_at_once() {
        let start = Instant::now();
        let mut log = OutageLog::default();
        log.failed(GONE, start);
        let later = start + Duration::from_secs(5);
        assert_eq!(
            log.failed("SIM PIN rejected", later),
            Say::Warn {
                down_for: Some(Duration::from_secs(5))
            }
        );
    }

    #[test]
    fn recovery_says_how_long_and_the_next_failure_is_a_new_outage() {
        let start = Instant::now();
        let mut log = OutageLog::default();
        assert_eq!(log.recovered(start), None, "never down");
        log.failed(GONE, start);
        let back = start + Duration::from_secs(90);
        assert_eq!(log.recovered(back), Some(Duration::from_secs(90)));
        let again = back + Duration::from_secs(1);
        assert_eq!(log.failed(GONE, again), Say::Warn { down_for: None });
    }
}
