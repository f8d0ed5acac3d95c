use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use governor::{Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::back_in_queue::ClaimView;
use super::handover::Handover;
use super::limits::limits_for;
use super::recipient_limit::RecipientLimit;
use super::recipient_order::RecipientOrder;
use super::recorder::{Finished, Returned, Returns, record_finished};
use super::send::{Deferral, Limiters, send_one, send_panicked};
use crate::clock::now_ms;
use crate::config::OutboxConfig;
use crate::endpoints::Endpoint;
use crate::logging::{REPEATED_FAILURE_LOG_EVERY, Throttle};
use crate::metrics::Metrics;
use crate::store::{ClaimRequest, DUE_AT_ONCE_MS, OutboundRecord, SendOutcome, Store};

/// Longest an idle worker sleeps before looking again; picks up messages
/// committed by another process (`phonerelay send` through a second daemon
/// is not a thing, but a restored backup is).
const IDLE_POLL: Duration = Duration::from_secs(5);

/// How often a dispatcher whose endpoint is down looks whether it is back.
const DOWN_POLL: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct DispatchContext {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub outbox: Arc<OutboxConfig>,
    /// Stop claiming.
    pub shutdown: CancellationToken,
    /// Stop waiting for in-flight sends: release them to the queue.
    pub hard_stop: CancellationToken,
}

impl DispatchContext {
    /// A context on `store`, with the default limits.
    #[cfg(test)]
    pub(crate) fn for_tests(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            metrics: Arc::default(),
            outbox: Arc::default(),
            shutdown: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
        }
    }
}

/// The worker set of one endpoint; returns when shut down and every claim
/// it held is recorded or released.
pub async fn run_endpoint(endpoint: Arc<Endpoint>, ctx: DispatchContext) {
    let limits = limits_for(
        &ctx.outbox,
        endpoint.channel.kind(),
        endpoint.channel.phone_id(),
        endpoint.channel.default_concurrency(),
    );
    let limiters = Arc::new(Limiters {
        endpoint: RateLimiter::direct(
            Quota::with_period(Duration::from_secs_f64(1.0 / limits.per_second))
                .expect("validated: per_second > 0")
                .allow_burst(NonZeroU32::new(limits.burst).expect("validated: burst >= 1")),
        ),
        per_recipient: NonZeroU32::new(limits.per_recipient_per_minute)
            .map(RecipientLimit::per_minute),
    });
    dispatch(endpoint, ctx, limits.in_flight(), limiters).await;
}

/// [`run_endpoint`] with `concurrency` sends in flight within `limiters`.
async fn dispatch(
    endpoint: Arc<Endpoint>,
    ctx: DispatchContext,
    concurrency: u32,
    limiters: Arc<Limiters>,
) {
    let kind = endpoint.channel.kind();
    let phone_id = endpoint.channel.phone_id().to_string();
    let permits = Arc::new(Semaphore::new(concurrency as usize));
    let lease_ms = ctx.outbox.lease_ms();
    let (finished, finished_rx) = mpsc::unbounded_channel();
    let recorder = tokio::spawn(record_finished(
        ctx.clone(),
        finished_rx,
        returns_of(&endpoint),
        endpoint.unrecorded.clone(),
    ));
    let mut sends = Sends {
        in_flight: JoinSet::new(),
        endpoint: endpoint.clone(),
        ctx: ctx.clone(),
        limiters,
        finished,
        order: RecipientOrder::default(),
    };
    super::pause_cursor::restore(
        ctx.store.as_ref(),
        kind,
        &phone_id,
        &endpoint.pause,
        ctx.outbox.retry_max_ms,
    )
    .await;
    let mut handovers = endpoint.intake.open(permits.clone());
    restore_back_in_queue(&ctx, &endpoint, kind, &phone_id).await;
    tracing::info!(channel = %kind, %phone_id, concurrency, "dispatcher started");

    let mut holding = false;
    let mut claim_failures = Throttle::new(REPEATED_FAILURE_LOG_EVERY);
    // Until the endpoint has first come up (a modem still starting), a
    // queue that waits is no outage, and the journal does not call it one.
    let mut came_up = false;
    while !ctx.shutdown.is_cancelled() {
        if recorder.is_finished() {
            // It ends only once `finished` is dropped, below: ended now,
            // it panicked, and every send from here on would go out with
            // no outcome recorded (each sent again at the next start).
            // Ended, this dispatcher is a task the daemon's watch sees
            // end: it stops the daemon (exit 1) for the service manager to
            // start a whole one. Claims left are requeued at that start.
            tracing::error!(channel = %kind, %phone_id,
                "the outcome recorder ended; this dispatcher stops sending");
            return;
        }
        // At every turn, idle ones too: while every send comes by
        // hand-over, no claim finds anything, and a sweep after claims
        // alone never ran; each recipient ever sent to stayed.
        if let Some(limiter) = &sends.limiters.per_recipient {
            limiter.retain_recent();
        }
        while let Some(joined) = sends.in_flight.try_join_next() {
            if send_task_panicked(&joined, kind, &phone_id) {
                return;
            }
        }
        while let Ok(handover) = handovers.try_recv() {
            sends.take(handover);
        }
        let can_send = endpoint.channel.can_send();
        let paused = endpoint.pause.remaining(now_ms());
        if !can_send || paused.is_some() {
            // Claiming now would only hand the endpoint sends it turns
            // away, or the remote refuses; each would go back to the queue,
            // but the churn would walk the whole queue once per poll.
            // Accepts queue meanwhile.
            endpoint.intake.not_drained();
            if !holding && !can_send && came_up {
                tracing::info!(channel = %kind, %phone_id, "endpoint down; its queue waits until it is back");
                holding = true;
            }
            let look_again = paused.map_or(DOWN_POLL, |left| left.min(DOWN_POLL));
            tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                _ = tokio::time::sleep(look_again) => {}
                Some(joined) = sends.in_flight.join_next(), if !sends.in_flight.is_empty() => {
                    if send_task_panicked(&joined, kind, &phone_id) {
                        return;
                    }
                }
                Some(handover) = handovers.recv() => sends.take(handover),
            }
            continue;
        }
        if holding {
            tracing::info!(channel = %kind, %phone_id, "endpoint back; sending its queue");
            holding = false;
        }
        came_up = true;
        let free = permits.available_permits() as u32;
        if free == 0 {
            // Permits come back in groups, as the recorder commits outcomes,
            // so the next claim takes a group too.
            tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                permit = permits.acquire() => {
                    drop(permit);
                    continue;
                }
                Some(handover) = handovers.recv() => {
                    sends.take(handover);
                    continue;
                }
            }
        }
        let claim_at = now_ms();
        let claim_start = endpoint.intake.claim_starts(claim_at);
        let claim_view = endpoint.back_in_queue.claim_starts(claim_at);
        let (held, hold_ends) = endpoint.back_in_queue.held(claim_at);
        let claimed = ctx
            .store
            .claim_outbound(ClaimRequest {
                channel: kind,
                phone_id: phone_id.clone(),
                limit: free,
                now_ms: claim_at,
                lease_ms,
                skip_recipients: held.clone(),
            })
            .await;
        let claimed = match claimed {
            Ok(claimed) => {
                // Fewer than asked for: nothing due is left waiting, so new
                // messages may be handed over without a claim.
                endpoint
                    .intake
                    .claim_found(claimed.len() < free as usize, claim_start);
                claimed
            }
            Err(e) => {
                if let Some(unlogged) = claim_failures.allow(std::time::Instant::now()) {
                    tracing::error!(error = %e, channel = %kind, %phone_id,
                        failures_since_last_logged = unlogged, "cannot claim from the outbox");
                }
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(IDLE_POLL) => continue,
                }
            }
        };
        let nothing_due = claimed.is_empty();
        sends
            .start_claimed(claimed, &permits, &mut handovers, claim_view)
            .await;
        if nothing_due {
            let wait = idle_wait(&ctx, &endpoint, kind, &phone_id, held, hold_ends).await;
            tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                _ = endpoint.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                Some(joined) = sends.in_flight.join_next(), if !sends.in_flight.is_empty() => {
                    if send_task_panicked(&joined, kind, &phone_id) {
                        return;
                    }
                }
                Some(handover) = handovers.recv() => {
                    sends.take(handover);
                }
            }
            continue;
        }
    }
    // No new hand-overs; those already committed are sent (or released on
    // `hard_stop`) like any claim. Each slot reserved before the close is
    // waited for, even past `hard_stop`, until its request has handed its
    // message over or given up (the channel ends once every reservation is
    // gone): a message committed claimed and handed over to no one would
    // stay `sending`, its claim counted, until the next start. A request
    // holds its slot only for the one commit.
    endpoint.intake.close();
    while let Some(handover) = handovers.recv().await {
        sends.take(handover);
    }
    // Let in-flight sends finish; each one releases itself on `hard_stop`.
    // Then every outcome is committed before the dispatcher says stopped.
    while sends.in_flight.join_next().await.is_some() {}
    drop(sends);
    let _ = recorder.await;
    tracing::info!(channel = %kind, %phone_id, "dispatcher stopped");
}

/// Whether a send task ended in a panic outside the catch around its send
/// (in its turn's bookkeeping): its message stays claimed, and its
/// permit's hand back may be lost. The dispatcher then ends, which the
/// daemon's task watch sees (exit 1, started again, the claim requeued),
/// rather than send on with a message stuck in `sending` unsaid.
fn send_task_panicked(
    joined: &Result<(), tokio::task::JoinError>,
    kind: phonerelay_channel::ChannelKind,
    phone_id: &str,
) -> bool {
    match joined {
        Err(e) if e.is_panic() => {
            tracing::error!(channel = %kind, %phone_id, error = %e,
                "a send task panicked; this dispatcher stops sending");
            true
        }
        _ => false,
    }
}

/// What a dispatcher starts with as back in the queue: each message not
/// due yet (a retry, a rate limit) holds its recipient's later ones back
/// until it has been taken again (`back_in_queue`), and the intake hands no
/// message over past its time until a claim has taken it. If the queue
/// cannot be read, it starts with nothing and says so: a new message may
/// then overtake one waiting to retry, nothing worse.
async fn restore_back_in_queue(
    ctx: &DispatchContext,
    endpoint: &Endpoint,
    kind: phonerelay_channel::ChannelKind,
    phone_id: &str,
) {
    match ctx.store.queued_for_later(kind, phone_id, now_ms()).await {
        Ok(queued) => {
            endpoint.back_in_queue.restore(&queued);
            for message in &queued {
                endpoint.intake.queued_already(message.due_ms);
            }
        }
        Err(e) => {
            endpoint.back_in_queue.restore(&[]);
            tracing::warn!(
                error = %e, channel = %kind, %phone_id,
                "cannot read the retries waiting in the queue; a new message may overtake one"
            );
        }
    }
}

/// Who hears of `endpoint`'s returns to the queue once they are committed.
fn returns_of(endpoint: &Endpoint) -> Returns {
    Returns {
        back_in_queue: endpoint.back_in_queue.clone(),
        intake: endpoint.intake.clone(),
        wake: endpoint.wake.clone(),
    }
}

/// The sends of one endpoint under way, and what each needs.
struct Sends {
    in_flight: JoinSet<()>,
    endpoint: Arc<Endpoint>,
    ctx: DispatchContext,
    limiters: Arc<Limiters>,
    finished: mpsc::UnboundedSender<Finished>,
    /// Each recipient's sends, one after the other in the order started.
    order: RecipientOrder,
}

impl Sends {
    /// Send a message handed over at accept, with the permit it holds.
    fn take(&mut self, handover: Handover) {
        self.start(handover.record, handover.permit, None);
    }

    /// Start the messages one claim took, in queue order, each once it has
    /// a permit.
    ///
    /// Hand-overs may have taken permits since `free` was counted (the
    /// claim, taking fewer than it asked for, opened the door to them):
    /// those are started while a claimed message waits, for their permits
    /// are the ones that come back, and waiting on the permit alone would
    /// deadlock. But a claimed message takes its place in its recipient's
    /// order only when it starts, so a hand-over to the same recipient
    /// started meanwhile would go first, though it was accepted after it.
    /// Nor may the claimed message take its place before it has a permit:
    /// the hand-overs behind it would hold every permit waiting for its
    /// turn, and it would wait for theirs. So a hand-over to the recipient
    /// of a claimed message not started yet is not started: it goes back
    /// to the queue unsent and uncounted (`held_back`), as one behind a
    /// retry does, and its permit comes back once that is recorded,
    /// whatever the claimed message waits for. Back in the queue
    /// (`back_in_queue`) it holds the recipient's later messages behind it,
    /// and a claim takes it after the claimed message has started, in
    /// queue order again. The wait keeps its place in the semaphore's
    /// queue and looks at the permit first, so a permit that comes back
    /// goes to the claimed message, not to a new hand-over.
    async fn start_claimed(
        &mut self,
        claimed: Vec<OutboundRecord>,
        permits: &Arc<Semaphore>,
        handovers: &mut mpsc::UnboundedReceiver<Handover>,
        claim: ClaimView,
    ) {
        let mut claimed = std::collections::VecDeque::from(claimed);
        while let Some(message) = claimed.pop_front() {
            let acquire = permits.clone().acquire_owned();
            tokio::pin!(acquire);
            let permit = loop {
                tokio::select! {
                    biased;
                    permit = &mut acquire => {
                        break permit.expect("the semaphore is never closed");
                    }
                    Some(handover) = handovers.recv() => {
                        let to = &handover.record.to;
                        if std::iter::once(&message).chain(&claimed).any(|m| m.to == *to) {
                            self.hold_back(handover);
                        } else {
                            self.take(handover);
                        }
                    }
                }
            };
            self.start(message, permit, Some(claim));
        }
    }

    /// Put a message handed over at accept back to the queue unsent, due at
    /// once, behind a claimed message to its recipient that has not
    /// started (see [`Self::start_claimed`]).
    fn hold_back(&mut self, handover: Handover) {
        let Handover { record, permit } = handover;
        let due = DUE_AT_ONCE_MS;
        let outcome = Deferral::RecipientWaiting.release(&self.ctx, record.channel.as_str(), due);
        let went_back = Some(Returned {
            coming_due: self.endpoint.intake.queued_until(due),
            in_queue: self.endpoint.back_in_queue.went_back(&record, due),
        });
        let _ = self.finished.send(Finished {
            id: record.id,
            outcome,
            went_back,
            _permit: permit,
        });
    }

    /// Send a claimed (by a claim that saw `claim`) or handed-over message
    /// in a task of its own, once the send before it to the same recipient
    /// has ended (messages are started in queue order) and no earlier one
    /// to that recipient is back in the queue; its outcome goes to the
    /// recorder with the permit it holds, which it keeps while it waits its
    /// turn.
    fn start(
        &mut self,
        message: OutboundRecord,
        permit: OwnedSemaphorePermit,
        claim: Option<ClaimView>,
    ) {
        self.endpoint.back_in_queue.taken_again(&message, claim);
        let mut place = self.order.join(&message.to);
        let (endpoint, ctx, limiters) = (
            self.endpoint.clone(),
            self.ctx.clone(),
            self.limiters.clone(),
        );
        let finished = self.finished.clone();
        self.in_flight.spawn(async move {
            place.wait_turn().await;
            let back_in_queue = &endpoint.back_in_queue;
            let outcome = if back_in_queue.goes_before(&message, now_ms()) {
                // Due at once: the claims leave the recipient's queue alone
                // while the earlier one is not due (`BackInQueue::held`),
                // and take the two in order after.
                Deferral::RecipientWaiting.release(&ctx, message.channel.as_str(), DUE_AT_ONCE_MS)
            } else {
                // A panic in the adapter must still end the claim with an
                // outcome: nothing else would until the next start.
                AssertUnwindSafe(send_one(&endpoint, &ctx, &limiters, &message))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| send_panicked(&ctx, &message))
            };
            let went_back = match &outcome {
                SendOutcome::Retry {
                    next_attempt_at_ms, ..
                }
                | SendOutcome::Release {
                    next_attempt_at_ms, ..
                } => Some(Returned {
                    coming_due: endpoint.intake.queued_until(*next_attempt_at_ms),
                    in_queue: back_in_queue.went_back(&message, *next_attempt_at_ms),
                }),
                _ => None,
            };
            // Only now: the next send to the recipient must see this one
            // back in the queue.
            place.finish();
            // The recorder outlives every send task: `run_endpoint`
            // awaits it only after they are all done.
            let _ = finished.send(Finished {
                id: message.id,
                outcome,
                went_back,
                _permit: permit,
            });
        });
    }
}

/// Until the next queued message is due, at most [`IDLE_POLL`]. The
/// intake knows of messages gone back to the queue whose outcome the
/// store may not have yet: their time counts too, or a retry could wait
/// a whole poll. Messages to recipients held back (`held`, the claim left
/// them) are due when the first hold ends (`hold_ends`), not before.
async fn idle_wait(
    ctx: &DispatchContext,
    endpoint: &Endpoint,
    kind: phonerelay_channel::ChannelKind,
    phone_id: &str,
    held: Vec<crate::store::HeldRecipient>,
    hold_ends: Option<i64>,
) -> Duration {
    let stored = ctx
        .store
        .next_due(kind, phone_id, now_ms(), held)
        .await
        .ok()
        .flatten();
    let next = stored.into_iter().chain(endpoint.intake.next_due());
    match next.chain(hold_ends).min() {
        Some(due) => {
            let ms = (due - now_ms()).clamp(0, IDLE_POLL.as_millis() as i64);
            Duration::from_millis(ms as u64)
        }
        None => IDLE_POLL,
    }
}

/// Marks queued messages past their TTL expired, even on an endpoint that
/// is down and claims nothing.
pub async fn run_expiry_sweeper(
    store: Arc<dyn Store>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    let mut failures = Throttle::new(REPEATED_FAILURE_LOG_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match expire_in_batches(&*store, &shutdown).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "messages past their ttl marked expired"),
            Err(e) => {
                if let Some(unlogged) = failures.allow(std::time::Instant::now()) {
                    tracing::warn!(error = %e, failures_since_last_logged = unlogged,
                        "expiry sweep failed");
                }
            }
        }
    }
}

/// Messages ended per writer job by the expiry sweep: a backlog past its
/// ttl (a daemon down for a weekend, a clock stepped forward) ended in one
/// job held every accept and inbound commit behind it.
const EXPIRE_BATCH: u32 = 500;

/// Every queued message past its ttl marked expired, [`EXPIRE_BATCH`] at
/// a time until a job comes back short or the daemon stops; how many.
async fn expire_in_batches(
    store: &dyn Store,
    shutdown: &CancellationToken,
) -> crate::store::StoreResult<usize> {
    let mut total = 0;
    loop {
        let n = store.expire_due(now_ms(), EXPIRE_BATCH).await?;
        total += n;
        if n < EXPIRE_BATCH as usize || shutdown.is_cancelled() {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use phonerelay_channel::{Channel, ChannelKind, SendReceipt};

    use super::*;
    use crate::store::testing::queued_sms;
    use crate::store::{AcceptOutcome, OutboundStatus, SqliteStore};

    /// Each recipient a send took a per-recipient token for is forgotten
    /// once its bucket is full again, also while every send comes by
    /// hand-over and no claim finds anything: kept, one entry stayed for
    /// every recipient ever sent to.
    #[tokio::test]
    async fn recipients_sent_to_by_hand_over_alone_are_forgotten() {
        const RECIPIENTS: usize = 1_000;
        let (_dir, store, channel, endpoint, ctx) = idle_endpoint();
        let limiters = Arc::new(Limiters {
            endpoint: RateLimiter::direct(Quota::per_second(NonZeroU32::MAX)),
            // A token comes back each second.
            per_recipient: Some(RecipientLimit::per_minute(NonZeroU32::new(60).unwrap())),
        });
        let dispatcher = tokio::spawn(dispatch(
            endpoint.clone(),
            ctx.clone(),
            16,
            limiters.clone(),
        ));
        let per_recipient = limiters.per_recipient.as_ref().unwrap();
        let mut most_kept = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        for n in 0..RECIPIENTS {
            most_kept = most_kept.max(per_recipient.recipients());
            let reservation = loop {
                if let Ok(reservation) = endpoint.intake.reserve() {
                    break reservation;
                }
                assert!(std::time::Instant::now() < deadline, "no free slot");
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            let mut message = queued_sms("hi", now_ms());
            message.to = format!("+1555{n:07}");
            message.claimed_until_ms = Some(now_ms() + 60_000);
            let id = match store.accept_outbound(message.clone()).await {
                Ok(AcceptOutcome::Created { id }) => id,
                other => panic!("not created: {other:?}"),
            };
            assert!(reservation.hand_over(message.claimed_record(id)));
        }
        while channel.sent.lock().unwrap().len() < RECIPIENTS {
            assert!(std::time::Instant::now() < deadline, "not all sent");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(most_kept > 0, "the sends took tokens");
        // Every bucket is full again a second after its send; the
        // dispatcher's turns come at least every IDLE_POLL.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while per_recipient.recipients() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{} recipients still kept",
                per_recipient.recipients()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ctx.shutdown.cancel();
        dispatcher.await.unwrap();
    }

    /// Outcomes refused for now (a full disk) while set; claims counted.
    #[derive(Default)]
    struct DiskFullForOutcomes {
        full: std::sync::atomic::AtomicBool,
        claims: std::sync::atomic::AtomicUsize,
    }

    impl crate::store::testing::Faults for DiskFullForOutcomes {
        fn claim(&self) {
            self.claims
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }

        fn record_outcomes(&self, _: &[(String, SendOutcome)]) -> crate::store::StoreResult<()> {
            if self.full.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(crate::store::StoreError::Unavailable("disk full".into()));
            }
            Ok(())
        }
    }

    /// While the store refuses a retry's outcome (a full disk), the message
    /// stays `sending` and no claim can take it: a dispatcher with a slot
    /// free waits for the commit or its next poll instead of claiming
    /// nothing in a loop on the store's one writer. It claimed thousands of
    /// times a second, for as long as the disk stayed full.
    #[tokio::test]
    async fn a_return_the_store_refuses_for_now_is_not_claimed_for_in_a_loop() {
        use std::sync::atomic::Ordering::SeqCst;
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        let store = Arc::new(crate::store::testing::Faulty::with(
            sqlite,
            DiskFullForOutcomes::default(),
        ));
        store.faults.full.store(true, SeqCst);
        let endpoints = crate::endpoints::Endpoints::new(vec![Arc::new(Idle {
            failing: true,
            ..Idle::default()
        }) as Arc<dyn Channel>])
        .unwrap();
        let endpoint = endpoints.get(ChannelKind::Sms, "m1").unwrap().clone();
        let mut ctx = DispatchContext::for_tests(store.clone());
        ctx.outbox = Arc::new(OutboxConfig {
            retry_initial_ms: 10,
            retry_max_ms: 20,
            ..OutboxConfig::default()
        });
        let limiters = Arc::new(Limiters {
            endpoint: RateLimiter::direct(Quota::per_second(NonZeroU32::MAX)),
            per_recipient: None,
        });
        store
            .accept_outbound(queued_sms("refused", now_ms()))
            .await
            .unwrap();
        let dispatcher = tokio::spawn(dispatch(endpoint.clone(), ctx.clone(), 2, limiters));
        // The send failed and its retry, due 20 ms on at most, is refused.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while endpoint.intake.coming_due_for_tests() == 0 {
            assert!(std::time::Instant::now() < deadline, "no send went back");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = store.faults.claims.load(SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let claims = store.faults.claims.load(SeqCst) - before;
        assert!(
            claims <= 5,
            "{claims} claims in a second while nothing could be claimed"
        );
        // Room again: the retry is committed, claimed and tried again.
        store.faults.full.store(false, SeqCst);
        let tried_again = store.faults.claims.load(SeqCst);
        while store.faults.claims.load(SeqCst) == tried_again {
            assert!(std::time::Instant::now() < deadline, "never claimed again");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        ctx.shutdown.cancel();
        ctx.hard_stop.cancel();
        dispatcher.await.unwrap();
    }

    /// A real store in a fresh folder, an [`Idle`] endpoint `sms/m1` on it,
    /// and a dispatch context with no limits.
    fn idle_endpoint() -> (
        tempfile::TempDir,
        Arc<dyn Store>,
        Arc<Idle>,
        Arc<Endpoint>,
        DispatchContext,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap());
        let channel = Arc::new(Idle::default());
        let endpoints = crate::endpoints::Endpoints::new(vec![channel.clone()]).unwrap();
        let endpoint = endpoints
            .get(phonerelay_channel::ChannelKind::Sms, "m1")
            .unwrap()
            .clone();
        let ctx = DispatchContext::for_tests(store.clone());
        (dir, store, channel, endpoint, ctx)
    }

    /// An endpoint that sends everything at once (or, `failing`, fails
    /// every send for now), keeps the texts it sent, and receives nothing.
    #[derive(Default)]
    struct Idle {
        sent: std::sync::Mutex<Vec<String>>,
        failing: bool,
    }

    #[async_trait::async_trait]
    impl phonerelay_channel::Channel for Idle {
        fn kind(&self) -> phonerelay_channel::ChannelKind {
            phonerelay_channel::ChannelKind::Sms
        }
        fn phone_id(&self) -> &str {
            "m1"
        }
        async fn send(
            &self,
            message: &phonerelay_channel::OutboundMessage,
        ) -> Result<SendReceipt, phonerelay_channel::SendError> {
            if self.failing {
                return Err(phonerelay_channel::SendError::transient(
                    "timeout",
                    "no answer",
                ));
            }
            self.sent.lock().unwrap().push(message.text.clone());
            Ok(SendReceipt::single(format!("ext-{}", message.id)))
        }
        async fn run(&self, _ctx: phonerelay_channel::ChannelContext) {}
        fn health(&self) -> phonerelay_channel::ChannelHealth {
            phonerelay_channel::ChannelHealth::up("idle")
        }
    }

    /// A store whose recording of send outcomes panics: a bug in the
    /// recorder's path.
    struct RecordingPanics;

    impl crate::store::testing::Faults for RecordingPanics {
        fn record_outcomes(
            &self,
            _outcomes: &[(String, SendOutcome)],
        ) -> crate::store::StoreResult<()> {
            panic!("recording broke")
        }
    }

    /// The outcome recorder dying ends its dispatcher, which the daemon's
    /// task watch sees (exit 1, started again): it kept claiming and
    /// sending with nothing recorded, every message `sending` for good,
    /// each sent again at the next start.
    #[tokio::test]
    async fn a_dispatcher_whose_recorder_died_stops_sending() {
        let (dir, _, channel, endpoint, _) = idle_endpoint();
        let sqlite = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::store::testing::Faulty::with(sqlite, RecordingPanics));
        let ctx = DispatchContext::for_tests(store.clone());
        store
            .accept_outbound(queued_sms("first", now_ms()))
            .await
            .unwrap();
        let dispatcher = tokio::spawn(run_endpoint(endpoint.clone(), ctx.clone()));
        let ended = tokio::time::timeout(Duration::from_secs(20), dispatcher).await;
        assert!(ended.is_ok(), "the dispatcher sends on with no recorder");
        assert_eq!(*channel.sent.lock().unwrap(), ["first"]);
        // Nothing more is claimed or sent.
        store
            .accept_outbound(queued_sms("second", now_ms()))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(*channel.sent.lock().unwrap(), ["first"]);
        ctx.shutdown.cancel();
    }

    /// A message committed claimed at accept whose hand-over comes only
    /// after the hard stop (its commit was slow) is still taken and
    /// released to the queue before the dispatcher says stopped, its claim
    /// not counted, instead of being left `sending` for the next start.
    #[tokio::test]
    async fn a_hand_over_that_comes_after_the_hard_stop_is_released_to_the_queue() {
        let (_dir, store, _, endpoint, ctx) = idle_endpoint();
        let dispatcher = tokio::spawn(run_endpoint(endpoint.clone(), ctx.clone()));
        // A slot is free once the dispatcher's first claim found nothing.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let reservation = loop {
            if let Ok(reservation) = endpoint.intake.reserve() {
                break reservation;
            }
            assert!(std::time::Instant::now() < deadline, "no free slot");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let mut message = queued_sms("late", now_ms());
        message.claimed_until_ms = Some(now_ms() + 60_000);
        let id = match store.accept_outbound(message.clone()).await {
            Ok(AcceptOutcome::Created { id }) => id,
            other => panic!("not created: {other:?}"),
        };
        ctx.shutdown.cancel();
        ctx.hard_stop.cancel();
        // Time for a dispatcher that did not wait for the hand-over to stop
        // without it; one that waits passes whatever this takes.
        tokio::time::sleep(Duration::from_millis(200)).await;
        reservation.hand_over(message.claimed_record(id.clone()));
        tokio::time::timeout(Duration::from_secs(30), dispatcher)
            .await
            .expect("the dispatcher stopped")
            .unwrap();
        let detail = store.get_outbound(&id).await.unwrap().unwrap();
        assert_eq!(detail.record.status, OutboundStatus::Queued);
        assert_eq!(detail.record.attempts, 0, "the claim is not counted");
    }

    const TO: &str = "+15551230001";
    const OTHER: &str = "+15551230009";

    /// A dispatcher's parts as `run_endpoint` makes them, over a real store,
    /// for a test to play the dispatcher's turns itself: claims, hand-overs
    /// and the start of what a claim took, in the order it chooses.
    struct Dispatcher {
        store: Arc<dyn Store>,
        endpoint: Arc<Endpoint>,
        channel: Arc<Idle>,
        sends: Sends,
        permits: Arc<Semaphore>,
        handovers: mpsc::UnboundedReceiver<Handover>,
        recorder: tokio::task::JoinHandle<()>,
        concurrency: u32,
        _dir: tempfile::TempDir,
    }

    impl Dispatcher {
        /// A dispatcher with two slots whose claim took "first" to [`TO`],
        /// queued while no slot was free (so the door stayed shut until a
        /// claim took it): the claim's messages and view.
        async fn first_claimed_while_no_slot_was_free(
            &mut self,
        ) -> (Vec<OutboundRecord>, ClaimView) {
            self.claim(2).await;
            let taken = self.endpoint.intake.reserve().unwrap();
            let also_taken = self.endpoint.intake.reserve().unwrap();
            self.queue(TO, "first").await;
            drop((taken, also_taken));
            let (claimed, view) = self.claim(2).await;
            assert_eq!(claimed.len(), 1, "the claim took \"first\"");
            (claimed, view)
        }

        fn new(concurrency: u32) -> Self {
            let (dir, store, channel, endpoint, ctx) = idle_endpoint();
            let (finished, finished_rx) = mpsc::unbounded_channel();
            let recorder = tokio::spawn(record_finished(
                ctx.clone(),
                finished_rx,
                returns_of(&endpoint),
                endpoint.unrecorded.clone(),
            ));
            let permits = Arc::new(Semaphore::new(concurrency as usize));
            let handovers = endpoint.intake.open(permits.clone());
            let sends = Sends {
                in_flight: JoinSet::new(),
                endpoint: endpoint.clone(),
                ctx,
                limiters: Arc::new(Limiters {
                    endpoint: RateLimiter::direct(Quota::per_second(NonZeroU32::MAX)),
                    per_recipient: None,
                }),
                finished,
                order: RecipientOrder::default(),
            };
            Self {
                store,
                endpoint,
                channel,
                sends,
                permits,
                handovers,
                recorder,
                concurrency,
                _dir: dir,
            }
        }

        fn message(to: &str, text: &str) -> crate::store::NewOutbound {
            let mut message = queued_sms(text, now_ms());
            message.to = to.into();
            message
        }

        /// A request that found no free slot: its message queues.
        async fn queue(&self, to: &str, text: &str) -> String {
            let refused = self.endpoint.intake.reserve().err().expect("a free slot");
            let id = match self.store.accept_outbound(Self::message(to, text)).await {
                Ok(AcceptOutcome::Created { id }) => id,
                other => panic!("not created: {other:?}"),
            };
            drop(refused);
            id
        }

        /// A request that took a free slot: its message is committed
        /// claimed and handed over.
        async fn hand_over(&self, to: &str, text: &str) -> String {
            let reservation = self.endpoint.intake.reserve().expect("a free slot");
            let mut message = Self::message(to, text);
            message.claimed_until_ms = Some(now_ms() + 60_000);
            let id = match self.store.accept_outbound(message.clone()).await {
                Ok(AcceptOutcome::Created { id }) => id,
                other => panic!("not created: {other:?}"),
            };
            assert!(reservation.hand_over(message.claimed_record(id.clone())));
            id
        }

        /// A claim of up to `limit` due messages, as the dispatcher makes
        /// it: fewer than asked for opens the door to hand-overs.
        async fn claim(&self, limit: u32) -> (Vec<OutboundRecord>, ClaimView) {
            let at = now_ms();
            let start = self.endpoint.intake.claim_starts(at);
            let view = self.endpoint.back_in_queue.claim_starts(at);
            let claimed = self
                .store
                .claim_outbound(ClaimRequest {
                    channel: phonerelay_channel::ChannelKind::Sms,
                    phone_id: "m1".into(),
                    limit,
                    now_ms: at,
                    lease_ms: 60_000,
                    skip_recipients: self.endpoint.back_in_queue.held(at).0,
                })
                .await
                .unwrap();
            self.endpoint
                .intake
                .claim_found(claimed.len() < limit as usize, start);
            (claimed, view)
        }

        /// The dispatcher's turns from here on: start what a claim took,
        /// taking hand-overs meanwhile as `run_endpoint` does, let the
        /// sends end and their outcomes be recorded, and claim again, until
        /// `count` messages have been sent.
        async fn send_until(
            &mut self,
            claimed: Vec<OutboundRecord>,
            view: ClaimView,
            count: usize,
        ) {
            let (mut claimed, mut view) = (claimed, view);
            loop {
                self.sends
                    .start_claimed(claimed, &self.permits, &mut self.handovers, view)
                    .await;
                while let Ok(handover) = self.handovers.try_recv() {
                    self.sends.take(handover);
                }
                while self.sends.in_flight.join_next().await.is_some() {}
                if self.channel.sent.lock().unwrap().len() >= count {
                    return;
                }
                // Every outcome is recorded once every permit is back, so
                // what went back to the queue (due at once) is there for
                // the next claim.
                drop(self.permits.acquire_many(self.concurrency).await.unwrap());
                (claimed, view) = self.claim(self.concurrency).await;
            }
        }

        fn sent(&self) -> Vec<String> {
            self.channel.sent.lock().unwrap().clone()
        }
    }

    /// The message a recipient's later ones wait behind (for its retry)
    /// is cancelled: they are due in the queue now, and no slot is handed
    /// out until a claim that started after the cancel took them. One
    /// under way, which passed them over as held, cannot vouch for the
    /// queue: a message handed over then went before them.
    #[tokio::test]
    async fn a_hold_ended_by_a_cancel_hands_no_slot_out_until_a_claim_took_what_it_held() {
        let d = Dispatcher::new(2);
        let first = d.queue(TO, "first").await;
        let (claimed, _) = d.claim(2).await;
        assert_eq!(claimed.len(), 1);
        // "first" goes back, due in a minute, as the recorder puts it.
        let due = now_ms() + 60_000;
        let retry = SendOutcome::Retry {
            next_attempt_at_ms: due,
            code: "timeout".into(),
            reason: "no answer".into(),
            now_ms: now_ms(),
            may_have_gone_out: false,
        };
        d.store
            .record_outcomes(vec![(first.clone(), retry)])
            .await
            .unwrap();
        let went_back = d.endpoint.back_in_queue.went_back(&claimed[0], due);
        d.endpoint.back_in_queue.recorded([&went_back]);
        // "second", queued behind it, is passed over by the claims.
        match d
            .store
            .accept_outbound(Dispatcher::message(TO, "second"))
            .await
        {
            Ok(AcceptOutcome::Created { .. }) => {}
            other => panic!("not created: {other:?}"),
        }
        let (passed_over, _) = d.claim(2).await;
        assert!(passed_over.is_empty(), "the recipient is held");

        // A claim starts, passing "second" over; then the cancel, as the
        // API makes it; then the claim ends.
        let under_way = d.endpoint.intake.claim_starts(now_ms());
        d.store.cancel_outbound(&first, now_ms()).await.unwrap();
        d.endpoint.queued_message_cancelled(&claimed[0]);
        d.endpoint.intake.claim_found(true, under_way);
        assert!(
            d.endpoint.intake.reserve().is_err(),
            "a slot handed out before \"second\" was taken"
        );
        let (taken, _) = d.claim(2).await;
        assert_eq!(taken.len(), 1, "\"second\" taken");
        assert!(d.endpoint.intake.reserve().is_ok(), "drained again");
    }

    /// The race: a claim took the recipient's "first", fewer messages than
    /// it asked for, so the door opened to hand-overs; before the
    /// dispatcher started "first", two requests took both slots, one to
    /// another recipient and "second", accepted after "first", to the same
    /// recipient. "first" waits for a slot, and the hand-overs that come in
    /// meanwhile are started (their slots are the ones that come back):
    /// "second" must still not go before it.
    #[tokio::test]
    async fn a_hand_over_does_not_overtake_a_claimed_message_that_waits_for_a_slot() {
        let mut d = Dispatcher::new(2);
        let (claimed, view) = d.first_claimed_while_no_slot_was_free().await;
        d.hand_over(OTHER, "other").await;
        let second = d.hand_over(TO, "second").await;
        assert_eq!(
            d.permits.available_permits(),
            0,
            "the hand-overs took both slots"
        );
        tokio::time::timeout(Duration::from_secs(30), d.send_until(claimed, view, 3))
            .await
            .expect("every message sent");
        let to_recipient: Vec<String> = d.sent().into_iter().filter(|t| t != "other").collect();
        assert_eq!(to_recipient, ["first", "second"], "in the order accepted");
        drop(d.sends);
        d.recorder.await.unwrap();
        let detail = d.store.get_outbound(&second).await.unwrap().unwrap();
        assert_eq!(detail.record.status, OutboundStatus::Sent);
        let codes: Vec<_> = detail.history.iter().map(|e| e.code.as_deref()).collect();
        assert!(codes.contains(&Some("held_back")), "{codes:?}");
    }

    /// A claimed message that held its recipient's turn while it waited for
    /// a slot would deadlock here: both slots are taken by hand-overs to
    /// its recipient, which wait for that turn, and only their slots can
    /// come back. Each is sent after "first", in the order accepted, and
    /// the dispatcher's turns end (the timeout fails a deadlock).
    #[tokio::test]
    async fn a_claimed_message_waiting_for_a_slot_that_hand_overs_to_its_recipient_hold_is_sent_first()
     {
        let mut d = Dispatcher::new(2);
        let (claimed, view) = d.first_claimed_while_no_slot_was_free().await;
        d.hand_over(TO, "second").await;
        d.hand_over(TO, "third").await;
        assert_eq!(
            d.permits.available_permits(),
            0,
            "the hand-overs took both slots"
        );
        tokio::time::timeout(Duration::from_secs(30), d.send_until(claimed, view, 3))
            .await
            .expect("no deadlock: every message sent");
        assert_eq!(
            d.sent(),
            ["first", "second", "third"],
            "in the order accepted"
        );
        drop(d.sends);
        d.recorder.await.unwrap();
    }
}
