//! UCS-2 user data (TS 23.038 6.2.3 / DCS alphabet `10`).
//!
//! In practice every phone sends UTF-16BE here, with surrogate pairs for
//! characters outside the BMP (emoji), so that is what we encode. Decoding is
//! tolerant: a lone surrogate (e.g. a pair split by a broken sender across
//! two parts) becomes U+FFFD instead of failing the whole message.

/// Encodes text as UTF-16BE octets (the encoders build parts per
/// character instead; this is the reference the tests compare against).
#[cfg(test)]
pub fn encode(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// Number of UTF-16 code units (2 octets each) `text` needs.
#[cfg(test)]
pub fn unit_count(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Decodes UTF-16BE octets. Unpaired surrogates become U+FFFD; a dangling
/// odd final octet (which a conforming sender never produces) becomes U+FFFD
/// too rather than an error, so the rest of the text still reaches the user.
pub fn decode(data: &[u8]) -> String {
    let units = data
        .chunks_exact(2)
        .map(|p| match p {
            [a, b] => u16::from_be_bytes([*a, *b]),
            _ => 0xFFFD,
        })
        .collect::<Vec<u16>>();
    let mut s: String = char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    if data.len() % 2 == 1 {
        s.push(char::REPLACEMENT_CHARACTER);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn japanese_round_trip() {
        // "あ叶葉" = 3042 53F6 8449 (python-gsmmodem's UCS-2 test string).
        let b = encode("あ叶葉");
        assert_eq!(b, vec![0x30, 0x42, 0x53, 0xF6, 0x84, 0x49]);
        assert_eq!(decode(&b), "あ叶葉");
    }

    #[test]
    fn emoji_is_a_surrogate_pair() {
        let b = encode("😀");
        assert_eq!(b, vec![0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(unit_count("😀"), 2);
        assert_eq!(decode(&b), "😀");
    }

    #[test]
    fn lone_surrogates_become_replacement() {
        assert_eq!(decode(&[0xD8, 0x3D, 0x00, 0x41]), "\u{FFFD}A");
        assert_eq!(decode(&[0x00, 0x41, 0xDE, 0x00]), "A\u{FFFD}");
        assert_eq!(decode(&[0x00, 0x41, 0x00]), "A\u{FFFD}");
    }
}
