//! The inbound side: adapters hand events to a [`StoreSink`], which commits
//! them before returning, so the adapter may then acknowledge upstream.

mod sink;

pub use sink::StoreSink;
