use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{Quota, RateLimiter};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::limits::limits_for;
use super::send::{Limiters, send_one};
use crate::clock::now_ms;
use crate::config::OutboxConfig;
use crate::endpoints::Endpoint;
use crate::metrics::Metrics;
use crate::store::{ClaimRequest, Store};

/// Longest an idle worker sleeps before looking again; picks up leases that
/// ran out and messages committed by another process (`phonerelay send`
/// through a second daemon is not a thing, but a restored backup is).
const IDLE_POLL: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct DispatchContext {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub outbox: Arc<OutboxConfig>,
    /// Stop claiming.
    pub shutdown: CancellationToken,
    /// Stop waiting for in-flight sends: release them to the queue.
    pub hard_stop: CancellationToken,
}

/// The worker set of one endpoint; returns when shut down and every claim
/// it held is recorded or released.
pub async fn run_endpoint(endpoint: Arc<Endpoint>, ctx: DispatchContext) {
    let kind = endpoint.channel.kind();
    let phone_id = endpoint.channel.phone_id().to_string();
    let limits = limits_for(&ctx.outbox, kind, &phone_id);
    let permits = Arc::new(Semaphore::new(limits.concurrency as usize));
    let limiters = Arc::new(Limiters {
        endpoint: RateLimiter::direct(
            Quota::with_period(Duration::from_secs_f64(1.0 / limits.per_second))
                .expect("validated: per_second > 0")
                .allow_burst(NonZeroU32::new(limits.burst).expect("validated: burst >= 1")),
        ),
        per_recipient: NonZeroU32::new(limits.per_recipient_per_minute)
            .map(|n| RateLimiter::keyed(Quota::per_minute(n))),
    });
    let lease_ms = (ctx.outbox.lease_seconds * 1000) as i64;
    let mut in_flight = JoinSet::new();
    tracing::info!(channel = %kind, %phone_id, concurrency = limits.concurrency, "dispatcher started");

    while !ctx.shutdown.is_cancelled() {
        let free = permits.available_permits() as u32;
        if free == 0 {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                _ = in_flight.join_next() => continue,
            }
        }
        let claimed = ctx
            .store
            .claim_outbound(ClaimRequest {
                channel: kind,
                phone_id: phone_id.clone(),
                limit: free,
                now_ms: now_ms(),
                lease_ms,
            })
            .await;
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::error!(error = %e, channel = %kind, %phone_id, "cannot claim from the outbox");
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(IDLE_POLL) => continue,
                }
            }
        };
        if claimed.is_empty() {
            let wait = idle_wait(&ctx, kind, &phone_id).await;
            tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                _ = endpoint.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            }
            continue;
        }
        for message in claimed {
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let (endpoint, ctx, limiters) = (endpoint.clone(), ctx.clone(), limiters.clone());
            in_flight.spawn(async move {
                send_one(&endpoint, &ctx, &limiters, message).await;
                drop(permit);
            });
        }
        if let Some(limiter) = &limiters.per_recipient {
            limiter.retain_recent();
        }
    }
    // Let in-flight sends finish; each one releases itself on `hard_stop`.
    while in_flight.join_next().await.is_some() {}
    tracing::info!(channel = %kind, %phone_id, "dispatcher stopped");
}

/// Until the next queued message is due, at most [`IDLE_POLL`].
async fn idle_wait(
    ctx: &DispatchContext,
    kind: phonerelay_channel::ChannelKind,
    phone_id: &str,
) -> Duration {
    match ctx.store.next_due(kind, phone_id).await {
        Ok(Some(due)) => {
            let ms = (due - now_ms()).clamp(0, IDLE_POLL.as_millis() as i64);
            Duration::from_millis(ms as u64)
        }
        _ => IDLE_POLL,
    }
}

/// Marks queued messages past their TTL expired, even on an endpoint that
/// is down and claims nothing.
pub async fn run_expiry_sweeper(
    store: Arc<dyn Store>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.expire_due(now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "messages past their ttl marked expired"),
            Err(e) => tracing::warn!(error = %e, "expiry sweep failed"),
        }
    }
}
