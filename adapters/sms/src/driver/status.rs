//! Modem health as the driver last saw it, and the ids that tie delivery
//! reports to sent parts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use phonerelay_channel::ChannelHealth;

/// Below this the link works but messages start to fail.
pub const WEAK_SIGNAL_DBM: i16 = -105;
/// Sent-part ids remembered for matching delivery reports: well over the
/// 256 TP-MR values, so a report matches the latest part with its MR.
const SENT_MEMORY: usize = 1024;
/// Partly sent messages remembered for a retry to resume.
const PARTIAL_MEMORY: usize = 256;

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
}

impl ModemStatus {
    pub fn to_health(&self) -> ChannelHealth {
        let mut health = if !self.connected {
            ChannelHealth::down(if self.note.is_empty() {
                "modem not connected"
            } else {
                &self.note
            })
        } else if !self.registered {
            ChannelHealth::degraded("not registered on the network")
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
/// the in-memory map below is gone) can still be matched from the report's
/// own SMSC timestamp, which is the time of sending.
pub fn sent_part_id(mr: u8, to: &str, unix_day: i64) -> String {
    format!("mr:{mr}:{}:{unix_day}", digits(to))
}

/// Ids of recently sent parts by TP-MR, so a report sent across midnight
/// still names the id `send` returned.
#[derive(Default)]
pub struct SentParts {
    by_mr: HashMap<u8, (String, String)>,
    order: std::collections::VecDeque<u8>,
}

impl SentParts {
    pub fn record(&mut self, mr: u8, to: &str, id: String) {
        self.by_mr.insert(mr, (digits(to), id));
        self.order.push_back(mr);
        while self.order.len() > SENT_MEMORY {
            self.order.pop_front();
        }
    }

    /// The id for a report on part `mr` sent to `recipient` whose SMSC
    /// timestamp is `scts_unix`.
    pub fn id_for_report(&self, mr: u8, recipient: &str, scts_unix: i64) -> String {
        match self.by_mr.get(&mr) {
            Some((to, id)) if *to == digits(recipient) => id.clone(),
            _ => sent_part_id(mr, recipient, scts_unix.div_euclid(86_400)),
        }
    }
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
/// with the same concat reference, so a resumed message joins on the
/// handset). The driver writes it as each part is accepted — in time, or by
/// a late `+CMGS` after AT+CMGS timed out — and reads it when it takes a
/// request, so a retry queued behind that late answer still skips the part;
/// the adapter reads it to build the receipt. In memory only, and the
/// oldest messages are forgotten past [`PARTIAL_MEMORY`].
#[derive(Debug, Default)]
pub struct AcceptedParts {
    by_message: HashMap<String, BTreeMap<usize, AcceptedPart>>,
    order: VecDeque<String>,
}

impl AcceptedParts {
    pub fn record(&mut self, message_id: &str, index: usize, part: AcceptedPart) {
        if !self.by_message.contains_key(message_id) {
            while self.order.len() >= PARTIAL_MEMORY {
                if let Some(oldest) = self.order.pop_front() {
                    self.by_message.remove(&oldest);
                }
            }
            self.order.push_back(message_id.to_string());
        }
        self.by_message
            .entry(message_id.to_string())
            .or_default()
            .insert(index, part);
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

    /// The external ids of parts `0..total` in order, once all are accepted.
    pub fn complete(&self, message_id: &str, total: usize) -> Option<Vec<String>> {
        let parts = self.by_message.get(message_id)?;
        (0..total)
            .map(|i| parts.get(&i).map(|p| p.external_id.clone()))
            .collect()
    }

    pub fn forget(&mut self, message_id: &str) {
        if self.by_message.remove(message_id).is_some() {
            self.order.retain(|m| m != message_id);
        }
    }

    /// The message's accepted parts as the text of its store cursor: one
    /// `index mr external_id` line per part (ids hold no whitespace).
    pub fn to_cursor(&self, message_id: &str) -> String {
        self.by_message
            .get(message_id)
            .into_iter()
            .flatten()
            .map(|(index, part)| format!("{index} {} {}\n", part.mr, part.external_id))
            .collect()
    }

    /// Take back what [`Self::to_cursor`] wrote, after a restart; lines that
    /// do not parse are skipped (their parts are sent again).
    pub fn restore(&mut self, message_id: &str, cursor: &str) {
        for line in cursor.lines() {
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
    }
}

/// The store cursor (under the endpoint's scope) that keeps the accepted
/// parts of a long message across a restart, until the message is sent or
/// fails here, or the daemon sees it end otherwise (expired, cancelled).
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
        let id = sent_part_id(7, "+15551230001", 19_999);
        sent.record(7, "+15551230001", id.clone());
        // Report stamped the next day, recipient without '+'.
        assert_eq!(sent.id_for_report(7, "15551230001", 20_000 * 86_400), id);
        // Unknown MR (e.g. after a restart): derived from the report.
        assert_eq!(
            sent.id_for_report(8, "+15551230001", 19_999 * 86_400 + 5),
            sent_part_id(8, "+15551230001", 19_999)
        );
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
