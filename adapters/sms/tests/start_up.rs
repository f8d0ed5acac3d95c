//! What start-up does about a modem whose state it cannot take for
//! granted: a SIM without an SMS centre, a modem left in text entry, a
//! modem that restarted without saying `RDY`.
mod common;

use std::time::Duration;

use common::*;
use phonerelay_channel::{Channel, ErrorClass, HealthState};

/// How long a test offers sends, as the outbox would, to a modem that
/// cannot send.
const SEND_WINDOW: Duration = Duration::from_secs(4);

/// A SIM without an SMS centre and no `smsc` in the config: every send
/// gets `+CMS ERROR: 330`. That ended the session, start-up found nothing
/// wrong and the next send ended it again, a restart loop that sent and
/// failed nothing. Start-up now stops as stuck (waiting the long backoff)
/// and its note says what to set.
#[tokio::test]
async fn a_sim_without_an_sms_centre_stops_start_up_and_names_the_setting() {
    let mut config = modem_config("main");
    config.reconnect_max_backoff_seconds = 60;
    let mut rig = Rig::idle(behaviour(), config);
    rig.sim.set_smsc("");
    rig.run();
    let deadline = tokio::time::Instant::now() + SEND_WINDOW;
    while tokio::time::Instant::now() < deadline {
        if let Err(e) = rig
            .channel
            .send(&message("m", "+15551230001", "no centre"))
            .await
        {
            // Or, queued while start-up runs, given up for now unsent.
            let busy = e.class == ErrorClass::RateLimited && e.code == "sms_busy";
            assert!(e.class == ErrorClass::Unavailable || busy, "{e:?}");
        }
        // The outbox's pause after an endpoint turned a message away.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let start_ups = rig.sim.lines_seen("Z");
    assert!(start_ups <= 2, "{start_ups} start-ups in {SEND_WINDOW:?}");
    assert!(rig.sim.sent_parts().is_empty());
    let health = rig.channel.health();
    assert_eq!(health.state, HealthState::Down);
    assert!(
        health.summary.contains("channels.sms.modems[].smsc"),
        "{health:?}"
    );
}

/// A SIM that holds a centre but answers `AT+CSCA?` with `+CME ERROR: 14`
/// while it loads after its PIN: start-up tries again soon and the modem
/// comes up. Taken for a SIM without a centre, it waited the long backoff
/// (a minute here) and its note sent the operator to set `smsc`.
#[tokio::test]
async fn a_sim_still_loading_its_centre_comes_up_without_the_long_backoff() {
    let mut config = modem_config("main");
    config.reconnect_max_backoff_seconds = 60;
    let mut rig = Rig::idle(behaviour(), config);
    rig.sim.refuse_next_smsc_queries("+CME ERROR: 14", 2);
    rig.run();
    let came_up = tokio::time::timeout(Duration::from_secs(20), rig.wait_up()).await;
    assert!(came_up.is_ok(), "{:?}", rig.channel.health());
    assert!(!rig.channel.health().summary.contains("smsc"));
}

/// The same SIM with `smsc` configured: start-up tells the modem the
/// centre (`AT+CSCA="…"`; the PDU leaves it to the modem), and sends go.
#[tokio::test]
async fn a_sim_without_an_sms_centre_sends_with_the_configured_one() {
    let mut config = modem_config("main");
    config.smsc = Some("+447785016005".into());
    let mut rig = Rig::idle(behaviour(), config);
    rig.sim.set_smsc("");
    rig.run();
    rig.wait_up().await;
    rig.channel
        .send(&message("m", "+15551230001", "via the configured centre"))
        .await
        .unwrap();
    assert_eq!(rig.sim.smsc(), "+447785016005");
    assert_eq!(rig.sim.lines_seen("+CSCA=\"+447785016005\""), 1);
    assert_eq!(rig.sim.sent_messages().len(), 1);
    assert_eq!(
        rig.channel.health().details.get("smsc").map(String::as_str),
        Some("+447785016005")
    );
}

/// A modem left in SMS text entry (the daemon killed between the `> `
/// prompt and the PDU) took every command, `ATZ` first, into the PDU and
/// answered none, session after session. Start-up ends the text entry
/// (ESC) and gets in step before `ATZ`, so the modem comes up at once.
#[tokio::test]
async fn a_modem_left_in_text_entry_comes_up_in_one_session() {
    let mut rig = Rig::idle(behaviour(), modem_config("main"));
    rig.sim.leave_in_text_entry();
    rig.run();
    rig.wait_up().await;
    assert_eq!(rig.sim.lines_seen("Z"), 1, "one start-up");
    rig.channel
        .send(&message("m", "+15551230001", "after text entry"))
        .await
        .unwrap();
    assert_eq!(rig.sim.sent_messages().len(), 1);
}

/// A SIM800 restarted by a brown-out prints no `RDY`, only `Call Ready`
/// and `SMS Ready`, with echo back on and its new-message indications
/// gone. Those ended nothing: the modem sent, but read what came only at
/// the next sweep, an hour on. They end the session now, as `RDY` does,
/// and start-up sets the modem up again.
#[tokio::test]
async fn a_modem_that_restarts_without_rdy_is_set_up_again() {
    let mut config = modem_config("main");
    config.sweep_interval_seconds = 3600;
    let rig = Rig::start(behaviour(), config).await;
    rig.wait_up().await;
    assert_eq!(rig.sim.lines_seen("E0"), 1);
    let indications = rig.sim.lines_seen("+CNMI=");
    rig.sim.restart_silently();
    wait_until(|| rig.sim.lines_seen("E0") == 2).await;
    wait_until(|| rig.sim.lines_seen("+CNMI=") > indications).await;
    rig.wait_up().await;
    rig.sim
        .inject_inbound("+15551230001", "after the brown-out");
    wait_until(|| rig.sink.inbound().len() == 1).await;
}
