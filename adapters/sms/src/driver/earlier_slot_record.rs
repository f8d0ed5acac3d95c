//! Slot records an earlier build wrote under another name of the slot.
//!
//! A message is read under one memory name only (`Memory::listed_as`),
//! but the build before that read a message announced in "SM" by its
//! index there even with "MT" as own memory, and wrote its slot record as
//! "SM" i. One committed so and not yet deleted (a crash, a delete
//! answered `OK` and kept) is listed after the upgrade as "MT" j, whose
//! record is unknown: it was committed a second time. So a slot read
//! before without a record, whose message's base id the store holds
//! already, has its earlier names asked too ([`Slot::earlier_names`]).
//!
//! Why asked rather than moved once at start: a move needs the "MT"
//! index of "SM" i, which only the modem's numbering gives (Cinterion's
//! and Nokia's differ, and both depend on the memories' sizes), and the
//! store offers no listing of records to move. Asked here, a record
//! counts only when it names an occurrence of this message's base id
//! (same sender, SMSC second and text), and only for a message read
//! before, the case that is rare and already pays a look-up of the ids
//! taken. What it leaves open is the loss `occurrence` already names:
//! two messages of one base id the same second, the first committed and
//! freed under the earlier build, the second read and not committed
//! before the upgrade.

use phonerelay_channel::SinkError;

use super::Driver;
use super::occurrence::{is_occurrence_of, slot_record_name};
use super::slot::Slot;

impl Driver {
    /// The id an earlier build's record of `slot` under another of its
    /// names gives an occurrence of `base`, if one does.
    pub(super) async fn recorded_under_earlier_name(
        &self,
        slot: Slot,
        base: &str,
    ) -> Result<Option<String>, SinkError> {
        for name in slot.earlier_names(self.own_memory()) {
            if let Some(id) = self.sink.load_cursor(&slot_record_name(name)).await?
                && is_occurrence_of(&id, base)
            {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }
}
