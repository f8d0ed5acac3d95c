//! Final result codes: the line that ends a command's response.
//!
//! V.250 §5.7.2 (OK, ERROR, NO CARRIER, BUSY, NO ANSWER, NO DIALTONE),
//! TS 27.007 §9.2 (`+CME ERROR`), TS 27.005 §3.2.5 (`+CMS ERROR`), plus vendor
//! variants: Huawei `COMMAND NOT SUPPORT`, Quectel/Huawei `ABORTED`.

use std::fmt;

use crate::errors_table::{self, ErrorClass};
use crate::fields::strip_prefix_ci;

/// Detail of a `+CME ERROR` / `+CMS ERROR`: numeric with `AT+CMEE=1`,
/// verbose text with `AT+CMEE=2`. The text is kept as the modem sent it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorDetail {
    Code(u16),
    Text(String),
}

impl ErrorDetail {
    fn parse(rest: &str) -> Self {
        match rest.trim().parse::<u16>() {
            Ok(code) => ErrorDetail::Code(code),
            Err(_) => ErrorDetail::Text(rest.trim().to_owned()),
        }
    }
}

impl fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorDetail::Code(code) => write!(f, "{code}"),
            ErrorDetail::Text(text) => f.write_str(text),
        }
    }
}

/// The final result of one AT command.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FinalResult {
    Ok,
    Error,
    CmeError(ErrorDetail),
    CmsError(ErrorDetail),
    NoCarrier,
    Busy,
    NoAnswer,
    NoDialtone,
    /// Command interrupted by a character received while it ran
    /// (Huawei/Quectel print `ABORTED`).
    Aborted,
    /// Huawei's answer to commands the firmware does not know.
    CommandNotSupported,
}

impl FinalResult {
    /// Recognises a complete (trimmed) line as a final result code.
    pub fn parse(line: &str) -> Option<Self> {
        if let Some(rest) = strip_prefix_ci(line, "+CME ERROR:") {
            return Some(FinalResult::CmeError(ErrorDetail::parse(rest)));
        }
        if let Some(rest) = strip_prefix_ci(line, "+CMS ERROR:") {
            return Some(FinalResult::CmsError(ErrorDetail::parse(rest)));
        }
        let upper = line.trim().to_ascii_uppercase();
        Some(match upper.as_str() {
            "OK" => FinalResult::Ok,
            "ERROR" => FinalResult::Error,
            "NO CARRIER" => FinalResult::NoCarrier,
            "BUSY" => FinalResult::Busy,
            "NO ANSWER" => FinalResult::NoAnswer,
            // V.250 spells it NO DIALTONE; several vendors add a space.
            "NO DIALTONE" | "NO DIAL TONE" => FinalResult::NoDialtone,
            "ABORTED" | "ABORT" => FinalResult::Aborted,
            "COMMAND NOT SUPPORT" | "COMMAND NOT SUPPORTED" => FinalResult::CommandNotSupported,
            _ => return None,
        })
    }

    pub fn is_ok(&self) -> bool {
        matches!(self, FinalResult::Ok)
    }

    /// Call-progress results (V.250 §6.3.1): without a pending command they
    /// are unsolicited call events, not the end of anything.
    pub fn is_call_progress(&self) -> bool {
        matches!(
            self,
            FinalResult::NoCarrier
                | FinalResult::Busy
                | FinalResult::NoAnswer
                | FinalResult::NoDialtone
        )
    }

    /// Numeric error code, also for verbose texts found in the tables.
    pub fn error_code(&self) -> Option<u16> {
        match self {
            FinalResult::CmeError(ErrorDetail::Code(code))
            | FinalResult::CmsError(ErrorDetail::Code(code)) => Some(*code),
            FinalResult::CmeError(ErrorDetail::Text(text)) => {
                errors_table::cme_error_from_text(text).map(|info| info.code)
            }
            FinalResult::CmsError(ErrorDetail::Text(text)) => {
                errors_table::cms_error_from_text(text).map(|info| info.code)
            }
            _ => None,
        }
    }

    /// `None` for success; otherwise whether retrying unchanged may help.
    /// A bare `ERROR` is usually a syntax or unsupported-command error,
    /// hence permanent; unknown verbose texts are treated as transient like
    /// unknown codes (see [`errors_table::classify_cms`]).
    pub fn error_class(&self) -> Option<ErrorClass> {
        Some(match self {
            FinalResult::Ok => return None,
            FinalResult::Error | FinalResult::CommandNotSupported => ErrorClass::Permanent,
            FinalResult::CmeError(_) => self
                .error_code()
                .map_or(ErrorClass::Transient, errors_table::classify_cme),
            FinalResult::CmsError(_) => self
                .error_code()
                .map_or(ErrorClass::Transient, errors_table::classify_cms),
            FinalResult::NoCarrier
            | FinalResult::Busy
            | FinalResult::NoAnswer
            | FinalResult::NoDialtone
            | FinalResult::Aborted => ErrorClass::Transient,
        })
    }
}

impl fmt::Display for FinalResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FinalResult::Ok => f.write_str("OK"),
            FinalResult::Error => f.write_str("ERROR"),
            FinalResult::CmeError(detail) => write!(f, "+CME ERROR: {detail}"),
            FinalResult::CmsError(detail) => write!(f, "+CMS ERROR: {detail}"),
            FinalResult::NoCarrier => f.write_str("NO CARRIER"),
            FinalResult::Busy => f.write_str("BUSY"),
            FinalResult::NoAnswer => f.write_str("NO ANSWER"),
            FinalResult::NoDialtone => f.write_str("NO DIALTONE"),
            FinalResult::Aborted => f.write_str("ABORTED"),
            FinalResult::CommandNotSupported => f.write_str("COMMAND NOT SUPPORT"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_results() {
        assert_eq!(FinalResult::parse("OK"), Some(FinalResult::Ok));
        assert_eq!(FinalResult::parse("ERROR"), Some(FinalResult::Error));
        assert_eq!(
            FinalResult::parse("NO CARRIER"),
            Some(FinalResult::NoCarrier)
        );
        assert_eq!(
            FinalResult::parse("NO DIAL TONE"),
            Some(FinalResult::NoDialtone)
        );
        assert_eq!(
            FinalResult::parse("COMMAND NOT SUPPORT"),
            Some(FinalResult::CommandNotSupported)
        );
        assert_eq!(FinalResult::parse("ABORTED"), Some(FinalResult::Aborted));
    }

    #[test]
    fn rejects_lines_that_merely_contain_a_result() {
        assert_eq!(FinalResult::parse("OKAY"), None);
        assert_eq!(FinalResult::parse("+CSQ: 20,99"), None);
        assert_eq!(FinalResult::parse("ERROR 5"), None);
    }

    #[test]
    fn parses_numeric_and_verbose_errors() {
        assert_eq!(
            FinalResult::parse("+CMS ERROR: 500"),
            Some(FinalResult::CmsError(ErrorDetail::Code(500)))
        );
        assert_eq!(
            FinalResult::parse("+CME ERROR:14"),
            Some(FinalResult::CmeError(ErrorDetail::Code(14)))
        );
        let verbose = FinalResult::parse("+CME ERROR: SIM PIN required").unwrap();
        assert_eq!(
            verbose,
            FinalResult::CmeError(ErrorDetail::Text("SIM PIN required".into()))
        );
        assert_eq!(verbose.error_code(), Some(11));
        assert_eq!(verbose.error_class(), Some(ErrorClass::Permanent));
        assert_eq!(verbose.to_string(), "+CME ERROR: SIM PIN required");
    }

    #[test]
    fn classifies_results() {
        assert_eq!(FinalResult::Ok.error_class(), None);
        assert_eq!(
            FinalResult::Error.error_class(),
            Some(ErrorClass::Permanent)
        );
        assert_eq!(
            FinalResult::CmsError(ErrorDetail::Code(42)).error_class(),
            Some(ErrorClass::Transient)
        );
        assert_eq!(
            FinalResult::CmsError(ErrorDetail::Text("vendor gibberish".into())).error_class(),
            Some(ErrorClass::Transient)
        );
        assert!(FinalResult::Busy.is_call_progress());
        assert!(!FinalResult::Ok.is_call_progress());
    }
}
