//! One stored message, two memory names: "MT" is the modem's memory and
//! the SIM's as one (27.005 3.1), numbered its own way (the simulated
//! modem numbers it as Cinterion does: the modem's slots, then the SIM's
//! after them, so with 50 slots in each "SM" 1 is "MT" 51). Each message
//! is read and deleted under one name only, the one the sweep lists it by.
mod common;

use common::*;
use phonerelay_sms::config::Storage;
use std::sync::atomic::Ordering;

fn single(from: &str, text: &str) -> String {
    phonerelay_sms::codec::encode_deliver(from, text, unix_now(), 0)
        .remove(0)
        .0
}

fn both_memories() -> phonerelay_sms::ModemConfig {
    let mut config = modem_config("main");
    config.storage = Storage::MT;
    config
}

/// A class 2 message from `from` stored and announced on the SIM,
/// committed, and the channel stopped before its delete took (the
/// simulator keeps what is deleted until told otherwise again).
async fn committed_on_the_sim_then_stopped(rig: &mut Rig, from: &str, text: &str) {
    rig.wait_up().await;
    rig.sim.set_keep_deleted(true);
    assert!(rig.sim.inject_raw_pdu_into("SM", &single(from, text)));
    wait_until(|| !rig.sink.inbound().is_empty()).await;
    rig.stop_channel().await;
    assert_eq!(rig.sim.stored().0, 1, "nothing freed before the restart");
    rig.sim.set_keep_deleted(false);
}

/// The channel restarted set to "MT" frees the message without
/// committing it a second time.
async fn restarted_as_both_commits_nothing_again(mut rig: Rig) {
    rig.restart_channel(both_memories());
    wait_until(|| rig.sim.stored().0 == 0).await;
    assert_eq!(rig.sink.distinct_ids().len(), 1, "{:?}", rig.sink.inbound());
    rig.stop_channel().await;
}

/// A modem set to "MT" still stores a class 2 message on the SIM and
/// announces it there, `+CMTI: "SM",1`. Read and committed as "SM" 1,
/// then a crash before its delete took (or a modem that answered the
/// delete `OK` and kept it): the restart's sweep listed it as "MT" 51, a
/// slot no record named, and committed it a second time.
#[tokio::test]
async fn a_message_announced_on_the_sim_of_a_modem_set_to_both_is_committed_once() {
    let mut rig = Rig::start(behaviour(), both_memories()).await;
    committed_on_the_sim_then_stopped(&mut rig, "+15551230061", "class 2").await;
    restarted_as_both_commits_nothing_again(rig).await;
}

/// A long message's part on the SIM of a modem set to "MT", read once as
/// "MT" 2 and once as "SM" 1 (a sweep listing "SM" as well, as one did
/// after an indication named it), was held as a part and a copy of it in
/// another slot, both freed when the message timed out: the delete as
/// "MT" 2 emptied the slot, the network delivered the message it held for
/// want of room into it, and the delete as "SM" 1 deleted that one unread.
#[tokio::test]
async fn a_part_read_under_two_memory_names_frees_its_slot_once() {
    let behaviour = Behaviour {
        capacity: 1,
        ..behaviour()
    };
    let mut config = both_memories();
    config.reassembly_timeout_seconds = 2;
    let mut rig = Rig::idle(behaviour, config);
    let parts =
        phonerelay_sms::codec::encode_deliver("+15551230062", &"d".repeat(200), unix_now(), 7);
    assert!(rig.sim.inject_raw_pdu_unannounced(&parts[0].0)); // "SM" 1, "MT" 2
    rig.sink
        .cursors
        .lock()
        .unwrap()
        .insert("sms-indicated-memories".to_string(), "SM".to_string());
    rig.run();
    rig.wait_up().await;
    // The SIM is full: the network holds this one until there is room.
    let held = single("+15551230063", "held by the network");
    assert!(!rig.sim.inject_raw_pdu_into("SM", &held));
    assert_eq!(rig.sim.stored(), (1, 0, 1));
    // The part times out, is committed alone, and its slot freed.
    wait_until(|| rig.sim.stored() == (0, 0, 0)).await;
    let inbound = rig.sink.inbound();
    assert_eq!(inbound.len(), 2, "{inbound:?}");
    assert!(inbound.iter().any(|m| m.text == "held by the network"));
    rig.stop_channel().await;
}

/// A modem whose own memory is the SIM may still store a message in "MT"
/// and announce it so (some phones announce every message in "MT"). With
/// the modem memory full, "MT" 2 is the SIM's slot 1, which the sweep
/// lists as "SM" 1: read and committed as "MT" 2, then a crash before
/// its delete, the restart's sweep committed it again as "SM" 1.
#[tokio::test]
async fn a_message_announced_in_both_memories_of_a_modem_set_to_the_sim_is_committed_once() {
    let behaviour = Behaviour {
        capacity: 1,
        ..behaviour()
    };
    let mut rig = Rig::start(behaviour, modem_config("main")).await;
    rig.wait_up().await;
    rig.sim.set_keep_deleted(true);
    assert!(
        rig.sim
            .inject_raw_pdu_into("ME", &single("+15551230064", "in the modem"))
    );
    wait_until(|| rig.sink.distinct_ids().len() == 1).await;
    // The modem memory full: "MT" 2, the SIM's slot 1.
    assert!(
        rig.sim
            .inject_raw_pdu_into("MT", &single("+15551230065", "on the SIM"))
    );
    wait_until(|| rig.sink.distinct_ids().len() == 2).await;
    rig.stop_channel().await;
    assert_eq!(rig.sim.stored().0, 2, "nothing freed before the crash");
    rig.sim.set_keep_deleted(false);

    rig.restart_channel(modem_config("main"));
    wait_until(|| rig.sim.stored().0 == 0).await;
    assert_eq!(rig.sink.distinct_ids().len(), 2, "{:?}", rig.sink.inbound());
    rig.stop_channel().await;
}

/// An installation set to "MT" upgraded while a message announced on the
/// SIM was committed and not yet deleted: the earlier build read it by
/// its indication as "SM" 1 and wrote its slot record under that name
/// (as a driver set to "SM" still does, which seeds it here). This build
/// lists it as "MT" 51 only, a slot no record named, and committed it a
/// second time.
#[tokio::test]
async fn a_message_recorded_under_its_sim_name_before_an_upgrade_is_committed_once() {
    let mut rig = Rig::start(behaviour(), modem_config("main")).await;
    committed_on_the_sim_then_stopped(&mut rig, "+15551230066", "before the upgrade").await;
    assert!(
        rig.sink
            .cursors
            .lock()
            .unwrap()
            .contains_key("sms-slot-id:SM:1")
    );
    restarted_as_both_commits_nothing_again(rig).await;
}

/// A modem set to "MT" whose "MT" is its own memory alone, the SIM left
/// out: a class 2 message stored and announced in "SM" is in no listing
/// of "MT", and the sweep its indication brings read only "MT": the
/// message stayed unread on the SIM.
#[tokio::test]
async fn a_message_announced_on_a_sim_outside_both_memories_is_read_by_its_own_name() {
    let mut rig = Rig::idle(behaviour(), both_memories());
    rig.sim.set_mt_without_sim(true);
    rig.run();
    rig.wait_up().await;
    assert!(
        rig.sim
            .inject_raw_pdu_into("SM", &single("+15551230067", "class 2 on the SIM"))
    );
    read_once_and_freed(&rig, "class 2 on the SIM").await;
    rig.stop_channel().await;
}

/// On a modem whose "MT" holds the SIM, a message announced on the SIM
/// while the sweep that follows did not see all of "MT" (its entry came
/// damaged in the listing and in every read after) is not read by its SIM
/// name: the sweep may have missed it under its "MT" one, and held under
/// both names a part was freed twice. It is noted, and a sweep that sees
/// all of "MT" reads it by that name.
#[tokio::test]
async fn a_slot_announced_after_a_sweep_that_missed_part_of_mt_waits_for_a_whole_sweep() {
    let mut config = both_memories();
    config.sweep_interval_seconds = 1;
    let mut rig = Rig::idle(behaviour(), config);
    rig.run();
    rig.wait_up().await;
    rig.sim.damage_next_stored(4);
    assert!(
        rig.sim
            .inject_raw_pdu_into("SM", &single("+15551230071", "one name"))
    );
    read_once_and_freed(&rig, "one name").await;
    let records: Vec<String> = rig
        .sink
        .cursors
        .lock()
        .unwrap()
        .keys()
        .filter(|name| name.starts_with("sms-slot-id:"))
        .cloned()
        .collect();
    assert!(
        records
            .iter()
            .all(|name| name.starts_with("sms-slot-id:MT:")),
        "{records:?}"
    );
    rig.stop_channel().await;
}

/// A class 2 message stored on the SIM while nothing announced it (the
/// daemon down, a modem reset that lost `AT+CNMI`), on a modem whose "MT"
/// leaves the SIM out: no listing of "MT" has it, so a sweep lists "SM"
/// too, notes the slot it did not see there, and the next sweep reads it
/// by its own name. It stayed on the SIM, unread, for good.
#[tokio::test]
async fn an_unannounced_message_on_a_sim_outside_mt_is_read_by_a_later_sweep() {
    let mut config = both_memories();
    config.sweep_interval_seconds = 1;
    let mut rig = Rig::idle(behaviour(), config.clone());
    rig.sim.set_mt_without_sim(true);
    assert!(
        rig.sim
            .inject_raw_pdu_into_unannounced("SM", &single("+15551230070", "never announced"))
    );
    rig.restart_channel(config);
    read_once_and_freed(&rig, "never announced").await;
    rig.stop_channel().await;
}

/// A modem whose "MT" leaves the SIM out, and on its SIM a class 2
/// message `text` announced and read by its slot's own name, whose commit
/// the store refused; the channel then stopped, the store mended.
async fn commit_refused_on_the_sim(text: &str) -> Rig {
    let mut rig = Rig::idle(behaviour(), both_memories());
    rig.sim.set_mt_without_sim(true);
    rig.run();
    rig.wait_up().await;
    // The commit writes the slot's record with the message: refused.
    *rig.sink.failing_cursor_write_prefix.lock().unwrap() = Some("sms-slot-id:".into());
    assert!(
        rig.sim
            .inject_raw_pdu_into("SM", &single("+15551230068", text))
    );
    wait_until(|| rig.sink.refused_writes.load(Ordering::SeqCst) > 0).await;
    rig.stop_channel().await;
    assert_eq!(rig.sim.stored().0, 1, "kept on the SIM while uncommitted");
    assert!(rig.sink.inbound().is_empty());
    *rig.sink.failing_cursor_write_prefix.lock().unwrap() = None;
    rig
}

/// Wait until the SIM is empty, its one message `text` committed once.
async fn read_once_and_freed(rig: &Rig, text: &str) {
    wait_until(|| rig.sim.stored().0 == 0).await;
    let inbound = rig.sink.inbound();
    assert_eq!(inbound.len(), 1, "{inbound:?}");
    assert_eq!(inbound[0].text, text);
}

/// As below, and after the restart the read by its own name comes damaged
/// each time (a SIM busy refuses it alike): the slot stays noted and a
/// later sweep reads it. Taken for an empty slot, its note was dropped,
/// and the message stayed on the SIM for good.
#[tokio::test]
async fn a_noted_slot_whose_read_fails_stays_noted_and_is_read_by_a_later_sweep() {
    let mut rig = commit_refused_on_the_sim("read at last").await;
    let damaged = (0..4).filter(|&index| rig.sim.damage_next_reads("SM", index, 3));
    assert_eq!(damaged.count(), 1, "one slot holds the message");

    let mut config = both_memories();
    config.sweep_interval_seconds = 1;
    rig.restart_channel(config);
    read_once_and_freed(&rig, "read at last").await;
    rig.stop_channel().await;
}

/// A noted slot found empty (someone deleted the message outside the
/// driver) is no longer noted, however the modem answers the read of an
/// empty slot: `+CMS ERROR: 321`, a bare `OK` (SIM800) or a header with
/// no PDU (some Quectel firmware). Taken for a read that failed, the note
/// stayed, and every sweep read the slot again for good.
#[tokio::test]
async fn a_noted_slot_found_empty_is_no_longer_noted_however_the_modem_says_so() {
    use phonerelay_sms::sim::EmptyRead;
    for answer in [
        EmptyRead::InvalidIndex,
        EmptyRead::BareOk,
        EmptyRead::EmptyHeader,
    ] {
        let mut rig = commit_refused_on_the_sim("deleted by hand").await;
        rig.sim.clear_stored();
        rig.sim.set_empty_read(answer);
        let noted = |rig: &Rig| {
            rig.sink
                .cursors
                .lock()
                .unwrap()
                .get("sms-unswept-slots")
                .is_some_and(|slots| !slots.is_empty())
        };
        assert!(noted(&rig), "{answer:?}: noted by the refused commit");
        rig.restart_channel(both_memories());
        wait_until(|| !noted(&rig)).await;
        assert!(rig.sink.inbound().is_empty(), "{answer:?}");
        rig.stop_channel().await;
    }
}

/// The same modem, the message's commit refused (the store unavailable):
/// it stays on the SIM, where no sweep of "MT" lists it, and no later
/// indication names its slot. Read again only when a new message came to
/// the same slot, it stayed there, its sender never heard.
#[tokio::test]
async fn a_message_read_by_its_own_name_whose_commit_failed_is_read_again_after_a_restart() {
    let mut rig = commit_refused_on_the_sim("refused at first").await;
    rig.restart_channel(both_memories());
    read_once_and_freed(&rig, "refused at first").await;
    // Freed, the slot is no longer noted for the sweeps to read (its note
    // is dropped just after the delete).
    wait_until(|| {
        !rig.sink
            .cursors
            .lock()
            .unwrap()
            .contains_key("sms-unswept-slots")
    })
    .await;
    rig.stop_channel().await;
}
