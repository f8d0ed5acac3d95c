//! Whether the modem has an SMS centre to send to. A SIM without one
//! (`+CSCA: "",145`), with no `smsc` in the config, has every `AT+CMGS`
//! answered `+CMS ERROR: 330`, which ends the session as a modem not
//! ready yet: start-up found nothing wrong and ran again at once, a
//! restart loop that sent nothing and failed nothing. Start-up looks for
//! the address itself instead, and says what to set.

use std::time::Duration;

/// How long start-up waits before it reads an empty SMS centre address a
/// second time: a SIM still loading can show it empty for a moment.
pub(super) const SECOND_LOOK_AFTER: Duration = Duration::from_secs(2);

/// What start-up makes of the SMS centre the modem reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SmscVerdict {
    /// The SIM holds one, or the config sets one: sends can go.
    Known,
    /// None yet: read it again after [`SECOND_LOOK_AFTER`].
    LookAgain,
    /// Still none on the second look: no send can go until one is set.
    Missing,
}

/// The SMS centre address in an `AT+CSCA?` answer's `+CSCA:` line, `None`
/// when it is empty or the line has none.
pub(super) fn address(line: Option<&str>) -> Option<String> {
    line.and_then(|l| l.split('"').nth(1))
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
}

/// The verdict on `reported` (the address `AT+CSCA?` gave), with the
/// config's `smsc` `configured` or not, on the first look or the second.
pub(super) fn verdict(reported: Option<&str>, configured: bool, second_look: bool) -> SmscVerdict {
    match (reported, configured, second_look) {
        (Some(_), _, _) | (None, true, _) => SmscVerdict::Known,
        (None, false, false) => SmscVerdict::LookAgain,
        (None, false, true) => SmscVerdict::Missing,
    }
}

/// Why start-up stops for a missing SMS centre, naming the fix.
pub(super) fn missing_reason(phone_id: &str) -> String {
    format!(
        "the SIM has no SMS centre address (AT+CSCA? answers empty) and none is \
         configured: set channels.sms.modems[].smsc for phone_id \"{phone_id}\" \
         (the operator's SMS centre number, E.164)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_address_is_none() {
        assert_eq!(address(Some("+CSCA: \"\",145")), None);
        assert_eq!(address(Some("+CSCA: \" \",129")), None);
        assert_eq!(address(Some("+CSCA: 145")), None);
        assert_eq!(address(None), None);
        assert_eq!(
            address(Some("+CSCA: \"+447785016005\",145")).as_deref(),
            Some("+447785016005")
        );
    }

    #[test]
    fn an_empty_address_is_read_again_once_before_it_counts_as_missing() {
        assert_eq!(verdict(None, false, false), SmscVerdict::LookAgain);
        assert_eq!(verdict(None, false, true), SmscVerdict::Missing);
    }

    #[test]
    fn an_address_on_the_sim_or_in_the_config_will_do() {
        assert_eq!(verdict(Some("+1555"), false, false), SmscVerdict::Known);
        assert_eq!(verdict(None, true, false), SmscVerdict::Known);
        assert_eq!(verdict(None, true, true), SmscVerdict::Known);
    }
}
