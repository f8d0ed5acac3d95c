//! SMS-DELIVER (TS 23.040 9.2.2.1): what the network hands us (+CMT,
//! +CMGR, +CMGL), and an encoder for the modem simulator and tests.

use serde::Serialize;

use crate::address::{self, Address};
use crate::dcs::{DataCodingScheme, Encoding, MessageClass};
use crate::error::{PduError, Reader};
use crate::hex::encode_hex;
use crate::timestamp::Timestamp;
use crate::udh::{ConcatInfo, InformationElement, UserDataHeader};
use crate::user_data::{self, Segment, UserData};

/// A decoded SMS-DELIVER.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deliver {
    pub smsc: Option<Address>,
    /// TP-MMS inverted: true when the SC has more messages waiting.
    pub more_messages_to_send: bool,
    pub loop_prevention: bool,
    /// TP-SRI: the sender asked for a status report.
    pub status_report_indication: bool,
    pub reply_path: bool,
    pub originator: Address,
    pub protocol_identifier: u8,
    pub data_coding: DataCodingScheme,
    /// TP-SCTS, or `None` when its octets are no valid time (a non-BCD
    /// nibble, month 0, 31 April...). 23.040 gives no rule to reject the
    /// message for that, and a phone shows it anyway: the rest is decoded
    /// and the receiver uses its own arrival time.
    pub service_centre_timestamp: Option<Timestamp>,
    /// The seven TP-SCTS octets as received, valid or not: what still tells
    /// two messages apart when the time itself is unknown.
    pub service_centre_timestamp_octets: [u8; 7],
    pub user_data: UserData,
}

impl Deliver {
    pub fn text(&self) -> Option<&str> {
        self.user_data.text()
    }

    pub fn concat(&self) -> Option<ConcatInfo> {
        self.user_data.concat()
    }
}

/// Decodes the TPDU of an SMS-DELIVER (reader at the first octet).
pub(crate) fn decode_deliver(
    r: &mut Reader<'_>,
    smsc: Option<Address>,
) -> Result<Deliver, PduError> {
    let first = r.u8("TP-MTI")?;
    let originator = address::decode_tp_address(r, "TP-OA")?;
    let protocol_identifier = r.u8("TP-PID")?;
    let data_coding = DataCodingScheme::decode(r.u8("TP-DCS")?);
    let scts_offset = r.offset();
    let scts = r.take_array::<7>("TP-SCTS")?;
    // An invalid time stamp must not cost the message (see the field).
    let service_centre_timestamp = Timestamp::from_octets(scts, "TP-SCTS", scts_offset).ok();
    let user_data = user_data::decode_user_data(
        r,
        first & 0x40 != 0,
        &data_coding,
        user_data::Truncation::Lenient,
    )?;
    Ok(Deliver {
        smsc,
        more_messages_to_send: first & 0x04 == 0,
        loop_prevention: first & 0x08 != 0,
        status_report_indication: first & 0x20 != 0,
        reply_path: first & 0x80 != 0,
        originator,
        protocol_identifier,
        data_coding,
        service_centre_timestamp,
        service_centre_timestamp_octets: scts,
        user_data,
    })
}

/// Options for [`encode_deliver`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeliverOptions {
    /// SMSC to put in front; `None` writes `00`.
    pub smsc: Option<String>,
    /// Alphabet; `None` picks GSM 7-bit or UCS-2 automatically. `EightBit`
    /// sends the UTF-8 octets of the text as data.
    pub encoding: Option<Encoding>,
    pub concat_reference: u16,
    pub concat_16bit: bool,
    pub status_report_indication: bool,
    pub message_class: Option<MessageClass>,
}

/// Encodes an SMS-DELIVER, split into concatenated parts when needed.
/// Returns full PDUs as a modem prints them (SMSC part first), uppercase hex.
/// `originator` is a number (`+` = international) or alphanumeric text.
pub fn encode_deliver(
    originator: &str,
    text: &str,
    timestamp: &Timestamp,
    opts: &DeliverOptions,
) -> Result<Vec<String>, PduError> {
    let oa = address::encode_tp_address(&Address::parse_originator(originator)?)?;
    let smsc = opts
        .smsc
        .as_deref()
        .map(|s| Address::parse_number(s, crate::address::TypeOfNumber::Unknown))
        .transpose()?;
    let smsc_octets = address::encode_smsc(smsc.as_ref())?;
    let scts = timestamp.to_octets()?;
    let encoding = opts
        .encoding
        .unwrap_or_else(|| user_data::choose_encoding(text, false));
    let (segments, total) = user_data::segment_counted(text, encoding, opts.concat_16bit)?;
    let dcs = DataCodingScheme::encode(encoding, opts.message_class);

    let mut out = Vec::with_capacity(segments.len());
    for (seq, seg) in (1u8..=255).zip(segments.iter()) {
        out.push(encode_one(
            &smsc_octets,
            &oa,
            dcs,
            &scts,
            seg,
            (total > 1)
                .then(|| ConcatInfo::part(opts.concat_reference, opts.concat_16bit, total, seq)),
            opts.status_report_indication,
        ));
    }
    Ok(out)
}

fn encode_one(
    smsc: &[u8],
    oa: &[u8],
    dcs: u8,
    scts: &[u8; 7],
    seg: &Segment,
    concat: Option<ConcatInfo>,
    sri: bool,
) -> String {
    let header = concat.map(|c| UserDataHeader {
        elements: vec![InformationElement::Concat(c)],
    });
    let (udl, ud) = user_data::encode_user_data(header.as_ref(), seg);
    // MTI 00; TP-MMS set = no more messages waiting.
    let mut first = 0x04;
    if sri {
        first |= 0x20;
    }
    if header.is_some() {
        first |= 0x40;
    }
    let mut pdu = smsc.to_vec();
    pdu.push(first);
    pdu.extend_from_slice(oa);
    pdu.push(0x00);
    pdu.push(dcs);
    pdu.extend_from_slice(scts);
    pdu.push(udl);
    pdu.extend(ud);
    encode_hex(&pdu)
}

#[cfg(test)]
mod tests {
    use crate::{Direction, Pdu, decode};

    fn deliver(hex: &str) -> super::Deliver {
        match decode(hex, Direction::MtFromNetwork) {
            Ok(Pdu::Deliver(d)) => d,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// An invalid TP-SCTS costs the time, not the message.
    #[test]
    fn invalid_scts_decodes_with_unknown_time() {
        for scts in [
            "00000000000000", // month 0
            "42401300000000", // 2024-04-31
            "F1117200000000", // year nibble not BCD
            "511172000000A0", // time-zone units digit 0xA
        ] {
            let hex = format!("00040B912143658709F10000{scts}05E8329BFD06");
            let d = deliver(&hex);
            assert_eq!(d.service_centre_timestamp, None, "{scts}");
            assert_eq!(d.text(), Some("hello"), "{scts}");
            assert_eq!(d.originator.number, "+12345678901");
            assert_eq!(
                crate::encode_hex(&d.service_centre_timestamp_octets),
                scts,
                "raw octets kept"
            );
        }
        let valid = deliver("00040B912143658709F100005111720000000005E8329BFD06");
        assert!(valid.service_centre_timestamp.is_some());
    }
}
