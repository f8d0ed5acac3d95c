//! A send answered with a `+CME ERROR` (27.007) instead of a `+CMS ERROR`:
//! some modems answer a state of the SIM or the network so. Taken as a
//! plain refusal, each one cost every queued message an attempt while the
//! modem could not send at all.
mod common;

use common::*;
use phonerelay_channel::{Channel, ErrorClass, SendError};

async fn send_answered(rig: &Rig, reply: &str, id: &str) -> SendError {
    rig.sim.fail_next_sends_with(reply, 1);
    rig.channel
        .send(&message(id, "+15551230001", "hi"))
        .await
        .unwrap_err()
}

/// 30 no network service, 31 network timeout, 32 emergency calls only:
/// as `+CMS ERROR: 331`, the message waits unattempted and the modem is
/// taken off the network until a poll finds it back.
#[tokio::test]
async fn a_cme_error_saying_no_network_holds_the_message() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    for code in [30, 31, 32] {
        let err = send_answered(&rig, &format!("+CME ERROR: {code}"), "n").await;
        assert_eq!(err.class, ErrorClass::Unavailable, "{err:?}");
        assert_eq!(err.code, format!("cme_{code}"));
        assert!(!rig.channel.can_send(), "taken off the network");
        wait_until(|| rig.channel.can_send()).await;
    }
    retry_until_sent(&rig, &message("n", "+15551230001", "hi")).await;
    assert_eq!(rig.sim.sent_messages().len(), 1);
}

/// 10 SIM not inserted, 11 PIN required, 13 SIM failure...: about the
/// modem, as the `+CMS ERROR`s about the SIM: the message waits
/// unattempted, and start-up runs again.
#[tokio::test]
async fn a_cme_error_about_the_sim_holds_the_message_and_runs_start_up_again() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    for code in [10, 11, 12, 13, 15, 16, 17, 18] {
        let start_ups = rig.sim.lines_seen("Z");
        let err = send_answered(&rig, &format!("+CME ERROR: {code}"), "s").await;
        assert_eq!(err.class, ErrorClass::Unavailable, "{err:?}");
        assert_eq!(err.code, format!("cme_{code}"));
        wait_until(|| rig.sim.lines_seen("Z") > start_ups).await;
        rig.wait_up().await;
    }
    retry_until_sent(&rig, &message("s", "+15551230001", "hi")).await;
}

/// SIM busy, `+CME ERROR: 14` or `+CMS ERROR: 314`: the message waits
/// unattempted; the session goes on. 314 was taken for a refusal of the
/// message, and each cost an attempt.
#[tokio::test]
async fn a_busy_sim_holds_the_message_without_a_restart() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    for (reply, code) in [("+CME ERROR: 14", "cme_14"), ("+CMS ERROR: 314", "cms_314")] {
        let start_ups = rig.sim.lines_seen("Z");
        let err = send_answered(&rig, reply, "b").await;
        assert_eq!(err.class, ErrorClass::Unavailable, "{reply}: {err:?}");
        assert_eq!(err.code, code);
        rig.channel
            .send(&message("b", "+15551230001", "hi"))
            .await
            .unwrap();
        assert_eq!(rig.sim.lines_seen("Z"), start_ups, "no new start-up");
    }
}

/// Any other `+CME ERROR`, and a bare `ERROR`, stay what they were: an
/// attempt, retried.
#[tokio::test]
async fn other_errors_to_a_send_are_an_attempt() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    for reply in ["ERROR", "+CME ERROR: 100", "+CME ERROR: 4"] {
        let err = send_answered(&rig, reply, "e").await;
        assert_eq!(err.class, ErrorClass::Transient, "{reply}: {err:?}");
        assert_eq!(err.code, "sms_rejected");
        assert!(rig.channel.can_send(), "{reply} leaves the modem up");
    }
}
