//! Helpers shared by the integration tests: drive an `AtEngine` against a
//! scripted modem the way the real serial driver would.

#![allow(dead_code)] // each test binary uses a different subset

use phonerelay_sms_at::{AtEngine, EngineEvent};

pub fn drain(engine: &mut AtEngine) -> Vec<EngineEvent> {
    std::iter::from_fn(|| engine.poll_event()).collect()
}

/// Asserts that the engine writes `expect` next, then feeds `reply` as the
/// modem's answer and returns the events it produced.
pub fn exchange(engine: &mut AtEngine, now: u64, expect: &[u8], reply: &[u8]) -> Vec<EngineEvent> {
    let written = engine.poll_transmit(now).expect("engine should transmit");
    assert_eq!(
        String::from_utf8_lossy(&written),
        String::from_utf8_lossy(expect),
        "unexpected write"
    );
    engine.handle_input(reply, now + 1);
    drain(engine)
}

/// The single `Completed` event in `events` (URCs may surround it).
pub fn completed(events: &[EngineEvent]) -> (&phonerelay_sms_at::FinalResult, &[String]) {
    let mut found = events.iter().filter_map(|e| match e {
        EngineEvent::Completed { result, lines, .. } => Some((result, lines.as_slice())),
        _ => None,
    });
    let first = found.next().expect("a Completed event");
    assert!(found.next().is_none(), "exactly one Completed: {events:?}");
    first
}

pub fn urcs(events: &[EngineEvent]) -> Vec<&phonerelay_sms_at::Urc> {
    events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Urc(urc) => Some(urc),
            _ => None,
        })
        .collect()
}
