//! TP-UDL + TP-UD (TS 23.040 9.2.3.16 / 9.2.3.24) shared by every message
//! type, and the splitting of text into concatenated parts.

use serde::Serialize;

use crate::dcs::{DataCodingScheme, Encoding};
use crate::error::{PduError, Reader};
use crate::udh::UserDataHeader;
use crate::{gsm7, ucs2};

/// Most septets in one TP-UD (140 octets * 8 / 7).
pub const MAX_SEPTETS: usize = 160;
/// Most octets in one TP-UD.
pub const MAX_OCTETS: usize = 140;

/// Decoded user data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserData {
    /// TP-UDL as received (septets for GSM 7-bit, otherwise octets).
    pub length: u8,
    pub header: Option<UserDataHeader>,
    /// The text, for GSM 7-bit and UCS-2 (None for 8-bit or compressed).
    pub text: Option<String>,
    /// Raw octets after the header, for 8-bit, UCS-2 and compressed data
    /// (None for GSM 7-bit, whose octets are packed septets).
    #[serde(serialize_with = "crate::hex::serialize_opt_hex")]
    pub data: Option<Vec<u8>>,
    /// The PDU ended before the TP-UDL it declared: `text`/`data` hold only
    /// what was present. Only SMS-DELIVER is decoded this way (see
    /// [`Truncation`]); every other message type rejects such a PDU.
    pub truncated: bool,
    /// The unpacked septets of GSM 7-bit text (None otherwise), so that
    /// reassembly can join parts before decoding them: a sender that cut a
    /// long message between an ESC and its extension code would otherwise
    /// give a space and the plain character.
    #[serde(skip)]
    pub septets: Option<Vec<u8>>,
}

impl UserData {
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// The concatenation element of the header, if this is one part of many.
    pub fn concat(&self) -> Option<crate::ConcatInfo> {
        self.header.as_ref().and_then(UserDataHeader::concat)
    }
}

/// What [`decode_user_data`] does when the PDU holds fewer octets than
/// TP-UDL declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Truncation {
    /// [`PduError::Truncated`].
    Reject,
    /// Decode the characters that are present and set
    /// [`UserData::truncated`]. Real SMSCs and modems occasionally store an
    /// SMS-DELIVER like that (Gammu's tests/at-sms/41.dump, its issue #993);
    /// rejecting it would lose the message for good. A header that is itself
    /// cut off is still an error: without it the part cannot be placed.
    ///
    /// A malformed header is read as a phone reads it (23.040 9.2.3.24: a
    /// receiver ignores elements it cannot use) rather than rejected, which
    /// left the message undecodable on the SIM for good: a UDHL past the
    /// user data (most likely TP-UDHI set by mistake) is taken as no header
    /// (the whole user data is text); an element running past the header
    /// is ignored with whatever follows it in the header (the text still
    /// starts after UDHL). Lengths that contradict each other otherwise (a
    /// TP-UDL over the maximum, or too short for the header) stay errors.
    Lenient,
}

/// Reads TP-UDL and TP-UD.
///
/// Leniency: octets after the user data are ignored, because several modems
/// pad stored PDUs (e.g. +CMGR of status reports with trailing 0xFF). Too
/// few octets for the declared TP-UDL is an error unless `truncation` is
/// [`Truncation::Lenient`]; a TP-UDL over the maximum, or one that cannot
/// hold the declared header, is an error either way.
pub(crate) fn decode_user_data(
    r: &mut Reader<'_>,
    udhi: bool,
    dcs: &DataCodingScheme,
    truncation: Truncation,
) -> Result<UserData, PduError> {
    let udl_offset = r.offset();
    let udl = r.u8("TP-UDL")?;
    let septets = dcs.udl_counts_septets();
    let (limit, octets) = if septets {
        (MAX_SEPTETS, (usize::from(udl) * 7).div_ceil(8))
    } else {
        (MAX_OCTETS, usize::from(udl))
    };
    if usize::from(udl) > limit {
        return Err(PduError::InvalidField {
            field: "TP-UDL",
            offset: udl_offset,
            reason: format!(
                "{udl} {} exceeds the maximum of {limit}",
                if septets { "septets" } else { "octets" }
            ),
        });
    }
    let ud_offset = r.offset();
    let lenient = truncation == Truncation::Lenient;
    let truncated_error = |available: usize| PduError::Truncated {
        field: "TP-UD",
        offset: ud_offset,
        needed: octets,
        available,
    };
    let (ud, truncated) = match truncation {
        Truncation::Lenient if r.remaining() < octets => (r.take(r.remaining(), "TP-UD")?, true),
        _ => (r.take(octets, "TP-UD")?, false),
    };

    let (header, header_len) = if udhi {
        // Leniency: TP-UDHI with TP-UDL 0 contradicts itself, but real
        // modems store such PDUs (Gammu's tests/at-sms/20.dump); there is
        // simply no header and no text.
        let Some((&udhl, rest)) = ud.split_first() else {
            if truncated {
                return Err(truncated_error(0));
            }
            return Ok(UserData {
                length: udl,
                header: None,
                text: dcs.udl_counts_septets().then(String::new).or_else(|| {
                    (dcs.encoding == Encoding::Ucs2 && !dcs.compressed).then(String::new)
                }),
                data: (!dcs.udl_counts_septets()).then(Vec::new),
                truncated: false,
                septets: dcs.udl_counts_septets().then(Vec::new),
            });
        };
        if usize::from(udhl) >= octets {
            if !lenient {
                return Err(PduError::InvalidField {
                    field: "UDHL",
                    offset: ud_offset,
                    reason: format!("header length {udhl} exceeds user data of {octets} octets"),
                });
            }
            (None, 0)
        } else {
            let Some(body) = rest.get(..usize::from(udhl)) else {
                // Only reachable when truncated: the header itself is cut off.
                return Err(truncated_error(ud.len()));
            };
            let h = if lenient {
                UserDataHeader::parse_lenient(body)
            } else {
                UserDataHeader::parse(body, ud_offset + 1)?
            };
            (Some(h), usize::from(udhl) + 1)
        }
    } else {
        (None, 0)
    };
    let mut payload = ud.get(header_len..).unwrap_or(&[]);

    let mut septets = None;
    let (text, data) = if dcs.compressed {
        (None, Some(payload.to_vec()))
    } else {
        match dcs.encoding {
            Encoding::Gsm7 => {
                // 9.2.3.24: the header occupies whole septets; the fill bits
                // that pad it to a septet boundary precede the text.
                let header_septets = (header_len * 8).div_ceil(7);
                let fill = header_septets * 7 - header_len * 8;
                let mut count = usize::from(udl)
                    .checked_sub(header_septets)
                    .ok_or_else(|| PduError::InvalidField {
                        field: "TP-UDL",
                        offset: udl_offset,
                        reason: format!("{udl} septets cannot hold a {header_len}-octet header"),
                    })?;
                if truncated {
                    // Only the septets whose 7 bits are all present.
                    count = count.min((payload.len() * 8).saturating_sub(fill) / 7);
                }
                let mut s = gsm7::unpack(payload, u8::try_from(fill).unwrap_or(0), count)
                    .map_err(|_| truncated_error(ud.len()))?;
                if truncated && s.last() == Some(&gsm7::ESCAPE) {
                    // The extension character after it was cut off.
                    s.pop();
                }
                let text = gsm7::septets_to_text(&s);
                septets = Some(s);
                (Some(text), None)
            }
            Encoding::Ucs2 => {
                if truncated {
                    // Whole UTF-16 units only, and not the first half of a
                    // surrogate pair whose second half was cut off.
                    payload = payload.get(..payload.len() / 2 * 2).unwrap_or(&[]);
                    if let [.., hi, _] = payload
                        && (0xD8..=0xDB).contains(hi)
                    {
                        payload = payload.get(..payload.len() - 2).unwrap_or(&[]);
                    }
                }
                (Some(ucs2::decode(payload)), Some(payload.to_vec()))
            }
            Encoding::EightBit => (None, Some(payload.to_vec())),
        }
    };
    Ok(UserData {
        length: udl,
        header,
        text,
        data,
        truncated,
        septets,
    })
}

/// One part's worth of user data, before the header is added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Unpacked septets.
    Gsm7(Vec<u8>),
    /// UTF-16BE octets.
    Ucs2(Vec<u8>),
    Binary(Vec<u8>),
}

/// TP-UDL and TP-UD octets for a segment, with an optional header.
pub(crate) fn encode_user_data(header: Option<&UserDataHeader>, seg: &Segment) -> (u8, Vec<u8>) {
    let mut out = header.map(UserDataHeader::encode).unwrap_or_default();
    let header_len = out.len();
    let udl = match seg {
        Segment::Gsm7(septets) => {
            let header_septets = (header_len * 8).div_ceil(7);
            let fill = header_septets * 7 - header_len * 8;
            out.extend(gsm7::pack(septets, u8::try_from(fill).unwrap_or(0)));
            header_septets + septets.len()
        }
        Segment::Ucs2(octets) | Segment::Binary(octets) => {
            out.extend_from_slice(octets);
            header_len + octets.len()
        }
    };
    (u8::try_from(udl).unwrap_or(u8::MAX), out)
}

/// GSM 7-bit unless some character needs UCS-2 (or UCS-2 is forced).
pub(crate) fn choose_encoding(text: &str, force_ucs2: bool) -> Encoding {
    if force_ucs2 || !gsm7::is_encodable(text) {
        Encoding::Ucs2
    } else {
        Encoding::Gsm7
    }
}

/// Capacity in units (septets for GSM 7-bit, octets otherwise) of a single
/// part and of each part of a concatenated message. The concatenation
/// element costs 6 octets with its UDHL (8-bit reference) or 7 (16-bit),
/// i.e. 7 or 8 septets; UCS-2 parts must hold whole UTF-16 units.
fn capacities(enc: Encoding, concat16: bool) -> (usize, usize) {
    let header = if concat16 { 7 } else { 6 };
    match enc {
        Encoding::Gsm7 => (MAX_SEPTETS, MAX_SEPTETS - (header * 8usize).div_ceil(7)),
        Encoding::Ucs2 => (MAX_OCTETS, (MAX_OCTETS - header) / 2 * 2),
        Encoding::EightBit => (MAX_OCTETS, MAX_OCTETS - header),
    }
}

/// The encoded units of `text`, plus the end offset of every character, so
/// that parts are only ever cut at character boundaries: an ESC and its
/// extension code, or the two halves of a surrogate pair, stay together.
fn encode_atoms(text: &str, enc: Encoding) -> Result<(Vec<u8>, Vec<usize>), PduError> {
    let mut units = Vec::with_capacity(text.len() * 2);
    let mut ends = Vec::with_capacity(text.len());
    match enc {
        Encoding::Gsm7 => {
            let mut buf = [0u8; 4];
            for c in text.chars() {
                units.extend(gsm7::text_to_septets(c.encode_utf8(&mut buf))?);
                ends.push(units.len());
            }
        }
        Encoding::Ucs2 => {
            let mut buf = [0u16; 2];
            for c in text.chars() {
                for u in c.encode_utf16(&mut buf) {
                    units.extend(u.to_be_bytes());
                }
                ends.push(units.len());
            }
        }
        Encoding::EightBit => {
            units.extend_from_slice(text.as_bytes());
            ends.extend(1..=units.len());
        }
    }
    Ok((units, ends))
}

/// Greedy split: as many whole characters as fit in each part.
fn split_ranges(ends: &[usize], total: usize, single: usize, multi: usize) -> Vec<(usize, usize)> {
    if total <= single {
        return vec![(0, total)];
    }
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut last_end = 0;
    for &end in ends {
        if end - start > multi {
            ranges.push((start, last_end));
            start = last_end;
        }
        last_end = end;
    }
    if last_end > start || ranges.is_empty() {
        ranges.push((start, last_end));
    }
    ranges
}

/// Number of parts `text` needs in `enc` (not capped at 255).
pub(crate) fn count_parts(text: &str, enc: Encoding, concat16: bool) -> Result<usize, PduError> {
    let (units, ends) = encode_atoms(text, enc)?;
    let (single, multi) = capacities(enc, concat16);
    Ok(split_ranges(&ends, units.len(), single, multi).len())
}

/// Splits `text` into parts. Errors if more than 255 parts are needed.
/// [`segment`], with the part count as TP-UDH needs it (at most 255).
pub(crate) fn segment_counted(
    text: &str,
    enc: Encoding,
    concat16: bool,
) -> Result<(Vec<Segment>, u8), PduError> {
    let segments = segment(text, enc, concat16)?;
    let total = u8::try_from(segments.len()).map_err(|_| PduError::TooManyParts {
        needed: segments.len(),
    })?;
    Ok((segments, total))
}

pub(crate) fn segment(text: &str, enc: Encoding, concat16: bool) -> Result<Vec<Segment>, PduError> {
    let (units, ends) = encode_atoms(text, enc)?;
    let (single, multi) = capacities(enc, concat16);
    let ranges = split_ranges(&ends, units.len(), single, multi);
    if ranges.len() > 255 {
        return Err(PduError::TooManyParts {
            needed: ranges.len(),
        });
    }
    Ok(ranges
        .into_iter()
        .map(|(a, b)| {
            let chunk = units.get(a..b).unwrap_or(&[]).to_vec();
            match enc {
                Encoding::Gsm7 => Segment::Gsm7(chunk),
                Encoding::Ucs2 => Segment::Ucs2(chunk),
                Encoding::EightBit => Segment::Binary(chunk),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lens(text: &str, enc: Encoding, c16: bool) -> Vec<usize> {
        segment(text, enc, c16)
            .unwrap()
            .iter()
            .map(|s| match s {
                Segment::Gsm7(v) | Segment::Ucs2(v) | Segment::Binary(v) => v.len(),
            })
            .collect()
    }

    #[test]
    fn gsm7_limits() {
        assert_eq!(lens(&"a".repeat(160), Encoding::Gsm7, false), vec![160]);
        assert_eq!(lens(&"a".repeat(161), Encoding::Gsm7, false), vec![153, 8]);
        assert_eq!(lens(&"a".repeat(161), Encoding::Gsm7, true), vec![152, 9]);
        assert_eq!(lens("", Encoding::Gsm7, false), vec![0]);
    }

    #[test]
    fn escape_pairs_are_not_split() {
        // 152 plain + '€' would be septets 153..154: must move to part 2.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(10));
        assert_eq!(lens(&text, Encoding::Gsm7, false), vec![152, 12]);
    }

    #[test]
    fn ucs2_limits_and_surrogates() {
        assert_eq!(lens(&"ж".repeat(70), Encoding::Ucs2, false), vec![140]);
        assert_eq!(lens(&"ж".repeat(71), Encoding::Ucs2, false), vec![134, 8]);
        assert_eq!(lens(&"ж".repeat(71), Encoding::Ucs2, true), vec![132, 10]);
        // 66 units + emoji (2 units) does not fit in 67: the pair moves.
        let text = format!("{}😀xyz", "ж".repeat(66));
        assert_eq!(lens(&text, Encoding::Ucs2, false), vec![132, 10]);
    }

    #[test]
    fn too_many_parts() {
        let ok = "a".repeat(153 * 255);
        assert_eq!(segment(&ok, Encoding::Gsm7, false).unwrap().len(), 255);
        let too_many = "a".repeat(153 * 255 + 1);
        assert_eq!(
            segment(&too_many, Encoding::Gsm7, false),
            Err(PduError::TooManyParts { needed: 256 })
        );
        assert_eq!(count_parts(&too_many, Encoding::Gsm7, false), Ok(256));
    }
}
