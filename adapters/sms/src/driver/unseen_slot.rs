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
//!
//! Such a slot is noted in the store ([`UNSWEPT_SLOTS_CURSOR`]) before its
//! message is handled, and every sweep reads the noted slots again the
//! same way, until one finds the slot empty or its message among those it
//! listed: a message whose commit failed, or a part left waiting, would
//! otherwise stay on the SIM, as no sweep lists it and no indication
//! names its slot again.

use std::collections::BTreeSet;

use phonerelay_sms_at::responses;
use tokio::time::Instant;

use super::conn::{Conn, ConnError};
use super::inbound::Inbox;
use super::slot::{Memory, Slot};
use super::{Driver, SlotRead, is_pdu_line};

/// The store cursor holding the slots read by their own name after a
/// sweep missed them, whose messages may still be there: `SM:3 SM:7`.
pub(super) const UNSWEPT_SLOTS_CURSOR: &str = "sms-unswept-slots";

/// What a sweep saw: the PDUs it listed, and whether that was all its
/// memories hold (every listing came, every entry read whole).
pub(super) struct Seen {
    pub pdus: BTreeSet<String>,
    pub all: bool,
}

/// What reading a slot by its own name found.
enum Found {
    /// The slot is empty, or its message is one a sweep listed: nothing
    /// for this record to keep.
    Settled,
    /// Its message was handled here, and is still there (a failed
    /// commit, a part waiting) unless `freed`.
    Handled { freed: bool },
}

impl Driver {
    /// Read `slot`, announced by an indication, by its own name if the
    /// sweep just run (which found `seen`) did not see its message.
    pub(super) async fn read_unseen(
        &self,
        conn: &mut Conn,
        slot: Slot,
        seen: &Seen,
        inbox: &mut Inbox,
        epoch: Instant,
    ) -> Result<(), ConnError> {
        let found = self
            .with_memory(conn, slot.mem, async |me: &Self, conn: &mut Conn| {
                let (pdu, unread) = match me.read_slot(conn, slot).await? {
                    SlotRead::Pdu { pdu, unread } => (pdu, unread),
                    // An empty slot: the sweep freed it under its other name.
                    SlotRead::Empty => return Ok(Found::Settled),
                    // Refused (a SIM busy), or its line damaged each time:
                    // noted, for the next sweep to read it again. Taken for
                    // empty, its note went, and on a modem whose sweeps do
                    // not list the slot it stayed on the SIM.
                    SlotRead::Unknown => {
                        me.note_unswept(slot, true).await;
                        return Ok(Found::Handled { freed: false });
                    }
                };
                if seen.pdus.contains(&pdu) {
                    return Ok(Found::Settled);
                }
                // The sweep did not see all of the memory that lists this
                // slot under another name: its message may be one it
                // missed there (a listing refused, an entry damaged), and
                // held here it would have two names, a part freed twice,
                // the second delete taking what the network stored in the
                // slot meanwhile. Noted, for a sweep that sees all.
                if !seen.all && slot.mem.listed_as(me.own_memory()) != [slot.mem] {
                    me.note_unswept(slot, true).await;
                    return Ok(Found::Handled { freed: false });
                }
                // Noted before it is handled: a failed commit leaves it
                // where the next sweep reads it again.
                me.note_unswept(slot, true).await;
                if !me.not_the_held_part(slot, &pdu, inbox) {
                    return Ok(Found::Handled { freed: false });
                }
                if unread {
                    inbox.fresh_slots.insert(slot);
                }
                let freed = me
                    .process_stored(conn, slot.mem, slot.index, &pdu, inbox, epoch)
                    .await?;
                Ok(Found::Handled {
                    freed: freed.contains(&slot),
                })
            })
            .await?;
        match found {
            Some(Found::Settled) | Some(Found::Handled { freed: true }) => {
                self.note_unswept(slot, false).await
            }
            // Its memory could not be selected: left noted, for the next
            // sweep to try again.
            Some(Found::Handled { freed: false }) | None => {}
        }
        Ok(())
    }

    /// Read again every slot noted as read by its own name (see the
    /// module's doc), after a sweep that found `seen`.
    pub(super) async fn read_unswept(
        &self,
        conn: &mut Conn,
        seen: &Seen,
        inbox: &mut Inbox,
        epoch: Instant,
    ) -> Result<(), ConnError> {
        for slot in self.unswept_slots().await {
            self.read_unseen(conn, slot, seen, inbox, epoch).await?;
        }
        Ok(())
    }

    /// With "MT" as the own memory, list "SM" as well after a sweep that
    /// saw all of "MT" (`seen`), and note each SIM slot whose message it
    /// did not see there, for the next sweep to read by its own name. On a
    /// modem whose "MT" leaves the SIM out, a class 2 message stored on
    /// the SIM while nothing announced it (the daemon down, a reset that
    /// lost `AT+CNMI`) was in no listing, and stayed there for good. On
    /// one whose "MT" holds the SIM, every SIM message is in `seen`, or
    /// came after the "MT" listing and is in the next one: noted, not
    /// read now, it is read by one name only. A sweep that did not see all
    /// of "MT" notes nothing, as what it missed would get a second name.
    pub(super) async fn note_sim_slots_unseen(
        &self,
        conn: &mut Conn,
        seen: &BTreeSet<String>,
        inbox: &mut Inbox,
    ) -> Result<(), ConnError> {
        if self.own_memory() != Memory::BOTH {
            return Ok(());
        }
        let listed = self
            .with_memory(conn, Memory::SIM, async |me: &Self, conn: &mut Conn| {
                let answer = conn.run(me.list_cmd("AT+CMGL=4")).await?;
                Ok(answer.is_ok().then_some(answer.lines))
            })
            .await?;
        let Some(Some(lines)) = listed else {
            return Ok(());
        };
        let mut unseen = Vec::new();
        let mut it = lines.iter().peekable();
        while let Some(line) = it.next() {
            let Ok(header) = responses::parse_cmgl_header(line) else {
                continue;
            };
            let slot = Slot::new(Memory::SIM, header.index);
            // As listed before this listing marked it read, whether its
            // line came whole or not (a line no longer hex is given apart
            // from its header).
            if header.status == responses::MessageStatus::ReceivedUnread {
                inbox.fresh_slots.insert(slot);
            }
            match it.next_if(|l| is_pdu_line(l)) {
                Some(pdu) if seen.contains(pdu) => {}
                // Damaged on the line: what it holds is not known, so it
                // is read by its own name, as one no listing of MT has.
                Some(_) | None => unseen.push(slot),
            }
        }
        for slot in unseen {
            tracing::info!(phone_id = %self.config.phone_id, %slot,
                "a message on the SIM that no listing of MT has; read by its own name at the next sweep");
            self.note_unswept(slot, true).await;
        }
        Ok(())
    }

    /// The slots noted; none if the store cannot say (the next sweep asks
    /// again).
    async fn unswept_slots(&self) -> BTreeSet<Slot> {
        match self.sink.load_cursor(UNSWEPT_SLOTS_CURSOR).await {
            Ok(value) => parse_slots(value.as_deref().unwrap_or_default()),
            Err(e) => {
                tracing::warn!(phone_id = %self.config.phone_id, error = %e,
                    "cannot read the slots read outside the sweep; the next sweep asks again");
                BTreeSet::new()
            }
        }
    }

    /// Note `slot` (`noted`) or drop it from the record.
    async fn note_unswept(&self, slot: Slot, noted: bool) {
        let mut slots = self.unswept_slots().await;
        let changed = if noted {
            slots.insert(slot)
        } else {
            slots.remove(&slot)
        };
        if !changed {
            return;
        }
        if let Err(e) = self
            .sink
            .save_cursor(UNSWEPT_SLOTS_CURSOR, &slots_to_cursor(&slots))
            .await
        {
            tracing::warn!(phone_id = %self.config.phone_id, %slot, error = %e,
                "cannot record a slot read outside the sweep; read again only when announced again");
        }
    }
}

/// Slots as the cursor holds them (`SM:3 SM:7`); a word that names none
/// is left out.
fn parse_slots(value: &str) -> BTreeSet<Slot> {
    value
        .split_whitespace()
        .filter_map(|word| {
            let (mem, index) = word.rsplit_once(':')?;
            Some(Slot::new(Memory::parse(mem)?, index.parse().ok()?))
        })
        .collect()
}

fn slots_to_cursor(slots: &BTreeSet<Slot>) -> String {
    let words: Vec<String> = slots.iter().map(Slot::to_string).collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_noted_slots_read_back_as_written_and_nonsense_is_left_out() {
        let slots: BTreeSet<Slot> = [Slot::new(Memory::SIM, 3), Slot::new(Memory::SIM, 12)]
            .into_iter()
            .collect();
        let value = slots_to_cursor(&slots);
        assert_eq!(value, "SM:3 SM:12");
        assert_eq!(parse_slots(&value), slots);
        assert_eq!(
            parse_slots("SM:x 7 :3 SM:4"),
            [Slot::new(Memory::SIM, 4)].into()
        );
    }
}
