//! SMS-SUBMIT (TS 23.040 9.2.2.2): encoding what we send with AT+CMGS, and
//! decoding it (what a modem, or our modem simulator, receives).

use std::time::Duration;

use serde::Serialize;

use crate::address::{self, Address, TypeOfNumber};
use crate::dcs::{DataCodingScheme, Encoding, MessageClass};
use crate::error::{PduError, Reader};
use crate::hex::encode_hex;
use crate::timestamp::Timestamp;
use crate::udh::{ConcatInfo, InformationElement, UserDataHeader};
use crate::user_data::{self, UserData};

/// TP-MTI of SMS-SUBMIT (9.2.3.1).
pub(crate) const MTI_SUBMIT: u8 = 0b01;

/// Options for [`encode_submit`]. `Default` gives: modem's SMSC, automatic
/// alphabet, no status report, no validity period, TP-MR 0, 8-bit
/// concatenation reference 0.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubmitOptions {
    /// SMSC number; `None` writes the `00` octet ("use the modem's AT+CSCA").
    pub smsc: Option<String>,
    /// Use UCS-2 even if the text fits GSM 7-bit.
    pub force_ucs2: bool,
    /// TP-SRR: ask the SC for a status report.
    pub request_status_report: bool,
    /// TP-RD: ask the SC to reject a duplicate (same TP-MR and TP-DA).
    pub reject_duplicates: bool,
    /// Relative TP-VP. Rounded *up* to the next representable step so the
    /// network keeps the message at least as long as asked; at least 5
    /// minutes; more than 63 weeks is an error.
    pub validity: Option<Duration>,
    /// TP-MR. Normally 0: modems overwrite it with their own counter.
    pub message_reference: u8,
    /// Concatenation reference shared by all parts of one message. With the
    /// 8-bit element only the low 8 bits are used. Callers should vary it
    /// per message (e.g. a counter) so receivers can tell messages apart.
    pub concat_reference: u16,
    /// Use the 16-bit reference element (IEI 0x08) instead of IEI 0x00.
    pub concat_16bit: bool,
    pub message_class: Option<MessageClass>,
    /// Type of number for numbers written without `+` (SMSC included):
    /// normally `Unknown`; `National` for networks that want it.
    pub local_number_type: Option<TypeOfNumber>,
}

/// One encoded part, ready for `AT+CMGS=<tpdu_length>` followed by `hex`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubmitPart {
    /// Full PDU (SMSC part + TPDU) as uppercase hex.
    pub hex: String,
    /// TPDU length in octets, excluding the SMSC part: the AT+CMGS argument.
    pub tpdu_length: usize,
    /// 1-based part number.
    pub part_number: u8,
    pub total_parts: u8,
    pub encoding: Encoding,
}

/// TP-VP formats (9.2.3.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum ValidityPeriod {
    Relative {
        raw: u8,
        seconds: u64,
    },
    Absolute {
        timestamp: Timestamp,
    },
    /// Enhanced format (9.2.3.12.3), kept raw.
    Enhanced {
        #[serde(serialize_with = "crate::hex::serialize_hex")]
        raw: Vec<u8>,
    },
}

/// A decoded SMS-SUBMIT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Submit {
    pub smsc: Option<Address>,
    pub reject_duplicates: bool,
    pub status_report_request: bool,
    pub reply_path: bool,
    pub message_reference: u8,
    pub destination: Address,
    pub protocol_identifier: u8,
    pub data_coding: DataCodingScheme,
    pub validity_period: Option<ValidityPeriod>,
    pub user_data: UserData,
}

impl Submit {
    pub fn text(&self) -> Option<&str> {
        self.user_data.text()
    }

    pub fn concat(&self) -> Option<ConcatInfo> {
        self.user_data.concat()
    }
}

/// Relative TP-VP value -> seconds (9.2.3.12.1).
pub fn relative_validity_seconds(vp: u8) -> u64 {
    let vp = u64::from(vp);
    match vp {
        0..=143 => (vp + 1) * 5 * 60,
        144..=167 => 12 * 3600 + (vp - 143) * 30 * 60,
        168..=196 => (vp - 166) * 86_400,
        _ => (vp - 192) * 7 * 86_400,
    }
}

/// Seconds -> the smallest relative TP-VP that is at least that long.
pub fn relative_validity_from_seconds(seconds: u64) -> Result<u8, PduError> {
    (0u8..=255)
        .find(|&vp| relative_validity_seconds(vp) >= seconds)
        .ok_or_else(|| PduError::InvalidArgument {
            what: "validity",
            reason: format!("{seconds} s exceeds the 63-week maximum"),
        })
}

/// Encodes `text` to `to` as one or more SMS-SUBMIT PDUs.
pub fn encode_submit(
    to: &str,
    text: &str,
    opts: &SubmitOptions,
) -> Result<Vec<SubmitPart>, PduError> {
    let local = opts.local_number_type.unwrap_or(TypeOfNumber::Unknown);
    let destination = Address::parse_number(to, local)?;
    let smsc = opts
        .smsc
        .as_deref()
        .map(|s| Address::parse_number(s, local))
        .transpose()?;
    let smsc_octets = address::encode_smsc(smsc.as_ref())?;
    let da = address::encode_tp_address(&destination)?;
    let vp = opts
        .validity
        .map(|d| relative_validity_from_seconds(d.as_secs() + u64::from(d.subsec_nanos() > 0)))
        .transpose()?;

    let encoding = user_data::choose_encoding(text, opts.force_ucs2);
    let (segments, total) = user_data::segment_counted(text, encoding, opts.concat_16bit)?;
    let dcs = DataCodingScheme::encode(encoding, opts.message_class);

    let mut parts = Vec::with_capacity(segments.len());
    for (seq, seg) in (1u8..=255).zip(segments.iter()) {
        let header = (total > 1).then(|| UserDataHeader {
            elements: vec![InformationElement::Concat(ConcatInfo::part(
                opts.concat_reference,
                opts.concat_16bit,
                total,
                seq,
            ))],
        });
        let (udl, ud) = user_data::encode_user_data(header.as_ref(), seg);

        // First octet: MTI, RD (bit 2), VPF (bits 4..3), SRR (5), UDHI (6).
        let mut first = MTI_SUBMIT;
        if opts.reject_duplicates {
            first |= 0x04;
        }
        if vp.is_some() {
            first |= 0b10 << 3; // relative format
        }
        if opts.request_status_report {
            first |= 0x20;
        }
        if header.is_some() {
            first |= 0x40;
        }
        let mut tpdu = Vec::with_capacity(da.len() + ud.len() + 8);
        tpdu.push(first);
        tpdu.push(opts.message_reference);
        tpdu.extend_from_slice(&da);
        tpdu.push(0x00); // TP-PID: plain short message
        tpdu.push(dcs);
        if let Some(vp) = vp {
            tpdu.push(vp);
        }
        tpdu.push(udl);
        tpdu.extend(ud);

        let mut full = smsc_octets.clone();
        full.extend_from_slice(&tpdu);
        parts.push(SubmitPart {
            hex: encode_hex(&full),
            tpdu_length: tpdu.len(),
            part_number: seq,
            total_parts: total,
            encoding,
        });
    }
    Ok(parts)
}

/// Decodes the TPDU of an SMS-SUBMIT (reader positioned at the first octet).
pub(crate) fn decode_submit(r: &mut Reader<'_>, smsc: Option<Address>) -> Result<Submit, PduError> {
    let first = r.u8("TP-MTI")?;
    let message_reference = r.u8("TP-MR")?;
    let destination = address::decode_tp_address(r, "TP-DA")?;
    let protocol_identifier = r.u8("TP-PID")?;
    let data_coding = DataCodingScheme::decode(r.u8("TP-DCS")?);
    let vp_offset = r.offset();
    let validity_period = match (first >> 3) & 0b11 {
        0b00 => None,
        0b10 => {
            let raw = r.u8("TP-VP")?;
            Some(ValidityPeriod::Relative {
                raw,
                seconds: relative_validity_seconds(raw),
            })
        }
        0b11 => {
            let octets = r.take_array::<7>("TP-VP")?;
            Some(ValidityPeriod::Absolute {
                timestamp: Timestamp::from_octets(octets, "TP-VP", vp_offset)?,
            })
        }
        _ => Some(ValidityPeriod::Enhanced {
            raw: r.take(7, "TP-VP")?.to_vec(),
        }),
    };
    let user_data = user_data::decode_user_data(
        r,
        first & 0x40 != 0,
        &data_coding,
        user_data::Truncation::Reject,
    )?;
    Ok(Submit {
        smsc,
        reject_duplicates: first & 0x04 != 0,
        status_report_request: first & 0x20 != 0,
        reply_path: first & 0x80 != 0,
        message_reference,
        destination,
        protocol_identifier,
        data_coding,
        validity_period,
        user_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values from python-gsmmodem's relative validity tests.
    #[test]
    fn validity_round_trip() {
        for (secs, vp) in [
            (30 * 60, 5u8),
            (16 * 3600, 151),
            (3 * 86_400, 169),
            (35 * 86_400, 197),
        ] {
            assert_eq!(relative_validity_from_seconds(secs).unwrap(), vp);
            assert_eq!(relative_validity_seconds(vp), secs);
        }
        // Rounds up, with a 5-minute floor.
        assert_eq!(relative_validity_from_seconds(0).unwrap(), 0);
        assert_eq!(relative_validity_from_seconds(301).unwrap(), 1);
        assert_eq!(relative_validity_from_seconds(13 * 3600).unwrap(), 145);
        assert_eq!(
            relative_validity_from_seconds(63 * 7 * 86_400).unwrap(),
            255
        );
        assert!(relative_validity_from_seconds(63 * 7 * 86_400 + 1).is_err());
    }

    #[test]
    fn tpdu_length_excludes_smsc() {
        let opts = SubmitOptions {
            smsc: Some("+19037029920".into()),
            ..Default::default()
        };
        let p = &encode_submit("+15555551234", "hi", &opts).unwrap()[0];
        assert_eq!(p.hex.len() / 2, p.tpdu_length + 8);
    }
}
