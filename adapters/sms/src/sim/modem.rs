//! The simulated modem's command interpreter: AT lines in, response text out.
//! Pure and synchronous; the pty task around it does the timing.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::codec;

/// Storage slots per memory unless [`Behaviour::capacity`] says
/// otherwise, like a typical SIM.
pub const SIM_CAPACITY: u32 = 50;
/// The SMSC the simulated SIM reports.
pub const SIM_SMSC: &str = "+15550000000";
/// Ctrl-Z ends a PDU after the `> ` prompt; ESC cancels it.
pub const CTRL_Z: u8 = 0x1a;
pub const ESC: u8 = 0x1b;

/// TS 27.005 `+CMS ERROR` for a send with no network in reach.
const CMS_NO_NETWORK_SERVICE: u16 = 331;
/// TS 27.005 `+CMS ERROR` for a send with no SMS centre to send to.
const CMS_SMSC_ADDRESS_UNKNOWN: u16 = 330;

/// Behaviour knobs, settable at run time through the handle.
#[derive(Debug, Clone)]
pub struct Behaviour {
    pub network_delay: Duration,
    pub baud_limit: Option<u32>,
    pub echo_default: bool,
    pub urc_noise: bool,
    pub delivery_reports: bool,
    pub pin: Option<String>,
    /// Whether `AT+CREG=<n>` / `AT+CEREG=<n>` are taken (registration
    /// changes then come unsolicited) or answered `ERROR`, as some modems
    /// do, leaving the driver to poll.
    pub registration_urcs: bool,
    /// Whether `AT+CNMI` takes `<ds>=2` (status reports stored in "SR",
    /// announced by `+CDSI`) or refuses it, as many Huawei and ZTE sticks
    /// do, so that reports come directly as `+CDS` and cannot be read again.
    pub stores_status_reports: bool,
    /// The message service (`+CSMS`) the modem starts in: 0, phase 2, as
    /// most do, or 1, phase 2+, where each `+CMT`/`+CDS` it hands over
    /// wants an `AT+CNMA`, and the routing is turned off when none comes
    /// (27.005 3.4.1).
    pub message_service: u8,
    /// Whether `AT+CPMS=` is taken, or refused (`+CMS ERROR: 302`) as by a
    /// modem that keeps one memory: its messages are then read where they
    /// are, the SIM here.
    pub selects_memory: bool,
    /// Storage slots in each memory (`+CPMS`'s totals): a full memory
    /// stores nothing more, and the network holds what comes meanwhile.
    pub capacity: u32,
}

/// A part the simulated network accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentPart {
    pub to: String,
    pub text: String,
    pub mr: u8,
    /// (reference, total, sequence) for parts of a long message.
    pub concat: Option<(u16, u8, u8)>,
    pub status_report_requested: bool,
    pub pdu_hex: String,
}

#[derive(Debug, Clone)]
pub struct Stored {
    /// 0 received unread, 1 received read.
    pub stat: u8,
    pub hex: String,
    pub tpdu_len: usize,
    /// The next reads of it (listing or `AT+CMGR`) that come damaged on
    /// the serial line, by turns: a stray CR cuts the PDU line short,
    /// while the header still gives the whole TPDU's length; or a bit
    /// flipped in one digit makes the line no hex at all.
    pub damaged_reads: u32,
}

impl Stored {
    /// The PDU line(s) as the host gets them on this read: whole, or, while
    /// `damaged_reads` lasts, damaged at a place that moves from one read
    /// to the next (as noise on a line does), always in the user data:
    /// split by a stray CR, so that the first piece still looks like a
    /// PDU cut short (the last damaged read, and every other one before
    /// it), or with one digit's bit 6 (of a letter, bit 4) flipped, which
    /// makes it no hex digit (`'3'` becomes `'s'`).
    fn shown(&mut self) -> String {
        if self.damaged_reads == 0 || self.hex.len() < 8 {
            return self.hex.clone();
        }
        self.damaged_reads -= 1;
        let back = 2 * (2 + self.damaged_reads as usize % 4);
        let cut = (self.hex.len() - back.min(self.hex.len() / 2)) / 2 * 2;
        if self.damaged_reads % 2 == 1 {
            let mut bytes = self.hex.clone().into_bytes();
            let digit = bytes[cut];
            bytes[cut] = if digit.is_ascii_digit() {
                digit ^ 0x40
            } else {
                digit ^ 0x10
            };
            return String::from_utf8(bytes).expect("ASCII in, ASCII out");
        }
        format!("{}\r{}", &self.hex[..cut], &self.hex[cut..])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mem {
    Sm,
    /// The modem's own memory, numbered apart from the SIM's.
    Me,
    Sr,
    /// "MT", the modem's memory and the SIM's as one (27.005 3.1), as
    /// Cinterion (formerly Siemens) MC35/MC55/TC63 number it: the modem's
    /// slots first, each under its own index, then the SIM's, each under
    /// its own index plus the modem memory's capacity; a message for
    /// "MT" fills the modem's memory first. So one message has two names
    /// here: "SM" 1 is "MT" 51 with the default capacity.
    Mt,
}

impl Mem {
    pub(super) fn parse(name: &str) -> Option<Mem> {
        match name.trim_matches('"').to_ascii_uppercase().as_str() {
            "SM" => Some(Mem::Sm),
            "ME" => Some(Mem::Me),
            "SR" => Some(Mem::Sr),
            "MT" => Some(Mem::Mt),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Mem::Sm => "SM",
            Mem::Me => "ME",
            Mem::Sr => "SR",
            Mem::Mt => "MT",
        }
    }
}

/// A message the network holds because the memory it is for was full
/// when it came: an SMSC told "memory capacity exceeded" keeps it and
/// delivers it once the phone has room again.
#[derive(Debug)]
struct HeldMessage {
    /// `None`: the memory `AT+CPMS` chose for received messages when it
    /// is delivered; a class 2 message is for the SIM whatever it chose.
    mem: Option<Mem>,
    hex: String,
    tpdu_len: usize,
}

/// What became of an inbound message the network brought.
#[derive(Debug, Default)]
pub struct Injected {
    /// Its parts stored on the SIM.
    pub stored: usize,
    /// Its parts the network holds until the SIM has room.
    pub held: usize,
    /// Unsolicited lines to send for the parts stored.
    pub urcs: Vec<String>,
}

/// What the pty task should do after a line.
#[derive(Debug, Default)]
pub struct Reply {
    /// Wait this long (network time) before writing `text`.
    pub delay: Duration,
    pub text: String,
    /// Unsolicited lines to send after the reply.
    pub urcs: Vec<String>,
}

impl Reply {
    fn now(text: impl Into<String>) -> Self {
        Reply {
            text: text.into(),
            ..Reply::default()
        }
    }
}

fn ok() -> Reply {
    Reply::now("\r\nOK\r\n")
}
fn error() -> Reply {
    Reply::now("\r\nERROR\r\n")
}
fn info(lines: &str) -> Reply {
    Reply::now(format!("\r\n{lines}\r\n\r\nOK\r\n"))
}
/// The next of a count of refusals (`(left, final result line)`), if one
/// is due; the count is gone once used up.
fn take_refusal(refusals: &mut Option<(usize, String)>) -> Option<Reply> {
    let (left, reply) = refusals.as_mut()?;
    let answer = Reply::now(format!("\r\n{reply}\r\n"));
    *left -= 1;
    if *left == 0 {
        *refusals = None;
    }
    Some(answer)
}

fn cms(code: u16) -> Reply {
    Reply::now(format!("\r\n+CMS ERROR: {code}\r\n"))
}
fn cme(code: u16) -> Reply {
    Reply::now(format!("\r\n+CME ERROR: {code}\r\n"))
}

/// The ICCID of the simulated SIM, unless a test puts another in.
pub const SIM_ICCID: &str = "89445000000000000017";

/// How modems answer an `AT+CMGR` of an empty slot: each form is met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyRead {
    /// `+CMS ERROR: 321`, invalid memory index (most).
    InvalidIndex,
    /// A bare `OK` (SIM800).
    BareOk,
    /// A header with no PDU after it, then `OK` (some Quectel firmware).
    EmptyHeader,
}

/// Wrong PINs after which a SIM asks for its PUK.
pub const WRONG_PINS_TO_PUK: u32 = 3;

pub struct SimModem {
    pub behaviour: Behaviour,
    pub echo: bool,
    pin_ok: bool,
    /// AT+CNMI <mt> and <ds>.
    cnmi_mt: u8,
    cnmi_ds: u8,
    /// The `+CSMS` service in force.
    message_service: u8,
    /// In service 1: a direct report went to the host, not acknowledged.
    unacknowledged_direct: bool,
    mem1: Mem,
    /// `AT+CPMS`'s third memory: where received messages are stored
    /// (except class 2 ones, which go to the SIM: `inject_raw_into`).
    mem3: Mem,
    sm: BTreeMap<u32, Stored>,
    me: BTreeMap<u32, Stored>,
    sr: BTreeMap<u32, Stored>,
    next_mr: u8,
    pub sent: Vec<SentPart>,
    /// The final result line the next sends get, and how many.
    fail_next: Option<(String, usize)>,
    /// Sends still accepted before `fail_next` starts failing them.
    fail_after: usize,
    /// Length announced by AT+CMGS while waiting for the PDU.
    pub awaiting_pdu: Option<usize>,
    inbound_ref: u8,
    /// Counts accepted commands, for tests that check the driver's traffic.
    pub commands_seen: u64,
    /// Whether the network is in reach: without it the modem is not
    /// registered and a send answers `+CMS ERROR: 331` (no network service).
    coverage: bool,
    /// `AT+CREG=<n>` with n ≥ 1: report registration changes unsolicited.
    creg_urcs: bool,
    /// `AT+CMGD` answered `OK` but nothing removed: what the host finds
    /// after a crash between its commit and the delete (or a delete that
    /// never reached the SIM).
    pub keep_deleted: bool,
    /// "MT" is the modem's memory alone, not the SIM's as well: as on
    /// modems whose "MT" leaves the SIM out, so that a class 2 message
    /// stored and announced in "SM" is in no listing of "MT".
    pub mt_without_sim: bool,
    /// TP-ST of the status reports the network sends: 0x00 delivered, or
    /// e.g. 0x21 (SME busy, the SMSC still trying) for an interim report.
    pub report_status: u8,
    /// `AT+CPIN=<pin>` commands the SIM checked, right or wrong.
    pub pin_attempts: u32,
    /// Wrong PINs in a row: at [`WRONG_PINS_TO_PUK`] the SIM asks for its
    /// PUK, and takes no PIN any more (TS 31.101's retry counter).
    wrong_pins: u32,
    /// Check a PIN but send no answer, as a modem that hangs on it or a
    /// line that drops the reply: the host cannot know whether it was right.
    pub lose_pin_answers: bool,
    /// How an `AT+CMGR` of an empty slot is answered.
    pub empty_read: EmptyRead,
    /// How long the SIM takes to check a PIN before it is answered: real
    /// SIMs take seconds, longer than most commands may.
    pub pin_check_delay: Duration,
    /// The final result line a right PIN gets: `OK`, unless set to the
    /// error some modems answer even though the SIM took the PIN.
    pub right_pin_reply: Option<String>,
    /// The first `AT+CPIN?` after a PIN the SIM checked gets no answer.
    pub lose_status_after_pin: bool,
    /// Whether the next `AT+CPIN?` is the one to lose.
    status_answer_to_lose: bool,
    /// The next `AT+CPIN=<pin>` commands answered with this final result
    /// line before the SIM checks one (`+CME ERROR: 14` while it is busy):
    /// no try is used. The count left and the line.
    pin_refusals: Option<(usize, String)>,
    /// The next `AT+CSCA?` queries answered with a final result line
    /// instead (a SIM still loading), and how many are left.
    smsc_query_refusals: Option<(usize, String)>,
    /// Whether `AT+CPMS?` is answered `ERROR`, as by a modem that cannot
    /// say its fill level (or not at the moment).
    pub refuses_storage_query: bool,
    /// How many `AT+CPMS?` were answered `ERROR` so far.
    pub storage_queries_refused: u64,
    /// The final result line a wrong PIN gets: `+CME ERROR: 16` as the
    /// spec has it, a bare `ERROR` on some modems.
    pub wrong_pin_reply: String,
    /// The SIM's ICCID, as `AT+CCID` answers it; `None` answers `ERROR`.
    pub iccid: Option<String>,
    /// Every `AT+CPIN=<pin>` received, checked by the SIM or not.
    pub pin_commands: u32,
    /// Inbound parts the network holds, oldest first, because the SIM was
    /// full when they came.
    held: VecDeque<HeldMessage>,
    /// The first storage index: 1 as most modems number it, 0 on some
    /// (Quectel's count from 0).
    pub first_index: u32,
    /// The next sends answered with a bare `OK`, the `+CMGS: <mr>` line
    /// lost on the way (a garbled line): the part went out all the same.
    unreadable_mrs: usize,
    /// How long `AT+CMGS=<n>` takes to show its `> ` prompt (a modem busy
    /// with its radio); what comes meanwhile waits, as on a real line.
    pub prompt_delay: Duration,
    /// Damaged reads (see [`Stored::shown`]) for the next message stored.
    pub damage_next_stored: u32,
    /// The SMS centre the SIM holds (`AT+CSCA`), empty for none: a send
    /// whose PDU names none then gets `+CMS ERROR: 330`.
    pub smsc: String,
    /// `AT+CMGL` answered with this `+CMS ERROR` (314, SIM busy, while
    /// a SIM loads), `None` to list as usual.
    pub refuse_listings: Option<u16>,
    /// How many `AT+CMGL` were refused so far.
    pub listings_refused: u64,
    /// Whether a text entry (`awaiting_pdu`) stays open when the host
    /// closes the port, as on a real modem, rather than being dropped.
    pub text_entry_outlives_host: bool,
    /// Command lines answered, by their text after `AT` (in capitals),
    /// for tests that count what the driver sent.
    lines_seen: BTreeMap<String, u64>,
}

impl SimModem {
    pub fn new(behaviour: Behaviour) -> Self {
        let echo = behaviour.echo_default;
        let pin_ok = behaviour.pin.is_none();
        let message_service = behaviour.message_service;
        Self {
            behaviour,
            echo,
            pin_ok,
            cnmi_mt: 0,
            cnmi_ds: 0,
            message_service,
            unacknowledged_direct: false,
            mem1: Mem::Sm,
            mem3: Mem::Sm,
            sm: BTreeMap::new(),
            me: BTreeMap::new(),
            sr: BTreeMap::new(),
            next_mr: 0,
            sent: Vec::new(),
            fail_next: None,
            fail_after: 0,
            awaiting_pdu: None,
            inbound_ref: 0,
            commands_seen: 0,
            coverage: true,
            creg_urcs: false,
            keep_deleted: false,
            mt_without_sim: false,
            report_status: 0x00,
            pin_attempts: 0,
            wrong_pins: 0,
            lose_pin_answers: false,
            empty_read: EmptyRead::InvalidIndex,
            pin_check_delay: Duration::ZERO,
            right_pin_reply: None,
            lose_status_after_pin: false,
            status_answer_to_lose: false,
            pin_refusals: None,
            smsc_query_refusals: None,
            refuses_storage_query: false,
            storage_queries_refused: 0,
            wrong_pin_reply: "+CME ERROR: 16".into(),
            iccid: Some(SIM_ICCID.into()),
            pin_commands: 0,
            held: VecDeque::new(),
            first_index: 1,
            unreadable_mrs: 0,
            prompt_delay: Duration::ZERO,
            damage_next_stored: 0,
            smsc: SIM_SMSC.to_string(),
            text_entry_outlives_host: false,
            refuse_listings: None,
            listings_refused: 0,
            lines_seen: BTreeMap::new(),
        }
    }

    /// How many command lines answered so far start with `prefix` (the
    /// text after `AT`, in capitals: `"Z"`, `"+CNMI="`).
    pub fn lines_seen(&self, prefix: &str) -> u64 {
        self.lines_seen
            .iter()
            .filter(|(line, _)| line.starts_with(prefix))
            .map(|(_, count)| count)
            .sum()
    }

    /// Power cycle: volatile settings go, the SIM's contents stay.
    pub fn reboot(&mut self) {
        self.echo = self.behaviour.echo_default;
        self.pin_ok = self.behaviour.pin.is_none();
        self.cnmi_mt = 0;
        self.cnmi_ds = 0;
        self.message_service = self.behaviour.message_service;
        self.unacknowledged_direct = false;
        self.mem1 = Mem::Sm;
        self.mem3 = Mem::Sm;
        self.awaiting_pdu = None;
        self.creg_urcs = false;
    }

    /// Put the network in or out of reach; returns the `+CREG` URC to
    /// raise if the registration changed and `AT+CREG` asked for them.
    pub fn set_coverage(&mut self, coverage: bool) -> Option<String> {
        let before = self.reg_stat();
        self.coverage = coverage;
        let after = self.reg_stat();
        (self.creg_urcs && before != after).then(|| format!("+CREG: {after}"))
    }

    /// The SIM resets or refreshes and asks for its PIN again, with no
    /// `RDY`: the modem leaves the network. Returns the `+CREG` URC to
    /// raise if the registration changed and `AT+CREG` asked for them.
    pub fn relock_sim(&mut self) -> Option<String> {
        let before = self.reg_stat();
        self.pin_ok = self.behaviour.pin.is_none();
        let after = self.reg_stat();
        (self.creg_urcs && before != after).then(|| format!("+CREG: {after}"))
    }

    /// The TP-MR the next accepted part gets (a modem's counter goes on
    /// across a restart of the daemon, and wraps after 255).
    /// Answer the next `count` accepted sends with `OK` alone.
    pub fn lose_next_mrs(&mut self, count: usize) {
        self.unreadable_mrs = count;
    }

    pub fn set_next_mr(&mut self, mr: u8) {
        self.next_mr = mr;
    }

    /// Answer the next `count` PINs with the final result line `reply`,
    /// unchecked (no try used), as a SIM too busy to look at them.
    pub fn refuse_next_pins(&mut self, reply: &str, count: usize) {
        self.pin_refusals = (count > 0).then(|| (count, reply.to_string()));
    }

    /// The reply to a PIN the SIM refuses unchecked, if one is due.
    fn take_pin_refusal(&mut self) -> Option<Reply> {
        take_refusal(&mut self.pin_refusals)
    }

    /// Answer the next `count` `AT+CSCA?` queries with the final result
    /// line `reply`, as a SIM still loading does.
    pub fn refuse_next_smsc_queries(&mut self, reply: &str, count: usize) {
        self.smsc_query_refusals = (count > 0).then(|| (count, reply.to_string()));
    }

    fn take_smsc_query_refusal(&mut self) -> Option<Reply> {
        take_refusal(&mut self.smsc_query_refusals)
    }

    pub fn fail_next_sends(&mut self, code: u16, count: usize) {
        self.fail_sends_after(0, code, count);
    }

    /// Accept `accepted` more sends, then answer the `count` after them
    /// `+CMS ERROR: code` (a long message that stops halfway).
    pub fn fail_sends_after(&mut self, accepted: usize, code: u16, count: usize) {
        self.fail_after = accepted;
        self.fail_next = (count > 0).then(|| (format!("+CMS ERROR: {code}"), count));
    }

    /// Answer the next `count` sends with the final result line `reply`
    /// (`+CME ERROR: 30`, a bare `ERROR`), as some modems answer a send.
    pub fn fail_next_sends_with(&mut self, reply: &str, count: usize) {
        self.fail_after = 0;
        self.fail_next = (count > 0).then(|| (reply.to_string(), count));
    }

    /// Messages and status reports stored, and inbound parts the network
    /// holds for want of room.
    pub fn stored_count(&self) -> (usize, usize, usize) {
        (
            self.sm.len() + self.me.len(),
            self.sr.len(),
            self.held.len(),
        )
    }

    /// Delete one message of the SIM's memory, as a human with the SIM
    /// in a phone would; whether there was one, and the URCs for what the
    /// network then delivers of what it held.
    pub fn delete_stored(&mut self, index: u32) -> (bool, Vec<String>) {
        let deleted = self.sm.remove(&index).is_some();
        (deleted, self.deliver_held())
    }

    /// The next `count` reads of slot `index` of `mem` (listed or read
    /// with `AT+CMGR`) come damaged on the line (see [`Stored::shown`]);
    /// whether the slot holds a message.
    pub fn damage_next_reads(&mut self, mem: Mem, index: u32, count: u32) -> bool {
        let (mem, index) = self.resolve(mem, index);
        match self.mem_mut(mem).get_mut(&index) {
            Some(stored) => {
                stored.damaged_reads = count;
                true
            }
            None => false,
        }
    }

    /// Whether the message in slot `index` of the SIM's memory has been
    /// read (its status "received read"); `None` if the slot is empty.
    pub fn stored_was_read(&self, index: u32) -> Option<bool> {
        self.sm.get(&index).map(|stored| stored.stat >= 1)
    }

    /// Empty both memories, as a human with the SIM in a phone would; the
    /// network then delivers what it held. Returns the URCs for those.
    pub fn clear_stored(&mut self) -> Vec<String> {
        self.sm.clear();
        self.me.clear();
        self.sr.clear();
        self.deliver_held()
    }

    /// Store a message in `mem`; its index there (in "MT"'s numbering for
    /// "MT"), `None` when it is full.
    fn store(&mut self, mem: Mem, hex: String, tpdu_len: usize) -> Option<u32> {
        if mem == Mem::Mt && self.mt_without_sim {
            return self.store(Mem::Me, hex, tpdu_len);
        }
        if mem == Mem::Mt {
            return match self.store(Mem::Me, hex.clone(), tpdu_len) {
                Some(index) => Some(index),
                None => Some(self.store(Mem::Sm, hex, tpdu_len)? + self.behaviour.capacity),
            };
        }
        let first = self.first_index;
        let damaged_reads = self.damage_next_stored;
        let capacity = self.behaviour.capacity;
        let map = self.mem_mut(mem);
        let index = (first..first + capacity).find(|i| !map.contains_key(i))?;
        map.insert(
            index,
            Stored {
                stat: 0,
                hex,
                tpdu_len,
                damaged_reads,
            },
        );
        self.damage_next_stored = 0;
        Some(index)
    }

    /// A message arrives from the network: the parts the SIM has room for
    /// are stored, the rest held by the network (behind any it holds
    /// already, so order is kept). Returns how many were stored and the
    /// URCs to raise (+CMTI when CNMI asks for indications).
    pub fn inject_inbound(&mut self, from: &str, text: &str, scts_unix: i64) -> Injected {
        self.inbound_ref = self.inbound_ref.wrapping_add(1);
        let parts = codec::encode_deliver(from, text, scts_unix, self.inbound_ref);
        let count = parts.len();
        self.held
            .extend(parts.into_iter().map(|(hex, tpdu_len)| HeldMessage {
                mem: None,
                hex,
                tpdu_len,
            }));
        let urcs = self.deliver_held();
        // The held parts go out oldest first, so whatever is still held
        // is this message's tail (and perhaps older parts before it).
        let held = self.held.len();
        Injected {
            stored: count.saturating_sub(held),
            held: held.min(count),
            urcs,
        }
    }

    /// The network delivers what it holds while the SIM has room; returns
    /// the URCs to raise for the parts stored.
    fn deliver_held(&mut self) -> Vec<String> {
        let mut urcs = Vec::new();
        while let Some(held) = self.held.pop_front() {
            let mem = held.mem.unwrap_or(self.mem3);
            let Some(index) = self.store(mem, held.hex.clone(), held.tpdu_len) else {
                self.held.push_front(held);
                break;
            };
            if self.cnmi_mt == 1 {
                urcs.push(format!("+CMTI: \"{}\",{index}", mem.name()));
            }
        }
        urcs
    }

    /// A PDU exactly as given (hex, SMSC part first) comes as a received
    /// message, e.g. a malformed one a real SMSC produced: stored, or held
    /// by the network while the memory is full (behind any it holds
    /// already). Returns whether it was stored and the URCs to raise.
    pub fn inject_raw(&mut self, hex: &str) -> (bool, Vec<String>) {
        self.inject_raw_for(None, hex)
    }

    /// As [`Self::inject_raw`], into memory `mem` whatever `AT+CPMS` chose,
    /// as a class 2 message goes to the SIM.
    pub fn inject_raw_into(&mut self, mem: Mem, hex: &str) -> (bool, Vec<String>) {
        self.inject_raw_for(Some(mem), hex)
    }

    fn inject_raw_for(&mut self, mem: Option<Mem>, hex: &str) -> (bool, Vec<String>) {
        let hex = hex.trim().to_ascii_uppercase();
        let tpdu_len = codec::tpdu_len(&hex).unwrap_or(0);
        self.held.push_back(HeldMessage { mem, hex, tpdu_len });
        let urcs = self.deliver_held();
        // Delivered oldest first, and it came last: stored once none is
        // held.
        (self.held.is_empty(), urcs)
    }

    fn status_report(&mut self, part: &SentPart, scts_unix: i64) -> Option<String> {
        let (hex, len) =
            codec::encode_status_report(part.mr, &part.to, self.report_status, scts_unix);
        match self.cnmi_ds {
            1 => {
                self.unacknowledged_direct = self.message_service == 1;
                Some(format!("+CDS: {len}\r\n{hex}"))
            }
            2 => {
                let index = self.store(Mem::Sr, hex, len)?;
                Some(format!("+CDSI: \"SR\",{index}"))
            }
            _ => None,
        }
    }

    /// The PDU typed after the `> ` prompt (without the Ctrl-Z).
    pub fn handle_pdu(&mut self, hex: &str, scts_unix: i64) -> Reply {
        let Some(announced) = self.awaiting_pdu.take() else {
            return error();
        };
        let hex = hex.trim();
        let decoded = match codec::decode_submit(hex) {
            Ok(d) => d,
            Err(_) => return cms(304),
        };
        if decoded.tpdu_len != announced {
            // Real modems reject a length that does not match the TPDU.
            return cms(304);
        }
        // An SMSC length of 0: the PDU leaves the SMS centre to the SIM's.
        if hex.starts_with("00") && self.smsc.is_empty() {
            return cms(CMS_SMSC_ADDRESS_UNKNOWN);
        }
        if !self.coverage {
            return cms(CMS_NO_NETWORK_SERVICE);
        }
        if self.fail_next.is_some() && self.fail_after > 0 {
            self.fail_after -= 1;
        } else if let Some((line, left)) = self.fail_next.as_mut() {
            let line = line.clone();
            *left -= 1;
            if *left == 0 {
                self.fail_next = None;
            }
            let mut reply = Reply::now(format!("\r\n{line}\r\n"));
            reply.delay = self.behaviour.network_delay;
            return reply;
        }
        let mr = self.next_mr;
        self.next_mr = self.next_mr.wrapping_add(1);
        let part = SentPart {
            to: decoded.to,
            text: decoded.text,
            mr,
            concat: decoded.concat,
            status_report_requested: decoded.status_report_requested,
            pdu_hex: hex.to_string(),
        };
        let mut urcs = Vec::new();
        if part.status_report_requested && self.behaviour.delivery_reports {
            urcs.extend(self.status_report(&part, scts_unix));
        }
        self.sent.push(part);
        let text = if self.unreadable_mrs > 0 {
            self.unreadable_mrs -= 1;
            "\r\nOK\r\n".to_string()
        } else {
            format!("\r\n+CMGS: {mr}\r\n\r\nOK\r\n")
        };
        Reply {
            delay: self.behaviour.network_delay,
            text,
            urcs,
        }
    }

    /// One command line (without the `\r`).
    pub fn handle_line(&mut self, line: &str) -> Reply {
        let line = line.trim();
        if line.is_empty() {
            return Reply::default();
        }
        let upper = line.to_ascii_uppercase();
        let Some(cmd) = upper.strip_prefix("AT") else {
            return error();
        };
        self.commands_seen += 1;
        *self.lines_seen.entry(cmd.to_string()).or_default() += 1;
        if self.unacknowledged_direct && !cmd.starts_with("+CNMA") {
            // Phase 2+ and no acknowledgement came: the modem turns the
            // routing to the host off (27.005 3.4.1).
            self.unacknowledged_direct = false;
            self.cnmi_mt = 0;
            self.cnmi_ds = 0;
        }
        let original_args = &line[2..];
        match cmd {
            "" => ok(),
            "Z" => {
                self.echo = self.behaviour.echo_default;
                ok()
            }
            "E0" => {
                self.echo = false;
                ok()
            }
            "E1" | "E" => {
                self.echo = true;
                ok()
            }
            "I" => info("SimModem PhoneRelay 1.0"),
            // S3, the command line termination character: what a host's
            // sync probe after a timeout asks for (V.250 6.2.1).
            "S3?" => info("013"),
            "+CGMI" => info("PhoneRelay"),
            _ if cmd.starts_with("+CMEE=") => ok(),
            "+CMGF=0" => ok(),
            "+CMGF?" => info("+CMGF: 0"),
            "+CPIN?" => {
                if std::mem::take(&mut self.status_answer_to_lose) {
                    Reply::now("")
                } else if self.pin_ok {
                    info("+CPIN: READY")
                } else if self.wrong_pins >= WRONG_PINS_TO_PUK {
                    info("+CPIN: SIM PUK")
                } else {
                    info("+CPIN: SIM PIN")
                }
            }
            "+CCID" => match &self.iccid {
                Some(iccid) => info(&format!("+CCID: {iccid}")),
                None => error(),
            },
            _ if cmd.starts_with("+CPIN=") => {
                self.pin_commands += 1;
                let given = original_args[6..].trim().trim_matches('"');
                if let Some(refusal) = self.take_pin_refusal() {
                    return refusal;
                }
                let answer = match &self.behaviour.pin {
                    None => ok(),
                    Some(_) if self.pin_ok => cme(3),
                    // SIM PUK required: a PIN alone is not checked.
                    Some(_) if self.wrong_pins >= WRONG_PINS_TO_PUK => cme(12),
                    Some(pin) => {
                        self.pin_attempts += 1;
                        self.status_answer_to_lose = self.lose_status_after_pin;
                        if pin == given {
                            self.pin_ok = true;
                            self.wrong_pins = 0;
                            match &self.right_pin_reply {
                                Some(reply) => Reply::now(format!("\r\n{reply}\r\n")),
                                None => ok(),
                            }
                        } else {
                            self.wrong_pins += 1;
                            Reply::now(format!("\r\n{}\r\n", self.wrong_pin_reply))
                        }
                    }
                };
                if self.lose_pin_answers {
                    Reply::now("")
                } else {
                    Reply {
                        delay: self.pin_check_delay,
                        ..answer
                    }
                }
            }
            "+CREG?" => info(&format!("+CREG: 0,{}", self.reg_stat())),
            "+CEREG?" => info(&format!("+CEREG: 0,{}", self.reg_stat())),
            "+CGREG?" => info(&format!("+CGREG: 0,{}", self.reg_stat())),
            _ if cmd.starts_with("+CREG=") || cmd.starts_with("+CEREG=") => {
                if !self.behaviour.registration_urcs {
                    return error();
                }
                if let Some(n) = cmd.strip_prefix("+CREG=") {
                    self.creg_urcs = n.trim() != "0";
                }
                ok()
            }
            "+COPS?" => {
                if self.pin_ok {
                    info("+COPS: 0,0,\"SimNet\",7")
                } else {
                    info("+COPS: 0")
                }
            }
            "+CSQ" => info("+CSQ: 21,99"),
            "+CSMS?" => info(&format!("+CSMS: {},1,1,1", self.message_service)),
            _ if cmd.starts_with("+CSMS=") => match &cmd["+CSMS=".len()..] {
                "0" | "1" => {
                    self.message_service = cmd.ends_with('1') as u8;
                    info("+CSMS: 1,1,1")
                }
                _ => cms(303),
            },
            "+CNMA" if self.unacknowledged_direct => {
                self.unacknowledged_direct = false;
                ok()
            }
            // No acknowledgement expected.
            "+CNMA" => cms(340),
            "+CSCA?" => self
                .take_smsc_query_refusal()
                .unwrap_or_else(|| info(&format!("+CSCA: \"{}\",145", self.smsc))),
            _ if cmd.starts_with("+CSCA=") => {
                let number = original_args["+CSCA=".len()..].split(',').next();
                self.smsc = number.unwrap_or("").trim().trim_matches('"').to_string();
                ok()
            }
            "+CPMS?" if self.refuses_storage_query => {
                self.storage_queries_refused += 1;
                error()
            }
            "+CPMS?" => info(&format!(
                "+CPMS: \"{}\",{},{},\"{}\",{},{},\"{}\",{},{}",
                self.mem1.name(),
                self.mem_len(self.mem1),
                self.total(self.mem1),
                self.mem3.name(),
                self.mem_len(self.mem3),
                self.total(self.mem3),
                self.mem3.name(),
                self.mem_len(self.mem3),
                self.total(self.mem3)
            )),
            _ if cmd.starts_with("+CPMS=") => {
                if !self.pin_ok {
                    return cms(310);
                }
                if !self.behaviour.selects_memory {
                    return cms(302);
                }
                let mems: Vec<Option<Mem>> = cmd[6..].split(',').map(Mem::parse).collect();
                // A modem that hands reports over has no memory for them.
                if !self.behaviour.stores_status_reports && mems.contains(&Some(Mem::Sr)) {
                    return cms(302);
                }
                match mems.first() {
                    Some(Some(mem)) if mems.iter().all(Option::is_some) => {
                        self.mem1 = *mem;
                        if let Some(Some(receive)) = mems.get(2) {
                            self.mem3 = *receive;
                        }
                        let (u, t) = (self.mem_len(*mem), self.total(*mem));
                        let (s, r) = (self.mem_len(self.mem3), self.total(self.mem3));
                        info(&format!("+CPMS: {u},{t},{s},{r},{s},{r}"))
                    }
                    _ => cms(302),
                }
            }
            _ if cmd.starts_with("+CNMI=") => {
                let fields: Vec<u8> = cmd[6..]
                    .split(',')
                    .map(|f| f.trim().parse().unwrap_or(0))
                    .collect();
                let mt = fields.get(1).copied().unwrap_or(0);
                let ds = fields.get(3).copied().unwrap_or(0);
                if mt > 1 || ds > 2 || (ds == 2 && !self.behaviour.stores_status_reports) {
                    // Only store-and-indicate is simulated for messages: a
                    // driver asking for direct delivery gets what many
                    // modems answer, as does one asking a modem without
                    // report storage to store reports.
                    return cms(303);
                }
                self.cnmi_mt = mt;
                self.cnmi_ds = ds;
                ok()
            }
            _ if cmd.starts_with("+CMGS=") => {
                if !self.pin_ok {
                    return cms(310);
                }
                match cmd[6..].trim().parse::<usize>() {
                    Ok(n) if (1..=164).contains(&n) => {
                        self.awaiting_pdu = Some(n);
                        Reply {
                            delay: self.prompt_delay,
                            ..Reply::now("\r\n> ")
                        }
                    }
                    _ => cms(304),
                }
            }
            _ if cmd.starts_with("+CMGL=") => {
                if !self.pin_ok {
                    return cms(310);
                }
                if let Some(code) = self.refuse_listings {
                    self.listings_refused += 1;
                    return cms(code);
                }
                let wanted: u8 = match cmd[6..].trim().parse() {
                    Ok(n) if n <= 4 => n,
                    _ => return cms(302),
                };
                let mut out = String::new();
                for (index, mem, in_mem) in self.listed(self.mem1) {
                    let Some(stored) = self.mem_mut(mem).get_mut(&in_mem) else {
                        continue;
                    };
                    if wanted == 4 || stored.stat == wanted {
                        let shown = stored.shown();
                        out.push_str(&format!(
                            "\r\n+CMGL: {index},{},,{}\r\n{shown}",
                            stored.stat, stored.tpdu_len
                        ));
                        stored.stat = stored.stat.max(1);
                    }
                }
                out.push_str("\r\n\r\nOK\r\n");
                Reply::now(out)
            }
            _ if cmd.starts_with("+CMGR=") => {
                if !self.pin_ok {
                    return cms(310);
                }
                let Ok(index) = cmd[6..].trim().parse::<u32>() else {
                    return cms(321);
                };
                let (mem, index) = self.resolve(self.mem1, index);
                match self.mem_mut(mem).get_mut(&index) {
                    Some(stored) => {
                        let shown = stored.shown();
                        let text =
                            format!("+CMGR: {},,{}\r\n{shown}", stored.stat, stored.tpdu_len);
                        stored.stat = stored.stat.max(1);
                        info(&text)
                    }
                    None => match self.empty_read {
                        EmptyRead::InvalidIndex => cms(321),
                        EmptyRead::BareOk => ok(),
                        EmptyRead::EmptyHeader => info("+CMGR: 0,,0"),
                    },
                }
            }
            _ if cmd.starts_with("+CMGD=") => {
                if !self.pin_ok {
                    return cms(310);
                }
                let mut args = cmd[6..].split(',');
                let index: u32 = args.next().and_then(|i| i.trim().parse().ok()).unwrap_or(0);
                let flag: u8 = args.next().and_then(|f| f.trim().parse().ok()).unwrap_or(0);
                if self.keep_deleted {
                    return ok();
                }
                match flag {
                    0 => {
                        let (mem, index) = self.resolve(self.mem1, index);
                        if self.mem_mut(mem).remove(&index).is_none() && index == 0 {
                            return cms(321);
                        }
                    }
                    4 if self.mem1 == Mem::Mt => {
                        self.me.clear();
                        self.sm.clear();
                    }
                    4 => self.mem_mut(self.mem1).clear(),
                    _ => return cms(302),
                }
                // Room again: the phone tells the network (SMMA), which
                // delivers what it held.
                Reply {
                    urcs: self.deliver_held(),
                    ..ok()
                }
            }
            _ => error(),
        }
    }

    fn reg_stat(&self) -> u8 {
        // Registered (home) once the SIM is unlocked and the network is in
        // reach; "searching" otherwise.
        if self.pin_ok && self.coverage { 1 } else { 2 }
    }

    fn mem_len(&self, mem: Mem) -> usize {
        match mem {
            Mem::Sm => self.sm.len(),
            Mem::Me => self.me.len(),
            Mem::Sr => self.sr.len(),
            // Its own memory alone, as its total says.
            Mem::Mt if self.mt_without_sim => self.me.len(),
            Mem::Mt => self.sm.len() + self.me.len(),
        }
    }

    /// Slots in `mem` (`+CPMS`'s total).
    fn total(&self, mem: Mem) -> u32 {
        match mem {
            Mem::Mt if !self.mt_without_sim => 2 * self.behaviour.capacity,
            _ => self.behaviour.capacity,
        }
    }

    /// The memory that holds what `index` of `mem` names, and its index
    /// there: "MT"'s indexes past the modem memory's slots are the SIM's
    /// ([`Mem::Mt`]).
    fn resolve(&self, mem: Mem, index: u32) -> (Mem, u32) {
        let capacity = self.behaviour.capacity;
        match mem {
            Mem::Mt if self.mt_without_sim => (Mem::Me, index),
            Mem::Mt if index >= self.first_index + capacity => (Mem::Sm, index - capacity),
            Mem::Mt => (Mem::Me, index),
            _ => (mem, index),
        }
    }

    /// What a listing of `mem` shows, in order: each slot's index as `mem`
    /// names it, and the memory and index that hold it.
    fn listed(&self, mem: Mem) -> Vec<(u32, Mem, u32)> {
        let capacity = self.behaviour.capacity;
        let own = |mem: Mem, map: &BTreeMap<u32, Stored>, offset: u32| {
            map.keys()
                .map(move |&index| (index + offset, mem, index))
                .collect::<Vec<_>>()
        };
        match mem {
            Mem::Sm => own(Mem::Sm, &self.sm, 0),
            Mem::Me => own(Mem::Me, &self.me, 0),
            Mem::Sr => own(Mem::Sr, &self.sr, 0),
            Mem::Mt if self.mt_without_sim => own(Mem::Me, &self.me, 0),
            Mem::Mt => {
                let mut both = own(Mem::Me, &self.me, 0);
                both.extend(own(Mem::Sm, &self.sm, capacity));
                both
            }
        }
    }

    /// The map of one memory; for "MT", the modem memory's, which "MT"
    /// names first (an index of "MT" goes through [`Self::resolve`]).
    fn mem_mut(&mut self, mem: Mem) -> &mut BTreeMap<u32, Stored> {
        match mem {
            Mem::Sm => &mut self.sm,
            Mem::Me | Mem::Mt => &mut self.me,
            Mem::Sr => &mut self.sr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A single-part SMS-DELIVER as an SMSC stores it.
    const PDU: &str = "0004038121F300001170000000000003E8329B";

    fn modem_with_capacity(capacity: u32) -> SimModem {
        let mut modem = SimModem::new(Behaviour {
            network_delay: Duration::ZERO,
            baud_limit: None,
            echo_default: false,
            urc_noise: false,
            delivery_reports: false,
            pin: None,
            registration_urcs: true,
            stores_status_reports: true,
            message_service: 0,
            selects_memory: true,
            capacity,
        });
        assert!(modem.handle_line("AT+CNMI=2,1,0,0,0").text.contains("OK"));
        modem
    }

    /// An "MT" that leaves the SIM out counts its own memory alone: a
    /// class 2 message on the SIM counted as well, the memory read full
    /// while it had room.
    #[test]
    fn an_mt_without_the_sim_counts_none_of_the_sim_s_messages() {
        let mut modem = modem_with_capacity(2);
        modem.mt_without_sim = true;
        assert!(modem.inject_raw_into(Mem::Sm, PDU).0);
        assert!(
            modem
                .handle_line("AT+CPMS=\"MT\",\"MT\",\"MT\"")
                .text
                .contains("+CPMS: 0,2,0,2,0,2"),
        );
    }

    #[test]
    fn a_full_memory_holds_what_comes_and_cpms_counts_it() {
        let mut modem = modem_with_capacity(2);
        assert_eq!(
            modem.inject_raw(PDU),
            (true, vec!["+CMTI: \"SM\",1".into()])
        );
        assert!(modem.inject_raw(PDU).0);
        assert_eq!(modem.inject_raw(PDU), (false, Vec::new()), "held");
        assert_eq!(modem.stored_count(), (2, 0, 1));
        assert_eq!(
            modem.handle_line("AT+CPMS?").text,
            "\r\n+CPMS: \"SM\",2,2,\"SM\",2,2,\"SM\",2,2\r\n\r\nOK\r\n"
        );
        assert_eq!(
            modem.handle_line("AT+CPMS=\"SM\",\"SM\",\"SM\"").text,
            "\r\n+CPMS: 2,2,2,2,2,2\r\n\r\nOK\r\n"
        );
        // Room again, whoever made it: the network delivers what it held.
        assert_eq!(
            modem.delete_stored(1),
            (true, vec!["+CMTI: \"SM\",1".into()])
        );
        assert_eq!(modem.stored_count(), (2, 0, 0));
    }

    /// "MT" names the modem memory's slots first and the SIM's after
    /// them: one message, two names, one slot.
    #[test]
    fn mt_numbers_the_sim_s_slots_after_the_modem_s() {
        let mut modem = modem_with_capacity(2);
        assert!(modem.inject_raw_into(Mem::Sm, PDU).0);
        assert!(modem.handle_line("AT+CPMS=\"MT\"").text.contains("OK"));
        let listed = modem.handle_line("AT+CMGL=4").text;
        assert!(listed.contains("+CMGL: 3,"), "{listed}");
        assert!(modem.handle_line("AT+CMGR=3").text.contains(PDU));
        assert!(modem.handle_line("AT+CMGD=3").text.contains("OK"));
        assert_eq!(modem.stored_count(), (0, 0, 0));
        // Received into "MT": the modem memory first.
        assert!(
            modem
                .handle_line("AT+CPMS=\"MT\",\"MT\",\"MT\"")
                .text
                .contains("+CPMS: 0,4,0,4,0,4")
        );
        assert_eq!(
            modem.inject_raw(PDU),
            (true, vec!["+CMTI: \"MT\",1".into()])
        );
        assert_eq!(modem.stored_count(), (1, 0, 0));
    }

    /// A modem whose "MT" leaves the SIM out lists under "MT" only its
    /// own memory's slots.
    #[test]
    fn mt_without_the_sim_lists_the_modem_s_slots_only() {
        let mut modem = modem_with_capacity(2);
        modem.mt_without_sim = true;
        assert!(modem.inject_raw_into(Mem::Sm, PDU).0);
        assert!(modem.handle_line("AT+CPMS=\"MT\"").text.contains("OK"));
        assert!(!modem.handle_line("AT+CMGL=4").text.contains("+CMGL:"));
        assert!(modem.handle_line("AT+CPMS=\"SM\"").text.contains("OK"));
        assert!(modem.handle_line("AT+CMGL=4").text.contains("+CMGL: 1,"));
    }

    #[test]
    fn a_host_delete_delivers_what_the_network_held() {
        let mut modem = modem_with_capacity(1);
        assert!(modem.inject_raw(PDU).0);
        let injected = modem.inject_inbound("+15551230001", "waits", 1_700_000_000);
        assert_eq!((injected.stored, injected.held), (0, 1));
        let reply = modem.handle_line("AT+CMGD=1");
        assert_eq!(reply.urcs, ["+CMTI: \"SM\",1"]);
        assert_eq!(modem.stored_count(), (1, 0, 0));
    }
}
