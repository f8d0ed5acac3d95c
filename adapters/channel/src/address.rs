use crate::ChannelKind;

/// Why an address is not valid for a channel; `message` is shown to API users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AddressError {
    pub message: String,
}

fn invalid(message: impl Into<String>) -> AddressError {
    AddressError {
        message: message.into(),
    }
}

/// Check that `to` is an address the channel can deliver to. Pure syntax:
/// whether the number exists is the network's business.
pub fn validate_address(channel: ChannelKind, to: &str) -> Result<(), AddressError> {
    match channel {
        ChannelKind::Sms | ChannelKind::Wa => validate_e164(to),
        ChannelKind::Tg => validate_telegram_chat(to),
        ChannelKind::Email => validate_email(to),
        ChannelKind::Notify => validate_name(to, "a notification topic"),
        ChannelKind::Pchat => validate_name(to, "a pChat address"),
    }
}

/// ITU-T E.164: `+`, a country code not starting with 0, 8 to 15 digits in all.
fn validate_e164(to: &str) -> Result<(), AddressError> {
    let digits = to
        .strip_prefix('+')
        .ok_or_else(|| invalid("must be an E.164 number starting with + (e.g. +15551230001)"))?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("an E.164 number has only digits after the +"));
    }
    if digits.starts_with('0') {
        return Err(invalid("an E.164 country code does not start with 0"));
    }
    if !(7..=15).contains(&digits.len()) {
        return Err(invalid("an E.164 number has 7 to 15 digits"));
    }
    Ok(())
}

/// Telegram chat ids are integers (negative for groups) or `@channelname`.
fn validate_telegram_chat(to: &str) -> Result<(), AddressError> {
    if let Some(name) = to.strip_prefix('@') {
        let ok = (5..=32).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        return if ok {
            Ok(())
        } else {
            Err(invalid(
                "a Telegram username is @ and 5 to 32 letters, digits or _",
            ))
        };
    }
    let digits = to.strip_prefix('-').unwrap_or(to);
    if !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(invalid("must be a Telegram chat id (integer) or @username"))
    }
}

/// The practical subset of RFC 5321 addresses that mail servers accept:
/// `local@domain`, a dot-atom local part, a domain of LDH labels with a dot.
fn validate_email(to: &str) -> Result<(), AddressError> {
    let (local, domain) = to
        .rsplit_once('@')
        .ok_or_else(|| invalid("must be an e-mail address like name@example.com"))?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b));
    if !local_ok {
        return Err(invalid("the part before @ is not a valid mailbox name"));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !domain_ok {
        return Err(invalid("the part after @ is not a valid domain"));
    }
    Ok(())
}

/// Notification targets (ntfy topics, configured target names) and pChat
/// addresses share one shape: a short name of letters, digits, `-_.`.
fn validate_name(to: &str, what: &str) -> Result<(), AddressError> {
    let ok = (1..=64).contains(&to.len())
        && to
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} is 1 to 64 letters, digits, '-', '_' or '.'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164() {
        assert!(validate_address(ChannelKind::Sms, "+15551230001").is_ok());
        assert!(validate_address(ChannelKind::Wa, "+447700900123").is_ok());
        for bad in [
            "15551230001",
            "+0123456789",
            "+1555",
            "+1555123000112345",
            "+1555-123",
            "",
        ] {
            assert!(validate_address(ChannelKind::Sms, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn email() {
        assert!(validate_address(ChannelKind::Email, "a.b+c@example.co.uk").is_ok());
        for bad in [
            "plain",
            "@example.com",
            "a@b",
            "a..b@example.com",
            "a@-x.com",
            "a b@x.com",
        ] {
            assert!(validate_address(ChannelKind::Email, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn telegram() {
        for good in ["123456", "-1001234567890", "@my_channel"] {
            assert!(validate_address(ChannelKind::Tg, good).is_ok(), "{good}");
        }
        for bad in ["", "-", "@ab", "12a", "@bad-name"] {
            assert!(validate_address(ChannelKind::Tg, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topics() {
        assert!(validate_address(ChannelKind::Notify, "alerts_1").is_ok());
        assert!(validate_address(ChannelKind::Notify, "no spaces").is_err());
        assert!(validate_address(ChannelKind::Notify, "").is_err());
    }
}
