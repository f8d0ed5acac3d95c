//! The concatenation reference of a long message: the number in its
//! parts' user-data header (IE 0x00, 8 bits, or 0x08, 16 bits) by which
//! the handset joins them. The handset joins the parts of one sender that
//! share a reference, so two long messages to one person in flight
//! together with the same reference reach them as one garbled text.
//!
//! Phones and Gammu take references from a counter per modem, so
//! consecutive messages get distinct ones; so does this adapter. (Before,
//! the reference was a hash of the message id: with 8 bits two long
//! messages to one person shared it once in 256 pairs, and with many
//! messages a collision became likely.) The counter is a store cursor, so
//! a restart goes on from where it was instead of handing out recent
//! references again. A message's own reference is kept in its parts
//! cursor ([`crate::driver::status::AcceptedParts`]) before its first
//! part goes out, so every retry, after a restart too, uses the same.

use phonerelay_channel::{EventSink, SinkError};
use sha2::{Digest, Sha256};

/// The store cursor holding the next reference to hand out, in decimal.
/// Like the adapter's other cursors it lives under the endpoint's scope
/// (channel and `phone_id`), so each modem counts on its own: the handset
/// joins by sender too, and another modem is another sender.
pub const NEXT_CONCAT_REFERENCE_CURSOR: &str = "sms-next-concat-reference";

/// The counter of one modem. One per [`crate::SmsChannel`], which every
/// send to that modem goes through: the lock is held from reading the
/// next value to committing the one after it, so two sends in flight
/// together (concurrency above 1) never take the same.
#[derive(Default)]
pub struct ConcatReferences {
    /// The next value, once read from the store (or chosen): `None`
    /// until the first long message of this process.
    next: tokio::sync::Mutex<Option<u16>>,
}

impl ConcatReferences {
    /// The reference for a new long message: the counter's next value,
    /// the counter stepped past it in the store before it is handed out,
    /// so a restart never hands it out again. A failure to read or step
    /// the counter hands out nothing, and the memory stays as it was.
    /// Without a store (`None`: a channel never attached to a daemon)
    /// the counter lives in memory only.
    pub async fn take(
        &self,
        store: Option<&dyn EventSink>,
        sixteen_bit: bool,
    ) -> Result<u16, SinkError> {
        let mut next = self.next.lock().await;
        let stored = match (*next, store) {
            (Some(value), _) => value,
            (None, Some(store)) => read_counter(store).await?,
            (None, None) => random_start(),
        };
        let reference = within(stored, sixteen_bit);
        let after = within(reference.wrapping_add(1), sixteen_bit);
        if let Some(store) = store {
            store
                .save_cursor(NEXT_CONCAT_REFERENCE_CURSOR, &after.to_string())
                .await?;
        }
        *next = Some(after);
        Ok(reference)
    }
}

/// The next value the store holds; a random start when it holds none
/// (a fresh store) or one that does not read as a number.
async fn read_counter(store: &dyn EventSink) -> Result<u16, SinkError> {
    let Some(text) = store.load_cursor(NEXT_CONCAT_REFERENCE_CURSOR).await? else {
        return Ok(random_start());
    };
    match text.trim().parse() {
        Ok(value) => Ok(value),
        Err(_) => {
            tracing::warn!(cursor = NEXT_CONCAT_REFERENCE_CURSOR, value = %text,
                "unreadable concatenation reference counter; starting from a random value");
            Ok(random_start())
        }
    }
}

/// Where a fresh store's counter starts: at random, as phones do. From 0
/// every time, two bridges sending from one number (a standby taking
/// over), or a store lost and begun again, would hand out 0, 1, 2...
/// in lockstep with the references of messages whose parts may still be
/// on their way to the same handsets; a random start makes that a one in
/// 256 (or 65,536) chance instead of a certainty. (A store restored from
/// a backup is not fresh: it goes on from the backup's value, and the
/// references handed out since come round early, as after a wrap.)
fn random_start() -> u16 {
    rand::random()
}

/// `value` as a reference of the configured size: 8-bit references wrap
/// 255 → 0 (a counter stored while the modem used 16 bits is cut to its
/// low octet, as the header would cut it), 16-bit ones 65535 → 0.
fn within(value: u16, sixteen_bit: bool) -> u16 {
    if sixteen_bit { value } else { value & 0xFF }
}

/// The reference versions before the counter gave a long message: the
/// first two octets of the SHA-256 of its id (the low one with 8 bits).
/// A message they started, whose parts cursor holds accepted parts but no
/// reference, keeps it, so its remaining parts join the ones they sent.
pub fn legacy_reference(message_id: &str) -> u16 {
    let digest = Sha256::digest(message_id.as_bytes());
    u16::from_be_bytes([digest[0], digest[1]])
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use async_trait::async_trait;
    use phonerelay_channel::{ChannelEvent, CursorWrite, InboundMessage};

    use super::*;

    /// Cursors in memory; writes fail while `writes_fail`, and each read
    /// and write yields first, so two takes in flight interleave.
    #[derive(Default)]
    struct Store {
        cursors: Mutex<HashMap<String, String>>,
        writes_fail: AtomicBool,
    }

    #[async_trait]
    impl EventSink for Store {
        async fn deliver(&self, _event: ChannelEvent) -> Result<(), SinkError> {
            Ok(())
        }
        async fn save_cursor(&self, name: &str, value: &str) -> Result<(), SinkError> {
            tokio::task::yield_now().await;
            if self.writes_fail.load(Ordering::SeqCst) {
                return Err(SinkError::unavailable("store unavailable"));
            }
            let mut cursors = self.cursors.lock().unwrap();
            cursors.insert(name.to_string(), value.to_string());
            Ok(())
        }
        async fn deliver_inbound_with_cursors(
            &self,
            _message: InboundMessage,
            _cursors: &[CursorWrite],
        ) -> Result<(), SinkError> {
            unreachable!("the counter commits no inbound message")
        }
        async fn load_cursor(&self, name: &str) -> Result<Option<String>, SinkError> {
            tokio::task::yield_now().await;
            Ok(self.cursors.lock().unwrap().get(name).cloned())
        }
        async fn sent_ids(&self, _base: &str) -> Result<Vec<(String, i64)>, SinkError> {
            Ok(Vec::new())
        }
        async fn inbound_ids(&self, _base: &str) -> Result<Vec<String>, SinkError> {
            Ok(Vec::new())
        }
    }

    impl Store {
        fn with_counter(value: &str) -> Self {
            let store = Self::default();
            store
                .cursors
                .lock()
                .unwrap()
                .insert(NEXT_CONCAT_REFERENCE_CURSOR.to_string(), value.to_string());
            store
        }

        fn counter(&self) -> Option<String> {
            let cursors = self.cursors.lock().unwrap();
            cursors.get(NEXT_CONCAT_REFERENCE_CURSOR).cloned()
        }
    }

    #[tokio::test]
    async fn the_counter_steps_by_one_and_wraps_at_its_size() {
        let store = Store::with_counter("254");
        let references = ConcatReferences::default();
        let mut taken = Vec::new();
        for _ in 0..3 {
            taken.push(references.take(Some(&store), false).await.unwrap());
        }
        assert_eq!(taken, [254, 255, 0]);
        assert_eq!(store.counter().as_deref(), Some("1"));

        let store = Store::with_counter("65535");
        let references = ConcatReferences::default();
        assert_eq!(references.take(Some(&store), true).await.unwrap(), 65535);
        assert_eq!(references.take(Some(&store), true).await.unwrap(), 0);
        assert_eq!(store.counter().as_deref(), Some("1"));
    }

    /// A counter a 16-bit modem left, read with 8 bits: its low octet.
    #[tokio::test]
    async fn a_counter_kept_with_16_bits_is_cut_to_8() {
        let store = Store::with_counter("4660"); // 0x1234
        let references = ConcatReferences::default();
        assert_eq!(references.take(Some(&store), false).await.unwrap(), 0x34);
        assert_eq!(store.counter().as_deref(), Some("53"));
    }

    /// A fresh store: the first reference is the start chosen, and the
    /// store holds the one after it before it is handed out.
    #[tokio::test]
    async fn a_fresh_store_starts_the_counter_and_keeps_it() {
        let store = Store::default();
        let references = ConcatReferences::default();
        let first = references.take(Some(&store), false).await.unwrap();
        assert!(first <= 255);
        let expected = ((first + 1) & 0xFF).to_string();
        assert_eq!(store.counter(), Some(expected));
        let again = ConcatReferences::default();
        assert_eq!(
            again.take(Some(&store), false).await.unwrap(),
            (first + 1) & 0xFF,
            "a new process goes on from the store"
        );
    }

    /// A counter the store cannot step hands out nothing, and does not
    /// skip ahead in memory either: the value is taken once it can be kept.
    #[tokio::test]
    async fn a_value_the_store_cannot_keep_is_not_handed_out() {
        let store = Store::with_counter("7");
        let references = ConcatReferences::default();
        store.writes_fail.store(true, Ordering::SeqCst);
        assert!(references.take(Some(&store), false).await.is_err());
        store.writes_fail.store(false, Ordering::SeqCst);
        assert_eq!(references.take(Some(&store), false).await.unwrap(), 7);
        assert_eq!(store.counter().as_deref(), Some("8"));
    }

    /// Sends in flight together (each store call yields, so without the
    /// lock both would read the same value before either wrote).
    #[tokio::test]
    async fn sends_in_flight_together_take_different_references() {
        let store = Store::with_counter("10");
        let references = ConcatReferences::default();
        let (a, b) = tokio::join!(
            references.take(Some(&store), false),
            references.take(Some(&store), false)
        );
        let mut taken = [a.unwrap(), b.unwrap()];
        taken.sort();
        assert_eq!(taken, [10, 11]);
        assert_eq!(store.counter().as_deref(), Some("12"));
    }

    #[tokio::test]
    async fn an_unreadable_counter_starts_again_rather_than_stopping_sends() {
        let store = Store::with_counter("not a number");
        let references = ConcatReferences::default();
        let first = references.take(Some(&store), false).await.unwrap();
        assert_eq!(store.counter(), Some(((first + 1) & 0xFF).to_string()));
    }

    /// The derivation earlier versions used, which their half-sent
    /// messages keep: pinned, as a change would split such a message.
    #[test]
    fn the_legacy_reference_is_the_id_s_hash() {
        // SHA-256 of "first" begins a7 93.
        assert_eq!(legacy_reference("first"), 0xA793);
    }
}
