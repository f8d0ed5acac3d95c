//! `GET /api/v1/media/{id}`: a file the bridge keeps for an inbound
//! message (an attachment's `url` names it), streamed from the store.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::path::ApiPath;
use super::state::AppState;
use crate::media::percent_encode;
use crate::media_chunks::{ReadFailure, chunks};
use crate::store::{MediaContent, MediaReader, MediaRecord, Scope};

/// A kept file's bytes, as they were received.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct MediaBytes(#[allow(dead_code)] Vec<u8>);

#[utoipa::path(
    get, path = "/api/v1/media/{id}", tag = "inbound",
    params(("id" = String, Path, description = "The media id: the last segment of an inbound attachment's url")),
    responses(
        // `*/*`: the file is served with the type its channel gave it
        // (image/jpeg, audio/ogg, ...), which no one media type covers.
        (status = 200, description = "The file as it was received, served with the type the channel gave it (see Content-Type)", body = MediaBytes,
            content_type = "*/*",
            headers(
                ("Content-Type" = String, description = "The file's type as the channel gave it; application/octet-stream when it gave none"),
                ("Content-Length" = u64, description = "The file's size in bytes"),
                ("Content-Disposition" = String, description = "attachment, with filename*=UTF-8''… when the file's name is known"),
                ("X-Content-Type-Options" = String, description = "nosniff"),
            )),
        (status = 404, description = "No such file (or another phone's, to a key bound to a phone_id)", body = ErrorBody),
        (status = 410, description = "The file is no longer kept (`media_gone`): a store restored from a backup, which holds no files", body = ErrorBody),
        (status = 500, description = "The file is kept but cannot be read (`media_unreadable`: its permissions, a bad sector); the bridge's log says why", body = ErrorBody),
        (status = 503, description = "The store cannot be read, or the file cannot be opened for now (out of file handles or memory): `store_unavailable`, with `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_media(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Read)?;
    // Another phone's file is answered as one that does not exist.
    let visible = |r: &MediaRecord| caller.phone_scope().is_none_or(|p| p == r.phone_id);
    let opened = match state.store.open_media(&id).await {
        Ok(opened) => opened,
        // Said only to a key that may see the file: to another phone's,
        // a 503 for this id and a 404 for others would tell it exists.
        Err(e) => {
            return match state.store.get_media(&id).await {
                Ok(Some(record)) if !visible(&record) => Err(ApiError::not_found("media")),
                Ok(None) => Err(ApiError::not_found("media")),
                _ => Err(e.into()),
            };
        }
    };
    match opened {
        MediaContent::Found(record, reader) if visible(&record) => Ok(file(&record, reader)),
        // Not the store's failure, and not one a retry mends: the file
        // waits for an operator, whom the log tells which one and why.
        MediaContent::Unreadable(record, why) if visible(&record) => {
            // Asked again at every request while it stays so: at most
            // once a minute, with the count held back.
            static LOG: crate::logging::SharedThrottle =
                crate::logging::SharedThrottle::new(crate::logging::REPEATED_FAILURE_LOG_EVERY);
            if let Some(unlogged) = LOG.allow() {
                tracing::error!(media_id = %record.id, error = %why,
                    requests_since_last_logged = unlogged, "a kept file cannot be read");
            }
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "media_unreadable",
                "the bridge keeps this file but cannot read it; its log says why",
            ))
        }
        MediaContent::Gone(record) if visible(&record) => Err(ApiError::new(
            StatusCode::GONE,
            "media_gone",
            "the bridge no longer has this file (its store was restored from a backup, which holds no files)",
        )),
        _ => Err(ApiError::not_found("media")),
    }
}

fn file(record: &MediaRecord, reader: MediaReader) -> Response {
    let content_type = record
        .content_type
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let disposition = match &record.filename {
        Some(name) => format!("attachment; filename*=UTF-8''{}", percent_encode(name)),
        None => "attachment".to_string(),
    };
    // A read error ends the answer short of its Content-Length, which the
    // client sees as a broken transfer; it is logged as it happens.
    let mut response = Body::from_stream(chunks(reader, ReadFailure::default())).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, record.size.into());
    if let Ok(disposition) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    // A browser must not take an uploaded file for a page of this API.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
