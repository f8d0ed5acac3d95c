//! Runs the hex fixtures in tests/fixtures/*.txt through `decode`.
//! Set FIXTURE_DUMP=1 to print every decoded PDU as JSON (handy when
//! adding a fixture).

use std::collections::BTreeMap;

use phonerelay_sms_pdu::{
    Direction, InformationElement, Pdu, PduError, UserData, ValidityPeriod, decode, encode_hex,
};

struct Fixture {
    name: String,
    fields: BTreeMap<String, String>,
}

fn unescape(v: &str) -> String {
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('\\') => out.push('\\'),
                Some(o) => panic!("bad escape \\{o}"),
                None => panic!("dangling backslash"),
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub fn load(path: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let text = std::fs::read_to_string(path).expect("fixture file");
    let mut out = Vec::new();
    let mut cur: Option<Fixture> = None;
    for line in text.lines().chain(std::iter::once("")) {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            if let Some(f) = cur.take() {
                out.push((f.name, f.fields));
            }
            continue;
        }
        let (k, v) = line
            .split_once(": ")
            .map_or_else(|| (line.trim_end_matches(':'), ""), |(k, v)| (k, v));
        let v = unescape(v);
        if k == "name" {
            cur = Some(Fixture {
                name: v,
                fields: BTreeMap::new(),
            });
        } else {
            let f = cur.as_mut().expect("key before name");
            assert!(
                f.fields.insert(k.to_string(), v).is_none(),
                "duplicate key {k} in {}",
                f.name
            );
        }
    }
    out
}

fn none_or<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "<none>".to_string(), |x| x.to_string())
}

fn snake<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .unwrap()
        .as_str()
        .unwrap_or("?")
        .to_string()
}

fn user_data_fields(m: &mut BTreeMap<String, String>, ud: &UserData) {
    m.insert("text".into(), none_or(ud.text.clone()));
    m.insert("data".into(), none_or(ud.data.as_deref().map(encode_hex)));
    m.insert("truncated".into(), ud.truncated.to_string());
    if let Some(h) = &ud.header {
        if let Some(c) = h.concat() {
            let bits = if c.sixteen_bit_reference {
                "16bit"
            } else {
                "8bit"
            };
            m.insert(
                "concat".into(),
                format!("{}/{}/{}/{bits}", c.reference, c.total, c.sequence),
            );
        }
        let ieis: Vec<String> = h
            .elements
            .iter()
            .map(|e| match e {
                InformationElement::Concat(c) if c.sixteen_bit_reference => "08".to_string(),
                InformationElement::Concat(_) => "00".to_string(),
                InformationElement::Ports {
                    sixteen_bit: true, ..
                } => "05".to_string(),
                InformationElement::Ports { .. } => "04".to_string(),
                InformationElement::Other { iei, .. } => format!("{iei:02X}"),
            })
            .collect();
        m.insert("ieis".into(), ieis.join(","));
        if let Some((d, s)) = h.ports() {
            m.insert("ports".into(), format!("{d}/{s}"));
        }
    }
}

/// The decoded PDU as flat `key -> string` pairs the fixtures can name.
pub fn flatten(pdu: &Pdu) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), v);
    };
    match pdu {
        Pdu::Deliver(d) => {
            put("type", "deliver".into());
            put("smsc", none_or(d.smsc.as_ref().map(|a| a.number.clone())));
            put("number", d.originator.number.clone());
            put("number_type", snake(&d.originator.type_of_number));
            put(
                "timestamp",
                none_or(d.service_centre_timestamp.map(|t| t.to_rfc3339())),
            );
            put("encoding", snake(&d.data_coding.encoding));
            put(
                "class",
                none_or(d.data_coding.message_class.as_ref().map(snake)),
            );
            put("pid", d.protocol_identifier.to_string());
            put("more_messages", d.more_messages_to_send.to_string());
            put(
                "status_report_indication",
                d.status_report_indication.to_string(),
            );
            user_data_fields(&mut m, &d.user_data);
        }
        Pdu::Submit(s) => {
            put("type", "submit".into());
            put("smsc", none_or(s.smsc.as_ref().map(|a| a.number.clone())));
            put("number", s.destination.number.clone());
            put("number_type", snake(&s.destination.type_of_number));
            put("mr", s.message_reference.to_string());
            put("encoding", snake(&s.data_coding.encoding));
            put(
                "class",
                none_or(s.data_coding.message_class.as_ref().map(snake)),
            );
            put("pid", s.protocol_identifier.to_string());
            put("status_report_request", s.status_report_request.to_string());
            put("reject_duplicates", s.reject_duplicates.to_string());
            match &s.validity_period {
                Some(ValidityPeriod::Relative { seconds, .. }) => {
                    put("vp_seconds", seconds.to_string())
                }
                Some(ValidityPeriod::Absolute { timestamp }) => {
                    put("vp_absolute", timestamp.to_rfc3339())
                }
                Some(ValidityPeriod::Enhanced { raw }) => put("vp_enhanced", encode_hex(raw)),
                None => put("vp_seconds", "<none>".into()),
            }
            user_data_fields(&mut m, &s.user_data);
        }
        Pdu::StatusReport(r) => {
            put("type", "status_report".into());
            put("smsc", none_or(r.smsc.as_ref().map(|a| a.number.clone())));
            put("number", r.recipient.number.clone());
            put("number_type", snake(&r.recipient.type_of_number));
            put("mr", r.message_reference.to_string());
            put(
                "timestamp",
                none_or(r.service_centre_timestamp.map(|t| t.to_rfc3339())),
            );
            put(
                "discharge",
                none_or(r.discharge_time.map(|t| t.to_rfc3339())),
            );
            put("status", r.status.raw.to_string());
            put("status_class", snake(&r.status.class));
            match &r.user_data {
                Some(ud) => user_data_fields(&mut m, ud),
                None => {
                    m.insert("text".into(), "<none>".into());
                }
            }
        }
    }
    m
}

fn error_name(e: &PduError) -> &'static str {
    match e {
        PduError::InvalidHex { .. } => "InvalidHex",
        PduError::Truncated { .. } => "Truncated",
        PduError::InvalidField { .. } => "InvalidField",
        PduError::UnsupportedMessageType { .. } => "UnsupportedMessageType",
        PduError::InvalidAddress { .. } => "InvalidAddress",
        PduError::TooManyParts { .. } => "TooManyParts",
        PduError::Unencodable { .. } => "Unencodable",
        PduError::InvalidArgument { .. } => "InvalidArgument",
    }
}

fn run_file(path: &str) -> usize {
    let dump = std::env::var_os("FIXTURE_DUMP").is_some();
    let fixtures = load(path);
    let mut failures = Vec::new();
    for (name, f) in &fixtures {
        let dir = match f.get("dir").map(String::as_str) {
            Some("mt") => Direction::MtFromNetwork,
            Some("mo") => Direction::MoToNetwork,
            other => panic!("{name}: bad dir {other:?}"),
        };
        assert!(
            f.contains_key("source"),
            "{name}: every fixture must say where it came from"
        );
        let hex = f.get("hex").unwrap_or_else(|| panic!("{name}: no hex"));
        let result = decode(hex, dir);
        if dump {
            match &result {
                Ok(p) => println!("{name}: {}", serde_json::to_string_pretty(p).unwrap()),
                Err(e) => println!("{name}: error {e}"),
            }
        }
        match (result, f.get("error")) {
            (Err(e), Some(want)) if error_name(&e) == want => {}
            (Err(e), want) => failures.push(format!("{name}: error {e:?}, wanted {want:?}")),
            (Ok(p), Some(want)) => {
                failures.push(format!("{name}: decoded {p:?}, wanted error {want}"))
            }
            (Ok(p), None) => {
                // Every decoded PDU must serialise for `phonerelay pdu decode`.
                serde_json::to_string(&p).expect("serialize");
                let flat = flatten(&p);
                for (k, want) in f {
                    if matches!(k.as_str(), "source" | "dir" | "hex") {
                        continue;
                    }
                    match flat.get(k) {
                        Some(got) if got == want => {}
                        got => failures.push(format!("{name}: {k} = {got:?}, wanted {want:?}")),
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "fixture failures:\n{}",
        failures.join("\n")
    );
    fixtures.len()
}

#[test]
fn decode_fixtures() {
    let n = run_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/decode.txt"
    ));
    assert!(n >= 40, "only {n} fixtures loaded");
}
