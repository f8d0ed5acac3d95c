//! `/api/v1/inbound/unreadable`: what arrived on the channels and could not
//! be read (an SMS PDU the codec cannot decode), kept as it came, newest
//! first, for a human to look at.

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::inbound::{InboundQuery, page_asked};
use super::paging::CursorList;
use super::state::AppState;
use crate::clock::rfc3339;
use crate::store::UnreadableRecord;

/// Something received that its channel could not read.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UnreadableView {
    pub id: String,
    pub channel: String,
    pub phone_id: String,
    /// What was received, as received, in hex: for SMS the PDU as the
    /// modem gave it (`phonerelay pdu decode HEX` says what it makes of
    /// it), or the line's bytes when it was no hex at all.
    pub raw_hex: String,
    /// Where it came from: a SIM slot (`SM:3`), `+CMT` or `+CDS` for one
    /// the modem handed over without storing it.
    pub origin: String,
    /// Why the channel could not read it.
    pub reason: String,
    pub received_at: String,
    pub committed_at: String,
}

impl From<&UnreadableRecord> for UnreadableView {
    fn from(r: &UnreadableRecord) -> Self {
        UnreadableView {
            id: r.id.clone(),
            channel: r.channel.to_string(),
            phone_id: r.phone_id.clone(),
            raw_hex: hex::encode_upper(&r.raw),
            origin: r.origin.clone(),
            reason: r.reason.clone(),
            received_at: rfc3339(r.received_at_ms),
            committed_at: rfc3339(r.committed_at_ms),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UnreadablePage {
    pub items: Vec<UnreadableView>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get, path = "/api/v1/inbound/unreadable", tag = "inbound", params(InboundQuery),
    responses(
        (status = 200, description = "Newest first", body = UnreadablePage),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_unreadable(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<InboundQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<UnreadablePage>, ApiError> {
    let (filter, limit) = page_asked(&caller, query, CursorList::Unreadable)?;
    let records = state.store.list_unreadable(filter).await?;
    let (records, next_cursor) = CursorList::Unreadable.split_page(records, limit, |r| r.seq);
    Ok(Json(UnreadablePage {
        items: records.iter().map(UnreadableView::from).collect(),
        next_cursor,
    }))
}
