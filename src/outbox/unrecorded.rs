//! The sends whose outcome the store would not take: each leaves its
//! message `sending`, and the next start sends it again. Shared by the
//! daemon's recorders and its stop, which fails (exit 1) naming them, so
//! the service manager and the operator know a restart repeats them.

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

    /// Their message ids, in order.
    pub fn ids(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }
}
