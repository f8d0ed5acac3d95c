//! Read connections. WAL lets readers run beside the writer thread; each
//! read borrows an idle connection on a blocking thread, and runs in one
//! read transaction (see [`ReadPool::read`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use super::schema;
use crate::store::{StoreError, StoreResult};

/// Idle connections kept; more may be open briefly under load.
const MAX_IDLE: usize = 8;

/// Reads at once, each on a blocking thread with a connection of its own
/// (three file descriptors: the database, its log, the shared memory).
/// Unbounded, a burst of unauthenticated `/ready` or `/metrics` requests
/// opened one per request, up to tokio's 512 blocking threads: past the
/// descriptors `fd_limit` keeps in reserve beside the connections, and
/// every thread that DNS lookups and file reads also need. More wait.
pub const MAX_OPEN: usize = 32;

#[derive(Clone)]
pub struct ReadPool {
    path: Arc<PathBuf>,
    idle: Arc<Mutex<Vec<Connection>>>,
    open: Arc<Semaphore>,
}

impl ReadPool {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path: Arc::new(path),
            idle: Arc::new(Mutex::new(Vec::new())),
            open: Arc::new(Semaphore::new(MAX_OPEN)),
        }
    }

    /// Run `read` on a connection of the pool, inside a deferred read
    /// transaction: every statement it runs sees the store as the first
    /// one did. Outside a transaction each statement saw the latest
    /// commit, so a read of several (a message's row, then its events)
    /// could mix two moments, a status from before a send's outcome with
    /// the history after it.
    pub async fn read<T, F>(&self, read: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let pool = self.clone();
        let turn = self
            .open
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let mut conn = pool.take()?;
            let result = in_one_snapshot(&mut conn, read);
            pool.give_back(conn);
            result
        })
        .await
        .map_err(|e| {
            // Cancelled: the runtime is shutting down. A panic is a bug
            // that the same read will meet again.
            if e.is_cancelled() {
                StoreError::Closed
            } else {
                StoreError::Database(format!("read task failed: {e}"))
            }
        })?
    }

    fn take(&self) -> StoreResult<Connection> {
        if let Some(conn) = self.idle.lock().expect("pool lock").pop() {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            self.path.as_path(),
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        schema::configure(&conn)?;
        conn.pragma_update(None, "query_only", true)?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        // A connection left inside a transaction (its rollback failed)
        // would hand every later read the same old snapshot: close it.
        if !conn.is_autocommit() {
            return;
        }
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

/// `read` in one deferred transaction, which takes its snapshot at the
/// first statement and keeps it to the last.
fn in_one_snapshot<T>(
    conn: &mut Connection,
    read: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    let snapshot = conn.transaction()?;
    let result = read(&snapshot);
    // Nothing was written; ending the transaction only lets go of the
    // snapshot, so a failure to end it does not spoil what was read.
    let _ = snapshot.rollback();
    result
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Many reads at once: at most `MAX_OPEN` run (and hold a connection)
    /// at a time, and every one of them runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_at_once_are_bounded_and_all_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x)")
            .unwrap();
        let pool = ReadPool::new(path);
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let reads: Vec<_> = (0..4 * MAX_OPEN)
            .map(|_| {
                let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    pool.read(move |conn| {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        conn.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0))?;
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok(())
                    })
                    .await
                })
            })
            .collect();
        for read in reads {
            read.await.unwrap().unwrap();
        }
        let most = most.load(Ordering::SeqCst);
        assert!(most <= MAX_OPEN, "{most} reads at once");
        assert!(most > 1, "reads ran one at a time");
    }
}
