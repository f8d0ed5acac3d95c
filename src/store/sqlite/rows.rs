//! Row <-> model conversions shared by the table modules.

use phonerelay_channel::{Attachment, ChannelKind};
use rusqlite::Row;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};

use crate::store::{OutboundRecord, OutboundStatus, StoreError};

/// The WHERE term of the partial `outbound_claim` index (migration 5). A
/// query reaches that index only if it contains this term word for word.
macro_rules! live {
    () => {
        "status IN ('queued', 'sending')"
    };
}
pub(crate) use live;

/// The WHERE term of the partial `outbound_ended` index (migration 7):
/// every status but the two live ones. Two constants, not the six ended
/// statuses, because SQLite builds a temporary B-tree for a longer IN
/// list each time a statement that tests it runs.
macro_rules! ended {
    () => {
        "status NOT IN ('queued', 'sending')"
    };
}
pub(crate) use ended;

/// The WHERE term of the partial `outbound_id_before_v9` index (migration
/// 9): the rows of messages accepted before ids named their `seq`
/// (`message_id::LEGACY_SEQ_LIMIT`, 2^32).
macro_rules! before_v9 {
    () => {
        "seq < 4294967296"
    };
}
pub(crate) use before_v9;

pub struct Kind(pub ChannelKind);

impl FromSql for Kind {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        text.parse()
            .map(Kind)
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

pub struct Status(pub OutboundStatus);

impl FromSql for Status {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        text.parse()
            .map(Status)
            .map_err(|e: String| FromSqlError::Other(Box::new(std::io::Error::other(e))))
    }
}

pub fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Database(e.to_string()))
}

pub fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Columns read by [`outbound_from_row`], in order.
/// The columns `outbound_from_row` reads, as a literal for `concat!`.
macro_rules! outbound_columns {
    () => {
        "seq, id, phone_id, channel, recipient, body, subject, source, \
     attachments, reply_to, reply_to_external_id, priority, status, attempts, created_at, \
     updated_at, expires_at, next_attempt_at, error_code, error_message, options"
    };
}
pub(crate) use outbound_columns;

pub const OUTBOUND_COLUMNS: &str = outbound_columns!();
/// How many columns [`OUTBOUND_COLUMNS`] names: the index of a column a
/// query selects after them.
pub const OUTBOUND_COLUMN_COUNT: usize = 21;

#[test]
fn the_column_count_is_the_columns_named() {
    assert_eq!(OUTBOUND_COLUMNS.split(',').count(), OUTBOUND_COLUMN_COUNT);
}

pub fn outbound_from_row(row: &Row<'_>) -> rusqlite::Result<OutboundRecord> {
    let attachments: String = row.get(8)?;
    Ok(OutboundRecord {
        seq: row.get(0)?,
        id: row.get(1)?,
        phone_id: row.get(2)?,
        channel: row.get::<_, Kind>(3)?.0,
        to: row.get(4)?,
        text: row.get(5)?,
        subject: row.get(6)?,
        source: row.get(7)?,
        attachments: from_json::<Vec<Attachment>>(&attachments)?,
        reply_to: row.get(9)?,
        reply_to_external_id: row.get(10)?,
        priority: row.get(11)?,
        status: row.get::<_, Status>(12)?.0,
        attempts: row.get(13)?,
        created_at_ms: row.get(14)?,
        updated_at_ms: row.get(15)?,
        expires_at_ms: row.get(16)?,
        next_attempt_at_ms: row.get(17)?,
        error_code: row.get(18)?,
        error_message: row.get(19)?,
        options: row
            .get::<_, Option<String>>(20)?
            .map(|text| from_json(&text))
            .transpose()?,
        external_ids: Vec::new(),
    })
}
