//! `/webhooks/{channel}/{phone_id}/...` and `/webhooks/{channel}`: requests
//! from upstreams (WhatsApp, Telegram, ...) handed to the endpoint, or the
//! endpoints sharing the channel's callback, which check their signature
//! and commit what they carry before answering.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use phonerelay_channel::{
    ChannelKind, EventSink, SharedWebhookAnswer, WebhookRequest, WebhookResponse,
};

use super::body::read_webhook_body;
use super::error::ApiError;
use super::path::ApiPath;
use super::state::AppState;
use super::webhook_budget::HeldRoom;
use crate::inbound::StoreSink;

/// The body is read only once the route is known to be an endpoint's
/// webhook: a body of up to `server.max_webhook_body_bytes`, sent slowly
/// to a path that is none, would otherwise hold that much memory for the
/// request timeout, on any number of connections, with no key asked.
pub async fn webhook(
    State(state): State<AppState>,
    ApiPath((channel, phone_id, rest)): ApiPath<(String, String, String)>,
    unread: Request,
) -> Result<Response, ApiError> {
    let kind = channel_kind(&channel)?;
    let endpoint = state
        .endpoints
        .get(kind, &phone_id)
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    let path = format!("/{rest}");
    if !endpoint.channel.webhook_paths().contains(&path) {
        return Err(ApiError::not_found("webhook"));
    }
    // The room its body takes is held until the adapter has answered.
    let (request, _room) = Incoming::from_request(unread, &state)
        .await?
        .into_request(path);
    let sink = endpoint_sink(&state, kind, phone_id);
    Ok(into_response(
        endpoint.channel.handle_webhook(request, sink).await,
    ))
}

/// `/webhooks/{channel}`: one callback URL for the endpoints of a channel
/// that share it (`Channel::shares_channel_webhook`), as a WhatsApp app has
/// one for all of its numbers. Each is asked in turn (by phone_id) and takes what is its
/// own (`Channel::handle_shared_webhook`); the upstream hears the first
/// answer that is not a success, so that it sends the request again (what
/// was committed is kept once, by external id), else the first answer.
pub async fn shared_webhook(
    State(state): State<AppState>,
    ApiPath(channel): ApiPath<String>,
    unread: Request,
) -> Result<Response, ApiError> {
    let kind = channel_kind(&channel)?;
    let sharing: Vec<_> = state
        .endpoints
        .iter()
        .filter(|(key, endpoint)| key.0 == kind && endpoint.channel.shares_channel_webhook())
        .map(|(key, endpoint)| (key.1.clone(), endpoint.clone()))
        .collect();
    if sharing.is_empty() {
        return Err(ApiError::not_found("webhook"));
    }
    // Read only now, as in `webhook`.
    let (request, _room) = Incoming::from_request(unread, &state)
        .await?
        .into_request("/".into());
    // Every sharing endpoint is asked, also after one refused: the others'
    // events in the same request are committed now, not left to a retry
    // that the same refusal would answer again until the upstream gives up.
    let mut first_answer = None;
    let mut first_refusal = None;
    for (phone_id, endpoint) in sharing {
        let sink = endpoint_sink(&state, kind, phone_id);
        let answer = endpoint
            .channel
            .handle_shared_webhook(request.clone(), sink)
            .await;
        let SharedWebhookAnswer::Answered(response) = answer else {
            continue;
        };
        if !(200..300).contains(&response.status) {
            first_refusal.get_or_insert(response);
        } else {
            first_answer.get_or_insert(response);
        }
    }
    first_refusal.or(first_answer).map(into_response).ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "webhook_not_taken",
            format!("no {kind} endpoint took this request (its signature or its events are none of theirs)"),
        )
    })
}

/// A name that is no channel has no webhook.
fn channel_kind(channel: &str) -> Result<ChannelKind, ApiError> {
    channel.parse().map_err(|_| ApiError::not_found("webhook"))
}

/// A webhook request as an adapter takes it, but for its sub-path, which
/// the route gives.
pub struct Incoming {
    method: Method,
    query: BTreeMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
    /// The room the body takes (`webhook_budget.rs`).
    room: HeldRoom,
}

impl Incoming {
    fn into_request(self, path: String) -> (WebhookRequest, HeldRoom) {
        let request = WebhookRequest {
            method: self.method.to_string(),
            path,
            query: self.query,
            headers: joined_headers(&self.headers),
            body: self.body.into(),
        };
        (request, self.room)
    }
}

/// The headers as an adapter takes them, one value per name. A name sent
/// more than once with different values has them joined with `, ` in the
/// order they came (RFC 9110, 5.3), where the last one alone was kept; the
/// same value sent twice (a proxy that adds its own copy) is kept once. A
/// value that is not UTF-8, which was dropped without a word, is kept with
/// its invalid bytes replaced: an adapter that needs it sees it does not
/// match, and a header no adapter reads refuses nothing.
fn joined_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut joined: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        let values = joined.entry(name.as_str().to_string()).or_default();
        if !values.contains(&value) {
            values.push(value);
        }
    }
    joined
        .into_iter()
        .map(|(name, values)| (name, values.join(", ")))
        .collect()
}

impl FromRequest<AppState> for Incoming {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let Query(query) = Query::try_from_uri(req.uri()).map_err(|rejection| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                rejection.body_text(),
            )
        })?;
        let method = req.method().clone();
        let headers = req.headers().clone();
        let (body, room) = read_webhook_body(req, state).await?;
        Ok(Incoming {
            method,
            query,
            headers,
            body,
            room,
        })
    }
}

/// The sink of one endpoint: it commits that endpoint's events only.
fn endpoint_sink(state: &AppState, kind: ChannelKind, phone_id: String) -> Arc<dyn EventSink> {
    Arc::new(
        StoreSink::new(state.store.clone(), state.metrics.clone(), kind, phone_id)
            .with_inbound_bell(state.inbound_bell.clone()),
    )
}

/// An adapter's answer as sent. What no answer can carry is mended, not
/// turned into axum's plain-text 500: a content type that is no header
/// value is sent as bytes, a status outside 200 to 599 (an informational
/// one, a number no status has) as 500.
fn into_response(response: WebhookResponse) -> Response {
    let status = StatusCode::from_u16(response.status)
        .ok()
        .filter(|s| (200..600).contains(&s.as_u16()))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = HeaderValue::from_str(&response.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    (
        status,
        [(header::CONTENT_TYPE, content_type)],
        response.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_sent_twice_reaches_the_adapter_with_both_values() {
        let mut headers = HeaderMap::new();
        headers.append("x-hub-signature-256", HeaderValue::from_static("sha256=aa"));
        headers.append("x-hub-signature-256", HeaderValue::from_static("sha256=bb"));
        headers.append("x-secret-token", HeaderValue::from_static("t0ken"));
        headers.append("x-secret-token", HeaderValue::from_static("t0ken"));
        headers.append("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-cdn-note", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let joined = joined_headers(&headers);
        assert_eq!(joined["x-hub-signature-256"], "sha256=aa, sha256=bb");
        assert_eq!(
            joined["x-secret-token"], "t0ken",
            "a proxy's copy is one value"
        );
        assert_eq!(joined["content-type"], "application/json");
        assert_eq!(joined["x-cdn-note"], "caf\u{FFFD}");
    }

    #[test]
    fn an_answer_no_response_can_carry_is_mended() {
        let answer = |status, content_type: &str| {
            into_response(WebhookResponse {
                status,
                content_type: content_type.into(),
                body: b"ok".to_vec(),
            })
        };
        let bad_type = answer(200, "text/plain\r\nx: y");
        assert_eq!(bad_type.status(), StatusCode::OK);
        assert_eq!(
            bad_type.headers()[header::CONTENT_TYPE],
            "application/octet-stream"
        );
        for status in [101, 99, 600, 999] {
            assert_eq!(
                answer(status, "text/plain").status(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "{status}"
            );
        }
        assert_eq!(answer(204, "text/plain").status(), StatusCode::NO_CONTENT);
    }
}
