//! A SIM PIN sent whose outcome is not known yet, kept in the store as the
//! endpoint's cursor [`PIN_UNSETTLED_CURSOR`] from just before it is sent
//! until the SIM's answer settles it. The modem gone mid `AT+CPIN` (a
//! crash, a power cut, a watchdog kill) leaves it there: after a restart
//! the SIM, still asking, does not get the same PIN again, which if it was
//! wrong would spend a second of its three tries. It is settled by any
//! answer that tells, by the SIM found `READY` (the PIN took, or someone
//! entered it by hand), or by another configured PIN or another SIM.
//!
//! How many tries are left would say whether one more is safe, but modems
//! tell that only in their own ways (`AT+CPINR`, `AT+QPINC`, `AT^SPIC`),
//! so it is not read: an unsettled PIN waits for the operator.

use super::Driver;
use super::End;
use super::pin_record::PinRecord;

/// The endpoint cursor that holds the PIN sent (as a [`PinRecord`], no
/// PIN in it) while its outcome is unknown; absent otherwise.
pub const PIN_UNSETTLED_CURSOR: &str = "sms-pin-unsettled";

impl Driver {
    /// Refuse to send `attempt` if an earlier one of the same PIN to the
    /// same SIM is unsettled. A record that cannot be read holds it back
    /// too, until it can be.
    pub(super) async fn check_unsettled_pin(&self, attempt: &PinRecord) -> Result<(), End> {
        let stored = self
            .sink
            .load_cursor(PIN_UNSETTLED_CURSOR)
            .await
            .map_err(|e| {
                End::Failed(format!(
                    "cannot read the record of a SIM PIN sent earlier ({e}); the PIN is not sent until it can be read"
                ))
            })?;
        match stored.as_deref().and_then(PinRecord::parse) {
            Some(earlier) if earlier.forbids(attempt) => Err(End::Stuck(format!(
                "the SIM still asks for its PIN, and the answer to this PIN sent earlier \
                 never came (the modem went away); not sent again, as it may have been \
                 wrong (three wrong tries lock the SIM): check the pin (or pin_file) of \
                 the modem {} in channels.sms.modems, then enter it by hand (AT+CPIN) or \
                 configure another",
                self.config.phone_id
            ))),
            _ => Ok(()),
        }
    }

    /// Keep `attempt` as unsettled before it is sent. If the store refuses
    /// it, it is not sent: a restart could not know it was.
    pub(super) async fn mark_pin_unsettled(&self, attempt: &PinRecord) -> Result<(), End> {
        self.sink
            .save_cursor(PIN_UNSETTLED_CURSOR, &attempt.to_value())
            .await
            .map_err(|e| {
                End::Failed(format!(
                    "cannot record the SIM PIN about to be sent ({e}); not sent until it can be"
                ))
            })
    }

    /// The PIN's outcome is known (or the SIM is unlocked): nothing is
    /// unsettled. If the store refuses, a restart holds the PIN back
    /// until the SIM is found `READY`: safe, if not smooth.
    pub(super) async fn settle_pin(&self) {
        if self.pin_record_key.is_none() {
            return;
        }
        if let Err(e) = self.sink.save_cursor(PIN_UNSETTLED_CURSOR, "").await {
            tracing::warn!(phone_id = %self.config.phone_id, error = %e,
                "cannot clear the record of a SIM PIN sent; cleared at the next start-up that finds the SIM unlocked");
        }
    }
}
