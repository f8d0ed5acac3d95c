//! Exact-output tests of `encode_submit` against SMS-SUBMIT PDUs published
//! by ModemManager (src/tests/test-sms-part-3gpp.c, "PDU creator" tests)
//! and python-gsmmodem (test/test_pdu.py, encodeSmsSubmit tests). Only the
//! inputs and resulting hex are taken from them.

use std::time::Duration;

use phonerelay_sms_pdu::{SubmitOptions, TypeOfNumber, encode_submit, tpdu_length};

fn hexes(to: &str, text: &str, opts: &SubmitOptions) -> Vec<String> {
    let parts = encode_submit(to, text, opts).unwrap();
    for p in &parts {
        assert_eq!(
            tpdu_length(&p.hex).unwrap(),
            p.tpdu_length,
            "AT+CMGS length"
        );
    }
    parts.into_iter().map(|p| p.hex).collect()
}

const RUSSIAN: &str = "Да здравствует король, детка!";
const GSM_DELTA: &str = "Hi there...Tue 17th Jan 2012 05:30.18 pm (GMT+1) ΔΔΔΔΔ";

#[test]
fn modemmanager_ucs2_with_and_without_smsc() {
    let five_minutes = Some(Duration::from_secs(300));
    let with_smsc = SubmitOptions {
        smsc: Some("+19037029920".into()),
        validity: five_minutes,
        ..Default::default()
    };
    assert_eq!(
        hexes("+15555551234", RUSSIAN, &with_smsc),
        [
            "07919130079229F011000B915155551532F40008003A041404300020043704340440043004320441044204320443043504420020043A043E0440043E043B044C002C0020043404350442043A04300021"
        ]
    );
    let without = SubmitOptions {
        validity: five_minutes,
        ..Default::default()
    };
    assert_eq!(
        hexes("+15555551234", RUSSIAN, &without),
        [
            "0011000B915155551532F40008003A041404300020043704340440043004320441044204320443043504420020043A043E0440043E043B044C002C0020043404350442043A04300021"
        ]
    );
}

#[test]
fn modemmanager_gsm7() {
    let opts = SubmitOptions {
        smsc: Some("+19037029920".into()),
        validity: Some(Duration::from_secs(300)),
        ..Default::default()
    };
    assert_eq!(
        hexes("+15555551234", GSM_DELTA, &opts),
        [
            "07919130079229F011000B915155551532F400000036C834888E2ECBCB2E978B5A2F8362373A1AA40CBB4132584C0682D57433982B8603C1DB20D4B1495DC552200804028100"
        ]
    );
    // 25 septets: the last septet sits alone in the final octet.
    let opts = SubmitOptions {
        validity: Some(Duration::from_secs(300)),
        ..Default::default()
    };
    assert_eq!(
        hexes("+15556661234", "This is really cool ΔΔΔΔΔ", &opts),
        ["0011000B915155661632F40000001954747A0E4ACF41F27298CDCE83C6EF371B0481402010"]
    );
    assert_eq!(
        hexes(
            "+15556661234",
            "This is really cool ΔΔΔΔΔ",
            &SubmitOptions::default()
        ),
        ["0001000B915155661632F400001954747A0E4ACF41F27298CDCE83C6EF371B0481402010"]
    );
}

#[test]
fn python_gsmmodem_single_parts() {
    assert_eq!(
        hexes("+27820001111", "Hello World!", &SubmitOptions::default()),
        ["0001000B917228001011F100000CC8329BFD065DDF72363904"]
    );
    let opts = SubmitOptions {
        smsc: Some("+44000000000".into()),
        validity: Some(Duration::from_secs(52 * 7 * 86_400)),
        ..Default::default()
    };
    assert_eq!(
        hexes("+123456789", "世界您好！", &opts),
        ["07914400000000F01100099121436587F90008F40A4E16754C60A8597DFF01"]
    );
    // National numbers (TON 2) for both SMSC and destination, TP-MR 13,
    // 3-day validity, status report requested.
    let opts = SubmitOptions {
        smsc: Some("12345".into()),
        validity: Some(Duration::from_secs(3 * 86_400)),
        message_reference: 13,
        request_status_report: true,
        local_number_type: Some(TypeOfNumber::National),
        ..Default::default()
    };
    assert_eq!(
        hexes("0126541234", "Test message: local numbers", &opts),
        ["04A12143F5310D0AA110624521430000A91BD4F29C0E6A97E7F3F0B9AC03B1DFE3301BE4AEB7C565F91C"]
    );
}

#[test]
fn python_gsmmodem_three_part_concatenation() {
    let text = "Lorem ipsum dolor sit amet, consectetur adipisicing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.Ut enim ad minim veniam, quinostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.Duis aute irure dolor in reprehenderit in voluptate velit esse cillum doloe eu fugiat nulla pariatur.Excepteur sint occaecat cupidatat non proident, sunt in culpa qui officia deserunt mollit anim id est laborum";
    let opts = SubmitOptions {
        reject_duplicates: true,
        concat_reference: 0,
        ..Default::default()
    };
    assert_eq!(
        hexes("+15125551234", text, &opts),
        [
            "0045000B915121551532F40000A0050003000301986F79B90D4AC3E7F53688FC66BFE5A0799A0E0AB7CB741668FC76CFCB637A995E9783C2E4343C3D4F8FD3EE33A8CC4ED359A079990C22BF41E5747DDE7E9341F4721BFE9683D2EE719A9C26D7DD74509D0E6287C56F791954A683C86FF65B5E06B5C36777181466A7E3F5B0AB4A0795DDE936284C06B5D3EE741B642FBBD3E1360B14AFA7DD",
            "0045000B915121551532F40000A0050003000302DE73BABC4E0695F165F9384D0FD3D36F37A8CE6687DBE337881D16BFE5E939C89D9EA741753A28CC4EC7EB6938A88C0795C3A0F1BBDD7E93DFA0F1DB3D2FC7EB61BA8B584FCF41E13ABD0C4ACBEBF23288FC66BFE5A0B41B242FC3E56574D94D2ECBD37450DA0DB2BFD975383D4C2F83EC65769A0E2ACFE765D038CD66D7DB20F29BFD2E83CA",
            "0045000B915121551532F400008C050003000303EA2073FD9C0ED341EE3A9B1D06C1C3F274985E97BB8AF871194E2FD7E5A079DA4D07BDC7E370791CA683C675789A1CA687E920F7DB0D82CBDF6972D94D6781E675371D947683C675363C0C8AD7D3A0B7D99C1EA7C32072795E96D7DD7450FBCD66A7E9A0B03BDD06A5C9A0F29C0E6287C56F79BD0D",
        ]
    );
}
