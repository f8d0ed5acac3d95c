//! The retention sweep: once an hour, delete what `storage.retention_days`
//! says is old, in batches so sends and accepts are never held up long,
//! the per-message adapter state of messages that have ended, and the
//! files of inbound messages that are gone.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::config::{LoadedConfig, RoutingConfig};
use crate::relay::routing::ttl_ms;
use crate::relay::settings::{SCOPE, STATUS_CURSOR, relay_named};
use crate::store::{Store, UnforwardedInbound};

/// Rows per writer job: small enough to keep accept latency flat.
const BATCH: u32 = 500;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// How long a kept file may wait for an inbound message to take it.
const UNCLAIMED_MEDIA_MS: i64 = DAY_MS;

pub async fn run(
    store: Arc<dyn Store>,
    config: Arc<LoadedConfig>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let retention_days = config.config.storage.retention_days;
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Kept forever or not, a message that has ended needs no adapter
        // state any more (channel crate, `message_cursor`).
        match store.prune_message_cursors().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "state of ended messages deleted"),
            Err(e) => tracing::warn!(error = %e, "sweep of ended messages' state failed"),
        }
        match store.forget_early_reports(now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deleted = n,
                "delivery reports for sends never recorded, kept a day or more, deleted"
            ),
            Err(e) => tracing::warn!(error = %e, "sweep of early delivery reports failed"),
        }
        // Asked at every sweep: a pairing comes and goes while the daemon
        // runs. If it cannot be read, keep what may be wanted.
        let unforwarded = match relay_named(&config, &*store).await {
            Some(false) => UnforwardedInbound::Prune,
            Some(true) | None => UnforwardedInbound::Keep,
        };
        prune_conversations(
            &*store,
            &config.config.relay.routing,
            unforwarded,
            &shutdown,
        )
        .await;
        if retention_days > 0 {
            let reported_to = status_reported_to(&*store, unforwarded).await;
            prune_old(&*store, retention_days, unforwarded, reported_to, &shutdown).await;
        }
        // After the messages: the files of those just deleted go in the
        // same sweep.
        prune_media(&*store, &shutdown).await;
    }
}

/// Delete the files of inbound messages that are gone, and files no
/// message took within a day (an adapter saved one and then could not
/// deliver its message; it saves the file again when it does).
async fn prune_media(store: &dyn Store, shutdown: &CancellationToken) {
    let unclaimed_before = now_ms() - UNCLAIMED_MEDIA_MS;
    let total = in_batches(shutdown, "sweep of kept media failed", || {
        store.prune_media(unclaimed_before, BATCH)
    })
    .await;
    if total > 0 {
        tracing::info!(deleted = total, "media files of deleted messages deleted");
    }
}

/// Run `batch` (one writer job of at most [`BATCH`] rows) until one comes
/// back short, fails (logged as `failed`), or the daemon stops; how many
/// rows went.
async fn in_batches<F, Fut>(shutdown: &CancellationToken, failed: &str, mut batch: F) -> usize
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::store::StoreResult<usize>>,
{
    let mut total = 0;
    loop {
        match batch().await {
            Ok(n) => {
                total += n;
                if n < BATCH as usize || shutdown.is_cancelled() {
                    return total;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "{failed}");
                return total;
            }
        }
    }
}

/// Forget conversations past their ttl, whether or not a relay link runs
/// (sends with a `source` record them either way), but none that an
/// inbound still waiting for the relay may be routed by; in batches, as
/// the rest of the sweep.
async fn prune_conversations(
    store: &dyn Store,
    routing: &RoutingConfig,
    unforwarded: UnforwardedInbound,
    shutdown: &CancellationToken,
) {
    let ttl = ttl_ms(routing);
    let pending_ttl = match unforwarded {
        UnforwardedInbound::Keep => Some(ttl),
        UnforwardedInbound::Prune => None,
    };
    let before = now_ms() - ttl;
    let total = in_batches(shutdown, "cannot prune conversations", || {
        store.prune_conversations(before, pending_ttl, BATCH)
    })
    .await;
    if total > 0 {
        tracing::info!(pruned = total, "expired conversations forgotten");
    }
}

/// While a relay is named, how far its status reporter has got: a message
/// from the relay with a status after that is kept until it is reported,
/// however long the relay is away. A cursor that cannot be read counts as
/// none reported.
async fn status_reported_to(store: &dyn Store, unforwarded: UnforwardedInbound) -> Option<i64> {
    if unforwarded == UnforwardedInbound::Prune {
        return None;
    }
    let cursor = store.load_cursor(SCOPE, STATUS_CURSOR).await;
    Some(
        cursor
            .ok()
            .flatten()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    )
}

/// Delete what is older than `retention_days`, one batch per writer job.
async fn prune_old(
    store: &dyn Store,
    retention_days: u64,
    unforwarded: UnforwardedInbound,
    status_reported_to: Option<i64>,
    shutdown: &CancellationToken,
) {
    let before = now_ms() - retention_days as i64 * DAY_MS;
    let total = in_batches(shutdown, "retention sweep failed", || {
        store.prune(before, BATCH, unforwarded, status_reported_to)
    })
    .await;
    if total > 0 {
        tracing::info!(deleted = total, retention_days, "old messages deleted");
    }
}
