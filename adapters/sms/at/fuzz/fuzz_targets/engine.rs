//! Drives the engine with an operation stream decoded from the input and
//! checks that no command finishes twice, none gets lost, and a late result
//! only ever follows a timeout of the same command, once.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use phonerelay_sms_at::{AtEngine, Command, EngineEvent};

fuzz_target!(|data: &[u8]| {
    let mut engine = AtEngine::new();
    let mut submitted = 0usize;
    let mut finished = HashSet::new();
    let mut timed_out = HashSet::new();
    let mut now = 0u64;
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        now += u64::from(op >> 2) * 40;
        match op & 3 {
            0 => {
                submitted += 1;
                engine.submit(if op & 4 == 0 {
                    Command::plain("AT+CMGL=4", 1_000)
                } else {
                    Command::with_pdu("AT+CMGS=5", "0011AABBCC00", 1_000)
                });
            }
            1 => {
                let len = usize::from(op >> 2).min(rest.len());
                let (bytes, tail) = rest.split_at(len);
                rest = tail;
                engine.handle_input(bytes, now);
            }
            2 => engine.handle_timeout(now),
            _ => while engine.poll_transmit(now).is_some() {},
        }
        while let Some(event) = engine.poll_event() {
            match event {
                EngineEvent::Completed { id, .. } => {
                    assert!(finished.insert(id), "{id:?} finished twice");
                }
                EngineEvent::TimedOut { id, .. } => {
                    assert!(finished.insert(id), "{id:?} finished twice");
                    timed_out.insert(id);
                }
                EngineEvent::LateResult { id, .. } => {
                    assert!(
                        timed_out.remove(&id),
                        "late result for {id:?} without timeout, or twice"
                    );
                }
                _ => {}
            }
        }
    }
    let running = usize::from(engine.current_command().is_some());
    assert_eq!(finished.len() + running + engine.pending_len(), submitted);
});
