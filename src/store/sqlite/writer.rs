//! Group commit: one thread owns the write connection and runs every write
//! that is waiting in one transaction, so many accepted messages share one
//! fsync. A caller's future resolves only after *its* transaction committed.

use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{oneshot, watch};

use crate::store::{StoreError, StoreResult};

/// Most writes in one transaction; bounds the latency a batch adds.
const MAX_BATCH: usize = 512;

/// A group smaller than this waits up to the commit delay
/// (`storage.commit_delay_ms`) for more writes before it commits, unless
/// its first write came after a quiet spell ([`group_delay`]). Every
/// commit writes each page it touched to the WAL and fsyncs: under a
/// moderate steady load (a few thousand writes a second) groups of one or
/// two cost a commit each, about 40 KiB written per message; waiting a
/// little for company spreads that over several (docs/performance.md).
/// Under heavy load groups are larger than this anyway and nothing waits.
const GROUP_TARGET: usize = 16;

/// One queued write: run it (again, if its batch has to be redone) inside
/// the group transaction, then report its result once the commit is known.
pub trait PendingWrite: Send {
    /// Run the write and keep its result. Its error, if it failed (a
    /// copy: the caller still gets the result in `finish`).
    fn run(&mut self, conn: &Connection) -> StoreResult<()>;
    /// Hand the caller its result, or the commit's error.
    fn finish(self: Box<Self>, commit: StoreResult<()>);
}

pub type Job = Box<dyn PendingWrite>;

struct Pending<T, F> {
    write: F,
    result: Option<StoreResult<T>>,
    tx: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> PendingWrite for Pending<T, F>
where
    T: Send + 'static,
    F: Fn(&Connection) -> StoreResult<T> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> StoreResult<()> {
        let result = unpanicked(|| (self.write)(conn));
        let ran = match &result {
            Ok(_) => Ok(()),
            Err(e) => Err(e.clone()),
        };
        self.result = Some(result);
        ran
    }

    fn finish(self: Box<Self>, commit: StoreResult<()>) {
        let result = match (commit, self.result) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(StoreError::Closed),
        };
        let _ = self.tx.send(result);
    }
}

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    health: Arc<WriteHealth>,
}

/// Whether writes work: failing since a commit or a write failed for a
/// reason that may pass, until a group that changed rows commits with no
/// such failure. A commit with nothing to write succeeds even on a full
/// disk, so it clears nothing.
struct WriteHealth {
    /// The error that made it failing (a full disk, an I/O error).
    failing: Mutex<Option<String>>,
    /// Set, with why, once a commit failed after it may have become
    /// durable: nothing more is written ([`StoreError::OutcomeUnknown`]).
    broken: watch::Sender<Option<String>>,
}

impl Default for WriteHealth {
    fn default() -> Self {
        Self {
            failing: Mutex::default(),
            broken: watch::channel(None).0,
        }
    }
}

impl WriteHealth {
    /// Stop writing for good; `why` ends the sentence "the store stopped
    /// writing …" that the daemon logs and exits with ("after a commit
    /// whose outcome is unknown (…)"), so the operator reads the cause.
    fn break_with(&self, why: &str) {
        *self.failing.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.to_string());
        self.broken.send_replace(Some(why.to_string()));
    }

    fn broken(&self) -> Option<String> {
        self.broken.borrow().clone()
    }

    /// After a group: whether it `changed` rows, how its commit went, and
    /// the first error of one of its writes that may pass. A write can
    /// fail on a full disk while the group still commits (its statement
    /// needed a page the file could not grow by; the others were undone
    /// with it or did not need one), so that counts as failing too.
    fn record(&self, changed: bool, commit: &StoreResult<()>, write_failure: Option<&StoreError>) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        match (commit, write_failure) {
            (Err(e), _) if e.is_transient() => *failing = Some(e.to_string()),
            (_, Some(e)) => *failing = Some(e.to_string()),
            (Ok(()), None) if changed => *failing = None,
            _ => {}
        }
    }
}

impl Writer {
    /// Start the writer thread; it stops when every `Writer` is dropped.
    /// A group of fewer than [`GROUP_TARGET`] writes waits up to
    /// `commit_delay` (the latency it may add) for more before it commits,
    /// unless the writer sat idle that long before its first write.
    pub fn spawn(conn: Connection, commit_delay: Duration) -> (Self, thread::JoinHandle<()>) {
        // Keep every statement of the store prepared: it has more distinct
        // ones than rusqlite's default cache of 16.
        conn.set_prepared_statement_cache_capacity(64);
        let (jobs, rx) = mpsc::channel::<Job>();
        let health = Arc::new(WriteHealth::default());
        let thread_health = health.clone();
        let handle = thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(conn, rx, commit_delay, &thread_health))
            .expect("spawning the store writer thread");
        (Self { jobs, health }, handle)
    }

    /// A writer connected to nothing, to replace the real one on drop so
    /// the thread sees its channel close.
    pub fn detached(jobs: mpsc::Sender<Job>) -> Self {
        Self {
            jobs,
            health: Arc::default(),
        }
    }

    /// The error that made writes fail for a reason that may pass, if no
    /// group that changed rows has committed cleanly since.
    pub fn failing(&self) -> Option<String> {
        self.health
            .failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Why the writer has stopped writing for good, if it has.
    pub fn is_broken(&self) -> Option<String> {
        self.health.broken()
    }

    /// Resolves, with why, once the writer has stopped writing for good
    /// (a commit whose outcome is unknown).
    pub async fn broken(&self) -> String {
        let mut watching = self.health.broken.subscribe();
        let seen = watching
            .wait_for(Option::is_some)
            .await
            .map(|why| why.clone().unwrap_or_default());
        match seen {
            Ok(why) => why,
            Err(_) => std::future::pending().await,
        }
    }

    /// Run `write` in the next group transaction and return its result once
    /// that transaction is durable. A failing `write` is rolled back alone:
    /// the batch is then redone with each write in its own savepoint (and
    /// again without a write whose refusal undid the whole transaction),
    /// so `write` may run more than once and must only touch the database.
    pub async fn write<T, F>(&self, write: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(Pending {
            write,
            result: None,
            tx,
        });
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// A write that panics (a bug; the panic hook has logged it) fails alone,
/// as a write the database refused: the batch is redone without it and
/// the others commit. Unwinding through the writer thread would end it,
/// and every later write of the daemon with it.
fn unpanicked<T>(write: impl FnOnce() -> StoreResult<T>) -> StoreResult<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(write)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(StoreError::Database(format!("a write panicked: {what}")))
    })
}

/// A write's savepoint failed: it could not be made or released, or the
/// write failed and neither its savepoint nor the transaction could be
/// rolled back. The transaction may hold what the write did while its
/// caller is told something else, so the group must not commit.
struct SavepointFailed(rusqlite::Error);

/// Run `write` in a savepoint of its own, so that if it fails only what it
/// did is undone; its result. If what it did cannot be told apart from
/// the rest of the transaction any more, `SavepointFailed`.
fn in_savepoint(
    conn: &Connection,
    write: impl FnOnce(&Connection) -> StoreResult<()>,
) -> Result<StoreResult<()>, SavepointFailed> {
    // Cached statements: two per job, so not parsed again every time.
    let statement = |sql: &str| -> rusqlite::Result<()> {
        conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    };
    statement("SAVEPOINT job").map_err(SavepointFailed)?;
    let Err(e) = write(conn) else {
        statement("RELEASE job").map_err(SavepointFailed)?;
        return Ok(Ok(()));
    };
    // Unless SQLite has already undone the whole transaction, and the
    // savepoint with it: then the write's own error says why.
    if !conn.is_autocommit() {
        undo(conn).map_err(SavepointFailed)?;
    }
    Ok(Err(e))
}

/// Undo the failed write of the savepoint `job`, or if that fails, the
/// whole transaction (the caller sees it gone, and redoes or fails the
/// group). An error if neither could be: what the write did is still in
/// the transaction.
fn undo(conn: &Connection) -> rusqlite::Result<()> {
    if conn.execute_batch("ROLLBACK TO job; RELEASE job").is_ok() {
        return Ok(());
    }
    conn.execute_batch("ROLLBACK")
}

fn run(conn: Connection, rx: mpsc::Receiver<Job>, commit_delay: Duration, health: &WriteHealth) {
    run_with(conn, rx, commit_delay, health, &commit)
}

fn commit(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("COMMIT")
}

/// The writer's loop, committing each group with `commit` (a test gives
/// one that fails as a disk can).
fn run_with(
    conn: Connection,
    rx: mpsc::Receiver<Job>,
    commit_delay: Duration,
    health: &WriteHealth,
    commit: &dyn Fn(&Connection) -> rusqlite::Result<()>,
) {
    loop {
        let idle_from = Instant::now();
        let Ok(first) = rx.recv() else { break };
        let delay = group_delay(idle_from.elapsed(), commit_delay);
        let mut batch = gather(first, &rx, delay);
        // A connection left in a transaction (a ROLLBACK that failed)
        // would fail every group from here on, or commit a failed write's
        // rows with the next one: rolled back first, or the writer stops.
        if !conn.is_autocommit() && conn.execute_batch("ROLLBACK").is_err() {
            health
                .break_with("because its connection is stuck in a transaction (a rollback failed)");
        }
        if let Some(why) = health.broken() {
            let refused = StoreError::Unavailable(format!(
                "the store writes nothing more ({why}); restart the daemon"
            ));
            for job in batch {
                job.finish(Err(refused.clone()));
            }
            continue;
        }
        let changes_before = conn.total_changes();
        let mut failures = TransientFailures::default();
        let committed = run_batch(&conn, &mut batch, &mut failures, commit);
        if let Err(StoreError::OutcomeUnknown(why)) = &committed {
            tracing::error!(error = %why, "a commit failed after it may have become durable; nothing more is written, and the daemon stops so that a restart settles what was kept");
            health.break_with(&format!("after a commit whose outcome is unknown ({why})"));
        }
        health.record(
            conn.total_changes() != changes_before,
            &committed,
            failures.first.as_ref(),
        );
        for job in batch {
            job.finish(committed.clone());
        }
    }
}

/// How long the group that `first` opens may wait for company, given how
/// long the writer sat idle before `first` came. Writes that come closer
/// together than the commit delay share commits, so waiting pays; a write
/// after a quiet spell longer than the delay most likely has no one coming
/// to share its commit, and waiting would only add the delay to its
/// latency. PostgreSQL's `commit_siblings` makes the same call: it delays a
/// commit only while other transactions are running.
fn group_delay(idle_before_first: Duration, commit_delay: Duration) -> Duration {
    if idle_before_first >= commit_delay {
        Duration::ZERO
    } else {
        commit_delay
    }
}

/// The jobs of the next group: `first` and all that are waiting, and if
/// that is fewer than [`GROUP_TARGET`], those that come within `delay` of
/// `first`, until the target is reached.
fn gather(first: Job, rx: &mpsc::Receiver<Job>, delay: Duration) -> Vec<Job> {
    let mut batch = vec![first];
    let deadline = Instant::now() + delay;
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => {
                batch.push(job);
                continue;
            }
            Err(mpsc::TryRecvError::Disconnected) => break,
            Err(mpsc::TryRecvError::Empty) => {}
        }
        let now = Instant::now();
        if batch.len() >= GROUP_TARGET || now >= deadline {
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    batch
}

/// One group transaction. The writes run back to back with no savepoint
/// each (a savepoint copies every page a write touches first); only if one
/// fails is the transaction rolled back and the batch redone with each
/// write in its own savepoint, so the others still commit
/// ([`run_isolated`]). A write the database refused for good in a way
/// that undid the whole transaction is taken out of `batch` then, its
/// caller already told.
///
/// Writes that fail for a reason that may pass (a full disk, an I/O
/// error) are noted in `failures`, for the writer's health.
fn run_batch(
    conn: &Connection,
    batch: &mut Vec<Job>,
    failures: &mut TransientFailures,
    commit: &dyn Fn(&Connection) -> rusqlite::Result<()>,
) -> StoreResult<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    if !batch.iter_mut().all(|job| failures.passed(job.run(conn))) {
        if !conn.is_autocommit() {
            conn.execute_batch("ROLLBACK")?;
        }
        if let Err(e) = run_isolated(conn, batch, failures) {
            // A failed savepoint leaves the transaction open: rolled back
            // here, or if that fails too, before the next group (or the
            // writer stops, [`run_with`]). Never committed.
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            return Err(e);
        }
    }
    let Err(e) = commit(conn) else {
        return Ok(());
    };
    if commit_outcome_unknown(&e) {
        return Err(StoreError::OutcomeUnknown(e.to_string()));
    }
    let _ = conn.execute_batch("ROLLBACK");
    Err(StoreError::from(e))
}

/// Run `batch` again in a new transaction, each write in its own
/// savepoint, leaving the transaction open for the commit.
///
/// Some errors make SQLite roll back the whole transaction, savepoints and
/// all: I/O, a full disk in a statement without a statement journal, a
/// trigger's `RAISE(ROLLBACK)`, a `ROLLBACK TO` that failed. A job run
/// after that would start and commit a transaction of its own through its
/// savepoint, so the redo stops there. A refusal for good (`Database`) is
/// the write's own: its caller hears it (told "try again", it would be
/// refused the same way for ever, even alone), and the group is redone
/// without it, so the others, undone with it through no fault of their
/// own, still commit. Each such redo takes one write out, so there are at
/// most as many as the group has writes. Any other error fails the group
/// whole, every caller hearing it ([`group_undone_by`]).
///
/// A write whose savepoint failed ([`SavepointFailed`]: what it did may
/// still be in the transaction, while its caller hears an error) fails
/// the group whole too, the transaction left open for [`run_batch`] to
/// roll back: committed, the group would keep a write its caller was told
/// had failed.
fn run_isolated(
    conn: &Connection,
    batch: &mut Vec<Job>,
    failures: &mut TransientFailures,
) -> StoreResult<()> {
    'redo: loop {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        for at in 0..batch.len() {
            let ran =
                in_savepoint(conn, |conn| batch[at].run(conn)).map_err(group_not_committed)?;
            let undone_by = ran.as_ref().err().cloned();
            failures.passed(ran);
            if !conn.is_autocommit() {
                continue;
            }
            if let Some(StoreError::Database(_)) = undone_by {
                refused_alone(batch.remove(at));
                continue 'redo;
            }
            return Err(group_undone_by(undone_by));
        }
        return Ok(());
    }
}

/// What every caller of a group hears when a write's savepoint failed:
/// an error that may pass, as nothing of the group was committed and the
/// same writes may well commit in the next one.
fn group_not_committed(SavepointFailed(e): SavepointFailed) -> StoreError {
    tracing::error!(error = %e, "a write's savepoint failed; its group is not committed");
    StoreError::Unavailable(format!(
        "a write could not be kept apart from its group ({e}); nothing of the group was committed"
    ))
}

/// Tell a write taken out of its group its own result (its refusal): it
/// is in no transaction, so no commit bears on it.
fn refused_alone(job: Job) {
    job.finish(Ok(()));
}

/// What every caller of a group hears when an error that may pass (or
/// none at all) rolled back the whole transaction: that error, as a COMMIT
/// now would only say "no transaction is active", which reads as a fault
/// that will not pass.
fn group_undone_by(undone_by: Option<StoreError>) -> StoreError {
    undone_by.unwrap_or_else(|| StoreError::Unavailable("the transaction was rolled back".into()))
}

/// Whether a COMMIT that failed with `e` may have become durable all the
/// same. The WAL's frames are written in order, the commit frame last, and
/// then synced; the WAL index is updated after. A failed sync, or a failed
/// update of the index, comes after the commit frame was written: SQLite
/// reports the commit failed, but the frames are in the file, and the next
/// opening of the store recovers them (a bare I/O error does not say where
/// it came from, so it counts too). A failed write of a frame (a full
/// disk, a file size limit), a failed read or a lock stops the commit
/// before its commit frame is whole: nothing was kept, as the caller is
/// told.
fn commit_outcome_unknown(e: &rusqlite::Error) -> bool {
    use rusqlite::ffi;
    let rusqlite::Error::SqliteFailure(failure, _) = e else {
        return false;
    };
    matches!(
        failure.extended_code,
        ffi::SQLITE_IOERR
            | ffi::SQLITE_IOERR_FSYNC
            | ffi::SQLITE_IOERR_DIR_FSYNC
            | ffi::SQLITE_IOERR_SHMOPEN
            | ffi::SQLITE_IOERR_SHMSIZE
            | ffi::SQLITE_IOERR_SHMLOCK
            | ffi::SQLITE_IOERR_SHMMAP
    )
}

/// The first error of a group's writes that may pass.
#[derive(Default)]
struct TransientFailures {
    first: Option<StoreError>,
}

impl TransientFailures {
    /// Note how a write went; true if it passed.
    fn passed(&mut self, ran: StoreResult<()>) -> bool {
        match ran {
            Ok(()) => true,
            Err(e) => {
                if e.is_transient() && self.first.is_none() {
                    self.first = Some(e);
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::Ordering::SeqCst;

    use super::*;

    fn job<F>(write: F) -> (Job, oneshot::Receiver<StoreResult<()>>)
    where
        F: Fn(&Connection) -> StoreResult<()> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(Pending {
            write,
            result: None,
            tx,
        });
        (job, rx)
    }

    /// A database with one table of unique numbers.
    fn numbers() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER UNIQUE)")
            .unwrap();
        conn
    }

    /// The numbers in `numbers()`'s table, in order.
    fn numbers_in(conn: &Connection) -> Vec<i64> {
        conn.prepare("SELECT x FROM t ORDER BY x")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Run `batch` as the writer thread does; returns the commit's result.
    fn run_group(conn: &Connection, mut batch: Vec<Job>) -> StoreResult<()> {
        let commit = run_batch(conn, &mut batch, &mut TransientFailures::default(), &commit);
        for job in batch {
            job.finish(commit.clone());
        }
        commit
    }

    /// `numbers()` with room for no more pages: a write that needs one
    /// gets SQLITE_FULL, as on a disk with no space left.
    fn full_numbers() -> Connection {
        let conn = numbers();
        conn.execute_batch("ALTER TABLE t ADD COLUMN pad BLOB; INSERT INTO t (x) VALUES (0)")
            .unwrap();
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |row| row.get(0))
            .unwrap();
        conn.pragma_update(None, "max_page_count", pages).unwrap();
        conn
    }

    fn insert_big(x: i64) -> impl Fn(&Connection) -> StoreResult<()> + Send + 'static {
        move |conn: &Connection| {
            conn.execute("INSERT INTO t (x, pad) VALUES (?1, zeroblob(100000))", [x])?;
            Ok(())
        }
    }

    /// A write that panics fails alone: the others of its group commit, and
    /// the writer thread goes on taking writes.
    #[tokio::test]
    async fn a_write_that_panics_fails_alone_and_the_writer_goes_on() {
        let conn = numbers();
        let (before, before_rx) = job(insert(1));
        let (bug, bug_rx) = job(|conn: &Connection| {
            conn.execute("INSERT INTO t (x) VALUES (7)", [])?;
            panic!("a bug in a write");
        });
        let (after, after_rx) = job(insert(2));
        run_group(&conn, vec![before, bug, after]).unwrap();
        assert!(before_rx.await.unwrap().is_ok());
        assert!(after_rx.await.unwrap().is_ok());
        let failed = bug_rx.await.unwrap().unwrap_err();
        assert!(failed.to_string().contains("a bug in a write"), "{failed}");
        assert_eq!(
            numbers_in(&conn),
            [1, 2],
            "the panicking write's row was undone"
        );

        let (writer, thread) = Writer::spawn(numbers(), Duration::ZERO);
        let failed = writer
            .write(|_: &Connection| -> StoreResult<()> { panic!("another bug") })
            .await
            .unwrap_err();
        assert!(matches!(failed, StoreError::Database(_)), "{failed}");
        writer.write(insert(3)).await.unwrap();
        drop(writer);
        thread.join().unwrap();
    }

    #[tokio::test]
    async fn a_write_that_hits_a_full_disk_is_unavailable_and_marks_the_writer_failing() {
        let (writer, thread) = Writer::spawn(full_numbers(), Duration::ZERO);
        // A row that fits still commits.
        writer.write(insert(1)).await.unwrap();
        assert_eq!(writer.failing(), None);
        let full = writer.write(insert_big(2)).await.unwrap_err();
        assert!(full.is_transient(), "{full}");
        // Its group committed nothing else, but the disk is full: the
        // store is not healthy until a write that changes rows commits.
        assert!(writer.failing().is_some());
        writer.write(|_: &Connection| Ok(())).await.unwrap();
        assert!(writer.failing().is_some(), "an empty group proves nothing");
        writer.write(insert(3)).await.unwrap();
        assert_eq!(writer.failing(), None);
        drop(writer);
        thread.join().unwrap();
    }

    #[test]
    fn a_group_that_sqlite_rolled_back_fails_whole_with_the_error_that_did_it() {
        let conn = full_numbers();
        let (fits, fits_rx) = job(insert(1));
        let (too_big, too_big_rx) = job(insert_big(2));
        let mut failures = TransientFailures::default();
        let mut batch = vec![fits, too_big];
        let commit = run_batch(&conn, &mut batch, &mut failures, &commit);
        let noted = failures.first.clone().expect("the full disk is noted");
        assert!(noted.is_transient());
        for job in batch {
            job.finish(commit.clone());
        }
        let mut fits_rx = fits_rx;
        let mut too_big_rx = too_big_rx;
        let too_big = too_big_rx.try_recv().unwrap().unwrap_err();
        assert!(too_big.is_transient(), "{too_big}");
        // Whatever became of the row that fits, its caller hears a result
        // that tells the truth: committed, or an error that may pass.
        let count: i64 = conn
            .query_row("SELECT COUNT(*) FROM t WHERE x = 1", [], |row| row.get(0))
            .unwrap();
        match fits_rx.try_recv().unwrap() {
            Ok(()) => assert_eq!(count, 1),
            Err(e) => {
                assert_eq!(count, 0);
                assert!(e.is_transient(), "{e}");
            }
        }
    }

    /// A COMMIT that writes its group and then fails as an fsync that
    /// fails does: durable or not, SQLite reports an I/O error.
    fn commit_then_fsync_fails(conn: &Connection) -> rusqlite::Result<()> {
        conn.execute_batch("COMMIT")?;
        Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR_FSYNC),
            Some("disk I/O error".into()),
        ))
    }

    /// A commit that fails with an I/O error may have been kept: its
    /// callers are not told "nothing was stored" (a retry without an
    /// idempotency key would be a duplicate), the writer writes nothing
    /// more, and says it is broken, so that the daemon stops and a
    /// restart's recovery settles what was kept.
    #[tokio::test]
    async fn a_commit_that_fails_with_an_io_error_has_an_unknown_outcome_and_stops_the_writer() {
        let (jobs, rx) = mpsc::channel::<Job>();
        let health = Arc::new(WriteHealth::default());
        let writer = Writer {
            jobs,
            health: health.clone(),
        };
        let thread = thread::spawn(move || {
            run_with(
                numbers(),
                rx,
                Duration::ZERO,
                &health,
                &commit_then_fsync_fails,
            )
        });
        let failed = writer.write(insert(1)).await.unwrap_err();
        assert!(
            matches!(&failed, StoreError::OutcomeUnknown(why) if why.contains("disk I/O error")),
            "{failed:?}"
        );
        let why = tokio::time::timeout(Duration::from_secs(5), writer.broken())
            .await
            .expect("the writer says it is broken");
        assert!(why.contains("disk I/O error"), "{why}");
        assert!(
            why.starts_with("after a commit whose outcome is unknown"),
            "{why}"
        );
        assert!(writer.failing().is_some());
        // Nothing more is written: the next write is refused, not run.
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = ran.clone();
        let refused = writer
            .write(move |_: &Connection| {
                seen.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            })
            .await
            .unwrap_err();
        assert!(matches!(refused, StoreError::Unavailable(_)), "{refused:?}");
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
        drop(writer);
        thread.join().unwrap();
    }

    /// A failed sync or WAL-index update at COMMIT comes after its commit
    /// frame; a failed write, a full disk or a lock before it: nothing was
    /// kept, and the caller is told so (an error that passes).
    #[test]
    fn only_an_io_error_after_the_commit_frame_leaves_a_commit_s_outcome_unknown() {
        use rusqlite::ffi;
        let failure = |code| rusqlite::Error::SqliteFailure(ffi::Error::new(code), None);
        for code in [
            ffi::SQLITE_IOERR_FSYNC,
            ffi::SQLITE_IOERR_SHMMAP,
            ffi::SQLITE_IOERR,
        ] {
            assert!(commit_outcome_unknown(&failure(code)), "{code}");
        }
        // A frame not written (a file size limit, a full disk): the commit
        // frame is not whole, and recovery keeps nothing.
        for code in [
            ffi::SQLITE_IOERR_WRITE,
            ffi::SQLITE_FULL,
            ffi::SQLITE_BUSY,
            ffi::SQLITE_LOCKED,
        ] {
            assert!(!commit_outcome_unknown(&failure(code)), "{code}");
        }
    }

    /// A connection left in a transaction by a failed ROLLBACK would fail
    /// every later group ("cannot start a transaction within a
    /// transaction"): the next group rolls it back first.
    #[tokio::test]
    async fn a_connection_left_in_a_transaction_is_rolled_back_before_the_next_group() {
        let conn = numbers();
        conn.execute_batch("BEGIN; INSERT INTO t (x) VALUES (9)")
            .unwrap();
        let (writer, thread) = Writer::spawn(conn, Duration::ZERO);
        writer.write(insert(1)).await.unwrap();
        assert_eq!(writer.failing(), None);
        let conn = Arc::new(Mutex::new(None));
        let kept = conn.clone();
        writer
            .write(move |c: &Connection| {
                *kept.lock().unwrap() = Some(numbers_in(c));
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(
            conn.lock().unwrap().clone().unwrap(),
            [1],
            "the stray row undone"
        );
        drop(writer);
        thread.join().unwrap();
    }

    /// A ROLLBACK, of a savepoint or of the transaction.
    fn is_rollback(action: &rusqlite::hooks::AuthAction<'_>) -> bool {
        use rusqlite::hooks::{AuthAction, TransactionOperation::Rollback};
        matches!(
            action,
            AuthAction::Savepoint {
                operation: Rollback,
                ..
            } | AuthAction::Transaction {
                operation: Rollback
            }
        )
    }

    /// A file of `numbers()` at `path`, whose connection refuses to
    /// prepare the next `refusals` ROLLBACKs, of a savepoint or of the
    /// transaction, as an authorizer may: an undo that fails and leaves
    /// the connection in its transaction, the failed write's rows in it.
    fn numbers_refusing_undo(path: &std::path::Path, refusals: Arc<AtomicUsize>) -> Connection {
        numbers_refusing(path, is_rollback, refusals)
    }

    /// A file of `numbers()` at `path`, whose connection refuses to
    /// prepare the next `refusals` statements that are `refused`.
    fn numbers_refusing(
        path: &std::path::Path,
        refused: fn(&rusqlite::hooks::AuthAction<'_>) -> bool,
        refusals: Arc<AtomicUsize>,
    ) -> Connection {
        use rusqlite::hooks::Authorization;
        let conn = Connection::open(path).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER UNIQUE)")
            .unwrap();
        conn.authorizer(Some(move |context: rusqlite::hooks::AuthContext<'_>| {
            let refuse = refused(&context.action)
                && refusals
                    .fetch_update(SeqCst, SeqCst, |left| left.checked_sub(1))
                    .is_ok();
            if refuse {
                Authorization::Deny
            } else {
                Authorization::Allow
            }
        }));
        conn
    }

    /// The numbers committed to the file at `path`, read by a connection
    /// of its own.
    fn numbers_committed(path: &std::path::Path) -> Vec<i64> {
        numbers_in(&Connection::open(path).unwrap())
    }

    /// A group of three writes whose second writes a row and then fails;
    /// when it runs again in its own savepoint, it sets `refusals` to
    /// `refused`, so that its row cannot be undone. The three jobs and
    /// their callers' results.
    fn group_with_an_undo_that_fails(
        refusals: Arc<AtomicUsize>,
        refused: usize,
    ) -> ([Job; 3], [oneshot::Receiver<StoreResult<()>>; 3]) {
        let runs = AtomicUsize::new(0);
        let (a, a_rx) = job(insert(1));
        let (b, b_rx) = job(move |conn: &Connection| {
            if runs.fetch_add(1, SeqCst) > 0 {
                refusals.store(refused, SeqCst);
            }
            insert(2)(conn)?;
            insert(1)(conn)
        });
        let (c, c_rx) = job(insert(3));
        ([a, b, c], [a_rx, b_rx, c_rx])
    }

    /// A group whose undo failed, queued on a writer's channel before the
    /// writer thread starts, so that it runs as one group; the writer, its
    /// thread, and the group's callers' results.
    fn writer_running_a_group_with_an_undo_that_fails(
        conn: Connection,
        refusals: Arc<AtomicUsize>,
    ) -> (
        Writer,
        thread::JoinHandle<()>,
        [oneshot::Receiver<StoreResult<()>>; 3],
    ) {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (group, results) = group_with_an_undo_that_fails(refusals, usize::MAX);
        for job in group {
            jobs.send(job).unwrap();
        }
        let health = Arc::new(WriteHealth::default());
        let writer = Writer {
            jobs,
            health: health.clone(),
        };
        let thread = thread::spawn(move || run_with(conn, rx, Duration::ZERO, &health, &commit));
        (writer, thread, results)
    }

    /// The undo of a failed write fails (its ROLLBACK TO and the ROLLBACK
    /// after it): its group is not committed, every caller hearing an
    /// error that may pass, and the connection is rolled back at once
    /// when that works again.
    #[test]
    fn a_write_that_cannot_be_undone_fails_its_group_and_the_transaction_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("numbers.sqlite3");
        let refusals = Arc::new(AtomicUsize::new(0));
        let conn = numbers_refusing_undo(&path, refusals.clone());
        let (group, results) = group_with_an_undo_that_fails(refusals, 2);
        assert!(run_group(&conn, group.into()).is_err());
        for mut result in results {
            let failed = result.try_recv().unwrap().unwrap_err();
            assert!(failed.is_transient(), "{failed:?}");
        }
        assert!(
            conn.is_autocommit(),
            "the group's transaction is rolled back"
        );
        assert_eq!(numbers_in(&conn), Vec::<i64>::new());
    }

    /// A write that passed but whose savepoint cannot be released fails
    /// its group: its caller would hear the error while its row, still in
    /// the savepoint, committed with the others.
    #[test]
    fn a_write_whose_savepoint_cannot_be_released_fails_its_group() {
        use rusqlite::hooks::{AuthAction, TransactionOperation::Release};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("numbers.sqlite3");
        let is_release = |action: &AuthAction<'_>| {
            matches!(
                action,
                AuthAction::Savepoint {
                    operation: Release,
                    ..
                }
            )
        };
        let refusals = Arc::new(AtomicUsize::new(0));
        let conn = numbers_refusing(&path, is_release, refusals.clone());
        let (a, a_rx) = job(insert(1));
        let refuse_once = refusals.clone();
        // Fails, so the group is redone with a savepoint per write; the
        // first of them (a's) is not released.
        let (b, b_rx) = job(move |conn: &Connection| {
            refuse_once.store(1, SeqCst);
            insert(1)(conn)
        });
        let (c, c_rx) = job(insert(3));
        assert!(run_group(&conn, vec![a, b, c]).is_err());
        for mut result in [a_rx, b_rx, c_rx] {
            let failed = result.try_recv().unwrap().unwrap_err();
            assert!(failed.is_transient(), "{failed:?}");
        }
        assert_eq!(refusals.load(SeqCst), 0, "a RELEASE was refused");
        assert!(conn.is_autocommit());
        assert_eq!(numbers_committed(&path), Vec::<i64>::new());
    }

    /// A failed write whose rows could not be undone, nor its group's
    /// transaction rolled back, is never committed with its group: every
    /// caller hears an error that may pass, the writer is failing, and the
    /// next group rolls the connection back first, so nothing of the
    /// failed group is ever committed.
    #[tokio::test]
    async fn a_write_that_cannot_be_undone_fails_its_group_and_nothing_of_it_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("numbers.sqlite3");
        let refusals = Arc::new(AtomicUsize::new(0));
        let conn = numbers_refusing_undo(&path, refusals.clone());
        let (writer, thread, results) =
            writer_running_a_group_with_an_undo_that_fails(conn, refusals.clone());
        for result in results {
            let failed = result.await.unwrap().unwrap_err();
            assert!(failed.is_transient(), "{failed:?}");
        }
        assert_eq!(numbers_committed(&path), Vec::<i64>::new());
        assert!(writer.failing().is_some());

        // The undo works again: the next group rolls the failed one back
        // before it runs, and commits alone.
        refusals.store(0, SeqCst);
        writer.write(insert(4)).await.unwrap();
        assert_eq!(numbers_committed(&path), [4]);
        assert_eq!(writer.failing(), None);
        drop(writer);
        thread.join().unwrap();
    }

    /// Still stuck in the failed group's transaction at the next group (its
    /// ROLLBACK fails too), the writer writes nothing more: it never
    /// commits the failed write's rows with a later group.
    #[tokio::test]
    async fn a_writer_stuck_in_a_failed_group_s_transaction_writes_nothing_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("numbers.sqlite3");
        let refusals = Arc::new(AtomicUsize::new(0));
        let conn = numbers_refusing_undo(&path, refusals.clone());
        let (writer, thread, results) =
            writer_running_a_group_with_an_undo_that_fails(conn, refusals);
        for result in results {
            assert!(result.await.unwrap().unwrap_err().is_transient());
        }
        let refused = writer.write(insert(4)).await.unwrap_err();
        assert!(matches!(refused, StoreError::Unavailable(_)), "{refused:?}");
        let why = writer.is_broken().expect("broken");
        assert!(
            why.contains("stuck in a transaction"),
            "the reason is the stuck connection: {why}"
        );
        drop(writer);
        thread.join().unwrap();
        assert_eq!(numbers_committed(&path), Vec::<i64>::new());
    }

    /// A database that became read-only (a remount, the file replaced)
    /// refuses every write until an operator acts: the writer is marked
    /// failing, so `/ready` and `phonerelay_store_up` say so. Before, the
    /// error read as one the database refuses for good, and health stayed
    /// green.
    #[tokio::test]
    async fn a_read_only_database_marks_the_writer_failing() {
        let conn = numbers();
        conn.pragma_update(None, "query_only", true).unwrap();
        let (writer, thread) = Writer::spawn(conn, Duration::ZERO);
        let refused = writer.write(insert(1)).await.unwrap_err();
        assert!(refused.is_transient(), "{refused:?}");
        assert!(writer.failing().is_some());
        drop(writer);
        thread.join().unwrap();
    }

    fn insert(x: i64) -> impl Fn(&Connection) -> StoreResult<()> + Send + 'static {
        move |conn: &Connection| {
            conn.execute("INSERT INTO t (x) VALUES (?1)", [x])?;
            Ok(())
        }
    }

    #[test]
    fn a_group_takes_every_waiting_write_up_to_the_cap() {
        let (tx, rx) = mpsc::channel::<Job>();
        for x in 0..600 {
            tx.send(job(insert(x)).0).unwrap();
        }
        // An hour's delay: a test that waited for company would not end.
        let delay = Duration::from_secs(3600);
        let first = rx.recv().unwrap();
        assert_eq!(gather(first, &rx, delay).len(), MAX_BATCH);
        let first = rx.recv().unwrap();
        assert_eq!(
            gather(first, &rx, delay).len(),
            600 - MAX_BATCH,
            "88 > target"
        );
        // Writers gone: a lone write commits without waiting for company.
        tx.send(job(insert(0)).0).unwrap();
        drop(tx);
        let first = rx.recv().unwrap();
        assert_eq!(gather(first, &rx, delay).len(), 1);
    }

    #[test]
    fn only_a_write_after_a_quiet_spell_commits_without_waiting_for_company() {
        let delay = Duration::from_millis(1);
        // Writes a few hundred microseconds apart (a steady moderate load,
        // or a job already queued when the last commit ended) share commits.
        assert_eq!(group_delay(Duration::ZERO, delay), delay);
        assert_eq!(group_delay(Duration::from_micros(400), delay), delay);
        // After a second of nothing, no one is coming: commit at once.
        assert_eq!(group_delay(delay, delay), Duration::ZERO);
        assert_eq!(group_delay(Duration::from_secs(1), delay), Duration::ZERO);
        // A delay of 0 (turned off) stays off.
        assert_eq!(group_delay(Duration::ZERO, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn only_a_commit_that_wrote_rows_clears_a_write_failure() {
        let health = WriteHealth::default();
        let failing = || health.failing.lock().unwrap().clone();
        let full = StoreError::Unavailable("database or disk is full".into());
        health.record(true, &Err(full.clone()), None);
        assert_eq!(
            failing().as_deref(),
            Some("database unavailable: database or disk is full")
        );
        // An empty transaction commits even on a full disk: it proves nothing.
        health.record(false, &Ok(()), None);
        assert!(failing().is_some());
        // A write that will not pass says nothing about the disk.
        health.record(
            true,
            &Err(StoreError::Database("UNIQUE constraint failed".into())),
            None,
        );
        assert!(failing().is_some());
        health.record(true, &Ok(()), None);
        assert_eq!(failing(), None);
        // A group that committed while one of its writes hit the full disk
        // has not shown that writes work.
        health.record(true, &Ok(()), Some(&full));
        assert!(failing().is_some());
    }

    #[test]
    fn a_group_with_no_delay_takes_what_is_waiting_and_does_not_wait() {
        let (tx, rx) = mpsc::channel::<Job>();
        for x in 0..3 {
            tx.send(job(insert(x)).0).unwrap();
        }
        // The sender stays open: a group that waited for company would
        // block here for good.
        let first = rx.recv().unwrap();
        assert_eq!(gather(first, &rx, Duration::ZERO).len(), 3);
        drop(tx);
    }

    #[test]
    fn a_failing_write_is_undone_alone_and_the_rest_of_its_batch_commits() {
        let conn = numbers();
        let (a, mut a_rx) = job(insert(1));
        // Writes a row, then fails: its row must not be committed.
        let (b, mut b_rx) = job(|conn: &Connection| {
            insert(2)(conn)?;
            insert(1)(conn)
        });
        let (c, mut c_rx) = job(insert(3));
        assert!(run_group(&conn, vec![a, b, c]).is_ok());
        assert!(a_rx.try_recv().unwrap().is_ok());
        assert!(b_rx.try_recv().unwrap().is_err());
        assert!(c_rx.try_recv().unwrap().is_ok());
        assert_eq!(numbers_in(&conn), [1, 3]);
        assert!(conn.is_autocommit(), "the batch transaction is closed");
    }

    #[test]
    fn a_write_that_loses_the_whole_transaction_fails_its_batch_and_commits_nothing() {
        let conn = numbers();
        let (a, mut a_rx) = job(insert(1));
        // As SQLite does on an I/O error: the transaction is rolled back,
        // and the error (SQLITE_IOERR) is one that may pass.
        let (b, mut b_rx) = job(|conn: &Connection| {
            if !conn.is_autocommit() {
                conn.execute_batch("ROLLBACK")?;
            }
            Err(StoreError::Unavailable("disk I/O error".into()))
        });
        let (c, mut c_rx) = job(insert(3));
        assert!(run_group(&conn, vec![a, b, c]).is_err());
        for rx in [&mut a_rx, &mut b_rx, &mut c_rx] {
            // Not a refusal for good: every write may commit later.
            let e = rx.try_recv().unwrap().unwrap_err();
            assert!(e.is_transient(), "{e}");
        }
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 0, "nothing a caller was told failed is committed");
    }

    /// `numbers()` with a trigger that refuses the number 13 by rolling
    /// back the whole transaction, as `RAISE(ROLLBACK)` does.
    fn numbers_refusing_13() -> Connection {
        let conn = numbers();
        conn.execute_batch(
            "CREATE TRIGGER refuse_13 BEFORE INSERT ON t WHEN NEW.x = 13
             BEGIN SELECT RAISE(ROLLBACK, 'thirteen is refused'); END;",
        )
        .unwrap();
        conn
    }

    /// A write refused for good in a way that undoes its whole transaction
    /// is refused for good even in a group of its own: told "try again",
    /// its caller would retry for ever (a 503 on every retry, never the
    /// 500 that says stop).
    #[tokio::test]
    async fn a_write_that_rolls_back_its_transaction_alone_is_refused_for_good() {
        let (writer, thread) = Writer::spawn(numbers_refusing_13(), Duration::ZERO);
        let refused = writer.write(insert(13)).await.unwrap_err();
        assert!(
            matches!(&refused, StoreError::Database(why) if why.contains("thirteen is refused")),
            "{refused:?}"
        );
        assert_eq!(writer.failing(), None, "nothing that may pass failed");
        writer.write(insert(1)).await.unwrap();
        drop(writer);
        thread.join().unwrap();
    }

    /// The writes a refusal that rolled back the whole transaction undid
    /// with it are redone without it and commit; the refused writes alone
    /// hear their refusal.
    #[test]
    fn a_write_that_rolls_back_its_group_is_refused_alone_and_the_others_commit() {
        let conn = numbers_refusing_13();
        let (a, mut a_rx) = job(insert(1));
        let (b, mut b_rx) = job(insert(13));
        let (c, mut c_rx) = job(insert(3));
        // A second one, after the first is taken out: the group is redone
        // again.
        let (d, mut d_rx) = job(|conn: &Connection| {
            insert(4)(conn)?;
            insert(13)(conn)
        });
        let (e, mut e_rx) = job(insert(5));
        assert!(run_group(&conn, vec![a, b, c, d, e]).is_ok());
        for rx in [&mut a_rx, &mut c_rx, &mut e_rx] {
            assert!(rx.try_recv().unwrap().is_ok());
        }
        for rx in [&mut b_rx, &mut d_rx] {
            let refused = rx.try_recv().unwrap().unwrap_err();
            assert!(
                matches!(&refused, StoreError::Database(why) if why.contains("thirteen is refused")),
                "{refused:?}"
            );
        }
        assert_eq!(
            numbers_in(&conn),
            [1, 3, 5],
            "the refused writes' rows undone"
        );
        assert!(conn.is_autocommit(), "the batch transaction is closed");
    }
}
