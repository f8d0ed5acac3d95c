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
/// TP-ST `status` (0x00 delivered, 0x20..=0x3F still trying, 0x46 expired).
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
}

pub fn decode_incoming(hex: &str) -> Result<Incoming, PduError> {
    match pdu::decode(hex, pdu::Direction::MtFromNetwork)? {
        pdu::Pdu::Deliver(d) => Ok(Incoming::Deliver(Box::new(d))),
        pdu::Pdu::StatusReport(r) => Ok(Incoming::Report(Box::new(r))),
        pdu::Pdu::Submit(_) => Err(PduError::InvalidArgument {
            what: "pdu",
            reason: "not the expected message type".into(),
        }),
    }
}
