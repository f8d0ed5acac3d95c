//! The HTTP API (axum): routes, auth, bodies, errors.

mod auth;
mod body;
pub mod dto;
pub mod error;
pub mod human;
mod inbound;
mod media;
mod messages;
pub mod openapi;
mod paging;
mod path;
pub mod relay;
mod send_validation;
mod sender;
pub mod serve;
mod state;
pub mod system;
pub mod unreadable;
mod webhook_budget;
mod webhooks;
mod write_deadline;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{any, get, post};
use tower_http::trace::TraceLayer;

pub(crate) use body::parse as parse_json_body;
pub(crate) use messages::commit_send;
pub(crate) use paging::MAX_PAGE;
pub use state::{AppState, Shared};
pub use webhook_budget::{WEBHOOK_BODIES_AT_ONCE, WebhookBodies};

use self::error::ApiError;

pub fn router(state: AppState) -> Router {
    let body_limit = state.config.config.server.max_body_bytes;
    Router::new()
        .route("/health", get(system::health))
        .route("/ready", get(system::ready))
        .route("/metrics", get(system::metrics))
        .route("/api/v1/openapi.json", get(openapi::openapi_json))
        .route("/api/v1/status", get(system::status))
        .route(
            "/api/v1/messages",
            post(messages::send).get(messages::list_messages),
        )
        .route("/api/v1/messages/{id}", get(messages::get_message))
        .route(
            "/api/v1/messages/{id}/cancel",
            post(messages::cancel_message),
        )
        .route("/api/v1/inbound", get(inbound::list_inbound))
        .route(
            "/api/v1/inbound/unreadable",
            get(unreadable::list_unreadable),
        )
        .route("/api/v1/inbound/{id}", get(inbound::get_inbound))
        .route("/api/v1/inbound/{id}/retry", post(relay::retry_inbound))
        .route("/api/v1/media/{id}", get(media::get_media))
        .route("/api/v1/relay", get(relay::get_link))
        .route("/api/v1/relay/inbound", get(relay::list_inbound))
        .route(
            "/api/v1/relay/inbound/retry",
            post(relay::retry_dead_letters),
        )
        // A webhook's body is read by `body::read_webhook_body`, which
        // applies server.max_webhook_body_bytes itself (and takes room for
        // it, `webhook_budget.rs`); the limit below is not asked.
        .route("/webhooks/{channel}", any(webhooks::shared_webhook))
        .route(
            "/webhooks/{channel}/{phone_id}/{*rest}",
            any(webhooks::webhook),
        )
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// The span a request's log lines carry: its method and path, never its
/// query, which can hold a secret (a WhatsApp webhook's
/// `hub.verify_token`), nor its headers (the bearer key).
fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Log output kept in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_request_s_log_lines_name_its_path_but_not_its_query() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish();
        let request = axum::http::Request::get(
            "/webhooks/wa/m1/hook?hub.mode=subscribe&hub.verify_token=S3CRET&hub.challenge=1",
        )
        .body(())
        .unwrap();
        tracing::subscriber::with_default(subscriber, || {
            let span = request_span(&request);
            let _in = span.enter();
            tracing::debug!("started processing request");
        });
        let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains("/webhooks/wa/m1/hook"), "{logged}");
        assert!(!logged.contains("S3CRET"), "{logged}");
    }
}
