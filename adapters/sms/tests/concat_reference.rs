//! The concatenation reference of long messages, as the network got it in
//! each part's user-data header: one per message from the modem's
//! counter, the same across a message's retries and restarts.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use phonerelay_channel::{Channel, ErrorClass, OutboundMessage, message_cursor};
use phonerelay_sms::concat_reference::NEXT_CONCAT_REFERENCE_CURSOR;
use sha2::{Digest, Sha256};

const TO: &str = "+15551230001";

/// Three parts of GSM 7-bit text, `tag` first so two messages differ.
fn long_text(tag: &str) -> String {
    format!(
        "{tag}: {}",
        "The quick brown fox jumps over the lazy dog. ".repeat(8)
    )
}

/// The 8-bit reference versions before the counter gave message `id`:
/// the low octet of the first two of its id's SHA-256.
fn hash_reference(id: &str) -> u16 {
    u16::from(Sha256::digest(id.as_bytes())[1])
}

/// The reference of each part the network accepted, in the order it
/// accepted them.
fn references(rig: &Rig) -> Vec<u16> {
    rig.sim
        .sent_parts()
        .iter()
        .map(|part| part.concat.expect("a part of a long message").0)
        .collect()
}

/// The counter the store holds for the modem.
fn counter(rig: &Rig) -> Option<String> {
    let cursors = rig.sink.cursors.lock().unwrap();
    cursors.get(NEXT_CONCAT_REFERENCE_CURSOR).cloned()
}

async fn send_fails_with(rig: &Rig, message: &OutboundMessage, code: &str) {
    let err = rig.channel.send(message).await.unwrap_err();
    assert_eq!(
        (err.class, err.code.as_str()),
        (ErrorClass::Transient, code),
        "{err:?}"
    );
}

async fn started(config: phonerelay_sms::ModemConfig) -> Rig {
    let rig = Rig::start(behaviour(), config).await;
    rig.wait_up().await;
    rig
}

/// "first" and "second-114" hash to the same 8-bit reference, so the
/// handset got both under one: parts of the two in flight together were
/// joined into one garbled text. From the counter, the second takes the
/// reference after the first's.
#[tokio::test]
async fn long_messages_whose_ids_hash_alike_take_references_of_their_own() {
    assert_eq!(hash_reference("first"), hash_reference("second-114"));
    let rig = started(modem_config("main")).await;
    for id in ["first", "second-114"] {
        let message = message(id, TO, &long_text(id));
        rig.channel.send(&message).await.unwrap();
    }
    let refs = references(&rig);
    assert_eq!(refs.len(), 6, "{refs:?}");
    assert!(refs[..3].iter().all(|r| *r == refs[0]), "{refs:?}");
    assert!(refs[3..].iter().all(|r| *r == refs[3]), "{refs:?}");
    assert_eq!(refs[3], (refs[0] + 1) % 256, "{refs:?}");
    let texts = sent_texts(&rig);
    assert_eq!(texts, [long_text("first"), long_text("second-114")]);
}

/// With 16-bit references the counter counts to 65535, not 255.
#[tokio::test]
async fn sixteen_bit_references_come_from_the_counter_too() {
    let mut config = modem_config("main");
    config.concat_reference_bits = 16;
    let rig = started(config).await;
    // Just below the wrap, as a long-used modem's counter may be.
    rig.sink
        .cursors
        .lock()
        .unwrap()
        .insert(NEXT_CONCAT_REFERENCE_CURSOR.into(), "65535".into());
    for id in ["first", "second"] {
        let message = message(id, TO, &long_text(id));
        rig.channel.send(&message).await.unwrap();
    }
    let refs = references(&rig);
    assert_eq!(refs, [65535, 65535, 65535, 0, 0, 0]);
    assert_eq!(counter(&rig).as_deref(), Some("1"));
}

/// Message "long" takes the reference after "before"'s; its part 2 meets
/// a transient network error, part 1 having gone out. The retry sends
/// parts 2 and 3 with part 1's reference, so the handset joins them.
#[tokio::test]
async fn a_retry_sends_the_rest_with_the_reference_its_first_attempt_took() {
    let rig = started(modem_config("main")).await;
    let long = long_failed_after_its_first_part(&rig).await;
    retry_until_sent(&rig, &long).await;

    assert_long_took_the_reference_after_before(&rig);
}

/// The same with the daemon restarted between the attempts: the new
/// process reads the reference back from the message's cursor.
#[tokio::test]
async fn a_message_resumed_after_a_restart_keeps_its_reference() {
    let mut rig = started(modem_config("main")).await;
    let mut long = long_failed_after_its_first_part(&rig).await;

    rig.stop_channel().await;
    rig.restart_channel(modem_config("main"));
    rig.wait_up().await;
    long.attempt = 2;
    retry_until_sent(&rig, &long).await;

    assert_long_took_the_reference_after_before(&rig);
}

/// The counter is kept in the store: after a restart, the next long
/// message takes the reference after the last one's, not one handed out
/// lately (a new process counting from its own start could).
#[tokio::test]
async fn after_a_restart_the_next_long_message_takes_the_next_reference() {
    let mut rig = started(modem_config("main")).await;
    rig.channel
        .send(&message("first", TO, &long_text("first")))
        .await
        .unwrap();
    rig.stop_channel().await;
    rig.restart_channel(modem_config("main"));
    rig.wait_up().await;
    rig.channel
        .send(&message("later", TO, &long_text("later")))
        .await
        .unwrap();

    let refs = references(&rig);
    assert_eq!(refs.len(), 6, "{refs:?}");
    let next = (refs[0] + 1) % 256;
    assert_eq!(refs[3..], [next, next, next], "{refs:?}");
    assert_eq!(counter(&rig), Some(((next + 1) % 256).to_string()));
}

/// A message a version before the counter half sent: its cursor holds
/// part 1 (as that version wrote it: no reference line), which went out
/// under the hash of its id. The rest go out under the same hash, so the
/// handset joins them with part 1; the counter is not touched.
#[tokio::test]
async fn a_message_an_earlier_version_half_sent_keeps_its_hash_reference() {
    let rig = started(modem_config("main")).await;
    let day = common::unix_now().div_euclid(86_400);
    let old_cursor = format!("0 17 mr:17:15551230001:{day}\n");
    rig.sink
        .cursors
        .lock()
        .unwrap()
        .insert(message_cursor("old", "sms-parts"), old_cursor);
    let mut old = message("old", TO, &long_text("old"));
    old.attempt = 2;
    let receipt = rig.channel.send(&old).await.unwrap();

    let parts = rig.sim.sent_parts();
    let sent: Vec<(u16, u8)> = parts
        .iter()
        .map(|p| p.concat.map(|(r, _, seq)| (r, seq)).unwrap())
        .collect();
    let hash = hash_reference("old");
    assert_eq!(sent, [(hash, 2), (hash, 3)]);
    assert_eq!(receipt.external_ids.len(), 3);
    assert_eq!(receipt.external_ids[0], format!("mr:17:15551230001:{day}"));
    assert_eq!(counter(&rig), None, "no reference taken");
}

/// No part goes out under a reference the store has not kept: not when
/// the counter cannot be stepped, nor when the message's record cannot
/// be written after it was. With the store back, the message goes out
/// whole under one reference, which its cursor holds.
#[tokio::test]
async fn a_long_message_whose_reference_cannot_be_kept_sends_nothing() {
    let rig = started(modem_config("main")).await;
    let long = message("long", TO, &long_text("long"));

    rig.sink.cursor_writes_fail.store(true, Ordering::SeqCst);
    send_fails_with(&rig, &long, "sms_reference_not_kept").await;
    assert!(rig.sim.sent_parts().is_empty());
    assert_eq!(counter(&rig), None);
    rig.sink.cursor_writes_fail.store(false, Ordering::SeqCst);

    *rig.sink.failing_cursor_write_prefix.lock().unwrap() = Some("message/".into());
    send_fails_with(&rig, &long, "sms_reference_not_kept").await;
    assert!(rig.sim.sent_parts().is_empty());
    assert!(counter(&rig).is_some(), "the counter was stepped");
    *rig.sink.failing_cursor_write_prefix.lock().unwrap() = None;

    retry_until_sent(&rig, &long).await;
    let refs = references(&rig);
    assert_eq!(refs.len(), 3);
    assert!(refs.iter().all(|r| *r == refs[0]), "{refs:?}");
    let cursors = rig.sink.message_cursors();
    assert_eq!(cursors.len(), 1, "{cursors:?}");
    assert!(
        cursors[0]
            .1
            .starts_with(&format!("reference {}\n", refs[0])),
        "{cursors:?}"
    );
}

/// A single part carries no reference and takes none from the counter.
#[tokio::test]
async fn a_single_part_takes_no_reference() {
    let rig = started(modem_config("main")).await;
    rig.channel
        .send(&message("short", TO, "one part"))
        .await
        .unwrap();
    assert_eq!(rig.sim.sent_parts()[0].concat, None);
    assert_eq!(counter(&rig), None);

    rig.channel
        .send(&message("long", TO, &long_text("long")))
        .await
        .unwrap();
    let taken = rig.sim.sent_parts()[1].concat.unwrap().0;
    assert_eq!(counter(&rig), Some(((taken + 1) % 256).to_string()));
}

/// Every part of "long" (sent after "before", three parts each) carries
/// the reference after "before"'s, and both texts arrived whole.
fn assert_long_took_the_reference_after_before(rig: &Rig) {
    let refs = references(rig);
    let taken = (refs[0] + 1) % 256;
    assert_eq!(refs[3..], [taken, taken, taken], "{refs:?}");
    let texts = sent_texts(rig);
    assert_eq!(texts, [long_text("before"), long_text("long")]);
}

/// "before" sent whole, then "long", whose second part the network
/// refuses (CMS 38, transient): "long" as it waits for its retry.
async fn long_failed_after_its_first_part(rig: &Rig) -> OutboundMessage {
    rig.channel
        .send(&message("before", TO, &long_text("before")))
        .await
        .unwrap();
    rig.sim.fail_sends_after(1, 38, 1);
    let long = message("long", TO, &long_text("long"));
    send_fails_with(rig, &long, "cms_38").await;
    long
}
