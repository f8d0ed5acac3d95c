//! Hand-over at accept: a message for an endpoint whose dispatcher has a
//! free slot and nothing waiting is committed already claimed (`sending`,
//! leased) and passed to the dispatcher in memory, so it costs no claim
//! query and one commit fewer than a message that waits in the queue.
//!
//! Order is kept: a slot is handed out only while the dispatcher's last
//! claim took every due message (`drained`), and a request that finds no
//! free slot clears that, so it and everything after it queue behind the
//! messages already waiting until a claim has taken them all (requests
//! that run at the same time may still swap). Slots are the dispatcher's
//! own concurrency permits, and tokio's semaphore gives a freed permit to
//! a waiting dispatcher before any `try_acquire`. A hand-over may take a
//! permit while a claim is running; a claimed message that then waits for
//! a permit keeps starting hand-overs meanwhile, since theirs are the
//! permits that come back.
//!
//! Nothing is lost if a hand-over never arrives (the request is dropped
//! after the commit, the dispatcher has stopped): the message is `sending`
//! with a lease, which a claim takes back once it runs out, and a restart
//! requeues at once.

use std::sync::atomic::{AtomicBool, Ordering};
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
    open: Mutex<Option<Open>>,
    drained: AtomicBool,
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
        self.drained.store(false, Ordering::SeqCst);
        *self.lock() = Some(Open { permits, handovers });
        receiver
    }

    /// No new reservations; those already made can still hand over.
    pub fn close(&self) {
        *self.lock() = None;
    }

    /// What the dispatcher's last claim found: true when it took every due
    /// message (fewer than it asked for).
    pub fn set_drained(&self, drained: bool) {
        self.drained.store(drained, Ordering::SeqCst);
    }

    /// A free slot, if the dispatcher runs, nothing waits in the queue and
    /// a slot is free. Finding none makes the queue count as waiting: this
    /// message queues, and so do the next until a claim has drained it.
    pub fn reserve(&self) -> Option<Reservation> {
        let open = self.lock();
        let open = open.as_ref()?;
        if !self.drained.load(Ordering::SeqCst) {
            return None;
        }
        match open.permits.clone().try_acquire_owned() {
            Ok(permit) => Some(Reservation {
                permit,
                handovers: open.handovers.clone(),
            }),
            Err(_) => {
                self.drained.store(false, Ordering::SeqCst);
                None
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Open>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
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
        intake.set_drained(true);
        let first = intake.reserve().expect("a free slot");
        assert_eq!(permits.available_permits(), 0);
        // No slot left: this request queues, and so does the next one even
        // once the slot is free again, until a claim drains the queue.
        assert!(intake.reserve().is_none());
        drop(first);
        assert!(intake.reserve().is_none(), "a message is waiting");
        intake.set_drained(true);
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
        intake.set_drained(true);
        let reservation = intake.reserve().unwrap();
        drop(handovers);
        assert!(!reservation.hand_over(queued_sms("a", 1).claimed_record("a".into())));
    }
}
