//! The few PDU operations this crate needs, over `phonerelay-sms-pdu`, so the
//! simulator, the driver and the adapter share one vocabulary.

pub use pdu::{Deliver, PduError, StatusClass, StatusReport, SubmitPart};
use phonerelay_sms_pdu as pdu;

/// Octets of TPDU in a full hex PDU (which starts with the SMSC part):
/// what `AT+CMGS=<n>` and `+CMGL: ...,<len>` count.
pub fn tpdu_len(hex: &str) -> Result<usize, PduError> {
    let bytes = pdu::decode_hex(hex)?;
    let smsc = *bytes.first().unwrap_or(&0) as usize;
    Ok(bytes.len().saturating_sub(1 + smsc))
}

/// A SUBMIT as the simulated network sees it.
pub struct DecodedSubmit {
    pub to: String,
    pub text: String,
    pub concat: Option<(u16, u8, u8)>,
    pub status_report_requested: bool,
    pub tpdu_len: usize,
}

pub fn decode_submit(hex: &str) -> Result<DecodedSubmit, PduError> {
    let tpdu_len = tpdu_len(hex)?;
    match pdu::decode(hex, pdu::Direction::MoToNetwork)? {
        pdu::Pdu::Submit(s) => Ok(DecodedSubmit {
            to: international(&s.destination),
            text: s.text().unwrap_or_default().to_string(),
            concat: s.concat().map(|c| (c.reference, c.total, c.sequence)),
            status_report_requested: s.status_report_request,
            tpdu_len,
        }),
        _ => Err(PduError::InvalidArgument {
            what: "pdu",
            reason: "not the expected message type".into(),
        }),
    }
}

/// How a modem writes the numbers the network gives it: in E.164 where it
/// can, so a reply from a handset matches the conversation recorded under
/// the `+…` number the relay sent to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Numbering {
    /// The home country of the modem's SIM (`country` in its config):
    /// numbers in national format are of that country.
    pub country: Option<phonenumber::country::Id>,
}

impl Numbering {
    /// Numbering for a modem whose config names `country` (an ISO 3166-1
    /// alpha-2 code); `None` if the code is not one libphonenumber knows.
    pub fn for_country(country: Option<&str>) -> Option<Self> {
        let country = match country {
            None => None,
            Some(code) => Some(code.parse().ok()?),
        };
        Some(Self { country })
    }

    /// The address as the daemon records it. International numbers get
    /// their `+`. With a home country, a national number (TON 2), or one of
    /// unknown type (TON 0: networks send national numbers with their trunk
    /// prefix, or international ones without `+`, this way) is written in
    /// E.164 if that gives a valid number of the country's plan. Anything
    /// else (a short code, an alphanumeric sender, no home country) is kept
    /// as the network gave it.
    pub fn sender(&self, address: &pdu::Address) -> String {
        let given = international(address);
        let local = matches!(
            address.type_of_number,
            pdu::TypeOfNumber::National | pdu::TypeOfNumber::Unknown
        );
        match self.country {
            Some(country) if local => e164_in(country, &given).unwrap_or(given),
            _ => given,
        }
    }
}

/// `number`, read as written in `country`, in E.164; `None` unless it is a
/// valid number there.
fn e164_in(country: phonenumber::country::Id, number: &str) -> Option<String> {
    let parsed = phonenumber::parse(Some(country), number).ok()?;
    phonenumber::is_valid(&parsed)
        .then(|| parsed.format().mode(phonenumber::Mode::E164).to_string())
}

/// `+` and digits for international numbers, as E.164 wants them.
pub fn international(address: &pdu::Address) -> String {
    if address.type_of_number == pdu::TypeOfNumber::International
        && !address.number.starts_with('+')
    {
        format!("+{}", address.number)
    } else {
        address.number.clone()
    }
}

/// DELIVER parts (hex, TPDU length) for a message from `from`.
pub fn encode_deliver(
    from: &str,
    text: &str,
    scts_unix: i64,
    reference: u8,
) -> Vec<(String, usize)> {
    let Ok(timestamp) = pdu::Timestamp::from_unix_seconds(scts_unix, 0) else {
        return Vec::new();
    };
    let opts = pdu::DeliverOptions {
        concat_reference: reference as u16,
        ..Default::default()
    };
    match pdu::encode_deliver(from, text, &timestamp, &opts) {
        Ok(parts) => parts
            .into_iter()
            .filter_map(|hex| tpdu_len(&hex).ok().map(|len| (hex, len)))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "simulator cannot encode inbound message");
            Vec::new()
        }
    }
}

/// 1990-01-01T00:00:00Z, the earliest SCTS the codec accepts.
const FIRST_PDU_INSTANT: i64 = 631_152_000;

/// A STATUS-REPORT (hex, TPDU length) for the part with TP-MR `mr`, with
/// TP-ST `status` (0x00 delivered, 0x20..=0x25 still trying, 0x46 expired).
pub fn encode_status_report(
    mr: u8,
    recipient: &str,
    status: u8,
    scts_unix: i64,
) -> (String, usize) {
    // A PDU year has two digits (1990-2089 here); a clock outside that
    // range gets the first representable instant rather than a panic.
    let ts = pdu::Timestamp::from_unix_seconds(scts_unix, 0)
        .or_else(|_| pdu::Timestamp::from_unix_seconds(FIRST_PDU_INSTANT, 0))
        .expect("1990-01-01 is representable in a PDU");
    let spec = pdu::StatusReportSpec {
        smsc: None,
        message_reference: mr,
        recipient: recipient.to_string(),
        service_centre_timestamp: ts,
        discharge_time: ts,
        status,
    };
    let hex = pdu::encode_status_report(&spec).unwrap_or_default();
    let len = tpdu_len(&hex).unwrap_or(0);
    (hex, len)
}

/// What a stored or delivered PDU turned out to be.
pub enum Incoming {
    Deliver(Box<Deliver>),
    Report(Box<StatusReport>),
    /// An SMS-SUBMIT (TP-MTI 01) stored on the SIM: an outbox copy or a
    /// draft that `AT+CMGL=4` ("ALL") lists with the inbox. Nothing received.
    StoredSubmit,
}

pub fn decode_incoming(hex: &str) -> Result<Incoming, PduError> {
    match pdu::decode(hex, pdu::Direction::MtFromNetwork)? {
        pdu::Pdu::Deliver(d) => Ok(Incoming::Deliver(Box::new(d))),
        pdu::Pdu::StatusReport(r) => Ok(Incoming::Report(Box::new(r))),
        pdu::Pdu::Submit(_) => Ok(Incoming::StoredSubmit),
    }
}

/// What a phone does with an SMS-DELIVER before showing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// A message for a person: committed (8-bit data as a placeholder).
    Keep,
    /// Not for a person: acknowledged (freed from the SIM) and not
    /// delivered. The reason is for the journal.
    Discard(&'static str),
}

/// TP-PID 0x40, "Short Message Type 0" (TS 23.040 9.2.3.9): the ME must
/// acknowledge it and may discard its contents ("silent SMS", pings).
const PID_TYPE_0: u8 = 0x40;

/// Whether `deliver` is something to give a person, as a phone decides:
/// a Type 0 message, one whose DCS says "discard message" (message
/// waiting group 1100, TS 23.038 §4) and one addressed to an application
/// port (WAP push / MMS notifications, OTA settings, TS 23.040
/// 9.2.3.24.3/4) never reach the inbox; no human can read them.
pub fn disposition(deliver: &Deliver) -> Disposition {
    if deliver.protocol_identifier == PID_TYPE_0 {
        return Disposition::Discard("type 0 (silent) message");
    }
    if deliver.data_coding.group == pdu::CodingGroup::MessageWaitingDiscard {
        return Disposition::Discard("message waiting indication, discard group");
    }
    if deliver
        .user_data
        .header
        .as_ref()
        .and_then(|h| h.ports())
        .is_some()
    {
        return Disposition::Discard("addressed to an application port (e.g. WAP push)");
    }
    Disposition::Keep
}

/// What stands for a DELIVER's SMSC time in ids and fingerprints: its Unix
/// seconds or, when its TP-SCTS is no valid time, a negative number made
/// of the octets as received. That is stable across re-reads of the same
/// PDU (so a re-read is still a duplicate) and never a real time (every
/// valid one is after 1990).
pub fn scts_key(deliver: &Deliver) -> i64 {
    match deliver.service_centre_timestamp {
        Some(t) => t.to_unix_seconds(),
        None => {
            let mut be = [0u8; 8];
            be[1..].copy_from_slice(&deliver.service_centre_timestamp_octets);
            -1 - i64::from_be_bytes(be)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(number: &str, type_of_number: pdu::TypeOfNumber) -> pdu::Address {
        pdu::Address {
            number: number.into(),
            type_of_number,
            numbering_plan: 1,
        }
    }

    #[test]
    fn national_and_unknown_numbers_are_written_in_e164_with_a_home_country() {
        use pdu::TypeOfNumber::*;
        let gb = Numbering::for_country(Some("GB")).unwrap();
        let cases = [
            // TON national, as 23.040 says (no trunk prefix) and as some
            // networks send it (with the trunk 0).
            ("7911123456", National, "+447911123456"),
            ("07911123456", National, "+447911123456"),
            // TON unknown: national with trunk prefix, international
            // without `+`, or with the international prefix.
            ("07911123456", Unknown, "+447911123456"),
            ("447911123456", Unknown, "+447911123456"),
            ("00447911123456", Unknown, "+447911123456"),
            ("0033612345678", Unknown, "+33612345678"),
            // Already international: as it is.
            ("447911123456", International, "+447911123456"),
            ("33612345678", International, "+33612345678"),
            // A short code is no number of the plan: kept.
            ("85050", Unknown, "85050"),
            ("InfoSMS", Alphanumeric, "InfoSMS"),
            ("123", Abbreviated, "123"),
        ];
        for (number, ton, expected) in cases {
            assert_eq!(
                gb.sender(&address(number, ton)),
                expected,
                "{number} {ton:?}"
            );
        }
        let us = Numbering::for_country(Some("US")).unwrap();
        assert_eq!(
            us.sender(&address("15551230001", Unknown)),
            "15551230001",
            "not a valid US number: kept"
        );
        assert_eq!(us.sender(&address("2025550143", National)), "+12025550143");
        assert_eq!(us.sender(&address("12025550143", Unknown)), "+12025550143");
    }

    #[test]
    fn without_a_home_country_numbers_are_kept_as_given() {
        let none = Numbering::default();
        let national = address("07911123456", pdu::TypeOfNumber::National);
        assert_eq!(none.sender(&national), "07911123456");
        let international = address("447911123456", pdu::TypeOfNumber::International);
        assert_eq!(none.sender(&international), "+447911123456");
    }

    fn deliver(hex: &str) -> Deliver {
        match decode_incoming(hex) {
            Ok(Incoming::Deliver(d)) => *d,
            _ => panic!("not a deliver: {hex}"),
        }
    }

    #[test]
    fn what_a_phone_would_not_show_is_discarded() {
        let hello = |pid: &str, dcs: &str| {
            deliver(&format!(
                "00040B912143658709F1{pid}{dcs}5111720000000005E8329BFD06"
            ))
        };
        assert_eq!(disposition(&hello("00", "00")), Disposition::Keep);
        // Type 0 ("silent SMS").
        assert!(matches!(
            disposition(&hello("40", "00")),
            Disposition::Discard(_)
        ));
        // Replace Short Message Type 1 (0x41) is shown, as on a phone.
        assert_eq!(disposition(&hello("41", "00")), Disposition::Keep);
        // DCS 1100xxxx: message waiting, discard message; 1101 (store) kept.
        assert!(matches!(
            disposition(&hello("00", "C0")),
            Disposition::Discard(_)
        ));
        assert_eq!(disposition(&hello("00", "D0")), Disposition::Keep);
        // WAP push (16-bit ports 2948/9200).
        let wap = deliver("00440B912143658709F10004511172000000000B0605040B8423F0DEADBEEF");
        assert!(matches!(disposition(&wap), Disposition::Discard(_)));
        // 8-bit ports (IEI 04) too.
        let port8 = deliver("00440B912143658709F100045111720000000007040402E2E2DEADBE");
        assert!(matches!(disposition(&port8), Disposition::Discard(_)));
        // 8-bit data without ports: kept (delivered as a placeholder).
        let binary = deliver("00040B912143658709F100045111720000000005DEADBEEFFF");
        assert_eq!(disposition(&binary), Disposition::Keep);
    }

    /// A stored SMS-SUBMIT (TP-MTI 01, outbox copy) is recognised as such,
    /// not taken for an undecodable PDU.
    #[test]
    fn a_stored_submit_is_recognised() {
        assert!(matches!(
            decode_incoming("0001000B917228001011F100000CC8329BFD065DDF72363904"),
            Ok(Incoming::StoredSubmit)
        ));
    }

    #[test]
    fn an_invalid_scts_has_a_stable_key_that_is_no_time() {
        let with = |scts: &str| deliver(&format!("00040B912143658709F10000{scts}05E8329BFD06"));
        assert_eq!(scts_key(&with("51117200000000")), 1_448_582_400);
        let zero = scts_key(&with("00000000000000"));
        assert!(zero < 0);
        assert_eq!(zero, scts_key(&with("00000000000000")), "stable");
        assert_ne!(zero, scts_key(&with("42401300000000")));
    }

    #[test]
    fn a_country_libphonenumber_does_not_know_is_refused() {
        assert!(Numbering::for_country(Some("GB")).is_some());
        assert!(Numbering::for_country(None).is_some());
        for bad in ["UK", "gb", "G", "", "GBR"] {
            assert!(Numbering::for_country(Some(bad)).is_none(), "{bad}");
        }
    }
}
