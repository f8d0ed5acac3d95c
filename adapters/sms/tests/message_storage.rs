//! A full message storage: inbound stops at the network, so the health
//! says so, with what to do, until there is room again.
mod common;

use common::*;
use phonerelay_channel::{Channel, ChannelHealth, ErrorClass, HealthState};

/// A PDU no decoder makes sense of: with the store refusing it
/// ([`refuse_undecodable`]), the driver leaves it on the SIM.
const UNDECODABLE: &str = "0004";

/// The store refuses what cannot be decoded, so undecodable PDUs stay on
/// the SIM and fill it.
fn refuse_undecodable(rig: &Rig) {
    rig.sink
        .unreadable_refused
        .store(true, std::sync::atomic::Ordering::SeqCst);
}

fn small_sim(capacity: u32) -> Behaviour {
    Behaviour {
        capacity,
        ..behaviour()
    }
}

fn health(rig: &Rig) -> ChannelHealth {
    rig.channel.health()
}

fn storage_used(rig: &Rig) -> Option<i64> {
    health(rig).measures.get("message_storage_used").copied()
}

/// Undecodable PDUs the store refuses fill the SIM: the health goes
/// degraded (sending still works) naming the memory, its count and the
/// messages left on it. A
/// message that comes meanwhile waits at the network; once a slot is
/// freed it arrives, and the health recovers.
#[tokio::test]
async fn a_sim_full_of_undecodable_messages_degrades_the_health_until_room_is_made() {
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 1;
    let rig = Rig::start(small_sim(3), config).await;
    rig.wait_up().await;
    refuse_undecodable(&rig);
    wait_until(|| storage_used(&rig) == Some(0)).await;
    assert_eq!(health(&rig).measures["message_storage_total"], 3);

    for _ in 0..3 {
        assert!(rig.sim.inject_raw_pdu(UNDECODABLE));
    }
    wait_until(|| health(&rig).state == HealthState::Degraded).await;
    let full = health(&rig);
    assert_eq!(
        full.summary,
        "SIM message storage full (3 of 3): new SMS wait at the network; 3 undecodable \
         messages wait on it for want of the store (see undecodable_stored); delete \
         messages from it (a phone, or AT+CMGD) to make room"
    );
    assert_eq!(full.details["message_storage"], "SM");
    assert_eq!(full.measures["message_storage_used"], 3);
    assert!(rig.channel.can_send());

    let injected = rig
        .sim
        .inject_inbound("+15551230001", "held by the network");
    assert_eq!((injected.stored, injected.held), (0, 1));

    // A human deletes one: the network delivers what it held.
    assert!(rig.sim.delete_stored(2));
    wait_until(|| {
        rig.sink
            .inbound()
            .iter()
            .any(|m| m.text == "held by the network")
    })
    .await;
    rig.wait_up().await;
    assert_eq!(storage_used(&rig), Some(2));
    assert_eq!(rig.sim.stored(), (2, 0, 0));
}

/// A modem that says its memory is full (`^SMMEMFULL`) has the level read
/// at once, not at the next sweep; one that says there is room again
/// (`+CIEV: "SMSFULL",0`) too.
#[tokio::test]
async fn the_modem_saying_its_memory_is_full_has_the_level_read_at_once() {
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 3600;
    let rig = Rig::start(small_sim(2), config).await;
    rig.wait_up().await;
    refuse_undecodable(&rig);
    // Stored with no indication: nothing reads them until the next sweep.
    for _ in 0..2 {
        assert!(rig.sim.inject_raw_pdu_unannounced(UNDECODABLE));
    }
    rig.sim
        .send_unsolicited(vec!["^SMMEMFULL: \"SM\"".to_string()]);
    wait_until(|| health(&rig).state == HealthState::Degraded).await;
    assert!(
        health(&rig)
            .summary
            .starts_with("SIM message storage full (2 of 2): new SMS wait at the network;"),
        "{}",
        health(&rig).summary
    );

    assert!(rig.sim.delete_stored(1));
    rig.sim
        .send_unsolicited(vec!["+CIEV: \"SMSFULL\",0".to_string()]);
    rig.wait_up().await;
    assert_eq!(storage_used(&rig), Some(1));
}

/// A send answered `+CMS ERROR: 322` (memory full) before any part went
/// out is about the modem's memory, not the message, and every message
/// alike: refused for now (the endpoint pauses, no attempt spent), not a
/// failed attempt that would fail the queue for good while the memory
/// stays full; the health says it until a reading shows room.
#[tokio::test]
async fn a_send_answered_memory_full_holds_the_queue_and_degrades_the_health() {
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 3600;
    let rig = Rig::start(behaviour(), config).await;
    rig.wait_up().await;
    rig.sim.fail_next_sends(322, 3);
    for _ in 0..3 {
        let error = rig
            .channel
            .send(&message("a", "+15551230001", "one"))
            .await
            .unwrap_err();
        assert_eq!(error.class, ErrorClass::RateLimited, "{error:?}");
        assert_eq!(error.code, "cms_322");
    }
    assert!(rig.sim.sent_messages().is_empty());
    let said = health(&rig);
    assert_eq!(said.state, HealthState::Degraded);
    assert_eq!(
        said.details["message_storage_full"],
        "+CMS ERROR: 322 to a send"
    );
    assert_eq!(
        said.summary,
        "SIM message storage full (+CMS ERROR: 322 to a send): new SMS wait at the \
         network; delete messages from it (a phone, or AT+CMGD) to make room"
    );

    rig.channel
        .send(&message("a", "+15551230001", "one"))
        .await
        .unwrap();
    assert_eq!(rig.sim.sent_messages().len(), 1);
    assert_eq!(health(&rig).state, HealthState::Degraded);
    // The next reading of the level (here the first sweep of a session
    // after the modem restarted) shows room.
    rig.sim.restart_in_place();
    wait_until(|| !health(&rig).details.contains_key("message_storage_full")).await;
    rig.wait_up().await;
}

/// A 322 after a part of the message went out is an attempt: the retry
/// sends the rest.
#[tokio::test]
async fn memory_full_after_a_part_went_out_is_an_attempt() {
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 3600;
    let rig = Rig::start(behaviour(), config).await;
    rig.wait_up().await;
    rig.sim.fail_sends_after(1, 322, 1);
    let long = message("l", "+15551230001", &"x".repeat(200));
    let error = rig.channel.send(&long).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Transient, "{error:?}");
    assert_eq!(error.code, "cms_322");
    retry_until_sent(&rig, &long).await;
}

/// A modem that cannot say its level (`AT+CPMS?` answered `ERROR`) and
/// says its memory is full only by a vendor indication (`^SMMEMFULL`,
/// which has no word for room again): once a human makes room, the
/// message the network held comes in, the driver deletes it once
/// committed, and that delete is the proof of room the health recovers
/// on.
#[tokio::test]
async fn a_full_memory_said_by_an_indication_alone_recovers_once_the_driver_frees_a_slot() {
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 1;
    let rig = Rig::start(small_sim(2), config).await;
    rig.wait_up().await;
    refuse_undecodable(&rig);
    rig.sim.refuse_storage_query(true);
    for _ in 0..2 {
        assert!(rig.sim.inject_raw_pdu_unannounced(UNDECODABLE));
    }
    rig.sim
        .send_unsolicited(vec!["^SMMEMFULL: \"SM\"".to_string()]);
    wait_until(|| health(&rig).state == HealthState::Degraded).await;
    assert_eq!(
        health(&rig).details["message_storage_full"],
        "the modem's own indication"
    );
    let injected = rig.sim.inject_inbound("+15551230001", "held while full");
    assert_eq!((injected.stored, injected.held), (0, 1));

    assert!(rig.sim.delete_stored(1));
    wait_until(|| {
        rig.sink
            .inbound()
            .iter()
            .any(|m| m.text == "held while full")
    })
    .await;
    rig.wait_up().await;
    assert!(!health(&rig).details.contains_key("message_storage_full"));
}

/// A memory read full stays said full through a failed read: the health
/// does not go up while nothing was freed.
#[tokio::test]
async fn a_failed_read_after_a_full_one_keeps_the_health_degraded() {
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 1;
    let rig = Rig::start(small_sim(2), config).await;
    rig.wait_up().await;
    refuse_undecodable(&rig);
    for _ in 0..2 {
        assert!(rig.sim.inject_raw_pdu(UNDECODABLE));
    }
    wait_until(|| health(&rig).state == HealthState::Degraded).await;
    rig.sim.refuse_storage_query(true);
    // The driver asks again only once it has taken in the answer before.
    wait_until(|| rig.sim.storage_queries_refused() >= 2).await;
    let after = health(&rig);
    assert_eq!(after.state, HealthState::Degraded, "{}", after.summary);
    assert_eq!(after.measures["message_storage_used"], 2);
    assert!(
        after
            .summary
            .starts_with("SIM message storage full (2 of 2)"),
        "{}",
        after.summary
    );
}

/// A text long enough for `parts` parts of 153 GSM characters.
fn long_text(parts: usize) -> String {
    (0..153 * (parts - 1) + 20)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect()
}

/// A long message with more parts than the SIM has slots: once the memory
/// is full, the parts read wait in the store rather than on the SIM, so
/// the network can deliver the rest, and the message arrives whole and
/// once, not as two partial messages an hour apart (the reassembly
/// timeout, left at its default here).
#[tokio::test]
async fn a_long_message_with_more_parts_than_slots_arrives_whole() {
    let rig = Rig::start(small_sim(3), modem_config("main")).await;
    rig.wait_up().await;
    let text = long_text(7);
    let injected = rig.sim.inject_inbound("+15551230001", &text);
    assert_eq!((injected.stored, injected.held), (3, 4));

    wait_until(|| !rig.sink.inbound().is_empty()).await;
    let inbound = rig.sink.inbound();
    assert_eq!(inbound.len(), 1);
    assert_eq!(inbound[0].text, text);
    wait_until(|| rig.sim.stored() == (0, 0, 0)).await;
    // The parts moved to the record leave it with their message.
    wait_until(|| {
        rig.sink
            .cursors
            .lock()
            .unwrap()
            .get("sms-direct-parts")
            .is_none_or(String::is_empty)
    })
    .await;
    rig.wait_up().await;
    assert_eq!(rig.sink.inbound().len(), 1);
}

/// Parts moved off a full SIM into the store outlive a restart: the rest
/// of the message, delivered after it, joins them.
#[tokio::test]
async fn parts_moved_off_a_full_sim_join_the_rest_after_a_restart() {
    let config = modem_config("main");
    let mut rig = Rig::start(small_sim(2), config.clone()).await;
    rig.wait_up().await;
    let text = long_text(4);
    let parts = phonerelay_sms::codec::encode_deliver("+15551230002", &text, unix_now(), 77);
    assert_eq!(parts.len(), 4);
    for (hex, _) in &parts[..2] {
        assert!(rig.sim.inject_raw_pdu(hex));
    }
    // The memory filled, and what waited on it went to the store (the
    // part read after that may stay on the SIM, which has room again).
    let sink = rig.sink.clone();
    let moved = || {
        sink.cursors
            .lock()
            .unwrap()
            .get("sms-direct-parts")
            .map_or(0, |record| record.split(',').count())
    };
    wait_until(|| moved() >= 1 && rig.sim.stored().0 + moved() == 2).await;
    assert!(rig.sink.inbound().is_empty());

    rig.stop_channel().await;
    rig.restart_channel(config);
    rig.wait_up().await;
    // Stored, or held by the network while the memory is full again.
    for (hex, _) in &parts[2..] {
        rig.sim.inject_raw_pdu(hex);
    }
    wait_until(|| !rig.sink.inbound().is_empty()).await;
    rig.wait_up().await;
    wait_until(|| rig.sim.stored() == (0, 0, 0) && moved() == 0).await;
    let inbound = rig.sink.inbound();
    assert_eq!(inbound.len(), 1);
    assert_eq!(inbound[0].text, text);
    assert_eq!(inbound[0].from, "+15551230002");
}
