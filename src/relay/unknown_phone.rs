//! A link whose phone_id is none of the bridge's endpoints (a typo in
//! `relay.phone_id`, a modem renamed): a pairing or config mistake, not a
//! re-pair. The tasks that would act on the relay's behalf for that phone
//! wait instead, saying so now and then, until the link restarts with new
//! settings. Endpoints come from the config, so none can appear before.

use super::Deps;

/// How often a link whose phone_id is none of the bridge's endpoints says
/// so again while what it would carry waits.
const UNKNOWN_PHONE_WARN_EVERY_MS: u64 = 10 * 60 * 1000;

/// Whether the link's phone_id is one of the bridge's endpoints.
pub fn is_known(deps: &Deps) -> bool {
    deps.state.endpoints.has_phone_id(&deps.settings.phone_id)
}

/// Wait until shutdown (the link's stop), warning every ten minutes that
/// `what_waits` (e.g. "status events wait, unsent") until the pairing or
/// the config is put right.
pub async fn wait_for_a_known_phone(deps: &Deps, what_waits: &str) {
    loop {
        tracing::warn!(phone_id = %deps.settings.phone_id,
            "the relay link's phone_id is none of this bridge's endpoints; \
             {what_waits} until the pairing or the config is put right");
        if !deps.sleep_ms(UNKNOWN_PHONE_WARN_EVERY_MS).await {
            return;
        }
    }
}
