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

/// The route as it stood when `message` arrived, however long it waited
/// to be forwarded since: a pChat user who wrote to its sender meanwhile
/// must not get a reply meant for the one before.
pub async fn route(
    store: &dyn Store,
    config: &RoutingConfig,
    message: &InboundRecord,
) -> StoreResult<Option<Route>> {
    let arrived = message.committed_at_ms;
    let found = store
        .route_reply(RouteQuery {
            channel: message.channel,
            phone_id: message.phone_id.clone(),
            from: message.from.clone(),
            reply_to: message.reply_to.clone(),
            since_ms: arrived - ttl_ms(config),
            as_of_ms: arrived,
        })
        .await?;
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
