//! Builders for the commands the SMS driver issues.
//!
//! Arguments are validated so that nothing the caller passes can inject a
//! `\r`, a quote or a second command into the line written to the modem.
//! Timeouts follow vendor manuals (Quectel, SIMCom, Huawei): most commands
//! answer in well under a second; SIM access takes seconds; `AT+CMGS` waits
//! for the network and is specified with up to 120 s.

use crate::command::Command;

/// Ordinary commands answered from modem state.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// Commands that touch the SIM (PIN, storage) or restart the modem.
pub const SIM_TIMEOUT_MS: u64 = 15_000;
/// Listing a full SIM takes a while on slow modems.
pub const LIST_TIMEOUT_MS: u64 = 30_000;
/// `AT+CMGS`: network round trip, vendor maximum 120 s.
pub const SEND_TIMEOUT_MS: u64 = 120_000;

/// Invalid builder argument.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("PIN must be 4 to 8 digits")]
    InvalidPin,
    #[error("storage name must be 2 upper-case letters/digits, got {0:?}")]
    InvalidStorage(String),
    #[error("PDU must be non-empty, even-length hex")]
    InvalidPdu,
    #[error("TPDU length {tpdu_len} must be 1..=255 and fit in the PDU ({pdu_octets} octets)")]
    InvalidTpduLength { tpdu_len: usize, pdu_octets: usize },
}

/// `ATZ`: back to the stored profile (V.250 §6.1.1).
pub fn reset_profile() -> Command {
    Command::plain("ATZ", SIM_TIMEOUT_MS)
}

/// `ATE0`: echo off (V.250 §6.2.4). The parser copes with echo either way.
pub fn echo_off() -> Command {
    Command::plain("ATE0", DEFAULT_TIMEOUT_MS)
}

/// `+CMEE` reporting mode (TS 27.007 §9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmeeMode {
    /// `+CME ERROR: 10`: stable across firmware languages; preferred.
    Numeric,
    /// `+CME ERROR: SIM not inserted`: readable, mapped back via the table.
    Verbose,
}

/// `AT+CMEE=1|2`.
pub fn error_reporting(mode: CmeeMode) -> Command {
    let n = match mode {
        CmeeMode::Numeric => 1,
        CmeeMode::Verbose => 2,
    };
    Command::plain(format!("AT+CMEE={n}"), DEFAULT_TIMEOUT_MS)
}

/// `AT+CMGF=0`: PDU mode (TS 27.005 §3.2.3).
pub fn pdu_mode() -> Command {
    Command::plain("AT+CMGF=0", DEFAULT_TIMEOUT_MS)
}

/// `AT+CPIN?` (TS 27.007 §8.3).
pub fn pin_status() -> Command {
    Command::plain("AT+CPIN?", SIM_TIMEOUT_MS)
}

/// `AT+CPIN="<pin>"`, marked sensitive: logs show `AT+CPIN=****`.
pub fn enter_pin(pin: &str) -> Result<Command, BuildError> {
    if !(4..=8).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BuildError::InvalidPin);
    }
    Ok(Command::plain(format!("AT+CPIN=\"{pin}\""), SIM_TIMEOUT_MS).sensitive())
}

/// `AT+CREG?`: circuit-switched registration (TS 27.007 §7.2).
pub fn creg_query() -> Command {
    Command::plain("AT+CREG?", DEFAULT_TIMEOUT_MS)
}

/// `AT+CEREG?`: EPS (LTE) registration (TS 27.007 §10.1.22).
pub fn cereg_query() -> Command {
    Command::plain("AT+CEREG?", DEFAULT_TIMEOUT_MS)
}

/// `AT+CREG=2`: unsolicited registration changes with location.
pub fn creg_enable_urc() -> Command {
    Command::plain("AT+CREG=2", DEFAULT_TIMEOUT_MS)
}

/// Preferred message storage for reading/deleting, writing/sending and
/// receiving (`<mem1>,<mem2>,<mem3>`, TS 27.005 §3.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    pub read_delete: String,
    pub write_send: String,
    pub receive: String,
}

impl Default for Storage {
    /// SIM storage everywhere: present on every modem.
    fn default() -> Self {
        Storage {
            read_delete: "SM".into(),
            write_send: "SM".into(),
            receive: "SM".into(),
        }
    }
}

fn check_storage(mem: &str) -> Result<(), BuildError> {
    let ok = mem.len() == 2
        && mem
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(BuildError::InvalidStorage(mem.to_owned()))
    }
}

/// `AT+CPMS="SM","SM","SM"` (configurable).
pub fn preferred_storage(storage: &Storage) -> Result<Command, BuildError> {
    for mem in [&storage.read_delete, &storage.write_send, &storage.receive] {
        check_storage(mem)?;
    }
    Ok(Command::plain(
        format!(
            "AT+CPMS=\"{}\",\"{}\",\"{}\"",
            storage.read_delete, storage.write_send, storage.receive
        ),
        SIM_TIMEOUT_MS,
    ))
}

/// `AT+CNMI` candidates, most wanted first (TS 27.005 §3.4.1). Try them in
/// order until one returns OK:
/// 1. `2,1,0,2,0`: buffer indications while busy, `+CMTI` for new SMS,
///    `+CDSI` for stored status reports.
/// 2. `2,1,0,1,0`: for modems rejecting `<ds>=2` (many Huawei/ZTE sticks);
///    status reports then arrive as two-line `+CDS`.
/// 3. `1,1,0,0,0`: the minimal setting almost everything accepts (no
///    status reports; indications dropped while the link is busy).
pub fn new_message_indication_candidates() -> [Command; 3] {
    [
        "AT+CNMI=2,1,0,2,0",
        "AT+CNMI=2,1,0,1,0",
        "AT+CNMI=1,1,0,0,0",
    ]
    .map(|text| Command::plain(text, DEFAULT_TIMEOUT_MS))
}

/// `AT+CSCA?`: service centre address (TS 27.005 §3.3.1).
pub fn service_centre_query() -> Command {
    Command::plain("AT+CSCA?", SIM_TIMEOUT_MS)
}

/// `AT+CMGS=<tpdu_len>` followed, after the prompt, by `pdu_hex` + Ctrl-Z
/// (TS 27.005 §3.5.1). `pdu_hex` includes the SMSC part (often just `00`);
/// `tpdu_len` counts the TPDU octets only, excluding that SMSC part.
pub fn send_pdu(tpdu_len: usize, pdu_hex: &str) -> Result<Command, BuildError> {
    let valid_hex = !pdu_hex.is_empty()
        && pdu_hex.len().is_multiple_of(2)
        && pdu_hex.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid_hex {
        return Err(BuildError::InvalidPdu);
    }
    let pdu_octets = pdu_hex.len() / 2;
    if tpdu_len == 0 || tpdu_len > 255 || tpdu_len >= pdu_octets {
        return Err(BuildError::InvalidTpduLength {
            tpdu_len,
            pdu_octets,
        });
    }
    Ok(Command::with_pdu(
        format!("AT+CMGS={tpdu_len}"),
        pdu_hex.to_ascii_uppercase(),
        SEND_TIMEOUT_MS,
    ))
}

/// `<stat>` filter of `AT+CMGL` in PDU mode (TS 27.005 §3.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFilter {
    ReceivedUnread = 0,
    ReceivedRead = 1,
    StoredUnsent = 2,
    StoredSent = 3,
    All = 4,
}

/// `AT+CMGL=<stat>`; `ListFilter::All` gives `AT+CMGL=4`.
pub fn list_messages(filter: ListFilter) -> Command {
    Command::plain(format!("AT+CMGL={}", filter as u8), LIST_TIMEOUT_MS).streaming()
}

/// `AT+CMGR=<index>` (TS 27.005 §3.4.3).
pub fn read_message(index: u32) -> Command {
    Command::plain(format!("AT+CMGR={index}"), SIM_TIMEOUT_MS)
}

/// `AT+CMGD=<index>` (TS 27.005 §3.5.4).
pub fn delete_message(index: u32) -> Command {
    Command::plain(format!("AT+CMGD={index}"), SIM_TIMEOUT_MS)
}

/// `AT+CSQ` (TS 27.007 §8.5).
pub fn signal_quality() -> Command {
    Command::plain("AT+CSQ", DEFAULT_TIMEOUT_MS)
}

/// `AT+COPS?` (TS 27.007 §7.3).
pub fn operator_query() -> Command {
    Command::plain("AT+COPS?", DEFAULT_TIMEOUT_MS)
}

/// Start-up sequence up to the PIN check: `ATZ`, `ATE0`, `AT+CMEE`,
/// `AT+CPIN?`. What follows depends on the `+CPIN` answer (enter the PIN
/// with [`enter_pin`] on `SIM PIN`), then [`sms_setup`].
pub fn startup(cmee: CmeeMode) -> Vec<Command> {
    vec![
        reset_profile(),
        echo_off(),
        error_reporting(cmee),
        pin_status(),
    ]
}

/// SMS set-up once the SIM is ready: PDU mode, storage, the first
/// `AT+CNMI` candidate (fall back through
/// [`new_message_indication_candidates`] on error), service centre and
/// registration queries.
pub fn sms_setup(storage: &Storage) -> Result<Vec<Command>, BuildError> {
    let [cnmi, ..] = new_message_indication_candidates();
    Ok(vec![
        pdu_mode(),
        preferred_storage(storage)?,
        cnmi,
        service_centre_query(),
        creg_query(),
        cereg_query(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CommandKind;

    fn texts(cmds: &[Command]) -> Vec<&str> {
        cmds.iter().map(|c| c.text.as_str()).collect()
    }

    #[test]
    fn startup_and_setup_sequences() {
        assert_eq!(
            texts(&startup(CmeeMode::Numeric)),
            ["ATZ", "ATE0", "AT+CMEE=1", "AT+CPIN?"]
        );
        assert_eq!(error_reporting(CmeeMode::Verbose).text, "AT+CMEE=2");
        assert_eq!(
            texts(&sms_setup(&Storage::default()).unwrap()),
            [
                "AT+CMGF=0",
                "AT+CPMS=\"SM\",\"SM\",\"SM\"",
                "AT+CNMI=2,1,0,2,0",
                "AT+CSCA?",
                "AT+CREG?",
                "AT+CEREG?"
            ]
        );
    }

    #[test]
    fn pin_is_validated_and_redacted() {
        let cmd = enter_pin("1234").unwrap();
        assert_eq!(cmd.text, "AT+CPIN=\"1234\"");
        assert!(cmd.sensitive);
        assert_eq!(cmd.to_string(), "AT+CPIN=****");
        assert_eq!(enter_pin("12\"3"), Err(BuildError::InvalidPin));
        assert_eq!(enter_pin("123"), Err(BuildError::InvalidPin));
        assert_eq!(enter_pin("123456789"), Err(BuildError::InvalidPin));
    }

    #[test]
    fn storage_is_configurable_and_validated() {
        let storage = Storage {
            read_delete: "ME".into(),
            write_send: "ME".into(),
            receive: "MT".into(),
        };
        assert_eq!(
            preferred_storage(&storage).unwrap().text,
            "AT+CPMS=\"ME\",\"ME\",\"MT\""
        );
        let bad = Storage {
            receive: "S\"M".into(),
            ..Storage::default()
        };
        assert!(matches!(
            preferred_storage(&bad),
            Err(BuildError::InvalidStorage(_))
        ));
    }

    #[test]
    fn cnmi_fallbacks_are_ordered() {
        assert_eq!(
            texts(&new_message_indication_candidates()),
            [
                "AT+CNMI=2,1,0,2,0",
                "AT+CNMI=2,1,0,1,0",
                "AT+CNMI=1,1,0,0,0"
            ]
        );
    }

    #[test]
    fn send_pdu_checks_lengths() {
        let cmd = send_pdu(3, "00aabbcc").unwrap();
        assert_eq!(cmd.text, "AT+CMGS=3");
        assert_eq!(
            cmd.kind,
            CommandKind::WithPdu {
                pdu_hex: "00AABBCC".into()
            }
        );
        assert_eq!(cmd.timeout_ms, SEND_TIMEOUT_MS);
        assert_eq!(send_pdu(3, "00AABBC"), Err(BuildError::InvalidPdu));
        assert_eq!(send_pdu(3, "00AABBXX"), Err(BuildError::InvalidPdu));
        assert!(matches!(
            send_pdu(4, "00AABBCC"),
            Err(BuildError::InvalidTpduLength { .. })
        ));
        assert!(matches!(
            send_pdu(0, "00AABBCC"),
            Err(BuildError::InvalidTpduLength { .. })
        ));
    }

    #[test]
    fn message_commands() {
        assert_eq!(list_messages(ListFilter::All).text, "AT+CMGL=4");
        assert_eq!(list_messages(ListFilter::ReceivedUnread).text, "AT+CMGL=0");
        assert_eq!(read_message(7).text, "AT+CMGR=7");
        assert_eq!(delete_message(7).text, "AT+CMGD=7");
        assert_eq!(signal_quality().text, "AT+CSQ");
        assert_eq!(operator_query().text, "AT+COPS?");
        assert_eq!(service_centre_query().text, "AT+CSCA?");
        assert_eq!(creg_query().text, "AT+CREG?");
        assert_eq!(cereg_query().text, "AT+CEREG?");
        assert_eq!(creg_enable_urc().text, "AT+CREG=2");
        assert_eq!(pdu_mode().text, "AT+CMGF=0");
    }
}
