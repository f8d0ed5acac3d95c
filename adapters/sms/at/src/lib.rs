//! Pure AT-command protocol for GSM/LTE modems: bytes in, events out.
//!
//! No I/O, no clocks, no async: the caller owns the serial port and the
//! timer, feeds received bytes and the current time in milliseconds, and
//! writes whatever [`AtEngine::poll_transmit`] hands out. The same design
//! as `quinn-proto`, which keeps the protocol testable with plain byte
//! strings.
//!
//! - [`AtParser`]: line-level parser (final results, intermediate lines,
//!   the `> ` prompt, URCs, echo).
//! - [`AtEngine`]: command queue and sequencer with timeouts and
//!   resynchronisation.
//! - [`builders`]: the commands the SMS driver issues; [`responses`]:
//!   typed parsers of their answers; [`errors_table`]: `+CMS`/`+CME ERROR`
//!   meanings and retry classification.

pub mod builders;
mod command;
mod engine;
pub mod errors_table;
mod fields;
mod final_result;
mod parser;
pub mod responses;
mod urc;

pub use command::{Command, CommandKind, STREAMING_CAP_FACTOR};
pub use engine::{AtEngine, CommandId, EngineConfig, EngineEvent};
pub use errors_table::ErrorClass;
pub use final_result::{ErrorDetail, FinalResult};
pub use parser::{AtParser, DEFAULT_MAX_LINE_LEN, ParserEvent};
pub use urc::{ReadySignal, Urc, parse_single_line_urc};
