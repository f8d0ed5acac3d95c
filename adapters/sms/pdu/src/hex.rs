//! Hex string <-> octets. Modems print PDUs as hex (AT+CMGF=0) and expect
//! them that way for AT+CMGS, so this is the crate's outer format.

use crate::error::PduError;

/// Decodes a hex string (either case). Surrounding ASCII whitespace is
/// ignored because modem lines often carry a trailing `\r`.
pub fn decode_hex(hex: &str) -> Result<Vec<u8>, PduError> {
    let s = hex.trim_matches(|c: char| c.is_ascii_whitespace());
    let bytes = s.as_bytes();
    if bytes.len() % 2 != 0 {
        return Err(PduError::InvalidHex {
            position: bytes.len(),
            reason: "odd number of hex digits",
        });
    }
    let mut out = Vec::with_capacity(bytes.len() / 2);
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let (hi, lo) = match pair {
            [h, l] => (*h, *l),
            _ => continue,
        };
        let hi = nibble(hi).ok_or(PduError::InvalidHex {
            position: i * 2,
            reason: "not a hex digit",
        })?;
        let lo = nibble(lo).ok_or(PduError::InvalidHex {
            position: i * 2 + 1,
            reason: "not a hex digit",
        })?;
        out.push((hi << 4) | lo);
    }
    Ok(out)
}

/// Encodes octets as an uppercase hex string (what AT+CMGS expects).
pub fn encode_hex(data: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0F)]));
    }
    s
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// serde helper: binary payloads are shown as hex in JSON output.
pub(crate) fn serialize_hex<S: serde::Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&encode_hex(data))
}

pub(crate) fn serialize_opt_hex<S: serde::Serializer>(
    data: &Option<Vec<u8>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match data {
        Some(d) => s.serialize_some(&encode_hex(d)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        assert_eq!(decode_hex("00ff7A\r\n").unwrap(), vec![0x00, 0xFF, 0x7A]);
        assert_eq!(encode_hex(&[0x00, 0xFF, 0x7A]), "00FF7A");
    }

    #[test]
    fn rejects_bad_hex() {
        assert!(matches!(
            decode_hex("0G"),
            Err(PduError::InvalidHex { position: 1, .. })
        ));
        assert!(matches!(
            decode_hex("123"),
            Err(PduError::InvalidHex { .. })
        ));
    }
}
