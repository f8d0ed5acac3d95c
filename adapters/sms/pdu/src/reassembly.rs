//! Joining concatenated parts (TS 23.040 9.2.3.24.1) back into messages.
//!
//! Pure: the caller passes the current time in milliseconds. Parts are keyed
//! by (originator, reference, total); a message is complete when every
//! sequence number 1..=total has arrived. Messages whose parts stop coming
//! are not dropped: [`Reassembler::expire`] hands over what arrived, with
//! the gaps listed in `missing_parts` and marked in the text.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::deliver::Deliver;
use crate::timestamp::Timestamp;
use crate::ucs2;
use crate::udh::{ConcatInfo, UserDataHeader};

/// The payload of one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartContent {
    /// Already decoded text.
    Text(String),
    /// GSM 7-bit septets, kept undecoded so an escape cut from its
    /// extension code between parts by a careless sender still joins into
    /// one character.
    Gsm7(Vec<u8>),
    /// UCS-2 octets, kept raw so a surrogate pair cut between parts by a
    /// careless sender still joins into one character.
    Ucs2(Vec<u8>),
    /// 8-bit data (or compressed text).
    Binary(Vec<u8>),
}

/// One received part, as the reassembler needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagePart {
    pub originator: String,
    pub concat: Option<ConcatInfo>,
    pub content: PartContent,
    pub timestamp: Option<Timestamp>,
}

impl MessagePart {
    pub fn from_deliver(d: &Deliver) -> MessagePart {
        let ud = &d.user_data;
        let content = match (&ud.text, &ud.data) {
            (Some(_), Some(raw)) if d.data_coding.encoding == crate::dcs::Encoding::Ucs2 => {
                PartContent::Ucs2(raw.clone())
            }
            (Some(_), _) if ud.septets.is_some() => {
                PartContent::Gsm7(ud.septets.clone().unwrap_or_default())
            }
            (Some(t), _) => PartContent::Text(t.clone()),
            (None, Some(raw)) => PartContent::Binary(raw.clone()),
            (None, None) => PartContent::Text(String::new()),
        };
        MessagePart {
            originator: d.originator.number.clone(),
            concat: ud.header.as_ref().and_then(UserDataHeader::concat),
            content,
            timestamp: d.service_centre_timestamp,
        }
    }
}

/// A whole (or, after expiry, partial) message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReassembledMessage {
    pub originator: String,
    /// Joined text; each missing part appears as `[part N/T missing]`.
    /// 8-bit parts are shown as (lossy) UTF-8.
    pub text: String,
    /// Joined 8-bit data when the parts were 8-bit (missing parts skipped).
    #[serde(serialize_with = "crate::hex::serialize_opt_hex")]
    pub binary: Option<Vec<u8>>,
    /// Concatenation reference; None for a single-part message.
    pub reference: Option<u16>,
    pub total_parts: u8,
    /// Sequence numbers that never arrived (empty when complete).
    pub missing_parts: Vec<u8>,
    /// Timestamp of the lowest-numbered part received.
    pub timestamp: Option<Timestamp>,
}

/// (originator, reference, total, whether the reference is 16-bit).
type Key = (String, u16, u8, bool);

#[derive(Debug, Clone)]
struct Pending {
    first_seen_ms: u64,
    parts: BTreeMap<u8, MessagePart>,
}

/// Collects parts until messages are complete or time out.
#[derive(Debug, Clone)]
pub struct Reassembler {
    timeout_ms: u64,
    pending: BTreeMap<Key, Pending>,
    /// Recently completed keys, so a late duplicate part does not start a
    /// new, never-completing message. Forgotten after one timeout.
    completed: BTreeMap<Key, u64>,
}

impl Reassembler {
    /// `timeout_ms`: how long after its first part a message may wait for
    /// the rest before [`expire`](Self::expire) delivers it incomplete.
    pub fn new(timeout_ms: u64) -> Reassembler {
        Reassembler {
            timeout_ms,
            pending: BTreeMap::new(),
            completed: BTreeMap::new(),
        }
    }

    /// Number of messages waiting for parts.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Convenience for a decoded SMS-DELIVER.
    pub fn push_deliver(&mut self, d: &Deliver, now_ms: u64) -> Option<ReassembledMessage> {
        self.push(MessagePart::from_deliver(d), now_ms)
    }

    /// Adds a part. Returns the message when this part completes it; a
    /// single-part message is returned immediately. Duplicates are ignored.
    pub fn push(&mut self, part: MessagePart, now_ms: u64) -> Option<ReassembledMessage> {
        let Some(c) = part.concat.filter(|c| c.total > 1) else {
            return Some(assemble(&part.originator.clone(), None, 1, vec![(1, part)]));
        };
        // An 8-bit and a 16-bit reference of the same value are two
        // messages' (different elements, 23.040 9.2.3.24.1 and .8).
        let key = (
            part.originator.clone(),
            c.reference,
            c.total,
            c.sixteen_bit_reference,
        );
        if self.completed.contains_key(&key) {
            return None;
        }
        let entry = self.pending.entry(key.clone()).or_insert_with(|| Pending {
            first_seen_ms: now_ms,
            parts: BTreeMap::new(),
        });
        entry.parts.entry(c.sequence).or_insert(part);
        if entry.parts.len() < usize::from(c.total) {
            return None;
        }
        let done = self.pending.remove(&key)?;
        self.completed.insert(key.clone(), now_ms);
        Some(assemble(
            &key.0,
            Some(c.reference),
            c.total,
            done.parts.into_iter().collect(),
        ))
    }

    /// Delivers, incomplete, every message whose first part arrived at
    /// least `timeout_ms` before `now_ms`.
    pub fn expire(&mut self, now_ms: u64) -> Vec<ReassembledMessage> {
        let timeout = self.timeout_ms;
        self.completed
            .retain(|_, done| now_ms.saturating_sub(*done) < timeout);
        let due: Vec<Key> = self
            .pending
            .iter()
            .filter(|(_, p)| now_ms.saturating_sub(p.first_seen_ms) >= timeout)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::with_capacity(due.len());
        for key in due {
            if let Some(p) = self.pending.remove(&key) {
                out.push(assemble(
                    &key.0,
                    Some(key.1),
                    key.2,
                    p.parts.into_iter().collect(),
                ));
                self.completed.insert(key, now_ms);
            }
        }
        out
    }
}

fn assemble(
    originator: &str,
    reference: Option<u16>,
    total: u8,
    parts: Vec<(u8, MessagePart)>,
) -> ReassembledMessage {
    let present: Vec<u8> = parts.iter().map(|(s, _)| *s).collect();
    let missing_parts: Vec<u8> = (1..=total).filter(|s| !present.contains(s)).collect();
    let timestamp = parts.first().and_then(|(_, p)| p.timestamp);
    let any_binary = parts
        .iter()
        .any(|(_, p)| matches!(p.content, PartContent::Binary(_)));

    // Consecutive parts of one alphabet are joined before they are
    // decoded, complete message or not: a surrogate pair (UCS-2) or an
    // escape and its code (GSM 7-bit) that a sender cut between two parts
    // is one character again. A missing part, or a change of alphabet,
    // ends a run.
    let mut text = String::new();
    let mut run = Run::None;
    let mut iter = parts.iter().peekable();
    for seq in 1..=total {
        match iter.peek() {
            Some((s, p)) if *s == seq => {
                run.add(&p.content, &mut text);
                iter.next();
            }
            _ => {
                run.flush(&mut text);
                text.push_str(&format!("[part {seq}/{total} missing]"));
            }
        }
    }
    run.flush(&mut text);
    let binary = any_binary.then(|| {
        parts
            .iter()
            .flat_map(|(_, p)| match &p.content {
                PartContent::Binary(b) | PartContent::Ucs2(b) => b.clone(),
                PartContent::Text(t) => t.as_bytes().to_vec(),
                PartContent::Gsm7(s) => crate::gsm7::septets_to_text(s).into_bytes(),
            })
            .collect()
    });
    ReassembledMessage {
        originator: originator.to_string(),
        text,
        binary,
        reference,
        total_parts: total,
        missing_parts,
        timestamp,
    }
}

/// Consecutive parts of one alphabet, not decoded yet.
enum Run {
    None,
    Gsm7(Vec<u8>),
    Ucs2(Vec<u8>),
}

impl Run {
    /// Add a part: to the run if of its alphabet, else after it.
    fn add(&mut self, content: &PartContent, text: &mut String) {
        match (&mut *self, content) {
            (Run::Gsm7(run), PartContent::Gsm7(s)) => run.extend_from_slice(s),
            // Joined so that a surrogate pair cut between parts makes one
            // character; but not after a part of an odd length (a sender
            // that filled a part to the last octet), which would shift
            // every character after it by one octet.
            (Run::Ucs2(run), PartContent::Ucs2(b)) if run.len() % 2 == 0 => {
                run.extend_from_slice(b)
            }
            (_, PartContent::Gsm7(s)) => {
                self.flush(text);
                *self = Run::Gsm7(s.clone());
            }
            (_, PartContent::Ucs2(b)) => {
                self.flush(text);
                *self = Run::Ucs2(b.clone());
            }
            (_, PartContent::Text(t)) => {
                self.flush(text);
                text.push_str(t);
            }
            (_, PartContent::Binary(b)) => {
                self.flush(text);
                text.push_str(&String::from_utf8_lossy(b));
            }
        }
    }

    /// Decode the run into `text` and end it.
    fn flush(&mut self, text: &mut String) {
        match std::mem::replace(self, Run::None) {
            Run::None => {}
            Run::Gsm7(s) => text.push_str(&crate::gsm7::septets_to_text(&s)),
            Run::Ucs2(b) => text.push_str(&ucs2::decode(&b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(seq: u8, total: u8, text: &str) -> MessagePart {
        MessagePart {
            originator: "+100".into(),
            concat: Some(ConcatInfo {
                reference: 7,
                total,
                sequence: seq,
                sixteen_bit_reference: false,
            }),
            content: PartContent::Text(text.into()),
            timestamp: None,
        }
    }

    #[test]
    fn completes_out_of_order_and_ignores_duplicates() {
        let mut r = Reassembler::new(1000);
        assert!(r.push(part(2, 3, "b"), 0).is_none());
        assert!(r.push(part(2, 3, "X"), 1).is_none());
        assert!(r.push(part(3, 3, "c"), 2).is_none());
        let m = r.push(part(1, 3, "a"), 3).unwrap();
        assert_eq!(m.text, "abc");
        assert!(m.missing_parts.is_empty());
        assert_eq!(r.pending_count(), 0);
        // A late duplicate of a finished message is swallowed...
        assert!(r.push(part(2, 3, "b"), 4).is_none());
        assert_eq!(r.pending_count(), 0);
        assert!(r.expire(5000).is_empty());
    }

    #[test]
    fn expiry_delivers_with_markers() {
        let mut r = Reassembler::new(1000);
        assert!(r.push(part(1, 3, "a"), 100).is_none());
        assert!(r.push(part(3, 3, "c"), 500).is_none());
        assert!(r.expire(1099).is_empty());
        let out = r.expire(1100);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].text, "a[part 2/3 missing]c");
        assert_eq!(out[0].missing_parts, vec![2]);
        assert_eq!(r.pending_count(), 0);
    }

    /// An 8-bit reference 7 and a 16-bit reference 7 are two messages'.
    #[test]
    fn eight_and_sixteen_bit_references_of_one_value_do_not_mix() {
        let mut r = Reassembler::new(1000);
        let mut wide = part(2, 2, "y");
        wide.concat = Some(ConcatInfo::part(7, true, 2, 2));
        assert!(r.push(part(1, 2, "a"), 0).is_none());
        assert!(r.push(wide, 1).is_none(), "not the 8-bit message's part 2");
        assert_eq!(r.pending_count(), 2);
    }

    #[test]
    fn different_originators_do_not_mix() {
        let mut r = Reassembler::new(1000);
        let mut other = part(2, 2, "y");
        other.originator = "+200".into();
        assert!(r.push(part(1, 2, "a"), 0).is_none());
        assert!(r.push(other, 0).is_none());
        assert_eq!(r.pending_count(), 2);
    }

    fn raw(seq: u8, total: u8, content: PartContent) -> MessagePart {
        MessagePart {
            content,
            ..part(seq, total, "")
        }
    }

    /// An ESC ending part 1 and its code (0x65, "€") starting part 2: one
    /// character, not a space and an "e".
    #[test]
    fn an_escape_cut_from_its_code_between_parts_joins() {
        let mut r = Reassembler::new(1000);
        let one = raw(1, 2, PartContent::Gsm7(vec![0x61, 0x1B]));
        let two = raw(2, 2, PartContent::Gsm7(vec![0x65, 0x62]));
        assert!(r.push(one, 0).is_none());
        assert_eq!(r.push(two, 0).unwrap().text, "a€b");
    }

    /// The same from two SMS-DELIVER parts as received: "a" ESC, then
    /// 0x65 "b".
    #[test]
    fn delivers_with_an_escape_cut_between_them_join() {
        let deliver = |hex: &str| match crate::decode(hex, crate::Direction::MtFromNetwork) {
            Ok(crate::Pdu::Deliver(d)) => d,
            other => panic!("{other:?}"),
        };
        let mut r = Reassembler::new(1000);
        let one = deliver("00440B912143658709F100005111720000000009050003070201C21B");
        let two = deliver("00440B912143658709F100005111720000000009050003070202CA62");
        assert!(r.push_deliver(&one, 0).is_none());
        assert_eq!(r.push_deliver(&two, 0).unwrap().text, "a€b");
    }

    /// A surrogate pair cut between parts 1 and 2 of a message whose part
    /// 3 never came: one emoji, not two U+FFFD.
    #[test]
    fn a_surrogate_pair_cut_between_parts_of_an_incomplete_message_joins() {
        let mut r = Reassembler::new(1000);
        let one = raw(1, 3, PartContent::Ucs2(vec![0x00, 0x61, 0xD8, 0x3D]));
        let two = raw(2, 3, PartContent::Ucs2(vec![0xDE, 0x00, 0x00, 0x62]));
        assert!(r.push(one, 0).is_none());
        assert!(r.push(two, 0).is_none());
        let out = r.expire(1000);
        assert_eq!(out[0].text, "a\u{1F600}b[part 3/3 missing]");
    }

    /// A part of an odd length (a sender that filled it to UDL 140 with a
    /// 16-bit reference: 133 octets): the parts after it are read from
    /// their own first octet, not shifted by one.
    #[test]
    fn a_ucs2_part_of_an_odd_length_does_not_shift_the_next() {
        let mut r = Reassembler::new(1000);
        let one = raw(1, 2, PartContent::Ucs2(vec![0x00, 0x61, 0x00]));
        let two = raw(2, 2, PartContent::Ucs2(vec![0x00, 0x62, 0x00, 0x63]));
        assert!(r.push(one, 0).is_none());
        let text = r.push(two, 0).unwrap().text;
        assert!(text.starts_with('a') && text.ends_with("bc"), "{text:?}");
        assert!(!text.contains('\u{6200}'), "{text:?}");
    }

    #[test]
    fn single_part_passes_through() {
        let mut r = Reassembler::new(1000);
        let mut p = part(1, 1, "solo");
        assert_eq!(r.push(p.clone(), 0).unwrap().text, "solo");
        p.concat = None;
        let m = r.push(p, 0).unwrap();
        assert_eq!(
            (m.text.as_str(), m.reference, m.total_parts),
            ("solo", None, 1)
        );
    }
}
