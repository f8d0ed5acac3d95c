//! Cursor paging shared by the list endpoints: newest first, the cursor is
//! the list's name and the last row's sequence number, opaque to clients.

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

/// The lists that page with a cursor. Each cursor names its list by a
/// prefix of its own, so that one list's cursor given to another (an
/// inbound cursor to the outbox list, whose rows have other sequence
/// numbers) is refused rather than answered with a page that looks like
/// the end of the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorList {
    /// `/api/v1/messages`.
    Messages,
    /// `/api/v1/inbound`.
    Inbound,
    /// `/api/v1/inbound/unreadable`.
    Unreadable,
    /// `/api/v1/relay/inbound`.
    RelayInbound,
}

impl CursorList {
    /// What every cursor of this list starts with. None is a prefix of
    /// another, and none is the `c` cursors of earlier versions began
    /// with: those were short-lived, and are refused.
    fn prefix(self) -> &'static str {
        match self {
            CursorList::Messages => "msg-",
            CursorList::Inbound => "in-",
            CursorList::Unreadable => "unr-",
            CursorList::RelayInbound => "rly-",
        }
    }

    /// The store was asked for `limit + 1` rows: keep `limit` and, if
    /// there was one more, this list's cursor of the page after.
    pub fn split_page<R>(
        self,
        mut rows: Vec<R>,
        limit: u32,
        seq: impl Fn(&R) -> i64,
    ) -> (Vec<R>, Option<String>) {
        if rows.len() <= limit as usize {
            return (rows, None);
        }
        rows.truncate(limit as usize);
        let cursor = rows.last().map(|r| self.encode(seq(r)));
        (rows, cursor)
    }

    pub fn encode(self, seq: i64) -> String {
        format!("{}{seq}", self.prefix())
    }

    /// The sequence number `cursor` pages before, if it is one this list
    /// handed out: its prefix, then a sequence number as the list writes
    /// it (digits only, no sign, no leading zero, 1 or more), so that no
    /// two spellings name one page.
    pub fn decode(self, cursor: Option<String>) -> Result<Option<i64>, ApiError> {
        cursor
            .map(|c| {
                c.strip_prefix(self.prefix())
                    .and_then(canonical_seq)
                    .ok_or_else(|| self.not_ours())
            })
            .transpose()
    }

    fn not_ours(self) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "not a cursor of this list: pass the next_cursor of this same list's previous page \
             (a cursor of another list, or from before the bridge was upgraded, is refused)",
        )
        .field("cursor")
    }
}

/// `digits` as a sequence number, if written as one is written: ASCII
/// digits without sign or leading zero, 1 or more.
fn canonical_seq(digits: &str) -> Option<i64> {
    let plain = !digits.is_empty()
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit());
    plain.then(|| digits.parse::<i64>().ok()).flatten()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_is_read_back_by_its_own_list_only() {
        for list in [
            CursorList::Messages,
            CursorList::Inbound,
            CursorList::Unreadable,
            CursorList::RelayInbound,
        ] {
            let cursor = list.encode(41);
            assert_eq!(list.decode(Some(cursor.clone())).unwrap(), Some(41));
            for other in [
                CursorList::Messages,
                CursorList::Inbound,
                CursorList::Unreadable,
                CursorList::RelayInbound,
            ] {
                if other != list {
                    let refused = other.decode(Some(cursor.clone())).unwrap_err();
                    assert_eq!(refused.field.as_deref(), Some("cursor"), "{cursor}");
                }
            }
        }
    }

    #[test]
    fn a_cursor_is_one_spelling_of_a_sequence_number_of_1_or_more() {
        let list = CursorList::Messages;
        for bad in [
            "msg-0", "msg--5", "msg-+41", "msg-0041", "msg-", "msg-4a", "c41", "msg- 4",
        ] {
            let refused = list.decode(Some(bad.into())).unwrap_err();
            assert_eq!(
                (refused.code, refused.field.as_deref()),
                ("invalid_query", Some("cursor")),
                "{bad}"
            );
        }
        assert_eq!(list.decode(Some("msg-1".into())).unwrap(), Some(1));
        assert_eq!(list.decode(None).unwrap(), None);
    }
}
