//! Modem health as the driver last saw it, and the ids that tie delivery
//! reports to sent parts.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use phonerelay_channel::ChannelHealth;
use phonerelay_sms_at::responses::MemoryUsage;

/// Below this the link works but messages start to fail.
pub const WEAK_SIGNAL_DBM: i16 = -105;

/// Sends refused in a row with `+CMS ERROR: 330` (SMS centre address
/// unknown), none accepted between, after which the health says the SMS
/// centre is at fault: each such send ends the session and start-up runs
/// again, finding an address on the SIM, so the modem looked `up` between
/// refusals while nothing went out.
pub const SMSC_REFUSALS_STUCK: u32 = 3;
/// Sent parts remembered for matching delivery reports, and for telling
/// apart two parts of one day with the same TP-MR and recipient: many
/// times the 256 TP-MR values, so a busy modem's day is covered.
const SENT_MEMORY: usize = 4096;
/// Partly sent messages remembered for a retry to resume.
const PARTIAL_MEMORY: usize = 256;
/// How far from a report's SMSC time a remembered part may have been sent
/// and still be taken for the part it reports on: the SMSC stamps a part
/// when it takes it, seconds after it went out, give or take its clock.
/// A part farther off is another one with the same TP-MR and recipient,
/// and the store is asked instead.
pub const REPORT_MATCH_WINDOW_SECONDS: i64 = 3600;

#[derive(Debug, Clone, Default)]
pub struct ModemStatus {
    pub connected: bool,
    pub note: String,
    pub signal_dbm: Option<i16>,
    pub registration: Option<String>,
    pub registered: bool,
    pub operator: Option<String>,
    pub sim: Option<String>,
    pub smsc: Option<String>,
    pub last_error: Option<String>,
    /// Stored PDUs that cannot be decoded and that the store would not
    /// take yet, by (memory, index): left on the modem until a sweep
    /// commits them (then they are freed, as a message is), and each holds
    /// a slot until then.
    pub undecodable_stored: BTreeMap<(String, u32), String>,
    /// Messages and reports the modem delivered without storing them
    /// (`+CMT`, `+CDS`) whose commit failed: lost, as nothing can read
    /// them again (the journal names each).
    pub lost_direct_events: u64,
    /// Messages and reports the modem delivered without storing them
    /// (`+CMT`, `+CDS`) that could not be decoded: kept in the store as
    /// they came (the journal gives each one's length and why). A `+CMT`
    /// whose commit failed waits in the record of direct deliveries, as a
    /// decodable one does; a `+CDS`, or a header whose PDU never came,
    /// counts in `lost_direct_events` too.
    pub undecodable_direct: u64,
    /// Received messages not for a person (Type 0 "silent" SMS, DCS
    /// "discard message", port-addressed such as WAP push): acknowledged,
    /// freed from the SIM and not delivered (the journal says which kind).
    pub discarded_inbound: u64,
    /// Stored PDUs read with a line whose length disagrees with its
    /// header's (damaged on the serial line): not decoded, not deleted,
    /// read again. One that keeps growing is a line (or a modem) to look
    /// at.
    pub damaged_pdu_lines: u64,
    /// How full the memory received messages go to is, as `AT+CPMS?` said
    /// after the last sweep (the first comes right after start-up) or the
    /// modem's last word on its memory; `None` until read. A failed read
    /// keeps the last one; a message the driver deletes from that memory
    /// takes one from its count.
    pub message_storage: Option<MemoryUsage>,
    /// What told of a full memory other than a reading of it (the modem's
    /// own indication, a `+CMS ERROR: 322`): taken for full until a
    /// reading shows room or the driver deletes a message from it.
    pub storage_full_said: Option<String>,
    /// Sends refused with `+CMS ERROR: 330` since the last one the network
    /// accepted; from [`SMSC_REFUSALS_STUCK`] on, the health is degraded.
    pub smsc_refusals_in_a_row: u32,
}

/// What an operator calls the memory `+CPMS` names.
fn memory_name(mem: Option<&str>) -> &'static str {
    match mem {
        Some("SM") => "SIM",
        Some("ME") => "modem",
        Some("MT") => "SIM and modem",
        Some("SR") => "status report",
        _ => "modem",
    }
}

impl ModemStatus {
    /// Connected and registered on a network: what [`Self::to_health`]
    /// calls `up`, or `degraded` by a weak signal only, which still sends.
    pub fn can_send(&self) -> bool {
        self.connected && self.registered
    }

    /// Whether new messages have nowhere to go: the network holds them
    /// (and gives up on them after its validity period) until room is
    /// made.
    pub fn storage_full(&self) -> bool {
        self.message_storage
            .as_ref()
            .is_some_and(MemoryUsage::is_full)
            || self.storage_full_said.is_some()
    }

    /// Why the storage is full and what to do, for the health summary.
    pub fn storage_full_summary(&self) -> String {
        let mem = self.message_storage.as_ref().and_then(|u| u.mem.as_deref());
        let full_reading = self.message_storage.as_ref().filter(|u| u.is_full());
        let how_full = match (full_reading, &self.storage_full_said) {
            (Some(usage), _) => format!("{} of {}", usage.used, usage.total),
            (None, Some(said)) => said.clone(),
            (None, None) => "full".into(),
        };
        // Only the ones in that memory hold its slots; with no reading,
        // all of them.
        let undecodable = self
            .undecodable_stored
            .keys()
            .filter(|(m, _)| mem.is_none_or(|mem| m == mem))
            .count();
        let kept = match undecodable {
            0 => String::new(),
            n => format!(
                "; {n} undecodable message{} on it for want of the store (see undecodable_stored)",
                if n == 1 { " waits" } else { "s wait" }
            ),
        };
        format!(
            "{} message storage full ({how_full}): new SMS wait at the network{kept}; \
             delete messages from it (a phone, or AT+CMGD) to make room",
            memory_name(mem),
        )
    }

    pub fn to_health(&self) -> ChannelHealth {
        let mut health = if !self.connected {
            ChannelHealth::down(if self.note.is_empty() {
                "modem not connected"
            } else {
                &self.note
            })
        } else if self.smsc_refusals_in_a_row >= SMSC_REFUSALS_STUCK {
            ChannelHealth::degraded(format!(
                "stuck: the last {} sends were refused with +CMS ERROR: 330 (SMS centre \
                 address unknown); check channels.sms.modems[].smsc (the operator's SMS \
                 centre number, E.164), or the address on the SIM (AT+CSCA?)",
                self.smsc_refusals_in_a_row
            ))
        } else if !self.registered {
            ChannelHealth::degraded("not registered on the network")
        } else if self.storage_full() {
            // Sending still works: degraded, not down.
            ChannelHealth::degraded(self.storage_full_summary())
        } else if self.signal_dbm.is_some_and(|d| d < WEAK_SIGNAL_DBM) {
            ChannelHealth::degraded("weak signal")
        } else {
            ChannelHealth::up("registered")
        };
        if let Some(dbm) = self.signal_dbm {
            health = health.with_measure("signal_dbm", dbm.into());
        }
        let fields = [
            ("registration", self.registration.clone()),
            ("operator", self.operator.clone()),
            ("sim", self.sim.clone()),
            ("smsc", self.smsc.clone()),
            ("last_error", self.last_error.clone()),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                health = health.with_detail(key, value);
            }
        }
        if self.lost_direct_events > 0 {
            health = health.with_measure(
                "lost_direct_events",
                i64::try_from(self.lost_direct_events).unwrap_or(i64::MAX),
            );
        }
        for (key, count) in [
            ("undecodable_direct", self.undecodable_direct),
            ("discarded_inbound", self.discarded_inbound),
            ("damaged_pdu_lines", self.damaged_pdu_lines),
        ] {
            if count > 0 {
                health = health.with_measure(key, i64::try_from(count).unwrap_or(i64::MAX));
            }
        }
        if let Some(usage) = &self.message_storage {
            if let Some(mem) = &usage.mem {
                health = health.with_detail("message_storage", mem.clone());
            }
            health = health
                .with_measure("message_storage_used", usage.used.into())
                .with_measure("message_storage_total", usage.total.into());
        }
        if let Some(said) = &self.storage_full_said {
            health = health.with_detail("message_storage_full", said.clone());
        }
        if !self.undecodable_stored.is_empty() {
            let slots: Vec<String> = self
                .undecodable_stored
                .keys()
                .map(|(mem, index)| format!("{mem}:{index}"))
                .collect();
            health = health.with_detail("undecodable_stored", slots.join(" "));
        }
        health
    }
}

pub type SharedStatus = Arc<Mutex<ModemStatus>>;

/// Digits of a number, so `+1555...` and `1555...` (type international vs
/// unknown in a report) compare equal.
fn digits(number: &str) -> String {
    number.chars().filter(char::is_ascii_digit).collect()
}

/// The external id of a sent part: TP-MR, recipient digits and the Unix day
/// of sending. TP-MR alone wraps every 256 parts; with the recipient and the
/// day it is unique in practice, and a report arriving after a restart (when
/// the in-memory parts below are gone) can still be matched from the
/// report's own SMSC timestamp, which is the time of sending. A second part
/// of the same day with the same TP-MR and recipient gets a suffix
/// ([`SentParts::issue`]).
pub fn sent_part_id(mr: u8, to: &str, unix_day: i64) -> String {
    format!("mr:{mr}:{}:{unix_day}", digits(to))
}

/// TP-MR, recipient digits and ordinal of `id`, one of `base`'s ids
/// (`base` itself is the first, `base:n` the n-th).
fn parse_sent_part_id(base: &str, id: &str) -> Option<(u8, String, usize)> {
    let ordinal = match id.strip_prefix(base)? {
        "" => 1,
        suffix => suffix.strip_prefix(':')?.parse().ok().filter(|n| *n >= 2)?,
    };
    let mut fields = base.strip_prefix("mr:")?.split(':');
    let mr = fields.next()?.parse().ok()?;
    let to = fields.next()?.to_string();
    Some((mr, to, ordinal))
}

/// The base, Unix day and ordinal of a [`sent_part_id`] (with its `:n`
/// suffix, if any).
fn split_sent_part_id(id: &str) -> Option<(String, i64, usize)> {
    let fields: Vec<&str> = id.strip_prefix("mr:")?.split(':').collect();
    let (base_fields, ordinal) = match fields.as_slice() {
        [_, _, _] => (&fields[..], 1),
        [_, _, _, n] => (&fields[..3], n.parse().ok().filter(|n| *n >= 2)?),
        _ => return None,
    };
    let [mr, to, day] = base_fields else {
        return None;
    };
    let day: i64 = day.parse().ok()?;
    mr.parse::<u8>().ok()?;
    Some((format!("mr:{mr}:{to}:{day}"), day, ordinal))
}

/// A part the network accepted, as its delivery report will name it.
struct SentPart {
    mr: u8,
    to: String,
    /// [`sent_part_id`], the same for every part it collides with.
    base: String,
    /// 1 for the part that has `base` as its id, 2 for `base:2`...
    ordinal: usize,
    id: String,
    sent_at_unix: i64,
}

/// Recently sent parts, so a report names the id `send` returned: across
/// midnight, and when two parts of one day share TP-MR and recipient (a
/// busy modem wraps its 256 TP-MRs many times a day, and a recipient whose
/// phone was off gets the reports of the day at once).
#[derive(Default)]
pub struct SentParts {
    parts: VecDeque<SentPart>,
    /// Days up to this one (Unix days) began before this process did, so
    /// parts sent before a restart may hold ids of theirs that the memory
    /// above lacks: a base of such a day is looked up in the store once
    /// ([`Self::needs_relearning`], [`Self::relearn`]). 0: never.
    relearn_through_day: i64,
    /// Bases looked up already.
    relearned: HashSet<String>,
    /// The highest ordinal issued of each base (by its day), kept when the
    /// parts themselves are forgotten: an id must not be issued twice in
    /// a day however many parts went out between.
    highest: HashMap<String, (i64, usize)>,
}

impl SentParts {
    /// The memory of a process that started at `now_unix`: empty, and
    /// asking the store about the ids of its first day.
    pub fn starting_at(now_unix: i64) -> Self {
        Self {
            relearn_through_day: now_unix.div_euclid(86_400),
            ..Self::default()
        }
    }

    /// Whether the store must be asked which ids of `base` (a
    /// [`sent_part_id`] of `day`) a previous process gave, before this one
    /// gives the next or names one for a report.
    pub fn needs_relearning(&self, base: &str, day: i64) -> bool {
        day <= self.relearn_through_day && !self.relearned.contains(base)
    }

    /// Take back what the store says parts sent before have of `base`'s
    /// ids: each (id, when its attempt began in ms). Ids not of `base`, or
    /// already remembered, are skipped.
    pub fn relearn(&mut self, base: &str, sent: &[(String, i64)]) {
        if self.relearned.len() >= SENT_MEMORY {
            self.relearned.clear();
        }
        self.relearned.insert(base.to_string());
        for (id, at_ms) in sent {
            let Some((mr, to, ordinal)) = parse_sent_part_id(base, id) else {
                continue;
            };
            self.note_issued(base, at_ms.div_euclid(86_400_000), ordinal);
            if self.parts.iter().any(|p| p.id == *id) {
                continue;
            }
            self.parts.push_front(SentPart {
                mr,
                to,
                base: base.to_string(),
                ordinal,
                id: id.clone(),
                sent_at_unix: at_ms.div_euclid(1000),
            });
        }
        while self.parts.len() > SENT_MEMORY {
            self.parts.pop_front();
        }
    }

    /// Take ids a previous process gave parts that went out before a
    /// restart and that only their message's cursor keeps (a long message
    /// cut short): they are in no outcome the store holds, so
    /// [`Self::relearn`] would not find them, and the same TP-MR to the
    /// same recipient on the same day would be given the same id again,
    /// and one part's delivery report filed under the other's message.
    /// Ids not of [`sent_part_id`]'s form are skipped.
    pub fn adopt<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) {
        for id in ids {
            let Some((base, day, ordinal)) = split_sent_part_id(id) else {
                continue;
            };
            self.note_issued(&base, day, ordinal);
        }
    }

    /// The external id for part `mr` to `to`, accepted at `now_unix`, and
    /// remembered: the day's [`sent_part_id`], or, if a part remembered
    /// already has that id, the id with `:2`, `:3`... after it. The next
    /// ordinal follows the highest remembered, not their count, so an id
    /// is not issued twice when the first of them has been forgotten.
    pub fn issue(&mut self, mr: u8, to: &str, now_unix: i64) -> String {
        let day = now_unix.div_euclid(86_400);
        let base = sent_part_id(mr, to, day);
        let remembered = self
            .parts
            .iter()
            .filter(|p| p.base == base)
            .map(|p| p.ordinal)
            .max();
        let ordinal = remembered
            .into_iter()
            .chain(self.highest.get(&base).map(|(_, n)| *n))
            .max()
            .map_or(1, |highest| highest + 1);
        self.note_issued(&base, day, ordinal);
        let id = match ordinal {
            1 => base.clone(),
            n => format!("{base}:{n}"),
        };
        self.parts.push_back(SentPart {
            mr,
            to: digits(to),
            base,
            ordinal,
            id: id.clone(),
            sent_at_unix: now_unix,
        });
        while self.parts.len() > SENT_MEMORY {
            self.parts.pop_front();
        }
        id
    }

    /// Remember that `base` (of `day`) has given ordinal `ordinal`; forget
    /// the bases of days before yesterday once there are many.
    fn note_issued(&mut self, base: &str, day: i64, ordinal: usize) {
        let entry = self.highest.entry(base.to_string()).or_insert((day, 0));
        entry.1 = entry.1.max(ordinal);
        if self.highest.len() > 4 * SENT_MEMORY {
            self.highest.retain(|_, (d, _)| *d >= day - 1);
        }
    }

    /// The id for a report on part `mr` sent to `recipient` whose SMSC
    /// timestamp (the time the SMSC took the part) is `scts_unix`: of the
    /// parts remembered with that TP-MR and recipient, the one sent nearest
    /// that time, if within [`REPORT_MATCH_WINDOW_SECONDS`]. `None`: ask
    /// the store ([`nearest_sent`]), which keeps every part.
    pub fn id_for_report(&self, mr: u8, recipient: &str, scts_unix: i64) -> Option<String> {
        let to = digits(recipient);
        self.parts
            .iter()
            .filter(|p| p.mr == mr && p.to == to)
            .filter(|p| (p.sent_at_unix - scts_unix).abs() <= REPORT_MATCH_WINDOW_SECONDS)
            // The SMSC's timestamp has whole seconds: of parts as near as
            // each other, the one sent last, whose report is the one still
            // to come.
            .min_by_key(|p| {
                (
                    (p.sent_at_unix - scts_unix).abs(),
                    std::cmp::Reverse((p.sent_at_unix, p.ordinal)),
                )
            })
            .map(|p| p.id.clone())
    }
}

/// Of ids the store holds (each with when its attempt began, ms), the one
/// sent nearest `scts_unix`; `None` if there are none.
pub fn nearest_sent(sent: &[(String, i64)], scts_unix: i64) -> Option<String> {
    sent.iter()
        .min_by_key(|(_, at_ms)| (at_ms.div_euclid(1000) - scts_unix).abs())
        .map(|(id, _)| id.clone())
}

/// A part the network accepted: its TP-MR and the external id `send`
/// returns for it (which its delivery report will name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedPart {
    pub mr: u8,
    pub external_id: String,
}

/// Parts of outbound messages the network accepted, by message id and part
/// index: what a retry of the same message skips (it encodes the same parts
/// with the same concat reference, kept here too, so a resumed message
/// joins on the handset). The driver writes it as each part is accepted —
/// in time, or by a late `+CMGS` after AT+CMGS timed out — and reads it
/// when it takes a request, so a retry queued behind that late answer
/// still skips the part; the adapter reads it to build the receipt, and
/// records a long message's reference in it before its first part. Each
/// message's record is also its store cursor's text ([`Self::to_cursor`]).
/// In memory, the oldest messages are forgotten past [`PARTIAL_MEMORY`].
#[derive(Debug, Default)]
pub struct AcceptedParts {
    by_message: HashMap<String, BTreeMap<usize, AcceptedPart>>,
    /// The concat reference of each long message, recorded before its
    /// first part went out (`crate::concat_reference`).
    references: HashMap<String, u16>,
    /// Messages with parts or a reference here, oldest first.
    order: VecDeque<String>,
    /// How many of each message's parts its store cursor holds (saved by
    /// this process, or read back from it): a save that would add nothing
    /// is not made, so a store hiccup cannot stop a send over it.
    saved: HashMap<String, usize>,
}

impl AcceptedParts {
    pub fn record(&mut self, message_id: &str, index: usize, part: AcceptedPart) {
        self.make_room_for(message_id);
        self.by_message
            .entry(message_id.to_string())
            .or_default()
            .insert(index, part);
    }

    /// Record the concat reference long message `message_id` is sent with.
    pub fn set_reference(&mut self, message_id: &str, reference: u16) {
        self.make_room_for(message_id);
        self.references.insert(message_id.to_string(), reference);
    }

    /// The concat reference recorded for `message_id`, if any.
    pub fn reference(&self, message_id: &str) -> Option<u16> {
        self.references.get(message_id).copied()
    }

    /// A message not held yet goes last in line, the oldest forgotten to
    /// make room for it.
    fn make_room_for(&mut self, message_id: &str) {
        if self.by_message.contains_key(message_id) || self.references.contains_key(message_id) {
            return;
        }
        while self.order.len() >= PARTIAL_MEMORY {
            if let Some(oldest) = self.order.pop_front() {
                self.by_message.remove(&oldest);
                self.references.remove(&oldest);
                self.saved.remove(&oldest);
            }
        }
        self.order.push_back(message_id.to_string());
    }

    pub fn is_accepted(&self, message_id: &str, index: usize) -> bool {
        self.by_message
            .get(message_id)
            .is_some_and(|parts| parts.contains_key(&index))
    }

    /// How many of the message's parts were accepted.
    pub fn accepted_count(&self, message_id: &str) -> usize {
        self.by_message.get(message_id).map_or(0, BTreeMap::len)
    }

    /// Whether parts were accepted that the message's store cursor does
    /// not hold yet.
    pub fn unsaved(&self, message_id: &str) -> bool {
        self.accepted_count(message_id) > self.saved.get(message_id).copied().unwrap_or(0)
    }

    /// The cursor now holds the first `count` accepted parts' record.
    pub fn mark_saved(&mut self, message_id: &str, count: usize) {
        if self.by_message.contains_key(message_id) {
            self.saved.insert(message_id.to_string(), count);
        }
    }

    /// The external ids of parts `0..total` in order, once all are accepted.
    pub fn complete(&self, message_id: &str, total: usize) -> Option<Vec<String>> {
        let parts = self.by_message.get(message_id)?;
        (0..total)
            .map(|i| parts.get(&i).map(|p| p.external_id.clone()))
            .collect()
    }

    pub fn forget(&mut self, message_id: &str) {
        self.saved.remove(message_id);
        let had_parts = self.by_message.remove(message_id).is_some();
        let had_reference = self.references.remove(message_id).is_some();
        if had_parts || had_reference {
            self.order.retain(|m| m != message_id);
        }
    }

    /// The message's record as the text of its store cursor: its concat
    /// reference, if it has one, as a `reference <n>` line, then one
    /// `index mr external_id` line per accepted part (ids hold no
    /// whitespace). Versions before the reference line wrote only the
    /// part lines, and skip a line of two fields, as they skip any line
    /// that is not three.
    pub fn to_cursor(&self, message_id: &str) -> String {
        let reference = self
            .reference(message_id)
            .map(|reference| format!("{REFERENCE_LINE}{reference}\n"));
        let parts = self
            .by_message
            .get(message_id)
            .into_iter()
            .flatten()
            .map(|(index, part)| format!("{index} {} {}\n", part.mr, part.external_id));
        reference.into_iter().chain(parts).collect()
    }

    /// The external ids of the message's accepted parts.
    pub fn ids(&self, message_id: &str) -> Vec<String> {
        self.by_message
            .get(message_id)
            .into_iter()
            .flatten()
            .map(|(_, part)| part.external_id.clone())
            .collect()
    }

    /// Take back what [`Self::to_cursor`] wrote, after a restart; lines that
    /// do not parse are skipped (their parts are sent again). A cursor an
    /// earlier version wrote has part lines only: its message gets no
    /// reference here (see `crate::concat_reference::legacy_reference`).
    pub fn restore(&mut self, message_id: &str, cursor: &str) {
        for line in cursor.lines() {
            if let Some(reference) = line.strip_prefix(REFERENCE_LINE) {
                if let Ok(reference) = reference.trim().parse() {
                    self.set_reference(message_id, reference);
                }
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(index), Some(mr), Some(external_id), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if let (Ok(index), Ok(mr)) = (index.parse(), mr.parse()) {
                let external_id = external_id.to_string();
                self.record(message_id, index, AcceptedPart { mr, external_id });
            }
        }
        // What the cursor holds need not be saved again.
        let count = self.accepted_count(message_id);
        self.mark_saved(message_id, count);
    }
}

/// The start of the line of a message's cursor that holds its concat
/// reference ([`AcceptedParts::to_cursor`]).
const REFERENCE_LINE: &str = "reference ";

/// The store cursor (under the endpoint's scope) that keeps the accepted
/// parts of a long message, and its concat reference, across a restart,
/// until the message is sent or fails here, or the daemon sees it end
/// otherwise (expired, cancelled).
pub fn parts_cursor(message_id: &str) -> String {
    phonerelay_channel::message_cursor(message_id, "sms-parts")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(mr: u8) -> AcceptedPart {
        AcceptedPart {
            mr,
            external_id: format!("id{mr}"),
        }
    }

    /// A save before each part is made only when it adds a part: a retry
    /// that read the cursor back, or whose parts were saved, saves nothing.
    #[test]
    fn only_parts_the_cursor_lacks_need_saving() {
        let mut parts = AcceptedParts::default();
        assert!(!parts.unsaved("m"));
        parts.record("m", 0, part(17));
        assert!(parts.unsaved("m"));
        parts.mark_saved("m", 1);
        assert!(!parts.unsaved("m"));
        parts.record("m", 1, part(18));
        assert!(parts.unsaved("m"));
        let mut after = AcceptedParts::default();
        after.restore("m", &parts.to_cursor("m"));
        assert!(!after.unsaved("m"), "read back from its cursor");
        after.forget("m");
        after.record("m", 0, part(17));
        assert!(after.unsaved("m"), "forgotten with the message");
    }

    #[test]
    fn accepted_parts_survive_their_cursor_text() {
        let mut before = AcceptedParts::default();
        before.record("m", 0, part(17));
        before.record("m", 2, part(19));
        let text = before.to_cursor("m");
        let mut after = AcceptedParts::default();
        after.restore("m", &format!("{text}garbage line\n"));
        assert!(after.is_accepted("m", 0) && after.is_accepted("m", 2));
        assert!(!after.is_accepted("m", 1));
        assert_eq!(after.to_cursor("m"), text);
        assert_eq!(AcceptedParts::default().to_cursor("m"), "");
    }

    /// A long message's reference goes into its cursor before any part
    /// (a cursor of the reference alone), and comes back with the parts.
    #[test]
    fn a_message_s_reference_survives_its_cursor_text() {
        let mut before = AcceptedParts::default();
        before.set_reference("m", 200);
        assert_eq!(before.to_cursor("m"), "reference 200\n");
        before.record("m", 0, part(17));
        let text = before.to_cursor("m");
        assert_eq!(text, "reference 200\n0 17 id17\n");
        let mut after = AcceptedParts::default();
        after.restore("m", &text);
        assert_eq!(after.reference("m"), Some(200));
        assert!(after.is_accepted("m", 0));
        assert!(!after.unsaved("m"), "read back from its cursor");
        after.forget("m");
        assert_eq!(after.reference("m"), None, "forgotten with the message");
    }

    /// The cursor of a message an earlier version started: part lines
    /// only. Its parts come back, and no reference (the adapter then
    /// keeps the old hash).
    #[test]
    fn a_cursor_written_before_references_were_kept_still_parses() {
        let old = "0 17 mr:17:15551230001:20000\n1 18 mr:18:15551230001:20000\n";
        let mut after = AcceptedParts::default();
        after.restore("m", old);
        assert_eq!(after.accepted_count("m"), 2);
        assert_eq!(after.reference("m"), None);
        assert_eq!(after.to_cursor("m"), old, "written back as it was");
    }

    /// A message that has a reference and no accepted part yet counts
    /// towards the memory's bound like one with parts.
    #[test]
    fn the_oldest_references_are_forgotten_past_the_memory() {
        let mut accepted = AcceptedParts::default();
        for i in 0..PARTIAL_MEMORY + 1 {
            accepted.set_reference(&format!("x{i}"), 1);
        }
        assert_eq!(accepted.reference("x0"), None, "oldest forgotten");
        assert_eq!(accepted.reference(&format!("x{PARTIAL_MEMORY}")), Some(1));
        assert_eq!(accepted.order.len(), PARTIAL_MEMORY);
    }

    #[test]
    fn accepted_parts_complete_in_order_and_oldest_are_forgotten() {
        let mut accepted = AcceptedParts::default();
        // Part 1 accepted late, before part 0's retry.
        accepted.record("m", 1, part(9));
        assert!(accepted.is_accepted("m", 1) && !accepted.is_accepted("m", 0));
        assert_eq!(accepted.complete("m", 2), None);
        accepted.record("m", 0, part(8));
        assert_eq!(accepted.accepted_count("m"), 2);
        assert_eq!(
            accepted.complete("m", 2),
            Some(vec!["id8".to_string(), "id9".to_string()])
        );
        accepted.forget("m");
        assert_eq!(accepted.accepted_count("m"), 0);
        for i in 0..PARTIAL_MEMORY + 1 {
            accepted.record(&format!("x{i}"), 0, part(1));
        }
        assert!(!accepted.is_accepted("x0", 0), "oldest forgotten");
        assert!(accepted.is_accepted(&format!("x{PARTIAL_MEMORY}"), 0));
        assert_eq!(accepted.order.len(), PARTIAL_MEMORY);
    }

    #[test]
    fn report_matches_recorded_id_across_midnight() {
        let mut sent = SentParts::default();
        let id = sent.issue(7, "+15551230001", 19_999 * 86_400 + 86_399);
        assert_eq!(id, sent_part_id(7, "+15551230001", 19_999));
        // Report stamped the next day, recipient without '+'.
        assert_eq!(
            sent.id_for_report(7, "15551230001", 20_000 * 86_400),
            Some(id)
        );
        // Unknown MR (e.g. after a restart): the store is asked.
        assert_eq!(
            sent.id_for_report(8, "+15551230001", 19_999 * 86_400 + 5),
            None
        );
    }

    /// Two parts of one day with the same TP-MR and recipient (the modem's
    /// 256 TP-MRs wrapped between them): each gets an id of its own, and
    /// each report, even both arriving late together, names its own part
    /// by the SMSC's time of taking it.
    #[test]
    fn parts_that_share_tp_mr_and_recipient_in_a_day_are_told_apart() {
        let mut sent = SentParts::default();
        let day = 20_000 * 86_400;
        let morning = sent.issue(42, "+15551230001", day + 8 * 3600);
        let other = sent.issue(42, "+15551239999", day + 9 * 3600);
        let evening = sent.issue(42, "+15551230001", day + 18 * 3600);
        assert_eq!(morning, sent_part_id(42, "+15551230001", 20_000));
        assert_eq!(other, sent_part_id(42, "+15551239999", 20_000));
        assert_eq!(evening, format!("{morning}:2"));
        // The SMSC's clock a minute off ours; the reports come at night.
        assert_eq!(
            sent.id_for_report(42, "15551230001", day + 18 * 3600 + 60),
            Some(evening)
        );
        assert_eq!(
            sent.id_for_report(42, "15551230001", day + 8 * 3600 + 60),
            Some(morning.clone())
        );
        assert_eq!(
            sent.id_for_report(42, "15551239999", day + 9 * 3600),
            Some(other)
        );
        assert_eq!(
            sent.issue(42, "+15551230001", day + 20 * 3600),
            format!("{morning}:3")
        );
    }

    /// A long message cut short by a restart: its accepted parts are in
    /// its cursor only. The next part with the same TP-MR to the same
    /// recipient that day gets an id of its own, not one of theirs.
    #[test]
    fn ids_a_cursor_kept_across_a_restart_are_not_given_again() {
        let day = 20_000;
        let now = day * 86_400 + 12 * 3600;
        let mut accepted = AcceptedParts::default();
        let first = sent_part_id(17, "+15551230001", day);
        let cursor = format!("0 17 {first}\n1 17 {first}:2\n2 19 not-an-id\n");
        accepted.restore("m", &cursor);
        let mut sent = SentParts::starting_at(now);
        sent.adopt(accepted.ids("m").iter().map(String::as_str));
        assert_eq!(sent.issue(17, "+15551230001", now), format!("{first}:3"));
        assert_eq!(
            sent.issue(19, "+15551230001", now),
            sent_part_id(19, "+15551230001", day),
            "another TP-MR is unaffected"
        );
        assert_eq!(
            split_sent_part_id(&format!("{first}:1")),
            None,
            "no :1 form"
        );
        assert_eq!(split_sent_part_id("mr:300:1:2"), None, "not a TP-MR");
    }

    /// The first of a day's colliding parts forgotten, the later ones not:
    /// the next one still gets an id of its own.
    #[test]
    fn an_id_is_not_issued_again_once_the_first_of_its_kind_is_forgotten() {
        let mut sent = SentParts::default();
        let day = 20_000 * 86_400;
        let first = sent.issue(9, "+15551230001", day);
        let second = sent.issue(9, "+15551230001", day + 60);
        for i in 0..SENT_MEMORY - 1 {
            sent.issue((i % 256) as u8, "+15551230002", day + 120);
        }
        assert!(sent.parts.iter().all(|p| p.id != first), "first forgotten");
        assert!(sent.parts.iter().any(|p| p.id == second), "second kept");
        assert_eq!(
            sent.issue(9, "+15551230001", day + 3600),
            format!("{first}:3")
        );
    }

    /// After a restart: the store's ids of a day the process did not see
    /// whole are asked for once per base, and then number the next part
    /// and name the reports as the lost memory would have.
    #[test]
    fn ids_sent_before_a_restart_are_relearned_once_and_used() {
        let day = 20_000;
        let noon = day * 86_400 + 12 * 3600;
        let mut sent = SentParts::starting_at(noon);
        let base = sent_part_id(42, "+15551230001", day);
        assert!(sent.needs_relearning(&base, day));
        assert!(sent.needs_relearning(&base, day - 1));
        assert!(!sent.needs_relearning(&base, day + 1), "a day seen whole");
        let morning_ms = (noon - 4 * 3600) * 1000;
        let late_morning_ms = (noon - 2 * 3600) * 1000;
        sent.relearn(
            &base,
            &[
                (base.clone(), morning_ms),
                (format!("{base}:2"), late_morning_ms),
                // Not of this family: skipped.
                (format!("{base}x"), morning_ms),
                (format!("{base}:two"), morning_ms),
            ],
        );
        assert!(!sent.needs_relearning(&base, day), "asked once");
        assert_eq!(sent.parts.len(), 2);
        assert_eq!(sent.issue(42, "+15551230001", noon), format!("{base}:3"));
        // Late reports, by the SMSC's time of taking each part.
        assert_eq!(
            sent.id_for_report(42, "15551230001", noon - 4 * 3600 + 30),
            Some(base.clone())
        );
        assert_eq!(
            sent.id_for_report(42, "15551230001", noon - 2 * 3600 + 30),
            Some(format!("{base}:2"))
        );
        // Relearning what is remembered already adds nothing.
        sent.relearn(&base, &[(base.clone(), morning_ms)]);
        assert_eq!(sent.parts.len(), 3);
    }

    /// Two parts as near the report's second as each other (a test's
    /// compressed day; a relearned part's time is its attempt's start):
    /// the report names the later one.
    #[test]
    fn a_tie_goes_to_the_part_sent_last() {
        let now = 20_000 * 86_400 + 600;
        let mut sent = SentParts::starting_at(now);
        let base = sent_part_id(5, "+15551230001", 20_000);
        sent.relearn(&base, &[(base.clone(), now * 1000 + 700)]);
        let second = sent.issue(5, "+15551230001", now);
        assert_eq!(second, format!("{base}:2"));
        assert_eq!(sent.id_for_report(5, "15551230001", now), Some(second));
    }

    #[test]
    fn a_memory_that_never_restarted_asks_nothing() {
        let sent = SentParts::default();
        assert!(!sent.needs_relearning(&sent_part_id(1, "+1555", 20_000), 20_000));
    }

    #[test]
    fn the_oldest_sent_parts_are_forgotten_past_the_memory() {
        let mut sent = SentParts::default();
        let first = sent.issue(1, "+15551230001", 100);
        for i in 0..SENT_MEMORY {
            sent.issue((i % 256) as u8, "+15551230002", 200);
        }
        assert_eq!(sent.parts.len(), SENT_MEMORY);
        // Forgotten: the store is asked (`nearest_sent`).
        assert_eq!(sent.id_for_report(1, "+15551230001", 100), None);
        assert!(sent.parts.iter().all(|p| p.to != "15551230001"));
        assert_eq!(nearest_sent(&[(first.clone(), 100_000)], 100), Some(first));
    }

    /// A busy modem: two parts of one day with the same TP-MR and
    /// recipient, then more parts than the memory holds. The next such part
    /// still gets an id of its own, and a late report on the second names
    /// it, from the store, not the newest part that shares its TP-MR.
    #[test]
    fn ids_stay_unique_and_reports_find_their_part_past_the_memory() {
        let mut sent = SentParts::default();
        let day = 20_000 * 86_400;
        let first = sent.issue(42, "+15551230001", day + 7 * 3600);
        let second = sent.issue(42, "+15551230001", day + 8 * 3600);
        for i in 0..SENT_MEMORY {
            sent.issue((i % 256) as u8, "+15551230002", day + 9 * 3600);
        }
        let third = sent.issue(42, "+15551230001", day + 19 * 3600);
        assert_ne!(third, first);
        assert_ne!(third, second);
        // The only part remembered is 11 hours off: not taken for it.
        assert_eq!(
            sent.id_for_report(42, "15551230001", day + 8 * 3600 + 5),
            None
        );
        let stored = [
            (first.clone(), (day + 7 * 3600) * 1000),
            (second.clone(), (day + 8 * 3600) * 1000),
            (third.clone(), (day + 19 * 3600) * 1000),
        ];
        assert_eq!(nearest_sent(&stored, day + 8 * 3600 + 5), Some(second));
        assert_eq!(nearest_sent(&[], day), None);
    }

    #[test]
    fn health_states() {
        let mut s = ModemStatus::default();
        assert_eq!(s.to_health().state, phonerelay_channel::HealthState::Down);
        s.connected = true;
        s.registered = true;
        s.signal_dbm = Some(-70);
        assert_eq!(s.to_health().state, phonerelay_channel::HealthState::Up);
        s.signal_dbm = Some(-110);
        assert_eq!(
            s.to_health().state,
            phonerelay_channel::HealthState::Degraded
        );
        assert_eq!(s.to_health().details["signal_dbm"], "-110");
    }

    fn full_sim() -> ModemStatus {
        let mut s = ModemStatus {
            connected: true,
            registered: true,
            signal_dbm: Some(-70),
            message_storage: Some(MemoryUsage {
                mem: Some("SM".into()),
                used: 30,
                total: 30,
            }),
            ..ModemStatus::default()
        };
        for index in 1..=3 {
            s.undecodable_stored
                .insert(("SM".into(), index), "0004".into());
        }
        s.undecodable_stored.insert(("ME".into(), 1), "0004".into());
        s
    }

    /// A full memory still sends: degraded, with the memory, its count,
    /// the undecodable messages waiting on it for the store, and what to
    /// do.
    #[test]
    fn a_full_message_storage_degrades_the_health_and_says_why() {
        let mut s = full_sim();
        let health = s.to_health();
        assert_eq!(health.state, phonerelay_channel::HealthState::Degraded);
        assert_eq!(
            health.summary,
            "SIM message storage full (30 of 30): new SMS wait at the network; \
             3 undecodable messages wait on it for want of the store (see \
             undecodable_stored); delete messages from it (a phone, or AT+CMGD) to make room"
        );
        assert_eq!(health.details["message_storage"], "SM");
        assert_eq!(health.measures["message_storage_used"], 30);
        assert_eq!(health.measures["message_storage_total"], 30);
        assert!(s.can_send());

        s.message_storage.as_mut().unwrap().used = 29;
        let health = s.to_health();
        assert_eq!(health.state, phonerelay_channel::HealthState::Up);
        assert_eq!(health.measures["message_storage_used"], 29);
    }

    /// Told full without a reading (a `+CMS ERROR: 322`): full all the
    /// same, until a reading shows room.
    #[test]
    fn a_memory_said_to_be_full_is_full_without_a_reading() {
        let mut s = full_sim();
        s.message_storage = None;
        s.undecodable_stored.clear();
        s.storage_full_said = Some("+CMS ERROR: 322 to a send".into());
        let health = s.to_health();
        assert_eq!(health.state, phonerelay_channel::HealthState::Degraded);
        assert_eq!(
            health.summary,
            "modem message storage full (+CMS ERROR: 322 to a send): new SMS wait at the \
             network; delete messages from it (a phone, or AT+CMGD) to make room"
        );
        assert_eq!(
            health.details["message_storage_full"],
            "+CMS ERROR: 322 to a send"
        );
        assert!(!health.measures.contains_key("message_storage_used"));
    }

    /// Only quantities become gauges: the SMSC's number reads as an
    /// integer but is an address.
    #[test]
    fn the_signal_is_a_measure_and_the_smsc_only_a_detail() {
        let s = ModemStatus {
            connected: true,
            registered: true,
            signal_dbm: Some(-81),
            smsc: Some("+15550000000".into()),
            ..ModemStatus::default()
        };
        let health = s.to_health();
        assert_eq!(health.details["smsc"], "+15550000000");
        assert_eq!(health.details["signal_dbm"], "-81");
        assert_eq!(
            health.measures.into_iter().collect::<Vec<_>>(),
            [("signal_dbm".to_string(), -81)]
        );
    }
}
