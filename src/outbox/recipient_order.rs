//! Each recipient's messages leave in queue order.
//!
//! An endpoint sends up to `concurrency` messages at once, so two messages
//! to one recipient could overtake each other: the second sent while the
//! first is still in flight, or while the first waits for its retry. The
//! dispatcher chains the sends to each recipient instead: a send starts
//! only once the one started before it to the same recipient has ended,
//! and if that one went back to the queue (a retry, a rate limit, a
//! shutdown), this one goes back too, due at the same time, so that the
//! next claim takes them in queue order again. Sends to other recipients
//! run beside them as before. A chat bridge does the same per room.
//!
//! The chains live in the dispatcher's memory. A dispatcher that starts
//! (after a restart) rebuilds what matters of them from the queue: each
//! recipient with a message that waits for a retry, or waits behind one,
//! is held until the earliest of those is due ([`RecipientOrder::hold`]),
//! so that a message accepted meanwhile does not go first. What a restart
//! loses is only the order of sends that were in flight, and those come
//! back from the queue in queue order anyway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::store::SendOutcome;

/// Chains kept before the ended ones are first dropped.
const PRUNE_AT: usize = 1024;

/// How the last send to a recipient stands, as far as the next one cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Still under way.
    Pending,
    /// Over for good (sent, failed, expired): the next one may go.
    Open,
    /// Back in the queue until this time: the next one waits as long.
    HeldUntil(i64),
}

impl Gate {
    /// What `outcome` means for the next send to the same recipient.
    pub fn after(outcome: &SendOutcome) -> Self {
        match outcome {
            SendOutcome::Sent { .. } | SendOutcome::Failed { .. } | SendOutcome::Expired { .. } => {
                Gate::Open
            }
            SendOutcome::Retry {
                next_attempt_at_ms, ..
            }
            | SendOutcome::Release {
                next_attempt_at_ms, ..
            } => Gate::HeldUntil(*next_attempt_at_ms),
        }
    }
}

/// The last send started to each recipient of one endpoint.
pub struct RecipientOrder {
    last: HashMap<String, watch::Receiver<Gate>>,
    /// How many chains trigger the next prune: twice what the last prune
    /// kept, at least [`PRUNE_AT`], so that many held chains (a retry
    /// storm over many recipients) do not make every send walk them all.
    prune_at: usize,
    /// The recipients held back, each until when: written as a send goes
    /// back to the queue ([`Place::finish`]), so that [`Self::held`],
    /// asked at every claim, reads the few held ones, not every chain.
    holds: Holds,
}

/// Recipient → until when it is held back.
type Holds = Arc<Mutex<HashMap<String, i64>>>;

impl Default for RecipientOrder {
    fn default() -> Self {
        Self {
            last: HashMap::new(),
            prune_at: PRUNE_AT,
            holds: Holds::default(),
        }
    }
}

/// A send's place in its recipient's chain.
pub struct Place {
    before: Option<watch::Receiver<Gate>>,
    done: watch::Sender<Gate>,
    recipient: String,
    holds: Holds,
}

/// Note that `recipient` is held back until `until_ms` (the later, if it
/// was already).
fn note_hold(holds: &Holds, recipient: &str, until_ms: i64) {
    let mut holds = holds.lock().unwrap_or_else(|e| e.into_inner());
    let until = holds.entry(recipient.to_string()).or_insert(until_ms);
    *until = (*until).max(until_ms);
}

impl RecipientOrder {
    /// Queue a send to `recipient` behind the one started last to it.
    pub fn join(&mut self, recipient: &str, now_ms: i64) -> Place {
        if self.last.len() >= self.prune_at {
            self.prune(now_ms);
            self.prune_at = PRUNE_AT.max(2 * self.last.len());
        }
        let (done, gate) = watch::channel(Gate::Pending);
        let before = self.last.insert(recipient.to_string(), gate);
        Place {
            before,
            done,
            recipient: recipient.to_string(),
            holds: self.holds.clone(),
        }
    }

    /// Hold every send to `recipient` back until `until_ms`, as if one
    /// before it had gone back to the queue until then: what a restart
    /// would otherwise forget (see the module's note).
    pub fn hold(&mut self, recipient: &str, until_ms: i64) {
        let (_, gate) = watch::channel(Gate::HeldUntil(until_ms));
        self.last.insert(recipient.to_string(), gate);
        note_hold(&self.holds, recipient, until_ms);
    }

    /// The recipients held back at `now_ms` (the last send to each went
    /// back to the queue until a time still to come), and the earliest
    /// such time: a claim leaves their messages in the queue, where they
    /// would only go back to wait, and looks again once a hold ends.
    pub fn held(&self, now_ms: i64) -> (Vec<String>, Option<i64>) {
        let mut holds = self.holds.lock().unwrap_or_else(|e| e.into_inner());
        holds.retain(|_, until| *until > now_ms);
        let mut recipients: Vec<String> = holds.keys().cloned().collect();
        recipients.sort();
        (recipients, holds.values().copied().min())
    }

    /// Forget the chains that can hold nothing back any more.
    fn prune(&mut self, now_ms: i64) {
        self.last.retain(|_, gate| match *gate.borrow() {
            Gate::Pending => true,
            Gate::Open => false,
            Gate::HeldUntil(until) => until > now_ms,
        });
    }

    #[cfg(test)]
    fn chains(&self) -> usize {
        self.last.len()
    }
}

impl Place {
    /// Wait until the send before this one has ended. `Some(until)` if it
    /// went back to the queue until a time still to come: this one must
    /// wait as long. A send that vanished without a word (its task was
    /// dropped) holds nothing back.
    pub async fn wait_turn(&mut self, now_ms: impl Fn() -> i64) -> Option<i64> {
        let before = self.before.as_mut()?;
        let gate = match before.wait_for(|gate| *gate != Gate::Pending).await {
            Ok(gate) => *gate,
            Err(_) => Gate::Open,
        };
        match gate {
            Gate::HeldUntil(until) if until > now_ms() => Some(until),
            _ => None,
        }
    }

    /// This send has ended so: let the next one to the recipient know.
    pub fn finish(self, outcome: &SendOutcome) {
        let gate = Gate::after(outcome);
        if let Gate::HeldUntil(until) = gate {
            note_hold(&self.holds, &self.recipient, until);
        }
        let _ = self.done.send(gate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent() -> SendOutcome {
        SendOutcome::Sent {
            receipt: phonerelay_channel::SendReceipt::single("x".to_string()),
            now_ms: 0,
        }
    }

    fn retry_at(at: i64) -> SendOutcome {
        SendOutcome::Retry {
            next_attempt_at_ms: at,
            code: "busy".into(),
            reason: "later".into(),
            now_ms: 0,
        }
    }

    #[test]
    fn held_names_the_recipients_waiting_on_a_time_to_come_and_the_first_end() {
        let mut order = RecipientOrder::default();
        order.join("+1", 0).finish(&retry_at(5_000));
        order.join("+2", 0).finish(&retry_at(3_000));
        order.join("+3", 0).finish(&sent());
        let _in_flight = order.join("+4", 0);
        order.hold("+5", 1_000);
        assert_eq!(
            order.held(2_000),
            (vec!["+1".to_string(), "+2".to_string()], Some(3_000))
        );
        assert_eq!(order.held(5_000), (Vec::new(), None));
    }

    #[tokio::test]
    async fn the_first_send_to_a_recipient_goes_at_once() {
        let mut order = RecipientOrder::default();
        let mut place = order.join("+1", 0);
        assert_eq!(place.wait_turn(|| 0).await, None);
    }

    #[tokio::test]
    async fn a_hold_sends_the_next_one_back_until_it_is_due() {
        let mut order = RecipientOrder::default();
        order.hold("+1", 500);
        assert_eq!(order.join("+1", 0).wait_turn(|| 100).await, Some(500));
        let mut order = RecipientOrder::default();
        order.hold("+1", 500);
        assert_eq!(order.join("+1", 0).wait_turn(|| 500).await, None, "due");
        let mut order = RecipientOrder::default();
        order.hold("+1", 500);
        assert_eq!(order.join("+2", 0).wait_turn(|| 100).await, None);
    }

    #[tokio::test]
    async fn the_next_send_waits_until_the_one_before_has_ended() {
        let mut order = RecipientOrder::default();
        let first = order.join("+1", 0);
        let mut second = order.join("+1", 0);
        let mut other = order.join("+2", 0);
        assert_eq!(other.wait_turn(|| 0).await, None, "another recipient");
        let waiting = tokio::spawn(async move { second.wait_turn(|| 0).await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "went before the first had ended");
        first.finish(&sent());
        assert_eq!(waiting.await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_send_behind_one_that_went_back_to_the_queue_goes_back_as_long() {
        let mut order = RecipientOrder::default();
        order.join("+1", 0).finish(&retry_at(500));
        let mut second = order.join("+1", 100);
        assert_eq!(second.wait_turn(|| 100).await, Some(500));
        // Which holds the one after it too, until the same time.
        second.finish(&SendOutcome::Release {
            next_attempt_at_ms: 500,
            now_ms: 100,
            code: "held_back".into(),
            reason: "an earlier message goes first".into(),
        });
        let mut third = order.join("+1", 200);
        assert_eq!(third.wait_turn(|| 200).await, Some(500));
        // Once that time has come, the hold is over.
        let mut later = order.join("+1", 500);
        later.before = Some(watch::channel(Gate::HeldUntil(500)).1);
        assert_eq!(later.wait_turn(|| 500).await, None);
    }

    #[tokio::test]
    async fn a_send_that_vanished_holds_nothing_back() {
        let mut order = RecipientOrder::default();
        drop(order.join("+1", 0));
        let mut second = order.join("+1", 0);
        assert_eq!(second.wait_turn(|| 0).await, None);
    }

    #[test]
    fn ended_chains_are_forgotten_and_live_ones_kept() {
        let mut order = RecipientOrder::default();
        let mut pending = Vec::new();
        for n in 0..PRUNE_AT {
            let place = order.join(&format!("+{n}"), 0);
            match n % 3 {
                0 => place.finish(&sent()),
                1 => place.finish(&retry_at(1_000)),
                _ => pending.push(place),
            }
        }
        assert_eq!(order.chains(), PRUNE_AT);
        let _ = order.join("+new", 500);
        // Sent ones are gone; held (until 1,000) and pending ones stay.
        let kept = PRUNE_AT - PRUNE_AT.div_ceil(3) + 1;
        assert_eq!(order.chains(), kept);
        // The next prune waits until twice as many as were kept.
        assert_eq!(order.prune_at, 2 * (kept - 1));
    }
}
