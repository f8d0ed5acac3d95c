//! A simulated GSM modem behind a real pseudo-terminal.
//!
//! The driver opens [`SimHandle::path`] (a symlink to the pty slave, like a
//! udev `/dev/serial/by-id` link) with the same serial code it uses for USB
//! modems. The simulator paces bytes at the emulated baud rate in both
//! directions, so throughput measured against it is what a real line allows.

mod control;
mod modem;
mod pty;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use control::{
    CONTROL_HELP, ModemSimArgs, control_command, run_modem_sim_cli, serve_control_socket,
};
pub use modem::{Behaviour, EmptyRead, Injected, SIM_CAPACITY, SentPart};
use modem::{CTRL_Z, ESC, SimModem};
use pty::{Pty, PtyRead};

use crate::config::SimSettings;

/// How often the simulator looks for a host while none has the port open.
const NO_HOST_POLL: Duration = Duration::from_millis(5);
/// Vendor noise cadence when `urc_noise` is on.
const NOISE_INTERVAL: Duration = Duration::from_millis(150);
/// Time for the host to read what was written before the pty is closed on
/// unplug; a real unplug loses it, but tests need a deterministic cut.
const UNPLUG_DRAIN: Duration = Duration::from_millis(30);

enum Ctl {
    Urcs(Vec<String>),
    Unplug,
    Replug,
    BootFlood(usize),
    RestartInPlace,
    RestartSilently,
}

struct Shared {
    modem: Mutex<SimModem>,
    /// Not answering at all (hung firmware), but the port stays.
    muted: std::sync::atomic::AtomicBool,
    plugged: std::sync::atomic::AtomicBool,
}

/// (recipient, reference) of a long message's parts; `None` for single parts.
type ConcatKey = Option<(String, u16)>;

/// Control of a running simulator. Cheap to clone.
#[derive(Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
    ctl: mpsc::UnboundedSender<Ctl>,
    link: PathBuf,
}

/// A message the simulated network accepted, its parts joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    pub to: String,
    pub text: String,
    /// TP-MR of each part, in part order.
    pub mrs: Vec<u8>,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl SimHandle {
    /// The path a host opens: a symlink to the current pty slave. It
    /// disappears on unplug and comes back (to a new pty) on replug.
    pub fn path(&self) -> &Path {
        &self.link
    }

    fn modem(&self) -> MutexGuard<'_, SimModem> {
        self.shared.modem.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A message from `from` reaches the SIM (split and encoded as the
    /// network would); returns how many parts were stored, and how many
    /// the network holds because the SIM is full.
    pub fn inject_inbound(&self, from: &str, text: &str) -> Injected {
        // Counted under the one lock that stores them: a count of the
        // memory taken afterwards would include the host's deletes in
        // between.
        let mut injected = self.modem().inject_inbound(from, text, unix_now());
        let urcs = std::mem::take(&mut injected.urcs);
        if !urcs.is_empty() {
            let _ = self.ctl.send(Ctl::Urcs(urcs));
        }
        injected
    }

    /// A raw PDU (hex as a modem prints it, SMSC part first) reaches the
    /// SIM unchanged, e.g. one with broken lengths as real SMSCs sometimes
    /// store; returns whether it was stored.
    /// While the memory is full, the network holds it instead, and
    /// delivers it once there is room.
    pub fn inject_raw_pdu(&self, hex: &str) -> bool {
        let (stored, urcs) = self.modem().inject_raw(hex);
        self.send_urcs(urcs);
        stored
    }

    fn send_urcs(&self, urcs: Vec<String>) {
        if !urcs.is_empty() {
            let _ = self.ctl.send(Ctl::Urcs(urcs));
        }
    }

    /// As [`Self::inject_raw_pdu`], with no `+CMTI` for it: a message
    /// stored while nothing announced it (a phone the SIM was in, a modem
    /// that lost its `AT+CNMI` in a reset); only a listing finds it.
    pub fn inject_raw_pdu_unannounced(&self, hex: &str) -> bool {
        self.modem().inject_raw(hex).0
    }

    /// As [`Self::inject_raw_pdu_into`], with no `+CMTI` for it: a class 2
    /// message stored while nothing announced it (the daemon down, a
    /// modem that lost its `AT+CNMI` in a reset).
    pub fn inject_raw_pdu_into_unannounced(&self, mem: &str, hex: &str) -> bool {
        let mem = modem::Mem::parse(mem).expect("a simulated memory");
        self.modem().inject_raw_into(mem, hex).0
    }

    /// As [`Self::inject_raw_pdu`], into memory `mem` ("SM", "ME") whatever
    /// the host chose with `AT+CPMS`, as a class 2 message is stored on the
    /// SIM.
    pub fn inject_raw_pdu_into(&self, mem: &str, hex: &str) -> bool {
        let mem = modem::Mem::parse(mem).expect("a simulated memory");
        let (stored, urcs) = self.modem().inject_raw_into(mem, hex);
        self.send_urcs(urcs);
        stored
    }

    /// The modem hands a message over without storing it: `+CMT: ,<len>`
    /// and the PDU (hex, SMSC part first) as given, valid or not, as with
    /// `AT+CNMI=…,2` (which the simulated modem refuses: this stands for
    /// a modem that routes some messages directly anyway, e.g. class 0).
    /// With `short_header`, `+CMT: <len>` without the alpha field, as some
    /// modems write it.
    pub fn deliver_direct(&self, hex: &str, short_header: bool) {
        let hex = hex.trim().to_ascii_uppercase();
        let len = crate::codec::tpdu_len(&hex).unwrap_or(0);
        let header = if short_header {
            format!("+CMT: {len}")
        } else {
            format!("+CMT: ,{len}")
        };
        self.send_unsolicited(vec![format!("{header}\r\n{hex}")]);
    }

    /// Lines sent to the host as they are, unsolicited: whatever a modem
    /// might say on its own (an unknown URC, a broken header).
    pub fn send_unsolicited(&self, lines: Vec<String>) {
        let _ = self.ctl.send(Ctl::Urcs(lines));
    }

    /// Every accepted part, in order.
    pub fn sent_parts(&self) -> Vec<SentPart> {
        self.modem().sent.clone()
    }

    /// Accepted messages with the parts of long ones joined (by reference),
    /// in the order their first part was accepted.
    pub fn sent_messages(&self) -> Vec<SentMessage> {
        let parts = self.sent_parts();
        let mut out: Vec<(ConcatKey, Vec<(u8, SentPart)>)> = Vec::new();
        for part in parts {
            match part.concat {
                Some((reference, _total, seq)) => {
                    let key = Some((part.to.clone(), reference));
                    let open = out.iter_mut().rev().find(|(k, parts)| {
                        *k == key
                            && parts.len() < part.concat.map(|c| c.1 as usize).unwrap_or(1)
                            && !parts.iter().any(|(s, _)| *s == seq)
                    });
                    match open {
                        Some((_, parts)) => parts.push((seq, part)),
                        None => out.push((key, vec![(seq, part)])),
                    }
                }
                None => out.push((None, vec![(1, part)])),
            }
        }
        out.into_iter()
            .map(|(_, mut parts)| {
                parts.sort_by_key(|(seq, _)| *seq);
                SentMessage {
                    to: parts[0].1.to.clone(),
                    text: parts.iter().map(|(_, p)| p.text.as_str()).collect(),
                    mrs: parts.iter().map(|(_, p)| p.mr).collect(),
                }
            })
            .collect()
    }

    /// The TP-MR the network gives the next part it accepts.
    pub fn set_next_mr(&self, mr: u8) {
        self.modem().set_next_mr(mr);
    }

    /// The next `count` accepted sends are answered with a bare `OK`, their
    /// `+CMGS: <mr>` line lost.
    pub fn lose_next_mrs(&self, count: usize) {
        self.modem().lose_next_mrs(count);
    }

    /// The next `count` sends are answered `+CMS ERROR: code`.
    pub fn fail_next_sends(&self, code: u16, count: usize) {
        self.modem().fail_next_sends(code, count);
    }

    /// The next `count` sends are answered with the final result line
    /// `reply`, e.g. `+CME ERROR: 30` or a bare `ERROR`.
    pub fn fail_next_sends_with(&self, reply: &str, count: usize) {
        self.modem().fail_next_sends_with(reply, count);
    }

    /// After `accepted` more sends go through, the `count` after them are
    /// answered `+CMS ERROR: code`.
    pub fn fail_sends_after(&self, accepted: usize, code: u16, count: usize) {
        self.modem().fail_sends_after(accepted, code, count);
    }

    /// Put the network in or out of reach: out of reach, the modem stays
    /// plugged in and answering but reports itself not registered, and
    /// every send gets `+CMS ERROR: 331` (a basement, a dead cell).
    pub fn set_coverage(&self, coverage: bool) {
        let urc = self.modem().set_coverage(coverage);
        if let Some(urc) = urc {
            let _ = self.ctl.send(Ctl::Urcs(vec![urc]));
        }
    }

    /// The SIM resets in place (a SIM refresh) and asks for its PIN again,
    /// with no `RDY` from the modem, which leaves the network meanwhile.
    pub fn relock_sim(&self) {
        let urc = self.modem().relock_sim();
        if let Some(urc) = urc {
            let _ = self.ctl.send(Ctl::Urcs(vec![urc]));
        }
    }

    /// Whether a PIN the SIM checks is answered at all.
    pub fn set_lose_pin_answers(&self, lose: bool) {
        self.modem().lose_pin_answers = lose;
    }

    /// How an `AT+CMGR` of an empty slot is answered from now on.
    pub fn set_empty_read(&self, answer: EmptyRead) {
        self.modem().empty_read = answer;
    }

    /// How long the SIM takes to check a PIN before answering it.
    pub fn set_pin_check_delay(&self, delay: Duration) {
        self.modem().pin_check_delay = delay;
    }

    /// Answer `AT+CPMS?` with `ERROR` (`true`), as a modem that cannot say
    /// its fill level, or with the level again (`false`).
    pub fn refuse_storage_query(&self, refuse: bool) {
        self.modem().refuses_storage_query = refuse;
    }

    /// How many `AT+CPMS?` were answered `ERROR` so far: the driver has
    /// taken in every one but the last.
    pub fn storage_queries_refused(&self) -> u64 {
        self.modem().storage_queries_refused
    }

    /// The next `count` PINs are answered with the final result line
    /// `reply` (`+CME ERROR: 14`, SIM busy) without the SIM checking them:
    /// no try is used.
    pub fn refuse_next_pins(&self, reply: &str, count: usize) {
        self.modem().refuse_next_pins(reply, count);
    }

    /// The next `count` `AT+CSCA?` queries are answered with the final
    /// result line `reply` (`+CME ERROR: 14`), as a SIM still loading
    /// answers them for a few seconds after its PIN.
    pub fn refuse_next_smsc_queries(&self, reply: &str, count: usize) {
        self.modem().refuse_next_smsc_queries(reply, count);
    }

    /// The final result line a wrong PIN gets: `+CME ERROR: 16` unless
    /// set, e.g. to a bare `ERROR` as some modems answer.
    pub fn set_wrong_pin_reply(&self, reply: &str) {
        self.modem().wrong_pin_reply = reply.to_string();
    }

    /// The final result line a right PIN gets instead of `OK`, e.g. a
    /// bare `ERROR` as some modems answer though the SIM took it.
    pub fn set_right_pin_reply(&self, reply: &str) {
        self.modem().right_pin_reply = Some(reply.to_string());
    }

    /// Whether the first `AT+CPIN?` after a PIN the SIM checked goes
    /// unanswered.
    pub fn set_lose_status_after_pin(&self, lose: bool) {
        self.modem().lose_status_after_pin = lose;
    }

    /// Another SIM in the slot, as `AT+CCID` names it; `None` for a modem
    /// that answers `AT+CCID` with `ERROR`.
    pub fn set_iccid(&self, iccid: Option<&str>) {
        self.modem().iccid = iccid.map(str::to_string);
    }

    /// How many `AT+CPIN=<pin>` commands the modem received, whether the
    /// SIM checked them or not.
    pub fn pin_commands_received(&self) -> u32 {
        self.modem().pin_commands
    }

    /// How many PINs the SIM has checked, right or wrong.
    pub fn pin_attempts(&self) -> u32 {
        self.modem().pin_attempts
    }

    /// Whether `AT+CMGD` is answered `OK` without removing anything, so
    /// the next read of the SIM finds committed messages again.
    pub fn set_keep_deleted(&self, keep: bool) {
        self.modem().keep_deleted = keep;
    }

    /// Whether "MT" is the modem's memory alone rather than the modem's
    /// and the SIM's under one numbering, as on some modems: a message
    /// stored in "SM" is then listed under "SM" only.
    pub fn set_mt_without_sim(&self, without: bool) {
        self.modem().mt_without_sim = without;
    }

    /// Number storage from `first` (0 as Quectel modems do, 1 as most);
    /// for messages stored from now on.
    pub fn set_first_index(&self, first: u32) {
        self.modem().first_index = first;
    }

    /// Time the modem takes to show the `> ` prompt after `AT+CMGS=<n>`.
    pub fn set_prompt_delay(&self, delay: Duration) {
        self.modem().prompt_delay = delay;
    }

    /// Time the network takes to accept each part.
    pub fn set_delay(&self, delay: Duration) {
        self.modem().behaviour.network_delay = delay;
    }

    pub fn deliver_status_reports(&self, on: bool) {
        self.modem().behaviour.delivery_reports = on;
    }

    /// TP-ST of the status reports for parts accepted from now on: 0x00
    /// delivered, 0x20..=0x3F an interim report (the SMSC still trying),
    /// 0x40 and up a failure.
    pub fn set_report_status(&self, status: u8) {
        self.modem().report_status = status;
    }

    /// Messages and status reports still stored on the simulated SIM, and
    /// inbound parts the network holds until it has room.
    pub fn stored(&self) -> (usize, usize, usize) {
        self.modem().stored_count()
    }

    /// Someone deletes the message in slot `index` of the SIM's own memory,
    /// outside the driver (or a driver whose deletes were cut short had
    /// freed it); returns whether there was one. The network then delivers
    /// what it held for want of room, as it does after any delete.
    pub fn delete_stored(&self, index: u32) -> bool {
        let (deleted, urcs) = self.modem().delete_stored(index);
        self.send_urcs(urcs);
        deleted
    }

    /// Whether the message in slot `index` of the SIM's own memory has been
    /// read by the host (`AT+CMGR`, or listed by `AT+CMGL`); `None` if the
    /// slot is empty.
    pub fn stored_was_read(&self, index: u32) -> Option<bool> {
        self.modem().stored_was_read(index)
    }

    /// The next `count` reads of slot `index` of memory `mem` ("SM", "ME"),
    /// listed or read with `AT+CMGR`, come damaged on the serial line: a
    /// stray CR cuts the PDU line short (at a place that moves from read
    /// to read) while its header gives the whole length. Returns whether
    /// the slot holds a message.
    pub fn damage_next_reads(&self, mem: &str, index: u32, count: u32) -> bool {
        let mem = modem::Mem::parse(mem).expect("a simulated memory");
        self.modem().damage_next_reads(mem, index, count)
    }

    /// As [`Self::damage_next_reads`], for the next message stored, so that
    /// even the read its `+CMTI` brings at once comes damaged.
    pub fn damage_next_stored(&self, count: u32) {
        self.modem().damage_next_stored = count;
    }

    /// Someone deletes everything stored on the SIM, outside the driver.
    pub fn clear_stored(&self) {
        let urcs = self.modem().clear_stored();
        if !urcs.is_empty() {
            let _ = self.ctl.send(Ctl::Urcs(urcs));
        }
    }

    /// The SMS centre the SIM holds (`AT+CSCA?`), `""` for a SIM with
    /// none, as some prepaid SIMs come: every send whose PDU names no
    /// centre is then answered `+CMS ERROR: 330`. `AT+CSCA=` sets it.
    pub fn set_smsc(&self, smsc: &str) {
        self.modem().smsc = smsc.to_string();
    }

    /// The SMS centre the SIM holds now.
    pub fn smsc(&self) -> String {
        self.modem().smsc.clone()
    }

    /// How many command lines answered so far start with `prefix`, the
    /// text after `AT` in capitals (`"Z"` counts every `ATZ`).
    pub fn lines_seen(&self, prefix: &str) -> u64 {
        self.modem().lines_seen(prefix)
    }

    /// The modem is in SMS text entry, as a host that wrote `AT+CMGS=<n>`
    /// and got its prompt left it (killed before the PDU): everything
    /// that comes goes into the PDU, answered by nothing, until an ESC
    /// (cancel) or Ctrl-Z (send).
    /// A real modem keeps it when the host closes the port, as from now
    /// on this one does.
    pub fn leave_in_text_entry(&self) {
        let mut modem = self.modem();
        modem.awaiting_pdu = Some(1);
        modem.text_entry_outlives_host = true;
    }

    /// Answer every `AT+CMGL` with `+CMS ERROR: code` (314, SIM busy, as
    /// while a SIM loads), or list again (`None`).
    pub fn refuse_listings(&self, code: Option<u16>) {
        self.modem().refuse_listings = code;
    }

    /// How many `AT+CMGL` were refused so far.
    pub fn listings_refused(&self) -> u64 {
        self.modem().listings_refused
    }

    /// AT commands answered so far.
    pub fn commands_seen(&self) -> u64 {
        self.modem().commands_seen
    }

    /// USB unplug: the pty closes and the path disappears. The SIM's
    /// contents survive; the modem's settings do not.
    pub fn disconnect(&self) {
        let _ = self.ctl.send(Ctl::Unplug);
    }

    /// Plug back in: a new pty behind the same path.
    pub fn reconnect(&self) {
        let _ = self.ctl.send(Ctl::Replug);
    }

    pub fn is_plugged(&self) -> bool {
        self.shared
            .plugged
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Firmware hang: the port stays but nothing is answered.
    pub fn set_muted(&self, muted: bool) {
        self.shared
            .muted
            .store(muted, std::sync::atomic::Ordering::SeqCst);
    }

    /// `count` ^BOOT lines at once, as some Huawei firmware does on reset.
    pub fn boot_flood(&self, count: usize) {
        let _ = self.ctl.send(Ctl::BootFlood(count));
    }

    /// The modem resets in place (watchdog, firmware crash): the port stays
    /// open, its settings go as on a power cycle, and it says `RDY`.
    pub fn restart_in_place(&self) {
        let _ = self.ctl.send(Ctl::RestartInPlace);
    }

    /// As [`Self::restart_in_place`] without `RDY`, as a SIM800 restarts
    /// after a brown-out: echo back on, `AT+CNMI` reverted, and only
    /// `Call Ready` and `SMS Ready` to say so.
    pub fn restart_silently(&self) {
        let _ = self.ctl.send(Ctl::RestartSilently);
    }
}

/// Behaviour from the config's `[sim]` table.
pub fn behaviour_from(settings: &SimSettings) -> Behaviour {
    Behaviour {
        network_delay: Duration::from_millis(settings.network_delay_ms),
        baud_limit: settings.baud_limit,
        echo_default: settings.echo,
        urc_noise: settings.urc_noise,
        delivery_reports: settings.delivery_reports,
        pin: settings.pin.as_ref().map(|p| p.expose().to_string()),
        registration_urcs: true,
        stores_status_reports: true,
        message_service: 0,
        selects_memory: true,
        capacity: SIM_CAPACITY,
    }
}

/// Start a simulator whose path is `link` (any free file name, e.g. in a
/// temp dir). It runs until `shutdown` fires.
pub fn spawn(
    behaviour: Behaviour,
    link: PathBuf,
    shutdown: CancellationToken,
) -> std::io::Result<SimHandle> {
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        modem: Mutex::new(SimModem::new(behaviour)),
        muted: false.into(),
        plugged: false.into(),
    });
    // Open the first pty here so the path exists when spawn returns.
    let pty = Pty::open()?;
    pty::replace_symlink(pty.slave_path(), &link)?;
    shared
        .plugged
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let task = SimTask {
        shared: shared.clone(),
        link: link.clone(),
        ctl: ctl_rx,
        shutdown,
        tx_free: Instant::now(),
        rx_free: Instant::now(),
        input: Vec::new(),
    };
    tokio::spawn(task.run(pty));
    Ok(SimHandle {
        shared,
        ctl: ctl_tx,
        link,
    })
}

struct SimTask {
    shared: Arc<Shared>,
    link: PathBuf,
    ctl: mpsc::UnboundedReceiver<Ctl>,
    shutdown: CancellationToken,
    /// When the emulated transmit line is next free.
    tx_free: Instant,
    /// When the bytes received so far have finished arriving on the
    /// emulated line.
    rx_free: Instant,
    input: Vec<u8>,
}

/// Line time of `bytes` at `baud` with 8N1 framing (10 bits a byte).
fn line_time(bytes: usize, baud: Option<u32>) -> Duration {
    match baud {
        Some(baud) if baud > 0 => {
            Duration::from_nanos(bytes as u64 * 10 * 1_000_000_000 / baud as u64)
        }
        _ => Duration::ZERO,
    }
}

impl SimTask {
    fn modem(&self) -> MutexGuard<'_, SimModem> {
        self.shared.modem.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn baud(&self) -> Option<u32> {
        self.modem().behaviour.baud_limit
    }

    async fn run(mut self, first: Pty) {
        let mut pty = Some(first);
        let mut noise = tokio::time::interval(NOISE_INTERVAL);
        let mut buf = vec![0u8; 4096];
        let mut host_present = false;
        loop {
            let Some(port) = pty.as_ref() else {
                // Unplugged: only control messages matter.
                tokio::select! {
                    _ = self.shutdown.cancelled() => break,
                    ctl = self.ctl.recv() => match ctl {
                        Some(Ctl::Replug) => match self.plug() {
                            Ok(p) => { pty = Some(p); host_present = false; }
                            Err(e) => tracing::warn!(error = %e, "simulator replug failed"),
                        },
                        Some(_) => {}
                        None => break,
                    },
                }
                continue;
            };
            let mut reregister = false;
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                read = port.read(&mut buf) => match read {
                    Ok(PtyRead::Data(n)) => {
                        host_present = true;
                        if self.shared.muted.load(std::sync::atomic::Ordering::SeqCst) {
                            continue;
                        }
                        let baud = self.baud();
                        let now = Instant::now();
                        self.rx_free = self.rx_free.max(now) + line_time(n, baud);
                        self.input.extend_from_slice(&buf[..n]);
                        if let Err(e) = self.process_input(port, &buf[..n]).await {
                            tracing::debug!(error = %e, "simulator write failed");
                        }
                    }
                    Ok(PtyRead::NoHost) => {
                        // The host closed the port: a modem keeps its state
                        // but anything half-typed is lost.
                        if host_present {
                            let outlives = self.modem().text_entry_outlives_host;
                            if !outlives {
                                self.input.clear();
                                self.modem().awaiting_pdu = None;
                            }
                            host_present = false;
                        }
                        tokio::time::sleep(NO_HOST_POLL).await;
                        reregister = true;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "simulator pty read failed");
                        tokio::time::sleep(NO_HOST_POLL).await;
                    }
                },
                ctl = self.ctl.recv() => match ctl {
                    Some(Ctl::Urcs(urcs)) => {
                        if host_present {
                            let _ = self.write_urcs(port, &urcs).await;
                        }
                    }
                    Some(Ctl::BootFlood(count)) => {
                        let urcs = vec!["^BOOT:12345678,0,0,0,75".to_string(); count];
                        let _ = self.write_urcs(port, &urcs).await;
                    }
                    Some(Ctl::RestartInPlace) => {
                        self.input.clear();
                        self.modem().reboot();
                        let _ = self.write_urcs(port, &["RDY".to_string()]).await;
                    }
                    Some(Ctl::RestartSilently) => {
                        self.input.clear();
                        self.modem().reboot();
                        let urcs = ["Call Ready".to_string(), "SMS Ready".to_string()];
                        let _ = self.write_urcs(port, &urcs).await;
                    }
                    Some(Ctl::Unplug) => {
                        tokio::time::sleep(UNPLUG_DRAIN).await;
                        pty = None;
                        let _ = std::fs::remove_file(&self.link);
                        self.shared.plugged.store(false, std::sync::atomic::Ordering::SeqCst);
                        self.input.clear();
                        self.modem().reboot();
                        tracing::info!("simulated modem unplugged");
                    }
                    Some(Ctl::Replug) => {}
                    None => break,
                },
                _ = noise.tick() => {
                    let noisy = self.modem().behaviour.urc_noise;
                    if noisy && host_present && self.input.is_empty() {
                        let _ = self.write_urcs(port, &["^RSSI: 21".to_string(), "^MODE: 5,4".to_string()]).await;
                    }
                }
            }
            if reregister
                && let Some(port) = pty.as_mut()
                && let Err(e) = port.reregister()
            {
                tracing::warn!(error = %e, "simulator cannot re-register its pty");
            }
        }
        // Only a link that is still its own: a simulator started since on
        // the same link (a daemon restarted in the same process, as tests
        // do) would lose its modem when this one's handle is dropped.
        let own = pty.as_ref().is_some_and(|pty| {
            std::fs::read_link(&self.link).is_ok_and(|to| to == pty.slave_path())
        });
        if own {
            let _ = std::fs::remove_file(&self.link);
        }
    }

    fn plug(&mut self) -> std::io::Result<Pty> {
        let pty = Pty::open()?;
        pty::replace_symlink(pty.slave_path(), &self.link)?;
        self.shared
            .plugged
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.tx_free = Instant::now();
        self.rx_free = Instant::now();
        tracing::info!(path = %self.link.display(), "simulated modem plugged in");
        Ok(pty)
    }

    /// Write `bytes` once the emulated line has carried them.
    async fn write_paced(&mut self, port: &Pty, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let baud = self.baud();
        if baud.is_some() {
            self.tx_free = self.tx_free.max(Instant::now()) + line_time(bytes.len(), baud);
            tokio::time::sleep_until(self.tx_free).await;
        }
        port.write_all(bytes).await
    }

    async fn write_urcs(&mut self, port: &Pty, urcs: &[String]) -> std::io::Result<()> {
        let mut text = String::new();
        for urc in urcs {
            text.push_str("\r\n");
            text.push_str(urc);
            text.push_str("\r\n");
        }
        self.write_paced(port, text.as_bytes()).await
    }

    /// Echo what came in, then answer every complete command.
    async fn process_input(&mut self, port: &Pty, fresh: &[u8]) -> std::io::Result<()> {
        if self.modem().echo {
            let echo = fresh.to_vec();
            self.write_paced(port, &echo).await?;
        }
        loop {
            let awaiting = self.modem().awaiting_pdu.is_some();
            let reply = if awaiting {
                let Some(end) = self.input.iter().position(|&b| b == CTRL_Z || b == ESC) else {
                    return Ok(());
                };
                let chunk: Vec<u8> = self.input.drain(..=end).collect();
                // The modem acts once the last byte has crossed the line.
                tokio::time::sleep_until(self.rx_free).await;
                if chunk[end] == ESC {
                    self.modem().awaiting_pdu = None;
                    modem::Reply {
                        text: "\r\nOK\r\n".into(),
                        ..Default::default()
                    }
                } else {
                    let hex = String::from_utf8_lossy(&chunk[..end]).to_string();
                    self.modem().handle_pdu(&hex, unix_now())
                }
            } else {
                let Some(end) = self.input.iter().position(|&b| b == b'\r') else {
                    // Stray line feeds and noise before a command are dropped.
                    if self.input.len() > 4096 {
                        self.input.clear();
                    }
                    return Ok(());
                };
                let chunk: Vec<u8> = self.input.drain(..=end).collect();
                let line = String::from_utf8_lossy(&chunk[..end]).to_string();
                // An ESC outside text entry (a host cancelling a prompt
                // that never came) is ignored, as modems do.
                let line = line.trim_start_matches(['\n', '\r', ' ', ESC as char]);
                if line.is_empty() {
                    continue;
                }
                tokio::time::sleep_until(self.rx_free).await;
                let line = line.to_string();
                self.modem().handle_line(&line)
            };
            if !reply.delay.is_zero() {
                tokio::time::sleep(reply.delay).await;
            }
            self.write_paced(port, reply.text.as_bytes()).await?;
            if !reply.urcs.is_empty() {
                self.write_urcs(port, &reply.urcs).await?;
            }
        }
    }
}
