//! Unsolicited result codes: lines the modem sends on its own.
//!
//! The parser needs two things from this module: which lines are URCs even
//! when they arrive in the middle of another command's response, and which
//! URCs own the next line (`+CMT`, `+CDS`, `+CBM` in PDU mode, TS 27.005
//! §3.4.1). Typed variants exist for what the SMS driver acts upon; the
//! rest is surfaced as [`Urc::Other`] for logging.

use crate::fields::{Field, response_name, split_fields, strip_prefix_ci};
use crate::responses::{self, Registration};

/// "The modem (or part of it) is now usable" announcements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadySignal {
    /// Quectel/SIMCom `RDY`, Cinterion/Huawei `^SYSSTART`: firmware booted.
    ModemStarted,
    /// Unsolicited `+CPIN: READY`: SIM unlocked.
    SimReady,
    /// SIMCom `Call Ready`.
    CallReady,
    /// SIMCom `SMS Ready`, Quectel `+QIND: SMS DONE`: SMS storage usable.
    SmsReady,
    /// Unsolicited `+CFUN: 1`: radio at full functionality.
    FullFunctionality,
}

/// An unsolicited result code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Urc {
    /// `+CMTI: <mem>,<index>`: SMS stored, read it with `AT+CMGR`.
    Cmti {
        mem: String,
        index: u32,
    },
    /// `+CMT: [<alpha>],<length>` + PDU line: SMS delivered directly.
    Cmt {
        alpha: Option<String>,
        length: u32,
        pdu: String,
    },
    /// `+CDS: <length>` + PDU line: status report delivered directly.
    Cds {
        length: u32,
        pdu: String,
    },
    /// `+CDSI: <mem>,<index>`: status report stored.
    Cdsi {
        mem: String,
        index: u32,
    },
    Ring,
    /// `+CLIP: <number>,<type>,...`: caller id while ringing.
    Clip {
        number: String,
        toa: Option<u16>,
    },
    /// `+CUSD: <m>[,<str>,<dcs>]` (TS 27.007 §7.15).
    Cusd {
        status: u8,
        text: Option<String>,
        dcs: Option<u16>,
    },
    /// Huawei `^RSSI: <rssi>` (same scale as `+CSQ`).
    Rssi(u8),
    /// Huawei `^BOOT:` heartbeat (sent every few seconds by some sticks).
    Boot,
    /// The modem's message memory is full (`true`), or has room again
    /// (`false`), as some modems say on their own: Huawei `^SMMEMFULL:
    /// <mem>`, Quectel `+QIND: "smsfull",<mem>`, SIMCom and Telit
    /// `+CIEV: "SMSFULL",<0|1>`. The network holds new messages meanwhile.
    MessageMemoryFull(bool),
    /// `+CREG`/`+CGREG`/`+CEREG` that was not an answer to a query.
    CregUnsolicited(Registration),
    Ready(ReadySignal),
    /// Recognised or unknown line the driver has no typed use for.
    Other(String),
}

/// Names (prefix before `:`) of information lines that are unsolicited
/// whenever they are not the answer to a pending read/test command of the
/// same name. Sources: TS 27.005 §3.4.1, TS 27.007 (§7.2, §7.6, §7.15, §8.2,
/// §10.1.19), vendor manuals (Huawei `^`, Quectel `+Q`, SIMCom, Telit `#`).
const URC_NAMES: &[&str] = &[
    "+CMTI",
    "+CMT",
    "+CDS",
    "+CDSI",
    "+CBM",
    "+CBMI",
    "+CLIP",
    "+CRING",
    "+CCWA",
    "+CUSD",
    "+CREG",
    "+CGREG",
    "+CEREG",
    "+C5GREG",
    "+CPIN",
    "+CFUN",
    "+CGEV",
    "+CIEV",
    // 27.007 §7.x: RRC connection state (LTE-M/NB-IoT modems report it
    // often, at any moment) and IMS registration state.
    "+CSCON",
    "+CIREGU",
    "+CTZV",
    "+CTZE",
    "+CTZU",
    "+CUSATP",
    "+STIN",
    "+PACSP",
    "+QIND",
    "+QUSIM",
    "+QSIMSTAT",
    "^RSSI",
    "^BOOT",
    "^MODE",
    "^SRVST",
    "^SIMST",
    "^HCSQ",
    "^SYSINFOEX",
    "^DSFLOWRPT",
    "^NWTIME",
    "^ORIG",
    "^CONF",
    "^CONN",
    "^CEND",
    "^STIN",
    "^SMMEMFULL",
    "^NDISSTAT",
    "^RFSWITCH",
    "^CSNR",
    "^CERSSI",
    "^ACTIVEBAND",
    "*PSUTTZ",
    "#QSS",
];

/// Whole-line URCs without a `name:` prefix.
const PLAIN_URCS: &[&str] = &[
    "RING",
    "RDY",
    "CALL READY",
    "SMS READY",
    "PB DONE",
    "^SYSSTART",
    "NORMAL POWER DOWN",
    "POWERED DOWN",
    "UNDER-VOLTAGE POWER DOWN",
    "UNDER-VOLTAGE WARNNING",
    "OVER-VOLTAGE POWER DOWN",
    "OVER-VOLTAGE WARNNING",
];

/// Upper-cased name of a URC-capable line, if it is one.
pub(crate) fn urc_name(line: &str) -> Option<String> {
    if let Some(name) = response_name(line) {
        return URC_NAMES.contains(&name.as_str()).then_some(name);
    }
    let upper = line.trim().to_ascii_uppercase();
    // `DST: 1` (SIMCom) has a name but no `+`; PLAIN_URCS are whole lines.
    if upper.starts_with("DST:") {
        return Some("DST".into());
    }
    PLAIN_URCS.contains(&upper.as_str()).then_some(upper)
}

/// URC headers whose PDU arrives on the next line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TwoLineHeader {
    Cmt {
        alpha: Option<String>,
        length: u32,
    },
    Cds {
        length: u32,
    },
    /// Anything else that owns a following line (`+CBM`, text-mode `+CMT`):
    /// delivered as one `Urc::Other("header\nbody")`.
    Opaque(String),
}

impl TwoLineHeader {
    /// Whether the line it owns is a PDU (hex): every form but text-mode
    /// `+CMT` (whose PDU-mode `+CBM` is `Opaque` too).
    pub(crate) fn is_pdu(&self) -> bool {
        match self {
            TwoLineHeader::Cmt { .. } | TwoLineHeader::Cds { .. } => true,
            TwoLineHeader::Opaque(line) => {
                !line.trim_start().to_ascii_uppercase().starts_with("+CMT")
            }
        }
    }

    pub(crate) fn complete(self, header_line: &str, body: String) -> Urc {
        match self {
            TwoLineHeader::Cmt { alpha, length } => Urc::Cmt {
                alpha,
                length,
                pdu: body,
            },
            TwoLineHeader::Cds { length } => Urc::Cds { length, pdu: body },
            TwoLineHeader::Opaque(_) => Urc::Other(format!("{header_line}\n{body}")),
        }
    }

    /// The body never came (final result or overlong line instead).
    pub(crate) fn incomplete(header_line: &str) -> Urc {
        Urc::Other(header_line.to_owned())
    }
}

/// Whether `line` is a URC header that consumes the next line.
///
/// `+CMT` always has a data line (PDU mode: `[<alpha>],<length>`; text mode:
/// several fields, then the text). `+CDS` and `+CBM` have one only in PDU
/// mode, recognisable by their single `<length>` field.
pub(crate) fn two_line_header(line: &str) -> Option<TwoLineHeader> {
    if let Some(rest) = strip_prefix_ci(line, "+CMT:") {
        let fields = split_fields(rest);
        if fields.len() == 2
            && let Some(length) = fields[1].as_u32()
        {
            return Some(TwoLineHeader::Cmt {
                alpha: fields[0].as_opt_string(),
                length,
            });
        }
        // Some modems leave out the empty alpha field (`+CMT: 24`), as
        // others do in +CMGL/+CMGR. A lone number can only be the PDU
        // length: text mode starts with the quoted originator.
        if let [only] = fields.as_slice()
            && !only.quoted
            && let Some(length) = only.as_u32()
        {
            return Some(TwoLineHeader::Cmt {
                alpha: None,
                length,
            });
        }
        return Some(TwoLineHeader::Opaque(line.to_owned()));
    }
    for prefix in ["+CDS:", "+CBM:"] {
        if let Some(rest) = strip_prefix_ci(line, prefix) {
            let fields = split_fields(rest);
            return match (fields.len(), fields[0].as_u32()) {
                (1, Some(length)) if prefix == "+CDS:" => Some(TwoLineHeader::Cds { length }),
                (1, Some(_)) => Some(TwoLineHeader::Opaque(line.to_owned())),
                _ => None,
            };
        }
    }
    None
}

/// Turns a complete single-line URC into its typed form. Lines that do not
/// parse as their typed variant fall back to [`Urc::Other`] rather than
/// being lost.
pub fn parse_single_line_urc(line: &str) -> Urc {
    let line = line.trim();
    let upper = line.to_ascii_uppercase();
    match upper.as_str() {
        "RING" => return Urc::Ring,
        "RDY" | "^SYSSTART" => return Urc::Ready(ReadySignal::ModemStarted),
        "CALL READY" => return Urc::Ready(ReadySignal::CallReady),
        "SMS READY" => return Urc::Ready(ReadySignal::SmsReady),
        _ => {}
    }
    let typed = match response_name(line).as_deref() {
        Some("+CMTI") => responses::parse_cmti(line).ok().map(|s| Urc::Cmti {
            mem: s.mem,
            index: s.index,
        }),
        Some("+CDSI") => responses::parse_cdsi(line).ok().map(|s| Urc::Cdsi {
            mem: s.mem,
            index: s.index,
        }),
        Some("+CREG" | "+CGREG" | "+CEREG" | "+C5GREG") => responses::parse_registration(line)
            .ok()
            .map(Urc::CregUnsolicited),
        Some("^RSSI") => strip_prefix_ci(line, "^RSSI:")
            .and_then(|v| v.parse().ok())
            .map(Urc::Rssi),
        Some("^BOOT") => Some(Urc::Boot),
        Some("+CPIN") => match responses::parse_cpin(line) {
            Ok(responses::PinState::Ready) => Some(Urc::Ready(ReadySignal::SimReady)),
            _ => None,
        },
        Some("+CFUN") => (strip_prefix_ci(line, "+CFUN:") == Some("1"))
            .then_some(Urc::Ready(ReadySignal::FullFunctionality)),
        Some("+QIND") => parse_qind(line),
        Some("^SMMEMFULL") => Some(Urc::MessageMemoryFull(true)),
        Some("+CIEV") => parse_ciev_smsfull(line),
        Some("+CLIP") => parse_clip(line),
        Some("+CUSD") => parse_cusd(line),
        _ => None,
    };
    typed.unwrap_or_else(|| Urc::Other(line.to_owned()))
}

fn parse_qind(line: &str) -> Option<Urc> {
    let rest = strip_prefix_ci(line, "+QIND:")?;
    if rest.eq_ignore_ascii_case("SMS DONE") {
        return Some(Urc::Ready(ReadySignal::SmsReady));
    }
    let fields = split_fields(rest);
    fields[0]
        .text
        .eq_ignore_ascii_case("smsfull")
        .then_some(Urc::MessageMemoryFull(true))
}

/// `+CIEV: "SMSFULL",<value>`; other indicators (signal, battery, calls,
/// numbered ones whose meaning only `AT+CIND=?` tells) stay untyped.
fn parse_ciev_smsfull(line: &str) -> Option<Urc> {
    let fields = split_fields(strip_prefix_ci(line, "+CIEV:")?);
    if !fields[0].text.eq_ignore_ascii_case("smsfull") {
        return None;
    }
    match fields.get(1).and_then(Field::as_u8)? {
        0 => Some(Urc::MessageMemoryFull(false)),
        _ => Some(Urc::MessageMemoryFull(true)),
    }
}

fn parse_clip(line: &str) -> Option<Urc> {
    let fields = split_fields(strip_prefix_ci(line, "+CLIP:")?);
    Some(Urc::Clip {
        number: fields[0].text.to_owned(),
        toa: fields.get(1).and_then(Field::as_u16),
    })
}

fn parse_cusd(line: &str) -> Option<Urc> {
    let fields = split_fields(strip_prefix_ci(line, "+CUSD:")?);
    Some(Urc::Cusd {
        status: fields[0].as_u8()?,
        text: fields.get(1).map(|f| f.text.to_owned()),
        dcs: fields.get(2).and_then(Field::as_u16),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::responses::RegistrationState;

    #[test]
    fn recognises_urc_names() {
        assert_eq!(urc_name(r#"+CMTI: "SM",3"#).as_deref(), Some("+CMTI"));
        assert_eq!(urc_name("^RSSI:17").as_deref(), Some("^RSSI"));
        assert_eq!(urc_name("Call Ready").as_deref(), Some("CALL READY"));
        assert_eq!(urc_name("RING").as_deref(), Some("RING"));
        assert_eq!(urc_name("+CSCON: 1").as_deref(), Some("+CSCON"));
        assert_eq!(urc_name("+CIREGU: 1,2").as_deref(), Some("+CIREGU"));
        assert_eq!(urc_name("+CSQ: 20,99"), None);
        assert_eq!(urc_name("+CMGL: 1,0,,23"), None);
        assert_eq!(urc_name("867584030000000"), None);
    }

    #[test]
    fn typed_single_line_urcs() {
        assert_eq!(
            parse_single_line_urc(r#"+CMTI: "SM",3"#),
            Urc::Cmti {
                mem: "SM".into(),
                index: 3
            }
        );
        assert_eq!(
            parse_single_line_urc(r#"+CDSI: "SR",1"#),
            Urc::Cdsi {
                mem: "SR".into(),
                index: 1
            }
        );
        assert_eq!(parse_single_line_urc("^RSSI:17"), Urc::Rssi(17));
        assert_eq!(parse_single_line_urc("^BOOT:12345,0,0,0,72"), Urc::Boot);
        assert_eq!(
            parse_single_line_urc("RDY"),
            Urc::Ready(ReadySignal::ModemStarted)
        );
        assert_eq!(
            parse_single_line_urc("SMS Ready"),
            Urc::Ready(ReadySignal::SmsReady)
        );
        assert_eq!(
            parse_single_line_urc("+QIND: SMS DONE"),
            Urc::Ready(ReadySignal::SmsReady)
        );
        assert_eq!(
            parse_single_line_urc("+CPIN: READY"),
            Urc::Ready(ReadySignal::SimReady)
        );
        assert_eq!(
            parse_single_line_urc("+CFUN: 1"),
            Urc::Ready(ReadySignal::FullFunctionality)
        );
        assert_eq!(
            parse_single_line_urc("+QIND: PB DONE"),
            Urc::Other("+QIND: PB DONE".into())
        );
        assert_eq!(
            parse_single_line_urc("^MODE:5,4"),
            Urc::Other("^MODE:5,4".into())
        );
    }

    #[test]
    fn message_memory_full_urcs() {
        for full in [
            r#"^SMMEMFULL: "SM""#,
            r#"+QIND: "smsfull","SM""#,
            r#"+CIEV: "SMSFULL",1"#,
            "+CIEV: smsfull,1",
        ] {
            assert!(urc_name(full).is_some(), "{full}");
            assert_eq!(
                parse_single_line_urc(full),
                Urc::MessageMemoryFull(true),
                "{full}"
            );
        }
        assert_eq!(
            parse_single_line_urc(r#"+CIEV: "SMSFULL",0"#),
            Urc::MessageMemoryFull(false)
        );
        // Other indicators are not about the memory.
        assert_eq!(
            parse_single_line_urc("+CIEV: 7,1"),
            Urc::Other("+CIEV: 7,1".into())
        );
        assert_eq!(
            parse_single_line_urc(r#"+CIEV: "SMSFULL""#),
            Urc::Other(r#"+CIEV: "SMSFULL""#.into())
        );
        assert_eq!(
            parse_single_line_urc(r#"+QIND: "csq",20,99"#),
            Urc::Other(r#"+QIND: "csq",20,99"#.into())
        );
    }

    #[test]
    fn registration_and_call_urcs() {
        match parse_single_line_urc(r#"+CEREG: 1,"1A2B","01C3D4E5",7"#) {
            Urc::CregUnsolicited(reg) => {
                assert_eq!(reg.state, RegistrationState::Home);
                assert_eq!(reg.act, Some(7));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            parse_single_line_urc(r#"+CLIP: "+491701234567",145,,,,0"#),
            Urc::Clip {
                number: "+491701234567".into(),
                toa: Some(145)
            }
        );
        assert_eq!(
            parse_single_line_urc(r#"+CUSD: 0,"Balance: 5,00 EUR",15"#),
            Urc::Cusd {
                status: 0,
                text: Some("Balance: 5,00 EUR".into()),
                dcs: Some(15)
            }
        );
        assert_eq!(
            parse_single_line_urc("+CUSD: 2"),
            Urc::Cusd {
                status: 2,
                text: None,
                dcs: None
            }
        );
        // Malformed typed URCs are kept, not dropped.
        assert_eq!(
            parse_single_line_urc("+CMTI: garbage"),
            Urc::Other("+CMTI: garbage".into())
        );
    }

    #[test]
    fn two_line_headers() {
        assert_eq!(
            two_line_header("+CMT: ,23"),
            Some(TwoLineHeader::Cmt {
                alpha: None,
                length: 23
            })
        );
        assert_eq!(
            two_line_header(r#"+CMT: "Mum",30"#),
            Some(TwoLineHeader::Cmt {
                alpha: Some("Mum".into()),
                length: 30
            })
        );
        // The alpha field left out, as some modems do.
        assert_eq!(
            two_line_header("+CMT: 24"),
            Some(TwoLineHeader::Cmt {
                alpha: None,
                length: 24
            })
        );
        assert!(matches!(
            two_line_header(r#"+CMT: "24""#),
            Some(TwoLineHeader::Opaque(_))
        ));
        assert_eq!(
            two_line_header("+CDS: 25"),
            Some(TwoLineHeader::Cds { length: 25 })
        );
        // Text-mode status report is a single line.
        assert_eq!(two_line_header(r#"+CDS: 6,42,"+4917012345",145"#), None);
        assert!(matches!(
            two_line_header(r#"+CMT: "+4917012345",,"24/01/01,10:00:00+04""#),
            Some(TwoLineHeader::Opaque(_))
        ));
        assert_eq!(two_line_header("+CMTI: \"SM\",1"), None);
    }
}
