//! Group commit: one thread owns the write connection and runs every write
//! that is waiting in one transaction, so many accepted messages share one
//! fsync. A caller's future resolves only after *its* transaction committed.

use std::sync::mpsc;
use std::thread;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::store::{StoreError, StoreResult};

/// Most writes in one transaction; bounds the latency a batch adds.
const MAX_BATCH: usize = 512;

type Finisher = Box<dyn FnOnce(StoreResult<()>) + Send>;
/// A write job; given no connection (the transaction could not begin) it
/// skips its write and reports the error.
pub type Job = Box<dyn FnOnce(Option<&Connection>) -> Finisher + Send>;

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Start the writer thread; it stops when every `Writer` is dropped.
    pub fn spawn(conn: Connection) -> (Self, thread::JoinHandle<()>) {
        // Keep every statement of the store prepared: it has more distinct
        // ones than rusqlite's default cache of 16.
        conn.set_prepared_statement_cache_capacity(64);
        let (jobs, rx) = mpsc::channel::<Job>();
        let handle = thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(conn, rx))
            .expect("spawning the store writer thread");
        (Self { jobs }, handle)
    }

    /// A writer connected to nothing, to replace the real one on drop so
    /// the thread sees its channel close.
    pub fn detached(jobs: mpsc::Sender<Job>) -> Self {
        Self { jobs }
    }

    /// Run `write` in the next group transaction and return its result once
    /// that transaction is durable. A failing `write` is rolled back alone
    /// (savepoint); the others in the batch still commit.
    pub async fn write<T, F>(&self, write: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = match conn {
                Some(conn) => in_savepoint(conn, write),
                None => Err(StoreError::Closed),
            };
            Box::new(move |commit: StoreResult<()>| {
                let _ = tx.send(commit.and(result));
            })
        });
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

fn in_savepoint<T>(
    conn: &Connection,
    write: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    // Cached statements: two per job, so not parsed again every time.
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    match write(conn) {
        Ok(value) => {
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Ok(value)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

fn run(conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let error = StoreError::from(e);
            for job in batch {
                job(None)(Err(error.clone()));
            }
            continue;
        }
        let finishers: Vec<Finisher> = batch.into_iter().map(|job| job(Some(&conn))).collect();
        let commit = conn.execute_batch("COMMIT").map_err(StoreError::from);
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for finish in finishers {
            finish(commit.clone());
        }
    }
}
