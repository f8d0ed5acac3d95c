//! The ids of single-part messages, which two messages can share.
//!
//! A single-part message's base id is made of its sender, SMSC time (to
//! the second) and text (`inbound::inbound_external_id`): an automated
//! sender that sends "1" twice in one second sends two messages with one
//! base id. Taken as one, the second was dropped as a duplicate and freed
//! from the SIM: lost. So each is committed as an occurrence of its base
//! id, `base#1`, `base#2`..., and what the store's dedupe on the id is
//! still for, the same stored message read again (committed, then a crash
//! before `AT+CMGD`, or a modem that answered it `OK` and kept the
//! message), is told apart by the slot: the id committed from a slot is
//! written with the message, in one transaction, in a cursor of that slot
//! ([`slot_record_name`]). A slot whose record names an occurrence of the
//! message's base id holds that message still: it is committed again
//! under the same id, which the store drops. Any other message with that
//! base id, in another slot, is a new occurrence.
//!
//! So is one in the same slot after the first was freed (a modem stores a
//! new message in the lowest free slot, and the second of two sent in one
//! second often comes after the first was committed and deleted). Its
//! slot's record still names the first: a record is not cleared when its
//! slot is deleted, since a modem that answers `AT+CMGD` with `OK` and
//! keeps the message would have it delivered again. What tells it is the
//! message's status: the modem lists (`+CMGL`) or reads (`+CMGR`) a
//! message never read before as `REC UNREAD`, and marks it read then. The
//! driver read every message it committed, so an unread one was never
//! committed from its slot, whatever the record says (`Inbox::fresh_slots`).
//! A modem that never marks a message read would have one read again after
//! a crash taken as new, delivered twice rather than lost. A message whose
//! commit fails is read again as read: the slot stays fresh in memory for
//! the run, but after a restart its record is asked again, and that names
//! a freed message of the same base id only if the two came the same
//! second into the same slot while the store was failing (the second is
//! then taken as the first read again: a loss this leaves open).
//!
//! Ids committed before occurrences were numbered are the bare base id,
//! and no slot records one: a slot without a record whose message's bare
//! base id is in the store holds a message the earlier version committed
//! without freeing it (a crash, a failed delete, then the upgrade), and it
//! is a repeat. This version never commits a bare base id, so the rule
//! takes nothing but such messages.
//!
//! A message the modem hands over directly (`+CMT`) has no slot. With the
//! phase 2 message service (`AT+CSMS=0`) the modem acknowledges it to the
//! network itself, without `AT+CNMA`, before the driver reads it: the
//! network has it delivered, and sends it again only if that
//! acknowledgement was lost on the radio link, a copy no handset can tell
//! from a second message of the same second and text either. So each
//! `+CMT` is a new occurrence. Once read it is kept in the record of
//! direct deliveries only if its commit fails, and is taken off that
//! record in the transaction that commits it, so a commit is never offered
//! again from there; only an entry an earlier version left there (its
//! commit through, the entry not yet taken off) is a repeat, when its bare
//! base id is in the store.
//!
//! A long message keeps its base id: two of the same text from one sender
//! in one second carry two concat references (a sender numbers its long
//! messages), so their ids differ already, and parts with the same
//! reference, time and text are one part the SMSC delivered twice
//! (`inbound::same_part`), freed as a copy.

use phonerelay_channel::{CursorWrite, SinkError};

use super::Driver;
use super::direct_parts::{self, DIRECT_PARTS_CURSOR};
use super::inbound::{Inbox, Ready};
use super::slot::Slot;

/// What the name of a slot's record starts with.
pub const SLOT_RECORD_PREFIX: &str = "sms-slot-id:";

/// The cursor naming the id committed from `slot` (`sms-slot-id:SM:3`).
pub fn slot_record_name(slot: Slot) -> String {
    format!("{SLOT_RECORD_PREFIX}{slot}")
}

/// Which occurrence of `base` `id` is: the bare base id counts as the
/// first (an earlier version's); `None` for an id of another base.
fn occurrence(id: &str, base: &str) -> Option<u32> {
    let rest = id.strip_prefix(base)?;
    if rest.is_empty() {
        return Some(1);
    }
    rest.strip_prefix('#')?.parse().ok()
}

/// Whether `id` is `base` or one of its occurrences.
pub fn is_occurrence_of(id: &str, base: &str) -> bool {
    occurrence(id, base).is_some()
}

/// The occurrence of `base` after every one `taken` (what the store holds
/// of its family): after the highest rather than in the first gap, so an
/// id that retention pruned is never given to another message.
pub fn next_occurrence(base: &str, taken: &[String]) -> String {
    let highest = taken
        .iter()
        .filter_map(|id| occurrence(id, base))
        .max()
        .unwrap_or(0);
    format!("{base}#{}", highest + 1)
}

impl Driver {
    /// The id to commit `ready`, a single-part message read from a slot,
    /// under, and the slot records to write with it. An error when the
    /// slot's record or the ids taken cannot be read: the message stays on
    /// the SIM for the next sweep.
    pub(super) async fn stored_single_id(
        &self,
        ready: &Ready,
        inbox: &Inbox,
    ) -> Result<(String, Vec<CursorWrite>), SinkError> {
        let base = &ready.external_id;
        let slot = ready.slots[0];
        let fresh = inbox.fresh_slots.contains(&slot);
        let record = if fresh {
            None
        } else {
            self.sink.load_cursor(&slot_record_name(slot)).await?
        };
        let id = match record {
            Some(id) if is_occurrence_of(&id, base) => id,
            record => {
                let taken = self.sink.inbound_ids(base).await?;
                let earlier = if !fresh && record.is_none() && !taken.is_empty() {
                    self.recorded_under_earlier_name(slot, base).await?
                } else {
                    None
                };
                match earlier {
                    Some(id) => id,
                    // An earlier version's, unless never read before.
                    None if !fresh && record.is_none() && taken.iter().any(|id| id == base) => {
                        base.clone()
                    }
                    None => next_occurrence(base, &taken),
                }
            }
        };
        let records = ready
            .slots
            .iter()
            .map(|slot| CursorWrite::new(slot_record_name(*slot), id.clone()))
            .collect();
        Ok((id, records))
    }

    /// The id to commit `ready`, a single-part message handed over
    /// directly, under, and the cursors to write with it: the record of
    /// direct deliveries without it, if it is kept there. An error when
    /// the ids taken or the record cannot be read.
    pub(super) async fn direct_single_id(
        &self,
        ready: &Ready,
    ) -> Result<(String, Vec<CursorWrite>), SinkError> {
        let base = &ready.external_id;
        let taken = self.sink.inbound_ids(base).await?;
        let kept: Vec<String> = ready
            .direct
            .iter()
            .filter(|p| p.kept)
            .map(|p| p.key.clone())
            .collect();
        if kept.is_empty() {
            return Ok((next_occurrence(base, &taken), Vec::new()));
        }
        let id = if taken.iter().any(|id| id == base) {
            base.clone()
        } else {
            next_occurrence(base, &taken)
        };
        let before = self
            .sink
            .load_cursor(DIRECT_PARTS_CURSOR)
            .await?
            .unwrap_or_default();
        let after = direct_parts::without_keys(&before, &kept);
        Ok((id, vec![CursorWrite::new(DIRECT_PARTS_CURSOR, after)]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::slot::Memory;

    #[test]
    fn occurrences_follow_the_highest_taken() {
        let base = "sms:ab";
        assert_eq!(next_occurrence(base, &[]), "sms:ab#1");
        let taken = ["sms:ab#1".to_string(), "sms:ab#3".to_string()];
        assert_eq!(next_occurrence(base, &taken), "sms:ab#4");
        // An earlier version's bare id is the first.
        assert_eq!(next_occurrence(base, &[base.to_string()]), "sms:ab#2");
        // Another base's ids are not counted.
        let other = ["sms:abc#7".to_string(), "sms:ab#x".to_string()];
        assert_eq!(next_occurrence(base, &other), "sms:ab#1");
    }

    #[test]
    fn an_occurrence_is_of_its_own_base_only() {
        assert!(is_occurrence_of("sms:ab#2", "sms:ab"));
        assert!(is_occurrence_of("sms:ab", "sms:ab"));
        assert!(!is_occurrence_of("sms:abc#2", "sms:ab"));
        assert!(!is_occurrence_of("sms:a", "sms:ab"));
    }

    #[test]
    fn a_slot_s_record_is_named_by_memory_and_index() {
        assert_eq!(
            slot_record_name(Slot::new(Memory::SIM, 3)),
            "sms-slot-id:SM:3"
        );
    }
}
