//! Pull mode, for bridges behind NAT: long-poll the relay for sends of
//! this phone_id, commit each through the API's own validation, then
//! acknowledge. Commit before ack: a job whose ack is lost is delivered
//! again and recognised by its `relay_message_id`, so it is sent once.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use super::Deps;
use crate::api::dto::SendRequest;
use crate::api::{commit_send, parse_json_body};

/// One acknowledgement in the ack body.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ack {
    pub relay_message_id: String,
    /// `accepted` or `rejected`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The job had been accepted before (a redelivery).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<AckError>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AckError {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

pub async fn run(deps: Deps) {
    tracing::info!("relay pull loop started");
    let config = &deps.settings.config;
    let wait = config.poll_timeout_seconds;
    // The request may take the whole wait plus the usual request time.
    let timeout = Duration::from_secs(wait + config.request_timeout_seconds);
    let mut failures = 0u32;
    loop {
        let body = json!({
            "phone_id": deps.settings.phone_id,
            "wait_seconds": wait,
            "max": config.poll_max_jobs,
        });
        let polled = tokio::select! {
            _ = deps.shutdown.cancelled() => break,
            polled = deps.client.post(&config.paths.poll, &body, None, Some(timeout)) => polled,
        };
        let jobs = match polled {
            Ok(answer) => {
                failures = 0;
                deps.link.reached().await;
                answer["jobs"].as_array().cloned().unwrap_or_default()
            }
            Err(e) => {
                deps.link.failed(&e).await;
                failures = failures.saturating_add(1);
                if !deps.sleep_ms(deps.backoff_ms(failures, &e)).await {
                    break;
                }
                continue;
            }
        };
        if jobs.is_empty() {
            continue;
        }
        let mut acks = Vec::with_capacity(jobs.len());
        for job in jobs {
            if let Some(ack) = take(&deps, job).await {
                acks.push(ack);
            }
        }
        if !acks.is_empty() && !acknowledge(&deps, &acks).await {
            break;
        }
    }
    tracing::info!("relay pull loop stopped");
}

/// Commit one job; `None` when it cannot be acknowledged now (no relay id,
/// or the store is down: the relay will deliver it again).
pub async fn take(deps: &Deps, job: Value) -> Option<Ack> {
    let Some(relay_message_id) = job["relay_message_id"].as_str().map(str::to_string) else {
        tracing::warn!("the relay sent a job without relay_message_id; it cannot be acknowledged");
        return None;
    };
    let rejected = |code: &str, message: String, field: Option<String>| Ack {
        relay_message_id: relay_message_id.clone(),
        result: "rejected",
        message_id: None,
        duplicate: false,
        error: Some(AckError {
            code: code.to_string(),
            message,
            field,
        }),
    };
    let raw = serde_json::to_vec(&job).unwrap_or_default();
    let request: SendRequest = match parse_json_body(&raw) {
        Ok(request) => request,
        Err(e) => return Some(rejected(e.code, e.message, e.field)),
    };
    if request.phone_id != deps.settings.phone_id {
        return Some(rejected(
            "forbidden",
            format!(
                "this bridge is paired as phone_id {:?}",
                deps.settings.phone_id
            ),
            Some("phone_id".into()),
        ));
    }
    match commit_send(&deps.state, None, None, request, &raw).await {
        Ok((id, duplicate)) => Some(Ack {
            relay_message_id,
            result: "accepted",
            message_id: Some(id),
            duplicate,
            error: None,
        }),
        Err(e) if e.status.is_server_error() => {
            tracing::error!(%relay_message_id, code = e.code, "cannot commit a polled job; the relay will deliver it again");
            None
        }
        Err(e) => {
            tracing::info!(%relay_message_id, code = e.code, field = ?e.field, "polled job rejected: {}", e.message);
            Some(rejected(e.code, e.message, e.field))
        }
    }
}

/// Ack until the relay takes it; false if shut down first. A permanent
/// refusal is logged and dropped (the jobs will come again and be
/// recognised).
async fn acknowledge(deps: &Deps, acks: &[Ack]) -> bool {
    let body = json!({ "phone_id": deps.settings.phone_id, "acks": acks });
    match deps
        .post_until_taken(&deps.settings.config.paths.ack, &body)
        .await
    {
        None => false,
        Some(Ok(())) => true,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "the relay refused an acknowledgement");
            true
        }
    }
}
