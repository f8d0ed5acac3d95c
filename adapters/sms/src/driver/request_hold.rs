//! Who holds a send request still in the driver's queue: the driver, once
//! it takes it, or its caller, once it stops waiting. A request waits
//! there behind the send before it, a late answer's resync (up to two
//! minutes) or a sweep of the SIM, longer than a caller waits for a short
//! `send_timeout_ms`; the caller that gives it up first knows that
//! nothing of it went out, and says so (no attempt spent), where a plain
//! timeout counted an attempt for a message that never reached the modem.
//! One atomic step each way, so the two cannot both have it.

use std::sync::atomic::{AtomicU8, Ordering};

const WAITING: u8 = 0;
const TAKEN: u8 = 1;
const GIVEN_UP: u8 = 2;

#[derive(Debug, Default)]
pub struct RequestHold(AtomicU8);

impl RequestHold {
    /// The driver takes the request: false if its caller gave it up first.
    pub fn take(&self) -> bool {
        self.swap_from_waiting(TAKEN)
    }

    /// The caller gives the request up: false if the driver took it first
    /// (its parts may be going out).
    pub fn give_up(&self) -> bool {
        self.swap_from_waiting(GIVEN_UP)
    }

    fn swap_from_waiting(&self, to: u8) -> bool {
        self.0
            .compare_exchange(WAITING, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_of_driver_and_caller_has_the_request() {
        let taken = RequestHold::default();
        assert!(taken.take());
        assert!(
            !taken.give_up(),
            "taken: the caller cannot say nothing went out"
        );
        assert!(!taken.take());

        let given_up = RequestHold::default();
        assert!(given_up.give_up());
        assert!(!given_up.take(), "given up: the driver skips it");
    }
}
