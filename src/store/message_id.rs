//! Outbound message ids that name their own row.
//!
//! An id is a UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then a
//! 15-bit counter (the 12 bits of `rand_a` and the top 3 of `rand_b`, the
//! RFC's "fixed bit-length dedicated counter"), then 59 random bits. The
//! milliseconds and the counter together are the message's `seq`, the
//! outbox table's rowid, so the store finds a message by its id through the
//! table itself instead of through an index on the id: one B-tree fewer to
//! write per accepted message (docs/performance.md, ninth pass).
//!
//! Ids given out before migration 9 are random UUIDv7s with small `seq`s;
//! they do not carry their `seq`, and a partial index over those rows finds
//! them (`LEGACY_SEQ_LIMIT`).
//!
//! Pure: no clock, no database; the caller passes both in.

use uuid::Uuid;

/// Bits of `seq` below the milliseconds: up to 32,768 messages a
/// millisecond before the counter carries into the next millisecond.
const COUNTER_BITS: u32 = 15;

/// Every `seq` below this belongs to a message accepted before ids carried
/// their `seq` (those counted up from 1); every `seq` from a clock after
/// 1970-01-01T00:00:00.131Z is at or above it.
pub const LEGACY_SEQ_LIMIT: i64 = 1 << 32;

/// When the message with `seq` was accepted, in Unix milliseconds (to the
/// clock of its accept; a burst over 32,768 a millisecond runs a little
/// ahead). `None` for a message from before migration 9, whose `seq` was a
/// plain count.
pub fn accepted_at_ms(seq: i64) -> Option<i64> {
    (seq >= LEGACY_SEQ_LIMIT).then_some(seq >> COUNTER_BITS)
}

/// The `seq` for the next message: after `last` (the highest so far), and
/// no earlier than the clock, so seqs keep growing across restarts and a
/// clock that steps back.
pub fn next_seq(last: i64, now_ms: i64) -> i64 {
    let from_clock = now_ms.clamp(0, (1 << 48) - 1) << COUNTER_BITS;
    from_clock.max(last.saturating_add(1))
}

/// The id of the message with `seq`; `random` fills the bits `seq` does not.
pub fn id_for(seq: i64, random: u64) -> String {
    let seq = seq as u64;
    let millis = seq >> COUNTER_BITS;
    let counter = seq & ((1 << COUNTER_BITS) - 1);
    let rand_a = (counter >> 3) as u16;
    let rand_b = ((counter & 0b111) << 59) | (random & ((1 << 59) - 1));
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6] = 0x70 | (rand_a >> 8) as u8;
    bytes[7] = rand_a as u8;
    bytes[8] = 0x80 | (rand_b >> 56) as u8;
    bytes[9..].copy_from_slice(&rand_b.to_be_bytes()[1..]);
    Uuid::from_bytes(bytes).hyphenated().to_string()
}

/// The `seq` an id names, if it has the shape of one: a lower-case,
/// hyphenated UUIDv7. Ids from before migration 9 have that shape too but
/// name some other `seq`, so a caller must check the row's id.
pub fn seq_of(id: &str) -> Option<i64> {
    let uuid = Uuid::try_parse(id).ok()?;
    let hyphenated_lower_case = id.len() == 36 && !id.bytes().any(|b| b.is_ascii_uppercase());
    if !hyphenated_lower_case
        || uuid.get_version_num() != 7
        || uuid.get_variant() != uuid::Variant::RFC4122
    {
        return None;
    }
    let bytes = uuid.as_bytes();
    let mut millis = [0u8; 8];
    millis[2..].copy_from_slice(&bytes[..6]);
    let rand_a = (u64::from(bytes[6] & 0x0f) << 8) | u64::from(bytes[7]);
    let counter = (rand_a << 3) | u64::from((bytes[8] >> 3) & 0b111);
    Some(((u64::from_be_bytes(millis) << COUNTER_BITS) | counter) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_names_its_seq_for_every_counter_value_and_any_random_bits() {
        let millis = 1_764_000_000_123_i64;
        for counter in [0, 1, 7, 8, 4095, 4096, 32_767] {
            let seq = (millis << COUNTER_BITS) | counter;
            for random in [0, u64::MAX, 0x0123_4567_89ab_cdef] {
                let id = id_for(seq, random);
                assert_eq!(seq_of(&id), Some(seq), "{id}");
                let uuid = Uuid::parse_str(&id).unwrap();
                assert_eq!(uuid.get_version_num(), 7, "{id}");
                assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
            }
        }
    }

    #[test]
    fn the_id_carries_the_milliseconds_as_a_uuid_v7_timestamp() {
        let id = id_for(1_764_000_000_123 << COUNTER_BITS, 0);
        let (secs, nanos) = Uuid::parse_str(&id)
            .unwrap()
            .get_timestamp()
            .unwrap()
            .to_unix();
        assert_eq!((secs, nanos), (1_764_000_000, 123_000_000));
    }

    #[test]
    fn ids_sort_as_their_seqs() {
        let seqs = [
            5 << COUNTER_BITS,
            (5 << COUNTER_BITS) + 1,
            6 << COUNTER_BITS,
        ];
        let ids: Vec<String> = seqs.iter().map(|&s| id_for(s, u64::MAX)).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }

    #[test]
    fn seqs_follow_the_clock_and_never_go_back() {
        let t = 1_764_000_000_000;
        assert_eq!(next_seq(0, t), t << COUNTER_BITS);
        assert_eq!(next_seq(t << COUNTER_BITS, t), (t << COUNTER_BITS) + 1);
        // The clock stepped back a second: keep counting from the last.
        assert_eq!(
            next_seq(t << COUNTER_BITS, t - 1000),
            (t << COUNTER_BITS) + 1
        );
        // After a legacy store's small seqs, the clock takes over.
        assert_eq!(next_seq(41, t), t << COUNTER_BITS);
        assert!(next_seq(41, t) >= LEGACY_SEQ_LIMIT);
        // A clock at the epoch still gives a seq after the last.
        assert_eq!(next_seq(41, 0), 42);
    }

    #[test]
    fn only_lower_case_hyphenated_v7_ids_name_a_seq() {
        let id = id_for(123 << COUNTER_BITS, 99);
        assert!(seq_of(&id).is_some());
        assert_eq!(seq_of(&id.to_uppercase()), None);
        assert_eq!(seq_of(&id.replace('-', "")), None);
        assert_eq!(seq_of(&format!("{{{id}}}")), None);
        assert_eq!(seq_of("f47ac10b-58cc-4372-a567-0e02b2c3d479"), None, "a v4");
        assert_eq!(seq_of("not-an-id"), None);
        assert_eq!(seq_of(""), None);
    }
}
