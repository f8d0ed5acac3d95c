//! Which relay's messages the status events are for. The events of a
//! message go to the relay that sent it; once the bridge is moved to
//! another relay (`phonerelay pair` with another URL, or `relay.url`
//! changed), the messages accepted before the move were the old relay's,
//! and their events, which carry its ids and the numbers its users wrote
//! to, are passed over, not told to a relay that never knew them. Nor is
//! a reply routed to the old relay's user who wrote last: that name, on
//! the new relay, is whoever holds it there (`routing`). The
//! store keeps the relay the events go to and the newest outbound message
//! accepted before it became that relay; outbound seqs only grow, so a
//! clock stepped back cannot put a later message before the move.
//!
//! `pair` records a move in the transaction that issues the new bridge
//! key ([`move_for_pairing`]): the new relay can send with that key from
//! the commit on, whether or not the daemon's link to it has started (its
//! key file unreadable by the service user, the daemon stopped or just
//! starting). A move of `relay.url` in the config is recorded when the
//! link to the new URL starts.

use super::Deps;
use super::relay_url::same_relay;
use super::settings::{Pairing, SCOPE};
use crate::store::{RelayMove, ReportedRelay, Store, StoreResult};

/// The cursor (in the relay's scope) holding a [`ReportedRelay`].
pub const CURSOR: &str = "status_relay";

/// The outbound seq after which messages are this link's relay's: read,
/// or written at a move, until the store answers. `None` if shut down
/// first. Not written, the move would be decided again at the next start,
/// later, and the new relay's first messages taken for the old one's.
pub async fn messages_after(deps: &Deps, retry_ms: u64) -> Option<i64> {
    loop {
        match decide_for(&*deps.state.store, &deps.settings.url).await {
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

/// The relay the status events go to, as recorded; none if never
/// recorded or unreadable.
async fn recorded(store: &dyn Store) -> StoreResult<Option<ReportedRelay>> {
    let saved = store.load_cursor(SCOPE, CURSOR).await?;
    Ok(saved
        .as_deref()
        .and_then(|text| serde_json::from_str::<ReportedRelay>(text).ok()))
}

/// Whether the status events are still recorded as this link's relay's:
/// not once `pair` moved the bridge to another relay, while this link
/// runs until the daemon reads the new pairing. Its events are the new
/// relay's messages' then, not the old relay's. If the record cannot be
/// read, they are.
pub async fn still_this_links(deps: &Deps) -> bool {
    match recorded(&*deps.state.store).await {
        Ok(Some(record)) => same_relay(&record.url, &deps.settings.url),
        Ok(None) | Err(_) => true,
    }
}

/// For a pairing with the relay at `url`: a move, if the status events
/// went to another relay (as recorded, or the `previous` pairing's when
/// nothing is recorded yet, its link never started).
pub async fn move_for_pairing(
    store: &dyn Store,
    previous: Option<&Pairing>,
    url: &str,
) -> StoreResult<Option<RelayMove>> {
    let previous_url = match recorded(store).await? {
        Some(record) => Some(record.url),
        None => previous.map(|p| p.url.clone()),
    };
    Ok(previous_url
        .is_some_and(|previous| !same_relay(&previous, url))
        .then(|| RelayMove {
            cursor: CURSOR.to_string(),
            url: url.to_string(),
        }))
}

/// At the daemon's start, before the API takes a send: a move of
/// `relay.url` made while the daemon was stopped is recorded now, not when
/// the link starts. The new relay may push with its bridge key from the
/// start on, and a send it pushed before its link recorded the move was
/// taken for the old relay's (its status events passed over, replies to
/// it routed by the old relay's conversations). A link that cannot start
/// now (its key not readable yet) records its move when it does: the
/// messages before that were the old relay's to send.
pub async fn record_a_move_at_start(loaded: &crate::config::LoadedConfig, store: &dyn Store) {
    let Ok(Some(settings)) = super::settings::resolve(loaded, store).await else {
        return;
    };
    if let Err(e) = decide_for(store, &settings.url).await {
        tracing::warn!(error = %e, "cannot record which relay the messages are for; the link records it when it starts");
    }
}

async fn decide_for(store: &dyn Store, url: &str) -> StoreResult<i64> {
    let after_seq = match recorded(store).await? {
        Some(previous) if same_relay(&previous.url, url) => return Ok(previous.after_seq),
        // Another relay before this one: its messages are not this one's.
        Some(previous) => {
            let moved = RelayMove {
                cursor: CURSOR.to_string(),
                url: url.to_string(),
            };
            let after_seq = store.record_relay_move(SCOPE, moved).await?;
            tracing::info!(old_relay = %previous.url, relay = %url, after_seq,
                "moved to another relay: status events of the messages the old one sent are not reported to this one, \
                 nor are replies routed to its users");
            return Ok(after_seq);
        }
        // The first relay this store reports to (or a record that cannot
        // be read): every message's events are its, as before.
        None => 0,
    };
    let record = ReportedRelay {
        url: url.to_string(),
        after_seq,
    };
    let text = serde_json::to_string(&record).expect("a plain record serialises");
    store.save_cursor(SCOPE, CURSOR, &text).await?;
    Ok(after_seq)
}
