use std::time::{Duration, Instant};

use futures_util::FutureExt;
use governor::DefaultDirectRateLimiter;
use phonerelay_channel::{ErrorClass, OutboundMessage, SendError};

use super::backoff::retry_delay_ms;
use super::pause::RefusalBackoff;
use super::pause_cursor;
use super::recipient_limit::RecipientLimit;
use super::worker::DispatchContext;
use crate::clock::now_ms;
use crate::endpoints::Endpoint;
use crate::metrics::labels;
use crate::store::{DUE_AT_ONCE_MS, OutboundRecord, SendOutcome, stopped_past_max_attempts};

/// How long an endpoint that turned a send away (`ErrorClass::Unavailable`)
/// starts no other: long enough not to walk the queue in a tight loop
/// while its `can_send` catches up, short enough to go on at once after.
const TURNED_AWAY_PAUSE: Duration = Duration::from_millis(250);

pub struct Limiters {
    pub endpoint: DefaultDirectRateLimiter,
    pub per_recipient: Option<RecipientLimit>,
}

/// Send one claimed message and say what became of it; the worker's
/// recorder commits that outcome (see `recorder::record_finished`).
pub async fn send_one(
    endpoint: &Endpoint,
    ctx: &DispatchContext,
    limiters: &Limiters,
    record: &OutboundRecord,
) -> SendOutcome {
    decide(endpoint, ctx, limiters, record).await
}

async fn decide(
    endpoint: &Endpoint,
    ctx: &DispatchContext,
    limiters: &Limiters,
    record: &OutboundRecord,
) -> SendOutcome {
    if now_ms() >= record.expires_at_ms {
        return SendOutcome::Expired { now_ms: now_ms() };
    }
    let Some(per_recipient) = &limiters.per_recipient else {
        return attempt(endpoint, ctx, limiters, record).await;
    };
    if let Err(wait) = per_recipient.take(&record.to) {
        return release_after(ctx, record, Deferral::RateLimited, wait);
    }
    let outcome = attempt(endpoint, ctx, limiters, record).await;
    if went_nowhere(&outcome) {
        per_recipient.give_back(&record.to);
    }
    outcome
}

/// Nothing reached the recipient: a release (no attempt: the hard stop, a
/// pause, the endpoint or the remote turning the send away unsent) or an
/// expiry before the send. A transient failure may have gone out, and a
/// send cut short at the hard stop may have too.
fn went_nowhere(outcome: &SendOutcome) -> bool {
    matches!(
        outcome,
        SendOutcome::Release { .. } | SendOutcome::Expired { .. }
    )
}

/// Send `record` once the endpoint's rate limit allows, unless something
/// stops it first.
async fn attempt(
    endpoint: &Endpoint,
    ctx: &DispatchContext,
    limiters: &Limiters,
    record: &OutboundRecord,
) -> SendOutcome {
    // `hard_stop` first: once it has fired, no send may start (the message
    // is released; a send begun now could go out and be sent again).
    tokio::select! {
        biased;
        _ = ctx.hard_stop.cancelled() => {
            return release_after(ctx, record, Deferral::Shutdown, Duration::ZERO);
        }
        _ = limiters.endpoint.until_ready() => {}
    }
    if let Some(wait) = endpoint.pause.remaining(now_ms()) {
        // The remote refused another send while this one waited its turn.
        return release_after(ctx, record, Deferral::EndpointPaused, wait);
    }
    if now_ms() >= record.expires_at_ms {
        // Its ttl ran out while it waited for the endpoint's rate limit.
        return SendOutcome::Expired { now_ms: now_ms() };
    }
    let message = OutboundMessage {
        id: record.id.clone(),
        channel: record.channel,
        phone_id: record.phone_id.clone(),
        to: record.to.clone(),
        text: record.text.clone(),
        subject: record.subject.clone(),
        source: record.source.clone(),
        attachments: record.attachments.clone(),
        reply_to_external_id: record.reply_to_external_id.clone(),
        options: record.options.clone(),
        attempt: record.attempts,
    };
    if ctx.hard_stop.is_cancelled() {
        // It fired while this one looked at the pause: still unsent.
        return release_after(ctx, record, Deferral::Shutdown, Duration::ZERO);
    }
    let send_timeout = Duration::from_secs(ctx.outbox.send_timeout_seconds);
    let started = Instant::now();
    let send = tokio::time::timeout(send_timeout, endpoint.channel.send(&message));
    tokio::pin!(send);
    let result = tokio::select! {
        biased;
        // The grace is over (or was cut short) with the send on its way.
        // Unless it has just ended: a send that is ready with the hard
        // stop is asked once more, for dropped unpolled its outcome was
        // lost, a `Sent` recorded as cut short and sent again after the
        // restart.
        _ = ctx.hard_stop.cancelled() => match (&mut send).now_or_never() {
            Some(result) => result,
            None => return stopped_in_flight(ctx, record),
        },
        result = &mut send => result,
    };
    let channel = record.channel.as_str();
    if let Ok(Err(error)) = &result {
        match error.class {
            ErrorClass::Unavailable => {
                let now = now_ms();
                endpoint
                    .pause
                    .extend_to(now, now + TURNED_AWAY_PAUSE.as_millis() as i64);
                tracing::debug!(id = %record.id, %channel, code = %error.code,
                    "endpoint unavailable; back to the queue: {}", error.message);
                return release_after(ctx, record, Deferral::EndpointDown, Duration::ZERO);
            }
            ErrorClass::RateLimited => return refused(endpoint, ctx, record, error).await,
            ErrorClass::RecipientLimited => return recipient_refused(ctx, record, error),
            ErrorClass::Transient | ErrorClass::Permanent => {}
        }
    }
    ctx.metrics
        .send_seconds
        .get_or_create(&labels(&[("channel", channel)]))
        .observe(started.elapsed().as_secs_f64());
    let result = result.unwrap_or_else(|_| {
        Err(SendError::transient(
            "send_timeout",
            format!(
                "no answer from the channel within {}s",
                send_timeout.as_secs()
            ),
        ))
    });
    let outcome = match result {
        Ok(receipt) => {
            endpoint.pause.sent();
            // An event time: reply routing compares it with replies'.
            SendOutcome::Sent {
                receipt,
                now_ms: crate::clock::event_ms(),
            }
        }
        Err(error) => {
            endpoint
                .failures
                .note(&error.code, &error.message, now_ms());
            classify(ctx, record, error)
        }
    };
    count_attempt(ctx, channel, &outcome);
    outcome
}

/// An attempt in `phonerelay_sends_total`, by how it ended: a transient
/// error on the last allowed attempt is `failed`, as the message is, not
/// `retry`.
fn count_attempt(ctx: &DispatchContext, channel: &str, outcome: &SendOutcome) {
    let label = match outcome {
        SendOutcome::Sent { .. } => "sent",
        SendOutcome::Retry { .. } => "retry",
        SendOutcome::Failed { .. } => "failed",
        // Not how an attempt ends (`classify` gives neither).
        SendOutcome::Release { .. } | SendOutcome::Expired { .. } => return,
    };
    ctx.metrics
        .sends
        .get_or_create(&labels(&[("channel", channel), ("outcome", label)]))
        .inc();
}

/// Why a claimed message went back to the queue without a send attempt:
/// the `reason` label of `phonerelay_deferred_total`, so an operator can
/// tell a queue held up by limits from one held up by the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferral {
    /// The per-recipient rate limit.
    RateLimited,
    /// An earlier message to the same recipient waits for its retry.
    RecipientWaiting,
    /// The shutdown grace period ended before the send began.
    Shutdown,
    /// The endpoint could not send at all (`ErrorClass::Unavailable`).
    EndpointDown,
    /// The remote refused this send for now (`ErrorClass::RateLimited`).
    Refused,
    /// The endpoint pauses after a refusal, and this send waited for it.
    EndpointPaused,
    /// The remote refused this send for its recipient alone
    /// (`ErrorClass::RecipientLimited`).
    RecipientRefused,
}

impl Deferral {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::RecipientWaiting => "recipient_waiting",
            Self::Shutdown => "shutdown",
            Self::EndpointDown => "endpoint_down",
            Self::Refused => "refused",
            Self::EndpointPaused => "paused",
            Self::RecipientRefused => "recipient_refused",
        }
    }

    /// The code of the message's history row: `held_back` for a message
    /// waiting behind another to its recipient, `deferred` for the rest.
    fn code(self) -> &'static str {
        match self {
            Self::RecipientWaiting => "held_back",
            _ => "deferred",
        }
    }

    /// Count it, and put the message back, due at `next_attempt_at_ms`.
    pub fn release(
        self,
        ctx: &DispatchContext,
        channel: &str,
        next_attempt_at_ms: i64,
    ) -> SendOutcome {
        self.count(ctx, channel);
        SendOutcome::Release {
            next_attempt_at_ms,
            now_ms: now_ms(),
            code: self.code().into(),
            reason: format!("{}; not counted as an attempt", self.reason()),
        }
    }

    /// What the message's history says of it.
    fn reason(self) -> &'static str {
        match self {
            Self::RateLimited => "held back by the per-recipient rate limit",
            Self::RecipientWaiting => {
                "waiting for an earlier message to the same recipient, which goes first"
            }
            Self::Shutdown => "the daemon stopped before this send went out",
            Self::EndpointDown => "the endpoint could not send",
            Self::Refused => "the remote refused the send for now",
            Self::EndpointPaused => "the endpoint pauses after the remote refused a send",
            Self::RecipientRefused => "the remote refused this recipient for now",
        }
    }

    pub fn count(self, ctx: &DispatchContext, channel: &str) {
        ctx.metrics
            .deferred
            .get_or_create(&labels(&[("channel", channel), ("reason", self.as_str())]))
            .inc();
    }
}

fn release_after(
    ctx: &DispatchContext,
    record: &OutboundRecord,
    why: Deferral,
    wait: Duration,
) -> SendOutcome {
    let due = if wait.is_zero() {
        DUE_AT_ONCE_MS
    } else {
        now_ms() + wait.as_millis() as i64
    };
    why.release(ctx, record.channel.as_str(), due)
}

/// The stop's grace ended while `record` was being sent: it may have gone
/// out, so this was an attempt, and its retry is told so (`attempt` > 1):
/// a channel that kept what went out (the SMS adapter's accepted parts)
/// skips it then, and one that could not sends it again, which is the
/// at-least-once promise. Due at once, so it goes first after the restart.
///
/// A message whose attempts are past `max_attempts` fails instead, as one
/// the daemon was stopped during at start-up does (`requeue_abandoned`):
/// each attempt still gets its one more chance, but a daemon stopped again
/// and again does not keep a message going forever.
fn stopped_in_flight(ctx: &DispatchContext, record: &OutboundRecord) -> SendOutcome {
    let channel = record.channel.as_str();
    let now = now_ms();
    if let Some(reason) = stopped_past_max_attempts(record.attempts, ctx.outbox.max_attempts) {
        ctx.metrics
            .sends
            .get_or_create(&labels(&[("channel", channel), ("outcome", "failed")]))
            .inc();
        return SendOutcome::Failed {
            code: "retries_exhausted".into(),
            reason,
            now_ms: now,
        };
    }
    ctx.metrics
        .sends
        .get_or_create(&labels(&[("channel", channel), ("outcome", "retry")]))
        .inc();
    SendOutcome::Retry {
        next_attempt_at_ms: DUE_AT_ONCE_MS,
        code: "shutdown_in_flight".into(),
        reason: "the daemon stopped while this send was on its way; it may have gone out, \
                 and is tried again"
            .into(),
        // An event time: see `SendOutcome::Retry`.
        now_ms: crate::clock::event_ms(),
        may_have_gone_out: true,
    }
}

/// The remote refused the send for now because of its recipient: put the
/// message back, due when the remote said (or after `retry_initial_ms`),
/// with the remote's own words. The endpoint goes on with the others; the
/// recipient's later messages wait behind this one (`back_in_queue`).
fn recipient_refused(
    ctx: &DispatchContext,
    record: &OutboundRecord,
    error: &SendError,
) -> SendOutcome {
    let asked = super::pause::asked_wait(error)
        .unwrap_or(Duration::from_millis(ctx.outbox.retry_initial_ms));
    let wait = asked.min(Duration::from_millis(ctx.outbox.retry_max_ms));
    let channel = record.channel.as_str();
    tracing::debug!(id = %record.id, %channel, code = %error.code,
        wait_ms = wait.as_millis() as u64, "the remote refused this recipient for now: {}", error.message);
    Deferral::RecipientRefused.count(ctx, channel);
    let now = now_ms();
    SendOutcome::Release {
        // No later than the TTL, as a retry (`retry_due`): due after it,
        // the message's hold ended at the TTL with no claim to take what
        // it held back, and a new message overtook them.
        next_attempt_at_ms: (now + wait.as_millis() as i64).min(record.expires_at_ms),
        now_ms: now,
        code: error.code.clone(),
        reason: format!(
            "{} ({}); not counted as an attempt",
            error.message,
            Deferral::RecipientRefused.reason()
        ),
    }
}

/// The remote refused the send for now: pause the endpoint, and put the
/// message back, due when the pause ends, with the remote's own words.
async fn refused(
    endpoint: &Endpoint,
    ctx: &DispatchContext,
    record: &OutboundRecord,
    error: &SendError,
) -> SendOutcome {
    let now = now_ms();
    let backoff = RefusalBackoff {
        initial_ms: ctx.outbox.retry_initial_ms,
        max_ms: ctx.outbox.retry_max_ms,
    };
    let pause = endpoint.pause.refused(now, error, backoff);
    let until = pause.until_ms;
    let channel = record.channel.as_str();
    if pause.was_on {
        tracing::debug!(id = %record.id, %channel, code = %error.code,
            "refused while the endpoint pauses: {}", error.message);
    } else {
        tracing::warn!(id = %record.id, %channel, phone_id = %record.phone_id,
            code = %error.code, pause_ms = until - now,
            "the remote refused a send for now; the endpoint pauses: {}", error.message);
    }
    // Kept when it began, or when the remote asked for a wait (which may
    // have lengthened it); a burst's echoes change nothing.
    if !pause.was_on || super::pause::asked_wait(error).is_some() {
        let store = ctx.store.as_ref();
        pause_cursor::save(store, record.channel, &record.phone_id, &endpoint.pause).await;
    }
    Deferral::Refused.count(ctx, channel);
    SendOutcome::Release {
        // No later than the TTL (see `recipient_refused`).
        next_attempt_at_ms: until.min(record.expires_at_ms),
        now_ms: now,
        code: error.code.clone(),
        reason: format!(
            "{} ({}); not counted as an attempt",
            error.message,
            Deferral::Refused.reason()
        ),
    }
}

/// The channel adapter panicked while sending `record` (a bug; the panic
/// itself is in the log): a failed attempt, retried with backoff like any
/// transient failure, so a message that always makes it panic ends
/// `failed` after `max_attempts` instead of looping.
pub fn send_panicked(ctx: &DispatchContext, record: &OutboundRecord) -> SendOutcome {
    let error = SendError::transient(
        "send_panicked",
        "the channel adapter failed unexpectedly while sending (see the daemon's log)",
    );
    let outcome = classify(ctx, record, error);
    count_attempt(ctx, record.channel.as_str(), &outcome);
    outcome
}

/// When a transient failure at `now` is tried again: after our `backoff`
/// or the wait the remote asked for, whichever is longer, and no later
/// than the TTL (`expires_at`): then it is expired, not sent (a claim never
/// takes a message past its TTL, and the sweep marks it), and the
/// recipient's next message, held until this one's retry, goes. A retry
/// left due after the TTL held that one past its own TTL too. A wait asked
/// for beyond any date saturates instead of wrapping round to the past.
fn retry_due(now: i64, backoff_ms: u64, asked: Option<Duration>, expires_at: i64) -> i64 {
    let asked_ms = asked.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let wait = i64::try_from(backoff_ms.max(asked_ms)).unwrap_or(i64::MAX);
    now.saturating_add(wait).min(expires_at)
}

fn classify(ctx: &DispatchContext, record: &OutboundRecord, error: SendError) -> SendOutcome {
    let now = now_ms();
    tracing::warn!(id = %record.id, channel = %record.channel, code = %error.code,
        attempt = record.attempts, "send failed: {}", error.message);
    if error.class == ErrorClass::Permanent {
        return SendOutcome::Failed {
            code: error.code,
            reason: error.message,
            now_ms: now,
        };
    }
    if record.attempts >= ctx.outbox.max_attempts {
        return SendOutcome::Failed {
            code: "retries_exhausted".into(),
            reason: format!(
                "gave up after {} attempts; last error {}: {}",
                record.attempts, error.code, error.message
            ),
            now_ms: now,
        };
    }
    let backoff = retry_delay_ms(
        record.attempts,
        ctx.outbox.retry_initial_ms,
        ctx.outbox.retry_max_ms,
    );
    SendOutcome::Retry {
        next_attempt_at_ms: retry_due(now, backoff, error.retry_after, record.expires_at_ms),
        code: error.code,
        reason: error.message,
        // An event time, as a sent outcome's: reply routing compares the
        // end of a message's first attempt with replies' arrivals
        // (`SendOutcome::Retry`). The retry is due by the wall clock.
        now_ms: crate::clock::event_ms(),
        may_have_gone_out: !error.nothing_sent,
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::sync::Arc;

    use governor::{Quota, RateLimiter};
    use phonerelay_channel::SendReceipt;
    use tokio::sync::Notify;

    use super::*;
    use crate::store::testing::queued_sms;
    use crate::store::{SqliteStore, Store};

    /// An endpoint whose send says it began, then ends only when told.
    #[derive(Default)]
    struct Held {
        began: Notify,
        end: Notify,
    }

    #[async_trait::async_trait]
    impl phonerelay_channel::Channel for Held {
        fn kind(&self) -> phonerelay_channel::ChannelKind {
            phonerelay_channel::ChannelKind::Sms
        }
        fn phone_id(&self) -> &str {
            "m1"
        }
        async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, SendError> {
            self.began.notify_one();
            self.end.notified().await;
            Ok(SendReceipt::single(format!("ext-{}", message.id)))
        }
        async fn run(&self, _ctx: phonerelay_channel::ChannelContext) {}
        fn health(&self) -> phonerelay_channel::ChannelHealth {
            phonerelay_channel::ChannelHealth::up("held")
        }
    }

    /// A send put back to go at once (the stop, the endpoint down) and one
    /// cut off by the stop are due whatever the wall clock does next:
    /// stored at the time they went back, a clock stepped back after it
    /// held them, and every later message to their recipient, for as long
    /// as the step.
    #[tokio::test]
    async fn a_send_put_back_at_once_is_due_after_the_clock_steps_back() {
        const HOUR: i64 = 3_600_000;
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap());
        let ctx = DispatchContext::for_tests(store.clone());
        let now = now_ms();
        let claim_at = |now_ms: i64| crate::store::ClaimRequest {
            channel: phonerelay_channel::ChannelKind::Sms,
            phone_id: "m1".into(),
            limit: 10,
            now_ms,
            lease_ms: 60_000,
            skip_recipients: Vec::new(),
        };
        for text in ["released", "cut off"] {
            store.accept_outbound(queued_sms(text, now)).await.unwrap();
        }
        let claimed = store.claim_outbound(claim_at(now)).await.unwrap();
        assert_eq!(claimed.len(), 2);
        let outcomes = vec![
            (
                claimed[0].id.clone(),
                release_after(&ctx, &claimed[0], Deferral::Shutdown, Duration::ZERO),
            ),
            (claimed[1].id.clone(), stopped_in_flight(&ctx, &claimed[1])),
        ];
        store.record_outcomes(outcomes).await.unwrap();
        // The clock is stepped back an hour.
        let again = store.claim_outbound(claim_at(now - HOUR)).await.unwrap();
        let texts: Vec<&str> = again.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["released", "cut off"]);
    }

    /// A transient failure the adapter says put nothing out is retried
    /// as any other, but as one that put nothing out, so reply routing
    /// dates no conversation from it; one it cannot say that of may have.
    #[tokio::test]
    async fn a_failure_that_put_nothing_out_is_retried_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap());
        let ctx = DispatchContext::for_tests(store.clone());
        let now = now_ms();
        store.accept_outbound(queued_sms("hi", now)).await.unwrap();
        let claimed = store
            .claim_outbound(crate::store::ClaimRequest {
                channel: phonerelay_channel::ChannelKind::Sms,
                phone_id: "m1".into(),
                limit: 1,
                now_ms: now,
                lease_ms: 60_000,
                skip_recipients: Vec::new(),
            })
            .await
            .unwrap();
        let refused = SendError::transient("cms_500", "unknown error");
        for (error, out) in [(refused.clone().nothing_sent(true), false), (refused, true)] {
            match classify(&ctx, &claimed[0], error) {
                SendOutcome::Retry {
                    may_have_gone_out, ..
                } => assert_eq!(may_have_gone_out, out),
                other => panic!("not a retry: {other:?}"),
            }
        }
    }

    /// The send ends and the hard stop fires before the sending task runs
    /// again (one thread: both wake it at once): what the channel said is
    /// kept, not a send cut short, which the restart sent again.
    #[tokio::test(flavor = "current_thread")]
    async fn a_send_that_ends_as_the_hard_stop_fires_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap());
        let channel = Arc::new(Held::default());
        let endpoints = crate::endpoints::Endpoints::new(vec![channel.clone()]).unwrap();
        let endpoint = endpoints
            .get(phonerelay_channel::ChannelKind::Sms, "m1")
            .unwrap()
            .clone();
        let ctx = DispatchContext::for_tests(store);
        let limiters = Limiters {
            endpoint: RateLimiter::direct(Quota::per_second(NonZeroU32::MAX)),
            per_recipient: None,
        };
        let record = queued_sms("just in time", now_ms()).claimed_record("m-1".into());
        let hard_stop = ctx.hard_stop.clone();
        let sending =
            tokio::spawn(async move { send_one(&endpoint, &ctx, &limiters, &record).await });
        channel.began.notified().await;
        channel.end.notify_one();
        hard_stop.cancel();
        tokio::task::yield_now().await;
        let outcome = sending.await.unwrap();
        assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
    }

    #[test]
    fn a_retry_is_due_after_the_longer_wait_and_never_past_the_ttl_or_before_now() {
        let now = 1_000_000;
        let ttl = now + 3_600_000;
        assert_eq!(retry_due(now, 500, None, ttl), now + 500);
        let asked = Some(Duration::from_secs(2));
        assert_eq!(retry_due(now, 500, asked, ttl), now + 2_000);
        assert_eq!(retry_due(now, 5_000, asked, ttl), now + 5_000);
        // Asked past the TTL, or past any date: due at the TTL, not
        // wrapped round to a time before now.
        for huge in [Duration::from_secs(86_400), Duration::from_secs(u64::MAX)] {
            assert_eq!(retry_due(now, 500, Some(huge), ttl), ttl);
        }
    }

    /// A recipient refusal that asks for a wait of zero goes back after
    /// the usual backoff (`retry_initial_ms`), not due at once, which
    /// claimed, sent and refused it again in a loop.
    #[test]
    fn a_recipient_refusal_asking_no_wait_goes_back_after_the_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap());
        let ctx = DispatchContext::for_tests(store);
        let record = queued_sms("again", now_ms()).claimed_record("m-1".into());
        let error = SendError::recipient_limited("pair_limit", "slow down", Some(Duration::ZERO));
        let before = now_ms();
        let SendOutcome::Release {
            next_attempt_at_ms, ..
        } = recipient_refused(&ctx, &record, &error)
        else {
            panic!("not released");
        };
        let initial = ctx.outbox.retry_initial_ms as i64;
        assert!(next_attempt_at_ms >= before + initial, "due at once");
    }

    /// A message refused for now (its recipient, or the whole endpoint)
    /// with a wait past its TTL goes back due at the TTL, as a retry does:
    /// due later, its hold on the recipient ended at the TTL with no claim
    /// to take what it held back, and a new message overtook them.
    #[tokio::test]
    async fn a_release_is_never_due_past_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap());
        let channel = Arc::new(Held::default());
        let endpoints = crate::endpoints::Endpoints::new(vec![channel]).unwrap();
        let endpoint = endpoints
            .get(phonerelay_channel::ChannelKind::Sms, "m1")
            .unwrap()
            .clone();
        let ctx = DispatchContext::for_tests(store);
        let mut record = queued_sms("short-lived", now_ms()).claimed_record("m-1".into());
        record.expires_at_ms = now_ms() + 1_000;
        let long = Some(Duration::from_secs(600));
        let by_recipient = SendError::recipient_limited("pair_limit", "slow down", long);
        let by_endpoint = SendError::rate_limited("too_many", "slow down", long);
        for outcome in [
            recipient_refused(&ctx, &record, &by_recipient),
            refused(&endpoint, &ctx, &record, &by_endpoint).await,
        ] {
            let SendOutcome::Release {
                next_attempt_at_ms, ..
            } = outcome
            else {
                panic!("not released: {outcome:?}");
            };
            assert_eq!(next_attempt_at_ms, record.expires_at_ms);
        }
    }
}
