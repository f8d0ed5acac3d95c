//! PDUs the codec cannot decode: kept in the store as they came
//! (`ChannelEvent::Unreadable`), for a human to look at (`phonerelay pdu`
//! decodes what it can of one), and only then freed from the modem, as a
//! message is. Left there, a few of them filled a small SIM for good and
//! stopped reception; a direct delivery (`+CMT`, `+CDS`), of which the
//! modem keeps no copy, was lost.

use phonerelay_channel::{ChannelEvent, ChannelKind, SinkError, UnreadableInbound};

use super::conn::{Conn, ConnError};
use super::slot::Slot;
use super::{Driver, unix_now_ms};

/// The octets of `pdu` as the modem gave them in hex; a line that is not
/// hex (a text-mode delivery, a header whose PDU never came) as its own
/// bytes, so that nothing of it is lost either.
fn raw_of(pdu: &str) -> Vec<u8> {
    phonerelay_sms_pdu::decode_hex(pdu).unwrap_or_else(|_| pdu.as_bytes().to_vec())
}

impl Driver {
    /// Commit `pdu`, from `origin` (a slot, `+CMT`, `+CDS`), which cannot be
    /// decoded for `reason`. The store keeps the same PDU of this modem
    /// once, so one read again (a crash before its slot was freed) is not
    /// a second row.
    async fn keep_undecodable(
        &self,
        origin: &str,
        pdu: &str,
        reason: &str,
    ) -> Result<(), SinkError> {
        self.sink
            .deliver(ChannelEvent::Unreadable(UnreadableInbound {
                channel: ChannelKind::Sms,
                phone_id: self.config.phone_id.clone(),
                raw: raw_of(pdu),
                origin: origin.to_string(),
                reason: reason.to_string(),
                received_at_ms: unix_now_ms(),
            }))
            .await
    }

    /// A `+CDS`, or a `+CMT`/`+CDS` header whose PDU never came (`kind`),
    /// that cannot be decoded: committed, since the modem kept no copy,
    /// and counted in the status. If the commit fails it is lost: said
    /// with its length and why but never its content, which is private,
    /// and counted as such. (An undecodable `+CMT` PDU is kept in the
    /// record of direct deliveries instead, see
    /// [`Self::undecodable_direct_kept`].)
    pub(super) async fn undecodable_direct(&self, kind: &str, pdu: &str, reason: &str) {
        if !self.undecodable_direct_kept(kind, pdu, reason, true).await {
            tracing::warn!(phone_id = %self.config.phone_id, kind, chars = pdu.len(),
                "an undecodable PDU the store would not keep is lost");
            self.set_status(|s| s.lost_direct_events += 1);
        }
    }

    /// Commit a directly delivered `pdu` (`kind`) that cannot be decoded;
    /// whether the store took it. `first` is whether it was just handed
    /// over (counted in `undecodable_direct`, and said) rather than taken
    /// up again from the record of direct deliveries, where a `+CMT`
    /// waits while the store refuses it, as a decodable one does: the
    /// modem acknowledged it to the network already (phase 2), so no
    /// other copy of it comes. Only its length and why are said, never
    /// its content, which is private.
    pub(super) async fn undecodable_direct_kept(
        &self,
        kind: &str,
        pdu: &str,
        reason: &str,
        first: bool,
    ) -> bool {
        if first {
            self.set_status(|s| s.undecodable_direct += 1);
        }
        match self.keep_undecodable(kind, pdu, reason).await {
            Ok(()) => {
                tracing::warn!(phone_id = %self.config.phone_id, kind, chars = pdu.len(), reason,
                    "cannot decode a PDU the modem delivered directly; kept in the store as it came");
                true
            }
            Err(e) if first => {
                tracing::warn!(phone_id = %self.config.phone_id, kind, chars = pdu.len(), reason,
                    error = %e, "cannot decode a PDU the modem delivered directly, nor keep it in the store now");
                false
            }
            Err(e) => {
                tracing::debug!(kind, chars = pdu.len(), error = %e,
                    "undecodable direct PDU still waits for the store");
                false
            }
        }
    }

    /// A stored PDU in `slot` (listed under `listed_under`, see
    /// [`Self::process_stored`]) that cannot be decoded: committed, then
    /// freed. Returns whether it was freed. A failed commit leaves it on
    /// the modem, named in the status (`undecodable_stored`) until a sweep
    /// commits it or no longer finds it; the journal warns once per PDU.
    pub(super) async fn undecodable_stored(
        &self,
        conn: &mut Conn,
        slot: Slot,
        listed_under: &str,
        pdu: &str,
        reason: &str,
    ) -> Result<bool, ConnError> {
        let key = (listed_under.to_string(), slot.index);
        if let Err(e) = self.keep_undecodable(&slot.to_string(), pdu, reason).await {
            let mut new = false;
            self.set_status(|s| {
                let before = s.undecodable_stored.insert(key, pdu.to_string());
                new = before.as_deref() != Some(pdu);
            });
            if new {
                tracing::warn!(phone_id = %self.config.phone_id, reason, error = %e, %slot,
                    "cannot decode a stored PDU, nor keep it in the store; left on the modem for the next sweep");
            } else {
                tracing::debug!(%slot, "undecodable stored PDU still waits for the store");
            }
            return Ok(false);
        }
        tracing::warn!(phone_id = %self.config.phone_id, reason, %slot,
            "cannot decode a stored PDU; kept in the store as it came, and freed from the modem");
        self.set_status(|s| {
            s.undecodable_stored.remove(&key);
        });
        self.delete_here(conn, slot).await
    }
}

#[cfg(test)]
mod tests {
    use super::raw_of;

    #[test]
    fn a_hex_pdu_is_kept_as_its_octets_and_anything_else_as_it_came() {
        assert_eq!(raw_of("0004ab"), [0x00, 0x04, 0xAB]);
        assert_eq!(raw_of("+CMT: ,24"), b"+CMT: ,24");
        assert_eq!(raw_of("000"), b"000");
    }
}
