//! Unplug/replug, hung firmware, ^BOOT floods, a restart in place, the PIN
//! path and lost coverage.
mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use phonerelay_channel::{Channel, ErrorClass, HealthState, Secret};
use phonerelay_sms::ModemConfig;

#[tokio::test]
async fn unplug_mid_queue_loses_nothing_and_sends_nothing_twice() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    rig.sim.set_delay(Duration::from_millis(2));
    let total = 20;
    let mut pending: Vec<String> = (0..total).map(|i| format!("msg {i}")).collect();
    let mut receipts = HashMap::new();
    let mut unplugged = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !pending.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all sent: {pending:?}"
        );
        let text = pending.remove(0);
        if !unplugged && receipts.len() == 5 {
            rig.sim.disconnect();
            unplugged = true;
        }
        match rig
            .channel
            .send(&message(&text, "+15551230001", &text))
            .await
        {
            Ok(receipt) => {
                receipts.insert(text, receipt);
            }
            Err(e) => {
                // The outbox's view: only errors it tries again later;
                // `Unavailable` once the driver knows the modem is gone.
                assert!(
                    matches!(e.class, ErrorClass::Transient | ErrorClass::Unavailable),
                    "{e:?}"
                );
                pending.push(text);
                if !rig.sim.is_plugged() {
                    assert_eq!(rig.channel.health().state, HealthState::Down);
                    rig.sim.reconnect();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(unplugged);
    let sent = rig.sim.sent_messages();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for m in &sent {
        *counts.entry(m.text.as_str()).or_default() += 1;
    }
    assert_eq!(counts.len(), total, "every message reached the network");
    assert!(counts.values().all(|c| *c == 1), "duplicates: {counts:?}");
    rig.wait_up().await;
    assert!(rig.channel.can_send(), "agrees with health");
    // One port, one part at a time: the outbox keeps one send in flight
    // unless the config says otherwise.
    assert_eq!(rig.channel.default_concurrency(), Some(1));
}

#[tokio::test]
async fn hung_modem_and_boot_flood_trigger_reconnect() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    rig.sim.set_muted(true);
    let err = rig
        .channel
        .send(&message("h", "+15551230001", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Transient);
    rig.sim.set_muted(false);
    rig.wait_up().await;
    rig.channel
        .send(&message("h", "+15551230001", "x"))
        .await
        .unwrap();

    let before = rig.sim.commands_seen();
    rig.sim.boot_flood(20);
    // Reconnect re-runs start-up (ATZ...): many more commands than idle.
    wait_until(|| rig.sim.commands_seen() > before + 5).await;
    rig.wait_up().await;
    rig.channel
        .send(&message("b", "+15551230001", "after boot"))
        .await
        .unwrap();
    assert_eq!(rig.sim.sent_messages().len(), 2);
}

/// A modem that resets in place keeps its port open and says `RDY`: the
/// driver runs start-up again (the PIN, new-message indications), so what
/// arrives next is read at once, not at the next sweep an hour away.
#[tokio::test]
async fn a_modem_that_restarts_in_place_is_set_up_again() {
    let (b, mut config) = sim_with_pin_4321("4321");
    config.sweep_interval_seconds = 3600;
    let rig = Rig::start(b, config).await;
    rig.wait_up().await;
    rig.sim.restart_in_place();
    wait_until(|| {
        rig.channel
            .health()
            .details
            .get("last_error")
            .is_some_and(|e| e.contains("restarted"))
    })
    .await;
    rig.wait_up().await;
    rig.sim.inject_inbound("+15551230001", "after the restart");
    wait_until(|| rig.sink.inbound().len() == 1).await;
    rig.channel
        .send(&message("r", "+15551230001", "after the restart"))
        .await
        .unwrap();
}

#[tokio::test]
async fn pin_required_is_entered_and_never_logged() {
    let (logs, _logging) = CapturedLogs::start();
    let (b, config) = sim_with_pin_4321("4321");
    let rig = Rig::start(b, config).await;
    rig.wait_up().await;
    rig.channel
        .send(&message("p", "+15551230001", "unlocked"))
        .await
        .unwrap();
    let health = format!("{:?}", rig.channel.health());
    assert!(!health.contains("4321"));
    let logged = logs.text();
    assert!(logged.contains("modem ready"), "nothing captured: {logged}");
    assert!(!logged.contains("4321"), "{logged}");
}

/// What a test's tracing subscriber writes, kept to be read.
#[derive(Clone, Default)]
struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Capture everything the driver logs from now, at every level, until
    /// the guard is dropped: its tasks run on the test's one thread.
    fn start() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = CapturedLogs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(logs.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;
    fn make_writer(&'a self) -> CapturedLogs {
        self.clone()
    }
}

#[tokio::test]
async fn wrong_or_missing_pin_leaves_the_channel_down() {
    let (logs, _logging) = CapturedLogs::start();
    let (b, config) = sim_with_pin_4321("1111");
    let rig = Rig::start(b.clone(), config).await;
    wait_until(|| {
        rig.channel
            .health()
            .details
            .get("last_error")
            .is_some_and(|e| e.contains("PIN rejected"))
    })
    .await;
    assert_eq!(rig.channel.health().state, HealthState::Down);
    assert!(!rig.channel.can_send(), "agrees with health");
    let err = rig
        .channel
        .send(&message("p", "+15551230001", "x"))
        .await
        .unwrap_err();
    // Nothing went out: the message waits without spending an attempt.
    assert_eq!(err.class, ErrorClass::Unavailable);
    assert!(rig.sim.sent_messages().is_empty());

    let rig = Rig::start(b, modem_config("main")).await;
    wait_until(|| {
        rig.channel
            .health()
            .details
            .get("last_error")
            .is_some_and(|e| e.contains("none is configured"))
    })
    .await;
    // The rejection is logged, the PIN is not.
    let logged = logs.text();
    assert!(logged.contains("PIN"), "nothing captured: {logged}");
    assert!(!logged.contains("1111"), "{logged}");
}

/// A PIN whose answer never came (the modem hung on it, the reply was
/// lost) may have been wrong: the next session finds the SIM still asking
/// and does not send it again, for three wrong tries lock the SIM behind
/// its PUK.
#[tokio::test]
async fn a_pin_whose_answer_never_came_is_not_sent_again() {
    let (b, config) = sim_with_pin_4321("1111");
    let rig = Rig::start(b, config).await;
    // Before the driver's first command: it runs only once this test waits.
    rig.sim.set_lose_pin_answers(true);
    wait_until_within(PIN_WAIT, || pin_held_back(&rig)).await;
    assert_eq!(rig.sim.pin_attempts(), 1, "the PIN went to the SIM once");
    assert_eq!(rig.channel.health().state, HealthState::Down);
}

/// A right PIN whose answer was lost leaves its outcome unknown only until
/// the SIM says `READY`: that proves it took, so when the SIM asks again
/// (a SIM refresh, a restart in place) the PIN is entered again rather
/// than held back as possibly wrong until the daemon restarts.
#[tokio::test]
async fn a_lost_pin_answer_the_sim_proved_right_does_not_hold_back_later_pins() {
    let (b, config) = sim_with_pin_4321("4321");
    let mut rig = Rig::idle(b, config);
    rig.sim.set_lose_pin_answers(true);
    rig.run();
    wait_until(|| rig.sim.pin_attempts() == 1).await;
    rig.sim.set_lose_pin_answers(false);
    // Up once the unanswered PIN has timed out and the next session found
    // the SIM unlocked.
    wait_until_within(PIN_WAIT, || rig.channel.health().state == HealthState::Up).await;
    rig.sim.relock_sim();
    wait_until(|| rig.sim.pin_attempts() == 2).await;
    rig.wait_up().await;
    rig.sim.restart_in_place();
    wait_until(|| rig.sim.pin_attempts() == 3).await;
    rig.wait_up().await;
    rig.channel
        .send(&message("relock", "+15551230001", "unlocked again"))
        .await
        .unwrap();
}

/// A PIN answered with an error, the SIM's state after it unread, may
/// have been wrong or may have taken: held back, but only until a session
/// finds the SIM `READY`, which proves it took. When the SIM asks again
/// (a SIM refresh), it is entered again.
#[tokio::test]
async fn a_pin_answered_with_an_error_then_found_taken_is_entered_after_a_relock() {
    let (b, config) = sim_with_pin_4321("4321");
    let mut rig = Rig::idle(b, config);
    rig.sim.set_right_pin_reply("ERROR");
    rig.sim.set_lose_status_after_pin(true);
    rig.run();
    wait_until(|| rig.sim.pin_attempts() == 1).await;
    rig.wait_up().await;
    rig.sim.set_lose_status_after_pin(false);
    rig.sim.relock_sim();
    wait_until(|| rig.sim.pin_attempts() == 2).await;
    rig.wait_up().await;
}

/// A message the modem hands over directly (`+CMT`) while start-up runs,
/// and then start-up fails (here the SIM's answer after the PIN is lost):
/// the message is committed before the port is let go. Before, it went
/// with the port, lost without a word or a count.
#[tokio::test]
async fn a_direct_message_read_during_a_failed_start_up_is_committed() {
    let (b, config) = sim_with_pin_4321("4321");
    let command_timeout = Duration::from_millis(config.command_timeout_ms);
    let mut rig = Rig::idle(b, config);
    // The PIN's check leaves time to hand the message over while start-up
    // waits; the answer to the question after it never comes.
    rig.sim.set_pin_check_delay(command_timeout);
    rig.sim.set_lose_status_after_pin(true);
    rig.run();
    wait_until(|| rig.sim.pin_attempts() == 1).await;
    let (pdu, _) = phonerelay_sms::codec::encode_deliver(
        "+15551230027",
        "handed over during start-up",
        unix_now(),
        0,
    )
    .remove(0);
    rig.sim.deliver_direct(&pdu, false);
    // The next session, with the SIM unlocked, comes up.
    rig.wait_up().await;
    let texts: Vec<String> = rig.sink.inbound().into_iter().map(|m| m.text).collect();
    assert_eq!(texts, ["handed over during start-up"]);
    let last_error = rig.channel.health().details.get("last_error").cloned();
    assert!(last_error.is_some(), "start-up failed once");
}

/// A SIM takes seconds to check a PIN, longer than an ordinary command
/// may take: its answer is waited for, not taken as lost (which would end
/// the session and leave the PIN's outcome unknown).
#[tokio::test]
async fn a_pin_the_sim_takes_seconds_to_check_is_waited_for() {
    let (b, config) = sim_with_pin_4321("4321");
    let command_timeout = Duration::from_millis(config.command_timeout_ms);
    let mut rig = Rig::idle(b, config);
    rig.sim.set_pin_check_delay(command_timeout * 2);
    rig.run();
    rig.wait_up().await;
    assert_eq!(rig.sim.pin_attempts(), 1);
    let last_error = rig.channel.health().details.get("last_error").cloned();
    assert_eq!(last_error, None, "start-up went through at the first go");
}

/// A SIM too busy to check the PIN (`+CME ERROR: 14`) has used no try:
/// the session ends as a passing failure, and the next one enters the PIN
/// again, which is taken, rather than the PIN being held wrong until a
/// restart.
#[tokio::test]
async fn a_pin_the_sim_was_too_busy_to_check_is_entered_again() {
    let (b, config) = sim_with_pin_4321("4321");
    let mut rig = Rig::idle(b, config);
    rig.sim.refuse_next_pins("+CME ERROR: 14", 1);
    rig.run();
    rig.wait_up().await;
    rig.channel
        .send(&message("busy", "+15551230001", "unlocked at last"))
        .await
        .unwrap();
    assert_eq!(rig.sim.pin_attempts(), 1, "the SIM checked the PIN once");
    assert_eq!(rig.sim.sent_messages().len(), 1);
}

/// A modem that answers a wrong PIN with a bare `ERROR` cannot be told
/// from one refusing it for another reason: the SIM still asking for its
/// PIN after such an answer, the PIN is not sent again in this run, as
/// before a wrong PIN was, so restarts cannot spend the SIM's three tries.
#[tokio::test]
async fn a_pin_answered_with_a_bare_error_is_not_sent_again() {
    let (b, config) = sim_with_pin_4321("1111");
    let mut rig = Rig::idle(b, config);
    rig.sim.set_wrong_pin_reply("ERROR");
    rig.run();
    wait_pin_held_back(&rig).await;
    assert_eq!(rig.sim.pin_attempts(), 1, "one try of three used");
    assert_eq!(rig.channel.health().state, HealthState::Down);
}

/// A SIM that resets on its own (a SIM refresh) asks for its PIN again,
/// with no `RDY`: the modem leaves the network. The driver finds the SIM
/// locked when it asks why, and the next session enters the PIN, so the
/// queue moves again without a restart.
#[tokio::test]
async fn a_sim_that_asks_for_its_pin_again_without_a_restart_is_unlocked() {
    let (b, mut config) = sim_with_pin_4321("4321");
    config.health_interval_seconds = 3600;
    let rig = Rig::start(b, config).await;
    rig.wait_up().await;
    rig.sim.relock_sim();
    wait_until(|| rig.sim.pin_attempts() == 2).await;
    rig.wait_up().await;
    rig.channel
        .send(&message("relock", "+15551230001", "unlocked again"))
        .await
        .unwrap();
    assert_eq!(rig.sim.sent_messages().len(), 1);
}

#[tokio::test]
async fn a_modem_off_the_network_turns_sends_away_unattempted_until_a_poll_finds_it_back() {
    let mut config = modem_config("main");
    config.health_interval_seconds = 1;
    let rig = Rig::start(behaviour(), config).await;
    rig.wait_up().await;
    assert!(rig.channel.can_send());
    // The modem answers, but has no network: nothing went out.
    first_send_out_of_coverage_is_turned_away(&rig).await;
    assert_eq!(rig.channel.health().state, HealthState::Degraded);
    // A poll while still out of reach keeps it so.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!rig.channel.can_send());
    back_in_coverage_it_sends(&rig).await;
}

/// Out of coverage, a send learns it (+CMS ERROR: 331, nothing sent), and
/// the modem takes no more at once, not at the next poll.
async fn first_send_out_of_coverage_is_turned_away(rig: &Rig) {
    rig.sim.set_coverage(false);
    let err = rig
        .channel
        .send(&message("n", "+15551230001", "no coverage"))
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Unavailable, "{err:?}");
    assert_eq!(err.code, "cms_331");
    assert!(!rig.channel.can_send());
}

/// Back in coverage, the modem takes sends again once it knows, and the
/// first is the network's first message.
async fn back_in_coverage_it_sends(rig: &Rig) {
    rig.sim.set_coverage(true);
    wait_until(|| rig.channel.can_send()).await;
    rig.channel
        .send(&message("n", "+15551230001", "back"))
        .await
        .unwrap();
    assert_eq!(rig.sim.sent_messages().len(), 1);
}

#[tokio::test]
async fn losing_the_network_halfway_through_a_long_message_counts_as_an_attempt() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    // The first part goes out, then the network is gone.
    rig.sim.fail_sends_after(1, 331, 1);
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(8);
    let err = rig
        .channel
        .send(&message("half", "+15551230001", &text))
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Transient, "{err:?}");
    assert_eq!(err.code, "cms_331");
}

/// A modem that reports registration changes (`+CREG: <stat>`, asked for
/// at start-up) is held the moment it loses the network and takes sends
/// again the moment it finds it: no send, and no health poll, in between.
#[tokio::test]
async fn registration_changes_reported_by_the_modem_hold_and_release_at_once() {
    let mut config = modem_config("main");
    config.health_interval_seconds = 3600;
    let rig = Rig::start(behaviour(), config).await;
    rig.wait_up().await;
    rig.sim.set_coverage(false);
    wait_until(|| !rig.channel.can_send()).await;
    assert_eq!(rig.channel.health().state, HealthState::Degraded);
    rig.sim.set_coverage(true);
    wait_until(|| rig.channel.can_send()).await;
    rig.channel
        .send(&message("r", "+15551230001", "back"))
        .await
        .unwrap();
    assert_eq!(rig.sim.sent_messages().len(), 1);
}

/// A modem that refuses to report registration changes (`AT+CREG=1`
/// answered `ERROR`) is still found back on the network well before the
/// next health poll, an hour away here: while it is off the network the
/// driver asks every few seconds.
#[tokio::test]
async fn a_modem_without_registration_reports_is_polled_while_off_the_network() {
    let mut config = modem_config("main");
    config.health_interval_seconds = 3600;
    let rig = Rig::start(
        Behaviour {
            registration_urcs: false,
            ..behaviour()
        },
        config,
    )
    .await;
    rig.wait_up().await;
    // No URC tells it: the first send finds out.
    first_send_out_of_coverage_is_turned_away(&rig).await;
    // Past the poll the loss itself sets off: the one that finds the
    // network back is a later, periodic one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!rig.channel.can_send());
    back_in_coverage_it_sends(&rig).await;
}

/// A SIM whose PIN is 4321, and a modem configured with `configured`.
fn sim_with_pin_4321(configured: &str) -> (Behaviour, ModemConfig) {
    let mut b = behaviour();
    b.pin = Some("4321".into());
    let mut config = modem_config("main");
    config.pin = Some(Secret::new(configured));
    (b, config)
}

/// Until the channel says it holds the PIN back (not sent again).
async fn wait_pin_held_back(rig: &Rig) {
    wait_until(|| pin_held_back(rig)).await;
}

/// Whether the channel says it holds the PIN back (not sent again).
fn pin_held_back(rig: &Rig) -> bool {
    rig.channel
        .health()
        .details
        .get("last_error")
        .is_some_and(|e| e.contains("not sent again"))
}
