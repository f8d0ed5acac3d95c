//! Shared test plumbing: a recording sink and a simulator-backed channel.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use phonerelay_channel::{
    Channel, ChannelContext, ChannelEvent, ChannelKind, CursorWrite, EventSink, InboundMessage,
    OutboundMessage, SinkError, StatusUpdate, UnreadableInbound,
};
use phonerelay_sms::ModemConfig;
pub use phonerelay_sms::PinRecordKey;
use phonerelay_sms::SmsChannel;
pub use phonerelay_sms::sim::Behaviour;
use phonerelay_sms::sim::{self, SimHandle};
use tokio_util::sync::CancellationToken;

/// Upper bound for anything a test waits for; never a fixed sleep. Only
/// ever an upper bound (no test waits it out to see something not
/// happen), so it is wide: 10 s was tight on a loaded two-core CI machine.
pub const WAIT: Duration = Duration::from_secs(30);

/// Upper bound for what waits on a PIN the SIM never answers: the driver
/// gives the SIM its full time to answer first.
pub const PIN_WAIT: Duration = WAIT.saturating_add(Duration::from_millis(
    phonerelay_sms_at::builders::SIM_TIMEOUT_MS,
));

#[derive(Default)]
pub struct RecordingSink {
    pub events: Mutex<Vec<ChannelEvent>>,
    pub failing: AtomicBool,
    /// Only what the driver cannot decode is refused, as by a store that
    /// cannot take it: the driver leaves such PDUs on the SIM, where they
    /// fill it.
    pub unreadable_refused: AtomicBool,
    /// Reading a cursor fails, as with the store unavailable.
    pub cursors_unreadable: AtomicBool,
    /// Writing or removing a cursor fails, as with the store unavailable.
    pub cursor_writes_fail: AtomicBool,
    /// Removing a cursor is ignored, as when a crash comes before the
    /// driver clears it.
    pub ignore_cursor_removals: AtomicBool,
    /// Reading or writing a cursor whose name starts with this fails, as
    /// with the store failing between two writes.
    pub failing_cursor_prefix: Mutex<Option<String>>,
    /// Writing (not reading) a cursor whose name starts with this fails.
    pub failing_cursor_write_prefix: Mutex<Option<String>>,
    /// Writing a cursor on its own (`save_cursor`, not with a message)
    /// whose name starts with this fails: a write after a commit lost.
    pub failing_lone_write_prefix: Mutex<Option<String>>,
    /// Writes refused (an event, a cursor, or both at once), so a test
    /// can wait for attempts that must fail rather than sleep.
    pub refused_writes: AtomicUsize,
    /// Cursors by name, kept across channel restarts like the store's.
    pub cursors: Mutex<std::collections::BTreeMap<String, String>>,
    /// Sent external ids and when their attempt began (ms), as the outbox
    /// records them from receipts: a test adds them ([`Self::record_sent`]).
    pub sent_ids: Mutex<Vec<(String, i64)>>,
    /// Asked as each inbound message is committed (a test sets it to count
    /// what the SIM holds then); its answers in `at_commit`.
    pub at_commit_probe: Mutex<Option<Box<dyn Fn() -> usize + Send + Sync>>>,
    pub at_commit: Mutex<Vec<usize>>,
}

#[async_trait]
impl EventSink for RecordingSink {
    async fn deliver(&self, event: ChannelEvent) -> Result<(), SinkError> {
        let refused = self.failing.load(Ordering::SeqCst)
            || (matches!(event, ChannelEvent::Unreadable(_))
                && self.unreadable_refused.load(Ordering::SeqCst));
        if refused {
            self.refused_writes.fetch_add(1, Ordering::SeqCst);
            return Err(SinkError::unavailable("store unavailable"));
        }
        self.events.lock().unwrap().push(event);
        Ok(())
    }
    async fn save_cursor(&self, name: &str, value: &str) -> Result<(), SinkError> {
        let lone_fails = {
            let prefix = self.failing_lone_write_prefix.lock().unwrap();
            prefix.as_deref().is_some_and(|p| name.starts_with(p))
        };
        if lone_fails || self.cursor_write_refused(name) {
            self.refused_writes.fetch_add(1, Ordering::SeqCst);
            return Err(SinkError::unavailable("store unavailable"));
        }
        self.write_cursor(&mut self.cursors.lock().unwrap(), name, value);
        Ok(())
    }
    async fn deliver_inbound_with_cursors(
        &self,
        message: InboundMessage,
        cursors: &[CursorWrite],
    ) -> Result<(), SinkError> {
        // One lock over the message and its cursors, as one transaction:
        // no test sees the one without the other.
        let mut kept = self.cursors.lock().unwrap();
        if self.failing.load(Ordering::SeqCst)
            || cursors.iter().any(|c| self.cursor_write_refused(&c.name))
        {
            self.refused_writes.fetch_add(1, Ordering::SeqCst);
            return Err(SinkError::unavailable("store unavailable"));
        }
        if let Some(probe) = self.at_commit_probe.lock().unwrap().as_ref() {
            self.at_commit.lock().unwrap().push(probe());
        }
        self.events
            .lock()
            .unwrap()
            .push(ChannelEvent::Inbound(message));
        for cursor in cursors {
            self.write_cursor(&mut kept, &cursor.name, &cursor.value);
        }
        Ok(())
    }
    async fn load_cursor(&self, name: &str) -> Result<Option<String>, SinkError> {
        if self.cursors_unreadable.load(Ordering::SeqCst) || self.cursor_fails(name) {
            return Err(SinkError::unavailable("store unavailable"));
        }
        Ok(self.cursors.lock().unwrap().get(name).cloned())
    }
    async fn sent_ids(&self, base: &str) -> Result<Vec<(String, i64)>, SinkError> {
        let family = format!("{base}:");
        Ok(self
            .sent_ids
            .lock()
            .unwrap()
            .iter()
            .filter(|(id, _)| id == base || id.starts_with(&family))
            .cloned()
            .collect())
    }
    async fn inbound_ids(&self, base: &str) -> Result<Vec<String>, SinkError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(SinkError::unavailable("store unavailable"));
        }
        let family = format!("{base}#");
        let mut ids: Vec<String> = self
            .inbound()
            .into_iter()
            .map(|m| m.external_id)
            .filter(|id| id == base || id.starts_with(&family))
            .collect();
        ids.dedup();
        Ok(ids)
    }
}

impl RecordingSink {
    /// Whether a write of cursor `name` fails now.
    fn cursor_write_refused(&self, name: &str) -> bool {
        self.cursor_writes_fail.load(Ordering::SeqCst)
            || self.cursor_fails(name)
            || self.cursor_write_fails(name)
    }

    fn write_cursor(
        &self,
        cursors: &mut std::collections::BTreeMap<String, String>,
        name: &str,
        value: &str,
    ) {
        if value.is_empty() {
            if !self.ignore_cursor_removals.load(Ordering::SeqCst) {
                cursors.remove(name);
            }
        } else {
            cursors.insert(name.to_string(), value.to_string());
        }
    }

    fn cursor_fails(&self, name: &str) -> bool {
        let prefix = self.failing_cursor_prefix.lock().unwrap();
        prefix.as_deref().is_some_and(|p| name.starts_with(p))
    }

    fn cursor_write_fails(&self, name: &str) -> bool {
        let prefix = self.failing_cursor_write_prefix.lock().unwrap();
        prefix.as_deref().is_some_and(|p| name.starts_with(p))
    }

    /// The cursors kept for outbound messages while they are sent (a long
    /// message's parts and reference), by name.
    pub fn message_cursors(&self) -> Vec<(String, String)> {
        let cursors = self.cursors.lock().unwrap();
        cursors
            .iter()
            .filter(|(name, _)| phonerelay_channel::message_of_cursor(name).is_some())
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    }

    /// What the outbox does with a receipt: keep its ids, sent at `at_ms`.
    pub fn record_sent(&self, receipt: &phonerelay_channel::SendReceipt, at_ms: i64) {
        let mut ids = self.sent_ids.lock().unwrap();
        ids.extend(receipt.external_ids.iter().map(|id| (id.clone(), at_ms)));
    }

    pub fn inbound(&self) -> Vec<InboundMessage> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                ChannelEvent::Inbound(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }
    /// The external ids committed, each once: this sink keeps a repeat
    /// the store would drop, so a repeat is one id here.
    pub fn distinct_ids(&self) -> std::collections::BTreeSet<String> {
        self.inbound().into_iter().map(|m| m.external_id).collect()
    }

    /// What the driver could not decode: where it came from (`+CMT`, a
    /// slot) and its bytes.
    pub fn unreadable_origins(&self) -> Vec<(String, Vec<u8>)> {
        self.unreadable()
            .into_iter()
            .map(|u| (u.origin, u.raw))
            .collect()
    }

    /// What the driver could not decode and handed over as it came.
    pub fn unreadable(&self) -> Vec<UnreadableInbound> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                ChannelEvent::Unreadable(u) => Some(u.clone()),
                _ => None,
            })
            .collect()
    }
    pub fn statuses(&self) -> Vec<StatusUpdate> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                ChannelEvent::Status(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }
}

pub fn behaviour() -> Behaviour {
    Behaviour {
        network_delay: Duration::ZERO,
        baud_limit: None,
        echo_default: true,
        urc_noise: false,
        delivery_reports: true,
        pin: None,
        registration_urcs: true,
        stores_status_reports: true,
        message_service: 0,
        selects_memory: true,
        capacity: sim::SIM_CAPACITY,
    }
}

pub fn modem_config(phone_id: &str) -> ModemConfig {
    let mut config = ModemConfig::new(phone_id, "sim");
    config.command_timeout_ms = 1_000;
    config.send_timeout_ms = 2_000;
    config.registration_timeout_seconds = 5;
    config.reconnect_max_backoff_seconds = 1;
    config
}

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub sim: SimHandle,
    pub sim_stop: CancellationToken,
    pub channel: Arc<SmsChannel>,
    pub sink: Arc<RecordingSink>,
    pub stop: CancellationToken,
    pub task: Option<tokio::task::JoinHandle<()>>,
    /// Given to the channels [`Rig::restart_channel`] builds, so that a
    /// rejected PIN is recorded in the sink.
    pub pin_record_key: Option<PinRecordKey>,
}

impl Rig {
    pub async fn start(behaviour: Behaviour, config: ModemConfig) -> Rig {
        let mut rig = Rig::idle(behaviour, config);
        rig.run();
        rig
    }

    /// A simulator with the channel built but not yet running, so a test
    /// can put the SIM in a state before the driver first opens it.
    pub fn idle(behaviour: Behaviour, config: ModemConfig) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let sim_stop = CancellationToken::new();
        let sim = sim::spawn(behaviour, dir.path().join("modem"), sim_stop.clone()).unwrap();
        Rig {
            sim,
            sim_stop,
            channel: Arc::new(SmsChannel::new(
                config.clone(),
                dir.path().join("modem"),
                config.pin.clone(),
            )),
            sink: Arc::new(RecordingSink::default()),
            stop: CancellationToken::new(),
            task: None,
            pin_record_key: None,
            dir,
        }
    }

    /// (Re)start the channel's receive loop with a fresh channel object on
    /// the same simulator, like a daemon restart.
    pub fn restart_channel(&mut self, config: ModemConfig) {
        let channel = SmsChannel::new(
            config.clone(),
            self.dir.path().join("modem"),
            config.pin.clone(),
        );
        self.channel = Arc::new(match &self.pin_record_key {
            Some(key) => channel.with_pin_record_key(key.clone()),
            None => channel,
        });
        self.run();
    }

    pub fn run(&mut self) {
        self.stop = CancellationToken::new();
        let ctx = ChannelContext {
            sink: self.sink.clone(),
            fetcher: Arc::new(phonerelay_channel::NoFetcher),
            shutdown: self.stop.clone(),
        };
        let channel = self.channel.clone();
        self.task = Some(tokio::spawn(async move { channel.run(ctx).await }));
    }

    pub async fn stop_channel(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        }
    }

    pub async fn wait_up(&self) {
        wait_until(|| self.channel.health().state == phonerelay_channel::HealthState::Up).await;
    }
}

pub async fn wait_until(f: impl FnMut() -> bool) {
    wait_until_within(WAIT, f).await;
}

pub async fn wait_until_within(limit: Duration, mut f: impl FnMut() -> bool) {
    tokio::time::timeout(limit, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("condition not reached in time");
}

pub fn message(id: &str, to: &str, text: &str) -> OutboundMessage {
    OutboundMessage {
        id: id.into(),
        channel: ChannelKind::Sms,
        phone_id: "main".into(),
        to: to.into(),
        text: text.into(),
        subject: None,
        source: None,
        attachments: Vec::new(),
        reply_to_external_id: None,
        options: None,
        attempt: 1,
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The texts of the messages the simulated network took, in order.
pub fn sent_texts(rig: &Rig) -> Vec<String> {
    rig.sim
        .sent_messages()
        .into_iter()
        .map(|m| m.text)
        .collect()
}

/// The outbox's view: retry the same message on transient errors until it
/// is sent.
pub async fn retry_until_sent(
    rig: &Rig,
    message: &OutboundMessage,
) -> phonerelay_channel::SendReceipt {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match rig.channel.send(message).await {
            Ok(receipt) => return receipt,
            // Transient, or refused for now while the driver was busy
            // (with an earlier send's late answer) and the request never
            // reached the modem.
            Err(e) => {
                let busy =
                    e.class == phonerelay_channel::ErrorClass::RateLimited && e.code == "sms_busy";
                assert!(
                    e.class == phonerelay_channel::ErrorClass::Transient || busy,
                    "{e:?}"
                );
                assert!(tokio::time::Instant::now() < deadline, "never sent: {e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
