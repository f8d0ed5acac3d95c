//! Inbound → relay. Every committed inbound message is POSTed to the relay
//! as a pChat message, one at a time in commit order, so each conversation
//! arrives in order. A failure holds back the rest of its conversation
//! (and, if the relay is unreachable, everything) until its backoff ends;
//! a permanent refusal is kept as a dead letter with the reason.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use phonerelay_channel::ChannelKind;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::Notify;

use super::Deps;
use super::refusals::Refusals;
use phonerelay_channel::normalize_address as normalize;

use super::media_upload::{RefusedAttachment, UploadFailure, relay_attachments};
use super::routing::{Decision, Route, decide};
use crate::api::dto::AttachmentBody;
use crate::clock::{now_ms, rfc3339};
use crate::store::{InboundRecord, MANUAL_ROUTE, RelayBody, RelayInbound, RelayInboundOutcome};

/// Longest sleep with nothing to do: picks up messages committed by
/// another process (a commit here, or a manual retry, rings the bell).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Longest sleep while what is pending waits (a conversation held until
/// its retry, messages of a phone the link does not carry): each round
/// reads every pending message, so not every second while nothing can go.
const HELD_POLL: Duration = Duration::from_secs(30);
/// Pending messages read per round.
const ROUND_SIZE: u32 = 500;
/// How soon a reply held for a send to its sender without an outcome
/// (`routing::decide`) is looked at again.
const UNSETTLED_RECHECK: Duration = Duration::from_millis(250);
/// How often the record of which relay's messages are whose is asked
/// again while the store does not answer (it is needed to route).
const RELAY_MOVE_RETRY_MS: u64 = 1000;

/// The body POSTed to the relay's messages path.
#[derive(Debug, Serialize)]
pub struct PchatMessage<'a> {
    pub phone_id: &'a str,
    pub channel: &'static str,
    pub to: &'a str,
    pub source: String,
    pub text: &'a str,
    pub attachments: Vec<AttachmentBody>,
    pub origin: Origin<'a>,
}

#[derive(Debug, Serialize)]
pub struct Origin<'a> {
    pub channel: ChannelKind,
    pub phone_id: &'a str,
    pub from: &'a str,
    pub external_id: &'a str,
    pub received_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<&'a str>,
    pub reply_to: &'a [String],
    pub inbound_id: &'a str,
    pub route: &'a str,
    /// Files the message came with that the bridge no longer has and the
    /// relay never got (`media_upload`); absent when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_attachments: Option<u32>,
    /// Files the relay refused on upload (`media_upload`), left out of
    /// `attachments`; absent when none.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub refused_attachments: &'a [RefusedAttachment],
    /// Files whose uploads kept failing (timeouts, 5xx) until
    /// `relay.upload_give_up_after` (`media_upload`), left out of
    /// `attachments`; absent when none. Unlike a refused file, the relay
    /// never said no: the bridge could not get it there.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub not_uploaded_attachments: &'a [RefusedAttachment],
    /// `InboundMessage::meta`; absent when empty.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub meta: &'a std::collections::BTreeMap<String, String>,
}

pub async fn run(deps: Deps, bell: Arc<Notify>) {
    tracing::info!("relay forwarder started");
    let linked = &deps.settings.phone_id;
    if !deps.state.endpoints.has_phone_id(linked) {
        tracing::warn!(phone_id = %linked,
            "the relay link's phone_id is none of this bridge's endpoints; \
             inbound waits, pending, until the pairing or the config is put right");
    }
    let mut failures = 0u32;
    let mut refusals = Refusals::load(&*deps.state.store, &deps.settings.url).await;
    if refusals.holds() {
        // Held before this start: shown at once, as a live hold is. Left
        // to the next refusal, the link's first answered request (a
        // heartbeat) cleared the stored error, and the status showed no
        // hold while the queue still waited on the relay.
        deps.link
            .hold_inbound(Some(hold_reason(&format!(
                "{} in a row, before this start",
                refusals.in_a_row()
            ))))
            .await;
    }
    let mut link_down_until: Option<LinkDown> = None;
    // A link that starts (the daemon's start, a new key or pairing) tries
    // what waits at once, in commit order: a backoff set before is the
    // old link's, and honouring it only for the messages that were tried
    // would send the conversations never tried ahead of them.
    let mut fresh = true;
    // The move to this link's relay, if it is one, recorded before the
    // first round: until then the record names the old relay, and this
    // link would take itself for one `pair` moved away from.
    if deps
        .relay_messages_after(RELAY_MOVE_RETRY_MS)
        .await
        .is_none()
    {
        tracing::info!("relay forwarder stopped");
        return;
    }
    // Whether `pair` moved the bridge to another relay, said once.
    let mut moved_away = false;
    loop {
        if deps.shutdown.is_cancelled() {
            break;
        }
        let wait = if super::reported_relay::still_this_links(&deps).await {
            let wait = round(
                &deps,
                &mut failures,
                &mut refusals,
                &mut link_down_until,
                fresh,
            )
            .await;
            fresh = false;
            wait
        } else {
            // `pair` moved the bridge to another relay while this link
            // runs: what arrives now is for the new relay (its users may
            // be writing to these numbers already). The daemon ends this
            // link once it reads the new pairing; the new link forwards.
            if !moved_away {
                tracing::info!("paired with another relay: this link forwards no more inbound");
                moved_away = true;
            }
            IDLE_POLL
        };
        tokio::select! {
            _ = deps.shutdown.cancelled() => break,
            _ = bell.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    tracing::info!("relay forwarder stopped");
}

enum Attempt {
    Done,
    /// Shut down while the POST was in flight: nothing recorded, the
    /// message stays pending.
    Stopped,
    /// Hold the conversation back; `link_down` holds back everything.
    Later {
        link_down: bool,
        next_at_ms: i64,
    },
}

/// One round over the pending messages; returns how long to sleep.
///
/// While the relay is unreachable nothing is tried (a new commit ringing
/// the bell does not jump the queue): when it is back, messages go in
/// commit order, the one that failed first. A `fresh` round (the link's
/// first) tries every message due or not: see [`run`]. While the queue is
/// held, a round tries the first message the relay has not refused since
/// (another sender's, as a refused one holds back its sender's later
/// messages), and only when every one was refused the first of them
/// again: a message taken ends the hold, and the refused ones go again in
/// order, each a dead letter if the relay refuses it on its own.
async fn round(
    deps: &Deps,
    failures: &mut u32,
    refusals: &mut Refusals,
    link_down_until: &mut Option<LinkDown>,
    fresh: bool,
) -> Duration {
    let mut due = Due {
        fresh,
        skip_refused: refusals.holds(),
        link_back_for: None,
    };
    // On the monotonic clock: a wall clock stepped back while the link
    // waited would have stretched the wait by the step, forwarding nothing.
    if let Some(down) = link_down_until.take() {
        let left = down
            .until
            .saturating_duration_since(tokio::time::Instant::now());
        if !left.is_zero() {
            *link_down_until = Some(down);
            return left;
        }
        due.link_back_for = Some(down.by);
    }
    let Some(mut passed) = pass(deps, failures, refusals, link_down_until, &due).await else {
        return IDLE_POLL;
    };
    if due.skip_refused && passed.attempted == 0 && passed.skipped_refused {
        due.skip_refused = false;
        let Some(again) = pass(deps, failures, refusals, link_down_until, &due).await else {
            return IDLE_POLL;
        };
        passed = again;
    }
    let Pass {
        full_round,
        earliest,
        left_for_the_pairing,
        ..
    } = passed;
    if full_round && earliest.is_none() {
        return Duration::ZERO;
    }
    match earliest {
        Some(at) => {
            Duration::from_millis((at - now_ms()).clamp(0, HELD_POLL.as_millis() as i64) as u64)
        }
        None if left_for_the_pairing => HELD_POLL,
        None => IDLE_POLL,
    }
}

/// Everything waits after a failure of the link (the relay unreachable,
/// the store unable to record, a hold) until `until`, on the monotonic
/// clock; message `by` set the wait.
struct LinkDown {
    until: tokio::time::Instant,
    by: String,
}

/// Which messages a pass takes as due.
struct Due {
    /// The link's first round: every one, due or not (see [`run`]).
    fresh: bool,
    /// Pass over those refused while the queue is held.
    skip_refused: bool,
    /// The link's wait has just ended; the message that set it is due,
    /// whatever the wall clock says of its stored due time: one stepped
    /// back during the wait (by less than `retry_max_ms`, which
    /// `still_waits` forgives) left it not yet due, and the messages of
    /// other senders after it went first.
    link_back_for: Option<String>,
}

/// What one pass over the pending messages did.
struct Pass {
    /// It went over every pending message (no page was cut short).
    full_round: bool,
    /// When the first message held back is due.
    earliest: Option<i64>,
    /// Messages of another phone were left pending for the pairing.
    left_for_the_pairing: bool,
    /// Messages POSTed.
    attempted: u32,
    /// Messages passed over as refused while the queue is held.
    skipped_refused: bool,
}

/// One pass over the pending messages, a page at a time, taking those
/// `due` as due. `None` if the store could not be read.
async fn pass(
    deps: &Deps,
    failures: &mut u32,
    refusals: &mut Refusals,
    link_down_until: &mut Option<LinkDown>,
    due: &Due,
) -> Option<Pass> {
    let mut blocked: HashSet<(ChannelKind, String, String)> = HashSet::new();
    let mut earliest: Option<i64> = None;
    // Messages of another phone left pending (the link's phone is none of
    // the bridge's): nothing but a new pairing, a new link, moves them.
    let mut left_for_the_pairing = false;
    let (mut attempted, mut skipped_refused) = (0, false);
    let mut after_seq = 0;
    let full_round = 'pages: loop {
        let pending = match deps
            .state
            .store
            .pending_relay_inbound(after_seq, ROUND_SIZE)
            .await
        {
            Ok(pending) => pending,
            Err(e) => {
                // Tried again at every round while the store is out.
                static LOG: crate::logging::SharedThrottle =
                    crate::logging::SharedThrottle::new(crate::logging::REPEATED_FAILURE_LOG_EVERY);
                if let Some(unlogged) = LOG.allow() {
                    tracing::error!(error = %e, rounds_since_last_logged = unlogged,
                        "cannot read inbound messages to forward");
                }
                return None;
            }
        };
        let full_page = pending.len() as u32 == ROUND_SIZE;
        for item in pending {
            if deps.shutdown.is_cancelled() {
                break 'pages full_page;
            }
            let m = &item.inbound;
            after_seq = m.seq;
            // One an operator sent on by hand to an address of their
            // choice goes whatever phone it came on: they chose where.
            if m.phone_id != deps.settings.phone_id && !sent_on_by_hand(&item) {
                // Set aside only while the link's phone is one of this
                // bridge's: otherwise the pairing is wrong, not the
                // message, and it waits, pending, for the pairing to be
                // put right (`run` says so at start).
                if deps.state.endpoints.has_phone_id(&deps.settings.phone_id) {
                    set_aside(deps, m).await;
                } else {
                    left_for_the_pairing = true;
                }
                continue;
            }
            // The sender as routing spells it: "Ann <Ann@Example.COM>" and
            // "ann@example.com" are one conversation, held back together.
            let conversation = (m.channel, m.phone_id.clone(), normalize(m.channel, &m.from));
            if blocked.contains(&conversation) {
                continue;
            }
            if due.skip_refused && refusals.refused_while_held(&m.id) {
                // Its sender's later messages wait behind it.
                blocked.insert(conversation);
                skipped_refused = true;
                continue;
            }
            let set_the_wait = due.link_back_for.as_deref() == Some(m.id.as_str());
            if !due.fresh && !set_the_wait && deps.still_waits(item.next_attempt_at_ms, now_ms()) {
                blocked.insert(conversation);
                earliest = Some(
                    earliest.map_or(item.next_attempt_at_ms, |e| e.min(item.next_attempt_at_ms)),
                );
                continue;
            }
            attempted += 1;
            let attempt = forward(deps, &item, failures, refusals).await;
            refusals.keep(&*deps.state.store, &deps.settings.url).await;
            match attempt {
                Attempt::Done => {}
                Attempt::Stopped => break 'pages full_page,
                Attempt::Later {
                    link_down,
                    next_at_ms,
                } => {
                    earliest = Some(earliest.map_or(next_at_ms, |e| e.min(next_at_ms)));
                    if link_down {
                        let wait = u64::try_from(next_at_ms - now_ms()).unwrap_or(0);
                        *link_down_until = Some(LinkDown {
                            until: tokio::time::Instant::now() + Duration::from_millis(wait),
                            by: m.id.clone(),
                        });
                        break 'pages full_page;
                    }
                    blocked.insert(conversation);
                }
            }
        }
        // One pass goes over every pending message, a page at a time,
        // holding back the conversations seen held: stopping after the
        // first page would let one busy sender in backoff hold back
        // everyone after its first ROUND_SIZE messages.
        if !full_page {
            break false;
        }
    };
    Some(Pass {
        full_round,
        earliest,
        left_for_the_pairing,
        attempted,
        skipped_refused,
    })
}

/// Whether an operator sent `item` to an address of their choice
/// (`phonerelay inbound retry --to`): it goes even if it came on another
/// phone than the link's, which would otherwise set it aside again at
/// once, undoing the retry.
fn sent_on_by_hand(item: &RelayInbound) -> bool {
    item.route.as_deref() == Some(MANUAL_ROUTE)
}

/// An inbound message that arrived on another phone than the link's (a
/// second modem): the relay would take it for the paired phone's, and the
/// reply would leave from the wrong number. It is set aside, listed under
/// `other_phone`; if that cannot be recorded, the next round tries again.
async fn set_aside(deps: &Deps, m: &InboundRecord) {
    let outcome = RelayInboundOutcome::OtherPhone {
        phone_id: m.phone_id.clone(),
        linked_phone_id: deps.settings.phone_id.clone(),
        now_ms: now_ms(),
    };
    match deps.state.store.record_relay_inbound(&m.id, outcome).await {
        Ok(()) => tracing::info!(id = %m.id, channel = %m.channel, phone_id = %m.phone_id,
            linked_phone_id = %deps.settings.phone_id,
            "inbound on a phone the relay link does not carry; not forwarded"),
        Err(e) => {
            tracing::warn!(id = %m.id, error = %e, "cannot set aside an inbound of another phone")
        }
    }
}

async fn forward(
    deps: &Deps,
    item: &RelayInbound,
    failures: &mut u32,
    refusals: &mut Refusals,
) -> Attempt {
    let (body, json) = match fixed_before(deps, item) {
        Some(fixed) => fixed,
        None => match fix_body(deps, item, failures, refusals).await {
            Ok(body) => {
                let json = RawValue::from_string(body.json.clone())
                    .expect("a pChat message serializes to JSON");
                (body, json)
            }
            Err(attempt) => return attempt,
        },
    };
    let Some(sent) = post_message(deps, &item.idempotency_key(), &json).await else {
        return Attempt::Stopped;
    };
    let route = Route {
        to: body.to,
        route: body.route,
    };
    answered(deps, item, route, sent, failures, refusals).await
}

/// The body fixed before for `item` for this relay, to go again as it is
/// under the same Idempotency-Key: the relay may have taken it already.
/// One for another relay (a re-pair since) carries that relay's file
/// URLs, and the new relay never saw the key: made afresh. So is one the
/// store no longer holds as JSON, which nothing could send.
fn fixed_before(deps: &Deps, item: &RelayInbound) -> Option<(RelayBody, Box<RawValue>)> {
    let body = item.body.clone()?;
    if !made_for_this_relay(deps, &body) {
        return None;
    }
    match RawValue::from_string(body.json.clone()) {
        Ok(json) => Some((body, json)),
        Err(e) => {
            tracing::error!(id = %item.inbound.id, error = %e,
                "the stored body of an inbound message is not JSON; it is made afresh");
            None
        }
    }
}

/// Whether `body` was made for the link's relay (not before a move).
fn made_for_this_relay(deps: &Deps, body: &RelayBody) -> bool {
    super::relay_url::same_relay(&body.relay_url, &deps.settings.url)
}

/// What becomes of `item`, routed by `route`, after the relay's answer
/// `sent` to its POST (or to the upload of one of its files).
async fn answered(
    deps: &Deps,
    item: &RelayInbound,
    route: Route,
    sent: Result<serde_json::Value, crate::relay::RelayError>,
    failures: &mut u32,
    refusals: &mut Refusals,
) -> Attempt {
    let m = &item.inbound;
    match sent {
        Ok(_) => {
            if refusals.taken() {
                tracing::info!(id = %m.id, "the relay takes inbound messages again; the queue goes on");
                deps.link.hold_inbound(None).await;
            }
            // Stored before the delivery is: a crash between the two then
            // repeats a POST the relay answers as before (its key), where
            // the other order left the old count to hold the queue at the
            // next refusal, however much the relay had taken since.
            refusals.keep(&*deps.state.store, &deps.settings.url).await;
            deps.link.reached().await;
            tracing::debug!(id = %m.id, to = %route.to, "inbound forwarded to the relay");
            let recorded = record(
                deps,
                &m.id,
                RelayInboundOutcome::Delivered {
                    to: route.to,
                    route: route.route,
                    now_ms: now_ms(),
                },
            )
            .await;
            settled(deps, recorded, failures)
        }
        Err(e) if e.is_permanent() => {
            deps.link.reached().await;
            if refusals.next_holds() {
                refusals.one_more();
                refusals.held_for(&m.id);
                return hold_queue(deps, item, route, e, refusals.held_rounds()).await;
            }
            tracing::warn!(id = %m.id, error = %e, "the relay refused an inbound message; kept as a dead letter");
            let reason = match &e {
                crate::relay::RelayError::Http { code, message, .. } => {
                    format!("{code}: {message}")
                }
                other => other.to_string(),
            };
            let recorded = record(
                deps,
                &m.id,
                RelayInboundOutcome::Dead {
                    to: Some(route.to),
                    route: Some(route.route),
                    code: e.code(),
                    reason,
                    now_ms: now_ms(),
                },
            )
            .await;
            if recorded {
                refusals.one_more();
            }
            settled(deps, recorded, failures)
        }
        Err(e) => {
            deps.link.failed(&e).await;
            *failures = failures.saturating_add(1);
            let now = now_ms();
            // The link down, the wait is the link's: its failures in a
            // row in this run. A message's stored tries date from earlier
            // outages too (they outlive a restart, and a success of
            // another message does not clear them): one refusal after
            // those would hold every message for `retry_max_ms`.
            let tries = if e.is_link_down() {
                *failures
            } else {
                item.attempts.max(*failures - 1) + 1
            };
            let next_at_ms = now + deps.backoff_ms(tries, &e) as i64;
            let recorded = record_retry(deps, &m.id, route, &e, next_at_ms, now).await;
            Attempt::Later {
                // Unrecorded, the message stays due now: only holding
                // everything back keeps the next round from POSTing it.
                link_down: e.is_link_down() || !recorded,
                next_at_ms,
            }
        }
    }
}

/// What the link's status says while the queue is held, `detail` in
/// brackets: the same words for a hold found at start and a live one.
fn hold_reason(detail: &str) -> String {
    format!(
        "the relay refuses every inbound message ({detail}); they wait, pending, and are \
         tried again with backoff"
    )
}

/// The relay refused `item` too, after refusing every message before it
/// with none taken: it refuses messages, not this one. It stays pending
/// (its refusal recorded as a retry's error) and everything waits, with
/// the backoff of the `rounds` refusals since the queue was held; the
/// link's error says so, shown by `GET /api/v1/relay` and `status`.
async fn hold_queue(
    deps: &Deps,
    item: &RelayInbound,
    route: Route,
    e: crate::relay::RelayError,
    rounds: u32,
) -> Attempt {
    if rounds == 1 {
        tracing::warn!(id = %item.inbound.id, error = %e,
            "the relay refuses every inbound message; holding them, pending, to try again");
    }
    deps.link
        .hold_inbound(Some(hold_reason(&format!("the last: {e}"))))
        .await;
    let now = now_ms();
    let next_at_ms = now + deps.backoff_ms(rounds, &e) as i64;
    let recorded = record_retry(deps, &item.inbound.id, route, &e, next_at_ms, now).await;
    if !recorded {
        tracing::debug!(id = %item.inbound.id, "the hold could not be recorded; it holds all the same");
    }
    Attempt::Later {
        link_down: true,
        next_at_ms,
    }
}

/// Route `item` (unless it was routed before), upload its files and make
/// the body of its POST, then fix that body in the store before it is
/// POSTed: a POST cut short (the daemon stopped, the store failed after
/// the relay answered) is repeated with it, not with what routing would
/// pick by then (a send to the sender settled meanwhile) nor with the
/// files as they would go by then. `Err`: what became of the message
/// when no body could be made or fixed.
async fn fix_body(
    deps: &Deps,
    item: &RelayInbound,
    failures: &mut u32,
    refusals: &mut Refusals,
) -> Result<RelayBody, Attempt> {
    let m = &item.inbound;
    // A route kept with a body made for another relay was that relay's:
    // routed afresh, by this relay's conversations. The move forgets such
    // routes (`record_relay_move`), but a link still running for the old
    // relay may have written one since, with the body it posted there. An
    // operator's own address goes wherever the link goes.
    let for_another_relay = item
        .body
        .as_ref()
        .is_some_and(|body| !made_for_this_relay(deps, body));
    let route = match (&item.to, &item.route) {
        (Some(to), Some(route)) if route == MANUAL_ROUTE || !for_another_relay => Route {
            to: to.clone(),
            route: route.clone(),
        },
        _ => routed(deps, m, failures).await?,
    };
    // The files first: the message goes with the relay's URLs for them.
    // A failed upload is met as a failed message POST would be; a file
    // the relay refuses for good, or one whose uploads failed
    // `relay.upload_give_up_after` times, is left out, and the message
    // says so.
    let relayed = match relay_attachments(deps, m).await {
        Ok(relayed) => relayed,
        Err(UploadFailure::Relay(e)) => {
            return Err(answered(deps, item, route, Err(e), failures, refusals).await);
        }
        Err(UploadFailure::NoMediaRoute(e)) => {
            tracing::warn!(id = %m.id, error = %e, "the relay has no route for files (older than the bridge?); this conversation waits, the others go on");
            let reason = format!("the upload of a file found no route: {e}");
            return Err(hold(deps, item, route, e.code(), reason, Some(&e)).await);
        }
        Err(UploadFailure::TooSlow(e)) => {
            tracing::warn!(id = %m.id, error = %e, "the upload of a file ran past its timeout; this conversation waits, the others go on");
            let reason = format!("the upload of a file ran past its timeout: {e}");
            return Err(hold(deps, item, route, e.code(), reason, Some(&e)).await);
        }
        Err(UploadFailure::Unreadable(why)) => {
            tracing::error!(id = %m.id, error = %why, "a file to upload cannot be read; this conversation waits, the others go on");
            return Err(hold(deps, item, route, "media_unreadable".into(), why, None).await);
        }
        Err(UploadFailure::Stopped) => return Err(Attempt::Stopped),
        Err(UploadFailure::Store(e)) => {
            // As when an outcome cannot be recorded: the store is failing
            // for every message, so hold everything back.
            tracing::error!(id = %m.id, error = %e, "cannot read or record a file to upload; it will be tried again");
            return Err(settled(deps, false, failures));
        }
    };
    let body = RelayBody {
        json: pchat_message_json(deps, m, &route, relayed),
        to: route.to,
        route: route.route,
        relay_url: deps.settings.url.clone(),
    };
    if let Err(e) = deps
        .state
        .store
        .fix_relay_inbound_body(&m.id, body.clone())
        .await
    {
        // Not POSTed unfixed: a repeat could not be told what went.
        tracing::error!(id = %m.id, error = %e, "cannot record the message to forward; it will be tried again");
        return Err(settled(deps, false, failures));
    }
    Ok(body)
}

/// Where `m`, never routed before, goes; `Err`: what became of it when
/// it goes nowhere now.
async fn routed(deps: &Deps, m: &InboundRecord, failures: &mut u32) -> Result<Route, Attempt> {
    let routing = &deps.settings.config.routing;
    let Some(relay_messages_after) = deps.relay_messages_after(RELAY_MOVE_RETRY_MS).await else {
        return Err(Attempt::Stopped);
    };
    match decide(
        &*deps.state.store,
        routing,
        m,
        now_ms(),
        relay_messages_after,
    )
    .await
    {
        Ok(Decision::To(route)) => Ok(route),
        Ok(Decision::Wait) => {
            // Its conversation waits, looked at again shortly; nothing
            // is recorded (it is no attempt).
            tracing::debug!(id = %m.id, "a send to the sender has no outcome yet; the reply waits for it");
            Err(Attempt::Later {
                link_down: false,
                next_at_ms: now_ms() + UNSETTLED_RECHECK.as_millis() as i64,
            })
        }
        Ok(Decision::NoRoute(reason)) => {
            tracing::warn!(id = %m.id, channel = %m.channel, reason, "inbound message has no route; kept as a dead letter");
            let recorded = record(
                deps,
                &m.id,
                RelayInboundOutcome::Dead {
                    to: None,
                    route: None,
                    code: "no_route".into(),
                    reason: reason.into(),
                    now_ms: now_ms(),
                },
            )
            .await;
            Err(settled(deps, recorded, failures))
        }
        Err(e) => {
            // As when an outcome cannot be recorded: the store is failing
            // for every message, so hold everything back, with backoff.
            tracing::error!(id = %m.id, error = %e, "cannot route an inbound message; it will be tried again");
            Err(settled(deps, false, failures))
        }
    }
}

/// Hold back `item`'s conversation alone, for a fault of its own that
/// retrying may mend (a file the relay has no route for yet, one the
/// bridge cannot read now): recorded as a retry with backoff; messages of
/// other conversations go on meanwhile.
async fn hold(
    deps: &Deps,
    item: &RelayInbound,
    route: Route,
    code: String,
    reason: String,
    error: Option<&crate::relay::RelayError>,
) -> Attempt {
    let now = now_ms();
    let attempt = item.attempts.saturating_add(1);
    let delay = match error {
        Some(e) => deps.backoff_ms(attempt, e),
        None => deps.retry_delay_ms(attempt),
    };
    let next_at_ms = now + delay as i64;
    let recorded = record(
        deps,
        &item.inbound.id,
        RelayInboundOutcome::Retry {
            to: Some(route.to),
            route: Some(route.route),
            code,
            reason,
            next_attempt_at_ms: next_at_ms,
            now_ms: now,
        },
    )
    .await;
    Attempt::Later {
        // Unrecorded, the message stays due now: only holding everything
        // back keeps the next round from trying it at once.
        link_down: !recorded,
        next_at_ms,
    }
}

/// The JSON of `m` as a pChat message to `route` with `relayed`
/// attachments.
fn pchat_message_json(
    deps: &Deps,
    m: &InboundRecord,
    route: &Route,
    relayed: super::media_upload::RelayAttachments,
) -> String {
    let body = PchatMessage {
        phone_id: &deps.settings.phone_id,
        channel: "pchat",
        to: &route.to,
        // A reply address: the sender as routing records it
        // (`email:ann@example.com`, not the display name).
        source: format!("{}:{}", m.channel, normalize(m.channel, &m.from)),
        text: &m.text,
        attachments: relayed.attachments,
        origin: Origin {
            channel: m.channel,
            phone_id: &m.phone_id,
            from: &m.from,
            external_id: &m.external_id,
            received_at: rfc3339(m.received_at_ms),
            subject: m.subject.as_deref(),
            reply_to: &m.reply_to,
            inbound_id: &m.id,
            route: &route.route,
            missing_attachments: (relayed.missing > 0).then_some(relayed.missing),
            refused_attachments: &relayed.refused,
            not_uploaded_attachments: &relayed.not_uploaded,
            meta: &m.meta,
        },
    };
    // Strings, numbers and maps keyed by strings: nothing that JSON
    // cannot hold.
    serde_json::to_string(&body).expect("a pChat message serializes to JSON")
}

/// POST a message's fixed body, `json`, to the relay under its
/// Idempotency-Key `key`; `None` if the daemon stopped first.
async fn post_message(
    deps: &Deps,
    key: &str,
    json: &RawValue,
) -> Option<Result<serde_json::Value, crate::relay::RelayError>> {
    // A relay that never answers must not hold up a shutdown for the
    // request timeout. Dropping the POST is safe: no outcome is recorded,
    // so the message stays pending and goes again after a restart, with
    // the same Idempotency-Key and the same body (fixed before).
    let sent = tokio::select! {
        _ = deps.shutdown.cancelled() => return None,
        sent = deps.client.post(
            &deps.settings.config.paths.messages,
            &json,
            Some(key),
            None,
        ) => sent,
    };
    Some(sent)
}

/// Record an outcome; false (logged) if the store failed.
/// Record that `id`, routed by `route`, is tried again at `next_at_ms`
/// after `e`; whether it was recorded.
async fn record_retry(
    deps: &Deps,
    id: &str,
    route: Route,
    e: &crate::relay::RelayError,
    next_at_ms: i64,
    now: i64,
) -> bool {
    let outcome = RelayInboundOutcome::Retry {
        to: Some(route.to),
        route: Some(route.route),
        code: e.code(),
        reason: e.to_string(),
        next_attempt_at_ms: next_at_ms,
        now_ms: now,
    };
    record(deps, id, outcome).await
}

async fn record(deps: &Deps, id: &str, outcome: RelayInboundOutcome) -> bool {
    match deps.state.store.record_relay_inbound(id, outcome).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(%id, error = %e, "cannot record a forwarding outcome; it will be tried again");
            false
        }
    }
}

/// After a final outcome: done if it was recorded. If not, the message
/// is still pending and due now, and so is every message after it: the
/// store is failing for all of them. Hold everything back with the
/// backoff of a failed POST, or each round would POST them all again.
/// The repeat carries the same Idempotency-Key (the inbound id), so the
/// relay takes it once.
fn settled(deps: &Deps, recorded: bool, failures: &mut u32) -> Attempt {
    if recorded {
        *failures = 0;
        return Attempt::Done;
    }
    *failures = failures.saturating_add(1);
    Attempt::Later {
        link_down: true,
        next_at_ms: now_ms() + deps.retry_delay_ms(*failures) as i64,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::api::AppState;
    use crate::config::RelayConfig;
    use crate::relay::client::RelayKey;
    use crate::relay::{Link, RelayClient, RelaySettings};
    use crate::store::testing::{RoutingReadsFail, received_sms};
    use crate::store::{SqliteStore, Store};

    /// The forwarder's dependencies over `store`, linked to phone `m1` at
    /// a relay no test reaches.
    async fn deps_over(store: Arc<dyn Store>) -> Deps {
        let settings = Arc::new(RelaySettings {
            url: "http://127.0.0.1:9".into(),
            phone_id: "m1".into(),
            key: RelayKey::new("k".repeat(32)),
            config: RelayConfig::default(),
            paired_at_ms: None,
        });
        Deps {
            state: AppState::over(store.clone()),
            client: Arc::new(RelayClient::new(&settings).unwrap()),
            settings,
            link: Arc::new(Link::open(store).await),
            shutdown: CancellationToken::new(),
            relay_messages_after: Arc::default(),
        }
    }

    /// A store that cannot be read to route a reply: the forwarder backs
    /// off as for a store that cannot record, rather than look again
    /// every `UNSETTLED_RECHECK` for as long as the store is down. Rounds
    /// are run as `run` runs them, on a paused clock moved on by each
    /// round's wait.
    #[tokio::test(start_paused = true)]
    async fn a_store_that_cannot_route_is_tried_with_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        let store = Arc::new(RoutingReadsFail::new(sqlite));
        let now = now_ms();
        store
            .commit_inbound(received_sms("ext-1", now), now)
            .await
            .unwrap();
        let deps = deps_over(store.clone()).await;
        let (mut failures, mut link_down_until) = (0, None);
        let mut refusals = Refusals::default();
        let window = Duration::from_secs(60);
        let mut elapsed = Duration::ZERO;
        let mut rounds = 0;
        while elapsed < window {
            let wait = round(
                &deps,
                &mut failures,
                &mut refusals,
                &mut link_down_until,
                rounds == 0,
            )
            .await;
            assert!(!wait.is_zero(), "round {rounds} asked for no wait");
            tokio::time::advance(wait).await;
            elapsed += wait;
            rounds += 1;
        }
        // From retry_initial_ms (1 s) doubling: about seven tries in a
        // minute. Looking again every 250 ms made some 240.
        let tries = store.faults.tries.load(Ordering::SeqCst);
        assert!(tries <= 12, "{tries} routing reads in {window:?}");
        assert!(failures >= 5, "failures not counted: {failures}");
    }

    /// Every relay outcome refused, as a crash just before it would leave
    /// it unrecorded.
    struct RelayOutcomesRefused;

    impl crate::store::testing::Faults for RelayOutcomesRefused {
        fn record_relay_inbound(&self, _id: &str) -> crate::store::StoreResult<()> {
            Err(crate::store::StoreError::Unavailable(
                "refused by the test".into(),
            ))
        }
    }

    /// A store that refuses every relay outcome, and the one inbound
    /// message pending in it.
    async fn pending_over_refused_outcomes() -> (
        tempfile::TempDir,
        Arc<crate::store::testing::Faulty<RelayOutcomesRefused>>,
        RelayInbound,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        let store = Arc::new(crate::store::testing::Faulty::with(
            sqlite,
            RelayOutcomesRefused,
        ));
        let now = now_ms();
        store
            .commit_inbound(received_sms("ext-1", now), now)
            .await
            .unwrap();
        let item = store
            .list_relay_inbound(crate::store::RelayInboundState::Pending, None, None, 1)
            .await
            .unwrap()
            .remove(0);
        (dir, store, item)
    }

    /// Three refusals in a row stored, then the relay takes a message: the
    /// count is gone from the store before the delivery is recorded. Left
    /// until after it, a crash between the two kept the three, and the
    /// next refusal of one bad message held the whole queue behind it.
    #[tokio::test]
    async fn a_message_taken_clears_the_stored_refusals_before_its_delivery_is_recorded() {
        let (_dir, store, item) = pending_over_refused_outcomes().await;
        let deps = deps_over(store.clone()).await;
        let url = deps.settings.url.clone();
        let mut refusals = Refusals::load(&*store, &url).await;
        for _ in 0..3 {
            assert!(!refusals.next_holds());
            refusals.one_more();
        }
        refusals.keep(&*store, &url).await;

        let route = Route {
            to: "ops".into(),
            route: "default".into(),
        };
        let taken = Ok(serde_json::json!({"id": "r-1"}));
        let mut failures = 0;
        answered(&deps, &item, route, taken, &mut failures, &mut refusals).await;

        let after = store.inner().get_relay_inbound(&item.inbound.id).await;
        let after = after.unwrap().unwrap();
        assert_eq!(
            after.state,
            crate::store::RelayInboundState::Pending,
            "unrecorded"
        );
        let reloaded = Refusals::load(store.inner(), &url).await;
        assert!(
            !reloaded.next_holds(),
            "the next refusal is the first in a row"
        );
    }

    /// The relay refuses a message on its own (422) while the store cannot
    /// record its dead letter: the message stays pending and its POST goes
    /// again, refused again. Counted at every repeat, one message made four
    /// refusals in a row and held the whole queue; it counts once its
    /// dead letter is recorded.
    #[tokio::test]
    async fn a_refusal_whose_dead_letter_is_not_recorded_is_not_counted() {
        let (_dir, store, item) = pending_over_refused_outcomes().await;
        let deps = deps_over(store.clone()).await;
        let mut refusals = Refusals::default();
        let mut failures = 0;
        for _ in 0..5 {
            let refused = Err(crate::relay::RelayError::Http {
                path: "/messages".into(),
                status: 422,
                code: "invalid_to".into(),
                message: "no such pChat user".into(),
                retry_after_ms: None,
            });
            let route = Route {
                to: "bob".into(),
                route: "recent".into(),
            };
            answered(&deps, &item, route, refused, &mut failures, &mut refusals).await;
        }
        assert_eq!(
            refusals.in_a_row(),
            0,
            "no dead letter recorded, none counted"
        );
        assert!(!refusals.holds());
    }
}
