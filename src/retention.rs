//! The retention sweep: once an hour, delete what `storage.retention_days`
//! says is old, in batches so sends and accepts are never held up long.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::store::Store;

/// Rows per writer job: small enough to keep accept latency flat.
const BATCH: u32 = 500;
const DAY_MS: i64 = 24 * 3600 * 1000;

pub async fn run(
    store: Arc<dyn Store>,
    retention_days: u64,
    every: Duration,
    shutdown: CancellationToken,
) {
    if retention_days == 0 {
        return;
    }
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let before = now_ms() - retention_days as i64 * DAY_MS;
        let mut total = 0;
        loop {
            match store.prune(before, BATCH).await {
                Ok(n) => {
                    total += n;
                    if n < BATCH as usize || shutdown.is_cancelled() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention sweep failed");
                    break;
                }
            }
        }
        if total > 0 {
            tracing::info!(deleted = total, retention_days, "old messages deleted");
        }
    }
}
