//! Which pChat address an inbound message goes to: the conversation its
//! reply key names, the sender's most recent conversation, then
//! `relay.routing.default_to`; otherwise none (dead letter `no_route`).

use crate::config::RoutingConfig;
use crate::store::{InboundRecord, RouteQuery, Store, StoreResult};

const DAY_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub to: String,
    /// `reply`, `recent` or `default`.
    pub route: String,
}

pub fn ttl_ms(config: &RoutingConfig) -> i64 {
    (config.conversation_ttl_days as i64).saturating_mul(DAY_MS)
}

/// What the store is asked about `message`'s conversations: those of its
/// sender, as they stood when it arrived.
fn query(config: &RoutingConfig, message: &InboundRecord) -> RouteQuery {
    let arrived = message.committed_at_ms;
    RouteQuery {
        channel: message.channel,
        phone_id: message.phone_id.clone(),
        from: message.from.clone(),
        reply_to: message.reply_to.clone(),
        since_ms: arrived - ttl_ms(config),
        as_of_ms: arrived,
    }
}

/// Whether `message` cannot be routed yet: a pChat user's send to its
/// sender, accepted before it arrived, has no outcome recorded (a store
/// outage held the recording up, or the send is under way). That send may
/// have gone out before the reply came, and would then be the
/// conversation it answers; routing now would give it to whoever wrote
/// before.
pub async fn unsettled(
    store: &dyn Store,
    config: &RoutingConfig,
    message: &InboundRecord,
) -> StoreResult<bool> {
    store.send_unsettled(query(config, message)).await
}

/// The route as it stood when `message` arrived, however long it waited
/// to be forwarded since: a pChat user who wrote to its sender meanwhile
/// must not get a reply meant for the one before.
pub async fn route(
    store: &dyn Store,
    config: &RoutingConfig,
    message: &InboundRecord,
) -> StoreResult<Option<Route>> {
    let found = store.route_reply(query(config, message)).await?;
    Ok(match found {
        Some(m) => Some(Route {
            to: m.to,
            route: m.route.into(),
        }),
        None => config.default_to.clone().map(|to| Route {
            to,
            route: "default".into(),
        }),
    })
}
