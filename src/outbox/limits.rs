use phonerelay_channel::ChannelKind;

use crate::config::{DEFAULT_CONCURRENCY, LimitConfig, OutboxConfig};

/// `[outbox.limits]` for one endpoint: its phone_id's entry, else its
/// channel's, else the defaults, with the concurrency the endpoint's
/// adapter asks for (`Channel::default_concurrency`) if it asks.
pub fn limits_for(
    outbox: &OutboxConfig,
    channel: ChannelKind,
    phone_id: &str,
    adapter_concurrency: Option<u32>,
) -> LimitConfig {
    outbox
        .limits
        .get(phone_id)
        .or_else(|| outbox.limits.get(channel.as_str()))
        .copied()
        .unwrap_or_else(|| LimitConfig {
            concurrency: adapter_concurrency.unwrap_or(DEFAULT_CONCURRENCY),
            ..LimitConfig::default()
        })
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
        assert_eq!(
            limits_for(&outbox, ChannelKind::Sms, "modem-1", None),
            modem
        );
        assert_eq!(limits_for(&outbox, ChannelKind::Sms, "modem-2", None), sms);
        assert_eq!(
            limits_for(&outbox, ChannelKind::Wa, "x", None),
            LimitConfig::default()
        );
    }

    /// With nothing in the config, the adapter's concurrency (a modem's 1)
    /// and the outbox's other defaults; an entry in the config wins whole.
    #[test]
    fn an_adapter_s_concurrency_applies_where_the_config_says_nothing() {
        let mut outbox = OutboxConfig::default();
        let modem = limits_for(&outbox, ChannelKind::Sms, "modem-1", Some(1));
        assert_eq!(
            modem,
            LimitConfig {
                concurrency: 1,
                ..LimitConfig::default()
            }
        );
        let configured = LimitConfig {
            concurrency: 3,
            ..LimitConfig::default()
        };
        outbox.limits.insert("sms".into(), configured);
        assert_eq!(
            limits_for(&outbox, ChannelKind::Sms, "modem-1", Some(1)),
            configured
        );
    }
}
