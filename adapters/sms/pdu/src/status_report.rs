//! SMS-STATUS-REPORT (TS 23.040 9.2.2.3) and the TP-ST classification
//! (9.2.3.15).

use serde::Serialize;

use crate::address::{self, Address, TypeOfNumber};
use crate::dcs::DataCodingScheme;
use crate::error::{PduError, Reader};
use crate::hex::encode_hex;
use crate::timestamp::Timestamp;
use crate::user_data::{self, UserData};

/// What a TP-ST value means for the message it reports on. Each group's
/// SC-specific values (its upper half) share the group's meaning; the
/// reserved ones in between are taken as 0x63 (see [`Status::from_raw`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusClass {
    /// 0x00..=0x02, SC-specific 0x10..=0x1F: transaction completed
    /// (delivered / forwarded / replaced).
    Delivered,
    /// 0x20..=0x25, SC-specific 0x30..=0x3F: temporary error, the SC is
    /// still trying.
    StillTrying,
    /// 0x40..=0x49, SC-specific 0x50..=0x5F: permanent error, the SC gave
    /// up.
    FailedPermanent,
    /// 0x60..=0x65, SC-specific 0x70..=0x7F, and every reserved value:
    /// temporary error, but the SC is not trying any more.
    FailedTemporaryGaveUp,
}

/// A TP-ST value with its classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Status {
    pub raw: u8,
    pub class: StatusClass,
    pub description: &'static str,
}

impl Status {
    /// 9.2.3.15. Reserved values (0x03..=0x0F, 0x26..=0x2F, 0x4A..=0x4F,
    /// 0x66..=0x6F, 0x80..=0xFF) the spec tells the SME to interpret as
    /// "service rejected" (0x63), so they are classified like 0x63 while
    /// `raw` keeps what was received. Taken by their group instead, one in
    /// 0x03..=0x0F would pass a failure off as a delivery, and one in
    /// 0x26..=0x2F would leave the message waiting for an outcome the SC
    /// never sends.
    pub fn from_raw(raw: u8) -> Status {
        let class = match raw {
            0x00..=0x02 | 0x10..=0x1F => StatusClass::Delivered,
            0x20..=0x25 | 0x30..=0x3F => StatusClass::StillTrying,
            0x40..=0x49 | 0x50..=0x5F => StatusClass::FailedPermanent,
            _ => StatusClass::FailedTemporaryGaveUp,
        };
        let description = match raw {
            0x00 => "short message received by the SME",
            0x01 => "forwarded to the SME but delivery could not be confirmed",
            0x02 => "replaced by the SC",
            0x10..=0x1F => "completed (SC-specific)",
            0x20 | 0x60 => "congestion",
            0x21 | 0x61 => "SME busy",
            0x22 | 0x62 => "no response from SME",
            0x23 | 0x63 => "service rejected",
            0x24 | 0x44 | 0x64 => "quality of service not available",
            0x25 | 0x65 => "error in SME",
            0x30..=0x3F | 0x50..=0x5F | 0x70..=0x7F => "SC-specific error",
            0x40 => "remote procedure error",
            0x41 => "incompatible destination",
            0x42 => "connection rejected by SME",
            0x43 => "not obtainable",
            0x45 => "no interworking available",
            0x46 => "SM validity period expired",
            0x47 => "SM deleted by originating SME",
            0x48 => "SM deleted by SC administration",
            0x49 => "SM does not exist",
            _ => "reserved (treated as service rejected)",
        };
        Status {
            raw,
            class,
            description,
        }
    }
}

/// A decoded SMS-STATUS-REPORT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    pub smsc: Option<Address>,
    pub more_messages_to_send: bool,
    pub loop_prevention: bool,
    /// TP-SRQ: false = report on an SMS-SUBMIT, true = on an SMS-COMMAND.
    pub status_report_qualifier: bool,
    /// TP-MR of the SMS-SUBMIT this reports on (the +CMGS: <mr> value).
    pub message_reference: u8,
    pub recipient: Address,
    /// TP-SCTS and TP-DT, each `None` when its octets are no valid time:
    /// the status itself is still worth having (see `Deliver`).
    pub service_centre_timestamp: Option<Timestamp>,
    pub discharge_time: Option<Timestamp>,
    pub status: Status,
    pub protocol_identifier: Option<u8>,
    pub data_coding: Option<DataCodingScheme>,
    pub user_data: Option<UserData>,
}

/// Decodes the TPDU of an SMS-STATUS-REPORT.
///
/// Leniency: the optional part after TP-ST (TP-PI and what it announces,
/// 9.2.3.27) is best-effort. Real modems pad stored reports with 0xFF or
/// zeros (e.g. the ZTE and Huawei captures in Gammu's test data); if that
/// part does not parse, it is ignored rather than failing the whole report,
/// whose mandatory fields are all valid by then.
pub(crate) fn decode_status_report(
    r: &mut Reader<'_>,
    smsc: Option<Address>,
) -> Result<StatusReport, PduError> {
    let first = r.u8("TP-MTI")?;
    let message_reference = r.u8("TP-MR")?;
    let recipient = address::decode_tp_address(r, "TP-RA")?;
    let off = r.offset();
    let scts = Timestamp::from_octets(r.take_array::<7>("TP-SCTS")?, "TP-SCTS", off).ok();
    let off = r.offset();
    let dt = Timestamp::from_octets(r.take_array::<7>("TP-DT")?, "TP-DT", off).ok();
    let status = Status::from_raw(r.u8("TP-ST")?);

    let mut report = StatusReport {
        smsc,
        more_messages_to_send: first & 0x04 == 0,
        loop_prevention: first & 0x08 != 0,
        status_report_qualifier: first & 0x20 != 0,
        message_reference,
        recipient,
        service_centre_timestamp: scts,
        discharge_time: dt,
        status,
        protocol_identifier: None,
        data_coding: None,
        user_data: None,
    };
    let mut optional = r.clone();
    if let Ok((pid, dcs, ud)) = decode_optional(&mut optional, first & 0x40 != 0) {
        report.protocol_identifier = pid;
        report.data_coding = dcs;
        report.user_data = ud;
    }
    Ok(report)
}

type Optional = (Option<u8>, Option<DataCodingScheme>, Option<UserData>);

fn decode_optional(r: &mut Reader<'_>, udhi: bool) -> Result<Optional, PduError> {
    if r.remaining() == 0 {
        return Ok((None, None, None));
    }
    let pi = r.u8("TP-PI")?;
    // Bit 7 extends TP-PI with further octets whose bits are all reserved.
    let mut ext = pi;
    while ext & 0x80 != 0 {
        ext = r.u8("TP-PI")?;
    }
    let pid = if pi & 0x01 != 0 {
        Some(r.u8("TP-PID")?)
    } else {
        None
    };
    // 9.2.3.27: without TP-DCS the default alphabet applies.
    let dcs = if pi & 0x02 != 0 {
        Some(DataCodingScheme::decode(r.u8("TP-DCS")?))
    } else {
        None
    };
    let ud = if pi & 0x04 != 0 {
        let effective = dcs.unwrap_or_else(|| DataCodingScheme::decode(0));
        Some(user_data::decode_user_data(
            r,
            udhi,
            &effective,
            user_data::Truncation::Reject,
        )?)
    } else {
        None
    };
    Ok((pid, dcs, ud))
}

/// Fields for [`encode_status_report`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReportSpec {
    pub smsc: Option<String>,
    pub message_reference: u8,
    /// The number the original SMS-SUBMIT was sent to.
    pub recipient: String,
    pub service_centre_timestamp: Timestamp,
    pub discharge_time: Timestamp,
    /// TP-ST, e.g. 0x00 delivered, 0x46 validity expired.
    pub status: u8,
}

/// Encodes an SMS-STATUS-REPORT as a modem prints it (+CDS), uppercase hex.
pub fn encode_status_report(spec: &StatusReportSpec) -> Result<String, PduError> {
    let smsc = spec
        .smsc
        .as_deref()
        .map(|s| Address::parse_number(s, TypeOfNumber::Unknown))
        .transpose()?;
    let recipient = Address::parse_number(&spec.recipient, TypeOfNumber::Unknown)?;
    let mut pdu = address::encode_smsc(smsc.as_ref())?;
    // MTI 10, TP-MMS set (no more messages), TP-SRQ 0 (report on a SUBMIT).
    pdu.push(0x06);
    pdu.push(spec.message_reference);
    pdu.extend(address::encode_tp_address(&recipient)?);
    pdu.extend_from_slice(&spec.service_centre_timestamp.to_octets()?);
    pdu.extend_from_slice(&spec.discharge_time.to_octets()?);
    pdu.push(spec.status);
    Ok(encode_hex(&pdu))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An invalid TP-SCTS or TP-DT leaves that time unknown; the status
    /// is still reported.
    #[test]
    fn invalid_times_decode_as_unknown() {
        let report = |hex: &str| match crate::decode(hex, crate::Direction::MtFromNetwork) {
            Ok(crate::Pdu::StatusReport(r)) => r,
            other => panic!("unexpected {other:?}"),
        };
        let pdu = |scts: &str, dt: &str, st: &str| format!("00062A0B912143658709F1{scts}{dt}{st}");
        let r = report(&pdu("51117200000000", "00000000000000", "40"));
        assert!(r.service_centre_timestamp.is_some());
        assert_eq!(r.discharge_time, None);
        assert_eq!(r.status.class, StatusClass::FailedPermanent);
        assert_eq!(r.message_reference, 0x2A);
        let r = report(&pdu("42401300000000", "51117200000000", "00"));
        assert_eq!(r.service_centre_timestamp, None, "31 April");
        assert!(r.discharge_time.is_some());
        assert_eq!(r.status.class, StatusClass::Delivered);
    }

    /// An SMS-STATUS-REPORT for TP-MR 7 to +15551230001 with TP-ST `st`.
    fn report_with_status(st: &str) -> StatusReport {
        let hex = format!("0006070B915155210300F14210102100000042101021000000{st}");
        match crate::decode(&hex, crate::Direction::MtFromNetwork) {
            Ok(crate::Pdu::StatusReport(r)) => r,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// 9.2.3.15: an SME shall take a reserved TP-ST as 0x63, service
    /// rejected (temporary error, the SC no longer trying): a final
    /// failure, whichever group's range it lies in, never a delivery nor
    /// an interim report; the value received is kept.
    #[test]
    fn reserved_statuses_are_taken_as_service_rejected() {
        for (st, raw) in [
            ("03", 0x03),
            ("05", 0x05),
            ("0F", 0x0F),
            ("26", 0x26),
            ("28", 0x28),
            ("2F", 0x2F),
            ("4A", 0x4A),
            ("4F", 0x4F),
            ("66", 0x66),
            ("6F", 0x6F),
            ("80", 0x80),
            ("FF", 0xFF),
        ] {
            let status = report_with_status(st).status;
            assert_eq!(status.raw, raw);
            assert_eq!(
                status.class,
                StatusClass::FailedTemporaryGaveUp,
                "TP-ST {st}"
            );
            assert_eq!(
                status.description, "reserved (treated as service rejected)",
                "TP-ST {st}"
            );
        }
    }

    /// The values a range reserves for the SC's own use keep the meaning
    /// of their group.
    #[test]
    fn sc_specific_statuses_keep_their_group() {
        for (st, class) in [
            ("10", StatusClass::Delivered),
            ("1F", StatusClass::Delivered),
            ("30", StatusClass::StillTrying),
            ("3F", StatusClass::StillTrying),
            ("50", StatusClass::FailedPermanent),
            ("5F", StatusClass::FailedPermanent),
            ("70", StatusClass::FailedTemporaryGaveUp),
            ("7F", StatusClass::FailedTemporaryGaveUp),
        ] {
            assert_eq!(report_with_status(st).status.class, class, "TP-ST {st}");
        }
    }

    #[test]
    fn classification_boundaries() {
        let c = |v| Status::from_raw(v).class;
        assert_eq!(c(0x00), StatusClass::Delivered);
        assert_eq!(c(0x02), StatusClass::Delivered);
        assert_eq!(c(0x03), StatusClass::FailedTemporaryGaveUp);
        assert_eq!(c(0x1F), StatusClass::Delivered);
        assert_eq!(c(0x20), StatusClass::StillTrying);
        assert_eq!(c(0x25), StatusClass::StillTrying);
        assert_eq!(c(0x26), StatusClass::FailedTemporaryGaveUp);
        assert_eq!(c(0x3F), StatusClass::StillTrying);
        assert_eq!(c(0x40), StatusClass::FailedPermanent);
        assert_eq!(c(0x46), StatusClass::FailedPermanent);
        assert_eq!(c(0x49), StatusClass::FailedPermanent);
        assert_eq!(c(0x4A), StatusClass::FailedTemporaryGaveUp);
        assert_eq!(c(0x5F), StatusClass::FailedPermanent);
        assert_eq!(c(0x60), StatusClass::FailedTemporaryGaveUp);
        assert_eq!(c(0x7F), StatusClass::FailedTemporaryGaveUp);
        assert_eq!(c(0xFF), StatusClass::FailedTemporaryGaveUp);
        assert_eq!(
            Status::from_raw(0x46).description,
            "SM validity period expired"
        );
    }
}
