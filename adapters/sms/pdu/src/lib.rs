//! Pure SMS PDU codec (3GPP TS 23.040 / TS 23.038).
//!
//! Bytes and strings in, values out; no I/O, no clock (times are
//! arguments). Decoding never panics on any input: malformed PDUs give a
//! [`PduError`] that names the field and octet offset.
//!
//! ```
//! use phonerelay_sms_pdu::{decode, encode_submit, Direction, Pdu, SubmitOptions};
//!
//! let parts = encode_submit("+15555551234", "Hello [world] €5", &SubmitOptions::default()).unwrap();
//! assert_eq!(parts.len(), 1);
//! // AT+CMGS=<parts[0].tpdu_length>, then parts[0].hex
//! match decode(&parts[0].hex, Direction::MoToNetwork).unwrap() {
//!     Pdu::Submit(s) => assert_eq!(s.text(), Some("Hello [world] €5")),
//!     other => panic!("unexpected {other:?}"),
//! }
//! ```

mod address;
mod dcs;
mod deliver;
mod error;
mod gsm7;
mod hex;
mod reassembly;
mod status_report;
mod submit;
mod timestamp;
mod ucs2;
mod udh;
mod user_data;

use serde::Serialize;

pub use address::{Address, TypeOfNumber};
pub use dcs::{CodingGroup, DataCodingScheme, Encoding, MessageClass};
pub use deliver::{Deliver, DeliverOptions, encode_deliver};
pub use error::PduError;
pub use hex::{decode_hex, encode_hex};
pub use reassembly::{MessagePart, PartContent, ReassembledMessage, Reassembler};
pub use status_report::{
    Status, StatusClass, StatusReport, StatusReportSpec, encode_status_report,
};
pub use submit::{
    Submit, SubmitOptions, SubmitPart, ValidityPeriod, encode_submit,
    relative_validity_from_seconds, relative_validity_seconds,
};
pub use timestamp::Timestamp;
pub use udh::{ConcatInfo, InformationElement, UserDataHeader};
pub use user_data::UserData;

use error::Reader;

/// Which way the PDU travels; this decides how TP-MTI is read (the same
/// two bits mean different types in each direction, TS 23.040 9.2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Network -> phone: SMS-DELIVER and SMS-STATUS-REPORT as read from
    /// +CMT / +CMGR / +CMGL / +CDS.
    ///
    /// TP-MTI 01 here is formally SMS-SUBMIT-REPORT, which modems never show
    /// in PDU mode; what they do show with that MTI is an SMS-SUBMIT stored
    /// in the outbox (+CMGL of "STO" messages), so it is decoded as one.
    /// TP-MTI 11 (reserved) is processed as SMS-DELIVER, as 9.2.3.1 requires.
    MtFromNetwork,
    /// Phone -> network: SMS-SUBMIT as a modem receives it with AT+CMGS.
    MoToNetwork,
}

/// Any decoded PDU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Pdu {
    Deliver(Deliver),
    StatusReport(StatusReport),
    Submit(Submit),
}

/// Decodes a full PDU in hex, SMSC part first, as printed with AT+CMGF=0.
pub fn decode(hex: &str, direction: Direction) -> Result<Pdu, PduError> {
    decode_bytes(&decode_hex(hex)?, direction)
}

/// Like [`decode`], from octets.
pub fn decode_bytes(pdu: &[u8], direction: Direction) -> Result<Pdu, PduError> {
    let mut r = Reader::new(pdu);
    let smsc = address::decode_smsc(&mut r)?;
    let first = r.clone().u8("TP-MTI")?;
    let mti = first & 0x03;
    match (direction, mti) {
        (Direction::MtFromNetwork, 0b00 | 0b11) => {
            deliver::decode_deliver(&mut r, smsc).map(Pdu::Deliver)
        }
        (Direction::MtFromNetwork, 0b10) => {
            status_report::decode_status_report(&mut r, smsc).map(Pdu::StatusReport)
        }
        (_, submit::MTI_SUBMIT) => submit::decode_submit(&mut r, smsc).map(Pdu::Submit),
        (Direction::MoToNetwork, _) => Err(PduError::UnsupportedMessageType {
            mti,
            direction: match mti {
                0b00 => "mobile-originated PDUs (SMS-DELIVER-REPORT)",
                0b10 => "mobile-originated PDUs (SMS-COMMAND)",
                _ => "mobile-originated PDUs (reserved)",
            },
        }),
        (Direction::MtFromNetwork, _) => Err(PduError::UnsupportedMessageType {
            mti,
            direction: "network-originated PDUs",
        }),
    }
}

/// Size in octets of the SMSC part at the start of a full PDU, length octet
/// included (`00` -> 1, `07 91 ...` -> 8). Modems want the TPDU length
/// (total minus this) in AT+CMGS and count it the same way in +CMGL.
pub fn smsc_length_prefix(pdu: &[u8]) -> Result<usize, PduError> {
    let len = pdu.first().copied().ok_or(PduError::Truncated {
        field: "SMSC address length",
        offset: 0,
        needed: 1,
        available: 0,
    })?;
    let total = usize::from(len) + 1;
    if total > pdu.len() {
        return Err(PduError::Truncated {
            field: "SMSC address",
            offset: 1,
            needed: usize::from(len),
            available: pdu.len().saturating_sub(1),
        });
    }
    Ok(total)
}

/// The AT+CMGS length argument for a full PDU in hex: its octets minus the
/// SMSC part.
pub fn tpdu_length(hex: &str) -> Result<usize, PduError> {
    let pdu = decode_hex(hex)?;
    Ok(pdu.len() - smsc_length_prefix(&pdu)?)
}

/// What sending `text` would cost with default options: the alphabet that
/// would be chosen and the number of parts (may exceed 255, which
/// [`encode_submit`] would then refuse).
pub fn classify_text(text: &str) -> (Encoding, usize) {
    classify_text_with(text, false)
}

/// As [`classify_text`], with a 16-bit concatenation reference (one octet
/// more of header per part) when `concat_16bit`.
pub fn classify_text_with(text: &str, concat_16bit: bool) -> (Encoding, usize) {
    let enc = user_data::choose_encoding(text, false);
    // Cannot fail: the chosen alphabet can encode the text.
    let parts = user_data::count_parts(text, enc, concat_16bit).unwrap_or(0);
    (enc, parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify() {
        assert_eq!(classify_text("hello"), (Encoding::Gsm7, 1));
        assert_eq!(classify_text(&"a".repeat(161)), (Encoding::Gsm7, 2));
        assert_eq!(classify_text("привет"), (Encoding::Ucs2, 1));
        assert_eq!(classify_text(&"😀".repeat(35)), (Encoding::Ucs2, 1));
        assert_eq!(classify_text(&"😀".repeat(36)), (Encoding::Ucs2, 2));
    }

    #[test]
    fn smsc_prefix() {
        assert_eq!(smsc_length_prefix(&[0x00, 0x11]), Ok(1));
        assert_eq!(
            smsc_length_prefix(&[0x07, 0x91, 1, 2, 3, 4, 5, 6, 0x11]),
            Ok(8)
        );
        assert!(smsc_length_prefix(&[0x07, 0x91]).is_err());
        assert!(smsc_length_prefix(&[]).is_err());
        assert_eq!(
            tpdu_length("0001000B917228001011F100000CC8329BFD065DDF72363904"),
            Ok(24)
        );
    }
}
