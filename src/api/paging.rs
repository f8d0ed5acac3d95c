//! Cursor paging shared by the list endpoints: newest first, the cursor is
//! the list's name and the last row's sequence number, sealed: the number
//! is enciphered with a key of this daemon run and signed, so a client
//! (a key bound to one phone, say) cannot read from two of its cursors how
//! many rows other phones added in between, nor forge one. A cursor from
//! before the daemon's restart is refused, and the client starts again
//! from the first page.

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
        let sealed = seal::encipher(self.prefix(), seq as u64);
        let tag = seal::tag(self.prefix(), &sealed);
        format!(
            "{}{}{}",
            self.prefix(),
            hex::encode(sealed),
            hex::encode(tag)
        )
    }

    /// The sequence number `cursor` pages before, if it is one this list
    /// handed out in this daemon run: its prefix, then the enciphered
    /// number and its tag as the list writes them (lower-case hex), the
    /// number 1 or more.
    pub fn decode(self, cursor: Option<String>) -> Result<Option<i64>, ApiError> {
        cursor
            .map(|c| {
                c.strip_prefix(self.prefix())
                    .and_then(|rest| self.unseal(rest))
                    .ok_or_else(|| self.not_ours())
            })
            .transpose()
    }

    fn unseal(self, rest: &str) -> Option<i64> {
        let lower_hex = rest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if rest.len() != 2 * (seal::SEALED + seal::TAG) || !lower_hex {
            return None;
        }
        let bytes = hex::decode(rest).ok()?;
        let (sealed, tag) = bytes.split_at(seal::SEALED);
        let sealed: [u8; seal::SEALED] = sealed.try_into().ok()?;
        if seal::tag(self.prefix(), &sealed)[..] != *tag {
            return None;
        }
        let seq = i64::try_from(seal::decipher(self.prefix(), sealed)).ok()?;
        (seq >= 1).then_some(seq)
    }

    fn not_ours(self) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "not a cursor of this list: pass the next_cursor of this same list's previous page \
             (a cursor of another list, or from before the daemon restarted, is refused: start \
             again from the first page)",
        )
        .field("cursor")
    }
}

/// The cursor's seal: a four-round Feistel cipher over the 64-bit number,
/// its round function SHA-256 under a key drawn at the daemon's start, and
/// a tag of the enciphered bytes under the same key. Cursors of rows next
/// to each other look unrelated, and none can be made up.
mod seal {
    use sha2::{Digest, Sha256};

    pub const SEALED: usize = 8;
    pub const TAG: usize = 8;

    fn key() -> &'static [u8; 32] {
        static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
        KEY.get_or_init(rand::random)
    }

    fn hash(parts: &[&[u8]]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(key());
        for part in parts {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        hasher.finalize().into()
    }

    fn round(list: &str, round: u8, half: u32) -> u32 {
        let h = hash(&[list.as_bytes(), &[round], &half.to_be_bytes()]);
        u32::from_be_bytes([h[0], h[1], h[2], h[3]])
    }

    pub fn encipher(list: &str, number: u64) -> [u8; SEALED] {
        let (mut left, mut right) = ((number >> 32) as u32, number as u32);
        for r in 0..4 {
            (left, right) = (right, left ^ round(list, r, right));
        }
        ((u64::from(left) << 32) | u64::from(right)).to_be_bytes()
    }

    pub fn decipher(list: &str, sealed: [u8; SEALED]) -> u64 {
        let number = u64::from_be_bytes(sealed);
        let (mut left, mut right) = ((number >> 32) as u32, number as u32);
        for r in (0..4).rev() {
            (left, right) = (right ^ round(list, r, left), left);
        }
        (u64::from(left) << 32) | u64::from(right)
    }

    pub fn tag(list: &str, sealed: &[u8; SEALED]) -> [u8; TAG] {
        let h = hash(&[b"tag", list.as_bytes(), sealed]);
        h[..TAG].try_into().expect("a hash is longer than a tag")
    }
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

    /// Only a cursor this list sealed is read: not a plain number (as
    /// cursors were), one with a byte changed, its hex in upper case, cut
    /// short, or the seal of 0.
    #[test]
    fn a_cursor_is_read_only_as_this_list_sealed_it() {
        let list = CursorList::Messages;
        let good = list.encode(41);
        let rest = good.strip_prefix("msg-").unwrap();
        let flipped = format!(
            "msg-{}{}",
            if rest.starts_with('0') { '1' } else { '0' },
            &rest[1..]
        );
        for bad in [
            "msg-41".to_string(),
            "msg-".to_string(),
            "c41".to_string(),
            flipped,
            format!("msg-{}", rest.to_uppercase()),
            good[..good.len() - 2].to_string(),
            list.encode(0),
        ] {
            let refused = list.decode(Some(bad.clone())).unwrap_err();
            assert_eq!(
                (refused.code, refused.field.as_deref()),
                ("invalid_query", Some("cursor")),
                "{bad}"
            );
        }
        assert_eq!(list.decode(Some(good)).unwrap(), Some(41));
        assert_eq!(list.decode(None).unwrap(), None);
    }

    /// Cursors of rows next to each other (a phone-bound key's own rows,
    /// with others' in between) tell nothing of how far apart the rows
    /// are: they share no long run, and the numbers do not show.
    #[test]
    fn cursors_of_neighbouring_rows_look_unrelated() {
        let list = CursorList::Inbound;
        for seq in [1_i64, 41, 1 << 40, i64::MAX] {
            assert_eq!(list.decode(Some(list.encode(seq))).unwrap(), Some(seq));
        }
        let (a, b) = (list.encode(1_000_000), list.encode(1_000_001));
        let same = a
            .bytes()
            .zip(b.bytes())
            .skip(3)
            .filter(|(x, y)| x == y)
            .count();
        assert!(same < 12, "{a} {b}");
        assert!(!a.contains("1000000"), "{a}");
    }
}
