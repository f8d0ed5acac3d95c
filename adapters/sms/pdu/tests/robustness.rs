//! Property tests: `decode` must return (Ok or Err) for any input, never
//! panic; and text survives encode_submit -> decode for arbitrary strings.
//! Case counts are kept modest so this runs in about a second.

use phonerelay_sms_pdu::{
    DeliverOptions, Direction, Pdu, PduError, SubmitOptions, Timestamp, decode, decode_bytes,
    decode_hex, encode_deliver, encode_hex, encode_submit,
};
use proptest::prelude::*;

/// Real PDUs to mutate, so the mutations reach deep into the decoders.
const SEEDS: &[&str] = &[
    "07912160130320F5440B916171056429F5000021405291650569A00500034C0201A9E8F41C949E83C2207B599E07B1DFEE33885E9ED341E4F23C7D7697C920FA1B54C697E5E3F4BC0C6AD7D9F434081E96D341E3303C2C4EB3D3F4BC0B94A483E6E8779D4D06CDD1EF3BA80E0785E7A0B7BB0C6A97E7F3F0B9CC02B9DF7450780EA2DFDF2C50780EA2A3CBA0BA9B5C96B3F369F71954768FDFE4B4FB0C9297E1F2F2BCECA6CF41",
    "07919730071111F10414D04937BD2C7797E9D3E614000811309291024061080442043504410442",
    "07911614786007F006060B911634092142F4019071011000040190710110450400060000",
    "0019000B917228001011F100003170013193008017D474BB3CA787DB70903DCC4E93D3F43C885E9ED301",
    "07913307005630F0440BA13307570230F00006017010900412806A0605040B8423F0040603BEAF848C829831323737393730303539008D92891980160433333730373532303033302F545950453D504C4D4E009679424F008A808E0122880481020BB883687474703A2F2F6D6D73632E6C61626D6374656C2E66723A393039302F6D333300",
];

fn both(bytes: &[u8]) {
    for dir in [Direction::MtFromNetwork, Direction::MoToNetwork] {
        if let Ok(p) = decode_bytes(bytes, dir) {
            // Whatever decodes must also serialise.
            serde_json::to_string(&p).unwrap();
            // Only an SMS-DELIVER is decoded leniently when cut short.
            match &p {
                Pdu::Submit(s) => assert!(!s.user_data.truncated),
                Pdu::StatusReport(r) => assert!(!r.user_data.as_ref().is_some_and(|u| u.truncated)),
                Pdu::Deliver(_) => {}
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        both(&bytes);
    }

    #[test]
    fn random_strings_never_panic(s in "[0-9A-Fa-f \\r\\nG]{0,120}") {
        let _ = decode(&s, Direction::MtFromNetwork);
        let _ = decode(&s, Direction::MoToNetwork);
    }

    #[test]
    fn mutated_real_pdus_never_panic(
        seed in 0..SEEDS.len(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let mut bytes = phonerelay_sms_pdu::decode_hex(SEEDS[seed]).unwrap();
        for (pos, val) in edits {
            let len = bytes.len();
            if let Some(b) = bytes.get_mut(pos % len) {
                *b = val;
            }
        }
        both(&bytes);
        let keep = cut % (bytes.len() + 1);
        both(&bytes[..keep]);
        let _ = decode(&encode_hex(&bytes), Direction::MtFromNetwork);
    }

    #[test]
    fn submit_text_round_trips(text in "[a-zA-Z0-9 €\\[\\]{}~^|\\\\ΔΩäöüßжё😀👍\n]{0,400}", c16 in any::<bool>()) {
        let opts = SubmitOptions { concat_16bit: c16, concat_reference: 300, ..Default::default() };
        let parts = encode_submit("+15551234567", &text, &opts).unwrap();
        let mut joined = String::new();
        for p in &parts {
            match decode(&p.hex, Direction::MoToNetwork).unwrap() {
                Pdu::Submit(s) => joined.push_str(s.text().unwrap()),
                other => panic!("{other:?}"),
            }
        }
        prop_assert_eq!(joined, text);
    }

    /// A DELIVER cut anywhere in its user data still decodes (flagged
    /// truncated, text a prefix of the full part's text), unless the cut
    /// falls inside the concatenation header; other message types stay
    /// strict.
    #[test]
    fn truncated_deliver_decodes_a_prefix(
        text in "[a-zA-Z0-9 €\\[\\]ΔΩжё😀\n]{1,300}",
        cut_seed in any::<usize>(),
        c16 in any::<bool>(),
    ) {
        let ts = Timestamp::from_unix_seconds(1_700_000_000, 0).unwrap();
        let opts = DeliverOptions { concat_reference: 7, concat_16bit: c16, ..Default::default() };
        for hex in encode_deliver("+15551234567", &text, &ts, &opts).unwrap() {
            let full = match decode(&hex, Direction::MtFromNetwork).unwrap() {
                Pdu::Deliver(d) => d,
                other => panic!("{other:?}"),
            };
            prop_assert!(!full.user_data.truncated);
            let full_text = full.text().unwrap().to_string();
            let bytes = decode_hex(&hex).unwrap();
            // The user data is what follows TP-UDL, the last header octet
            // before it; cut 1..=all of it.
            let udl = usize::from(full.user_data.length);
            let ud_len = if full.data_coding.encoding == phonerelay_sms_pdu::Encoding::Gsm7 {
                (udl * 7).div_ceil(8)
            } else {
                udl
            };
            let cut = 1 + cut_seed % ud_len.max(1);
            let short = &bytes[..bytes.len() - cut.min(ud_len)];
            match decode_bytes(short, Direction::MtFromNetwork) {
                Ok(Pdu::Deliver(d)) => {
                    prop_assert!(d.user_data.truncated);
                    prop_assert_eq!(d.concat(), full.concat());
                    let got = d.text().unwrap();
                    prop_assert!(full_text.starts_with(got), "{got:?} not a prefix of {full_text:?}");
                    serde_json::to_string(&d).unwrap();
                }
                Ok(other) => panic!("{other:?}"),
                Err(e) => {
                    prop_assert!(matches!(e, PduError::Truncated { .. }), "{e:?}");
                    prop_assert!(full.concat().is_some(), "only a cut header may fail");
                }
            }
        }
    }
}
