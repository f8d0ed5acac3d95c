//! The serial driver gets bytes in arbitrary chunks; the events must not
//! depend on where a chunk ends. Every test here feeds the same transcript
//! unsplit, split at every single byte boundary, and byte by byte, and
//! asserts identical results.

use phonerelay_sms_at::{AtEngine, AtParser, Command, EngineEvent, ParserEvent};

/// Cuts the bytes of transcript segment `index` into the chunks to feed.
type Chunker<'a> = &'a dyn Fn(usize, &[u8]) -> Vec<Vec<u8>>;

/// A parser transcript: each segment is (command written before it, bytes).
fn parser_segments() -> Vec<(Option<&'static str>, Vec<u8>)> {
    vec![
        (
            None,
            b"\0\0\r\nRDY\r\n\r\n^BOOT:20131255,0,0,0,75\r\n\r\n+CMTI: \"SM\",3\r\n".to_vec(),
        ),
        (
            Some("AT+CMGL=4"),
            b"AT+CMGL=4\r\r\n+CMGL: 1,1,,6\r\n0791AABBCCDD\r\n^RSSI:12\n\r+CMT: ,4\r\n\
              00AABBCC\r\n+CMGL: 2,0,,3\r\n001122\r\n\r\nOK\r\n"
                .to_vec(),
        ),
        (
            Some("AT+CMGS=3"),
            b"\r\n> 00AABBCC\x1a\r\n+CMGS: 42\r\n\r\nOK\r\n".to_vec(),
        ),
        (
            Some("AT+CREG?"),
            b"\r\n+CREG: 5\r\n\r\n+CREG: 2,1,\"1A2B\",\"00C3D4E5\",7\r\n\r\n+CME ERROR: SIM busy\r\n"
                .to_vec(),
        ),
        (
            None,
            b"\r\n+CDS: 3\r\n0006AB\r\nRING\r\n\xff\xfegarbage\r\n\r\nOK\r\n".to_vec(),
        ),
    ]
}

fn run_parser(chunker: Chunker<'_>) -> Vec<ParserEvent> {
    let mut parser = AtParser::new();
    let mut events = Vec::new();
    for (index, (command, bytes)) in parser_segments().into_iter().enumerate() {
        if let Some(command) = command {
            parser.command_sent(command);
            if command.starts_with("AT+CMGS") {
                parser.pdu_sent("00AABBCC");
            }
        }
        for chunk in chunker(index, &bytes) {
            events.extend(parser.feed(&chunk));
        }
    }
    events
}

#[test]
fn parser_events_do_not_depend_on_chunking() {
    let whole = run_parser(&|_, bytes| vec![bytes.to_vec()]);
    assert!(whole.len() > 15, "the transcript is meaningful: {whole:?}");
    assert!(whole.contains(&ParserEvent::Prompt));

    let byte_by_byte = run_parser(&|_, bytes| bytes.iter().map(|b| vec![*b]).collect());
    assert_eq!(byte_by_byte, whole);

    let segments = parser_segments();
    for (target, (_, bytes)) in segments.iter().enumerate() {
        for split in 0..=bytes.len() {
            let split_run = run_parser(&|index, bytes| {
                if index == target {
                    vec![bytes[..split].to_vec(), bytes[split..].to_vec()]
                } else {
                    vec![bytes.to_vec()]
                }
            });
            assert_eq!(split_run, whole, "segment {target} split at {split}");
        }
    }
}

#[test]
fn parser_events_do_not_depend_on_chunk_size() {
    let whole = run_parser(&|_, bytes| vec![bytes.to_vec()]);
    for size in 2..=9 {
        let run = run_parser(&|_, bytes| bytes.chunks(size).map(<[u8]>::to_vec).collect());
        assert_eq!(run, whole, "chunk size {size}");
    }
}

/// What the engine did: everything written and every event, in order.
#[derive(Debug, Default, PartialEq)]
struct EngineLog {
    writes: Vec<Vec<u8>>,
    events: Vec<EngineEvent>,
}

/// Engine transcript: a CMGS exchange with prompt, then a CSQ with a URC in
/// the middle and echo, then a CMGL with a two-line +CMT inside.
fn engine_inputs() -> Vec<Vec<u8>> {
    vec![
        b"AT+CMGS=3\r\r\n> ".to_vec(),
        b"00AABBCC\x1a\r\n+CMGS: 7\r\n\r\nOK\r\n".to_vec(),
        b"\r\nAT+CSQ\r\r\n+CSQ: 23,99\r\n\r\n+CMTI: \"ME\",9\r\n\r\nOK\r\n".to_vec(),
        b"\r\n+CMGL: 9,0,,3\r\n+CMT: \"\",4\r\n00AABBCC\r\n001122\r\n\r\nOK\r\n".to_vec(),
    ]
}

fn run_engine(chunker: Chunker<'_>) -> EngineLog {
    let mut engine = AtEngine::new();
    engine.submit(Command::with_pdu("AT+CMGS=3", "00AABBCC", 60_000));
    engine.submit(Command::plain("AT+CSQ", 5_000));
    engine.submit(Command::plain("AT+CMGL=4", 30_000));
    let mut log = EngineLog::default();
    let mut now = 0;
    let pump = |engine: &mut AtEngine, log: &mut EngineLog, now: u64| {
        while let Some(bytes) = engine.poll_transmit(now) {
            log.writes.push(bytes);
        }
        log.events
            .extend(std::iter::from_fn(|| engine.poll_event()));
    };
    pump(&mut engine, &mut log, now);
    for (index, input) in engine_inputs().into_iter().enumerate() {
        for chunk in chunker(index, &input) {
            now += 1;
            engine.handle_input(&chunk, now);
            pump(&mut engine, &mut log, now);
        }
    }
    log
}

#[test]
fn engine_results_do_not_depend_on_chunking() {
    let whole = run_engine(&|_, bytes| vec![bytes.to_vec()]);
    assert_eq!(
        whole.writes,
        vec![
            b"AT+CMGS=3\r".to_vec(),
            b"00AABBCC\x1a".to_vec(),
            b"AT+CSQ\r".to_vec(),
            b"AT+CMGL=4\r".to_vec()
        ]
    );
    let completed = whole
        .events
        .iter()
        .filter(|e| matches!(e, EngineEvent::Completed { .. }))
        .count();
    assert_eq!(completed, 3, "{:?}", whole.events);
    assert_eq!(whole.events.len(), 5, "{:?}", whole.events);

    let byte_by_byte = run_engine(&|_, bytes| bytes.iter().map(|b| vec![*b]).collect());
    assert_eq!(byte_by_byte, whole);

    for (target, input) in engine_inputs().iter().enumerate() {
        for split in 0..=input.len() {
            let run = run_engine(&|index, bytes| {
                if index == target {
                    vec![bytes[..split].to_vec(), bytes[split..].to_vec()]
                } else {
                    vec![bytes.to_vec()]
                }
            });
            assert_eq!(run, whole, "input {target} split at {split}");
        }
    }
}

/// After a timeout, the late answer and the probe's answer arrive together;
/// wherever the chunk boundary falls, the late result is attributed to the
/// timed-out command and the next command runs in sync.
const LATE_ANSWERS: &[u8] =
    b"\r\n+CMGL: 1,1,,3\r\n0011AA\r\n\r\nOK\r\n\r\n^RSSI:9\r\n013\r\n\r\nOK\r\n";

fn run_timeout_scenario(first_chunk_len: usize) -> EngineLog {
    let late = LATE_ANSWERS;
    let mut engine = AtEngine::new();
    engine.submit(Command::plain("AT+CMGL=4", 1_000));
    engine.submit(Command::plain("AT+CSQ", 1_000));
    let mut log = EngineLog::default();
    let pump = |engine: &mut AtEngine, log: &mut EngineLog, now: u64| {
        while let Some(bytes) = engine.poll_transmit(now) {
            log.writes.push(bytes);
        }
        log.events
            .extend(std::iter::from_fn(|| engine.poll_event()));
    };
    pump(&mut engine, &mut log, 0);
    engine.handle_timeout(1_000);
    pump(&mut engine, &mut log, 1_000);
    let (head, tail) = late.split_at(first_chunk_len);
    engine.handle_input(head, 1_100);
    pump(&mut engine, &mut log, 1_100);
    engine.handle_input(tail, 1_200);
    pump(&mut engine, &mut log, 1_200);
    engine.handle_input(b"\r\n+CSQ: 9,99\r\n\r\nOK\r\n", 1_300);
    pump(&mut engine, &mut log, 1_300);
    log
}

#[test]
fn timeout_recovery_does_not_depend_on_chunking() {
    let whole = run_timeout_scenario(0);
    assert_eq!(
        whole.writes,
        vec![
            b"AT+CMGL=4\r".to_vec(),
            b"ATS3?\r".to_vec(),
            b"AT+CSQ\r".to_vec()
        ]
    );
    assert!(
        matches!(
            whole.events.as_slice(),
            [
                EngineEvent::TimedOut { .. },
                EngineEvent::LateResult { .. },
                EngineEvent::Urc(_),
                EngineEvent::Completed { .. }
            ]
        ),
        "{:?}",
        whole.events
    );
    for split in 1..=LATE_ANSWERS.len() {
        assert_eq!(run_timeout_scenario(split), whole, "split at {split}");
    }
}
