//! Permanent refusals of inbound messages in a row, with no message taken
//! since they began: the forwarder's count for holding the queue.
//!
//! A relay, or a proxy before it, that refuses everything with a 4xx would
//! otherwise dead-letter the whole queue in seconds: a refusal is taken
//! as the message's own (a dead letter) only while fewer than
//! [`REFUSED_ALONE_BEFORE_ANY_TAKEN`] came in a row. From then on the
//! relay is taken to refuse messages, not these: the queue is held, the
//! message refused left pending, and tried again with backoff until the
//! relay takes one.
//!
//! The count is kept in the store (a cursor), for the relay it was counted
//! against: counted in memory, it started again with every start of the
//! link (a restart after a relay outage, a SIGHUP), and each start let
//! three more messages die. It is not worked out from the dead letters:
//! those are kept for good while the delivered messages between them go
//! with retention, so an old run of refusals would pass for a new one.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::pull_ack::REFUSED_ALONE_BEFORE_ANY_TAKEN;
use super::settings::SCOPE;
use crate::store::Store;

/// The cursor's name under [`SCOPE`]; a pairing made or removed clears it.
pub(super) const CURSOR: &str = "inbound_refusals";

const HOLD_AT: u32 = REFUSED_ALONE_BEFORE_ANY_TAKEN as u32;

/// The count as stored: another relay's refusals (a pairing with another
/// relay since) say nothing of this one.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    relay_url: String,
    in_a_row: u32,
}

#[derive(Debug, Default)]
pub struct Refusals {
    in_a_row: u32,
    /// The count the store holds, so that it is written only on a change:
    /// not once per message delivered.
    stored: u32,
    /// The messages refused while the queue is held, in memory: each
    /// round of the hold tries one not refused yet, of another sender if
    /// there is one ([`Refusals::refused_while_held`]). Probing with the
    /// same refused message again, the hold could never end while that
    /// message's own refusal lasted (four replies to a pChat user deleted
    /// on the relay held every other sender's messages for good).
    held: HashSet<String>,
}

impl Refusals {
    /// The count stored for `relay_url`; none, another relay's, or one
    /// that cannot be read counts from zero, as a link always did.
    pub async fn load(store: &dyn Store, relay_url: &str) -> Self {
        let in_a_row = match store.load_cursor(SCOPE, CURSOR).await {
            Ok(text) => text
                .and_then(|text| serde_json::from_str::<Stored>(&text).ok())
                .filter(|stored| super::relay_url::same_relay(&stored.relay_url, relay_url))
                .map_or(0, |stored| stored.in_a_row),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the relay's refusals in a row; counting from zero");
                0
            }
        };
        Self {
            in_a_row,
            stored: in_a_row,
            held: HashSet::new(),
        }
    }

    /// Whether the queue is held: the count reached the hold (before this
    /// start, when just loaded).
    pub fn holds(&self) -> bool {
        self.in_a_row >= HOLD_AT
    }

    /// Refusals in a row so far.
    pub fn in_a_row(&self) -> u32 {
        self.in_a_row
    }

    /// Whether one more refusal would hold the queue (or keep it held).
    pub fn next_holds(&self) -> bool {
        self.in_a_row.saturating_add(1) >= HOLD_AT
    }

    /// One more refusal, counted once its outcome is recorded (a dead
    /// letter) or the queue is held for it: counted before, a refusal whose
    /// dead letter the store could not record was counted again at every
    /// repeat of its POST, and one message held the queue.
    pub fn one_more(&mut self) {
        self.in_a_row = self.in_a_row.saturating_add(1);
    }

    /// The queue is held for `id`, which the relay refused too.
    pub fn held_for(&mut self, id: &str) {
        self.held.insert(id.to_string());
    }

    /// Whether `id` was refused while the queue is held: a round of the
    /// hold tries the others first.
    pub fn refused_while_held(&self, id: &str) -> bool {
        self.held.contains(id)
    }

    /// Refusals since the queue was held, the first included: the backoff
    /// grows with them.
    pub fn held_rounds(&self) -> u32 {
        (self.in_a_row + 1).saturating_sub(HOLD_AT)
    }

    /// The relay took a message: whether the queue was held until now.
    /// The messages refused while it was are tried again in order, each a
    /// dead letter if the relay refuses it on its own.
    pub fn taken(&mut self) -> bool {
        let held = self.holds();
        self.in_a_row = 0;
        self.held.clear();
        held
    }

    /// Store the count if it changed: a refusal once its outcome is
    /// recorded (a crash between the two then counts a refusal too few,
    /// one more dead letter at most, never one the message has not had),
    /// a message taken before its delivery is recorded (the forwarder's
    /// `answered`).
    /// A count that cannot be stored is kept in memory and stored at the
    /// next try.
    pub async fn keep(&mut self, store: &dyn Store, relay_url: &str) {
        if self.in_a_row == self.stored {
            return;
        }
        // None in a row is no cursor at all (an empty value removes it).
        let text = match self.in_a_row {
            0 => String::new(),
            in_a_row => serde_json::to_string(&Stored {
                relay_url: relay_url.to_string(),
                in_a_row,
            })
            .expect("a string and a number serialize to JSON"),
        };
        match store.save_cursor(SCOPE, CURSOR, &text).await {
            Ok(()) => self.stored = self.in_a_row,
            Err(e) => {
                tracing::warn!(error = %e, "cannot record the relay's refusals in a row; kept in memory")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    /// The count comes back for the relay it was counted against, and
    /// from zero for another; a message taken removes it.
    #[tokio::test]
    async fn the_count_is_kept_for_its_relay_until_one_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        let (ours, another) = ("https://relay.test", "https://other.test");
        let mut refusals = Refusals::load(&store, ours).await;
        for _ in 0..3 {
            assert!(!refusals.next_holds());
            refusals.one_more();
        }
        refusals.keep(&store, ours).await;

        let mut again = Refusals::load(&store, ours).await;
        assert!(again.next_holds(), "the fourth in a row holds the queue");
        again.one_more();
        assert_eq!(again.held_rounds(), 1);
        assert!(!Refusals::load(&store, another).await.next_holds());

        assert!(again.taken());
        again.keep(&store, ours).await;
        assert_eq!(store.load_cursor(SCOPE, CURSOR).await.unwrap(), None);
        assert!(!Refusals::load(&store, ours).await.taken());
    }
}
