//! Meanings and retry classification of `+CMS ERROR` and `+CME ERROR` codes.
//!
//! Sources:
//! - `+CMS ERROR: <err>`: 3GPP TS 27.005 §3.2.5. Values 0…127 are the RP
//!   cause values of TS 24.011 §8.2.5.4 / Table 8.4 (GSM 04.11 Annex E-2),
//!   128…255 the TP-Failure-Cause values of TS 23.040 §9.2.3.22, 300…500 are
//!   defined in §3.2.5 itself, 512 and above are manufacturer specific.
//! - `+CME ERROR: <err>`: 3GPP TS 27.007 §9.2.1 (general errors) and §9.2.2
//!   (GPRS / packet-domain errors, 103…150).
//!
//! "Transient" means: sending the same command again later may succeed
//! without anybody changing anything (network congestion, SIM busy during
//! start-up, no coverage right now). "Permanent" means: retrying the same
//! command is pointless until something changes (bad number, bad PDU,
//! missing PIN, full memory that needs clearing).

/// Whether an error is worth retrying unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Network or modem state is temporarily unfavourable: retry later.
    Transient,
    /// Retrying unchanged will fail again.
    Permanent,
}

/// One row of an error table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorInfo {
    pub code: u16,
    /// Meaning as worded in the spec (also what modems print in verbose
    /// `+CMEE=2` mode, which lets us map verbose texts back to codes).
    pub meaning: &'static str,
    pub class: ErrorClass,
}

use ErrorClass::{Permanent as P, Transient as T};

const fn e(code: u16, class: ErrorClass, meaning: &'static str) -> ErrorInfo {
    ErrorInfo {
        code,
        meaning,
        class,
    }
}

/// `+CMS ERROR` codes, TS 27.005 §3.2.5.
pub static CMS_ERRORS: &[ErrorInfo] = &[
    // 0…127: RP cause values, TS 24.011 Table 8.4 (04.11 Annex E-2).
    e(1, P, "Unassigned (unallocated) number"),
    e(8, P, "Operator determined barring"),
    e(10, P, "Call barred"),
    e(17, T, "Network failure"),
    e(21, P, "Short message transfer rejected"),
    e(22, T, "Memory capacity exceeded"),
    e(27, T, "Destination out of service"),
    // TS 24.011 Annex E: "the subscriber is not registered in the PLMN
    // (IMSI not known)". On a submit that is the sender, our own SIM (a VLR
    // that lost it after a reset), which the network learns again at the
    // SIM's next registration: nothing about the message needs changing.
    e(28, T, "Unidentified subscriber"),
    e(29, P, "Facility rejected"),
    e(30, P, "Unknown subscriber"),
    e(38, T, "Network out of order"),
    e(41, T, "Temporary failure"),
    e(42, T, "Congestion"),
    e(47, T, "Resources unavailable, unspecified"),
    e(50, P, "Requested facility not subscribed"),
    e(69, P, "Requested facility not implemented"),
    e(81, P, "Invalid short message transfer reference value"),
    e(95, P, "Invalid message, unspecified"),
    e(96, P, "Invalid mandatory information"),
    e(97, P, "Message type non-existent or not implemented"),
    e(
        98,
        P,
        "Message not compatible with short message protocol state",
    ),
    e(99, P, "Information element non-existent or not implemented"),
    e(111, T, "Protocol error, unspecified"),
    e(127, T, "Interworking, unspecified"),
    // 128…255: TP-Failure-Cause, TS 23.040 §9.2.3.22.
    e(128, P, "Telematic interworking not supported"),
    e(129, P, "Short message Type 0 not supported"),
    e(130, P, "Cannot replace short message"),
    e(143, P, "Unspecified TP-PID error"),
    e(144, P, "Data coding scheme (alphabet) not supported"),
    e(145, P, "Message class not supported"),
    e(159, P, "Unspecified TP-DCS error"),
    e(160, P, "Command cannot be actioned"),
    e(161, P, "Command unsupported"),
    e(175, P, "Unspecified TP-Command error"),
    e(176, P, "TPDU not supported"),
    e(192, T, "SC busy"),
    e(193, P, "No SC subscription"),
    e(194, T, "SC system failure"),
    e(195, P, "Invalid SME address"),
    e(196, P, "Destination SME barred"),
    e(197, P, "SM Rejected-Duplicate SM"),
    e(198, P, "TP-VPF not supported"),
    e(199, P, "TP-VP not supported"),
    e(208, P, "(U)SIM SMS storage full"),
    e(209, P, "No SMS storage capability in (U)SIM"),
    e(210, T, "Error in MS"),
    e(211, P, "Memory Capacity Exceeded"),
    e(212, T, "(U)SIM Application Toolkit Busy"),
    e(213, T, "(U)SIM data download error"),
    e(255, T, "Unspecified error cause"),
    // 300…500: TS 27.005 §3.2.5 proper.
    e(300, T, "ME failure"),
    e(301, P, "SMS service of ME reserved"),
    e(302, P, "operation not allowed"),
    e(303, P, "operation not supported"),
    e(304, P, "invalid PDU mode parameter"),
    e(305, P, "invalid text mode parameter"),
    e(310, P, "(U)SIM not inserted"),
    e(311, P, "(U)SIM PIN required"),
    e(312, P, "PH-(U)SIM PIN required"),
    e(313, P, "(U)SIM failure"),
    e(314, T, "(U)SIM busy"),
    e(315, P, "(U)SIM wrong"),
    e(316, P, "(U)SIM PUK required"),
    e(317, P, "(U)SIM PIN2 required"),
    e(318, P, "(U)SIM PUK2 required"),
    e(320, T, "memory failure"),
    e(321, P, "invalid memory index"),
    e(322, P, "memory full"),
    e(330, P, "SMSC address unknown"),
    e(331, T, "no network service"),
    e(332, T, "network timeout"),
    e(340, P, "no +CNMA acknowledgement expected"),
    e(500, T, "unknown error"),
];

/// `+CME ERROR` codes, TS 27.007 §9.2.1 and §9.2.2.
pub static CME_ERRORS: &[ErrorInfo] = &[
    // §9.2.1 general errors.
    e(0, T, "phone failure"),
    e(1, T, "no connection to phone"),
    e(2, P, "phone-adaptor link reserved"),
    e(3, P, "operation not allowed"),
    e(4, P, "operation not supported"),
    e(5, P, "PH-SIM PIN required"),
    e(6, P, "PH-FSIM PIN required"),
    e(7, P, "PH-FSIM PUK required"),
    e(10, P, "SIM not inserted"),
    e(11, P, "SIM PIN required"),
    e(12, P, "SIM PUK required"),
    e(13, P, "SIM failure"),
    e(14, T, "SIM busy"),
    e(15, P, "SIM wrong"),
    e(16, P, "incorrect password"),
    e(17, P, "SIM PIN2 required"),
    e(18, P, "SIM PUK2 required"),
    e(20, P, "memory full"),
    e(21, P, "invalid index"),
    e(22, P, "not found"),
    e(23, T, "memory failure"),
    e(24, P, "text string too long"),
    e(25, P, "invalid characters in text string"),
    e(26, P, "dial string too long"),
    e(27, P, "invalid characters in dial string"),
    e(30, T, "no network service"),
    e(31, T, "network timeout"),
    e(32, T, "network not allowed - emergency calls only"),
    e(40, P, "network personalization PIN required"),
    e(41, P, "network personalization PUK required"),
    e(42, P, "network subset personalization PIN required"),
    e(43, P, "network subset personalization PUK required"),
    e(44, P, "service provider personalization PIN required"),
    e(45, P, "service provider personalization PUK required"),
    e(46, P, "corporate personalization PIN required"),
    e(47, P, "corporate personalization PUK required"),
    e(48, P, "hidden key required"),
    e(49, P, "EAP method not supported"),
    e(50, P, "Incorrect parameters"),
    e(51, P, "command implemented but currently disabled"),
    e(52, T, "command aborted by user"),
    e(
        53,
        T,
        "not attached to network due to MT functionality restrictions",
    ),
    e(
        54,
        P,
        "modem not allowed - MT restricted to emergency calls only",
    ),
    e(
        55,
        P,
        "operation not allowed because of MT functionality restrictions",
    ),
    e(
        56,
        P,
        "fixed dial number only allowed - called number is not a fixed dial number",
    ),
    e(57, T, "temporarily out of service due to other MT usage"),
    e(58, P, "language/alphabet not supported"),
    e(59, P, "unexpected data value"),
    e(60, T, "system failure"),
    e(61, P, "data missing"),
    e(62, P, "call barred"),
    e(63, P, "message waiting indication subscription failure"),
    e(100, T, "unknown"),
    // §9.2.2 packet-domain errors.
    e(103, P, "Illegal MS"),
    e(106, P, "Illegal ME"),
    e(107, P, "GPRS services not allowed"),
    e(111, P, "PLMN not allowed"),
    e(112, P, "Location area not allowed"),
    e(113, P, "Roaming not allowed in this location area"),
    e(132, P, "service option not supported"),
    e(133, P, "requested service option not subscribed"),
    e(134, T, "service option temporarily out of order"),
    e(148, T, "unspecified GPRS error"),
    e(149, P, "PDP authentication failure"),
    e(150, P, "invalid mobile class"),
];

fn lookup(table: &'static [ErrorInfo], code: u16) -> Option<&'static ErrorInfo> {
    table.iter().find(|info| info.code == code)
}

/// Ignores case, spaces, "(U)" and a leading "U" so that "USIM busy",
/// "SIM busy" and "(U)SIM busy" all match: vendors word these differently.
fn normalise_text(text: &str) -> String {
    let lowered = text
        .to_ascii_lowercase()
        .replace("(u)sim", "sim")
        .replace("usim", "sim");
    lowered
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect()
}

fn lookup_text(table: &'static [ErrorInfo], text: &str) -> Option<&'static ErrorInfo> {
    let wanted = normalise_text(text);
    if wanted.is_empty() {
        return None;
    }
    table
        .iter()
        .find(|info| normalise_text(info.meaning) == wanted)
}

/// Table entry for a `+CMS ERROR` code.
pub fn cms_error(code: u16) -> Option<&'static ErrorInfo> {
    lookup(CMS_ERRORS, code)
}

/// Table entry for a `+CME ERROR` code.
pub fn cme_error(code: u16) -> Option<&'static ErrorInfo> {
    lookup(CME_ERRORS, code)
}

/// Maps a verbose (`AT+CMEE=2`) `+CMS ERROR` text back to its table entry.
pub fn cms_error_from_text(text: &str) -> Option<&'static ErrorInfo> {
    lookup_text(CMS_ERRORS, text)
}

/// Maps a verbose (`AT+CMEE=2`) `+CME ERROR` text back to its table entry.
pub fn cme_error_from_text(text: &str) -> Option<&'static ErrorInfo> {
    lookup_text(CME_ERRORS, text)
}

/// Retry classification of a `+CMS ERROR` code. Codes missing from the
/// table: manufacturer-specific ones (≥ 512) and reserved ranges are
/// treated as transient, because vendors use them mostly for radio/network
/// trouble and a bounded retry is cheap compared to dropping a message.
pub fn classify_cms(code: u16) -> ErrorClass {
    cms_error(code).map_or(ErrorClass::Transient, |info| info.class)
}

/// Retry classification of a `+CME ERROR` code; unknown codes are transient
/// for the same reason as in [`classify_cms`].
pub fn classify_cme(code: u16) -> ErrorClass {
    cme_error(code).map_or(ErrorClass::Transient, |info| info.class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_have_unique_sorted_codes() {
        for table in [CMS_ERRORS, CME_ERRORS] {
            for pair in table.windows(2) {
                assert!(
                    pair[0].code < pair[1].code,
                    "{:?} before {:?}",
                    pair[0],
                    pair[1]
                );
            }
        }
    }

    #[test]
    fn network_trouble_is_transient() {
        // 28 (unidentified subscriber) is the sender's own SIM not known
        // to the network for now.
        for code in [28, 38, 41, 42, 47, 331, 332, 500, 512, 600] {
            assert_eq!(classify_cms(code), ErrorClass::Transient, "CMS {code}");
        }
        for code in [14, 30, 31, 100] {
            assert_eq!(classify_cme(code), ErrorClass::Transient, "CME {code}");
        }
    }

    #[test]
    fn bad_input_is_permanent() {
        for code in [1, 21, 96, 304, 305, 330] {
            assert_eq!(classify_cms(code), ErrorClass::Permanent, "CMS {code}");
        }
        for code in [10, 11, 12, 16, 21] {
            assert_eq!(classify_cme(code), ErrorClass::Permanent, "CME {code}");
        }
    }

    #[test]
    fn meanings_follow_the_spec_wording() {
        assert_eq!(
            cms_error(304).unwrap().meaning,
            "invalid PDU mode parameter"
        );
        assert_eq!(cme_error(11).unwrap().meaning, "SIM PIN required");
        assert!(cms_error(9999).is_none());
    }

    #[test]
    fn verbose_texts_map_back_to_codes() {
        assert_eq!(cme_error_from_text("SIM PIN required").unwrap().code, 11);
        assert_eq!(cme_error_from_text("sim not inserted").unwrap().code, 10);
        assert_eq!(cms_error_from_text("SIM busy").unwrap().code, 314);
        assert_eq!(cms_error_from_text("USIM busy").unwrap().code, 314);
        assert!(cme_error_from_text("no such text").is_none());
        assert!(cme_error_from_text("").is_none());
    }
}
