//! A cursor write handed to the sink with the event it goes with.

/// One cursor to write with an inbound message
/// ([`crate::EventSink::deliver_inbound_with_cursors`]): `value` stored
/// under `name`, as [`crate::EventSink::save_cursor`] stores it. An empty
/// `value` removes the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorWrite {
    pub name: String,
    pub value: String,
}

impl CursorWrite {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}
