//! Two identical single-part messages from one sender in the same second
//! (an automated system sending "1" twice) are two messages, stored or
//! handed over directly; the same stored message read again after a crash
//! between its commit and its delete is still one.
mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use common::*;

const SENDER: &str = "+15551230077";

/// One single-part message from [`SENDER`], as the network stores it,
/// with an SMSC time fixed to the second.
fn same_second_pdu() -> String {
    let mut parts = phonerelay_sms::codec::encode_deliver(SENDER, "1", 1_700_000_000, 0);
    assert_eq!(parts.len(), 1);
    parts.remove(0).0
}

#[tokio::test]
async fn identical_messages_of_one_second_in_two_slots_are_two_messages() {
    let mut rig = Rig::idle(behaviour(), modem_config("main"));
    let pdu = same_second_pdu();
    assert!(rig.sim.inject_raw_pdu_unannounced(&pdu));
    assert!(rig.sim.inject_raw_pdu_unannounced(&pdu));
    rig.run();
    wait_until(|| rig.sim.stored().0 == 0).await;
    assert_eq!(rig.sink.distinct_ids().len(), 2, "{:?}", rig.sink.inbound());
    assert!(rig.sink.inbound().iter().all(|m| m.text == "1"));
    rig.stop_channel().await;
}

/// Committed, then a crash before the slots were freed (or a modem that
/// answered the deletes `OK` and kept the messages): the restart reads
/// both messages again, and each is committed under the id it had (which
/// the store drops), not as a third and fourth.
#[tokio::test]
async fn identical_messages_read_again_after_a_crash_are_still_two() {
    let mut rig = Rig::idle(behaviour(), modem_config("main"));
    let pdu = same_second_pdu();
    assert!(rig.sim.inject_raw_pdu_unannounced(&pdu));
    assert!(rig.sim.inject_raw_pdu_unannounced(&pdu));
    rig.sim.set_keep_deleted(true);
    rig.run();
    wait_until(|| rig.sink.distinct_ids().len() == 2).await;
    rig.stop_channel().await;
    assert_eq!(rig.sim.stored().0, 2, "nothing freed before the crash");
    rig.sim.set_keep_deleted(false);

    rig.restart_channel(modem_config("main"));
    wait_until(|| rig.sim.stored().0 == 0).await;
    assert_eq!(rig.sink.distinct_ids().len(), 2, "{:?}", rig.sink.inbound());
    rig.stop_channel().await;
}

/// A single message read again after a crash between its commit and its
/// delete is one message.
#[tokio::test]
async fn a_message_read_again_after_a_crash_is_one() {
    let mut rig = Rig::idle(behaviour(), modem_config("main"));
    assert!(rig.sim.inject_raw_pdu_unannounced(&same_second_pdu()));
    rig.sim.set_keep_deleted(true);
    rig.run();
    wait_until(|| !rig.sink.inbound().is_empty()).await;
    rig.stop_channel().await;
    rig.sim.set_keep_deleted(false);

    rig.restart_channel(modem_config("main"));
    wait_until(|| rig.sim.stored().0 == 0).await;
    assert_eq!(rig.sink.distinct_ids().len(), 1, "{:?}", rig.sink.inbound());
    rig.stop_channel().await;
}

/// The second arrives in the slot the first was freed from, whose record
/// still names the first: unread, it is a new message, not the first read
/// again, announced (`+CMTI`, read with `AT+CMGR`) or found by a sweep.
#[tokio::test]
async fn an_identical_message_in_the_slot_the_first_was_freed_from_is_new() {
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 1;
    let rig = Rig::start(behaviour(), config).await;
    rig.wait_up().await;
    let pdu = same_second_pdu();
    assert!(rig.sim.inject_raw_pdu(&pdu));
    wait_until(|| rig.sim.stored().0 == 0 && rig.sink.inbound().len() == 1).await;
    assert!(rig.sim.inject_raw_pdu(&pdu));
    wait_until(|| rig.sim.stored().0 == 0 && rig.sink.inbound().len() == 2).await;
    assert!(rig.sim.inject_raw_pdu_unannounced(&pdu));
    wait_until(|| rig.sim.stored().0 == 0 && rig.sink.inbound().len() == 3).await;
    assert_eq!(rig.sink.distinct_ids().len(), 3, "{:?}", rig.sink.inbound());
    let records = rig.sink.cursors.lock().unwrap().clone();
    let slot_records: Vec<&String> = records
        .keys()
        .filter(|name| name.starts_with("sms-slot-id:"))
        .collect();
    assert_eq!(slot_records, ["sms-slot-id:SM:1"], "one slot, used thrice");
}

/// The twin's first read comes damaged on the serial line (cut short,
/// or, with two damaged reads, first a digit flipped out of hex): the
/// modem marked it read all the same, and the read that came whole says
/// `REC READ`. It is still a new message, not the first one read again:
/// taken for that, it was dropped as a duplicate and deleted.
#[tokio::test]
async fn a_twin_whose_first_read_came_damaged_is_new() {
    for damaged_reads in [1, 2] {
        let mut rig = Rig::start(behaviour(), modem_config("main")).await;
        rig.wait_up().await;
        let pdu = same_second_pdu();
        assert!(rig.sim.inject_raw_pdu(&pdu));
        wait_until(|| rig.sim.stored().0 == 0 && rig.sink.inbound().len() == 1).await;
        rig.sim.damage_next_stored(damaged_reads);
        assert!(rig.sim.inject_raw_pdu(&pdu));
        wait_until(|| rig.sim.stored().0 == 0 && rig.sink.inbound().len() == 2).await;
        assert_eq!(
            rig.sink.distinct_ids().len(),
            2,
            "{damaged_reads}: {:?}",
            rig.sink.inbound()
        );
        rig.stop_channel().await;
    }
}

/// Handed over directly, the modem has acknowledged each to the network
/// already: the second is a second message.
#[tokio::test]
async fn identical_messages_of_one_second_handed_over_directly_are_two() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    let pdu = same_second_pdu();
    rig.sim.deliver_direct(&pdu, false);
    wait_until(|| rig.sink.inbound().len() == 1).await;
    rig.sim.deliver_direct(&pdu, false);
    wait_until(|| rig.sink.inbound().len() == 2).await;
    assert_eq!(rig.sink.distinct_ids().len(), 2, "{:?}", rig.sink.inbound());
}

/// After an upgrade: a message the earlier version committed under its
/// bare base id, its delete cut short, is found on the SIM with no slot
/// record. It is that message, not a second one: not delivered again.
#[tokio::test]
async fn a_message_an_earlier_version_committed_is_not_delivered_again() {
    let mut rig = Rig::idle(behaviour(), modem_config("main"));
    assert!(rig.sim.inject_raw_pdu_unannounced(&same_second_pdu()));
    // The earlier version read it (the modem marks it read) and committed
    // it; here, a run whose commit fails reads it.
    rig.sink.failing.store(true, Ordering::SeqCst);
    rig.run();
    wait_until(|| rig.sim.stored_was_read(1) == Some(true)).await;
    rig.stop_channel().await;
    rig.sink.failing.store(false, Ordering::SeqCst);
    let base =
        phonerelay_sms::driver::inbound::inbound_external_id(SENDER, 1_700_000_000, None, "1");
    let earlier = phonerelay_channel::InboundMessage {
        channel: phonerelay_channel::ChannelKind::Sms,
        phone_id: "main".into(),
        from: SENDER.into(),
        text: "1".into(),
        subject: None,
        attachments: Vec::new(),
        external_id: base.clone(),
        reply_to: Vec::new(),
        received_at_ms: 1_700_000_000_000,
        meta: Default::default(),
    };
    rig.sink
        .events
        .lock()
        .unwrap()
        .push(phonerelay_channel::ChannelEvent::Inbound(earlier));
    rig.restart_channel(modem_config("main"));
    wait_until(|| rig.sim.stored().0 == 0).await;
    assert_eq!(rig.sink.distinct_ids(), BTreeSet::from([base]));
    rig.stop_channel().await;
}

/// A message handed over directly whose commit failed waits in the record
/// of direct deliveries; once committed from there it leaves the record in
/// the same transaction. Taken off apart, a failed write left it there,
/// and each sweep committed it again as a new occurrence.
#[tokio::test]
async fn a_direct_message_committed_from_its_record_is_not_committed_again() {
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 1;
    let rig = Rig::start(behaviour(), config).await;
    rig.wait_up().await;
    rig.sink.failing.store(true, Ordering::SeqCst);
    rig.sim.deliver_direct(&same_second_pdu(), false);
    let record = phonerelay_sms::driver::direct_parts::DIRECT_PARTS_CURSOR;
    let in_record = || rig.sink.cursors.lock().unwrap().contains_key(record);
    wait_until(in_record).await;
    // The store is back, but a write of the record on its own is lost.
    *rig.sink.failing_lone_write_prefix.lock().unwrap() = Some(record.to_string());
    rig.sink.failing.store(false, Ordering::SeqCst);
    wait_until(|| !rig.sink.inbound().is_empty() && !in_record()).await;
    let commands = rig.sim.commands_seen();
    // Sweeps go on (each lists the SIM): none commits it again.
    wait_until(|| rig.sim.commands_seen() > commands + 6).await;
    assert_eq!(rig.sink.distinct_ids().len(), 1, "{:?}", rig.sink.inbound());
}
