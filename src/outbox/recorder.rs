//! The recorder of one endpoint: commits the outcomes of its finished
//! sends, in groups.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;

use super::back_in_queue::{BackInQueue, WentBack};
use super::handover::{ComingDue, Intake};
use super::unrecorded::Unrecorded;
use super::worker::DispatchContext;
use crate::store::{SendOutcome, Store, StoreError};

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
    /// committed ([`Returns`]).
    pub went_back: Option<Returned>,
    pub _permit: OwnedSemaphorePermit,
}

/// A message that went back to the queue, as each part of the dispatcher
/// that waits for its return to be committed knows it.
pub(super) struct Returned {
    pub in_queue: WentBack,
    pub coming_due: ComingDue,
}

/// Who is told when returns to the queue are committed, or will not be.
#[derive(Default)]
pub(super) struct Returns {
    pub back_in_queue: Arc<BackInQueue>,
    pub intake: Arc<Intake>,
    /// The dispatcher's: a return committed may be due already, and the
    /// dispatcher, having found nothing before, may be asleep until its
    /// next poll.
    pub wake: Arc<Notify>,
}

impl Returns {
    fn recorded<'a>(&self, committed: impl IntoIterator<Item = &'a Returned> + Clone) {
        self.back_in_queue
            .recorded(committed.clone().into_iter().map(|r| &r.in_queue));
        self.intake
            .recorded(committed.clone().into_iter().map(|r| &r.coming_due));
        if committed.into_iter().next().is_some() {
            self.wake.notify_one();
        }
    }

    /// A return given up on for the time being (a kept outcome) is
    /// committed after all.
    fn recorded_late(&self, returned: &Returned) {
        self.back_in_queue.recorded_late(&returned.in_queue);
        self.intake.recorded_late(&returned.coming_due);
        self.wake.notify_one();
    }

    fn not_recorded(&self, returned: &Returned) {
        self.back_in_queue.not_recorded(&returned.in_queue);
        self.intake.not_recorded(&returned.coming_due);
    }
}

/// Commit the outcomes of finished sends, as many as are waiting in one
/// write: one transaction for a group of sends instead of one each, on the
/// thread every write shares (one by one if that write fails). Ends when
/// every send task has gone. An outcome the store refuses for good is
/// recorded plainly; one refused that way too is kept and tried again
/// ([`Kept`]); each one not recorded is in `unrecorded` until it is.
pub(super) async fn record_finished(
    ctx: DispatchContext,
    mut finished: mpsc::UnboundedReceiver<Finished>,
    returns: Returns,
    unrecorded: Arc<Unrecorded>,
) {
    let mut recorder = Recorder {
        store: ctx.store,
        unrecorded,
        returns,
        stop: StopDeadline::new(ctx.hard_stop),
        kept: Kept::default(),
    };
    let mut batch = Vec::new();
    loop {
        let try_kept_at = recorder.kept.next_try;
        tokio::select! {
            received = finished.recv_many(&mut batch, MAX_OUTCOMES_PER_WRITE) => {
                if received == 0 {
                    break;
                }
                recorder.record(&mut batch).await;
            }
            _ = sleep_until_some(try_kept_at), if try_kept_at.is_some() => {
                recorder.try_kept_again().await;
            }
        }
    }
    // The sends are over: a last try, and what is still refused is left
    // to the next start (the daemon's stop names it).
    recorder.try_kept_again().await;
}

async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct Recorder {
    store: Arc<dyn Store>,
    unrecorded: Arc<Unrecorded>,
    returns: Returns,
    stop: StopDeadline,
    kept: Kept,
}

impl Recorder {
    /// Record `batch` in one write, or each of its outcomes alone; empties
    /// it, which gives back the permits of the outcomes not kept.
    async fn record(&mut self, batch: &mut Vec<Finished>) {
        let store = self.store.clone();
        // Built from the batch at each try: the first (almost always the
        // only one) builds it once, with no copy kept for tries that rarely
        // come.
        let group = &*batch;
        let write = || {
            let outcomes = group
                .iter()
                .map(|f| (f.id.clone(), f.outcome.clone()))
                .collect();
            store.record_outcomes(outcomes)
        };
        match record_until_stored(&*store, group.len(), &mut self.stop, write).await {
            Ok(()) => self
                .returns
                .recorded(batch.iter().filter_map(|f| f.went_back.as_ref())),
            Err(e) => {
                tracing::warn!(error = %e, count = batch.len(),
                    "could not record a group of send outcomes; recording them one by one");
                for f in batch.drain(..) {
                    self.record_alone(f).await;
                }
            }
        }
        batch.clear();
    }

    /// Record one outcome whole, else plainly, else keep it to try again.
    async fn record_alone(&mut self, f: Finished) {
        let store = self.store.clone();
        let whole = vec![(f.id.clone(), f.outcome.clone())];
        let write = || store.record_outcomes(whole.clone());
        let mut error = match record_until_stored(&*store, 1, &mut self.stop, write).await {
            Ok(()) => return self.returns.recorded(&f.went_back),
            Err(e) => e,
        };
        if !error.is_transient() {
            let write = || store.record_outcome_plainly(&f.id, f.outcome.clone());
            match record_until_stored(&*store, 1, &mut self.stop, write).await {
                Ok(()) => {
                    tracing::error!(id = %f.id, error = %error,
                        "could not record a send outcome whole; recorded the message's status \
                         alone (a sent message's parts, conversation and early reports are \
                         left out)");
                    return self.returns.recorded(&f.went_back);
                }
                Err(plain) if !plain.is_transient() => return self.keep(f, &plain),
                // The store went away meanwhile, and the stop came.
                Err(plain) => error = plain,
            }
        }
        tracing::error!(id = %f.id, error = %error,
            "could not record a send outcome before the stop; the next start returns the \
             message to the queue");
        self.unrecorded.add(&f.id);
        if let Some(went_back) = &f.went_back {
            self.returns.not_recorded(went_back);
        }
    }

    fn keep(&mut self, f: Finished, error: &StoreError) {
        tracing::error!(id = %f.id, error = %error,
            "the store refuses this send's outcome; the message stays `sending`, its \
             outcome kept and tried again (phonerelay_outcomes_unrecorded)");
        self.unrecorded.add(&f.id);
        // Its return is not known to the queue until it is recorded;
        // holding the recipient's later messages behind it meanwhile could
        // hold them for good. Once recorded, it holds them again.
        if let Some(went_back) = &f.went_back {
            self.returns.not_recorded(went_back);
        }
        self.kept.push(f);
    }

    /// Try each kept outcome once more, whole then plainly.
    async fn try_kept_again(&mut self) {
        let mut still = Vec::new();
        for kept in self.kept.take() {
            let whole = vec![(kept.id.clone(), kept.outcome.clone())];
            let mut stored = self.store.record_outcomes(whole).await;
            if stored.is_err() {
                stored = self
                    .store
                    .record_outcome_plainly(&kept.id, kept.outcome.clone())
                    .await;
            }
            match stored {
                Ok(()) => {
                    tracing::info!(id = %kept.id, "a send outcome the store refused is recorded");
                    self.unrecorded.remove(&kept.id);
                    if let Some(went_back) = &kept.went_back {
                        self.returns.recorded_late(went_back);
                    }
                }
                Err(_) => still.push(kept),
            }
        }
        self.kept.tried(still);
    }
}

/// The outcomes the store refused for good, whole and plainly, to try
/// again: first after [`KEPT_RETRY_FIRST`], then each time twice as long,
/// up to [`KEPT_RETRY_MAX`].
///
/// One that only its own message meets (a bug) must not stop its
/// endpoint, and a modem has but one permit: the first
/// [`KEPT_WITH_PERMIT_BACK`] give their send's permit back. Past those,
/// the store refuses outcomes at large, and each one kept holds its
/// permit: the endpoint stops once it has none left, rather than send on
/// with nothing recorded. So there are at most that many and the
/// endpoint's concurrency.
#[derive(Default)]
struct Kept {
    outcomes: Vec<KeptOutcome>,
    /// While some are kept.
    next_try: Option<tokio::time::Instant>,
    wait: Duration,
}

struct KeptOutcome {
    id: String,
    outcome: SendOutcome,
    /// Its message's return to the queue, if it went back: once recorded,
    /// the recipient's later messages wait behind it again.
    went_back: Option<Returned>,
    _permit: Option<OwnedSemaphorePermit>,
}

/// First and longest wait before kept outcomes are tried again.
const KEPT_RETRY_FIRST: Duration = Duration::from_secs(1);
const KEPT_RETRY_MAX: Duration = Duration::from_secs(60);

/// How many kept outcomes give their send's permit back (see [`Kept`]).
const KEPT_WITH_PERMIT_BACK: usize = 32;

impl Kept {
    fn push(&mut self, f: Finished) {
        // Not held: dropped here, given back.
        let permit = (self.outcomes.len() >= KEPT_WITH_PERMIT_BACK).then_some(f._permit);
        self.outcomes.push(KeptOutcome {
            id: f.id,
            outcome: f.outcome,
            went_back: f.went_back,
            _permit: permit,
        });
        if self.next_try.is_none() {
            self.wait = KEPT_RETRY_FIRST;
            self.next_try = Some(tokio::time::Instant::now() + self.wait);
        }
    }

    fn take(&mut self) -> Vec<KeptOutcome> {
        std::mem::take(&mut self.outcomes)
    }

    /// A try left `still` refused.
    fn tried(&mut self, still: Vec<KeptOutcome>) {
        self.outcomes = still;
        self.next_try = if self.outcomes.is_empty() {
            None
        } else {
            self.wait = (self.wait * 2).min(KEPT_RETRY_MAX);
            Some(tokio::time::Instant::now() + self.wait)
        };
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

/// Make `write`, recording `count` outcomes, trying again for as long as
/// the store is only unavailable (a full disk, an I/O error): an outcome
/// not recorded leaves its message `sending` until the next start, which
/// sends it again, a duplicate its recipient sees. The group's permits
/// stay taken meanwhile, so no new send starts while outcomes cannot be
/// kept. Gives up on an error that will not pass, or once `stop`'s
/// deadline has passed. A broken `store` (a commit of unknown outcome)
/// refuses every write until the daemon's restart, which its breaking
/// brings: waiting for it would only hold the stop for the whole grace
/// period, and the restart queues the message again all the same.
async fn record_until_stored<W, F>(
    store: &dyn Store,
    count: usize,
    stop: &mut StopDeadline,
    mut write: W,
) -> Result<(), StoreError>
where
    W: FnMut() -> F,
    F: std::future::Future<Output = Result<(), StoreError>>,
{
    let mut wait = RECORD_RETRY_FIRST;
    let mut failures = 0u32;
    loop {
        match write().await {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(
                        count,
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
                    tracing::warn!(error = %e, count,
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
    use crate::store::testing::{OutcomesRefused, RecordFailures, queued_sms};
    use crate::store::{AcceptOutcome, OutboundStatus, SqliteStore};

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
            tx.send(sent(id, permit)).unwrap();
        }
        drop(tx);
        // Every outcome is waiting before the recorder starts: one group.
        record_finished(
            DispatchContext::for_tests(store.clone()),
            rx,
            Returns::default(),
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
        record_finished(ctx, rx, Returns::default(), Arc::default()).await;
        let detail = store.get_outbound(&id).await.unwrap().unwrap();
        assert_eq!(detail.record.status, OutboundStatus::Sent);
    }

    /// `count` messages accepted into a fresh store, and the store.
    async fn accepted(count: usize) -> (tempfile::TempDir, SqliteStore, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        let mut ids = Vec::new();
        for n in 0..count {
            match store
                .accept_outbound(queued_sms(&format!("m{n}"), now_ms()))
                .await
            {
                Ok(AcceptOutcome::Created { id }) => ids.push(id),
                other => panic!("not created: {other:?}"),
            }
        }
        (dir, store, ids)
    }

    fn sent(id: &str, permit: OwnedSemaphorePermit) -> Finished {
        Finished {
            id: id.into(),
            outcome: SendOutcome::Sent {
                receipt: SendReceipt::single(format!("ext-{id}")),
                now_ms: now_ms(),
            },
            went_back: None,
            _permit: permit,
        }
    }

    async fn status(store: &dyn Store, id: &str) -> OutboundStatus {
        store.get_outbound(id).await.unwrap().unwrap().record.status
    }

    /// An outcome the store refuses for good, whole (a write that panics
    /// for that message alone), is recorded plainly: left `sending`, the
    /// message was counted so, held its recipient's replies at the relay
    /// forwarder, and went again at the next start.
    #[tokio::test]
    async fn an_outcome_refused_for_good_whole_is_recorded_plainly() {
        let (_dir, sqlite, ids) = accepted(2).await;
        let store: Arc<dyn Store> = Arc::new(OutcomesRefused::new(sqlite, &ids[..1], 0));
        let permits = Arc::new(Semaphore::new(2));
        let (tx, rx) = mpsc::unbounded_channel();
        for id in &ids {
            tx.send(sent(id, permits.clone().acquire_owned().await.unwrap()))
                .unwrap();
        }
        drop(tx);
        let unrecorded = Arc::new(Unrecorded::default());
        let ctx = DispatchContext::for_tests(store.clone());
        record_finished(ctx, rx, Returns::default(), unrecorded.clone()).await;
        for id in &ids {
            assert_eq!(status(&*store, id).await, OutboundStatus::Sent, "{id}");
        }
        assert!(unrecorded.is_empty(), "{:?}", unrecorded.ids());
        assert_eq!(permits.available_permits(), 2);
    }

    /// Refused plainly too, the outcome is kept, counted as unrecorded,
    /// its permit given back, and tried again until the store takes it.
    #[tokio::test]
    async fn an_outcome_refused_plainly_too_is_tried_again_until_recorded() {
        let (_dir, sqlite, ids) = accepted(1).await;
        let id = &ids[0];
        let store: Arc<dyn Store> = Arc::new(OutcomesRefused::new(sqlite, &ids, 2));
        let permits = Arc::new(Semaphore::new(1));
        let (tx, rx) = mpsc::unbounded_channel();
        let unrecorded = Arc::new(Unrecorded::default());
        let ctx = DispatchContext::for_tests(store.clone());
        let recorder = tokio::spawn(record_finished(
            ctx,
            rx,
            Returns::default(),
            unrecorded.clone(),
        ));
        tx.send(sent(id, permits.clone().acquire_owned().await.unwrap()))
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while unrecorded.is_empty() {
            assert!(std::time::Instant::now() < deadline, "never counted");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(unrecorded.ids(), std::slice::from_ref(id));
        // Its permit back: the endpoint goes on with the others.
        drop(permits.acquire().await.unwrap());
        // Tried again after 1 s, refused, then after 2 s more, taken (and
        // then no longer counted).
        while !unrecorded.is_empty() {
            assert!(std::time::Instant::now() < deadline, "never recorded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(status(&*store, id).await, OutboundStatus::Sent);
        drop(tx);
        recorder.await.unwrap();
    }

    /// Past the first kept outcomes each one holds its send's permit: a
    /// store that refuses every outcome stops the endpoint instead of
    /// letting it send on with nothing recorded.
    #[tokio::test]
    async fn past_a_few_kept_outcomes_each_holds_its_permit() {
        let extra = 3;
        let (_dir, sqlite, ids) = accepted(KEPT_WITH_PERMIT_BACK + extra).await;
        let store: Arc<dyn Store> = Arc::new(OutcomesRefused::new(sqlite, &ids, u32::MAX));
        let permits = Arc::new(Semaphore::new(ids.len()));
        let (tx, rx) = mpsc::unbounded_channel();
        for id in &ids {
            tx.send(sent(id, permits.clone().acquire_owned().await.unwrap()))
                .unwrap();
        }
        let unrecorded = Arc::new(Unrecorded::default());
        let ctx = DispatchContext::for_tests(store.clone());
        let recorder = tokio::spawn(record_finished(
            ctx,
            rx,
            Returns::default(),
            unrecorded.clone(),
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while unrecorded.len() < ids.len() {
            assert!(std::time::Instant::now() < deadline, "not all kept");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(permits.available_permits(), KEPT_WITH_PERMIT_BACK);
        drop(tx);
        recorder.await.unwrap();
        assert_eq!(unrecorded.len(), ids.len(), "left to the next start");
        assert_eq!(
            permits.available_permits(),
            ids.len(),
            "given back at the end"
        );
    }

    /// A return to the queue committed wakes the dispatcher: it may be due
    /// already, and a dispatcher that found nothing due sleeps until its
    /// next poll otherwise. The intake and the queue's list then know the
    /// return is committed.
    #[tokio::test]
    async fn a_committed_return_wakes_the_dispatcher() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap());
        let mut message = queued_sms("back", now_ms());
        message.claimed_until_ms = Some(now_ms() + 60_000);
        let id = match store.accept_outbound(message.clone()).await {
            Ok(AcceptOutcome::Created { id }) => id,
            other => panic!("not created: {other:?}"),
        };
        let returns = Returns::default();
        let (intake, wake) = (returns.intake.clone(), returns.wake.clone());
        let now = now_ms();
        let went_back = Returned {
            in_queue: returns
                .back_in_queue
                .went_back(&message.claimed_record(id.clone()), now),
            coming_due: intake.queued_until(now),
        };
        let claim_before_the_commit = intake.claim_starts(now);
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(Finished {
            id: id.clone(),
            outcome: SendOutcome::Release {
                next_attempt_at_ms: now,
                now_ms: now,
                code: "endpoint_down".into(),
                reason: "turned away".into(),
            },
            went_back: Some(went_back),
            _permit: Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap(),
        })
        .unwrap();
        drop(tx);
        let ctx = DispatchContext::for_tests(store.clone());
        record_finished(ctx, rx, returns, Arc::default()).await;
        assert_eq!(status(&*store, &id).await, OutboundStatus::Queued);
        tokio::time::timeout(Duration::from_secs(10), wake.notified())
            .await
            .expect("the dispatcher is woken");
        // Committed after that claim started: it cannot have taken it.
        intake.claim_found(true, claim_before_the_commit);
        assert_eq!(intake.next_due(), Some(now));
        intake.claim_found(true, intake.claim_starts(now));
        assert_eq!(intake.next_due(), None, "committed: a claim takes it");
    }

    /// A kept outcome that put its message back in the queue, recorded at
    /// last, holds the recipient's later messages behind it again (and the
    /// door to hand-overs once it is due): forgotten, a later message to
    /// the recipient went first.
    #[tokio::test]
    async fn a_kept_return_recorded_at_last_holds_the_recipients_later_messages_again() {
        let (_dir, sqlite, ids) = accepted(1).await;
        let id = &ids[0];
        let store: Arc<dyn Store> = Arc::new(OutcomesRefused::new(sqlite, &ids, 1));
        let record = store.get_outbound(id).await.unwrap().unwrap().record;
        let returns = Returns::default();
        let (back_in_queue, intake) = (returns.back_in_queue.clone(), returns.intake.clone());
        let due = now_ms() + 60_000;
        let went_back = Returned {
            in_queue: back_in_queue.went_back(&record, due),
            coming_due: intake.queued_until(due),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let unrecorded = Arc::new(Unrecorded::default());
        let ctx = DispatchContext::for_tests(store.clone());
        let recorder = tokio::spawn(record_finished(ctx, rx, returns, unrecorded.clone()));
        tx.send(Finished {
            id: id.clone(),
            outcome: SendOutcome::Release {
                next_attempt_at_ms: due,
                now_ms: now_ms(),
                code: "pair_limit".into(),
                reason: "refused for now".into(),
            },
            went_back: Some(went_back),
            _permit: Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap(),
        })
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while unrecorded.is_empty() {
            assert!(std::time::Instant::now() < deadline, "never kept");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        while !unrecorded.is_empty() {
            assert!(std::time::Instant::now() < deadline, "never recorded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(status(&*store, id).await, OutboundStatus::Queued);
        let mut later = record.clone();
        later.seq += 1;
        assert!(back_in_queue.goes_before(&later, now_ms()), "it goes first");
        assert_eq!(intake.next_due(), Some(due));
        drop(tx);
        recorder.await.unwrap();
    }
}
