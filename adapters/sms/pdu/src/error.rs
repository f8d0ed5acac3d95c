//! The one error type of this crate.
//!
//! Every decoding failure says *what* was wrong and *where* (octet offset
//! into the full PDU, SMSC part included), so a log line like
//! "truncated TP-OA at octet 9" is enough to find the problem in a captured
//! hex dump without re-running anything.

use thiserror::Error;

/// Everything that can go wrong while encoding or decoding an SMS PDU.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PduError {
    /// The input was not a valid hex string.
    #[error("invalid hex at character {position}: {reason}")]
    InvalidHex {
        position: usize,
        reason: &'static str,
    },

    /// The PDU ended before a field was complete.
    #[error(
        "PDU truncated in {field} at octet {offset}: {needed} octet(s) needed, {available} available"
    )]
    Truncated {
        field: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },

    /// A field was present but its value is not allowed by the spec.
    #[error("invalid {field} at octet {offset}: {reason}")]
    InvalidField {
        field: &'static str,
        offset: usize,
        reason: String,
    },

    /// The TP-MTI names a message type this direction cannot carry
    /// (or one this crate does not implement, e.g. SMS-COMMAND).
    #[error("unsupported message type (TP-MTI {mti:#04b}) for {direction}")]
    UnsupportedMessageType { mti: u8, direction: &'static str },

    /// A phone number / originator given to an encoder is not encodable.
    #[error("invalid address {address:?}: {reason}")]
    InvalidAddress { address: String, reason: String },

    /// The text needs more than 255 concatenated parts (TS 23.040 9.2.3.24.1:
    /// the part counters are single octets).
    #[error("message needs {needed} parts; at most 255 are possible")]
    TooManyParts { needed: usize },

    /// A character cannot be represented in the requested alphabet.
    #[error("character {ch:?} cannot be encoded in {alphabet}")]
    Unencodable { ch: char, alphabet: &'static str },

    /// An encoder argument is out of range (validity period, timestamp, ...).
    #[error("invalid argument {what}: {reason}")]
    InvalidArgument { what: &'static str, reason: String },
}

/// A bounds-checked cursor over the PDU octets.
///
/// All decoders read through this so that no code path indexes a slice
/// directly: running past the end becomes [`PduError::Truncated`] naming the
/// field that was being read.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    /// Offset of the next octet, counted from the start of the full PDU.
    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, PduError> {
        let b = self.take(1, field)?;
        b.first().copied().ok_or(PduError::Truncated {
            field,
            offset: self.pos,
            needed: 1,
            available: 0,
        })
    }

    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], PduError> {
        let end = self.pos.checked_add(n).ok_or(PduError::Truncated {
            field,
            offset: self.pos,
            needed: n,
            available: self.remaining(),
        })?;
        match self.data.get(self.pos..end) {
            Some(s) => {
                self.pos = end;
                Ok(s)
            }
            None => Err(PduError::Truncated {
                field,
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            }),
        }
    }

    pub(crate) fn take_array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], PduError> {
        let s = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }
}
