//! The sends whose outcome the store would not take: each leaves its
//! message `sending` (counted so, its recipient's replies held by the
//! relay forwarder), and the next start sends it again. The recorders keep
//! those a write refused for good and try them again; the status report
//! and `/metrics` count them, and the daemon's stop fails (exit 1) naming
//! those left, so the service manager and the operator know a restart
//! repeats them.

use std::collections::BTreeSet;
use std::sync::Mutex;

#[derive(Default)]
pub struct Unrecorded {
    ids: Mutex<BTreeSet<String>>,
}

impl Unrecorded {
    /// The outcome of the send of message `id` was given up.
    pub fn add(&self, id: &str) {
        self.lock().insert(id.to_string());
    }

    /// The outcome of message `id` is recorded after all.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Their message ids, in order.
    pub fn ids(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }
}
