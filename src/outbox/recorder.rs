//! The recorder of one endpoint: commits the outcomes of its finished
//! sends, in groups.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;

use super::back_in_queue::{BackInQueue, WentBack};
use super::worker::DispatchContext;
use crate::store::{SendOutcome, Store};

/// Most outcomes recorded in one write.
const MAX_OUTCOMES_PER_WRITE: usize = 256;

/// First and longest wait before recording outcomes again while the store
/// is unavailable.
const RECORD_RETRY_FIRST: Duration = Duration::from_millis(100);
const RECORD_RETRY_MAX: Duration = Duration::from_secs(5);

/// How long after the hard stop the recorder still tries again to record
/// outcomes the store refuses for now (busy, locked, a full disk). An
/// outcome given up on leaves its message `sending`, and the next start
/// sends it again: a duplicate, for one the channel had already sent. Well
/// inside the daemon's `STOP_BOUND` (15 s after the hard stop), which also
/// covers the dispatcher's own wind-down, so the stop still ends in time.
const RECORD_AFTER_HARD_STOP: Duration = Duration::from_secs(5);

/// A send that is over, waiting for its outcome to be committed. Its
/// permit is given back only then, so the endpoint never has more than
/// `concurrency` messages in `sending` of its own.
pub(super) struct Finished {
    pub id: String,
    pub outcome: SendOutcome,
    /// The message went back to the queue: the recorder says once that is
    /// committed (`back_in_queue`).
    pub went_back: Option<WentBack>,
    pub _permit: OwnedSemaphorePermit,
}

/// Commit the outcomes of finished sends, as many as are waiting in one
/// write: one transaction for a group of sends instead of one each, on the
/// thread every write shares. Ends when every send task has gone. An
/// outcome given up is kept in `ctx.unrecorded`.
pub(super) async fn record_finished(
    ctx: DispatchContext,
    mut finished: mpsc::UnboundedReceiver<Finished>,
    back_in_queue: Arc<BackInQueue>,
) {
    let store = ctx.store;
    let mut batch = Vec::new();
    let mut stop = StopDeadline::new(ctx.hard_stop);
    while finished.recv_many(&mut batch, MAX_OUTCOMES_PER_WRITE).await > 0 {
        let outcomes = batch
            .iter()
            .map(|f| (f.id.clone(), f.outcome.clone()))
            .collect::<Vec<_>>();
        match record_until_stored(&*store, outcomes, &mut stop).await {
            Ok(()) => back_in_queue.recorded(batch.iter().filter_map(|f| f.went_back.as_ref())),
            Err(e) => {
                tracing::warn!(error = %e, count = batch.len(),
                    "could not record a group of send outcomes; recording them one by one");
                for f in &batch {
                    let outcome = vec![(f.id.clone(), f.outcome.clone())];
                    match record_until_stored(&*store, outcome, &mut stop).await {
                        Ok(()) => back_in_queue.recorded(&f.went_back),
                        Err(e) => {
                            tracing::error!(id = %f.id, error = %e,
                                "could not record a send outcome; the next start returns the message to the queue");
                            ctx.unrecorded.add(&f.id);
                            if let Some(went_back) = &f.went_back {
                                back_in_queue.not_recorded(went_back);
                            }
                        }
                    }
                }
            }
        }
        // Dropping the group gives its permits back.
        batch.clear();
    }
}

/// When the recorder stops trying again: [`RECORD_AFTER_HARD_STOP`] after
/// it first saw the hard stop, one deadline for every outcome still to
/// record, so that a stop with many of them still ends within its bound.
struct StopDeadline {
    hard_stop: CancellationToken,
    at: Option<tokio::time::Instant>,
}

impl StopDeadline {
    fn new(hard_stop: CancellationToken) -> Self {
        Self {
            hard_stop,
            at: None,
        }
    }

    /// `None` until the hard stop.
    fn get(&mut self) -> Option<tokio::time::Instant> {
        if self.at.is_none() && self.hard_stop.is_cancelled() {
            self.at = Some(tokio::time::Instant::now() + RECORD_AFTER_HARD_STOP);
        }
        self.at
    }
}

/// Record `outcomes`, trying again for as long as the store is only
/// unavailable (a full disk, an I/O error): an outcome not recorded leaves
/// its message `sending` until the next start, which sends it again, a
/// duplicate its recipient sees. The group's permits stay taken meanwhile,
/// so no new send starts while outcomes cannot be kept. Gives up on an
/// error that will not pass, or once `stop`'s deadline has passed. A
/// broken store (a commit of unknown outcome) refuses every write until
/// the daemon's restart, which its breaking brings: waiting for it would
/// only hold the stop for the whole grace period, and the restart queues
/// the message again all the same.
async fn record_until_stored(
    store: &dyn Store,
    outcomes: Vec<(String, SendOutcome)>,
    stop: &mut StopDeadline,
) -> Result<(), crate::store::StoreError> {
    let mut wait = RECORD_RETRY_FIRST;
    let mut failures = 0u32;
    loop {
        match store.record_outcomes(outcomes.clone()).await {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(
                        count = outcomes.len(),
                        failures,
                        "send outcomes recorded once the store was back"
                    );
                }
                return Ok(());
            }
            Err(e) if e.is_transient() && store.is_broken().is_none() => {
                let deadline = stop.get();
                let now = tokio::time::Instant::now();
                if deadline.is_some_and(|deadline| now >= deadline) {
                    return Err(e);
                }
                if failures == 0 {
                    tracing::warn!(error = %e, count = outcomes.len(),
                        "cannot record send outcomes now; trying again until the store is back");
                }
                failures += 1;
                let next_try = deadline.map_or(now + wait, |deadline| deadline.min(now + wait));
                tokio::select! {
                    _ = tokio::time::sleep_until(next_try) => {}
                    // Its deadline begins: try again now, then until it.
                    _ = stop.hard_stop.cancelled(), if deadline.is_none() => {}
                }
                wait = (wait * 2).min(RECORD_RETRY_MAX);
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use phonerelay_channel::SendReceipt;
    use tokio::sync::Semaphore;

    use super::*;
    use crate::clock::now_ms;
    use crate::store::testing::{RecordFailures, queued_sms};
    use crate::store::{AcceptOutcome, OutboundStatus, SqliteStore, StoreError};

    #[tokio::test]
    async fn the_recorder_records_the_rest_of_a_group_one_of_which_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap());
        let mut ids = Vec::new();
        for text in ["a", "b", "c"] {
            match store.accept_outbound(queued_sms(text, now_ms())).await {
                Ok(AcceptOutcome::Created { id }) => ids.push(id),
                other => panic!("not created: {other:?}"),
            }
        }
        let permits = Arc::new(Semaphore::new(4));
        let (tx, rx) = mpsc::unbounded_channel();
        // "no-such-message" fails the group's write (tests/outbox.rs shows
        // a group is all or nothing); the recorder must then record the
        // other three one by one.
        let group = [&ids[0], "no-such-message", &ids[1], &ids[2]];
        for id in group {
            let permit = permits.clone().acquire_owned().await.unwrap();
            tx.send(Finished {
                id: id.into(),
                outcome: SendOutcome::Sent {
                    receipt: SendReceipt::single(format!("ext-{id}")),
                    now_ms: now_ms(),
                },
                went_back: None,
                _permit: permit,
            })
            .unwrap();
        }
        drop(tx);
        // Every outcome is waiting before the recorder starts: one group.
        record_finished(
            DispatchContext::for_tests(store.clone()),
            rx,
            Arc::default(),
        )
        .await;
        for id in &ids {
            let detail = store.get_outbound(id).await.unwrap().unwrap();
            assert_eq!(detail.record.status, OutboundStatus::Sent, "{id}");
        }
        assert_eq!(permits.available_permits(), 4, "every permit came back");
    }

    /// After the hard stop, a send the channel has made is still recorded
    /// though the store refuses the first writes for now (a lock held, a
    /// full disk): given up, it left the message `sending`, and the next
    /// start sent it again. Refused twice, as the recorder tries a group
    /// and then each of its outcomes alone.
    #[tokio::test]
    async fn an_outcome_the_store_refuses_for_now_after_the_hard_stop_is_still_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        let locked = || StoreError::Unavailable("database is locked".into());
        let store: Arc<dyn Store> = Arc::new(RecordFailures::new(sqlite, [locked(), locked()]));
        let id = match store.accept_outbound(queued_sms("once", now_ms())).await {
            Ok(AcceptOutcome::Created { id }) => id,
            other => panic!("not created: {other:?}"),
        };
        let ctx = DispatchContext::for_tests(store.clone());
        ctx.hard_stop.cancel();
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(Finished {
            id: id.clone(),
            outcome: SendOutcome::Sent {
                receipt: SendReceipt::single("ext-1"),
                now_ms: now_ms(),
            },
            went_back: None,
            _permit: Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap(),
        })
        .unwrap();
        drop(tx);
        record_finished(ctx, rx, Arc::default()).await;
        let detail = store.get_outbound(&id).await.unwrap().unwrap();
        assert_eq!(detail.record.status, OutboundStatus::Sent);
    }
}
