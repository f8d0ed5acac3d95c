//! Random input never panics, never confuses the engine's bookkeeping, and
//! never wedges the parser: after any garbage, a clean final result is
//! recognised again.

use std::collections::HashSet;

use phonerelay_sms_at::{
    AtEngine, AtParser, Command, CommandId, EngineEvent, FinalResult, ParserEvent,
};
use proptest::prelude::*;

const COMMANDS: [&str; 6] = [
    "AT",
    "AT+CMGL=4",
    "AT+CMGS=5",
    "AT+CREG?",
    "AT+CMGR=1",
    "ATE0",
];

/// Bytes that are mostly AT-shaped so the interesting paths get exercised,
/// mixed with arbitrary bytes.
fn modem_noise() -> impl Strategy<Value = Vec<u8>> {
    noise_of(40)
}

fn noise_of(max_tokens: usize) -> impl Strategy<Value = Vec<u8>> {
    let tokens = prop_oneof![
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"OK".to_vec()),
        Just(b"> ".to_vec()),
        Just(b"+CMT: ,5".to_vec()),
        Just(b"+CMGL: 1,0,,5".to_vec()),
        Just(b"+CDS: 3".to_vec()),
        Just(b"+CREG: 1".to_vec()),
        Just(b"+CMS ERROR: 500".to_vec()),
        Just(b"0011AABB".to_vec()),
        Just(b"AT+CMGL=4".to_vec()),
        Just(b"013".to_vec()),
        Just(b"^RSSI:5".to_vec()),
        Just(vec![0]),
        Just(vec![0x1A]),
        proptest::collection::vec(any::<u8>(), 0..40),
    ];
    proptest::collection::vec(tokens, 0..max_tokens).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn parser_recovers_after_any_garbage(
        noise in modem_noise(),
        command in 0..COMMANDS.len(),
        max_len in 16usize..200,
    ) {
        let mut parser = AtParser::with_max_line_len(max_len);
        parser.command_sent(COMMANDS[command]);
        let _ = parser.feed(&noise);
        let events = parser.feed(b"\r\nOK\r\n");
        prop_assert_eq!(events.last(), Some(&ParserEvent::Final(FinalResult::Ok)));
    }

    #[test]
    fn parser_chunking_is_irrelevant_for_any_input(
        noise in modem_noise(),
        command in 0..COMMANDS.len(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut whole = AtParser::new();
        whole.command_sent(COMMANDS[command]);
        let expected = whole.feed(&noise);

        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(noise.len() + 1)).collect();
        points.sort_unstable();
        let mut chunked = AtParser::new();
        chunked.command_sent(COMMANDS[command]);
        let mut got = Vec::new();
        let mut start = 0;
        for point in points.into_iter().chain([noise.len()]) {
            got.extend(chunked.feed(&noise[start..point]));
            start = point;
        }
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn engine_bookkeeping_survives_random_operations(
        ops in proptest::collection::vec((0u8..4, noise_of(8), 0u64..3_000), 1..30),
    ) {
        let mut engine = AtEngine::new();
        let mut submitted = Vec::new();
        let mut finished: HashSet<CommandId> = HashSet::new();
        let mut timed_out: HashSet<CommandId> = HashSet::new();
        let mut now = 0u64;
        for (op, bytes, step) in ops {
            now += step;
            match op {
                0 => submitted.push(engine.submit(if step % 2 == 0 {
                    Command::plain("AT+CMGL=4", 1_000)
                } else {
                    Command::with_pdu("AT+CMGS=5", "0011AABBCC00", 1_000)
                })),
                1 => engine.handle_input(&bytes, now),
                2 => engine.handle_timeout(now),
                _ => while engine.poll_transmit(now).is_some() {},
            }
            if let Some(deadline) = engine.poll_timeout() {
                // A deadline in the past means handle_timeout was not yet
                // called for it, never that it is garbage.
                prop_assert!(deadline <= now + 3_000);
            }
            while let Some(event) = engine.poll_event() {
                match event {
                    EngineEvent::Completed { id, .. } => {
                        prop_assert!(finished.insert(id), "{:?} finished twice", id);
                    }
                    EngineEvent::TimedOut { id, .. } => {
                        prop_assert!(finished.insert(id), "{:?} finished twice", id);
                        timed_out.insert(id);
                    }
                    EngineEvent::LateResult { id, .. } => {
                        prop_assert!(timed_out.remove(&id), "late result for {:?} without timeout, or twice", id);
                    }
                    _ => {}
                }
            }
        }
        let running = engine.current_command().map(|(id, _)| id);
        let accounted = finished.len() + usize::from(running.is_some()) + engine.pending_len();
        prop_assert_eq!(accounted, submitted.len());
        if let Some(id) = running {
            prop_assert!(!finished.contains(&id));
        }
    }
}
