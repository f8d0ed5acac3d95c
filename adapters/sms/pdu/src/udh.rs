//! User Data Header (TS 23.040 9.2.3.24): concatenation and application
//! port information elements; anything else is kept raw.

use serde::Serialize;

use crate::error::PduError;

/// Concatenated short message, 8-bit reference (9.2.3.24.1).
pub const IEI_CONCAT_8BIT: u8 = 0x00;
/// Application port addressing, 8-bit ports (9.2.3.24.3).
pub const IEI_PORTS_8BIT: u8 = 0x04;
/// Application port addressing, 16-bit ports (9.2.3.24.4).
pub const IEI_PORTS_16BIT: u8 = 0x05;
/// Concatenated short message, 16-bit reference (9.2.3.24.8).
pub const IEI_CONCAT_16BIT: u8 = 0x08;

/// Where one part sits in a concatenated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConcatInfo {
    pub reference: u16,
    pub total: u8,
    /// 1-based.
    pub sequence: u8,
    /// Whether the 16-bit reference element (IEI 0x08) was used.
    pub sixteen_bit_reference: bool,
}

impl ConcatInfo {
    /// Part `sequence` of `total` of a message with `reference`: an 8-bit
    /// element keeps only the low byte of the reference.
    pub fn part(reference: u16, sixteen_bit_reference: bool, total: u8, sequence: u8) -> Self {
        ConcatInfo {
            reference: if sixteen_bit_reference {
                reference
            } else {
                reference & 0xFF
            },
            total,
            sequence,
            sixteen_bit_reference,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InformationElement {
    Concat(ConcatInfo),
    Ports {
        destination: u16,
        source: u16,
        sixteen_bit: bool,
    },
    /// Any other element, or a known one whose content the spec tells us to
    /// ignore (wrong length, sequence 0 or beyond the total): kept verbatim.
    Other {
        iei: u8,
        #[serde(serialize_with = "crate::hex::serialize_hex")]
        data: Vec<u8>,
    },
}

impl InformationElement {
    fn parse(iei: u8, data: &[u8]) -> InformationElement {
        let other = || InformationElement::Other {
            iei,
            data: data.to_vec(),
        };
        match (iei, data) {
            (IEI_CONCAT_8BIT, [reference, total, seq]) => {
                concat(u16::from(*reference), *total, *seq, false).unwrap_or_else(other)
            }
            (IEI_CONCAT_16BIT, [r1, r2, total, seq]) => {
                concat(u16::from_be_bytes([*r1, *r2]), *total, *seq, true).unwrap_or_else(other)
            }
            (IEI_PORTS_8BIT, [dst, src]) => InformationElement::Ports {
                destination: u16::from(*dst),
                source: u16::from(*src),
                sixteen_bit: false,
            },
            (IEI_PORTS_16BIT, [d1, d2, s1, s2]) => InformationElement::Ports {
                destination: u16::from_be_bytes([*d1, *d2]),
                source: u16::from_be_bytes([*s1, *s2]),
                sixteen_bit: true,
            },
            _ => other(),
        }
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            InformationElement::Concat(c) if c.sixteen_bit_reference => {
                let [r1, r2] = c.reference.to_be_bytes();
                out.extend_from_slice(&[IEI_CONCAT_16BIT, 4, r1, r2, c.total, c.sequence]);
            }
            InformationElement::Concat(c) => {
                let r = c.reference.to_be_bytes()[1];
                out.extend_from_slice(&[IEI_CONCAT_8BIT, 3, r, c.total, c.sequence]);
            }
            InformationElement::Ports {
                destination,
                source,
                sixteen_bit: false,
            } => {
                let d = destination.to_be_bytes()[1];
                let s = source.to_be_bytes()[1];
                out.extend_from_slice(&[IEI_PORTS_8BIT, 2, d, s]);
            }
            InformationElement::Ports {
                destination,
                source,
                sixteen_bit: true,
            } => {
                let [d1, d2] = destination.to_be_bytes();
                let [s1, s2] = source.to_be_bytes();
                out.extend_from_slice(&[IEI_PORTS_16BIT, 4, d1, d2, s1, s2]);
            }
            InformationElement::Other { iei, data } => {
                out.push(*iei);
                out.push(u8::try_from(data.len()).unwrap_or(u8::MAX));
                out.extend(data.iter().take(usize::from(u8::MAX)));
            }
        }
    }
}

/// 9.2.3.24.1: a sequence number of 0 or above the total, or a total of 0,
/// means "ignore the element" (we keep it raw instead of dropping it).
fn concat(reference: u16, total: u8, sequence: u8, sixteen: bool) -> Option<InformationElement> {
    (total != 0 && sequence != 0 && sequence <= total).then_some(InformationElement::Concat(
        ConcatInfo {
            reference,
            total,
            sequence,
            sixteen_bit_reference: sixteen,
        },
    ))
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct UserDataHeader {
    pub elements: Vec<InformationElement>,
}

impl UserDataHeader {
    /// The concatenation element; of several, the last (23.040 9.2.3.24:
    /// an element that may not repeat, given twice, is taken from its last
    /// occurrence).
    pub fn concat(&self) -> Option<ConcatInfo> {
        self.elements.iter().rev().find_map(|e| match e {
            InformationElement::Concat(c) => Some(*c),
            _ => None,
        })
    }

    /// (destination, source) application ports, if present; of several,
    /// the last, as for [`Self::concat`].
    pub fn ports(&self) -> Option<(u16, u16)> {
        self.elements.iter().rev().find_map(|e| match e {
            InformationElement::Ports {
                destination,
                source,
                ..
            } => Some((*destination, *source)),
            _ => None,
        })
    }

    /// Parses the header body (the octets after UDHL). `offset` is where
    /// that body starts in the PDU, for error messages. An element running
    /// past the header length is an error: the length fields disagree.
    pub(crate) fn parse(body: &[u8], offset: usize) -> Result<UserDataHeader, PduError> {
        let (header, error) = Self::parse_until_malformed(body, offset);
        match error {
            Some(e) => Err(e),
            None => Ok(header),
        }
    }

    /// As [`Self::parse`], but an element whose length runs past the
    /// header ends it: the elements before it are kept, it and whatever
    /// follows are ignored (23.040 9.2.3.24: a receiver ignores elements
    /// it cannot use). For what a phone would still show.
    pub(crate) fn parse_lenient(body: &[u8]) -> UserDataHeader {
        Self::parse_until_malformed(body, 0).0
    }

    /// The elements up to the first malformed one, and the error it is.
    fn parse_until_malformed(body: &[u8], offset: usize) -> (UserDataHeader, Option<PduError>) {
        let mut elements = Vec::new();
        let mut rest = body;
        let mut pos = offset;
        while let Some((&iei, after_iei)) = rest.split_first() {
            let Some((&len, after_len)) = after_iei.split_first() else {
                let error = PduError::Truncated {
                    field: "UDH information element length",
                    offset: pos.saturating_add(1),
                    needed: 1,
                    available: 0,
                };
                return (UserDataHeader { elements }, Some(error));
            };
            let Some(data) = after_len.get(..usize::from(len)) else {
                let error = PduError::InvalidField {
                    field: "UDH information element",
                    offset: pos,
                    reason: format!(
                        "IEI {iei:#04x} declares {len} octets but only {} remain in the header",
                        after_len.len()
                    ),
                };
                return (UserDataHeader { elements }, Some(error));
            };
            elements.push(InformationElement::parse(iei, data));
            rest = after_len.get(usize::from(len)..).unwrap_or(&[]);
            pos = pos.saturating_add(2 + usize::from(len));
        }
        (UserDataHeader { elements }, None)
    }

    /// Encodes UDHL + elements.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for e in &self.elements {
            e.encode_into(&mut body);
        }
        let mut out = Vec::with_capacity(body.len() + 1);
        out.push(u8::try_from(body.len()).unwrap_or(u8::MAX));
        out.extend(body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex::{decode_hex, encode_hex};

    fn parse(hex: &str) -> UserDataHeader {
        UserDataHeader::parse(&decode_hex(hex).unwrap(), 0).unwrap()
    }

    // IE vectors derived from python-gsmmodem's UDH tests.
    #[test]
    fn concat_elements() {
        let h = parse("0003170301");
        assert_eq!(
            h.concat(),
            Some(ConcatInfo {
                reference: 23,
                total: 3,
                sequence: 1,
                sixteen_bit_reference: false
            })
        );
        assert_eq!(encode_hex(&h.encode()), "050003170301");
        let h = parse("080401800402");
        assert_eq!(
            h.concat(),
            Some(ConcatInfo {
                reference: 384,
                total: 4,
                sequence: 2,
                sixteen_bit_reference: true
            })
        );
        assert_eq!(encode_hex(&h.encode()), "06080401800402");
    }

    #[test]
    fn of_two_concatenation_elements_the_last_counts() {
        let h = parse("00030102010003070202");
        assert_eq!(
            h.concat(),
            Some(ConcatInfo {
                reference: 7,
                total: 2,
                sequence: 2,
                sixteen_bit_reference: false
            })
        );
        assert_eq!(parse("0402643204027B14").ports(), Some((123, 20)));
    }

    #[test]
    fn port_elements() {
        assert_eq!(parse("04026432").ports(), Some((100, 50)));
        assert_eq!(parse("050404D21466").ports(), Some((1234, 5222)));
        assert_eq!(
            encode_hex(&parse("050404D21466").encode()),
            "06050404D21466"
        );
    }

    #[test]
    fn unknown_and_invalid_elements_are_kept_raw() {
        let h = parse("0A0301020300030303000100");
        assert_eq!(
            h.elements,
            vec![
                InformationElement::Other {
                    iei: 0x0A,
                    data: vec![1, 2, 3]
                },
                // sequence 0: 9.2.3.24.1 says ignore -> kept raw
                InformationElement::Other {
                    iei: 0x00,
                    data: vec![3, 3, 0]
                },
                InformationElement::Other {
                    iei: 0x01,
                    data: vec![]
                },
            ]
        );
        assert_eq!(h.concat(), None);
    }

    #[test]
    fn overrunning_element_is_an_error() {
        assert!(UserDataHeader::parse(&decode_hex("000301").unwrap(), 0).is_err());
        assert!(UserDataHeader::parse(&decode_hex("00").unwrap(), 0).is_err());
    }

    #[test]
    fn leniently_an_overrunning_element_and_what_follows_are_ignored() {
        let lenient = |hex: &str| UserDataHeader::parse_lenient(&decode_hex(hex).unwrap());
        // A good concatenation element, then one declaring 9 octets of 2.
        let h = lenient("0003170301");
        assert_eq!(h.concat().map(|c| c.sequence), Some(1));
        let h = lenient("00031703010509AABB");
        assert_eq!(h.elements.len(), 1);
        assert_eq!(h.concat().map(|c| (c.reference, c.total)), Some((23, 3)));
        // Nothing but a bad element: an empty header.
        assert_eq!(lenient("000301").elements, vec![]);
        assert_eq!(lenient("00").elements, vec![]);
    }
}
