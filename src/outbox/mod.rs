//! The outbox dispatcher: one worker set per endpoint claims due messages
//! with a lease (or takes them handed over at accept, `handover`), sends
//! them through the adapter within rate limits, each recipient's in queue
//! order (`recipient_order`, `back_in_queue`), and records the classified
//! outcome.

mod back_in_queue;
mod backoff;
mod handover;
mod limits;
mod pause;
mod pause_cursor;
pub mod recent_failures;
mod recipient_limit;
mod recipient_order;
mod recorder;
mod send;
mod unrecorded;
mod worker;

pub use back_in_queue::BackInQueue;
pub use backoff::retry_delay_ms;
pub use handover::{Handover, Intake, Reservation};
pub use limits::limits_for;
pub use pause::{Pause, Refusal};
pub use unrecorded::Unrecorded;
pub use worker::{DispatchContext, run_endpoint, run_expiry_sweeper};
