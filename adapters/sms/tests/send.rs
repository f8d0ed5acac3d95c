//! Sending over a real pty to the simulator.
mod common;

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

#[tokio::test]
async fn cms_errors_are_classified() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    // 38: network out of order (transient): the retry goes through.
    rig.sim.fail_next_sends(38, 1);
    let err = rig
        .channel
        .send(&message("t", "+15551230001", "hi"))
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Transient, "{err:?}");
    assert_eq!(err.code, "cms_38");
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
