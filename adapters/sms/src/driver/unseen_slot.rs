//! An announced slot the sweep did not see.
//!
//! An indication naming a memory listed under other names (`SM` with
//! "MT" as own memory, `Memory::listed_as`) is read by a sweep, so that a
//! message has one name only. But not every modem's "MT" holds the SIM:
//! on one whose "MT" is its own memory alone, a class 2 message stored
//! and announced in "SM" is in no listing of "MT", and stayed unread on
//! the SIM. So after that sweep the announced slot is read by its own
//! name, and handled there unless the sweep found the same PDU: then it
//! is the message the sweep saw under its other name (committed and
//! freed, or left for a reason of its own: a part waiting for the rest, a
//! failed commit), and reading it here would give it a second name, a
//! slot record and a delete apart from the sweep's.

use std::collections::BTreeSet;

use tokio::time::Instant;

use super::Driver;
use super::conn::{Conn, ConnError};
use super::inbound::Inbox;
use super::slot::Slot;

impl Driver {
    /// Read `slot`, announced by an indication, by its own name if the
    /// sweep just run (which found `seen`) did not see its message.
    pub(super) async fn read_unseen(
        &self,
        conn: &mut Conn,
        slot: Slot,
        seen: &BTreeSet<String>,
        inbox: &mut Inbox,
        epoch: Instant,
    ) -> Result<(), ConnError> {
        self.with_memory(conn, slot.mem, async |me: &Self, conn: &mut Conn| {
            // An empty slot: the sweep freed it under its other name.
            let Some((pdu, unread)) = me.read_here(conn, slot).await? else {
                return Ok(());
            };
            if seen.contains(&pdu) || !me.not_the_held_part(slot, &pdu, inbox) {
                return Ok(());
            }
            if unread {
                inbox.fresh_slots.insert(slot);
            }
            me.process_stored(conn, slot.mem, slot.index, &pdu, inbox, epoch)
                .await
                .map(drop)
        })
        .await
        .map(drop)
    }
}
