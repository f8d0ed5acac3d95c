//! Every error the API returns has one shape:
//! `{"error":{"code","message","field"}}`, with `field` naming the bad input
//! (a body field, a query parameter or a header) when there is one.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// What a 503 `store_unavailable` asks a client to wait before trying
/// again (`Retry-After`, RFC 9110 §10.2.3): long enough for a full disk or
/// a locked database to be seen to, short enough not to hold up a relay.
pub const STORE_RETRY_AFTER_SECONDS: u64 = 5;

/// How often a store that keeps refusing is logged again while requests
/// keep meeting it; the lines between are counted, not written.
const STORE_ERROR_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Seconds for a `Retry-After` header, when the client should retry.
    pub retry_after: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_field`.
    code: &'static str,
    message: String,
    /// The offending body field, query parameter or header, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).field(field)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }

    pub fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message).field("Authorization")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 503 `store_unavailable`, always with its `Retry-After`: a client
    /// told the store is out is also told when to look again.
    pub fn store_unavailable(message: impl Into<String>) -> Self {
        let mut error = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            message,
        );
        error.retry_after = Some(STORE_RETRY_AFTER_SECONDS);
        error
    }

    /// 500 `store_refused`: the store refused this write for a reason that
    /// will not pass by itself (a constraint, a bug; the log says which).
    /// Not 503: repeating the request meets the same refusal, and no
    /// `Retry-After` could say when that changes.
    pub fn store_refused() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            STORE_REFUSED,
            "the message store refused this request for a reason that will not pass by itself (the bridge's log says why); nothing was changed, and repeating it will meet the same refusal",
        )
    }
}

/// The code of [`ApiError::store_refused`], which the relay's pull loop
/// tells apart from a store that is out for a while.
pub const STORE_REFUSED: &str = "store_refused";

impl ApiError {
    /// 503 `store_outcome_unknown`: the request may or may not have been
    /// stored, so the one safe retry is a repeat with the same
    /// Idempotency-Key, which gets the first result if there was one.
    pub fn outcome_unknown(message: impl Into<String>) -> Self {
        let mut error = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_outcome_unknown",
            message,
        );
        error.retry_after = Some(STORE_RETRY_AFTER_SECONDS);
        error
    }

    /// The commit of a send and what follows it ended without an answer
    /// (it panicked, `panic` its message): it may have got past the
    /// commit, so "nothing was stored, try again" would make a client
    /// without an Idempotency-Key send the message twice.
    pub fn accept_task_failed(panic: String) -> Self {
        tracing::error!(%panic, "the commit of a send ended without an answer");
        ApiError::outcome_unknown(
            "the bridge failed while accepting this request: it may have been stored. Repeat it with the same Idempotency-Key",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if let StoreError::OutcomeUnknown(why) = &e {
            // Not "nothing was stored": it may have been. The daemon stops
            // (`Store::broken`) and its restart settles it; a repeat with
            // the same Idempotency-Key then gets the first result, if
            // there was one, and sends nothing twice.
            tracing::error!(error = %why, "a request's commit failed after it may have become durable");
            return ApiError::outcome_unknown(
                "the message store failed while committing: this request may have been stored. Repeat it with the same Idempotency-Key once the bridge is back",
            );
        }
        // A full disk fails every request until it is mended: one line a
        // minute says so, with how many requests met it meanwhile, rather
        // than one per request (`/ready` and `phonerelay_store_up` say it
        // at every moment). One process is one daemon, so the throttle is
        // the process's.
        static THROTTLE: crate::logging::SharedThrottle =
            crate::logging::SharedThrottle::new(STORE_ERROR_LOG_EVERY);
        if let Some(unlogged) = THROTTLE.allow() {
            tracing::error!(error = %e, requests_since_last_logged = unlogged,
                "store error while serving a request");
        }
        match e {
            StoreError::Database(_) => ApiError::store_refused(),
            _ => ApiError::store_unavailable(
                "the message store is not available; nothing was stored, try again",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code: self.code,
                    message: self.message,
                    field: self.field,
                },
            }),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A commit whose outcome is unknown is not answered as "nothing was
    /// stored": a client that repeated it without its idempotency key
    /// would send the message twice.
    #[test]
    fn a_commit_of_unknown_outcome_does_not_say_nothing_was_stored() {
        let e = ApiError::from(StoreError::OutcomeUnknown("disk I/O error".into()));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code, "store_outcome_unknown");
        assert!(e.message.contains("may have been stored"), "{}", e.message);
        assert!(!e.message.contains("nothing was stored"), "{}", e.message);
        assert_eq!(e.retry_after, Some(STORE_RETRY_AFTER_SECONDS));
    }

    /// The accept's commit may have panicked after the store had it: its
    /// answer is the same as for a commit of unknown outcome.
    #[test]
    fn an_accept_that_panicked_does_not_say_nothing_was_stored() {
        let e = ApiError::accept_task_failed("after the commit".to_string());
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code, "store_outcome_unknown");
        assert!(e.message.contains("may have been stored"), "{}", e.message);
        assert!(!e.message.contains("nothing was stored"), "{}", e.message);
    }
}
