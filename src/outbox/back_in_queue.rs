//! The messages of an endpoint that went back to the queue (a retry, a
//! release) and have not been claimed again, by recipient.
//!
//! A recipient's later message must not go before such a message, however
//! long ago its retry came due: what counts is whether it has been taken
//! again, not its time. So a send started (claimed, or handed over at
//! accept) while an earlier message to its recipient is back here goes
//! back to the queue too (`recipient_order`), and the next claim takes them
//! in queue order.
//!
//! A message leaves this list when it is claimed again, when its TTL has
//! run out (a claim never takes it then), when it is cancelled (the API
//! says so, [`BackInQueue::cancelled`]: its retry may be far off, and the
//! recipient's next message would wait for it until then), or when it is
//! shown to have left the queue another way: a claim read the queue after
//! its return was committed, it was due by then, and the claim took a
//! later message to the same recipient but not it. That last covers a
//! cancel the API could not report (its request was dropped), and nothing
//! is held back for ever by a message that will never be claimed again. A
//! return the recorder could not commit is forgotten:
//! the message stays `sending` until the next start, and holding its
//! recipient meanwhile would hold it for nothing; one the recorder kept and
//! commits at last is back ([`BackInQueue::recorded_late`]).
//!
//! While one of a recipient's messages here is not yet due, the claims
//! leave that recipient's queue alone ([`BackInQueue::held`]): claimed, its
//! messages would only go back to wait.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::store::{HeldRecipient, OutboundRecord, QueuedForLater};

/// Where a message stands in its endpoint's queue as the claim takes it:
/// higher priority first, then accept order (`seq`).
type QueueOrder = (Reverse<i64>, i64);

/// A message that went back to the queue, as the recorder names it once
/// its return is committed ([`BackInQueue::recorded`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WentBack {
    recipient: String,
    order: QueueOrder,
    due_ms: i64,
    expires_at_ms: i64,
}

/// What a claim could see when it read the queue.
#[derive(Debug, Clone, Copy)]
pub struct ClaimView {
    /// The time the claim read the queue at: it takes what is due by then.
    at_ms: i64,
    /// The recorder's writes committed before the claim started.
    writes: u64,
}

#[derive(Debug)]
struct Waiting {
    due_ms: i64,
    expires_at_ms: i64,
    /// The recorder's write that committed this return, once it has: only
    /// then can a claim see the message in the queue.
    recorded_in: Option<u64>,
}

impl Waiting {
    fn live(&self, now_ms: i64) -> bool {
        self.expires_at_ms > now_ms
    }

    /// Until when its recipient's queue is left alone for it.
    fn holds_until(&self) -> i64 {
        self.due_ms.min(self.expires_at_ms)
    }
}

#[derive(Default)]
pub struct BackInQueue {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    by_recipient: HashMap<String, BTreeMap<QueueOrder, Waiting>>,
    /// The recorder's writes so far that committed returns.
    writes: u64,
}

fn order_of(priority: i64, seq: i64) -> QueueOrder {
    (Reverse(priority), seq)
}

impl BackInQueue {
    /// Start from what the queue holds for later (a dispatcher starting):
    /// every message not due yet, already committed.
    pub fn restore(&self, queued: &[QueuedForLater]) {
        let mut state = self.lock();
        *state = State::default();
        for message in queued {
            state.wait(
                &message.recipient,
                order_of(message.priority, message.seq),
                Waiting {
                    due_ms: message.due_ms,
                    expires_at_ms: message.expires_at_ms,
                    recorded_in: Some(0),
                },
            );
        }
    }

    /// `record` goes back to the queue, due at `due_ms`; its return is not
    /// committed yet.
    pub fn went_back(&self, record: &OutboundRecord, due_ms: i64) -> WentBack {
        let went_back = WentBack {
            recipient: record.to.clone(),
            order: order_of(record.priority, record.seq),
            due_ms,
            expires_at_ms: record.expires_at_ms,
        };
        self.lock().wait(
            &went_back.recipient,
            went_back.order,
            Waiting {
                due_ms,
                expires_at_ms: record.expires_at_ms,
                recorded_in: None,
            },
        );
        went_back
    }

    /// The recorder committed these returns in one write.
    pub fn recorded<'a>(&self, committed: impl IntoIterator<Item = &'a WentBack>) {
        let mut state = self.lock();
        state.writes += 1;
        let write = state.writes;
        for went_back in committed {
            if let Some(waiting) = state.waiting_mut(went_back) {
                waiting.recorded_in = Some(write);
            }
        }
    }

    /// The recorder committed at last a return it had given up on for the
    /// time being ([`Self::not_recorded`]): the message is back in the queue
    /// after all, and the recipient's later messages wait behind it again.
    pub fn recorded_late(&self, went_back: &WentBack) {
        let mut state = self.lock();
        state.writes += 1;
        let write = state.writes;
        state.wait(
            &went_back.recipient,
            went_back.order,
            Waiting {
                due_ms: went_back.due_ms,
                expires_at_ms: went_back.expires_at_ms,
                recorded_in: Some(write),
            },
        );
    }

    /// The recorder could not commit this return: the message stays
    /// `sending` until the next start, and no claim takes it meanwhile.
    pub fn not_recorded(&self, went_back: &WentBack) {
        self.lock().remove(&went_back.recipient, went_back.order);
    }

    /// `record` was cancelled while it waited in the queue.
    pub fn cancelled(&self, record: &OutboundRecord) {
        self.lock()
            .remove(&record.to, order_of(record.priority, record.seq));
    }

    /// Call before a claim that reads the queue at `at_ms`.
    pub fn claim_starts(&self, at_ms: i64) -> ClaimView {
        ClaimView {
            at_ms,
            writes: self.lock().writes,
        }
    }

    /// `record` is taken from the queue again: by a claim that saw `claim`,
    /// or handed over at accept (`None`). A claim also shows which of the
    /// recipient's earlier messages here have left the queue (see the
    /// module's note).
    pub fn taken_again(&self, record: &OutboundRecord, claim: Option<ClaimView>) {
        let mut state = self.lock();
        let order = order_of(record.priority, record.seq);
        let Some(waiting) = state.by_recipient.get_mut(&record.to) else {
            return;
        };
        waiting.remove(&order);
        if let Some(claim) = claim {
            waiting.retain(|earlier, w| {
                let left_the_queue = *earlier < order
                    && w.due_ms <= claim.at_ms
                    && w.recorded_in.is_some_and(|write| write <= claim.writes);
                !left_the_queue
            });
        }
        if waiting.is_empty() {
            state.by_recipient.remove(&record.to);
        }
    }

    /// Whether an earlier message to `record`'s recipient is back in the
    /// queue at `now_ms`: then `record` must go back as well.
    pub fn goes_before(&self, record: &OutboundRecord, now_ms: i64) -> bool {
        let state = self.lock();
        let order = order_of(record.priority, record.seq);
        state.by_recipient.get(&record.to).is_some_and(|waiting| {
            waiting
                .range(..order)
                .any(|(_, waiting)| waiting.live(now_ms))
        })
    }

    /// The recipients held back at `now_ms` (one of their messages here is
    /// not due yet), each from its first message here in queue order that
    /// is not due, and the earliest time one of them is free again (that
    /// message's time). Its messages here before that one, due already,
    /// are claimed in queue order: held from the first message here
    /// whatever its time, a message of a higher priority turned away (due
    /// at once) waited behind a lower one's far-off retry, and so did every
    /// later one of that priority to the recipient.
    pub fn held(&self, now_ms: i64) -> (Vec<HeldRecipient>, Option<i64>) {
        let mut state = self.lock();
        state.by_recipient.retain(|_, waiting| {
            waiting.retain(|_, w| w.live(now_ms));
            !waiting.is_empty()
        });
        let mut held = Vec::new();
        let mut first_free = None::<i64>;
        for (recipient, waiting) in &state.by_recipient {
            // A message before this one (a higher priority, or one here
            // that is due) goes, as `goes_before` lets its hand-over go.
            let not_due = waiting.iter().find(|(_, w)| w.holds_until() > now_ms);
            if let Some(((Reverse(priority), seq), w)) = not_due {
                let until = w.holds_until();
                held.push(HeldRecipient {
                    recipient: recipient.clone(),
                    priority: *priority,
                    seq: *seq,
                });
                first_free = Some(first_free.map_or(until, |first| first.min(until)));
            }
        }
        held.sort_by(|a, b| a.recipient.cmp(&b.recipient));
        (held, first_free)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// `recipient`'s message at `order` waits in the queue, as `waiting`.
    fn wait(&mut self, recipient: &str, order: QueueOrder, waiting: Waiting) {
        self.by_recipient
            .entry(recipient.to_string())
            .or_default()
            .insert(order, waiting);
    }

    fn waiting_mut(&mut self, went_back: &WentBack) -> Option<&mut Waiting> {
        self.by_recipient
            .get_mut(&went_back.recipient)?
            .get_mut(&went_back.order)
    }

    fn remove(&mut self, recipient: &str, order: QueueOrder) {
        if let Some(waiting) = self.by_recipient.get_mut(recipient) {
            waiting.remove(&order);
            if waiting.is_empty() {
                self.by_recipient.remove(recipient);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::queued_sms;

    /// Message `seq` to `to`, normal priority, living until 10,000.
    fn message(to: &str, seq: i64) -> OutboundRecord {
        let mut record = queued_sms("x", 0).claimed_record(format!("id-{seq}"));
        record.to = to.into();
        record.seq = seq;
        record.expires_at_ms = 10_000;
        record
    }

    #[test]
    fn a_later_message_goes_back_while_an_earlier_one_waits_however_long_it_has_been_due() {
        let back = BackInQueue::default();
        back.went_back(&message("+1", 1), 100);
        assert!(back.goes_before(&message("+1", 2), 50));
        assert!(back.goes_before(&message("+1", 2), 5_000), "due long ago");
        assert!(
            !back.goes_before(&message("+2", 2), 50),
            "another recipient"
        );
        let mut urgent = message("+1", 3);
        urgent.priority = 2;
        assert!(
            !back.goes_before(&urgent, 50),
            "a higher priority goes first"
        );
        back.taken_again(&message("+1", 1), None);
        assert!(!back.goes_before(&message("+1", 2), 50), "taken again");
    }

    /// The held recipients' names, as most tests look at them.
    fn recipients(held: (Vec<HeldRecipient>, Option<i64>)) -> (Vec<String>, Option<i64>) {
        (held.0.into_iter().map(|h| h.recipient).collect(), held.1)
    }

    /// A held recipient is held from its first message back in the queue
    /// on, in queue order: one of a higher priority still goes first.
    #[test]
    fn a_recipient_is_held_from_its_first_message_back_in_the_queue() {
        let back = BackInQueue::default();
        back.went_back(&message("+1", 7), 5_000);
        back.went_back(&message("+1", 4), 9_000);
        let (held, _) = back.held(0);
        let first = &message("+1", 4);
        assert_eq!(
            held,
            [HeldRecipient {
                recipient: "+1".into(),
                priority: first.priority,
                seq: 4,
            }]
        );
    }

    /// A message of a higher priority back in the queue and due (turned
    /// away, say) is not held behind a lower one's far-off retry: the hold
    /// starts at the first message here not due yet, and ends at its time.
    #[test]
    fn a_recipient_is_held_from_its_first_message_back_in_the_queue_not_yet_due() {
        let back = BackInQueue::default();
        back.went_back(&message("+1", 1), 9_000);
        let mut urgent = message("+1", 9);
        urgent.priority = 2;
        back.went_back(&urgent, 100);
        let (held, hold_ends) = back.held(200);
        assert_eq!(
            held,
            [HeldRecipient {
                recipient: "+1".into(),
                priority: message("+1", 1).priority,
                seq: 1,
            }]
        );
        assert_eq!(hold_ends, Some(9_000));
        // Not due yet either: the hold starts at it, and ends at its time.
        let (held, hold_ends) = back.held(50);
        assert_eq!((held[0].seq, hold_ends), (9, Some(100)));
    }

    #[test]
    fn a_message_past_its_ttl_holds_nothing_back() {
        let back = BackInQueue::default();
        back.went_back(&message("+1", 1), 100);
        assert!(!back.goes_before(&message("+1", 2), 10_000));
        assert_eq!(
            recipients(back.held(50)),
            (vec!["+1".to_string()], Some(100))
        );
        assert_eq!(recipients(back.held(10_000)), (Vec::new(), None));
    }

    #[test]
    fn held_names_the_recipients_with_a_message_not_yet_due_and_the_first_to_be_free() {
        let back = BackInQueue::default();
        back.went_back(&message("+1", 1), 5_000);
        back.went_back(&message("+2", 2), 3_000);
        back.went_back(&message("+2", 3), 4_000);
        back.went_back(&message("+3", 4), 1_000);
        // +2's first message is free at 3,000 (its second then holds it).
        assert_eq!(
            recipients(back.held(2_000)),
            (vec!["+1".to_string(), "+2".to_string()], Some(3_000))
        );
        // Still here, due, and holding a later message back.
        assert!(back.goes_before(&message("+3", 5), 2_000));
    }

    /// A claim that took a later message to the recipient but not the
    /// earlier one shows the earlier one has left the queue (cancelled),
    /// if the claim could see it: committed back, and due by then.
    #[test]
    fn a_claim_that_passed_over_an_earlier_message_shows_it_has_left_the_queue() {
        let back = BackInQueue::default();
        let went_back = back.went_back(&message("+1", 1), 100);
        // Not committed before the claim started: it may still be on its way.
        let claim = back.claim_starts(200);
        back.taken_again(&message("+1", 2), Some(claim));
        assert!(back.goes_before(&message("+1", 3), 200));
        back.recorded([&went_back]);
        // Not due when the claim read the queue.
        back.taken_again(&message("+1", 2), Some(back.claim_starts(99)));
        assert!(back.goes_before(&message("+1", 3), 200));
        // Handed over, not claimed: shows nothing.
        back.taken_again(&message("+1", 2), None);
        assert!(back.goes_before(&message("+1", 3), 200));
        back.taken_again(&message("+1", 2), Some(back.claim_starts(200)));
        assert!(!back.goes_before(&message("+1", 3), 200), "it left");
    }

    #[test]
    fn a_cancelled_message_holds_nothing_back_however_far_off_its_retry() {
        let back = BackInQueue::default();
        back.went_back(&message("+1", 1), 9_000);
        back.went_back(&message("+1", 2), 0);
        back.cancelled(&message("+1", 1));
        assert_eq!(recipients(back.held(100)), (Vec::new(), None));
        assert!(back.goes_before(&message("+1", 3), 100), "the second waits");
        back.cancelled(&message("+1", 2));
        assert!(!back.goes_before(&message("+1", 3), 100));
    }

    #[test]
    fn a_return_that_could_not_be_recorded_holds_nothing_back() {
        let back = BackInQueue::default();
        let went_back = back.went_back(&message("+1", 1), 100);
        back.not_recorded(&went_back);
        assert!(!back.goes_before(&message("+1", 2), 0));
    }

    #[test]
    fn a_restart_holds_what_the_queue_keeps_for_later() {
        let back = BackInQueue::default();
        back.went_back(&message("+9", 1), 100);
        back.restore(&[QueuedForLater {
            recipient: "+1".into(),
            priority: 1,
            seq: 5,
            due_ms: 3_000,
            expires_at_ms: 10_000,
        }]);
        assert_eq!(
            recipients(back.held(0)),
            (vec!["+1".to_string()], Some(3_000))
        );
        assert!(back.goes_before(&message("+1", 6), 0));
        // Committed already: a claim that passes it over shows it left.
        back.taken_again(&message("+1", 6), Some(back.claim_starts(3_000)));
        assert!(!back.goes_before(&message("+1", 7), 0));
    }
}
