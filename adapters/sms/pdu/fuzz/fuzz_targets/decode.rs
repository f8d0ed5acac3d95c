#![no_main]
//! Any bytes, read both as octets and as a hex string, in both directions:
//! decode must return, never panic, and whatever decodes must serialise.

use libfuzzer_sys::fuzz_target;
use phonerelay_sms_pdu::{decode, decode_bytes, Direction, MessagePart, Pdu, Reassembler};

fuzz_target!(|data: &[u8]| {
    let mut reassembler = Reassembler::new(10);
    for dir in [Direction::MtFromNetwork, Direction::MoToNetwork] {
        for result in [
            decode_bytes(data, dir),
            decode(&String::from_utf8_lossy(data), dir),
        ] {
            if let Ok(pdu) = result {
                let _ = serde_json::to_string(&pdu).expect("serialize");
                if let Pdu::Deliver(d) = &pdu {
                    let _ = reassembler.push(MessagePart::from_deliver(d), 1);
                }
            }
        }
    }
    let _ = reassembler.expire(100);
});
