//! Encode -> decode -> (reassemble) round trips.

use phonerelay_sms_pdu::{
    ConcatInfo, Deliver, DeliverOptions, Direction, Encoding, MessageClass, Pdu, PduError,
    Reassembler, StatusClass, StatusReportSpec, Submit, SubmitOptions, Timestamp, TypeOfNumber,
    decode, encode_deliver, encode_status_report, encode_submit,
};

fn submit(hex: &str) -> Submit {
    match decode(hex, Direction::MoToNetwork).unwrap() {
        Pdu::Submit(s) => s,
        other => panic!("expected SUBMIT, got {other:?}"),
    }
}

fn deliver(hex: &str) -> Deliver {
    match decode(hex, Direction::MtFromNetwork).unwrap() {
        Pdu::Deliver(d) => d,
        other => panic!("expected DELIVER, got {other:?}"),
    }
}

/// Encodes, decodes every part, checks the parts' bookkeeping, returns them.
fn submit_round_trip(text: &str, opts: &SubmitOptions) -> Vec<Submit> {
    let parts = encode_submit("+4915112345678", text, opts).unwrap();
    let decoded: Vec<Submit> = parts.iter().map(|p| submit(&p.hex)).collect();
    let total = parts.len();
    let mut joined = String::new();
    for (i, (p, s)) in parts.iter().zip(&decoded).enumerate() {
        assert_eq!(usize::from(p.part_number), i + 1);
        assert_eq!(usize::from(p.total_parts), total);
        assert_eq!(s.destination.number, "+4915112345678");
        match s.concat() {
            Some(c) => {
                assert!(total > 1);
                assert_eq!(
                    (usize::from(c.sequence), usize::from(c.total)),
                    (i + 1, total)
                );
            }
            None => assert_eq!(total, 1),
        }
        joined.push_str(s.text().unwrap());
    }
    assert_eq!(joined, text);
    decoded
}

#[test]
fn gsm7_with_extension_chars_across_boundaries() {
    // Slide a run of escape characters over the 153-septet boundary so that
    // some ESC lands exactly on the last septet of a part.
    for shift in 145..160 {
        let text = format!(
            "{}{}tail",
            "x".repeat(shift),
            "€[]{}~^\\|\u{000C}".repeat(3)
        );
        let parts = submit_round_trip(&text, &SubmitOptions::default());
        for s in &parts {
            assert_eq!(s.data_coding.encoding, Encoding::Gsm7);
            // A part ending in a lone ESC would decode its last char as ' '.
            assert!(
                !s.text().unwrap().ends_with(' '),
                "shift {shift}: lone escape"
            );
            assert!(usize::from(s.user_data.length) <= 160);
        }
    }
}

#[test]
fn gsm7_single_part_limit() {
    assert_eq!(
        submit_round_trip(&"a".repeat(160), &SubmitOptions::default()).len(),
        1
    );
    assert_eq!(
        submit_round_trip(&"€".repeat(80), &SubmitOptions::default()).len(),
        1
    );
    assert_eq!(
        submit_round_trip(&"€".repeat(81), &SubmitOptions::default()).len(),
        2
    );
    assert_eq!(
        submit_round_trip(&"a".repeat(306), &SubmitOptions::default()).len(),
        2
    );
    assert_eq!(
        submit_round_trip(&"a".repeat(307), &SubmitOptions::default()).len(),
        3
    );
}

#[test]
fn ucs2_chosen_automatically_and_forced() {
    let s = submit_round_trip("Привет, мир", &SubmitOptions::default());
    assert_eq!(s[0].data_coding.encoding, Encoding::Ucs2);
    let forced = SubmitOptions {
        force_ucs2: true,
        ..Default::default()
    };
    let s = submit_round_trip("plain ascii", &forced);
    assert_eq!(s[0].data_coding.encoding, Encoding::Ucs2);
    assert_eq!(
        submit_round_trip(&"ж".repeat(70), &SubmitOptions::default()).len(),
        1
    );
    assert_eq!(
        submit_round_trip(&"ж".repeat(71), &SubmitOptions::default()).len(),
        2
    );
    assert_eq!(
        submit_round_trip(&"ж".repeat(134), &SubmitOptions::default()).len(),
        2
    );
    assert_eq!(
        submit_round_trip(&"ж".repeat(135), &SubmitOptions::default()).len(),
        3
    );
}

#[test]
fn emoji_never_split_across_parts() {
    for c16 in [false, true] {
        for prefix in 60..72 {
            let text = format!("{}{}", "ж".repeat(prefix), "😀👍🏽🇩🇪".repeat(6));
            let opts = SubmitOptions {
                concat_16bit: c16,
                ..Default::default()
            };
            for s in submit_round_trip(&text, &opts) {
                let raw = s.user_data.data.as_deref().unwrap();
                assert_eq!(raw.len() % 2, 0);
                let last = raw
                    .get(raw.len() - 2..)
                    .map(|u| u16::from_be_bytes([u[0], u[1]]))
                    .unwrap();
                assert!(
                    !(0xD800..0xDC00).contains(&last),
                    "part ends in a high surrogate"
                );
                assert!(!s.text().unwrap().contains('\u{FFFD}'));
                assert!(raw.len() <= if c16 { 132 } else { 134 } || s.concat().is_none());
            }
        }
    }
}

#[test]
fn part_limit_is_255() {
    let ok = "a".repeat(153 * 255);
    assert_eq!(
        encode_submit("+1555", &ok, &SubmitOptions::default())
            .unwrap()
            .len(),
        255
    );
    let too_long = "a".repeat(153 * 255 + 1);
    assert_eq!(
        encode_submit("+1555", &too_long, &SubmitOptions::default()),
        Err(PduError::TooManyParts { needed: 256 })
    );
    let opts16 = SubmitOptions {
        concat_16bit: true,
        ..Default::default()
    };
    assert!(encode_submit("+1555", &"a".repeat(152 * 255), &opts16).is_ok());
    assert!(matches!(
        encode_submit("+1555", &"a".repeat(152 * 255 + 1), &opts16),
        Err(PduError::TooManyParts { .. })
    ));
}

#[test]
fn sixteen_bit_reference() {
    let opts = SubmitOptions {
        concat_16bit: true,
        concat_reference: 0xBEEF,
        ..Default::default()
    };
    let parts = submit_round_trip(&"b".repeat(161), &opts);
    assert_eq!(parts.len(), 2);
    let c = parts[0].concat().unwrap();
    assert_eq!(
        c,
        ConcatInfo {
            reference: 0xBEEF,
            total: 2,
            sequence: 1,
            sixteen_bit_reference: true
        }
    );
    assert_eq!(parts[0].text().unwrap().len(), 152);
    // The 8-bit element keeps only the low byte.
    let opts8 = SubmitOptions {
        concat_reference: 0xBEEF,
        ..Default::default()
    };
    let parts = submit_round_trip(&"b".repeat(161), &opts8);
    assert_eq!(parts[0].concat().unwrap().reference, 0xEF);
}

#[test]
fn submit_flags_and_addresses() {
    let opts = SubmitOptions {
        request_status_report: true,
        message_class: Some(MessageClass::Class0),
        smsc: Some("+447785016005".into()),
        message_reference: 42,
        ..Default::default()
    };
    let parts = encode_submit("07700 900123", "flash", &opts).unwrap();
    let s = submit(&parts[0].hex);
    assert!(s.status_report_request);
    assert_eq!(s.message_reference, 42);
    assert_eq!(s.data_coding.message_class, Some(MessageClass::Class0));
    assert_eq!(s.smsc.unwrap().number, "+447785016005");
    assert_eq!(s.destination.number, "07700900123");
    assert_eq!(s.destination.type_of_number, TypeOfNumber::Unknown);
    assert!(parts[0].hex.starts_with("07914477"));
    assert_eq!(parts[0].tpdu_length, parts[0].hex.len() / 2 - 8);
    assert!(encode_submit("not a number", "x", &SubmitOptions::default()).is_err());
}

fn ts(sec: u8) -> Timestamp {
    Timestamp::new(2024, 2, 29, 23, 59, sec, -20).unwrap()
}

#[test]
fn deliver_multipart_reassembles_out_of_order_with_duplicates() {
    let text = format!("{} — {} 😀", "Grüße aus Köln ".repeat(10), "end");
    let opts = DeliverOptions {
        concat_reference: 77,
        ..Default::default()
    };
    let pdus = encode_deliver("+4917012345", &text, &ts(1), &opts).unwrap();
    assert!(pdus.len() >= 3);
    let decoded: Vec<Deliver> = pdus.iter().map(|h| deliver(h)).collect();
    assert_eq!(decoded[0].originator.number, "+4917012345");
    assert_eq!(
        decoded[0].service_centre_timestamp.unwrap().to_rfc3339(),
        "2024-02-29T23:59:01-05:00"
    );

    let mut r = Reassembler::new(60_000);
    let mut order: Vec<usize> = (0..decoded.len()).rev().collect();
    order.insert(1, order[0]); // duplicate of the last part
    let mut done = None;
    for (t, i) in order.iter().enumerate() {
        let out = r.push_deliver(&decoded[*i], t as u64);
        if out.is_some() {
            assert!(done.is_none(), "completed twice");
            done = out;
        }
    }
    let m = done.expect("complete");
    assert_eq!(m.text, text);
    assert!(m.missing_parts.is_empty());
    assert_eq!(m.reference, Some(77));
    assert_eq!(usize::from(m.total_parts), pdus.len());
    assert_eq!(r.pending_count(), 0);
}

#[test]
fn deliver_gsm7_alphanumeric_sender_and_16bit_ref() {
    let text = "Your code is 123456. {Do not share} ".repeat(6);
    let opts = DeliverOptions {
        concat_16bit: true,
        concat_reference: 4242,
        smsc: Some("+31653131316".into()),
        ..Default::default()
    };
    let pdus = encode_deliver("MyBank", &text, &ts(2), &opts).unwrap();
    let mut r = Reassembler::new(1000);
    let mut out = None;
    for h in &pdus {
        let d = deliver(h);
        assert_eq!(d.originator.number, "MyBank");
        assert_eq!(d.originator.type_of_number, TypeOfNumber::Alphanumeric);
        assert_eq!(d.smsc.as_ref().unwrap().number, "+31653131316");
        assert!(d.concat().unwrap().sixteen_bit_reference);
        out = r.push_deliver(&d, 5);
    }
    assert_eq!(out.unwrap().text, text);
}

#[test]
fn deliver_8bit_parts_join_as_binary() {
    let text = "binary payload ".repeat(20);
    let opts = DeliverOptions {
        encoding: Some(Encoding::EightBit),
        ..Default::default()
    };
    let pdus = encode_deliver("12345", &text, &ts(3), &opts).unwrap();
    assert_eq!(pdus.len(), 3);
    let mut r = Reassembler::new(1000);
    let msgs: Vec<_> = pdus
        .iter()
        .filter_map(|h| r.push_deliver(&deliver(h), 0))
        .collect();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].binary.as_deref(), Some(text.as_bytes()));
    assert_eq!(msgs[0].text, text);
}

#[test]
fn missing_part_expires_with_marker() {
    let text = "z".repeat(153 * 2 + 10);
    let pdus = encode_deliver("+100", &text, &ts(4), &DeliverOptions::default()).unwrap();
    assert_eq!(pdus.len(), 3);
    let mut r = Reassembler::new(30_000);
    assert!(r.push_deliver(&deliver(&pdus[0]), 1_000).is_none());
    assert!(r.push_deliver(&deliver(&pdus[2]), 2_000).is_none());
    assert!(r.expire(30_999).is_empty());
    let out = r.expire(31_000);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].missing_parts, vec![2]);
    assert_eq!(
        out[0].text,
        format!("{}[part 2/3 missing]{}", "z".repeat(153), "z".repeat(10))
    );
    assert_eq!(r.pending_count(), 0);
}

#[test]
fn single_part_passes_straight_through() {
    let pdus = encode_deliver("+100", "short", &ts(5), &DeliverOptions::default()).unwrap();
    assert_eq!(pdus.len(), 1);
    let d = deliver(&pdus[0]);
    assert!(d.concat().is_none());
    let m = Reassembler::new(1).push_deliver(&d, 0).unwrap();
    assert_eq!(
        (m.text.as_str(), m.total_parts, m.reference),
        ("short", 1, None)
    );
    assert_eq!(m.timestamp, Some(ts(5)));
}

#[test]
fn status_report_round_trip() {
    for (st, class) in [
        (0x00, StatusClass::Delivered),
        (0x21, StatusClass::StillTrying),
        (0x46, StatusClass::FailedPermanent),
        (0x62, StatusClass::FailedTemporaryGaveUp),
    ] {
        let spec = StatusReportSpec {
            smsc: None,
            message_reference: 17,
            recipient: "+4915112345678".into(),
            service_centre_timestamp: ts(6),
            discharge_time: ts(9),
            status: st,
        };
        let hex = encode_status_report(&spec).unwrap();
        let Pdu::StatusReport(r) = decode(&hex, Direction::MtFromNetwork).unwrap() else {
            panic!("not a status report");
        };
        assert_eq!(r.message_reference, 17);
        assert_eq!(r.recipient.number, "+4915112345678");
        assert_eq!(r.service_centre_timestamp, Some(ts(6)));
        assert_eq!(r.discharge_time, Some(ts(9)));
        assert_eq!((r.status.raw, r.status.class), (st, class));
        assert!(r.user_data.is_none());
        let json = serde_json::to_value(Pdu::StatusReport(r)).unwrap();
        assert_eq!(json["type"], "status_report");
        assert_eq!(
            json["discharge_time"]["rfc3339"],
            "2024-02-29T23:59:09-05:00"
        );
    }
}

#[test]
fn direction_matters() {
    let parts = encode_submit("+1555", "x", &SubmitOptions::default()).unwrap();
    // A SUBMIT read from +CMGL (stored outbox message) still decodes.
    assert!(matches!(
        decode(&parts[0].hex, Direction::MtFromNetwork),
        Ok(Pdu::Submit(_))
    ));
    let d = encode_deliver("+1555", "x", &ts(0), &DeliverOptions::default()).unwrap();
    assert!(matches!(
        decode(&d[0], Direction::MoToNetwork),
        Err(PduError::UnsupportedMessageType { mti: 0, .. })
    ));
}
