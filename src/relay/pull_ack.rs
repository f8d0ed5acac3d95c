//! Acknowledging a pull pass's jobs. A refused ack is sent again in
//! halves: a relay that refuses the whole for its size (a body limit
//! below `poll_max_jobs` entries) would otherwise be handed the same
//! oldest jobs, as repeats, and refuse their ack at every poll, and no
//! later job would ever be fetched.

use std::time::Instant;

use serde_json::json;

use super::pull::Ack;
use super::{Deps, RelayError};
use crate::logging::Throttle;

/// Entries refused each on its own, with none of the ack taken yet, after
/// which the relay is taken to refuse acks, not these entries: the rest
/// is not split down to single entries (twice as many requests as
/// entries, at every pass, against a relay that takes none). The
/// forwarder holds its queue after as many inbound messages refused in a
/// row with none taken, rather than dead-letter every one, and the status
/// reporter stops halving a batch after as many events refused alone.
pub(super) const REFUSED_ALONE_BEFORE_ANY_TAKEN: usize = 4;

/// What became of an ack.
pub enum Acked {
    /// Shut down first.
    Stopped,
    Taken,
    /// Taken but for entries the relay refused each on its own, left out:
    /// their jobs come again and are acknowledged again as repeats. The
    /// last refusal.
    Partly(RelayError),
    /// None of it taken: its jobs will come again and be recognised as
    /// taken.
    Refused(RelayError),
}

/// Ack until the relay takes or refuses it. A part refused for good is
/// sent again in halves, in order, down to single entries; an entry still
/// refused alone is left out (logged through `log`) rather than holding
/// back the others.
pub async fn acknowledge(deps: &Deps, acks: &[Ack], log: &mut Throttle) -> Acked {
    // Halves still to send, the next on top.
    let mut parts = vec![acks];
    let mut taken_any = false;
    let mut refused: Vec<(&Ack, RelayError)> = Vec::new();
    while let Some(part) = parts.pop() {
        let body = json!({ "phone_id": deps.settings.phone_id, "acks": part });
        match deps
            .post_until_taken(&deps.settings.config.paths.ack, &body)
            .await
        {
            None => return Acked::Stopped,
            Some(Ok(())) => taken_any = true,
            Some(Err(_)) if part.len() > 1 => {
                let (first, second) = part.split_at(part.len() / 2);
                parts.push(second);
                parts.push(first);
            }
            Some(Err(e)) => {
                refused.push((&part[0], e));
                if !taken_any && refused.len() >= REFUSED_ALONE_BEFORE_ANY_TAKEN {
                    break;
                }
            }
        }
    }
    let entries = refused.len();
    let first = refused.first().map(|(ack, _)| ack.relay_message_id.clone());
    let Some((_, e)) = refused.pop() else {
        return Acked::Taken;
    };
    if !taken_any {
        tracing::warn!(error = %e, entries = acks.len(), "the relay refused an acknowledgement");
        return Acked::Refused(e);
    }
    if let Some(unlogged) = log.allow(Instant::now()) {
        tracing::warn!(error = %e, entries, first = ?first, passes_since_last_logged = unlogged,
            "the relay refused acknowledgements each on its own; left out, their jobs will come again");
    }
    Acked::Partly(e)
}
