#![no_main]
//! Arbitrary text through encode_submit: never panics, and when it encodes,
//! every part decodes and the parts join back to the text.

use libfuzzer_sys::fuzz_target;
use phonerelay_sms_pdu::{decode, encode_submit, Direction, Pdu, SubmitOptions};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let opts = SubmitOptions {
        concat_16bit: flags & 1 != 0,
        force_ucs2: flags & 2 != 0,
        concat_reference: u16::from(flags),
        ..Default::default()
    };
    let Ok(parts) = encode_submit("+15551234567", &text, &opts) else {
        return;
    };
    let mut joined = String::new();
    for p in &parts {
        match decode(&p.hex, Direction::MoToNetwork) {
            Ok(Pdu::Submit(s)) => joined.push_str(s.text().unwrap_or("")),
            other => panic!("part did not decode: {other:?}"),
        }
    }
    assert_eq!(joined, text);
});
