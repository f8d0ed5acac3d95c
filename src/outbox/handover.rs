//! Hand-over at accept: a message for an endpoint whose dispatcher has a
//! free slot and nothing waiting is committed already claimed (`sending`,
//! leased) and passed to the dispatcher in memory, so it costs no claim
//! query and one commit fewer than a message that waits in the queue.
//!
//! Order is kept: a slot is handed out only while the dispatcher's last
//! claim took every due message (`drained`), and a request that finds no
//! free slot clears that, so it and everything after it queue behind the
//! messages already waiting until a claim has taken them all (requests
//! that run at the same time may still swap). A claim that was already
//! under way when such a request queued its message cannot vouch for it
//! (it may have read the queue before the message was in), so its
//! "drained" does not count: the next claim decides. Slots are the dispatcher's
//! own concurrency permits, and tokio's semaphore gives a freed permit to
//! a waiting dispatcher before any `try_acquire`. A hand-over may take a
//! permit while a claim is running; a claimed message that then waits for
//! a permit keeps starting hand-overs meanwhile, since theirs are the
//! permits that come back.
//!
//! Nothing is lost if a hand-over never arrives (the dispatcher stopped
//! at the hard stop first): the message is `sending` with a lease, and the
//! next start requeues it.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::store::OutboundRecord;

/// A committed, claimed message and the dispatcher slot it holds.
pub struct Handover {
    pub record: OutboundRecord,
    pub permit: OwnedSemaphorePermit,
}

/// An endpoint's door to its dispatcher; open while the dispatcher runs.
#[derive(Default)]
pub struct Intake {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    open: Option<Open>,
    /// The dispatcher's last claim took every due message, and no message
    /// has queued since.
    drained: bool,
    /// Counts the requests that found no free slot and queued: a claim
    /// started before one of them cannot say the queue is drained.
    queued_for_want_of_a_slot: u64,
}

/// What a claim saw of the intake when it started.
#[derive(Debug, Clone, Copy)]
pub struct ClaimStart {
    queued_before: u64,
}

struct Open {
    permits: Arc<Semaphore>,
    handovers: mpsc::UnboundedSender<Handover>,
}

/// A slot taken for one message that is being committed.
pub struct Reservation {
    permit: OwnedSemaphorePermit,
    handovers: mpsc::UnboundedSender<Handover>,
}

impl Intake {
    /// The dispatcher starts taking hand-overs, its slots being `permits`.
    /// Closed to new reservations until its first claim finds the queue
    /// drained.
    pub fn open(&self, permits: Arc<Semaphore>) -> mpsc::UnboundedReceiver<Handover> {
        let (handovers, receiver) = mpsc::unbounded_channel();
        let mut state = self.lock();
        state.drained = false;
        state.open = Some(Open { permits, handovers });
        receiver
    }

    /// No new reservations; those already made can still hand over.
    pub fn close(&self) {
        self.lock().open = None;
    }

    /// Messages may be waiting (the endpoint cannot send, say): no slot is
    /// handed out until a claim finds the queue drained.
    pub fn not_drained(&self) {
        self.lock().drained = false;
    }

    /// Call before a claim; pass the result to [`Self::claim_found`].
    pub fn claim_starts(&self) -> ClaimStart {
        ClaimStart {
            queued_before: self.lock().queued_for_want_of_a_slot,
        }
    }

    /// What a claim found: `took_all` when it took every due message
    /// (fewer than it asked for). That counts only if no request queued a
    /// message for want of a slot since the claim started: the claim may
    /// have read the queue before that message was in.
    pub fn claim_found(&self, took_all: bool, start: ClaimStart) {
        let mut state = self.lock();
        state.drained = took_all && state.queued_for_want_of_a_slot == start.queued_before;
    }

    /// A free slot, if the dispatcher runs, nothing waits in the queue and
    /// a slot is free. Finding none makes the queue count as waiting: this
    /// message queues, and so do the next until a claim has drained it.
    pub fn reserve(&self) -> Option<Reservation> {
        let mut state = self.lock();
        let state = &mut *state;
        let open = state.open.as_ref()?;
        if !state.drained {
            return None;
        }
        match open.permits.clone().try_acquire_owned() {
            Ok(permit) => Some(Reservation {
                permit,
                handovers: open.handovers.clone(),
            }),
            Err(_) => {
                state.drained = false;
                state.queued_for_want_of_a_slot += 1;
                None
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Reservation {
    /// Pass the committed message to the dispatcher; false if it has gone
    /// (the lease brings the message back).
    pub fn hand_over(self, record: OutboundRecord) -> bool {
        let handover = Handover {
            record,
            permit: self.permit,
        };
        self.handovers.send(handover).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::queued_sms;

    #[test]
    fn slots_are_handed_out_only_while_the_queue_is_drained() {
        let intake = Intake::default();
        assert!(intake.reserve().is_none(), "no dispatcher yet");
        let permits = Arc::new(Semaphore::new(1));
        let mut handovers = intake.open(permits.clone());
        assert!(intake.reserve().is_none(), "before the first claim");
        intake.claim_found(true, intake.claim_starts());
        let first = intake.reserve().expect("a free slot");
        assert_eq!(permits.available_permits(), 0);
        // No slot left: this request queues, and so does the next one even
        // once the slot is free again, until a claim drains the queue.
        assert!(intake.reserve().is_none());
        drop(first);
        assert!(intake.reserve().is_none(), "a message is waiting");
        intake.claim_found(true, intake.claim_starts());
        let second = intake.reserve().expect("drained again");
        assert!(second.hand_over(queued_sms("a", 1).claimed_record("a".into())));
        let handed = handovers.try_recv().unwrap();
        assert_eq!(handed.record.id, "a");
        drop(handed);
        assert_eq!(permits.available_permits(), 1, "the slot came back");
        intake.close();
        assert!(intake.reserve().is_none(), "closed");
    }

    #[test]
    fn a_hand_over_to_a_stopped_dispatcher_says_so() {
        let intake = Intake::default();
        let handovers = intake.open(Arc::new(Semaphore::new(1)));
        intake.claim_found(true, intake.claim_starts());
        let reservation = intake.reserve().unwrap();
        drop(handovers);
        assert!(!reservation.hand_over(queued_sms("a", 1).claimed_record("a".into())));
    }

    /// A request that queues for want of a slot while a claim is under way
    /// keeps the door shut after that claim, whatever it found: the claim
    /// may have read the queue before the message was in, and a later
    /// request handed over at once would overtake it.
    #[test]
    fn a_claim_under_way_cannot_vouch_for_a_message_queued_meanwhile() {
        let intake = Intake::default();
        let permits = Arc::new(Semaphore::new(1));
        let _handovers = intake.open(permits.clone());
        intake.claim_found(true, intake.claim_starts());
        let taken = intake.reserve().expect("a free slot");
        let claim = intake.claim_starts();
        assert!(intake.reserve().is_none(), "no slot: this one queues");
        drop(taken);
        intake.claim_found(true, claim);
        assert!(intake.reserve().is_none(), "the queued message goes first");
        intake.claim_found(true, intake.claim_starts());
        assert!(intake.reserve().is_some(), "a later claim took it");
    }
}
