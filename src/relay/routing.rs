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

pub async fn route(
    store: &dyn Store,
    config: &RoutingConfig,
    message: &InboundRecord,
    now_ms: i64,
) -> StoreResult<Option<Route>> {
    let found = store
        .route_reply(RouteQuery {
            channel: message.channel,
            phone_id: message.phone_id.clone(),
            from: message.from.clone(),
            reply_to: message.reply_to.clone(),
            since_ms: now_ms - ttl_ms(config),
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
