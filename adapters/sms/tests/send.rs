//! Sending over a real pty to the simulator.
mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use phonerelay_channel::{Channel, DeliveryStatus, ErrorClass};

#[tokio::test]
async fn single_part_sent_and_decoded_by_the_network() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    let receipt = rig
        .channel
        .send(&message("m1", "+15551230001", "hello world"))
        .await
        .unwrap();
    assert_eq!(receipt.external_ids.len(), 1);
    let sent = rig.sim.sent_messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, "+15551230001");
    assert_eq!(sent[0].text, "hello world");
    assert!(receipt.external_ids[0].starts_with(&format!("mr:{}:", sent[0].mrs[0])));
}

#[tokio::test]
async fn multipart_ucs2_and_emoji_round_trip() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(8);
    let ucs2 = "Привет, мир! Καλημέρα κόσμε".to_string();
    let emoji = "on my way 🚲🚲 see you at 5 😀 ".repeat(5);
    for (i, text) in [&long, &ucs2, &emoji].into_iter().enumerate() {
        let receipt = rig
            .channel
            .send(&message(&format!("m{i}"), "+447700900123", text))
            .await
            .unwrap();
        let sent = rig.sim.sent_messages();
        let last = sent.last().unwrap();
        assert_eq!(&last.text, text);
        assert_eq!(receipt.external_ids.len(), last.mrs.len());
    }
    assert!(rig.sim.sent_parts().len() > 3, "long texts were split");
}

#[tokio::test]
async fn delivery_report_matches_the_external_id() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    let a = rig
        .channel
        .send(&message("a", "+15551230001", "one"))
        .await
        .unwrap();
    let b = rig
        .channel
        .send(&message("b", "+15551230002", "two"))
        .await
        .unwrap();
    wait_until(|| rig.sink.statuses().len() == 2).await;
    let statuses = rig.sink.statuses();
    let ids: Vec<&str> = statuses.iter().map(|s| s.external_id.as_str()).collect();
    assert!(
        ids.contains(&a.external_ids[0].as_str()),
        "{ids:?} vs {a:?}"
    );
    assert!(
        ids.contains(&b.external_ids[0].as_str()),
        "{ids:?} vs {b:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| s.status == DeliveryStatus::Delivered)
    );
    // Reports are deleted from SR memory once committed.
    wait_until(|| rig.sim.stored().1 == 0).await;
}

/// A modem that cannot store reports hands them over as `+CDS`.
fn direct_reports() -> Behaviour {
    Behaviour {
        stores_status_reports: false,
        ..behaviour()
    }
}

/// An interim report (TP-ST 0x21, SME busy: the SMSC is still trying) is
/// not an outcome, directly handed over or stored: no status for its part.
#[tokio::test]
async fn an_interim_direct_report_gives_no_status() {
    let rig = Rig::start(direct_reports(), modem_config("main")).await;
    rig.wait_up().await;
    rig.sim.set_report_status(0x21);
    rig.channel
        .send(&message("a", "+15551230001", "one"))
        .await
        .unwrap();
    rig.sim.set_report_status(0x00);
    let b = rig
        .channel
        .send(&message("b", "+15551230002", "two"))
        .await
        .unwrap();
    // Reports are handled in the order they come: once b's is in, a's
    // has been handled.
    wait_until(|| !rig.sink.statuses().is_empty()).await;
    let statuses = rig.sink.statuses();
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0].external_id, b.external_ids[0]);
    assert_eq!(statuses[0].status, DeliveryStatus::Delivered);
}

/// A report with a reserved TP-ST is taken as 0x63, service rejected, the
/// SMSC no longer trying (TS 23.040 9.2.3.15): the part failed, with the
/// value received as its code, rather than delivered (0x03..=0x0F) or
/// waited on for an outcome that never comes (0x26..=0x2F).
#[tokio::test]
async fn a_report_with_a_reserved_status_fails_its_part() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    for (sent, status) in [0x05u8, 0x28].into_iter().enumerate() {
        rig.sim.set_report_status(status);
        let receipt = rig
            .channel
            .send(&message(&format!("r{status}"), "+15551230001", "hi"))
            .await
            .unwrap();
        wait_until(|| rig.sink.statuses().len() == sent + 1).await;
        let update = rig.sink.statuses()[sent].clone();
        assert_eq!(update.external_id, receipt.external_ids[0]);
        assert_eq!(update.status, DeliveryStatus::Failed, "{update:?}");
        assert_eq!(update.code, Some(format!("tp_st_{status:#04x}")));
    }
}

/// A modem whose message service starts as phase 2+ (`+CSMS: 1`) wants an
/// `AT+CNMA` for each report it hands over directly, and turns that routing
/// off when none comes (27.005 3.4.1). Start-up sets phase 2, so the
/// reports keep coming, every one.
#[tokio::test]
async fn direct_reports_keep_coming_from_a_modem_that_starts_in_phase_2_plus() {
    let behaviour = Behaviour {
        message_service: 1,
        ..direct_reports()
    };
    let rig = Rig::start(behaviour, modem_config("main")).await;
    rig.wait_up().await;
    for (id, to) in [
        ("a", "+15551230001"),
        ("b", "+15551230002"),
        ("c", "+15551230003"),
    ] {
        rig.channel.send(&message(id, to, "one")).await.unwrap();
    }
    wait_until(|| rig.sink.statuses().len() == 3).await;
}

/// A `+CDS` that came while a command was under way waits behind it. When
/// that command fails and the session ends, the report is still committed:
/// the modem keeps no copy, so dropped with the connection it was lost.
#[tokio::test]
async fn a_direct_report_waiting_when_the_session_ends_is_committed() {
    let rig = Rig::start(direct_reports(), modem_config("main")).await;
    rig.wait_up().await;
    let (hex, len) = phonerelay_sms::codec::encode_status_report(5, "+15551230001", 0, unix_now());
    // The +CMTI's read gets no answer, which ends the session.
    rig.sim.set_muted(true);
    rig.sim.send_unsolicited(vec![
        "+CMTI: \"SM\",7".into(),
        format!("+CDS: {len}\r\n{hex}"),
    ]);
    wait_until(|| rig.channel.health().state != phonerelay_channel::HealthState::Up).await;
    rig.sim.set_muted(false);
    rig.wait_up().await;
    wait_until(|| rig.sink.statuses().len() == 1).await;
    assert_eq!(rig.sink.statuses()[0].status, DeliveryStatus::Delivered);
}

/// A `+CDS` whose commit fails cannot be read again: the status counts it.
#[tokio::test]
async fn a_direct_report_that_cannot_be_committed_is_counted_as_lost() {
    let rig = Rig::start(direct_reports(), modem_config("main")).await;
    rig.wait_up().await;
    rig.sink.failing.store(true, Ordering::SeqCst);
    rig.channel
        .send(&message("a", "+15551230001", "one"))
        .await
        .unwrap();
    let lost = || {
        rig.channel
            .health()
            .details
            .get("lost_direct_events")
            .cloned()
    };
    wait_until(|| lost().is_some()).await;
    assert_eq!(lost().as_deref(), Some("1"));
}

/// A send of message `id` to +15551230001 that the network answers
/// `+CMS ERROR: <cause>`: its error, coded for the cause.
async fn refused_send(rig: &Rig, cause: u16, id: &str) -> phonerelay_channel::SendError {
    rig.sim.fail_next_sends(cause, 1);
    let err = rig
        .channel
        .send(&message(id, "+15551230001", "hi"))
        .await
        .unwrap_err();
    assert_eq!(err.code, format!("cms_{cause}"));
    err
}

#[tokio::test]
async fn cms_errors_are_classified() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    // 38: network out of order, 42: congestion. The network refused the
    // part for now, for any message: not an attempt, the queue waits.
    for code in [38, 42] {
        let err = refused_send(&rig, code, "t").await;
        assert_eq!(err.class, ErrorClass::RateLimited, "{err:?}");
    }
    // 27: destination out of service (transient, this recipient's): an
    // attempt.
    let err = refused_send(&rig, 27, "t").await;
    assert_eq!(err.class, ErrorClass::Transient, "{err:?}");
    // Refused at its only part: nothing of it went out, and reply
    // routing must not date a conversation from it.
    assert!(err.nothing_sent, "{err:?}");
    rig.channel
        .send(&message("t", "+15551230001", "hi"))
        .await
        .unwrap();
    // 1: unassigned number (permanent).
    rig.sim.fail_next_sends(1, 1);
    let err = rig
        .channel
        .send(&message("p", "+15551230009", "hi"))
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Permanent, "{err:?}");
    assert_eq!(err.code, "cms_1");
    assert_eq!(rig.sim.sent_messages().len(), 1);
}

/// A transient refusal after the first part of a long message went out:
/// something of it is out, and the error does not say nothing was sent.
#[tokio::test]
async fn a_transient_refusal_after_a_part_went_out_says_so() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    rig.sim.fail_sends_after(1, 27, 1);
    let err = rig
        .channel
        .send(&message("long", "+15551230001", &"x".repeat(300)))
        .await
        .unwrap_err();
    assert_eq!(err.code, "cms_27");
    assert!(!err.nothing_sent, "{err:?}");
}

/// `+CMS ERROR: 304` (invalid PDU mode parameter) to a PDU the codec
/// made most likely means it was damaged on the serial line: sent again
/// once, at once, within the attempt; answered so twice, the message fails
/// for good.
#[tokio::test]
async fn an_invalid_pdu_answer_is_sent_again_once() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    rig.sim.fail_next_sends(304, 1);
    rig.channel
        .send(&message("d1", "+15551230001", "hi"))
        .await
        .unwrap();
    assert_eq!(rig.sim.sent_messages().len(), 1);

    rig.sim.fail_next_sends(304, 2);
    let err = rig
        .channel
        .send(&message("d2", "+15551230002", "hi"))
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Permanent, "{err:?}");
    assert_eq!(err.code, "cms_304");
    assert_eq!(rig.sim.sent_messages().len(), 1);
}

/// `+CMS ERROR: 28`, unidentified subscriber (TS 24.011 Annex E: "not
/// registered in the PLMN, IMSI not known"), and 30, unknown subscriber
/// (not registered in the HLR: the number not allocated, a SIM not yet
/// provisioned or deactivated), are said of the sender on a submit: our
/// own SIM, not the message or its recipient. Like a refused account they
/// hold every message alike: refused for now, not failed for good (30 was:
/// every queued message dead-lettered in turn, none sent), and sent once
/// the network knows the SIM again.
#[tokio::test]
async fn an_unidentified_or_unknown_own_subscriber_holds_messages_rather_than_failing_them() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    for (sent_before, cause) in [(0, 28), (1, 30)] {
        let err = refused_send(&rig, cause, "u").await;
        assert_eq!(err.class, ErrorClass::RateLimited, "{err:?}");
        assert_eq!(rig.sim.sent_messages().len(), sent_before);
        rig.channel
            .send(&message("u", "+15551230001", "hi"))
            .await
            .unwrap();
        assert_eq!(rig.sim.sent_messages().len(), sent_before + 1);
    }
}

/// An account the SMSC refuses (+CMS ERROR: 193, no SC subscription)
/// refuses every message alike, none of them at fault: each is refused for
/// now (nothing went out, no attempt spent, the endpoint pauses), not
/// failed for good, and goes out once the account is put right. Barring
/// (8 operator determined, 10 call barred, 50 facility not subscribed)
/// may cover some destinations only: an attempt, retried, neither holding
/// the queue behind a message that may never go nor failed at once.
#[tokio::test]
async fn a_refused_account_holds_messages_and_barring_is_retried_not_failed() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    let recipients = ["+15551230001", "+15551230002", "+15551230003"];
    rig.sim.fail_next_sends(193, recipients.len());
    for (i, to) in recipients.iter().enumerate() {
        let err = rig
            .channel
            .send(&message(&format!("b{i}"), to, "hi"))
            .await
            .unwrap_err();
        assert_eq!(err.class, ErrorClass::RateLimited, "{err:?}");
        assert_eq!(err.code, "cms_193");
    }
    assert!(rig.sim.sent_messages().is_empty());
    for code in [8, 10, 50] {
        let err = refused_send(&rig, code, "b0").await;
        assert_eq!(err.class, ErrorClass::Transient, "{err:?}");
    }
    for (i, to) in recipients.iter().enumerate() {
        rig.channel
            .send(&message(&format!("b{i}"), to, "hi"))
            .await
            .unwrap();
    }
    assert_eq!(rig.sim.sent_messages().len(), recipients.len());
}

/// 311 (SIM PIN required), 310 (SIM not inserted), 315 (SIM wrong) and
/// 330 (SMSC address unknown, before the SIM has loaded it) are about the
/// modem, not the message: nothing went out, the message waits without
/// spending an attempt, and it goes out once the driver has set the modem
/// up again. 302 (operation not allowed) is an attempt, retried.
#[tokio::test]
async fn a_send_refused_for_the_modem_state_is_retried_not_failed() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    for code in [311, 310, 315, 330] {
        let err = refused_send(&rig, code, &format!("m{code}")).await;
        assert_eq!(err.class, ErrorClass::Unavailable, "{err:?}");
        rig.wait_up().await;
        rig.channel
            .send(&message(&format!("m{code}"), "+15551230001", "hi"))
            .await
            .unwrap();
    }
    assert_eq!(rig.sim.sent_messages().len(), 4);
    // 302 (operation not allowed) may be the message's own: an attempt,
    // retried, not a modem state.
    rig.sim.fail_next_sends(302, 1);
    let err = rig
        .channel
        .send(&message("m302", "+15551230001", "hi"))
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Transient, "{err:?}");
    assert!(rig.channel.can_send(), "302 leaves the modem up");
}

/// A config whose AT+CMGS gives up long before the simulated network,
/// slowed down with `set_delay(SLOW_NETWORK)`, answers.
fn impatient_config() -> phonerelay_sms::ModemConfig {
    let mut config = modem_config("main");
    config.send_timeout_ms = 300;
    config
}
const SLOW_NETWORK: Duration = Duration::from_millis(900);

/// A text long enough for three parts.
fn three_part_text() -> String {
    "The quick brown fox jumps over the lazy dog. ".repeat(8)
}

/// One send of `id` that must fail with a transient error.
async fn send_fails_transiently(rig: &Rig, id: &str, text: &str) {
    let err = rig
        .channel
        .send(&message(id, "+15551230001", text))
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Transient, "{err:?}");
}

/// The network saw each of the three parts of `text` exactly once, the
/// handset gets one message, and the receipt names each part's id in order.
fn assert_each_part_once(rig: &Rig, text: &str, receipt: &phonerelay_channel::SendReceipt) {
    let parts = rig.sim.sent_parts();
    let mut seqs: Vec<u8> = parts.iter().map(|p| p.concat.unwrap().2).collect();
    seqs.sort();
    assert_eq!(seqs, [1, 2, 3], "{parts:#?}");
    let sent = rig.sim.sent_messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].text, text);
    assert_eq!(receipt.external_ids.len(), 3);
    for (id, mr) in receipt.external_ids.iter().zip(&sent[0].mrs) {
        assert!(id.starts_with(&format!("mr:{mr}:")), "{id} vs mr {mr}");
    }
}

#[tokio::test]
async fn late_cmgs_after_send_timeout_is_not_sent_again_by_the_retry() {
    let rig = Rig::start(behaviour(), impatient_config()).await;
    rig.wait_up().await;
    let text = three_part_text();
    // The first part takes longer than send_timeout_ms: the send fails
    // (transient, outcome unknown) and the modem's +CMGS comes later.
    rig.sim.set_delay(SLOW_NETWORK);
    send_fails_transiently(&rig, "slow", &text).await;
    rig.sim.set_delay(Duration::ZERO);
    // The outbox's retry of the same message.
    let receipt = retry_until_sent(&rig, &message("slow", "+15551230001", &text)).await;
    // The network saw each part exactly once; one external id per part, in
    // part order, the late one included.
    assert_each_part_once(&rig, &text, &receipt);
    // Every part's delivery report, the late part's too, names its id.
    wait_until(|| rig.sink.statuses().len() == 3).await;
    let reported: BTreeSet<String> = rig
        .sink
        .statuses()
        .into_iter()
        .map(|s| s.external_id)
        .collect();
    let returned: BTreeSet<String> = receipt.external_ids.iter().cloned().collect();
    assert_eq!(reported, returned);
}

/// The modem's late `+CMGS` came, but the session ended before the
/// modem was in step again (its sync probe went unheeded, then the port
/// was lost): the part went out all the same, and the retry after the
/// modem is back does not send it again. The answer was dropped with the
/// session before.
#[tokio::test]
async fn a_late_cmgs_before_the_session_ends_is_kept() {
    let rig = Rig::start(behaviour(), impatient_config()).await;
    rig.wait_up().await;
    rig.sim.set_delay(SLOW_NETWORK);
    send_fails_transiently(&rig, "one", "just once").await;
    // Busy with the network, the modem heeds nothing it is sent: the
    // probe after the timeout goes unanswered.
    rig.sim.set_muted(true);
    wait_until(|| rig.sim.sent_parts().len() == 1).await;
    rig.sim.set_delay(Duration::ZERO);
    // The late answer read, the probe's deadline still ahead: unplugged.
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.sim.disconnect();
    wait_until(|| !rig.channel.can_send()).await;
    rig.sim.set_muted(false);
    rig.sim.reconnect();
    rig.wait_up().await;
    let receipt = retry_until_sent(&rig, &message("one", "+15551230002", "just once")).await;
    assert_eq!(rig.sim.sent_parts().len(), 1, "the part went out twice");
    assert_eq!(receipt.external_ids.len(), 1);
}

/// A rig whose send of the single-part message "one" timed out (the
/// network slower than `send_timeout_ms`): transient, outcome unknown, the
/// modem's late +CMGS still to come.
async fn only_part_timed_out() -> Rig {
    only_part_timed_out_with(SLOW_NETWORK, |_| {}).await
}

/// As [`only_part_timed_out`], the network answering after `delay`, the
/// simulator first set up by `prepare`.
async fn only_part_timed_out_with(delay: Duration, prepare: impl FnOnce(&Rig)) -> Rig {
    let rig = Rig::start(behaviour(), impatient_config()).await;
    rig.wait_up().await;
    prepare(&rig);
    rig.sim.set_delay(delay);
    let err = rig
        .channel
        .send(&message("one", "+15551230002", "just once"))
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Transient, "{err:?}");
    rig.sim.set_delay(Duration::ZERO);
    rig
}

/// As above, the late answer a bare `OK` (its `+CMGS:` line lost): the
/// part went out all the same, and the retry does not send it again.
#[tokio::test]
async fn a_late_ok_without_a_readable_reference_makes_the_retry_succeed_without_sending() {
    let rig = only_part_timed_out_with(SLOW_NETWORK, |rig| rig.sim.lose_next_mrs(1)).await;
    let receipt = retry_until_sent(&rig, &message("one", "+15551230002", "just once")).await;
    assert_eq!(rig.sim.sent_parts().len(), 1, "{:#?}", rig.sim.sent_parts());
    assert_eq!(receipt.external_ids, ["nomr:one:0"]);
}

/// The modem shows its `> ` prompt only after the send timed out: the
/// driver's ESC cancels the text entry, which the modem answers `OK`.
/// Nothing went out, so the retry sends the part; it is not taken as sent.
#[tokio::test]
async fn a_prompt_later_than_the_send_timeout_sends_nothing_and_the_retry_sends_the_part() {
    let rig = Rig::start(behaviour(), impatient_config()).await;
    rig.wait_up().await;
    rig.sim.set_prompt_delay(SLOW_NETWORK);
    send_fails_transiently(&rig, "one", "just once").await;
    rig.sim.set_prompt_delay(Duration::ZERO);
    let receipt = retry_until_sent(&rig, &message("one", "+15551230001", "just once")).await;
    let sent = rig.sim.sent_messages();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].text, "just once");
    assert!(
        receipt.external_ids[0].starts_with(&format!("mr:{}:", sent[0].mrs[0])),
        "{receipt:?}"
    );
}

#[tokio::test]
async fn late_cmgs_of_the_only_part_makes_the_retry_succeed_without_sending() {
    let rig = only_part_timed_out().await;
    let receipt = retry_until_sent(&rig, &message("one", "+15551230002", "just once")).await;
    let sent = rig.sim.sent_messages();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].text, "just once");
    assert_eq!(receipt.external_ids.len(), 1);
    assert!(
        receipt.external_ids[0].starts_with(&format!("mr:{}:", sent[0].mrs[0])),
        "{receipt:?}"
    );
    // Later sends are unaffected: the port stayed usable.
    rig.channel
        .send(&message("two", "+15551230002", "next"))
        .await
        .unwrap();
    assert_eq!(rig.sim.sent_messages().len(), 2);
}

/// The same, with the daemon restarted during the retry's backoff: the
/// late answer was kept in the store, so the retry (attempt 2, from a
/// channel with an empty memory) sends nothing again.
#[tokio::test]
async fn late_cmgs_of_the_only_part_is_kept_across_a_restart_before_the_retry() {
    let mut rig = only_part_timed_out().await;
    wait_until(|| rig.sim.sent_messages().len() == 1).await;
    // The late +CMGS is settled (and kept) before the port takes the
    // next request: a send behind it waits for that (given up for now
    // while it waits longer than one part's send time, and sent again).
    retry_until_sent(&rig, &message("other", "+15551230003", "behind it")).await;
    rig.stop_channel().await;
    rig.restart_channel(impatient_config());
    rig.wait_up().await;
    let mut retry = message("one", "+15551230002", "just once");
    retry.attempt = 2;
    retry_until_sent(&rig, &retry).await;
    assert_eq!(sent_texts(&rig), ["just once", "behind it"]);
}

/// Message "long" (three parts): part 1 goes out, part 2 meets a transient
/// network error, then the daemon restarts (a new channel with an empty
/// memory, the same store).
async fn restarted_after_part_one(text: &str) -> Rig {
    let mut rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    rig.sim.fail_sends_after(1, 38, 1);
    send_fails_transiently(&rig, "long", text).await;
    assert_eq!(rig.sim.sent_parts().len(), 1);
    assert_eq!(rig.sink.message_cursors().len(), 1, "part 1 kept");
    rig.stop_channel().await;
    rig.restart_channel(modem_config("main"));
    rig.wait_up().await;
    rig
}

#[tokio::test]
async fn a_long_message_resumed_after_a_restart_sends_only_the_parts_left() {
    let text = three_part_text();
    let rig = restarted_after_part_one(&text).await;
    let receipt = retry_until_sent(&rig, &message("long", "+15551230001", &text)).await;

    // The network saw each part once, and the handset gets one message.
    assert_each_part_once(&rig, &text, &receipt);
    // Kept until the outbox records the send, which drops it with that
    // record: dropped at once, it was gone before then, and a restart in
    // between found no part accepted and sent them all again.
    assert_eq!(
        rig.sink.message_cursors().len(),
        1,
        "the cursor stays for the outbox to drop"
    );
}

/// After the restart the modem hands out TP-MRs from where part 1's was
/// (a modem's count is its own, and wraps every 256): part 2 to the same
/// number on the same day gets an id of its own, not part 1's, which only
/// the message's cursor kept. With the same id, one part's delivery
/// report would be filed under the other's.
#[tokio::test]
async fn a_resumed_long_message_s_parts_keep_ids_of_their_own_when_a_tp_mr_comes_round() {
    let text = three_part_text();
    let rig = restarted_after_part_one(&text).await;
    let first_mr = rig.sim.sent_parts()[0].mr;
    rig.sim.set_next_mr(first_mr);
    let receipt = retry_until_sent(&rig, &message("long", "+15551230001", &text)).await;
    let mut ids = receipt.external_ids.clone();
    assert_eq!(ids.len(), 3);
    assert!(ids[1].starts_with(&format!("mr:{first_mr}:")), "{ids:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "{:?}", receipt.external_ids);
}

/// An `OK` to `AT+CMGS` whose `+CMGS: <mr>` line was lost: the network
/// took the part (27.005 3.5.1), so it is not sent again; only its
/// delivery report cannot be matched. (Taken as a failure, the part went
/// again and reached the recipient twice.)
#[tokio::test]
async fn a_part_accepted_without_a_readable_reference_is_not_sent_again() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    let text = three_part_text();
    rig.sim.lose_next_mrs(2);
    let receipt = retry_until_sent(&rig, &message("long", "+15551230001", &text)).await;
    let parts = rig.sim.sent_parts();
    assert_eq!(parts.len(), 3, "{parts:#?}");
    assert_eq!(rig.sim.sent_messages()[0].text, text);
    let unreferenced: Vec<&String> = receipt
        .external_ids
        .iter()
        .filter(|id| id.starts_with("nomr:long:"))
        .collect();
    assert_eq!(unreferenced.len(), 2, "{:?}", receipt.external_ids);
    assert!(
        receipt.external_ids[2].starts_with("mr:"),
        "{:?}",
        receipt.external_ids
    );
}

#[tokio::test]
async fn a_long_message_whose_sent_parts_cannot_be_read_after_a_restart_waits() {
    let text = three_part_text();
    let rig = restarted_after_part_one(&text).await;

    // The store cannot say which parts went out: sending all three would
    // give the handset part 1 twice, so the send fails for a retry.
    rig.sink.cursors_unreadable.store(true, Ordering::SeqCst);
    stops_after_part_one(&rig, &text, "sms_parts_unknown").await;

    rig.sink.cursors_unreadable.store(false, Ordering::SeqCst);
    let receipt = retry_until_sent(&rig, &message("long", "+15551230001", &text)).await;
    assert_each_part_once(&rig, &text, &receipt);
}

/// A long message's next part goes out only once the parts accepted so far
/// are kept in the store: when they cannot be, the send stops after the
/// first part as a transient failure (a restart now would send only that
/// one again), and the retry, with the store writable again, sends the
/// other two, each once.
#[tokio::test]
async fn a_long_message_stops_when_its_accepted_parts_cannot_be_kept() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    let text = three_part_text();
    // A first attempt records the message's concat reference (no part
    // goes out before it is kept), and the modem turns its part 1 away.
    rig.sim.fail_next_sends(302, 1);
    send_fails_transiently(&rig, "long", &text).await;
    assert!(rig.sim.sent_parts().is_empty());
    rig.sink.cursor_writes_fail.store(true, Ordering::SeqCst);
    stops_after_part_one(&rig, &text, "sms_parts_not_kept").await;

    rig.sink.cursor_writes_fail.store(false, Ordering::SeqCst);
    let mut retry = message("long", "+15551230001", &text);
    retry.attempt = 2;
    let receipt = rig.channel.send(&retry).await.unwrap();
    assert_each_part_once(&rig, &text, &receipt);
}

/// A part sent after a restart with the TP-MR and recipient of one sent
/// earlier that day gets an id of its own, though the memory that told
/// them apart went with the old process: the store still knows the first.
#[tokio::test]
async fn after_a_restart_a_part_does_not_take_the_id_of_one_sent_before_it() {
    let mut rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    rig.sim.set_next_mr(42);
    let first = rig
        .channel
        .send(&message("first", "+15551230001", "morning"))
        .await
        .unwrap();
    // The outbox keeps the receipt; an hour ago, say.
    let an_hour_ago_ms = (common::unix_now() - 3600) * 1000;
    rig.sink.record_sent(&first, an_hour_ago_ms);

    rig.stop_channel().await;
    rig.restart_channel(modem_config("main"));
    rig.wait_up().await;
    // The modem's 256 TP-MRs have come round again.
    rig.sim.set_next_mr(42);
    let second = rig
        .channel
        .send(&message("second", "+15551230001", "evening"))
        .await
        .unwrap();
    assert_eq!(
        second.external_ids,
        [format!("{}:2", first.external_ids[0])],
        "{first:?}"
    );
    // Its delivery report, stamped now, names it and not the first.
    wait_until(|| {
        rig.sink
            .statuses()
            .iter()
            .any(|s| s.external_id == second.external_ids[0])
    })
    .await;
}

/// Send the long message `text`: it fails for a retry with `code`, and
/// only its first part has gone out.
async fn stops_after_part_one(rig: &Rig, text: &str, code: &str) {
    let err = rig
        .channel
        .send(&message("long", "+15551230001", text))
        .await
        .unwrap_err();
    assert_eq!(
        (err.class, err.code.as_str()),
        (ErrorClass::Transient, code),
        "{err:?}"
    );
    assert_eq!(rig.sim.sent_parts().len(), 1, "only part 1 went out");
}

/// The network answers a part long after the send timed out (8 s after a
/// 300 ms timeout; up to 120 s is allowed): the modem answers no probe
/// meanwhile, and the driver waits that long for it, not two probes' 6 s.
/// (After 6 s the session ended, the late `+CMGS` was lost with it, and the
/// retry sent the part again.)
#[tokio::test]
async fn a_cmgs_answered_long_after_its_timeout_is_still_taken_and_not_sent_again() {
    let rig = only_part_timed_out_with(Duration::from_secs(8), |_| {}).await;
    let mut retry = message("one", "+15551230002", "just once");
    retry.attempt = 2;
    // The retry waits behind the driver's wait for the late answer.
    let receipt = retry_until_sent(&rig, &retry).await;
    let parts = rig.sim.sent_parts();
    assert_eq!(parts.len(), 1, "{parts:#?}");
    assert_eq!(
        receipt.external_ids,
        [format!(
            "mr:{}:15551230002:{}",
            parts[0].mr,
            unix_now() / 86_400
        )]
    );
}

/// A send that waits in the driver's queue, behind the wait for an
/// earlier send's late answer, for longer than its caller waits never
/// reached the modem: it is refused for now (`sms_busy`, nothing sent, no
/// attempt spent), not a timed-out attempt as it was (repeated, such
/// waits could fail a message never sent), and the driver skips it; sent
/// again, it goes out once.
#[tokio::test]
async fn a_send_given_up_while_queued_behind_a_late_answer_is_no_attempt_and_goes_once() {
    let rig = only_part_timed_out_with(Duration::from_secs(4), |_| {}).await;
    let behind = message("two", "+15551230003", "behind it");
    let err = rig.channel.send(&behind).await.unwrap_err();
    assert_eq!(
        (err.class, err.code.as_str()),
        (ErrorClass::RateLimited, "sms_busy"),
        "{err:?}"
    );
    retry_until_sent(&rig, &behind).await;
    assert_eq!(sent_texts(&rig), ["just once", "behind it"]);
}

/// A send queued behind the wait for an earlier send's late answer gives
/// up within one part's send time (`send_timeout_ms`), nothing sent, not
/// within the bound of a whole send (twice that and a command's): its
/// caller's own timeout (the outbox's, shorter than that bound) fired
/// first, and counted an attempt for a message that never reached the
/// modem.
#[tokio::test]
async fn a_queued_send_gives_up_within_one_part_s_send_time() {
    // One part's send time 1 s; the bound of a whole send of one part
    // (twice that and a command's) 3 s; the caller waits 2 s.
    let mut config = modem_config("main");
    config.send_timeout_ms = 1000;
    config.command_timeout_ms = 1000;
    let rig = Rig::start(behaviour(), config).await;
    rig.wait_up().await;
    rig.sim.set_delay(Duration::from_secs(6));
    send_fails_transiently(&rig, "one", "just once").await;
    let behind = message("two", "+15551230003", "behind it");
    let outer = Duration::from_secs(2);
    let err = tokio::time::timeout(outer, rig.channel.send(&behind))
        .await
        .expect("the caller's timeout came first")
        .unwrap_err();
    assert_eq!(
        (err.class, err.code.as_str()),
        (ErrorClass::RateLimited, "sms_busy"),
        "{err:?}"
    );
    rig.sim.set_delay(Duration::ZERO);
    retry_until_sent(&rig, &behind).await;
}

/// A daemon's stop while the network has not answered a part (its PDU
/// written, the modem waiting on the network): at the end of the grace the
/// outbox stops waiting for the send and puts the message back, then the
/// channel's token fires. The driver then waits `STOP_SETTLE` (12 s) at
/// most for the answer, and starts no resync: with the default `send_timeout_ms`
/// it waited the 60 s of the send, then 21 probes of 3 s, and systemd
/// killed the daemon (`TimeoutStopSec=45`) in the middle of it.
#[tokio::test]
async fn a_stop_while_the_network_never_answers_a_part_ends_the_driver_within_seconds() {
    let mut config = modem_config("main");
    config.send_timeout_ms = phonerelay_sms::config::DEFAULT_SEND_TIMEOUT_MS;
    let mut rig = Rig::start(behaviour(), config).await;
    rig.wait_up().await;
    rig.sim.set_delay(Duration::from_secs(3600));
    let channel = rig.channel.clone();
    let send = tokio::spawn(async move {
        channel
            .send(&message("stuck", "+15551230001", "never answered"))
            .await
    });
    wait_until(|| rig.sim.sent_parts().len() == 1).await;
    // The hard stop: the outbox drops the send, then the channels stop.
    send.abort();
    let stopped_at = tokio::time::Instant::now();
    rig.stop.cancel();
    let driver = rig.task.take().unwrap();
    tokio::time::timeout(Duration::from_secs(20), driver)
        .await
        .expect("the driver still ran 20 s after its stop")
        .unwrap();
    let took = stopped_at.elapsed();
    assert!(took < Duration::from_secs(15), "stopped after {took:?}");
}
