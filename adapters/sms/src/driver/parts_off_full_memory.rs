//! Parts of long messages leave a full memory for the store. A part read
//! from a slot waits there, on the SIM, for the rest of its message; a
//! message with more parts than the memory has free slots (or two long
//! ones that interleave) then filled it with parts that could not
//! complete: the network held the rest, reception stopped for every
//! sender until the reassembly timeout, and the message came out as two
//! partial ones, an hour apart. Once the memory is full, each waiting part
//! goes into the record of direct deliveries (`direct_parts`), which
//! outlives a restart as the SIM does, and only then is its slot freed:
//! the network delivers the rest, and the message completes whole. Until
//! the memory is full a part costs no store write.

use super::Driver;
use super::conn::{Conn, ConnError};
use super::direct_parts::with_entry;
use super::inbound::Inbox;
use super::slot::Slot;

impl Driver {
    /// If the receive memory is said full (last reading or indication),
    /// move every waiting part still in a slot into the record, then free
    /// its slots. Nothing moves if the record cannot be written: the parts
    /// stay on the SIM, as before.
    pub(super) async fn move_held_parts_if_full(
        &self,
        conn: &mut Conn,
        inbox: &mut Inbox,
    ) -> Result<(), ConnError> {
        let full = self
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .storage_full();
        if !full {
            return Ok(());
        }
        let moving = inbox.stored_parts();
        if moving.is_empty() {
            return Ok(());
        }
        let written = self
            .update_record(|before| {
                moving.iter().fold(before.to_string(), |value, (part, _)| {
                    with_entry(&value, &part.key, &part.pdu)
                })
            })
            .await;
        if let Err(e) = written {
            tracing::warn!(phone_id = %self.config.phone_id, error = %e,
                "message storage full, and the parts of long messages waiting on it cannot be kept in the store; left on it");
            return Ok(());
        }
        let mut slots: Vec<Slot> = Vec::new();
        for (part, in_slots) in &moving {
            inbox.moved_to_record(part);
            slots.extend(in_slots);
        }
        for slot in &slots {
            inbox.fresh_slots.remove(slot);
        }
        let freed = self.free_slots(conn, &slots).await?;
        tracing::info!(phone_id = %self.config.phone_id, parts = moving.len(), freed = freed.len(),
            "message storage full: parts of long messages waiting for the rest kept in the store, their slots freed");
        Ok(())
    }
}
