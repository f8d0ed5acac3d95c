//! `/api/v1/inbound`: what arrived on the channels, newest first.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Caller;
use super::dto::{InboundPage, InboundView};
use super::error::{ApiError, ErrorBody};
use super::messages::{parse_channel, parse_since, scoped_phone};
use super::paging::{CursorList, page_limit, query_error};
use super::path::ApiPath;
use super::state::AppState;
use crate::store::{InboundFilter, Scope};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InboundQuery {
    #[param(schema_with = super::openapi::channel_name)]
    pub channel: Option<String>,
    pub phone_id: Option<String>,
    /// RFC 3339; only messages committed at or after it.
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

/// What a read key asks of a list shaped as the inbound one (`list`'s
/// cursors): the store's filter, one more than the page for its next
/// cursor, and the page's size.
pub(super) fn page_asked(
    caller: &Caller,
    query: Result<Query<InboundQuery>, axum::extract::rejection::QueryRejection>,
    list: CursorList,
) -> Result<(InboundFilter, u32), ApiError> {
    caller.require(Scope::Read)?;
    let Query(q) = query.map_err(query_error)?;
    let limit = page_limit(q.limit)?;
    let filter = InboundFilter {
        channel: parse_channel(q.channel)?,
        phone_id: scoped_phone(caller, q.phone_id)?,
        since_ms: parse_since(q.since)?,
        before_seq: list.decode(q.cursor)?,
        limit: limit + 1,
    };
    Ok((filter, limit))
}

#[utoipa::path(
    get, path = "/api/v1/inbound", tag = "inbound", params(InboundQuery),
    responses(
        (status = 200, description = "Newest first", body = InboundPage),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_inbound(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<InboundQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<InboundPage>, ApiError> {
    let (filter, limit) = page_asked(&caller, query, CursorList::Inbound)?;
    let records = state.store.list_inbound(filter).await?;
    let (records, next_cursor) = CursorList::Inbound.split_page(records, limit, |r| r.seq);
    Ok(Json(InboundPage {
        messages: records.iter().map(InboundView::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(
    get, path = "/api/v1/inbound/{id}", tag = "inbound",
    params(("id" = String, Path, description = "Inbound message id")),
    responses(
        (status = 200, body = InboundView),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_inbound(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<InboundView>, ApiError> {
    caller.require(Scope::Read)?;
    match state.store.get_inbound(&id).await? {
        Some(r) if caller.phone_scope().is_none_or(|p| p == r.phone_id) => {
            Ok(Json(InboundView::from(&r)))
        }
        _ => Err(ApiError::not_found("inbound message")),
    }
}
