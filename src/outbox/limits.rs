use phonerelay_channel::ChannelKind;

use crate::config::{DEFAULT_CONCURRENCY, LimitConfig, OutboxConfig};

/// `[outbox.limits]` for one endpoint: its phone_id's entry, else its
/// channel's, else the defaults; its concurrency always set, to the
/// entry's, else the one the endpoint's adapter asks for
/// (`Channel::default_concurrency`), else [`DEFAULT_CONCURRENCY`]. An
/// entry that sets only a rate keeps a modem at one send in flight.
pub fn limits_for(
    outbox: &OutboxConfig,
    channel: ChannelKind,
    phone_id: &str,
    adapter_concurrency: Option<u32>,
) -> LimitConfig {
    let entry = outbox
        .limits
        .get(phone_id)
        .or_else(|| outbox.limits.get(channel.as_str()))
        .copied()
        .unwrap_or_default();
    LimitConfig {
        concurrency: Some(
            entry
                .concurrency
                .or(adapter_concurrency)
                .unwrap_or(DEFAULT_CONCURRENCY),
        ),
        ..entry
    }
}

impl LimitConfig {
    /// Sends in flight at once, as [`limits_for`] resolved it.
    pub fn in_flight(&self) -> u32 {
        self.concurrency.unwrap_or(DEFAULT_CONCURRENCY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_concurrency(concurrency: u32) -> LimitConfig {
        LimitConfig {
            concurrency: Some(concurrency),
            ..LimitConfig::default()
        }
    }

    #[test]
    fn phone_id_beats_channel_beats_default() {
        let mut outbox = OutboxConfig::default();
        outbox.limits.insert("sms".into(), with_concurrency(2));
        outbox.limits.insert("modem-1".into(), with_concurrency(1));
        assert_eq!(
            limits_for(&outbox, ChannelKind::Sms, "modem-1", None),
            with_concurrency(1)
        );
        assert_eq!(
            limits_for(&outbox, ChannelKind::Sms, "modem-2", None),
            with_concurrency(2)
        );
        assert_eq!(
            limits_for(&outbox, ChannelKind::Wa, "x", None),
            with_concurrency(DEFAULT_CONCURRENCY)
        );
    }

    /// With nothing in the config, the adapter's concurrency (a modem's 1)
    /// and the outbox's other defaults; an entry that names a concurrency
    /// wins, and one that sets only other limits keeps the adapter's.
    #[test]
    fn an_adapter_s_concurrency_applies_where_the_config_says_nothing() {
        let mut outbox = OutboxConfig::default();
        assert_eq!(
            limits_for(&outbox, ChannelKind::Sms, "modem-1", Some(1)),
            with_concurrency(1)
        );
        outbox.limits.insert("sms".into(), with_concurrency(3));
        assert_eq!(
            limits_for(&outbox, ChannelKind::Sms, "modem-1", Some(1)),
            with_concurrency(3)
        );
        let rate_only = LimitConfig {
            per_second: 0.5,
            ..LimitConfig::default()
        };
        outbox.limits.insert("sms".into(), rate_only);
        let resolved = limits_for(&outbox, ChannelKind::Sms, "modem-1", Some(1));
        assert_eq!((resolved.in_flight(), resolved.per_second), (1, 0.5));
    }
}
