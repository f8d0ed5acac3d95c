//! The HTTP API (axum): routes, auth, bodies, errors.

mod auth;
mod body;
pub mod dto;
pub mod error;
pub mod human;
mod inbound;
mod messages;
pub mod openapi;
mod paging;
mod path;
pub mod relay;
mod send_validation;
pub mod serve;
mod state;
pub mod system;
mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{any, get, post};
use tower_http::trace::TraceLayer;

pub(crate) use body::parse as parse_json_body;
pub(crate) use messages::commit_send;
pub use send_validation::max_text_chars;
pub use state::{AppState, Shared};

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
        .route("/api/v1/inbound/{id}", get(inbound::get_inbound))
        .route("/api/v1/inbound/{id}/retry", post(relay::retry_inbound))
        .route("/api/v1/relay", get(relay::get_link))
        .route("/api/v1/relay/inbound", get(relay::list_inbound))
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
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
