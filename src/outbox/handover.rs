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
//! under way when such a request was refused cannot vouch for its message
//! (it may have read the queue before the message was in), so its
//! "drained" does not count: the next claim decides. Nor can a claim that
//! starts while a request refused earlier (by a dispatcher not running
//! yet, too) is still committing its message: that commit may reach the
//! store's writer after the claim's queue read, and a later message to the
//! same recipient, handed over, would then be sent first. The request holds
//! a [`Refused`] until its commit has ended; one dropped mid-way lets go at
//! once, its message unanswered (it may still be stored, too late to be
//! waited for). Nor does a claim vouch
//! for a message that went back to the queue (a retry, a rate limit) and
//! has come due since: the intake knows when each such message is due, and
//! from then on hands out no slot until a claim has taken it, or a new
//! message would overtake it. Only a claim that started once the message's
//! return was committed can have taken it: one that read the queue before
//! that, while the message was still `sending`, vouches for nothing (the
//! recorder says when returns are committed, [`Intake::recorded`]). Slots are the dispatcher's
//! own concurrency permits, and tokio's semaphore gives a freed permit to
//! a waiting dispatcher before any `try_acquire`. A hand-over may take a
//! permit while a claim is running, or once the claim has opened the
//! door; a claimed message that then waits for a permit keeps starting
//! hand-overs meanwhile, since theirs are the permits that come back, but
//! one to the recipient of a claimed message not started yet goes back to
//! the queue instead (`held_back`), or it would overtake that message
//! (`worker::Sends::start_claimed`).
//!
//! A stopping dispatcher takes no new reservation but waits, even past the
//! hard stop, until each slot it handed out has been handed over or given
//! up, and releases what it is handed then to the queue, its claim not
//! counted. Nothing is lost if a hand-over still never arrives (the
//! dispatcher died): the message is `sending` with a lease, and the next
//! start requeues it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::clock::now_ms;
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
    /// Counts the requests refused a slot, whatever the reason (no
    /// dispatcher, none free, the queue not drained, a message back in the
    /// queue due), which queue their message instead: a claim started
    /// before one of them may have read the queue before that message was
    /// in, so it cannot say the queue is drained.
    queued_instead: u64,
    /// The refused requests whose commit has not finished yet (one
    /// [`Refused`] each): a claim that starts while one is committing may
    /// read the queue before its message is in, so it cannot say the queue
    /// is drained either.
    refused_committing: u64,
    /// The messages that went back to the queue since, by when they come
    /// due, as far as no claim has taken them yet: each with the recorder's
    /// write that committed its return, once it has.
    coming_due: BTreeMap<ComingDue, Option<u64>>,
    /// Names each return (`ComingDue`) apart from others due at the same time.
    returns: u64,
    /// The recorder's writes so far that committed returns.
    writes: u64,
}

/// A message that went back to the queue, as the intake knows it: when it
/// is due, and which return it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ComingDue {
    due_ms: i64,
    serial: u64,
}

/// What a claim saw of the intake when it started.
#[derive(Debug, Clone, Copy)]
pub struct ClaimStart {
    queued_before: u64,
    /// No refused request was still committing when the claim started.
    none_committing: bool,
    /// The time the claim reads the queue at: it takes what is due by then.
    at_ms: i64,
    /// The recorder's writes committed before the claim started.
    writes: u64,
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

/// A request refused a slot, committing its message to the queue: keep it
/// until that commit has finished, however it ended (stored, refused by
/// the store, failed); dropping it, as a request dropped mid-way does, ends
/// the wait. Until then no claim that starts can vouch for the queue.
#[must_use = "hold it until the message is committed"]
pub struct Refused<'a> {
    intake: &'a Intake,
}

impl Intake {
    /// The dispatcher starts taking hand-overs, its slots being `permits`.
    /// Closed to new reservations until its first claim finds the queue
    /// drained.
    pub fn open(&self, permits: Arc<Semaphore>) -> mpsc::UnboundedReceiver<Handover> {
        let (handovers, receiver) = mpsc::unbounded_channel();
        let mut state = self.lock();
        state.drained = false;
        state.coming_due.clear();
        state.open = Some(Open { permits, handovers });
        receiver
    }

    /// A message goes back to the queue, due at `at_ms` (a retry, a
    /// release): once that time has come, no slot is handed out until a
    /// claim has taken it. Its return is not committed yet: say when it is
    /// ([`Self::recorded`]), or that it will not be ([`Self::not_recorded`]).
    pub fn queued_until(&self, at_ms: i64) -> ComingDue {
        let mut state = self.lock();
        state.returns += 1;
        let coming_due = ComingDue {
            due_ms: at_ms,
            serial: state.returns,
        };
        state.coming_due.insert(coming_due, None);
        coming_due
    }

    /// A message found in the queue, due at `at_ms` (a dispatcher
    /// starting): committed already.
    pub fn queued_already(&self, at_ms: i64) {
        let coming_due = self.queued_until(at_ms);
        self.recorded([&coming_due]);
    }

    /// The recorder committed these returns in one write: a claim that
    /// starts from now on sees them in the queue.
    pub fn recorded<'a>(&self, committed: impl IntoIterator<Item = &'a ComingDue>) {
        let mut state = self.lock();
        state.writes += 1;
        let write = state.writes;
        for coming_due in committed {
            if let Some(recorded_in) = state.coming_due.get_mut(coming_due) {
                *recorded_in = Some(write);
            }
        }
    }

    /// The recorder committed at last a return it had given up on for the
    /// time being ([`Self::not_recorded`]).
    pub fn recorded_late(&self, coming_due: &ComingDue) {
        let mut state = self.lock();
        state.writes += 1;
        let write = state.writes;
        state.coming_due.insert(*coming_due, Some(write));
    }

    /// The recorder could not commit this return: the message stays
    /// `sending` until the next start, and no claim will take it.
    pub fn not_recorded(&self, coming_due: &ComingDue) {
        self.lock().coming_due.remove(coming_due);
    }

    /// When the earliest message known to have gone back to the queue, its
    /// return committed, is due, so the dispatcher looks then, whatever the
    /// store said before that return was committed. A return not committed
    /// yet does not count: no claim can take its message before the
    /// commit, which wakes the dispatcher (`recorder`); counted, a return
    /// the store kept refusing (a full disk) was due at once at every turn,
    /// and a dispatcher with a free slot claimed nothing in a tight loop
    /// for as long as the disk stayed full.
    pub fn next_due(&self) -> Option<i64> {
        let state = self.lock();
        let mut recorded = state.coming_due.iter().filter(|(_, r)| r.is_some());
        recorded.next().map(|(c, _)| c.due_ms)
    }

    /// How many returns are known, committed or not.
    #[cfg(test)]
    pub fn coming_due_for_tests(&self) -> usize {
        self.lock().coming_due.len()
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

    /// A recipient's hold ended outside a claim (the message it waited
    /// behind was cancelled): its messages the claims passed over are due
    /// in the queue now. No slot is handed out until a claim that starts
    /// from now has taken them; one under way, which passed them over,
    /// cannot vouch for the queue (counted as a refused request is). Call
    /// before the hold ends.
    pub fn hold_ends_outside_a_claim(&self) {
        let mut state = self.lock();
        state.queued_instead += 1;
        state.drained = false;
    }

    /// Call before a claim that reads the queue at `at_ms`; pass the
    /// result to [`Self::claim_found`].
    pub fn claim_starts(&self, at_ms: i64) -> ClaimStart {
        let state = self.lock();
        ClaimStart {
            queued_before: state.queued_instead,
            none_committing: state.refused_committing == 0,
            at_ms,
            writes: state.writes,
        }
    }

    /// What a claim found: `took_all` when it took every due message
    /// (fewer than it asked for), so also those that had gone back to the
    /// queue, were due by then and whose return was committed before it
    /// started (a return committed later may have reached the store after
    /// the claim's queue read). That counts only if no refused request
    /// was still committing its message when the claim started, and none
    /// was refused since: the claim may have read the queue before that
    /// message was in, and a later message handed over would overtake it.
    ///
    /// Why that is enough: a refused request counts itself (under the lock)
    /// before it commits and uncounts itself only once its commit has
    /// finished. Take any message refused before the claim's end. Refused
    /// after the claim started, it moved `queued_instead`. Refused before,
    /// either it was still committing when the claim started, seen in
    /// `none_committing`, or its commit had finished by then, so before the
    /// claim's queue read was even sent to the store, which reads it then
    /// (or was never stored, and nothing waits). A message refused after
    /// the claim's end found the door shut (`drained` false) or shut it.
    pub fn claim_found(&self, took_all: bool, start: ClaimStart) {
        let mut state = self.lock();
        if took_all {
            state.coming_due.retain(|coming_due, recorded_in| {
                let taken = coming_due.due_ms <= start.at_ms
                    && recorded_in.is_some_and(|write| write <= start.writes);
                !taken
            });
        }
        state.drained =
            took_all && start.none_committing && state.queued_instead == start.queued_before;
    }

    /// A free slot, if the dispatcher runs, nothing waits in the queue and
    /// a slot is free. Finding none makes the queue count as waiting: this
    /// message queues, and so do the next until a claim has drained it;
    /// keep the [`Refused`] until the message is committed.
    pub fn reserve(&self) -> Result<Reservation, Refused<'_>> {
        self.reserve_at(now_ms())
    }

    /// [`Self::reserve`] at `now_ms`.
    pub fn reserve_at(&self, now_ms: i64) -> Result<Reservation, Refused<'_>> {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(open) = state.open.as_ref() else {
            // No dispatcher: its first claim may not see this message.
            return Err(self.refused(state));
        };
        if state
            .coming_due
            .keys()
            .next()
            .is_some_and(|coming_due| coming_due.due_ms <= now_ms)
        {
            // A message back in the queue is due: it goes first.
            state.drained = false;
        }
        if !state.drained {
            return Err(self.refused(state));
        }
        match open.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok(Reservation {
                permit,
                handovers: open.handovers.clone(),
            }),
            Err(_) => {
                state.drained = false;
                Err(self.refused(state))
            }
        }
    }

    /// Count a refused request, under the lock, until its commit ends.
    fn refused(&self, state: &mut State) -> Refused<'_> {
        state.queued_instead += 1;
        state.refused_committing += 1;
        Refused { intake: self }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Refused<'_> {
    fn drop(&mut self) {
        self.intake.lock().refused_committing -= 1;
    }
}

impl fmt::Debug for Refused<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Refused")
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
        assert!(intake.reserve().is_err(), "no dispatcher yet");
        let permits = Arc::new(Semaphore::new(1));
        let mut handovers = intake.open(permits.clone());
        assert!(intake.reserve().is_err(), "before the first claim");
        intake.claim_found(true, intake.claim_starts(0));
        let first = intake.reserve().expect("a free slot");
        assert_eq!(permits.available_permits(), 0);
        // No slot left: this request queues, and so does the next one even
        // once the slot is free again, until a claim drains the queue.
        assert!(intake.reserve().is_err());
        drop(first);
        assert!(intake.reserve().is_err(), "a message is waiting");
        intake.claim_found(true, intake.claim_starts(0));
        let second = intake.reserve().expect("drained again");
        assert!(second.hand_over(queued_sms("a", 1).claimed_record("a".into())));
        let handed = handovers.try_recv().unwrap();
        assert_eq!(handed.record.id, "a");
        drop(handed);
        assert_eq!(permits.available_permits(), 1, "the slot came back");
        intake.close();
        assert!(intake.reserve().is_err(), "closed");
    }

    #[test]
    fn a_hand_over_to_a_stopped_dispatcher_says_so() {
        let intake = Intake::default();
        let handovers = intake.open(Arc::new(Semaphore::new(1)));
        intake.claim_found(true, intake.claim_starts(0));
        let reservation = intake.reserve().unwrap();
        drop(handovers);
        assert!(!reservation.hand_over(queued_sms("a", 1).claimed_record("a".into())));
    }

    /// The same when the door was shut for another reason (the queue not
    /// yet drained, as at a dispatcher's start or after a full batch): a
    /// message queued during the claim is not vouched for by it, so the
    /// next request queues behind it instead of being handed over first.
    #[test]
    fn a_claim_cannot_vouch_for_a_message_queued_while_the_door_was_shut() {
        let intake = Intake::default();
        let _handovers = intake.open(Arc::new(Semaphore::new(1)));
        let claim = intake.claim_starts(0);
        assert!(intake.reserve().is_err(), "not drained: this one queues");
        intake.claim_found(true, claim);
        assert!(intake.reserve().is_err(), "the queued message goes first");
        intake.claim_found(true, intake.claim_starts(0));
        assert!(intake.reserve().is_ok(), "a later claim took it");
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
        intake.claim_found(true, intake.claim_starts(0));
        let taken = intake.reserve().expect("a free slot");
        let claim = intake.claim_starts(0);
        assert!(intake.reserve().is_err(), "no slot: this one queues");
        drop(taken);
        intake.claim_found(true, claim);
        assert!(intake.reserve().is_err(), "the queued message goes first");
        intake.claim_found(true, intake.claim_starts(0));
        assert!(intake.reserve().is_ok(), "a later claim took it");
    }

    /// A refused request queues its message only once its commit reaches
    /// the store's writer, which may be after a claim that started later
    /// has read the queue: a claim that starts while a refused request is
    /// still committing cannot vouch for the queue, whatever it took; the
    /// next claim, started once that commit has finished, can.
    #[test]
    fn a_claim_cannot_vouch_while_a_refused_request_is_still_committing() {
        let intake = Intake::default();
        let permits = Arc::new(Semaphore::new(1));
        let _handovers = intake.open(permits.clone());
        intake.claim_found(true, intake.claim_starts(0));
        let taken = intake.reserve().expect("a free slot");
        let refused = intake.reserve();
        assert!(refused.is_err(), "no slot: this one queues");
        drop(taken);
        // The claim reads the queue before the refused message is in.
        let claim = intake.claim_starts(0);
        intake.claim_found(true, claim);
        assert!(intake.reserve().is_err(), "the refused message goes first");
        // Started while the refused request still commits, found after.
        let claim = intake.claim_starts(0);
        drop(refused);
        intake.claim_found(true, claim);
        assert!(intake.reserve().is_err(), "still not vouched for");
        intake.claim_found(true, intake.claim_starts(0));
        assert!(intake.reserve().is_ok(), "a later claim took it");
    }

    /// The same for a request refused because the dispatcher was not
    /// running yet: its first claim may read the queue before that
    /// message is in.
    #[test]
    fn a_first_claim_cannot_vouch_for_a_request_refused_before_the_start() {
        let intake = Intake::default();
        let refused = intake.reserve();
        assert!(refused.is_err(), "no dispatcher yet: this one queues");
        let _handovers = intake.open(Arc::new(Semaphore::new(1)));
        intake.claim_found(true, intake.claim_starts(0));
        assert!(intake.reserve().is_err(), "the refused message goes first");
        drop(refused);
        intake.claim_found(true, intake.claim_starts(0));
        assert!(intake.reserve().is_ok(), "a later claim took it");
    }

    /// A message that went back to the queue for a retry is due at 1,000:
    /// from then on no slot is handed out (a new message to its recipient
    /// would go first) until a claim at or after 1,000 has taken it. One
    /// due later still holds the door once its time comes.
    #[test]
    fn a_message_back_in_the_queue_goes_before_any_hand_over_once_due() {
        let intake = Intake::default();
        let _handovers = intake.open(Arc::new(Semaphore::new(4)));
        intake.claim_found(true, intake.claim_starts(0));
        let first = intake.queued_until(1_000);
        let second = intake.queued_until(5_000);
        intake.recorded([&first, &second]);
        assert_eq!(intake.next_due(), Some(1_000));
        assert!(intake.reserve_at(999).is_ok(), "not due yet");
        assert!(intake.reserve_at(1_000).is_err(), "due: it goes first");
        assert!(intake.reserve_at(1_001).is_err(), "until a claim takes it");
        // A claim that read the queue before it was due cannot vouch.
        intake.claim_found(true, intake.claim_starts(999));
        assert!(intake.reserve_at(1_002).is_err());
        intake.claim_found(true, intake.claim_starts(1_002));
        assert_eq!(intake.next_due(), Some(5_000));
        assert!(intake.reserve_at(1_003).is_ok(), "taken");
        assert!(intake.reserve_at(5_000).is_err(), "the next one is due");
        // A claim that took only some cannot vouch either.
        intake.claim_found(false, intake.claim_starts(5_001));
        assert!(intake.reserve_at(5_002).is_err());
        intake.claim_found(true, intake.claim_starts(5_002));
        assert_eq!(intake.next_due(), None);
        assert!(intake.reserve_at(5_003).is_ok());
    }

    /// A claim that started before a message's return was committed read
    /// the queue while it was still `sending`: it cannot have taken it,
    /// and the door stays shut once it is due, until a claim that started
    /// after the commit has.
    #[test]
    fn a_claim_started_before_a_return_was_committed_cannot_vouch_for_it() {
        let intake = Intake::default();
        let _handovers = intake.open(Arc::new(Semaphore::new(4)));
        intake.claim_found(true, intake.claim_starts(0));
        let coming_due = intake.queued_until(1_000);
        let claim = intake.claim_starts(1_000);
        intake.recorded([&coming_due]);
        intake.claim_found(true, claim);
        assert!(intake.reserve_at(1_001).is_err(), "it goes first");
        assert_eq!(intake.next_due(), Some(1_000));
        intake.claim_found(true, intake.claim_starts(1_001));
        assert!(intake.reserve_at(1_002).is_ok(), "a later claim took it");
    }

    /// A return not committed yet is not due for the dispatcher: no claim
    /// can take it before its commit.
    #[test]
    fn a_return_not_committed_yet_is_not_due() {
        let intake = Intake::default();
        let earlier = intake.queued_until(1_000);
        let later = intake.queued_until(5_000);
        assert_eq!(intake.next_due(), None);
        intake.recorded([&later]);
        assert_eq!(intake.next_due(), Some(5_000));
        intake.recorded([&earlier]);
        assert_eq!(intake.next_due(), Some(1_000));
    }

    /// A return never committed (the message stays `sending` until the
    /// next start) holds the door shut for nothing once forgotten.
    #[test]
    fn a_return_that_could_not_be_recorded_holds_no_hand_over_back() {
        let intake = Intake::default();
        let _handovers = intake.open(Arc::new(Semaphore::new(4)));
        intake.claim_found(true, intake.claim_starts(0));
        let coming_due = intake.queued_until(1_000);
        intake.not_recorded(&coming_due);
        assert_eq!(intake.next_due(), None);
        assert!(intake.reserve_at(1_001).is_ok());
    }
}
