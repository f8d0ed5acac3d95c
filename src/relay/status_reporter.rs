//! Status back to the relay: a persisted cursor over the ordered
//! `outbound_events` log. Each batch is retried until the relay takes it,
//! then the cursor moves; so events arrive in order, at least once, and
//! `event_id` lets the relay drop repeats.

use serde::Serialize;
use serde_json::json;

use super::Deps;
use super::settings::{SCOPE, STATUS_CURSOR};
use crate::clock::rfc3339;
use crate::store::{OutboundStatus, RelayStatusEvent};

/// Events per request.
const BATCH: u32 = 100;

#[derive(Debug, Serialize)]
pub struct StatusEventBody {
    pub event_id: i64,
    pub relay_message_id: String,
    pub message_id: String,
    pub status: OutboundStatus,
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_ids: Vec<String>,
}

impl From<RelayStatusEvent> for StatusEventBody {
    fn from(e: RelayStatusEvent) -> Self {
        StatusEventBody {
            event_id: e.event_id,
            relay_message_id: e.relay_message_id,
            message_id: e.message_id,
            status: e.status,
            at: rfc3339(e.at_ms),
            code: e.code,
            reason: e.reason,
            external_ids: e.external_ids,
        }
    }
}

pub async fn run(deps: Deps) {
    let store = deps.state.store.clone();
    let mut cursor: i64 = store
        .load_cursor(SCOPE, STATUS_CURSOR)
        .await
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let interval = deps.settings.config.status_interval_ms;
    tracing::info!(cursor, "relay status reporter started");
    loop {
        if deps.shutdown.is_cancelled() {
            break;
        }
        let batch = match store.relay_status_events(cursor, BATCH).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the status log");
                if !deps.sleep_ms(interval.max(1000)).await {
                    break;
                }
                continue;
            }
        };
        if batch.scanned_to == cursor {
            if !deps.sleep_ms(interval).await {
                break;
            }
            continue;
        }
        if !batch.events.is_empty() {
            let events: Vec<StatusEventBody> = batch
                .events
                .into_iter()
                .map(StatusEventBody::from)
                .collect();
            if !report(&deps, &events).await {
                break;
            }
        }
        cursor = batch.scanned_to;
        if let Err(e) = store
            .save_cursor(SCOPE, STATUS_CURSOR, &cursor.to_string())
            .await
        {
            // Not fatal: the events are reported again after a restart.
            tracing::warn!(error = %e, "cannot save the status cursor");
        }
    }
    tracing::info!("relay status reporter stopped");
}

/// Until the relay takes the batch; false if shut down first.
async fn report(deps: &Deps, events: &[StatusEventBody]) -> bool {
    let body = json!({ "phone_id": deps.settings.phone_id, "events": events });
    match deps
        .post_until_taken(&deps.settings.config.paths.status, &body)
        .await
    {
        None => false,
        Some(Ok(())) => true,
        Some(Err(e)) => {
            tracing::warn!(error = %e, first = events[0].event_id,
                "the relay refused a status batch; skipping it");
            true
        }
    }
}
