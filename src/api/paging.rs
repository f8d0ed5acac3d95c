//! Cursor paging shared by the list endpoints: newest first, the cursor is
//! the last row's sequence number, opaque to clients.

use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;

use super::error::ApiError;

pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 500;

pub fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        n @ 1..=MAX_PAGE => Ok(n),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("limit must be 1 to {MAX_PAGE}"),
        )
        .field("limit")),
    }
}

pub fn encode_cursor(seq: i64) -> String {
    format!("c{seq}")
}

pub fn decode_cursor(cursor: Option<String>) -> Result<Option<i64>, ApiError> {
    cursor
        .map(|c| {
            c.strip_prefix('c')
                .and_then(|n| n.parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_query",
                        "not a cursor from this API",
                    )
                    .field("cursor")
                })
        })
        .transpose()
}

pub fn query_error(rejection: QueryRejection) -> ApiError {
    let text = rejection.body_text();
    let field = text.split('`').nth(1).map(str::to_string).or_else(|| {
        text.split("field ")
            .nth(1)
            .map(|s| s.trim_matches('`').to_string())
    });
    let mut error = ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", text);
    error.field = field;
    error
}
