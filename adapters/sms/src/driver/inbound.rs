//! Received messages: multipart assembly that remembers where each part is
//! stored, and the deterministic ids that make re-reads harmless.
//!
//! Loss-free scheme: nothing is committed until a message is complete, and
//! no part is deleted from the SIM until its whole message is committed,
//! or, once the memory is full, until the part is kept in the store
//! (`parts_off_full_memory`).
//! After a restart the start-up sweep re-reads every part still stored and
//! assembly starts again; the id derived from the content makes a message
//! committed twice (committed, then crash before AT+CMGD) a duplicate that
//! the store drops. A single-part message is committed as an occurrence of
//! that id, told from another message with the same content by its slot
//! (`occurrence`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use phonerelay_sms_pdu::{Deliver, MessagePart, ReassembledMessage, Reassembler};
use sha2::{Digest, Sha256};

use super::slot::Slot;
use crate::codec;

/// A message ready to commit and the storage slots to free afterwards.
#[derive(Debug, Clone)]
pub struct Ready {
    pub from: String,
    pub text: String,
    /// Made of its content; a single-part message is committed as an
    /// occurrence of it (`occurrence`).
    pub external_id: String,
    pub received_at_ms: i64,
    /// The storage slots its parts (and their copies) are in; empty when
    /// every part came directly (`+CMT`), stored nowhere.
    pub slots: Vec<Slot>,
    pub missing_parts: Vec<u8>,
    /// Some part's user data was shorter than its TP-UDL said; `text` ends
    /// with [`TRUNCATED_MARKER`].
    pub truncated: bool,
    /// For a message of several parts: what to keep between its commit and
    /// the last of its slots freed ([`CommittedParts`]).
    pub committed_parts: Option<CommittedParts>,
    /// Its parts the modem handed over directly (`direct_parts`), to keep
    /// if its commit fails, and to take off the record once it is done.
    pub direct: Vec<DirectPart>,
    /// Some part of it is in memory only: neither in a slot nor handed over
    /// directly (its slot changed hands while it waited). A failed commit
    /// loses that part.
    pub memory_only: bool,
}

/// A part the modem handed over directly, as `direct_parts` keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectPart {
    /// What names it in the record (`direct_parts::direct_key`).
    pub key: String,
    /// The PDU as the modem gave it, in hex.
    pub pdu: String,
    /// In the record (or waiting in memory to be written to it); a single
    /// part is kept only if its commit fails.
    pub kept: bool,
}

/// The parts of a committed long message, kept (in the store's cursors)
/// while its slots are freed one `AT+CMGD` at a time. A crash part way
/// through leaves some parts on the SIM; read again alone they would wait
/// for the parts already gone and end up committed as a second, partial
/// message. Found here, they are known as committed and only freed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedParts {
    /// The cursor's name: one per sender, reference and part count.
    pub name: String,
    /// Each part's [`part_fingerprint`].
    pub fingerprints: Vec<String>,
}

/// For a part of a long message: the cursor naming the committed message
/// it may belong to, and what tells this part from any other (sender, SMSC
/// time, reference, count, sequence and text).
pub fn part_fingerprint(from: &str, deliver: &Deliver) -> Option<(String, String)> {
    let concat = deliver.concat().filter(|c| c.total > 1)?;
    let name = format!(
        "sms-committed-parts:{from}:{}:{}",
        concat.reference, concat.total
    );
    let mut hash = Sha256::new();
    hash.update(from.as_bytes());
    hash.update([0]);
    hash.update(codec::scts_key(deliver).to_be_bytes());
    hash.update(concat.reference.to_be_bytes());
    hash.update([concat.total, concat.sequence]);
    hash.update(deliver.text().unwrap_or_default().as_bytes());
    let digest = hash.finalize();
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    Some((name, hex))
}

/// A record's `value` with `fingerprints` added (`keep`) or taken off,
/// those of other messages left as they were; empty when none is left.
pub fn with_fingerprints(value: &str, fingerprints: &[String], keep: bool) -> String {
    let mut all: Vec<&str> = value.split(',').filter(|f| !f.is_empty()).collect();
    all.retain(|f| !fingerprints.iter().any(|own| own == f));
    if keep {
        all.extend(fingerprints.iter().map(String::as_str));
    }
    all.join(",")
}

/// The cursor that keeps, across restarts, the fingerprints of the parts
/// of long messages whose slots were all freed lately, each with when
/// (`fingerprint@unix_ms`, comma-separated): the network delivers a part
/// again within hours when it lost the handset's acknowledgement, and
/// a daemon restarted meanwhile must still know it as committed
/// ([`Inbox::committed_lately`]), or it becomes a second, partial message.
/// Entries older than [`KNOWN_COMMITTED_MS`] go at each write, so it holds
/// a day of long messages' parts at most.
pub const RECENT_PARTS_CURSOR: &str = "sms-committed-recent";

/// The recent-parts `value` with `fingerprints` added as committed at
/// `now_unix_ms`, and entries past [`KNOWN_COMMITTED_MS`] (or unreadable)
/// dropped.
pub fn recent_with(value: &str, fingerprints: &[String], now_unix_ms: i64) -> String {
    let mut kept: Vec<String> = recent_parts(value, now_unix_ms)
        .into_iter()
        .filter(|(f, _)| !fingerprints.contains(f))
        .map(|(f, age)| format!("{f}@{}", now_unix_ms.saturating_sub(age as i64)))
        .collect();
    kept.extend(fingerprints.iter().map(|f| format!("{f}@{now_unix_ms}")));
    kept.join(",")
}

/// The fingerprints a recent-parts `value` holds that are within
/// [`KNOWN_COMMITTED_MS`] of `now_unix_ms`, each with its age (ms).
pub fn recent_parts(value: &str, now_unix_ms: i64) -> Vec<(String, u64)> {
    value
        .split(',')
        .filter_map(|entry| {
            let (fingerprint, at) = entry.rsplit_once('@')?;
            let age = now_unix_ms.checked_sub(at.parse::<i64>().ok()?)?;
            let age = u64::try_from(age).unwrap_or(0);
            (!fingerprint.is_empty() && age <= KNOWN_COMMITTED_MS)
                .then(|| (fingerprint.to_string(), age))
        })
        .collect()
}

/// Whether a record's `value` (fingerprints, comma-separated) names
/// `fingerprint`.
pub fn names_fingerprint(value: &str, fingerprint: &str) -> bool {
    value.split(',').any(|f| !f.is_empty() && f == fingerprint)
}

/// Appended to the text of a message of which a part arrived cut short
/// (the SMSC or modem stored less user data than the PDU declares): what
/// arrived is committed, and the reader can see that something is missing.
pub const TRUNCATED_MARKER: &str = " [truncated]";

/// (originator, reference, total, whether the reference is 16-bit): an
/// 8-bit reference 7 and a 16-bit 0x0007 are two messages' (23.040
/// 9.2.3.24.1 and .8 are different elements).
type Key = (String, u16, u8, bool);

/// How far apart in SMSC time the parts of one message may be. A phone
/// submits them back to back, so they are seconds apart, or minutes when
/// one had to be sent again; a part further from every message waiting
/// for it starts a message of its own. Without this, a message whose
/// part never came, held for the reassembly timeout, took the part of a
/// later message from the same sender that reused its reference (an
/// 8-bit reference comes round, and some gateways reuse one), and both
/// texts came out mixed.
pub const MAX_PART_SPREAD_SECONDS: i64 = 15 * 60;

/// Whether two parts with the same key and sequence are one part the SMSC
/// delivered twice: the same SMSC time and the same user data, as the
/// fingerprint of a committed part ([`part_fingerprint`]) has it. Header
/// bits (TP-MMS, TP-SRI, the SMSC address) may differ between the
/// deliveries; a copy that differed only there had started a message of
/// its own, committed as a second, partial one when its wait ran out.
fn same_part(held: &Deliver, other: &Deliver) -> bool {
    held.service_centre_timestamp_octets == other.service_centre_timestamp_octets
        && held.data_coding == other.data_coding
        && held.user_data == other.user_data
}

impl HeldPart {
    fn is_in(&self, slot: Slot) -> bool {
        self.slot == Some(slot) || self.copies.contains(&slot)
    }
}

/// One part of a message being assembled, and where it is stored.
struct HeldPart {
    /// Its storage slot; `None` for a part the modem handed over directly
    /// (`+CMT`). Not a slot number such as 0: some modems number their
    /// storage from 0.
    slot: Option<Slot>,
    deliver: Deliver,
    /// Slots of identical copies of this part (a part the SMSC delivered
    /// twice), freed with the message.
    copies: Vec<Slot>,
    /// This part and its copies as the modem handed them over directly.
    direct: Vec<DirectPart>,
    /// The PDU as read from its slot, for a stored part: what goes into the
    /// record of direct deliveries if the part must leave a full memory
    /// ([`Inbox::stored_parts`]).
    stored_pdu: Option<String>,
}

/// One message being assembled.
struct Pending {
    first_seen_ms: u64,
    parts: BTreeMap<u8, HeldPart>,
}

impl Pending {
    fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.parts
            .values()
            .flat_map(|p| p.slot.into_iter().chain(p.copies.iter().copied()))
    }

    /// How far, in SMSC time (seconds), `deliver` is from the parts held:
    /// parts of one message are submitted back to back, so the nearest is
    /// likely the message another part with the same key belongs to. Zero
    /// when a time is not a valid one (`codec::scts_key` is negative then):
    /// nothing tells such parts apart.
    fn distance(&self, deliver: &Deliver) -> i64 {
        let scts = codec::scts_key(deliver);
        self.parts
            .values()
            .map(|p| {
                let held = codec::scts_key(&p.deliver);
                if held < 0 || scts < 0 {
                    0
                } else {
                    held.saturating_sub(scts).saturating_abs()
                }
            })
            .min()
            .unwrap_or(i64::MAX)
    }
}

pub struct Inbox {
    timeout_ms: u64,
    /// By key, oldest first: two messages from one sender can share
    /// reference and part count (an 8-bit reference wraps), so one key can
    /// have several messages in assembly.
    pending: HashMap<Key, Vec<Pending>>,
    /// How senders' numbers are written (`from` of every message).
    numbering: codec::Numbering,
    /// Fingerprints ([`part_fingerprint`]) of the parts of long messages
    /// committed lately, with when. A copy of a part read after its
    /// message was committed (the SMSC delivered it twice, and the copy
    /// sat in a later slot) would otherwise start an assembly of its own
    /// and end up committed as a second, partial message.
    committed: HashMap<String, u64>,
    /// Parts handed over directly that could not be written to their
    /// record (the store failing), by key: kept here until they can be,
    /// and taken up by every sweep meanwhile (`direct_parts`).
    pub unsaved_direct: BTreeMap<String, String>,
    /// The parts committed lately by an earlier run could not be read at
    /// start (the store failing): until they are, no part can be told
    /// known from that list, and each asks for it again.
    pub recent_unread: bool,
    /// A part of a long message handed over directly waits in the record
    /// of direct deliveries unjudged (whether its message was committed
    /// could not be read): judged again at each expiry check, and until it
    /// is, no message in assembly times out, as it may be the part one of
    /// them waits for (`direct_parts`).
    pub direct_unjudged: bool,
    /// Slots read holding a message the modem listed as unread: never read
    /// before, so never committed from there, and the slot's record
    /// (`occurrence::slot_record_name`) names an earlier message, freed.
    /// Not asked until a commit from the slot writes it anew.
    pub fresh_slots: BTreeSet<Slot>,
}

/// How long the parts of a committed long message are known as such, at
/// least (the reassembly timeout, if longer): an SMSC that lost the
/// handset's acknowledgement delivers a part again within hours.
pub const KNOWN_COMMITTED_MS: u64 = 24 * 3600 * 1000;

/// `sms:` + 128 bits of SHA-256 over what identifies one message: sender,
/// SMSC timestamp, concatenation reference and count, and the text.
pub fn inbound_external_id(
    from: &str,
    scts_unix: i64,
    concat: Option<(u16, u8)>,
    text: &str,
) -> String {
    let mut hash = Sha256::new();
    hash.update(from.as_bytes());
    hash.update([0]);
    hash.update(scts_unix.to_be_bytes());
    if let Some((reference, total)) = concat {
        hash.update(reference.to_be_bytes());
        hash.update([total]);
    }
    hash.update([0]);
    hash.update(text.as_bytes());
    let digest = hash.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("sms:{hex}")
}

impl Inbox {
    pub fn new(timeout_ms: u64) -> Self {
        Self {
            timeout_ms,
            pending: HashMap::new(),
            numbering: codec::Numbering::default(),
            committed: HashMap::new(),
            unsaved_direct: BTreeMap::new(),
            recent_unread: false,
            direct_unjudged: false,
            fresh_slots: BTreeSet::new(),
        }
    }

    /// Senders written as `numbering` says.
    pub fn with_numbering(mut self, numbering: codec::Numbering) -> Self {
        self.numbering = numbering;
        self
    }

    /// Note that `parts`' message is committed (call only once it is).
    pub fn remember_committed(&mut self, parts: &CommittedParts, now_ms: u64) {
        for fingerprint in &parts.fingerprints {
            self.committed.insert(fingerprint.clone(), now_ms);
        }
    }

    /// Take up parts committed before this inbox began (a restart), each
    /// `age` ms before `now_ms` ([`recent_parts`]).
    pub fn remember_recent(&mut self, recent: Vec<(String, u64)>, now_ms: u64) {
        for (fingerprint, age) in recent {
            self.committed
                .entry(fingerprint)
                .or_insert(now_ms.saturating_sub(age));
        }
    }

    /// Whether `deliver` is a part of a long message committed lately.
    pub fn committed_lately(&self, from: &str, deliver: &Deliver) -> bool {
        part_fingerprint(from, deliver).is_some_and(|(_, f)| self.committed.contains_key(&f))
    }

    /// Parts waiting for the rest of their message.
    pub fn pending_parts(&self) -> usize {
        self.pending.values().flatten().map(|p| p.parts.len()).sum()
    }

    /// Is the part in storage slot `slot` already held?
    pub fn holds(&self, slot: Slot) -> bool {
        self.pending
            .values()
            .flatten()
            .any(|p| p.slots().any(|s| s == slot))
    }

    /// Whether `deliver` is the part held for slot `slot` (or a copy of
    /// it): a slot can change hands while its part waits, when something
    /// else deleted it (a phone the SIM was put in, a second program on
    /// the modem's other port) and a new message took the free slot.
    pub fn holds_part(&self, slot: Slot, deliver: &Deliver) -> bool {
        self.held_parts()
            .any(|part| part.is_in(slot) && same_part(&part.deliver, deliver))
    }

    /// Forget that slot `slot` holds a waiting part: it holds another
    /// message now. The part waits on in memory as one handed over
    /// directly does, and its message frees its other slots, never this
    /// one, which would delete the new message unread.
    pub fn release_slot(&mut self, slot: Slot) {
        for part in self
            .pending
            .values_mut()
            .flatten()
            .flat_map(|p| p.parts.values_mut())
        {
            if part.slot == Some(slot) {
                part.slot = None;
            }
            part.copies.retain(|s| *s != slot);
        }
    }

    /// Every storage slot a waiting part is held in.
    pub fn held_slots(&self) -> Vec<Slot> {
        self.pending
            .values()
            .flatten()
            .flat_map(|p| p.slots())
            .collect()
    }

    fn held_parts(&self) -> impl Iterator<Item = &HeldPart> {
        self.pending
            .values()
            .flatten()
            .flat_map(|p| p.parts.values())
    }

    /// A part read from storage slot `slot` as `pdu`. A single-part
    /// message is ready at once.
    pub fn add_stored(
        &mut self,
        slot: Slot,
        pdu: &str,
        deliver: Deliver,
        now_ms: u64,
    ) -> Option<Ready> {
        self.add_part(Some(slot), None, Some(pdu), deliver, now_ms)
    }

    /// A part read from storage slot `slot`, or handed over directly
    /// (`None`), its PDU not kept.
    #[cfg(test)]
    pub fn add(&mut self, slot: Option<Slot>, deliver: Deliver, now_ms: u64) -> Option<Ready> {
        self.add_part(slot, None, None, deliver, now_ms)
    }

    /// A part the modem handed over directly (`direct_parts`).
    pub fn add_direct(&mut self, part: DirectPart, deliver: Deliver, now_ms: u64) -> Option<Ready> {
        self.add_part(None, Some(part), None, deliver, now_ms)
    }

    /// Every waiting part still in a storage slot whose PDU is known, as
    /// the record of direct deliveries would keep it (not kept yet), with
    /// the slots it and its copies are in.
    pub fn stored_parts(&self) -> Vec<(DirectPart, Vec<Slot>)> {
        self.held_parts()
            .filter_map(|part| {
                let pdu = part.stored_pdu.as_ref()?;
                let slots: Vec<Slot> = part.slot.into_iter().chain(part.copies.clone()).collect();
                (!slots.is_empty()).then(|| {
                    let record = DirectPart {
                        key: super::direct_parts::direct_key(pdu),
                        pdu: pdu.clone(),
                        kept: false,
                    };
                    (record, slots)
                })
            })
            .collect()
    }

    /// The part [`Self::stored_parts`] named `moved` is in the record of
    /// direct deliveries now: it waits there as one handed over directly
    /// does, in no slot (its slots are to be freed).
    pub fn moved_to_record(&mut self, moved: &DirectPart) {
        for part in self
            .pending
            .values_mut()
            .flatten()
            .flat_map(|p| p.parts.values_mut())
            .filter(|part| part.stored_pdu.as_deref() == Some(moved.pdu.as_str()))
        {
            part.slot = None;
            part.copies.clear();
            if !part.direct.iter().any(|d| d.key == moved.key) {
                part.direct.push(DirectPart {
                    kept: true,
                    ..moved.clone()
                });
            }
        }
    }

    /// Whether the part handed over directly under `key` waits here for
    /// its message.
    pub fn holds_direct(&self, key: &str) -> bool {
        self.held_parts()
            .any(|part| part.direct.iter().any(|d| d.key == key))
    }

    fn add_part(
        &mut self,
        slot: Option<Slot>,
        direct: Option<DirectPart>,
        stored_pdu: Option<&str>,
        deliver: Deliver,
        now_ms: u64,
    ) -> Option<Ready> {
        let stored_pdu = stored_pdu.map(str::to_string);
        let from = self.numbering.sender(&deliver.originator);
        let Some(concat) = deliver.concat().filter(|c| c.total > 1) else {
            let part = HeldPart {
                slot,
                deliver,
                copies: Vec::new(),
                direct: direct.into_iter().collect(),
                stored_pdu,
            };
            return Some(finish(&from, vec![part], false));
        };
        let key = (
            from.clone(),
            concat.reference,
            concat.total,
            concat.sixteen_bit_reference,
        );
        let assemblies = self.pending.entry(key.clone()).or_default();
        // A part seen twice (via +CMTI and a sweep) keeps its first slot; an
        // identical copy in another slot is freed with its message. Only an
        // identical part is a copy: another message's part with the same
        // key and sequence must never free a slot of this one.
        let held = assemblies.iter_mut().find_map(|a| {
            a.parts
                .get_mut(&concat.sequence)
                .filter(|p| same_part(&p.deliver, &deliver))
        });
        if let Some(part) = held {
            // The same part at the same index under another memory's name
            // is most likely one slot named two ways (a modem that took
            // "SR" without switching lists its messages there; "MT" and
            // "SM" are never both read, `Memory::listed_as`, and number
            // one slot apart on some modems): freeing it twice would delete
            // whatever took the slot after the first. A true copy lands in
            // a slot of its own.
            if let Some(new) = slot
                && !part
                    .slot
                    .into_iter()
                    .chain(part.copies.iter().copied())
                    .any(|held| held.index == new.index)
            {
                part.copies.push(new);
            }
            part.direct.extend(direct);
            if part.stored_pdu.is_none() {
                part.stored_pdu = stored_pdu;
            }
            return None;
        }
        let part = HeldPart {
            slot,
            deliver,
            copies: Vec::new(),
            direct: direct.into_iter().collect(),
            stored_pdu,
        };
        let joins = assemblies
            .iter()
            .enumerate()
            .filter(|(_, a)| !a.parts.contains_key(&concat.sequence))
            .map(|(i, a)| (i, a.distance(&part.deliver)))
            .filter(|(_, distance)| *distance <= MAX_PART_SPREAD_SECONDS)
            .min_by_key(|(_, distance)| *distance)
            .map(|(i, _)| i);
        let at = match joins {
            Some(at) => at,
            None => {
                assemblies.push(Pending {
                    first_seen_ms: now_ms,
                    parts: BTreeMap::new(),
                });
                assemblies.len() - 1
            }
        };
        let assembly = &mut assemblies[at];
        assembly.parts.insert(concat.sequence, part);
        let complete = (1..=concat.total).all(|s| assembly.parts.contains_key(&s));
        if !complete {
            return None;
        }
        let done = assemblies.remove(at);
        if assemblies.is_empty() {
            self.pending.remove(&key);
        }
        Some(finish_pending(&from, done, false))
    }

    /// Messages whose missing parts did not come in time, with what we have.
    /// Also forgets committed parts older than [`KNOWN_COMMITTED_MS`].
    /// Whether a message in assembly has waited its timeout at `now_ms`
    /// and holds a stored slot: [`Self::expire`] would free that slot.
    pub fn stored_part_expires(&self, now_ms: u64) -> bool {
        self.pending.values().flatten().any(|p| {
            now_ms.saturating_sub(p.first_seen_ms) >= self.timeout_ms && p.slots().next().is_some()
        })
    }

    pub fn expire(&mut self, now_ms: u64) -> Vec<Ready> {
        let timeout_ms = self.timeout_ms;
        let known_ms = KNOWN_COMMITTED_MS.max(timeout_ms);
        self.committed
            .retain(|_, at| now_ms.saturating_sub(*at) < known_ms);
        let mut ready = Vec::new();
        self.pending.retain(|(from, ..), assemblies| {
            let (expired, waiting): (Vec<Pending>, Vec<Pending>) = std::mem::take(assemblies)
                .into_iter()
                .partition(|p| now_ms.saturating_sub(p.first_seen_ms) >= timeout_ms);
            ready.extend(expired.into_iter().map(|p| finish_pending(from, p, true)));
            *assemblies = waiting;
            !assemblies.is_empty()
        });
        ready
    }
}

fn finish_pending(from: &str, pending: Pending, partial: bool) -> Ready {
    finish(from, pending.parts.into_values().collect(), partial)
}

/// Join parts (one per sequence) with the codec's reassembler (it knows how
/// to join UCS-2 surrogates split across parts); a fresh one per message so
/// that a message whose commit failed can be assembled again from a later
/// sweep. The slots of the parts' copies are freed with the message.
fn finish(from: &str, held: Vec<HeldPart>, partial: bool) -> Ready {
    let memory_only = held
        .iter()
        .any(|p| p.slot.is_none() && p.copies.is_empty() && p.direct.is_empty());
    let mut parts = Vec::new();
    let mut copies = Vec::new();
    let mut direct = Vec::new();
    for part in held {
        parts.push((part.slot, part.deliver));
        copies.extend(part.copies);
        direct.extend(part.direct);
    }
    let slots: Vec<Slot> = parts.iter().filter_map(|(s, _)| *s).chain(copies).collect();
    let fingerprints: Vec<(String, String)> = parts
        .iter()
        .filter_map(|(_, deliver)| part_fingerprint(from, deliver))
        .collect();
    let committed_parts = fingerprints.first().map(|(name, _)| CommittedParts {
        name: name.clone(),
        fingerprints: fingerprints.iter().map(|(_, f)| f.clone()).collect(),
    });
    let mut reassembler = Reassembler::new(u64::MAX / 4);
    let mut done: Option<ReassembledMessage> = None;
    let mut truncated = false;
    for (_, deliver) in &parts {
        let mut part = MessagePart::from_deliver(deliver);
        // The reassembler keys parts by originator: give it the sender as
        // the Inbox grouped them (written in E.164), not as each part
        // carries it (`447911123456` international in one, `07911123456`
        // national in another), or the parts never make one message.
        part.originator = from.to_string();
        truncated |= deliver.user_data.truncated;
        if let Some(message) = reassembler.push(part, 0) {
            done = Some(message);
        }
    }
    if partial || done.is_none() {
        done = reassembler.expire(u64::MAX).into_iter().next().or(done);
    }
    // The lowest-numbered part's time, as the reassembler takes it. An
    // invalid one gives the arrival time (when the message is complete)
    // for the record, and the raw octets for the id (`codec::scts_key`).
    let first = &parts[0].1;
    let scts = codec::scts_key(first);
    let received_at_ms = match first.service_centre_timestamp {
        Some(t) => t.to_unix_seconds() * 1000,
        None => super::unix_now() * 1000,
    };
    let (text, reference, total, missing, binary) = match done {
        Some(m) => (
            m.text,
            m.reference,
            m.total_parts,
            m.missing_parts,
            m.binary,
        ),
        None => (
            first.text().unwrap_or_default().to_string(),
            None,
            1,
            Vec::new(),
            None,
        ),
    };
    // 8-bit data (no port: those are discarded before) is no text; read as
    // UTF-8 it is garbage. A person gets a placeholder, as on a phone; the
    // id is made of the data, so two such messages stay two.
    let (mut text, id_text) = match binary {
        Some(data) => {
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            let mut placeholder = format!("[binary SMS, {} bytes", data.len());
            if !missing.is_empty() {
                placeholder.push_str(&format!(", {} of {total} parts missing", missing.len()));
            }
            placeholder.push(']');
            (placeholder, hex)
        }
        None => (text.clone(), text),
    };
    if truncated {
        text.push_str(TRUNCATED_MARKER);
    }
    let concat = reference.map(|r| (r, total));
    let id_text = if truncated {
        format!("{id_text}{TRUNCATED_MARKER}")
    } else {
        id_text
    };
    Ready {
        from: from.to_string(),
        external_id: inbound_external_id(from, scts, concat, &id_text),
        text,
        received_at_ms,
        slots,
        missing_parts: missing,
        truncated,
        committed_parts,
        direct,
        memory_only,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::slot::Memory;

    /// Slot `index` of the SIM.
    fn sm(index: u32) -> Option<Slot> {
        Some(Slot::new(Memory::SIM, index))
    }

    impl Ready {
        fn indexes(&self) -> Vec<u32> {
            self.slots.iter().map(|s| s.index).collect()
        }
    }

    #[test]
    fn the_same_part_at_the_same_index_under_two_memory_names_is_one_slot() {
        let parts = delivers("+15551230001", &"m".repeat(200), 31);
        let mut inbox = Inbox::new(60_000);
        let on_sim = Slot::new(Memory::SIM, 3);
        assert!(inbox.add(Some(on_sim), parts[0].clone(), 0).is_none());
        let both = Memory::parse("MT").unwrap();
        assert!(
            inbox
                .add(Some(Slot::new(both, 3)), parts[0].clone(), 0)
                .is_none()
        );
        let ready = inbox.add(sm(4), parts[1].clone(), 0).unwrap();
        assert_eq!(ready.slots, [on_sim, Slot::new(Memory::SIM, 4)]);
    }

    #[test]
    fn a_part_is_held_by_its_memory_and_index_and_freed_from_there() {
        let parts = delivers("+15551230001", &"m".repeat(200), 30);
        let mut inbox = Inbox::new(60_000);
        let on_sim = Slot::new(Memory::SIM, 1);
        assert!(inbox.add(Some(on_sim), parts[0].clone(), 0).is_none());
        assert!(inbox.holds(on_sim));
        // The modem's own slot 1 is another message.
        assert!(!inbox.holds(Slot::new(Memory::MODEM, 1)));
        let in_modem = Slot::new(Memory::MODEM, 2);
        let ready = inbox.add(Some(in_modem), parts[1].clone(), 0).unwrap();
        assert_eq!(ready.slots, [on_sim, in_modem]);
    }

    /// A part moved to the record of direct deliveries leaves its slots
    /// (they are freed by the move, never by its message) and waits as a
    /// part handed over directly; a copy stored later is moved in turn.
    #[test]
    fn a_part_moved_to_the_record_is_in_no_slot_and_kept() {
        let hex: Vec<String> = encode_deliver("+15551230001", &"m".repeat(400), 1_700_000_000, 5)
            .into_iter()
            .map(|(hex, _)| hex)
            .collect();
        let parts = delivers_at("+15551230001", &"m".repeat(400), 5, 1_700_000_000);
        let mut inbox = Inbox::new(60_000);
        let first = Slot::new(Memory::SIM, 1);
        assert!(
            inbox
                .add_stored(first, &hex[0], parts[0].clone(), 0)
                .is_none()
        );
        let moving = inbox.stored_parts();
        assert_eq!(moving.len(), 1);
        let (record, slots) = &moving[0];
        assert_eq!(slots, &[first]);
        assert_eq!(record.pdu, hex[0]);
        assert_eq!(record.key, super::super::direct_parts::direct_key(&hex[0]));
        inbox.moved_to_record(record);
        assert!(!inbox.holds(first));
        assert!(inbox.holds_direct(&record.key));
        assert!(inbox.stored_parts().is_empty());

        let copy = Slot::new(Memory::SIM, 2);
        assert!(
            inbox
                .add_stored(copy, &hex[0], parts[0].clone(), 0)
                .is_none()
        );
        let again = inbox.stored_parts();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].1, [copy]);
        inbox.moved_to_record(&again[0].0);

        assert!(
            inbox
                .add_stored(Slot::new(Memory::SIM, 1), &hex[1], parts[1].clone(), 0)
                .is_none()
        );
        let ready = inbox
            .add_stored(Slot::new(Memory::SIM, 2), &hex[2], parts[2].clone(), 0)
            .unwrap();
        assert_eq!(ready.indexes(), [1, 2], "only the parts still stored");
        assert_eq!(ready.direct.len(), 1);
        assert!(ready.direct[0].kept);
        assert!(!ready.memory_only);
        assert!(ready.missing_parts.is_empty());
        assert_eq!(ready.text, "m".repeat(400));
    }

    #[test]
    fn a_record_keeps_another_message_s_fingerprints() {
        let own = vec!["b2".to_string(), "c3".to_string()];
        assert_eq!(with_fingerprints("", &own, true), "b2,c3");
        assert_eq!(with_fingerprints("a1", &own, true), "a1,b2,c3");
        assert_eq!(
            with_fingerprints("a1,b2,c3", &own, true),
            "a1,b2,c3",
            "once each"
        );
        assert_eq!(with_fingerprints("a1,b2,c3", &own, false), "a1");
        assert_eq!(with_fingerprints("b2,c3", &own, false), "", "none left");
    }

    #[test]
    fn a_record_names_only_its_own_fingerprints() {
        assert!(names_fingerprint("a1,b2,c3", "b2"));
        assert!(!names_fingerprint("a1,c3", "b2"));
        assert!(!names_fingerprint("a1,c3", "a"), "whole fingerprints only");
        assert!(!names_fingerprint("", ""));
    }
    use crate::codec::{Incoming, decode_incoming, encode_deliver};

    fn delivers(from: &str, text: &str, reference: u8) -> Vec<Deliver> {
        delivers_at(from, text, reference, 1_700_000_000)
    }

    fn delivers_at(from: &str, text: &str, reference: u8, scts_unix: i64) -> Vec<Deliver> {
        encode_deliver(from, text, scts_unix, reference)
            .into_iter()
            .map(|(hex, _)| match decode_incoming(&hex).unwrap() {
                Incoming::Deliver(d) => *d,
                _ => panic!("not a deliver"),
            })
            .collect()
    }

    #[test]
    fn single_part_is_ready_at_once_with_stable_id() {
        let mut inbox = Inbox::new(1000);
        let d = delivers("+15551230001", "hello", 1).remove(0);
        let a = inbox.add(sm(3), d.clone(), 0).unwrap();
        let b = Inbox::new(1000).add(sm(7), d, 0).unwrap();
        assert_eq!(a.text, "hello");
        assert_eq!(a.from, "+15551230001");
        assert_eq!(a.indexes(), [3]);
        assert_eq!(a.external_id, b.external_id);
        assert!(a.external_id.starts_with("sms:"));
    }

    #[test]
    fn multipart_out_of_order_with_duplicate_copy() {
        let text = "x".repeat(200) + "ü€";
        let parts = delivers("+15551230001", &text, 9);
        assert!(parts.len() >= 2);
        let mut inbox = Inbox::new(1000);
        assert!(inbox.add(sm(5), parts[1].clone(), 0).is_none());
        // The same part again from another slot: held, not joined twice.
        assert!(inbox.add(sm(6), parts[1].clone(), 1).is_none());
        assert!(inbox.holds(sm(5).unwrap()) && inbox.holds(sm(6).unwrap()));
        let ready = inbox.add(sm(4), parts[0].clone(), 2).unwrap();
        assert_eq!(ready.text, text);
        let mut slots = ready.indexes();
        slots.sort();
        assert_eq!(slots, [4, 5, 6]);
        assert_eq!(inbox.pending_parts(), 0);
    }

    /// Two messages from one sender with the same reference and part
    /// count (an 8-bit reference wraps), their parts interleaved: each is
    /// joined from its own parts, and frees only its own slots.
    /// The recent-parts cursor keeps a day of parts, each with its time:
    /// older entries, and ones that cannot be read, go at the next write.
    #[test]
    fn recent_parts_are_kept_a_day_and_no_longer() {
        let day = KNOWN_COMMITTED_MS as i64;
        let now = 10 * day;
        let value = format!("old@{},fresh@{},junk,@5,bad@x", now - day - 1, now - 1000);
        assert_eq!(recent_parts(&value, now), [("fresh".to_string(), 1000)]);
        let written = recent_with(&value, &["new".into(), "fresh".into()], now);
        assert_eq!(written, format!("new@{now},fresh@{now}"));
        let mut inbox = Inbox::new(1000);
        inbox.remember_recent(recent_parts(&written, now + 5), 0);
        assert_eq!(inbox.committed.len(), 2);
    }

    /// `d` with its concatenation element turned 16-bit, same reference.
    fn sixteen_bit(mut d: Deliver) -> Deliver {
        let header = d.user_data.header.as_mut().unwrap();
        for element in &mut header.elements {
            if let phonerelay_sms_pdu::InformationElement::Concat(c) = element {
                c.sixteen_bit_reference = true;
            }
        }
        d
    }

    /// An 8-bit reference 7 and a 16-bit reference 7 from one sender are
    /// two messages', even sent the same second: neither completes the
    /// other.
    #[test]
    fn eight_and_sixteen_bit_references_of_one_value_are_two_messages() {
        let (text_a, text_b) = ("a".repeat(200), "b".repeat(200));
        let a = delivers_at("+15551230001", &text_a, 7, 1_700_000_000);
        let b: Vec<Deliver> = delivers_at("+15551230001", &text_b, 7, 1_700_000_000)
            .into_iter()
            .map(sixteen_bit)
            .collect();
        let mut inbox = Inbox::new(1000);
        assert!(inbox.add(sm(1), a[0].clone(), 0).is_none());
        assert!(
            inbox.add(sm(2), b[1].clone(), 0).is_none(),
            "not a's part 2"
        );
        let first = inbox.add(sm(3), a[1].clone(), 0).unwrap();
        assert_eq!(first.text, text_a);
        let second = inbox.add(sm(4), b[0].clone(), 0).unwrap();
        assert_eq!(second.text, text_b);
    }

    #[test]
    fn messages_sharing_sender_reference_and_count_are_kept_apart() {
        let (text_a, text_b) = ("a".repeat(200), "b".repeat(200));
        let sent_at = 1_700_000_000;
        // Sent minutes apart: a part joins the message nearest in time.
        let a = delivers_at("+15551230001", &text_a, 7, sent_at);
        let b = delivers_at("+15551230001", &text_b, 7, sent_at + 600);
        assert_eq!((a.len(), b.len()), (2, 2));
        let mut inbox = Inbox::new(1000);
        assert!(inbox.add(sm(1), a[0].clone(), 0).is_none());
        assert!(inbox.add(sm(2), b[0].clone(), 0).is_none());
        let first = inbox.add(sm(3), b[1].clone(), 0).unwrap();
        assert_eq!(first.text, text_b);
        assert_eq!(first.indexes(), [2, 3]);
        assert!(
            inbox.holds(sm(1).unwrap()),
            "a's part is kept until a is committed"
        );
        let second = inbox.add(sm(4), a[1].clone(), 0).unwrap();
        assert_eq!(second.text, text_a);
        assert_eq!(second.indexes(), [1, 4]);

        // Sent the same second: parts join the oldest message lacking them.
        let b = delivers_at("+15551230001", &text_b, 7, sent_at);
        assert!(inbox.add(sm(1), a[0].clone(), 0).is_none());
        assert!(inbox.add(sm(2), b[0].clone(), 0).is_none());
        let first = inbox.add(sm(3), a[1].clone(), 0).unwrap();
        assert_eq!(first.text, text_a);
        assert_eq!(first.indexes(), [1, 3]);
        let second = inbox.add(sm(4), b[1].clone(), 0).unwrap();
        assert_eq!(second.text, text_b);
        assert_eq!(second.indexes(), [2, 4]);
        assert_eq!(inbox.pending_parts(), 0);
    }

    #[test]
    fn every_copy_of_a_part_is_freed_with_its_message() {
        let text = "z".repeat(200);
        let parts = delivers("+15551230001", &text, 3);
        let mut inbox = Inbox::new(1000);
        for slot in [5, 6, 7, 6] {
            assert!(inbox.add(sm(slot), parts[1].clone(), 0).is_none());
        }
        let ready = inbox.add(sm(4), parts[0].clone(), 0).unwrap();
        assert_eq!(ready.text, text);
        let mut slots = ready.indexes();
        slots.sort();
        assert_eq!(slots, [4, 5, 6, 7]);
        assert!(!inbox.holds(sm(6).unwrap()));
    }

    #[test]
    fn truncated_part_is_committed_with_marker() {
        // A DELIVER whose TP-UDL promises more than the PDU holds.
        let full = encode_deliver("+15551230001", "hello world", 1_700_000_000, 1)
            .remove(0)
            .0;
        let cut = &full[..full.len() - 4];
        let Incoming::Deliver(d) = decode_incoming(cut).unwrap() else {
            panic!("not a deliver");
        };
        assert!(d.user_data.truncated);
        let ready = Inbox::new(1000).add(sm(2), *d, 0).unwrap();
        assert!(ready.truncated);
        assert_eq!(ready.text, format!("hello wor{TRUNCATED_MARKER}"));
        assert_eq!(ready.indexes(), [2]);
        // Complete messages carry no marker.
        let whole = delivers("+15551230001", "hello world", 1).remove(0);
        let ready = Inbox::new(1000).add(sm(3), whole, 0).unwrap();
        assert!(!ready.truncated);
        assert_eq!(ready.text, "hello world");
    }

    /// Parts of one message with the sender once in international, once
    /// in national format (TON 2) are one message for a modem in GB.
    #[test]
    fn parts_with_the_sender_written_two_ways_join() {
        let text = "n".repeat(200);
        let hex: Vec<String> = encode_deliver("+447911123456", &text, 1_700_000_000, 5)
            .into_iter()
            .map(|(hex, _)| hex.replacen("0C91449711214365", "0BA17019113254F6", 1))
            .collect();
        let parts: Vec<Deliver> = hex
            .iter()
            .map(|h| match decode_incoming(h).unwrap() {
                Incoming::Deliver(d) => *d,
                _ => panic!("not a deliver"),
            })
            .collect();
        let national = parts[1].clone();
        assert_eq!(national.originator.number, "07911123456");
        let international = delivers("+447911123456", &text, 5).remove(0);
        let gb = codec::Numbering::for_country(Some("GB")).unwrap();
        let mut inbox = Inbox::new(1000).with_numbering(gb);
        assert!(inbox.add(sm(1), international, 0).is_none());
        let ready = inbox.add(sm(2), national, 0).unwrap();
        assert_eq!(ready.from, "+447911123456");
        assert_eq!(ready.text, text);
        assert!(ready.missing_parts.is_empty());
        assert_eq!(ready.indexes(), [1, 2]);
    }

    /// 8-bit data is shown as a placeholder, not as lossy UTF-8.
    #[test]
    fn binary_data_is_a_placeholder() {
        let Incoming::Deliver(d) =
            decode_incoming("00040B912143658709F100045111720000000005DEADBEEFFF").unwrap()
        else {
            panic!("not a deliver");
        };
        let ready = Inbox::new(1000).add(sm(1), *d, 0).unwrap();
        assert_eq!(ready.text, "[binary SMS, 5 bytes]");
    }

    /// A message whose last part never came waits for the reassembly
    /// timeout; a later message from the same sender that reuses its
    /// reference must not give it its part: far apart in SMSC time, the
    /// part starts a message of its own, and each text stays whole.
    #[test]
    fn a_part_far_in_time_from_a_waiting_message_does_not_join_it() {
        let (text_a, text_b) = ("a".repeat(200), "b".repeat(200));
        let sent_at = 1_700_000_000;
        let a = delivers_at("+15551230001", &text_a, 7, sent_at);
        let b = delivers_at("+15551230001", &text_b, 7, sent_at + 1800);
        let mut inbox = Inbox::new(3_600_000);
        assert!(inbox.add(sm(1), a[0].clone(), 0).is_none());
        assert!(
            inbox.add(sm(2), b[1].clone(), 1_800_000).is_none(),
            "joined a message half an hour older"
        );
        let ready = inbox.add(sm(3), b[0].clone(), 1_800_001).unwrap();
        assert_eq!(ready.text, text_b);
        assert_eq!(ready.indexes(), [3, 2]);
        let expired = inbox.expire(3_600_000);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].indexes(), [1]);
        assert!(
            expired[0].text.contains(&text_a[..153]),
            "{}",
            expired[0].text
        );
        assert!(!expired[0].text.contains('b'));

        // Minutes apart (a part sent again), they still join.
        let late = delivers_at("+15551230001", &text_a, 8, sent_at + 300);
        let a = delivers_at("+15551230001", &text_a, 8, sent_at);
        assert!(inbox.add(sm(4), a[0].clone(), 0).is_none());
        let ready = inbox.add(sm(5), late[1].clone(), 0).unwrap();
        assert_eq!(ready.text, text_a);
    }

    /// The SMSC delivered a part twice, the copies differing only in header
    /// bits (TP-MMS, TP-SRI, the SMSC address): a copy, freed with its
    /// message, not the start of a second, partial one.
    #[test]
    fn a_copy_differing_only_in_header_bits_is_a_copy() {
        let text = "m".repeat(200);
        let parts = delivers("+15551230015", &text, 22);
        let mut copy = parts[1].clone();
        copy.more_messages_to_send = !copy.more_messages_to_send;
        copy.status_report_indication = !copy.status_report_indication;
        copy.smsc = None;
        let mut inbox = Inbox::new(1000);
        assert!(inbox.add(sm(5), parts[1].clone(), 0).is_none());
        assert!(inbox.add(sm(6), copy, 0).is_none());
        let ready = inbox.add(sm(4), parts[0].clone(), 0).unwrap();
        assert_eq!(ready.text, text);
        let mut slots = ready.indexes();
        slots.sort();
        assert_eq!(slots, [4, 5, 6]);
        assert_eq!(inbox.pending_parts(), 0);
        assert!(inbox.expire(10_000).is_empty());

        // Another text under the same key and time is not a copy.
        let other = delivers("+15551230015", &"o".repeat(200), 22);
        assert!(inbox.add(sm(7), parts[1].clone(), 0).is_none());
        assert!(inbox.add(sm(8), other[1].clone(), 0).is_none());
        assert_eq!(inbox.pending_parts(), 2);
    }

    #[test]
    fn incomplete_message_expires_with_marker() {
        let parts = delivers("+15551230001", &"y".repeat(300), 2);
        let mut inbox = Inbox::new(1000);
        assert!(inbox.add(sm(1), parts[0].clone(), 0).is_none());
        assert!(inbox.expire(999).is_empty());
        let expired = inbox.expire(1000);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].indexes(), [1]);
        assert!(!expired[0].missing_parts.is_empty());
    }
}
