//! The relay link in the API: its state (with the dead-letter count, also
//! in `/api/v1/status`), inbound messages by forwarding state, and the
//! manual retry of a dead letter, or of every dead letter some filters
//! match.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use phonerelay_channel::{ChannelKind, validate_address};

use super::auth::Caller;
use super::body::{JsonBody, OptionalJsonBody};
use super::dto::InboundView;
use super::error::{ApiError, ErrorBody};
use super::messages::{bad_query, scoped_phone};
use super::paging::{CursorList, page_limit, query_error};
use super::path::ApiPath;
use super::sender::Sender;
use super::state::AppState;
use super::system::NoParameters;
use crate::clock::{now_ms, parse_rfc3339, rfc3339};
use crate::config::RelayMode;
use crate::relay::{Unresolved, link, settings};
use crate::store::{DeadLetterFilter, ManualRetry, RelayInbound, RelayInboundState, Scope};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RelayLinkView {
    /// The relay's base URL; a user and password in it (a pairing an older
    /// build saved) shown as `****`.
    pub url: String,
    pub phone_id: String,
    /// `push` or `pull`.
    pub mode: String,
    /// RFC 3339; absent if never reached.
    pub last_reached: Option<String>,
    pub last_error: Option<String>,
    /// The relay refused the bridge's key (401/403): pair again.
    pub key_rejected: bool,
    /// Inbound messages waiting for the relay; absent when the store
    /// cannot count them now (`state` is then `unknown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_pending: Option<u64>,
    /// Inbound messages refused for good or without a route; absent as
    /// `inbound_pending` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_dead: Option<u64>,
    /// How long the oldest inbound message waiting for the relay has
    /// waited (seconds since its commit); absent when none waits, or
    /// when the store cannot say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_oldest_seconds: Option<u64>,
    /// `running`; `not_running` when a relay is named but the link is off
    /// (no key file, or not the key the pairing recorded), the last
    /// reached and error then being those of an earlier link; `unknown`
    /// while the pairing, the link's state or its counts cannot be read
    /// (a running link runs on).
    #[serde(default = "running_by_default")]
    pub state: String,
    /// Why the link is not running, or why that is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

pub const LINK_RUNNING: &str = "running";
pub const LINK_NOT_RUNNING: &str = "not_running";
pub const LINK_UNKNOWN: &str = "unknown";

/// A report from a daemon that predates `state` showed running links only.
fn running_by_default() -> String {
    LINK_RUNNING.into()
}

impl RelayLinkView {
    /// The link runs and its last request to the relay went through: no
    /// error since, and the key not refused.
    pub fn reachable(&self) -> bool {
        self.state == LINK_RUNNING && self.last_error.is_none() && !self.key_rejected
    }
}

/// A relay known only from its pairing, while the pairing cannot be read:
/// whether there is a link at all is unknown, which is not "none".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkUnknown(pub String);

/// `Ok(None)` when no relay is configured or paired.
pub async fn link_view(state: &AppState) -> Result<Option<RelayLinkView>, LinkUnknown> {
    let relay = &state.config.config.relay;
    // Whether a link runs, as the supervisor decides it
    // (`relay::supervise`): settings that resolve run one, incomplete ones
    // stop it, a pairing that cannot be read leaves it as it is.
    let (link_state, reason, url, phone_id) = match settings::resolve(&state.config, &*state.store)
        .await
    {
        Ok(None) => return Ok(None),
        Ok(Some(running)) => (LINK_RUNNING, None, running.url, running.phone_id),
        Err(why) => match named_but_not_running(state, &why).await? {
            Some((link_state, url, phone_id)) => (link_state, Some(why.to_string()), url, phone_id),
            None => return Ok(None),
        },
    };
    // What cannot be read now is unknown, not "no error" and "nothing
    // waiting": those would report a failing link, or dead letters, as
    // gone (and clear their alerts) just when the store falters.
    let (link, counts) = (
        link::load(&*state.store).await,
        state.store.relay_inbound_counts().await,
    );
    let unreadable = match (&link, &counts) {
        (Err(e), _) => Some(format!("cannot read the relay link's state: {e}")),
        (_, Err(e)) => Some(format!(
            "cannot count the inbound messages for the relay: {e}"
        )),
        _ => None,
    };
    let (link_state, reason) = match unreadable {
        Some(why) => (LINK_UNKNOWN, Some(why)),
        None => (link_state, reason),
    };
    let link = link.unwrap_or_default();
    let counts = counts.ok();
    Ok(Some(RelayLinkView {
        // A pairing an older build saved may carry a password in its URL.
        url: crate::relay::shown_url(&url),
        phone_id,
        mode: match relay.mode {
            RelayMode::Push => "push",
            RelayMode::Pull => "pull",
        }
        .into(),
        last_reached: link.last_reached_ms.map(rfc3339),
        last_error: link.last_error,
        key_rejected: link.key_rejected,
        inbound_pending: counts.as_ref().map(|c| c.pending),
        inbound_dead: counts.as_ref().map(|c| c.dead),
        inbound_oldest_seconds: counts
            .as_ref()
            .and_then(|c| c.oldest_pending_at_ms)
            .map(|at| u64::try_from(crate::clock::now_ms().saturating_sub(at) / 1000).unwrap_or(0)),
        state: link_state.into(),
        reason,
    }))
}

/// The state, url and phone_id of a relay whose settings did not resolve
/// (`why`): from the config or, failing that, the pairing; `None` when
/// neither names one. If the pairing cannot be read now, a relay named
/// only by it is unknown, whatever the first read said.
async fn named_but_not_running(
    state: &AppState,
    why: &Unresolved,
) -> Result<Option<(&'static str, String, String)>, LinkUnknown> {
    let relay = &state.config.config.relay;
    let link_state = match why {
        Unresolved::Incomplete(_) => LINK_NOT_RUNNING,
        Unresolved::Store(_) | Unresolved::KeyUnreadable(_) => LINK_UNKNOWN,
    };
    let pairing = match settings::read_pairing(&*state.store).await {
        Ok(pairing) => pairing,
        Err(_) if relay.url.is_some() && relay.phone_id.is_some() => None,
        Err(e) => {
            return Err(LinkUnknown(format!("cannot read the relay pairing: {e}")));
        }
    };
    match settings::link_target(relay, pairing.as_ref()) {
        (Some(url), Some(phone_id)) => Ok(Some((link_state, url, phone_id))),
        _ if link_state == LINK_UNKNOWN => Err(LinkUnknown(why.to_string())),
        _ => Ok(None),
    }
}

#[utoipa::path(get, path = "/api/v1/relay", tag = "relay",
    responses(
        (status = 200, description = "The relay link", body = RelayLinkView),
        (status = 400, description = "A query parameter was given; this endpoint takes none", body = ErrorBody),
        (status = 404, description = "No relay configured or paired", body = ErrorBody),
        (status = 503, description = "A relay known only from its pairing, which cannot be read now",
            body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
    ),
    security(("bearer" = [])))]
pub async fn get_link(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<NoParameters>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RelayLinkView>, ApiError> {
    caller.require(Scope::Read)?;
    // A `phone_id` filter, say, is refused, not ignored: a caller that
    // believed it filtered would take another phone's link for its own.
    query.map_err(query_error)?;
    // A key bound to another phone_id sees no link, as it sees none of
    // that phone's messages.
    let bound = caller.phone_scope();
    let none = || ApiError::not_found("relay link (none configured or paired)");
    // A phone_id in the config is the link's whatever the pairing says:
    // another phone's key is answered before the pairing is read, so a
    // pairing that cannot be read now tells it nothing either.
    let configured = state.config.config.relay.phone_id.as_ref();
    if let (Some(bound), Some(configured)) = (&bound, configured)
        && bound != configured
    {
        return Err(none());
    }
    let view = link_view(&state)
        .await
        .map_err(|LinkUnknown(reason)| ApiError::store_unavailable(reason))?;
    view.filter(|view| {
        bound
            .as_ref()
            .is_none_or(|phone_id| *phone_id == view.phone_id)
    })
    .map(Json)
    .ok_or_else(none)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RelayInboundView {
    pub message: InboundView,
    /// `pending`, `delivered`, `dead` or `other_phone`.
    pub state: RelayInboundState,
    pub attempts: u32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<String>,
    /// The pChat address it was routed to.
    pub to: Option<String>,
    /// `reply`, `recent` or `default`; `manual` when sent to an address
    /// given on retry.
    pub route: Option<String>,
    /// Why it is dead, or the last failed attempt.
    pub error: Option<super::dto::ErrorInfo>,
}

impl From<&RelayInbound> for RelayInboundView {
    fn from(r: &RelayInbound) -> Self {
        RelayInboundView {
            message: InboundView::from(&r.inbound),
            state: r.state,
            attempts: r.attempts,
            next_attempt_at: (r.state == RelayInboundState::Pending && r.next_attempt_at_ms > 0)
                .then(|| rfc3339(r.next_attempt_at_ms)),
            to: r.to.clone(),
            route: r.route.clone(),
            error: r.error_code.as_ref().map(|code| super::dto::ErrorInfo {
                code: code.clone(),
                message: r.error.clone().unwrap_or_default(),
            }),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RelayInboundPage {
    pub messages: Vec<RelayInboundView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RelayInboundQuery {
    /// `pending`, `delivered`, `dead` or `other_phone` (default `dead`).
    #[param(value_type = Option<RelayInboundState>)]
    pub state: Option<String>,
    pub phone_id: Option<String>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of this list's previous page. A cursor of another
    /// list, or one handed out before the bridge was upgraded, is refused
    /// (400 `invalid_query`, field `cursor`): start from the first page.
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

// Named apart from `inbound::list_inbound`: operation ids are unique in a
// document, and links (`openapi::LINKS`) name their target by id.
#[utoipa::path(get, path = "/api/v1/relay/inbound", tag = "relay", params(RelayInboundQuery),
    operation_id = "list_relay_inbound",
    responses(
        (status = 200, description = "Newest first", body = RelayInboundPage),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list_inbound(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<RelayInboundQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RelayInboundPage>, ApiError> {
    caller.require(Scope::Read)?;
    let Query(q) = query.map_err(query_error)?;
    let limit = page_limit(q.limit)?;
    let wanted = q
        .state
        .as_deref()
        .unwrap_or("dead")
        .parse::<RelayInboundState>()
        .map_err(|e| bad_query("state", e))?;
    let records = state
        .store
        .list_relay_inbound(
            wanted,
            scoped_phone(&caller, q.phone_id)?,
            CursorList::RelayInbound.decode(q.cursor)?,
            limit + 1,
        )
        .await?;
    let (records, next_cursor) =
        CursorList::RelayInbound.split_page(records, limit, |r| r.inbound.seq);
    Ok(Json(RelayInboundPage {
        messages: records.iter().map(RelayInboundView::from).collect(),
        next_cursor,
    }))
}

/// What a manual retry may say; the body may be left out.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// Send the message to this pChat address instead (`origin.route`
    /// `manual`), whatever address it had or routing would find. Absent:
    /// a dead letter the relay refused keeps its address, and one that had
    /// no route (`no_route`) is routed again.
    #[serde(default)]
    #[schema(schema_with = super::openapi::source_address)]
    pub to: Option<String>,
}

/// What a manual retry answers: the whole message to a key that may read
/// it, else only its id and state (a key that may only send learns
/// nothing of a message's content through a retry, as through a cancel).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum RetryAnswer {
    /// To a key with the `read` scope.
    Full(Box<RelayInboundView>),
    /// To a key without it.
    Brief(RetriedBrief),
}

/// Only the id and state; the schema takes nothing more.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetriedBrief {
    pub id: String,
    pub state: RelayInboundState,
}

impl RetryAnswer {
    fn for_key(record: &RelayInbound, may_read: bool) -> Self {
        if may_read {
            RetryAnswer::Full(Box::new(RelayInboundView::from(record)))
        } else {
            RetryAnswer::Brief(RetriedBrief {
                id: record.inbound.id.clone(),
                state: record.state,
            })
        }
    }
}

#[utoipa::path(post, path = "/api/v1/inbound/{id}/retry", tag = "relay",
    params(("id" = String, Path, description = "Inbound message id")),
    request_body(content = Option<RetryRequest>, content_type = "application/json",
        description = "Optional: a pChat address to send the message to instead"),
    responses(
        (status = 200, description = "Queued for the relay again: the whole message to a key that may read, else its id and state", body = RetryAnswer),
        (status = 404, description = "No such inbound message", body = ErrorBody),
        (status = 409, description = "Not a dead letter", body = ErrorBody),
        (status = 422, description = "`to` is not a pChat address (field `to`); nothing changed",
            body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn retry_inbound(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    Sender {
        caller,
        body: OptionalJsonBody(request),
    }: Sender<OptionalJsonBody<RetryRequest>>,
) -> Result<Json<RetryAnswer>, ApiError> {
    let to = request.unwrap_or_default().to;
    if let Some(to) = &to {
        validate_address(ChannelKind::Pchat, to).map_err(|e| ApiError::invalid("to", e.message))?;
    }
    let visible = |r: &RelayInbound| caller.phone_scope().is_none_or(|p| p == r.inbound.phone_id);
    match state.store.get_relay_inbound(&id).await? {
        Some(r) if visible(&r) => {}
        _ => return Err(ApiError::not_found("inbound message")),
    }
    match state
        .store
        .retry_relay_inbound(&id, now_ms(), to.as_deref())
        .await?
    {
        // Answered from what the retry's own transaction read: a read
        // after the commit could fail, and its 503 says nothing changed.
        ManualRetry::Requeued(record) => {
            // The forwarder may be sleeping until a held conversation is due.
            state.inbound_bell.notify_one();
            Ok(Json(RetryAnswer::for_key(
                &record,
                caller.0.allows(Scope::Read),
            )))
        }
        ManualRetry::NotFound => Err(ApiError::not_found("inbound message")),
        ManualRetry::NotDead(current) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_dead",
            format!(
                "the message is {}; only dead letters and messages set aside \
                     (other_phone) can be retried",
                current.as_str()
            ),
        )),
    }
}

/// Which dead letters a bulk retry takes: those every field given
/// matches; `{}` takes them all.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryDeadRequest {
    /// Only those the relay refused with this error code, as the list
    /// shows it (`relay_http_422`, `no_route`).
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub code: Option<String>,
    /// Only those made dead letters at or after this RFC 3339 time: a
    /// relay's bad spell is known by when it refused, not when they came.
    #[schema(format = DateTime)]
    pub since: Option<String>,
    /// Only those that came on this channel.
    #[schema(schema_with = super::openapi::channel_name_or_null)]
    pub channel: Option<String>,
    /// Only those that came to this phone_id; a key bound to a phone
    /// takes its own only, and naming another is refused (403).
    pub phone_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RetryDeadAnswer {
    /// The ids queued for the relay again, oldest first; each goes under
    /// its own next Idempotency-Key, as a retry by its id would.
    pub requeued: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/relay/inbound/retry", tag = "relay",
    request_body(content = RetryDeadRequest, content_type = "application/json",
        description = "Filters; `{}` for every dead letter"),
    responses(
        (status = 200, description = "Queued for the relay again, in one transaction (none matching is no error: an empty list)", body = RetryDeadAnswer),
        (status = 422, description = "A filter is invalid (the field is named); nothing changed", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn retry_dead_letters(
    State(state): State<AppState>,
    Sender {
        caller,
        body: JsonBody { value: request, .. },
    }: Sender<JsonBody<RetryDeadRequest>>,
) -> Result<Json<RetryDeadAnswer>, ApiError> {
    let filter = dead_letter_filter(&caller, request)?;
    let requeued = state
        .store
        .retry_dead_relay_inbound(filter, now_ms())
        .await?;
    if !requeued.is_empty() {
        // The forwarder may be sleeping until a held conversation is due.
        state.inbound_bell.notify_one();
    }
    Ok(Json(RetryDeadAnswer { requeued }))
}

/// The store's filter from a request, each field judged alone.
fn dead_letter_filter(
    caller: &Caller,
    request: RetryDeadRequest,
) -> Result<DeadLetterFilter, ApiError> {
    if let Some(code) = &request.code
        && !DeadLetterFilter::is_error_code(code)
    {
        return Err(ApiError::invalid(
            "code",
            "not an error code as the dead letters carry them (lower-case letters, digits \
             and _, like relay_http_422 or no_route)",
        ));
    }
    let since_ms = request
        .since
        .as_deref()
        .map(|since| {
            parse_rfc3339(since)
                .ok_or_else(|| ApiError::invalid("since", "must be an RFC 3339 time"))
        })
        .transpose()?;
    let channel = request
        .channel
        .as_deref()
        .map(|channel| {
            channel
                .parse::<ChannelKind>()
                .ok()
                .filter(|kind| ChannelKind::DELIVERABLE.contains(kind))
                .ok_or_else(|| {
                    ApiError::invalid("channel", "not a channel: sms, wa, tg, email or notify")
                })
        })
        .transpose()?;
    Ok(DeadLetterFilter {
        code: request.code,
        since_ms,
        channel,
        phone_id: scoped_phone(caller, request.phone_id)?,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::testing::{ReadsFailAfterCommit, received_sms};
    use crate::store::{RelayInboundOutcome, SqliteStore, Store};

    /// An inbound message committed to `store` and made a dead letter (no
    /// route); as committed.
    async fn dead_letter_in(store: &dyn Store) -> crate::store::InboundCommit {
        let now = now_ms();
        let committed = store
            .commit_inbound(received_sms("ext-1", now), now)
            .await
            .unwrap();
        let dead = RelayInboundOutcome::Dead {
            to: None,
            route: None,
            code: "no_route".into(),
            reason: "no conversation to reply to".into(),
            now_ms: now,
        };
        store
            .record_relay_inbound(&committed.id, dead)
            .await
            .unwrap();
        committed
    }

    /// A dead letter put back in the queue is answered as pending though
    /// the store cannot be read once the retry committed (as a cancel).
    #[tokio::test]
    async fn a_committed_retry_is_answered_though_the_store_cannot_be_read_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        let store = Arc::new(ReadsFailAfterCommit::new(sqlite));
        let committed = dead_letter_in(&*store).await;
        let state = AppState::over(store.clone());
        let caller = Caller::with(vec![Scope::Send, Scope::Read], None);
        let Json(answer) = retry_inbound(
            State(state),
            ApiPath(committed.id.clone()),
            Sender {
                caller,
                body: OptionalJsonBody(None),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{} {}: {}", e.status, e.code, e.message));
        let RetryAnswer::Full(view) = answer else {
            panic!("a key that may read gets the whole message: {answer:?}")
        };
        assert_eq!(view.state, RelayInboundState::Pending);
        assert!(
            store.get_relay_inbound(&committed.id).await.is_err(),
            "reads fail now"
        );
        let stored = store
            .inner()
            .get_relay_inbound(&committed.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.state, RelayInboundState::Pending);
    }

    /// A key that may send but not read is answered only the id and state
    /// of the message it retried: the sender, text and files are for keys
    /// that may read inbound, as a cancel's answer is.
    #[tokio::test]
    async fn a_send_only_key_learns_nothing_of_the_message_it_retried() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap());
        let committed = dead_letter_in(&*store).await;
        let Json(answer) = retry_inbound(
            State(AppState::over(store.clone())),
            ApiPath(committed.id.clone()),
            Sender {
                caller: Caller::with(vec![Scope::Send], None),
                body: OptionalJsonBody(None),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{} {}: {}", e.status, e.code, e.message));
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": committed.id, "state": "pending"})
        );
    }
}
