//! Error codes a modem answers a send with, and what a `+CME ERROR` to
//! `AT+CMGS` says about the modem. 27.005 has a send answered with
//! `+CMS ERROR`, but some modems answer a state of the SIM or the network
//! with a `+CME ERROR` (27.007) instead; taken as a plain refusal, every
//! queued message spent an attempt on it while the modem could not send.

use std::fmt;

use phonerelay_sms_at::errors_table;

/// A `+CMS ERROR` or a `+CME ERROR` code: the two tables share numbers
/// (CMS 10 is call barred, CME 10 SIM not inserted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Cms(u16),
    Cme(u16),
}

impl ErrorCode {
    /// The send error's code as the outbox records it: `cms_331`, `cme_30`.
    pub fn label(self) -> String {
        match self {
            ErrorCode::Cms(code) => format!("cms_{code}"),
            ErrorCode::Cme(code) => format!("cme_{code}"),
        }
    }

    /// What the spec's table calls it, if it knows the code.
    pub fn meaning(self) -> Option<&'static str> {
        let info = match self {
            ErrorCode::Cms(code) => errors_table::cms_error(code),
            ErrorCode::Cme(code) => errors_table::cme_error(code),
        };
        info.map(|i| i.meaning)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::Cms(code) => write!(f, "+CMS ERROR: {code}"),
            ErrorCode::Cme(code) => write!(f, "+CME ERROR: {code}"),
        }
    }
}

/// What a `+CME ERROR` to a send says about the modem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CmeSendFailure {
    /// 30 no network service, 31 network timeout, 32 network not allowed
    /// (emergency calls only): as `+CMS ERROR: 331`.
    NoNetwork,
    /// 10 SIM not inserted, 11 SIM PIN required, 12 SIM PUK required, 13
    /// SIM failure, 15 SIM wrong, 16 incorrect password, 17 SIM PIN2
    /// required, 18 SIM PUK2 required: as the `+CMS ERROR`s about the SIM,
    /// start-up runs again (and says why it cannot, if it cannot).
    ModemNotReady,
    /// 14 SIM busy (loading, a refresh): nothing went out, and a moment
    /// later it may.
    SimBusy,
}

const CME_NO_NETWORK: [u16; 3] = [30, 31, 32];
const CME_SIM_NOT_READY: [u16; 8] = [10, 11, 12, 13, 15, 16, 17, 18];
const CME_SIM_BUSY: u16 = 14;

/// What `+CME ERROR: code` to a send says, `None` for a code about the
/// message or unknown (a refusal, retried as a bare `ERROR` is).
pub(super) fn cme_send_failure(code: u16) -> Option<CmeSendFailure> {
    if CME_NO_NETWORK.contains(&code) {
        Some(CmeSendFailure::NoNetwork)
    } else if CME_SIM_NOT_READY.contains(&code) {
        Some(CmeSendFailure::ModemNotReady)
    } else if code == CME_SIM_BUSY {
        Some(CmeSendFailure::SimBusy)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cme_codes_to_a_send_are_told_by_what_they_say_of_the_modem() {
        for code in [30, 31, 32] {
            assert_eq!(cme_send_failure(code), Some(CmeSendFailure::NoNetwork));
        }
        for code in [10, 11, 12, 13, 15, 16, 17, 18] {
            assert_eq!(cme_send_failure(code), Some(CmeSendFailure::ModemNotReady));
        }
        assert_eq!(cme_send_failure(14), Some(CmeSendFailure::SimBusy));
        for code in [0, 3, 4, 100, 515] {
            assert_eq!(cme_send_failure(code), None);
        }
    }

    #[test]
    fn the_two_tables_are_told_apart() {
        assert_eq!(ErrorCode::Cme(10).label(), "cme_10");
        assert_eq!(ErrorCode::Cms(10).to_string(), "+CMS ERROR: 10");
        assert_ne!(ErrorCode::Cme(10).meaning(), ErrorCode::Cms(10).meaning());
    }
}
