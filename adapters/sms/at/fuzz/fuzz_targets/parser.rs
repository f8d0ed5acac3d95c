//! Arbitrary bytes, arbitrarily chunked, with an arbitrary pending command:
//! the parser must not panic, must give the same events however the input
//! is chunked, and must recognise a clean `OK` afterwards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phonerelay_sms_at::{AtParser, FinalResult, ParserEvent};

const COMMANDS: [&str; 6] = [
    "AT",
    "AT+CMGL=4",
    "AT+CMGS=5",
    "AT+CREG?",
    "AT+CMGR=1",
    "ATE0",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let command = COMMANDS[usize::from(selector) % COMMANDS.len()];
    let chunk = usize::from(selector >> 3).max(1);

    let mut whole = AtParser::with_max_line_len(64);
    whole.command_sent(command);
    let expected = whole.feed(input);

    let mut chunked = AtParser::with_max_line_len(64);
    chunked.command_sent(command);
    let got: Vec<ParserEvent> = input.chunks(chunk).flat_map(|c| chunked.feed(c)).collect();
    assert_eq!(got, expected);

    let tail = whole.feed(b"\r\nOK\r\n");
    assert_eq!(tail.last(), Some(&ParserEvent::Final(FinalResult::Ok)));
});
