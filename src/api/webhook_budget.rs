//! How much memory webhook bodies may hold at once. A webhook path is
//! public (the upstream calls it with no key of ours; its signature is
//! checked by the adapter once the whole body is read), so each of
//! `server.max_connections` connections could otherwise hold a body of up
//! to `server.max_webhook_body_bytes` (and its copies) for the request
//! timeout: gigabytes on a small box. A body is read only with room
//! reserved for it; without room the upstream is told to come back (503
//! with `Retry-After`), as Meta's and Telegram's webhooks retry.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

/// Bodies of the largest size that may be read at once; smaller ones (a
/// Content-Length says how much) take less room.
pub const WEBHOOK_BODIES_AT_ONCE: usize = 16;
/// When a webhook turned away for want of room is told to come back.
pub const WEBHOOK_BUSY_RETRY_AFTER_SECONDS: u64 = 5;
/// The room is counted in these (a semaphore takes at most `u32` permits
/// at a time).
const UNIT_BYTES: usize = 1024;

pub struct WebhookBodies {
    room: Arc<Semaphore>,
    max_body_bytes: usize,
}

impl WebhookBodies {
    pub fn new(max_body_bytes: usize) -> Self {
        let units = units(max_body_bytes).saturating_mul(WEBHOOK_BODIES_AT_ONCE);
        Self {
            room: Arc::new(Semaphore::new(units.min(Semaphore::MAX_PERMITS))),
            max_body_bytes,
        }
    }

    /// Room for the body these headers announce (its Content-Length, else
    /// the largest a body may be), held until the permit is dropped, or
    /// 503 `webhook_busy` if there is none now.
    pub fn reserve(&self, headers: &HeaderMap) -> Result<OwnedSemaphorePermit, ApiError> {
        let announced = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        // A larger one is refused by the body limit (413) as it is read.
        let bytes = announced.map_or(self.max_body_bytes, |n| n.min(self.max_body_bytes));
        let units = u32::try_from(units(bytes)).unwrap_or(u32::MAX);
        self.room
            .clone()
            .try_acquire_many_owned(units)
            .map_err(|_| {
                let mut busy = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "webhook_busy",
                    "too many webhook bodies are being read at once; send it again later",
                );
                busy.retry_after = Some(WEBHOOK_BUSY_RETRY_AFTER_SECONDS);
                busy
            })
    }
}

fn units(bytes: usize) -> usize {
    bytes.div_ceil(UNIT_BYTES).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announcing(bytes: Option<usize>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(bytes) = bytes {
            headers.insert(header::CONTENT_LENGTH, bytes.into());
        }
        headers
    }

    #[test]
    fn bodies_are_read_only_within_the_room_and_give_it_back() {
        let max = 4 * 1024 * 1024;
        let bodies = WebhookBodies::new(max);
        // Bodies of unknown length take the largest size's room.
        let held: Vec<_> = (0..WEBHOOK_BODIES_AT_ONCE)
            .map(|_| bodies.reserve(&announcing(None)).unwrap())
            .collect();
        let busy = bodies.reserve(&announcing(Some(10))).unwrap_err();
        assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.code, "webhook_busy");
        assert_eq!(busy.retry_after, Some(WEBHOOK_BUSY_RETRY_AFTER_SECONDS));
        drop(held);
        // Small announced bodies take little: many fit at once.
        let small: Vec<_> = (0..1000)
            .map(|_| bodies.reserve(&announcing(Some(2000))).unwrap())
            .collect();
        drop(small);
        // An announced size over the limit takes the limit's room only.
        let one = bodies.reserve(&announcing(Some(usize::MAX))).unwrap();
        assert_eq!(
            bodies.room.available_permits(),
            units(max) * (WEBHOOK_BODIES_AT_ONCE - 1)
        );
        drop(one);
    }
}
