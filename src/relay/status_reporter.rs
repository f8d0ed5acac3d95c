//! Status back to the relay: a persisted cursor over the ordered
//! `outbound_events` log. Each batch is retried until the relay takes it,
//! then the cursor moves; so events arrive in order, at least once, and
//! `event_id` lets the relay drop repeats.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::json;

use super::Deps;
use super::client::RelayError;
use super::pull_ack::REFUSED_ALONE_BEFORE_ANY_TAKEN;
use super::settings::{SCOPE, STATUS_CURSOR};
use super::{reported_relay, unknown_phone};
use crate::clock::rfc3339;
use crate::logging::{REPEATED_FAILURE_LOG_EVERY, SharedThrottle};
use crate::metrics::labels;
use crate::store::{OutboundStatus, RelayStatusBatch, RelayStatusEvent};

/// The reporter's failed reads of the store, tried again every second or
/// so while the store is out: logged once a minute.
static READ_FAILED_LOG: SharedThrottle = SharedThrottle::new(REPEATED_FAILURE_LOG_EVERY);

/// Events per request.
const BATCH: u32 = 100;

/// How many rounds the events at the cursor are kept while the relay
/// refuses each of them and nothing shows it takes any other (about 25
/// minutes with the default backoff, 1 s doubling to 5 min): past that they
/// are taken as refused on their own and skipped, so a relay that forgot
/// more messages than the stream looks ahead does not hold it back for
/// good, while one refusing everything for a shorter spell loses none.
/// While it still takes none, each next batch is kept one round only,
/// then skipped, a batch per longest backoff.
const REFUSED_ROUNDS: u32 = 12;

#[derive(Debug, Serialize)]
pub struct StatusEventBody {
    pub event_id: i64,
    pub relay_message_id: String,
    pub message_id: String,
    pub status: OutboundStatus,
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_ids: Vec<String>,
}

impl From<RelayStatusEvent> for StatusEventBody {
    fn from(e: RelayStatusEvent) -> Self {
        StatusEventBody {
            event_id: e.event_id,
            relay_message_id: e.relay_message_id,
            message_id: e.message_id,
            status: e.status,
            at: rfc3339(e.at_ms),
            code: e.code,
            reason: e.reason,
            external_ids: e.external_ids,
        }
    }
}

pub async fn run(deps: Deps) {
    if !unknown_phone::is_known(&deps) {
        // Reading the log would pass over every event, none being this
        // phone's, and save that cursor: once the mistake is put right
        // those events would never be sent, and retention, which reads
        // the cursor, would prune their messages. So nothing is read or
        // saved (the forwarder keeps inbound pending for the same reason).
        unknown_phone::wait_for_a_known_phone(&deps, "status events wait, unsent").await;
        tracing::info!("relay status reporter stopped");
        return;
    }
    let store = deps.state.store.clone();
    let interval = deps.settings.config.status_interval_ms;
    let Some(mut cursor) = start_cursor(&deps, interval).await else {
        tracing::info!("relay status reporter stopped");
        return;
    };
    let Some(after_seq) = deps.relay_messages_after(interval).await else {
        tracing::info!("relay status reporter stopped");
        return;
    };
    tracing::info!(cursor, "relay status reporter started");
    // Rounds in which the relay refused the batch at the cursor whole, and
    // whether it does now.
    let mut refusals = 0u32;
    let mut holding = false;
    // Whether `pair` moved the bridge to another relay, said once.
    let mut moved_away = false;
    loop {
        if deps.shutdown.is_cancelled() {
            break;
        }
        let batch = match store
            .relay_status_events(cursor, BATCH, &deps.settings.phone_id, after_seq)
            .await
        {
            Ok(batch) => batch,
            Err(e) => {
                if let Some(unlogged) = READ_FAILED_LOG.allow() {
                    tracing::error!(error = %e, reads_since_last_logged = unlogged,
                        "cannot read the status log");
                }
                if !deps.sleep_ms(interval.max(1000)).await {
                    break;
                }
                continue;
            }
        };
        if batch.scanned_to == cursor {
            if !deps.sleep_ms(interval).await {
                break;
            }
            continue;
        }
        if !batch.events.is_empty() && !reported_relay::still_this_links(&deps).await {
            // `pair` moved the bridge to another relay while this link
            // runs: these events may be the new relay's messages', not to
            // be told to this one. The daemon ends this link once it reads
            // the new pairing; the new link reports them.
            if !moved_away {
                tracing::info!("paired with another relay: this link's status events stop");
                moved_away = true;
            }
            if !deps.sleep_ms(interval).await {
                break;
            }
            continue;
        }
        let mut scanned_to = batch.scanned_to;
        // Skipped after the relay refused everything round after round:
        // the backoff to wait before the next batch.
        let mut skipped_refusing_all = None;
        // Whether the relay took any event this round: only that ends a
        // hold (a read with none of its events, say an operator's own
        // send's, shows nothing).
        let mut relay_took = false;
        // Each event alone at the first round of a hold, so that those
        // the relay takes go at once (the first few refused alone, of
        // messages it forgot, would have cut the split short); at the
        // later rounds, which only ask whether it takes events again, the
        // split stops early.
        let split = if refusals == 0 {
            Split::ToTheEnd
        } else {
            Split::GiveUpEarly
        };
        if !batch.events.is_empty() {
            let events = bodies(batch.events);
            match report(&deps, &events, split).await {
                Reported::Taken => relay_took = true,
                Reported::Shutdown => break,
                Reported::AllRefused(e) => {
                    held(&deps, true);
                    holding = true;
                    // The events after these show whether the relay takes
                    // any, and so whether these are refused on their own.
                    match probe_past(&deps, scanned_to, after_seq, &events, split).await {
                        Probe::Shutdown => break,
                        Probe::Taken(past) => {
                            relay_took = true;
                            // Once more, for a relay that came back only
                            // now: what it still refuses, it refuses on its
                            // own.
                            match report(&deps, &events, Split::ToTheEnd).await {
                                Reported::Shutdown => break,
                                Reported::Taken => {}
                                Reported::AllRefused(_) => skip(
                                    &deps,
                                    &events,
                                    "the relay refused each of these status events while it takes later ones",
                                ),
                            }
                            scanned_to = past;
                        }
                        Probe::Refused | Probe::Nothing if refusals + 1 >= REFUSED_ROUNDS => {
                            // Each event alone, once, before any is skipped:
                            // those the relay takes go (the first few of
                            // the batch refused alone, say of messages it
                            // forgot, had cut the split short).
                            match report(&deps, &events, Split::ToTheEnd).await {
                                Reported::Shutdown => break,
                                Reported::Taken => relay_took = true,
                                Reported::AllRefused(e) => {
                                    skip(
                                        &deps,
                                        &events,
                                        "the relay has refused each of these status events round after round",
                                    );
                                    // It still takes none: the next batch
                                    // gets one round, not a dozen again
                                    // (the stream fell behind any steady
                                    // flow of events then, and retention,
                                    // which waits for the cursor, kept
                                    // every message), after the longest
                                    // backoff.
                                    refusals = refusals.saturating_add(1);
                                    skipped_refusing_all = Some(deps.backoff_ms(refusals, &e));
                                }
                            }
                        }
                        Probe::Refused | Probe::Nothing => {
                            // Kept, not skipped: tried again from the same
                            // cursor after a backoff.
                            refusals = refusals.saturating_add(1);
                            tracing::warn!(error = %e, events = events.len(),
                                "the relay refuses every status event of the batch; keeping them to try again");
                            if !deps.sleep_ms(deps.backoff_ms(refusals, &e)).await {
                                break;
                            }
                            continue;
                        }
                    }
                }
            }
        }
        // The stream moves on; a hold ends once the relay took an event.
        if relay_took && std::mem::take(&mut holding) {
            refusals = 0;
            held(&deps, false);
        }
        cursor = scanned_to;
        if let Err(e) = store
            .save_cursor(SCOPE, STATUS_CURSOR, &cursor.to_string())
            .await
        {
            // Not fatal: the events are reported again after a restart.
            tracing::warn!(error = %e, "cannot save the status cursor");
        }
        if let Some(wait_ms) = skipped_refusing_all
            && !deps.sleep_ms(wait_ms).await
        {
            break;
        }
    }
    // No series left at 1 for a link that stopped (unpaired, paired again
    // under another phone_id): the next reporter sets its own.
    deps.state
        .metrics
        .relay_status_held
        .remove(&phone_label(&deps));
    tracing::info!("relay status reporter stopped");
}

/// Where the stream resumes: the saved cursor, read again until the store
/// answers (starting from 0 would send every event kept again); 0 if none
/// was saved, or it is not a number. `None` if shut down first.
async fn start_cursor(deps: &Deps, interval_ms: u64) -> Option<i64> {
    loop {
        match deps.state.store.load_cursor(SCOPE, STATUS_CURSOR).await {
            Ok(saved) => return Some(saved.and_then(|v| v.parse().ok()).unwrap_or(0)),
            Err(e) => {
                if let Some(unlogged) = READ_FAILED_LOG.allow() {
                    tracing::error!(error = %e, reads_since_last_logged = unlogged,
                        "cannot read the status cursor; trying again");
                }
                if !deps.sleep_ms(interval_ms.max(1000)).await {
                    return None;
                }
            }
        }
    }
}

/// `phonerelay_relay_status_held`: whether the relay refuses every event.
fn held(deps: &Deps, held: bool) {
    deps.state
        .metrics
        .relay_status_held
        .get_or_create(&phone_label(deps))
        .set(held as i64);
}

/// Skip `events`, which the relay refused each on its own: logged and
/// counted.
fn skip(deps: &Deps, events: &[StatusEventBody], why: &str) {
    tracing::warn!(
        events = events.len(),
        first = events[0].event_id,
        last = events[events.len() - 1].event_id,
        "{why}; skipping them"
    );
    skipped(deps, events.len());
}

/// `phonerelay_relay_status_skipped_total`, by `count` more.
fn skipped(deps: &Deps, count: usize) {
    deps.state
        .metrics
        .relay_status_skipped
        .get_or_create(&phone_label(deps))
        .inc_by(count as u64);
}

fn phone_label(deps: &Deps) -> Vec<(String, String)> {
    labels(&[("phone_id", &deps.settings.phone_id)])
}

fn bodies(events: Vec<RelayStatusEvent>) -> Vec<StatusEventBody> {
    events.into_iter().map(StatusEventBody::from).collect()
}

/// What the events past a refused batch showed.
enum Probe {
    /// The relay took some: the batch before was refused event by event.
    /// Where the stream goes on from: past these events, or before the
    /// first one the probe left out.
    Taken(i64),
    /// It refused these as well, or they could not be read.
    Refused,
    /// None came past the batch yet, but those of its messages.
    Nothing,
    Shutdown,
}

/// Send the next events past `after`, as a probe of whether the relay
/// takes events at all; none of a message with an event in `held`, the
/// batch it refused: taken before that batch is sent again, a later
/// event would reach the relay before an earlier one of its message (a
/// `delivered` before its `sent`). Only messages after outbound seq
/// `after_seq` are this relay's ([`reported_relay`]).
async fn probe_past(
    deps: &Deps,
    after: i64,
    after_seq: i64,
    held: &[StatusEventBody],
    split: Split,
) -> Probe {
    let next = match deps
        .state
        .store
        .relay_status_events(after, BATCH, &deps.settings.phone_id, after_seq)
        .await
    {
        Ok(next) => next,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the status log");
            return Probe::Refused;
        }
    };
    let (events, resume) = probe_events(next, held);
    // Past the batch may be a new relay's messages once `pair` moved the
    // bridge (see `run`).
    if events.is_empty() || !reported_relay::still_this_links(deps).await {
        return Probe::Nothing;
    }
    match report(deps, &events, split).await {
        Reported::Taken => Probe::Taken(resume),
        Reported::AllRefused(_) => Probe::Refused,
        Reported::Shutdown => Probe::Shutdown,
    }
}

/// The events of `next` whose messages have none in `held`, and where
/// the stream goes on from once they are taken: past `next`, or before
/// its first event left out, which comes after the held batch (with the
/// probe's events past it, again: the relay drops repeats).
fn probe_events(next: RelayStatusBatch, held: &[StatusEventBody]) -> (Vec<StatusEventBody>, i64) {
    let held_messages: HashSet<&str> = held.iter().map(|e| e.relay_message_id.as_str()).collect();
    let mut resume = next.scanned_to;
    let mut events = Vec::new();
    for event in bodies(next.events) {
        if held_messages.contains(event.relay_message_id.as_str()) {
            resume = resume.min(event.event_id - 1);
        } else {
            events.push(event);
        }
    }
    (events, resume)
}

/// How a batch went.
enum Reported {
    /// Every event taken, or refused on its own and skipped.
    Taken,
    /// The relay refused every event of the batch, one by one: a refusal
    /// of everything (a relay that changed, a proxy in the way), not of
    /// these events, so none is skipped. The last refusal.
    AllRefused(RelayError),
    Shutdown,
}

/// How `report` may end when the relay takes none of the batch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Split {
    /// Once [`REFUSED_ALONE_BEFORE_ANY_TAKEN`] events were refused each
    /// alone with none taken: the relay refuses events, not these. For
    /// the rounds of a hold after its first: split to the end, a batch
    /// cost twice as many requests as it has events at every round (and
    /// as many again for the probe past it), back to back, against a
    /// relay that takes none.
    GiveUpEarly,
    /// Every event alone: at a hold's first round, and once the relay is
    /// known to take events (a probe past the batch was taken), or before
    /// the batch is skipped, so that what is skipped is only what it
    /// refuses on its own.
    ToTheEnd,
}

/// Until the relay takes the events or refuses them for good. A refused
/// batch is sent again in halves, down to single events, so that only
/// the events the relay refuses on their own are skipped, not those that
/// shared their batch; and only if it took another event of the batch,
/// which shows that it takes events at all. A relay that refuses every
/// one loses none.
async fn report(deps: &Deps, events: &[StatusEventBody], split: Split) -> Reported {
    // Halves still to send, the next on top: events go in order.
    let mut parts = vec![events];
    let mut taken_any = false;
    let mut refused: Vec<(&StatusEventBody, RelayError)> = Vec::new();
    while let Some(part) = parts.pop() {
        let body = json!({ "phone_id": deps.settings.phone_id, "events": part });
        match deps
            .post_until_taken(&deps.settings.config.paths.status, &body)
            .await
        {
            None => return Reported::Shutdown,
            Some(Ok(())) => taken_any = true,
            Some(Err(_)) if part.len() > 1 => {
                let (first, second) = part.split_at(part.len() / 2);
                parts.push(second);
                parts.push(first);
            }
            Some(Err(e)) => {
                refused.push((&part[0], e));
                if split == Split::GiveUpEarly
                    && !taken_any
                    && refused.len() >= REFUSED_ALONE_BEFORE_ANY_TAKEN
                {
                    break;
                }
            }
        }
    }
    if !taken_any && let Some((_, last)) = refused.pop() {
        return Reported::AllRefused(last);
    }
    skipped(deps, refused.len());
    for (event, e) in refused {
        tracing::warn!(error = %e, event_id = event.event_id,
            relay_message_id = %event.relay_message_id,
            "the relay refused a status event; skipping it");
    }
    Reported::Taken
}
