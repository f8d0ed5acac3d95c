use phonerelay_channel::ChannelKind;

use crate::config::{LimitConfig, OutboxConfig};

/// `[outbox.limits]` for one endpoint: its phone_id's entry, else its
/// channel's, else the defaults.
pub fn limits_for(outbox: &OutboxConfig, channel: ChannelKind, phone_id: &str) -> LimitConfig {
    outbox
        .limits
        .get(phone_id)
        .or_else(|| outbox.limits.get(channel.as_str()))
        .copied()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_id_beats_channel_beats_default() {
        let mut outbox = OutboxConfig::default();
        let sms = LimitConfig {
            concurrency: 2,
            ..LimitConfig::default()
        };
        let modem = LimitConfig {
            concurrency: 1,
            ..LimitConfig::default()
        };
        outbox.limits.insert("sms".into(), sms);
        outbox.limits.insert("modem-1".into(), modem);
        assert_eq!(limits_for(&outbox, ChannelKind::Sms, "modem-1"), modem);
        assert_eq!(limits_for(&outbox, ChannelKind::Sms, "modem-2"), sms);
        assert_eq!(
            limits_for(&outbox, ChannelKind::Wa, "x"),
            LimitConfig::default()
        );
    }
}
