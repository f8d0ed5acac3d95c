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

/// One spelling per external address, so a reply finds the conversation:
/// e-mail addresses compare without case and without a display name. The
/// store records and looks up conversations with it; the relay forwarder
/// keys its per-conversation order and writes `source` with it, so all
/// three agree on who the sender is.
pub fn normalize_address(channel: ChannelKind, address: &str) -> String {
    let address = address.trim();
    match channel {
        ChannelKind::Email => {
            let bare = match (address.rfind('<'), address.rfind('>')) {
                (Some(open), Some(close)) if open < close => &address[open + 1..close],
                _ => address,
            };
            bare.trim().to_ascii_lowercase()
        }
        _ => address.to_string(),
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

/// The syntax [`validate_address`] accepts for `channel`, as a regular
/// expression in the ECMA-262 dialect of a JSON Schema `pattern`, so the
/// OpenAPI document can say per channel what `to` must look like. The
/// same rules as the checks in this file, which give the better error
/// message; a test holds the two to each other.
pub fn address_pattern(channel: ChannelKind) -> &'static str {
    match channel {
        ChannelKind::Sms | ChannelKind::Wa => r"^\+[1-9][0-9]{6,14}$",
        ChannelKind::Tg => r"^(@[A-Za-z0-9_]{5,32}|-?[0-9]{1,20})$",
        ChannelKind::Email => EMAIL_PATTERN,
        ChannelKind::Notify | ChannelKind::Pchat => r"^[A-Za-z0-9._-]{1,64}$",
    }
}

/// [`validate_email`] as a pattern: 1 to 64 characters before the `@`
/// (dot-atoms), at most 253 after it (two or more LDH labels of 1 to 63).
const EMAIL_PATTERN: &str = concat!(
    r"^(?=[^@]{1,64}@)",
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*",
    r"@(?=.{1,253}$)",
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$",
);

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
    use proptest::prelude::*;

    use super::*;

    /// Whether `address_pattern` accepts `to` (fancy-regex: the ECMA
    /// lookaheads the e-mail pattern needs, which the `regex` crate lacks).
    fn pattern_accepts(channel: ChannelKind, to: &str) -> bool {
        fancy_regex::Regex::new(address_pattern(channel))
            .unwrap()
            .is_match(to)
            .unwrap()
    }

    fn agree(channel: ChannelKind, to: &str) {
        assert_eq!(
            pattern_accepts(channel, to),
            validate_address(channel, to).is_ok(),
            "{channel:?} {to:?}"
        );
    }

    const SAMPLES: &[&str] = &[
        "",
        "+",
        "+1",
        "+15551230001",
        "+0123456789",
        "+1555",
        "+123456",
        "+1234567",
        "+123456789012345",
        "+1234567890123456",
        "+1555-123",
        "15551230001",
        "123456",
        "-1001234567890",
        "-",
        "@ab",
        "@abcd",
        "@abcde",
        "@my_channel",
        "@bad-name",
        "12345678901234567890",
        "123456789012345678901",
        "12a",
        "alerts_1",
        "no spaces",
        "a.b+c@example.co.uk",
        ".a@x.com",
        "a.@x.com",
        "a@x..com",
        "a@x.com.",
        "a@b@x.com",
        "a@x-.com",
        "a@x.c",
        "x@1.2",
        "\u{e9}@x.com",
        "a@\u{e9}.com",
        "name@exa_mple.com",
    ];

    #[test]
    fn the_patterns_accept_what_the_checks_accept() {
        for channel in ChannelKind::DELIVERABLE
            .into_iter()
            .chain([ChannelKind::Pchat])
        {
            for to in SAMPLES.iter().chain(BAD_EMAILS) {
                agree(channel, to);
            }
        }
        // The length limits, at and past each edge.
        let local = |n: usize| format!("{}@example.com", "a".repeat(n));
        let domain = |n: usize| format!("a@{}.com", "b".repeat(n));
        // Labels of 63: a domain of 64k + 3 characters, k = 3 fits in 253.
        let long_domain =
            |labels: usize| format!("a@{}com", format!("{}.", "b".repeat(63)).repeat(labels));
        for to in [
            local(64),
            local(65),
            domain(63),
            domain(64),
            long_domain(3),
            long_domain(4),
        ] {
            agree(ChannelKind::Email, &to);
        }
        for n in [5, 32, 33] {
            agree(ChannelKind::Tg, &format!("@{}", "a".repeat(n)));
        }
        for n in [64, 65] {
            agree(ChannelKind::Notify, &"a".repeat(n));
        }
    }

    proptest! {
        #[test]
        fn the_patterns_agree_with_the_checks_on_any_string(
            to in "[-+@._a-zA-Z0-9 !#$%&'*/=?^`{|}~\u{e9}]{0,30}",
        ) {
            for channel in ChannelKind::DELIVERABLE {
                agree(channel, &to);
            }
        }

        #[test]
        fn the_patterns_agree_on_address_shaped_strings(
            local in "[-a-z0-9.+_]{0,70}",
            labels in proptest::collection::vec("[-a-z0-9]{0,65}", 0..5),
        ) {
            agree(ChannelKind::Email, &format!("{local}@{}", labels.join(".")));
        }

        #[test]
        fn the_patterns_agree_on_number_shaped_strings(to in "[-+@]?[0-9a-z_]{0,22}") {
            for channel in [ChannelKind::Sms, ChannelKind::Tg] {
                agree(channel, &to);
            }
        }
    }

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

    const BAD_EMAILS: &[&str] = &[
        "plain",
        "@example.com",
        "a@b",
        "a..b@example.com",
        "a@-x.com",
        "a b@x.com",
    ];

    #[test]
    fn email() {
        assert!(validate_address(ChannelKind::Email, "a.b+c@example.co.uk").is_ok());
        for bad in BAD_EMAILS {
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
