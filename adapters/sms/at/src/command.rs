//! One AT command as queued in the engine.

use std::fmt;

/// Shape of the exchange.
#[derive(Clone, PartialEq, Eq)]
pub enum CommandKind {
    /// `AT...\r`, then response lines and a final result.
    Plain,
    /// `AT+CMGS=<n>\r`, wait for `> `, then `<pdu_hex>` + Ctrl-Z, then
    /// response lines and a final result.
    WithPdu { pdu_hex: String },
}

/// An AT command: the text without the trailing `\r`, how long to wait for
/// its final result, and whether its text must stay out of logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    pub text: String,
    /// Deadline for the final result, counted from the write of the command
    /// line and restarted when the PDU of a [`CommandKind::WithPdu`] is
    /// written (sending over the network takes far longer than the prompt),
    /// or, for a [`Self::streaming`] command, renewed by each line.
    pub timeout_ms: u64,
    pub kind: CommandKind,
    /// Its answer may stream for long (`AT+CMGL` of a full memory over a
    /// slow line): each line of it renews the deadline, `timeout_ms` after
    /// the line, up to [`STREAMING_CAP_FACTOR`] times `timeout_ms` after
    /// the write in all. Any other command has `timeout_ms` from the write
    /// whatever comes: a wedged modem printing lines it does not know as
    /// URCs must not keep it waiting for good.
    pub streaming: bool,
    /// Carries a secret (`AT+CPIN="1234"`): `Display`/`Debug` show
    /// `AT+CPIN=****` and the engine redacts the secret from response lines.
    pub sensitive: bool,
}

/// How long a streaming command ([`Command::streaming`]) may run at most,
/// in multiples of its timeout.
pub const STREAMING_CAP_FACTOR: u64 = 10;

impl Command {
    pub fn plain(text: impl Into<String>, timeout_ms: u64) -> Self {
        Command {
            text: text.into(),
            timeout_ms,
            kind: CommandKind::Plain,
            sensitive: false,
            streaming: false,
        }
    }

    /// Marks a plain command whose answer may stream for long.
    pub fn streaming(mut self) -> Self {
        self.streaming = true;
        self
    }

    pub fn with_pdu(text: impl Into<String>, pdu_hex: impl Into<String>, timeout_ms: u64) -> Self {
        Command {
            text: text.into(),
            timeout_ms,
            kind: CommandKind::WithPdu {
                pdu_hex: pdu_hex.into(),
            },
            sensitive: false,
            streaming: false,
        }
    }

    /// Marks the command as carrying a secret.
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    /// The argument part that must not be logged (everything after the
    /// first `=`), if the command is sensitive.
    pub(crate) fn secret(&self) -> Option<&str> {
        if !self.sensitive {
            return None;
        }
        let secret = self
            .text
            .split_once('=')
            .map_or(self.text.as_str(), |(_, s)| s);
        (!secret.is_empty()).then_some(secret)
    }

    /// Loggable form of the command text.
    pub fn redacted(&self) -> String {
        if !self.sensitive {
            return self.text.clone();
        }
        match self.text.split_once('=') {
            Some((head, _)) => format!("{head}=****"),
            None => "****".to_owned(),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Hand-written so that neither secrets nor message contents end up in
/// `{:?}` logs: the PDU is shown by length only.
impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Command");
        s.field("text", &self.redacted())
            .field("timeout_ms", &self.timeout_ms);
        if let CommandKind::WithPdu { pdu_hex } = &self.kind {
            s.field("pdu_hex_len", &pdu_hex.len());
        }
        s.field("sensitive", &self.sensitive).finish()
    }
}

impl fmt::Debug for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandKind::Plain => f.write_str("Plain"),
            CommandKind::WithPdu { pdu_hex } => {
                write!(f, "WithPdu {{ pdu_hex_len: {} }}", pdu_hex.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_commands_are_redacted_everywhere() {
        let cmd = Command::plain("AT+CPIN=\"1234\"", 1000).sensitive();
        assert_eq!(cmd.to_string(), "AT+CPIN=****");
        let debug = format!("{cmd:?}");
        assert!(!debug.contains("1234"), "{debug}");
        assert_eq!(cmd.secret(), Some("\"1234\""));
    }

    #[test]
    fn plain_commands_display_as_is() {
        let cmd = Command::plain("AT+CSQ", 1000);
        assert_eq!(cmd.to_string(), "AT+CSQ");
        assert_eq!(cmd.secret(), None);
    }

    #[test]
    fn pdu_is_not_in_debug_output() {
        let cmd = Command::with_pdu("AT+CMGS=5", "0011AABBCC", 1000);
        let debug = format!("{cmd:?}");
        assert!(!debug.contains("0011AABBCC"), "{debug}");
        assert!(debug.contains("pdu_hex_len: 10"), "{debug}");
        assert!(format!("{:?}", cmd.kind).contains("10"));
    }
}
