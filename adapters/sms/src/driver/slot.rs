//! Where a stored PDU is: a message memory and an index in it.
//!
//! Each memory (27.005 3.1: `SM` the SIM, `ME` the modem, `SR` status
//! reports, ...) numbers its slots on its own, so `ME` 3 and `SM` 3 are two
//! messages. A class 2 message is stored on the SIM whatever memory the
//! modem prefers (23.038 4), so a modem set to `ME` holds messages in both.
//! An index alone once named the wrong one: a part read from `SM` 1 kept
//! `ME` 1 from being read, and freeing the part deleted `ME` 1 unread.

use std::collections::BTreeSet;
use std::fmt;

/// A message memory, by its name (upper case, no quotes): two letters in
/// 27.005, up to four on some modems (SIMCom's `SM_P`, `ME_P`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Memory {
    name: [u8; MAX_NAME],
    len: u8,
}

/// The longest memory name taken.
const MAX_NAME: usize = 4;

impl Memory {
    pub const SIM: Memory = Memory::known(*b"SM");
    pub const MODEM: Memory = Memory::known(*b"ME");
    pub const REPORTS: Memory = Memory::known(*b"SR");
    /// "MT": the modem's memory and the SIM's as one, numbered its own way.
    pub const BOTH: Memory = Memory::known(*b"MT");

    const fn known(two: [u8; 2]) -> Memory {
        Memory {
            name: [two[0], two[1], 0, 0],
            len: 2,
        }
    }

    /// A memory as a modem writes it (`"SM"`, `sm`, `"SM_P"`); `None` for
    /// anything but two to four letters and underscores, starting with a
    /// letter.
    pub fn parse(name: &str) -> Option<Memory> {
        let name = name.trim().trim_matches('"').as_bytes();
        let fits = (2..=MAX_NAME).contains(&name.len())
            && name[0].is_ascii_alphabetic()
            && name.iter().all(|b| b.is_ascii_alphabetic() || *b == b'_');
        if !fits {
            return None;
        }
        let mut memory = Memory {
            name: [0; MAX_NAME],
            len: name.len() as u8,
        };
        for (to, from) in memory.name.iter_mut().zip(name) {
            *to = from.to_ascii_uppercase();
        }
        Some(memory)
    }

    pub fn as_str(&self) -> &str {
        // ASCII by construction.
        std::str::from_utf8(&self.name[..self.len as usize]).unwrap_or("??")
    }

    /// The memories a sweep lists when `own` is where received messages
    /// go: `own`, the SIM as well when `own` is the modem's (class 2
    /// messages go there; their indication may have been missed), and the
    /// status reports. Then every memory in `indicated` (memories a
    /// `+CMTI`/`+CDSI` named, see [`INDICATED_MEMORIES_CURSOR`]) not
    /// among them, so that what the modem stored there is read again
    /// after a failed commit or a restart, not only once from its
    /// indication; each by one name only ([`Memory::listed_as`]).
    pub fn swept(own: Memory, indicated: &BTreeSet<Memory>) -> Vec<Memory> {
        let mut memories = vec![own];
        if own == Memory::MODEM {
            memories.push(Memory::SIM);
        }
        if own != Memory::REPORTS {
            memories.push(Memory::REPORTS);
        }
        for mem in indicated.iter().flat_map(|mem| mem.listed_as(own)) {
            if !memories.contains(&mem) {
                memories.push(mem);
            }
        }
        memories
    }

    /// The names a sweep lists this memory's messages by, with `own` the
    /// memory received messages go to. "MT" is "ME" and "SM" under a
    /// numbering of its own (Cinterion's puts the modem's slots first and
    /// the SIM's after them, some Nokia phones the SIM's first), so one
    /// message has two names, and a sweep listing both read it twice: its
    /// slot record under one name, a crash before its delete had it
    /// committed again under the other, and a part held under both was
    /// freed twice, the second delete taking whatever the network had
    /// stored in the slot meanwhile. So with `own` "MT", "SM" and "ME" are
    /// listed as "MT", and otherwise "MT" as "SM" and "ME".
    pub fn listed_as(self, own: Memory) -> Vec<Memory> {
        match (own == Memory::BOTH, self) {
            (true, Memory::SIM | Memory::MODEM) => vec![Memory::BOTH],
            (false, Memory::BOTH) => vec![Memory::SIM, Memory::MODEM],
            _ => vec![self],
        }
    }

    /// The memories a cursor value names (names separated by spaces);
    /// what is no memory name is passed over.
    pub fn parse_set(value: &str) -> BTreeSet<Memory> {
        value.split_whitespace().filter_map(Memory::parse).collect()
    }

    /// A set of memories as a cursor value, for [`Memory::parse_set`].
    pub fn set_to_cursor(memories: &BTreeSet<Memory>) -> String {
        let names: Vec<&str> = memories.iter().map(Memory::as_str).collect();
        names.join(" ")
    }
}

/// The store cursor holding the memories a new-message or report
/// indication (`+CMTI`, `+CDSI`) named, outside those a sweep lists
/// anyway: a modem whose own memory is the SIM may store a message in
/// "ME" when the SIM is full, or a class 1 message there, and say so
/// only in its indication. Remembered in the store, so a restart sweeps
/// them too (a part 1 read once, whose part 2 comes after a restart, or
/// a message whose commit failed, would otherwise never be read again).
///
/// Why remembered rather than asked (`AT+CPMS=?`, every memory the modem
/// offers for reading): modems offer memories a sweep must not list.
/// "MT" is "SM" and "ME" together under one numbering, so its slots are
/// the same messages under other names (a part held twice, a delete by
/// the wrong index): one it names is swept by the names it stands for,
/// unless the own memory is "MT" ([`Memory::listed_as`]); "BM" holds cell
/// broadcast pages, no SMS-DELIVER, which would be named undecodable for
/// ever; and each extra memory costs a memory switch and a listing at
/// every sweep. A memory the modem itself named as holding a message is
/// one it really stores messages in.
pub const INDICATED_MEMORIES_CURSOR: &str = "sms-indicated-memories";

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One storage slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    pub mem: Memory,
    pub index: u32,
}

impl Slot {
    pub fn new(mem: Memory, index: u32) -> Slot {
        Slot { mem, index }
    }

    /// The names an earlier build may have given this slot's message in
    /// its slot record, when this build lists it by `self` with `own` the
    /// memory received messages go to: with `own` "MT", the earlier build
    /// read an indication naming "SM" or "ME" by its index there, so a
    /// message this build lists as "MT" i was perhaps recorded as "SM" or
    /// "ME" under an index of its own. Which one the numbering does not
    /// say (Cinterion's puts the modem's slots first, some Nokia phones
    /// the SIM's), but a memory's slot is never numbered higher in it
    /// than in "MT", which holds it and the other memory's: every index
    /// up to i. Empty otherwise: with another own memory an "MT" index
    /// the earlier build recorded has no bound to search up to, and such
    /// a modem announces its own memory, not "MT".
    pub fn earlier_names(self, own: Memory) -> Vec<Slot> {
        if own != Memory::BOTH || self.mem != Memory::BOTH {
            return Vec::new();
        }
        [Memory::SIM, Memory::MODEM]
            .into_iter()
            .flat_map(|mem| (0..=self.index).map(move |index| Slot::new(mem, index)))
            .collect()
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.mem, self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_is_read_as_modems_write_it() {
        assert_eq!(Memory::parse("\"SM\""), Some(Memory::SIM));
        assert_eq!(Memory::parse(" me "), Some(Memory::MODEM));
        assert_eq!(Memory::parse("\"SR\"").unwrap().as_str(), "SR");
        assert_eq!(Memory::parse("MT").unwrap().to_string(), "MT");
        assert_eq!(Memory::parse("\"sm_p\"").unwrap().as_str(), "SM_P");
        assert_ne!(Memory::parse("SM_P"), Some(Memory::SIM));
        for bad in ["", "\"\"", "S", "SMXYZ", "S1", "_SM", "é"] {
            assert_eq!(Memory::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_same_index_in_two_memories_is_two_slots() {
        let sim = Slot::new(Memory::SIM, 1);
        let modem = Slot::new(Memory::MODEM, 1);
        assert_ne!(sim, modem);
        assert_eq!(sim.to_string(), "SM:1");
    }

    #[test]
    fn a_slot_of_both_memories_may_have_been_recorded_under_either() {
        let names = Slot::new(Memory::BOTH, 2).earlier_names(Memory::BOTH);
        let shown: Vec<String> = names.iter().map(Slot::to_string).collect();
        assert_eq!(shown, ["SM:0", "SM:1", "SM:2", "ME:0", "ME:1", "ME:2"]);
        assert!(
            Slot::new(Memory::SIM, 2)
                .earlier_names(Memory::BOTH)
                .is_empty()
        );
        assert!(
            Slot::new(Memory::SIM, 2)
                .earlier_names(Memory::SIM)
                .is_empty()
        );
        assert!(
            Slot::new(Memory::BOTH, 2)
                .earlier_names(Memory::SIM)
                .is_empty()
        );
    }

    #[test]
    fn a_modem_preferring_its_own_memory_has_the_sim_swept_too() {
        let none = BTreeSet::new();
        assert_eq!(
            Memory::swept(Memory::MODEM, &none),
            [Memory::MODEM, Memory::SIM, Memory::REPORTS]
        );
        assert_eq!(
            Memory::swept(Memory::SIM, &none),
            [Memory::SIM, Memory::REPORTS]
        );
        let both = Memory::parse("MT").unwrap();
        assert_eq!(both, Memory::BOTH);
        assert_eq!(Memory::swept(both, &none), [both, Memory::REPORTS]);
    }

    #[test]
    fn a_message_is_swept_by_one_memory_name_only() {
        let sim_and_modem = Memory::parse_set("SM ME");
        assert_eq!(
            Memory::swept(Memory::BOTH, &sim_and_modem),
            [Memory::BOTH, Memory::REPORTS]
        );
        let both = Memory::parse_set("MT");
        assert_eq!(
            Memory::swept(Memory::SIM, &both),
            [Memory::SIM, Memory::REPORTS, Memory::MODEM]
        );
        assert_eq!(
            Memory::swept(Memory::MODEM, &both),
            [Memory::MODEM, Memory::SIM, Memory::REPORTS]
        );
        assert_eq!(Memory::REPORTS.listed_as(Memory::BOTH), [Memory::REPORTS]);
    }

    #[test]
    fn memories_an_indication_named_are_swept_too_once_each() {
        let indicated = Memory::parse_set("ME SR bad! sm_p");
        assert_eq!(Memory::set_to_cursor(&indicated), "ME SM_P SR");
        assert_eq!(
            Memory::swept(Memory::SIM, &indicated),
            [
                Memory::SIM,
                Memory::REPORTS,
                Memory::MODEM,
                Memory::parse("SM_P").unwrap()
            ]
        );
        assert_eq!(Memory::parse_set(""), BTreeSet::new());
    }
}
