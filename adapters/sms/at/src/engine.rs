//! Command sequencer on top of [`AtParser`], driven like `quinn-proto`:
//! the caller writes what [`AtEngine::poll_transmit`] returns, feeds what it
//! reads to [`AtEngine::handle_input`], calls [`AtEngine::handle_timeout`]
//! when [`AtEngine::poll_timeout`] has passed, and drains
//! [`AtEngine::poll_event`]. Time is a caller-supplied millisecond counter
//! (any monotonic origin); the engine never reads a clock and never sleeps.
//!
//! One command runs at a time (AT is strictly request/response). The next
//! queued command is handed out by `poll_transmit` as soon as the previous
//! final result is in: no inter-command delays.
//!
//! # Resynchronisation after a timeout
//!
//! A timed-out command may still be answered later, and a late `OK` must
//! not complete the next command. After a timeout the engine therefore:
//!
//! 1. reports [`EngineEvent::TimedOut`]; the parser keeps attributing
//!    incoming lines to the timed-out command, so its late lines are not
//!    mistaken for URCs;
//! 2. if the command was waiting for the `> ` prompt (or had it and its PDU
//!    was not written yet), writes ESC (0x1B), which cancels SMS text entry
//!    without sending anything (TS 27.005 §3.5.1) — Ctrl-Z would send;
//! 3. writes a *sync probe*, `ATS3?`, whose answer is recognisable: the
//!    S3 register (command line termination character, V.250 §6.2.1) is
//!    always 13, printed as `013`. Final results that arrive before that
//!    `013` line belong to the timed-out command: the first one is reported
//!    as [`EngineEvent::LateResult`] (so that a late `+CMGS: <mr>` / `OK`
//!    tells the driver the SMS *was* sent and must not be sent again), any
//!    further ones are dropped; all count in [`AtEngine::stale_finals`].
//!    A PDU command whose PDU was never written sent nothing, whatever
//!    comes late (the ESC's cancel is answered `OK`): no `LateResult`.
//!    The final after `013` is the probe's own, and the engine is in sync
//!    again. URCs keep flowing throughout.
//! 4. If the probe times out as well (modem busy or gone), it is re-sent
//!    and [`EngineEvent::ProbeTimedOut`] reports the attempt count so the
//!    driver can decide to reopen the port ([`AtEngine::reset`]). Once more
//!    than one probe was written, an answered probe is followed by a quiet
//!    period ([`EngineConfig::settle_ms`] without any input) before user
//!    commands resume, because the older probes' answers may still arrive.
//!
//! Queued commands wait during resynchronisation; they are not failed.

use std::collections::VecDeque;

use crate::command::{Command, CommandKind, STREAMING_CAP_FACTOR};
use crate::final_result::FinalResult;
use crate::parser::{AtParser, DEFAULT_MAX_LINE_LEN, ParserEvent};
use crate::urc::Urc;

const ESC: u8 = 0x1B;
const CTRL_Z: u8 = 0x1A;
/// The sync probe; see the module docs.
pub const SYNC_PROBE: &str = "ATS3?";

/// Identifies a submitted command in later events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(pub u64);

/// Engine tuning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Line cap handed to the parser.
    pub max_line_len: usize,
    /// How long to wait for the answer to the sync probe.
    pub probe_timeout_ms: u64,
    /// Quiet period after a probe answer when several probes were written.
    pub settle_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_line_len: DEFAULT_MAX_LINE_LEN,
            probe_timeout_ms: 3_000,
            settle_ms: 500,
        }
    }
}

/// What the engine reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    /// A command got its final result. `lines` are its intermediate lines
    /// in order; a `+CMGL:`/`+CMGR:` header is directly followed by its
    /// PDU line. Secrets of sensitive commands are replaced by `****`.
    Completed {
        id: CommandId,
        result: FinalResult,
        lines: Vec<String>,
    },
    /// No final result in time; the engine now resynchronises. The outcome
    /// is unknown: an `AT+CMGS` may still have been sent (watch for
    /// [`EngineEvent::LateResult`] before retrying).
    TimedOut {
        id: CommandId,
        command: Command,
    },
    /// The final result of a command that had already timed out, with its
    /// intermediate lines (those received before the timeout first, so a
    /// `+CMGS: <mr>` that came just before the deadline is not lost). Best
    /// effort: if the modem dropped the command entirely, an `ERROR` here
    /// may be the sync probe's.
    LateResult {
        id: CommandId,
        result: FinalResult,
        lines: Vec<String>,
    },
    Urc(Urc),
    /// The sync probe went unanswered `attempts` times in a row.
    ProbeTimedOut {
        attempts: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Command line written; waiting for `> ` (PDU commands only).
    AwaitingPrompt,
    /// Prompt received; the PDU is the next thing to transmit.
    PduReady,
    /// Waiting for the final result.
    AwaitingFinal,
}

#[derive(Debug, Clone)]
struct Running {
    id: CommandId,
    command: Command,
    phase: Phase,
    deadline: u64,
    /// Past which a streaming command's lines renew it no more.
    renew_until: u64,
    lines: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncState {
    InSync,
    /// A probe must be written next.
    ProbeDue {
        attempts: u32,
    },
    ProbeSent {
        attempts: u32,
        deadline: u64,
        marker_seen: bool,
    },
    /// Probe answered after earlier unanswered probes: wait for silence.
    Settling {
        until: u64,
    },
}

/// A timed-out command whose late answer may still arrive.
#[derive(Debug, Clone)]
struct Abandoned {
    id: CommandId,
    command: Command,
    lines: Vec<String>,
    /// A PDU command that timed out before its PDU was handed out: the
    /// ESC cancels its text entry, and a late final (that ESC's `OK`, a
    /// late prompt turned line) says nothing about a send.
    sent_nothing: bool,
}

/// The command sequencer. See the module docs.
#[derive(Debug, Clone)]
pub struct AtEngine {
    config: EngineConfig,
    parser: AtParser,
    queue: VecDeque<(CommandId, Command)>,
    running: Option<Running>,
    /// Set from a timeout until its late final arrives or sync completes.
    abandoned: Option<Abandoned>,
    sync: SyncState,
    /// Bytes to write before anything else (ESC).
    outbox: VecDeque<Vec<u8>>,
    events: VecDeque<EngineEvent>,
    next_id: u64,
    stale_finals: u64,
    overlong_lines: u64,
}

impl Default for AtEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl AtEngine {
    pub fn new() -> Self {
        Self::with_config(EngineConfig::default())
    }

    pub fn with_config(config: EngineConfig) -> Self {
        AtEngine {
            parser: AtParser::with_max_line_len(config.max_line_len),
            config,
            queue: VecDeque::new(),
            running: None,
            abandoned: None,
            sync: SyncState::InSync,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 0,
            stale_finals: 0,
            overlong_lines: 0,
        }
    }

    /// Queues a command; it is written by a later `poll_transmit`.
    pub fn submit(&mut self, command: Command) -> CommandId {
        let id = CommandId(self.next_id);
        self.next_id += 1;
        self.queue.push_back((id, command));
        id
    }

    /// Number of queued commands not yet written (the running one excluded).
    pub fn pending_len(&self) -> usize {
        self.queue.len()
    }

    /// The command written and not yet finished, if any.
    pub fn current_command(&self) -> Option<(CommandId, &Command)> {
        self.running.as_ref().map(|r| (r.id, &r.command))
    }

    /// False while resynchronising after a timeout.
    pub fn is_synchronised(&self) -> bool {
        self.sync == SyncState::InSync
    }

    /// Final results that belonged to no running command (late answers to
    /// timed-out commands, noise) and were dropped.
    pub fn stale_finals(&self) -> u64 {
        self.stale_finals
    }

    /// Lines dropped for exceeding [`EngineConfig::max_line_len`].
    pub fn overlong_lines(&self) -> u64 {
        self.overlong_lines
    }

    /// Next bytes to write to the port. Call until `None` after every other
    /// call. `now_ms` starts the deadline of what is handed out.
    ///
    /// Differs from a plain `poll_transmit()` on purpose: a deadline must be
    /// counted from the moment of writing, and the engine reads no clock.
    pub fn poll_transmit(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        if let Some(bytes) = self.outbox.pop_front() {
            return Some(bytes);
        }
        match self.sync {
            SyncState::InSync => {}
            SyncState::ProbeDue { attempts } => {
                self.parser.command_sent(SYNC_PROBE);
                self.sync = SyncState::ProbeSent {
                    attempts,
                    deadline: now_ms.saturating_add(self.config.probe_timeout_ms),
                    marker_seen: false,
                };
                return Some(line_bytes(SYNC_PROBE));
            }
            SyncState::ProbeSent { .. } | SyncState::Settling { .. } => return None,
        }
        if let Some(running) = &mut self.running {
            if running.phase != Phase::PduReady {
                return None;
            }
            let CommandKind::WithPdu { pdu_hex } = &running.command.kind else {
                unreachable!("only PDU commands reach PduReady");
            };
            let mut bytes = pdu_hex.as_bytes().to_vec();
            bytes.push(CTRL_Z);
            self.parser.pdu_sent(pdu_hex);
            running.phase = Phase::AwaitingFinal;
            running.deadline = now_ms.saturating_add(running.command.timeout_ms);
            return Some(bytes);
        }
        let (id, command) = self.queue.pop_front()?;
        self.parser.command_sent(&command.text);
        let phase = match command.kind {
            CommandKind::Plain => Phase::AwaitingFinal,
            CommandKind::WithPdu { .. } => Phase::AwaitingPrompt,
        };
        let bytes = line_bytes(&command.text);
        let cap = command.timeout_ms.saturating_mul(STREAMING_CAP_FACTOR);
        self.running = Some(Running {
            id,
            deadline: now_ms.saturating_add(command.timeout_ms),
            renew_until: now_ms.saturating_add(cap),
            command,
            phase,
            lines: Vec::new(),
        });
        Some(bytes)
    }

    /// When `handle_timeout` should be called next, if ever.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.sync {
            SyncState::InSync => self.running.as_ref().map(|r| r.deadline),
            SyncState::ProbeDue { .. } => None,
            SyncState::ProbeSent { deadline, .. } => Some(deadline),
            SyncState::Settling { until } => Some(until),
        }
    }

    /// Processes bytes read from the port.
    pub fn handle_input(&mut self, bytes: &[u8], now_ms: u64) {
        if bytes.is_empty() {
            return;
        }
        if let SyncState::Settling { until } = &mut self.sync {
            *until = now_ms.saturating_add(self.config.settle_ms);
        }
        // Byte by byte, reacting to each event before the next byte: the
        // engine re-arms the parser (e.g. for the probe after a stale final),
        // and that must apply to the very next line of the same chunk.
        for byte in bytes {
            self.parser.push(std::slice::from_ref(byte));
            while let Some(event) = self.parser.poll_event() {
                self.on_parser_event(event, now_ms);
            }
        }
    }

    /// Fires expired deadlines. Calling it early or twice is harmless.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        match self.sync {
            SyncState::InSync => {
                let expired = self.running.as_ref().is_some_and(|r| now_ms >= r.deadline);
                if expired {
                    let running = self.running.take().expect("checked above");
                    self.on_command_timeout(running);
                }
            }
            SyncState::ProbeDue { .. } => {}
            SyncState::ProbeSent {
                attempts, deadline, ..
            } if now_ms >= deadline => {
                let attempts = attempts + 1;
                self.events
                    .push_back(EngineEvent::ProbeTimedOut { attempts });
                // The parser keeps the probe pending: a late `013` must stay
                // recognisable as the probe's answer.
                self.sync = SyncState::ProbeDue { attempts };
            }
            SyncState::ProbeSent { .. } => {}
            SyncState::Settling { until } if now_ms >= until => {
                self.parser.command_abandoned();
                self.sync = SyncState::InSync;
            }
            SyncState::Settling { .. } => {}
        }
    }

    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }

    /// Bring a modem whose state is unknown (a port just opened) into
    /// step: ESC and CR first, which end an SMS text entry a previous
    /// host left open (its `AT+CMGS` prompted, its PDU never written)
    /// without sending anything, and are ignored in command mode; then a
    /// sync probe, as after a timeout. Until the probe is answered,
    /// whatever the modem says (the ESC's `OK`, a stale answer) is
    /// dropped. Without it, every command went into the PDU buffer of a
    /// modem left in text entry, which answered none of them.
    pub fn resynchronise(&mut self) {
        self.outbox.push_back(vec![ESC, b'\r']);
        if self.sync == SyncState::InSync {
            self.sync = SyncState::ProbeDue { attempts: 0 };
        }
    }

    /// Whether the running command may have the modem in text entry
    /// (its prompt awaited, or shown and its PDU not written): the
    /// caller that gives up on it (a stop) writes what this queues, an
    /// ESC, before it closes the port, so the modem is not left typing
    /// the next host's commands into a PDU. Returns whether it queued one.
    pub fn cancel_text_entry(&mut self) -> bool {
        let open = self
            .running
            .as_ref()
            .is_some_and(|r| matches!(r.phase, Phase::AwaitingPrompt | Phase::PduReady));
        if open {
            self.outbox.push_back(vec![ESC]);
        }
        open
    }

    /// Back to a fresh state for a reopened port: parser state, the running
    /// command, queued commands and resynchronisation are dropped. Returns
    /// the dropped commands (running one first) so the caller can fail or
    /// resubmit them; events already queued stay available.
    pub fn reset(&mut self) -> Vec<(CommandId, Command)> {
        self.parser.reset();
        self.outbox.clear();
        self.abandoned = None;
        self.sync = SyncState::InSync;
        let mut dropped: Vec<_> = self
            .running
            .take()
            .map(|r| (r.id, r.command))
            .into_iter()
            .collect();
        dropped.extend(self.queue.drain(..));
        dropped
    }

    fn on_command_timeout(&mut self, running: Running) {
        let prompt_possible = matches!(running.phase, Phase::AwaitingPrompt | Phase::PduReady);
        // Only PDU commands ever wait for a prompt.
        let sent_nothing = prompt_possible;
        // The parser's pending command stays: late lines remain responses
        // (collected below) until the probe is written.
        if prompt_possible {
            self.outbox.push_back(vec![ESC]);
        }
        self.sync = SyncState::ProbeDue { attempts: 0 };
        self.abandoned = Some(Abandoned {
            id: running.id,
            command: running.command.clone(),
            lines: running.lines,
            sent_nothing,
        });
        self.events.push_back(EngineEvent::TimedOut {
            id: running.id,
            command: running.command,
        });
    }

    fn on_parser_event(&mut self, event: ParserEvent, now_ms: u64) {
        match event {
            ParserEvent::Urc(urc) => self.events.push_back(EngineEvent::Urc(urc)),
            ParserEvent::LineTooLong { .. } => self.overlong_lines += 1,
            ParserEvent::Prompt => self.on_prompt(),
            ParserEvent::Intermediate { line, body } => self.on_intermediate(line, body, now_ms),
            ParserEvent::Final(result) => self.on_final(result, now_ms),
        }
    }

    fn on_prompt(&mut self) {
        match &mut self.running {
            Some(running)
                if running.phase == Phase::AwaitingPrompt
                    && matches!(running.command.kind, CommandKind::WithPdu { .. }) =>
            {
                running.phase = Phase::PduReady;
            }
            // A prompt nobody will fill (plain command text that happens to
            // be AT+CMGS=...): cancel it so the modem answers and frees up.
            _ => self.outbox.push_back(vec![ESC]),
        }
    }

    fn on_intermediate(&mut self, line: String, body: Option<String>, now_ms: u64) {
        match &mut self.sync {
            SyncState::InSync => {}
            SyncState::ProbeSent { marker_seen, .. } if is_probe_marker(&line) => {
                *marker_seen = true;
                return;
            }
            SyncState::ProbeDue { attempts } if *attempts > 0 && is_probe_marker(&line) => {
                // An earlier, timed-out probe is being answered after all:
                // its final comes next; no need to write another probe.
                self.sync = SyncState::ProbeSent {
                    attempts: *attempts,
                    deadline: now_ms.saturating_add(self.config.probe_timeout_ms),
                    marker_seen: true,
                };
                return;
            }
            // Late lines of the timed-out command (or of an older probe).
            _ => {
                if let Some(abandoned) = &mut self.abandoned {
                    abandoned.lines.push(line);
                    abandoned.lines.extend(body);
                }
                return;
            }
        }
        match &mut self.running {
            Some(running) => {
                running.lines.push(line);
                running.lines.extend(body);
                // A streaming answer still coming keeps its command alive:
                // a long `AT+CMGL` over a slow line streams for longer than
                // any fixed timeout, and cutting it off would end the
                // session at the same listing every time it came back.
                if running.command.streaming {
                    let renewed = now_ms
                        .saturating_add(running.command.timeout_ms)
                        .min(running.renew_until);
                    running.deadline = running.deadline.max(renewed);
                }
            }
            // The parser only reports intermediates while a command is
            // pending, so this is unreachable in practice; surface it
            // rather than lose it.
            None => self.events.push_back(EngineEvent::Urc(Urc::Other(line))),
        }
    }

    fn on_final(&mut self, result: FinalResult, now_ms: u64) {
        match self.sync {
            SyncState::InSync => match self.running.take() {
                Some(running) => self.complete(running, result),
                None => self.stale_finals += 1,
            },
            SyncState::ProbeDue { .. } => self.on_late_final(result),
            SyncState::ProbeSent {
                attempts,
                marker_seen,
                ..
            } => {
                if !marker_seen {
                    // Belongs to the timed-out command; the parser took it
                    // as the probe's end, so re-arm it for the probe answer.
                    self.on_late_final(result);
                    self.parser.command_sent(SYNC_PROBE);
                } else if attempts == 0 {
                    self.abandoned = None;
                    self.sync = SyncState::InSync;
                } else {
                    self.abandoned = None;
                    self.parser.command_sent(SYNC_PROBE);
                    self.sync = SyncState::Settling {
                        until: now_ms.saturating_add(self.config.settle_ms),
                    };
                }
            }
            SyncState::Settling { .. } => {
                // An older probe's answer (or other late noise).
                self.stale_finals += 1;
                self.parser.command_sent(SYNC_PROBE);
            }
        }
    }

    /// A final result before the probe's marker: the first one answers the
    /// timed-out command.
    fn on_late_final(&mut self, result: FinalResult) {
        self.stale_finals += 1;
        if let Some(abandoned) = self.abandoned.take()
            && !abandoned.sent_nothing
        {
            self.events.push_back(EngineEvent::LateResult {
                id: abandoned.id,
                result,
                lines: redact(&abandoned.command, abandoned.lines),
            });
        }
    }

    fn complete(&mut self, running: Running, result: FinalResult) {
        self.events.push_back(EngineEvent::Completed {
            id: running.id,
            result,
            lines: redact(&running.command, running.lines),
        });
    }
}

/// Replaces the secret of a sensitive command wherever it shows up (a
/// garbled echo that was not recognised as echo).
fn redact(command: &Command, mut lines: Vec<String>) -> Vec<String> {
    if let Some(secret) = command.secret() {
        for line in &mut lines {
            if line.contains(secret) {
                *line = line.replace(secret, "****");
            }
        }
    }
    lines
}

fn line_bytes(text: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(text.len() + 1);
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(b'\r');
    bytes
}

/// `013` (V.250 three-digit S-register format) or `13` on lax firmwares.
fn is_probe_marker(line: &str) -> bool {
    line.trim().parse::<u32>() == Ok(13)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::final_result::ErrorDetail;

    fn drain(engine: &mut AtEngine) -> Vec<EngineEvent> {
        std::iter::from_fn(|| engine.poll_event()).collect()
    }

    #[test]
    fn runs_commands_back_to_back() {
        let mut e = AtEngine::new();
        let a = e.submit(Command::plain("AT", 1000));
        let b = e.submit(Command::plain("AT+CSQ", 1000));
        assert_eq!(e.pending_len(), 2);
        assert_eq!(e.poll_transmit(0), Some(b"AT\r".to_vec()));
        assert_eq!(e.poll_transmit(0), None, "one command at a time");
        assert_eq!(e.current_command().map(|(id, _)| id), Some(a));
        assert_eq!(e.poll_timeout(), Some(1000));
        e.handle_input(b"\r\nOK\r\n", 10);
        assert_eq!(e.poll_transmit(10), Some(b"AT+CSQ\r".to_vec()));
        e.handle_input(b"\r\n+CSQ: 9,99\r\n\r\nOK\r\n", 20);
        assert_eq!(
            drain(&mut e),
            vec![
                EngineEvent::Completed {
                    id: a,
                    result: FinalResult::Ok,
                    lines: vec![]
                },
                EngineEvent::Completed {
                    id: b,
                    result: FinalResult::Ok,
                    lines: vec!["+CSQ: 9,99".into()]
                }
            ]
        );
        assert_eq!(e.poll_timeout(), None);
        assert_eq!(e.pending_len(), 0);
    }

    #[test]
    fn pdu_command_waits_for_prompt() {
        let mut e = AtEngine::new();
        let id = e.submit(Command::with_pdu("AT+CMGS=3", "00AABBCC", 60_000));
        assert_eq!(e.poll_transmit(0), Some(b"AT+CMGS=3\r".to_vec()));
        assert_eq!(e.poll_transmit(0), None);
        e.handle_input(b"\r\n> ", 100);
        assert_eq!(e.poll_transmit(100), Some(b"00AABBCC\x1a".to_vec()));
        assert_eq!(
            e.poll_timeout(),
            Some(60_100),
            "deadline restarts at PDU write"
        );
        e.handle_input(b"\r\n+CMGS: 12\r\n\r\nOK\r\n", 3000);
        assert_eq!(
            drain(&mut e),
            vec![EngineEvent::Completed {
                id,
                result: FinalResult::Ok,
                lines: vec!["+CMGS: 12".into()]
            }]
        );
    }

    /// A call rings and ends while a part waits for the network: the
    /// part's answer is its `+CMGS`, not the call's `NO CARRIER` (taken as
    /// it, the part counted as not sent and went again).
    #[test]
    fn a_call_ending_during_cmgs_leaves_the_part_s_answer_to_it() {
        let mut e = AtEngine::new();
        let id = e.submit(Command::with_pdu("AT+CMGS=3", "00AABBCC", 60_000));
        e.poll_transmit(0);
        e.handle_input(b"\r\n> ", 10);
        e.poll_transmit(10);
        e.handle_input(
            b"\r\nRING\r\n\r\nNO CARRIER\r\n\r\n+CMGS: 42\r\n\r\nOK\r\n",
            3000,
        );
        let events = drain(&mut e);
        assert!(
            events.contains(&EngineEvent::Completed {
                id,
                result: FinalResult::Ok,
                lines: vec!["+CMGS: 42".into()]
            }),
            "{events:?}"
        );
    }

    #[test]
    fn error_instead_of_prompt_completes() {
        let mut e = AtEngine::new();
        let id = e.submit(Command::with_pdu("AT+CMGS=3", "00AABBCC", 60_000));
        e.poll_transmit(0);
        e.handle_input(b"\r\n+CMS ERROR: 304\r\n", 5);
        assert_eq!(
            drain(&mut e),
            vec![EngineEvent::Completed {
                id,
                result: FinalResult::CmsError(ErrorDetail::Code(304)),
                lines: vec![]
            }]
        );
        assert_eq!(e.poll_transmit(5), None);
    }

    #[test]
    fn unexpected_prompt_is_cancelled_with_escape() {
        let mut e = AtEngine::new();
        e.submit(Command::plain("AT+CMGS=3", 1000));
        e.poll_transmit(0);
        e.handle_input(b"\r\n> ", 5);
        assert_eq!(e.poll_transmit(5), Some(vec![ESC]));
    }

    /// A listing that is still streaming is not cut off by its timeout:
    /// each line of it renews the deadline, so a full memory read over a
    /// slow line completes; one that stops answering still times out, and
    /// one that streams for good is cut off at ten times its timeout. A
    /// command not marked streaming has its timeout from the write,
    /// whatever lines come.
    #[test]
    fn a_streaming_command_s_answer_still_coming_keeps_it_alive() {
        let mut e = AtEngine::new();
        let id = e.submit(Command::plain("AT+CMGL=4", 1000).streaming());
        e.poll_transmit(0);
        e.handle_input(b"\r\n+CMGL: 1,1,,23\r\n0791AABB\r\n", 900);
        assert_eq!(e.poll_timeout(), Some(1900), "renewed by the lines");
        e.handle_timeout(1000);
        assert!(
            drain(&mut e).is_empty(),
            "not cut off at the first deadline"
        );
        e.handle_input(b"\r\n+CMGL: 2,1,,23\r\n0791CCDD\r\n\r\nOK\r\n", 1800);
        assert_eq!(
            drain(&mut e),
            vec![EngineEvent::Completed {
                id,
                result: FinalResult::Ok,
                lines: vec![
                    "+CMGL: 1,1,,23".into(),
                    "0791AABB".into(),
                    "+CMGL: 2,1,,23".into(),
                    "0791CCDD".into()
                ]
            }]
        );

        let silent = e.submit(Command::plain("AT+CMGL=4", 1000).streaming());
        e.poll_transmit(2000);
        e.handle_input(b"\r\n+CMGL: 1,1,,23\r\n0791AABB\r\n", 2100);
        e.handle_timeout(3100);
        assert!(matches!(
            drain(&mut e).as_slice(),
            [EngineEvent::TimedOut { id, .. }] if *id == silent
        ));
    }

    #[test]
    fn lines_renew_only_a_streaming_command_and_only_up_to_its_cap() {
        let timed_out = |e: &mut AtEngine| {
            drain(e)
                .iter()
                .any(|ev| matches!(ev, EngineEvent::TimedOut { .. }))
        };
        // Not streaming: a line at 900 does not keep it past 1000.
        let mut e = AtEngine::new();
        e.submit(Command::plain("AT+CSQ", 1000));
        e.poll_transmit(0);
        e.handle_input(b"\r\nnoise\r\n", 900);
        e.handle_timeout(1000);
        assert!(timed_out(&mut e), "renewed a command that is not streaming");

        // Streaming, lines every 500 ms for good: cut off at 10 × 1000.
        let mut e = AtEngine::new();
        e.submit(Command::plain("AT+CMGL=4", 1000).streaming());
        e.poll_transmit(0);
        let mut now = 0;
        while now < 20_000 {
            now += 500;
            e.handle_input(b"\r\n+CMGL: 1,1,,23\r\n0791AABB\r\n", now);
            e.handle_timeout(now);
            if timed_out(&mut e) {
                break;
            }
        }
        assert_eq!(now, 10_000, "cut off at ten times its timeout");
    }

    #[test]
    fn timeout_resyncs_with_probe_and_drops_late_final() {
        let mut e = AtEngine::new();
        let slow = e.submit(Command::plain("AT+COPS=?", 1000));
        let next = e.submit(Command::plain("AT+CSQ", 1000));
        e.poll_transmit(0);
        e.handle_timeout(999);
        assert!(drain(&mut e).is_empty(), "not yet");
        e.handle_timeout(1000);
        assert!(matches!(
            drain(&mut e).as_slice(),
            [EngineEvent::TimedOut { id, .. }] if *id == slow
        ));
        assert!(!e.is_synchronised());
        // Plain command: no ESC, straight to the probe.
        assert_eq!(e.poll_transmit(1000), Some(b"ATS3?\r".to_vec()));
        assert_eq!(e.poll_transmit(1000), None, "user commands wait");
        // Late answer of the abandoned command, then the probe's answer.
        e.handle_input(b"\r\n+COPS: (2,\"X\",\"X\",\"1\",7)\r\n\r\nOK\r\n", 1500);
        assert_eq!(e.poll_transmit(1500), None, "late OK did not resync");
        e.handle_input(b"\r\n013\r\n\r\nOK\r\n", 1600);
        assert!(e.is_synchronised());
        assert_eq!(e.stale_finals(), 1);
        assert_eq!(
            drain(&mut e),
            vec![EngineEvent::LateResult {
                id: slow,
                result: FinalResult::Ok,
                lines: vec!["+COPS: (2,\"X\",\"X\",\"1\",7)".into()]
            }]
        );
        assert_eq!(e.poll_transmit(1600), Some(b"AT+CSQ\r".to_vec()));
        e.handle_input(b"\r\n+CSQ: 9,99\r\n\r\nOK\r\n", 1700);
        assert!(matches!(
            drain(&mut e).as_slice(),
            [EngineEvent::Completed { id, .. }] if *id == next
        ));
    }

    /// The prompt came after the timeout: the ESC written with the probe
    /// cancels the text entry and the modem answers it `OK`. No PDU was
    /// ever written, so that `OK` is no news of a send.
    #[test]
    fn a_pdu_command_timed_out_before_its_prompt_reports_no_late_result() {
        let mut e = AtEngine::new();
        let id = e.submit(Command::with_pdu("AT+CMGS=3", "00AABBCC", 1000));
        e.poll_transmit(0);
        e.handle_timeout(1000);
        assert!(matches!(
            drain(&mut e).as_slice(),
            [EngineEvent::TimedOut { id: timed_out, .. }] if *timed_out == id
        ));
        assert_eq!(e.poll_transmit(1000), Some(vec![ESC]));
        assert_eq!(e.poll_transmit(1000), Some(b"ATS3?\r".to_vec()));
        e.handle_input(b"\r\n> \r\nOK\r\n\r\n013\r\n\r\nOK\r\n", 1500);
        assert!(e.is_synchronised());
        let events = drain(&mut e);
        assert!(
            !events
                .iter()
                .any(|event| matches!(event, EngineEvent::LateResult { .. })),
            "{events:?}"
        );
        assert_eq!(e.stale_finals(), 1, "the ESC's OK is counted stale");
    }

    #[test]
    fn late_cmgs_keeps_the_line_received_before_the_timeout() {
        let mut e = AtEngine::new();
        let id = e.submit(Command::with_pdu("AT+CMGS=3", "00AABBCC", 1000));
        e.poll_transmit(0);
        e.handle_input(b"\r\n> ", 10);
        e.poll_transmit(10);
        // The MR line makes it before the deadline, the OK does not.
        e.handle_input(b"\r\n+CMGS: 42\r\n", 900);
        e.handle_timeout(1010);
        assert_eq!(
            e.poll_transmit(1010),
            Some(b"ATS3?\r".to_vec()),
            "no ESC once the PDU is out"
        );
        e.handle_input(b"\r\nOK\r\n\r\n013\r\n\r\nOK\r\n", 1500);
        assert!(e.is_synchronised());
        let events = drain(&mut e);
        assert!(
            events.contains(&EngineEvent::LateResult {
                id,
                result: FinalResult::Ok,
                lines: vec!["+CMGS: 42".into()],
            }),
            "{events:?}"
        );
    }

    #[test]
    fn resynchronising_a_fresh_port_ends_text_entry_then_probes() {
        let mut e = AtEngine::new();
        let id = e.submit(Command::plain("ATZ", 1000));
        e.resynchronise();
        assert_eq!(e.poll_transmit(0), Some(vec![ESC, b'\r']));
        assert_eq!(e.poll_transmit(0), Some(b"ATS3?\r".to_vec()));
        assert_eq!(e.poll_transmit(0), None, "ATZ waits for the probe");
        // The ESC's OK, then the probe's answer.
        e.handle_input(b"\r\nOK\r\n\r\n013\r\n\r\nOK\r\n", 10);
        assert!(e.is_synchronised());
        assert!(drain(&mut e).is_empty(), "the ESC's OK is nobody's");
        assert_eq!(e.poll_transmit(20), Some(b"ATZ\r".to_vec()));
        e.handle_input(b"\r\nOK\r\n", 30);
        assert!(matches!(
            drain(&mut e).as_slice(),
            [EngineEvent::Completed { id: done, result: FinalResult::Ok, .. }] if *done == id
        ));
    }

    #[test]
    fn giving_up_on_a_prompt_cancels_the_text_entry() {
        let mut e = AtEngine::new();
        e.submit(Command::with_pdu("AT+CMGS=5", "0011", 1000));
        e.poll_transmit(0);
        assert!(e.cancel_text_entry(), "awaiting the prompt");
        assert_eq!(e.poll_transmit(1), Some(vec![ESC]));
        let mut e = AtEngine::new();
        e.submit(Command::with_pdu("AT+CMGS=5", "0011", 1000));
        e.poll_transmit(0);
        e.handle_input(b"\r\n> ", 1);
        e.poll_transmit(2);
        assert!(!e.cancel_text_entry(), "the PDU is out");
        assert_eq!(e.poll_transmit(3), None);
    }

    #[test]
    fn prompt_timeout_sends_escape_before_probe() {
        let mut e = AtEngine::new();
        e.submit(Command::with_pdu("AT+CMGS=3", "00AABBCC", 1000));
        e.poll_transmit(0);
        e.handle_timeout(1000);
        assert_eq!(e.poll_transmit(1000), Some(vec![ESC]));
        assert_eq!(e.poll_transmit(1000), Some(b"ATS3?\r".to_vec()));
    }

    #[test]
    fn repeated_probe_timeouts_are_reported_and_settle() {
        let config = EngineConfig {
            probe_timeout_ms: 100,
            settle_ms: 50,
            ..EngineConfig::default()
        };
        let mut e = AtEngine::with_config(config);
        e.submit(Command::plain("AT", 10));
        e.poll_transmit(0);
        e.handle_timeout(10);
        e.poll_transmit(10);
        e.handle_timeout(110);
        e.poll_transmit(110);
        e.handle_timeout(210);
        let events = drain(&mut e);
        assert!(events.contains(&EngineEvent::ProbeTimedOut { attempts: 1 }));
        assert!(events.contains(&EngineEvent::ProbeTimedOut { attempts: 2 }));
        assert_eq!(e.poll_transmit(210), Some(b"ATS3?\r".to_vec()));
        let user = e.submit(Command::plain("AT+CSQ", 1000));
        // First probe answered: wait for silence, older probes may answer.
        e.handle_input(b"\r\n013\r\nOK\r\n", 250);
        assert!(!e.is_synchronised());
        assert_eq!(e.poll_timeout(), Some(300));
        e.handle_input(b"\r\n013\r\nOK\r\n", 260);
        e.handle_input(b"\r\n013\r\nOK\r\n", 270);
        e.handle_timeout(300);
        assert!(!e.is_synchronised(), "input extended the quiet period");
        e.handle_timeout(320);
        assert!(e.is_synchronised());
        assert_eq!(e.stale_finals(), 2);
        assert_eq!(e.poll_transmit(320), Some(b"AT+CSQ\r".to_vec()));
        e.handle_input(b"OK\r\n", 330);
        assert!(matches!(
            drain(&mut e).as_slice(),
            [EngineEvent::Completed { id, .. }] if *id == user
        ));
    }

    #[test]
    fn older_probe_answering_late_avoids_another_probe() {
        let config = EngineConfig {
            probe_timeout_ms: 100,
            settle_ms: 50,
            ..EngineConfig::default()
        };
        let mut e = AtEngine::with_config(config);
        let timed_out = e.submit(Command::plain("AT+CMGL=4", 10));
        e.poll_transmit(0);
        e.handle_timeout(10);
        assert_eq!(e.poll_transmit(10), Some(b"ATS3?\r".to_vec()));
        e.handle_timeout(110);
        // Before the second probe is written, the first one is answered.
        e.handle_input(b"\r\n013\r\n\r\nOK\r\n", 115);
        assert_eq!(e.poll_transmit(115), None, "no second probe needed");
        let events = drain(&mut e);
        assert!(
            !events
                .iter()
                .any(|ev| matches!(ev, EngineEvent::LateResult { .. })),
            "a probe's answer is not the timed-out command's: {events:?}"
        );
        assert!(matches!(events[0], EngineEvent::TimedOut { id, .. } if id == timed_out));
        assert!(!e.is_synchronised(), "older probes may still answer");
        e.handle_timeout(165);
        assert!(e.is_synchronised());
    }

    #[test]
    fn sensitive_secret_is_redacted_from_lines() {
        let mut e = AtEngine::new();
        e.submit(Command::plain("AT+CPIN=\"1234\"", 1000).sensitive());
        e.poll_transmit(0);
        // Echo mangled so badly it is not recognised as echo.
        e.handle_input(b"xxAT+CPIN=\"1234\"yy\r\nOK\r\n", 5);
        match drain(&mut e).as_slice() {
            [EngineEvent::Completed { lines, .. }] => {
                assert_eq!(lines, &vec!["xxAT+CPIN=****yy".to_string()]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn reset_returns_dropped_commands() {
        let mut e = AtEngine::new();
        let a = e.submit(Command::plain("AT", 1000));
        let b = e.submit(Command::plain("AT+CSQ", 1000));
        e.poll_transmit(0);
        e.handle_input(b"\r\n+CMT: ,5\r\n", 1);
        let dropped: Vec<_> = e.reset().into_iter().map(|(id, _)| id).collect();
        assert_eq!(dropped, vec![a, b]);
        assert_eq!(e.current_command(), None);
        assert_eq!(e.poll_transmit(2), None);
        // The half-received +CMT was forgotten: this line stands alone.
        e.handle_input(b"RING\r\n", 3);
        assert_eq!(drain(&mut e), vec![EngineEvent::Urc(Urc::Ring)]);
    }

    #[test]
    fn stray_final_while_idle_is_dropped() {
        let mut e = AtEngine::new();
        e.handle_input(b"\r\nOK\r\n", 0);
        assert!(drain(&mut e).is_empty());
        assert_eq!(e.stale_finals(), 1);
    }
}
