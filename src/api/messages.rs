//! `/api/v1/messages`: accept, read, list, cancel.

use std::time::Instant;

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use phonerelay_channel::ChannelKind;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::IntoParams;

use super::auth::Caller;
use super::body::JsonBody;
use super::dto::{Accepted, CancelAnswer, MessagePage, MessageView, SendRequest};
use super::error::{ApiError, ErrorBody};
use super::paging::{CursorList, page_limit};
use super::path::ApiPath;
use super::send_validation::{validate, validate_idempotency_key};
use super::state::AppState;
use crate::clock::{now_ms, parse_rfc3339};
use crate::finish_on_drop::finish_on_drop;
use crate::metrics::labels;
use crate::outbox::Reservation;
use crate::store::*;

#[utoipa::path(
    post, path = "/api/v1/messages", tag = "messages",
    request_body = SendRequest,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "1 to 255 printable ASCII characters, no space (else 400 invalid_header). A repeat with the same key and the same JSON body (its spacing and the order of its keys aside) returns the first result and sends nothing, for as long as the first message is kept (storage.retention_days after it ended)")),
    responses(
        (status = 202, description = "Committed to the outbox", body = Accepted,
            headers(
                ("Location" = String, description = "The message's URL: /api/v1/messages/{id}"),
                ("Idempotent-Replayed" = String,
                    description = "`true` when this is the first answer again, to a repeat of an Idempotency-Key or relay message id; absent otherwise"))),
        (status = 400, description = "Malformed JSON or header (an `Idempotency-Key` that is not 1 to 255 printable ASCII characters, or sent twice)", body = ErrorBody),
        (status = 401, description = "No or bad API key", body = ErrorBody),
        (status = 403, description = "Key lacks the send scope or is bound to another phone_id", body = ErrorBody),
        (status = 408, description = "The body did not arrive within server.request_timeout_seconds; nothing was stored", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON (`Content-Type`), or compressed (`Content-Encoding`)", body = ErrorBody),
        (status = 422, description = "A field is invalid; `field` names it", body = ErrorBody),
        (status = 500, description = "The store refused the message for a reason that will not pass by itself, a constraint or a bug (`store_refused`; the bridge's log says which): nothing was stored, and a repeat meets the same refusal", body = ErrorBody),
        (status = 503, description = "Store unavailable (`store_unavailable`): nothing was stored. Or the store failed while committing (`store_outcome_unknown`): the message may have been stored; repeat with the same Idempotency-Key once the bridge is back (it restarts to settle it)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
    ),
    security(("bearer" = []))
)]
pub async fn send(State(state): State<AppState>, input: SendInput) -> Result<Response, ApiError> {
    let started = Instant::now();
    let result = accept(&state, input, started).await;
    match &result {
        // A new message's time is observed with its commit ([`commit_new`]),
        // which goes on if this request is dropped.
        Ok(committed) if committed.replayed => state
            .metrics
            .accept_seconds
            .observe(started.elapsed().as_secs_f64()),
        Ok(_) => {}
        Err(e) => count_rejection(&state, e),
    }
    result.map(accepted)
}

fn count_rejection(state: &AppState, e: &ApiError) {
    state
        .metrics
        .rejected
        .get_or_create(&labels(&[("code", e.code)]))
        .inc();
}

async fn accept(
    state: &AppState,
    input: SendInput,
    started: Instant,
) -> Result<Committed, ApiError> {
    let SendInput {
        caller,
        idempotency_key,
        body,
    } = input;
    let idempotency_key = validate_idempotency_key(idempotency_key.as_ref())?;
    let req = body.value;
    caller.require_phone(&req.phone_id)?;
    commit_send(
        state,
        Some(caller.0.key_id.clone()),
        idempotency_key,
        req,
        &body.raw,
        Some(started),
    )
    .await
}

/// What a send request carries, read in the order its checks answer: the
/// bearer key (401) and its scope (403), then the body (400/408/413/415/
/// 422; not read at all for a caller without a valid key that may send).
/// A refusal here is counted in the `rejected` metric as the handler
/// counts its own, so that metric sees every refused send whichever step
/// refused it.
pub struct SendInput {
    caller: Caller,
    /// The raw `Idempotency-Key` header, checked only after the caller's
    /// scope (so a key without `send` hears 403 first). Taking the one
    /// header spares a copy of the whole header map per send.
    idempotency_key: Option<HeaderValue>,
    body: JsonBody<SendRequest>,
}

impl FromRequest<AppState> for SendInput {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let read = async {
            let caller = Caller::from_request_parts(&mut parts, state).await?;
            // Before the body: a key that cannot send hears 403 whatever it
            // sent, and no body is read for it.
            caller.require(Scope::Send)?;
            let mut keys = parts.headers.get_all("idempotency-key").iter();
            let idempotency_key = keys.next().cloned();
            // Two keys (a proxy adding its own, say) name no one request:
            // taking the first would file a retry under the wrong one.
            if keys.next().is_some() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_header",
                    "Idempotency-Key was sent more than once; send one",
                )
                .field("Idempotency-Key"));
            }
            let request = Request::from_parts(parts, body);
            let body = JsonBody::from_request(request, state).await?;
            Ok(SendInput {
                caller,
                idempotency_key,
                body,
            })
        };
        let result = read.await;
        if let Err(e) = &result {
            count_rejection(state, e);
        }
        result
    }
}

/// The hashes a repeat of an Idempotency-Key is matched by: of the body's
/// JSON value, spacing dropped and every object's keys in order, so a
/// client that builds the same request again (its map in another order,
/// say) is answered as the first time, as Stripe compares a repeat's
/// parameters rather than its bytes; and of the exact bytes, which keys
/// committed before were kept under.
fn request_hashes(raw: &[u8]) -> (String, String) {
    let exact = hex::encode(Sha256::digest(raw));
    // The body was parsed as a send already, so it is JSON.
    let value = serde_json::from_slice::<serde_json::Value>(raw).map(|mut value| {
        value.sort_all_objects();
        value
    });
    let canonical = match value.as_ref().map(serde_json::to_vec) {
        Ok(Ok(bytes)) => hex::encode(Sha256::digest(bytes)),
        _ => exact.clone(),
    };
    (canonical, exact)
}

/// A send request's message, committed now or by an earlier request.
pub(crate) struct Committed {
    pub id: String,
    /// What the 202 says (see [`Accepted::status`]): the status the
    /// message was committed with, for a repeat as for the first request.
    pub status: OutboundStatus,
    /// A repeat of an earlier request, which committed nothing new.
    pub replayed: bool,
}

impl Committed {
    /// A repeat answered as the first request was.
    fn replayed(first: FirstAnswer) -> Self {
        Committed {
            id: first.id,
            status: first.status,
            replayed: true,
        }
    }
}

/// Validate a send request and commit it to the outbox: the one path for
/// the API and for jobs polled from the relay. `started`: when an API
/// request began, for `accept_duration_seconds`.
pub(crate) async fn commit_send(
    state: &AppState,
    api_key_id: Option<String>,
    idempotency_key: Option<String>,
    req: SendRequest,
    raw: &[u8],
    started: Option<Instant>,
) -> Result<Committed, ApiError> {
    let relay_id_seen = match &req.relay_message_id {
        Some(relay_id) => relay_id_seen(state, relay_id, &req.phone_id).await?,
        None => RelayIdSeen::Free,
    };
    // Only a repeat of the same key compares hashes: without a key there
    // is nothing to compare with, so nothing to hash or store.
    let (request_hash, exact_request_hash) = match &idempotency_key {
        Some(_) => request_hashes(raw),
        None => (String::new(), String::new()),
    };
    // A repeat of an Idempotency-Key is answered as the first request was,
    // before the body is checked again: the config may have changed since
    // (a lower max_ttl_seconds, a phone_id gone), and the message was
    // committed all the same.
    if let Some(key) = &idempotency_key
        && let Some((first, hash)) = state
            .store
            .find_idempotent_outbound(api_key_id.clone(), key.clone())
            .await?
    {
        return if hash == request_hash || hash == exact_request_hash {
            Ok(Committed::replayed(first))
        } else {
            Err(key_reused(&first.id))
        };
    }
    // A repeat of a relay id is the first message whatever its body says
    // now (docs/relay-protocol.md), so it is found before the body is
    // checked: a job redelivered after its endpoint left the config, or
    // its reply_to was pruned, was taken and is not refused now. Only
    // after an Idempotency-Key's body was compared: a key reused with
    // another body is refused whatever relay id comes with it.
    if let RelayIdSeen::Ours(first) = relay_id_seen {
        return Ok(Committed::replayed(first));
    }
    let valid = validate(&req, state)?;
    let reply_to_external_id = reply_target(state, &req, valid.channel).await?;
    // Another phone's relay id is refused only now, once the body is
    // found valid: a body with a fault hears about that fault whether the
    // id is taken or free, so the refusal says no more than that the id
    // is used, as the store's own refusal (a race) does.
    if let RelayIdSeen::Taken = relay_id_seen {
        return Err(relay_id_taken());
    }
    let now = now_ms();
    let message = NewOutbound {
        api_key_id,
        idempotency_key,
        request_hash,
        exact_request_hash,
        phone_id: req.phone_id,
        channel: valid.channel,
        to: req.to,
        text: req.text,
        subject: req.subject,
        source: req.source,
        attachments: req.attachments.into_iter().map(Into::into).collect(),
        reply_to: req.reply_to,
        reply_to_external_id,
        options: req.options,
        priority: valid.priority,
        created_at_ms: now,
        expires_at_ms: now + valid.ttl_ms,
        claimed_until_ms: None,
    };
    // Finished even if this request is dropped (its client went away):
    // once the store has the message, it commits it whatever becomes of
    // the request (its writer goes on), and so must what follows the
    // commit. Dropped with the request, that left a committed message out
    // of the metrics, its dispatcher not woken, and a hand-over not made.
    let committing = finish_on_drop(commit_new(
        state.clone(),
        message,
        req.relay_message_id,
        started,
    ));
    let (outcome, status) = committing.await.map_err(ApiError::accept_task_failed)??;
    match outcome {
        AcceptOutcome::Created { id } => Ok(Committed {
            id,
            status,
            replayed: false,
        }),
        AcceptOutcome::Replayed { id, status } => {
            Ok(Committed::replayed(FirstAnswer { id, status }))
        }
        AcceptOutcome::KeyReused { id } => Err(key_reused(&id)),
        AcceptOutcome::RelayIdTaken => Err(relay_id_taken()),
    }
}

/// Commit `message`, and do what its commit calls for: hand it to its
/// endpoint's dispatcher, or wake the dispatcher for it, and count it
/// ([`count_accepted`]). What the store made of it, and the status a new
/// message was committed with.
async fn commit_new(
    state: AppState,
    mut message: NewOutbound,
    relay_id: Option<String>,
    started: Option<Instant>,
) -> Result<(AcceptOutcome, OutboundStatus), StoreError> {
    // A free dispatcher slot with nothing waiting: commit the message
    // already claimed and hand it over, no claim needed (outbox::handover).
    // Refused, the request keeps `refused` until its message is committed
    // to the queue: no claim started meanwhile counts the queue drained.
    let (reservation, refused) = match state
        .endpoints
        .get(message.channel, &message.phone_id)
        .map(|endpoint| endpoint.intake.reserve())
    {
        Some(Ok(reservation)) => (Some(reservation), None),
        Some(Err(refused)) => (None, Some(refused)),
        None => (None, None),
    };
    let lease_ms = state.config.config.outbox.lease_ms();
    message.claimed_until_ms = reservation
        .as_ref()
        .map(|_| message.created_at_ms + lease_ms);
    // A message handed over is committed `sending`: answering `queued`
    // sent a client that cancelled at once into a 409.
    let status = message.committed_status();
    let handover = reservation.map(|reservation| (reservation, message.clone()));
    let (channel, phone_id) = (message.channel, message.phone_id.clone());
    let outcome = store_new(&*state.store, message, relay_id).await;
    drop(refused);
    let outcome = outcome?;
    if let AcceptOutcome::Created { id } = &outcome {
        let handed_over =
            handover.is_some_and(|(reservation, claimed)| hand_over(reservation, &claimed, id));
        if !handed_over {
            state.endpoints.wake(channel, &phone_id);
        }
        count_accepted(&state, channel, handed_over, started);
    }
    Ok((outcome, status))
}

/// Count a message committed on `channel`: accepted, handed over or not,
/// and the time since `started`, an API request's.
fn count_accepted(
    state: &AppState,
    channel: ChannelKind,
    handed_over: bool,
    started: Option<Instant>,
) {
    let labels = labels(&[("channel", channel.as_str())]);
    if handed_over {
        state.metrics.handed_over.get_or_create(&labels).inc();
    }
    state.metrics.accepted.get_or_create(&labels).inc();
    if let Some(started) = started {
        let seconds = started.elapsed().as_secs_f64();
        state.metrics.accept_seconds.observe(seconds);
    }
}

/// Hand the message `claimed`, committed as `id`, to the dispatcher that
/// reserved a slot for it; whether it took it.
fn hand_over(reservation: Reservation, claimed: &NewOutbound, id: &str) -> bool {
    let handed_over = reservation.hand_over(claimed.claimed_record(id.to_string()));
    if !handed_over {
        tracing::warn!("the dispatcher was gone before taking a message; the next start sends it");
    }
    handed_over
}

/// What a send's `relay_message_id` already names.
enum RelayIdSeen {
    /// No message yet.
    Free,
    /// A message of the same phone_id: this send is its repeat.
    Ours(FirstAnswer),
    /// A message of another phone_id, which is not this caller's to learn.
    Taken,
}

/// Check the form of `relay_id` and find what it already names.
async fn relay_id_seen(
    state: &AppState,
    relay_id: &str,
    phone_id: &str,
) -> Result<RelayIdSeen, ApiError> {
    if relay_id.is_empty()
        || relay_id.len() > MAX_RELAY_MESSAGE_ID_LEN
        || !relay_id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::invalid(
            "relay_message_id",
            format!("must be 1 to {MAX_RELAY_MESSAGE_ID_LEN} printable ASCII characters"),
        ));
    }
    Ok(match state.store.find_relay_outbound(relay_id).await? {
        None => RelayIdSeen::Free,
        Some((first, owner)) if owner == phone_id => RelayIdSeen::Ours(first),
        Some(_) => RelayIdSeen::Taken,
    })
}

/// The same words whichever phone_id holds the id, and whether the API or
/// the store found it.
fn relay_id_taken() -> ApiError {
    ApiError::invalid(
        "relay_message_id",
        "is already used by another message; each message needs an id of its own",
    )
}

/// The channel's id of the inbound message `reply_to` names, if any.
async fn reply_target(
    state: &AppState,
    req: &SendRequest,
    channel: ChannelKind,
) -> Result<Option<String>, ApiError> {
    let Some(inbound_id) = &req.reply_to else {
        return Ok(None);
    };
    // Another phone's inbound is answered as one that does not exist: a
    // key bound to this phone_id learns nothing of another's messages.
    let inbound = state
        .store
        .get_inbound(inbound_id)
        .await?
        .filter(|inbound| inbound.phone_id == req.phone_id)
        .ok_or_else(|| {
            ApiError::invalid(
                "reply_to",
                "no inbound message of this phone_id has this id",
            )
        })?;
    if inbound.channel != channel {
        return Err(ApiError::invalid(
            "reply_to",
            "the inbound message came on another channel",
        ));
    }
    Ok(Some(inbound.external_id))
}

fn key_reused(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        format!("this Idempotency-Key was used for message {id} with a different body"),
    )
    .field("Idempotency-Key")
}

/// Commit a new message, with its relay id if the relay pushed it.
async fn store_new(
    store: &dyn Store,
    message: NewOutbound,
    relay_message_id: Option<String>,
) -> Result<AcceptOutcome, StoreError> {
    match relay_message_id {
        Some(relay_id) => store.accept_relay_outbound(message, relay_id).await,
        None => store.accept_outbound(message).await,
    }
}

/// Longest `relay_message_id` accepted.
pub const MAX_RELAY_MESSAGE_ID_LEN: usize = 255;

fn accepted(committed: Committed) -> Response {
    let Committed {
        id,
        status,
        replayed,
    } = committed;
    let location = format!("/api/v1/messages/{id}");
    let mut response = (StatusCode::ACCEPTED, Json(Accepted { id, status })).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

#[utoipa::path(
    get, path = "/api/v1/messages/{id}", tag = "messages",
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, description = "The message and its status history", body = MessageView),
        (status = 404, description = "No such message (or not visible to this key)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_message(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<MessageView>, ApiError> {
    caller.require(Scope::Read)?;
    let detail = visible(&state, &caller, &id).await?;
    Ok(Json(MessageView::from(&detail)))
}

/// A message exists for a caller only if its key may see that phone_id.
async fn visible(state: &AppState, caller: &Caller, id: &str) -> Result<OutboundDetail, ApiError> {
    let detail = state.store.get_outbound(id).await?;
    match detail {
        Some(d) if caller.phone_scope().is_none_or(|p| p == d.record.phone_id) => Ok(d),
        _ => Err(ApiError::not_found("message")),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only messages in this status.
    #[param(value_type = Option<OutboundStatus>)]
    pub status: Option<String>,
    #[param(schema_with = super::openapi::channel_name)]
    pub channel: Option<String>,
    pub phone_id: Option<String>,
    /// RFC 3339; only messages created at or after it.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of this list's previous page. A cursor of another
    /// list, or one handed out before the bridge was upgraded, is refused
    /// (400 `invalid_query`, field `cursor`): start from the first page.
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

#[utoipa::path(
    get, path = "/api/v1/messages", tag = "messages", params(ListQuery),
    responses(
        (status = 200, description = "Newest first", body = MessagePage),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_messages(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<MessagePage>, ApiError> {
    caller.require(Scope::Read)?;
    let Query(q) = query.map_err(super::paging::query_error)?;
    let limit = page_limit(q.limit)?;
    let filter = OutboundFilter {
        status: q
            .status
            .map(|s| s.parse::<OutboundStatus>())
            .transpose()
            .map_err(|e| bad_query("status", e))?,
        channel: parse_channel(q.channel)?,
        phone_id: scoped_phone(&caller, q.phone_id)?,
        since_ms: parse_since(q.since)?,
        before_seq: CursorList::Messages.decode(q.cursor)?,
        limit: limit + 1,
    };
    let records = state.store.list_outbound(filter).await?;
    let (records, next_cursor) = CursorList::Messages.split_page(records, limit, |r| r.seq);
    Ok(Json(MessagePage {
        messages: records.iter().map(MessageView::from).collect(),
        next_cursor,
    }))
}

pub fn bad_query(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message).field(field)
}

/// A list's `channel` filter: one of the channels this bridge sends on,
/// as the document's enum says. `pchat` is refused with the unknown names:
/// its messages are the relay's, and the bridge keeps none to list.
pub fn parse_channel(channel: Option<String>) -> Result<Option<ChannelKind>, ApiError> {
    let Some(name) = channel else {
        return Ok(None);
    };
    match name.parse::<ChannelKind>() {
        Ok(kind) if ChannelKind::DELIVERABLE.contains(&kind) => Ok(Some(kind)),
        _ => Err(bad_query(
            "channel",
            format!(
                "{name:?} is not a channel of this bridge; expected one of {}",
                ChannelKind::DELIVERABLE.map(ChannelKind::as_str).join(", ")
            ),
        )),
    }
}

pub fn parse_since(since: Option<String>) -> Result<Option<i64>, ApiError> {
    since
        .map(|s| parse_rfc3339(&s).ok_or_else(|| bad_query("since", since_problem(&s))))
        .transpose()
}

/// Why `since` is refused. A `+` in a query string means a space, so
/// `since=…T03:00:00+01:00` written by hand arrives as `…T03:00:00 01:00`:
/// the answer says how to send it rather than only that it is wrong.
fn since_problem(since: &str) -> &'static str {
    if parse_rfc3339(&since.replace(' ', "+")).is_some() {
        "must be an RFC 3339 time; its + came as a space (a + in a query string means one): \
         write it %2B, or give the time in UTC with Z"
    } else {
        "must be an RFC 3339 time"
    }
}

/// A key bound to a phone_id lists only that phone_id.
pub fn scoped_phone(caller: &Caller, asked: Option<String>) -> Result<Option<String>, ApiError> {
    match (caller.phone_scope(), asked) {
        (Some(bound), Some(asked)) if bound != asked => {
            Err(caller.require_phone(&asked).unwrap_err())
        }
        (Some(bound), _) => Ok(Some(bound)),
        (None, asked) => Ok(asked),
    }
}

#[utoipa::path(
    post, path = "/api/v1/messages/{id}/cancel", tag = "messages",
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, description = "Cancelled, now or by an earlier request (a repeated cancel is answered the same): the whole message to a key with the read scope, only its `id` and `status` to a key without it", body = CancelAnswer),
        (status = 404, description = "No such message", body = ErrorBody),
        (status = 409, description = "No longer queued", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel_message(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CancelAnswer>, ApiError> {
    caller.require(Scope::Send)?;
    let may_read = caller.0.allows(Scope::Read);
    let before = visible(&state, &caller, &id).await?.record;
    match state.store.cancel_outbound(&id, now_ms()).await? {
        // Answered from what the cancel's own transaction read: a read
        // after the commit could fail, and its 503 says nothing changed.
        CancelOutcome::Cancelled(detail) => {
            // The recipient's later messages may wait behind this one, for
            // a retry that may be far off: they go now.
            if let Some(endpoint) = state.endpoints.get(before.channel, &before.phone_id) {
                endpoint.queued_message_cancelled(&before);
            }
            Ok(Json(CancelAnswer::for_key(&detail, may_read)))
        }
        // Nothing waits behind it any more: its cancel already let them go.
        CancelOutcome::AlreadyCancelled(detail) => {
            Ok(Json(CancelAnswer::for_key(&detail, may_read)))
        }
        CancelOutcome::NotFound => Err(ApiError::not_found("message")),
        CancelOutcome::NotCancellable(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_cancellable",
            format!("the message is {status}; only queued messages can be cancelled"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use phonerelay_channel::{
        Channel, ChannelContext, ChannelHealth, OutboundMessage, SendError, SendReceipt,
    };
    use serde_json::Value;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::api::serve::{Limits, Stop, serve};
    use crate::store::testing::{AcceptsHeld, ReadsFailAfterCommit, queued_sms};

    /// A cancel that committed is answered with the cancelled message
    /// though the store cannot be read once it has: the read after the
    /// commit turned into a 503 that says nothing was changed, and a
    /// client that tried again met a 409.
    #[tokio::test]
    async fn a_committed_cancel_is_answered_though_the_store_cannot_be_read_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        let store = Arc::new(ReadsFailAfterCommit::new(sqlite));
        let new = queued_sms("cancel me", now_ms());
        let AcceptOutcome::Created { id } = store.accept_outbound(new).await.unwrap() else {
            panic!("not created");
        };
        let state = AppState::over(store.clone());
        let caller = Caller::with(vec![Scope::Send], None);
        let Json(answer) = cancel_message(State(state), caller, ApiPath(id.clone()))
            .await
            .unwrap_or_else(|e| panic!("{} {}: {}", e.status, e.code, e.message));
        let CancelAnswer::Brief(brief) = answer else {
            panic!("a key without read was shown the message");
        };
        assert_eq!(brief.status, OutboundStatus::Cancelled);
        assert!(store.get_outbound(&id).await.is_err(), "reads fail now");
        let stored = store.inner().get_outbound(&id).await.unwrap().unwrap();
        assert_eq!(stored.record.status, OutboundStatus::Cancelled);
    }

    /// The SMS endpoint `m1`, which never sends: no dispatcher runs in
    /// these tests, so its messages stay queued.
    struct Idle;

    #[async_trait::async_trait]
    impl Channel for Idle {
        fn kind(&self) -> ChannelKind {
            ChannelKind::Sms
        }
        fn phone_id(&self) -> &str {
            "m1"
        }
        async fn send(&self, _message: &OutboundMessage) -> Result<SendReceipt, SendError> {
            unreachable!("no dispatcher runs")
        }
        async fn run(&self, _ctx: ChannelContext) {}
        fn health(&self) -> ChannelHealth {
            ChannelHealth::up("idle")
        }
    }

    /// The API over `state`, served on a port of its own (until the test's
    /// runtime ends); its base URL.
    async fn served(state: AppState) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let limits = Limits {
            request_timeout: Duration::from_secs(30),
            max_connections: 16,
            serving: "test",
        };
        let stop = Stop {
            graceful: CancellationToken::new(),
            hard: CancellationToken::new(),
        };
        tokio::spawn(serve(listener, crate::api::router(state), limits, stop));
        base
    }

    /// A send request with the bearer `key`, as raw HTTP/1.1.
    fn raw_send(key: &str, text: &str) -> String {
        let body =
            format!(r#"{{"phone_id":"m1","channel":"sms","to":"+15551230001","text":"{text}"}}"#);
        format!(
            "POST /api/v1/messages HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    /// What `probe` finds, once it finds something, or panic after 10 s
    /// with what it last saw, saying it never found `what`.
    async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Result<T, String>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let seen = match probe().await {
                Ok(found) => return found,
                Err(seen) => seen,
            };
            assert!(
                tokio::time::Instant::now() < deadline,
                "never {what}: {seen}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// GET `path` at `base` with the bearer `key`, as JSON.
    async fn get_json(http: &reqwest::Client, base: &str, path: &str, key: &str) -> Value {
        let response = http.get(format!("{base}{path}")).bearer_auth(key).send();
        response.await.unwrap().json().await.unwrap()
    }

    /// The lines of `/metrics` at `base` that start with `series`, once
    /// there are any.
    async fn wait_series(http: &reqwest::Client, base: &str, series: &str) -> Vec<String> {
        eventually(&format!("counted {series}"), async || {
            let response = http.get(format!("{base}/metrics")).send();
            let text = response.await.unwrap().text().await.unwrap();
            let lines: Vec<String> = text
                .lines()
                .filter(|line| line.starts_with(series))
                .map(str::to_string)
                .collect();
            if lines.is_empty() {
                Err(text)
            } else {
                Ok(lines)
            }
        })
        .await
    }

    /// Two pushes with one Idempotency-Key and one relay id, the second
    /// with a changed body, that both found the key and the id free
    /// before the first committed: the second is refused as the key
    /// reused, as it is once the first is found before the commit. The
    /// store judged the relay id first there, and answered the changed
    /// body as a repeat of the first.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_racing_push_that_reuses_a_key_with_another_body_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        let store = Arc::new(AcceptsHeld::new(sqlite));
        let issued = crate::keys::issue("test", vec![Scope::Send], None, now_ms());
        store.create_key(issued.record).await.unwrap();
        let state = AppState::over_endpoints(store.clone(), vec![Arc::new(Idle)]);
        let base = served(state).await;
        let http = reqwest::Client::new();
        let push = |text: &str| {
            let body = serde_json::json!({"phone_id": "m1", "channel": "sms",
                "to": "+15551230001", "text": text, "relay_message_id": "r-1"});
            let request = http
                .post(format!("{base}/api/v1/messages"))
                .bearer_auth(&issued.clear)
                .header("idempotency-key", "k-1")
                .json(&body);
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                let code = response.status().as_u16();
                (code, response.json::<Value>().await.unwrap())
            })
        };
        let first = push("first");
        store.faults.asked.notified().await;
        let changed = push("changed");
        // Both are past their look-ups, held at the commit.
        store.faults.asked.notified().await;
        store.faults.go_ahead.add_permits(1);
        let (code, first) = first.await.unwrap();
        assert_eq!(code, 202, "{first}");
        store.faults.go_ahead.add_permits(1);
        let (code, refused) = changed.await.unwrap();
        assert_eq!(
            (code, refused["error"]["code"].as_str()),
            (422, Some("idempotency_key_reused")),
            "{refused}"
        );
    }

    /// A client that sends a message and goes away while it is being
    /// committed: the store commits it all the same (its writer has it),
    /// and so the metrics count it as accepted, once, with its accept
    /// time, though no answer was given. Counted by the request's
    /// handler, dropped with the connection, it was never counted.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_send_committed_after_its_client_went_away_is_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        let store = Arc::new(AcceptsHeld::new(sqlite));
        let issued = crate::keys::issue("test", vec![Scope::Send, Scope::Read], None, now_ms());
        store.create_key(issued.record).await.unwrap();
        let state = AppState::over_endpoints(store.clone(), vec![Arc::new(Idle)]);
        let base = served(state).await;

        let mut client = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
            .await
            .unwrap();
        client
            .write_all(raw_send(&issued.clear, "gone").as_bytes())
            .await
            .unwrap();
        // The commit is asked for, and held: the client goes away first.
        store.faults.asked.notified().await;
        client.shutdown().await.unwrap();
        let mut answer = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut answer));
        closed
            .await
            .expect("the server kept the connection of a client gone")
            .ok();
        assert!(
            answer.is_empty(),
            "answered: {}",
            String::from_utf8_lossy(&answer)
        );

        store.faults.go_ahead.add_permits(1);
        let http = reqwest::Client::new();
        let key = &issued.clear;
        let id = eventually("committed", async || {
            let page = get_json(&http, &base, "/api/v1/messages", key).await;
            match page["messages"].as_array().map(Vec::as_slice) {
                Some([message]) => Ok(message["id"].as_str().unwrap().to_string()),
                _ => Err(page.to_string()),
            }
        })
        .await;
        let message = get_json(&http, &base, &format!("/api/v1/messages/{id}"), key).await;
        assert_eq!(message["status"], "queued", "{message}");
        assert_eq!(message["text"], "gone", "{message}");
        let accepted = wait_series(&http, &base, "phonerelay_accepted_total").await;
        assert_eq!(accepted, [r#"phonerelay_accepted_total{channel="sms"} 1"#]);
        let timed = wait_series(&http, &base, "phonerelay_accept_duration_seconds_count").await;
        assert_eq!(timed, ["phonerelay_accept_duration_seconds_count 1"]);
    }
}
