//! `/webhooks/{channel}/{phone_id}/...`: requests from upstreams (WhatsApp,
//! Telegram, ...) handed to the endpoint, which checks their signature and
//! commits what they carry before answering.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use phonerelay_channel::{ChannelKind, EventSink, WebhookRequest};

use super::body::RawBody;
use super::error::ApiError;
use super::path::ApiPath;
use super::state::AppState;
use crate::inbound::StoreSink;

pub async fn webhook(
    State(state): State<AppState>,
    ApiPath((channel, phone_id, rest)): ApiPath<(String, String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    method: Method,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let kind: ChannelKind = channel
        .parse()
        .map_err(|_| ApiError::not_found("webhook"))?;
    let endpoint = state
        .endpoints
        .get(kind, &phone_id)
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    let path = format!("/{rest}");
    if !endpoint.channel.webhook_paths().contains(&path) {
        return Err(ApiError::not_found("webhook"));
    }
    let request = WebhookRequest {
        method: method.to_string(),
        path,
        query,
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body: body.to_vec(),
    };
    let sink: Arc<dyn EventSink> = Arc::new(
        StoreSink::new(state.store.clone(), state.metrics.clone(), kind, phone_id)
            .with_inbound_bell(state.inbound_bell.clone()),
    );
    let response = endpoint.channel.handle_webhook(request, sink).await;
    Ok((
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, response.content_type)],
        response.body,
    )
        .into_response())
}
