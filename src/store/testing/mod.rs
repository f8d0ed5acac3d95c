//! Test fixtures for the store's own unit tests and the modules beside it
//! (integration tests have `tests/common`).

mod faulty;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use phonerelay_channel::{ChannelKind, InboundMessage};

pub use faulty::{Faults, Faulty};

use super::*;

/// An SMS received on endpoint `m1` at `now_ms`, with `external_id`.
pub fn received_sms(external_id: &str, now_ms: i64) -> InboundMessage {
    InboundMessage {
        channel: ChannelKind::Sms,
        phone_id: "m1".into(),
        from: "+15551230001".into(),
        text: "hello".into(),
        subject: None,
        attachments: Vec::new(),
        external_id: external_id.into(),
        reply_to: Vec::new(),
        received_at_ms: now_ms,
        meta: Default::default(),
    }
}

/// A plain SMS with `text` to one number on endpoint `m1`, created at
/// `now_ms`, with an hour to live.
pub fn queued_sms(text: &str, now_ms: i64) -> NewOutbound {
    NewOutbound {
        api_key_id: None,
        idempotency_key: None,
        request_hash: "h".into(),
        exact_request_hash: "h".into(),
        phone_id: "m1".into(),
        channel: ChannelKind::Sms,
        to: "+15551230001".into(),
        text: text.into(),
        subject: None,
        source: None,
        attachments: vec![],
        reply_to: None,
        reply_to_external_id: None,
        options: None,
        priority: 1,
        created_at_ms: now_ms,
        expires_at_ms: now_ms + 3_600_000,
        claimed_until_ms: None,
    }
}

/// A store whose reads of a message (`get_outbound`, `get_relay_inbound`)
/// fail as unavailable once a cancel or a manual retry has committed: a
/// store that went away just after the commit. Everything else is the
/// inner store's.
pub type ReadsFailAfterCommit = Faulty<ReadsFailAfterCommitFaults>;

#[derive(Default)]
pub struct ReadsFailAfterCommitFaults {
    committed: AtomicBool,
}

impl ReadsFailAfterCommit {
    pub fn new(inner: SqliteStore) -> Self {
        Faulty::with(inner, ReadsFailAfterCommitFaults::default())
    }
}

impl Faults for ReadsFailAfterCommitFaults {
    fn read_one(&self) -> StoreResult<()> {
        if self.committed.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("the disk went away".into()))
        } else {
            Ok(())
        }
    }

    fn committed(&self) {
        self.committed.store(true, Ordering::SeqCst);
    }
}

/// A store that refuses to replace the relay pairing
/// (`replace_relay_pairing`) once told to, as a full disk would;
/// everything else is the inner store's.
pub type PairingRefused = Faulty<PairingRefusedFaults>;

#[derive(Default)]
pub struct PairingRefusedFaults {
    refusing: AtomicBool,
}

impl PairingRefused {
    pub fn new(inner: SqliteStore) -> Self {
        Faulty::with(inner, PairingRefusedFaults::default())
    }
}

impl PairingRefusedFaults {
    /// Refuse every replacement from now on.
    pub fn refuse(&self) {
        self.refusing.store(true, Ordering::SeqCst);
    }
}

impl Faults for PairingRefusedFaults {
    fn replace_relay_pairing(&self) -> StoreResult<()> {
        if self.refusing.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("the disk is full".into()))
        } else {
            Ok(())
        }
    }
}

/// A store whose commits of new outbound messages (`accept_outbound`,
/// `accept_relay_outbound`) wait until the test lets them go ahead, as
/// behind a slow commit, and say when one is asked for; everything else
/// is the inner store's.
pub type AcceptsHeld = Faulty<AcceptsHeldFaults>;

pub struct AcceptsHeldFaults {
    /// Notified once for each commit asked for.
    pub asked: tokio::sync::Notify,
    /// One permit for each commit that may go ahead.
    pub go_ahead: Arc<tokio::sync::Semaphore>,
}

impl AcceptsHeld {
    pub fn new(inner: SqliteStore) -> Self {
        let faults = AcceptsHeldFaults {
            asked: tokio::sync::Notify::new(),
            go_ahead: Arc::new(tokio::sync::Semaphore::new(0)),
        };
        Faulty::with(inner, faults)
    }
}

impl Faults for AcceptsHeldFaults {
    fn accept_goes_ahead(&self) -> impl Future<Output = ()> + Send + 'static {
        self.asked.notify_one();
        let go_ahead = self.go_ahead.clone();
        async move {
            let permit = go_ahead.acquire_owned().await;
            permit.expect("the semaphore is never closed").forget();
        }
    }
}

/// A store whose reads that route a reply (`route_reply`,
/// `send_unsettled`) all fail as unavailable, counted; everything else is
/// the inner store's.
pub type RoutingReadsFail = Faulty<RoutingReadsFailFaults>;

#[derive(Default)]
pub struct RoutingReadsFailFaults {
    pub tries: std::sync::atomic::AtomicUsize,
}

impl RoutingReadsFail {
    pub fn new(inner: SqliteStore) -> Self {
        Faulty::with(inner, RoutingReadsFailFaults::default())
    }
}

impl Faults for RoutingReadsFailFaults {
    fn route(&self) -> StoreResult<()> {
        self.tries.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::Unavailable("the disk went away".into()))
    }
}

/// A store whose next `record_outcomes` calls fail, each with the next of
/// the errors it was given; the calls after those are the inner store's.
pub type RecordFailures = Faulty<RecordFailuresFaults>;

pub struct RecordFailuresFaults {
    next: Mutex<VecDeque<StoreError>>,
}

impl RecordFailures {
    pub fn new(inner: SqliteStore, errors: impl IntoIterator<Item = StoreError>) -> Self {
        let next = Mutex::new(errors.into_iter().collect());
        Faulty::with(inner, RecordFailuresFaults { next })
    }
}

impl Faults for RecordFailuresFaults {
    fn record_outcomes(&self, _outcomes: &[(String, SendOutcome)]) -> StoreResult<()> {
        match self.next.lock().unwrap().pop_front() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// A store that refuses for good, as it does a write that panics, every
/// outcome of the messages named, whole (`record_outcomes`), and plainly
/// (`record_outcome_plainly`) the first `plain_refusals` times for each.
pub type OutcomesRefused = Faulty<OutcomesRefusedFaults>;

pub struct OutcomesRefusedFaults {
    plain_refusals_left: Mutex<HashMap<String, u32>>,
}

impl OutcomesRefused {
    pub fn new(inner: SqliteStore, ids: &[String], plain_refusals: u32) -> Self {
        let left = ids.iter().map(|id| (id.clone(), plain_refusals)).collect();
        Faulty::with(
            inner,
            OutcomesRefusedFaults {
                plain_refusals_left: Mutex::new(left),
            },
        )
    }
}

fn panicked() -> StoreError {
    StoreError::Database("a write panicked: a bug in the test".into())
}

impl Faults for OutcomesRefusedFaults {
    fn record_outcomes(&self, outcomes: &[(String, SendOutcome)]) -> StoreResult<()> {
        let refused = self.plain_refusals_left.lock().unwrap();
        match outcomes.iter().any(|(id, _)| refused.contains_key(id)) {
            true => Err(panicked()),
            false => Ok(()),
        }
    }

    fn record_outcome_plainly(&self, id: &str) -> StoreResult<()> {
        match self.plain_refusals_left.lock().unwrap().get_mut(id) {
            Some(left) if *left > 0 => {
                *left -= 1;
                Err(panicked())
            }
            _ => Ok(()),
        }
    }
}
