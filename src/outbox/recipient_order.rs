//! Each recipient's messages leave in queue order.
//!
//! An endpoint sends up to `concurrency` messages at once, so two messages
//! to one recipient could overtake each other: the second sent while the
//! first is still in flight, or while the first waits in the queue for its
//! retry. The dispatcher chains the sends to each recipient instead: a send
//! starts only once the one started before it to the same recipient has
//! ended. Then, if an earlier message to the recipient is back in the
//! queue and not yet taken again (`back_in_queue`: the one before it went
//! back for a retry, a rate limit, a shutdown, or went back earlier and
//! this one was handed over or claimed meanwhile), this one goes back too,
//! so that the next claim takes them in queue order again. Sends to other
//! recipients run beside them as before. A chat bridge does the same per
//! room.
//!
//! The chains live in the dispatcher's memory, and so does what is back in
//! the queue. A dispatcher that starts (after a restart) rebuilds the
//! latter from the queue: each message not due yet holds back its
//! recipient's later ones until it has been taken again. What a restart
//! loses is only the order of sends that were in flight, and those come
//! back from the queue in queue order anyway.

use std::collections::HashMap;

use tokio::sync::watch;

/// Chains kept before the ended ones are first dropped.
const PRUNE_AT: usize = 1024;

/// The last send started to each recipient of one endpoint: each link says
/// `true` once that send has ended.
pub struct RecipientOrder {
    last: HashMap<String, watch::Receiver<bool>>,
    /// How many chains trigger the next prune: twice what the last prune
    /// kept, at least [`PRUNE_AT`], so that many live chains (a backlog
    /// over many recipients in flight) do not make every send walk them all.
    prune_at: usize,
}

impl Default for RecipientOrder {
    fn default() -> Self {
        Self {
            last: HashMap::new(),
            prune_at: PRUNE_AT,
        }
    }
}

/// A send's place in its recipient's chain.
pub struct Place {
    before: Option<watch::Receiver<bool>>,
    done: watch::Sender<bool>,
}

/// Whether the send behind `link` is over: it said so, or vanished
/// without a word (its task was dropped).
fn ended(link: &watch::Receiver<bool>) -> bool {
    *link.borrow() || link.has_changed().is_err()
}

impl RecipientOrder {
    /// Queue a send to `recipient` behind the one started last to it.
    pub fn join(&mut self, recipient: &str) -> Place {
        if self.last.len() >= self.prune_at {
            self.last.retain(|_, link| !ended(link));
            self.prune_at = PRUNE_AT.max(2 * self.last.len());
        }
        let (done, link) = watch::channel(false);
        let before = self.last.insert(recipient.to_string(), link);
        Place { before, done }
    }

    #[cfg(test)]
    fn chains(&self) -> usize {
        self.last.len()
    }
}

impl Place {
    /// Wait until the send before this one has ended.
    pub async fn wait_turn(&mut self) {
        if let Some(before) = self.before.as_mut() {
            // An error is a send that vanished: it holds nothing back.
            let _ = before.wait_for(|ended| *ended).await;
        }
    }

    /// This send has ended: the next one to the recipient may look whether
    /// it can go. Whatever this one left back in the queue is noted first
    /// (`back_in_queue`), so the next one sees it.
    pub fn finish(self) {
        let _ = self.done.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_send_to_a_recipient_goes_at_once() {
        let mut order = RecipientOrder::default();
        order.join("+1").wait_turn().await;
    }

    #[tokio::test]
    async fn the_next_send_waits_until_the_one_before_has_ended() {
        let mut order = RecipientOrder::default();
        let first = order.join("+1");
        let mut second = order.join("+1");
        order.join("+2").wait_turn().await;
        let waiting = tokio::spawn(async move { second.wait_turn().await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "went before the first had ended");
        first.finish();
        waiting.await.unwrap();
    }

    #[tokio::test]
    async fn a_send_that_vanished_holds_nothing_back() {
        let mut order = RecipientOrder::default();
        drop(order.join("+1"));
        order.join("+1").wait_turn().await;
    }

    #[test]
    fn ended_chains_are_forgotten_and_live_ones_kept() {
        let mut order = RecipientOrder::default();
        let mut pending = Vec::new();
        for n in 0..PRUNE_AT {
            let place = order.join(&format!("+{n}"));
            match n % 3 {
                0 => place.finish(),
                1 => drop(place),
                _ => pending.push(place),
            }
        }
        assert_eq!(order.chains(), PRUNE_AT);
        let _ = order.join("+new");
        // Ended and vanished ones are gone; pending ones stay.
        let kept = PRUNE_AT / 3 + 1;
        assert_eq!(order.chains(), kept);
        // The next prune waits until twice as many as were kept.
        assert_eq!(order.prune_at, PRUNE_AT.max(2 * (kept - 1)));
    }
}
