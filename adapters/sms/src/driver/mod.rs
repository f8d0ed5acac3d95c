//! The modem driver: one task owns the serial port, runs start-up, sends
//! parts for callers, reads what arrives and keeps health up to date.
//! It reconnects with exponential backoff whenever the port fails.

mod committed_record;
mod conn;
pub mod direct_parts;
mod earlier_slot_record;
pub mod inbound;
mod occurrence;
mod outage_log;
mod parts_off_full_memory;
pub mod pin_record;
pub mod pin_unsettled;
pub mod request_hold;
mod send_error;
mod slot;
mod smsc;
pub mod status;
mod storage_level;
mod undecodable;
mod unseen_slot;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use phonerelay_channel::{
    ChannelEvent, ChannelKind, CursorWrite, DeliveryStatus, EventSink, InboundMessage, Secret,
    StatusUpdate,
};
use phonerelay_sms_at::{
    Command, CommandId, ErrorClass, FinalResult, ReadySignal, Urc, builders, responses,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use conn::ConnError;
use conn::{Answer, Conn, LateAnswer};
use inbound::{Inbox, Ready};
pub use outage_log::OutageLog;
use outage_log::Say;
use pin_record::{PIN_RECORD_CURSOR, PinRecord, PinRecordKey};
use send_error::CmeSendFailure;
pub use send_error::ErrorCode;
use slot::{INDICATED_MEMORIES_CURSOR, Memory, Slot};
use smsc::SmscVerdict;
use status::{AcceptedPart, AcceptedParts, SentParts, SharedStatus, parts_cursor};
pub(crate) use storage_level::CMS_MEMORY_FULL;

use crate::codec::{self, Incoming};
use crate::config::ModemConfig;

/// First reconnect delay; doubles up to `reconnect_max_backoff_seconds`.
const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
/// Registration polling during start-up (not on the send path).
const REGISTRATION_POLL: Duration = Duration::from_millis(200);
/// How often a connected modem that is off the network is asked whether it
/// is back, between health polls: its queue waits on the answer, and a
/// modem that reports no registration changes of its own (it refused
/// `AT+CREG=1`) would otherwise be found back only at the next health poll.
const OFF_NETWORK_POLL: Duration = Duration::from_secs(5);
/// How often incomplete multipart messages are checked for expiry.
const EXPIRY_CHECK: Duration = Duration::from_secs(10);
/// Once the driver's stop has fired (the daemon's hard stop, or every
/// dispatcher gone), how long an answer the modem still owes (an AT+CMGS
/// waiting on the network) is waited for before the session ends without
/// it; no resync starts after the stop. Long enough for a network that
/// answers a part in 10 s (the part is then recorded, not sent again by
/// the retry), and inside the daemon's own bound
/// after its hard stop (`STOP_BOUND` in `src/daemon.rs`), which is well
/// inside systemd's `TimeoutStopSec`. Waiting the whole `send_timeout_ms`
/// and then the resync's probes (up to 120 s from the PDU's write) had the
/// daemon killed by systemd in the middle of it.
pub const STOP_SETTLE: Duration = Duration::from_secs(12);

/// Completes [`STOP_SETTLE`] after `shutdown` fires.
async fn stop_settled(shutdown: &CancellationToken) {
    shutdown.cancelled().await;
    tokio::time::sleep(STOP_SETTLE).await;
}

/// The TP-MR kept for a part whose `+CMGS:` could not be read: a number
/// like any other in the accepted parts' record, where nothing looks it
/// up (reports are matched through the part's id).
const UNREFERENCED_MR: u8 = 0;

/// The id of such a part: `nomr:<message id>:<part index>`, which no
/// report's id (`mr:…`) can equal.
const UNREFERENCED_ID_PREFIX: &str = "nomr:";

/// Why a part was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// `nothing_sent` when no part of this attempt went out before it.
    #[error("+CMS ERROR: {code}")]
    Cms {
        code: u16,
        permanent: bool,
        nothing_sent: bool,
    },
    #[error("modem rejected the command: {0}")]
    Rejected(String),
    #[error("{0}")]
    Conn(#[from] ConnError),
    #[error("modem not connected")]
    Down,
    /// `+CMS ERROR: 331` (or a `+CME ERROR` saying the same): the modem
    /// is not on a network. `nothing_sent` when no part of this attempt
    /// went out before it.
    #[error("no network service ({error})")]
    NoNetwork {
        error: ErrorCode,
        nothing_sent: bool,
    },
    /// An error about the modem's state, not the message's (see
    /// [`CMS_MODEM_NOT_READY`], [`CmeSendFailure::ModemNotReady`]).
    /// `nothing_sent` as for `Cms`.
    #[error("modem not ready ({error})")]
    ModemNotReady {
        error: ErrorCode,
        nothing_sent: bool,
    },
    /// `+CME ERROR: 14`, SIM busy: nothing was sent, and may be in a
    /// moment. `nothing_sent` as for `Cms`.
    #[error("SIM busy ({error})")]
    SimBusy {
        error: ErrorCode,
        nothing_sent: bool,
    },
    /// The parts of a long message accepted so far could not be committed
    /// to the store, so its next part was not sent (see
    /// [`Driver::send_parts`]).
    #[error("cannot keep the accepted parts in the store: {0}")]
    PartsNotKept(String),
    /// The caller stopped waiting (a stop released the message, or the
    /// send timed out) before the next part of a long message: it was not
    /// sent. The retry goes on from the accepted parts.
    #[error("the send was abandoned before its next part")]
    Abandoned,
}

/// What became of the PIN entered in earlier sessions of this run. A wrong
/// PIN is never sent twice, and neither is one whose outcome is unknown (it
/// may have been wrong): three wrong tries lock the SIM behind its PUK. A
/// rejection outlives the run in the store ([`pin_record`]).
#[derive(Debug, Default)]
struct PinAttempts {
    /// The SIM refused it, or still asked for it after answering it with
    /// an error: taken for wrong for the rest of the run, whatever the SIM
    /// says later (a `READY` then may be someone else's doing).
    rejected: bool,
    /// Its answer never came, or the SIM's state after an error answer
    /// could not be read: the PIN may have been wrong, or it may have
    /// taken.
    outcome_unknown: bool,
    /// The store holds no rejection for this endpoint: it was removed in
    /// this run, and nothing was recorded since. Saves a write per session.
    record_cleared: bool,
}

impl PinAttempts {
    /// The SIM says `READY` and no PIN was sent since the one whose outcome
    /// is unknown: that PIN took (nothing else in this run enters one). A
    /// SIM that asks for it again later (a refresh, a reset in place) gets
    /// it again, rather than being held locked until the daemon restarts.
    fn sim_unlocked(&mut self) {
        self.outcome_unknown = false;
    }
}

/// TS 27.007 `+CME ERROR: 16`, incorrect password: the SIM checked the PIN
/// and it was wrong, one try used.
const CME_INCORRECT_PASSWORD: u16 = 16;

/// `+CME ERROR` codes to a PIN that say the SIM did not check it, so no
/// try was used: TS 27.007's 10 SIM not inserted, 13 SIM failure, 14 SIM
/// busy (still loading, or a refresh), and 515, which several modem makers
/// give while their start-up is still under way ("please wait"). The PIN
/// is entered again by the next session.
const CME_PIN_NOT_CHECKED: [u16; 4] = [10, 13, 14, 515];

/// TS 27.005: the modem has no network to send on.
const CMS_NO_NETWORK_SERVICE: u16 = 331;

/// TS 27.005 330, SMSC address unknown: counted in a row by the status
/// (see `status::SMSC_REFUSALS_STUCK`).
const CMS_SMSC_UNKNOWN: u16 = 330;

/// TS 27.005 `+CMS ERROR` codes that say the modem cannot send at all, not
/// that this message is wrong: 310 SIM not inserted, 311/312 SIM or PH-SIM
/// PIN required, 313 SIM failure, 315 SIM wrong, 316 PUK required, 317/318
/// PIN2 or PUK2 required, 330 SMSC address unknown (some modems give it
/// before the SIM has loaded its SMS centre; a SIM without one needs
/// `smsc` in the config, and start-up stops for it: see `smsc.rs`). The AT table calls them permanent (the command
/// fails again until something changes), but what must change is the
/// modem, and start-up is what changes it (or says why it cannot): every
/// message would otherwise fail for good while it lasts.
const CMS_MODEM_NOT_READY: [u16; 9] = [310, 311, 312, 313, 315, 316, 317, 318, 330];

/// TS 27.005 314, SIM busy: the SIM is loading (after start-up or a
/// refresh) and nothing was sent; it may be in a moment. As `+CME ERROR:
/// 14`, the message waits unattempted and the session goes on.
const CMS_SIM_BUSY: u16 = 314;

/// `+CMS ERROR: 304`, invalid PDU mode parameter: the table's permanent,
/// and so it is for a PDU the modem got as it was made; one damaged on
/// the serial line is answered so too, and goes through sent again.
const CMS_INVALID_PDU: u16 = 304;

/// TS 27.005 302, operation not allowed: what modems answer while SMS is
/// not ready after a reset, but also, on some, to a send they refuse for
/// reasons of their own. A failed attempt, retried with backoff, rather
/// than a modem state: one message that always gets it then ends failed
/// after its attempts instead of restarting the session at every try.
const CMS_OPERATION_NOT_ALLOWED: u16 = 302;

/// `+CMS ERROR: 321`, invalid memory index: the answer of many modems to
/// an `AT+CMGR` of an empty slot.
const CMS_INVALID_MEMORY_INDEX: u16 = 321;

/// What an `AT+CMGR` of a slot found ([`Driver::read_slot`]).
pub(super) enum SlotRead {
    /// A message, whole; `unread` if the modem said it was never read.
    Pdu { pdu: String, unread: bool },
    /// Nothing there.
    Empty,
    /// Not known: the read was refused, or its line never came whole.
    Unknown,
}

/// Causes by which the network refuses every message of this
/// subscription, whatever its recipient or content: TS 24.011 RP causes 28
/// unidentified subscriber (on a submit, our own SIM is not known to the
/// network, e.g. after a VLR reset, until it registers again) and 30
/// unknown subscriber (our own number is not in the HLR: a SIM not yet
/// provisioned, deactivated or ported away), and TS 23.040
/// TP-Failure-Cause 193 no SC subscription. The AT table calls 193
/// permanent (the command fails again until something changes), but what
/// must change is the account, not the message: every queued message
/// would otherwise fail for good one after another while it lasts. The
/// adapter holds the queue instead.
pub(crate) const CMS_SUBSCRIPTION_REFUSED: [u16; 3] = [28, 30, 193];

/// TS 24.011 RP causes of barring: 8 operator determined barring (for want
/// of credit, or of some destinations: international, premium rate), 10
/// call barred (the subscriber's own barring), 50 requested facility not
/// subscribed. Each may cover every destination or only some, so they
/// neither hold the queue, which a message that will never go would then
/// block at its head, nor fail the message at once: a failed attempt,
/// retried with backoff until the account is put right or the attempts
/// run out.
const CMS_BARRED: [u16; 3] = [8, 10, 50];

/// Whether a `+CMS ERROR` to a send fails its message for good: the AT
/// table says retrying unchanged is pointless, and the error is about the
/// message, not the modem's state (handled before this) or the account's.
fn cms_fails_for_good(code: u16, result: &FinalResult) -> bool {
    code != CMS_OPERATION_NOT_ALLOWED
        && !CMS_BARRED.contains(&code)
        && !CMS_SUBSCRIPTION_REFUSED.contains(&code)
        && result.error_class() == Some(ErrorClass::Permanent)
}

/// One part to send: full PDU hex and TPDU length for AT+CMGS.
#[derive(Debug, Clone)]
pub struct OutPart {
    pub hex: String,
    pub tpdu_len: usize,
}

/// How far a send got: TP-MRs of the parts this request got accepted, and
/// the error that stopped it, if any. Every accepted part (of this or an
/// earlier attempt) is in the [`AcceptedParts`] memory.
#[derive(Debug, Clone, Default)]
pub struct SendOutcome {
    pub mrs: Vec<u8>,
    pub error: Option<DriverError>,
}

pub enum Request {
    /// Send message `message_id`: all its `parts`, of which the driver skips
    /// those [`AcceptedParts`] already holds (checked when it takes the
    /// request, so a late answer that came in meanwhile counts).
    Send {
        message_id: String,
        to: String,
        parts: Vec<OutPart>,
        reply: oneshot::Sender<SendOutcome>,
        /// Taken by the driver or given up by the caller, whichever is
        /// first.
        hold: Arc<request_hold::RequestHold>,
    },
}

/// An AT+CMGS that timed out: the part may still have gone out.
struct TimedOutPart {
    command: CommandId,
    index: usize,
}

/// Counters for the benchmark.
#[derive(Debug, Default)]
pub struct WireStats {
    pub bytes_out: std::sync::atomic::AtomicU64,
    pub bytes_in: std::sync::atomic::AtomicU64,
}

pub struct Driver {
    pub config: Arc<ModemConfig>,
    pub path: PathBuf,
    pub pin: Option<Secret>,
    pub status: SharedStatus,
    pub sent: Arc<Mutex<SentParts>>,
    pub accepted: Arc<Mutex<AcceptedParts>>,
    pub sink: Arc<dyn EventSink>,
    pub requests: mpsc::Receiver<Request>,
    pub wire: Arc<WireStats>,
    /// How the current outage, if any, has been reported.
    pub outage: OutageLog,
    /// Memories an indication named that a sweep would not list otherwise
    /// (see [`INDICATED_MEMORIES_CURSOR`]), also in that cursor.
    pub indicated: Mutex<std::collections::BTreeSet<Memory>>,
    /// What a rejected PIN's record is made under; `None` keeps rejections
    /// in memory only (a channel built without the daemon's key file).
    pub pin_record_key: Option<PinRecordKey>,
}

/// Why a session ended.
enum End {
    Shutdown,
    Failed(String),
    /// Will not improve by retrying soon (no PIN configured, PIN rejected).
    Stuck(String),
}

impl Driver {
    /// How this modem writes numbers (its config was validated, so a
    /// `country` it names is known).
    fn numbering(&self) -> codec::Numbering {
        self.config.numbering().unwrap_or_default()
    }

    /// A number as the network gave it, as the daemon records it.
    fn sender(&self, address: &phonerelay_sms_pdu::Address) -> String {
        self.numbering().sender(address)
    }
}

pub(crate) fn unix_now() -> i64 {
    unix_now_ms() / 1000
}

/// An inbound message as the journal names it when it is lost.
fn lost_inbound(message: &InboundMessage) -> String {
    format!(
        "inbound message {} from {}",
        message.external_id, message.from
    )
}

fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Driver {
    fn set_status(&self, f: impl FnOnce(&mut status::ModemStatus)) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut status);
    }

    /// Runs until `shutdown` fires.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let max_backoff = Duration::from_secs(self.config.reconnect_max_backoff_seconds);
        let mut backoff = INITIAL_BACKOFF;
        let mut inbox = Inbox::new(self.config.reassembly_timeout_seconds * 1000)
            .with_numbering(self.numbering());
        if let Err(e) = self.recall_recent_parts(&mut inbox, 0).await {
            tracing::warn!(phone_id = %self.config.phone_id, error = %e,
                "cannot read the parts committed lately; asked again before a part is judged");
        }
        self.recall_indicated_memories().await;
        // The inbox's time base: it keeps partial messages across sessions,
        // so their first-seen times must be on one clock for its whole life.
        let epoch = Instant::now();
        let mut pin_attempts = PinAttempts::default();
        loop {
            let end = self
                .session(
                    &shutdown,
                    &mut inbox,
                    epoch,
                    &mut pin_attempts,
                    &mut backoff,
                )
                .await;
            let (reason, stuck) = match end {
                End::Shutdown => break,
                End::Failed(reason) => (reason, false),
                End::Stuck(reason) => {
                    backoff = max_backoff;
                    (reason, true)
                }
            };
            let phone_id = &self.config.phone_id;
            match self.outage.failed(&reason, std::time::Instant::now()) {
                // Looking again will not mend it (a PIN the SIM refused is
                // never sent twice): say what an operator has to do.
                Say::Warn { down_for: None } if stuck => {
                    tracing::error!(%phone_id, %reason, look_again_in = ?backoff,
                        "modem unusable until this is fixed (the config, the SIM or the modem), then restart")
                }
                Say::Warn { down_for: None } => {
                    tracing::warn!(%phone_id, %reason, retry_in = ?backoff, "modem down; reconnecting")
                }
                Say::Warn {
                    down_for: Some(down_for),
                } => tracing::warn!(%phone_id, %reason, retry_in = ?backoff,
                    down_for_seconds = down_for.as_secs(), "modem still down; reconnecting"),
                Say::Quiet => {
                    tracing::debug!(%phone_id, %reason, retry_in = ?backoff, "modem still down; reconnecting")
                }
            }
            self.set_status(|s| {
                s.connected = false;
                s.registered = false;
                s.note = format!("reconnecting: {reason}");
                s.last_error = Some(reason.clone());
            });
            // While down, callers get an immediate transient error so the
            // outbox retries later instead of waiting on a dead port.
            let wake = Instant::now() + backoff;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        self.close_requests();
                        return;
                    }
                    _ = tokio::time::sleep_until(wake) => break,
                    request = self.requests.recv() => match request {
                        Some(request) => fail_request(request, DriverError::Down),
                        None => return,
                    },
                }
            }
            backoff = (backoff * 2).min(max_backoff);
        }
        self.close_requests();
        self.set_status(|s| {
            s.connected = false;
            s.note = "stopped".into();
        });
    }

    fn close_requests(&mut self) {
        self.requests.close();
        while let Ok(request) = self.requests.try_recv() {
            fail_request(request, DriverError::Down);
        }
    }

    async fn session(
        &mut self,
        shutdown: &CancellationToken,
        inbox: &mut Inbox,
        epoch: Instant,
        pin_attempts: &mut PinAttempts,
        backoff: &mut Duration,
    ) -> End {
        if !self.path.exists() {
            return End::Failed(format!(
                "{} does not exist (unplugged?)",
                self.path.display()
            ));
        }
        let mut conn = match Conn::open(&self.path, self.config.baud, self.wire.clone()) {
            Ok(conn) => conn,
            Err(e) => return End::Failed(e.to_string()),
        };
        let started = tokio::select! {
            _ = shutdown.cancelled() => Err(End::Shutdown),
            r = self.start_up(&mut conn, pin_attempts) => r,
        };
        if let Err(end) = started {
            // A message or report the modem handed over directly while
            // start-up ran is on no SIM, and the modem wants no
            // acknowledgement of it (`AT+CSMS=0`): dropped with the port,
            // it would be lost unsaid.
            self.settle_direct_urcs(&mut conn, inbox, epoch).await;
            return end;
        }
        // A modem switched on as the port opened announces its start while
        // start-up sets it up: start-up ran after that, not before it.
        conn.urcs.retain(|urc| !announces_restart(urc));
        *backoff = INITIAL_BACKOFF;
        match self.outage.recovered(std::time::Instant::now()) {
            Some(down_for) => tracing::info!(phone_id = %self.config.phone_id,
                down_for_seconds = down_for.as_secs(), "modem ready again"),
            None => tracing::info!(phone_id = %self.config.phone_id, "modem ready"),
        }
        let result = self.serve(&mut conn, shutdown, inbox, epoch).await;
        self.settle_direct_urcs(&mut conn, inbox, epoch).await;
        match result {
            Ok(()) => End::Shutdown,
            Err(e) => End::Failed(e.to_string()),
        }
    }

    fn cmd(&self, text: impl Into<String>) -> Command {
        Command::plain(text, self.config.command_timeout_ms)
    }

    /// `AT+CMGL`: a modem may read its whole memory before the first line
    /// of the listing, so never sooner than the AT crate's list timeout;
    /// the lines then renew the deadline as they come (a streaming
    /// command, up to ten times that in all), so a long listing over a
    /// slow line is not cut off half-way. Cut off, it
    /// ended the session at the same listing every time it came back,
    /// and nothing was read again.
    fn list_cmd(&self, text: impl Into<String>) -> Command {
        let timeout = self
            .config
            .command_timeout_ms
            .max(builders::LIST_TIMEOUT_MS);
        Command::plain(text, timeout).streaming()
    }

    async fn start_up(&self, conn: &mut Conn, pin_attempts: &mut PinAttempts) -> Result<(), End> {
        let fail = |e: ConnError| End::Failed(e.to_string());
        // A daemon killed between a prompt and its PDU, or stopped while
        // it awaited a slow prompt, left the modem typing a PDU: `ATZ`
        // and every command after it would go into it.
        conn.leave_text_entry().await.map_err(fail)?;
        for text in ["ATZ", "ATE0", "AT+CMEE=1", "AT+CMGF=0"] {
            let answer = conn.run(self.cmd(text)).await.map_err(fail)?;
            if !answer.is_ok() && text == "AT+CMGF=0" {
                return Err(End::Stuck("modem does not support PDU mode".into()));
            }
        }
        // SIM: enter the PIN once if asked; a wrong PIN is never retried,
        // since three wrong tries lock the SIM behind the PUK.
        let deadline =
            Instant::now() + Duration::from_secs(self.config.registration_timeout_seconds);
        let mut pin_sent = false;
        loop {
            let answer = conn.run(self.cmd("AT+CPIN?")).await.map_err(fail)?;
            let state = answer
                .line("+CPIN:")
                .and_then(|l| responses::parse_cpin(l).ok());
            self.set_status(|s| s.sim = state.as_ref().map(|st| format!("{st:?}")));
            match state {
                Some(responses::PinState::Ready) => {
                    pin_attempts.sim_unlocked();
                    self.forget_pin_rejection(pin_attempts).await;
                    self.settle_pin().await;
                    break;
                }
                Some(responses::PinState::SimPin) if !pin_sent => {
                    self.enter_pin(conn, pin_attempts).await?;
                    pin_sent = true;
                }
                Some(other) if other.needs_pin() && pin_sent => {}
                Some(responses::PinState::NotReady) | None if Instant::now() < deadline => {}
                Some(other) => return Err(End::Stuck(format!("SIM state {other:?}"))),
                None => return Err(End::Failed("no SIM state".into())),
            }
            if Instant::now() >= deadline {
                return Err(End::Failed("SIM not ready in time".into()));
            }
            tokio::time::sleep(REGISTRATION_POLL).await;
        }
        self.set_status(|s| s.sim = Some("ready".into()));
        // Registration: CS (+CREG) or EPS (+CEREG) will do for SMS.
        loop {
            if self.poll_registration(conn).await.map_err(fail)? {
                break;
            }
            if Instant::now() >= deadline {
                return Err(End::Failed("not registered on the network in time".into()));
            }
            tokio::time::sleep(REGISTRATION_POLL).await;
        }
        let own = self.own_memory();
        let selected = conn
            .run(self.cmd(format!("AT+CPMS=\"{own}\",\"{own}\",\"{own}\"")))
            .await
            .map_err(fail)?;
        if !selected.is_ok() {
            // Some modems keep one memory and refuse to be told another:
            // it is taken as the one configured, as it was before memories
            // were told apart. Were it left unknown, every read would first
            // ask for a memory such a modem refuses, and nothing would be
            // read at all.
            tracing::warn!(phone_id = %self.config.phone_id, memory = %own,
                "the modem refused to select its message memory; using the one it has");
        }
        conn.memory = Some(own);
        // Phase 2 message service (27.005 3.2.1): a message or report the
        // modem routes directly (`+CMT`, `+CDS`, the CNMI fallbacks) needs
        // no `AT+CNMA`. A modem left in phase 2+ would wait for one, and
        // turn the routing off when none came. One that knows no AT+CSMS
        // is phase 2 already.
        conn.run(self.cmd("AT+CSMS=0")).await.map_err(fail)?;
        let mut indications = false;
        for candidate in phonerelay_sms_at::builders::new_message_indication_candidates() {
            let command = Command::plain(candidate.text, self.config.command_timeout_ms);
            if conn.run(command).await.map_err(fail)?.is_ok() {
                indications = true;
                break;
            }
        }
        if !indications {
            // Still usable: the periodic sweep finds what arrives.
            tracing::warn!(phone_id = %self.config.phone_id, "modem accepts no AT+CNMI setting; relying on sweeps");
        }
        // Registration changes as they happen (status only, not every cell
        // change), so a modem that lost the network and found it again
        // sends at once; without them the health poll finds out. A modem
        // that refuses either is polled only.
        for command in ["AT+CREG=1", "AT+CEREG=1"] {
            conn.run(self.cmd(command)).await.map_err(fail)?;
        }
        if let Some(smsc) = &self.config.smsc {
            conn.run(self.cmd(format!("AT+CSCA=\"{smsc}\",145")))
                .await
                .map_err(fail)?;
        }
        self.check_smsc(conn).await?;
        self.poll_health(conn).await.map_err(fail)?;
        Ok(())
    }

    /// Read the SMS centre the modem will send to; with none on the SIM
    /// and none configured, read it again once after a short wait (a SIM
    /// still loading), then end start-up as stuck, naming the fix: every
    /// send would get `+CMS ERROR: 330` and end the session again.
    async fn check_smsc(&self, conn: &mut Conn) -> Result<(), End> {
        let configured = self.config.smsc.is_some();
        let mut second_look = false;
        loop {
            let answer = conn
                .run(self.cmd("AT+CSCA?"))
                .await
                .map_err(|e| End::Failed(e.to_string()))?;
            // A query refused (a SIM still loading after its PIN answers
            // `+CME ERROR: 14` for a few seconds) says nothing of the SMS
            // centre: a session that starts again soon, not one stuck for
            // want of a centre the SIM may well have.
            if !answer.is_ok() {
                return Err(End::Failed(format!(
                    "AT+CSCA? answered {}: the SIM may still be loading",
                    answer.result
                )));
            }
            let reported = smsc::address(answer.line("+CSCA:"));
            let verdict = smsc::verdict(reported.as_deref(), configured, second_look);
            self.set_status(|s| s.smsc = reported);
            match verdict {
                SmscVerdict::Known => return Ok(()),
                SmscVerdict::LookAgain => {
                    tokio::time::sleep(smsc::SECOND_LOOK_AFTER).await;
                    second_look = true;
                }
                SmscVerdict::Missing => {
                    return Err(End::Stuck(smsc::missing_reason(&self.config.phone_id)));
                }
            }
        }
    }

    /// Send the configured PIN once, unless an earlier session's attempt
    /// says it must not be sent again. `Ok` when the SIM took it.
    async fn enter_pin(&self, conn: &mut Conn, pin_attempts: &mut PinAttempts) -> Result<(), End> {
        let Some(pin) = &self.pin else {
            return Err(End::Stuck(
                "SIM asks for a PIN and none is configured".into(),
            ));
        };
        if pin_attempts.rejected {
            return Err(End::Stuck(self.pin_held_back()));
        }
        if pin_attempts.outcome_unknown {
            return Err(End::Stuck(
                "the SIM still asks for its PIN after an attempt whose outcome \
                 is unknown (no answer came); not sent again, as it may have been \
                 wrong (three wrong tries lock the SIM): check the PIN; if it is \
                 right, enter it by hand (AT+CPIN), or configure another"
                    .into(),
            ));
        }
        let attempt = match &self.pin_record_key {
            Some(key) => {
                let iccid = self
                    .read_iccid(conn)
                    .await
                    .map_err(|e| End::Failed(e.to_string()))?;
                let attempt =
                    PinRecord::of(key, &self.config.phone_id, pin.expose(), iccid.as_deref());
                self.check_pin_record(&attempt, pin_attempts).await?;
                self.check_unsettled_pin(&attempt).await?;
                self.mark_pin_unsettled(&attempt).await?;
                Some(attempt)
            }
            None => None,
        };
        // The SIM checks the PIN itself, which takes seconds: given less
        // time than the AT crate's SIM timeout, a slow SIM's answer would
        // be taken as lost, and the PIN held back as possibly wrong.
        let timeout = self.config.command_timeout_ms.max(builders::SIM_TIMEOUT_MS);
        let command = Command::plain(format!("AT+CPIN=\"{}\"", pin.expose()), timeout).sensitive();
        let answer = conn.run(command).await.map_err(|e| {
            pin_attempts.outcome_unknown = true;
            End::Failed(e.to_string())
        })?;
        if answer.is_ok() {
            self.settle_pin().await;
            return Ok(());
        }
        let refused = self.pin_refused(conn, &answer.result, pin_attempts).await;
        // The rejection is written before the record of the PIN under way
        // is cleared: one or the other holds the PIN back across a crash
        // between the two, and if the rejection cannot be written the
        // unsettled record stays and holds it back at the next start.
        // Cleared first, a crash or a failed write let a restart send the
        // wrong PIN again, a second of the SIM's three tries.
        let recorded = match (&attempt, pin_attempts.rejected) {
            (Some(attempt), true) => self.remember_pin_rejection(attempt, pin_attempts).await,
            _ => true,
        };
        if !pin_attempts.outcome_unknown && recorded {
            self.settle_pin().await;
        }
        refused
    }

    /// What the health says while a rejected PIN is held back.
    fn pin_held_back(&self) -> String {
        format!(
            "SIM PIN rejected earlier; not sent again until the configured PIN changes: \
             check the pin (or pin_file) of the modem {} in channels.sms.modems, then \
             restart the daemon",
            self.config.phone_id
        )
    }

    /// The SIM's ICCID, asked the standard way (`AT+CCID`) and then
    /// Quectel's (`AT+QCCID`); `None` if the modem gives it neither way.
    /// A rejection is recorded with it, so a new SIM in the slot gets the
    /// PIN. Most modems read it with the SIM still locked.
    async fn read_iccid(&self, conn: &mut Conn) -> Result<Option<String>, ConnError> {
        for command in ["AT+CCID", "AT+QCCID"] {
            let answer = conn.run(self.cmd(command)).await?;
            if answer.is_ok()
                && let Some(iccid) = pin_record::parse_iccid(&answer.lines)
            {
                return Ok(Some(iccid));
            }
        }
        Ok(None)
    }

    /// Refuse to send `attempt` if the store holds its rejection. A record
    /// that cannot be read holds the PIN back too, until it can be: the
    /// PIN may be the one rejected.
    async fn check_pin_record(
        &self,
        attempt: &PinRecord,
        pin_attempts: &mut PinAttempts,
    ) -> Result<(), End> {
        let stored = self.sink.load_cursor(PIN_RECORD_CURSOR).await.map_err(|e| {
            End::Failed(format!(
                "cannot read the record of rejected SIM PINs ({e}); the PIN is not sent until it can be read"
            ))
        })?;
        let Some(value) = stored else {
            return Ok(());
        };
        match PinRecord::parse(&value) {
            Some(record) if record.forbids(attempt) => {
                pin_attempts.rejected = true;
                Err(End::Stuck(self.pin_held_back()))
            }
            Some(_) => Ok(()),
            None => {
                tracing::warn!(phone_id = %self.config.phone_id,
                    "the record of a rejected SIM PIN is not one this build reads; ignored");
                Ok(())
            }
        }
    }

    /// Keep the rejection of `attempt` across restarts; whether it was
    /// written. If the store refuses it, this run still holds the PIN
    /// back, and the record of the PIN under way, left, does at a restart.
    async fn remember_pin_rejection(
        &self,
        attempt: &PinRecord,
        pin_attempts: &mut PinAttempts,
    ) -> bool {
        match self
            .sink
            .save_cursor(PIN_RECORD_CURSOR, &attempt.to_value())
            .await
        {
            Ok(()) => {
                pin_attempts.record_cleared = false;
                true
            }
            Err(e) => {
                tracing::error!(phone_id = %self.config.phone_id, error = %e,
                    "cannot record the rejected SIM PIN; it stays held back as a PIN whose answer is not recorded");
                false
            }
        }
    }

    /// The SIM is unlocked (the PIN took, or the SIM no longer asks for
    /// one): a recorded rejection no longer stands. Not while this run
    /// holds a rejected PIN back: a `READY` then may be someone else's
    /// doing, and the configured PIN still the wrong one.
    async fn forget_pin_rejection(&self, pin_attempts: &mut PinAttempts) {
        if self.pin_record_key.is_none() || pin_attempts.rejected || pin_attempts.record_cleared {
            return;
        }
        match self.sink.save_cursor(PIN_RECORD_CURSOR, "").await {
            Ok(()) => pin_attempts.record_cleared = true,
            Err(e) => tracing::warn!(phone_id = %self.config.phone_id, error = %e,
                "cannot clear the record of a rejected SIM PIN; tried again at the next start-up"),
        }
    }

    /// The SIM answered the PIN with an error. One that says the SIM did
    /// not check it ([`CME_PIN_NOT_CHECKED`]: SIM busy) ends the session as
    /// a transient failure, and the next one enters the PIN again. Any
    /// other may have used a try: the SIM is asked again, and `READY`
    /// means the PIN took after all; otherwise it is taken for wrong and
    /// not sent again in this run.
    ///
    /// How many tries are left would settle it, but modems tell that only
    /// in their own ways (`AT+QPINC`, `AT+SPIC`, `AT^CPIN`), so it is not
    /// read. Sending it again after an error that may have been a wrong
    /// try (a bare `ERROR`) would spend the SIM's tries: counted only in
    /// memory, a restart would spend more, and three lock the SIM behind
    /// its PUK.
    async fn pin_refused(
        &self,
        conn: &mut Conn,
        result: &FinalResult,
        pin_attempts: &mut PinAttempts,
    ) -> Result<(), End> {
        let cme_code = match result {
            FinalResult::CmeError(_) => result.error_code(),
            _ => None,
        };
        if cme_code == Some(CME_INCORRECT_PASSWORD) {
            pin_attempts.rejected = true;
            return Err(End::Stuck(format!("SIM PIN rejected ({result})")));
        }
        if cme_code.is_some_and(|code| CME_PIN_NOT_CHECKED.contains(&code)) {
            return Err(End::Failed(format!(
                "the SIM could not check the PIN ({result}); entering it again later"
            )));
        }
        // Taken for wrong unless the SIM says otherwise. If the question
        // goes unanswered, the outcome is unknown: not sent again, unless a
        // later session finds the SIM unlocked, which proves it took.
        let answer = conn.run(self.cmd("AT+CPIN?")).await.map_err(|e| {
            pin_attempts.outcome_unknown = true;
            End::Failed(e.to_string())
        })?;
        let state = answer
            .line("+CPIN:")
            .and_then(|l| responses::parse_cpin(l).ok());
        if state != Some(responses::PinState::Ready) {
            pin_attempts.rejected = true;
        }
        match state {
            Some(responses::PinState::Ready) => Ok(()),
            Some(responses::PinState::SimPuk) => Err(End::Stuck(format!(
                "SIM PIN rejected ({result}); the SIM now asks for its PUK"
            ))),
            _ => Err(End::Stuck(format!(
                "the SIM answered the PIN with {result} and still asks for it; not sent \
                 again, as that may have been a wrong try (three lock the SIM): check \
                 the PIN, then restart the daemon"
            ))),
        }
    }

    async fn poll_registration(&self, conn: &mut Conn) -> Result<bool, ConnError> {
        let mut registered = false;
        let mut text = None;
        for (query, prefix) in [("AT+CREG?", "+CREG:"), ("AT+CEREG?", "+CEREG:")] {
            let answer = conn.run(self.cmd(query)).await?;
            if let Some(reg) = answer
                .line(prefix)
                .and_then(|l| responses::parse_registration(l).ok())
            {
                text.get_or_insert_with(|| format!("{:?}", reg.state));
                if reg.state.is_registered() {
                    registered = true;
                    text = Some(format!("{:?}", reg.state));
                    break;
                }
            }
        }
        self.set_status(|s| {
            s.registered = registered;
            s.registration = text;
        });
        Ok(registered)
    }

    fn registered(&self) -> bool {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .registered
    }

    /// Poll registration, and say so when it changed. Off the network, ask
    /// the SIM too (see [`Driver::check_sim_unlocked`]).
    async fn recheck_registration(&self, conn: &mut Conn) -> Result<(), ConnError> {
        let was = self.registered();
        let now = self.poll_registration(conn).await?;
        if was != now {
            tracing::info!(phone_id = %self.config.phone_id, registered = now, "network registration changed");
        }
        if !now {
            self.check_sim_unlocked(conn).await?;
        }
        Ok(())
    }

    /// A SIM that reset or refreshed asks for its PIN again, and the modem
    /// leaves the network, often with no `RDY` to end the session and
    /// nothing unsolicited the driver acts on: it would stay off the
    /// network, its queue held, until a restart. Ending the session here
    /// lets start-up enter the PIN (unless an earlier attempt says not to).
    async fn check_sim_unlocked(&self, conn: &mut Conn) -> Result<(), ConnError> {
        let answer = conn.run(self.cmd("AT+CPIN?")).await?;
        let state = answer
            .line("+CPIN:")
            .and_then(|l| responses::parse_cpin(l).ok());
        match state {
            Some(state) if state.needs_pin() => {
                self.set_status(|s| s.sim = Some(format!("{state:?}")));
                Err(ConnError::StartUpLost(
                    "the SIM asks for its PIN again".into(),
                ))
            }
            _ => Ok(()),
        }
    }

    async fn poll_health(&self, conn: &mut Conn) -> Result<(), ConnError> {
        let answer = conn.run(self.cmd("AT+CSQ")).await?;
        let dbm = answer
            .line("+CSQ:")
            .and_then(|l| responses::parse_csq(l).ok())
            .and_then(|q| q.dbm());
        let answer = conn.run(self.cmd("AT+COPS?")).await?;
        let operator = answer
            .line("+COPS:")
            .and_then(|l| responses::parse_cops(l).ok())
            .and_then(|o| o.name);
        let answer = conn.run(self.cmd("AT+CPIN?")).await?;
        let sim = answer
            .line("+CPIN:")
            .and_then(|l| responses::parse_cpin(l).ok())
            .map(|s| format!("{s:?}"));
        self.poll_registration(conn).await?;
        self.set_status(|s| {
            s.signal_dbm = dbm;
            s.operator = operator;
            s.sim = sim;
        });
        Ok(())
    }

    /// The connected loop: requests, URCs, health and sweeps.
    async fn serve(
        &mut self,
        conn: &mut Conn,
        shutdown: &CancellationToken,
        inbox: &mut Inbox,
        epoch: Instant,
    ) -> Result<(), ConnError> {
        self.sweep(conn, inbox, epoch).await?;
        // Up only now: start-up and the first sweep are done, so the port
        // is free for sends.
        self.set_status(|s| {
            s.connected = true;
            s.note.clear();
        });
        let health_every = Duration::from_secs(self.config.health_interval_seconds);
        let sweep_every = Duration::from_secs(self.config.sweep_interval_seconds);
        let mut health = tokio::time::interval_at(Instant::now() + health_every, health_every);
        let mut sweep = tokio::time::interval_at(Instant::now() + sweep_every, sweep_every);
        // A short reassembly timeout is checked as often as it runs out.
        let expiry_every = EXPIRY_CHECK.min(Duration::from_secs(
            self.config.reassembly_timeout_seconds.max(1),
        ));
        let mut expiry = tokio::time::interval_at(Instant::now() + expiry_every, expiry_every);
        let mut off_network = tokio::time::interval(OFF_NETWORK_POLL);
        off_network.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while let Some(urc) = conn.urcs.pop_front() {
                self.handle_urc(conn, urc, inbox, epoch).await?;
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                request = self.requests.recv() => match request {
                    // The guard takes the request (`RequestHold::take`)
                    // unless its caller gave it up or stopped waiting; the
                    // arm below then sends it.
                    Some(Request::Send { reply, hold, .. }) if reply.is_closed() || !hold.take() => {
                        // The caller stopped waiting before the driver took
                        // it, and said nothing went out; its retry comes as
                        // a new request.
                        tracing::debug!(phone_id = %self.config.phone_id, "send given up by its caller before it was taken; skipped");
                    }
                    Some(Request::Send { message_id, to, parts, reply, .. }) => {
                        let (outcome, timed_out) = self
                            .send_parts(conn, &message_id, &to, parts, shutdown, || reply.is_closed())
                            .await;
                        let error = outcome.error.clone();
                        // Answer at once: the caller's retry queues behind
                        // the resync below and so sees its result.
                        let _ = reply.send(outcome);
                        match (timed_out, error) {
                            // Stopping: no resync (up to 21 probes of 3 s)
                            // for a late answer. The part's fate is unknown;
                            // the message's retry sends it again.
                            (Some(part), _) if shutdown.is_cancelled() => {
                                tracing::warn!(phone_id = %self.config.phone_id, %message_id, part = part.index,
                                    "stopping: not waiting for a late answer to a timed-out send; a retry sends the part again");
                                return Ok(());
                            }
                            (Some(part), _) => {
                                // A stop during the resync cuts it short too.
                                tokio::select! {
                                    settled = self.settle_timed_out_send(conn, &message_id, &to, part) => settled?,
                                    () = stop_settled(shutdown) => {
                                        tracing::warn!(phone_id = %self.config.phone_id, %message_id,
                                            "stopping: no late answer to a timed-out send yet; a retry sends the part again");
                                        return Ok(());
                                    }
                                }
                            }
                            (None, Some(DriverError::Conn(ConnError::Stopped(_)))) => return Ok(()),
                            (None, Some(DriverError::Conn(e))) => return Err(e),
                            (None, Some(DriverError::ModemNotReady { error, .. })) => {
                                return Err(ConnError::StartUpLost(format!(
                                    "{error} to a send"
                                )));
                            }
                            (None, _) => {}
                        }
                    }
                    None => return Ok(()),
                },
                read = conn.idle_read() => read?,
                _ = health.tick() => self.poll_health(conn).await?,
                _ = off_network.tick(), if !self.registered() => {
                    self.recheck_registration(conn).await?;
                }
                _ = sweep.tick() => self.sweep(conn, inbox, epoch).await?,
                _ = expiry.tick() => {
                    // A direct part left unjudged may be the one a message
                    // in assembly waits for: judged first, and while it
                    // cannot be, nothing times out (its message would be
                    // committed without it, then it alone: two partial
                    // messages). A short reassembly timeout would
                    // otherwise run out long before the next sweep.
                    if inbox.direct_unjudged {
                        self.retake_direct(conn, inbox, epoch).await?;
                        if inbox.direct_unjudged {
                            continue;
                        }
                    }
                    let now = epoch.elapsed().as_millis() as u64;
                    // A sweep first: a slot of the expiring message that
                    // changed hands (its part deleted by something else,
                    // a new message in it) is released then, and read, not
                    // freed with the message.
                    if inbox.stored_part_expires(now) {
                        self.sweep(conn, inbox, epoch).await?;
                    }
                    for ready in inbox.expire(now) {
                        self.commit_inbound(conn, ready, inbox, now).await?;
                    }
                }
            }
        }
    }

    /// A part the network accepted: remembered for its delivery report and
    /// for a retry of its message to skip.
    /// Probes that cover what is left of the longest an AT+CMGS may take,
    /// once `send_timeout_ms` of it has passed (see
    /// [`Self::settle_timed_out_send`]); at least the usual two.
    fn probes_after_send_timeout(&self) -> u32 {
        let left = phonerelay_sms_at::builders::SEND_TIMEOUT_MS
            .saturating_sub(self.config.send_timeout_ms);
        let probe = phonerelay_sms_at::EngineConfig::default()
            .probe_timeout_ms
            .max(1);
        let probes = u32::try_from(left.div_ceil(probe)).unwrap_or(u32::MAX);
        probes.saturating_add(1).max(conn::MAX_PROBE_ATTEMPTS)
    }

    /// A part the network accepted whose TP-MR was lost (an `OK` without
    /// a readable `+CMGS:`): remembered under an id no report names, so a
    /// retry skips it.
    fn accept_unreferenced(&self, message_id: &str, index: usize) {
        let external_id = format!("{UNREFERENCED_ID_PREFIX}{message_id}:{index}");
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(
                message_id,
                index,
                AcceptedPart {
                    mr: UNREFERENCED_MR,
                    external_id,
                },
            );
    }

    async fn accept(&self, message_id: &str, to: &str, index: usize, mr: u8) {
        let now = unix_now();
        self.relearn_sent_ids(mr, to, now.div_euclid(86_400)).await;
        let external_id = self
            .sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .issue(mr, to, now);
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(message_id, index, AcceptedPart { mr, external_id });
    }

    /// Whether `message_id` has accepted parts its store cursor lacks.
    fn parts_unsaved(&self, message_id: &str) -> bool {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unsaved(message_id)
    }

    /// Commit the accepted parts of `message_id`, whatever its length, to
    /// its store cursor, so a retry after a daemon restart sends only the
    /// rest (the adapter reads the cursor back).
    async fn save_accepted_parts(
        &self,
        message_id: &str,
    ) -> Result<(), phonerelay_channel::SinkError> {
        let (cursor, count) = {
            let accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
            (
                accepted.to_cursor(message_id),
                accepted.accepted_count(message_id),
            )
        };
        self.sink
            .save_cursor(&parts_cursor(message_id), &cursor)
            .await?;
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .mark_saved(message_id, count);
        Ok(())
    }

    /// [`Driver::save_accepted_parts`] where nothing waits on it: a
    /// failure only means a restart before the retry sends them again.
    async fn try_save_accepted_parts(&self, message_id: &str) {
        if let Err(e) = self.save_accepted_parts(message_id).await {
            tracing::warn!(phone_id = %self.config.phone_id, message_id, error = %e,
                "could not keep the accepted parts in the store; a restart before the retry sends them again");
        }
    }

    /// After an AT+CMGS timed out (and the caller was told so): wait for the
    /// modem to be in step again, and if its late answer is `+CMGS: <mr>` /
    /// `OK`, record the part as accepted, so that the retry of the message
    /// skips it instead of sending a duplicate. Requests wait meanwhile.
    ///
    /// A modem busy with an AT+CMGS answers no probe until the network has
    /// answered, which 27.005's vendors allow up to 120 s
    /// (`builders::SEND_TIMEOUT_MS`) after the PDU was written: the probes
    /// go on that long before the modem is taken as gone. With two probes
    /// (6 s), an answer later than that ended the session, was lost with
    /// it, and the retry sent the part again.
    ///
    /// Not covered: a late answer that never comes while the port is open
    /// (the probes go unanswered and the session ends, or the modem is
    /// unplugged), or a daemon restart before it comes. Those parts are sent
    /// again by the retry. One that comes is kept in the store, so a retry
    /// after a restart knows it too, even if the session ends right after
    /// it (the probe of its window unanswered, the port lost).
    async fn settle_timed_out_send(
        &self,
        conn: &mut Conn,
        message_id: &str,
        to: &str,
        part: TimedOutPart,
    ) -> Result<(), ConnError> {
        let mut late = None;
        let resynced = conn
            .resync(self.probes_after_send_timeout(), &mut late)
            .await;
        match late {
            Some(LateAnswer {
                id,
                result: FinalResult::Ok,
                lines,
            }) if id == part.command => {
                match lines.iter().find_map(|l| responses::parse_cmgs(l).ok()) {
                    Some(mr) => {
                        tracing::info!(phone_id = %self.config.phone_id, message_id, part = part.index, mr, "late +CMGS after a send timeout: the part went out; a retry skips it");
                        self.accept(message_id, to, part.index, mr).await;
                        // Even a single part: the retry may come after a
                        // restart (the whole backoff later), and would
                        // send it again.
                        self.try_save_accepted_parts(message_id).await;
                    }
                    None => {
                        tracing::warn!(phone_id = %self.config.phone_id, message_id, part = part.index,
                            "late OK without a readable +CMGS after a send timeout: the part went out; a retry skips it, and its delivery report cannot be matched");
                        self.accept_unreferenced(message_id, part.index);
                        self.try_save_accepted_parts(message_id).await;
                    }
                }
            }
            Some(LateAnswer { result, .. }) => {
                tracing::warn!(phone_id = %self.config.phone_id, message_id, %result, "timed-out send failed late; a retry sends the part again")
            }
            None => {
                tracing::warn!(phone_id = %self.config.phone_id, message_id, "no late answer to a timed-out send; a retry sends the part again")
            }
        }
        resynced
    }

    /// Send the parts not yet accepted, back to back: the next AT+CMGS goes
    /// out as soon as the previous one's final result is in. Stops at the
    /// first failure; a timeout also returns the part whose fate is unknown.
    ///
    /// A long message's accepted parts are committed to its store cursor
    /// before its next part goes out. If that fails, the send ends there as
    /// a transient failure. Its retry in this process finds the accepted
    /// parts in memory and skips them, but commits them first, so it too
    /// sends nothing more until the store has them. A restart before that
    /// finds the cursor as last saved: the retry after it sends again only
    /// the one part accepted since, not every part after it.
    ///
    /// A part already on the wire is finished, but no next one starts once
    /// `abandoned` says the caller has stopped waiting: the outbox has put
    /// the message back (a stop, or its send timeout), and parts sent now
    /// would only hold the daemon's stop up, until systemd kills it in the
    /// middle of one whose fate is then unknown. Once `shutdown` has
    /// fired, the part on the wire gets [`STOP_SETTLE`] more to be
    /// answered, not the rest of `send_timeout_ms`.
    async fn send_parts(
        &mut self,
        conn: &mut Conn,
        message_id: &str,
        to: &str,
        parts: Vec<OutPart>,
        shutdown: &CancellationToken,
        abandoned: impl Fn() -> bool,
    ) -> (SendOutcome, Option<TimedOutPart>) {
        let mut outcome = SendOutcome::default();
        let total = parts.len();
        // A single part has no next part to hold back.
        let long = total >= 2;
        for (index, part) in parts.into_iter().enumerate() {
            let done = self
                .accepted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_accepted(message_id, index);
            if done {
                continue;
            }
            if abandoned() {
                outcome.error = Some(DriverError::Abandoned);
                break;
            }
            // Commit the parts accepted so far (this attempt's, and any an
            // earlier attempt left in memory only) before this one goes out.
            if long
                && self.parts_unsaved(message_id)
                && let Err(e) = self.save_accepted_parts(message_id).await
            {
                outcome.error = Some(DriverError::PartsNotKept(e.to_string()));
                return (outcome, None);
            }
            // `+CMS ERROR: 304` to a PDU the codec made most likely means
            // it was damaged on its way to the modem: sent again once, at
            // once, before it counts (a second one fails the message).
            let mut resent = false;
            loop {
                let command = Command::with_pdu(
                    format!("AT+CMGS={}", part.tpdu_len),
                    part.hex.clone(),
                    self.config.send_timeout_ms,
                );
                // A stop gives the network [`STOP_SETTLE`] more to answer.
                let (command, answer) = conn
                    .run_tracked_until(command, stop_settled(shutdown))
                    .await;
                match answer {
                    Ok(Answer {
                        result: FinalResult::Ok,
                        lines,
                    }) => {
                        let mr = lines.iter().find_map(|l| responses::parse_cmgs(l).ok());
                        match mr {
                            Some(mr) => {
                                self.accept(message_id, to, index, mr).await;
                                self.set_status(|s| s.smsc_refusals_in_a_row = 0);
                                outcome.mrs.push(mr);
                            }
                            None => {
                                // OK is the network's acceptance (27.005
                                // 3.5.1); only the reference was lost. Sent
                                // again, the part would reach the recipient
                                // twice; kept, only its report goes unmatched.
                                tracing::warn!(phone_id = %self.config.phone_id, message_id, part = index,
                                    "OK without a readable +CMGS: the part went out; its delivery report cannot be matched");
                                self.accept_unreferenced(message_id, index);
                                self.set_status(|s| s.smsc_refusals_in_a_row = 0);
                                outcome.mrs.push(UNREFERENCED_MR);
                            }
                        }
                        break;
                    }
                    Ok(Answer { result, .. })
                        if !resent
                            && matches!(result, FinalResult::CmsError(_))
                            && result.error_code() == Some(CMS_INVALID_PDU) =>
                    {
                        tracing::warn!(phone_id = %self.config.phone_id, message_id, part = index,
                            "the modem called the PDU invalid (+CMS ERROR: 304), perhaps damaged on the serial line; sent again once");
                        resent = true;
                    }
                    Ok(Answer { result, .. }) => {
                        let nothing_sent = outcome.mrs.is_empty();
                        outcome.error = Some(match (&result, result.error_code()) {
                            (FinalResult::CmsError(_), Some(CMS_NO_NETWORK_SERVICE)) => self
                                .network_lost(ErrorCode::Cms(CMS_NO_NETWORK_SERVICE), nothing_sent),
                            (FinalResult::CmsError(_), Some(CMS_SIM_BUSY)) => {
                                DriverError::SimBusy {
                                    error: ErrorCode::Cms(CMS_SIM_BUSY),
                                    nothing_sent,
                                }
                            }
                            (FinalResult::CmsError(_), Some(code))
                                if CMS_MODEM_NOT_READY.contains(&code) =>
                            {
                                if code == CMS_SMSC_UNKNOWN {
                                    self.set_status(|s| s.smsc_refusals_in_a_row += 1);
                                }
                                self.modem_not_ready(ErrorCode::Cms(code), nothing_sent)
                            }
                            (FinalResult::CmeError(_), Some(code)) => {
                                let error = ErrorCode::Cme(code);
                                match send_error::cme_send_failure(code) {
                                    Some(CmeSendFailure::NoNetwork) => {
                                        self.network_lost(error, nothing_sent)
                                    }
                                    Some(CmeSendFailure::ModemNotReady) => {
                                        self.modem_not_ready(error, nothing_sent)
                                    }
                                    Some(CmeSendFailure::SimBusy) => DriverError::SimBusy {
                                        error,
                                        nothing_sent,
                                    },
                                    None => DriverError::Rejected(result.to_string()),
                                }
                            }
                            (FinalResult::CmsError(_), Some(CMS_MEMORY_FULL)) => {
                                // The modem's memory, not the message: said in
                                // the health until a reading shows room, and
                                // the adapter holds the queue meanwhile.
                                self.storage_full_said(Some(format!(
                                    "+CMS ERROR: {CMS_MEMORY_FULL} to a send"
                                )));
                                DriverError::Cms {
                                    code: CMS_MEMORY_FULL,
                                    permanent: false,
                                    nothing_sent: outcome.mrs.is_empty(),
                                }
                            }
                            (FinalResult::CmsError(_), Some(code)) => DriverError::Cms {
                                code,
                                permanent: cms_fails_for_good(code, &result),
                                nothing_sent: outcome.mrs.is_empty(),
                            },
                            _ => DriverError::Rejected(result.to_string()),
                        });
                        return (outcome, None);
                    }
                    Err(e @ ConnError::Timeout(_)) => {
                        outcome.error = Some(DriverError::Conn(e));
                        let timed_out = TimedOutPart { command, index };
                        return (outcome, Some(timed_out));
                    }
                    Err(e @ ConnError::Stopped(_)) => {
                        tracing::warn!(phone_id = %self.config.phone_id, message_id, part = index,
                            "stopping: no answer from the network to a part yet; its fate is unknown, and a retry sends it again");
                        outcome.error = Some(DriverError::Conn(e));
                        return (outcome, None);
                    }
                    Err(e) => {
                        outcome.error = Some(DriverError::Conn(e));
                        return (outcome, None);
                    }
                }
            }
        }
        if !outcome.mrs.is_empty() && self.parts_unsaved(message_id) {
            // The last part accepted, of a long message or of a single
            // one: committed before the send is answered, because the
            // outbox may never record the answer (a stop released the
            // message while the modem still had it). A restart before the
            // outbox records the send then finds every part accepted and
            // sends none again.
            self.try_save_accepted_parts(message_id).await;
        }
        (outcome, None)
    }

    /// A send answered `error`, which says the modem has lost the network
    /// since the last registration poll: said now, so the outbox holds
    /// the queue until a poll finds it back.
    fn network_lost(&self, error: ErrorCode, nothing_sent: bool) -> DriverError {
        self.set_status(|s| {
            s.registered = false;
            s.registration = Some(format!("lost ({error})"));
        });
        DriverError::NoNetwork {
            error,
            nothing_sent,
        }
    }

    /// A send answered `error`, which is about the modem's state: held
    /// until start-up has run again (the session ends once the caller has
    /// its answer).
    fn modem_not_ready(&self, error: ErrorCode, nothing_sent: bool) -> DriverError {
        self.set_status(|s| s.connected = false);
        DriverError::ModemNotReady {
            error,
            nothing_sent,
        }
    }

    /// A status report the modem handed over directly (`+CDS`): committed
    /// now, since the modem keeps no copy.
    async fn direct_report(&self, pdu: &str) {
        match codec::decode_incoming(pdu) {
            Ok(Incoming::Report(report)) => match self.report_event(&report).await {
                Some(event) => {
                    self.commit_unstored(event, false).await;
                }
                None => tracing::debug!(mr = report.message_reference, "interim status report"),
            },
            Ok(_) => {
                self.undecodable_direct("+CDS", pdu, "not a status report")
                    .await
            }
            Err(e) => self.undecodable_direct("+CDS", pdu, &e.to_string()).await,
        }
    }

    /// When a session ends, what the modem handed over directly and that
    /// still waited behind a command (`+CDS`, `+CMT`) is handled without
    /// the modem: it keeps no copy, so dropped with the connection it would
    /// be lost. A message completed so waits for the next session's sweep
    /// to free its stored parts. What the modem stored (`+CMTI`) is read
    /// again by that sweep.
    async fn settle_direct_urcs(&self, conn: &mut Conn, inbox: &mut Inbox, epoch: Instant) {
        for urc in std::mem::take(&mut conn.urcs) {
            match urc {
                Urc::Cds { pdu, length } => self.direct_report(&with_smsc_part(&pdu, length)).await,
                Urc::Cmt { pdu, length, .. } => {
                    let now = epoch.elapsed().as_millis() as u64;
                    let pdu = with_smsc_part(&pdu, length);
                    if let Some(ready) = self.take_direct(&pdu, inbox, now).await {
                        self.commit_ready(&ready, inbox, now).await;
                    }
                }
                _ => {}
            }
        }
    }

    async fn handle_urc(
        &mut self,
        conn: &mut Conn,
        urc: Urc,
        inbox: &mut Inbox,
        epoch: Instant,
    ) -> Result<(), ConnError> {
        match urc {
            Urc::Cmti { mem, index } => self.read_stored(conn, &mem, index, inbox, epoch).await,
            Urc::Cdsi { mem, index } => self.read_stored(conn, &mem, index, inbox, epoch).await,
            Urc::Cds { pdu, length } => {
                self.direct_report(&with_smsc_part(&pdu, length)).await;
                Ok(())
            }
            Urc::MessageMemoryFull(full) => {
                self.memory_full_indicated(conn, full).await?;
                self.move_held_parts_if_full(conn, inbox).await
            }
            // CS or EPS registration changed: ask both, as the poll does
            // (an LTE-only modem reports CS unregistered while it sends).
            Urc::CregUnsolicited(_) => self.recheck_registration(conn).await,
            Urc::Cmt { pdu, length, .. } => {
                let now = epoch.elapsed().as_millis() as u64;
                let pdu = with_smsc_part(&pdu, length);
                if let Some(ready) = self.take_direct(&pdu, inbox, now).await {
                    // Parts stored earlier may complete it: freed too.
                    self.commit_inbound(conn, ready, inbox, now).await?;
                }
                Ok(())
            }
            // A +CMT/+CDS header whose PDU never came (or a text-mode one):
            // kept like an undecodable one. Its line may hold text: only
            // its length is told.
            Urc::Other(line) => {
                if let Some(kind) = conn::direct_delivery_kind(&line) {
                    self.undecodable_direct(kind, &line, "no PDU line after the header")
                        .await;
                }
                Ok(())
            }
            // The modem reset in place: its port stayed open, so nothing else
            // ends the session, but what start-up set (new-message
            // indications, registration reports, the PIN) is gone.
            urc if announces_restart(&urc) => Err(ConnError::StartUpLost(format!(
                "it restarted in place ({urc:?})"
            ))),
            _ => Ok(()),
        }
    }

    /// A received message that is not for a person ([`codec::disposition`])
    /// is acknowledged and dropped, as a phone does; counted in the status.
    fn discarded(&self, kind: &str, index: Option<u32>) {
        tracing::info!(phone_id = %self.config.phone_id, kind, ?index,
            "received message not for a person; discarded");
        self.set_status(|s| s.discarded_inbound += 1);
    }

    /// The memory received messages go to (`modems[].storage`).
    fn own_memory(&self) -> Memory {
        Memory::parse(self.config.storage.as_str()).unwrap_or(Memory::SIM)
    }

    /// Run `f` with `mem` as the read/delete memory, then go back to the
    /// one before (so a call inside another's `f` leaves it as it found
    /// it). `None` if the modem would not select `mem` (one without "SR"
    /// memory, say): then `f` does not run, for its indexes would act on
    /// another memory's slots. A modem that will not go back ends the
    /// session, whose start-up selects its own memory again.
    async fn with_memory<T>(
        &self,
        conn: &mut Conn,
        mem: Memory,
        f: impl AsyncFnOnce(&Self, &mut Conn) -> Result<T, ConnError>,
    ) -> Result<Option<T>, ConnError> {
        let before = conn.memory;
        if before != Some(mem) {
            if !conn
                .run(self.cmd(format!("AT+CPMS=\"{mem}\"")))
                .await?
                .is_ok()
            {
                tracing::debug!(%mem, "the modem would not select this memory");
                return Ok(None);
            }
            conn.memory = Some(mem);
        }
        let result = f(self, conn).await?;
        if conn.memory != before {
            let back = before.unwrap_or(self.own_memory());
            // The form that switched: only the read/delete memory changed.
            if !conn
                .run(self.cmd(format!("AT+CPMS=\"{back}\"")))
                .await?
                .is_ok()
            {
                return Err(ConnError::StartUpLost(format!(
                    "the modem would not select memory {back} again"
                )));
            }
            conn.memory = Some(back);
        }
        Ok(Some(result))
    }

    /// Delete `slots`, each in its own memory; returns those freed.
    async fn free_slots(&self, conn: &mut Conn, slots: &[Slot]) -> Result<Vec<Slot>, ConnError> {
        let mut memories: Vec<Memory> = slots.iter().map(|s| s.mem).collect();
        memories.sort();
        memories.dedup();
        let mut freed = Vec::new();
        for mem in memories {
            let in_mem: Vec<Slot> = slots.iter().filter(|s| s.mem == mem).copied().collect();
            let done = self
                .with_memory(conn, mem, async |me: &Self, conn: &mut Conn| {
                    let mut done = Vec::new();
                    for slot in in_mem {
                        if me.delete_here(conn, slot).await? {
                            done.push(slot);
                        }
                    }
                    Ok(done)
                })
                .await?;
            freed.extend(done.unwrap_or_default());
        }
        Ok(freed)
    }

    /// `AT+CMGD` of `slot`, whose memory is the one selected; whether the
    /// modem freed it. A freed slot is room in its memory.
    async fn delete_here(&self, conn: &mut Conn, slot: Slot) -> Result<bool, ConnError> {
        debug_assert_eq!(conn.memory, Some(slot.mem));
        let index = slot.index;
        let freed = conn
            .run(self.cmd(format!("AT+CMGD={index}")))
            .await?
            .is_ok();
        if freed {
            self.room_made(slot.mem);
        }
        Ok(freed)
    }

    async fn read_stored(
        &self,
        conn: &mut Conn,
        mem: &str,
        index: u32,
        inbox: &mut Inbox,
        epoch: Instant,
    ) -> Result<(), ConnError> {
        let Some(mem) = Memory::parse(mem) else {
            // The sweep finds it if it is in a memory it lists.
            tracing::warn!(mem, index, "indication names no memory this driver knows");
            return Ok(());
        };
        self.note_indicated_memory(mem).await;
        if mem.listed_as(self.own_memory()) != [mem] {
            // Its messages are listed under other names ("SM" 1 is "MT"
            // 26 on a Cinterion, and the index does not say which): read
            // by its index here, it had a second name, a slot record its
            // sweep does not know and a second delete.
            let seen = self.sweep_seeing(conn, inbox, epoch).await?;
            return self
                .read_unseen(conn, Slot::new(mem, index), &seen, inbox, epoch)
                .await;
        }
        // A slot held for a waiting part is announced again only when a
        // new message took it (`read_held_slot`): read it all the same.
        let slot = Slot::new(mem, index);
        self.with_memory(conn, mem, async |me: &Self, conn: &mut Conn| {
            let read = me.read_here(conn, Slot::new(mem, index)).await?;
            if let Some((pdu, unread)) = read
                && me.not_the_held_part(Slot::new(mem, index), &pdu, inbox)
            {
                if unread {
                    inbox.fresh_slots.insert(Slot::new(mem, index));
                }
                me.process_stored(conn, mem, index, &pdu, inbox, epoch)
                    .await?;
            }
            Ok(())
        })
        .await?;
        // A part left waiting may have taken the memory's last slot, and
        // the next sweep may be minutes away.
        if inbox.holds(slot) {
            self.read_storage_level(conn).await?;
            self.move_held_parts_if_full(conn, inbox).await?;
        }
        Ok(())
    }

    /// `AT+CMGR` of `slot`, whose memory is the one selected: its PDU, once
    /// a read brings it whole ([`pdu_is_whole`]), and whether the modem
    /// said it was unread (never read before this read). A line damaged on the
    /// way is read again, [`READ_ATTEMPTS`] times in all. `None` for an
    /// empty slot, a refusal, or a line that never came whole: the slot is
    /// then left as it is, neither decoded nor deleted, and the next sweep
    /// reads it again.
    async fn read_here(
        &self,
        conn: &mut Conn,
        slot: Slot,
    ) -> Result<Option<(String, bool)>, ConnError> {
        Ok(match self.read_slot(conn, slot).await? {
            SlotRead::Pdu { pdu, unread } => Some((pdu, unread)),
            SlotRead::Empty | SlotRead::Unknown => None,
        })
    }

    /// As [`Self::read_here`], telling an empty slot (an answer with no
    /// PDU, or `+CMS ERROR: 321`, invalid index) from one that could not
    /// be read (another refusal, a line never whole): a record that reads
    /// a slot until it is empty must not take the one for the other.
    async fn read_slot(&self, conn: &mut Conn, slot: Slot) -> Result<SlotRead, ConnError> {
        debug_assert_eq!(conn.memory, Some(slot.mem));
        // Unread if any read found it so: the first read marks the message
        // read in the modem even when its line came damaged, and the read
        // that came whole then says `REC READ`. Taken from that one alone,
        // a same-second twin in a slot its first was freed from was taken
        // for a read again of the first, and dropped (`occurrence`).
        let mut unread = false;
        for _ in 0..READ_ATTEMPTS {
            let answer = conn
                .run(self.cmd(format!("AT+CMGR={}", slot.index)))
                .await?;
            if !answer.is_ok() {
                return Ok(
                    if answer.result.error_code() == Some(CMS_INVALID_MEMORY_INDEX) {
                        SlotRead::Empty
                    } else {
                        SlotRead::Unknown
                    },
                );
            }
            // The PDU is the hex line right after the header; a header
            // without one (an empty slot) has none.
            let mut lines = answer.lines.iter().skip_while(|l| !l.starts_with("+CMGR:"));
            let header_line = lines.next();
            let header = header_line
                .map(|l| responses::parse_cmgr_header(l))
                .and_then(Result::ok);
            let Some(pdu) = lines.next().filter(|l| is_pdu_line(l)) else {
                // An empty slot answers its header alone, or nothing. Any
                // other line is this answer damaged on the line: a PDU
                // line with a bit flipped out of hex (the parser gives it
                // apart from its header), or a header that no longer
                // reads as one. Taken for an empty slot, the message was
                // left unread, with nothing counted or said.
                let other = answer
                    .lines
                    .iter()
                    .find(|l| Some(*l) != header_line && !l.trim().is_empty());
                match other {
                    None => return Ok(SlotRead::Empty),
                    Some(line) => {
                        // This read marked the message read as well.
                        unread |= header
                            .as_ref()
                            .is_some_and(|h| h.status == responses::MessageStatus::ReceivedUnread);
                        self.damaged_line(slot, "+CMGR", header.map(|h| h.length), line);
                        continue;
                    }
                }
            };
            unread |= header
                .as_ref()
                .is_some_and(|h| h.status == responses::MessageStatus::ReceivedUnread);
            let length = header.as_ref().map(|h| h.length);
            if length.is_some_and(|length| pdu_is_whole(pdu, length)) {
                return Ok(SlotRead::Pdu {
                    pdu: pdu.clone(),
                    unread,
                });
            }
            // A header that cannot be read gives no length to check the
            // line by: damaged as well, as far as can be told.
            self.damaged_line(slot, "+CMGR", length, pdu);
        }
        Ok(SlotRead::Unknown)
    }

    /// A PDU line that disagrees with its header's length, or is no hex
    /// line at all: said in the journal (its length, never its content)
    /// and counted in the status.
    /// A modem that always counted its own way would show here, its
    /// messages left on it, rather than have them committed cut short and
    /// deleted.
    fn damaged_line(&self, slot: Slot, kind: &str, header_length: Option<u32>, pdu: &str) {
        tracing::warn!(phone_id = %self.config.phone_id, %slot, kind, ?header_length,
            line_chars = pdu.len(),
            "PDU line damaged on the serial line (its length disagrees with its header); left on the modem, read again later");
        self.set_status(|s| s.damaged_pdu_lines += 1);
    }

    /// Whether `pdu`, read from `slot`, is to be processed: true unless it
    /// is the part the inbox holds for that slot. A held slot with another
    /// message in it changed hands (something else deleted the part and a
    /// new message took the slot): the slot is released from the waiting
    /// message, or its expiry would free it and delete the new message
    /// unread.
    fn not_the_held_part(&self, slot: Slot, pdu: &str, inbox: &mut Inbox) -> bool {
        if !inbox.holds(slot) {
            return true;
        }
        if let Ok(Incoming::Deliver(deliver)) = codec::decode_incoming(pdu)
            && inbox.holds_part(slot, &deliver)
        {
            return false;
        }
        tracing::warn!(phone_id = %self.config.phone_id, %slot,
            "a slot held for a waiting part holds another message now; reading it as new");
        inbox.release_slot(slot);
        true
    }

    /// Before a listing of `mem` is acted on: every slot held for a
    /// waiting part that the listing shows empty, or holding another
    /// message, is released from it (the part waits on in memory). Checked
    /// as each entry came up, a part listed before such a slot completed
    /// its message first, whose delete of the held slot took the new
    /// message there unread; and a slot found empty, freed at the
    /// message's end or expiry, deleted whatever had come into it since.
    /// A slot whose line came damaged (`None`) is left as it is.
    fn release_held_slots_not_listed_as_held(
        &self,
        mem: Memory,
        stored: &[(u32, Option<String>)],
        inbox: &mut Inbox,
    ) {
        for slot in inbox.held_slots() {
            if slot.mem != mem {
                continue;
            }
            match stored.iter().find(|(index, _)| *index == slot.index) {
                None => {
                    tracing::info!(phone_id = %self.config.phone_id, %slot,
                        "a slot held for a waiting part is empty now (deleted outside the bridge); the part waits in memory");
                    inbox.release_slot(slot);
                }
                Some((_, Some(pdu))) => {
                    self.not_the_held_part(slot, pdu, inbox);
                }
                Some((_, None)) => {}
            }
        }
    }

    /// One stored PDU (from AT+CMGR or AT+CMGL) in the current memory.
    /// Returns the slots it freed, this one or others (the other parts of
    /// a message it completed, in whichever memory they are).
    async fn process_stored(
        &self,
        conn: &mut Conn,
        mem: Memory,
        index: u32,
        pdu: &str,
        inbox: &mut Inbox,
        epoch: Instant,
    ) -> Result<Vec<Slot>, ConnError> {
        let slot = Slot::new(mem, index);
        match codec::decode_incoming(pdu) {
            Ok(Incoming::Deliver(deliver))
                if codec::disposition(&deliver) != codec::Disposition::Keep =>
            {
                // Nothing in it to commit: acknowledged by freeing it at once.
                if let codec::Disposition::Discard(kind) = codec::disposition(&deliver) {
                    self.discarded(kind, Some(index));
                }
                let freed = self.delete_here(conn, slot).await?;
                return Ok(if freed { vec![slot] } else { Vec::new() });
            }
            // An outbox copy or draft that "ALL" lists too: not received,
            // so neither delivered nor undecodable, and not ours to delete
            // (whoever stored it may want it).
            Ok(Incoming::StoredSubmit) => {
                tracing::debug!(%slot, "stored SMS-SUBMIT (outbox copy) skipped");
            }
            Ok(Incoming::Deliver(deliver)) => {
                if !inbox.holds(slot) {
                    let now = epoch.elapsed().as_millis() as u64;
                    match self.part_of_committed(&deliver, inbox, now).await {
                        // Its message was committed: a copy of one of its
                        // parts, or a part a crash left when it cut the
                        // freeing of the slots short. Free this one too.
                        Ok(true) => {
                            tracing::info!(%slot, "part of a message already committed; freed");
                            let freed = self.delete_here(conn, slot).await?;
                            return Ok(if freed { vec![slot] } else { Vec::new() });
                        }
                        Ok(false) => {}
                        // Held now, it would never be asked about again,
                        // and its timeout would commit it without the
                        // parts already freed: a second, partial message.
                        Err(e) => {
                            tracing::warn!(phone_id = %self.config.phone_id, error = %e, %slot,
                                "cannot tell whether a stored part's message was committed; left for the next sweep");
                            return Ok(Vec::new());
                        }
                    }
                }
                let now = epoch.elapsed().as_millis() as u64;
                if let Some(ready) = inbox.add_stored(slot, pdu, *deliver, now) {
                    return self.commit_inbound(conn, ready, inbox, now).await;
                }
            }
            Ok(Incoming::Report(report)) => {
                if let Some(event) = self.report_event(&report).await {
                    if let Err(e) = self.sink.deliver(event).await {
                        tracing::warn!(error = %e, %slot, "status report not committed; kept on the modem");
                        return Ok(Vec::new());
                    }
                } else {
                    tracing::debug!(mr = report.message_reference, "interim status report");
                }
                let freed = self.delete_here(conn, slot).await?;
                return Ok(if freed { vec![slot] } else { Vec::new() });
            }
            Err(e) => {
                // Kept under its slot while its commit fails, so a sweep of
                // its memory can tell when it is gone; one in a memory no
                // sweep lists (one the modem would not select) is known
                // under the memory received messages go to, whose sweep
                // forgets it.
                let listed_under = if self.swept_memories().contains(&mem) {
                    mem
                } else {
                    self.own_memory()
                };
                let freed = self
                    .undecodable_stored(conn, slot, listed_under.as_str(), pdu, &e.to_string())
                    .await?;
                return Ok(if freed { vec![slot] } else { Vec::new() });
            }
        }
        Ok(Vec::new())
    }

    /// Commit, then free the slots; returns those freed. A failed commit
    /// frees nothing: the next sweep reads the parts again. A message whose
    /// parts all came directly (`+CMT`: a long one that timed out
    /// half-assembled) is on no SIM, so a failed commit loses it, and is
    /// reported as such. A committed long message's parts are remembered
    /// in `inbox`, so that a copy read later is freed, not assembled.
    async fn commit_inbound(
        &self,
        conn: &mut Conn,
        ready: Ready,
        inbox: &mut Inbox,
        now_ms: u64,
    ) -> Result<Vec<Slot>, ConnError> {
        if !self.commit_ready(&ready, inbox, now_ms).await {
            return Ok(Vec::new());
        }
        let freed = self.free_slots(conn, &ready.slots).await?;
        let all_freed = freed.len() == ready.slots.len();
        // A slot the modem would not free keeps the record, so the part is
        // known when it is read again.
        if let Some(parts) = &ready.committed_parts
            && all_freed
        {
            // Known for a day from here on, restart or not, in place of
            // the record that stood until the last slot was freed. Not
            // noted so, they stay known by that record: taken off, a part
            // delivered again after a restart would be a second, partial
            // message.
            match self.note_recent_parts(parts).await {
                Ok(()) => {
                    let _ = self.forget_committed_parts(parts).await;
                }
                Err(e) => tracing::warn!(phone_id = %self.config.phone_id, error = %e,
                    "cannot note a long message's parts as committed lately; their committed-parts record is kept instead"),
            }
        }
        Ok(freed)
    }

    /// Take up the parts noted as committed lately by an earlier run, at
    /// `now_ms` on the inbox's clock. Not read, the inbox says so
    /// (`Inbox::recent_unread`), and the next part judged asks again.
    async fn recall_recent_parts(
        &self,
        inbox: &mut Inbox,
        now_ms: u64,
    ) -> Result<(), phonerelay_channel::SinkError> {
        let read = self.sink.load_cursor(inbound::RECENT_PARTS_CURSOR).await;
        inbox.recent_unread = read.is_err();
        if let Some(value) = read? {
            inbox.remember_recent(inbound::recent_parts(&value, unix_now_ms()), now_ms);
        }
        Ok(())
    }

    /// Commit `ready`; returns whether its slots may be freed now. A long
    /// message's slots are freed one at a time: until the last is, its
    /// parts are kept as committed (`inbound::CommittedParts`), a record
    /// written with the message in one transaction, and known as such in
    /// `inbox` once that commit is. If the record cannot be read or
    /// written, the message is not committed and nothing is freed: the
    /// next sweep reads the whole message again and tries again.
    async fn commit_ready(&self, ready: &Ready, inbox: &mut Inbox, now_ms: u64) -> bool {
        if ready.slots.is_empty() {
            self.commit_all_direct(ready, inbox, now_ms).await;
            return false;
        }
        let (external_id, record) = match &ready.committed_parts {
            // A single-part message: an occurrence of its base id, with
            // its slot's record (`occurrence`).
            None => match self.stored_single_id(ready, inbox).await {
                Ok(judged) => judged,
                Err(e) => {
                    tracing::warn!(error = %e, external_id = %ready.external_id,
                        "cannot tell a stored message read again from a new one; not committed, kept on the SIM");
                    return false;
                }
            },
            Some(parts) => match self.committed_parts_kept(parts).await {
                Ok(record) => (ready.external_id.clone(), vec![record]),
                Err(e) => {
                    tracing::warn!(error = %e, external_id = %ready.external_id,
                        "cannot read a long message's committed-parts record; not committed, kept on the SIM");
                    return false;
                }
            },
        };
        let mut message = self.inbound_message(ready);
        message.external_id = external_id;
        if let Err(e) = self
            .sink
            .deliver_inbound_with_cursors(message, &record)
            .await
        {
            tracing::warn!(error = %e, external_id = %ready.external_id, "inbound message not committed; kept on the SIM");
            return false;
        }
        for slot in &ready.slots {
            inbox.fresh_slots.remove(slot);
        }
        if let Some(parts) = &ready.committed_parts {
            inbox.remember_committed(parts, now_ms);
        }
        // The direct parts leave their record only now that the stored
        // ones are known as committed: left there, the next sweep joins
        // them to the stored parts again, and the whole message is the
        // duplicate the store drops; taken off first, the stored parts
        // alone came out as a second, partial message.
        self.forget_direct(&ready.direct, inbox).await;
        true
    }

    /// Commit `ready`, whose parts were all handed over directly (on no
    /// SIM), with its parts noted as committed lately in the same
    /// transaction: a part the network delivers again, after a restart
    /// too, is then known and dropped, not made a second, partial message.
    /// Each part is in the record of direct deliveries, or goes there now
    /// that the commit failed, and the next sweep commits it; one whose
    /// slot changed hands is in memory only, and lost with a failed commit.
    async fn commit_all_direct(&self, ready: &Ready, inbox: &mut Inbox, now_ms: u64) {
        let kept = !ready.direct.is_empty() && !ready.memory_only;
        let committed = match self.all_direct_cursors(ready, kept).await {
            Some((external_id, cursors)) => {
                let mut message = self.inbound_message(ready);
                message.external_id = external_id;
                self.commit_unstored_inbound(message, &cursors, kept).await
            }
            None => false,
        };
        if !committed {
            self.keep_direct(&mut ready.direct.clone(), inbox).await;
            return;
        }
        self.forget_direct(&ready.direct, inbox).await;
        if let Some(parts) = &ready.committed_parts {
            inbox.remember_committed(parts, now_ms);
        }
    }

    /// The id an all-direct message is committed under, and the cursors
    /// it is committed with: a long one's parts noted as committed lately;
    /// a single part's occurrence (`occurrence`), taken off the record of
    /// direct deliveries. `None` when those cannot be read and the message
    /// can wait for the next sweep (it is `kept`); one that cannot wait is
    /// committed without them, and that said.
    async fn all_direct_cursors(
        &self,
        ready: &Ready,
        kept: bool,
    ) -> Option<(String, Vec<CursorWrite>)> {
        let Some(parts) = &ready.committed_parts else {
            return self.direct_single_cursors(ready, kept).await;
        };
        let id = ready.external_id.clone();
        match self.recent_parts_noted(parts).await {
            Ok(noted) => Some((id, vec![noted])),
            Err(e) if kept => {
                tracing::warn!(phone_id = %self.config.phone_id, error = %e, external_id = %ready.external_id,
                    "cannot read the parts committed lately; a message handed over directly waits for the next sweep");
                None
            }
            Err(e) => {
                tracing::warn!(phone_id = %self.config.phone_id, error = %e, external_id = %ready.external_id,
                    "cannot read the parts committed lately; a message handed over directly is committed without noting its parts");
                Some((id, Vec::new()))
            }
        }
    }

    /// [`Self::all_direct_cursors`] of a single-part message.
    async fn direct_single_cursors(
        &self,
        ready: &Ready,
        kept: bool,
    ) -> Option<(String, Vec<CursorWrite>)> {
        match self.direct_single_id(ready).await {
            Ok(judged) => Some(judged),
            Err(e) if kept => {
                tracing::warn!(phone_id = %self.config.phone_id, error = %e, external_id = %ready.external_id,
                    "cannot read the ids taken; a message handed over directly waits for the next sweep");
                None
            }
            // In memory only: committed as the first occurrence rather
            // than lost (dropped only if that one is taken).
            Err(e) => {
                tracing::warn!(phone_id = %self.config.phone_id, error = %e, external_id = %ready.external_id,
                    "cannot read the ids taken; a message handed over directly is committed as the first occurrence");
                Some((
                    occurrence::next_occurrence(&ready.external_id, &[]),
                    Vec::new(),
                ))
            }
        }
    }

    /// Whether `deliver` is a part of a long message that was committed
    /// while the freeing of its slots was cut short. The record is left as
    /// it is: a copy of the same part in another slot must be known too,
    /// and a record a crash left behind names only parts already committed
    /// (a newer message with the same sender, reference and count replaces
    /// it). An error when the record, or the parts committed lately by an
    /// earlier run, cannot be read: the caller leaves the part alone until
    /// a later sweep can tell. Never for a single-part message, which no
    /// record names. `now_ms`: the inbox's clock.
    async fn part_of_committed(
        &self,
        deliver: &phonerelay_sms_pdu::Deliver,
        inbox: &mut Inbox,
        now_ms: u64,
    ) -> Result<bool, phonerelay_channel::SinkError> {
        let from = self.sender(&deliver.originator);
        // Asked before the parts committed lately are read again: were an
        // unreadable list to stop a single-part message too, the SIM would
        // keep every message, and fill, for as long as it stays unreadable.
        let Some((name, fingerprint)) = inbound::part_fingerprint(&from, deliver) else {
            return Ok(false);
        };
        if inbox.recent_unread {
            self.recall_recent_parts(inbox, now_ms).await?;
        }
        if inbox.committed_lately(&from, deliver) {
            return Ok(true);
        }
        let record = self.sink.load_cursor(&name).await?;
        Ok(record.is_some_and(|value| inbound::names_fingerprint(&value, &fingerprint)))
    }

    /// Commit an event the modem handed over without storing it (`+CMT`,
    /// `+CDS`). Unless it is `kept` in the record of direct deliveries
    /// (`direct_parts`), where the next sweep finds it again, a failed
    /// commit loses it: say which one, and count it in the status. Returns
    /// whether it was committed.
    async fn commit_unstored(&self, event: ChannelEvent, kept: bool) -> bool {
        let lost = match &event {
            ChannelEvent::Inbound(m) => lost_inbound(m),
            ChannelEvent::Status(s) => format!("status {:?} of {}", s.status, s.external_id),
            ChannelEvent::Unreadable(u) => format!("unreadable PDU from {}", u.origin),
        };
        let result = self.sink.deliver(event).await;
        self.unstored_committed(result, &lost, kept)
    }

    /// As [`Self::commit_unstored`], an inbound message with `cursors`
    /// written in the same transaction.
    async fn commit_unstored_inbound(
        &self,
        message: InboundMessage,
        cursors: &[CursorWrite],
        kept: bool,
    ) -> bool {
        let lost = lost_inbound(&message);
        let result = self
            .sink
            .deliver_inbound_with_cursors(message, cursors)
            .await;
        self.unstored_committed(result, &lost, kept)
    }

    /// Whether the commit of an event handed over directly (`lost`, as
    /// the journal names it) went through; if not, said, and counted
    /// unless it is `kept`.
    fn unstored_committed(
        &self,
        result: Result<(), phonerelay_channel::SinkError>,
        lost: &str,
        kept: bool,
    ) -> bool {
        let Err(e) = result else {
            return true;
        };
        if kept {
            tracing::warn!(phone_id = %self.config.phone_id, error = %e, %lost,
                "message handed over directly not committed; kept for the next sweep");
        } else {
            tracing::warn!(phone_id = %self.config.phone_id, error = %e, %lost,
                "event delivered directly by the modem not committed; it is lost");
            self.set_status(|s| s.lost_direct_events += 1);
        }
        false
    }

    /// The memories a sweep lists ([`Memory::swept`]).
    fn swept_memories(&self) -> Vec<Memory> {
        let indicated = self.indicated.lock().unwrap_or_else(|e| e.into_inner());
        Memory::swept(self.own_memory(), &indicated)
    }

    /// Take up the memories indications named in earlier runs.
    async fn recall_indicated_memories(&self) {
        match self.sink.load_cursor(INDICATED_MEMORIES_CURSOR).await {
            Ok(value) => {
                *self.indicated.lock().unwrap_or_else(|e| e.into_inner()) =
                    Memory::parse_set(&value.unwrap_or_default());
            }
            Err(e) => tracing::warn!(phone_id = %self.config.phone_id, error = %e,
                "cannot read the memories indications named; until one names them again, sweeps list only the usual ones"),
        }
    }

    /// An indication named `mem`: from now on every sweep lists it (by
    /// the names it is listed as, [`Memory::listed_as`]), also after a
    /// restart, if it is not among those listed anyway. Written
    /// before the message is read, so that a failed commit leaves it
    /// where a sweep finds it.
    async fn note_indicated_memory(&self, mem: Memory) {
        let after = {
            let mut indicated = self.indicated.lock().unwrap_or_else(|e| e.into_inner());
            let own = self.own_memory();
            let swept = Memory::swept(own, &indicated);
            if mem.listed_as(own).iter().all(|name| swept.contains(name)) {
                return;
            }
            indicated.insert(mem);
            Memory::set_to_cursor(&indicated)
        };
        tracing::info!(phone_id = %self.config.phone_id, %mem,
            "an indication names a memory sweeps did not list; sweeps list it from now on");
        if let Err(e) = self
            .sink
            .save_cursor(INDICATED_MEMORIES_CURSOR, &after)
            .await
        {
            tracing::warn!(phone_id = %self.config.phone_id, %mem, error = %e,
                "cannot keep the memory in the store; sweeps list it until the daemon restarts");
        }
    }

    /// AT+CMGL=4 over each memory a message or report may be stored in
    /// ([`Driver::swept_memories`]): whatever is stored gets processed, whether or
    /// not its indication was seen. First what the record of direct
    /// deliveries holds, so that stored parts can join the parts in it.
    async fn sweep(
        &self,
        conn: &mut Conn,
        inbox: &mut Inbox,
        epoch: Instant,
    ) -> Result<(), ConnError> {
        self.sweep_seeing(conn, inbox, epoch).await.map(drop)
    }

    /// [`Self::sweep`], returning the PDUs it found in the memories it
    /// listed (handled or left for later alike).
    async fn sweep_seeing(
        &self,
        conn: &mut Conn,
        inbox: &mut Inbox,
        epoch: Instant,
    ) -> Result<unseen_slot::Seen, ConnError> {
        self.retake_direct(conn, inbox, epoch).await?;
        let mut seen = std::collections::BTreeSet::new();
        // Whether every listing came and every entry was read whole: only
        // then does `seen` hold all a memory has (`note_sim_slots_unseen`).
        let mut saw_all = true;
        for mem in self.swept_memories() {
            let listed = self
                .with_memory(conn, mem, async |me: &Self, conn: &mut Conn| {
                    let answer = conn.run(me.list_cmd("AT+CMGL=4")).await?;
                    Ok(answer.is_ok().then_some(answer.lines))
                })
                .await?;
            // A modem without this memory (no SR memory, say) refuses to
            // select it: nothing of it to list. A listing refused (`+CMS
            // ERROR: 314` while the SIM loads) says nothing of what the
            // memory holds: taken for an empty one, it had the status
            // forget the undecodable PDUs still waiting there.
            let Some(Some(lines)) = listed else {
                saw_all &= listed.is_none();
                continue;
            };
            // Each listed slot with its PDU, `None` where the line came
            // damaged (see [`pdu_is_whole`]): read again below.
            let mut stored: Vec<(u32, Option<String>)> = Vec::new();
            let mut it = lines.iter().peekable();
            while let Some(line) = it.next() {
                // A header's PDU is the hex line after it; a header without
                // one must not take the next header as its PDU.
                let Ok(header) = responses::parse_cmgl_header(line) else {
                    continue;
                };
                let slot = Slot::new(mem, header.index);
                // As listed before this listing marked it read.
                if header.status == responses::MessageStatus::ReceivedUnread {
                    inbox.fresh_slots.insert(slot);
                }
                match it.next_if(|l| is_pdu_line(l)) {
                    Some(pdu) => {
                        let whole = pdu_is_whole(pdu, header.length);
                        if !whole {
                            self.damaged_line(slot, "+CMGL", Some(header.length), pdu);
                        }
                        stored.push((header.index, whole.then(|| pdu.clone())));
                    }
                    // Every entry of a PDU-mode listing has its PDU line:
                    // this one's came with a bit flipped out of hex (the
                    // parser gives such a line apart from its header).
                    // Passed over, the slot was missing from a listing
                    // taken as whole: a part held there released as
                    // deleted, the memory's every message taken as seen.
                    None => {
                        self.damaged_line(slot, "+CMGL", Some(header.length), "");
                        stored.push((header.index, None));
                    }
                }
            }
            // An undecodable PDU someone has since deleted is no longer
            // one the status names (one whose line came damaged this time
            // may still be there).
            self.set_status(|s| {
                s.undecodable_stored.retain(|(m, index), pdu| {
                    m != mem.as_str()
                        || stored
                            .iter()
                            .any(|(i, p)| i == index && p.as_ref().is_none_or(|p| p == pdu))
                })
            });
            self.release_held_slots_not_listed_as_held(mem, &stored, inbox);
            if stored.is_empty() {
                continue;
            }
            let seen = &mut seen;
            let saw_all = &mut saw_all;
            self.with_memory(conn, mem, async |me: &Self, conn: &mut Conn| {
                // The listing is as it was before this sweep's deletes: a
                // slot freed meanwhile (a message completed by a part
                // listed earlier) is not what the list says any more.
                let mut freed = std::collections::HashSet::new();
                for (index, listed) in &stored {
                    let slot = Slot::new(mem, *index);
                    if freed.contains(&slot) {
                        continue;
                    }
                    let pdu = match listed {
                        Some(pdu) => pdu.clone(),
                        // Damaged in the listing: read on its own; still
                        // damaged, left for the next sweep.
                        None => match me.read_here(conn, slot).await? {
                            Some((pdu, _)) => pdu,
                            None => {
                                *saw_all = false;
                                continue;
                            }
                        },
                    };
                    seen.insert(pdu.clone());
                    if !me.not_the_held_part(slot, &pdu, inbox) {
                        continue;
                    }
                    freed.extend(
                        me.process_stored(conn, mem, *index, &pdu, inbox, epoch)
                            .await?,
                    );
                }
                Ok(())
            })
            .await?;
        }
        let seen = unseen_slot::Seen {
            pdus: seen,
            all: saw_all,
        };
        // Slots read by their own name before, outside every listing,
        // whose messages may still be there (`unseen_slot.rs`).
        self.read_unswept(conn, &seen, inbox, epoch).await?;
        // After them: what this notes is read by the next sweep.
        if seen.all {
            self.note_sim_slots_unseen(conn, &seen.pdus, inbox).await?;
        }
        // What this sweep freed shows now, and so does what a human
        // deleted since the last one.
        self.read_storage_level(conn).await?;
        self.move_held_parts_if_full(conn, inbox).await?;
        Ok(seen)
    }

    fn inbound_message(&self, ready: &Ready) -> InboundMessage {
        InboundMessage {
            channel: ChannelKind::Sms,
            phone_id: self.config.phone_id.clone(),
            from: ready.from.clone(),
            text: ready.text.clone(),
            subject: None,
            attachments: Vec::new(),
            external_id: ready.external_id.clone(),
            reply_to: Vec::new(),
            received_at_ms: ready.received_at_ms,
            meta: Default::default(),
        }
    }

    /// After a restart, the ids parts sent earlier on `day` took, with
    /// TP-MR `mr` to `to` (see `SentParts::needs_relearning`). If the store
    /// cannot say, the memory goes on without them, as before a restart
    /// was known about.
    async fn relearn_sent_ids(&self, mr: u8, to: &str, day: i64) {
        let base = status::sent_part_id(mr, to, day);
        let needed = self
            .sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .needs_relearning(&base, day);
        if !needed {
            return;
        }
        match self.sink.sent_ids(&base).await {
            Ok(sent) => self
                .sent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .relearn(&base, &sent),
            Err(e) => tracing::warn!(phone_id = %self.config.phone_id, %base, error = %e,
                "cannot read the ids sent before the restart; a part may reuse one"),
        }
    }

    /// The id of the part a report names that the memory no longer holds
    /// (many parts went out since, or a restart came between): of the ids
    /// the store has for its TP-MR and recipient on the SMSC's day and the
    /// days either side (its clock may be off by hours, across midnight),
    /// the one sent nearest the report's time; with none, the id worked
    /// out from the report alone.
    async fn report_id_from_store(&self, mr: u8, recipient: &str, scts: i64) -> String {
        let day = scts.div_euclid(86_400);
        let mut sent = Vec::new();
        for day in [day - 1, day, day + 1] {
            match self
                .sink
                .sent_ids(&status::sent_part_id(mr, recipient, day))
                .await
            {
                Ok(ids) => sent.extend(ids),
                Err(e) => tracing::warn!(phone_id = %self.config.phone_id, error = %e,
                    "cannot read the ids sent; the report is matched by its own fields"),
            }
        }
        status::nearest_sent(&sent, scts)
            .unwrap_or_else(|| status::sent_part_id(mr, recipient, day))
    }

    /// The event a status report stands for, or `None` for an interim
    /// report (TP-ST 0x20..=0x25, SC-specific 0x30..=0x3F): the SMSC is
    /// still trying and reports again with the outcome, so the part is
    /// neither delivered nor failed. A reserved TP-ST is taken as 0x63
    /// (service rejected, the SMSC no longer trying): the part failed.
    async fn report_event(&self, report: &codec::StatusReport) -> Option<ChannelEvent> {
        if report.status.class == codec::StatusClass::StillTrying {
            return None;
        }
        let recipient = self.sender(&report.recipient);
        // A time the PDU gives as invalid is unknown: the other one of the
        // report, or failing that now (a report comes soon after its part).
        let scts = report
            .service_centre_timestamp
            .or(report.discharge_time)
            .map_or_else(unix_now, |t| t.to_unix_seconds());
        // The SMSC's day, and the one before in case its clock is ahead.
        let day = scts.div_euclid(86_400);
        for day in [day, day - 1] {
            self.relearn_sent_ids(report.message_reference, &recipient, day)
                .await;
        }
        let remembered = self
            .sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .id_for_report(report.message_reference, &recipient, scts);
        let external_id = match remembered {
            Some(id) => id,
            None => {
                self.report_id_from_store(report.message_reference, &recipient, scts)
                    .await
            }
        };
        let (status, code, reason) = match report.status.class {
            codec::StatusClass::Delivered => (DeliveryStatus::Delivered, None, None),
            _ => (
                DeliveryStatus::Failed,
                Some(format!("tp_st_{:#04x}", report.status.raw)),
                Some(report.status.description.to_string()),
            ),
        };
        Some(ChannelEvent::Status(StatusUpdate {
            channel: ChannelKind::Sms,
            phone_id: self.config.phone_id.clone(),
            external_id,
            status,
            code,
            reason,
            at_ms: report
                .discharge_time
                .or(report.service_centre_timestamp)
                .map_or_else(unix_now, |t| t.to_unix_seconds())
                * 1000,
        }))
    }
}

/// Whether `urc` says the modem has just started, which after start-up
/// means it restarted in place with what start-up set gone: `RDY` or
/// `^SYSSTART`, but also what a SIM800 prints when a brown-out restarts
/// it without `RDY` (`Call Ready`, `SMS Ready`, with echo back on and
/// `AT+CNMI` reverted), Quectel's `+QIND: SMS DONE`, and an unsolicited
/// `+CFUN: 1` (the driver never changes the functionality itself).
/// Ignored, such a modem sent but read nothing until the next sweep.
/// Not a `+CPIN: READY`: a PIN entered during start-up can bring one.
fn announces_restart(urc: &Urc) -> bool {
    matches!(
        urc,
        Urc::Ready(
            ReadySignal::ModemStarted
                | ReadySignal::CallReady
                | ReadySignal::SmsReady
                | ReadySignal::FullFunctionality
        )
    )
}

/// Whether a line is a PDU as modems print it in PDU mode: hex only.
fn is_pdu_line(line: &str) -> bool {
    !line.is_empty() && line.bytes().all(|b| b.is_ascii_hexdigit())
}

/// How many times `AT+CMGR` reads a slot whose PDU line comes damaged
/// before it is left for the next sweep.
const READ_ATTEMPTS: usize = 3;

/// Whether `pdu`, given with a `+CMGL`/`+CMGR` header that says its TPDU
/// is `length` octets (TS 27.005 3.4.2, 3.4.3: the SMSC part not counted),
/// came whole. A line cut short on the serial link (a stray CR, a UART
/// overrun) is still hex, and the lenient decoder would take it for a PDU
/// the SMSC stored short: its text committed as "[truncated]", and its
/// intact copy on the SIM deleted. A PDU really stored short has a header
/// that says so, and is still decoded leniently.
fn pdu_is_whole(pdu: &str, length: u32) -> bool {
    codec::tpdu_len(pdu).is_ok_and(|n| u32::try_from(n) == Ok(length))
}

/// The PDU of a `+CMT`/`+CDS` as the codec reads it: with its SMSC part.
/// Some firmwares print a direct delivery (a status report above all)
/// without it, the line then exactly `length` octets, the TPDU alone
/// (with an SMSC part, even an empty one, it is longer): read as it came,
/// its first octet was taken for the SMSC's length and the report was
/// decoded wrong, filed against another part or none. An empty SMSC part
/// (`00`) is put before it, if it then decodes: one that does not either
/// way is kept as it came (an undecodable direct delivery).
fn with_smsc_part(pdu: &str, length: u32) -> std::borrow::Cow<'_, str> {
    let tpdu_alone = !pdu_is_whole(pdu, length)
        && pdu.len().is_multiple_of(2)
        && u32::try_from(pdu.len() / 2) == Ok(length);
    if tpdu_alone {
        let prefixed = format!("00{pdu}");
        if codec::decode_incoming(&prefixed).is_ok() {
            return std::borrow::Cow::Owned(prefixed);
        }
    }
    std::borrow::Cow::Borrowed(pdu)
}

fn fail_request(request: Request, error: DriverError) {
    match request {
        Request::Send { reply, .. } => {
            let _ = reply.send(SendOutcome {
                mrs: Vec::new(),
                error: Some(error),
            });
        }
    }
}
