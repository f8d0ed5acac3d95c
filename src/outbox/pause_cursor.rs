//! An endpoint's pause kept in the store's cursors, so that a daemon
//! restarted (an upgrade, a config change) while a remote's limit runs
//! waits out the rest of it instead of sending into the limit again.

use phonerelay_channel::ChannelKind;

use super::pause::{Pause, SavedPause};
use crate::clock::now_ms;
use crate::store::Store;

const SCOPE: &str = "outbox.pause";

fn name(kind: ChannelKind, phone_id: &str) -> String {
    format!("{kind}/{phone_id}")
}

/// Keep the pause a refusal has just begun. A pause that is not kept (the
/// store failing, a crash first) only costs the restart's wait.
pub async fn save(store: &dyn Store, kind: ChannelKind, phone_id: &str, pause: &Pause) {
    let Some(saved) = pause.saved(now_ms()) else {
        return;
    };
    let value = serde_json::to_string(&saved).expect("a pause serializes");
    if let Err(e) = store
        .save_cursor(SCOPE, &name(kind, phone_id), &value)
        .await
    {
        tracing::warn!(channel = %kind, %phone_id, error = %e,
            "the endpoint's pause was not kept; a restart would not wait it out");
    }
}

/// Take up the pause the last run kept for this endpoint, if it still runs,
/// for at most `longest_ms` (see [`Pause::restore`]).
pub async fn restore(
    store: &dyn Store,
    kind: ChannelKind,
    phone_id: &str,
    pause: &Pause,
    longest_ms: u64,
) {
    let name = name(kind, phone_id);
    let Ok(Some(value)) = store.load_cursor(SCOPE, &name).await else {
        return;
    };
    let now = now_ms();
    match serde_json::from_str::<SavedPause>(&value) {
        Ok(saved) => {
            let code = saved.code.clone();
            if pause.restore(saved, now, longest_ms) {
                let pause_ms = pause.remaining(now).unwrap_or_default().as_millis() as u64;
                tracing::info!(channel = %kind, %phone_id, %code, pause_ms,
                    "the remote's limit from before the restart still runs; the endpoint waits it out");
                return;
            }
        }
        Err(e) => tracing::warn!(channel = %kind, %phone_id, error = %e,
            "a kept pause could not be read; dropped"),
    }
    // Over or unreadable: nothing to keep.
    let _ = store.save_cursor(SCOPE, &name, "").await;
}
