//! The record of a SIM PIN the SIM rejected, kept in the store as the
//! endpoint's cursor [`PIN_RECORD_CURSOR`], so that a restart (a crash, a
//! watchdog kill, a power cut) does not send the same wrong PIN again:
//! three wrong tries lock the SIM behind its PUK.
//!
//! The record holds no PIN, nor a plain hash of one (a 4 to 8 digit PIN's
//! SHA-256 is found by trying them all): only an HMAC-SHA256 of it under
//! a random key the daemon keeps outside the store ([`PinRecordKey`]), so
//! the store alone (a backup, a copy sent with a bug report) tells nothing
//! about the PIN.

use sha2::{Digest, Sha256};

/// The endpoint cursor that holds the record; absent while no rejection
/// stands.
pub const PIN_RECORD_CURSOR: &str = "sms-pin-rejected";

/// What a record's value starts with, so that a later format is told
/// apart from this one.
const FORMAT: &str = "v1";

/// Stands for an ICCID the modem did not give.
const NO_ICCID: &str = "-";

/// SHA-256's block size, the length HMAC pads its key to.
const BLOCK: usize = 64;

/// The secret the records' HMACs are made under (32 random bytes, kept by
/// the daemon in a private file of the state dir). Never printed.
#[derive(Clone)]
pub struct PinRecordKey([u8; 32]);

impl PinRecordKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn mac(&self, parts: &[&str]) -> String {
        // Each part is followed by a NUL, which none of them holds, so
        // ("ab", "c") and ("a", "bc") are different messages.
        let mut message = Vec::new();
        for part in parts {
            message.extend_from_slice(part.as_bytes());
            message.push(0);
        }
        to_hex(&hmac_sha256(&self.0, &message))
    }
}

impl std::fmt::Debug for PinRecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinRecordKey(****)")
    }
}

/// HMAC-SHA256 (RFC 2104) with a key no longer than a block.
fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut padded = [0u8; BLOCK];
    padded[..key.len()].copy_from_slice(key);
    let inner_pad: Vec<u8> = padded.iter().map(|b| b ^ 0x36).collect();
    let outer_pad: Vec<u8> = padded.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&inner_pad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&outer_pad)
        .chain_update(inner)
        .finalize()
        .into()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One PIN as sent to one SIM: what a rejection records, and what the
/// PIN about to be sent is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRecord {
    /// HMAC of the endpoint's phone_id and the PIN.
    pin: String,
    /// HMAC of the SIM's ICCID, when the modem gave it.
    iccid: Option<String>,
}

impl PinRecord {
    pub fn of(key: &PinRecordKey, phone_id: &str, pin: &str, iccid: Option<&str>) -> Self {
        Self {
            pin: key.mac(&["sms-pin", phone_id, pin]),
            iccid: iccid.map(|iccid| key.mac(&["sms-iccid", iccid])),
        }
    }

    /// The cursor's value.
    pub fn to_value(&self) -> String {
        let iccid = self.iccid.as_deref().unwrap_or(NO_ICCID);
        format!("{FORMAT} {} {iccid}", self.pin)
    }

    /// A cursor's value read back; `None` if it is not one this build
    /// writes.
    pub fn parse(value: &str) -> Option<Self> {
        let mut fields = value.split(' ');
        let (Some(FORMAT), Some(pin), Some(iccid), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return None;
        };
        Some(Self {
            pin: pin.to_string(),
            iccid: (iccid != NO_ICCID).then(|| iccid.to_string()),
        })
    }

    /// Whether this rejection forbids sending `attempt`: the same PIN, to
    /// the same SIM as far as one can tell. Only two ICCIDs known and
    /// different say that another SIM is in the slot now; one missing
    /// (the modem did not answer the question this time) must not let a
    /// wrong PIN through.
    pub fn forbids(&self, attempt: &PinRecord) -> bool {
        let other_sim = matches!((&self.iccid, &attempt.iccid), (Some(a), Some(b)) if a != b);
        self.pin == attempt.pin && !other_sim
    }
}

/// The ICCID in a modem's answer to `AT+CCID` or `AT+QCCID`: `+CCID:
/// 8944...`, `+QCCID: 8944...`, or the bare digits, quoted or not (the
/// last digit may be `F`, a padding nibble). `None` if no line holds one.
pub fn parse_iccid(lines: &[String]) -> Option<String> {
    lines.iter().find_map(|line| {
        let value = match line.split_once(':') {
            Some((prefix, value)) if prefix.trim_start().starts_with('+') => value,
            _ => line.as_str(),
        };
        let value = value.trim().trim_matches('"');
        let looks_like_iccid = (18..=22).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'F' || b == b'f');
        looks_like_iccid.then(|| value.to_ascii_uppercase())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> PinRecordKey {
        PinRecordKey::new([byte; 32])
    }

    /// RFC 4231 test case 2 has a 4-byte key; padded with zeros to 32
    /// bytes it is the same HMAC key (RFC 2104 pads it to a block).
    #[test]
    fn the_hmac_is_rfc_4231_s() {
        let mut padded = [0u8; 32];
        padded[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            to_hex(&hmac_sha256(&padded, b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_record_reads_back_as_written_and_holds_no_pin() {
        for iccid in [Some("89445000000000000017"), None] {
            let record = PinRecord::of(&key(1), "main", "1234", iccid);
            let value = record.to_value();
            assert!(!value.contains("1234"), "{value}");
            assert_eq!(PinRecord::parse(&value), Some(record));
        }
        assert_eq!(PinRecord::parse("1234"), None);
        assert_eq!(PinRecord::parse("v1 ab"), None);
    }

    #[test]
    fn a_record_forbids_the_same_pin_to_the_same_or_an_unknown_sim_only() {
        let k = key(1);
        let rejected = PinRecord::of(&k, "main", "1111", Some("8944"));
        assert!(rejected.forbids(&PinRecord::of(&k, "main", "1111", Some("8944"))));
        assert!(rejected.forbids(&PinRecord::of(&k, "main", "1111", None)));
        assert!(!rejected.forbids(&PinRecord::of(&k, "main", "2222", Some("8944"))));
        assert!(!rejected.forbids(&PinRecord::of(&k, "main", "1111", Some("8955"))));
        assert!(!rejected.forbids(&PinRecord::of(&k, "other", "1111", Some("8944"))));
        let without_iccid = PinRecord::of(&k, "main", "1111", None);
        assert!(without_iccid.forbids(&PinRecord::of(&k, "main", "1111", Some("8955"))));
        assert!(
            !rejected.forbids(&PinRecord::of(&key(2), "main", "1111", Some("8944"))),
            "another key makes another record"
        );
    }

    #[test]
    fn an_iccid_is_read_from_either_answer_form() {
        let lines = |l: &str| vec![l.to_string()];
        assert_eq!(
            parse_iccid(&lines("+CCID: 89445000000000000017")).as_deref(),
            Some("89445000000000000017")
        );
        assert_eq!(
            parse_iccid(&lines("+QCCID: 8944500000000000001f")).as_deref(),
            Some("8944500000000000001F")
        );
        assert_eq!(
            parse_iccid(&lines("\"89445000000000000017\"")).as_deref(),
            Some("89445000000000000017")
        );
        assert_eq!(parse_iccid(&lines("+CCID: ERROR")), None);
        assert_eq!(parse_iccid(&[]), None);
    }
}
