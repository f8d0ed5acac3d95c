#![no_main]
//! Any bytes, read both as octets and as a hex string, in both directions:
//! decode must return, never panic, and whatever decodes must serialise;
//! only an SMS-DELIVER may come back flagged truncated.

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
                match &pdu {
                    Pdu::Deliver(d) => {
                        let _ = reassembler.push(MessagePart::from_deliver(d), 1);
                    }
                    // Only SMS-DELIVER is decoded leniently when cut short.
                    Pdu::Submit(s) => assert!(!s.user_data.truncated),
                    Pdu::StatusReport(r) => {
                        assert!(!r.user_data.as_ref().is_some_and(|u| u.truncated))
                    }
                }
            }
        }
    }
    let _ = reassembler.expire(100);
});
