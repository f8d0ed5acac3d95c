//! Failures that repeat at every request while the store stays broken
//! are logged when they start and then once a minute, not once per
//! request. A binary of its own: the throttles are the process's, and
//! another test meeting the same failure would take the line this one
//! counts.

mod common;
mod support;

use common::*;

/// Hide (rename) or restore the `outbound` table: the daemon's next read
/// of the queue fails.
fn set_outbound_hidden(db: &std::path::Path, hidden: bool) {
    support::store_tables::set_table_hidden(db, "outbound", hidden);
}

/// Log lines kept in memory, for a test that counts them.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn count(&self, text: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(text)
            .count()
    }
}

/// A queue that cannot be read, asked for at every scrape and every
/// status report (the watchdog's beat, `/ready`): said once, not once
/// per request, so a weekend's outage does not bury the journal.
#[tokio::test]
async fn a_queue_that_cannot_be_read_is_logged_once_not_at_every_request() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let d = TestDaemon::start(FAST_OUTBOX, vec![]).await;
    set_outbound_hidden(&d.db_path(), true);
    for _ in 0..5 {
        d.http
            .get(format!("{}/metrics", d.base))
            .send()
            .await
            .unwrap();
        d.get("/api/v1/status", &d.admin_key).await;
    }
    set_outbound_hidden(&d.db_path(), false);
    assert_eq!(captured.count("cannot read the queue for /metrics"), 1);
    assert_eq!(
        captured.count("cannot read the queue for the status report"),
        1
    );
}
