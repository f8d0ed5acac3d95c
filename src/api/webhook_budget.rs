//! How much memory webhook bodies may hold at once. A webhook path is
//! public (the upstream calls it with no key of ours; its signature is
//! checked by the adapter once the whole body is read), so each of
//! `server.max_connections` connections could otherwise hold a body of up
//! to `server.max_webhook_body_bytes` (and its copies) for the request
//! timeout: gigabytes on a small box. Each part of a body takes room as
//! it arrives, so a request that sends little (a header and no body, a
//! GET) holds little; without room the upstream is told to come back (503
//! with `Retry-After`), as Meta's and Telegram's webhooks retry. The room
//! is given back when the request's handling ends.

use std::sync::Arc;

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

/// Bodies of the largest size that may be held at once.
pub const WEBHOOK_BODIES_AT_ONCE: usize = 16;
/// When a webhook turned away for want of room is told to come back.
pub const WEBHOOK_BUSY_RETRY_AFTER_SECONDS: u64 = 5;

/// The room of all webhook bodies, counted in bytes.
pub struct WebhookBodies {
    room: Arc<Semaphore>,
    /// All of the room, to tell what is held.
    bytes: usize,
}

/// The room one request's body holds, given back on drop: one permit,
/// each part's merged into it (a body sent a byte at a time would
/// otherwise hold a permit per byte, many times the body's size).
#[derive(Default)]
pub struct HeldRoom(Option<OwnedSemaphorePermit>);

impl WebhookBodies {
    pub fn new(max_body_bytes: usize) -> Self {
        let bytes = max_body_bytes.saturating_mul(WEBHOOK_BODIES_AT_ONCE);
        let bytes = bytes.min(Semaphore::MAX_PERMITS);
        Self {
            room: Arc::new(Semaphore::new(bytes)),
            bytes,
        }
    }

    /// The bytes of the bodies held now (`/metrics`: `webhook_body_bytes`).
    pub fn held_bytes(&self) -> usize {
        self.bytes - self.room.available_permits()
    }

    /// Room for `bytes` more of a body, added to `held`, or 503
    /// `webhook_busy` if there is none now.
    pub fn take(&self, held: &mut HeldRoom, bytes: usize) -> Result<(), ApiError> {
        if bytes == 0 {
            return Ok(());
        }
        let permits = u32::try_from(bytes).unwrap_or(u32::MAX);
        let permit = self
            .room
            .clone()
            .try_acquire_many_owned(permits)
            .map_err(|_| {
                let mut busy = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "webhook_busy",
                    "too many webhook bodies are being read at once; send it again later",
                );
                busy.retry_after = Some(WEBHOOK_BUSY_RETRY_AFTER_SECONDS);
                busy
            })?;
        match &mut held.0 {
            Some(all) => all.merge(permit),
            None => held.0 = Some(permit),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_take_room_as_they_arrive_and_give_it_back() {
        let max = 4 * 1024 * 1024;
        let bodies = WebhookBodies::new(max);
        let mut held: Vec<HeldRoom> = Vec::new();
        for _ in 0..WEBHOOK_BODIES_AT_ONCE {
            let mut room = HeldRoom::default();
            // A body arrives in parts.
            for _ in 0..4 {
                bodies.take(&mut room, max / 4).unwrap();
            }
            held.push(room);
        }
        // One permit per body, whatever its parts.
        assert!(
            held.iter()
                .all(|room| room.0.as_ref().unwrap().num_permits() == max)
        );
        let mut late = HeldRoom::default();
        bodies.take(&mut late, 0).unwrap();
        let busy = bodies.take(&mut late, 1).unwrap_err();
        assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.code, "webhook_busy");
        assert_eq!(busy.retry_after, Some(WEBHOOK_BUSY_RETRY_AFTER_SECONDS));
        held.pop();
        bodies.take(&mut late, max).unwrap();
        drop((held, late));
        assert_eq!(
            bodies.room.available_permits(),
            max * WEBHOOK_BODIES_AT_ONCE
        );
    }
}
