//! Typed parsers for the information responses the SMS driver reads.
//!
//! Every function takes one complete response line including its prefix
//! (e.g. `+CSQ: 20,99`) exactly as it appears in
//! [`EngineEvent::Completed`](crate::EngineEvent) lines.

use crate::fields::{Field, split_fields, strip_prefix_ci};

/// Why a response line could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("expected a `{expected}` line, got {line:?}")]
    WrongPrefix {
        expected: &'static str,
        line: String,
    },
    #[error("malformed `{expected}` line ({problem}): {line:?}")]
    Malformed {
        expected: &'static str,
        problem: &'static str,
        line: String,
    },
}

fn params<'a>(line: &'a str, prefix: &'static str) -> Result<&'a str, ResponseError> {
    strip_prefix_ci(line.trim(), prefix).ok_or_else(|| ResponseError::WrongPrefix {
        expected: prefix,
        line: line.to_owned(),
    })
}

fn malformed(expected: &'static str, problem: &'static str, line: &str) -> ResponseError {
    ResponseError::Malformed {
        expected,
        problem,
        line: line.to_owned(),
    }
}

fn required<T>(
    value: Option<T>,
    expected: &'static str,
    problem: &'static str,
    line: &str,
) -> Result<T, ResponseError> {
    value.ok_or_else(|| malformed(expected, problem, line))
}

// ---------------------------------------------------------------- +CSQ

/// `+CSQ: <rssi>,<ber>` (TS 27.007 §8.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalQuality {
    /// Raw `<rssi>`; 99 means "not known or not detectable".
    pub rssi: u8,
    /// Raw `<ber>` (0…7), `None` for 99.
    pub ber: Option<u8>,
}

impl SignalQuality {
    /// Received signal strength in dBm; `None` when unknown.
    /// 0 → −113 dBm or less, 1 → −111, 2…30 → −109…−53 in 2 dB steps,
    /// 31 → −51 or more. 100…191 is the TD-SCDMA range (−116…−25 dBm).
    pub fn dbm(&self) -> Option<i16> {
        match self.rssi {
            0..=31 => Some(-113 + 2 * i16::from(self.rssi)),
            100..=191 => Some(-116 + i16::from(self.rssi - 100)),
            _ => None,
        }
    }
}

pub fn parse_csq(line: &str) -> Result<SignalQuality, ResponseError> {
    const P: &str = "+CSQ:";
    let fields = split_fields(params(line, P)?);
    let rssi = required(fields[0].as_u8(), P, "rssi", line)?;
    let ber = match fields.get(1).and_then(Field::as_u8) {
        Some(99) | None => None,
        Some(ber) => Some(ber),
    };
    Ok(SignalQuality { rssi, ber })
}

// ---------------------------------------------------------------- +CREG / +CGREG / +CEREG

/// Which registration a `+CxREG` line reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegistrationDomain {
    /// `+CREG`: circuit switched (SMS over CS on 2G/3G).
    CircuitSwitched,
    /// `+CGREG`: GPRS / packet switched.
    PacketSwitched,
    /// `+CEREG`: EPS (LTE); SMS over SGs/IMS needs this on LTE-only modems.
    Eps,
    /// `+C5GREG`.
    FiveG,
}

/// `<stat>` of TS 27.007 §7.2 / §10.1.19 / §10.1.22.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegistrationState {
    NotRegistered,
    Home,
    Searching,
    Denied,
    Unknown,
    Roaming,
    SmsOnlyHome,
    SmsOnlyRoaming,
    EmergencyOnly,
    CsfbNotPreferredHome,
    CsfbNotPreferredRoaming,
    Other(u8),
}

impl RegistrationState {
    pub fn from_code(code: u8) -> Self {
        use RegistrationState::*;
        match code {
            0 => NotRegistered,
            1 => Home,
            2 => Searching,
            3 => Denied,
            4 => Unknown,
            5 => Roaming,
            6 => SmsOnlyHome,
            7 => SmsOnlyRoaming,
            8 => EmergencyOnly,
            9 => CsfbNotPreferredHome,
            10 => CsfbNotPreferredRoaming,
            other => Other(other),
        }
    }

    /// Registered in a way that allows SMS.
    pub fn is_registered(&self) -> bool {
        use RegistrationState::*;
        matches!(
            self,
            Home | Roaming
                | SmsOnlyHome
                | SmsOnlyRoaming
                | CsfbNotPreferredHome
                | CsfbNotPreferredRoaming
        )
    }
}

/// A `+CREG`/`+CGREG`/`+CEREG`/`+C5GREG` line, read or unsolicited form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub domain: RegistrationDomain,
    /// `<n>` (URC presentation mode); only present in the read form.
    pub n: Option<u8>,
    pub state: RegistrationState,
    /// `<lac>` / `<tac>` (hex in the line).
    pub lac: Option<u32>,
    /// `<ci>` (hex in the line; 36 bits for NR, hence u64).
    pub ci: Option<u64>,
    /// `<AcT>`: 0 GSM, 2 UTRAN, 7 E-UTRAN, ...
    pub act: Option<u8>,
}

const REG_PREFIXES: [(&str, RegistrationDomain); 4] = [
    ("+CREG:", RegistrationDomain::CircuitSwitched),
    ("+CGREG:", RegistrationDomain::PacketSwitched),
    ("+CEREG:", RegistrationDomain::Eps),
    ("+C5GREG:", RegistrationDomain::FiveG),
];

fn is_decimal(field: &Field<'_>) -> bool {
    !field.quoted && !field.text.is_empty() && field.text.bytes().all(|b| b.is_ascii_digit())
}

/// Tells the unsolicited form (`<stat>[,<lac>,<ci>[,<AcT>]]`) from the read
/// form (`<n>,<stat>[,<lac>,<ci>[,<AcT>]]`) by shape: the read form has an
/// unquoted small number second; the URC form has one field, or a quoted /
/// hex `<lac>` second. Three fields can only be `stat,lac,ci`.
pub(crate) fn registration_is_unsolicited_form(params: &str) -> bool {
    let fields = split_fields(params);
    match fields.len() {
        0 | 1 => true,
        3 => true,
        _ => !is_decimal(&fields[1]) || fields[1].text.len() > 2,
    }
}

fn hex_u32(field: Option<&Field<'_>>) -> Option<u32> {
    field
        .filter(|f| !f.text.is_empty())
        .and_then(|f| u32::from_str_radix(f.text, 16).ok())
}

fn hex_u64(field: Option<&Field<'_>>) -> Option<u64> {
    field
        .filter(|f| !f.text.is_empty())
        .and_then(|f| u64::from_str_radix(f.text, 16).ok())
}

/// Parses `+CREG:`, `+CGREG:`, `+CEREG:` and `+C5GREG:` lines, both the
/// read form (answer to `AT+CREG?`) and the unsolicited form.
pub fn parse_registration(line: &str) -> Result<Registration, ResponseError> {
    const P: &str = "+CREG:/+CGREG:/+CEREG:";
    let trimmed = line.trim();
    let (rest, domain) = REG_PREFIXES
        .iter()
        .find_map(|(prefix, domain)| strip_prefix_ci(trimmed, prefix).map(|r| (r, *domain)))
        .ok_or_else(|| ResponseError::WrongPrefix {
            expected: P,
            line: line.to_owned(),
        })?;
    let fields = split_fields(rest);
    let (n, stat_at) = if registration_is_unsolicited_form(rest) {
        (None, 0)
    } else {
        (fields[0].as_u8(), 1)
    };
    let stat = required(fields[stat_at].as_u8(), P, "stat", line)?;
    Ok(Registration {
        domain,
        n,
        state: RegistrationState::from_code(stat),
        lac: hex_u32(fields.get(stat_at + 1)),
        ci: hex_u64(fields.get(stat_at + 2)),
        act: fields.get(stat_at + 3).and_then(Field::as_u8),
    })
}

// ---------------------------------------------------------------- +COPS

/// `+COPS: <mode>[,<format>,<oper>[,<AcT>]]` (TS 27.007 §7.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// 0 automatic, 1 manual, 2 deregister, 3 set format only, 4 manual/auto.
    pub mode: u8,
    /// 0 long alphanumeric, 1 short alphanumeric, 2 numeric (MCC+MNC).
    pub format: Option<u8>,
    /// `None` when not registered (the modem sends only `<mode>`).
    pub name: Option<String>,
    pub act: Option<u8>,
}

pub fn parse_cops(line: &str) -> Result<Operator, ResponseError> {
    const P: &str = "+COPS:";
    let fields = split_fields(params(line, P)?);
    Ok(Operator {
        mode: required(fields[0].as_u8(), P, "mode", line)?,
        format: fields.get(1).and_then(Field::as_u8),
        name: fields
            .get(2)
            .filter(|f| !f.text.is_empty())
            .map(|f| f.text.to_owned()),
        act: fields.get(3).and_then(Field::as_u8),
    })
}

// ---------------------------------------------------------------- +CPIN

/// `+CPIN: <code>` (TS 27.007 §8.3) plus two common vendor states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinState {
    Ready,
    SimPin,
    SimPuk,
    SimPin2,
    SimPuk2,
    PhSimPin,
    PhNetPin,
    /// SIMCom/Quectel `+CPIN: NOT INSERTED`.
    NotInserted,
    /// Quectel/SIMCom `+CPIN: NOT READY` during SIM initialisation.
    NotReady,
    /// Any other code (other personalisation PINs, vendor texts).
    Other(String),
}

impl PinState {
    /// Whether a PIN must be entered (with `AT+CPIN="…"`) before SMS works.
    pub fn needs_pin(&self) -> bool {
        matches!(self, PinState::SimPin)
    }
}

pub fn parse_cpin(line: &str) -> Result<PinState, ResponseError> {
    let code = params(line, "+CPIN:")?.trim_matches('"');
    Ok(match code.to_ascii_uppercase().as_str() {
        "READY" => PinState::Ready,
        "SIM PIN" => PinState::SimPin,
        "SIM PUK" => PinState::SimPuk,
        "SIM PIN2" => PinState::SimPin2,
        "SIM PUK2" => PinState::SimPuk2,
        "PH-SIM PIN" => PinState::PhSimPin,
        "PH-NET PIN" => PinState::PhNetPin,
        "NOT INSERTED" => PinState::NotInserted,
        "NOT READY" => PinState::NotReady,
        _ => PinState::Other(code.to_owned()),
    })
}

// ---------------------------------------------------------------- +CPMS

/// One memory of a `+CPMS` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryUsage {
    /// `"SM"`, `"ME"`, `"MT"`, ...; `None` in the answer to the set command,
    /// which carries counts only.
    pub mem: Option<String>,
    pub used: u32,
    pub total: u32,
}

/// Parses both `+CPMS: "SM",5,30,"SM",5,30,"SM",5,30` (read form) and
/// `+CPMS: 5,30,5,30,5,30` (answer to `AT+CPMS=...`), TS 27.005 §3.2.2.
pub fn parse_cpms(line: &str) -> Result<Vec<MemoryUsage>, ResponseError> {
    const P: &str = "+CPMS:";
    let fields = split_fields(params(line, P)?);
    let named = fields[0].quoted || fields[0].as_u32().is_none();
    let stride = if named { 3 } else { 2 };
    if fields.len() < stride {
        return Err(malformed(P, "too few values", line));
    }
    let mut out = Vec::new();
    for group in fields.chunks(stride) {
        if group.len() < stride {
            break;
        }
        let (mem, counts) = if named {
            (Some(group[0].text.to_owned()), &group[1..])
        } else {
            (None, group)
        };
        out.push(MemoryUsage {
            mem,
            used: required(counts[0].as_u32(), P, "used", line)?,
            total: required(counts[1].as_u32(), P, "total", line)?,
        });
    }
    Ok(out)
}

impl MemoryUsage {
    /// No room for one more message. A memory that reports no slots at
    /// all (a total of 0, as some modems answer while the SIM loads) is
    /// not taken for full: nothing is known of it.
    pub fn is_full(&self) -> bool {
        self.total > 0 && self.used >= self.total
    }
}

/// The memory received messages are stored in, from either form of
/// `+CPMS` answer: `<mem3>`, the third (TS 27.005 §3.2.2); a modem that
/// reports fewer memories stores them in its first.
pub fn parse_cpms_received(line: &str) -> Result<MemoryUsage, ResponseError> {
    let mut usage = parse_cpms(line)?;
    let third = if usage.len() >= 3 { 2 } else { 0 };
    Ok(usage.swap_remove(third))
}

// ---------------------------------------------------------------- +CMGS

/// `+CMGS: <mr>[,<ackpdu>]` (TS 27.005 §3.5.1): the TP-Message-Reference,
/// needed to match a later status report.
pub fn parse_cmgs(line: &str) -> Result<u8, ResponseError> {
    const P: &str = "+CMGS:";
    let fields = split_fields(params(line, P)?);
    required(fields[0].as_u8(), P, "message reference 0..255", line)
}

// ---------------------------------------------------------------- +CMGL / +CMGR

/// `<stat>` in PDU mode (TS 27.005 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageStatus {
    ReceivedUnread,
    ReceivedRead,
    StoredUnsent,
    StoredSent,
    Other(u8),
}

impl MessageStatus {
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => MessageStatus::ReceivedUnread,
            1 => MessageStatus::ReceivedRead,
            2 => MessageStatus::StoredUnsent,
            3 => MessageStatus::StoredSent,
            other => MessageStatus::Other(other),
        }
    }
}

/// PDU-mode `+CMGL: <index>,<stat>,[<alpha>],<length>` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmglHeader {
    pub index: u32,
    pub status: MessageStatus,
    pub alpha: Option<String>,
    /// TPDU length in octets (the SMSC part of the PDU line is not counted).
    pub length: u32,
}

/// Accepts the non-compliant `+CMGL: 6,1,125` (alpha and its comma missing)
/// that some firmwares send, as well as the compliant `6,1,,125`.
pub fn parse_cmgl_header(line: &str) -> Result<CmglHeader, ResponseError> {
    const P: &str = "+CMGL:";
    let fields = split_fields(params(line, P)?);
    if fields.len() < 3 {
        return Err(malformed(P, "too few values", line));
    }
    let (alpha, length) = if fields.len() == 3 {
        (None, &fields[2])
    } else {
        (fields[2].as_opt_string(), &fields[3])
    };
    Ok(CmglHeader {
        index: required(fields[0].as_u32(), P, "index", line)?,
        status: MessageStatus::from_code(required(fields[1].as_u8(), P, "stat", line)?),
        alpha,
        length: required(length.as_u32(), P, "length", line)?,
    })
}

/// PDU-mode `+CMGR: <stat>,[<alpha>],<length>` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmgrHeader {
    pub status: MessageStatus,
    pub alpha: Option<String>,
    pub length: u32,
}

pub fn parse_cmgr_header(line: &str) -> Result<CmgrHeader, ResponseError> {
    const P: &str = "+CMGR:";
    let fields = split_fields(params(line, P)?);
    if fields.len() < 2 {
        return Err(malformed(P, "too few values", line));
    }
    let (alpha, length) = if fields.len() == 2 {
        (None, &fields[1])
    } else {
        (fields[1].as_opt_string(), &fields[2])
    };
    Ok(CmgrHeader {
        status: MessageStatus::from_code(required(fields[0].as_u8(), P, "stat", line)?),
        alpha,
        length: required(length.as_u32(), P, "length", line)?,
    })
}

// ---------------------------------------------------------------- +CSCA

/// `+CSCA: <sca>,<tosca>` (TS 27.005 §3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCentre {
    pub address: String,
    /// Type of address: 145 international, 129 national/unknown.
    pub toa: Option<u8>,
}

/// With `AT+CSCS="UCS2"` active, modems print the address as UCS-2 hex
/// (`"002B0034..."`); decode it when the result is a plausible number.
fn decode_ucs2_number(raw: &str) -> Option<String> {
    if raw.len() < 8 || !raw.len().is_multiple_of(4) || !raw.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    let decoded: Option<String> = (0..raw.len())
        .step_by(4)
        .map(|i| {
            u32::from_str_radix(&raw[i..i + 4], 16)
                .ok()
                .and_then(char::from_u32)
        })
        .collect();
    decoded.filter(|s| s.chars().all(|c| c.is_ascii_digit() || c == '+'))
}

pub fn parse_csca(line: &str) -> Result<ServiceCentre, ResponseError> {
    const P: &str = "+CSCA:";
    let fields = split_fields(params(line, P)?);
    let raw = fields[0].text;
    Ok(ServiceCentre {
        address: decode_ucs2_number(raw).unwrap_or_else(|| raw.to_owned()),
        toa: fields.get(1).and_then(Field::as_u8),
    })
}

// ---------------------------------------------------------------- +CMTI / +CDSI

/// Where a new message or status report was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageIndex {
    pub mem: String,
    pub index: u32,
}

fn parse_storage_index(line: &str, prefix: &'static str) -> Result<StorageIndex, ResponseError> {
    let fields = split_fields(params(line, prefix)?);
    if fields.len() < 2 {
        return Err(malformed(prefix, "too few values", line));
    }
    Ok(StorageIndex {
        mem: fields[0].text.to_owned(),
        index: required(fields[1].as_u32(), prefix, "index", line)?,
    })
}

/// `+CMTI: <mem>,<index>` (TS 27.005 §3.4.1): a new SMS was stored.
pub fn parse_cmti(line: &str) -> Result<StorageIndex, ResponseError> {
    parse_storage_index(line, "+CMTI:")
}

/// `+CDSI: <mem>,<index>` (TS 27.005 §3.4.1): a status report was stored.
pub fn parse_cdsi(line: &str) -> Result<StorageIndex, ResponseError> {
    parse_storage_index(line, "+CDSI:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csq_converts_to_dbm() {
        let q = parse_csq("+CSQ: 20,99").unwrap();
        assert_eq!(q.rssi, 20);
        assert_eq!(q.ber, None);
        assert_eq!(q.dbm(), Some(-73));
        assert_eq!(parse_csq("+CSQ: 0,0").unwrap().dbm(), Some(-113));
        assert_eq!(parse_csq("+CSQ: 31,3").unwrap().dbm(), Some(-51));
        assert_eq!(parse_csq("+CSQ: 31,3").unwrap().ber, Some(3));
        assert_eq!(parse_csq("+CSQ: 99,99").unwrap().dbm(), None);
        assert_eq!(parse_csq("+CSQ: 100,99").unwrap().dbm(), Some(-116));
        assert!(parse_csq("+CSQ: x,99").is_err());
        assert!(matches!(
            parse_csq("+CREG: 0,1"),
            Err(ResponseError::WrongPrefix { .. })
        ));
    }

    #[test]
    fn registration_read_forms() {
        let r = parse_registration("+CREG: 0,1").unwrap();
        assert_eq!(r.domain, RegistrationDomain::CircuitSwitched);
        assert_eq!(r.n, Some(0));
        assert_eq!(r.state, RegistrationState::Home);
        assert!(r.state.is_registered());

        let r = parse_registration(r#"+CEREG: 2,5,"1A2B","01C3D4E5",7"#).unwrap();
        assert_eq!(r.domain, RegistrationDomain::Eps);
        assert_eq!(r.n, Some(2));
        assert_eq!(r.state, RegistrationState::Roaming);
        assert_eq!(r.lac, Some(0x1A2B));
        assert_eq!(r.ci, Some(0x01C3_D4E5));
        assert_eq!(r.act, Some(7));
    }

    #[test]
    fn registration_unsolicited_forms() {
        let r = parse_registration("+CREG: 2").unwrap();
        assert_eq!(r.n, None);
        assert_eq!(r.state, RegistrationState::Searching);
        assert!(!r.state.is_registered());

        let r = parse_registration(r#"+CGREG: 1,"00A1","0000BEEF",2"#).unwrap();
        assert_eq!(r.n, None);
        assert_eq!(r.state, RegistrationState::Home);
        assert_eq!(r.lac, Some(0xA1));
        assert_eq!(r.ci, Some(0xBEEF));
        assert_eq!(r.act, Some(2));

        // Unquoted hex lac as some Huawei firmwares send it.
        let r = parse_registration("+CREG: 5,1A2B,00C3").unwrap();
        assert_eq!(r.state, RegistrationState::Roaming);
        assert_eq!(r.lac, Some(0x1A2B));
        assert!(parse_registration("+CREG: ,").is_err());
    }

    #[test]
    fn cops_with_and_without_operator() {
        let op = parse_cops(r#"+COPS: 0,0,"Vodafone.de",7"#).unwrap();
        assert_eq!(op.mode, 0);
        assert_eq!(op.format, Some(0));
        assert_eq!(op.name.as_deref(), Some("Vodafone.de"));
        assert_eq!(op.act, Some(7));
        let none = parse_cops("+COPS: 0").unwrap();
        assert_eq!(none.name, None);
        assert_eq!(none.format, None);
    }

    #[test]
    fn cpin_states() {
        assert_eq!(parse_cpin("+CPIN: READY").unwrap(), PinState::Ready);
        assert_eq!(parse_cpin("+CPIN: SIM PIN").unwrap(), PinState::SimPin);
        assert!(parse_cpin("+CPIN: SIM PIN").unwrap().needs_pin());
        assert_eq!(parse_cpin("+CPIN: SIM PUK").unwrap(), PinState::SimPuk);
        assert_eq!(
            parse_cpin("+CPIN: NOT INSERTED").unwrap(),
            PinState::NotInserted
        );
        assert_eq!(
            parse_cpin("+CPIN: PH-CORP PIN").unwrap(),
            PinState::Other("PH-CORP PIN".into())
        );
    }

    #[test]
    fn cpms_read_and_set_forms() {
        let usage = parse_cpms(r#"+CPMS: "SM",3,30,"SM",3,30,"ME",0,100"#).unwrap();
        assert_eq!(usage.len(), 3);
        assert_eq!(usage[0].mem.as_deref(), Some("SM"));
        assert_eq!((usage[0].used, usage[0].total), (3, 30));
        assert_eq!(usage[2].mem.as_deref(), Some("ME"));
        assert_eq!(usage[2].total, 100);

        let usage = parse_cpms("+CPMS: 3,30,3,30,3,30").unwrap();
        assert_eq!(usage.len(), 3);
        assert_eq!(usage[1].mem, None);
        assert_eq!(usage[1].used, 3);
        assert!(parse_cpms("+CPMS: 3").is_err());
    }

    #[test]
    fn cpms_received_memory_is_the_third() {
        let read = parse_cpms_received(r#"+CPMS: "ME",0,100,"ME",0,100,"SM",30,30"#).unwrap();
        assert_eq!(read.mem.as_deref(), Some("SM"));
        assert_eq!((read.used, read.total), (30, 30));
        assert!(read.is_full());
        let set = parse_cpms_received("+CPMS: 1,50,1,50,12,40").unwrap();
        assert_eq!((set.mem.as_deref(), set.used, set.total), (None, 12, 40));
        assert!(!set.is_full());
        // A modem that reports one memory stores received messages in it.
        let one = parse_cpms_received(r#"+CPMS: "SM",31,30"#).unwrap();
        assert!(one.is_full());
        // No slots known: not full.
        assert!(!parse_cpms_received("+CPMS: 0,0,0,0,0,0").unwrap().is_full());
        assert!(parse_cpms_received("+CPMS: x").is_err());
        assert!(parse_cpms_received("+CSQ: 20,99").is_err());
    }

    #[test]
    fn cmgs_reference() {
        assert_eq!(parse_cmgs("+CMGS: 42").unwrap(), 42);
        assert_eq!(parse_cmgs(r#"+CMGS: 7,"24/01/01,10:00:00+04""#).unwrap(), 7);
        assert!(parse_cmgs("+CMGS: 300").is_err());
    }

    #[test]
    fn cmgl_headers() {
        let h = parse_cmgl_header("+CMGL: 1,0,,23").unwrap();
        assert_eq!(h.index, 1);
        assert_eq!(h.status, MessageStatus::ReceivedUnread);
        assert_eq!(h.alpha, None);
        assert_eq!(h.length, 23);
        let h = parse_cmgl_header(r#"+CMGL: 12,1,"Mum",40"#).unwrap();
        assert_eq!(h.alpha.as_deref(), Some("Mum"));
        assert_eq!(h.status, MessageStatus::ReceivedRead);
        let h = parse_cmgl_header("+CMGL: 6,1,125").unwrap();
        assert_eq!((h.index, h.length), (6, 125));
        assert!(parse_cmgl_header("+CMGL: 6").is_err());
    }

    #[test]
    fn cmgr_headers() {
        let h = parse_cmgr_header("+CMGR: 0,,23").unwrap();
        assert_eq!(h.status, MessageStatus::ReceivedUnread);
        assert_eq!(h.length, 23);
        let h = parse_cmgr_header("+CMGR: 3,30").unwrap();
        assert_eq!(h.status, MessageStatus::StoredSent);
        assert_eq!(h.length, 30);
    }

    #[test]
    fn csca_plain_and_ucs2() {
        let sc = parse_csca(r#"+CSCA: "+491770610000",145"#).unwrap();
        assert_eq!(sc.address, "+491770610000");
        assert_eq!(sc.toa, Some(145));
        let sc = parse_csca(r#"+CSCA: "002B00340039003100370037",145"#).unwrap();
        assert_eq!(sc.address, "+49177");
        // An all-digit number that is not valid UCS-2 text stays as it is.
        let sc = parse_csca(r#"+CSCA: "0049172000000000",129"#).unwrap();
        assert_eq!(sc.address, "0049172000000000");
    }

    #[test]
    fn cmti_and_cdsi() {
        assert_eq!(
            parse_cmti(r#"+CMTI: "SM",3"#).unwrap(),
            StorageIndex {
                mem: "SM".into(),
                index: 3
            }
        );
        assert_eq!(parse_cdsi(r#"+CDSI: "SR",1"#).unwrap().mem, "SR");
        assert!(parse_cmti(r#"+CMTI: "SM""#).is_err());
    }
}
