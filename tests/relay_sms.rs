//! The relay link over the simulated SMS modem (a pty speaking AT): a
//! pChat send pushed by the relay goes out as an SMS, the reply SMS comes
//! back to the pChat user who wrote, and the status reaches the relay.

#[allow(unused_imports)]
mod common;
mod relay_support;

use common::{TestDaemon, create_key};
use phonerelay::store::Scope;
use phonerelay_sms::SimSettings;
use phonerelay_sms::sim::{SimHandle, behaviour_from, spawn};
use relay_support::{EmulatedRelay, PHONE_ID, RELAY_KEY, relay_config};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// A bridge linked to `relay` in push mode (replies no conversation
/// routes go to `default_to`), with one simulated modem whose
/// `[[channels.sms.modems]]` entry has `modem_keys` (TOML lines) too; the
/// simulator's handle and what stops it.
async fn sms_bridge(
    relay: &EmulatedRelay,
    default_to: Option<&str>,
    modem_keys: &str,
) -> (TestDaemon, SimHandle, CancellationToken) {
    let dir = tempfile::tempdir().unwrap();
    let sim_stop = CancellationToken::new();
    let link = dir.path().join("modem");
    let sim = spawn(
        behaviour_from(&SimSettings::default()),
        link.clone(),
        sim_stop.clone(),
    )
    .unwrap();
    std::fs::write(dir.path().join("relay.key"), RELAY_KEY).unwrap();
    let extra = format!(
        "{}{}\n[[channels.sms.modems]]\nphone_id = \"{PHONE_ID}\"\ndevice = \"{}\"\n{modem_keys}reconnect_max_backoff_seconds = 1\n",
        common::FAST_OUTBOX,
        relay_config(&relay.url(), "push", default_to),
        link.display()
    );
    let text = common::config_text(&dir, &extra);
    let bridge = TestDaemon::start_in(dir, text, Vec::new()).await;
    (bridge, sim, sim_stop)
}

#[tokio::test]
async fn sms_send_from_pchat_and_the_reply_sms_reach_the_relay() {
    let relay = EmulatedRelay::start().await;
    let (bridge, sim, sim_stop) = sms_bridge(&relay, None, "").await;
    let key = create_key(
        &*bridge.store(),
        vec![Scope::Send, Scope::Read],
        Some(PHONE_ID),
    )
    .await;

    let body = json!({"phone_id": PHONE_ID, "channel": "sms", "to": "+15551230001",
        "text": "Your table is ready", "source": "alice", "relay_message_id": "sms-1"});
    let (code, accepted) = bridge.post("/api/v1/messages", &key, &body).await;
    assert_eq!(code, 202, "{accepted}");
    relay
        .wait_for("sent for sms-1", |s| {
            s.status_events
                .iter()
                .any(|e| e["relay_message_id"] == "sms-1" && e["status"] == "sent")
        })
        .await;
    let sent = sim.sent_messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].text, "Your table is ready");

    sim.inject_inbound("+15551230001", "On my way");
    relay
        .wait_for("the reply SMS", |s| !s.messages.is_empty())
        .await;
    let reply = relay.messages()[0].body.clone();
    assert_eq!(reply["channel"], "pchat");
    assert_eq!(reply["to"], "alice");
    assert_eq!(reply["source"], "sms:+15551230001");
    assert_eq!(reply["text"], "On my way");
    assert_eq!(reply["origin"]["channel"], "sms");
    sim_stop.cancel();
}

/// A DELIVER from `digits` with the type of number "national" (TON 2), as
/// networks give senders of their own country.
fn national_deliver(digits: &str, text: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (hex, _) = phonerelay_sms::codec::encode_deliver(digits, text, now, 1).remove(0);
    // No SMSC part ("00"), the first octet, the address length, then its
    // type: 0x81 (unknown, ISDN) becomes 0xA1 (national, ISDN).
    assert_eq!(&hex[6..8], "81", "{hex}");
    format!("{}A1{}", &hex[..6], &hex[8..])
}

/// A modem whose `country` is GB: a reply from a sender the network gives
/// in national format (7911 123456) is the reply of the conversation with
/// +447911123456, and reaches the pChat user who wrote.
#[tokio::test]
async fn a_reply_from_a_sender_in_national_format_reaches_the_user_who_wrote() {
    let relay = EmulatedRelay::start().await;
    let (bridge, sim, sim_stop) = sms_bridge(&relay, Some("ops"), "country = \"GB\"\n").await;
    let key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;
    let body = json!({"phone_id": PHONE_ID, "channel": "sms", "to": "+447911123456",
        "text": "Your table is ready", "source": "alice", "relay_message_id": "gb-1"});
    let (code, accepted) = bridge.post("/api/v1/messages", &key, &body).await;
    assert_eq!(code, 202, "{accepted}");
    relay
        .wait_for("sent for gb-1", |s| {
            s.status_events
                .iter()
                .any(|e| e["relay_message_id"] == "gb-1" && e["status"] == "sent")
        })
        .await;

    assert!(sim.inject_raw_pdu(&national_deliver("7911123456", "On my way")));
    relay
        .wait_for("the reply SMS", |s| !s.messages.is_empty())
        .await;
    let reply = relay.messages()[0].body.clone();
    assert_eq!(reply["to"], "alice", "{reply}");
    assert_eq!(reply["source"], "sms:+447911123456", "{reply}");
    assert_eq!(reply["text"], "On my way");
    sim_stop.cancel();
}

/// The SMS channel takes no options: a send with some is refused before
/// anything is stored, naming the field.
#[tokio::test]
async fn a_send_with_options_the_sms_channel_does_not_take_is_refused() {
    let relay = EmulatedRelay::start().await;
    let (bridge, sim, sim_stop) = sms_bridge(&relay, None, "").await;
    let key = create_key(&*bridge.store(), vec![Scope::Send], Some(PHONE_ID)).await;
    let body = json!({"phone_id": PHONE_ID, "channel": "sms", "to": "+15551230001",
        "text": "hi", "options": {"flash": true}});
    let (code, refused) = bridge.post("/api/v1/messages", &key, &body).await;
    assert_eq!(code, 422, "{refused}");
    assert_eq!(refused["error"]["field"], "options", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the sms channel takes no options"),
        "{refused}"
    );
    let (_, page) = bridge.get("/api/v1/messages", &bridge.admin_key).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 0, "{page}");
    assert!(sim.sent_messages().is_empty());
    sim_stop.cancel();
}
