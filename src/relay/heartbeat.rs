//! Tell the relay, every `heartbeat_seconds`, that the bridge is alive and
//! how each endpoint is, so it can show "phone offline"; a last beat with
//! `"stopping": true` on shutdown. (Expired conversations are pruned by
//! the retention sweep, `retention.rs`.)

use std::time::Duration;

use serde::Serialize;

use super::Deps;
use crate::clock::{now_ms, rfc3339};
use crate::config::RelayMode;

/// The last beat on shutdown must not hold the daemon up.
const STOPPING_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize)]
pub struct Heartbeat {
    pub phone_id: String,
    pub bridge_version: &'static str,
    pub mode: RelayMode,
    pub at: String,
    pub started_at: String,
    pub stopping: bool,
    pub endpoints: Vec<EndpointBeat>,
    /// Messages queued or being sent, all endpoints. This and every count
    /// below are `null` when the store could not count them: unknown, not 0.
    pub queue_depth: Option<u64>,
    pub inbound_pending: Option<u64>,
    pub inbound_dead: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct EndpointBeat {
    pub channel: String,
    pub phone_id: String,
    /// `up`, `degraded` or `down`.
    pub state: phonerelay_channel::HealthState,
    pub summary: String,
    pub queued: Option<u64>,
    pub sending: Option<u64>,
}

pub async fn build(deps: &Deps, started_ms: i64, stopping: bool) -> Heartbeat {
    let store = &deps.state.store;
    let stats = store.queue_stats(now_ms()).await.ok();
    let counts = store.relay_inbound_counts().await.ok();
    let endpoints: Vec<EndpointBeat> = deps
        .state
        .endpoints
        .iter()
        .map(|((kind, phone_id), endpoint)| {
            let health = endpoint.channel.health();
            // Inner None: no row, so nothing queued; outer None: unknown.
            let s = stats.as_ref().map(|stats| {
                stats
                    .iter()
                    .find(|s| s.channel == *kind && &s.phone_id == phone_id)
            });
            EndpointBeat {
                channel: kind.to_string(),
                phone_id: phone_id.clone(),
                state: health.state,
                summary: health.summary,
                queued: s.map(|s| s.map_or(0, |s| s.queued)),
                sending: s.map(|s| s.map_or(0, |s| s.sending)),
            }
        })
        .collect();
    Heartbeat {
        phone_id: deps.settings.phone_id.clone(),
        bridge_version: env!("CARGO_PKG_VERSION"),
        mode: deps.settings.config.mode,
        at: rfc3339(now_ms()),
        started_at: rfc3339(started_ms),
        stopping,
        queue_depth: stats
            .as_ref()
            .map(|stats| stats.iter().map(|s| s.queued + s.sending).sum()),
        endpoints,
        inbound_pending: counts.as_ref().map(|c| c.pending),
        inbound_dead: counts.as_ref().map(|c| c.dead),
    }
}

pub async fn run(deps: Deps) {
    let started = now_ms();
    let every = Duration::from_secs(deps.settings.config.heartbeat_seconds);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = deps.shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let beat = build(&deps, started, false).await;
        let sent = tokio::select! {
            _ = deps.shutdown.cancelled() => break,
            sent = deps.client.post(&deps.settings.config.paths.heartbeat, &beat, None, None) => sent,
        };
        match sent {
            Ok(_) => deps.link.reached().await,
            Err(e) => {
                deps.link.failed(&e).await;
                // A relay that asked for a wait (a 429, a 503 with
                // Retry-After) gets no beat before it is over, however
                // often the beat comes; at most the longest retry wait.
                if let Some(wait) = e.retry_after() {
                    let cap = Duration::from_millis(deps.settings.config.retry_max_ms);
                    if !deps.sleep_ms(wait.min(cap).as_millis() as u64).await {
                        break;
                    }
                    tick.reset();
                }
            }
        }
    }
    let beat = build(&deps, started, true).await;
    let _ = deps
        .client
        .post(
            &deps.settings.config.paths.heartbeat,
            &beat,
            None,
            Some(STOPPING_TIMEOUT),
        )
        .await;
}
