//! `SmsChannel`: the [`Channel`] for one modem.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use phonerelay_channel::{
    Channel, ChannelContext, ChannelHealth, ChannelKind, ConfigIssue, EventSink, OutboundMessage,
    Secret, SecretError, SendError, SendReceipt,
};
use phonerelay_sms_pdu::{SubmitOptions, encode_submit};
use tokio::sync::{mpsc, oneshot};

use crate::concat_reference::{ConcatReferences, legacy_reference};
use crate::config::{ModemConfig, SmsConfig};
use crate::driver::pin_record::PinRecordKey;
use crate::driver::request_hold::RequestHold;
use crate::driver::status::{AcceptedParts, ModemStatus, SentParts, SharedStatus, parts_cursor};
use crate::driver::{
    CMS_MEMORY_FULL, CMS_SUBSCRIPTION_REFUSED, Driver, DriverError, ErrorCode, OutPart, Request,
    WireStats, unix_now,
};
use crate::sim::{self, SimHandle};

/// Sends queued for the driver; more wait in the outbox, not here.
const REQUEST_QUEUE: usize = 64;

/// The concat reference a single part is encoded with: none goes out, as
/// a single part has no concatenation header.
const SINGLE_PART: u16 = 0;

pub struct SmsChannel {
    config: Arc<ModemConfig>,
    path: PathBuf,
    pin: Option<Secret>,
    status: SharedStatus,
    sent: Arc<Mutex<SentParts>>,
    requests: mpsc::Sender<Request>,
    driver_rx: Mutex<Option<mpsc::Receiver<Request>>>,
    /// Parts the network already accepted, by message id, so a retry after
    /// a failure mid-message — or after an AT+CMGS timeout whose `+CMGS`
    /// came late — sends only the rest (with the concat reference recorded
    /// here before its first part), and returns success without sending
    /// anything when nothing is left.
    ///
    /// A long message's accepted parts are also committed to a store cursor
    /// before its next part goes out, and so is a part whose send timed out
    /// and was answered late, whatever the message's length; they are read
    /// back by the first send of that message after a restart (for a
    /// single part, a retry); the cursor goes once the message is sent or
    /// fails for good.
    ///
    /// Window left: a restart between a part's acceptance and that commit
    /// (about a millisecond), or a late answer that comes only after the
    /// driver gave up on the port (unanswered sync probe, unplug), makes
    /// the retry send that part again: a duplicate on the handset, never a
    /// loss. A message that expires half sent leaves its small cursor row.
    accepted: Arc<Mutex<AcceptedParts>>,
    /// This modem's counter of concat references for new long messages.
    references: ConcatReferences,
    /// The daemon's sink, known once `run` starts: where the accepted parts
    /// of long messages are kept.
    sink: OnceLock<Arc<dyn EventSink>>,
    sim: Option<SimHandle>,
    wire: Arc<WireStats>,
    /// What a rejected PIN's record in the store is made under (see
    /// [`crate::driver::pin_record`]); without it a rejection is kept in
    /// memory only, and a restart sends the PIN again.
    pin_record_key: Option<PinRecordKey>,
}

impl SmsChannel {
    /// A channel for the modem at `path` (the configured device resolved,
    /// or a simulator's link).
    pub fn new(config: ModemConfig, path: PathBuf, pin: Option<Secret>) -> Self {
        let (requests, driver_rx) = mpsc::channel(REQUEST_QUEUE);
        Self {
            config: Arc::new(config),
            path,
            pin,
            status: Arc::new(Mutex::new(ModemStatus {
                note: "not started".into(),
                ..ModemStatus::default()
            })),
            sent: Arc::new(Mutex::new(SentParts::starting_at(unix_now()))),
            requests,
            driver_rx: Mutex::new(Some(driver_rx)),
            accepted: Arc::new(Mutex::new(AcceptedParts::default())),
            references: ConcatReferences::default(),
            sink: OnceLock::new(),
            sim: None,
            wire: Arc::new(WireStats::default()),
            pin_record_key: None,
        }
    }

    /// Keep a PIN the SIM rejected in the store, under `key`, so that a
    /// restart does not send it again.
    pub fn with_pin_record_key(mut self, key: PinRecordKey) -> Self {
        self.pin_record_key = Some(key);
        self
    }

    /// The in-process simulator behind a `device = "sim"` modem.
    pub fn sim(&self) -> Option<&SimHandle> {
        self.sim.as_ref()
    }

    /// Bytes written to / read from the port so far.
    pub fn wire_stats(&self) -> &WireStats {
        &self.wire
    }

    fn concat_16bit(&self) -> bool {
        self.config.concat_reference_bits == 16
    }

    /// How many parts `text` takes, counted as [`Self::encode`] splits it.
    fn part_count(&self, text: &str) -> usize {
        phonerelay_sms_pdu::classify_text_with(text, self.concat_16bit()).1
    }

    fn encode(&self, message: &OutboundMessage, reference: u16) -> Result<Vec<OutPart>, SendError> {
        let opts = SubmitOptions {
            request_status_report: self.config.status_reports,
            validity: self
                .config
                .validity_seconds
                .map(|s| Duration::from_secs(s as u64)),
            concat_reference: reference,
            concat_16bit: self.concat_16bit(),
            ..SubmitOptions::default()
        };
        let parts = encode_submit(&message.to, &message.text, &opts)
            .map_err(|e| SendError::permanent("sms_encode", e.to_string()))?;
        Ok(parts
            .into_iter()
            .map(|p| OutPart {
                hex: p.hex,
                tpdu_len: p.tpdu_length,
            })
            .collect())
    }

    /// The receipt of a message all of whose parts were accepted.
    fn finish(&self, message_id: &str, external_ids: Vec<String>) -> SendReceipt {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget(message_id);
        SendReceipt {
            external_ids,
            thread_keys: Vec::new(),
        }
    }

    /// The driver's answer to a request of `parts` parts: first taken from
    /// the queue within one part's send time (`send_timeout_ms`), else
    /// given up (`hold`) and a timeout while still queued, nothing sent;
    /// once taken, within [`Self::timeout_for`]. Waited for as one bound,
    /// the queue wait of a short message (behind a late answer, a long
    /// sweep) ran past the outbox's own send timeout, which then counted
    /// an attempt for a message that never reached the modem.
    async fn answer_of(
        &self,
        mut answer: oneshot::Receiver<crate::driver::SendOutcome>,
        hold: &RequestHold,
        parts: usize,
    ) -> Answer {
        let queue_wait = Duration::from_millis(self.config.send_timeout_ms);
        let answered = match tokio::time::timeout(queue_wait, &mut answer).await {
            Ok(answered) => answered,
            Err(_) if hold.give_up() => return Answer::GivenUpQueued,
            // Taken: under way now.
            Err(_) => match tokio::time::timeout(self.timeout_for(parts), answer).await {
                Ok(answered) => answered,
                Err(_) => return Answer::TimedOut,
            },
        };
        match answered {
            Ok(outcome) => Answer::Outcome(outcome),
            Err(_) => Answer::Dropped,
        }
    }

    fn timeout_for(&self, parts: usize) -> Duration {
        // An upper bound only: the driver answers as soon as it can.
        Duration::from_millis(self.config.send_timeout_ms) * (parts as u32 + 1)
            + Duration::from_millis(self.config.command_timeout_ms)
    }
}

/// How the wait for the driver's answer to a send ended
/// (`SmsChannel::answer_of`).
enum Answer {
    Outcome(crate::driver::SendOutcome),
    /// The driver dropped the request, maybe mid-message.
    Dropped,
    /// Still queued when the wait ended: given up, never sent.
    GivenUpQueued,
    /// Taken, and no answer in time.
    TimedOut,
}

/// `+CMS ERROR` codes by which the network refuses a submission for now,
/// for every message alike, not for this one's recipient or content: RP
/// causes 38 (network out of order), 41 (temporary failure), 42
/// (congestion) and 47 (resources unavailable) of TS 24.011 Table 8.4, and
/// TP-FCS 192 (SC busy) of TS 23.040. Each is the network's answer, so the
/// part was not taken. (332, network timeout, is not here: the SMSC may
/// have taken the part and only its answer was lost.)
const NETWORK_REFUSES_FOR_NOW: [u16; 5] = [38, 41, 42, 47, 192];

fn classify(error: DriverError) -> SendError {
    match error {
        DriverError::Cms {
            code,
            permanent,
            nothing_sent,
        } => {
            let message = phonerelay_sms_at::errors_table::cms_error(code)
                .map(|i| i.meaning.to_string())
                .unwrap_or_else(|| format!("+CMS ERROR: {code}"));
            if permanent {
                SendError::permanent(format!("cms_{code}"), message)
            } else if nothing_sent
                && (NETWORK_REFUSES_FOR_NOW.contains(&code)
                    || CMS_SUBSCRIPTION_REFUSED.contains(&code)
                    || code == CMS_MEMORY_FULL)
            {
                // The queue waits instead of spending an attempt per
                // message while the network is congested, or refuses the
                // account (no SC subscription, our SIM unknown to the
                // network), or the modem's memory is full (until a human
                // makes room): the endpoint pauses for a doubling wait, after
                // which the next message tries again, and the status names
                // the refusal. Once a part of this attempt has gone out it
                // counts as an attempt, as with 331 below.
                SendError::rate_limited(format!("cms_{code}"), message, None)
            } else {
                SendError::transient(format!("cms_{code}"), message).nothing_sent(nothing_sent)
            }
        }
        DriverError::Rejected(why) => SendError::transient("sms_rejected", why),
        // Parts went out (on this attempt or an earlier one) and the rest
        // waits for the store to keep them: an attempt, retried.
        DriverError::PartsNotKept(why) => SendError::transient("sms_parts_not_kept", why),
        DriverError::Abandoned => {
            SendError::transient("sms_abandoned", "abandoned before its next part")
        }
        DriverError::Conn(e) => SendError::transient("sms_modem", e.to_string()),
        // Failed before it reached the port: nothing went out.
        DriverError::Down => SendError::unavailable("sms_modem_down", "modem not connected"),
        // The modem's state, not the message's: the driver runs start-up
        // again, and the message waits for it like for a reconnect.
        DriverError::ModemNotReady {
            error,
            nothing_sent,
        } => {
            let meaning = error.meaning().unwrap_or("modem not ready");
            let message = format!("modem not ready: {meaning} ({error})");
            held_unless_sent(error, message, nothing_sent)
        }
        DriverError::NoNetwork {
            error,
            nothing_sent,
        } => held_unless_sent(error, format!("no network service ({error})"), nothing_sent),
        // Not long, as a rule: the message waits as for a modem not ready,
        // but the session goes on.
        DriverError::SimBusy {
            error,
            nothing_sent,
        } => held_unless_sent(error, format!("SIM busy ({error})"), nothing_sent),
    }
}

/// A send the modem's state stopped: `Unavailable` (the queue held, no
/// attempt spent) while nothing of this attempt went out; once a part
/// did, an attempt, and a retry sends the rest.
fn held_unless_sent(error: ErrorCode, message: String, nothing_sent: bool) -> SendError {
    if nothing_sent {
        SendError::unavailable(error.label(), message)
    } else {
        SendError::transient(error.label(), message).nothing_sent(false)
    }
}

#[async_trait]
impl Channel for SmsChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Sms
    }

    fn phone_id(&self) -> &str {
        &self.config.phone_id
    }

    /// A text longer than `max_parts` parts, as this modem would encode it
    /// (the alphabet it needs, the reference size): 1,530 characters are
    /// ten parts of plain text, but twenty of `€` (two septets each) and
    /// more of Cyrillic or emoji (UCS-2).
    fn check_text(&self, text: &str) -> Result<(), String> {
        let (encoding, parts) = phonerelay_sms_pdu::classify_text_with(text, self.concat_16bit());
        let max = self.config.parts_limit();
        if parts <= max {
            return Ok(());
        }
        let alphabet = match encoding {
            phonerelay_sms_pdu::Encoding::Gsm7 => "GSM 7-bit",
            _ => "UCS-2, for characters outside the GSM alphabet",
        };
        Err(format!(
            "needs {parts} SMS parts ({alphabet}); this endpoint sends at most {max} (channels.sms max_parts)"
        ))
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, SendError> {
        phonerelay_channel::validate_address(ChannelKind::Sms, &message.to)
            .map_err(|e| SendError::permanent("sms_address", e.message))?;
        let long = self.part_count(&message.text) > 1;
        // A long message keeps its accepted parts in the store as it goes;
        // a single part once it is accepted, so only a retry of one, or a
        // long message, can find them.
        if long || message.attempt > 1 {
            self.restore_accepted_parts(&message.id).await?;
        }
        let reference = if long {
            self.concat_reference(&message.id).await?
        } else {
            SINGLE_PART
        };
        let parts = self.encode(message, reference)?;
        // The accepted parts kept for a retry stay until the outbox has
        // recorded the message's end, which drops them in the same
        // transaction: dropped here, a restart before that record found no
        // part accepted and sent them all again.
        self.send_remaining_parts(message, parts).await
    }

    /// The sink, before any send: a resumed long message reads back the
    /// parts a previous process got accepted through it.
    fn attach(&self, ctx: &ChannelContext) {
        let _ = self.sink.set(ctx.sink.clone());
    }

    async fn run(&self, ctx: ChannelContext) {
        let _ = self.sink.set(ctx.sink.clone());
        self.run_driver(ctx).await
    }

    fn health(&self) -> ChannelHealth {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .to_health()
    }

    /// One modem sends one part at a time through its one driver task: a
    /// second send in flight would only queue behind the first, its
    /// timeout running.
    fn default_concurrency(&self) -> Option<u32> {
        Some(1)
    }

    /// `ModemStatus::can_send`, the rule beside the one `health` follows.
    fn can_send(&self) -> bool {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .can_send()
    }
}

impl SmsChannel {
    /// After a restart the memory is empty: take back the parts of this
    /// message that a previous process got accepted. If they cannot be
    /// read, the send waits for a retry: sending every part would hand the
    /// recipient the accepted ones twice.
    async fn restore_accepted_parts(&self, message_id: &str) -> Result<(), SendError> {
        let Some(sink) = self.sink.get() else {
            return Ok(());
        };
        let known = self
            .accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .accepted_count(message_id);
        if known > 0 {
            return Ok(());
        }
        match sink.load_cursor(&parts_cursor(message_id)).await {
            Ok(Some(cursor)) => {
                let ids = {
                    let mut accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
                    accepted.restore(message_id, &cursor);
                    accepted.ids(message_id)
                };
                // Before any later part is given an id: one of these may
                // share its TP-MR, recipient and day.
                self.sent
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .adopt(ids.iter().map(String::as_str));
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(SendError::transient(
                "sms_parts_unknown",
                format!("cannot read which parts went out before ({e}); trying again later"),
            )),
        }
    }

    /// The concat reference of long message `message_id`, after its record
    /// was read back ([`Self::restore_accepted_parts`]): the one an earlier
    /// attempt recorded; the hash of its id if an earlier version started
    /// it (its record holds accepted parts but no reference), so the rest
    /// joins what that version sent; else the counter's next, recorded in
    /// the message's cursor before any part of it goes out, so neither a
    /// retry nor a restart sends it under another. A reference the store
    /// cannot keep is not sent: the send fails for a retry, nothing sent.
    async fn concat_reference(&self, message_id: &str) -> Result<u16, SendError> {
        {
            let accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(reference) = accepted.reference(message_id) {
                return Ok(reference);
            }
            if accepted.accepted_count(message_id) > 0 {
                return Ok(legacy_reference(message_id));
            }
        }
        let not_kept = |e: phonerelay_channel::SinkError| {
            SendError::transient(
                "sms_reference_not_kept",
                format!(
                    "cannot keep the message's concatenation reference in the store ({e}); nothing sent, trying again later"
                ),
            )
            .nothing_sent(true)
        };
        let sink = self.sink.get().map(|sink| sink.as_ref());
        // The counter is stepped first: a restart between the two writes
        // skips a value, where the other order would hand it out twice.
        let reference = self
            .references
            .take(sink, self.concat_16bit())
            .await
            .map_err(not_kept)?;
        let record = {
            let mut accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
            accepted.set_reference(message_id, reference);
            accepted.to_cursor(message_id)
        };
        if let Some(sink) = sink
            && let Err(e) = sink.save_cursor(&parts_cursor(message_id), &record).await
        {
            // Not kept in memory either: the retry takes another, which
            // it records before it sends.
            self.accepted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .forget(message_id);
            return Err(not_kept(e));
        }
        Ok(reference)
    }

    /// Hand the parts to the driver, which skips those already accepted.
    async fn send_remaining_parts(
        &self,
        message: &OutboundMessage,
        parts: Vec<OutPart>,
    ) -> Result<SendReceipt, SendError> {
        let total = parts.len();
        let done = {
            let accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(external_ids) = accepted.complete(&message.id, total) {
                // Every part went out on an earlier attempt (the last one's
                // +CMGS came after that attempt timed out).
                drop(accepted);
                return Ok(self.finish(&message.id, external_ids));
            }
            accepted.accepted_count(&message.id)
        };
        let remaining = total - done.min(total);
        let (reply, answer) = oneshot::channel();
        let hold = Arc::new(RequestHold::default());
        let request = Request::Send {
            message_id: message.id.clone(),
            to: message.to.clone(),
            parts,
            reply,
            hold: hold.clone(),
        };
        let outcome = match self.requests.try_send(request) {
            Ok(()) => match self.answer_of(answer, &hold, remaining).await {
                Answer::Outcome(outcome) => outcome,
                // The driver dropped the request, maybe mid-message:
                // a part may have gone out, so this counts as an attempt.
                Answer::Dropped => {
                    return Err(SendError::transient(
                        "sms_modem_down",
                        "the modem driver dropped the send",
                    ));
                }
                // Still in the driver's queue (behind an earlier send's
                // late answer, or a sweep): it never reached the modem, and
                // the driver skips it. Not an attempt.
                Answer::GivenUpQueued => {
                    return Err(SendError::rate_limited(
                        "sms_busy",
                        "the modem was busy (an earlier send or a read of the SIM) for longer than this send waits; nothing sent",
                        Some(Duration::from_secs(1)),
                    ));
                }
                Answer::TimedOut => {
                    return Err(SendError::transient(
                        "sms_timeout",
                        "driver did not answer in time",
                    ));
                }
            },
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(SendError::rate_limited(
                    "sms_busy",
                    "modem send queue full",
                    Some(Duration::from_secs(1)),
                ));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(SendError::unavailable(
                    "sms_modem_down",
                    "modem driver stopped",
                ));
            }
        };
        // The driver recorded every accepted part (this attempt's and
        // earlier ones') before answering.
        let complete = self
            .accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .complete(&message.id, total);
        match (outcome.error, complete) {
            (None, Some(external_ids)) => Ok(self.finish(&message.id, external_ids)),
            (Some(error), _) => Err(classify(error)),
            (None, None) => Err(SendError::transient(
                "sms_incomplete",
                "driver reported success but not every part was accepted",
            )),
        }
    }

    async fn run_driver(&self, ctx: ChannelContext) {
        let Some(requests) = self
            .driver_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            tracing::error!(phone_id = %self.config.phone_id, "run called twice");
            ctx.shutdown.cancelled().await;
            return;
        };
        let driver = Driver {
            outage: Default::default(),
            config: self.config.clone(),
            path: self.path.clone(),
            pin: self.pin.clone(),
            status: self.status.clone(),
            sent: self.sent.clone(),
            accepted: self.accepted.clone(),
            sink: ctx.sink.clone(),
            requests,
            wire: self.wire.clone(),
            indicated: Default::default(),
            pin_record_key: self.pin_record_key.clone(),
        };
        driver.run(ctx.shutdown.clone()).await;
    }
}

/// Where a `device = "sim"` modem's pty link goes.
fn sim_link(phone_id: &str) -> PathBuf {
    std::env::temp_dir().join(format!("phonerelay-sim-{}-{phone_id}", std::process::id()))
}

/// A channel for one modem entry; starts the simulator for `device = "sim"`
/// (which then runs for the life of the process).
pub fn build_modem(config: &ModemConfig, base_dir: &Path) -> Result<SmsChannel, ConfigIssue> {
    // Keyed by the error itself (`pin` or `pin_file`): its text already
    // starts with the key, so wrapping it read "pin: pin: ...".
    let pin = config
        .resolve_pin(base_dir)
        .map_err(SecretError::into_issue)?;
    if config.is_sim() {
        let settings = config.sim.clone().unwrap_or_default();
        let link = sim_link(&config.phone_id);
        let handle = sim::spawn(
            sim::behaviour_from(&settings),
            link.clone(),
            tokio_util::sync::CancellationToken::new(),
        )
        .map_err(|e| ConfigIssue::new("device", format!("cannot start simulator: {e}")))?;
        let mut channel = SmsChannel::new(config.clone(), link, pin);
        channel.sim = Some(handle);
        Ok(channel)
    } else {
        Ok(SmsChannel::new(
            config.clone(),
            config.device_path(base_dir),
            pin,
        ))
    }
}

/// One channel per configured modem, or every config problem. Must be
/// called inside a tokio runtime (simulated modems start a task).
/// `pin_record_key` is what a rejected PIN's record is made under (see
/// [`SmsChannel::with_pin_record_key`]).
pub fn build(
    config: &SmsConfig,
    base_dir: &Path,
    pin_record_key: Option<&PinRecordKey>,
) -> Result<Vec<Arc<dyn Channel>>, Vec<ConfigIssue>> {
    // A device not there yet is waited for (`ConfigIssue::absent_for_now`).
    let issues: Vec<ConfigIssue> = config
        .check(base_dir)
        .into_iter()
        .filter(|issue| !issue.absent_for_now)
        .collect();
    if !issues.is_empty() {
        return Err(issues);
    }
    let mut channels: Vec<Arc<dyn Channel>> = Vec::new();
    let mut issues = Vec::new();
    for (i, modem) in config.modems.iter().enumerate() {
        match build_modem(modem, base_dir) {
            Ok(channel) => channels.push(Arc::new(match pin_record_key {
                Some(key) => channel.with_pin_record_key(key.clone()),
                None => channel,
            })),
            Err(issue) => issues.push(issue.under(&format!("modems[{i}]"))),
        }
    }
    if issues.is_empty() {
        Ok(channels)
    } else {
        Err(issues)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_that_cannot_be_resolved_names_its_key_once() {
        let mut modem = ModemConfig::new("a", crate::config::SIM_DEVICE);
        modem.pin = Some(Secret::new("${PHONERELAY_TEST_SURELY_UNSET_VAR}"));
        let Err(issue) = build_modem(&modem, Path::new(".")) else {
            panic!("built with an unset PIN variable");
        };
        assert_eq!(
            issue.under("modems[0]").to_string(),
            "modems[0].pin: environment variable PHONERELAY_TEST_SURELY_UNSET_VAR is not set"
        );
    }
}
