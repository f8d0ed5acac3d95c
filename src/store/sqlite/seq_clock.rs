//! Where the next outbound `seq` comes from (`store::message_id`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use rusqlite::Connection;

use crate::store::StoreResult;
use crate::store::message_id::next_seq;

/// The highest outbound `seq` given out. Only the writer thread takes
/// seqs, inside the transaction that inserts the row, so they follow commit
/// order; a group that is rolled back leaves a gap, never a repeat.
///
/// Architecture Invariant: while a store is open, only its writer inserts
/// outbound rows (restoring a backup refuses while the daemon runs), so
/// this counter, read from the table once at open, stays ahead of it.
#[derive(Clone)]
pub struct SeqClock(Arc<AtomicI64>);

impl SeqClock {
    /// Start after the highest `seq` in the table.
    pub fn load(conn: &Connection) -> StoreResult<Self> {
        let last: Option<i64> =
            conn.query_row("SELECT MAX(seq) FROM outbound", [], |row| row.get(0))?;
        Ok(Self(Arc::new(AtomicI64::new(last.unwrap_or(0)))))
    }

    /// The next `seq`, no earlier than `now_ms` allows.
    pub fn next(&self, now_ms: i64) -> i64 {
        let seq = next_seq(self.0.load(Ordering::Relaxed), now_ms);
        self.0.store(seq, Ordering::Relaxed);
        seq
    }
}
