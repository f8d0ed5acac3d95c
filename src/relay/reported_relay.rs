//! Which relay's messages the status events are for. The events of a
//! message go to the relay that sent it; once the bridge is moved to
//! another relay (`phonerelay pair` with another URL, or `relay.url`
//! changed), the messages accepted before the move were the old relay's,
//! and their events, which carry its ids and the numbers its users wrote
//! to, are passed over, not told to a relay that never knew them. The
//! store keeps the relay the events go to and the newest outbound message
//! accepted before it became that relay; outbound seqs only grow, so a
//! clock stepped back cannot put a later message before the move.

use serde::{Deserialize, Serialize};

use super::Deps;
use super::settings::SCOPE;
use crate::store::StoreResult;

/// The cursor (in the relay's scope) holding a [`ReportedRelay`].
pub const CURSOR: &str = "status_relay";

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct ReportedRelay {
    url: String,
    /// Messages up to this outbound seq were another relay's (0: none).
    after_seq: i64,
}

/// The outbound seq after which messages are this link's relay's: read,
/// or written at a move, until the store answers. `None` if shut down
/// first. Not written, the move would be decided again at the next start,
/// later, and the new relay's first messages taken for the old one's.
pub async fn messages_after(deps: &Deps, retry_ms: u64) -> Option<i64> {
    loop {
        match decide(deps).await {
            Ok(after_seq) => return Some(after_seq),
            Err(e) => {
                tracing::error!(error = %e, "cannot read or record which relay the status events are for; trying again");
                if !deps.sleep_ms(retry_ms.max(1000)).await {
                    return None;
                }
            }
        }
    }
}

async fn decide(deps: &Deps) -> StoreResult<i64> {
    let store = &deps.state.store;
    let url = &deps.settings.url;
    let saved = store.load_cursor(SCOPE, CURSOR).await?;
    let previous = saved
        .as_deref()
        .and_then(|text| serde_json::from_str::<ReportedRelay>(text).ok());
    let after_seq = match previous {
        Some(previous) if previous.url == *url => return Ok(previous.after_seq),
        // Another relay before this one: its messages are not this one's.
        Some(previous) => {
            let after_seq = store.last_outbound_seq().await?;
            tracing::info!(old_relay = %previous.url, relay = %url, after_seq,
                "moved to another relay: status events of the messages the old one sent are not reported to this one");
            after_seq
        }
        // The first relay this store reports to (or a record that cannot
        // be read): every message's events are its, as before.
        None => 0,
    };
    let record = ReportedRelay {
        url: url.clone(),
        after_seq,
    };
    let text = serde_json::to_string(&record).expect("a plain record serialises");
    store.save_cursor(SCOPE, CURSOR, &text).await?;
    Ok(after_seq)
}
