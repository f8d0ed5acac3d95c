//! Where a stored PDU is: a message memory and an index in it.
//!
//! Each memory (27.005 3.1: `SM` the SIM, `ME` the modem, `SR` status
//! reports, ...) numbers its slots on its own, so `ME` 3 and `SM` 3 are two
//! messages. A class 2 message is stored on the SIM whatever memory the
//! modem prefers (23.038 4), so a modem set to `ME` holds messages in both.
//! An index alone once named the wrong one: a part read from `SM` 1 kept
//! `ME` 1 from being read, and freeing the part deleted `ME` 1 unread.

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
    /// status reports.
    pub fn swept(own: Memory) -> Vec<Memory> {
        let mut memories = vec![own];
        if own == Memory::MODEM {
            memories.push(Memory::SIM);
        }
        if own != Memory::REPORTS {
            memories.push(Memory::REPORTS);
        }
        memories
    }
}

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
    fn a_modem_preferring_its_own_memory_has_the_sim_swept_too() {
        assert_eq!(
            Memory::swept(Memory::MODEM),
            [Memory::MODEM, Memory::SIM, Memory::REPORTS]
        );
        assert_eq!(Memory::swept(Memory::SIM), [Memory::SIM, Memory::REPORTS]);
        let both = Memory::parse("MT").unwrap();
        assert_eq!(Memory::swept(both), [both, Memory::REPORTS]);
    }
}
