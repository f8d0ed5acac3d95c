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
/// sender, as they stood when it arrived, with this relay's users.
fn query(config: &RoutingConfig, message: &InboundRecord, relay_messages_after: i64) -> RouteQuery {
    let arrived = message.committed_at_ms;
    RouteQuery {
        channel: message.channel,
        phone_id: message.phone_id.clone(),
        from: message.from.clone(),
        reply_to: message.reply_to.clone(),
        since_ms: arrived - ttl_ms(config),
        as_of_ms: arrived,
        relay_messages_after,
    }
}

/// What becomes of `message` now (`decide`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A pChat user's send to its sender has no outcome yet and may be
    /// what it answers: look again shortly.
    Wait,
    /// Where it goes.
    To(Route),
    /// Nowhere (dead letter `no_route`), for the reason given.
    NoRoute(&'static str),
}

/// Route `message` as it stood when it arrived, however long it waited to
/// be forwarded since (a pChat user who wrote to its sender meanwhile must
/// not get a reply meant for the one before), unless a send to its sender
/// leaves it unsure (`Store::send_unsettled`): a pChat user's send,
/// accepted before it arrived, that has no outcome recorded and may have
/// gone out before it came, under way or waiting for its retry after an
/// attempt that may have put part of it out (or a store outage held the
/// recording up). That send would be the conversation it answers, and
/// routing now would give it to whoever wrote before: it waits.
///
/// Not for ever: a send waits for its retry up to its ttl (a day by
/// default), and the replies of its recipient would wait as long. Past
/// `unsettled_wait_seconds` after it arrived (by `now_ms`, the wall
/// clock, against its commit's event time: a clock stepped back stretches
/// the wait by the step), a reply the bridge still cannot place goes to
/// `default_to`, the operator, rather than to a pChat user it may not be
/// meant for; without `default_to` it is a `no_route` dead letter, which a
/// manual retry routes again once the send has its outcome.
///
/// A conversation of a send accepted up to `relay_messages_after` (an
/// outbound seq, [`crate::store::ReportedRelay`]) was another relay's,
/// before the bridge moved to this one: its pChat user is not this
/// relay's, and the reply goes by default.
///
/// Err: the store could not be read; nothing is decided.
pub async fn decide(
    store: &dyn Store,
    config: &RoutingConfig,
    message: &InboundRecord,
    now_ms: i64,
    relay_messages_after: i64,
) -> StoreResult<Decision> {
    let query = query(config, message, relay_messages_after);
    match store.send_unsettled(query.clone()).await {
        Ok(true) => {}
        Ok(false) => {
            return Ok(match route(store, config, query).await? {
                Some(to) => Decision::To(to),
                None => Decision::NoRoute(
                    "no conversation matches the sender and relay.routing.default_to is not set",
                ),
            });
        }
        // Unreadable: the store is failing, not the send unsure. The
        // caller backs off as for any store failure; waiting here instead
        // would have it look again every `UNSETTLED_RECHECK`, however long
        // the store stays down, and never count the failure.
        Err(e) => return Err(e),
    }
    let waited_ms = now_ms.saturating_sub(message.committed_at_ms);
    let bound_ms =
        i64::try_from(config.unsettled_wait_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    if waited_ms < bound_ms {
        return Ok(Decision::Wait);
    }
    Ok(match default_route(config) {
        Some(to) => Decision::To(to),
        None => Decision::NoRoute(
            "a send to the sender still had no outcome after relay.routing.unsettled_wait_seconds, \
             so whom the reply answers is unknown, and relay.routing.default_to is not set",
        ),
    })
}

/// The route as it stood when the message of `query` arrived: its
/// conversation, else `default_to`.
async fn route(
    store: &dyn Store,
    config: &RoutingConfig,
    query: RouteQuery,
) -> StoreResult<Option<Route>> {
    let found = store.route_reply(query).await?;
    Ok(match found {
        Some(m) => Some(Route {
            to: m.to,
            route: m.route.into(),
        }),
        None => default_route(config),
    })
}

fn default_route(config: &RoutingConfig) -> Option<Route> {
    config.default_to.clone().map(|to| Route {
        to,
        route: "default".into(),
    })
}
