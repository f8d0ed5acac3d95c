use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The channel names of the pChat API (`sms wa tg email notify pchat`).
///
/// `pchat` is the relay itself: the bridge never sends on it, but inbound
/// messages are forwarded to the relay as `pchat` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Sms,
    Wa,
    Tg,
    Email,
    Notify,
    Pchat,
}

impl ChannelKind {
    /// Channels this bridge can deliver on (everything but `pchat`).
    pub const DELIVERABLE: [ChannelKind; 5] = [
        ChannelKind::Sms,
        ChannelKind::Wa,
        ChannelKind::Tg,
        ChannelKind::Email,
        ChannelKind::Notify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Sms => "sms",
            ChannelKind::Wa => "wa",
            ChannelKind::Tg => "tg",
            ChannelKind::Email => "email",
            ChannelKind::Notify => "notify",
            ChannelKind::Pchat => "pchat",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown channel {0:?}; expected one of sms, wa, tg, email, notify, pchat")]
pub struct UnknownChannel(pub String);

impl FromStr for ChannelKind {
    type Err = UnknownChannel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "sms" => ChannelKind::Sms,
            "wa" => ChannelKind::Wa,
            "tg" => ChannelKind::Tg,
            "email" => ChannelKind::Email,
            "notify" => ChannelKind::Notify,
            "pchat" => ChannelKind::Pchat,
            other => return Err(UnknownChannel(other.to_string())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in ChannelKind::DELIVERABLE
            .into_iter()
            .chain([ChannelKind::Pchat])
        {
            assert_eq!(kind.as_str().parse::<ChannelKind>().unwrap(), kind);
        }
        assert!("whatsapp".parse::<ChannelKind>().is_err());
    }
}
