//! A SIM PIN the SIM rejected is recorded in the store, so that a restart
//! does not send it again (three wrong tries lock the SIM behind its PUK),
//! until the configured PIN changes, another SIM is in the slot, or a PIN
//! is accepted.
mod common;

use common::*;
use phonerelay_channel::{Channel, HealthState, Secret};
use phonerelay_sms::ModemConfig;
use phonerelay_sms::driver::pin_record::PIN_RECORD_CURSOR;

/// The SIM's PIN.
const SIM_PIN: &str = "4321";
/// A PIN the SIM rejects.
const WRONG_PIN: &str = "1111";

fn config_with_pin(pin: &str) -> ModemConfig {
    let mut config = modem_config("main");
    config.pin = Some(Secret::new(pin));
    config
}

/// A simulator whose SIM wants [`SIM_PIN`], and a channel configured with
/// `pin` that records rejections, started.
fn start(pin: &str) -> Rig {
    let mut b = behaviour();
    b.pin = Some(SIM_PIN.into());
    let config = config_with_pin(pin);
    let mut rig = Rig::idle(b, config.clone());
    rig.pin_record_key = Some(PinRecordKey::new([7; 32]));
    rig.restart_channel(config);
    rig
}

fn last_error(rig: &Rig) -> String {
    rig.channel
        .health()
        .details
        .get("last_error")
        .cloned()
        .unwrap_or_default()
}

fn record(rig: &Rig) -> Option<String> {
    rig.sink
        .cursors
        .lock()
        .unwrap()
        .get(PIN_RECORD_CURSOR)
        .cloned()
}

/// Start with [`WRONG_PIN`], until its rejection is recorded, then stop:
/// the daemon's first run.
async fn rejected_once() -> Rig {
    let mut rig = start(WRONG_PIN);
    wait_until(|| last_error(&rig).contains("PIN rejected")).await;
    assert!(record(&rig).is_some(), "the rejection is recorded");
    rig.stop_channel().await;
    assert_eq!(rig.sim.pin_commands_received(), 1);
    rig
}

#[tokio::test]
async fn a_rejected_pin_is_not_sent_again_after_a_restart() {
    let mut rig = rejected_once().await;
    rig.restart_channel(config_with_pin(WRONG_PIN));
    wait_until(|| last_error(&rig).contains("until the configured PIN changes")).await;
    assert_eq!(
        rig.sim.pin_commands_received(),
        1,
        "no AT+CPIN=<pin> after the restart"
    );
    assert_eq!(rig.sim.pin_attempts(), 1, "one try of the SIM's used");
    let health = rig.channel.health();
    assert_eq!(health.state, HealthState::Down);
    assert!(
        last_error(&rig).contains("channels.sms.modems"),
        "names where to fix it: {}",
        last_error(&rig)
    );
}

#[tokio::test]
async fn a_changed_pin_is_sent_after_a_rejection() {
    let mut rig = rejected_once().await;
    let first = record(&rig);
    rig.restart_channel(config_with_pin("2222"));
    wait_until(|| rig.sim.pin_commands_received() == 2).await;
    wait_until(|| record(&rig) != first).await;
    assert!(
        record(&rig).is_some(),
        "the new PIN's rejection is recorded"
    );
}

#[tokio::test]
async fn a_new_sim_in_the_slot_gets_the_pin() {
    let mut rig = rejected_once().await;
    rig.sim.set_iccid(Some("89445000000000000025"));
    rig.restart_channel(config_with_pin(WRONG_PIN));
    wait_until(|| rig.sim.pin_commands_received() == 2).await;
}

#[tokio::test]
async fn a_modem_that_gives_no_iccid_does_not_let_the_rejected_pin_through() {
    let mut rig = rejected_once().await;
    rig.sim.set_iccid(None);
    rig.restart_channel(config_with_pin(WRONG_PIN));
    wait_until(|| last_error(&rig).contains("until the configured PIN changes")).await;
    assert_eq!(rig.sim.pin_commands_received(), 1);
}

#[tokio::test]
async fn an_accepted_pin_clears_the_record() {
    let mut rig = rejected_once().await;
    rig.restart_channel(config_with_pin(SIM_PIN));
    rig.wait_up().await;
    assert_eq!(record(&rig), None);
    assert_eq!(rig.sim.pin_commands_received(), 2);
}

#[tokio::test]
async fn the_record_holds_no_pin_in_clear() {
    let rig = rejected_once().await;
    let cursors = rig.sink.cursors.lock().unwrap();
    for (name, value) in cursors.iter() {
        assert!(
            !name.contains(WRONG_PIN) && !value.contains(WRONG_PIN),
            "{name} = {value}"
        );
    }
}

/// A PIN whose answer never came (the modem went away mid `AT+CPIN`) is
/// recorded as unsettled before it is sent, so a restart that finds the
/// SIM still asking does not send it again: had it been wrong, that would
/// spend a second of the SIM's three tries. A SIM found `READY` (here the
/// right PIN configured) settles it.
#[tokio::test]
async fn a_pin_whose_answer_never_came_is_not_sent_again_after_a_restart() {
    let mut b = behaviour();
    b.pin = Some(SIM_PIN.into());
    let config = config_with_pin(WRONG_PIN);
    let mut rig = Rig::idle(b, config.clone());
    rig.pin_record_key = Some(PinRecordKey::new([7; 32]));
    rig.sim.set_lose_pin_answers(true);
    rig.restart_channel(config.clone());
    wait_until(|| rig.sim.pin_commands_received() == 1).await;
    rig.stop_channel().await;
    rig.sim.set_lose_pin_answers(false);

    rig.restart_channel(config.clone());
    wait_until(|| last_error(&rig).contains("never came")).await;
    assert_eq!(rig.sim.pin_commands_received(), 1, "not sent again");
    assert_eq!(rig.channel.health().state, HealthState::Down);
    rig.stop_channel().await;

    // The operator configures the right PIN: sent, and its answer settles it.
    rig.restart_channel(config_with_pin(SIM_PIN));
    rig.wait_up().await;
    let unsettled = || {
        rig.sink
            .cursors
            .lock()
            .unwrap()
            .get(phonerelay_sms::driver::pin_unsettled::PIN_UNSETTLED_CURSOR)
            .cloned()
    };
    assert_eq!(unsettled(), None);
}

/// The rejection's record could not be written (the store refused it):
/// the record of the PIN under way, left in place, holds the PIN back at
/// the restart. Cleared before the rejection was written, neither record
/// named it, and the restart spent a second of the SIM's three tries.
#[tokio::test]
async fn a_rejection_the_store_did_not_keep_still_holds_the_pin_back_after_a_restart() {
    let mut b = behaviour();
    b.pin = Some(SIM_PIN.into());
    let config = config_with_pin(WRONG_PIN);
    let mut rig = Rig::idle(b, config.clone());
    rig.pin_record_key = Some(PinRecordKey::new([7; 32]));
    *rig.sink.failing_cursor_write_prefix.lock().unwrap() = Some(PIN_RECORD_CURSOR.into());
    rig.restart_channel(config);
    wait_until(|| last_error(&rig).contains("PIN rejected")).await;
    assert_eq!(record(&rig), None, "the rejection was not written");
    rig.stop_channel().await;
    *rig.sink.failing_cursor_write_prefix.lock().unwrap() = None;

    rig.restart_channel(config_with_pin(WRONG_PIN));
    wait_until(|| last_error(&rig).contains("never came")).await;
    assert_eq!(rig.channel.health().state, HealthState::Down);
    assert_eq!(rig.sim.pin_commands_received(), 1, "not sent again");
    assert_eq!(rig.sim.pin_attempts(), 1, "one try of the SIM's used");
}

/// Without a record of rejections (no record key), each start sends the
/// wrong PIN again: the third locks the SIM behind its PUK, as a real SIM
/// does, and the next start sees it so and sends no PIN (one would be
/// refused unchecked), saying why the modem stays down.
#[tokio::test]
async fn a_sim_locked_behind_its_puk_gets_no_pin_and_says_so() {
    let mut b = behaviour();
    b.pin = Some(SIM_PIN.into());
    let mut rig = Rig::idle(b, config_with_pin(WRONG_PIN));
    for tries in 1..=3 {
        rig.restart_channel(config_with_pin(WRONG_PIN));
        wait_until(|| rig.sim.pin_commands_received() == tries).await;
        wait_until(|| last_error(&rig).contains("PIN rejected")).await;
        rig.stop_channel().await;
    }
    rig.restart_channel(config_with_pin(WRONG_PIN));
    wait_until(|| last_error(&rig).contains("SimPuk")).await;
    assert_eq!(
        rig.sim.pin_commands_received(),
        3,
        "no PIN to a SIM that wants its PUK"
    );
    assert_eq!(rig.channel.health().state, HealthState::Down);
}
