//! Get in the daemon's way from a connection of the test's own: make its
//! reads of one table fail (the table renamed away, and back), or hold the
//! write lock it commits under.

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

/// Take the database's write lock from another connection, as another
/// process would, and hold it for `hold` on a thread of its own; returns
/// once the lock is taken. The daemon's next commit waits for it.
pub fn hold_write_lock(db: std::path::PathBuf, hold: Duration) -> std::thread::JoinHandle<()> {
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(hold);
        conn.execute_batch("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();
    holder
}
