//! Test fixtures for the store's own unit tests and the modules beside it
//! (integration tests have `tests/common`).

use phonerelay_channel::ChannelKind;

use super::NewOutbound;

/// A plain SMS with `text` to one number on endpoint `m1`, created at
/// `now_ms`, with an hour to live.
pub fn queued_sms(text: &str, now_ms: i64) -> NewOutbound {
    NewOutbound {
        api_key_id: None,
        idempotency_key: None,
        request_hash: "h".into(),
        phone_id: "m1".into(),
        channel: ChannelKind::Sms,
        to: "+15551230001".into(),
        text: text.into(),
        subject: None,
        source: None,
        attachments: vec![],
        reply_to: None,
        reply_to_external_id: None,
        options: None,
        priority: 1,
        created_at_ms: now_ms,
        expires_at_ms: now_ms + 3_600_000,
        claimed_until_ms: None,
    }
}
