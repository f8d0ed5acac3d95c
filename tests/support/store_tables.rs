//! Make the daemon's reads of one table fail, from a connection of the
//! test's own: the table is renamed away, and back.

use std::path::Path;
use std::time::Duration;

/// Hide (rename to `<table>_hidden`) or restore `table` in the store at
/// `db`; the daemon's next read of it fails with "no such table".
pub fn set_table_hidden(db: &Path, table: &str, hidden: bool) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let hidden_name = format!("{table}_hidden");
    let (from, to) = if hidden {
        (table, hidden_name.as_str())
    } else {
        (hidden_name.as_str(), table)
    };
    conn.execute_batch(&format!("ALTER TABLE {from} RENAME TO {to}"))
        .unwrap();
}
