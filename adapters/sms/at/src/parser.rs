//! Line-level AT response parser: bytes in, [`ParserEvent`]s out.
//!
//! Pure and incremental: [`AtParser::push`] accepts chunks split anywhere
//! (mid-line, between `\r` and `\n`) and processes them byte by byte, so the
//! events never depend on how the serial driver happened to chunk the data.
//!
//! Line framing: `\r` and `\n` both end a line and empty lines are skipped.
//! That covers V.250's `<CR><LF>text<CR><LF>`, echo terminated by a bare
//! `\r`, `\n\r` orderings and stray `\r`s alike.
//!
//! Classifying a line needs context, which the caller provides through
//! [`AtParser::command_sent`]: the echo of that command is dropped, lines
//! named after a pending read command (`+CREG:` while `AT+CREG?` runs) are
//! its answer, other known URC names are URCs even mid-response, and any
//! remaining line is an intermediate response while a command is pending or
//! [`Urc::Other`] while none is.

use std::collections::VecDeque;

use crate::fields::{response_name, split_fields};
use crate::final_result::FinalResult;
use crate::responses::registration_is_unsolicited_form;
use crate::urc::{TwoLineHeader, Urc, parse_single_line_urc, two_line_header, urc_name};

/// Default cap on one line. The longest legitimate lines are PDU lines:
/// (12-octet SMSC + 176-octet TPDU) × 2 hex digits ≈ 380 characters; USSD
/// and operator lists stay well below 2 KiB.
pub const DEFAULT_MAX_LINE_LEN: usize = 2048;

/// Something the parser recognised in the byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParserEvent {
    /// A line of the pending command's response. `+CMGL:`/`+CMGR:` headers
    /// carry the following PDU (or text) line as `body`; `body` is `None`
    /// if the final result came instead (e.g. `+CMGR: 0,,0` for an empty slot).
    Intermediate {
        line: String,
        body: Option<String>,
    },
    /// The end of the pending command's response.
    Final(FinalResult),
    /// The `> ` prompt after `AT+CMGS=<n>`: write the PDU and Ctrl-Z now.
    Prompt,
    Urc(Urc),
    /// A line exceeded the cap; its bytes up to the next line end are dropped.
    LineTooLong {
        limit: usize,
    },
}

/// What the parser knows about the command written last.
#[derive(Debug, Clone)]
struct PendingCommand {
    text: String,
    /// Normalised command text for echo matching.
    echo_key: String,
    /// `+CREG` for `AT+CREG?`: lines of that name answer this command.
    name: Option<String>,
    /// `AT+X?` or `AT+X=?`: only such commands answer with a line named
    /// like a URC (`AT+CUSD=1,...` answers with `OK`, the `+CUSD:` after
    /// it is unsolicited).
    is_read_or_test: bool,
    expects_prompt: bool,
    prompt_seen: bool,
    /// The echo was seen, or a response line proved there is none.
    echo_done: bool,
    /// A line named `name` has already been taken as the answer.
    answered: bool,
    /// Normalised PDU written after the prompt, to drop its echo.
    pdu_echo_key: Option<String>,
    /// A dial, answer or return to a call (`ATD…`, `ATA`, `ATO`): only
    /// these end in a call progress result (V.250 6.3). To any other
    /// command, `NO CARRIER` is a call's end the modem reports on its own
    /// (a caller who rang and hung up), not the command's answer.
    places_call: bool,
}

/// Commands that answer with the `> ` prompt (TS 27.005 §3.5.1, §3.5.3, §3.5.4).
const PROMPTING_COMMANDS: [&str; 3] = ["+CMGS", "+CMGW", "+CMGC"];

/// Intermediate headers that own the following data line (TS 27.005 §3.4.2, §3.4.3).
const BODY_OWNING_RESPONSES: [&str; 2] = ["+CMGL", "+CMGR"];

const REGISTRATION_NAMES: [&str; 4] = ["+CREG", "+CGREG", "+CEREG", "+C5GREG"];

impl PendingCommand {
    fn new(command_line: &str) -> Self {
        let text = command_line
            .trim_matches(|c: char| c.is_ascii_whitespace())
            .to_owned();
        let name = command_name(&text);
        let is_read_or_test = text.ends_with('?');
        let expects_prompt = !is_read_or_test
            && name
                .as_deref()
                .is_some_and(|n| PROMPTING_COMMANDS.contains(&n));
        let upper = normalise(&text);
        let places_call = upper
            .strip_prefix("AT")
            .is_some_and(|rest| rest.starts_with('D') || rest == "A" || rest.starts_with('O'));
        PendingCommand {
            places_call,
            echo_key: upper,
            text,
            name,
            is_read_or_test,
            expects_prompt,
            prompt_seen: false,
            echo_done: false,
            answered: false,
            pdu_echo_key: None,
        }
    }

    fn is_echo(&self, line: &str) -> bool {
        if self.echo_done || self.echo_key.is_empty() {
            return false;
        }
        let seen = normalise(line);
        // Exact, with garbage in front (noise before ATE0 took effect), or
        // cut short (echo interrupted by the modem's own output).
        seen == self.echo_key
            // Short keys (`AT`, `ATZ`) would match ordinary words.
            || (self.echo_key.len() >= 5 && seen.ends_with(&self.echo_key))
            || (seen.len() >= 2 && seen.starts_with("AT") && self.echo_key.starts_with(&seen))
    }

    fn is_pdu_echo(&self, line: &str) -> bool {
        self.pdu_echo_key.as_deref().is_some_and(|key| {
            let seen = normalise(line);
            !seen.is_empty() && (seen == key || seen.ends_with(key))
        })
    }
}

/// `AT+CREG?` → `+CREG`, `AT^HCSQ?` → `^HCSQ`, `ATZ` → `None`.
fn command_name(text: &str) -> Option<String> {
    let rest = text
        .get(2..)
        .filter(|_| text[..2].eq_ignore_ascii_case("AT"))?;
    let first = *rest.as_bytes().first()?;
    if !matches!(first, b'+' | b'^' | b'#' | b'$' | b'*' | b'!' | b'%') {
        return None;
    }
    let len = rest[1..]
        .bytes()
        .take_while(u8::is_ascii_alphanumeric)
        .count();
    (len > 0).then(|| rest[..=len].to_ascii_uppercase())
}

/// Upper-case, visible ASCII only: echo comparisons ignore spaces, control
/// characters (Ctrl-Z after a PDU) and bytes mangled by lossy decoding.
fn normalise(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn is_hex_line(line: &str) -> bool {
    !line.is_empty() && line.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Trims whitespace, control characters and U+FFFD (lossy-decoded noise)
/// from both ends of a decoded line.
fn clean_line(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    text.trim_matches(|c: char| c.is_whitespace() || c.is_control() || c == '\u{FFFD}')
        .to_owned()
}

/// Whether a `+CMGL:`/`+CMGR:` header is the PDU-mode form, whose data
/// line is hex: its `<stat>` is a number (`+CMGL: 1,0,,23`, `+CMGR: 0,,23`),
/// where text mode quotes it (`+CMGR: "REC UNREAD","+4917...",...`).
fn is_pdu_mode_header(line: &str) -> bool {
    let Some(name) = response_name(line) else {
        return false;
    };
    let stat_field = match name.as_str() {
        "+CMGR" => 0,
        "+CMGL" => 1,
        _ => return false,
    };
    let fields = split_fields(line.get(name.len() + 1..).unwrap_or(""));
    fields
        .get(stat_field)
        .is_some_and(|f| !f.quoted && f.as_u32().is_some())
}

/// A header waiting for its data line.
#[derive(Debug, Clone)]
enum BodyOwner {
    Intermediate {
        header: String,
    },
    Urc {
        header_line: String,
        header: TwoLineHeader,
    },
}

impl BodyOwner {
    /// Whether the awaited line is a PDU, i.e. hex. In PDU mode no other
    /// line can be the body, so a non-hex line before it (an unknown URC,
    /// say) is routed as what it is rather than swallowed as the PDU.
    fn wants_hex(&self) -> bool {
        match self {
            BodyOwner::Intermediate { header } => is_pdu_mode_header(header),
            BodyOwner::Urc { header, .. } => header.is_pdu(),
        }
    }
}

/// The pure, incremental AT response parser. See the module docs.
#[derive(Debug, Clone)]
pub struct AtParser {
    buf: Vec<u8>,
    /// Dropping the rest of an overlong line.
    discarding: bool,
    max_line_len: usize,
    pending: Option<PendingCommand>,
    /// Headers waiting for their data line, innermost last. Nesting only
    /// happens if a `+CMT` URC lands between a `+CMGL` header and its PDU.
    awaiting_body: Vec<BodyOwner>,
    events: VecDeque<ParserEvent>,
}

impl Default for AtParser {
    fn default() -> Self {
        Self::new()
    }
}

impl AtParser {
    pub fn new() -> Self {
        Self::with_max_line_len(DEFAULT_MAX_LINE_LEN)
    }

    /// A parser that caps lines at `max_line_len` bytes (at least 16).
    pub fn with_max_line_len(max_line_len: usize) -> Self {
        AtParser {
            buf: Vec::new(),
            discarding: false,
            max_line_len: max_line_len.max(16),
            pending: None,
            awaiting_body: Vec::new(),
            events: VecDeque::new(),
        }
    }

    /// Tells the parser that `command_line` (with or without the trailing
    /// `\r`) was just written. Replaces any previous pending command.
    pub fn command_sent(&mut self, command_line: &str) {
        self.pending = Some(PendingCommand::new(command_line));
    }

    /// Tells the parser that a PDU was written after the prompt, so that
    /// its echo (echo on) is dropped instead of becoming a response line.
    pub fn pdu_sent(&mut self, pdu_hex: &str) {
        if let Some(pending) = &mut self.pending {
            pending.pdu_echo_key = Some(normalise(pdu_hex));
        }
    }

    /// Forgets the pending command (after a timeout): from now on lines are
    /// classified as if nothing were pending, until the next `command_sent`.
    pub fn command_abandoned(&mut self) {
        self.pending = None;
    }

    /// The command the parser is attributing responses to.
    pub fn pending_command(&self) -> Option<&str> {
        self.pending.as_ref().map(|p| p.text.as_str())
    }

    /// Forgets everything, including half-received lines (port reopened).
    /// Queued events are dropped too.
    pub fn reset(&mut self) {
        *self = Self::with_max_line_len(self.max_line_len);
    }

    /// Feeds received bytes; collect the results with [`poll_event`](Self::poll_event).
    pub fn push(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.push_byte(byte);
        }
    }

    pub fn poll_event(&mut self) -> Option<ParserEvent> {
        self.events.pop_front()
    }

    /// [`push`](Self::push) and drain all events: convenient in tests.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<ParserEvent> {
        self.push(bytes);
        self.events.drain(..).collect()
    }

    fn push_byte(&mut self, byte: u8) {
        match byte {
            // Some USB modems pad with NULs after power-up; never data.
            0 => {}
            b'\r' | b'\n' => {
                if self.discarding {
                    self.discarding = false;
                } else if !self.buf.is_empty() {
                    let raw = std::mem::take(&mut self.buf);
                    self.finish_line(&raw);
                }
            }
            _ if self.discarding => {}
            _ if self.buf.len() >= self.max_line_len => {
                self.buf.clear();
                self.discarding = true;
                self.events.push_back(ParserEvent::LineTooLong {
                    limit: self.max_line_len,
                });
                // The dropped line may have been an awaited PDU: give up on
                // the innermost header rather than take the next line as its body.
                if let Some(owner) = self.awaiting_body.pop() {
                    self.emit_incomplete(owner);
                }
            }
            _ => {
                self.buf.push(byte);
                self.check_prompt();
            }
        }
    }

    /// The prompt has no line terminator: recognise it as soon as `> ` sits
    /// at the start of a line while a prompting command is pending.
    fn check_prompt(&mut self) {
        let Some(pending) = &mut self.pending else {
            return;
        };
        if pending.expects_prompt && !pending.prompt_seen && self.buf == b"> " {
            pending.prompt_seen = true;
            pending.echo_done = true;
            self.buf.clear();
            self.events.push_back(ParserEvent::Prompt);
        }
    }

    fn finish_line(&mut self, raw: &[u8]) {
        let line = clean_line(raw);
        if line.is_empty() {
            return;
        }
        if let Some(pending) = &mut self.pending {
            if pending.is_echo(&line) {
                pending.echo_done = true;
                return;
            }
            if pending.is_pdu_echo(&line) {
                pending.pdu_echo_key = None;
                return;
            }
            // Lenient prompt: `>` alone on a line.
            if pending.expects_prompt && !pending.prompt_seen && line == ">" {
                pending.prompt_seen = true;
                pending.echo_done = true;
                self.events.push_back(ParserEvent::Prompt);
                return;
            }
        }
        if !self.awaiting_body.is_empty() && self.take_as_body(&line) {
            return;
        }
        self.classify(line);
    }

    /// Decides whether `line` is the data line an earlier header waits for.
    /// PDU lines are pure hex, which no final result or URC is; anything else
    /// that is neither a final result nor a URC is taken as the body only of
    /// a text-mode header.
    fn take_as_body(&mut self, line: &str) -> bool {
        if is_hex_line(line) {
            let owner = self.awaiting_body.pop().expect("checked non-empty");
            self.emit_complete(owner, line.to_owned());
            return true;
        }
        if FinalResult::parse(line).is_some() {
            while let Some(owner) = self.awaiting_body.pop() {
                self.emit_incomplete(owner);
            }
            return false;
        }
        if urc_name(line).is_some() {
            return false;
        }
        if let Some(BodyOwner::Intermediate { .. }) = self.awaiting_body.last()
            && response_name(line).is_some_and(|n| BODY_OWNING_RESPONSES.contains(&n.as_str()))
        {
            // Previous header had no body; this is the next header.
            let owner = self.awaiting_body.pop().expect("checked non-empty");
            self.emit_incomplete(owner);
            return false;
        }
        if self.awaiting_body.last().is_some_and(BodyOwner::wants_hex) {
            // Not the PDU: the header keeps waiting for it.
            return false;
        }
        let owner = self.awaiting_body.pop().expect("checked non-empty");
        self.emit_complete(owner, line.to_owned());
        true
    }

    fn emit_complete(&mut self, owner: BodyOwner, body: String) {
        let event = match owner {
            BodyOwner::Intermediate { header } => ParserEvent::Intermediate {
                line: header,
                body: Some(body),
            },
            BodyOwner::Urc {
                header_line,
                header,
            } => ParserEvent::Urc(header.complete(&header_line, body)),
        };
        self.events.push_back(event);
    }

    fn emit_incomplete(&mut self, owner: BodyOwner) {
        let event = match owner {
            BodyOwner::Intermediate { header } => ParserEvent::Intermediate {
                line: header,
                body: None,
            },
            BodyOwner::Urc { header_line, .. } => {
                ParserEvent::Urc(TwoLineHeader::incomplete(&header_line))
            }
        };
        self.events.push_back(event);
    }

    fn classify(&mut self, line: String) {
        if let Some(result) = FinalResult::parse(&line) {
            let placing_call = self.pending.as_ref().is_some_and(|p| p.places_call);
            if result.is_call_progress() && !placing_call {
                // Taken as the answer, it ended an `AT+CMGS` whose part
                // the network then accepted: the part sent again, and the
                // late `+CMGS`/`OK` taken as the next command's answer.
                self.events.push_back(ParserEvent::Urc(Urc::Other(line)));
                return;
            }
            // Without a pending command a final result is stray (e.g. late
            // after a timeout); the engine decides what to do.
            self.pending = None;
            self.events.push_back(ParserEvent::Final(result));
            return;
        }
        if self.is_answer_to_pending(&line) {
            self.emit_intermediate(line);
            return;
        }
        let is_urc = urc_name(&line).is_some();
        if self.pending.is_some() && !is_urc {
            self.emit_intermediate(line);
            return;
        }
        match two_line_header(&line) {
            Some(header) => self.awaiting_body.push(BodyOwner::Urc {
                header_line: line,
                header,
            }),
            None => self
                .events
                .push_back(ParserEvent::Urc(parse_single_line_urc(&line))),
        }
    }

    /// A line named like the pending read/test command answers it, except
    /// that only the first such line does for URC-capable names, and a
    /// registration line in the unsolicited shape never does.
    fn is_answer_to_pending(&mut self, line: &str) -> bool {
        let Some(pending) = &mut self.pending else {
            return false;
        };
        if !pending.is_read_or_test {
            return false;
        }
        let Some(name) = response_name(line) else {
            return false;
        };
        if pending.name.as_deref() != Some(name.as_str()) {
            return false;
        }
        if urc_name(line).is_some() {
            if pending.answered {
                return false;
            }
            if REGISTRATION_NAMES.contains(&name.as_str()) && !pending.text.ends_with("=?") {
                let params = &line[name.len() + 1..];
                if registration_is_unsolicited_form(params) {
                    return false;
                }
            }
        }
        pending.answered = true;
        true
    }

    fn emit_intermediate(&mut self, line: String) {
        if let Some(pending) = &mut self.pending {
            pending.echo_done = true;
        }
        let owns_body =
            response_name(&line).is_some_and(|n| BODY_OWNING_RESPONSES.contains(&n.as_str()));
        if owns_body {
            self.awaiting_body
                .push(BodyOwner::Intermediate { header: line });
        } else {
            self.events
                .push_back(ParserEvent::Intermediate { line, body: None });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::final_result::ErrorDetail;

    fn intermediate(line: &str) -> ParserEvent {
        ParserEvent::Intermediate {
            line: line.into(),
            body: None,
        }
    }

    #[test]
    fn command_names() {
        assert_eq!(command_name("AT+CREG?").as_deref(), Some("+CREG"));
        assert_eq!(command_name("at^hcsq?").as_deref(), Some("^HCSQ"));
        assert_eq!(command_name("AT+CMGS=23").as_deref(), Some("+CMGS"));
        assert_eq!(command_name("ATZ"), None);
        assert_eq!(command_name("A"), None);
        assert_eq!(command_name("AT+"), None);
    }

    #[test]
    fn simple_response() {
        let mut p = AtParser::new();
        p.command_sent("AT+CSQ");
        assert_eq!(
            p.feed(b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"),
            vec![
                intermediate("+CSQ: 20,99"),
                ParserEvent::Final(FinalResult::Ok)
            ]
        );
        assert_eq!(p.pending_command(), None);
    }

    #[test]
    fn echo_with_bare_cr_is_dropped() {
        let mut p = AtParser::new();
        p.command_sent("AT+CGSN\r");
        assert_eq!(
            p.feed(b"AT+CGSN\r\r\n867584030000000\r\n\r\nOK\r\n"),
            vec![
                intermediate("867584030000000"),
                ParserEvent::Final(FinalResult::Ok)
            ]
        );
    }

    #[test]
    fn garbled_and_truncated_echo_is_dropped() {
        let mut p = AtParser::new();
        p.command_sent("ATE0");
        assert_eq!(
            p.feed(b"\xff\xfeATE0\r\r\nOK\r\n"),
            vec![ParserEvent::Final(FinalResult::Ok)]
        );
        p.command_sent("AT+CPMS=\"SM\",\"SM\",\"SM\"");
        assert_eq!(
            p.feed(b"AT+CPMS=\"S\r\n+CPMS: 0,30,0,30,0,30\r\nOK\r\n"),
            vec![
                intermediate("+CPMS: 0,30,0,30,0,30"),
                ParserEvent::Final(FinalResult::Ok)
            ]
        );
    }

    #[test]
    fn prompt_without_line_end() {
        let mut p = AtParser::new();
        p.command_sent("AT+CMGS=23");
        assert_eq!(p.feed(b"\r\n> "), vec![ParserEvent::Prompt]);
        p.pdu_sent("0011000B911326880736F40000A90AE8329BFD4697D9EC37");
        assert_eq!(
            p.feed(
                b"0011000B911326880736F40000A90AE8329BFD4697D9EC37\x1a\r\n+CMGS: 12\r\n\r\nOK\r\n"
            ),
            vec![
                intermediate("+CMGS: 12"),
                ParserEvent::Final(FinalResult::Ok)
            ]
        );
    }

    #[test]
    fn prompt_is_not_detected_for_other_commands() {
        let mut p = AtParser::new();
        p.command_sent("ATI");
        assert_eq!(
            p.feed(b"> hello\r\nOK\r\n"),
            vec![intermediate("> hello"), ParserEvent::Final(FinalResult::Ok)]
        );
    }

    #[test]
    fn lone_gt_line_counts_as_prompt() {
        let mut p = AtParser::new();
        p.command_sent("AT+CMGS=10");
        assert_eq!(p.feed(b"\r\n>\r\n"), vec![ParserEvent::Prompt]);
    }

    #[test]
    fn read_command_answer_vs_registration_urc() {
        let mut p = AtParser::new();
        p.command_sent("AT+CREG?");
        let events = p.feed(b"\r\n+CREG: 2\r\n\r\n+CREG: 0,1\r\n\r\nOK\r\n");
        assert!(matches!(
            events[0],
            ParserEvent::Urc(Urc::CregUnsolicited(_))
        ));
        assert_eq!(events[1], intermediate("+CREG: 0,1"));
        assert_eq!(events[2], ParserEvent::Final(FinalResult::Ok));

        // Without a pending query the same read-form line is a URC.
        let events = p.feed(b"\r\n+CREG: 1\r\n");
        assert!(matches!(
            events[0],
            ParserEvent::Urc(Urc::CregUnsolicited(_))
        ));
    }

    #[test]
    fn set_command_does_not_claim_its_urc() {
        let mut p = AtParser::new();
        p.command_sent("AT+CUSD=1,\"*100#\",15");
        let events = p.feed(b"\r\nOK\r\n\r\n+CUSD: 0,\"Credit 5 EUR\",15\r\n");
        assert_eq!(events[0], ParserEvent::Final(FinalResult::Ok));
        assert!(matches!(
            events[1],
            ParserEvent::Urc(Urc::Cusd { status: 0, .. })
        ));
        p.command_sent("AT+CFUN=1");
        let events = p.feed(b"\r\n+CFUN: 1\r\n\r\nOK\r\n");
        assert!(matches!(events[0], ParserEvent::Urc(Urc::Ready(_))));
    }

    /// A caller rings the modem's number and hangs up while a part is on
    /// its way: `RING`, `NO CARRIER`, then the part's own answer.
    #[test]
    fn a_call_ending_while_a_command_runs_is_not_its_answer() {
        let mut p = AtParser::new();
        p.command_sent("AT+CSQ");
        assert_eq!(
            p.feed(b"\r\nNO CARRIER\r\n\r\n+CSQ: 20,99\r\n\r\nOK\r\n"),
            vec![
                ParserEvent::Urc(Urc::Other("NO CARRIER".into())),
                ParserEvent::Intermediate {
                    line: "+CSQ: 20,99".into(),
                    body: None
                },
                ParserEvent::Final(FinalResult::Ok),
            ]
        );
        // A dial does end in one.
        p.command_sent("ATD+15551230001;");
        assert_eq!(
            p.feed(b"\r\nNO CARRIER\r\n"),
            vec![ParserEvent::Final(FinalResult::NoCarrier)]
        );
    }

    #[test]
    fn unknown_lines_without_pending_command_are_other_urcs() {
        let mut p = AtParser::new();
        assert_eq!(
            p.feed(b"\r\nsomething odd\r\n"),
            vec![ParserEvent::Urc(Urc::Other("something odd".into()))]
        );
        assert_eq!(
            p.feed(b"\r\nNO CARRIER\r\n"),
            vec![ParserEvent::Urc(Urc::Other("NO CARRIER".into()))]
        );
        // A stray OK is reported as a final; the engine drops it.
        assert_eq!(p.feed(b"OK\r\n"), vec![ParserEvent::Final(FinalResult::Ok)]);
    }

    #[test]
    fn cmgl_pairs_header_with_pdu() {
        let mut p = AtParser::new();
        p.command_sent("AT+CMGL=4");
        let events = p.feed(b"\r\n+CMGL: 1,0,,5\r\n0791AB\r\n+CMGL: 2,1,,6\r\n07CD\r\n\r\nOK\r\n");
        assert_eq!(
            events,
            vec![
                ParserEvent::Intermediate {
                    line: "+CMGL: 1,0,,5".into(),
                    body: Some("0791AB".into())
                },
                ParserEvent::Intermediate {
                    line: "+CMGL: 2,1,,6".into(),
                    body: Some("07CD".into())
                },
                ParserEvent::Final(FinalResult::Ok)
            ]
        );
    }

    #[test]
    fn empty_cmgr_slot_has_no_body() {
        let mut p = AtParser::new();
        p.command_sent("AT+CMGR=9");
        assert_eq!(
            p.feed(b"\r\n+CMGR: 0,,0\r\n\r\nOK\r\n"),
            vec![
                ParserEvent::Intermediate {
                    line: "+CMGR: 0,,0".into(),
                    body: None
                },
                ParserEvent::Final(FinalResult::Ok)
            ]
        );
    }

    #[test]
    fn urc_between_header_and_pdu_is_routed_out() {
        let mut p = AtParser::new();
        p.command_sent("AT+CMGR=1");
        let events = p.feed(b"\r\n+CMGR: 1,,3\r\n^RSSI:12\r\nABCDEF\r\nOK\r\n");
        assert_eq!(
            events,
            vec![
                ParserEvent::Urc(Urc::Rssi(12)),
                ParserEvent::Intermediate {
                    line: "+CMGR: 1,,3".into(),
                    body: Some("ABCDEF".into())
                },
                ParserEvent::Final(FinalResult::Ok)
            ]
        );
    }

    /// A URC the parser does not know, between a PDU-mode header and its
    /// PDU, is not the PDU: it is routed as a line of its own.
    #[test]
    fn unknown_line_between_pdu_header_and_pdu_is_not_the_body() {
        let mut p = AtParser::new();
        p.command_sent("AT+CMGR=1");
        let events = p.feed(b"\r\n+CMGR: 0,,23\r\n+XYZ: 1\r\n0791AB\r\nOK\r\n");
        assert_eq!(
            events,
            vec![
                intermediate("+XYZ: 1"),
                ParserEvent::Intermediate {
                    line: "+CMGR: 0,,23".into(),
                    body: Some("0791AB".into())
                },
                ParserEvent::Final(FinalResult::Ok)
            ]
        );
        // A known URC (now +CSCON) is a URC, in a listing too.
        p.command_sent("AT+CMGL=4");
        let events = p.feed(b"\r\n+CMGL: 1,0,,23\r\n+CSCON: 1\r\n0791AB\r\nOK\r\n");
        assert_eq!(
            events,
            vec![
                ParserEvent::Urc(Urc::Other("+CSCON: 1".into())),
                ParserEvent::Intermediate {
                    line: "+CMGL: 1,0,,23".into(),
                    body: Some("0791AB".into())
                },
                ParserEvent::Final(FinalResult::Ok)
            ]
        );
        // Without a command: a direct +CMT keeps waiting for its PDU.
        let events = p.feed(b"\r\n+CMT: 24\r\n+XYZ: 2\r\n0791CD\r\n");
        assert_eq!(
            events,
            vec![
                ParserEvent::Urc(Urc::Other("+XYZ: 2".into())),
                ParserEvent::Urc(Urc::Cmt {
                    alpha: None,
                    length: 24,
                    pdu: "0791CD".into()
                }),
            ]
        );
    }

    /// Text mode has no hex body: there the next line is the text.
    #[test]
    fn text_mode_header_takes_its_text_line() {
        let mut p = AtParser::new();
        p.command_sent("AT+CMGR=1");
        let events =
            p.feed(b"\r\n+CMGR: \"REC READ\",\"+4917012345\",,\"24/01/01,10:00:00+04\"\r\nhello there\r\nOK\r\n");
        assert_eq!(
            events[0],
            ParserEvent::Intermediate {
                line: r#"+CMGR: "REC READ","+4917012345",,"24/01/01,10:00:00+04""#.into(),
                body: Some("hello there".into())
            }
        );
    }

    #[test]
    fn two_line_cds_urc() {
        let mut p = AtParser::new();
        assert_eq!(
            p.feed(b"\r\n+CDS: 3\r\n0006AB\r\n"),
            vec![ParserEvent::Urc(Urc::Cds {
                length: 3,
                pdu: "0006AB".into()
            })]
        );
    }

    #[test]
    fn nul_bytes_and_odd_line_endings() {
        let mut p = AtParser::new();
        p.command_sent("AT+CSQ");
        assert_eq!(
            p.feed(b"\0\0\n\r+CSQ: 1\0,2\n\r\rOK\n\r"),
            vec![
                intermediate("+CSQ: 1,2"),
                ParserEvent::Final(FinalResult::Ok)
            ]
        );
    }

    #[test]
    fn overlong_line_is_capped_and_recovers() {
        let mut p = AtParser::with_max_line_len(32);
        p.command_sent("AT+CSQ");
        let mut input = vec![b'A'; 100];
        input.extend_from_slice(b"\r\n+CSQ: 5,5\r\nOK\r\n");
        assert_eq!(
            p.feed(&input),
            vec![
                ParserEvent::LineTooLong { limit: 32 },
                intermediate("+CSQ: 5,5"),
                ParserEvent::Final(FinalResult::Ok)
            ]
        );
    }

    #[test]
    fn overlong_pdu_gives_up_on_its_header() {
        let mut p = AtParser::with_max_line_len(16);
        let mut input = b"+CMT: ,99\r\n".to_vec();
        input.extend_from_slice(&[b'0'; 40]);
        input.extend_from_slice(b"\r\nRING\r\n");
        assert_eq!(
            p.feed(&input),
            vec![
                ParserEvent::LineTooLong { limit: 16 },
                ParserEvent::Urc(Urc::Other("+CMT: ,99".into())),
                ParserEvent::Urc(Urc::Ring)
            ]
        );
    }

    #[test]
    fn non_utf8_is_decoded_lossily() {
        let mut p = AtParser::new();
        p.command_sent("AT+COPS?");
        let events = p.feed(b"+COPS: 0,0,\"T-Mobile \xe9\xff\"\r\nOK\r\n");
        match &events[0] {
            ParserEvent::Intermediate { line, .. } => {
                assert!(line.starts_with("+COPS: 0,0,\"T-Mobile "))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn verbose_cme_error_text_is_kept() {
        let mut p = AtParser::new();
        p.command_sent("AT+CMGL=4");
        assert_eq!(
            p.feed(b"\r\n+CME ERROR: SIM not inserted\r\n"),
            vec![ParserEvent::Final(FinalResult::CmeError(
                ErrorDetail::Text("SIM not inserted".into())
            ))]
        );
    }

    #[test]
    fn reset_drops_partial_lines() {
        let mut p = AtParser::new();
        p.command_sent("AT");
        p.push(b"+CMT: ,5\r\nO");
        p.reset();
        assert_eq!(p.pending_command(), None);
        assert_eq!(
            p.feed(b"K\r\n"),
            vec![ParserEvent::Urc(Urc::Other("K".into()))]
        );
    }
}
