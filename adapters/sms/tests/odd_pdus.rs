//! Received PDUs that are not plain text messages with valid fields: an
//! invalid SMSC time stamp, direct deliveries that cannot be decoded or
//! have a short header, parts of one message with the sender written two
//! ways, messages not for a person (silent, port-addressed, "discard"),
//! 8-bit data, outbox copies in the listing, and a listing header without
//! its PDU. All through the simulator on a real pseudo-terminal.
mod common;

use common::*;
use phonerelay_channel::Channel;

/// "hello" from +12345678901, GSM 7-bit, with `scts` (7 octets, hex),
/// PID `pid` and DCS `dcs`.
fn hello(pid: &str, dcs: &str, scts: &str) -> String {
    format!("00040B912143658709F1{pid}{dcs}{scts}05E8329BFD06")
}

const VALID_SCTS: &str = "51117200000000";

fn measure(rig: &Rig, key: &str) -> Option<i64> {
    rig.channel.health().measures.get(key).copied()
}

/// An SMS-DELIVER whose TP-SCTS is all zeros (month 0) is committed with
/// the time it arrived, and freed from the SIM; before, it stayed there
/// as "undecodable" for ever. The same as a direct +CMT.
#[tokio::test]
async fn an_invalid_scts_costs_the_time_not_the_message() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    let before = unix_now() * 1000;
    assert!(rig.sim.inject_raw_pdu(&hello("00", "00", "00000000000000")));
    wait_until(|| rig.sink.inbound().len() == 1).await;
    let m = &rig.sink.inbound()[0];
    assert_eq!(m.text, "hello");
    assert_eq!(m.from, "+12345678901");
    assert!(
        m.received_at_ms >= before && m.received_at_ms <= unix_now() * 1000 + 1000,
        "arrival time, got {}",
        m.received_at_ms
    );
    wait_until(|| rig.sim.stored().0 == 0).await;
    assert!(rig.sink.unreadable().is_empty());

    // 31 April, handed over directly.
    rig.sim
        .deliver_direct(&hello("00", "00", "42401300000000"), false);
    wait_until(|| rig.sink.inbound().len() == 2).await;
    let inbound = rig.sink.inbound();
    assert_eq!(inbound[1].text, "hello");
    assert_ne!(
        inbound[0].external_id, inbound[1].external_id,
        "different raw time stamps, different messages"
    );
}

/// A +CMT or +CDS that cannot be decoded is committed as it came (the
/// modem keeps no copy) and counted in the health; one whose commit fails
/// is lost, and counted so. A +CMT header without the alpha field
/// (`+CMT: 24`) is read like the full one.
#[tokio::test]
async fn direct_deliveries_short_header_and_undecodable_are_handled() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    assert_eq!(measure(&rig, "undecodable_direct"), None);
    rig.sim.deliver_direct(&hello("00", "00", VALID_SCTS), true);
    wait_until(|| rig.sink.inbound().len() == 1).await;
    assert_eq!(rig.sink.inbound()[0].text, "hello");

    // Cut short in the sender's address.
    rig.sim.deliver_direct("0004", false);
    wait_until(|| measure(&rig, "undecodable_direct") == Some(1)).await;
    // A header whose PDU line never comes (here an overlong line the
    // parser drops instead) is counted as well.
    rig.sim
        .send_unsolicited(vec!["+CMT: ,24".into(), "Z".repeat(3000)]);
    wait_until(|| measure(&rig, "undecodable_direct") == Some(2)).await;
    // A broken +CDS too.
    rig.sim.send_unsolicited(vec!["+CDS: 3\r\n0006AB".into()]);
    wait_until(|| measure(&rig, "undecodable_direct") == Some(3)).await;
    assert_eq!(rig.sink.inbound().len(), 1);
    let kept = rig.sink.unreadable_origins();
    assert_eq!(
        kept,
        [
            ("+CMT".to_string(), vec![0x00, 0x04]),
            ("+CMT".to_string(), b"+CMT: ,24".to_vec()),
            ("+CDS".to_string(), vec![0x00, 0x06, 0xAB]),
        ]
    );
    assert_eq!(measure(&rig, "lost_direct_events"), None);

    // The store refusing a header without its PDU, that one is lost (it
    // cannot go into the record of direct deliveries), and counted so.
    rig.sink
        .unreadable_refused
        .store(true, std::sync::atomic::Ordering::SeqCst);
    rig.sim
        .send_unsolicited(vec!["+CMT: ,25".into(), "Z".repeat(3000)]);
    wait_until(|| measure(&rig, "lost_direct_events") == Some(1)).await;
    assert_eq!(measure(&rig, "undecodable_direct"), Some(4));
}

/// An undecodable +CMT the store refuses is not lost: the modem acknowledged
/// it to the network already (phase 2, no AT+CNMA), so no other copy comes,
/// and it waits in the record of direct deliveries as a decodable one whose
/// commit failed does. Sweeps try it again (counted once); after a restart
/// with the store back it is committed once, and leaves the record.
#[tokio::test]
async fn an_undecodable_direct_delivery_the_store_refuses_waits_for_it() {
    use std::sync::atomic::Ordering;
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 1;
    let mut rig = Rig::start(behaviour(), config.clone()).await;
    rig.wait_up().await;
    rig.sink.unreadable_refused.store(true, Ordering::SeqCst);
    rig.sim.deliver_direct("0005", false);
    // Refused as it came, and again by a sweep.
    wait_until(|| rig.sink.refused_writes.load(Ordering::SeqCst) >= 2).await;
    assert_eq!(measure(&rig, "lost_direct_events"), None);
    assert_eq!(measure(&rig, "undecodable_direct"), Some(1));
    let record = |rig: &Rig| {
        rig.sink
            .cursors
            .lock()
            .unwrap()
            .get("sms-direct-parts")
            .cloned()
    };
    assert!(record(&rig).is_some_and(|r| r.ends_with("=0005")));
    assert!(rig.sink.unreadable().is_empty());

    rig.stop_channel().await;
    rig.sink.unreadable_refused.store(false, Ordering::SeqCst);
    rig.restart_channel(config);
    rig.wait_up().await;
    wait_until(|| record(&rig).is_none()).await;
    let kept = rig.sink.unreadable_origins();
    assert_eq!(kept, [("+CMT".to_string(), vec![0x00, 0x05])]);
    assert!(rig.sink.inbound().is_empty());
}

/// The parts of one long message, one with the sender in international
/// format and one in national format: with the modem's country they are
/// the same sender, and the message is joined whole.
#[tokio::test]
async fn parts_with_the_sender_written_two_ways_are_joined() {
    let mut config = modem_config("main");
    config.country = Some("GB".into());
    let rig = Rig::start(behaviour(), config).await;
    rig.wait_up().await;
    let text = "a long message in two parts ".repeat(7);
    let parts: Vec<String> =
        phonerelay_sms::codec::encode_deliver("+447911123456", &text, unix_now(), 42)
            .into_iter()
            .map(|(hex, _)| hex)
            .collect();
    assert_eq!(parts.len(), 2);
    let international = "0C91449711214365";
    assert!(parts[1].contains(international));
    // 07911123456, TON national (0xA1).
    let national = parts[1].replacen(international, "0BA17019113254F6", 1);
    assert!(rig.sim.inject_raw_pdu(&parts[0]));
    assert!(rig.sim.inject_raw_pdu(&national));
    wait_until(|| rig.sink.inbound().len() == 1).await;
    let m = &rig.sink.inbound()[0];
    assert_eq!(m.from, "+447911123456");
    assert_eq!(m.text, text);
    wait_until(|| rig.sim.stored().0 == 0).await;
}

/// Messages not for a person are freed from the SIM and counted, not
/// delivered; 8-bit data is delivered as a placeholder, not as garbage.
#[tokio::test]
async fn messages_not_for_a_person_are_discarded_and_binary_is_a_placeholder() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    // Type 0 ("silent SMS", TP-PID 0x40).
    assert!(rig.sim.inject_raw_pdu(&hello("40", "00", VALID_SCTS)));
    // DCS 1100: message waiting indication, discard message.
    assert!(rig.sim.inject_raw_pdu(&hello("00", "C0", VALID_SCTS)));
    // A WAP push (MMS notification): 8-bit, UDH with ports 2948/9200.
    assert!(
        rig.sim
            .inject_raw_pdu("00440B912143658709F10004511172000000000B0605040B8423F0DEADBEEF")
    );
    wait_until(|| measure(&rig, "discarded_inbound") == Some(3)).await;
    wait_until(|| rig.sim.stored().0 == 0).await;
    // Direct, too.
    rig.sim
        .deliver_direct(&hello("40", "00", VALID_SCTS), false);
    wait_until(|| measure(&rig, "discarded_inbound") == Some(4)).await;
    assert!(rig.sink.inbound().is_empty(), "{:?}", rig.sink.inbound());

    // 8-bit data without ports: not valid UTF-8.
    assert!(
        rig.sim
            .inject_raw_pdu("00040B912143658709F100045111720000000005DEADBEEFFF")
    );
    wait_until(|| rig.sink.inbound().len() == 1).await;
    assert_eq!(rig.sink.inbound()[0].text, "[binary SMS, 5 bytes]");
    wait_until(|| rig.sim.stored().0 == 0).await;
}

/// `AT+CMGL=4` lists outbox copies (SMS-SUBMIT) too: they are skipped,
/// neither undecodable nor deleted. A listed header without its PDU does
/// not take the next header as its PDU.
#[tokio::test]
async fn the_sweep_skips_outbox_copies_and_bodiless_headers() {
    let mut rig = Rig::idle(behaviour(), modem_config("main"));
    // Slot 1: a stored SMS-SUBMIT; slot 2: a slot listed without a PDU
    // line; slot 3: a message. Stored before the driver starts, so only
    // its start-up sweep (one listing) finds them.
    assert!(
        rig.sim
            .inject_raw_pdu("0001000B917228001011F100000CC8329BFD065DDF72363904")
    );
    assert!(rig.sim.inject_raw_pdu(""));
    assert!(rig.sim.inject_raw_pdu(&hello("00", "00", VALID_SCTS)));
    rig.run();
    wait_until(|| rig.sink.inbound().len() == 1).await;
    assert_eq!(rig.sink.inbound()[0].text, "hello");
    // The message is freed; the outbox copy and the empty slot stay.
    wait_until(|| rig.sim.stored().0 == 2).await;
    assert!(
        rig.sink.unreadable().is_empty(),
        "an outbox copy is not undecodable"
    );
}

/// A stored message whose user-data header is malformed (a UDHL past the
/// user data, from a TP-UDHI set by mistake; an element running past the
/// header) was undecodable under the strict checks: left on the SIM for
/// good, each one a slot the network could no longer fill. Read as a
/// phone reads it (the header taken as absent, the bad element ignored),
/// it is committed with the text there is, and its slot freed.
#[tokio::test]
async fn a_message_with_a_malformed_header_is_committed_and_freed() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    // "hello" with TP-UDHI set: its first octet (0xE8) as a UDHL.
    assert!(
        rig.sim
            .inject_raw_pdu("00440B912143658709F100005111720000000005E8329BFD06")
    );
    // UCS-2 "hi" behind a header whose only element (IEI 0x0A) declares
    // 7 octets where 3 are left in it.
    assert!(
        rig.sim
            .inject_raw_pdu("00440B912143658709F10008511172000000000A050A0701020300680069")
    );
    wait_until(|| rig.sink.inbound().len() == 2).await;
    let mut texts: Vec<String> = rig.sink.inbound().into_iter().map(|m| m.text).collect();
    texts.sort();
    assert_eq!(texts, ["hello", "hi"]);
    wait_until(|| rig.sim.stored().0 == 0).await;
    assert!(rig.sink.unreadable().is_empty());
}
