//! What one send may carry on an endpoint, judged when the API accepts it,
//! so that a send its channel could never deliver is refused (422, naming
//! the field) instead of failing later in the outbox.

use crate::ChannelKind;

/// The most a send may carry on one endpoint. [`Channel::send_limits`]
/// gives them; the defaults ([`SendLimits::of`]) are each channel's
/// documented upstream limits, and an adapter whose upstream or config
/// allows less returns its own (ntfy takes one attachment, a WhatsApp media
/// caption is shorter than its text).
///
/// [`Channel::send_limits`]: crate::Channel::send_limits
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimits {
    /// Longest `text`, in Unicode characters (what the API counts).
    pub max_text_chars: usize,
    /// Most attachments one send carries; 0: the channel has nowhere to
    /// put a file, and a send with one is refused rather than sent without
    /// it.
    pub max_attachments: usize,
}

impl SendLimits {
    /// The defaults of a channel kind. SMS: ten concatenated parts of
    /// GSM-7 text (Twilio stops at 1,600 characters) and no files (MMS is
    /// not SMS); WhatsApp and Telegram: their documented 4,096 characters
    /// of text; notify: ntfy's message size; e-mail: a generous body.
    pub const fn of(kind: ChannelKind) -> Self {
        match kind {
            ChannelKind::Sms => Self {
                max_text_chars: 1530,
                max_attachments: 0,
            },
            ChannelKind::Wa | ChannelKind::Tg | ChannelKind::Notify | ChannelKind::Pchat => Self {
                max_text_chars: 4096,
                max_attachments: 10,
            },
            ChannelKind::Email => Self {
                max_text_chars: 100_000,
                max_attachments: 10,
            },
        }
    }

    /// The first thing a send of `text_chars` characters and `attachments`
    /// files breaks, as (the request's field, why), or `None`.
    pub fn check(
        &self,
        kind: ChannelKind,
        text_chars: usize,
        attachments: usize,
    ) -> Option<(&'static str, String)> {
        if text_chars > self.max_text_chars {
            return Some((
                "text",
                format!(
                    "text has {text_chars} characters; {kind} allows at most {}",
                    self.max_text_chars
                ),
            ));
        }
        match self.max_attachments {
            0 if attachments > 0 => Some((
                "attachments",
                format!("{kind} carries no attachments; put a link in the text"),
            )),
            max if attachments > max => Some((
                "attachments",
                format!("{kind} carries at most {max} attachments per message"),
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sms_takes_ten_gsm_parts_of_text_and_no_file() {
        let sms = SendLimits::of(ChannelKind::Sms);
        assert_eq!(sms.check(ChannelKind::Sms, 1530, 0), None);
        let (field, why) = sms.check(ChannelKind::Sms, 1531, 0).unwrap();
        assert_eq!(field, "text");
        assert!(why.contains("1531") && why.contains("1530"), "{why}");
        let (field, why) = sms.check(ChannelKind::Sms, 10, 1).unwrap();
        assert_eq!(field, "attachments");
        assert!(why.contains("no attachments"), "{why}");
    }

    #[test]
    fn a_lower_attachment_limit_names_its_number() {
        let one = SendLimits {
            max_text_chars: 4096,
            max_attachments: 1,
        };
        assert_eq!(one.check(ChannelKind::Notify, 5, 1), None);
        let (field, why) = one.check(ChannelKind::Notify, 5, 2).unwrap();
        assert_eq!(field, "attachments");
        assert!(why.contains("at most 1 "), "{why}");
    }

    #[test]
    fn text_is_checked_before_attachments() {
        let sms = SendLimits::of(ChannelKind::Sms);
        assert_eq!(sms.check(ChannelKind::Sms, 2000, 3).unwrap().0, "text");
    }
}
