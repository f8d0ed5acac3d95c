//! Receiving: +CMTI, start-up sweep, restart without duplicates, failed
//! commits keep messages on the SIM, truncated PDUs committed with a marker,
//! undecodable ones committed as they came then freed (left on the SIM and
//! named in the status while the store refuses them), partial
//! messages expired on time across reconnects.
mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use phonerelay_channel::Channel;

#[tokio::test]
async fn inbound_via_cmti_is_committed_then_deleted() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    // What the SIM holds as each message is committed: the message itself
    // at least, deleted only after.
    let sim = rig.sim.clone();
    *rig.sink.at_commit_probe.lock().unwrap() = Some(Box::new(move || sim.stored().0));
    assert_eq!(
        rig.sim.inject_inbound("+15551230001", "hello there").stored,
        1
    );
    let long = "Zażółć gęślą jaźń 😀 ".repeat(12);
    assert!(rig.sim.inject_inbound("+15551230002", &long).stored > 1);
    wait_until(|| rig.sink.inbound().len() == 2).await;
    let inbound = rig.sink.inbound();
    assert_eq!(inbound[0].from, "+15551230001");
    assert_eq!(inbound[0].text, "hello there");
    assert_eq!(inbound[1].text, long);
    assert!(inbound[0].external_id.starts_with("sms:"));
    let held = rig.sink.at_commit.lock().unwrap().clone();
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(
        held[0] >= 1 && held[1] >= 2,
        "deleted before the commit: {held:?}"
    );
    wait_until(|| rig.sim.stored().0 == 0).await;
}

#[tokio::test]
async fn startup_sweep_reads_what_is_already_stored() {
    let dir = tempfile::tempdir().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let sim =
        phonerelay_sms::sim::spawn(behaviour(), dir.path().join("modem"), stop.clone()).unwrap();
    // Stored before any host set AT+CNMI: no +CMTI, only the sweep finds it.
    sim.inject_inbound("+15551230003", "left on the SIM");
    let channel = std::sync::Arc::new(phonerelay_sms::SmsChannel::new(
        modem_config("main"),
        dir.path().join("modem"),
        None,
    ));
    let sink = std::sync::Arc::new(RecordingSink::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let ctx = phonerelay_channel::ChannelContext {
        sink: sink.clone(),
        fetcher: std::sync::Arc::new(phonerelay_channel::NoFetcher),
        shutdown: shutdown.clone(),
    };
    let task = tokio::spawn({
        let channel = channel.clone();
        async move { phonerelay_channel::Channel::run(&*channel, ctx).await }
    });
    wait_until(|| sink.inbound().len() == 1).await;
    assert_eq!(sink.inbound()[0].text, "left on the SIM");
    wait_until(|| sim.stored().0 == 0).await;
    shutdown.cancel();
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

/// A SIM full before the driver starts: the network holds what has no
/// room (the tail of a long message and one after it) and delivers it as
/// the driver's deletes free slots, so every message arrives, whole and
/// in order.
#[tokio::test]
async fn a_full_sim_is_drained_and_what_the_network_held_arrives() {
    let mut rig = Rig::idle(behaviour(), modem_config("main"));
    let capacity = phonerelay_sms::sim::SIM_CAPACITY as usize;
    for n in 1..capacity {
        let injected = rig
            .sim
            .inject_inbound("+15551230007", &format!("filler {n}"));
        assert_eq!((injected.stored, injected.held), (1, 0));
    }
    let long = "a long one that will not fit ".repeat(12);
    let injected = rig.sim.inject_inbound("+15551230008", &long);
    assert_eq!((injected.stored, injected.held), (1, 2), "one slot left");
    let after = rig.sim.inject_inbound("+15551230009", "after the long one");
    assert_eq!((after.stored, after.held), (0, 1));
    assert_eq!(rig.sim.stored(), (capacity, 0, 3));

    rig.run();
    wait_until(|| rig.sink.inbound().len() == capacity + 1).await;
    let inbound = rig.sink.inbound();
    assert_eq!(inbound.iter().filter(|m| m.text == long).count(), 1);
    assert_eq!(inbound.last().unwrap().text, "after the long one");
    wait_until(|| rig.sim.stored() == (0, 0, 0)).await;
    rig.stop_channel().await;
}

/// A long message committed, and the freeing of its three slots cut
/// short after the first (a crash between two `AT+CMGD`s): the next run
/// reads its other two parts alone. They are known as parts of a
/// committed message and freed, not held to end up as a second, partial
/// message.
#[tokio::test]
async fn parts_left_by_cut_short_deletes_are_freed_not_committed_again() {
    let mut rig = Rig::idle(behaviour(), modem_config("main"));
    let long = "one long message in three parts ".repeat(12);
    assert_eq!(rig.sim.inject_inbound("+15551230010", &long).stored, 3);
    // The first run: commits, keeps the parts as committed, and is gone
    // before it frees any slot or clears that record.
    rig.sim.set_keep_deleted(true);
    rig.sink
        .ignore_cursor_removals
        .store(true, Ordering::SeqCst);
    rig.run();
    wait_until(|| rig.sink.inbound().len() == 1).await;
    let committed_parts = || {
        rig.sink
            .cursors
            .lock()
            .unwrap()
            .keys()
            .filter(|name| name.starts_with("sms-committed-parts:"))
            .count()
    };
    wait_until(|| committed_parts() == 1).await;
    rig.stop_channel().await;
    assert_eq!(rig.sim.stored().0, 3);
    // It had freed the first part's slot.
    assert!(rig.sim.delete_stored(1));
    rig.sim.set_keep_deleted(false);
    rig.sink
        .ignore_cursor_removals
        .store(false, Ordering::SeqCst);

    rig.restart_channel(modem_config("main"));
    wait_until(|| rig.sim.stored().0 == 0).await;
    assert_eq!(rig.sink.inbound().len(), 1, "committed once");
    rig.stop_channel().await;
}

/// A long message whose committed-parts record cannot be written is not
/// committed either (the two are one transaction), and none of its slots
/// is freed: sweeps read it again and try again. Once the record can be
/// written, the whole message is committed, once, and freed. Before, it
/// was committed alone and its parts left unnamed, so a part read again
/// (its delete cut short by a crash, or delivered again by the network)
/// came out as a second, partial message. (With the record unreadable
/// too, its parts are not even assembled: see
/// `stored_parts_whose_committed_record_cannot_be_read_are_not_held`.)
#[tokio::test]
async fn a_long_message_whose_record_cannot_be_written_is_not_committed_until_it_can() {
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 1;
    let mut rig = Rig::idle(behaviour(), config);
    let long = "a long one while the store keeps no record ".repeat(10);
    assert_eq!(rig.sim.inject_inbound("+15551230011", &long).stored, 3);
    *rig.sink.failing_cursor_write_prefix.lock().unwrap() = Some("sms-committed-parts:".into());
    rig.run();
    // The first read and a sweep's: each must commit nothing.
    two_refused_writes_or_a_commit(&rig).await;
    assert!(
        rig.sink.inbound().is_empty(),
        "committed without its record"
    );
    assert_eq!(rig.sim.stored().0, 3, "no slot freed");

    *rig.sink.failing_cursor_write_prefix.lock().unwrap() = None;
    wait_until(|| rig.sim.stored().0 == 0).await;
    assert_eq!(texts(&rig), [long.as_str()], "committed once, whole");
    rig.stop_channel().await;
}

#[tokio::test]
async fn failed_commit_keeps_the_message_and_restart_gives_the_same_id() {
    let mut rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    rig.sink.failing.store(true, Ordering::SeqCst);
    let long = "part one and part two and part three ".repeat(6);
    let parts = rig.sim.inject_inbound("+15551230004", &long).stored;
    rig.sim.inject_inbound("+15551230004", "short");
    // Give the driver the +CMTIs: it reads them (commands go up) but the
    // failed commit must not delete anything.
    let before = rig.sim.commands_seen();
    wait_until(|| rig.sim.commands_seen() > before + parts as u64).await;
    rig.stop_channel().await;
    assert_eq!(
        rig.sim.stored().0,
        parts + 1,
        "nothing deleted without a commit"
    );
    assert!(rig.sink.inbound().is_empty());

    // Restart: the sweep commits both.
    rig.sink.failing.store(false, Ordering::SeqCst);
    rig.restart_channel(modem_config("main"));
    wait_until(|| rig.sink.inbound().len() == 2).await;
    wait_until(|| rig.sim.stored().0 == 0).await;
    let first = rig.sink.inbound();
    assert_eq!(
        first.iter().find(|m| m.text == long).unwrap().from,
        "+15551230004"
    );

    // A single-part message's id is the first occurrence of the base id
    // its PDU gives; read again from its slot (as after a crash before
    // AT+CMGD) it is known by the slot's record and keeps that id, so the
    // store drops it (tests/twins.rs).
    let base = phonerelay_sms::driver::inbound::inbound_external_id(
        &first[1].from,
        first[1].received_at_ms / 1000,
        None,
        &first[1].text,
    );
    assert_eq!(format!("{base}#1"), first[1].external_id);
    rig.stop_channel().await;
}

#[tokio::test]
async fn truncated_deliver_is_committed_with_a_marker_and_deleted() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    // A DELIVER whose TP-UDL promises 11 characters ("hello world") but
    // whose user data stops after 8 octets (9 whole septets).
    let (full, _) =
        phonerelay_sms::codec::encode_deliver("+15551230005", "hello world", 1_700_000_000, 1)
            .remove(0);
    let cut = &full[..full.len() - 4];
    assert!(rig.sim.inject_raw_pdu(cut));
    // And a well-formed one after it: both arrive, in order.
    rig.sim.inject_inbound("+15551230006", "intact");
    wait_until(|| rig.sink.inbound().len() == 2).await;
    let inbound = rig.sink.inbound();
    assert_eq!(inbound[0].from, "+15551230005");
    assert_eq!(inbound[0].text, "hello wor [truncated]");
    assert!(inbound[0].external_id.starts_with("sms:"));
    assert_eq!(inbound[1].text, "intact");
    // Committed, so freed: nothing is left for a human to look at.
    wait_until(|| rig.sim.stored().0 == 0).await;
}

/// A PDU line cut short on the serial line (a stray CR) is still hex;
/// decoded leniently it read as a message the SMSC stored short: committed
/// as "[truncated]", and its intact copy on the SIM deleted. The header
/// still gives the whole TPDU's length, so the line is known as damaged:
/// the slot is left alone (not decoded, not deleted, not undecodable) and
/// read again, whole, by a later read or sweep. So is a line a flipped
/// bit made no hex at all (the simulator damages by turns), which was
/// taken for an empty slot, or passed over in a listing taken as whole.
#[tokio::test]
async fn a_pdu_line_damaged_on_the_serial_line_is_read_again_not_committed_cut() {
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 1;
    let mut rig = Rig::idle(behaviour(), config);
    let listed = "a message that a stray carriage return cuts short on the line";
    let (pdu, _) =
        phonerelay_sms::codec::encode_deliver("+15551230041", listed, unix_now(), 0).remove(0);
    // Found by the start-up sweep; its listing and the three reads of it
    // on its own come damaged, so only a later sweep gets it whole.
    assert!(rig.sim.inject_raw_pdu_unannounced(&pdu));
    assert!(rig.sim.damage_next_reads("SM", 1, 4));
    rig.run();
    wait_until(|| rig.sink.inbound().len() == 1).await;
    assert_eq!(rig.sink.inbound()[0].text, listed);
    wait_until(|| rig.sim.stored().0 == 0).await;
    let damaged = || {
        rig.channel
            .health()
            .measures
            .get("damaged_pdu_lines")
            .copied()
    };
    assert_eq!(damaged(), Some(4));

    // Announced (+CMTI): its first AT+CMGR comes damaged, the next whole.
    let announced = "announced, then read through a noisy line, and read whole";
    let (pdu, _) =
        phonerelay_sms::codec::encode_deliver("+15551230042", announced, unix_now(), 0).remove(0);
    rig.sim.damage_next_stored(1);
    assert!(rig.sim.inject_raw_pdu(&pdu));
    wait_until(|| rig.sink.inbound().len() == 2).await;
    assert_eq!(rig.sink.inbound()[1].text, announced);
    wait_until(|| rig.sim.stored().0 == 0).await;
    assert_eq!(damaged(), Some(5));
    assert_eq!(undecodable_slots(&rig), None);
    assert_eq!(rig.sink.inbound().len(), 2, "each committed once");
}

/// A partial message the driver holds is timed on one clock across
/// reconnects: one first seen long into a session is committed (with what
/// arrived) on time after a reconnect, not as much later as that session
/// had run.
#[tokio::test]
async fn a_partial_message_expires_on_schedule_after_a_reconnect() {
    let mut config = modem_config("main");
    config.reassembly_timeout_seconds = 1;
    let rig = Rig::start(behaviour(), config).await;
    rig.wait_up().await;
    // Long into the session, the first of two parts comes and is read.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (first_part, _) =
        phonerelay_sms::codec::encode_deliver("+15551230007", &"w".repeat(200), unix_now(), 9)
            .remove(0);
    let before = rig.sim.commands_seen();
    assert!(rig.sim.inject_raw_pdu(&first_part));
    wait_until(|| rig.sim.commands_seen() > before).await;
    // Reconnect well before the part is due.
    rig.sim.disconnect();
    wait_until(|| !rig.sim.is_plugged()).await;
    rig.sim.reconnect();
    let reconnected = Instant::now();
    wait_until(|| rig.sink.inbound().len() == 1).await;
    assert!(
        reconnected.elapsed() < Duration::from_millis(3500),
        "committed {:?} after the reconnect",
        reconnected.elapsed()
    );
    assert_eq!(rig.sink.inbound()[0].from, "+15551230007");
    wait_until(|| rig.sim.stored().0 == 0).await;
}

/// A stored PDU nobody can decode is committed as it came (its octets,
/// its slot, why), then freed from the SIM: left there, a few filled a
/// small SIM and stopped reception.
#[tokio::test]
async fn an_undecodable_stored_pdu_is_committed_then_freed() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    // Cut short in its sender's address: no DELIVER can be read from it.
    assert!(rig.sim.inject_raw_pdu("0004"));
    wait_until(|| rig.sink.unreadable().len() == 1).await;
    let kept = &rig.sink.unreadable()[0];
    assert_eq!(kept.raw, [0x00, 0x04]);
    assert_eq!(kept.origin, "SM:1");
    assert_eq!(kept.phone_id, "main");
    assert!(!kept.reason.is_empty());
    wait_until(|| rig.sim.stored().0 == 0).await;
    assert_eq!(undecodable_slots(&rig), None);
    assert!(rig.sink.inbound().is_empty());
}

/// While the store refuses it, an undecodable PDU stays on the SIM, named
/// in the status sweep after sweep; once the store takes it again, the
/// next sweep commits it and frees the slot, and the status forgets it.
/// Someone deleting one meanwhile has the status forget it too.
#[tokio::test]
async fn an_undecodable_pdu_the_store_refuses_stays_on_the_sim_until_it_is_committed() {
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 1;
    let rig = Rig::start(behaviour(), config).await;
    rig.wait_up().await;
    rig.sink.failing.store(true, Ordering::SeqCst);
    let slots = || undecodable_slots(&rig);
    assert!(rig.sim.inject_raw_pdu("0004"));
    wait_until(|| slots().is_some()).await;
    let named = slots().unwrap();
    assert!(named.starts_with("SM:"), "{named}");
    // Two more sweeps' refusals: still one slot named, still on the SIM.
    let refused = rig.sink.refused_writes.load(Ordering::SeqCst);
    wait_until(|| rig.sink.refused_writes.load(Ordering::SeqCst) >= refused + 2).await;
    assert_eq!(slots(), Some(named.clone()));
    assert_eq!(rig.sim.stored().0, 1, "left on the SIM");

    rig.sink.failing.store(false, Ordering::SeqCst);
    wait_until(|| rig.sim.stored().0 == 0).await;
    assert_eq!(rig.sink.unreadable().len(), 1);
    assert_eq!(rig.sink.unreadable()[0].raw, [0x00, 0x04]);
    assert_eq!(slots(), None);

    // One deleted by someone else while it waits is forgotten.
    rig.sink.failing.store(true, Ordering::SeqCst);
    assert!(rig.sim.inject_raw_pdu("0005"));
    wait_until(|| slots().is_some()).await;
    rig.sim.clear_stored();
    wait_until(|| slots().is_none()).await;
}

/// A listing the modem refuses (`+CMS ERROR: 314`, SIM busy while it
/// loads) says nothing of what the SIM holds: the undecodable PDU waiting
/// there for the store stays named in the status. Taken for an empty
/// listing, it was forgotten until the next sweep that could list.
#[tokio::test]
async fn a_refused_listing_keeps_the_undecodable_pdus_the_status_names() {
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 1;
    let rig = Rig::start(behaviour(), config).await;
    rig.wait_up().await;
    rig.sink.unreadable_refused.store(true, Ordering::SeqCst);
    assert!(rig.sim.inject_raw_pdu("0004"));
    wait_until(|| undecodable_slots(&rig).is_some()).await;
    let named = undecodable_slots(&rig);
    rig.sim.refuse_listings(Some(314));
    // Two refused sweeps: the first one's outcome is in the status by the
    // time the second listing is asked for.
    wait_until(|| rig.sim.listings_refused() >= 2).await;
    assert_eq!(undecodable_slots(&rig), named);
    assert_eq!(rig.sim.stored().0, 1, "still on the SIM");
}

/// A crash between the commit and the delete leaves the PDU on the SIM:
/// read again, it is offered with the same octets, which the store keeps
/// once, and this time freed.
#[tokio::test]
async fn an_undecodable_pdu_left_by_a_cut_short_delete_is_offered_again_the_same() {
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 1;
    let mut rig = Rig::idle(behaviour(), config.clone());
    rig.sim.set_keep_deleted(true);
    rig.run();
    rig.wait_up().await;
    assert!(rig.sim.inject_raw_pdu("0004"));
    wait_until(|| rig.sink.unreadable().len() == 1).await;
    rig.stop_channel().await;
    assert_eq!(rig.sim.stored().0, 1, "the delete was cut short");
    rig.sim.set_keep_deleted(false);
    rig.restart_channel(config);
    wait_until(|| rig.sim.stored().0 == 0).await;
    let offered = rig.sink.unreadable();
    assert!(offered.len() >= 2, "offered again: {offered:?}");
    assert!(
        offered
            .iter()
            .all(|u| u.raw == offered[0].raw && u.origin == offered[0].origin)
    );
    rig.stop_channel().await;
}

/// The slots the status names as holding a PDU nobody can decode.
fn undecodable_slots(rig: &Rig) -> Option<String> {
    rig.channel
        .health()
        .details
        .get("undecodable_stored")
        .cloned()
}

/// One DELIVER part of a long message from `from`, as hex.
fn long_parts(from: &str, text: &str, reference: u8) -> Vec<String> {
    phonerelay_sms::codec::encode_deliver(from, text, unix_now(), reference)
        .into_iter()
        .map(|(hex, _)| hex)
        .collect()
}

/// The committed-parts record a run leaves for `parts` from `from` once
/// their message is committed, as (cursor name, value).
fn committed_parts_record(from: &str, parts: &[String]) -> (String, String) {
    use phonerelay_sms::driver::inbound;
    let mut name = String::new();
    let mut fingerprints = Vec::new();
    for hex in parts {
        let phonerelay_sms::codec::Incoming::Deliver(deliver) =
            phonerelay_sms::codec::decode_incoming(hex).unwrap()
        else {
            panic!("not a DELIVER");
        };
        let (part_name, fingerprint) = inbound::part_fingerprint(from, &deliver).unwrap();
        name = part_name;
        fingerprints.push(fingerprint);
    }
    (name, inbound::with_fingerprints("", &fingerprints, true))
}

/// Until two writes were refused (a first attempt and a retry), or
/// something was committed meanwhile, which the caller then finds.
async fn two_refused_writes_or_a_commit(rig: &Rig) {
    wait_until(|| {
        rig.sink.refused_writes.load(Ordering::SeqCst) >= 2 || !rig.sink.inbound().is_empty()
    })
    .await;
}

fn texts(rig: &Rig) -> Vec<String> {
    rig.sink.inbound().into_iter().map(|m| m.text).collect()
}

/// A sweep lists the SIM once. A part listed early can complete a message
/// whose other part sits in a slot listed later: that slot is freed before
/// the sweep gets to it, and what the list says of it is stale. On a full
/// SIM the network refills a freed slot at once; acting on the stale entry
/// (freeing it as a committed part) deleted the new message unread.
#[tokio::test]
async fn a_sweep_does_not_act_on_a_slot_its_own_deletes_freed() {
    let mut rig = Rig::idle(behaviour(), modem_config("main"));
    let capacity = phonerelay_sms::sim::SIM_CAPACITY as usize;
    let long = "s".repeat(200);
    let parts = long_parts("+15551230011", &long, 21);
    assert_eq!(parts.len(), 2);
    let (filler, _) =
        phonerelay_sms::codec::encode_deliver("+15551230012", "filler", unix_now(), 0).remove(0);
    assert!(rig.sim.inject_raw_pdu(&filler)); // slot 1
    assert!(rig.sim.inject_raw_pdu(&parts[0])); // slot 2
    rig.run();
    // The filler is committed and freed; the first part is held.
    wait_until(|| rig.sink.inbound().len() == 1 && rig.sim.stored().0 == 1).await;
    // While the modem is away, the second part lands in slot 1 (the
    // start-up sweep lists it before the first part's slot 2), the SIM
    // fills up, and the network holds two more.
    rig.sim.disconnect();
    wait_until(|| !rig.sim.is_plugged()).await;
    assert!(rig.sim.inject_raw_pdu(&parts[1]));
    for n in 3..=capacity {
        assert_eq!(
            rig.sim
                .inject_inbound("+15551230013", &format!("fill {n}"))
                .stored,
            1
        );
    }
    for text in ["held one", "held two"] {
        assert_eq!(rig.sim.inject_inbound("+15551230014", text).held, 1);
    }
    rig.sim.reconnect();
    // The long message frees slots 1 and 2, and the held two land there.
    wait_until(|| rig.sink.inbound().len() == capacity + 2).await;
    wait_until(|| rig.sim.stored() == (0, 0, 0)).await;
    let texts = texts(&rig);
    assert_eq!(texts[1], long);
    for text in ["held one", "held two"] {
        assert_eq!(
            texts.iter().filter(|t| *t == text).count(),
            1,
            "{text}: {texts:?}"
        );
    }
}

/// A part the SMSC delivered twice, its copy read only after the message
/// was committed (listed after it, or announced later): freed, not made a
/// second, partial message when the reassembly timeout ends.
#[tokio::test]
async fn a_copy_of_a_part_read_after_its_message_was_committed_is_freed_not_committed() {
    let mut config = modem_config("main");
    config.reassembly_timeout_seconds = 1;
    let mut rig = Rig::idle(behaviour(), config);
    let long = "c".repeat(200);
    let parts = long_parts("+15551230015", &long, 22);
    for hex in [&parts[0], &parts[1], &parts[1]] {
        assert!(rig.sim.inject_raw_pdu(hex));
    }
    rig.run();
    wait_until(|| rig.sink.inbound().len() == 1).await;
    wait_until(|| rig.sim.stored().0 == 0).await;
    // Once more, announced by +CMTI after the commit.
    assert!(rig.sim.inject_raw_pdu(&parts[0]));
    wait_until(|| rig.sim.stored().0 == 0).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(texts(&rig), [long.as_str()]);
}

/// The same, with the daemon restarted between the commit and the copy
/// (the network delivers a part again within hours when it lost the
/// handset's acknowledgement): the part is still known as committed,
/// freed, and not made a second, partial message.
#[tokio::test]
async fn a_part_delivered_again_after_a_restart_is_freed_not_committed() {
    let (rig, long) =
        part_delivered_again_after_a_restart("d", "+15551230016", 23, RestartFaults::default())
            .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(texts(&rig), [long.as_str()]);
}

/// Cursor faults for [`part_delivered_again_after_a_restart`], by the
/// prefix of the cursors' names.
#[derive(Default)]
struct RestartFaults {
    /// Writes fail while the first run commits and frees the message.
    unwritable: Option<&'static str>,
    /// Reads and writes fail while the restarted channel starts up.
    unreadable_at_restart: Option<&'static str>,
}

/// A long message of `letter`s from `sender` committed and its slots
/// freed, the channel restarted, and its second part delivered again,
/// with `faults` meanwhile, until the SIM is empty; and the message's
/// text.
async fn part_delivered_again_after_a_restart(
    letter: &str,
    sender: &str,
    reference: u8,
    faults: RestartFaults,
) -> (Rig, String) {
    let mut config = modem_config("main");
    config.reassembly_timeout_seconds = 1;
    let (rig, parts, long) =
        long_message_committed_then_restarted(letter, sender, reference, faults, config).await;
    assert!(rig.sim.inject_raw_pdu(&parts[1]));
    wait_until(|| rig.sim.stored().0 == 0).await;
    (rig, long)
}

/// A long message of `letter`s from `sender` committed and its slots
/// freed, and the channel restarted with `config`, with `faults`
/// meanwhile; and the message's parts and text.
async fn long_message_committed_then_restarted(
    letter: &str,
    sender: &str,
    reference: u8,
    faults: RestartFaults,
    config: phonerelay_sms::ModemConfig,
) -> (Rig, Vec<String>, String) {
    let mut rig = Rig::idle(behaviour(), config.clone());
    let long = letter.repeat(200);
    let parts = long_parts(sender, &long, reference);
    for hex in &parts {
        assert!(rig.sim.inject_raw_pdu(hex));
    }
    *rig.sink.failing_cursor_write_prefix.lock().unwrap() = faults.unwritable.map(str::to_string);
    rig.run();
    wait_until(|| rig.sink.inbound().len() == 1).await;
    wait_until(|| rig.sim.stored().0 == 0).await;
    rig.stop_channel().await;
    *rig.sink.failing_cursor_write_prefix.lock().unwrap() = None;

    *rig.sink.failing_cursor_prefix.lock().unwrap() =
        faults.unreadable_at_restart.map(str::to_string);
    rig.restart_channel(config);
    rig.wait_up().await;
    *rig.sink.failing_cursor_prefix.lock().unwrap() = None;
    (rig, parts, long)
}

/// The same, with the recent-parts record unwritable when the message's
/// last slot is freed: its committed-parts record stays in its place, so
/// the part delivered again after the restart is still known, freed, and
/// not made a second, partial message. Before, that record was taken off
/// all the same, and nothing named the part any more.
#[tokio::test]
async fn a_part_delivered_again_after_a_restart_is_known_when_recent_parts_were_not_noted() {
    let faults = RestartFaults {
        unwritable: Some("sms-committed-recent"),
        ..RestartFaults::default()
    };
    let (mut rig, long) =
        part_delivered_again_after_a_restart("l", "+15551230026", 31, faults).await;
    // The SIM is empty: at once when the part is known; when not, only
    // once it came out alone at its timeout, which this would show.
    assert_eq!(texts(&rig), [long.as_str()]);
    rig.stop_channel().await;
}

/// The same, with the parts committed lately unreadable while the
/// restarted channel starts up (the store failing for a moment): they are
/// read again before the part delivered again is judged, so it is still
/// known, freed, and not made a second, partial message. Before, they
/// were read once, at start, and a failed read forgot them for the run.
#[tokio::test]
async fn a_part_delivered_again_is_known_when_the_recent_parts_were_unreadable_at_start() {
    let faults = RestartFaults {
        unreadable_at_restart: Some("sms-committed-recent"),
        ..RestartFaults::default()
    };
    let (mut rig, long) =
        part_delivered_again_after_a_restart("m", "+15551230027", 32, faults).await;
    assert_eq!(texts(&rig), [long.as_str()]);
    rig.stop_channel().await;
}

/// The same, the part handed over again directly (`+CMT`) once the store
/// is back: it is judged as a stored part is, the parts committed lately
/// read again first, so it is dropped, not made a second, partial
/// message. Before, only what memory knew was asked (nothing, the list
/// unread): the part was kept, held, and came out alone at the
/// reassembly timeout.
#[tokio::test]
async fn a_part_handed_over_again_is_known_when_the_recent_parts_were_unreadable_at_start() {
    let faults = RestartFaults {
        unreadable_at_restart: Some("sms-committed-recent"),
        ..RestartFaults::default()
    };
    let mut config = modem_config("main");
    config.reassembly_timeout_seconds = 1;
    let sender = "+15551230030";
    let (mut rig, parts, long) =
        long_message_committed_then_restarted("o", sender, 34, faults, config).await;
    rig.sim.deliver_direct(&parts[1], false);
    // Handled in order: once the next message is in, the copy was judged.
    // Taken for a new message's part, it would wait in the record until
    // its timeout committed it alone.
    let next = long_parts(sender, "after the long one", 0).pop().unwrap();
    rig.sim.deliver_direct(&next, false);
    wait_until(|| rig.sink.inbound().len() == 2).await;
    assert_eq!(direct_record(&rig), None, "the copy is not held");
    assert_eq!(texts(&rig), [long.as_str(), "after the long one"]);
    rig.stop_channel().await;
}

/// The same, the part handed over while the parts committed lately still
/// cannot be read: it waits in the record of direct deliveries, out of
/// assembly, and the first sweep that can read them drops it. Before, it
/// was held, and came out alone at the reassembly timeout.
#[tokio::test]
async fn a_part_handed_over_again_while_the_recent_parts_are_unreadable_waits_for_a_sweep() {
    let faults = RestartFaults {
        unreadable_at_restart: Some("sms-committed-recent"),
        ..RestartFaults::default()
    };
    let mut config = modem_config("main");
    config.reassembly_timeout_seconds = 1;
    config.sweep_interval_seconds = 1;
    let (mut rig, parts, long) =
        long_message_committed_then_restarted("p", "+15551230031", 35, faults, config).await;
    *rig.sink.failing_cursor_prefix.lock().unwrap() = Some("sms-committed-recent".into());
    rig.sim.deliver_direct(&parts[1], false);
    wait_until(|| direct_record(&rig).is_some()).await;
    *rig.sink.failing_cursor_prefix.lock().unwrap() = None;
    // Off the record once judged: dropped by a sweep, or (held) committed
    // alone at its timeout, which the texts would show.
    wait_until(|| direct_record(&rig).is_none()).await;
    assert_eq!(texts(&rig), [long.as_str()]);
    rig.stop_channel().await;
}

/// A part waits in slot 1 for the rest of its message; something else
/// deletes it (the SIM read in a phone, a program on the modem's other
/// port) and a new message takes slot 1. The new message is read and
/// committed, and the waiting message, when it expires, frees nothing
/// of it: before, the held slot was skipped by every read and deleted
/// unread at the expiry.
#[tokio::test]
async fn a_held_slot_that_changed_hands_is_read_not_deleted_unread() {
    let mut config = modem_config("main");
    config.reassembly_timeout_seconds = 4;
    let mut rig = Rig::start(behaviour(), config).await;
    rig.wait_up().await;
    let long = "e".repeat(200);
    let parts = long_parts("+15551230017", &long, 24);
    assert!(rig.sim.inject_raw_pdu(&parts[0]));
    // Read on its +CMTI, and held.
    wait_until(|| rig.sim.stored_was_read(1) == Some(true)).await;
    assert_eq!(rig.sim.stored().0, 1, "the part waits in its slot");
    assert!(texts(&rig).is_empty());

    assert!(rig.sim.delete_stored(1));
    rig.sim.inject_inbound("+15551230020", "new");
    wait_until(|| texts(&rig).contains(&"new".to_string())).await;
    // The waiting message expires with its part 2 missing.
    wait_until(|| rig.sink.inbound().len() == 2).await;
    wait_until(|| rig.sim.stored().0 == 0).await;
    let texts = texts(&rig);
    assert!(texts.iter().any(|t| t.starts_with("eee")), "{texts:?}");
    rig.stop_channel().await;
}

/// The same, the new message in the slot unannounced (no `+CMTI`: the SIM
/// was in a phone) and no sweep due before the waiting message expires: its
/// expiry lists the memory first, finds the slot changed hands, and reads
/// the new message instead of deleting it unread.
#[tokio::test]
async fn a_held_slot_that_changed_hands_unannounced_is_read_before_the_expiry() {
    let mut config = modem_config("main");
    config.reassembly_timeout_seconds = 3;
    config.sweep_interval_seconds = 3600;
    let mut rig = Rig::start(behaviour(), config).await;
    rig.wait_up().await;
    let long = "f".repeat(200);
    let parts = long_parts("+15551230018", &long, 25);
    assert!(rig.sim.inject_raw_pdu(&parts[0]));
    wait_until(|| rig.sim.stored_was_read(1) == Some(true)).await;

    assert!(rig.sim.delete_stored(1));
    let new = long_parts("+15551230021", "new, unannounced", 0);
    assert!(rig.sim.inject_raw_pdu_unannounced(&new[0]));
    wait_until(|| rig.sink.inbound().len() == 2).await;
    let texts = texts(&rig);
    assert!(texts.contains(&"new, unannounced".to_string()), "{texts:?}");
    wait_until(|| rig.sim.stored().0 == 0).await;
    rig.stop_channel().await;
}

/// A part of M waits in slot 2; something else deletes it, M's last part
/// then comes into slot 1 and a new message N into slot 2, both
/// unannounced. The sweep that lists them (here the one M's expiry runs)
/// reads slot 1 first, which completes M: its delete of M's slots must not
/// take slot 2, where N is now. Checked as each entry came up, slot 2 was
/// still held when M completed, and N was deleted unread.
#[tokio::test]
async fn a_message_completed_in_a_sweep_frees_no_held_slot_that_changed_hands() {
    let mut config = modem_config("main");
    config.reassembly_timeout_seconds = 4;
    config.sweep_interval_seconds = 3600;
    let mut rig = Rig::start(behaviour(), config).await;
    rig.wait_up().await;
    let a = long_parts("+15551230030", &"a".repeat(200), 30);
    let m = long_parts("+15551230031", &"m".repeat(200), 31);
    // A's first part in slot 1, M's in slot 2; A completed frees slot 1
    // (and slot 3, its second part's).
    assert!(rig.sim.inject_raw_pdu(&a[0]));
    wait_until(|| rig.sim.stored_was_read(1) == Some(true)).await;
    assert!(rig.sim.inject_raw_pdu(&m[0]));
    wait_until(|| rig.sim.stored_was_read(2) == Some(true)).await;
    assert!(rig.sim.inject_raw_pdu(&a[1]));
    wait_until(|| rig.sink.inbound().len() == 1 && rig.sim.stored().0 == 1).await;

    assert!(rig.sim.delete_stored(2));
    assert!(rig.sim.inject_raw_pdu_unannounced(&m[1]));
    let n = long_parts("+15551230032", "new in slot 2", 0);
    assert!(rig.sim.inject_raw_pdu_unannounced(&n[0]));
    wait_until(|| rig.sink.inbound().len() == 3).await;
    let texts = texts(&rig);
    assert!(texts.contains(&"m".repeat(200)), "M whole: {texts:?}");
    assert!(texts.contains(&"new in slot 2".to_string()), "{texts:?}");
    wait_until(|| rig.sim.stored().0 == 0).await;
    rig.stop_channel().await;
}

/// A part waits in slot 1; something else deletes it, and the slot stays
/// empty. The expiry's listing finds it so and lets it go: the message,
/// committed with its part missing, frees no slot. Freed at the expiry,
/// its delete took whatever had come into the slot between the listing
/// and the delete, unread.
#[tokio::test]
async fn a_held_slot_found_empty_is_not_freed_at_the_expiry() {
    let mut config = modem_config("main");
    config.reassembly_timeout_seconds = 3;
    config.sweep_interval_seconds = 3600;
    let mut rig = Rig::start(behaviour(), config).await;
    rig.wait_up().await;
    let parts = long_parts("+15551230033", &"g".repeat(200), 33);
    assert!(rig.sim.inject_raw_pdu(&parts[0]));
    wait_until(|| rig.sim.stored_was_read(1) == Some(true)).await;
    assert!(rig.sim.delete_stored(1));
    wait_until(|| rig.sink.inbound().len() == 1).await;
    assert!(texts(&rig)[0].starts_with("ggg"), "{:?}", texts(&rig));
    assert_eq!(rig.sim.lines_seen("+CMGD=1"), 0, "the empty slot was freed");
    rig.stop_channel().await;
}

/// A firmware that prints a direct delivery without its SMSC part: the
/// `+CMT` line is the TPDU alone, as long as the header's length says. It
/// is read as the message it is, not with its first octet taken for the
/// SMSC part's length.
#[tokio::test]
async fn a_direct_delivery_without_its_smsc_part_is_read_whole() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    let pdu = long_parts("+15551230034", "no centre in front", 0).remove(0);
    let tpdu = pdu
        .strip_prefix("00")
        .expect("the encoder writes an empty SMSC part")
        .to_string();
    let length = tpdu.len() / 2;
    rig.sim
        .send_unsolicited(vec![format!("+CMT: ,{length}\r\n{tpdu}")]);
    wait_until(|| !rig.sink.inbound().is_empty()).await;
    let inbound = rig.sink.inbound();
    assert_eq!(inbound[0].text, "no centre in front");
    assert_eq!(inbound[0].from, "+15551230034");
}

/// Quectel modems number their storage from 0: a message in slot 0 is
/// read, committed once and freed like any other, a long one's part too.
#[tokio::test]
async fn a_modem_numbering_its_storage_from_0_has_slot_0_read_and_freed() {
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 1;
    let rig = Rig::idle(behaviour(), config);
    rig.sim.set_first_index(0);
    let long = "q".repeat(300);
    assert_eq!(rig.sim.inject_inbound("+15551230016", &long).stored, 2);
    let mut rig = rig;
    rig.run();
    wait_until(|| rig.sink.inbound().len() == 1).await;
    wait_until(|| rig.sim.stored().0 == 0).await;
    assert!(rig.sim.inject_inbound("+15551230017", "in slot 0").stored == 1);
    wait_until(|| rig.sink.inbound().len() == 2).await;
    wait_until(|| rig.sim.stored().0 == 0).await;
    // Sweeps go on: nothing is read twice.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(texts(&rig), [long.as_str(), "in slot 0"]);
}

/// A modem set to keep messages in its own memory ("ME") still stores a
/// class 2 message on the SIM, and each memory numbers its slots from 1.
/// A part read from SIM slot 1 once stood for "slot 1" of either: a
/// message in the modem's slot 1 was skipped as held, and when the part's
/// message timed out, freeing "slot 1" deleted that message unread.
#[tokio::test]
async fn slots_of_the_sim_and_the_modem_memory_are_told_apart() {
    let mut config = modem_config("main");
    config.storage = phonerelay_sms::config::Storage::ME;
    config.reassembly_timeout_seconds = 2;
    let rig = Rig::start(behaviour(), config).await;
    rig.wait_up().await;
    let parts = long_parts("+15551230021", &"c".repeat(200), 41);
    let before = rig.sim.commands_seen();
    assert!(rig.sim.inject_raw_pdu_into("SM", &parts[0])); // SM 1
    wait_until(|| rig.sim.commands_seen() > before + 2).await;
    let (single, _) =
        phonerelay_sms::codec::encode_deliver("+15551230022", "in the modem", unix_now(), 0)
            .remove(0);
    assert!(rig.sim.inject_raw_pdu_into("ME", &single)); // ME 1
    // The modem's message at once; the part alone once its wait is over.
    wait_until(|| rig.sink.inbound().len() == 2).await;
    let inbound = rig.sink.inbound();
    assert_eq!(inbound[0].text, "in the modem");
    assert_eq!(inbound[1].from, "+15551230021");
    wait_until(|| rig.sim.stored() == (0, 0, 0)).await;
}

/// A class 2 message that came while nothing listened (so no indication
/// was seen) is on the SIM, not in the modem memory the driver prefers:
/// the sweep lists the SIM too.
#[tokio::test]
async fn a_sweep_of_a_modem_preferring_its_own_memory_reads_the_sim_too() {
    let mut config = modem_config("main");
    config.storage = phonerelay_sms::config::Storage::ME;
    let mut rig = Rig::idle(behaviour(), config);
    let (on_sim, _) =
        phonerelay_sms::codec::encode_deliver("+15551230023", "class 2", unix_now(), 0).remove(0);
    assert!(rig.sim.inject_raw_pdu_into("SM", &on_sim));
    rig.run();
    wait_until(|| rig.sink.inbound().len() == 1).await;
    assert_eq!(rig.sink.inbound()[0].text, "class 2");
    wait_until(|| rig.sim.stored() == (0, 0, 0)).await;
}

/// A modem whose own memory is the SIM may store a message in its own
/// memory ("ME": the SIM full, a class 1 message) and say so only in its
/// `+CMTI: "ME",<index>`. No sweep listed "ME", so that message was read
/// once, from its indication: when its commit failed it stayed there
/// unread for good, restart or not. The memory is remembered (in the
/// store) and swept from then on, after a restart too.
#[tokio::test]
async fn a_message_in_a_memory_only_its_indication_named_is_swept_after_a_restart() {
    let mut rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    rig.sink.failing.store(true, Ordering::SeqCst);
    let (pdu, _) =
        phonerelay_sms::codec::encode_deliver("+15551230051", "stored in ME", unix_now(), 0)
            .remove(0);
    let before = rig.sim.commands_seen();
    assert!(rig.sim.inject_raw_pdu_into("ME", &pdu)); // +CMTI: "ME",1
    // Selected, read, and the SIM selected again; the commit fails.
    wait_until(|| rig.sim.commands_seen() >= before + 3).await;
    rig.stop_channel().await;
    assert!(rig.sink.inbound().is_empty());
    assert_eq!(rig.sim.stored().0, 1, "kept without a commit");

    rig.sink.failing.store(false, Ordering::SeqCst);
    rig.restart_channel(modem_config("main"));
    wait_until(|| rig.sink.inbound().len() == 1).await;
    assert_eq!(rig.sink.inbound()[0].text, "stored in ME");
    wait_until(|| rig.sim.stored() == (0, 0, 0)).await;
    rig.stop_channel().await;
}

/// A modem that hands reports over directly has no "SR" memory and
/// refuses to select it. Its sweep then lists nothing as reports: the
/// listing of a memory it could not select would be another memory's
/// slots under the wrong name (an undecodable PDU named twice, once as a
/// report).
#[tokio::test]
async fn a_modem_without_report_memory_has_no_slot_listed_as_a_report() {
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 1;
    let behaviour = phonerelay_sms::sim::Behaviour {
        stores_status_reports: false,
        ..behaviour()
    };
    let rig = Rig::start(behaviour, config).await;
    rig.wait_up().await;
    // Refused by the store, it stays on the SIM, named in the status.
    rig.sink.unreadable_refused.store(true, Ordering::SeqCst);
    let slots = || undecodable_slots(&rig);
    assert!(rig.sim.inject_raw_pdu("0004"));
    wait_until(|| slots().is_some()).await;
    // Two sweeps later, still the one slot, under its own memory.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(slots().as_deref(), Some("SM:1"));
}

/// A modem that keeps one memory refuses `AT+CPMS=` at start-up and ever
/// after: its messages are read where they are, not left unread because
/// no memory could be selected to read them in.
#[tokio::test]
async fn a_modem_that_refuses_to_select_a_memory_still_has_its_messages_read() {
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 1;
    let behaviour = phonerelay_sms::sim::Behaviour {
        selects_memory: false,
        ..behaviour()
    };
    let mut rig = Rig::idle(behaviour, config);
    let (stored, _) =
        phonerelay_sms::codec::encode_deliver("+15551230031", "kept before", unix_now(), 0)
            .remove(0);
    assert!(rig.sim.inject_raw_pdu(&stored));
    rig.run();
    rig.wait_up().await;
    assert_eq!(rig.sim.inject_inbound("+15551230032", "while up").stored, 1);
    wait_until(|| rig.sink.inbound().len() == 2).await;
    wait_until(|| rig.sim.stored() == (0, 0, 0)).await;
}

/// A memory full of messages listed over a slow line (9600 baud) takes
/// longer than a command's timeout: the listing is not cut off while it
/// streams. Cut off, the session ended at the same listing each time it
/// came back, nothing was ever read, and the SIM stayed full.
#[tokio::test]
async fn a_long_listing_over_a_slow_line_is_read_whole() {
    let mut slow = behaviour();
    slow.baud_limit = Some(9600);
    let mut config = modem_config("main");
    config.baud = 9600;
    let mut rig = Rig::idle(slow, config);
    let text = "a message long enough to fill most of one part, ".repeat(4);
    let count = 12;
    for n in 0..count {
        rig.sim
            .inject_inbound("+15551230011", &format!("{n} {}", &text[..150]));
    }
    assert_eq!(rig.sim.stored().0, count);
    rig.run();
    wait_until(|| rig.sink.inbound().len() == count).await;
    wait_until(|| rig.sim.stored().0 == 0).await;
    rig.stop_channel().await;
}

fn direct_record(rig: &Rig) -> Option<String> {
    let cursors = rig.sink.cursors.lock().unwrap();
    cursors
        .get(phonerelay_sms::driver::direct_parts::DIRECT_PARTS_CURSOR)
        .cloned()
}

/// Part 1 of a long message handed over directly waits in assembly;
/// part 2 comes while its message's committed-parts record cannot be read
/// for a moment, so it waits unjudged in the record of direct deliveries.
/// With a reassembly timeout far shorter than the sweep interval, it is
/// judged again at the next expiry check, and part 1 does not time out
/// meanwhile: one whole message. Before, part 1 timed out and was
/// committed alone, and the next sweep committed part 2 alone too.
#[tokio::test]
async fn a_direct_part_unjudged_for_a_moment_joins_its_message_before_a_short_timeout() {
    let mut config = modem_config("main");
    config.reassembly_timeout_seconds = 1;
    config.sweep_interval_seconds = 3600;
    let rig = Rig::start(behaviour(), config).await;
    rig.wait_up().await;
    let long = "u".repeat(200);
    let parts = long_parts("+15551230040", &long, 40);
    rig.sim.deliver_direct(&parts[0], false);
    // Kept in the record once judged new.
    wait_until(|| direct_record(&rig).is_some()).await;
    *rig.sink.failing_cursor_prefix.lock().unwrap() = Some("sms-committed-parts".into());
    rig.sim.deliver_direct(&parts[1], false);
    wait_until(|| direct_record(&rig).is_some_and(|r| r.split(',').count() == 2)).await;
    *rig.sink.failing_cursor_prefix.lock().unwrap() = None;
    wait_until(|| !rig.sink.inbound().is_empty()).await;
    assert_eq!(texts(&rig)[0], long, "one message, whole");
    wait_until(|| direct_record(&rig).is_none()).await;
    assert_eq!(texts(&rig), [long.as_str()]);
}

/// The first part of a long message handed over directly (`+CMT`, stored
/// nowhere), then a restart, then the second part: the first was kept in
/// the store, so the message arrives whole. Before, the first part lived
/// in memory only and the restart lost it: the second came out alone.
#[tokio::test]
async fn a_direct_part_waiting_for_its_message_outlives_a_restart() {
    let mut config = modem_config("main");
    config.reassembly_timeout_seconds = 3;
    let mut rig = Rig::start(behaviour(), config.clone()).await;
    rig.wait_up().await;
    let long = "f".repeat(200);
    let parts = long_parts("+15551230018", &long, 25);
    rig.sim.deliver_direct(&parts[0], false);
    wait_until(|| direct_record(&rig).is_some()).await;
    rig.stop_channel().await;
    assert!(rig.sink.inbound().is_empty());

    rig.restart_channel(config);
    rig.wait_up().await;
    rig.sim.deliver_direct(&parts[1], false);
    wait_until(|| !rig.sink.inbound().is_empty()).await;
    assert_eq!(texts(&rig), [long.as_str()]);
    wait_until(|| direct_record(&rig).is_none()).await;
    rig.stop_channel().await;
}

/// A message handed over directly whose commit fails is kept, and the
/// next start commits it; before, it was lost (only counted as such).
#[tokio::test]
async fn a_direct_message_whose_commit_failed_is_committed_after_a_restart() {
    let mut rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    rig.sink.failing.store(true, Ordering::SeqCst);
    let pdu = long_parts("+15551230019", "kept while the store was down", 0)
        .pop()
        .unwrap();
    rig.sim.deliver_direct(&pdu, false);
    wait_until(|| direct_record(&rig).is_some()).await;
    rig.stop_channel().await;
    assert!(rig.sink.inbound().is_empty());
    let health = rig.channel.health();
    assert_eq!(health.measures.get("lost_direct_events"), None);

    rig.sink.failing.store(false, Ordering::SeqCst);
    rig.restart_channel(modem_config("main"));
    wait_until(|| !rig.sink.inbound().is_empty()).await;
    assert_eq!(texts(&rig), ["kept while the store was down"]);
    wait_until(|| direct_record(&rig).is_none()).await;
    rig.stop_channel().await;
}

/// A long message of a direct part and a stored one, committed while its
/// parts cannot be recorded as committed: the stored part stays on the
/// SIM, and so does the direct part in its record, so the next sweep
/// joins them again into the same message (the store drops the repeat).
/// Before, the direct part left its record at the commit, and the stored
/// part, read again alone, came out as a second, partial message.
#[tokio::test]
async fn a_half_direct_message_whose_parts_cannot_be_recorded_is_not_split() {
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 1;
    config.reassembly_timeout_seconds = 2;
    let rig = Rig::start(behaviour(), config).await;
    rig.wait_up().await;
    let long = "g".repeat(200);
    let parts = long_parts("+15551230020", &long, 26);
    rig.sim.deliver_direct(&parts[0], false);
    wait_until(|| direct_record(&rig).is_some()).await;
    *rig.sink.failing_cursor_write_prefix.lock().unwrap() = Some("sms-committed-parts:".into());
    assert!(rig.sim.inject_raw_pdu(&parts[1]));
    // Sweeps while the record fails: nothing committed, nothing freed.
    two_refused_writes_or_a_commit(&rig).await;
    assert!(rig.sink.inbound().is_empty(), "{:?}", texts(&rig));
    assert_eq!(rig.sim.stored().0, 1, "no slot freed");
    assert!(direct_record(&rig).is_some(), "the direct part kept");
    *rig.sink.failing_cursor_write_prefix.lock().unwrap() = None;
    wait_until(|| rig.sim.stored().0 == 0).await;
    wait_until(|| direct_record(&rig).is_none()).await;
    // Past the reassembly timeout: a part left alone would be out by now.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(texts(&rig), [long.as_str()], "one message, whole, once");
}

/// A long message handed over directly (on no SIM) whose parts cannot be
/// noted as committed lately is not committed either (the two are one
/// transaction): it waits in the record of direct deliveries, and once
/// the note can be written a sweep commits it, once. A part the network
/// delivers again after a restart is then known and dropped. Before, the
/// message was committed and the failed note only logged, so the part
/// delivered again came out as a second, partial message.
#[tokio::test]
async fn a_direct_long_message_whose_parts_cannot_be_noted_is_not_committed_until_they_can() {
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 1;
    config.reassembly_timeout_seconds = 1;
    let mut rig = Rig::start(behaviour(), config.clone()).await;
    rig.wait_up().await;
    let long = "n".repeat(200);
    let parts = long_parts("+15551230028", &long, 33);
    *rig.sink.failing_cursor_write_prefix.lock().unwrap() = Some("sms-committed-recent".into());
    rig.sim.deliver_direct(&parts[0], false);
    rig.sim.deliver_direct(&parts[1], false);
    // Its assembly and a sweep's: each must commit nothing.
    two_refused_writes_or_a_commit(&rig).await;
    assert!(rig.sink.inbound().is_empty(), "committed without its note");
    assert!(direct_record(&rig).is_some(), "kept for the next sweep");

    *rig.sink.failing_cursor_write_prefix.lock().unwrap() = None;
    wait_until(|| direct_record(&rig).is_none()).await;
    assert_eq!(texts(&rig), [long.as_str()]);
    rig.stop_channel().await;

    rig.restart_channel(config);
    rig.wait_up().await;
    rig.sim.deliver_direct(&parts[1], false);
    // Handled in order: once the next message is in, the copy was judged.
    // Taken for a new message's part, it would wait in the record.
    let next = long_parts("+15551230028", "after the long one", 0)
        .pop()
        .unwrap();
    rig.sim.deliver_direct(&next, false);
    wait_until(|| rig.sink.inbound().len() == 2).await;
    assert_eq!(direct_record(&rig), None, "the copy is not held");
    assert_eq!(texts(&rig), [long.as_str(), "after the long one"]);
    rig.stop_channel().await;
}

/// The store down for writes of any kind when a message is handed over
/// directly: neither the message nor its record can be written. It waits
/// in memory, and a sweep after the store is back commits it. Before, it
/// was lost, and logged as kept.
#[tokio::test]
async fn a_direct_message_during_a_store_outage_is_committed_once_the_store_is_back() {
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 1;
    let rig = Rig::start(behaviour(), config).await;
    rig.wait_up().await;
    rig.sink.failing.store(true, Ordering::SeqCst);
    rig.sink.cursor_writes_fail.store(true, Ordering::SeqCst);
    let single = long_parts("+15551230021", "sent while the disk was full", 0)
        .pop()
        .unwrap();
    let long = "h".repeat(200);
    let parts = long_parts("+15551230022", &long, 27);
    rig.sim.deliver_direct(&single, false);
    rig.sim.deliver_direct(&parts[0], false);
    // Sweeps while the store is down: nothing committed, nothing written.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(rig.sink.inbound().is_empty());
    assert_eq!(direct_record(&rig), None);

    rig.sink.failing.store(false, Ordering::SeqCst);
    rig.sink.cursor_writes_fail.store(false, Ordering::SeqCst);
    wait_until(|| rig.sink.inbound().len() == 1).await;
    // The waiting part went to the record once it could be written.
    wait_until(|| direct_record(&rig).is_some()).await;
    rig.sim.deliver_direct(&parts[1], false);
    wait_until(|| rig.sink.inbound().len() == 2).await;
    assert_eq!(texts(&rig), ["sent while the disk was full", long.as_str()]);
    wait_until(|| direct_record(&rig).is_none()).await;
    assert_eq!(
        rig.channel.health().measures.get("lost_direct_events"),
        None
    );
}

/// A crash after a long message was committed (its committed-parts record
/// written) but before its direct part left the record of direct
/// deliveries: after the restart that part is known as committed and
/// only leaves the record. Before, it was assembled again alone and came
/// out as a second, partial message at the reassembly timeout.
#[tokio::test]
async fn a_direct_part_of_a_message_committed_before_a_crash_is_not_committed_again() {
    use phonerelay_sms::driver::direct_parts;
    let mut config = modem_config("main");
    config.reassembly_timeout_seconds = 1;
    let mut rig = Rig::idle(behaviour(), config);
    let long = "i".repeat(200);
    let parts = long_parts("+15551230023", &long, 28);
    let (name, record) = committed_parts_record("+15551230023", &parts[..1]);
    {
        let mut cursors = rig.sink.cursors.lock().unwrap();
        cursors.insert(name, record);
        cursors.insert(
            direct_parts::DIRECT_PARTS_CURSOR.into(),
            direct_parts::with_entry("", &direct_parts::direct_key(&parts[0]), &parts[0]),
        );
    }
    rig.run();
    rig.wait_up().await;
    wait_until(|| direct_record(&rig).is_none()).await;
    // Past the reassembly timeout: a part taken up again would be out.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(rig.sink.inbound().is_empty(), "{:?}", texts(&rig));
}

/// A crash after a long message was committed and its first slot freed
/// leaves its other two parts on the SIM and its committed-parts record in
/// the store, which the first sweep after the restart cannot read. The
/// parts wait on the SIM for a sweep that can, and are freed then. Before,
/// they were taken for a new message's, held (so no later sweep asked
/// again), and came out at the reassembly timeout as a second, partial
/// message.
#[tokio::test]
async fn stored_parts_whose_committed_record_cannot_be_read_are_not_held() {
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 1;
    config.reassembly_timeout_seconds = 1;
    let mut rig = Rig::idle(behaviour(), config);
    let from = "+15551230024";
    let parts = long_parts(from, &"j".repeat(400), 29);
    assert_eq!(parts.len(), 3);
    for hex in &parts[1..] {
        assert!(rig.sim.inject_raw_pdu(hex));
    }
    let (name, record) = committed_parts_record(from, &parts);
    rig.sink.cursors.lock().unwrap().insert(name, record);
    *rig.sink.failing_cursor_prefix.lock().unwrap() = Some("sms-committed-parts:".into());
    rig.run();
    // Up only after the first sweep, which could not read the record.
    rig.wait_up().await;
    *rig.sink.failing_cursor_prefix.lock().unwrap() = None;
    wait_until(|| rig.sim.stored().0 == 0).await;
    assert!(rig.sink.inbound().is_empty(), "{:?}", texts(&rig));
    rig.stop_channel().await;
}

/// The same for a part handed over directly: its message committed before
/// a crash, it is still in the record of direct deliveries, and the first
/// sweep after the restart cannot read the committed-parts record. It
/// stays in its record, out of assembly, until a sweep can tell. Before,
/// it was held, and came out alone at the reassembly timeout.
#[tokio::test]
async fn a_direct_part_whose_committed_record_cannot_be_read_is_not_held() {
    use phonerelay_sms::driver::direct_parts;
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 1;
    config.reassembly_timeout_seconds = 1;
    let mut rig = Rig::idle(behaviour(), config);
    let from = "+15551230025";
    let parts = long_parts(from, &"k".repeat(200), 30);
    let (name, record) = committed_parts_record(from, &parts);
    {
        let mut cursors = rig.sink.cursors.lock().unwrap();
        cursors.insert(name, record);
        cursors.insert(
            direct_parts::DIRECT_PARTS_CURSOR.into(),
            direct_parts::with_entry("", &direct_parts::direct_key(&parts[0]), &parts[0]),
        );
    }
    *rig.sink.failing_cursor_prefix.lock().unwrap() = Some("sms-committed-parts:".into());
    rig.run();
    rig.wait_up().await;
    *rig.sink.failing_cursor_prefix.lock().unwrap() = None;
    wait_until(|| direct_record(&rig).is_none()).await;
    assert!(rig.sink.inbound().is_empty(), "{:?}", texts(&rig));
    rig.stop_channel().await;
}

/// The parts committed lately unreadable for the whole run (the store
/// failing that one read): a single-part message, which that list never
/// names, is committed and freed all the same. Before, every stored
/// message waited on the list, so nothing was received and the SIM
/// filled up.
#[tokio::test]
async fn a_single_part_message_is_received_while_the_recent_parts_are_unreadable() {
    let mut rig = Rig::idle(behaviour(), modem_config("main"));
    *rig.sink.failing_cursor_prefix.lock().unwrap() = Some("sms-committed-recent".into());
    assert_eq!(
        rig.sim
            .inject_inbound("+15551230029", "no long message here")
            .stored,
        1
    );
    rig.run();
    wait_until(|| rig.sim.stored().0 == 0).await;
    assert_eq!(texts(&rig), ["no long message here"]);
    rig.stop_channel().await;
}
