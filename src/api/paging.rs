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

/// The store was asked for `limit + 1` rows: keep `limit` and, if there
/// was one more, the cursor of the page after.
pub fn split_page<R>(
    mut rows: Vec<R>,
    limit: u32,
    seq: impl Fn(&R) -> i64,
) -> (Vec<R>, Option<String>) {
    if rows.len() <= limit as usize {
        return (rows, None);
    }
    rows.truncate(limit as usize);
    let cursor = rows.last().map(|r| encode_cursor(seq(r)));
    (rows, cursor)
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
    let detail = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    // "unknown field `x`, expected ...", "duplicate field `limit`" (a
    // parameter given twice) or "limit: invalid digit ...".
    let named = ["unknown field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| detail.strip_prefix(prefix));
    let field = match named {
        Some(rest) => rest.split('`').next().map(str::to_string),
        None => detail.split_once(": ").map(|(field, _)| field.to_string()),
    };
    let mut error = ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", detail);
    error.field = field;
    error
}
