//! Address fields: TP-OA / TP-DA / TP-RA (TS 23.040 9.1.2.5) and the SMSC
//! address that modems put in front of the TPDU (TS 24.011 8.2.5.1, as used
//! by TS 27.005 PDU mode).

use serde::Serialize;

use crate::error::{PduError, Reader};
use crate::gsm7;

/// Type of number, bits 6..4 of the type-of-address octet (TS 23.040 9.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TypeOfNumber {
    Unknown,
    International,
    National,
    NetworkSpecific,
    Subscriber,
    /// GSM 7-bit packed text in the address digits (e.g. "InternetSMS").
    Alphanumeric,
    Abbreviated,
    Reserved,
}

impl TypeOfNumber {
    pub fn from_bits(bits: u8) -> Self {
        match bits & 0x07 {
            0 => TypeOfNumber::Unknown,
            1 => TypeOfNumber::International,
            2 => TypeOfNumber::National,
            3 => TypeOfNumber::NetworkSpecific,
            4 => TypeOfNumber::Subscriber,
            5 => TypeOfNumber::Alphanumeric,
            6 => TypeOfNumber::Abbreviated,
            _ => TypeOfNumber::Reserved,
        }
    }

    pub fn bits(self) -> u8 {
        match self {
            TypeOfNumber::Unknown => 0,
            TypeOfNumber::International => 1,
            TypeOfNumber::National => 2,
            TypeOfNumber::NetworkSpecific => 3,
            TypeOfNumber::Subscriber => 4,
            TypeOfNumber::Alphanumeric => 5,
            TypeOfNumber::Abbreviated => 6,
            TypeOfNumber::Reserved => 7,
        }
    }
}

/// ISDN/telephone numbering plan (E.164), the usual NPI.
pub const NPI_ISDN: u8 = 1;

/// A decoded or to-be-encoded address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    /// Digits (`+` prefixed when international) or the alphanumeric text.
    pub number: String,
    pub type_of_number: TypeOfNumber,
    /// Numbering plan identification, bits 3..0 of the type-of-address octet.
    pub numbering_plan: u8,
}

/// Longest alphanumeric address: 10 octets of packed septets (9.1.2.5).
const MAX_ALPHANUMERIC_CHARS: usize = 11;
/// Longest numeric address: 10 octets of semi-octets (9.1.2.5).
const MAX_DIGITS: usize = 20;
/// Longest SMSC address value, type octet included (TS 24.011 8.2.5.1).
const MAX_SMSC_OCTETS: u8 = 11;

impl Address {
    /// Parses a phone number for encoding. A leading `+` makes it
    /// international (TON 1, NPI 1); otherwise `local_type` is used
    /// (normally [`TypeOfNumber::Unknown`], which networks treat as "dial as
    /// given", or [`TypeOfNumber::National`]). Spaces, dashes, dots and
    /// parentheses are ignored as decoration. `*` and `#` are allowed.
    pub fn parse_number(input: &str, local_type: TypeOfNumber) -> Result<Address, PduError> {
        let err = |reason: &str| PduError::InvalidAddress {
            address: input.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = input.trim();
        let (international, rest) = match trimmed.strip_prefix('+') {
            Some(r) => (true, r),
            None => (false, trimmed),
        };
        let digits: String = rest
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        if digits.is_empty() {
            return Err(err("no digits"));
        }
        if let Some(bad) = digits.chars().find(|c| digit_to_nibble(*c).is_none()) {
            return Err(err(&format!("{bad:?} is not a dialable digit")));
        }
        if digits.len() > MAX_DIGITS {
            return Err(err("more than 20 digits"));
        }
        if international {
            Ok(Address {
                number: format!("+{digits}"),
                type_of_number: TypeOfNumber::International,
                numbering_plan: NPI_ISDN,
            })
        } else {
            if local_type == TypeOfNumber::Alphanumeric {
                return Err(err("local numbers cannot use the alphanumeric type"));
            }
            Ok(Address {
                number: digits,
                type_of_number: local_type,
                numbering_plan: NPI_ISDN,
            })
        }
    }

    /// An alphanumeric sender (TON 5, GSM 7-bit packed), e.g. "InfoSMS".
    pub fn alphanumeric(text: &str) -> Result<Address, PduError> {
        let err = |reason: &str| PduError::InvalidAddress {
            address: text.to_string(),
            reason: reason.to_string(),
        };
        let septets = gsm7::septet_count(text).ok_or_else(|| err("not GSM 7-bit encodable"))?;
        if septets == 0 {
            return Err(err("empty"));
        }
        if septets > MAX_ALPHANUMERIC_CHARS {
            return Err(err("longer than 11 septets"));
        }
        Ok(Address {
            number: text.to_string(),
            type_of_number: TypeOfNumber::Alphanumeric,
            numbering_plan: 0,
        })
    }

    /// An originator as a simulator would give it: a number if it looks
    /// like one, otherwise alphanumeric.
    pub fn parse_originator(input: &str) -> Result<Address, PduError> {
        let looks_numeric = {
            let t = input.trim();
            let t = t.strip_prefix('+').unwrap_or(t);
            !t.is_empty() && t.chars().all(|c| c.is_ascii_digit())
        };
        if looks_numeric {
            Address::parse_number(input, TypeOfNumber::Unknown)
        } else {
            Address::alphanumeric(input)
        }
    }

    fn type_octet(&self) -> u8 {
        0x80 | (self.type_of_number.bits() << 4) | (self.numbering_plan & 0x0F)
    }

    fn digits(&self) -> &str {
        self.number.strip_prefix('+').unwrap_or(&self.number)
    }
}

/// Semi-octet digit set of TS 23.040 9.1.2.3 (and 24.008 10.5.4.7).
fn digit_to_nibble(c: char) -> Option<u8> {
    match c {
        '0'..='9' => u8::try_from(u32::from(c) - u32::from('0')).ok(),
        '*' => Some(0x0A),
        '#' => Some(0x0B),
        'a' => Some(0x0C),
        'b' => Some(0x0D),
        'c' => Some(0x0E),
        _ => None,
    }
}

fn nibble_to_digit(n: u8) -> Option<char> {
    match n {
        0..=9 => Some(char::from(b'0' + n)),
        0x0A => Some('*'),
        0x0B => Some('#'),
        0x0C => Some('a'),
        0x0D => Some('b'),
        0x0E => Some('c'),
        // 0xF is the filler of an odd-length number.
        _ => None,
    }
}

/// Swapped-nibble BCD digits (TS 23.040 9.1.2.3): the first digit is in the
/// low nibble. An odd count is padded with 0xF.
fn encode_semi_octets(digits: &str) -> Result<Vec<u8>, PduError> {
    let nibbles = digits
        .chars()
        .map(|c| {
            digit_to_nibble(c).ok_or_else(|| PduError::InvalidAddress {
                address: digits.to_string(),
                reason: format!("{c:?} is not a dialable digit"),
            })
        })
        .collect::<Result<Vec<u8>, _>>()?;
    Ok(nibbles
        .chunks(2)
        .map(|pair| match pair {
            [lo, hi] => lo | (hi << 4),
            [lo] => lo | 0xF0,
            _ => 0xFF,
        })
        .collect())
}

fn decode_semi_octets(octets: &[u8], digit_count: usize) -> String {
    octets
        .iter()
        .flat_map(|b| [b & 0x0F, b >> 4])
        .take(digit_count)
        .filter_map(nibble_to_digit)
        .collect()
}

fn render_number(digits: String, ton: TypeOfNumber) -> String {
    if ton == TypeOfNumber::International && !digits.is_empty() {
        format!("+{digits}")
    } else {
        digits
    }
}

/// Encodes TP-DA / TP-OA / TP-RA: length in digits (or used semi-octets for
/// alphanumeric), type-of-address, value.
pub(crate) fn encode_tp_address(addr: &Address) -> Result<Vec<u8>, PduError> {
    let mut out = Vec::with_capacity(12);
    if addr.type_of_number == TypeOfNumber::Alphanumeric {
        let septets = gsm7::text_to_septets(&addr.number)?;
        let packed = gsm7::pack(&septets, 0);
        // 9.1.2.5: the length is the number of *useful* semi-octets.
        let semi_octets = (septets.len() * 7).div_ceil(4);
        out.push(
            u8::try_from(semi_octets).map_err(|_| PduError::InvalidAddress {
                address: addr.number.clone(),
                reason: "too long".into(),
            })?,
        );
        out.push(addr.type_octet());
        out.extend_from_slice(&packed);
    } else {
        let digits = addr.digits();
        if digits.len() > MAX_DIGITS {
            return Err(PduError::InvalidAddress {
                address: addr.number.clone(),
                reason: "more than 20 digits".into(),
            });
        }
        out.push(u8::try_from(digits.len()).unwrap_or(0));
        out.push(addr.type_octet());
        out.extend(encode_semi_octets(digits)?);
    }
    Ok(out)
}

/// Encodes the SMSC part that precedes the TPDU. `None` gives the single
/// `00` octet that tells the modem to use its configured SMSC (AT+CSCA).
pub(crate) fn encode_smsc(addr: Option<&Address>) -> Result<Vec<u8>, PduError> {
    let Some(addr) = addr else {
        return Ok(vec![0x00]);
    };
    if addr.type_of_number == TypeOfNumber::Alphanumeric {
        return Err(PduError::InvalidAddress {
            address: addr.number.clone(),
            reason: "an SMSC address must be numeric".into(),
        });
    }
    let value = encode_semi_octets(addr.digits())?;
    let len = value.len() + 1;
    if len > usize::from(MAX_SMSC_OCTETS) {
        return Err(PduError::InvalidAddress {
            address: addr.number.clone(),
            reason: "SMSC address longer than 10 octets".into(),
        });
    }
    let mut out = Vec::with_capacity(len + 1);
    out.push(u8::try_from(len).unwrap_or(0));
    out.push(addr.type_octet());
    out.extend(value);
    Ok(out)
}

/// Decodes a TP address field.
pub(crate) fn decode_tp_address(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<Address, PduError> {
    let start = r.offset();
    let len = r.u8(field)?;
    let toa = r.u8(field)?;
    let ton = TypeOfNumber::from_bits(toa >> 4);
    let npi = toa & 0x0F;
    let octets = usize::from(len).div_ceil(2);
    if octets > 10 {
        return Err(PduError::InvalidField {
            field,
            offset: start,
            reason: format!("address length {len} exceeds 20 semi-octets"),
        });
    }
    let value = r.take(octets, field)?;
    let number = if ton == TypeOfNumber::Alphanumeric {
        // 9.1.2.5: alphanumeric addresses are GSM 7-bit packed; the length
        // counts semi-octets, so floor(len*4/7) septets are meaningful.
        let septet_count = usize::from(len) * 4 / 7;
        let mut septets =
            gsm7::unpack(value, 0, septet_count).map_err(|_| PduError::Truncated {
                field,
                offset: start,
                needed: octets,
                available: value.len(),
            })?;
        // Many SMSCs give the length as every semi-octet of the octets used
        // (14 for the 7 octets of "InfoSMS") rather than the useful ones
        // (13). Seven septets leave seven zero bits in the last octet, read
        // as an eighth septet 0x00 ('@'). It is padding when the septets
        // before it already need all semi-octets but the last one.
        if let Some((&0, rest)) = septets.split_last()
            && (rest.len() * 7).div_ceil(4) + 1 == usize::from(len)
        {
            septets.pop();
        }
        gsm7::septets_to_text(&septets)
    } else {
        render_number(decode_semi_octets(value, usize::from(len)), ton)
    };
    Ok(Address {
        number,
        type_of_number: ton,
        numbering_plan: npi,
    })
}

/// Decodes the SMSC part at the start of a modem-printed PDU. The length
/// counts octets (type octet included); 0 means "not given".
pub(crate) fn decode_smsc(r: &mut Reader<'_>) -> Result<Option<Address>, PduError> {
    let start = r.offset();
    let len = r.u8("SMSC address length")?;
    if len == 0 {
        return Ok(None);
    }
    if len > MAX_SMSC_OCTETS {
        return Err(PduError::InvalidField {
            field: "SMSC address length",
            offset: start,
            reason: format!("{len} octets, at most {MAX_SMSC_OCTETS} allowed"),
        });
    }
    let toa = r.u8("SMSC type of address")?;
    let value = r.take(usize::from(len - 1), "SMSC address")?;
    let ton = TypeOfNumber::from_bits(toa >> 4);
    let digits = decode_semi_octets(value, value.len() * 2);
    Ok(Some(Address {
        number: render_number(digits, ton),
        type_of_number: ton,
        numbering_plan: toa & 0x0F,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex::{decode_hex, encode_hex};

    fn dec(hex: &str) -> Address {
        let b = decode_hex(hex).unwrap();
        decode_tp_address(&mut Reader::new(&b), "test").unwrap()
    }

    // Vectors derived from python-gsmmodem's address-field tests.
    #[test]
    fn decodes_known_addresses() {
        assert_eq!(dec("0A918967452301").number, "+9876543210");
        assert_eq!(dec("099189674523F1").number, "+987654321");
        assert_eq!(dec("06D061F118").number, "abc");
        assert_eq!(dec("0ED04669D0397C26A7").number, "FRANCOIS");
        assert_eq!(dec("14D0E10D6FE3DBA036A94D19").number, "a[]{}€");
        // Length 14 for seven septets (every semi-octet of 7 octets): the
        // padding bits are not a trailing '@'.
        assert_eq!(dec("0ED049B7F93D6D4E01").number, "InfoSMS");
        // The same name with the length as 9.1.2.5 wants it (13).
        assert_eq!(dec("0DD049B7F93D6D4E01").number, "InfoSMS");
        // Eight real septets in 7 octets (len 14): the last one is kept.
        assert_eq!(dec("0ED04669D0397C26A7").number, "FRANCOIS");
        let local = dec("0AA11092997856");
        assert_eq!(local.number, "0129998765");
        assert_eq!(local.type_of_number, TypeOfNumber::National);
    }

    #[test]
    fn encodes_known_addresses() {
        // ModemManager address-encoder vectors.
        let intl = Address::parse_number("+19037029920", TypeOfNumber::Unknown).unwrap();
        assert_eq!(
            encode_hex(&encode_tp_address(&intl).unwrap()),
            "0B919130079229F0"
        );
        assert_eq!(
            encode_hex(&encode_smsc(Some(&intl)).unwrap()),
            "07919130079229F0"
        );
        let unk = Address::parse_number("9037029920", TypeOfNumber::Unknown).unwrap();
        assert_eq!(
            encode_hex(&encode_tp_address(&unk).unwrap()),
            "0A810973209902"
        );
        assert_eq!(
            encode_hex(&encode_smsc(Some(&unk)).unwrap()),
            "06810973209902"
        );
        let alpha = Address::alphanumeric("FRANCOIS").unwrap();
        assert_eq!(
            encode_hex(&encode_tp_address(&alpha).unwrap()),
            "0ED04669D0397C26A7"
        );
        assert_eq!(encode_hex(&encode_smsc(None).unwrap()), "00");
    }

    #[test]
    fn rejects_bad_numbers() {
        assert!(Address::parse_number("+", TypeOfNumber::Unknown).is_err());
        assert!(Address::parse_number("12x4", TypeOfNumber::Unknown).is_err());
        assert!(Address::parse_number("123456789012345678901", TypeOfNumber::Unknown).is_err());
        assert!(Address::alphanumeric("ABCDEFGHIJKL").is_err());
        assert!(Address::alphanumeric("日本").is_err());
    }

    #[test]
    fn rejects_overlong_address_field() {
        let b = decode_hex("1691000000000000000000000000").unwrap();
        assert!(decode_tp_address(&mut Reader::new(&b), "t").is_err());
        let b = decode_hex("0B91123456").unwrap();
        assert!(matches!(
            decode_tp_address(&mut Reader::new(&b), "t"),
            Err(PduError::Truncated { .. })
        ));
    }
}
