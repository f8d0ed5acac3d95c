//! GSM 7-bit default alphabet and its extension table (TS 23.038 6.2.1 and
//! 6.2.1.1), plus septet packing (TS 23.038 6.1.2.1).

use crate::error::PduError;

/// The escape septet that introduces a character of the extension table.
pub const ESCAPE: u8 = 0x1B;

/// TS 23.038 6.2.1: the default alphabet, indexed by septet value.
/// 0x1B is the escape to the extension table; when it cannot be understood it
/// is shown as a space (the NBSP note in 6.2.1), hence `' '` here.
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', ' ', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// TS 23.038 6.2.1.1: the extension table (each entry costs two septets:
/// ESC + code).
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{000C}'), // form feed (page break)
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// How one character is written in GSM 7-bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gsm7Char {
    /// One septet of the default table.
    Basic(u8),
    /// ESC followed by this septet of the extension table.
    Extended(u8),
}

impl Gsm7Char {
    /// Septets this character occupies (the escape counts, TS 23.038 6.2.1.1).
    pub fn septets(self) -> usize {
        match self {
            Gsm7Char::Basic(_) => 1,
            Gsm7Char::Extended(_) => 2,
        }
    }
}

/// Looks a character up in the default alphabet, then the extension table.
pub fn encode_char(c: char) -> Option<Gsm7Char> {
    // The escape position decodes to ' ' but a space is 0x20, never 0x1B.
    if c == ' ' {
        return Some(Gsm7Char::Basic(0x20));
    }
    if let Some(pos) = BASIC.iter().position(|&b| b == c) {
        return u8::try_from(pos).ok().map(Gsm7Char::Basic);
    }
    EXTENSION
        .iter()
        .find(|(_, ch)| *ch == c)
        .map(|(code, _)| Gsm7Char::Extended(*code))
}

/// True if every character of `text` is in the default alphabet or extension.
pub fn is_encodable(text: &str) -> bool {
    text.chars().all(|c| encode_char(c).is_some())
}

/// Number of septets `text` needs, or `None` if it is not GSM-7 encodable.
pub fn septet_count(text: &str) -> Option<usize> {
    text.chars()
        .try_fold(0usize, |acc, c| Some(acc + encode_char(c)?.septets()))
}

/// Converts text to unpacked septet values (one per `u8`).
pub fn text_to_septets(text: &str) -> Result<Vec<u8>, PduError> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match encode_char(c) {
            Some(Gsm7Char::Basic(s)) => out.push(s),
            Some(Gsm7Char::Extended(s)) => {
                out.push(ESCAPE);
                out.push(s);
            }
            None => {
                return Err(PduError::Unencodable {
                    ch: c,
                    alphabet: "the GSM 7-bit default alphabet",
                });
            }
        }
    }
    Ok(out)
}

/// Converts unpacked septets to text.
///
/// Per TS 23.038 6.2.1.1, an escape followed by a code that is not in the
/// extension table is shown as the default-table character for that code;
/// ESC ESC (reserved for a further table) and a dangling final ESC are shown
/// as a space.
pub fn septets_to_text(septets: &[u8]) -> String {
    let mut out = String::with_capacity(septets.len());
    let mut iter = septets.iter().map(|s| s & 0x7F);
    while let Some(s) = iter.next() {
        if s == ESCAPE {
            match iter.next() {
                Some(ESCAPE) | None => out.push(' '),
                Some(code) => match EXTENSION.iter().find(|(c, _)| *c == code) {
                    Some((_, ch)) => out.push(*ch),
                    None => out.push(basic(code)),
                },
            }
        } else {
            out.push(basic(s));
        }
    }
    out
}

fn basic(septet: u8) -> char {
    BASIC
        .get(usize::from(septet & 0x7F))
        .copied()
        .unwrap_or(' ')
}

/// Packs septets into octets (TS 23.038 6.1.2.1.1), starting after
/// `fill_bits` zero bits. The fill bits are what aligns the text after a
/// User Data Header to a septet boundary (TS 23.040 9.2.3.24).
pub fn pack(septets: &[u8], fill_bits: u8) -> Vec<u8> {
    let fill = usize::from(fill_bits % 7);
    let total_bits = fill + septets.len() * 7;
    let mut out = vec![0u8; total_bits.div_ceil(8)];
    for (i, s) in septets.iter().enumerate() {
        let s = u16::from(s & 0x7F);
        let bit = fill + i * 7;
        let shifted = s << (bit % 8);
        if let Some(b) = out.get_mut(bit / 8) {
            *b |= (shifted & 0xFF) as u8;
        }
        if let Some(b) = out.get_mut(bit / 8 + 1) {
            *b |= (shifted >> 8) as u8;
        }
    }
    out
}

/// Unpacks `count` septets from `data`, skipping `fill_bits` first.
/// Errors if `data` holds fewer bits than that.
pub fn unpack(data: &[u8], fill_bits: u8, count: usize) -> Result<Vec<u8>, PduError> {
    let fill = usize::from(fill_bits % 7);
    let needed_bits = count
        .checked_mul(7)
        .and_then(|b| b.checked_add(fill))
        .ok_or(PduError::InvalidArgument {
            what: "septet count",
            reason: "too large".into(),
        })?;
    let available_bits = data.len().saturating_mul(8);
    if needed_bits > available_bits {
        return Err(PduError::Truncated {
            field: "GSM 7-bit user data",
            offset: 0,
            needed: needed_bits.div_ceil(8),
            available: data.len(),
        });
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let bit = fill + i * 7;
        let lo = u16::from(data.get(bit / 8).copied().unwrap_or(0));
        let hi = u16::from(data.get(bit / 8 + 1).copied().unwrap_or(0));
        let word = lo | (hi << 8);
        out.push(((word >> (bit % 8)) & 0x7F) as u8);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_hello_world() {
        // Well known packing of "Hello World!" (also used by python-gsmmodem's tests).
        let septets = text_to_septets("Hello World!").unwrap();
        assert_eq!(
            pack(&septets, 0),
            vec![
                0xC8, 0x32, 0x9B, 0xFD, 0x06, 0x5D, 0xDF, 0x72, 0x36, 0x39, 0x04
            ]
        );
    }

    #[test]
    fn extension_chars_cost_two_septets() {
        assert_eq!(septet_count("a[]{}€"), Some(11));
        let s = text_to_septets("[{abc}]~").unwrap();
        assert_eq!(
            s,
            vec![
                0x1B, 0x3C, 0x1B, 0x28, 0x61, 0x62, 0x63, 0x1B, 0x29, 0x1B, 0x3E, 0x1B, 0x3D
            ]
        );
        assert_eq!(septets_to_text(&s), "[{abc}]~");
    }

    #[test]
    fn every_basic_and_extension_char_round_trips() {
        for code in 0u8..128 {
            if code == ESCAPE {
                continue;
            }
            let t = septets_to_text(&[code]);
            assert_eq!(text_to_septets(&t).unwrap(), vec![code], "septet {code:#x}");
        }
        for (code, ch) in EXTENSION {
            assert_eq!(encode_char(ch), Some(Gsm7Char::Extended(code)));
        }
        assert_eq!(septets_to_text(&[0x1B, 0x0A]), "\u{000C}");
    }

    #[test]
    fn unknown_escape_falls_back_to_basic() {
        assert_eq!(septets_to_text(&[0x1B, 0x41]), "A");
        assert_eq!(septets_to_text(&[0x1B, 0x1B, 0x41]), " A");
        assert_eq!(septets_to_text(&[0x41, 0x1B]), "A ");
    }

    #[test]
    fn pack_unpack_with_fill_bits() {
        let septets = text_to_septets("fill bits after a UDH").unwrap();
        for fill in 0..7 {
            let packed = pack(&septets, fill);
            assert_eq!(unpack(&packed, fill, septets.len()).unwrap(), septets);
        }
    }

    #[test]
    fn unpack_rejects_short_data() {
        assert!(unpack(&[0xC8, 0x32], 0, 3).is_err());
        assert!(unpack(&[0xC8, 0x32], 0, 2).is_ok());
    }

    #[test]
    fn rejects_non_gsm() {
        assert!(text_to_septets("世界").is_err());
        assert!(!is_encodable("héllo ✓"));
        assert!(is_encodable("héllo"));
    }
}
