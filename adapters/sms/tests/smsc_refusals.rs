//! Sends refused with `+CMS ERROR: 330` (SMS centre address unknown) in a
//! row: each ends the session and start-up, finding an address on the
//! SIM, brings the modem `up` again, so nothing said what was wrong while
//! nothing went out. From the third in a row the health is degraded,
//! naming the `smsc` key; a send the network accepts clears it.
mod common;

use common::*;
use phonerelay_channel::{Channel, ErrorClass, HealthState};
use phonerelay_sms::driver::status::SMSC_REFUSALS_STUCK;

fn smsc_named(rig: &Rig) -> bool {
    rig.channel
        .health()
        .summary
        .contains("channels.sms.modems[].smsc")
}

#[tokio::test]
async fn sends_refused_for_the_sms_centre_in_a_row_degrade_the_health_until_one_goes() {
    let rig = Rig::start(behaviour(), modem_config("main")).await;
    rig.wait_up().await;
    rig.sim.fail_next_sends(330, SMSC_REFUSALS_STUCK as usize);
    for n in 1..=SMSC_REFUSALS_STUCK {
        // Each refusal ends the session; the next send waits for it back.
        wait_until(|| rig.channel.can_send()).await;
        if n < SMSC_REFUSALS_STUCK {
            rig.wait_up().await;
            assert!(!smsc_named(&rig), "not yet after {}", n - 1);
        }
        let err = rig
            .channel
            .send(&message("m", "+15551230001", "hi"))
            .await
            .unwrap_err();
        assert_eq!(err.class, ErrorClass::Unavailable, "{err:?}");
    }
    wait_until(|| rig.channel.health().state == HealthState::Degraded && smsc_named(&rig)).await;
    assert!(rig.channel.health().summary.contains("330"));

    retry_until_sent(&rig, &message("m", "+15551230001", "hi")).await;
    rig.wait_up().await;
    assert!(!smsc_named(&rig));
}
