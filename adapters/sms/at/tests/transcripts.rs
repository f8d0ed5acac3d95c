//! Realistic modem transcripts driven through `AtEngine`.
//!
//! The byte strings imitate what Quectel (EC25), SIMCom (SIM800) and Huawei
//! (E3372) modems print, including echo, URCs in the middle of responses
//! and vendor boot chatter. PDUs are syntactically plausible hex.

mod common;

use common::{completed, drain, exchange, urcs};
use phonerelay_sms_at::builders::{self, CmeeMode, ListFilter, Storage};
use phonerelay_sms_at::responses::{
    self, MessageStatus, PinState, RegistrationDomain, RegistrationState,
};
use phonerelay_sms_at::{
    AtEngine, Command, EngineEvent, ErrorClass, ErrorDetail, FinalResult, ReadySignal, Urc,
};

/// SMS-SUBMIT "hello" to +4917651432, SMSC "00" prefix; TPDU is 19 octets.
const SUBMIT_PDU: &str = "0011000B919471563412F00000AA05E8329BFD06";
/// SMS-DELIVER PDUs as modems print them after `+CMGL`/`+CMT` headers.
const DELIVER_PDU_1: &str = "07919471060040F0040B919471563412F00000421011912034400568656C6C6F";
const DELIVER_PDU_2: &str = "07919471060040F0040B919471563412F0000042101191203540024869";
const DELIVER_PDU_3: &str = "07919471060040F0040B919471563412F000004210119120454003E8329B";

fn submit_all(engine: &mut AtEngine, commands: Vec<Command>) {
    for command in commands {
        engine.submit(command);
    }
}

#[test]
fn full_startup_sequence_with_pin_and_cnmi_fallback() {
    let mut e = AtEngine::new();
    submit_all(&mut e, builders::startup(CmeeMode::Numeric));

    // Power-up chatter before the first command: boot URCs while idle.
    e.handle_input(b"\r\nRDY\r\n\r\n+CFUN: 1\r\n", 0);
    assert_eq!(
        urcs(&drain(&mut e)),
        vec![
            &Urc::Ready(ReadySignal::ModemStarted),
            &Urc::Ready(ReadySignal::FullFunctionality)
        ]
    );

    // Echo is still on for ATZ and for ATE0 itself.
    let ev = exchange(&mut e, 10, b"ATZ\r", b"ATZ\r\r\nOK\r\n");
    assert_eq!(completed(&ev).0, &FinalResult::Ok);
    let ev = exchange(&mut e, 20, b"ATE0\r", b"ATE0\r\r\nOK\r\n");
    assert_eq!(completed(&ev), (&FinalResult::Ok, &[][..]));
    let ev = exchange(&mut e, 30, b"AT+CMEE=1\r", b"\r\nOK\r\n");
    assert_eq!(completed(&ev).0, &FinalResult::Ok);
    let ev = exchange(
        &mut e,
        40,
        b"AT+CPIN?\r",
        b"\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n",
    );
    let (result, lines) = completed(&ev);
    assert!(result.is_ok());
    assert_eq!(responses::parse_cpin(&lines[0]).unwrap(), PinState::SimPin);

    // The driver reacts to SIM PIN; the PIN never shows in Display.
    let pin = builders::enter_pin("4711").unwrap();
    assert_eq!(pin.to_string(), "AT+CPIN=****");
    e.submit(pin);
    let ev = exchange(
        &mut e,
        50,
        b"AT+CPIN=\"4711\"\r",
        b"\r\nOK\r\n\r\n+CPIN: READY\r\n\r\n+QIND: PB DONE\r\n\r\n+QIND: SMS DONE\r\n",
    );
    assert_eq!(completed(&ev).0, &FinalResult::Ok);
    assert_eq!(
        urcs(&ev),
        vec![
            &Urc::Ready(ReadySignal::SimReady),
            &Urc::Other("+QIND: PB DONE".into()),
            &Urc::Ready(ReadySignal::SmsReady)
        ]
    );

    // The driver submits the set-up one command at a time so that it can
    // react to each result.
    let mut setup = builders::sms_setup(&Storage::default())
        .unwrap()
        .into_iter();
    e.submit(setup.next().unwrap());
    let ev = exchange(&mut e, 60, b"AT+CMGF=0\r", b"\r\nOK\r\n");
    assert!(completed(&ev).0.is_ok());
    e.submit(setup.next().unwrap());
    let ev = exchange(
        &mut e,
        70,
        b"AT+CPMS=\"SM\",\"SM\",\"SM\"\r",
        b"\r\n+CPMS: 2,30,2,30,2,30\r\n\r\nOK\r\n",
    );
    let usage = responses::parse_cpms(&completed(&ev).1[0]).unwrap();
    assert_eq!((usage[2].used, usage[2].total), (2, 30));

    // This modem rejects <ds>=2: fall back to the next candidate.
    e.submit(setup.next().unwrap());
    let ev = exchange(
        &mut e,
        80,
        b"AT+CNMI=2,1,0,2,0\r",
        b"\r\n+CMS ERROR: 303\r\n",
    );
    let (result, _) = completed(&ev);
    assert_eq!(result, &FinalResult::CmsError(ErrorDetail::Code(303)));
    assert_eq!(result.error_class(), Some(ErrorClass::Permanent));
    let [_, fallback, _] = builders::new_message_indication_candidates();
    e.submit(fallback);
    submit_all(&mut e, setup.collect());
    let ev = exchange(&mut e, 90, b"AT+CNMI=2,1,0,1,0\r", b"\r\nOK\r\n");
    assert!(completed(&ev).0.is_ok());

    let ev = exchange(
        &mut e,
        100,
        b"AT+CSCA?\r",
        b"\r\n+CSCA: \"+491770610000\",145\r\n\r\nOK\r\n",
    );
    let sc = responses::parse_csca(&completed(&ev).1[0]).unwrap();
    assert_eq!(sc.address, "+491770610000");

    // A registration URC sneaks in before the answer to the query.
    let ev = exchange(
        &mut e,
        110,
        b"AT+CREG?\r",
        b"\r\n+CREG: 1,\"1A2B\",\"01C3D4E5\",7\r\n\r\n+CREG: 0,1\r\n\r\nOK\r\n",
    );
    let (result, lines) = completed(&ev);
    assert!(result.is_ok());
    let answer = responses::parse_registration(&lines[0]).unwrap();
    assert_eq!(answer.n, Some(0));
    assert_eq!(answer.state, RegistrationState::Home);
    match urcs(&ev).as_slice() {
        [Urc::CregUnsolicited(reg)] => {
            assert_eq!(reg.domain, RegistrationDomain::CircuitSwitched);
            assert_eq!(reg.lac, Some(0x1A2B));
        }
        other => panic!("unexpected URCs {other:?}"),
    }
    let ev = exchange(
        &mut e,
        120,
        b"AT+CEREG?\r",
        b"\r\n+CEREG: 0,1\r\n\r\nOK\r\n",
    );
    let reg = responses::parse_registration(&completed(&ev).1[0]).unwrap();
    assert_eq!(reg.domain, RegistrationDomain::Eps);
    assert!(reg.state.is_registered());

    assert_eq!(e.poll_transmit(130), None);
    assert_eq!(e.pending_len(), 0);
    assert_eq!(e.stale_finals(), 0);
}

#[test]
fn send_sms_with_prompt_and_message_reference() {
    let mut e = AtEngine::new();
    let id = e.submit(builders::send_pdu(19, SUBMIT_PDU).unwrap());
    assert_eq!(e.poll_transmit(0), Some(b"AT+CMGS=19\r".to_vec()));
    // The prompt comes without a line end; nothing else is written before it.
    e.handle_input(b"\r\n>", 5);
    assert_eq!(e.poll_transmit(5), None);
    e.handle_input(b" ", 6);
    let mut expected_pdu = SUBMIT_PDU.as_bytes().to_vec();
    expected_pdu.push(0x1A);
    assert_eq!(e.poll_transmit(6), Some(expected_pdu));
    e.handle_input(b"\r\n+CMGS: 12\r\n\r\nOK\r\n", 2500);
    match drain(&mut e).as_slice() {
        [
            EngineEvent::Completed {
                id: done,
                result: FinalResult::Ok,
                lines,
            },
        ] => {
            assert_eq!(*done, id);
            assert_eq!(responses::parse_cmgs(&lines[0]).unwrap(), 12);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn send_sms_with_echo_on_and_huawei_style_prompt() {
    let mut e = AtEngine::new();
    e.submit(builders::send_pdu(19, SUBMIT_PDU).unwrap());
    e.poll_transmit(0);
    e.handle_input(b"AT+CMGS=19\r\r\n> ", 5);
    let pdu_write = e.poll_transmit(5).expect("PDU after prompt");
    assert_eq!(pdu_write.last(), Some(&0x1A));
    // The modem echoes the PDU (and the Ctrl-Z) before answering.
    let mut reply = SUBMIT_PDU.as_bytes().to_vec();
    reply.extend_from_slice(b"\x1a\r\n+CMGS: 200\r\n\r\nOK\r\n");
    e.handle_input(&reply, 900);
    let ev = drain(&mut e);
    assert_eq!(
        completed(&ev),
        (&FinalResult::Ok, &["+CMGS: 200".to_string()][..])
    );
}

#[test]
fn cmti_between_csq_answer_and_ok() {
    let mut e = AtEngine::new();
    e.submit(builders::signal_quality());
    let ev = exchange(
        &mut e,
        0,
        b"AT+CSQ\r",
        b"\r\n+CSQ: 20,99\r\n\r\n+CMTI: \"SM\",3\r\n\r\nOK\r\n",
    );
    let (result, lines) = completed(&ev);
    assert!(result.is_ok());
    assert_eq!(lines, ["+CSQ: 20,99"]);
    assert_eq!(responses::parse_csq(&lines[0]).unwrap().dbm(), Some(-73));
    assert_eq!(
        urcs(&ev),
        vec![&Urc::Cmti {
            mem: "SM".into(),
            index: 3
        }]
    );
}

#[test]
fn two_line_cmt_in_the_middle_of_a_cmgl_listing() {
    let mut e = AtEngine::new();
    e.submit(builders::list_messages(ListFilter::All));
    let reply = format!(
        "\r\n+CMGL: 1,1,,32\r\n{DELIVER_PDU_1}\r\n+CMT: ,28\r\n{DELIVER_PDU_2}\r\n\
         +CMGL: 4,0,,29\r\n{DELIVER_PDU_3}\r\n\r\nOK\r\n"
    );
    let ev = exchange(&mut e, 0, b"AT+CMGL=4\r", reply.as_bytes());
    let (result, lines) = completed(&ev);
    assert!(result.is_ok());
    assert_eq!(
        lines,
        [
            "+CMGL: 1,1,,32",
            DELIVER_PDU_1,
            "+CMGL: 4,0,,29",
            DELIVER_PDU_3
        ]
    );
    let header = responses::parse_cmgl_header(&lines[2]).unwrap();
    assert_eq!(header.index, 4);
    assert_eq!(header.status, MessageStatus::ReceivedUnread);
    assert_eq!(
        urcs(&ev),
        vec![&Urc::Cmt {
            alpha: None,
            length: 28,
            pdu: DELIVER_PDU_2.into()
        }]
    );
    // The URC event comes before the Completed event of the listing.
    assert!(matches!(ev[0], EngineEvent::Urc(Urc::Cmt { .. })));
}

#[test]
fn echo_on_everywhere() {
    let mut e = AtEngine::new();
    e.submit(builders::operator_query());
    e.submit(builders::read_message(2));
    e.submit(builders::delete_message(2));
    let ev = exchange(
        &mut e,
        0,
        b"AT+COPS?\r",
        b"AT+COPS?\r\r\n+COPS: 0,0,\"Telekom.de\",7\r\n\r\nOK\r\n",
    );
    let op = responses::parse_cops(&completed(&ev).1[0]).unwrap();
    assert_eq!(op.name.as_deref(), Some("Telekom.de"));
    let reply = format!("AT+CMGR=2\r\r\n+CMGR: 1,,32\r\n{DELIVER_PDU_1}\r\n\r\nOK\r\n");
    let ev = exchange(&mut e, 10, b"AT+CMGR=2\r", reply.as_bytes());
    let (_, lines) = completed(&ev);
    assert_eq!(lines.len(), 2);
    assert_eq!(responses::parse_cmgr_header(&lines[0]).unwrap().length, 32);
    assert_eq!(lines[1], DELIVER_PDU_1);
    // Echo split from its line end, as slow USB bridges deliver it.
    let ev = exchange(&mut e, 20, b"AT+CMGD=2\r", b"AT+CMGD=2");
    assert!(ev.is_empty());
    e.handle_input(b"\r\r\nOK\r\n", 21);
    assert_eq!(completed(&drain(&mut e)), (&FinalResult::Ok, &[][..]));
}

#[test]
fn huawei_rssi_and_boot_floods_interleaved() {
    let mut e = AtEngine::new();
    e.submit(builders::list_messages(ListFilter::All));
    e.submit(builders::signal_quality());
    let mut reply = Vec::new();
    reply.extend_from_slice(b"\r\n^BOOT:20131255,0,0,0,75\r\n\r\n^RSSI:14\r\n");
    reply.extend_from_slice(b"\r\n+CMGL: 0,1,,32\r\n");
    reply.extend_from_slice(b"\r\n^RSSI:15\r\n");
    reply.extend_from_slice(DELIVER_PDU_1.as_bytes());
    reply.extend_from_slice(b"\r\n\r\n^HCSQ:\"LTE\",45,38,120,22\r\n\r\n^MODE:5,4\r\n");
    reply.extend_from_slice(b"\r\n^SRVST:2\r\n\r\n^SIMST:1\r\n\r\n^BOOT:20131255,0,0,0,75\r\n");
    reply.extend_from_slice(b"\r\nOK\r\n\r\n^RSSI:16\r\n");
    let ev = exchange(&mut e, 0, b"AT+CMGL=4\r", &reply);
    let (result, lines) = completed(&ev);
    assert!(result.is_ok());
    assert_eq!(lines, ["+CMGL: 0,1,,32", DELIVER_PDU_1]);
    assert_eq!(
        urcs(&ev),
        vec![
            &Urc::Boot,
            &Urc::Rssi(14),
            &Urc::Rssi(15),
            &Urc::Other("^HCSQ:\"LTE\",45,38,120,22".into()),
            &Urc::Other("^MODE:5,4".into()),
            &Urc::Other("^SRVST:2".into()),
            &Urc::Other("^SIMST:1".into()),
            &Urc::Boot,
            &Urc::Rssi(16),
        ]
    );
    let ev = exchange(
        &mut e,
        10,
        b"AT+CSQ\r",
        b"\r\n^RSSI:17\r\n+CSQ: 17,99\r\n^BOOT:1,0,0,0,75\r\nOK\r\n",
    );
    assert_eq!(completed(&ev).1, ["+CSQ: 17,99"]);
    assert_eq!(urcs(&ev), vec![&Urc::Rssi(17), &Urc::Boot]);
}

#[test]
fn timeout_then_late_ok_is_not_misattributed() {
    let mut e = AtEngine::new();
    let slow = e.submit(builders::list_messages(ListFilter::All));
    let csq = e.submit(builders::signal_quality());
    assert_eq!(e.poll_transmit(0), Some(b"AT+CMGL=4\r".to_vec()));
    let deadline = e.poll_timeout().unwrap();
    e.handle_timeout(deadline);
    match drain(&mut e).as_slice() {
        [EngineEvent::TimedOut { id, command }] => {
            assert_eq!(*id, slow);
            assert_eq!(command.text, "AT+CMGL=4");
        }
        other => panic!("unexpected {other:?}"),
    }
    let t = deadline;
    // The late listing starts before the probe is even written.
    e.handle_input(
        format!("\r\n+CMGL: 1,1,,32\r\n{DELIVER_PDU_1}\r\n").as_bytes(),
        t + 1,
    );
    assert_eq!(e.poll_transmit(t + 2), Some(b"ATS3?\r".to_vec()));
    e.handle_input(b"\r\nOK\r\n", t + 3);
    assert_eq!(e.poll_transmit(t + 4), None, "late OK must not resync");
    e.handle_input(b"\r\n+CMTI: \"SM\",5\r\n\r\n013\r\n\r\nOK\r\n", t + 5);
    assert!(e.is_synchronised());
    assert_eq!(e.stale_finals(), 1);
    // URCs kept flowing during resynchronisation; the late listing is
    // reported against the timed-out command, never the next one.
    let ev = drain(&mut e);
    assert_eq!(
        ev,
        vec![
            EngineEvent::LateResult {
                id: slow,
                result: FinalResult::Ok,
                lines: vec!["+CMGL: 1,1,,32".into(), DELIVER_PDU_1.into()]
            },
            EngineEvent::Urc(Urc::Cmti {
                mem: "SM".into(),
                index: 5
            })
        ]
    );
    let ev = exchange(&mut e, t + 6, b"AT+CSQ\r", b"\r\n+CSQ: 11,99\r\n\r\nOK\r\n");
    match ev.as_slice() {
        [EngineEvent::Completed { id, lines, .. }] => {
            assert_eq!(*id, csq);
            assert_eq!(lines, &["+CSQ: 11,99"]);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn cms_error_500_is_transient() {
    let mut e = AtEngine::new();
    e.submit(builders::send_pdu(19, SUBMIT_PDU).unwrap());
    e.poll_transmit(0);
    e.handle_input(b"\r\n> ", 1);
    e.poll_transmit(1).unwrap();
    e.handle_input(b"\r\n+CMS ERROR: 500\r\n", 30_000);
    let ev = drain(&mut e);
    let (result, lines) = completed(&ev);
    assert!(lines.is_empty());
    assert_eq!(result, &FinalResult::CmsError(ErrorDetail::Code(500)));
    assert_eq!(result.error_class(), Some(ErrorClass::Transient));
    assert_eq!(
        phonerelay_sms_at::errors_table::cms_error(500)
            .unwrap()
            .meaning,
        "unknown error"
    );
}

#[test]
fn verbose_cme_error_sim_pin_required() {
    let mut e = AtEngine::new();
    e.submit(builders::list_messages(ListFilter::All));
    let ev = exchange(
        &mut e,
        0,
        b"AT+CMGL=4\r",
        b"\r\n+CME ERROR: SIM PIN required\r\n",
    );
    let (result, _) = completed(&ev);
    assert_eq!(
        result,
        &FinalResult::CmeError(ErrorDetail::Text("SIM PIN required".into()))
    );
    assert_eq!(result.error_code(), Some(11));
    assert_eq!(result.error_class(), Some(ErrorClass::Permanent));
}

#[test]
fn status_report_urcs_both_styles() {
    let mut e = AtEngine::new();
    e.handle_input(b"\r\n+CDSI: \"SR\",1\r\n\r\n+CDS: 25\r\n", 0);
    e.handle_input(
        b"07919471060040F006D60B911326880736F4111011719551401110117195714000\r\n",
        1,
    );
    assert_eq!(
        drain(&mut e),
        vec![
            EngineEvent::Urc(Urc::Cdsi {
                mem: "SR".into(),
                index: 1
            }),
            EngineEvent::Urc(Urc::Cds {
                length: 25,
                pdu: "07919471060040F006D60B911326880736F4111011719551401110117195714000".into()
            })
        ]
    );
}

#[test]
fn ussd_and_incoming_call_urcs() {
    let mut e = AtEngine::new();
    e.submit(Command::plain("AT+CUSD=1,\"*100#\",15", 10_000));
    let ev = exchange(
        &mut e,
        0,
        b"AT+CUSD=1,\"*100#\",15\r",
        b"\r\nOK\r\n\r\n+CUSD: 0,\"Guthaben: 4,20 EUR\",15\r\n\r\nRING\r\n\r\n+CLIP: \"+4930123456\",145,,,,0\r\n\r\nNO CARRIER\r\n",
    );
    assert!(completed(&ev).0.is_ok());
    assert_eq!(
        urcs(&ev),
        vec![
            &Urc::Cusd {
                status: 0,
                text: Some("Guthaben: 4,20 EUR".into()),
                dcs: Some(15)
            },
            &Urc::Ring,
            &Urc::Clip {
                number: "+4930123456".into(),
                toa: Some(145)
            },
            &Urc::Other("NO CARRIER".into())
        ]
    );
}

#[test]
fn send_timeout_then_late_success_is_reported_so_it_is_not_resent() {
    let mut e = AtEngine::new();
    let send = e.submit(builders::send_pdu(19, SUBMIT_PDU).unwrap());
    let next = e.submit(builders::signal_quality());
    e.poll_transmit(0);
    e.handle_input(b"\r\n> ", 10);
    e.poll_transmit(10).unwrap();
    let deadline = e.poll_timeout().unwrap();
    e.handle_timeout(deadline);
    assert!(matches!(
        drain(&mut e).as_slice(),
        [EngineEvent::TimedOut { id, .. }] if *id == send
    ));
    // The PDU was written, so no ESC: straight to the probe. The network
    // answers late; the modem runs the probe after the send.
    assert_eq!(e.poll_transmit(deadline), Some(b"ATS3?\r".to_vec()));
    e.handle_input(
        b"\r\n+CMGS: 44\r\n\r\nOK\r\n\r\n013\r\n\r\nOK\r\n",
        deadline + 5_000,
    );
    match drain(&mut e).as_slice() {
        [EngineEvent::LateResult { id, result, lines }] => {
            assert_eq!(*id, send);
            assert!(result.is_ok());
            assert_eq!(responses::parse_cmgs(&lines[0]).unwrap(), 44);
        }
        other => panic!("unexpected {other:?}"),
    }
    let ev = exchange(
        &mut e,
        deadline + 5_001,
        b"AT+CSQ\r",
        b"\r\n+CSQ: 5,99\r\n\r\nOK\r\n",
    );
    assert!(matches!(ev.as_slice(), [EngineEvent::Completed { id, .. }] if *id == next));
}

#[test]
fn prompt_timeout_escapes_and_resyncs() {
    let mut e = AtEngine::new();
    let send = e.submit(builders::send_pdu(19, SUBMIT_PDU).unwrap());
    e.submit(builders::signal_quality());
    e.poll_transmit(0);
    // The prompt never shows up (lost on the line).
    let deadline = e.poll_timeout().unwrap();
    e.handle_timeout(deadline);
    assert!(matches!(
        drain(&mut e).as_slice(),
        [EngineEvent::TimedOut { id, .. }] if *id == send
    ));
    assert_eq!(e.poll_transmit(deadline), Some(vec![0x1B]));
    assert_eq!(e.poll_transmit(deadline), Some(b"ATS3?\r".to_vec()));
    // ESC cancels text entry; the modem answers the cancelled CMGS `OK`,
    // which is no news of a send: nothing was written to send.
    e.handle_input(b"\r\nOK\r\n\r\n013\r\nOK\r\n", deadline + 50);
    assert_eq!(drain(&mut e), vec![]);
    assert_eq!(e.stale_finals(), 1);
    assert_eq!(e.poll_transmit(deadline + 50), Some(b"AT+CSQ\r".to_vec()));
}
