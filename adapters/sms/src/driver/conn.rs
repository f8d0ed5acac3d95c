//! One open serial port and the pure AT engine that speaks over it.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use phonerelay_sms_at::{AtEngine, Command, CommandId, EngineEvent, FinalResult, Urc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_serial::{SerialPortBuilderExt, SerialStream};

use super::WireStats;
use super::slot::Memory;

/// ^BOOT lines within [`BOOT_FLOOD_WINDOW`] that mean the modem is resetting
/// over and over rather than sending its usual heartbeat.
const BOOT_FLOOD_LINES: usize = 10;
const BOOT_FLOOD_WINDOW: Duration = Duration::from_secs(2);
/// Unanswered sync probes after which the modem is considered gone.
pub const MAX_PROBE_ATTEMPTS: u32 = 2;
/// How long the ESC that ends a text entry may take to write when the
/// driver stops: the port closes right after.
const TEXT_ENTRY_CANCEL_WRITE: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    #[error("cannot open {0}")]
    Open(String),
    #[error("port closed or vanished: {0}")]
    Gone(String),
    #[error("no answer to {0}")]
    Timeout(String),
    #[error("modem stopped answering")]
    NotAnswering,
    #[error("modem is rebooting (^BOOT flood)")]
    Rebooting,
    /// The port is fine but what start-up set up is gone (the modem reset
    /// in place, the SIM asks for its PIN again): start-up must run again.
    #[error("modem lost its start-up settings: {0}")]
    StartUpLost(String),
    /// The daemon stops: no longer waiting for the answer to this command
    /// ([`Conn::run_tracked_until`]).
    #[error("stopped waiting for the answer to {0}")]
    Stopped(String),
}

/// The final result of a command that had timed out, from
/// [`Conn::resync`].
#[derive(Debug, Clone)]
pub struct LateAnswer {
    pub id: CommandId,
    pub result: FinalResult,
    pub lines: Vec<String>,
}

/// A command's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub result: FinalResult,
    pub lines: Vec<String>,
}

impl Answer {
    pub fn is_ok(&self) -> bool {
        self.result.is_ok()
    }

    /// The first line starting with `prefix` (e.g. `+CSQ:`).
    pub fn line(&self, prefix: &str) -> Option<&str> {
        self.lines
            .iter()
            .map(String::as_str)
            .find(|l| l.starts_with(prefix))
    }
}

pub struct Conn {
    port: SerialStream,
    engine: AtEngine,
    epoch: Instant,
    buf: Vec<u8>,
    /// URCs that arrived while a command was running, handled after it.
    pub urcs: VecDeque<Urc>,
    boots: VecDeque<Instant>,
    /// Bytes written and read, for the benchmark's bytes-on-the-wire figure.
    wire: Arc<WireStats>,
    /// The memory `AT+CMGR`/`AT+CMGL`/`AT+CMGD` act on (`AT+CPMS`'s
    /// first), as the modem last confirmed it; `None` until start-up sets
    /// it. An index means nothing without it.
    pub memory: Option<Memory>,
}

impl Conn {
    pub fn open(path: &Path, baud: u32, wire: Arc<WireStats>) -> Result<Conn, ConnError> {
        // tokio-serial opens raw (cfmakeraw), 8N1, exclusive (TIOCEXCL): a
        // second open by an ordinary process (a `screen` by hand) fails with
        // EBUSY. That does not keep ModemManager out: it runs as root, whose
        // CAP_SYS_ADMIN passes TIOCEXCL, and a port it opened first stays
        // open; systemd/README.md says how to keep it off the modem.
        let port = tokio_serial::new(path.to_string_lossy(), baud)
            .timeout(Duration::from_millis(100))
            .open_native_async()
            .map_err(|e| ConnError::Open(format!("{}: {e}", path.display())))?;
        Ok(Conn {
            port,
            engine: AtEngine::new(),
            epoch: Instant::now(),
            buf: vec![0; 4096],
            urcs: VecDeque::new(),
            boots: VecDeque::new(),
            wire,
            memory: None,
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    async fn flush_transmit(&mut self) -> Result<(), ConnError> {
        while let Some(bytes) = self.engine.poll_transmit(self.now_ms()) {
            self.port
                .write_all(&bytes)
                .await
                .map_err(|e| ConnError::Gone(e.to_string()))?;
            self.wire
                .bytes_out
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn read_some(&mut self) -> Result<usize, ConnError> {
        match self.port.read(&mut self.buf).await {
            Ok(0) => Err(ConnError::Gone("end of file".into())),
            Ok(n) => {
                self.wire.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                Ok(n)
            }
            Err(e) => Err(ConnError::Gone(e.to_string())),
        }
    }

    fn note_urc(&mut self, urc: Urc) -> Result<(), ConnError> {
        if matches!(urc, Urc::Boot) {
            let now = Instant::now();
            self.boots.push_back(now);
            while self
                .boots
                .front()
                .is_some_and(|t| now.duration_since(*t) > BOOT_FLOOD_WINDOW)
            {
                self.boots.pop_front();
            }
            if self.boots.len() >= BOOT_FLOOD_LINES {
                return Err(ConnError::Rebooting);
            }
            return Ok(());
        }
        // `Other` lines are noise, except a +CMT/+CDS the parser could not
        // complete (its PDU line never came, or a text-mode one): a message
        // or report the modem kept no copy of, which the driver must count.
        let keep = match &urc {
            Urc::Rssi(_) => false,
            Urc::Other(line) => direct_delivery_kind(line).is_some(),
            _ => true,
        };
        if keep {
            self.urcs.push_back(urc);
        }
        Ok(())
    }

    /// Run one command to its final result.
    pub async fn run(&mut self, command: Command) -> Result<Answer, ConnError> {
        self.run_tracked(command).await.1
    }

    /// [`Conn::run`], also returning the command's id, which a
    /// [`LateAnswer`] names after a timeout.
    pub async fn run_tracked(
        &mut self,
        command: Command,
    ) -> (CommandId, Result<Answer, ConnError>) {
        let label = command.redacted();
        let id = self.engine.submit(command);
        (id, self.run_submitted(id, label).await)
    }

    /// [`Conn::run_tracked`], given up once `give_up` completes (the
    /// daemon stops: [`ConnError::Stopped`]). The command's fate is then
    /// unknown and the modem out of step: the session must end.
    pub async fn run_tracked_until(
        &mut self,
        command: Command,
        give_up: impl std::future::Future<Output = ()>,
    ) -> (CommandId, Result<Answer, ConnError>) {
        let label = command.redacted();
        let id = self.engine.submit(command);
        let answer = tokio::select! {
            answer = self.run_submitted(id, label.clone()) => answer,
            () = give_up => {
                self.cancel_text_entry().await;
                Err(ConnError::Stopped(label))
            }
        };
        (id, answer)
    }

    /// The command given up on may have the modem in text entry: an ESC
    /// ends it, or the next host's commands would go into the PDU.
    /// Best effort, briefly: the port is about to close.
    async fn cancel_text_entry(&mut self) {
        if self.engine.cancel_text_entry() {
            let _ = tokio::time::timeout(TEXT_ENTRY_CANCEL_WRITE, self.flush_transmit()).await;
        }
    }

    /// Before the first command on a port just opened: end any text
    /// entry a previous host left the modem in, and get in step with it
    /// (see `AtEngine::resynchronise`).
    pub async fn leave_text_entry(&mut self) -> Result<(), ConnError> {
        self.engine.resynchronise();
        self.resync(MAX_PROBE_ATTEMPTS, &mut None).await
    }

    async fn run_submitted(&mut self, id: CommandId, label: String) -> Result<Answer, ConnError> {
        loop {
            self.flush_transmit().await?;
            while let Some(event) = self.engine.poll_event() {
                match event {
                    EngineEvent::Completed {
                        id: done,
                        result,
                        lines,
                    } if done == id => {
                        // URCs in the same read as the final result (a
                        // +CDSI right after +CMGS/OK) must not wait in the
                        // engine for the next byte from the modem.
                        self.collect_urcs()?;
                        return Ok(Answer { result, lines });
                    }
                    EngineEvent::Completed { .. } => {}
                    EngineEvent::TimedOut { id: done, .. } if done == id => {
                        return Err(ConnError::Timeout(label));
                    }
                    EngineEvent::TimedOut { .. } => {}
                    EngineEvent::LateResult { result, lines, .. } => {
                        // Only commands whose timeout ends the session get
                        // here (a timed-out AT+CMGS is followed by
                        // `resync`, which collects its late answer).
                        tracing::warn!(%result, lines = lines.len(), "late answer to a timed-out command");
                    }
                    EngineEvent::Urc(urc) => self.note_urc(urc)?,
                    EngineEvent::ProbeTimedOut { attempts } => {
                        if attempts >= MAX_PROBE_ATTEMPTS {
                            return Err(ConnError::NotAnswering);
                        }
                    }
                }
            }
            self.flush_transmit().await?;
            self.wait_input_or_deadline().await?;
        }
    }

    /// After a command timed out: let the engine write its ESC and sync
    /// probe and read until the modem is in step again (see the engine's
    /// module docs), putting the timed-out command's late final result in
    /// `late` as soon as it comes. The modem is taken as gone after
    /// `max_probes` unanswered probes ([`ConnError::NotAnswering`]). The
    /// late answer stays in `late` whatever the resync ends in: one that
    /// came before the last probe went unanswered, or before the port
    /// failed, still tells whether the command was carried out (a
    /// `+CMGS`, whose part must not go a second time).
    pub async fn resync(
        &mut self,
        max_probes: u32,
        late: &mut Option<LateAnswer>,
    ) -> Result<(), ConnError> {
        loop {
            self.flush_transmit().await?;
            while let Some(event) = self.engine.poll_event() {
                match event {
                    EngineEvent::LateResult { id, result, lines } => {
                        *late = Some(LateAnswer { id, result, lines });
                    }
                    EngineEvent::Urc(urc) => self.note_urc(urc)?,
                    EngineEvent::ProbeTimedOut { attempts } if attempts >= max_probes => {
                        return Err(ConnError::NotAnswering);
                    }
                    _ => {}
                }
            }
            if self.engine.is_synchronised() {
                return Ok(());
            }
            self.flush_transmit().await?;
            self.wait_input_or_deadline().await?;
        }
    }

    /// Feed the engine the next input, or fire its deadline.
    async fn wait_input_or_deadline(&mut self) -> Result<(), ConnError> {
        let deadline = self.engine.poll_timeout();
        let sleep_for = deadline
            .map(|d| Duration::from_millis(d.saturating_sub(self.now_ms())))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            read = self.read_some() => {
                let n = read?;
                let now = self.now_ms();
                let bytes = self.buf[..n].to_vec();
                self.engine.handle_input(&bytes, now);
            }
            _ = tokio::time::sleep(sleep_for) => {
                let now = self.now_ms();
                self.engine.handle_timeout(now);
            }
        }
        Ok(())
    }

    /// Wait for unsolicited input while idle; cancel-safe (the read is).
    pub async fn idle_read(&mut self) -> Result<(), ConnError> {
        let n = self.read_some().await?;
        let now = self.now_ms();
        let bytes = self.buf[..n].to_vec();
        self.engine.handle_input(&bytes, now);
        self.collect_urcs()
    }

    /// Move the URCs the engine has parsed to [`Conn::urcs`].
    fn collect_urcs(&mut self) -> Result<(), ConnError> {
        while let Some(event) = self.engine.poll_event() {
            if let EngineEvent::Urc(urc) = event {
                self.note_urc(urc)?;
            }
        }
        Ok(())
    }
}

/// `+CMT`/`+CDS` when `line` (an unparsed URC) is one of those headers.
pub(crate) fn direct_delivery_kind(line: &str) -> Option<&'static str> {
    let head = line.get(..5)?;
    ["+CMT:", "+CDS:"]
        .into_iter()
        .find(|kind| head.eq_ignore_ascii_case(kind))
        .map(|kind| &kind[..4])
}
