//! TP-DCS, the data coding scheme octet (TS 23.038 section 4).

use serde::Serialize;

/// The alphabet of the user data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// GSM 7-bit default alphabet (+ extension table), septets packed.
    Gsm7,
    /// 8-bit data: opaque octets.
    EightBit,
    /// UCS-2 (in practice UTF-16BE).
    Ucs2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageClass {
    /// Flash SMS: shown immediately, not stored.
    Class0,
    /// ME specific.
    Class1,
    /// (U)SIM specific.
    Class2,
    /// TE specific.
    Class3,
}

impl MessageClass {
    fn from_bits(b: u8) -> Self {
        match b & 0x03 {
            0 => MessageClass::Class0,
            1 => MessageClass::Class1,
            2 => MessageClass::Class2,
            _ => MessageClass::Class3,
        }
    }

    fn bits(self) -> u8 {
        match self {
            MessageClass::Class0 => 0,
            MessageClass::Class1 => 1,
            MessageClass::Class2 => 2,
            MessageClass::Class3 => 3,
        }
    }
}

/// Coding group, bits 7..4 of TP-DCS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CodingGroup {
    /// 00xx: general data coding.
    General,
    /// 01xx: general data coding, message marked for automatic deletion.
    AutomaticDeletion,
    /// 1000..1011: reserved.
    Reserved,
    /// 1100: message waiting indication, discard message.
    MessageWaitingDiscard,
    /// 1101: message waiting indication, store message (GSM 7-bit).
    MessageWaitingStore,
    /// 1110: message waiting indication, store message (UCS-2).
    MessageWaitingStoreUcs2,
    /// 1111: data coding / message class.
    DataCodingMessageClass,
}

/// A decoded TP-DCS octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DataCodingScheme {
    /// The octet as received, so nothing is lost by interpretation.
    pub raw: u8,
    pub group: CodingGroup,
    pub encoding: Encoding,
    pub message_class: Option<MessageClass>,
    /// Text compressed per TS 23.042. We do not decompress: such user data
    /// is delivered as raw octets, and TP-UDL counts octets (23.040 9.2.3.16).
    pub compressed: bool,
    /// True when the octet used a reserved group or alphabet value. TS 23.038
    /// section 4 says "any reserved codings shall be assumed to be the GSM 7
    /// bit default alphabet ... by a receiving entity", which is what we do.
    pub reserved: bool,
}

impl DataCodingScheme {
    pub fn decode(raw: u8) -> DataCodingScheme {
        let mut dcs = DataCodingScheme {
            raw,
            group: CodingGroup::General,
            encoding: Encoding::Gsm7,
            message_class: None,
            compressed: false,
            reserved: false,
        };
        match raw >> 4 {
            0x0..=0x7 => {
                dcs.group = if raw & 0x40 == 0 {
                    CodingGroup::General
                } else {
                    CodingGroup::AutomaticDeletion
                };
                dcs.compressed = raw & 0x20 != 0;
                if raw & 0x10 != 0 {
                    dcs.message_class = Some(MessageClass::from_bits(raw));
                }
                dcs.encoding = match (raw >> 2) & 0x03 {
                    0 => Encoding::Gsm7,
                    1 => Encoding::EightBit,
                    2 => Encoding::Ucs2,
                    _ => {
                        dcs.reserved = true;
                        Encoding::Gsm7
                    }
                };
            }
            0x8..=0xB => {
                dcs.group = CodingGroup::Reserved;
                dcs.reserved = true;
            }
            0xC => dcs.group = CodingGroup::MessageWaitingDiscard,
            0xD => dcs.group = CodingGroup::MessageWaitingStore,
            0xE => {
                dcs.group = CodingGroup::MessageWaitingStoreUcs2;
                dcs.encoding = Encoding::Ucs2;
            }
            _ => {
                dcs.group = CodingGroup::DataCodingMessageClass;
                // Bit 3 is reserved in this group; ignoring it is what the
                // spec's reserved-coding rule amounts to here.
                dcs.encoding = if raw & 0x04 == 0 {
                    Encoding::Gsm7
                } else {
                    Encoding::EightBit
                };
                dcs.message_class = Some(MessageClass::from_bits(raw));
            }
        }
        dcs
    }

    /// The octet to send for an alphabet and optional class: the general
    /// group (00xx), which every phone understands.
    pub fn encode(encoding: Encoding, class: Option<MessageClass>) -> u8 {
        let alphabet = match encoding {
            Encoding::Gsm7 => 0x00,
            Encoding::EightBit => 0x04,
            Encoding::Ucs2 => 0x08,
        };
        match class {
            Some(c) => 0x10 | alphabet | c.bits(),
            None => alphabet,
        }
    }

    /// Whether TP-UDL counts septets (7-bit, uncompressed) or octets.
    pub fn udl_counts_septets(&self) -> bool {
        self.encoding == Encoding::Gsm7 && !self.compressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn general_group() {
        let d = DataCodingScheme::decode(0x00);
        assert_eq!(
            (d.encoding, d.message_class, d.reserved),
            (Encoding::Gsm7, None, false)
        );
        assert_eq!(DataCodingScheme::decode(0x08).encoding, Encoding::Ucs2);
        assert_eq!(DataCodingScheme::decode(0x04).encoding, Encoding::EightBit);
        let d = DataCodingScheme::decode(0x11);
        assert_eq!(
            (d.encoding, d.message_class),
            (Encoding::Gsm7, Some(MessageClass::Class1))
        );
        let d = DataCodingScheme::decode(0x18);
        assert_eq!(
            (d.encoding, d.message_class),
            (Encoding::Ucs2, Some(MessageClass::Class0))
        );
        // Class bits without bit 4 carry no class meaning.
        assert_eq!(DataCodingScheme::decode(0x01).message_class, None);
        assert!(DataCodingScheme::decode(0x20).compressed);
        assert_eq!(
            DataCodingScheme::decode(0x48).group,
            CodingGroup::AutomaticDeletion
        );
    }

    #[test]
    fn reserved_codings_fall_back_to_gsm7() {
        let d = DataCodingScheme::decode(0x0C);
        assert!(d.reserved);
        assert_eq!(d.encoding, Encoding::Gsm7);
        let d = DataCodingScheme::decode(0x84);
        assert_eq!(
            (d.group, d.encoding, d.reserved),
            (CodingGroup::Reserved, Encoding::Gsm7, true)
        );
    }

    #[test]
    fn group_f_and_message_waiting() {
        let d = DataCodingScheme::decode(0xF1);
        assert_eq!(
            (d.encoding, d.message_class),
            (Encoding::Gsm7, Some(MessageClass::Class1))
        );
        let d = DataCodingScheme::decode(0xF4);
        assert_eq!(
            (d.encoding, d.message_class),
            (Encoding::EightBit, Some(MessageClass::Class0))
        );
        assert_eq!(DataCodingScheme::decode(0xE0).encoding, Encoding::Ucs2);
        assert_eq!(DataCodingScheme::decode(0xD8).encoding, Encoding::Gsm7);
    }

    #[test]
    fn encode_round_trips() {
        for enc in [Encoding::Gsm7, Encoding::EightBit, Encoding::Ucs2] {
            for class in [None, Some(MessageClass::Class0), Some(MessageClass::Class3)] {
                let d = DataCodingScheme::decode(DataCodingScheme::encode(enc, class));
                assert_eq!((d.encoding, d.message_class), (enc, class));
            }
        }
    }
}
